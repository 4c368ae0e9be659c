"""Trend strength: ADX with +DI and −DI."""

from __future__ import annotations

from typing import Any, NamedTuple

from mandi.indicators._base import Indicator, check_period, finite
from mandi.indicators.volatility import true_range

#: TA-Lib treats |v| < 1e-14 as zero when it divides by a smoothed range.
TA_EPSILON = 1e-14


class ADXValue(NamedTuple):
    """Average directional index and the two directional indicators."""

    adx: float
    plus_di: float
    minus_di: float


def directional_move(dh: float, dl: float) -> tuple[float, float]:
    """(+DM, −DM) from ``dh = high − prev_high`` and ``dl = prev_low − low`` (Wilder/TA-Lib):
    only the larger positive move counts, and neither on a tie."""
    if dl > 0.0 and dh < dl:
        return 0.0, dl
    if dh > 0.0 and dh > dl:
        return dh, 0.0
    return 0.0, 0.0


class ADX(Indicator):
    """Average Directional Index, exactly as TA-Lib ``ADX`` (with ``PLUS_DI``/``MINUS_DI``).

    Parameters
    ----------
    period : int
        Wilder length, 14 by default.

    Notes
    -----
    +DM, −DM and TR of each bar after the first are smoothed as Wilder *sums*: the first sum is
    the plain sum of ``period − 1`` values, then ``S_t = S_{t−1} − S_{t−1}/period + v_t``.
    ``±DI = 100·S(±DM)/S(TR)`` and ``DX = 100·|+DI − −DI| / (+DI + −DI)``. The first ADX is the
    mean of the first ``period`` DX values (bar ``2·period``), then
    ``ADX_t = (ADX_{t−1}·(period−1) + DX_t) / period``. As in TA-Lib, a bar whose smoothed TR (or
    DI sum) is zero has no DX: it adds nothing to the first mean and leaves the ADX unchanged;
    its DIs are reported as 0. All three outputs appear together at bar ``2·period``.
    """

    kind = "ADX"
    multi_input = True
    outputs = ("adx", "plus_di", "minus_di")
    __slots__ = ("_adx", "_dx_sum", "_mdm", "_n", "_pdm", "_prev", "_tr", "_value", "period")
    _state = ("_prev", "_n", "_pdm", "_mdm", "_tr", "_dx_sum", "_adx", "_value")

    def __init__(self, period: int = 14) -> None:
        self.period = check_period("ADX", "period", period)
        self.reset()

    def params(self) -> tuple[int, ...]:
        return (self.period,)

    def reset(self) -> None:
        self._prev: list[float] | None = None  # previous high, low, close
        self._n = 0  # bars after the first
        self._pdm = 0.0
        self._mdm = 0.0
        self._tr = 0.0
        self._dx_sum = 0.0
        self._adx: float | None = None
        self._value: ADXValue | None = None

    @property
    def ready(self) -> bool:
        return self._value is not None

    @property
    def value(self) -> ADXValue | None:
        """Last confirmed value (None while warming up)."""
        return self._value

    def _next(
        self, h: float, lo: float
    ) -> tuple[float, float, float, float, float | None, ADXValue | None]:
        """(pdm, mdm, tr, dx_sum, adx, output) after a bar, from the current state."""
        prev = self._prev
        assert prev is not None
        pdm, mdm, tr = self._pdm, self._mdm, self._tr
        p = self.period
        n = self._n + 1
        dp, dm = directional_move(h - prev[0], prev[1] - lo)
        r = true_range(h, lo, prev[2])
        if n < p:
            return pdm + dp, mdm + dm, tr + r, 0.0, None, None
        pdm = pdm - pdm / p + dp
        mdm = mdm - mdm / p + dm
        tr = tr - tr / p + r
        dx = None
        pdi = mdi = 0.0
        if not -TA_EPSILON < tr < TA_EPSILON:
            mdi = 100.0 * (mdm / tr)
            pdi = 100.0 * (pdm / tr)
            s = mdi + pdi
            if not -TA_EPSILON < s < TA_EPSILON:
                dx = 100.0 * (abs(mdi - pdi) / s)
        adx = self._adx
        dx_sum = self._dx_sum
        if adx is None:
            if dx is not None:
                dx_sum += dx
            if n < 2 * p - 1:
                return pdm, mdm, tr, dx_sum, None, None
            adx = dx_sum / p
        elif dx is not None:
            adx = (adx * (p - 1) + dx) / p
        return pdm, mdm, tr, dx_sum, adx, ADXValue(adx, pdi, mdi)

    def _check(self, high: Any, low: Any, close: Any) -> tuple[float, float, float]:
        return finite("ADX", "high", high), finite("ADX", "low", low), finite("ADX", "close", close)

    def update_hlc(self, high: float, low: float, close: float) -> ADXValue | None:
        """Add a confirmed bar; return ``ADXValue`` or None while warming up."""
        h, lo, c = self._check(high, low, close)
        out = None
        if self._prev is not None:
            self._pdm, self._mdm, self._tr, self._dx_sum, self._adx, out = self._next(h, lo)
            self._n += 1
            if out is not None:
                self._value = out
        self._prev = [h, lo, c]
        return out

    def peek_hlc(self, high: float, low: float, close: float) -> ADXValue | None:
        """The value if this bar were confirmed now; changes nothing."""
        h, lo, _ = self._check(high, low, close)
        return None if self._prev is None else self._next(h, lo)[5]

    def update(self, candle: Any) -> ADXValue | None:
        """:meth:`update_hlc` with a candle's high, low and close."""
        return self.update_hlc(candle.high, candle.low, candle.close)

    def peek(self, candle: Any) -> ADXValue | None:
        """:meth:`peek_hlc` with a candle's high, low and close."""
        return self.peek_hlc(candle.high, candle.low, candle.close)

    update_candle = update
    peek_candle = peek
