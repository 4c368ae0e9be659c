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

import msgspec  # noqa: E402
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mandi.backtest import BacktestEngine as _Engine  # noqa: E402
from mandi.backtest.config import default_risk  # noqa: E402

from .kit import bars as _bars  # noqa: E402
from .kit import run_script as _run_script  # noqa: E402
from .kit import run_script_raw  # noqa: E402


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


def _session_bars(rows: list[tuple[int, int, int, int]], tf: int = 900) -> object:
    """Bars of ``tf`` seconds over whole NSE sessions (09:15-15:30 IST, from 2026-04-13), so that
    the last bars of each day reach the intraday square-off (15:15); rows in rupees."""
    import datetime as dt

    from mandi.backtest import BarSeries
    from mandi.core.calendar import calendar, ist_ns

    from .kit import INST

    nse = calendar("NSE")
    per_day = 22_500 // tf
    days: list[dt.date] = []
    d = dt.date(2026, 4, 13)
    while len(days) * per_day < len(rows):
        if nse.session(d) is not None:
            days.append(d)
        d += dt.timedelta(days=1)
    starts = [ist_ns(d, dt.time(9, 15)) + k * tf * 10**9 for d in days for k in range(per_day)]
    bucket = np.array(starts[: len(rows)], dtype=np.int64)
    a = np.array(rows, dtype=np.int64) * 100
    return BarSeries(INST, tf, bucket, a[:, 0], a[:, 1], a[:, 2], a[:, 3], np.zeros(len(rows), int))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        # (close move, open gap, high above, low below): a negative "above" or "below" gives a
        # bar whose range does not hold its open or close (bad data: held to the same rule)
        st.tuples(st.integers(-3, 3), st.integers(-1, 1), st.integers(-1, 4), st.integers(-1, 4)),
        min_size=20,
        max_size=75,
    ),
    st.dictionaries(st.integers(0, 74), st.sampled_from(["BUY", "SELL"]), max_size=16),
    st.sampled_from(
        [
            {"product": "CNC"},
            {"product": "MIS", "stop_loss_pct": 1.0, "target_pct": 1.5, "allow_short": True},
            {"product": "NRML", "stop_loss_pct": 0.6, "target_pct": 0.9, "allow_short": True},
            {"product": "CNC", "stop_loss_pct": 0.8, "target_pct": 1.2, "fill": "close"},
            {"product": "NRML", "trailing_stop_pct": 0.7, "allow_short": True},
            # one order a second: a reversal's entry waits behind its exit for the next bar
            {"product": "CNC", "allow_short": True, "orders_per_second": 1},
        ]
    ),
)
# 15-minute bars, 25 a session: bar 23 ends at the square-off (15:15), bar 24 is after it
@example(  # a late bar reaching the stop of a carried long: the walk's exit
    moves=[(0, 0, 1, 1)] * 24 + [(0, 0, 1, 10)] + [(0, 0, 1, 1)] * 6,
    actions={0: "BUY"},
    cfg={"product": "CNC", "stop_loss_pct": 0.8},
)
@example(  # a late bar opening above its own high: the walk's high-water mark
    moves=[(0, 0, 0, 0)] * 24 + [(0, 1, -1, 0)] + [(0, 0, 0, 0)] * 10,
    actions={0: "BUY", 30: "SELL"},
    cfg={"product": "CNC"},
)
@example(  # a reversal at one order a second: the entry is sent a bar later, from the queue
    moves=[(1, 0, 0, 0)] * 5 + [(-1, 0, 0, 0)] * 5,
    actions={0: "BUY", 4: "SELL"},
    cfg={"product": "CNC", "allow_short": True, "orders_per_second": 1},
)
@example(  # the bar ending at the square-off closes on the stop, its low above it: the monitor's
    moves=[(0, 0, 0, 0)] * 23 + [(-8, 0, 0, -1)] + [(0, 0, 0, 0)] * 6,  # exit at the close
    actions={0: "BUY"},
    cfg={"product": "CNC", "stop_loss_pct": 0.8},
)
def test_the_one_series_loop_equals_the_general_loop_at_the_square_off(
    monkeypatch, moves, actions, cfg
):
    """Through the square-off bars of several sessions (where the lean loop checks a carried
    position on the walk's four prices instead of walking it, and skips the monitor's exit
    check when no rule can fire), on bars whose range may even miss their open or close: the
    same trades, exit reasons, equity and what the strategy saw as the general loop."""
    price, rows = 1000, []
    for d, gap, up, down in moves:
        o = max(60, price + gap)
        price = max(60, price + d)
        rows.append((o, max(o, price) + up, min(o, price) - down, price))
    series = _session_bars(rows)
    cfg = dict(cfg)
    per_second = cfg.pop("orders_per_second", None)
    risk = None
    if per_second:
        risk = msgspec.structs.replace(default_risk(1_000_000.0), orders_per_second=per_second)
    lean, s1 = run_script_raw(series, actions, risk, **cfg)
    monkeypatch.setattr(_Engine, "_one_series_loop", staticmethod(lambda *a: False))
    general, s2 = run_script_raw(series, actions, risk, **cfg)
    monkeypatch.undo()
    for a, b in (
        (lean.times, general.times),
        (lean.equity, general.equity),
        (lean.in_market, general.in_market),
    ):
        np.testing.assert_array_equal(a, b)
    # every record: orders, fills, positions (marks, high-water marks, exit reasons), signals
    assert lean.store.orders == general.store.orders
    assert lean.store.fills == general.store.fills
    assert lean.store.positions == general.store.positions
    assert lean.signals == general.signals
    assert lean.open_positions == general.open_positions
    assert s1.log == s2.log
