"""Momentum oscillators: RSI, MACD, Stochastic."""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

from mandi.indicators._base import Indicator, check_period, finite, wilder_weights
from mandi.indicators.moving import CloseIndicator


class RSI(CloseIndicator):
    """Relative Strength Index with Wilder's smoothing (TA-Lib ``RSI``).

    Parameters
    ----------
    period : int
        Smoothing length (≥ 1), 14 by default.

    Notes
    -----
    With ``d_t = x_t − x_{t−1}``, gain ``max(d, 0)`` and loss ``max(−d, 0)``: the first average
    gain/loss is the plain mean of the first ``period`` moves (so the first RSI comes at the
    ``period + 1``-th input), then ``avg_t = (avg_{t−1}·(period−1) + move_t) / period``, computed
    as ``avg_{t−1}·a + move_t·b`` with ``a = (period−1)/period`` and ``b = 1/period`` (the same
    definition; multiplications keep the recursion off the divider's latency, ~1e-16 apart).
    ``RSI = 100 · avg_gain / (avg_gain + avg_loss)``, and 0 when both averages are 0 (as TA-Lib).
    """

    kind = "RSI"
    __slots__ = ("_a", "_b", "_gain", "_loss", "_n", "_prev", "_value", "period")
    _state = ("_prev", "_n", "_gain", "_loss", "_value")

    def __init__(self, period: int = 14) -> None:
        self.period = check_period("RSI", "period", period)
        self._a, self._b = wilder_weights(self.period)
        self.reset()

    def params(self) -> tuple[int, ...]:
        return (self.period,)

    def reset(self) -> None:
        self._prev: float | None = None
        self._n = 0
        self._gain = 0.0
        self._loss = 0.0
        self._value: float | None = None

    @property
    def ready(self) -> bool:
        return self._value is not None

    @property
    def value(self) -> float | None:
        """Last confirmed value (None while warming up)."""
        return self._value

    def _next(self, x: float) -> tuple[int, float, float, float | None]:
        prev = self._prev
        if prev is None:
            return 0, 0.0, 0.0, None
        d = x - prev
        g = d if d > 0.0 else 0.0
        lo = -d if d < 0.0 else 0.0
        p = self.period
        n = self._n
        if n >= p:
            gain = self._gain * self._a + g * self._b
            loss = self._loss * self._a + lo * self._b
        else:
            gain, loss = self._gain + g, self._loss + lo
            n += 1
            if n < p:
                return n, gain, loss, None
            gain /= p
            loss /= p
        s = gain + loss
        return n, gain, loss, (100.0 * (gain / s) if s != 0.0 else 0.0)

    def seek(self, x: Any, i: int, values: Any, gain: Any, loss: Any) -> None:
        """Set the state to that of a fresh RSI updated with ``x[0]`` … ``x[i-1]`` from the
        batch arrays over ``x``: ``values`` (:func:`mandi.indicators.batch.rsi`) and the
        averages (:func:`mandi.indicators.batch.rsi_averages`) — see
        :meth:`mandi.indicators.SMA.seek`."""
        if i == 0:
            self.reset()
            return
        self._prev = float(x[i - 1])
        self._n = min(i - 1, self.period)
        self._gain = float(gain[i - 1])
        self._loss = float(loss[i - 1])
        self._value = float(values[i - 1]) if i - 1 >= self.period else None

    def update(self, value: float) -> float | None:
        """Add a confirmed close; return the new RSI or None while warming up."""
        x = finite("RSI", "value", value)
        self._n, self._gain, self._loss, v = self._next(x)
        self._prev = x
        if v is not None:
            self._value = v
        return v

    def peek(self, value: float) -> float | None:
        """The RSI if ``value`` were confirmed now; changes nothing."""
        return self._next(finite("RSI", "value", value))[3]


class MACDValue(NamedTuple):
    """One MACD output: the line, its signal and their difference."""

    macd: float
    signal: float
    histogram: float


class MACD(CloseIndicator):
    """Moving Average Convergence/Divergence, exactly as TA-Lib ``MACD``.

    Parameters
    ----------
    fast, slow, signal : int
        EMA lengths, 12, 26 and 9 by default (TA-Lib swaps ``fast`` and ``slow`` if given in the
        wrong order, and so do we).

    Notes
    -----
    ``macd = EMA_fast − EMA_slow``, ``signal = EMA_signal(macd)``, ``histogram = macd − signal``,
    every EMA with ``k = 2/(n+1)``. Seeding follows TA-Lib, which aligns both EMAs on the slow
    one's first value: the slow EMA is seeded with the SMA of the first ``slow`` inputs and the
    fast EMA, *at the same input*, with the SMA of the last ``fast`` inputs (not of the first
    ``fast`` — backtrader and pandas differ here for the first few dozen values). The signal EMA
    is seeded with the SMA of the first ``signal`` MACD values. All three outputs appear together
    at input ``slow + signal − 1``.
    """

    kind = "MACD"
    outputs = ("macd", "signal", "histogram")
    __slots__ = (
        "_fast",
        "_kf",
        "_kg",
        "_ks",
        "_m",
        "_n",
        "_recent",
        "_sig",
        "_sig_sum",
        "_slow",
        "_slow_sum",
        "_value",
        "fast",
        "signal",
        "slow",
    )
    _state = ("_n", "_recent", "_slow_sum", "_slow", "_fast", "_m", "_sig_sum", "_sig", "_value")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        fast = check_period("MACD", "fast", fast)
        slow = check_period("MACD", "slow", slow)
        if slow < fast:
            fast, slow = slow, fast
        self.fast, self.slow = fast, slow
        self.signal = check_period("MACD", "signal", signal)
        self._kf = 2.0 / (fast + 1)
        self._ks = 2.0 / (slow + 1)
        self._kg = 2.0 / (self.signal + 1)
        self.reset()

    def params(self) -> tuple[int, ...]:
        return (self.fast, self.slow, self.signal)

    def reset(self) -> None:
        self._n = 0  # inputs seen, counted only until the slow EMA is seeded
        self._recent: list[float] = []  # the last `fast` inputs, kept only while warming up
        self._slow_sum = 0.0
        self._slow: float | None = None
        self._fast = 0.0
        self._m = 0  # MACD values seen, counted until the signal is seeded
        self._sig_sum = 0.0
        self._sig: float | None = None
        self._value: MACDValue | None = None

    @property
    def ready(self) -> bool:
        return self._value is not None

    @property
    def value(self) -> MACDValue | None:
        """Last confirmed value (None while warming up)."""
        return self._value

    def _signal(self, line: float) -> tuple[float, MACDValue | None]:
        sig = self._sig
        if sig is not None:
            sig = (line - sig) * self._kg + sig
        elif self._m + 1 == self.signal:
            sig = (self._sig_sum + line) / self.signal
        else:
            return self._sig_sum + line, None
        return sig, MACDValue(line, sig, line - sig)

    def update(self, value: float) -> MACDValue | None:
        """Add a confirmed close; return ``MACDValue`` or None while warming up."""
        x = finite("MACD", "value", value)
        slow = self._slow
        if slow is not None:
            self._slow = slow = (x - slow) * self._ks + slow
            self._fast = fast = (x - self._fast) * self._kf + self._fast
        else:
            self._n += 1
            self._slow_sum += x
            self._recent.append(x)
            if len(self._recent) > self.fast:
                del self._recent[0]
            if self._n < self.slow:
                return None
            self._slow = slow = self._slow_sum / self.slow
            self._fast = fast = sum(self._recent) / self.fast
            self._recent = []
        line = fast - slow
        s, out = self._signal(line)
        if out is None:
            self._m += 1
            self._sig_sum = s
        else:
            self._sig = s
            self._value = out
        return out

    def peek(self, value: float) -> MACDValue | None:
        """The MACD if ``value`` were confirmed now; changes nothing."""
        x = finite("MACD", "value", value)
        slow = self._slow
        if slow is not None:
            slow = (x - slow) * self._ks + slow
            fast = (x - self._fast) * self._kf + self._fast
        else:
            if self._n + 1 < self.slow:
                return None
            slow = (self._slow_sum + x) / self.slow
            recent = [*self._recent, x][-self.fast :]
            fast = sum(recent) / self.fast
        return self._signal(fast - slow)[1]


class StochasticValue(NamedTuple):
    """Slow %K and %D."""

    k: float
    d: float


class _Window:
    """Sliding max (or min) over the last ``n`` inputs: a monotonic deque, amortised O(1)."""

    @staticmethod
    def push(dq: deque[tuple[int, float]], idx: int, x: float, n: int, is_max: bool) -> float:
        if is_max:
            while dq and dq[-1][1] <= x:
                dq.pop()
        else:
            while dq and dq[-1][1] >= x:
                dq.pop()
        dq.append((idx, x))
        if dq[0][0] <= idx - n:
            dq.popleft()
        return dq[0][1]

    @staticmethod
    def preview(dq: deque[tuple[int, float]], idx: int, x: float, n: int, is_max: bool) -> float:
        # Only the front can have expired (one input leaves per step); the next is the extreme
        # of the rest of the window because the deque is monotonic.
        best = x
        for j, v in dq:
            if j > idx - n:
                best = max(best, v) if is_max else min(best, v)
                break
        return best


class Stochastic(Indicator):
    """Slow stochastic oscillator, as TA-Lib ``STOCH`` with SMA smoothing (its default).

    Parameters
    ----------
    fastk_period : int
        Look-back of the highest high / lowest low, 5 by default (TA-Lib's default).
    slowk_period : int
        SMA length turning fast %K into slow %K, 3 by default.
    slowd_period : int
        SMA length of slow %K giving %D, 3 by default.

    Notes
    -----
    ``fast %K = 100 · (close − LL) / (HH − LL)`` over the last ``fastk_period`` highs and lows
    (0 when ``HH = LL``, as TA-Lib); ``k = SMA_slowk(fast %K)``, ``d = SMA_slowd(k)``. Both
    appear at input ``fastk_period + slowk_period + slowd_period − 2``. Takes a candle.
    """

    kind = "STOCH"
    multi_input = True
    outputs = ("k", "d")
    __slots__ = (
        "_d_buf",
        "_d_sum",
        "_hi",
        "_idx",
        "_k_buf",
        "_k_sum",
        "_lo",
        "_nd",
        "_nk",
        "_value",
        "fastk_period",
        "slowd_period",
        "slowk_period",
    )
    _state = ("_idx", "_hi", "_lo", "_k_buf", "_nk", "_k_sum", "_d_buf", "_nd", "_d_sum", "_value")

    def __init__(self, fastk_period: int = 5, slowk_period: int = 3, slowd_period: int = 3) -> None:
        self.fastk_period = check_period("STOCH", "fastk_period", fastk_period)
        self.slowk_period = check_period("STOCH", "slowk_period", slowk_period)
        self.slowd_period = check_period("STOCH", "slowd_period", slowd_period)
        self.reset()

    def params(self) -> tuple[int, ...]:
        return (self.fastk_period, self.slowk_period, self.slowd_period)

    def reset(self) -> None:
        self._idx = 0
        self._hi: deque[tuple[int, float]] = deque()
        self._lo: deque[tuple[int, float]] = deque()
        self._k_buf = [0.0] * self.slowk_period
        self._nk = 0  # fast %K values seen
        self._k_sum = 0.0
        self._d_buf = [0.0] * self.slowd_period
        self._nd = 0  # slow %K values seen
        self._d_sum = 0.0
        self._value: StochasticValue | None = None

    @property
    def ready(self) -> bool:
        return self._value is not None

    @property
    def value(self) -> StochasticValue | None:
        """Last confirmed value (None while warming up)."""
        return self._value

    @staticmethod
    def _fast_k(close: float, hh: float, ll: float) -> float:
        diff = (hh - ll) / 100.0
        return (close - ll) / diff if diff != 0.0 else 0.0

    @staticmethod
    def _roll(buf: list[float], n: int, total: float, x: float) -> tuple[float, float | None]:
        """(new running sum, SMA or None) after adding ``x`` to a ring of ``len(buf)``."""
        p = len(buf)
        total = total + x if n < p else total + (x - buf[n % p])
        return total, (total / p if n + 1 >= p else None)

    def _check(self, high: Any, low: Any, close: Any) -> tuple[float, float, float]:
        return (
            finite("STOCH", "high", high),
            finite("STOCH", "low", low),
            finite("STOCH", "close", close),
        )

    def update_hlc(self, high: float, low: float, close: float) -> StochasticValue | None:
        """Add a confirmed bar; return ``StochasticValue`` or None while warming up."""
        h, lo, c = self._check(high, low, close)
        idx = self._idx
        self._idx = idx + 1
        n = self.fastk_period
        hh = _Window.push(self._hi, idx, h, n, True)
        ll = _Window.push(self._lo, idx, lo, n, False)
        if idx + 1 < n:
            return None
        fk = self._fast_k(c, hh, ll)
        self._k_sum, k = self._roll(self._k_buf, self._nk, self._k_sum, fk)
        self._k_buf[self._nk % self.slowk_period] = fk
        self._nk += 1
        if k is None:
            return None
        self._d_sum, d = self._roll(self._d_buf, self._nd, self._d_sum, k)
        self._d_buf[self._nd % self.slowd_period] = k
        self._nd += 1
        if d is None:
            return None
        self._value = StochasticValue(k, d)
        return self._value

    def peek_hlc(self, high: float, low: float, close: float) -> StochasticValue | None:
        """The value if this bar were confirmed now; changes nothing."""
        h, lo, c = self._check(high, low, close)
        idx, n = self._idx, self.fastk_period
        if idx + 1 < n:
            return None
        hh = _Window.preview(self._hi, idx, h, n, True)
        ll = _Window.preview(self._lo, idx, lo, n, False)
        k = self._roll(self._k_buf, self._nk, self._k_sum, self._fast_k(c, hh, ll))[1]
        if k is None:
            return None
        d = self._roll(self._d_buf, self._nd, self._d_sum, k)[1]
        return None if d is None else StochasticValue(k, d)

    def update(self, candle: Any) -> StochasticValue | None:
        """:meth:`update_hlc` with a candle's high, low and close."""
        return self.update_hlc(candle.high, candle.low, candle.close)

    def peek(self, candle: Any) -> StochasticValue | None:
        """:meth:`peek_hlc` with a candle's high, low and close."""
        return self.peek_hlc(candle.high, candle.low, candle.close)

    update_candle = update
    peek_candle = peek
