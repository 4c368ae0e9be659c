"""The compiled paths against the incremental classes and candle-by-candle ``process``.

* batch ``compute`` (numba kernels) equals feeding the classes one input at a time, bit for bit,
  on random bars and on the real NIFTY year;
* the engine's bursts — ``process_many`` (messages) and ``process_arrays`` (columns) — give
  exactly what ``process`` gives candle by candle: values, rejections, positions, snapshots;
  ``peek_arrays`` exactly what ``peek`` gives;
* the sliding extremes of the stochastic equal a naive window scan.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_indicators_properties import CASES, _arrays, _flat, bars, feed

from mandi.indicators import DEFAULT_SPECS, IndicatorEngine
from mandi.indicators import _kernels as K
from mandi.indicators.engine import STATUS_REASONS
from mandi.model.market import Candle

T0 = 1_767_239_100 * 10**9  # 2026-01-01 09:15 IST
TF = 180 * 10**9


def incremental(name: str, bs: list[Any]) -> np.ndarray:
    make, _, width = CASES[name]
    ind = make()
    return np.array([_flat(feed(ind, b), width) for b in bs])


def batch(name: str, bs: list[Any]) -> np.ndarray:
    _, run, width = CASES[name]
    got = run(_arrays(bs))
    return np.column_stack(list(got)) if width > 1 else np.asarray(got)[:, None]


NOT_BITWISE = {"ATR_4"}  # the batch ATR runs its recursion two steps at a time


def assert_same(name: str, got: np.ndarray, want: np.ndarray) -> None:
    if name in NOT_BITWISE:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        np.testing.assert_allclose(got, want, rtol=1e-14, err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=60, deadline=None)
@given(bs=bars())
def test_batch_equals_incremental_bit_for_bit(name: str, bs: list[Any]) -> None:
    assert_same(name, batch(name, bs), incremental(name, bs))


class _Bar:
    __slots__ = ("bucket", "close", "high", "low", "volume")

    def __init__(self, h: float, lo: float, c: float, v: float, b: int) -> None:
        self.high, self.low, self.close, self.volume, self.bucket = h, lo, c, v, b


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_equals_incremental_on_the_nifty_year(nifty: Any, name: str) -> None:
    n = 6_000  # ~ a quarter of the year keeps the pure-Python side quick
    vol = np.random.default_rng(2).integers(0, 5000, n).astype(float)
    bs = [
        _Bar(h, lo, c, v, b)
        for h, lo, c, v, b in zip(
            nifty.high[:n],
            nifty.low[:n],
            nifty.close[:n],
            vol,
            nifty.bucket[:n].tolist(),
            strict=True,
        )
    ]
    assert_same(name, batch(name, bs), incremental(name, bs))


@settings(max_examples=200, deadline=None)
@given(
    w=st.integers(1, 12),
    xs=st.lists(st.integers(-50, 50), min_size=0, max_size=80),
)
def test_sliding_extremes_equal_a_naive_scan(w: int, xs: list[int]) -> None:
    h = np.array(xs, dtype=float)
    lo = -h[::-1].copy()
    n = len(h)
    hh, ll, sh, sl = (np.empty(n) for _ in range(4))
    K.sliding_extremes(h, lo, w, hh, ll, sh, sl)
    for t in range(n):
        a = max(0, t - w + 1)
        assert hh[t] == h[a : t + 1].max() and ll[t] == lo[a : t + 1].min()


def test_first_bad_finds_the_first_non_finite() -> None:
    x = np.arange(100.0)
    assert K.first_bad(x) == -1
    for bad in (math.nan, math.inf, -math.inf):
        y = x.copy()
        y[[37, 80]] = bad
        assert K.first_bad(y) == 37


# --- the engine's bursts ------------------------------------------------------------------


@st.composite
def candle_streams(draw: Any) -> list[Candle]:
    """Confirmed (and some forming, stale, repeated, non-finite, negative-volume) candles of a
    few series, bucket closes interleaved."""
    n = draw(st.integers(1, 260))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    series = [(int(t), ex, tf) for t in rng.integers(1, 6, 3) for ex, tf in (("NSE", 180),)]
    series += [(7, "BSE", 60)]
    clock = {s: 0 for s in series}
    price = {s: 2_500_000 for s in series}
    out: list[Candle] = []
    for _ in range(n):
        s = series[int(rng.integers(0, len(series)))]
        kind = int(rng.integers(0, 100))
        step = 1 if kind >= 6 else int(rng.integers(-2, 1))  # stale or repeated buckets
        clock[s] += step
        price[s] = max(100, price[s] + int(rng.integers(-900, 901)))
        p: Any = price[s]
        vol: Any = int(rng.integers(0, 1000))
        closed = kind != 6
        if kind == 7:
            p = float(rng.choice([math.nan, math.inf]))
        elif kind == 8:
            vol = -3
        bucket = T0 + clock[s] * TF
        out.append(Candle(s[0], s[1], s[2], bucket, p, p, p, p, vol, 0, 1, closed))
    return out


def one_by_one(candles: list[Candle], specs: Any = None) -> tuple[list[Any], IndicatorEngine]:
    e = IndicatorEngine(specs)
    return [msgspec.structs.astuple(v) for c in candles for v in e.process(c)], e


@settings(max_examples=120, deadline=None)
@given(candles=candle_streams(), cut=st.integers(0, 300))
def test_process_many_equals_process_candle_by_candle(candles: list[Candle], cut: int) -> None:
    want, ref = one_by_one(candles)
    e = IndicatorEngine()
    got = e.process_many(candles[:cut]) + e.process_many(candles[cut:])
    assert [msgspec.structs.astuple(v) for v in got] == want
    assert e.rejected == ref.rejected
    assert e.position() == ref.position()
    assert e.snapshot() == ref.snapshot()


@settings(max_examples=120, deadline=None)
@given(candles=candle_streams())
def test_process_arrays_equals_process_candle_by_candle(candles: list[Candle]) -> None:
    want, ref = one_by_one(candles)
    e = IndicatorEngine()
    got: list[Any] = []
    for ex in ("NSE", "BSE"):  # one call per exchange, candles in order within it
        sel = [c for c in candles if c.exchange == ex]
        if not sel:
            continue
        cols = {f: [getattr(c, f) for c in sel] for f in Candle.__struct_fields__}
        res = e.process_arrays(
            cols["token"],
            cols["timeframe"],
            cols["bucket"],
            cols["close"],
            exchange=ex,
            high=cols["high"],
            low=cols["low"],
            open=cols["open"],
            volume=cols["volume"],
            closed=cols["closed"],
        )
        assert res.values.shape == (len(sel), len(e.names))
        reasons = Counter(STATUS_REASONS[int(s)] for s in res.status if s)
        assert sum(reasons.values()) == int((res.status != 0).sum())
        got += [
            msgspec.structs.astuple(v)
            for v in e.to_messages(res, cols["token"], cols["timeframe"], cols["bucket"], ex)
        ]
    # the exchanges' series are disjoint, so per-exchange order is all that matters
    assert sorted(got) == sorted(want)
    assert e.rejected == ref.rejected
    assert e.position() == ref.position()
    assert e.snapshot() == ref.snapshot()


@settings(max_examples=60, deadline=None)
@given(candles=candle_streams(), data=st.data())
def test_peek_arrays_equals_peek(candles: list[Candle], data: Any) -> None:
    e, f = IndicatorEngine(), IndicatorEngine()
    cut = data.draw(st.integers(0, len(candles)))
    e.process_many(candles[:cut])
    f.process_many(candles[:cut])
    rest = [c for c in candles[cut:] if c.exchange == "NSE"]
    want = [msgspec.structs.astuple(v) for c in rest for v in e.peek(c)]
    before = f.snapshot()
    cols = {k: [getattr(c, k) for c in rest] for k in ("token", "timeframe", "bucket", "close")}
    vols = [c.volume for c in rest]
    res = f.peek_arrays(
        cols["token"], cols["timeframe"], cols["bucket"], cols["close"], volume=vols
    )
    got = f.to_messages(res, cols["token"], cols["timeframe"], cols["bucket"], confirmed=False)
    assert [msgspec.structs.astuple(v) for v in got] == want
    assert f.snapshot() == before
    assert f.rejected == e.rejected


def test_columnar_path_needs_a_close_only_set() -> None:
    e = IndicatorEngine(["MACD", "SMA_3"])
    with pytest.raises(ValueError, match="close-only"):
        e.process_arrays([1], 180, [T0], [100.0])


def test_a_burst_of_a_thousand_series_at_one_bucket_close() -> None:
    series, steps = 1000, 60
    rng = np.random.default_rng(4)
    walk = np.round(rng.normal(0, 500, (steps, series)).cumsum(axis=0) + 2_500_000)
    tok = np.arange(series) + 100
    burst = IndicatorEngine()
    single = IndicatorEngine()
    for t in range(steps):
        res = burst.process_arrays(tok, 180, np.full(series, T0 + t * TF), walk[t])
        assert not res.status.any()
        for j in (0, 517, 999):
            want = {
                v.name: v.value
                for v in single.process(
                    Candle(int(tok[j]), "NSE", 180, T0 + t * TF, *([int(walk[t, j])] * 4))
                )
            }
            got = dict(zip(burst.names, res.values[j].tolist(), strict=True))
            assert {k: v for k, v in got.items() if v == v} == want
    assert set(burst.names) == set(DEFAULT_SPECS)


def test_process_records_takes_the_fast_pipelines_candles() -> None:
    from mandi.pipeline.fast import FastCandles, records_to_candles

    rng = np.random.default_rng(9)
    n = 20_000
    t0 = 1_776_051_900 * 10**9  # 2026-04-13 09:15 IST
    token = rng.integers(0, 20, n)
    ts = t0 + np.sort(rng.integers(0, 3_600 * 10**9, n))
    recs = FastCandles((60,), emit_forming=False).process(
        token, ts, 2_000_000 + rng.integers(-900, 900, n), np.arange(n)
    )
    minutes = recs[recs["timeframe"] == 60]
    fast, ref = (
        IndicatorEngine(["SMA_3", "RSI_2", "EMA_4"]),
        IndicatorEngine(["SMA_3", "RSI_2", "EMA_4"]),
    )
    res = fast.process_records(minutes)
    want = [msgspec.structs.astuple(v) for c in records_to_candles(minutes) for v in ref.process(c)]
    got = fast.to_messages(res, minutes["token"], minutes["timeframe"], minutes["bucket"])
    assert [msgspec.structs.astuple(v) for v in got] == want and len(want) > 100
    assert fast.snapshot() == ref.snapshot()
