"""Differential tests against TA-Lib on the real NIFTY 3-minute year (31,770 candles).

Every indicator TA-Lib has is compared batch (``compute``) and incremental (the classes, one
input at a time): the same warm-up (NaN exactly where TA-Lib has NaN) and the same values to
1e-9 relative. Values that cross zero (MACD, its histogram) are compared with an absolute floor
of 1e-9 × the largest magnitude of the series, since a relative error means nothing at 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import talib

from mandi.indicators import (
    ADX,
    ATR,
    EMA,
    MACD,
    OBV,
    RSI,
    SMA,
    WMA,
    BollingerBands,
    Stochastic,
    compute,
)

RTOL = 1e-9


def assert_same(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    ours, ref = np.asarray(ours, dtype=float), np.asarray(ref, dtype=float)
    assert ours.shape == ref.shape, what
    warm = np.isnan(ref)
    assert warm.any() or what.startswith("OBV"), f"{what}: TA-Lib has no warm-up?"
    np.testing.assert_array_equal(np.isnan(ours), warm, err_msg=f"{what}: warm-up differs")
    atol = RTOL * float(np.max(np.abs(ref[~warm])))
    np.testing.assert_allclose(ours[~warm], ref[~warm], rtol=RTOL, atol=atol, err_msg=what)


def run(ind: Any, inputs: list[tuple[Any, ...]], width: int = 0) -> np.ndarray:
    """Feed ``inputs`` one by one through ``ind.update`` (star-args); NaN rows for None."""
    rows = []
    for args in inputs:
        v = ind.update(*args) if not hasattr(ind, "update_hlc") else ind.update_hlc(*args)
        rows.append((np.nan,) * width if v is None and width else (np.nan if v is None else v))
    return np.array(rows, dtype=float)


CLOSE_CASES: list[tuple[str, Callable[[], Any], str, dict[str, Any], Callable[..., Any]]] = [
    ("SMA_9", lambda: SMA(9), "sma", {"period": 9}, lambda c: talib.SMA(c, 9)),
    ("SMA_200", lambda: SMA(200), "sma", {"period": 200}, lambda c: talib.SMA(c, 200)),
    ("EMA_9", lambda: EMA(9), "ema", {"period": 9}, lambda c: talib.EMA(c, 9)),
    ("EMA_21", lambda: EMA(21), "ema", {"period": 21}, lambda c: talib.EMA(c, 21)),
    ("WMA_30", lambda: WMA(30), "wma", {"period": 30}, lambda c: talib.WMA(c, 30)),
    ("RSI_14", lambda: RSI(14), "rsi", {"period": 14}, lambda c: talib.RSI(c, 14)),
    ("RSI_2", lambda: RSI(2), "rsi", {"period": 2}, lambda c: talib.RSI(c, 2)),
]


@pytest.mark.parametrize("label,make,name,params,ref", CLOSE_CASES, ids=[c[0] for c in CLOSE_CASES])
def test_close_indicators_match_talib(nifty, label, make, name, params, ref) -> None:
    expected = ref(nifty.close)
    assert_same(compute(name, nifty.close, **params), expected, f"{label} batch")
    assert_same(run(make(), [(x,) for x in nifty.close]), expected, f"{label} incremental")


def test_macd_matches_talib_including_its_seeding(nifty) -> None:
    expected = talib.MACD(nifty.close, 12, 26, 9)
    batch = compute("macd", nifty.close, fast=12, slow=26, signal=9)
    inc = run(MACD(12, 26, 9), [(x,) for x in nifty.close], width=3)
    for j, field in enumerate(("macd", "signal", "histogram")):
        assert_same(getattr(batch, field), expected[j], f"MACD {field} batch")
        assert_same(inc[:, j], expected[j], f"MACD {field} incremental")


def test_macd_swaps_fast_and_slow_like_talib(nifty) -> None:
    c = nifty.close[:2000]
    expected = talib.MACD(c, 26, 12, 9)
    assert_same(compute("macd", c, fast=26, slow=12, signal=9).signal, expected[1], "swapped")


@pytest.mark.parametrize("period,nbdev", [(20, 2.0), (5, 1.5)])
def test_bbands_match_talib(nifty, period, nbdev) -> None:
    expected = talib.BBANDS(nifty.close, period, nbdev, nbdev, 0)
    batch = compute("bbands", nifty.close, period=period, nbdev=nbdev)
    inc = run(BollingerBands(period, nbdev), [(x,) for x in nifty.close], width=3)
    for j, field in enumerate(("upper", "middle", "lower")):
        assert_same(getattr(batch, field), expected[j], f"BBANDS {field} batch")
        assert_same(inc[:, j], expected[j], f"BBANDS {field} incremental")


@pytest.mark.parametrize("period", [14, 1])
def test_atr_matches_talib(nifty, period) -> None:
    h, lo, c = nifty.high, nifty.low, nifty.close
    expected = talib.ATR(h, lo, c, period)
    assert_same(compute("atr", high=h, low=lo, close=c, period=period), expected, "ATR batch")
    assert_same(run(ATR(period), list(zip(h, lo, c, strict=True))), expected, "ATR incremental")


@pytest.mark.parametrize("period", [14, 5])
def test_adx_and_directional_indicators_match_talib(nifty, period) -> None:
    h, lo, c = nifty.high, nifty.low, nifty.close
    adx = talib.ADX(h, lo, c, period)
    first = 2 * period - 1  # our three outputs share ADX's warm-up
    pdi, mdi = talib.PLUS_DI(h, lo, c, period), talib.MINUS_DI(h, lo, c, period)
    pdi[:first] = np.nan
    mdi[:first] = np.nan
    batch = compute("adx", high=h, low=lo, close=c, period=period)
    inc = run(ADX(period), list(zip(h, lo, c, strict=True)), width=3)
    for j, (field, ref) in enumerate((("adx", adx), ("plus_di", pdi), ("minus_di", mdi))):
        assert_same(getattr(batch, field), ref, f"ADX {field} batch")
        assert_same(inc[:, j], ref, f"ADX {field} incremental")


@pytest.mark.parametrize("fk,sk,sd", [(5, 3, 3), (14, 3, 3), (9, 1, 4)])
def test_stochastic_matches_talib_stoch(nifty, fk, sk, sd) -> None:
    h, lo, c = nifty.high, nifty.low, nifty.close
    expected = talib.STOCH(h, lo, c, fk, sk, 0, sd, 0)
    batch = compute(
        "stoch", high=h, low=lo, close=c, fastk_period=fk, slowk_period=sk, slowd_period=sd
    )
    inc = run(Stochastic(fk, sk, sd), list(zip(h, lo, c, strict=True)), width=2)
    for j, field in enumerate(("k", "d")):
        assert_same(getattr(batch, field), expected[j], f"STOCH {field} batch")
        assert_same(inc[:, j], expected[j], f"STOCH {field} incremental")


def test_stochastic_defaults_are_talibs() -> None:
    assert Stochastic().params() == (5, 3, 3)


def test_obv_matches_talib_on_real_volume(orcl) -> None:
    c, v = orcl.close, orcl.volume
    expected = talib.OBV(c, v)
    assert_same(compute("obv", close=c, volume=v), expected, "OBV batch")
    ind = OBV()
    inc = np.array([ind.update_cv(x, y) for x, y in zip(c, v, strict=True)])
    assert_same(inc, expected, "OBV incremental")


def test_orcl_close_indicators_match_talib(orcl) -> None:
    # a second, very different series: prices from 1 to 40 dollars over 20 years
    c = orcl.close
    assert_same(compute("rsi", c, period=14), talib.RSI(c, 14), "orcl RSI")
    assert_same(compute("ema", c, period=50), talib.EMA(c, 50), "orcl EMA")
    h, lo = orcl.high, orcl.low
    assert_same(compute("adx", high=h, low=lo, close=c).adx, talib.ADX(h, lo, c, 14), "orcl ADX")
