"""IndicatorEngine: values, rejections, peek, snapshot/restore/replay; CloseBank and kernel."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.core.errors import ConfigError
from mandi.indicators import (
    DEFAULT_SPECS,
    EMA,
    RSI,
    SMA,
    IndicatorEngine,
    IndicatorSpecError,
    SnapshotError,
    parse_spec,
)
from mandi.indicators.bank import CloseBank
from mandi.indicators.fused import CloseKernel
from mandi.model.market import Candle, IndicatorValue

NS3 = 180 * 10**9
T0 = 1_767_239_100 * 10**9  # 2026-01-01 09:15 IST
MIXED = [
    "SMA_3",
    "RSI_2",
    "MACD_2_4_2",
    "BBANDS_3_2",
    "ATR_2",
    "SUPERTREND_2_1.5",
    "STOCH_3_1_2",
    "ADX_2",
    "VWAP",
    "OBV",
    "WMA_3",
    "EMA_2",
]


def candles(n: int, token: int = 1, seed: int = 0, tf: int = 180) -> list[Candle]:
    rng = np.random.default_rng(seed)
    out, price = [], 2_500_000
    for k in range(n):
        price = max(100, price + int(rng.integers(-500, 501)))
        hi, lo = price + int(rng.integers(0, 300)), price - int(rng.integers(0, 300))
        out.append(
            Candle(
                token,
                "NSE",
                tf,
                T0 + k * tf * 10**9,
                price,
                hi,
                lo,
                price,
                volume=int(rng.integers(0, 1000)),
            )
        )
    return out


def as_rows(values: list[IndicatorValue]) -> list[tuple[Any, ...]]:
    return [msgspec.structs.astuple(v) for v in values]


def test_default_set_and_names() -> None:
    e = IndicatorEngine()
    assert e.specs == DEFAULT_SPECS
    assert e.names == ("SMA_9", "SMA_20", "SMA_50", "SMA_200", "EMA_9", "EMA_21", "RSI_14")
    assert e.fused


def test_default_set_values_equal_the_separate_classes() -> None:
    e = IndicatorEngine()
    refs = {
        "SMA_9": SMA(9),
        "SMA_20": SMA(20),
        "SMA_50": SMA(50),
        "SMA_200": SMA(200),
        "EMA_9": EMA(9),
        "EMA_21": EMA(21),
        "RSI_14": RSI(14),
    }
    for c in candles(400):
        got = {v.name: v for v in e.process(c)}
        for name, ind in refs.items():
            ref = ind.update(c.close)
            if ref is None:
                assert name not in got
            else:
                v = got[name]
                assert v.value == ref and v.confirmed and v.bucket == c.bucket
                assert (v.token, v.exchange, v.timeframe) == (1, "NSE", 180)


def test_multi_output_names_and_canonical_specs() -> None:
    e = IndicatorEngine(["macd", "BBANDS_20_2", "stoch", "SUPERTREND_10_3", "ADX"])
    assert e.specs == ("MACD_12_26_9", "BBANDS_20_2", "STOCH_5_3_3", "SUPERTREND_10_3", "ADX_14")
    assert "MACD_12_26_9.signal" in e.names and "BBANDS_20_2.lower" in e.names
    assert "ADX_14.adx" in e.names and "SUPERTREND_10_3.direction" in e.names
    assert not e.fused
    values = e.process_many(candles(100))
    assert {v.name for v in values} == set(e.names)


@pytest.mark.parametrize(
    "spec,fragment",
    [
        ("FOO_3", "unknown indicator 'FOO'"),
        ("SMA_x", "'x' is not a valid int"),
        ("SMA_0", "period must be an integer >= 1"),
        ("RSI_14_2", "at most 1 parameter"),
        ("", "non-empty"),
        ("BBANDS_20_-1", "nbdev must be finite and >= 0"),
    ],
)
def test_bad_spec_names_the_spec(spec: str, fragment: str) -> None:
    with pytest.raises(IndicatorSpecError) as err:
        IndicatorEngine(["SMA_9", spec])
    assert isinstance(err.value, ConfigError)
    assert repr(spec) in str(err.value) and fragment in str(err.value)


def test_duplicate_spec_rejected() -> None:
    with pytest.raises(IndicatorSpecError, match="duplicate indicator"):
        IndicatorEngine(["SMA_9", "sma_9"])


@pytest.mark.parametrize("specs", [None, MIXED])
def test_stale_and_repeated_buckets_are_rejected_and_counted(specs: Any) -> None:
    e = IndicatorEngine(specs)
    cs = candles(60)
    for c in cs[:40]:
        e.process(c)
    snap = e.snapshot()
    assert e.process(cs[39]) == []  # the same bucket again
    assert e.process(cs[10]) == []  # an earlier one
    assert e.rejected["stale_bucket"] == 2
    assert e.snapshot() == snap  # never applied
    # another series is independent
    assert e.process(candles(1, token=2)[0]) is not None
    assert e.position()[(1, "NSE", 180)] == cs[39].bucket


@pytest.mark.parametrize("specs", [None, MIXED])
@pytest.mark.parametrize("field", ["close", "high", "low", "open", "volume"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_candles_are_rejected_and_counted(specs: Any, field: str, bad: float) -> None:
    e = IndicatorEngine(specs)
    cs = candles(30)
    for c in cs[:20]:
        e.process(c)
    snap = e.snapshot()
    bad_candle = msgspec.structs.replace(cs[20], **{field: bad})
    assert e.process(bad_candle) == []
    assert e.peek(bad_candle) == []
    assert e.rejected["non_finite"] == 1 and e.rejected["peek_non_finite"] == 1
    assert e.snapshot() == snap
    # the good candle for that bucket is still accepted afterwards
    assert e.process(cs[20])


def test_forming_candle_not_processed_and_negative_volume_rejected() -> None:
    e = IndicatorEngine(MIXED)
    c = candles(1)[0]
    assert e.process(msgspec.structs.replace(c, closed=False)) == []
    assert e.process(msgspec.structs.replace(c, volume=-5)) == []
    assert e.rejected == {"not_confirmed": 1, "negative_volume": 1}
    assert e.position() == {}


@pytest.mark.parametrize("specs", [None, MIXED])
def test_peek_is_read_only_and_predicts_process(specs: Any) -> None:
    e = IndicatorEngine(specs)
    cs = candles(260)
    for c in cs:
        before = e.snapshot()
        forming = msgspec.structs.replace(c, closed=False)
        preview = e.peek(forming)
        assert e.snapshot() == before
        assert all(not v.confirmed for v in preview)
        done = e.process(c)
        assert [(v.name, v.value) for v in preview] == [(v.name, v.value) for v in done]
    # a peek on an unknown series creates nothing
    e.peek(candles(1, token=9)[0])
    assert (9, "NSE", 180) not in e.position()


@pytest.mark.parametrize("specs", [None, MIXED])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_snapshot_restore_replay_equals_uninterrupted_run(specs: Any, data: Any) -> None:
    n = data.draw(st.integers(1, 240), label="candles")
    cut = data.draw(st.integers(0, n), label="snapshot after")
    lag = data.draw(st.integers(0, n - cut), label="candles lost after the snapshot")
    stream = sorted(
        candles(n, token=1, seed=n) + candles(n, token=2, seed=n + 1, tf=60),
        key=lambda c: (c.bucket, c.token),
    )
    clean = IndicatorEngine(specs)
    expected = [as_rows(clean.process(c)) for c in stream]

    first = IndicatorEngine(specs)
    head = stream[: 2 * cut]
    for c in head:
        first.process(c)
    blob = first.snapshot()
    for c in stream[2 * cut : 2 * (cut + lag)]:  # processed, then lost in the "crash"
        first.process(c)

    second = IndicatorEngine(specs)
    second.restore(blob)
    pos = second.position()
    got = []
    for c in stream:
        key = (c.token, c.exchange, c.timeframe)
        if key in pos and c.bucket <= pos[key]:
            got.append(None)  # already reflected in the snapshot: the replay skips it
            continue
        got.append(as_rows(second.process(c)))
    assert got[len(head) :] == expected[len(head) :]
    assert second.snapshot() == clean.snapshot()
    assert second.rejected == {}


def test_restore_replay_from_position_feeding_everything_counts_duplicates() -> None:
    e = IndicatorEngine()
    cs = candles(50)
    for c in cs[:30]:
        e.process(c)
    blob = e.snapshot()
    r = IndicatorEngine()
    r.restore(blob)
    for c in cs:  # a careless replay of everything: the first 30 are rejected, not doubled
        r.process(c)
    for c in cs[30:]:
        e.process(c)
    assert r.snapshot() == e.snapshot()
    assert r.rejected["stale_bucket"] == 30


def test_restore_refuses_other_sets_versions_and_garbage() -> None:
    e = IndicatorEngine()
    for c in candles(30):
        e.process(c)
    blob = e.snapshot()
    other = IndicatorEngine(["SMA_9"])
    with pytest.raises(SnapshotError, match="engine is configured with"):
        other.restore(blob)
    with pytest.raises(SnapshotError, match="cannot be decoded"):
        e.restore(b"\x00garbage")
    snap = msgspec.msgpack.decode(blob)
    snap["version"] = 99
    with pytest.raises(SnapshotError, match="version 99"):
        e.restore(msgspec.msgpack.encode(snap))
    snap["version"] = 1
    snap["series"][0][4] = [[1, 2]]
    with pytest.raises(SnapshotError, match="series"):
        e.restore(msgspec.msgpack.encode(snap))
    assert e.snapshot() == blob  # a failed restore changes nothing


def test_kernel_equals_separate_classes_bitwise() -> None:
    specs = ["WMA_5", "RSI_3", "SMA_3", "EMA_4", "SMA_1", "RSI_1"]
    k = CloseKernel([parse_spec(s) for s in specs])
    sep = [parse_spec(s) for s in specs]
    for c in candles(300):
        before = k.get_state()
        assert k.peek(c.close) == [i.peek(c.close) for i in sep]
        assert k.get_state() == before
        assert k.update(c.close) == [i.update(c.close) for i in sep]


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_bank_equals_kernel_bitwise_and_round_trips_state(data: Any) -> None:
    specs = [*list(DEFAULT_SPECS[:2]), "WMA_4", "RSI_3", "EMA_5", "SMA_2"]
    series = data.draw(st.integers(1, 6))
    steps = data.draw(st.integers(1, 40))
    bank = CloseBank(specs, capacity=1)
    rows = np.array([bank.add_series() for _ in range(series)])
    kernels = [CloseKernel([parse_spec(s) for s in specs]) for _ in range(series)]
    rng = np.random.default_rng(steps)
    for _t in range(steps):
        pick = data.draw(st.lists(st.sampled_from(list(range(series))), unique=True, min_size=1))
        x = np.round(rng.normal(2_500_000, 3000, len(pick)))
        state = [bank.get_state(int(r)) for r in rows]
        pk = bank.peek(rows[pick], x)
        assert [bank.get_state(int(r)) for r in rows] == state
        out = bank.update(rows[pick], x)
        np.testing.assert_array_equal(pk, out)
        for a, j in enumerate(pick):
            ref = [math.nan if v is None else v for v in kernels[j].update(float(x[a]))]
            np.testing.assert_array_equal(out[a], ref)
    for j, r in enumerate(rows):
        assert bank.get_state(int(r)) == kernels[j].get_state()
        fresh = CloseBank(specs)
        row = fresh.add_series()
        fresh.set_state(row, kernels[j].get_state())
        assert fresh.get_state(row) == kernels[j].get_state()


def test_bank_rejects_bad_input_without_applying() -> None:
    bank = CloseBank(["SMA_2", "RSI_2"])
    rows = np.array([bank.add_series(), bank.add_series()])
    bank.update(rows, np.array([1.0, 2.0]))
    before = [bank.get_state(0), bank.get_state(1)]
    with pytest.raises(ValueError, match="appears twice"):
        bank.update(np.array([0, 0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="rows must be in"):
        bank.update(np.array([5]), np.array([1.0]))
    with pytest.raises(Exception, match="close of row 1"):
        bank.update(rows, np.array([1.0, math.nan]))
    assert [bank.get_state(0), bank.get_state(1)] == before
    with pytest.raises(ValueError, match="only SMA, EMA, WMA and RSI"):
        CloseBank(["MACD"])


def test_engine_snapshot_state_moves_into_a_bank() -> None:
    e = IndicatorEngine()
    for c in candles(250):
        e.process(c)
    snap = msgspec.msgpack.decode(e.snapshot())
    bank = CloseBank(DEFAULT_SPECS)
    row = bank.add_series()
    bank.set_state(row, snap["series"][0][4][0])
    nxt = candles(251)[-1]
    want = {v.name: v.value for v in e.process(nxt)}
    got = bank.update(np.array([row]), np.array([float(nxt.close)]))[0]
    assert dict(zip(bank.names, got.tolist(), strict=True)) == want
