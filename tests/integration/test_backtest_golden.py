"""Golden backtests on the real NIFTY 3-minute year (2025-07-23 … 2026-08-04, 31,770 bars): the
event-driven kernel with the default Indian charges (₹20/0.03 % brokerage, STT, exchange, SEBI,
stamp, GST) and the default bar fill model. Pinned: trade count, signals, fills, the risk
manager's denials and the final value to the paisa (NautilusTrader-style acceptance tests).

A change in any of these numbers is a change in behaviour: check it is intended, then re-pin."""

from __future__ import annotations

import datetime as dt
import pathlib

import pytest

from mandi.core.calendar import calendar, ist_date, ist_ns
from mandi.services.backtest.api import load_data, run

DATA = pathlib.Path(__file__).parents[1] / "data" / "NIFTY50_3min_2025-07-23_to_2026-08-04.csv"

GOLDEN = [
    # strategy, params, settings, trades, final value ₹, signals, fills, denials
    (
        "sma_cross",
        {"fast": 10, "slow": 30},
        {"quantity": 15},
        587,
        893248.52,
        1223,
        1174,
        {"entry_cutoff": 17, "trading_hours": 8},
    ),
    (
        "ema_cross",
        {"fast": 9, "slow": 21},
        {"quantity": 15, "fill": "close"},
        644,
        880800.31,
        1341,
        1288,
        {"entry_cutoff": 17, "trading_hours": 10},
    ),
    (
        "rsi",
        {},
        {"quantity": 15, "stop_loss_pct": 0.5, "target_pct": 1.0},
        233,
        931083.33,
        990,
        466,
        {"entry_cutoff": 22, "trading_hours": 8},
    ),
    (
        "momentum",
        {"lookback": 10, "threshold_pct": 0.3},
        {"quantity": 15, "allow_short": True},
        403,
        967829.84,
        736,
        806,
        {"entry_cutoff": 18, "trading_hours": 5},
    ),
    (  # sized by the risk manager (fixed amount = the cash), so the balance rule bites
        "sma_cross",
        {"fast": 20, "slow": 50},
        {},
        321,
        862956.94,
        684,
        642,
        {"balance": 8, "entry_cutoff": 12, "trading_hours": 1},
    ),
    (  # 15-minute signals from resampled bars, fills on the 3-minute bars
        "ema_cross",
        {"fast": 9, "slow": 21},
        {"quantity": 15, "timeframe": 900},
        102,
        1002138.72,
        221,
        204,
        {"entry_cutoff": 4, "trading_hours": 4},
    ),
]


@pytest.fixture(scope="module")
def nifty():
    return load_data(DATA)


@pytest.mark.parametrize(
    ("strategy", "params", "settings", "trades", "final", "signals", "fills", "denials"), GOLDEN
)
def test_golden(nifty, strategy, params, settings, trades, final, signals, fills, denials):
    res = run(nifty, strategy, params, engine="event", **settings)
    s = res.stats
    assert s["bars"] == 31_770 + (6_358 if settings.get("timeframe") == 900 else 0)
    assert (s["trades"], s["signals"], s["fills"]) == (trades, signals, fills)
    assert s["risk_denials"] == denials
    assert s["final_value"] == final
    # the books balance: final value = cash + Σ trade P&L (+ what is still open)
    closed = sum(t.pnl for t in res.trades) / 100
    if s["open_positions"] == 0:
        assert round(1_000_000 + closed, 2) == final
    # intraday (MIS): squared off at 15:15 IST on the day of entry — except in a special session
    # that closes before 15:15 (Muhurat trading, 2025-10-21), which the square-off never reaches
    cal = calendar("NSE")
    for t in res.trades:
        day = ist_date(t.entry_time)
        if cal.session(day).close_ns > ist_ns(day, dt.time(15, 15)):
            assert ist_date(t.exit_time) == day, t
