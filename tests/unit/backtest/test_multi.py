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


# --- the lean one-series loop against the general loop --------------------------------------------

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mandi.backtest import BacktestEngine as _Engine  # noqa: E402

from .kit import bars as _bars  # noqa: E402
from .kit import run_script as _run_script  # noqa: E402


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(-3, 3), st.integers(0, 6), st.integers(0, 6)),
        min_size=5,
        max_size=120,
    ),
    st.dictionaries(st.integers(0, 119), st.sampled_from(["BUY", "SELL"]), max_size=12),
    st.sampled_from(
        [
            {},
            {"product": "MIS"},
            {"stop_loss_pct": 1.0, "target_pct": 2.0, "allow_short": True},
            {"stop_loss_pct": 0.5, "target_pct": 0.8, "trailing_stop_pct": 0.5},
            {"fill": "close", "allow_short": True, "stop_loss_pct": 1.5},
        ]
    ),
)
@example(  # a low exactly at the stop (entry at 1000, a 2 % stop at 980)
    moves=[(0, 0, 0)] * 3 + [(-1, 0, 5)] + [(0, 0, 0)] * 3,
    actions={0: "BUY"},
    cfg={"stop_loss_pct": 2.0},
)
def test_the_one_series_loop_equals_the_general_loop(monkeypatch, moves, actions, cfg):
    """One series takes the lean loop; forcing the general one must change nothing: trades,
    equity, what the strategy saw."""
    price, rows = 1000, []
    for d, up, down in moves:
        o = price
        price = max(50, price + d * 5)
        rows.append((o, max(o, price) + up * 3, min(o, price) - down * 3, price))
    series = _bars(rows)
    lean, s1 = _run_script(series, actions, **cfg)
    monkeypatch.setattr(_Engine, "_one_series_loop", staticmethod(lambda *a: False))
    general, s2 = _run_script(series, actions, **cfg)
    monkeypatch.undo()
    assert [t.key() for t in lean.trades] == [t.key() for t in general.trades]
    assert [t.exit_reason for t in lean.trades] == [t.exit_reason for t in general.trades]
    np.testing.assert_array_equal(lean.times, general.times)
    np.testing.assert_array_equal(lean.equity, general.equity)
    assert s1.log == s2.log
