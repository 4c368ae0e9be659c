"""Positions and P&L from fills: exact to the paisa, and daily performance with drawdown."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from mandi.model.instruments import Equity
from mandi.model.orders import Intent
from mandi.model.trading import DailyRow
from mandi.portfolio.performance import PerformanceTracker
from mandi.portfolio.positions import Position, PositionBook

STOCK = Equity(1, "NSE", "RELIANCE", "RELIANCE", "NSE", 1, 5)


def pos(direction: int = 1, pid: str = "p1") -> Position:
    return Position(
        pid,
        signal_id="s",
        strategy="x",
        instrument=STOCK,
        product="MIS",
        direction=direction,
        ts_ns=1,
    )


@given(
    st.integers(-1, 1).filter(bool),
    st.lists(st.tuples(st.integers(1, 50), st.integers(100, 10_000)), min_size=1, max_size=8),
    st.lists(st.integers(100, 10_000), min_size=1, max_size=8),
    st.lists(st.integers(0, 500), min_size=20, max_size=20),
)
def test_realized_pnl_adds_up_exactly(direction, entries, exit_prices, charges):
    p = pos(direction)
    ch = iter(charges)
    paid = 0
    for q, px in entries:
        c = next(ch)
        paid += c
        p.apply_fill(Intent.ENTRY, q, px, c, 2)
    total_qty = sum(q for q, _ in entries)
    cost = sum(q * px for q, px in entries)
    left, exit_value = total_qty, 0
    for i, px in enumerate(exit_prices):
        q = left if i == len(exit_prices) - 1 else max(1, left // 2)
        q = min(q, left)
        if q == 0:
            break
        c = next(ch)
        paid += c
        p.apply_fill(Intent.EXIT, q, px, c, 3)
        left -= q
        exit_value += q * px
    assert p.quantity == 0 and not p.is_open and p.cost == 0
    assert p.realized_gross == direction * (exit_value - cost)
    assert p.realized == direction * (exit_value - cost) - paid
    assert p.charges == paid


def test_unrealized_and_records_round_trip():
    p = pos()
    p.apply_fill(Intent.ENTRY, 10, 140000, 2000, 5)
    p.update_price(141000, 6)
    assert p.unrealized() == 10_000 and p.value == 1_410_000 and p.high_water == 141000
    short = pos(-1, "p2")
    short.apply_fill(Intent.ENTRY, 10, 140000, 0, 5)
    short.update_price(141000, 6)
    assert short.unrealized() == -10_000 and short.high_water == 140000
    back = Position.from_record(p.to_record(), STOCK)
    assert back.to_record() == p.to_record()
    book = PositionBook()
    book.add(p)
    book.add(short)
    assert book.open_count == 2 and book.exposure() == 2_820_000 and book.unrealized() == 0
    assert book.invested() == 1_400_000  # the short's cash is margin, not modelled here


def test_daily_performance_counts_trades_and_drawdown():
    stored = DailyRow(
        "2026-04-15", total_trades=1, winning_trades=1, gross_profit=500, net_pnl=500, peak=500
    )
    perf = PerformanceTracker(lambda d: stored if d == "2026-04-15" else None)
    day = dt.date(2026, 4, 15)
    perf.mark(day, 0)
    perf.on_fill(day, -800, 40)
    perf.on_close(day, -840)
    perf.mark(day, 200)
    row = perf.row(day)
    assert (row.total_trades, row.winning_trades, row.losing_trades) == (2, 1, 1)
    assert row.net_pnl == 500 - 840 and row.gross_loss == -840 and row.charges == 40
    assert row.max_drawdown == 500 - (-340 + 200)
    assert perf.row(dt.date(2026, 4, 16)).net_pnl == 0
