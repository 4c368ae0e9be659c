"""Volume indicators: session-anchored VWAP and OBV."""

from __future__ import annotations

from typing import Any

from mandi.core.calendar import session_anchor_ns
from mandi.indicators._base import Indicator, IndicatorInputError, finite


class VWAP(Indicator):
    """Volume-weighted average price, anchored at each session's 09:15 IST open.

    Notes
    -----
    ``VWAP = Σ tp·volume / Σ volume`` over the candles of the current session, with the typical
    price ``tp = (high + low + close)/3``. The sums restart when a candle's ``bucket`` falls on a
    new IST session (:func:`mandi.core.calendar.session_anchor_ns`). There is no value (None)
    while the session has traded no volume — an index such as NIFTY never has one. TA-Lib has no
    VWAP. Takes a candle (or ``update_bar``).
    """

    kind = "VWAP"
    multi_input = True
    __slots__ = ("_anchor", "_pv", "_v", "_value")
    _state = ("_anchor", "_pv", "_v", "_value")

    def __init__(self) -> None:
        self.reset()

    def params(self) -> tuple[int, ...]:
        return ()

    def reset(self) -> None:
        self._anchor: int | None = None
        self._pv = 0.0
        self._v = 0.0
        self._value: float | None = None

    @property
    def ready(self) -> bool:
        return self._value is not None

    @property
    def value(self) -> float | None:
        """Last confirmed value (None while warming up)."""
        return self._value

    def _next(
        self, high: Any, low: Any, close: Any, volume: Any, bucket: int
    ) -> tuple[int, float, float, float | None]:
        h = finite("VWAP", "high", high)
        lo = finite("VWAP", "low", low)
        c = finite("VWAP", "close", close)
        v = finite("VWAP", "volume", volume)
        if v < 0:
            raise IndicatorInputError("VWAP", "volume", volume, "must be >= 0")
        anchor = session_anchor_ns(int(bucket))
        pv, sv = (self._pv, self._v) if anchor == self._anchor else (0.0, 0.0)
        pv += (h + lo + c) / 3.0 * v
        sv += v
        return anchor, pv, sv, (pv / sv if sv > 0.0 else None)

    def update_bar(
        self, high: float, low: float, close: float, volume: float, bucket: int
    ) -> float | None:
        """Add a confirmed bar starting at ``bucket`` (ns UTC); return the VWAP or None."""
        self._anchor, self._pv, self._v, out = self._next(high, low, close, volume, bucket)
        self._value = out
        return out

    def peek_bar(
        self, high: float, low: float, close: float, volume: float, bucket: int
    ) -> float | None:
        """The VWAP if this bar were confirmed now; changes nothing."""
        return self._next(high, low, close, volume, bucket)[3]

    def update(self, candle: Any) -> float | None:
        """:meth:`update_bar` with a candle."""
        return self.update_bar(candle.high, candle.low, candle.close, candle.volume, candle.bucket)

    def peek(self, candle: Any) -> float | None:
        """:meth:`peek_bar` with a candle."""
        return self.peek_bar(candle.high, candle.low, candle.close, candle.volume, candle.bucket)

    update_candle = update
    peek_candle = peek


class OBV(Indicator):
    """On-Balance Volume (TA-Lib ``OBV``).

    Notes
    -----
    The first bar's OBV is its volume; then the volume is added when the close rises, subtracted
    when it falls and ignored when it is unchanged. Ready from the first bar. Takes a candle (or
    ``update_cv``).
    """

    kind = "OBV"
    multi_input = True
    __slots__ = ("_prev", "_value")
    _state = ("_prev", "_value")

    def __init__(self) -> None:
        self.reset()

    def params(self) -> tuple[int, ...]:
        return ()

    def reset(self) -> None:
        self._prev: float | None = None
        self._value: float | None = None

    @property
    def ready(self) -> bool:
        return self._value is not None

    @property
    def value(self) -> float | None:
        """Last confirmed value (None before the first bar)."""
        return self._value

    def _next(self, close: Any, volume: Any) -> tuple[float, float]:
        c = finite("OBV", "close", close)
        v = finite("OBV", "volume", volume)
        prev, obv = self._prev, self._value
        if prev is None or obv is None:
            return c, v
        if c > prev:
            return c, obv + v
        if c < prev:
            return c, obv - v
        return c, obv

    def update_cv(self, close: float, volume: float) -> float:
        """Add a confirmed bar's close and volume; return the OBV."""
        self._prev, v = self._next(close, volume)
        self._value = v
        return v

    def peek_cv(self, close: float, volume: float) -> float:
        """The OBV if this bar were confirmed now; changes nothing."""
        return self._next(close, volume)[1]

    def update(self, candle: Any) -> float:
        """:meth:`update_cv` with a candle's close and volume."""
        return self.update_cv(candle.close, candle.volume)

    def peek(self, candle: Any) -> float:
        """:meth:`peek_cv` with a candle's close and volume."""
        return self.peek_cv(candle.close, candle.volume)

    update_candle = update
    peek_candle = peek
