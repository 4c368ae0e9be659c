"""The vectorized fast path gives the event-driven kernel's trades, equity curve and final value
for the same strategy and fill model (NIFTY 3-minute year), and refuses what it cannot reproduce."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from mandi.backtest import _vkernels as vk
from mandi.backtest.vector import VectorUnsupported
from mandi.indicators import EMA, SMA
from mandi.services.backtest.api import load_data, run

DATA = pathlib.Path(__file__).parents[2] / "data" / "NIFTY50_3min_2025-07-23_to_2026-08-04.csv"


@pytest.fixture(scope="module")
def nifty():
    (s,) = load_data(DATA)
    return s


def test_averages_are_bit_identical_to_the_incremental_indicators(nifty):
    closes = nifty.close
    for period in (5, 21, 50):
        for ind, fn in ((SMA, vk.sma_exact), (EMA, vk.ema_exact)):
            x = ind(period)
            inc = np.array([np.nan if (v := x.update(c)) is None else v for c in closes.tolist()])
            np.testing.assert_array_equal(fn(closes, period), inc)


CASES = [
    ("sma_cross", {"fast": 10, "slow": 30}, {}),
    ("sma_cross", {"fast": 10, "slow": 30}, {"fill": "close"}),
    ("ema_cross", {"fast": 9, "slow": 21}, {"allow_short": True}),
    ("ema_cross", {"fast": 9, "slow": 21}, {"stop_loss_pct": 0.3, "target_pct": 0.6}),
    (
        "sma_cross",
        {"fast": 5, "slow": 20},
        {"stop_loss_pct": 0.25, "allow_short": True, "slippage_ticks": 1, "trailing": 0.4},
    ),
    ("ema_cross", {"fast": 9, "slow": 21}, {"start": "2026-01-01", "end": "2026-06-30"}),
]


@pytest.mark.parametrize(("strategy", "params", "settings"), CASES)
def test_vector_equals_event(nifty, strategy, params, settings):
    settings = dict(settings)
    trailing = settings.pop("trailing", None)
    kw = {"quantity": 15, **settings}
    if trailing is not None:
        from mandi.backtest import BacktestConfig

        kw["config"] = BacktestConfig(trailing_stop_pct=trailing)
    ev = run(nifty, strategy, params, engine="event", **kw)
    ve = run(nifty, strategy, params, engine="vector", **kw)
    assert len(ev.trades) > 100
    assert [t.key() for t in ve.trades] == [t.key() for t in ev.trades]
    assert [t.exit_reason for t in ve.trades] == [t.exit_reason for t in ev.trades]
    np.testing.assert_array_equal(ve.times, ev.times)
    np.testing.assert_array_equal(ve.equity, ev.equity)
    assert ve.stats["final_value"] == ev.stats["final_value"]
    assert ve.stats["sharpe"] == ev.stats["sharpe"]


def test_auto_uses_the_vector_path_only_where_it_applies(nifty):
    assert (
        run(nifty, "sma_cross", {"fast": 10, "slow": 30}, quantity=15, engine="auto").stats[
            "engine"
        ]
        == "vector"
    )
    # risk sizing (no fixed quantity) and non-crossover strategies run on the kernel
    assert run(nifty.take(slice(0, 2000)), "sma_cross", engine="auto").stats["engine"] == "event"
    assert run(nifty.take(slice(0, 2000)), "rsi", quantity=15, engine="auto").stats["engine"] == (
        "event"
    )


def test_vector_refuses_what_the_risk_manager_would_change(nifty):
    with pytest.raises(VectorUnsupported, match="max_order_value"):
        run(nifty, "sma_cross", {"fast": 10, "slow": 30}, quantity=100, engine="vector")
    with pytest.raises(VectorUnsupported, match="fixed quantity"):
        run(nifty, "sma_cross", {"fast": 10, "slow": 30}, engine="vector")
