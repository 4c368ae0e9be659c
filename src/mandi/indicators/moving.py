"""Moving averages of one input: SMA, EMA, WMA."""

from __future__ import annotations

from typing import Any

import numpy as np

from mandi.indicators._base import Indicator, check_period, finite


class CloseIndicator(Indicator):
    """An indicator of one number per candle (the close, unless fed by hand)."""

    __slots__ = ()

    def update(self, value: float) -> Any:
        raise NotImplementedError

    def peek(self, value: float) -> Any:
        raise NotImplementedError

    def update_candle(self, candle: Any) -> Any:
        """:meth:`update` with ``candle.close``."""
        return self.update(candle.close)

    def peek_candle(self, candle: Any) -> Any:
        """:meth:`peek` with ``candle.close``."""
        return self.peek(candle.close)


class SMA(CloseIndicator):
    """Simple moving average: the mean of the last ``period`` inputs.

    Parameters
    ----------
    period : int
        Window length (≥ 1).

    Notes
    -----
    ``SMA_t = (x_{t-period+1} + … + x_t) / period``, first value at the ``period``-th input
    (TA-Lib ``SMA``). A running sum over a ring buffer makes each update O(1); integer inputs
    (prices in paise) keep the sum exact.
    """

    kind = "SMA"
    __slots__ = ("_buf", "_i", "_n", "_sum", "_value", "period")
    _state = ("_buf", "_i", "_n", "_sum", "_value")

    def __init__(self, period: int = 20) -> None:
        self.period = check_period("SMA", "period", period)
        self.reset()

    def params(self) -> tuple[int, ...]:
        return (self.period,)

    def reset(self) -> None:
        self._buf = [0.0] * self.period
        self._i = 0
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

    def update(self, value: float) -> float | None:
        """Add a confirmed input; return the new SMA or None while warming up."""
        t = type(value)  # the common inputs without a call: int paise, finite floats
        if t is int and -(2**53) <= value <= 2**53:
            x = float(value)
        elif t is float and value - value == 0.0:
            x = value
        else:
            x = finite("SMA", "value", value)
        p = self.period
        i = self._i
        buf = self._buf
        if self._n == p:  # warm (every update but the first ``period``): one path, no branches
            total = self._sum = self._sum + (x - buf[i])
            buf[i] = x
            self._i = i + 1 if i + 1 < p else 0
            v = self._value = total / p
            return v
        self._n += 1
        self._sum += x
        buf[i] = x
        self._i = i + 1 if i + 1 < p else 0
        if self._n == p:
            self._value = self._sum / p
        return self._value

    def seek(self, x: Any, i: int, values: Any) -> None:
        """Set the state to that of a fresh SMA updated with ``x[0]`` … ``x[i-1]``.

        ``x``: integer inputs (NumPy int64, e.g. closes in paise) whose window sums stay below
        2**53, so that the running float sum equals the exact sum of the window; ``values``:
        this SMA over ``x`` (:func:`mandi.indicators.batch.sma`, bit-identical to updating one
        input at a time). Lets a backtest skip the bars where a strategy only updates its
        averages (:meth:`mandi.strategy.base.Strategy.compile_bars`)."""
        p = self.period
        n = min(i, p)
        window = x[i - n : i].astype(np.float64)
        k = i % p
        if n == p:  # input j sits in slot j % p of the ring
            self._buf = window[p - k :].tolist() + window[: p - k].tolist()
        else:
            self._buf = window.tolist() + [0.0] * (p - n)
        self._i = k
        self._n = n
        self._sum = sum(self._buf)  # whole numbers below 2**53: every partial sum is exact
        self._value = float(values[i - 1]) if n == p else None

    def peek(self, value: float) -> float | None:
        """The SMA if ``value`` were confirmed now; changes nothing."""
        x = finite("SMA", "value", value)
        p = self.period
        if self._n < p:
            return (self._sum + x) / p if self._n + 1 == p else None
        return (self._sum + (x - self._buf[self._i])) / p


class EMA(CloseIndicator):
    """Exponential moving average, seeded like TA-Lib.

    Parameters
    ----------
    period : int
        Window length (≥ 1); smoothing ``k = 2 / (period + 1)``.

    Notes
    -----
    The first value (at the ``period``-th input) is the SMA of the first ``period`` inputs; then
    ``EMA_t = (x_t − EMA_{t−1}) · k + EMA_{t−1}`` (TA-Lib ``EMA``, default compatibility).
    """

    kind = "EMA"
    __slots__ = ("_k", "_n", "_sum", "_value", "period")
    _state = ("_n", "_sum", "_value")

    def __init__(self, period: int = 20) -> None:
        self.period = check_period("EMA", "period", period)
        self._k = 2.0 / (self.period + 1)
        self.reset()

    def params(self) -> tuple[int, ...]:
        return (self.period,)

    def reset(self) -> None:
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

    def update(self, value: float) -> float | None:
        """Add a confirmed input; return the new EMA or None while warming up."""
        x = finite("EMA", "value", value)
        v = self._value
        if v is not None:
            self._value = v = (x - v) * self._k + v
            return v
        self._n += 1
        self._sum += x
        if self._n == self.period:
            self._value = self._sum / self.period
        return self._value

    def seek(self, x: Any, i: int, values: Any) -> None:
        """Set the state to that of a fresh EMA updated with ``x[0]`` … ``x[i-1]`` (integer
        inputs summing exactly below 2**53; ``values``: :func:`mandi.indicators.batch.ema` of
        ``x``) — see :meth:`SMA.seek`."""
        p = self.period
        n = min(i, p)
        self._n = n
        self._sum = float(int(x[:n].sum()))
        self._value = float(values[i - 1]) if i >= p else None

    def peek(self, value: float) -> float | None:
        """The EMA if ``value`` were confirmed now; changes nothing."""
        x = finite("EMA", "value", value)
        v = self._value
        if v is not None:
            return (x - v) * self._k + v
        return (self._sum + x) / self.period if self._n + 1 == self.period else None


class WMA(CloseIndicator):
    """Linearly weighted moving average (TA-Lib ``WMA``).

    Parameters
    ----------
    period : int
        Window length (≥ 1).

    Notes
    -----
    ``WMA_t = Σ_{j=1..n} j · x_{t−n+j} / (n(n+1)/2)``: the newest input weighs ``n``, the oldest 1.
    O(1) update: with ``S`` the plain sum and ``W`` the weighted sum of the window,
    ``W' = W − S + n·x`` and ``S' = S − x_old + x``.
    """

    kind = "WMA"
    __slots__ = ("_buf", "_div", "_i", "_n", "_sum", "_value", "_wsum", "period")
    _state = ("_buf", "_i", "_n", "_sum", "_wsum", "_value")

    def __init__(self, period: int = 20) -> None:
        self.period = check_period("WMA", "period", period)
        self._div = self.period * (self.period + 1) / 2.0
        self.reset()

    def params(self) -> tuple[int, ...]:
        return (self.period,)

    def reset(self) -> None:
        self._buf = [0.0] * self.period
        self._i = 0
        self._n = 0
        self._sum = 0.0
        self._wsum = 0.0
        self._value: float | None = None

    @property
    def ready(self) -> bool:
        return self._value is not None

    @property
    def value(self) -> float | None:
        """Last confirmed value (None while warming up)."""
        return self._value

    def update(self, value: float) -> float | None:
        """Add a confirmed input; return the new WMA or None while warming up."""
        x = finite("WMA", "value", value)
        p = self.period
        i = self._i
        if self._n < p:
            self._n += 1
            self._wsum += self._n * x
            self._sum += x
        else:
            self._wsum += p * x - self._sum
            self._sum += x - self._buf[i]
        self._buf[i] = x
        self._i = i + 1 if i + 1 < p else 0
        if self._n == p:
            self._value = self._wsum / self._div
        return self._value

    def peek(self, value: float) -> float | None:
        """The WMA if ``value`` were confirmed now; changes nothing."""
        x = finite("WMA", "value", value)
        p = self.period
        if self._n < p:
            return (self._wsum + p * x) / self._div if self._n + 1 == p else None
        return (self._wsum + (p * x - self._sum)) / self._div
