"""Batch API: whole arrays at once, for research and backtests.

``compute(name, values, **params)`` returns exactly the numbers of feeding the incremental
classes one input at a time — bit for bit: each indicator is one compiled loop
(:mod:`mandi.indicators._kernels`, numba) doing the classes' floating-point operations in their
order — with NaN where the class would still return None. (ATR alone runs its recursion two
steps at a time and agrees with the class to ~1e-15.) The kernels run at TA-Lib's speed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mandi.core.calendar import IST_OFFSET_NS
from mandi.core.clock import NS_PER_SECOND
from mandi.indicators import _kernels as K
from mandi.indicators._base import IndicatorInputError, check_factor, check_period

F64 = NDArray[np.float64]
_ANCHOR = (9 * 3600 + 15 * 60) * NS_PER_SECOND - IST_OFFSET_NS  # 09:15 IST from UTC midnight


class MACDArrays(NamedTuple):
    macd: F64
    signal: F64
    histogram: F64


class BollingerArrays(NamedTuple):
    upper: F64
    middle: F64
    lower: F64


class StochasticArrays(NamedTuple):
    k: F64
    d: F64


class ADXArrays(NamedTuple):
    adx: F64
    plus_di: F64
    minus_di: F64


class SuperTrendArrays(NamedTuple):
    value: F64
    direction: F64


def _array(indicator: str, field: str, values: ArrayLike | None) -> F64:
    if values is None:
        raise TypeError(f"{indicator}: missing input {field!r}")
    a = np.ascontiguousarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{indicator}: {field} must be one-dimensional, got shape {a.shape}")
    i = K.first_bad(a)
    if i >= 0:
        raise IndicatorInputError(indicator, f"{field}[{i}]", float(a[i]))
    return a


def _same_length(indicator: str, *arrays: F64) -> int:
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"{indicator}: inputs differ in length: {[len(a) for a in arrays]}")
    return n


def _nan(n: int) -> F64:
    return np.full(n, np.nan)


def _out(n: int) -> F64:
    return np.empty(n, dtype=np.float64)  # the kernels write every element


def sma(x: F64, period: int) -> F64:
    """SMA of a checked float array (see :class:`mandi.indicators.SMA`)."""
    out = _out(len(x))
    K.sma(x, period, out)
    return out


def ema(x: F64, period: int) -> F64:
    """EMA of a checked float array (see :class:`mandi.indicators.EMA`)."""
    out = _out(len(x))
    K.ema(x, period, out)
    return out


def wma(x: F64, period: int) -> F64:
    """WMA of a checked float array (see :class:`mandi.indicators.WMA`)."""
    out = _out(len(x))
    K.wma(x, period, out)
    return out


def rsi(x: F64, period: int) -> F64:
    """RSI of a checked float array (see :class:`mandi.indicators.RSI`)."""
    out = _out(len(x))
    K.rsi(x, period, out)
    return out


def rsi_averages(x: F64, period: int) -> tuple[F64, F64]:
    """The average gain and loss of :class:`mandi.indicators.RSI` after each input (its state:
    what :meth:`~mandi.indicators.RSI.seek` restores)."""
    gain, loss = _out(len(x)), _out(len(x))
    K.rsi_averages(x, period, gain, loss)
    return gain, loss


def macd(x: F64, fast: int, slow: int, signal: int) -> MACDArrays:
    """MACD of a checked float array with TA-Lib's seeding (see :class:`mandi.indicators.MACD`)."""
    if slow < fast:
        fast, slow = slow, fast
    n = len(x)
    line, sig, hist = _out(n), _out(n), _out(n)
    K.macd(x, fast, slow, signal, line, sig, hist)
    return MACDArrays(line, sig, hist)


def bbands(x: F64, period: int, nbdev: float) -> BollingerArrays:
    """Bollinger Bands of a checked float array (see :class:`mandi.indicators.BollingerBands`)."""
    n = len(x)
    up, mid, lo = _out(n), _out(n), _out(n)
    K.bbands(x, period, float(nbdev), up, mid, lo)
    return BollingerArrays(up, mid, lo)


def true_range(h: F64, lo: F64, c: F64) -> F64:
    """True range of bars 1..n−1 (bar 0 has none)."""
    return np.maximum(h[1:], c[:-1]) - np.minimum(lo[1:], c[:-1])


def atr(h: F64, lo: F64, c: F64, period: int) -> F64:
    """ATR of checked arrays (see :class:`mandi.indicators.ATR`)."""
    out = _out(len(c))
    K.atr(h, lo, c, period, out)
    return out


def supertrend(h: F64, lo: F64, c: F64, period: int, multiplier: float) -> SuperTrendArrays:
    """SuperTrend of checked arrays (see :class:`mandi.indicators.SuperTrend`)."""
    n = len(c)
    val, dirn = _out(n), _out(n)
    K.supertrend(h, lo, c, period, float(multiplier), val, dirn)
    return SuperTrendArrays(val, dirn)


def adx(h: F64, lo: F64, c: F64, period: int) -> ADXArrays:
    """ADX, +DI, −DI of checked arrays (see :class:`mandi.indicators.ADX`)."""
    n = len(c)
    ax, pdi, mdi = _out(n), _out(n), _out(n)
    K.adx(h, lo, c, period, ax, pdi, mdi)
    return ADXArrays(ax, pdi, mdi)


def stoch(h: F64, lo: F64, c: F64, fastk: int, slowk: int, slowd: int) -> StochasticArrays:
    """Slow stochastic of checked arrays (see :class:`mandi.indicators.Stochastic`)."""
    n = len(c)
    k, d = _out(n), _out(n)
    work = np.empty((4, n))
    K.stoch(h, lo, c, fastk, slowk, slowd, k, d, np.empty(slowk), np.empty(slowd), *work)
    return StochasticArrays(k, d)


def obv(c: F64, v: F64) -> F64:
    """OBV of checked arrays (see :class:`mandi.indicators.OBV`)."""
    out = _out(len(c))
    K.obv(c, v, out)
    return out


def vwap(h: F64, lo: F64, c: F64, v: F64, bucket: NDArray[np.int64]) -> F64:
    """Session-anchored VWAP (see :class:`mandi.indicators.VWAP`)."""
    if (v < 0).any():
        i = int(np.argmax(v < 0))
        raise IndicatorInputError("vwap", f"volume[{i}]", float(v[i]), "must be >= 0")
    out = _out(len(c))
    K.vwap(h, lo, c, v, np.ascontiguousarray(bucket, dtype=np.int64), _ANCHOR, out)
    return out


def _closes(name: str, values: ArrayLike | None, close: ArrayLike | None) -> F64:
    if values is not None and close is not None:
        raise TypeError(f"{name}: give the input either positionally or as close=, not both")
    return _array(name, "values", values if values is not None else close)


def _hlc(name: str, high: Any, low: Any, close: Any) -> tuple[F64, F64, F64]:
    h, lo, c = _array(name, "high", high), _array(name, "low", low), _array(name, "close", close)
    _same_length(name, h, lo, c)
    return h, lo, c


def compute(
    name: str,
    values: ArrayLike | None = None,
    /,
    *,
    high: ArrayLike | None = None,
    low: ArrayLike | None = None,
    close: ArrayLike | None = None,
    volume: ArrayLike | None = None,
    bucket: ArrayLike | None = None,
    **params: Any,
) -> Any:
    """Compute an indicator over whole arrays.

    Parameters
    ----------
    name : str
        ``sma``, ``ema``, ``wma``, ``rsi``, ``macd``, ``bbands``, ``atr``, ``supertrend``,
        ``vwap``, ``stoch``, ``adx`` or ``obv`` (case-insensitive).
    values : array_like, optional
        The input of single-input indicators (or pass ``close=``).
    high, low, close, volume : array_like, optional
        Inputs of the multi-input indicators (``atr``, ``supertrend``, ``stoch``, ``adx``:
        high/low/close; ``obv``: close/volume; ``vwap``: high/low/close/volume and ``bucket``,
        the candle start times in ns UTC that anchor each session).
    **params
        The indicator's parameters, named as in its class (``period``, ``fast``/``slow``/
        ``signal``, ``nbdev``, ``multiplier``, ``fastk_period``/``slowk_period``/
        ``slowd_period``).

    Returns
    -------
    ndarray or NamedTuple of ndarrays
        float64, NaN where the incremental class is still warming up. Multi-output indicators
        return ``MACDArrays(macd, signal, histogram)``, ``BollingerArrays(upper, middle,
        lower)``, ``StochasticArrays(k, d)``, ``ADXArrays(adx, plus_di, minus_di)`` or
        ``SuperTrendArrays(value, direction)``.

    Raises
    ------
    IndicatorInputError
        An input holds NaN or ±inf (the message names the indicator, the position and value).
    ValueError
        Unknown indicator or parameter, or a bad parameter value.
    """
    key = name.lower()
    fn = _DISPATCH.get(key)
    if fn is None:
        raise ValueError(f"unknown indicator {name!r}; known: {', '.join(sorted(_DISPATCH))}")
    kw = dict(params)
    out = fn(key, values, high, low, close, volume, bucket, kw)
    if kw:
        raise ValueError(f"{key}: unknown parameter(s) {', '.join(sorted(kw))}")
    return out


_Fn = Callable[[str, Any, Any, Any, Any, Any, Any, dict[str, Any]], Any]


def _period(name: str, kw: dict[str, Any], default: int, key: str = "period") -> int:
    return check_period(name, key, kw.pop(key, default))


def _single(fn: Callable[[F64, int], F64], default: int) -> _Fn:
    def run(
        name: str, values: Any, h: Any, lo: Any, c: Any, v: Any, b: Any, kw: dict[str, Any]
    ) -> Any:
        p = _period(name, kw, default)
        return fn(_closes(name, values, c), p)

    return run


def _macd(
    name: str, values: Any, h: Any, lo: Any, c: Any, v: Any, b: Any, kw: dict[str, Any]
) -> Any:
    f, s = _period(name, kw, 12, "fast"), _period(name, kw, 26, "slow")
    g = _period(name, kw, 9, "signal")
    return macd(_closes(name, values, c), f, s, g)


def _bbands(
    name: str, values: Any, h: Any, lo: Any, c: Any, v: Any, b: Any, kw: dict[str, Any]
) -> Any:
    p = _period(name, kw, 20)
    k = check_factor(name, "nbdev", kw.pop("nbdev", 2.0))
    return bbands(_closes(name, values, c), p, k)


def _atr(
    name: str, values: Any, h: Any, lo: Any, c: Any, v: Any, b: Any, kw: dict[str, Any]
) -> Any:
    return atr(*_hlc(name, h, lo, c), _period(name, kw, 14))


def _st(name: str, values: Any, h: Any, lo: Any, c: Any, v: Any, b: Any, kw: dict[str, Any]) -> Any:
    p = _period(name, kw, 10)
    m = check_factor(name, "multiplier", kw.pop("multiplier", 3.0))
    return supertrend(*_hlc(name, h, lo, c), p, m)


def _adx(
    name: str, values: Any, h: Any, lo: Any, c: Any, v: Any, b: Any, kw: dict[str, Any]
) -> Any:
    return adx(*_hlc(name, h, lo, c), _period(name, kw, 14))


def _stoch(
    name: str, values: Any, h: Any, lo: Any, c: Any, v: Any, b: Any, kw: dict[str, Any]
) -> Any:
    fk = _period(name, kw, 5, "fastk_period")
    sk = _period(name, kw, 3, "slowk_period")
    sd = _period(name, kw, 3, "slowd_period")
    return stoch(*_hlc(name, h, lo, c), fk, sk, sd)


def _obv(
    name: str, values: Any, h: Any, lo: Any, c: Any, v: Any, b: Any, kw: dict[str, Any]
) -> Any:
    cc, vv = _array(name, "close", c), _array(name, "volume", v)
    _same_length(name, cc, vv)
    return obv(cc, vv)


def _vwap(
    name: str, values: Any, h: Any, lo: Any, c: Any, v: Any, b: Any, kw: dict[str, Any]
) -> Any:
    hh, ll, cc = _hlc(name, h, lo, c)
    vv = _array(name, "volume", v)
    if b is None:
        raise TypeError(f"{name}: missing input 'bucket' (candle start times, ns UTC)")
    bb = np.asarray(b, dtype=np.int64)
    _same_length(name, hh, vv, bb.astype(np.float64))
    return vwap(hh, ll, cc, vv, bb)


_DISPATCH: dict[str, _Fn] = {
    "sma": _single(sma, 20),
    "ema": _single(ema, 20),
    "wma": _single(wma, 20),
    "rsi": _single(rsi, 14),
    "macd": _macd,
    "bbands": _bbands,
    "atr": _atr,
    "supertrend": _st,
    "adx": _adx,
    "stoch": _stoch,
    "obv": _obv,
    "vwap": _vwap,
}
