"""Several instruments and timeframes in one backtest, merged by event time."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from mandi.backtest.bars import merge_order
from mandi.model.instruments import Equity
from mandi.services.backtest.api import load_data, run

DATA = pathlib.Path(__file__).parents[2] / "data" / "NIFTY50_3min_2025-07-23_to_2026-08-04.csv"


@pytest.fixture(scope="module")
def two():
    (s,) = load_data(DATA)
    a = s.take(slice(0, 3000)).with_instrument(Equity(1, "NSE", "AAA", "AAA", "", 1, 5))
    b = s.take(slice(0, 3000))
    # a second instrument: the same path, scaled, and lagging by one bar
    b = type(b)(
        Equity(2, "NSE", "BBB", "BBB", "", 1, 5),
        b.timeframe,
        b.bucket[1:],
        b.open[:-1] // 2,
        b.high[:-1] // 2,
        b.low[:-1] // 2,
        b.close[:-1] // 2,
        b.volume[:-1],
    )
    return a, b


def test_bars_are_merged_by_end_time(two):
    a, b = two
    five = a.resample(900)
    sid, idx = merge_order([a, five, b])
    ends = np.array([[a, five, b][s].end[i] for s, i in zip(sid, idx, strict=True)])
    assert (np.diff(ends) >= 0).all()
    # at a common end the 3-minute bar comes before the 15-minute one that ends with it
    k = np.flatnonzero(sid == 1)[3]
    assert sid[k - 1] != 1 and ends[k - 1] == ends[k]


def test_two_instruments_trade_as_they_would_alone(two):
    a, b = two
    both = run([a, b], "sma_cross", {"fast": 10, "slow": 30}, quantity=15, engine="event")
    alone = {
        s.symbol: run([s], "sma_cross", {"fast": 10, "slow": 30}, quantity=15, engine="event")
        for s in (a, b)
    }
    assert {t.symbol for t in both.trades} == {"AAA", "BBB"}
    for sym, res in alone.items():
        mine = [t.key()[:8] for t in both.trades if t.symbol == sym]
        assert mine == [t.key()[:8] for t in res.trades]
    total = sum(r.final_value - 1_000_000 for r in alone.values())
    assert both.final_value == pytest.approx(1_000_000 + total, abs=0.01)
    assert len(both.times) == len(np.unique(np.r_[a.end, b.end]))
