"""Units of work of the SQLite trading store: a signal and the orders it leads to are one durable
commit, made before the broker hears of the order — never after, never three of them."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec
import pytest

from mandi.core.errors import StoreError
from mandi.execution.config import MatchingConfig
from mandi.execution.paper import PaperBroker
from mandi.stores.trading import SqlitePaperBook, SqliteTradingStore

from .kit import RELIANCE, Kit
from .test_stores import order


class WitnessBroker(PaperBroker):
    """The paper broker, looking at the database from another connection (another process
    would see the same) each time an order reaches it."""

    def __init__(self, db: str, *args: Any) -> None:
        super().__init__(*args)
        self.db = db
        self.seen: list[tuple[Any, ...]] = []
        self.signals: list[int] = []  # signals stored (committed) at each send

    def place_order(self, request: Any) -> Any:
        con = sqlite3.connect(self.db)
        try:
            row = con.execute(
                "SELECT o.status, s.status FROM orders o JOIN trading_signals s "
                "ON s.signal_id = o.signal_id WHERE o.order_id=?",
                (request.client_order_id,),
            ).fetchone()
            self.signals.append(con.execute("SELECT count(*) FROM trading_signals").fetchone()[0])
        finally:
            con.close()
        self.seen.append(row)
        return super().place_order(request)


def sqlite_kit(tmp_path: Any) -> tuple[Kit, SqliteTradingStore, WitnessBroker, list[str]]:
    db = str(tmp_path / "k.db")
    store = SqliteTradingStore(db)
    book = SqlitePaperBook(db, store=store)
    k0 = Kit()
    broker = WitnessBroker(db, k0.clock, book, MatchingConfig(slippage_ticks=0))
    k = Kit(store=store, broker=broker)  # type: ignore[arg-type]
    broker.clock = k.clock
    statements: list[str] = []
    store.con.set_trace_callback(statements.append)
    return k.start(), store, broker, statements


def test_a_signal_and_its_order_are_one_commit_before_the_broker_hears_of_it(tmp_path):
    k, store, broker, statements = sqlite_kit(tmp_path)
    k.tick(RELIANCE, 1400.0, qty=1000)
    statements.clear()
    sent_at: list[int] = []
    real = broker.place_order
    broker.place_order = lambda r: (sent_at.append(len(statements)), real(r))[1]  # type: ignore[method-assign]
    assert k.emit(k.signal("s", RELIANCE, "BUY"))
    # committed, signal and order together, when the broker got it (seen from outside)
    assert broker.seen == [("SUBMITTED", "ORDERED")]
    before = statements[: sent_at[0]]
    assert before.count("COMMIT") == 1
    assert before.count("BEGIN IMMEDIATE") == 1
    # what followed the send (the broker's book, the ACK) is committed when emit returns
    con = sqlite3.connect(store.path)
    try:
        [(status,)] = con.execute("SELECT status FROM orders").fetchall()
        assert status == "ACKED"
    finally:
        con.close()
    store.close()


def test_an_exit_and_its_signal_are_one_commit_too(tmp_path):
    k, store, broker, statements = sqlite_kit(tmp_path)
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.emit(k.signal("s", RELIANCE, "BUY"))
    k.tick(RELIANCE, 1401.0, qty=1000)  # filled: a position
    assert k.kernel.book.open_count == 1
    statements.clear()
    k.emit(k.signal("s", RELIANCE, "SELL", bucket=99))  # the opposite signal closes it
    # the exit order (of the BUY's position) reached the broker with the SELL signal stored
    assert broker.seen[-1] == ("SUBMITTED", "ORDERED") and broker.signals == [1, 2]
    # the SELL signal, the closing position, the NEW exit order and SUBMITTED: one commit
    first_commit = statements.index("COMMIT")
    assert statements[:first_commit].count("BEGIN IMMEDIATE") == 1
    assert any("INSERT INTO trading_signals" in x for x in statements[:first_commit])
    assert any("INSERT OR REPLACE INTO orders" in x for x in statements[:first_commit])
    store.close()


def test_nothing_in_a_unit_is_visible_outside_before_sync(tmp_path):
    db = str(tmp_path / "u.db")
    store = SqliteTradingStore(db)
    other = sqlite3.connect(db)
    try:
        with store.unit():
            store.save_new_orders([order(1).to_record()])
            assert other.execute("SELECT count(*) FROM orders").fetchone() == (0,)
            store.sync()
            assert other.execute("SELECT count(*) FROM orders").fetchone() == (1,)
            store.save_new_orders([order(2).to_record()])
            assert other.execute("SELECT count(*) FROM orders").fetchone() == (1,)
        assert other.execute("SELECT count(*) FROM orders").fetchone() == (2,)
        store.save_new_orders([order(3).to_record()])  # outside a unit: committed at once
        assert other.execute("SELECT count(*) FROM orders").fetchone() == (3,)
    finally:
        other.close()
        store.close()


def test_a_failed_write_in_a_unit_undoes_itself_only(tmp_path):
    store = SqliteTradingStore(str(tmp_path / "f.db"))
    bad = msgspec.structs.replace(order(9).to_record(), quantity=2**70)  # beyond SQLite
    with pytest.raises(OverflowError), store.unit():
        store.save_new_orders([order(1).to_record()])
        store.save_order(bad)
    assert store.order_ids("p") == ["o1"]  # the write before it was committed at the end
    store.close()


def test_a_unit_that_sqlite_rolled_back_fails_closed_at_sync(tmp_path):
    store = SqliteTradingStore(str(tmp_path / "r.db"))
    with store.unit():
        store.save_new_orders([order(1).to_record()])
        store.con.execute("ROLLBACK")  # what SQLite does itself after e.g. a full disk
        with pytest.raises(StoreError, match="rolled back"):
            store.sync()  # the order router would not send
        store.save_new_orders([order(2).to_record()])  # a new transaction goes on
    assert store.order_ids("p") == ["o2"]
    store.close()


def test_an_exit_by_a_rule_is_one_commit_before_it_is_sent(tmp_path):
    k, store, broker, statements = sqlite_kit(tmp_path)
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.emit(k.signal("s", RELIANCE, "BUY"))
    k.tick(RELIANCE, 1401.0, qty=1000)
    [p] = k.kernel.book.open_positions()
    statements.clear()
    sent_at: list[int] = []
    real = broker.place_order
    broker.place_order = lambda r: (sent_at.append(len(statements)), real(r))[1]  # type: ignore[method-assign]
    k.kernel.execution.exit_position(p, "STOP_LOSS")  # what a tick's exit check calls
    assert broker.seen[-1] == ("SUBMITTED", "ORDERED")  # committed when the broker got it
    before = statements[: sent_at[0]]
    assert before.count("COMMIT") == 1  # the closing position, NEW and SUBMITTED together
    assert any("INSERT OR REPLACE INTO positions" in x for x in before)
    store.close()
