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

Bad ticks (counted per reason in :attr:`SecondAggregator.rejected`, skipped, pipeline continues):
``bad_price`` (NaN, infinite, zero or negative), ``bad_timestamp``, ``unknown_token`` (when a set
of known tokens is given), ``bad_volume`` (negative), ``volume_decreased`` (non-monotonic
cumulative volume), ``late``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container

from mandi.core.clock import NS_PER_SECOND
from mandi.model.market import Candle, Tick

_NS = NS_PER_SECOND
_MAX_PRICE = 1 << 53  # paise; far above any real price, below float precision loss
_NONE: tuple[Candle, ...] = ()


class _Open:
    """The open second of one token (mutable, slot-only for speed)."""

    __slots__ = ("base", "close", "cum", "exchange", "high", "low", "n", "oi", "open", "sec")

    def __init__(self, exchange: str, base: int) -> None:
        self.exchange = exchange
        self.sec = -1  # no open second
        self.open = self.high = self.low = self.close = 0
        self.base = base  # cumulative volume before the open second
        self.cum = base  # latest cumulative volume
        self.oi = 0
        self.n = 0


class SecondAggregator:
    """Aggregate :class:`Tick` into closed one-second :class:`Candle` (``timeframe=1``)."""

    def __init__(self, known_tokens: Container[int] | None = None, close_delay_ns: int = 0):
        self._known = known_tokens
        self._delay = close_delay_ns
        self._open: dict[int, _Open] = {}
        self._baselines: dict[int, int] = {}
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

    def _reject(self, reason: str, tick: Tick) -> tuple[Candle, ...]:
        self.rejected[reason] += 1
        self.last_rejection = (reason, tick)
        return _NONE

    def handle_tick(self, tick: Tick) -> tuple[Candle, ...] | list[Candle]:
        """Apply one tick; return the candles it confirmed (usually none)."""
        price = tick.price
        if not 0 < price < _MAX_PRICE:
            return self._reject("bad_price", tick)
        ts = tick.ts_event
        if type(ts) is not int or ts <= 0:
            return self._reject("bad_timestamp", tick)
        vol = tick.volume
        if vol < 0:
            return self._reject("bad_volume", tick)
        token = tick.token
        st = self._open.get(token)
        if st is None:
            if self._known is not None and token not in self._known:
                return self._reject("unknown_token", tick)
            base = self._baselines.pop(token, None)
            st = self._open[token] = _Open(
                tick.exchange, vol - tick.last_qty if base is None else base
            )
            if st.base < 0:
                st.base = st.cum = 0
        sec = ts - ts % _NS
        if sec == st.sec:  # hot path: same open second
            if vol < st.cum:
                return self._reject("volume_decreased", tick)
            if price > st.high:
                st.high = price
            elif price < st.low:
                st.low = price
            st.close = price
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
        st.open = st.high = st.low = st.close = price
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
