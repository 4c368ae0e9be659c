"""Bars for the backtester: columnar OHLCV series of one instrument at one timeframe.

A :class:`BarSeries` holds NumPy columns (int64 ns and paise) rather than a list of
:class:`~mandi.model.market.Candle` objects, so that a year of minute bars loads, slices and
resamples in milliseconds; the engine builds each ``Candle`` only when it hands it to the kernel.

Times follow the pipeline's conventions (:mod:`mandi.pipeline.timeframes`): ``bucket`` is the
start of the bar, aligned to 09:15 IST, and a bar *ends* — becomes known — at the earlier of
``bucket + timeframe`` and the session close of its day (15:30 IST, or a special session's own
close). The end is the bar's event time: a strategy sees the bar then, never earlier.

Nothing here does I/O; :mod:`mandi.services.backtest.data` reads files and the store into series.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mandi.core.calendar import IST_OFFSET_NS, NS_PER_DAY, calendar
from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import MandiError
from mandi.model.instruments import AnyInstrument
from mandi.model.market import Candle
from mandi.pipeline.timeframes import TimeframeBuilder

I64 = np.int64
_EPOCH = dt.date(1970, 1, 1)


class BacktestError(MandiError):
    """Bad backtest input (data, parameters, strategy) — the message names the field and value."""


class _Sessions:
    """(open, close) ns of consecutive IST day numbers of one exchange, grown as asked: a bar's
    session is a table lookup by day number (no sort of a million days, no calendar call per
    bar)."""

    def __init__(self, exchange: str) -> None:
        self.cal = calendar(exchange)
        self.first = 0
        self.open = np.zeros(0, dtype=I64)
        self.close = np.zeros(0, dtype=I64)

    def cover(self, lo: int, hi: int) -> None:
        if len(self.open) and self.first <= lo and hi < self.first + len(self.open):
            return
        if len(self.open):
            lo, hi = min(lo, self.first), max(hi, self.first + len(self.open) - 1)
        op = np.full(hi - lo + 1, -1, dtype=I64)
        cl = np.full(hi - lo + 1, -1, dtype=I64)
        for k in range(hi - lo + 1):
            if len(self.open) and 0 <= lo + k - self.first < len(self.open):
                op[k] = self.open[lo + k - self.first]
                cl[k] = self.close[lo + k - self.first]
                continue
            s = self.cal.session(_EPOCH + dt.timedelta(days=lo + k))
            if s is not None:
                op[k], cl[k] = s.open_ns, s.close_ns
        self.first, self.open, self.close = lo, op, cl

    def lookup(self, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if days.size == 0:
            return np.zeros(days.shape, dtype=I64), np.zeros(days.shape, dtype=I64)
        self.cover(int(days.min()), int(days.max()))
        k = days - self.first
        return self.open[k], self.close[k]


_SESSIONS: dict[str, _Sessions] = {}


def session_table(exchange: str) -> _Sessions:
    """The session table of an exchange (NSE for any other; grown as asked)."""
    name = exchange if exchange in ("NSE", "BSE") else "NSE"
    table = _SESSIONS.get(name)
    if table is None:
        table = _SESSIONS[name] = _Sessions(name)
    return table


def session_closes(days: np.ndarray, exchange: str = "NSE") -> np.ndarray:
    """Session close (ns) of each IST day number in ``days`` (-1 where the market is closed)."""
    return session_table(exchange).lookup(np.asarray(days, dtype=I64))[1]


def session_bounds(days: np.ndarray, exchange: str = "NSE") -> tuple[np.ndarray, np.ndarray]:
    """(open, close) ns of each IST day number (-1, -1 where the market is closed)."""
    return session_table(exchange).lookup(np.asarray(days, dtype=I64))


def ist_day(ts: np.ndarray) -> np.ndarray:
    """IST day numbers (days since 1970-01-01) of UTC-ns times."""
    return (ts + IST_OFFSET_NS) // NS_PER_DAY


def bar_ends(bucket: np.ndarray, timeframe: int, exchange: str = "NSE") -> np.ndarray:
    """When each bar ends: ``bucket + timeframe``, cut at its day's session close (the rule of
    :class:`~mandi.pipeline.timeframes.TimeframeBuilder`)."""
    end = bucket + I64(timeframe * NS_PER_SECOND)
    if len(bucket) == 0:
        return end
    close = session_closes(ist_day(bucket), exchange)
    cut = (close > bucket) & (close < end)
    return np.where(cut, close, end)


@dataclass(eq=False)
class BarSeries:
    """Confirmed bars of one instrument at one timeframe, oldest first (NumPy int64 columns;
    prices in paise, times in ns UTC)."""

    instrument: AnyInstrument
    timeframe: int
    bucket: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    oi: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=I64))
    end: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=I64))

    def __post_init__(self) -> None:
        n = len(self.bucket)
        cols = {}
        for name in ("bucket", "open", "high", "low", "close", "volume", "oi"):
            a = np.asarray(getattr(self, name))
            if name == "oi" and len(a) == 0:
                a = np.zeros(n, dtype=I64)
            if len(a) != n:
                raise BacktestError(
                    f"bars of {self.symbol}: column {name} has {len(a)} rows, not {n}"
                )
            cols[name] = np.ascontiguousarray(a, dtype=I64)
        for name, a in cols.items():
            setattr(self, name, a)
        if self.timeframe <= 0:
            raise BacktestError(
                f"bars of {self.symbol}: timeframe must be positive, got {self.timeframe}"
            )
        if n and np.any(np.diff(self.bucket) <= 0):
            i = int(np.argmax(np.diff(self.bucket) <= 0)) + 1
            raise BacktestError(
                f"bars of {self.symbol}: times must increase strictly (row {i} repeats or "
                "goes back)"
            )
        if len(self.end) != n:
            self.end = bar_ends(self.bucket, self.timeframe, self.instrument.exchange)

    # --- views ------------------------------------------------------------------------------------
    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    @property
    def token(self) -> int:
        return self.instrument.token

    def __len__(self) -> int:
        return len(self.bucket)

    def candle(self, i: int) -> Candle:
        inst = self.instrument
        return Candle(
            inst.token,
            inst.exchange,
            self.timeframe,
            int(self.bucket[i]),
            int(self.open[i]),
            int(self.high[i]),
            int(self.low[i]),
            int(self.close[i]),
            int(self.volume[i]),
            int(self.oi[i]),
            1,
            True,
        )

    def candles(self) -> list[Candle]:
        inst, tf = self.instrument, self.timeframe
        tok, ex = inst.token, inst.exchange
        return [
            Candle(tok, ex, tf, b, o, h, lo, c, v, oi, 1, True)
            for b, o, h, lo, c, v, oi in zip(
                self.bucket.tolist(),
                self.open.tolist(),
                self.high.tolist(),
                self.low.tolist(),
                self.close.tolist(),
                self.volume.tolist(),
                self.oi.tolist(),
                strict=True,
            )
        ]

    def slice(self, start_ns: int | None = None, end_ns: int | None = None) -> BarSeries:
        """Bars with ``start_ns <= bucket < end_ns``."""
        lo = 0 if start_ns is None else int(np.searchsorted(self.bucket, start_ns, "left"))
        hi = len(self) if end_ns is None else int(np.searchsorted(self.bucket, end_ns, "left"))
        return self.take(slice(lo, hi))

    def take(self, sel: Any) -> BarSeries:
        """The bars selected by ``sel`` (a slice or an index array)."""
        return BarSeries(
            self.instrument,
            self.timeframe,
            self.bucket[sel],
            self.open[sel],
            self.high[sel],
            self.low[sel],
            self.close[sel],
            self.volume[sel],
            self.oi[sel],
            self.end[sel],
        )

    def with_instrument(self, inst: AnyInstrument) -> BarSeries:
        return BarSeries(
            inst,
            self.timeframe,
            self.bucket,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.oi,
            self.end,
        )

    @classmethod
    def from_candles(cls, instrument: AnyInstrument, candles: Sequence[Candle]) -> BarSeries:
        if not candles:
            raise BacktestError(f"no bars for {instrument.symbol}")
        tf = candles[0].timeframe
        cols = np.array(
            [(c.bucket, c.open, c.high, c.low, c.close, c.volume, c.oi) for c in candles],
            dtype=I64,
        ).reshape(-1, 7)
        return cls(instrument, tf, *(cols[:, k] for k in range(7)))

    def resample(self, timeframe: int) -> BarSeries:
        """Bigger bars built by the pipeline's own :class:`TimeframeBuilder` (buckets aligned to
        09:15 IST, cut at the session close)."""
        if timeframe == self.timeframe:
            return self
        if timeframe < self.timeframe or (timeframe < 86_400 and timeframe % self.timeframe):
            raise BacktestError(
                f"cannot resample {self.timeframe} s bars of {self.symbol} into {timeframe} s bars "
                "(the new timeframe must be a multiple)"
            )
        tb = TimeframeBuilder([timeframe], emit_forming=False)
        out: list[Candle] = []
        for c in self.candles():
            out += [x for x in tb.handle_candle(c) if x.closed]
        out += [x for x in tb.flush() if x.closed]
        return BarSeries.from_candles(self.instrument, out)


def infer_timeframe(bucket: np.ndarray) -> int:
    """The bar length in seconds: the most common gap between bars of the same day (1 day for
    daily data)."""
    if len(bucket) < 2:
        return 86_400
    gaps = np.diff(bucket)
    same_day = ist_day(bucket[1:]) == ist_day(bucket[:-1])
    intraday = gaps[same_day]
    if len(intraday) == 0:
        return 86_400
    vals, counts = np.unique(intraday, return_counts=True)
    tf = int(vals[np.argmax(counts)] // NS_PER_SECOND)
    return max(tf, 1)


def merge_order(series: Sequence[BarSeries]) -> tuple[np.ndarray, np.ndarray]:
    """The order in which bars of several series become known: by end time, then by start
    (a longer bar ending together with a shorter one comes after it), then by the order the series
    were given. Returns (series index, bar index) arrays."""
    if not series:
        return np.zeros(0, dtype=I64), np.zeros(0, dtype=I64)
    sid = np.concatenate([np.full(len(s), k, dtype=I64) for k, s in enumerate(series)])
    idx = np.concatenate([np.arange(len(s), dtype=I64) for s in series])
    end = np.concatenate([s.end for s in series])
    start = np.concatenate([s.bucket for s in series])
    order = np.lexsort((sid, -start, end))
    return sid[order], idx[order]


def clip(series: Iterable[BarSeries], start_ns: int | None, end_ns: int | None) -> list[BarSeries]:
    return [s.slice(start_ns, end_ns) for s in series]
