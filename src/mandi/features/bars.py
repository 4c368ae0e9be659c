"""Bar, time and VIX features (definitions in :mod:`mandi.features.catalog`), in batch over whole
arrays (training) and incrementally one bar at a time (live) — the same numbers either way.

Prices may be int paise or float rupees: every bar feature is a ratio (RSI, returns), so the
unit cancels; the VIX level is reported in index points (paise / 100).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

from mandi.core.calendar import IST_OFFSET_NS, NS_PER_DAY
from mandi.core.clock import NS_PER_SECOND
from mandi.indicators import RSI, SMA, compute

_OPEN_OFFSET_NS = (9 * 3600 + 15 * 60) * NS_PER_SECOND  # 09:15 IST after the IST midnight
_NS_PER_MINUTE = 60 * NS_PER_SECOND
_RET_LAGS = (1, 3, 6, 12)
_VOL_WINDOW = 12
_RSI_PERIOD = 14
_SMA_PERIOD = 20
_VIX_LAG = 10

FloatArray = NDArray[np.float64]


@overload
def ist_day(ts_ns: int) -> int: ...


@overload
def ist_day(ts_ns: NDArray[np.int64]) -> NDArray[np.int64]: ...


def ist_day(ts_ns: Any) -> Any:
    """Days since the epoch of the IST date of ``ts_ns`` (int or int64 array)."""
    return (ts_ns + IST_OFFSET_NS) // NS_PER_DAY


@overload
def session_open_ns(day: int) -> int: ...


@overload
def session_open_ns(day: NDArray[np.int64]) -> NDArray[np.int64]: ...


def session_open_ns(day: Any) -> Any:
    """09:15 IST of IST day number ``day`` (int or int64 array), in ns UTC."""
    return day * NS_PER_DAY + _OPEN_OFFSET_NS - IST_OFFSET_NS


def _lagged_diff(x: FloatArray, k: int) -> FloatArray:
    out = np.full(x.shape, np.nan)
    if len(x) > k:
        out[k:] = x[k:] - x[:-k]
    return out


# --- batch -------------------------------------------------------------------------------------


def bar_features(
    bucket: NDArray[np.int64],
    open_: NDArray[np.generic],
    high: NDArray[np.generic],
    low: NDArray[np.generic],
    close: NDArray[np.generic],
    timeframe: int,
) -> dict[str, FloatArray]:
    """The ``bars`` and ``time`` groups for every bar of one series (oldest first).

    Parameters
    ----------
    bucket : int64 array
        Bar start times, ns UTC, ascending.
    open_, high, low, close : arrays
        Prices (paise or rupees).
    timeframe : int
        Bar length in seconds (``tod`` is measured at the bar's end).

    Returns
    -------
    dict of name → float64 array
        NaN where a feature lacks history.
    """
    bucket = np.asarray(bucket, dtype=np.int64)
    c = np.asarray(close, dtype=np.float64)
    o = np.asarray(open_, dtype=np.float64)
    h = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    n = len(c)
    log_c = np.log(c)
    out: dict[str, FloatArray] = {f"ret_{k}": _lagged_diff(log_c, k) for k in _RET_LAGS}
    r1 = out["ret_1"]
    vol = np.full(n, np.nan)
    if n > _VOL_WINDOW:
        windows = np.lib.stride_tricks.sliding_window_view(r1[1:], _VOL_WINDOW)
        vol[_VOL_WINDOW:] = windows.std(axis=1)
    out["vol_12"] = vol
    out["rsi_14"] = np.asarray(compute("rsi", c, period=_RSI_PERIOD), dtype=np.float64)
    sma = np.asarray(compute("sma", c, period=_SMA_PERIOD), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mom_20"] = c / sma - 1.0
        out["range_1"] = (h - lo) / c
    day = ist_day(bucket)
    first = np.r_[True, day[1:] != day[:-1]] if n else np.zeros(0, dtype=bool)
    day_open = o[np.maximum.accumulate(np.where(first, np.arange(n), 0))] if n else o
    out["ret_day"] = log_c - np.log(day_open)
    end = bucket + timeframe * NS_PER_SECOND
    out["tod"] = (end - session_open_ns(day)) / _NS_PER_MINUTE
    return out


def vix_features(
    bucket: NDArray[np.int64], vix_bucket: NDArray[np.int64], vix_close: NDArray[np.generic]
) -> dict[str, FloatArray]:
    """The ``vix`` group at each bar start in ``bucket``: the VIX bar that started last before
    it (``vix_close`` in paise, as stored; reported in points)."""
    vb = np.asarray(vix_bucket, dtype=np.int64)
    vc = np.asarray(vix_close, dtype=np.float64) / 100.0
    j = np.searchsorted(vb, np.asarray(bucket, dtype=np.int64), side="left") - 1
    has = j >= 0
    level = np.where(has, vc[np.maximum(j, 0)], np.nan)
    chg = np.full(len(j), np.nan)
    old = j - _VIX_LAG
    ok = old >= 0
    chg[ok] = np.log(vc[j[ok]]) - np.log(vc[old[ok]])
    return {"vix": level, "vix_chg_10": chg}


# --- online ------------------------------------------------------------------------------------


class BarState:
    """The ``bars`` and ``time`` groups, updated one confirmed bar at a time.

    :meth:`update` takes a bar; :meth:`values` are the features at that bar's end, equal to
    :func:`bar_features` at the same index.
    """

    __slots__ = ("_day", "_day_open", "_log_c", "_r1", "_rsi", "_sma", "_values", "timeframe")

    def __init__(self, timeframe: int) -> None:
        self.timeframe = timeframe
        self._log_c: deque[float] = deque(maxlen=max(_RET_LAGS) + 1)
        self._r1: deque[float] = deque(maxlen=_VOL_WINDOW)
        self._rsi = RSI(_RSI_PERIOD)
        self._sma = SMA(_SMA_PERIOD)
        self._day = -1
        self._day_open = math.nan
        self._values: dict[str, float] = {}

    def update(self, bucket: int, open_: float, high: float, low: float, close: float) -> None:
        c = float(close)
        lc = float(np.log(c))
        hist = self._log_c
        hist.append(lc)
        v: dict[str, float] = {}
        for k in _RET_LAGS:
            v[f"ret_{k}"] = lc - hist[-1 - k] if len(hist) > k else math.nan
        if len(hist) > 1:
            self._r1.append(v["ret_1"])
        full = len(self._r1) == _VOL_WINDOW
        v["vol_12"] = float(np.array(self._r1).std()) if full else math.nan
        rsi = self._rsi.update(c)
        v["rsi_14"] = math.nan if rsi is None else float(rsi)
        sma = self._sma.update(c)
        v["mom_20"] = math.nan if sma is None or sma == 0 else c / sma - 1.0
        v["range_1"] = (float(high) - float(low)) / c if c else math.nan
        day = ist_day(int(bucket))
        if day != self._day:
            self._day, self._day_open = day, float(open_)
        v["ret_day"] = lc - float(np.log(self._day_open))
        end = bucket + self.timeframe * NS_PER_SECOND
        v["tod"] = (end - session_open_ns(day)) / _NS_PER_MINUTE
        self._values = v

    def values(self) -> dict[str, float]:
        return self._values


class VixState:
    """The ``vix`` group from VIX bars as they arrive (any order relative to the traded bars)."""

    __slots__ = ("_bars",)

    def __init__(self) -> None:
        self._bars: deque[tuple[int, float]] = deque(maxlen=_VIX_LAG + 8)

    def update(self, bucket: int, close: float) -> None:
        bars = self._bars
        if bars and bucket <= bars[-1][0]:
            if bucket == bars[-1][0]:
                bars[-1] = (bucket, float(close) / 100.0)
            return  # an older bar: already past it
        bars.append((bucket, float(close) / 100.0))

    def values(self, bucket: int) -> dict[str, float]:
        """Features for the traded bar starting at ``bucket``."""
        bars = self._bars
        j = len(bars) - 1
        while j >= 0 and bars[j][0] >= bucket:
            j -= 1
        if j < 0:
            return {"vix": math.nan, "vix_chg_10": math.nan}
        level = bars[j][1]
        chg = math.nan
        if j >= _VIX_LAG:
            chg = float(np.log(level)) - float(np.log(bars[j - _VIX_LAG][1]))
        return {"vix": level, "vix_chg_10": chg}
