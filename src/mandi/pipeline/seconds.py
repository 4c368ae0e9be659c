"""Ticks → one-second OHLCV candles per token, by event time.

Policy for time (stated and tested):

* A tick belongs to the second ``floor(ts_event)``. Ticks of the open second may arrive in any
  order; open/close are the first/last *received*, high/low the extremes.
* The **watermark** is the latest event second seen on any token. When it moves past a second
  (plus ``close_delay_ns`` of grace for feeds whose tokens arrive slightly out of step) every
  token's candle for that second is confirmed and emitted, in token order — so a quiet token never
  holds its candle back.
* A tick for a second that is already confirmed is **late**: it is rejected and counted. Its
  traded quantity is not lost: volume is cumulative, so the next tick of the token carries it.

Volume: ticks carry the cumulative day volume; a candle's volume is the increase over the last
volume seen before it. A token's very first tick has no earlier reading, so its own ``last_qty``
is used (or a baseline restored with :meth:`SecondAggregator.set_volume_baseline`).

Bad ticks: the tick policy of :mod:`mandi.pipeline.validate` (integer paise, price band, volume
step, clock tolerance, ...); a rejected tick is counted per reason in
:attr:`SecondAggregator.rejected` and skipped, it never becomes a baseline, and the pipeline
continues.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container

from mandi.core.clock import NS_PER_MS, NS_PER_SECOND
from mandi.model.market import Candle, Tick
from mandi.pipeline.validate import (
    DEFAULT_POLICY,
    MAX_PRICE,
    MAX_TS,
    TickPolicy,
    band_allows,
    is_int,
    other_fields_ok,
)

_NS = NS_PER_SECOND
_TOKEN_LO, _TOKEN_HI = -(1 << 63), 1 << 63  # exclusive: the fast path's int64 token ids
_NONE: tuple[Candle, ...] = ()


class _Open:
    """The state of one token: its open second, and its last accepted price with the band's
    bookkeeping (mutable, slot-only for speed)."""

    __slots__ = (
        "base",
        "close",
        "cum",
        "exchange",
        "high",
        "limits",
        "low",
        "n",
        "oi",
        "open",
        "pend_n",
        "pend_p",
        "ref",
        "sec",
    )

    def __init__(self, exchange: str, base: int, ref: int, limits: tuple[int, int]) -> None:
        self.exchange = exchange
        self.sec = -1  # no open second
        self.open = self.high = self.low = self.close = 0
        self.base = base  # cumulative volume before the open second
        self.cum = base  # latest cumulative volume
        self.oi = 0
        self.n = 0
        self.ref = ref  # last accepted price (0 = none yet)
        self.pend_p = 0  # the latest out-of-band price and how many agreed in a row
        self.pend_n = 0
        self.limits = limits  # circuit limits (lower, upper); 0 = not known


class SecondAggregator:
    """Aggregate :class:`Tick` into closed one-second :class:`Candle` (``timeframe=1``), under
    the tick policy ``policy`` (:class:`~mandi.pipeline.validate.TickPolicy`)."""

    def __init__(
        self,
        known_tokens: Container[int] | None = None,
        close_delay_ns: int = 0,
        policy: TickPolicy | None = None,
    ):
        self._known = known_tokens
        self._delay = close_delay_ns
        self.policy = p = policy or DEFAULT_POLICY
        self._band_bp, self._band_min, self._confirm = (
            p.band_bp,
            p.price_band_min_paise,
            p.price_band_confirm,
        )
        self._max_volume, self._max_step = p.max_volume, p.max_volume_step
        self._ahead = p.max_ahead_ms * NS_PER_MS
        self._open: dict[int, _Open] = {}
        self._baselines: dict[int, int] = {}
        self._refs: dict[int, int] = {}  # restored last prices, waiting for the first tick
        self._limits: dict[int, tuple[int, int]] = {}
        self._wm = -1  # watermark: latest event second seen (ns, floored)
        self._swept = -1  # latest sweep cutoff: every second at or before it is confirmed
        self.rejected: Counter[str] = Counter()
        self.last_rejection: tuple[str, Tick] | None = None
        self.ticks = 0
        self.candles = 0

    @property
    def watermark_ns(self) -> int:
        return self._wm

    def set_volume_baseline(self, token: int, cumulative_volume: int) -> None:
        """Restore the last cumulative volume seen for ``token`` (after a restart)."""
        st = self._open.get(token)
        if st is not None:
            st.base = st.cum = cumulative_volume
        else:
            self._baselines[token] = cumulative_volume

    def set_price_reference(self, token: int, price: int) -> None:
        """The last good price of ``token`` known from elsewhere (the last stored tick after a
        restart, a broker's quote): its first tick must fall within the band around it."""
        st = self._open.get(token)
        if st is not None:
            st.ref, st.pend_n = price, 0
        else:
            self._refs[token] = price

    def set_price_limits(self, token: int, lower: int, upper: int) -> None:
        """The circuit limits of ``token`` in paise (0 = that side unknown): a price outside
        them is ``price_band``, whatever the band says."""
        self._limits[token] = (lower, upper)
        st = self._open.get(token)
        if st is not None:
            st.limits = (lower, upper)

    def _reject(self, reason: str, tick: Tick) -> tuple[Candle, ...]:
        self.rejected[reason] += 1
        self.last_rejection = (reason, tick)
        return _NONE

    def _out_of_band(self, st: _Open, price: int) -> bool:
        """The price-band rule (and its bookkeeping) for a token with state."""
        lo, hi = st.limits
        if (lo and price < lo) or (hi and price > hi):
            return True
        bp, floor = self._band_bp, self._band_min
        if st.ref <= 0 or bp <= 0 or band_allows(st.ref, price, bp, floor):
            st.pend_n = 0
            return False
        if st.pend_n and band_allows(st.pend_p, price, bp, floor):
            st.pend_n += 1  # agrees with the out-of-band tick before it
        else:
            st.pend_n = 1
        st.pend_p = price
        if st.pend_n < self._confirm:
            return True
        st.pend_n = 0  # confirmed: the market really moved there
        return False

    def handle_tick(
        self, tick: Tick, now_ns: int | None = None
    ) -> tuple[Candle, ...] | list[Candle]:
        """Apply one tick; return the candles it confirmed (usually none). ``now_ns`` is the
        feed's clock: a tick stamped more than ``policy.max_ahead_ms`` after it is rejected."""
        price = tick.price
        if not is_int(price) or not 0 < price < MAX_PRICE:
            return self._reject("bad_price", tick)
        ts = tick.ts_event
        if not is_int(ts) or not 0 < ts < MAX_TS:
            return self._reject("bad_timestamp", tick)
        if now_ns is not None and ts > now_ns + self._ahead:
            return self._reject("future_timestamp", tick)
        vol = tick.volume
        if not is_int(vol) or not 0 <= vol <= self._max_volume:
            return self._reject("bad_volume", tick)
        lq = tick.last_qty
        if not other_fields_ok(lq, tick.oi, tick.bid, tick.ask, tick.bid_qty, tick.ask_qty):
            return self._reject("bad_field", tick)
        token = tick.token
        if not is_int(token) or not _TOKEN_LO < token < _TOKEN_HI:
            return self._reject("unknown_token", tick)
        st = self._open.get(token)
        if st is None:
            if self._known is not None and token not in self._known:
                return self._reject("unknown_token", tick)
            base = self._baselines.pop(token, None)
            st = self._open[token] = _Open(
                tick.exchange,
                vol - lq if base is None else base,
                self._refs.pop(token, 0),
                self._limits.get(token, (0, 0)),
            )
            if st.base < 0:
                st.base = st.cum = 0
        if self._out_of_band(st, price):
            return self._reject("price_band", tick)
        if vol - st.cum > self._max_step:
            return self._reject("volume_jump", tick)
        sec = ts - ts % _NS
        if sec == st.sec:  # hot path: same open second
            if vol < st.cum:
                return self._reject("volume_decreased", tick)
            if price > st.high:
                st.high = price
            elif price < st.low:
                st.low = price
            st.close = st.ref = price
            st.cum = vol
            st.oi = tick.oi
            st.n += 1
            self.ticks += 1
            return _NONE
        if sec < st.sec or sec + _NS + self._delay <= self._wm or sec <= self._swept:
            return self._reject("late", tick)
        if vol < st.cum:
            return self._reject("volume_decreased", tick)
        out: list[Candle] | tuple[Candle, ...] = _NONE
        if st.sec >= 0:  # this token moves on: its previous second is complete
            out = [self._close(token, st)]
        st.sec = sec
        st.open = st.high = st.low = st.close = st.ref = price
        st.cum = vol
        st.oi = tick.oi
        st.n = 1
        self.ticks += 1
        if sec > self._wm:
            self._wm = sec
            swept = self.advance(sec)
            if swept:
                out = [*out, *swept]
        return out

    def _close(self, token: int, st: _Open) -> Candle:
        c = Candle(
            token,
            st.exchange,
            1,
            st.sec,
            st.open,
            st.high,
            st.low,
            st.close,
            st.cum - st.base,
            st.oi,
            st.n,
            True,
        )
        st.base = st.cum
        st.sec = -1
        self.candles += 1
        return c

    def advance(self, now_ns: int) -> list[Candle]:
        """Confirm every open second that ended at least ``close_delay_ns`` before ``now_ns``."""
        cutoff = now_ns - self._delay - _NS
        if cutoff > self._swept:  # a clock-driven sweep may confirm past the watermark's grace
            self._swept = cutoff
        if now_ns - now_ns % _NS > self._wm:
            self._wm = now_ns - now_ns % _NS
        out = [self._close(t, st) for t, st in sorted(self._open.items()) if 0 <= st.sec <= cutoff]
        return out

    def flush(self) -> list[Candle]:
        """Confirm every open second (end of session or shutdown)."""
        return [self._close(t, st) for t, st in sorted(self._open.items()) if st.sec >= 0]
