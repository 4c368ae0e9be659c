"""The TradingStore contract, run against the in-memory store and the SQLite store alike, and a
kernel restart on a real SQLite file."""

from __future__ import annotations

import sqlite3

import pytest

from mandi.execution.config import MatchingConfig
from mandi.execution.memstore import MemoryTradingStore
from mandi.execution.paper import PaperBroker
from mandi.model.orders import Intent, Order, OrderFilled, OrderStatus, Side
from mandi.model.trading import DailyRow, Latch
from mandi.stores.trading import SqlitePaperBook, SqliteTradingStore, set_latch

from .kit import INFY, RELIANCE, Kit


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryTradingStore()
    else:
        s = SqliteTradingStore(str(tmp_path / "t.db"))
        yield s
        s.close()


def order(i: int = 0, status: OrderStatus = OrderStatus.NEW) -> Order:
    return Order(
        f"o{i}",
        token=RELIANCE,
        exchange="NSE",
        symbol="RELIANCE",
        side=Side.BUY,
        quantity=10,
        created_ns=100 + i,
        parent_id="p",
        segment="NSE:NSE",
        status=status,
    )


def test_signals_are_inserted_once_and_keep_their_status(store):
    k = Kit()
    k.tick(RELIANCE, 1400)
    sig = k.signal("s", RELIANCE, "BUY")
    assert store.insert_signal(sig) is None
    assert store.insert_signal(sig) == "NEW"
    store.set_signal_status(sig.signal_id, "ORDERED", "", 5)
    assert store.insert_signal(sig) == "ORDERED" == store.signal_status(sig.signal_id)
    assert store.signal_status("nope") is None


def test_orders_fills_positions_and_rate_history(store):
    a, b = order(0), order(1)
    store.save_new_orders([a.to_record(), b.to_record()])
    store.save_new_orders([a.to_record()])  # already stored: ignored
    assert sorted(store.order_ids("p")) == ["o0", "o1"]
    a.transition(OrderStatus.SUBMITTED, 200)
    store.save_order(a.to_record(), "submitted")
    assert store.sends_since(150) == [("NSE:NSE", 200)]
    a.apply_fill("f1", 10, 140000, 300)
    fill = OrderFilled(
        300,
        "f1",
        "o0",
        RELIANCE,
        "NSE",
        "RELIANCE",
        Side.BUY,
        10,
        140000,
        10,
        10,
        2000,
        Intent.ENTRY,
        "s",
        "pos1",
        "",
    )
    assert store.record_fill(a.to_record(), fill, None, None, DailyRow("2026-04-15", net_pnl=-5))
    assert not store.record_fill(a.to_record(), fill, None, None, None)  # duplicate fill id
    assert [o.client_order_id for o in store.open_orders()] == ["o1"]
    assert store.load_daily("2026-04-15").net_pnl == -5
    assert store.load_daily("2026-04-16") is None


def test_the_latch_is_compare_and_set(store):
    assert store.load_latch() == Latch()
    got = store.save_latch(Latch(True, "loss", "circuit_breaker", 1, 1))
    assert got.halted and got.version == 1
    stale = store.save_latch(Latch(False, "old writer", "x", 2, 1))  # not the next version
    assert stale.halted and stale.reason == "loss"
    assert store.save_latch(Latch(False, "reset", "cli", 3, 2)).halted is False


def test_restart_on_sqlite_restores_everything(tmp_path):
    db = str(tmp_path / "k.db")
    store = SqliteTradingStore(db)
    book = SqlitePaperBook(db, store.con)
    k0 = Kit()
    broker = PaperBroker(k0.clock, book, MatchingConfig(slippage_ticks=0))
    k = Kit(store=store, broker=broker)  # type: ignore[arg-type]
    broker.clock = k.clock
    k.start()
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.emit(k.signal("r", RELIANCE, "BUY"))
    k.tick(RELIANCE, 1401.0, qty=1000)  # filled: position open
    k.tick(INFY, 1500.0, qty=1000)
    k.emit(k.signal("r2", INFY, "BUY"))  # a second position, order acked, not filled
    k.kernel.halt("operator", "kill_switch")
    t = k.clock.now_ns()
    store.close()
    # a new process on the same file
    store2 = SqliteTradingStore(db)
    book2 = SqlitePaperBook(db, store2.con)
    k1 = Kit()
    broker2 = PaperBroker(k1.clock, book2, MatchingConfig(slippage_ticks=0))
    k2 = Kit(store=store2, broker=broker2)  # type: ignore[arg-type]
    broker2.clock = k2.clock
    k2.clock.set(t)
    k2.start()
    assert k2.kernel.risk.halted and k2.kernel.risk.latch.reason == "operator"
    [pos] = [p for p in k2.kernel.book.open_positions()]
    assert pos.quantity > 0 and pos.strategy == "r"
    assert len(k2.kernel.execution.inflight) == 1  # r2's entry is still working
    k2.tick(INFY, 1501.0, qty=1000)  # fills after the restart
    assert k2.kernel.book.open_count == 2
    con = sqlite3.connect(db)
    fills = con.execute("SELECT position_id, sum(quantity) FROM fills GROUP BY position_id")
    for pid, qty in fills:
        (held,) = con.execute(
            "SELECT quantity FROM positions WHERE position_id=?", (pid,)
        ).fetchone()
        assert held == qty  # positions equal the sum of their fills
    assert (
        con.execute(
            "SELECT count(*) FROM system_events WHERE event_type='trading_halted'"
        ).fetchone()[0]
        == 1
    )
    store2.close()
    # the CLI's kill switch on the same file
    latch, changed = set_latch(db, False, "manual reset", "cli")
    assert changed and not latch.halted and latch.version == 2


def test_marks_are_stored_and_durable_writes_stay_full(tmp_path):
    """Marks are committed without an fsync (informational), and every other write after them
    still commits at synchronous=FULL."""
    db = str(tmp_path / "m.db")
    s = SqliteTradingStore(db)
    k = Kit().start()
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.emit(k.signal("s", RELIANCE, "BUY"))
    k.tick(RELIANCE, 1410.0, qty=1000)
    (p,) = k.kernel.book.open_positions()
    s.save_marks([p.to_record()], DailyRow("2026-04-15", net_pnl=7))
    assert s.con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    s.close()
    again = SqliteTradingStore(db)
    try:
        (rec,) = again.open_positions()
        assert rec.position_id == p.position_id and rec.current_premium == p.current_price
        assert again.load_daily("2026-04-15").net_pnl == 7
    finally:
        again.close()
