"""One-second (or any base) candles → 60/120/180/300 s (configurable) candles, O(1) per update.

Buckets align to 09:15 IST of the candle's IST date: ``start = anchor + k * timeframe``, so 120 s
buckets start at 09:15, 09:17, ... and 1 h buckets at 09:15, 10:15, ... A daily bucket
(``timeframe >= 86400``) is the IST date itself, starting at its 09:15.

Every base candle updates the forming bucket of each timeframe (a forming candle,
``closed=False``, when ``emit_forming``). A bucket is confirmed (``closed=True``) when

* a base candle of a later bucket arrives for the same token (this alone drives a historical
  resample, which has no clock), or
* time (:meth:`TimeframeBuilder.advance`) reaches its end, where the end is the earlier of
  ``start + timeframe`` and the session close (from the calendar), so the last forming bucket of
  the day is confirmed at the close — 15:30 IST normally, a special session's own close otherwise.

A base candle for a bucket older than the open one, or for a bucket already confirmed by time, is
counted as ``late`` and ignored: a confirmed candle is never changed or emitted twice.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable

from mandi.core.calendar import IST_OFFSET_NS, NS_PER_DAY, ExchangeCalendar, calendar
from mandi.core.clock import NS_PER_SECOND
from mandi.model.market import Candle

DEFAULT_TIMEFRAMES = (60, 120, 180, 300)
_ANCHOR_NS = (9 * 3600 + 15 * 60) * NS_PER_SECOND - IST_OFFSET_NS  # 09:15 IST as UTC offset


def bucket_start(ts_ns: int, timeframe: int) -> int:
    """Start (ns) of the ``timeframe``-second bucket holding ``ts_ns``, aligned to 09:15 IST."""
    day = (ts_ns + IST_OFFSET_NS) // NS_PER_DAY
    anchor = day * NS_PER_DAY + _ANCHOR_NS
    if timeframe >= 86_400:
        return anchor
    tf = timeframe * NS_PER_SECOND
    return anchor + ((ts_ns - anchor) // tf) * tf


class _Bucket:
    __slots__ = ("close", "done", "end", "high", "low", "n", "oi", "open", "start", "volume")

    def __init__(self) -> None:
        self.start = self.end = -1
        self.done = False  # confirmed by time; later data for it is late
        self.open = self.high = self.low = self.close = self.volume = self.oi = self.n = 0


class TimeframeBuilder:
    """Resample closed base candles into several timeframes per token."""

    def __init__(
        self,
        timeframes: Iterable[int] = DEFAULT_TIMEFRAMES,
        cal: ExchangeCalendar | None = None,
        emit_forming: bool = True,
        forming_filter: Callable[[int, str, int], bool] | None = None,
    ) -> None:
        self.timeframes = tuple(sorted(set(timeframes)))
        if not self.timeframes or any(tf <= 0 for tf in self.timeframes):
            raise ValueError(f"timeframes must be positive seconds, got {self.timeframes}")
        self._cal = cal or calendar("NSE")
        self.emit_forming = emit_forming
        # forming candles only for series somebody wants: filter(token, exchange, timeframe)
        self._filter = forming_filter
        self._wanted: dict[tuple[int, int], bool] = {}
        self._series: dict[int, tuple[str, list[_Bucket]]] = {}
        self._close_cache: dict[int, int | None] = {}
        self.rejected: Counter[str] = Counter()
        self.confirmed = 0
        self._earliest_end = 1 << 62  # no open bucket ends before this

    def _session_close(self, ts_ns: int) -> int | None:
        day = (ts_ns + IST_OFFSET_NS) // NS_PER_DAY
        if day not in self._close_cache:
            s = self._cal.session(dt.date(1970, 1, 1) + dt.timedelta(days=day))
            self._close_cache[day] = s.close_ns if s is not None else None
        return self._close_cache[day]

    def _end(self, start: int, tf: int) -> int:
        end = start + tf * NS_PER_SECOND
        close = self._session_close(start)
        if close is not None and start < close < end:
            return close
        return end

    def refresh_forming_filter(self) -> None:
        """Forget cached filter answers (the set of interested consumers changed)."""
        self._wanted.clear()

    def _forming_wanted(self, token: int, exchange: str, tf: int) -> bool:
        key = (token, tf)
        hit = self._wanted.get(key)
        if hit is None:
            assert self._filter is not None
            hit = self._wanted[key] = self._filter(token, exchange, tf)
        return hit

    @staticmethod
    def _candle(token: int, exchange: str, tf: int, b: _Bucket, closed: bool) -> Candle:
        return Candle(
            token,
            exchange,
            tf,
            b.start,
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.oi,
            b.n,
            closed,
        )

    def handle_candle(self, c: Candle) -> list[Candle]:
        """Apply one closed base candle; return confirmed candles then forming updates."""
        entry = self._series.get(c.token)
        if entry is None:
            entry = self._series[c.token] = (c.exchange, [_Bucket() for _ in self.timeframes])
        exchange, buckets = entry
        out: list[Candle] = []
        forming: list[Candle] = []
        ts, token = c.bucket, c.token
        for tf, b in zip(self.timeframes, buckets):  # noqa: B905 - equal by construction
            if (b.start <= ts < b.end or bucket_start(ts, tf) == b.start) and not b.done:
                # same bucket (the second test admits data after a session close the clock
                # has not confirmed yet, e.g. bars after a Muhurat session's official end)
                if c.high > b.high:
                    b.high = c.high
                if c.low < b.low:
                    b.low = c.low
                b.volume += c.volume
                b.n += c.ticks
            else:
                start = bucket_start(ts, tf)
                if start < b.start or (start == b.start and b.done):
                    self.rejected["late"] += 1
                    continue
                if b.start >= 0 and not b.done:
                    out.append(
                        Candle(
                            token,
                            exchange,
                            tf,
                            b.start,
                            b.open,
                            b.high,
                            b.low,
                            b.close,
                            b.volume,
                            b.oi,
                            b.n,
                            True,
                        )
                    )
                    self.confirmed += 1
                b.start, b.end, b.done = start, self._end(start, tf), False
                if b.end < self._earliest_end:
                    self._earliest_end = b.end
                b.open, b.high, b.low = c.open, c.high, c.low
                b.volume, b.n = c.volume, c.ticks
            b.close = c.close
            b.oi = c.oi
            if self.emit_forming and (
                self._filter is None or self._forming_wanted(token, exchange, tf)
            ):
                forming.append(
                    Candle(
                        token,
                        exchange,
                        tf,
                        b.start,
                        b.open,
                        b.high,
                        b.low,
                        b.close,
                        b.volume,
                        b.oi,
                        b.n,
                        False,
                    )
                )
        if forming:
            out += forming
        return out

    def advance(self, now_ns: int) -> list[Candle]:
        """Confirm every bucket whose end is at or before ``now_ns``."""
        if now_ns < self._earliest_end:  # nothing can end yet: O(1) on most calls
            return []
        out: list[Candle] = []
        earliest = 1 << 62
        for token, (exchange, buckets) in self._series.items():
            for tf, b in zip(self.timeframes, buckets, strict=True):
                if b.done or b.start < 0:
                    continue
                if b.end <= now_ns:
                    out.append(self._candle(token, exchange, tf, b, True))
                    self.confirmed += 1
                    b.done = True
                elif b.end < earliest:
                    earliest = b.end
        self._earliest_end = earliest
        return out

    def flush(self) -> list[Candle]:
        """Confirm every open bucket (shutdown)."""
        return self.advance(1 << 62)

    def forming(self, token: int) -> list[Candle]:
        """The current forming candle of every timeframe of ``token``."""
        entry = self._series.get(token)
        if entry is None:
            return []
        exchange, buckets = entry
        return [
            self._candle(token, exchange, tf, b, False)
            for tf, b in zip(self.timeframes, buckets, strict=True)
            if b.start >= 0 and not b.done
        ]
