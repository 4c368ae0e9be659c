"""History sources: the candles of the sessions before a live feed starts, to warm up on.

A strategy on 15-minute EMAs needs hours of bars before its first signal, and an indicator such as
SMA 200 on 5-minute candles needs three sessions. A :class:`HistorySource` supplies those bars
before the first tick; :mod:`mandi.services.history` writes them into the candle store (never
over candles it already holds) and the indicator and trading layers warm up from the store, as
they do after a restart — one warm-up path whatever the source:

* :class:`SimHistory` — the simulated exchange's preceding sessions, generated (deterministic for
  a seed and a start date) so that they end exactly where the simulated day opens;
* a broker's historical API (Kite's ``/instruments/historical``) plugs in the same way: implement
  :meth:`HistorySource.candles` and register a factory in :data:`SOURCES`; or fill the store
  ahead with ``mandi history fetch`` — the warm-up reads the store either way.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from mandi.core.calendar import ExchangeCalendar, calendar, session_anchor_ns
from mandi.core.clock import NS_PER_SECOND
from mandi.model.instruments import AnyInstrument, Option
from mandi.model.market import Candle


class HistorySource(Protocol):
    """Confirmed candles of the past, per instrument and timeframe."""

    @property
    def name(self) -> str: ...

    def sessions_before(self, day: dt.date, count: int) -> list[dt.date]:
        """The ``count`` trading days before ``day`` this source can serve, oldest first."""
        ...

    def candles(
        self, instrument: AnyInstrument, timeframe: int, start_ns: int, end_ns: int
    ) -> list[Candle]:
        """Confirmed ``timeframe``-second candles of ``instrument`` whose bucket starts in
        ``[start_ns, end_ns)``, oldest first (buckets aligned to 09:15 IST)."""
        ...


TICK = 5  # paise
MAX_SESSIONS = 400  # about a year and a half; a longer warm-up is refused

#: history sources by feed name
SOURCES: dict[str, Callable[[Any, dt.date], HistorySource | None]] = {}


def history_source(cfg: Any, feed: str, start: dt.date) -> HistorySource | None:
    """The history source of a feed (None: the feed has none; the store may still hold bars)."""
    factory = SOURCES.get(feed)
    return factory(cfg, start) if factory is not None else None


class SimHistory:
    """The simulated exchange's sessions before ``start``: per instrument a trading-time random
    walk at the simulator's volatility, one price per second, generated backwards from the price
    the simulated day opens at (so the last historical close is the first live price), each
    session from ``numpy.random.default_rng([seed, start, token, k])``. Indices, stocks and India
    VIX have history; options do not (no strategy warms up on a contract's past)."""

    name = "sim"

    def __init__(self, sim_config: Any, start: dt.date, cal: ExchangeCalendar | None = None):
        from mandi.feeds.sim import STOCKS, UNDERLYINGS, VIX_TOKEN

        self.cfg = sim_config
        self.start = start
        self.cal = cal or calendar("NSE")
        # token -> (opening price in rupees, annual volatility, has volume)
        self._spec: dict[int, tuple[float, float, bool]] = {}
        for u in sim_config.underlyings:
            spec = UNDERLYINGS[u]
            self._spec[spec.token] = (spec.spot, spec.vol, False)
        for s in sim_config.stocks:
            token, price, vol = STOCKS[s]
            self._spec[token] = (price, vol, True)
        if "NIFTY" in sim_config.underlyings:  # the simulator quotes VIX as NIFTY's ATM vol
            self._spec[VIX_TOKEN] = (UNDERLYINGS["NIFTY"].vol * 100, 0.8, False)
        # (token, k) -> session k before the start (1 = the previous trading day): its open,
        # one close per second (paise) and one traded quantity per second
        self._paths: dict[tuple[int, int], tuple[int, np.ndarray, np.ndarray]] = {}
        self._opens: dict[tuple[int, int], float] = {}  # (token, k) -> opening price, rupees
        self._days = self.sessions_before(start, 1)

    def covers(self, instrument: AnyInstrument) -> bool:
        """True when this source has history for ``instrument``."""
        return instrument.token in self._spec and not isinstance(instrument, Option)

    def sessions_before(self, day: dt.date, count: int) -> list[dt.date]:
        out: list[dt.date] = []
        d = day
        while len(out) < count:
            d = self.cal.previous_trading_day(d)
            out.append(d)
        return out[::-1]

    def _day(self, k: int) -> dt.date:
        while len(self._days) < k:  # newest first
            self._days.append(self.cal.previous_trading_day(self._days[-1]))
        return self._days[k - 1]

    def _session(self, token: int, k: int) -> tuple[int, np.ndarray, np.ndarray]:
        key = (token, k)
        if key in self._paths:
            return self._paths[key]
        price0, vol, has_volume = self._spec[token]
        # generated newest first: each session closes where the next one opens
        if k > 1 and (token, k - 1) not in self._opens:
            self._session(token, k - 1)
        end_price = price0 if k == 1 else self._opens[(token, k - 1)]
        session = self.cal.session(self._day(k))
        assert session is not None
        seconds = max(1, (session.close_ns - session.open_ns) // NS_PER_SECOND)
        rng = np.random.default_rng([self.cfg.seed, self.start.toordinal(), token, k])
        sig = vol * math.sqrt(1.0 / (252 * 22_500))  # trading-time scaling, as the simulator's
        steps = rng.standard_normal(seconds) * sig - 0.5 * sig * sig
        log_path = np.cumsum(steps)
        prices = end_price * np.exp(log_path - log_path[-1])  # ends exactly at end_price
        paise = np.maximum(np.round(prices * 100 / TICK) * TICK, TICK).astype(np.int64)
        qty = (
            rng.poisson(9.6, seconds).astype(np.int64)
            if has_volume
            else np.zeros(seconds, dtype=np.int64)
        )
        self._opens[key] = float(prices[0] * math.exp(-steps[0]))
        self._paths[key] = (session.open_ns, paise, qty)
        return self._paths[key]

    def candles(
        self, instrument: AnyInstrument, timeframe: int, start_ns: int, end_ns: int
    ) -> list[Candle]:
        if not self.covers(instrument):
            return []
        out: list[list[Candle]] = []
        for k in range(1, MAX_SESSIONS + 1):
            session = self.cal.session(self._day(k))
            assert session is not None
            if session.close_ns <= start_ns:
                break
            if session.open_ns < end_ns:
                out.append(self._aggregate(instrument, timeframe, k, start_ns, end_ns))
        return [c for part in reversed(out) for c in part]

    def _aggregate(
        self, inst: AnyInstrument, tf: int, k: int, start_ns: int, end_ns: int
    ) -> list[Candle]:
        """Session ``k``'s seconds grouped into ``tf`` buckets (aligned to 09:15 IST)."""
        open_ns, px, qty = self._session(inst.token, k)
        ts = open_ns + np.arange(len(px), dtype=np.int64) * NS_PER_SECOND
        anchor = session_anchor_ns(open_ns)
        if tf >= 86_400:
            b_of = np.full(len(ts), anchor, dtype=np.int64)
        else:
            step = tf * NS_PER_SECOND
            b_of = anchor + ((ts - anchor) // step) * step
        starts = np.flatnonzero(np.r_[True, b_of[1:] != b_of[:-1]])
        ends = np.r_[starts[1:], len(px)]
        high = np.maximum.reduceat(px, starts)
        low = np.minimum.reduceat(px, starts)
        volume = np.add.reduceat(qty, starts)
        ticks = np.add.reduceat((qty > 0).astype(np.int64), starts) if qty.any() else ends - starts
        out = []
        for i, b in enumerate(b_of[starts].tolist()):
            if start_ns <= b < end_ns:
                out.append(
                    Candle(
                        inst.token,
                        inst.exchange,
                        tf,
                        b,
                        int(px[starts[i]]),
                        int(high[i]),
                        int(low[i]),
                        int(px[ends[i] - 1]),
                        int(volume[i]),
                        0,
                        int(ticks[i]),
                        True,
                    )
                )
        return out


def _sim_factory(cfg: Any, start: dt.date) -> HistorySource:
    return SimHistory(cfg.sim, start)


SOURCES["sim"] = _sim_factory
