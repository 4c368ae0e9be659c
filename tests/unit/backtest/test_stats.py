"""Statistics on hand-made equity curves and trades."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from mandi.backtest.stats import compute_stats
from mandi.core.calendar import ist_ns


def day(i: int) -> int:
    return ist_ns(dt.date(2026, 1, 1) + dt.timedelta(days=i), dt.time(15, 30))


def test_drawdown_and_its_duration():
    eq = np.array([100, 110, 99, 105, 121, 120], dtype=np.int64) * 100
    times = np.array([day(i) for i in range(6)], dtype=np.int64)
    s = compute_stats(times, eq, np.ones(6, bool), 10_000, [])
    assert math.isclose(s["max_drawdown"], 0.1)  # 110 → 99
    assert s["max_drawdown_inr"] == 11.0
    assert s["max_drawdown_duration_bars"] == 3  # 99, 105, back above at 121
    assert s["max_drawdown_duration_days"] == 3.0
    assert math.isclose(s["total_return"], 0.2)
    assert s["exposure"] == 1.0


def test_trade_statistics():
    t = np.array([day(0), day(1)], dtype=np.int64)
    eq = np.array([10_000, 10_150], dtype=np.int64) * 100
    s = compute_stats(t, eq, np.array([False, True]), 1_000_000, [30_000, -10_000, -5_000, 0])
    assert s["trades"] == 4 and s["winning_trades"] == 1 and s["losing_trades"] == 2
    assert s["win_rate"] == 0.25
    assert s["profit_factor"] == 2.0
    assert s["expectancy"] == 37.5
    assert s["exposure"] == 0.5


def test_sharpe_sortino_and_cagr_of_a_known_series():
    r = np.array([0.01, -0.005, 0.02, 0.0, -0.01, 0.015])
    eq = np.rint(1_000_000 * np.cumprod(1 + r)).astype(np.int64)
    times = np.array([day(i) for i in range(len(r))], dtype=np.int64)
    s = compute_stats(times, eq, np.zeros(len(r), bool), 1_000_000, [])
    got = eq / np.r_[1_000_000, eq[:-1]] - 1
    assert math.isclose(s["sharpe"], got.mean() / got.std(ddof=1) * math.sqrt(252), rel_tol=1e-12)
    down = math.sqrt(np.mean(np.minimum(got, 0) ** 2))
    assert math.isclose(s["sortino"], got.mean() / down * math.sqrt(252), rel_tol=1e-12)
    years = (times[-1] - times[0]) / 86_400e9 / 365.25
    assert math.isclose(s["annualized_return"], (eq[-1] / 1_000_000) ** (1 / years) - 1)


def test_undefined_numbers_are_none_not_zero():
    t = np.array([day(0)], dtype=np.int64)
    s = compute_stats(t, np.array([100], dtype=np.int64), np.zeros(1, bool), 100, [])
    assert s["sharpe"] is None and s["win_rate"] is None and s["profit_factor"] is None
    assert s["trades"] == 0 and s["expectancy"] is None
