"""Batch API: whole arrays at once, for research and backtests.

``compute(name, values, **params)`` returns the same numbers as feeding the incremental classes
one input at a time (to ~1e-12 relative; the order of floating-point operations differs), with
NaN where the incremental class would still return None. Recursive smoothings (EMA, Wilder) run
in SciPy's ``lfilter`` (a C loop); windows use cumulative sums or NumPy sliding windows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.signal import lfilter

from mandi.core.calendar import IST_OFFSET_NS, NS_PER_DAY
from mandi.indicators._base import IndicatorInputError, check_factor, check_period
from mandi.indicators.trend import TA_EPSILON

F64 = NDArray[np.float64]


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
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.argmax(bad))
        raise IndicatorInputError(indicator, f"{field}[{i}]", float(a[i]))
    return a


def _same_length(indicator: str, *arrays: F64) -> int:
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"{indicator}: inputs differ in length: {[len(a) for a in arrays]}")
    return n


def _nan(n: int) -> F64:
    return np.full(n, np.nan)


def _smooth(x: F64, seed: float, k: float) -> F64:
    """``y_t = (1−k)·y_{t−1} + k·x_t`` from ``y_{−1} = seed`` (EMA/Wilder recursion in C)."""
    if len(x) == 0:
        return x.copy()
    y, _ = lfilter([k], [1.0, k - 1.0], x, zi=[(1.0 - k) * seed])
    return np.asarray(y, dtype=np.float64)


def sma(x: F64, period: int) -> F64:
    """SMA of a checked float array (see :class:`mandi.indicators.SMA`)."""
    n = len(x)
    out = _nan(n)
    if n < period:
        return out
    # cumulative sums relative to the first input keep the differences well conditioned
    c = np.cumsum(x - x[0])
    tail = out[period - 1 :]
    tail[0] = c[period - 1]
    np.subtract(c[period:], c[:-period], out=tail[1:])
    tail *= 1.0 / period
    tail += x[0]
    return out


def ema(x: F64, period: int) -> F64:
    """EMA of a checked float array (see :class:`mandi.indicators.EMA`)."""
    n = len(x)
    out = _nan(n)
    if n < period:
        return out
    seed = float(np.sum(x[:period])) / period
    out[period - 1] = seed
    out[period:] = _smooth(x[period:], seed, 2.0 / (period + 1))
    return out


def wma(x: F64, period: int) -> F64:
    """WMA of a checked float array (see :class:`mandi.indicators.WMA`)."""
    n = len(x)
    out = _nan(n)
    if n < period:
        return out
    w = np.arange(period, 0, -1, dtype=np.float64)  # newest input weighs `period`
    out[period - 1 :] = np.convolve(x, w, mode="valid") / (period * (period + 1) / 2.0)
    return out


def rsi(x: F64, period: int) -> F64:
    """RSI of a checked float array (see :class:`mandi.indicators.RSI`)."""
    n = len(x)
    out = _nan(n)
    if n <= period:
        return out
    d = np.diff(x)
    moves = np.empty((2, n - 1))
    np.maximum(d, 0.0, out=moves[0])
    np.maximum(-d, 0.0, out=moves[1])
    seed = moves[:, :period].sum(axis=1) / period
    a = 1.0 / period
    avg = np.empty((2, n - period))
    avg[:, 0] = seed
    if n - period > 1:
        zi = ((1.0 - a) * seed)[:, None]
        avg[:, 1:], _ = lfilter([a], [1.0, a - 1.0], moves[:, period:], axis=1, zi=zi)
    s = avg[0] + avg[1]
    nz = s != 0.0
    res = np.zeros(n - period)
    np.divide(avg[0], s, out=res, where=nz)
    res *= 100.0
    out[period:] = res
    return out


def macd(x: F64, fast: int, slow: int, signal: int) -> MACDArrays:
    """MACD of a checked float array with TA-Lib's seeding (see :class:`mandi.indicators.MACD`)."""
    if slow < fast:
        fast, slow = slow, fast
    n = len(x)
    line, sig, hist = _nan(n), _nan(n), _nan(n)
    first = slow + signal - 2  # index of the first output
    if n <= first:
        return MACDArrays(line, sig, hist)
    s0 = float(np.sum(x[:slow])) / slow
    f0 = float(np.sum(x[slow - fast : slow])) / fast
    # Both EMAs run on inputs relative to the slow seed: it cancels in their difference, and
    # the rounding then scales with the moves, not with the price level.
    rest = x[slow:] - s0
    m = np.empty(n - slow + 1)
    m[0] = f0 - s0
    m[1:] = _smooth(rest, f0 - s0, 2.0 / (fast + 1)) - _smooth(rest, 0.0, 2.0 / (slow + 1))
    g0 = float(np.sum(m[:signal])) / signal
    sg = np.empty(len(m) - signal + 1)
    sg[0] = g0
    sg[1:] = _smooth(m[signal:], g0, 2.0 / (signal + 1))
    line[first:] = m[signal - 1 :]
    sig[first:] = sg
    hist[first:] = line[first:] - sg
    return MACDArrays(line, sig, hist)


def bbands(x: F64, period: int, nbdev: float) -> BollingerArrays:
    """Bollinger Bands of a checked float array (see :class:`mandi.indicators.BollingerBands`)."""
    n = len(x)
    up, mid, lo = _nan(n), _nan(n), _nan(n)
    if n < period:
        return BollingerArrays(up, mid, lo)
    win = np.lib.stride_tricks.sliding_window_view(x, period)
    mean = win.mean(axis=1)
    dev = win - mean[:, None]
    std = np.sqrt(np.einsum("ij,ij->i", dev, dev) / period)
    mid[period - 1 :] = mean
    up[period - 1 :] = mean + nbdev * std
    lo[period - 1 :] = mean - nbdev * std
    return BollingerArrays(up, mid, lo)


def true_range(h: F64, lo: F64, c: F64) -> F64:
    """True range of bars 1..n−1 (bar 0 has none)."""
    return np.maximum(h[1:], c[:-1]) - np.minimum(lo[1:], c[:-1])


def atr(h: F64, lo: F64, c: F64, period: int) -> F64:
    """ATR of checked arrays (see :class:`mandi.indicators.ATR`)."""
    n = len(c)
    out = _nan(n)
    if n <= period:
        return out
    tr = true_range(h, lo, c)
    seed = float(np.sum(tr[:period])) / period
    out[period] = seed
    out[period + 1 :] = _smooth(tr[period:], seed, 1.0 / period)
    return out


def supertrend(h: F64, lo: F64, c: F64, period: int, multiplier: float) -> SuperTrendArrays:
    """SuperTrend of checked arrays (see :class:`mandi.indicators.SuperTrend`).

    The band ratchet is path-dependent, so this one is a plain loop over the ATR array."""
    n = len(c)
    val, dirn = _nan(n), _nan(n)
    a = atr(h, lo, c, period)
    start = period
    if n <= start:
        return SuperTrendArrays(val, dirn)
    mid = (h + lo) / 2.0
    ups = (mid + multiplier * a).tolist()
    dns = (mid - multiplier * a).tolist()
    cl = c.tolist()
    v_out = [0.0] * (n - start)
    d_out = [0.0] * (n - start)
    pu, pl, d = ups[start], dns[start], -1.0
    v_out[0], d_out[0] = pu, d
    for t in range(start + 1, n):
        up, dn, pc, ct = ups[t], dns[t], cl[t - 1], cl[t]
        if not (up < pu or pc > pu):
            up = pu
        if not (dn > pl or pc < pl):
            dn = pl
        d = (1.0 if ct > up else -1.0) if d < 0 else (-1.0 if ct < dn else 1.0)
        v_out[t - start] = dn if d > 0 else up
        d_out[t - start] = d
        pu, pl = up, dn
    val[start:] = v_out
    dirn[start:] = d_out
    return SuperTrendArrays(val, dirn)


def _wilder_sums(v: F64, period: int) -> F64:
    """TA-Lib's Wilder running sums of ``v`` (``v[j]`` belongs to bar j+1): entries from
    period−1 on hold the sum at bar j+1 (seeded with the plain sum of the first period−1
    values, then ``S − S/period + v``); earlier entries are undefined."""
    out = np.empty(len(v))
    s0 = float(np.sum(v[: period - 1]))
    # S_t = (1 − 1/p)·S_{t−1} + v_t: _smooth with k folded into the input scale
    k = 1.0 / period
    out[period - 1 :] = _smooth(v[period - 1 :] / k, s0, k)
    return out


def adx(h: F64, lo: F64, c: F64, period: int) -> ADXArrays:
    """ADX, +DI, −DI of checked arrays (see :class:`mandi.indicators.ADX`)."""
    n = len(c)
    ax, pdi_out, mdi_out = _nan(n), _nan(n), _nan(n)
    first = 2 * period - 1
    if n <= first:
        return ADXArrays(ax, pdi_out, mdi_out)
    dh = h[1:] - h[:-1]
    dl = lo[:-1] - lo[1:]
    minus = np.where((dl > 0.0) & (dh < dl), dl, 0.0)
    plus = np.where((dh > 0.0) & (dh > dl) & ~((dl > 0.0) & (dh < dl)), dh, 0.0)
    tr = true_range(h, lo, c)
    p = period
    # smoothed sums from bar `period` on (index j ↔ bar j + period)
    spdm = _wilder_sums(plus, p)[p - 1 :]
    smdm = _wilder_sums(minus, p)[p - 1 :]
    str_ = _wilder_sums(tr, p)[p - 1 :]
    ok_tr = ~((str_ > -TA_EPSILON) & (str_ < TA_EPSILON))
    safe_tr = np.where(ok_tr, str_, 1.0)
    mdi = np.where(ok_tr, 100.0 * (smdm / safe_tr), 0.0)
    pdi = np.where(ok_tr, 100.0 * (spdm / safe_tr), 0.0)
    s = mdi + pdi
    ok = ok_tr & ~((s > -TA_EPSILON) & (s < TA_EPSILON))
    dx = np.where(ok, 100.0 * (np.abs(mdi - pdi) / np.where(ok, s, 1.0)), 0.0)
    a0 = float(np.sum(dx[:p])) / p  # undefined DX counted as 0 in the first mean
    rest_ok = ok[p:]
    rest_dx = dx[p:][rest_ok]
    series = np.empty(len(dx) - p + 1)
    series[0] = a0
    if len(rest_dx):
        # the recursion only advances on bars with a DX; other bars repeat the last ADX
        steps = _smooth(rest_dx, a0, 1.0 / p)
        pos = np.cumsum(rest_ok)  # how many defined DX up to and including each bar
        filled = np.concatenate(([a0], steps))[pos]
        series[1:] = filled
    else:
        series[1:] = a0
    ax[first:] = series
    pdi_out[first:] = pdi[p - 1 :]
    mdi_out[first:] = mdi[p - 1 :]
    return ADXArrays(ax, pdi_out, mdi_out)


def stoch(h: F64, lo: F64, c: F64, fastk: int, slowk: int, slowd: int) -> StochasticArrays:
    """Slow stochastic of checked arrays (see :class:`mandi.indicators.Stochastic`)."""
    n = len(c)
    k_out, d_out = _nan(n), _nan(n)
    first = fastk + slowk + slowd - 3
    if n <= first:
        return StochasticArrays(k_out, d_out)
    view = np.lib.stride_tricks.sliding_window_view
    hh = view(h, fastk).max(axis=1)
    ll = view(lo, fastk).min(axis=1)
    diff = (hh - ll) / 100.0
    nz = diff != 0.0
    fk = np.zeros(len(hh))
    np.divide(c[fastk - 1 :] - ll, diff, out=fk, where=nz)
    k = sma(fk, slowk)[slowk - 1 :]
    d = sma(k, slowd)[slowd - 1 :]
    k_out[first:] = k[slowd - 1 :]
    d_out[first:] = d
    return StochasticArrays(k_out, d_out)


def obv(c: F64, v: F64) -> F64:
    """OBV of checked arrays (see :class:`mandi.indicators.OBV`)."""
    n = len(c)
    if n == 0:
        return _nan(0)
    step = np.empty(n)
    step[0] = v[0]
    step[1:] = np.sign(c[1:] - c[:-1]) * v[1:]
    return np.cumsum(step)


def vwap(h: F64, lo: F64, c: F64, v: F64, bucket: NDArray[np.int64]) -> F64:
    """Session-anchored VWAP (see :class:`mandi.indicators.VWAP`)."""
    n = len(c)
    if n == 0:
        return _nan(0)
    if (v < 0).any():
        i = int(np.argmax(v < 0))
        raise IndicatorInputError("vwap", f"volume[{i}]", float(v[i]), "must be >= 0")
    day = (bucket + IST_OFFSET_NS) // NS_PER_DAY  # same session day as session_anchor_ns
    pv = np.cumsum((h + lo + c) / 3.0 * v)
    cv = np.cumsum(v)
    starts = np.flatnonzero(np.concatenate(([True], day[1:] != day[:-1])))
    seg = np.repeat(starts, np.diff(np.concatenate((starts, [n]))))
    base_pv = np.where(seg > 0, pv[seg - 1], 0.0)
    base_cv = np.where(seg > 0, cv[seg - 1], 0.0)
    spv, scv = pv - base_pv, cv - base_cv
    out = _nan(n)
    np.divide(spv, scv, out=out, where=scv > 0.0)
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
