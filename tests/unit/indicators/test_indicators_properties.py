"""Property tests: incremental == batch, peek is read-only, bad input never poisons state."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.core.errors import DataError
from mandi.indicators import (
    ADX,
    ATR,
    EMA,
    MACD,
    OBV,
    RSI,
    SMA,
    VWAP,
    WMA,
    BollingerBands,
    IndicatorInputError,
    Stochastic,
    SuperTrend,
    compute,
)
from mandi.model.market import Candle

NS_MIN = 60 * 10**9
DAY0 = 1_767_239_100 * 10**9  # 2026-01-01 09:15 IST in ns UTC


class Bar:
    """A candle-like bar with float fields (what the classes read)."""

    __slots__ = ("bucket", "close", "high", "low", "volume")

    def __init__(self, high: float, low: float, close: float, volume: float, bucket: int):
        self.high, self.low, self.close, self.volume, self.bucket = high, low, close, volume, bucket


@st.composite
def bars(draw: Any, min_size: int = 1, max_size: int = 120) -> list[Bar]:
    """Random OHLCV bars in paise-like integers (ties and flat bars happen), 3-min buckets with
    session breaks."""
    n = draw(st.integers(min_size, max_size))
    steps = draw(st.lists(st.integers(-300, 300), min_size=n, max_size=n))
    spreads = draw(st.lists(st.integers(0, 200), min_size=n, max_size=n))
    vols = draw(st.lists(st.integers(0, 5000), min_size=n, max_size=n))
    breaks = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    out, price, t = [], 100_000.0, DAY0
    for k in range(n):
        price = max(price + steps[k], 100.0)
        hi = price + spreads[k] // 2
        lo = price - (spreads[k] - spreads[k] // 2)
        t += 86_400 * 10**9 if breaks[k] and k % 7 == 0 else 3 * NS_MIN
        out.append(Bar(hi, lo, price, float(vols[k]), t))
    return out


def close_maker(kind: str, p: int) -> Any:
    return {"sma": SMA, "ema": EMA, "wma": WMA, "rsi": RSI}[kind](p)


def _flat(v: Any, width: int) -> list[float]:
    if v is None:
        return [math.nan] * width
    return list(v) if width > 1 else [float(v)]


# (factory, feed(ind, bar), batch(arrays), width)
def _arrays(bs: list[Bar]) -> dict[str, np.ndarray]:
    return {
        "high": np.array([b.high for b in bs]),
        "low": np.array([b.low for b in bs]),
        "close": np.array([b.close for b in bs]),
        "volume": np.array([b.volume for b in bs]),
        "bucket": np.array([b.bucket for b in bs], dtype=np.int64),
    }


def _hlc(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"high": a["high"], "low": a["low"], "close": a["close"]}


CASES: dict[str, tuple[Any, Any, int]] = {
    "SMA_5": (lambda: SMA(5), lambda a: compute("sma", a["close"], period=5), 1),
    "EMA_4": (lambda: EMA(4), lambda a: compute("ema", a["close"], period=4), 1),
    "WMA_6": (lambda: WMA(6), lambda a: compute("wma", a["close"], period=6), 1),
    "RSI_3": (lambda: RSI(3), lambda a: compute("rsi", a["close"], period=3), 1),
    "MACD_3_6_4": (
        lambda: MACD(3, 6, 4),
        lambda a: compute("macd", a["close"], fast=3, slow=6, signal=4),
        3,
    ),
    "BBANDS_5_2": (
        lambda: BollingerBands(5, 2.0),
        lambda a: compute("bbands", a["close"], period=5),
        3,
    ),
    "ATR_4": (lambda: ATR(4), lambda a: compute("atr", **_hlc(a), period=4), 1),
    "ADX_3": (lambda: ADX(3), lambda a: compute("adx", **_hlc(a), period=3), 3),
    "STOCH_4_2_3": (
        lambda: Stochastic(4, 2, 3),
        lambda a: compute("stoch", **_hlc(a), fastk_period=4, slowk_period=2, slowd_period=3),
        2,
    ),
    "SUPERTREND_4_2": (
        lambda: SuperTrend(4, 2.0),
        lambda a: compute("supertrend", **_hlc(a), period=4, multiplier=2.0),
        2,
    ),
    "OBV": (lambda: OBV(), lambda a: compute("obv", close=a["close"], volume=a["volume"]), 1),
    "VWAP": (
        lambda: VWAP(),
        lambda a: compute("vwap", **_hlc(a), volume=a["volume"], bucket=a["bucket"]),
        1,
    ),
}


def feed(ind: Any, bar: Bar, peek: bool = False) -> Any:
    if ind.multi_input:
        return ind.peek(bar) if peek else ind.update(bar)
    return ind.peek(bar.close) if peek else ind.update(bar.close)


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=60, deadline=None)
@given(bs=bars())
def test_incremental_equals_batch(name: str, bs: list[Bar]) -> None:
    make, batch, width = CASES[name]
    ind = make()
    inc = np.array([_flat(feed(ind, b), width) for b in bs])
    got = batch(_arrays(bs))
    ref = np.column_stack(list(got)) if width > 1 else np.asarray(got)[:, None]
    np.testing.assert_array_equal(np.isnan(inc), np.isnan(ref), err_msg=f"{name} warm-up")
    m = ~np.isnan(ref)
    scale = max(1.0, float(np.max(np.abs(ref[m]), initial=0.0)))
    np.testing.assert_allclose(inc[m], ref[m], rtol=1e-9, atol=1e-9 * scale, err_msg=name)


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=40, deadline=None)
@given(bs=bars(min_size=2), data=st.data())
def test_peek_is_read_only_and_equals_update(name: str, bs: list[Bar], data: Any) -> None:
    make, _, _ = CASES[name]
    ind = make()
    for b in bs[:-1]:
        before = ind.get_state()
        value_before = ind.value
        preview = feed(ind, b, peek=True)
        feed(ind, bs[-1], peek=True)  # an unrelated preview too
        assert ind.get_state() == before
        assert ind.value == value_before
        assert feed(ind, b) == preview  # exactly what update then returns


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "x", None])
def test_bad_input_raises_and_leaves_state(name: str, bad: Any) -> None:
    make, _, _ = CASES[name]
    ind = make()
    for k in range(30):
        feed(ind, Bar(101.0 + k % 3, 99.0 - k % 2, 100.0 + k % 5, 10.0, DAY0 + k * 3 * NS_MIN))
    before = ind.get_state()
    fields = ["close"] if not ind.multi_input else ["high", "low", "close", "volume"]
    if name in ("STOCH_4_2_3", "ATR_4", "ADX_3", "SUPERTREND_4_2"):
        fields = ["high", "low", "close"]
    if name == "OBV":
        fields = ["close", "volume"]
    for field in fields:
        b = Bar(101.0, 99.0, 100.0, 10.0, DAY0 + 99 * 3 * NS_MIN)
        setattr(b, field, bad)
        with pytest.raises(IndicatorInputError) as err:
            feed(ind, b)
        assert isinstance(err.value, DataError)
        assert ind.kind in str(err.value) and repr(bad) in str(err.value), str(err.value)
        with pytest.raises(IndicatorInputError):
            feed(ind, b, peek=True)
        assert ind.get_state() == before, field


def test_batch_rejects_non_finite_input_naming_position() -> None:
    x = np.arange(30.0)
    x[17] = np.nan
    with pytest.raises(IndicatorInputError, match=r"rsi: values\[17\]"):
        compute("rsi", x, period=14)
    with pytest.raises(IndicatorInputError, match=r"atr: high\[3\]"):
        compute("atr", high=[1, 2, 3, np.inf], low=[1, 1, 1, 1], close=[1, 1, 1, 1])


def test_batch_rejects_unknown_names_and_params() -> None:
    with pytest.raises(ValueError, match="unknown indicator 'foo'"):
        compute("foo", [1.0])
    with pytest.raises(ValueError, match="unknown parameter"):
        compute("sma", [1.0, 2.0], perod=2)
    with pytest.raises(ValueError, match="period must be an integer"):
        compute("sma", [1.0, 2.0], period=0)


def test_reset_returns_to_a_new_instance() -> None:
    for name, (make, _, _) in CASES.items():
        ind, fresh = make(), make()
        for k in range(40):
            feed(ind, Bar(101.0 + k, 99.0, 100.0 + k % 4, 7.0, DAY0 + k * 3 * NS_MIN))
        ind.reset()
        assert ind.get_state() == fresh.get_state(), name
        assert not ind.ready and ind.value is None, name


def test_vwap_resets_at_each_session_and_matches_an_independent_groupby(nifty) -> None:
    import pandas as pd

    rng = np.random.default_rng(7)
    vol = rng.integers(0, 10_000, len(nifty.close)).astype(float)
    tp = (nifty.high + nifty.low + nifty.close) / 3.0
    day = pd.Series(pd.to_datetime(nifty.dates).date)
    df = pd.DataFrame({"pv": tp * vol, "v": vol, "day": day})
    g = df.groupby("day")
    ref = (g["pv"].cumsum() / g["v"].cumsum()).to_numpy()
    got = compute(
        "vwap", high=nifty.high, low=nifty.low, close=nifty.close, volume=vol, bucket=nifty.bucket
    )
    ok = np.isfinite(ref)
    # batch: one cumulative sum for the whole year, minus the session's base (~4e-11 relative)
    np.testing.assert_allclose(got[ok], ref[ok], rtol=1e-9)
    ind = VWAP()
    inc = np.array(
        [
            np.nan if (v := ind.update_bar(h, lo, c, w, b)) is None else v
            for h, lo, c, w, b in zip(
                nifty.high, nifty.low, nifty.close, vol, nifty.bucket, strict=True
            )
        ]
    )
    np.testing.assert_allclose(inc[ok], ref[ok], rtol=1e-12)
    # the first candle of every session is its own typical price
    firsts = np.flatnonzero(day.ne(day.shift()).to_numpy() & (vol > 0))
    np.testing.assert_allclose(inc[firsts], tp[firsts], rtol=1e-15)


def test_vwap_has_no_value_without_volume(nifty) -> None:
    ind = VWAP()
    c = Candle(1, "NSE", 180, int(nifty.bucket[0]), 1, 2, 1, 2, volume=0)
    assert ind.update(c) is None and not ind.ready


def test_supertrend_follows_its_definition_on_real_data(nifty) -> None:
    # direction flips exactly when the close crosses the previous line; line on the right side
    st_ = compute("supertrend", high=nifty.high, low=nifty.low, close=nifty.close)
    v, d = st_.value, st_.direction
    ok = ~np.isnan(v)
    assert set(np.unique(d[ok])) == {-1.0, 1.0}
    assert np.all(nifty.close[ok & (d > 0)] >= v[ok & (d > 0)])
    assert np.all(nifty.close[ok & (d < 0)] <= v[ok & (d < 0)])
    flips = np.flatnonzero(ok[1:] & ok[:-1] & (d[1:] != d[:-1])) + 1
    assert len(flips) > 100
