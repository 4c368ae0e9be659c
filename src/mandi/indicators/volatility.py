"""Volatility indicators: Bollinger Bands, ATR, SuperTrend."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from mandi.indicators._base import (
    Indicator,
    check_factor,
    check_period,
    finite,
    wilder_weights,
)
from mandi.indicators.moving import CloseIndicator


class BollingerValue(NamedTuple):
    """Upper band, middle (the SMA) and lower band."""

    upper: float
    middle: float
    lower: float


class BollingerBands(CloseIndicator):
    """Bollinger Bands (TA-Lib ``BBANDS`` with an SMA middle).

    Parameters
    ----------
    period : int
        Window length, 20 by default.
    nbdev : float
        Band width in standard deviations, 2 by default (same above and below).

    Notes
    -----
    ``middle = SMA(period)``, ``σ`` = the *population* standard deviation of the window (divide by
    ``n``, as TA-Lib and backtrader), ``upper/lower = middle ± nbdev·σ``. The running sums are kept
    relative to a recent input and rebuilt from the window every ``period`` updates, so the
    variance does not suffer the cancellation of raw sums of squares of large prices (TA-Lib's
    own σ carries that error, ~1e-7 relative on NIFTY levels; the bands agree to ~1e-12).
    """

    kind = "BBANDS"
    outputs = ("upper", "middle", "lower")
    __slots__ = ("_buf", "_i", "_n", "_ref", "_sy", "_syy", "_value", "nbdev", "period")
    _state = ("_buf", "_i", "_n", "_ref", "_sy", "_syy", "_value")

    def __init__(self, period: int = 20, nbdev: float = 2.0) -> None:
        self.period = check_period("BBANDS", "period", period)
        self.nbdev = check_factor("BBANDS", "nbdev", nbdev)
        self.reset()

    def params(self) -> tuple[int | float, ...]:
        return (self.period, self.nbdev)

    def reset(self) -> None:
        self._buf = [0.0] * self.period
        self._i = 0
        self._n = 0
        self._ref: float | None = None  # the shift the running sums are relative to
        self._sy = 0.0
        self._syy = 0.0
        self._value: BollingerValue | None = None

    @property
    def ready(self) -> bool:
        return self._value is not None

    @property
    def value(self) -> BollingerValue | None:
        """Last confirmed value (None while warming up)."""
        return self._value

    def _sums(self, x: float) -> tuple[float, float, float]:
        ref = x if self._ref is None else self._ref
        y = x - ref
        if self._n < self.period:
            return ref, self._sy + y, self._syy + y * y
        old = self._buf[self._i] - ref
        return ref, self._sy + (y - old), self._syy + (y * y - old * old)

    def _bands(self, ref: float, sy: float, syy: float) -> BollingerValue:
        p = self.period
        mean = sy / p
        var = syy / p - mean * mean
        dev = self.nbdev * math.sqrt(var) if var > 0.0 else 0.0
        mid = ref + mean
        return BollingerValue(mid + dev, mid, mid - dev)

    def update(self, value: float) -> BollingerValue | None:
        """Add a confirmed close; return ``BollingerValue`` or None while warming up."""
        x = finite("BBANDS", "value", value)
        ref, sy, syy = self._sums(x)
        p = self.period
        i = self._i
        self._buf[i] = x
        self._i = i = i + 1 if i + 1 < p else 0
        if self._n < p:
            self._n += 1
        out = self._bands(ref, sy, syy) if self._n == p else None
        if i == 0:
            # Once per window: re-centre the sums on the newest input and rebuild them from the
            # window, so rounding never accumulates (amortised O(1)). A plain left-to-right sum
            # of ``period`` small deviations (error ~ period·ε·max|y|, far below 1e-12 of the
            # price) — the batch kernel does the same sum, so the two agree bit for bit.
            ref = x
            ys = [b - ref for b in self._buf]
            sy = syy = 0.0
            for y in ys:
                sy += y
                syy += y * y
        self._ref, self._sy, self._syy = ref, sy, syy
        if out is not None:
            self._value = out
        return out

    def peek(self, value: float) -> BollingerValue | None:
        """The bands if ``value`` were confirmed now; changes nothing."""
        x = finite("BBANDS", "value", value)
        if self._n + 1 < self.period:
            return None
        return self._bands(*self._sums(x))


def true_range(high: float, low: float, prev_close: float) -> float:
    """``max(high, prev_close) − min(low, prev_close)`` (= TA-Lib ``TRANGE``)."""
    return (high if high > prev_close else prev_close) - (low if low < prev_close else prev_close)


class ATR(Indicator):
    """Average True Range with Wilder's smoothing (TA-Lib ``ATR``).

    Parameters
    ----------
    period : int
        Smoothing length, 14 by default.

    Notes
    -----
    The true range needs the previous close, so the first bar yields none; the first ATR (at
    bar ``period + 1``) is the mean of the first ``period`` true ranges, then
    ``ATR_t = (ATR_{t−1}·(period−1) + TR_t) / period`` (computed as ``ATR·a + TR·b``, see
    :class:`~mandi.indicators.RSI`). Takes a candle (or ``update_hlc``).
    """

    kind = "ATR"
    multi_input = True
    __slots__ = ("_a", "_b", "_n", "_prev", "_sum", "_value", "period")
    _state = ("_prev", "_n", "_sum", "_value")

    def __init__(self, period: int = 14) -> None:
        self.period = check_period("ATR", "period", period)
        self._a, self._b = wilder_weights(self.period)
        self.reset()

    def params(self) -> tuple[int, ...]:
        return (self.period,)

    def reset(self) -> None:
        self._prev: float | None = None
        self._n = 0
        self._sum = 0.0
        self._value: float | None = None

    @property
    def ready(self) -> bool:
        return self._value is not None

    @property
    def value(self) -> float | None:
        """Last confirmed value (None while warming up)."""
        return self._value

    def _next(self, h: float, lo: float) -> tuple[float, float | None]:
        """(new warm-up sum, ATR or None) for a bar, from the current state."""
        prev = self._prev
        if prev is None:
            return 0.0, None
        tr = true_range(h, lo, prev)
        v = self._value
        p = self.period
        if v is not None:
            return self._sum, v * self._a + tr * self._b
        s = self._sum + tr
        return s, (s / p if self._n + 1 == p else None)

    def _check(self, high: Any, low: Any, close: Any) -> tuple[float, float, float]:
        return finite("ATR", "high", high), finite("ATR", "low", low), finite("ATR", "close", close)

    def update_hlc(self, high: float, low: float, close: float) -> float | None:
        """Add a confirmed bar; return the ATR or None while warming up."""
        h, lo, c = self._check(high, low, close)
        had_prev = self._prev is not None
        self._sum, v = self._next(h, lo)
        if had_prev and self._value is None:
            self._n += 1
        self._prev = c
        if v is not None:
            self._value = v
        return v

    def peek_hlc(self, high: float, low: float, close: float) -> float | None:
        """The ATR if this bar were confirmed now; changes nothing."""
        h, lo, _ = self._check(high, low, close)
        return self._next(h, lo)[1]

    def update(self, candle: Any) -> float | None:
        """:meth:`update_hlc` with a candle's high, low and close."""
        return self.update_hlc(candle.high, candle.low, candle.close)

    def peek(self, candle: Any) -> float | None:
        """:meth:`peek_hlc` with a candle's high, low and close."""
        return self.peek_hlc(candle.high, candle.low, candle.close)

    update_candle = update
    peek_candle = peek


class SuperTrendValue(NamedTuple):
    """The SuperTrend line and its direction (+1 up-trend: line below price; −1 down-trend)."""

    value: float
    direction: float


class SuperTrend(Indicator):
    """SuperTrend on Wilder's ATR (the usual definition, as TradingView's ``ta.supertrend``).

    Parameters
    ----------
    period : int
        ATR length, 10 by default.
    multiplier : float
        Band distance in ATRs, 3 by default.

    Notes
    -----
    With ``hl2 = (high + low)/2`` and the ATR of :class:`ATR`: basic bands ``hl2 ± m·ATR``. The
    final upper band only moves down, unless the previous close broke above it (then it takes the
    basic band); the final lower band only moves up, unless the previous close broke below it.
    In a down-trend the line is the final upper band and the trend turns up when the close rises
    above it; in an up-trend the line is the final lower band and the trend turns down when the
    close falls below it. The first value (the ATR's first bar) starts as a down-trend on the
    upper band. TA-Lib has no SuperTrend.
    """

    kind = "SUPERTREND"
    multi_input = True
    outputs = ("value", "direction")
    __slots__ = ("_atr", "_dir", "_lower", "_prev", "_upper", "_value", "multiplier", "period")
    _state = ("_prev", "_upper", "_lower", "_dir", "_value")

    def __init__(self, period: int = 10, multiplier: float = 3.0) -> None:
        self.period = check_period("SUPERTREND", "period", period)
        self.multiplier = check_factor("SUPERTREND", "multiplier", multiplier)
        self._atr = ATR(self.period)
        self.reset()

    def params(self) -> tuple[int | float, ...]:
        return (self.period, self.multiplier)

    def reset(self) -> None:
        self._atr.reset()
        self._prev: float | None = None
        self._upper = 0.0
        self._lower = 0.0
        self._dir = 0.0  # 0 until the first value
        self._value: SuperTrendValue | None = None

    @property
    def ready(self) -> bool:
        return self._value is not None

    @property
    def value(self) -> SuperTrendValue | None:
        """Last confirmed value (None while warming up)."""
        return self._value

    def get_state(self) -> list[Any]:
        return [self._atr.get_state(), *super().get_state()]

    def set_state(self, state: list[Any]) -> None:
        self._atr.set_state(state[0])
        super().set_state(state[1:])

    def _next(self, h: float, lo: float, c: float, atr: float) -> tuple[float, float, float]:
        """(final upper, final lower, direction) for a bar whose ATR is ``atr``."""
        mid = (h + lo) / 2.0
        up = mid + self.multiplier * atr
        dn = mid - self.multiplier * atr
        if self._dir == 0.0:
            return up, dn, -1.0
        pu, pl, pc = self._upper, self._lower, self._prev
        assert pc is not None
        if not (up < pu or pc > pu):
            up = pu
        if not (dn > pl or pc < pl):
            dn = pl
        if self._dir < 0:
            return up, dn, (1.0 if c > up else -1.0)
        return up, dn, (-1.0 if c < dn else 1.0)

    def _check(self, high: Any, low: Any, close: Any) -> tuple[float, float, float]:
        name = "SUPERTREND"
        return finite(name, "high", high), finite(name, "low", low), finite(name, "close", close)

    def update_hlc(self, high: float, low: float, close: float) -> SuperTrendValue | None:
        """Add a confirmed bar; return ``SuperTrendValue`` or None while warming up."""
        h, lo, c = self._check(high, low, close)
        atr = self._atr.update_hlc(h, lo, c)
        out = None
        if atr is not None:
            self._upper, self._lower, self._dir = up, dn, d = self._next(h, lo, c, atr)
            self._value = out = SuperTrendValue(dn if d > 0 else up, d)
        self._prev = c
        return out

    def peek_hlc(self, high: float, low: float, close: float) -> SuperTrendValue | None:
        """The value if this bar were confirmed now; changes nothing."""
        h, lo, c = self._check(high, low, close)
        atr = self._atr.peek_hlc(h, lo, c)
        if atr is None:
            return None
        up, dn, d = self._next(h, lo, c, atr)
        return SuperTrendValue(dn if d > 0 else up, d)

    def update(self, candle: Any) -> SuperTrendValue | None:
        """:meth:`update_hlc` with a candle's high, low and close."""
        return self.update_hlc(candle.high, candle.low, candle.close)

    def peek(self, candle: Any) -> SuperTrendValue | None:
        """:meth:`peek_hlc` with a candle's high, low and close."""
        return self.peek_hlc(candle.high, candle.low, candle.close)

    update_candle = update
    peek_candle = peek
