"""The writer never dies (issue 13.2): rows SQLite cannot hold are quarantined while the rest of
their batch is stored; a database that cannot be written makes the writer *failing* (and
recovering when it can write again); stopping gives up on a dead store within its deadline and
counts every row it did not store. Real SQLite files throughout."""

import json
import sqlite3
import threading
import time

from mandi.core.calendar import parse_ist
from mandi.model.market import Candle, Tick
from mandi.stores.sqlite import BatchWriter, candle_row, connect, tick_row

T0 = parse_ist("2026-04-13 09:15:00")
HUGE = 2**64  # Python int too large to convert to SQLite INTEGER


def ticks(n, start=0):
    return [
        tick_row(Tick(256265, "NSE", T0 + (start + i) * 1000, 0, 2_400_000 + i)) for i in range(n)
    ]


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_tick_of_price_2_pow_64_is_quarantined_and_its_batch_is_stored(db_path):
    w = BatchWriter(db_path, flush_interval=60, flush_items=10**6).start()  # one flush
    good = ticks(1000)
    bad = (T0 + 500_500, 256265, HUGE, 1, 0, 0, 0)
    w.put("ticks", [*good[:500], bad, *good[500:]])
    c = Candle(256265, "NSE", 60, T0, 100, 101, 99, 100, 5, 0, 3, True)
    w.put("candles", [candle_row(c)])  # same transaction, another statement
    w.put("events", [(T0, "test", "an event", "INFO", "test", "{}")])
    assert w.wait_idle(0.01) is False  # nothing flushed yet: one flush below takes it all
    w.stop(timeout=15)
    con = connect(db_path)
    stored = con.execute("SELECT * FROM ticks ORDER BY rowid").fetchall()
    assert stored == good  # every good tick, in order
    assert con.execute("SELECT count(*) FROM candles").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM system_events").fetchone()[0] == 1
    (store, target, reason, row), *more = con.execute(
        "SELECT store, target, reason, row FROM rejects"
    ).fetchall()
    assert not more and (store, target) == ("sqlite", "ticks")
    assert "OverflowError" in reason and "too large" in reason
    assert tuple(json.loads(row)) == bad  # the value survives exactly
    assert w.stats.rows["ticks"] == 1000 and w.stats.quarantined["ticks"] == 1
    assert w.stats.failures == 0 and w.not_stored() == 0


def test_the_writer_goes_on_after_a_bad_row(db_path):
    w = BatchWriter(db_path, flush_interval=0.01).start()
    w.put("ticks", [(T0, 1, HUGE, 0, 0, 0, 0)])
    assert w.wait_idle(10)
    w.put("ticks", ticks(10))  # the next batch is written as usual
    assert w.wait_idle(10)
    w.stop()
    con = connect(db_path)
    assert con.execute("SELECT count(*) FROM ticks").fetchone()[0] == 10
    assert con.execute("SELECT count(*) FROM rejects").fetchone()[0] == 1


def test_bisection_finds_every_kind_of_bad_row_and_keeps_the_good_ones(db_path):
    w = BatchWriter(db_path, flush_interval=60, flush_items=10**6).start()
    good = ticks(5000)
    rows = list(good)
    bad = {
        10: (T0, 1, -HUGE, 0, 0, 0, 0),  # OverflowError
        1234: (T0, 1, 100, 0, 0, 0),  # six values for seven columns
        2500: (T0, 1, None, 0, 0, 0, 0),  # NOT NULL constraint
        4999: (T0, 1, [1, 2], 0, 0, 0, 0),  # a type SQLite cannot bind
    }
    for i in sorted(bad, reverse=True):
        rows.insert(i, bad[i])
    w.put("ticks", rows)
    w.stop(timeout=15)
    con = connect(db_path)
    assert con.execute("SELECT * FROM ticks ORDER BY rowid").fetchall() == good
    reasons = [r[0] for r in con.execute("SELECT reason FROM rejects ORDER BY id")]
    assert len(reasons) == 4
    assert any("Overflow" in r for r in reasons) and any("NOT NULL" in r for r in reasons)
    assert any("bindings" in r for r in reasons)
    assert w.stats.quarantined["ticks"] == 4 and w.stats.rows["ticks"] == 5000


def test_a_locked_database_fails_the_writer_until_it_can_write_again(db_path):
    w = BatchWriter(db_path, flush_interval=0.01, busy_timeout_ms=50).start()
    blocker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")  # locked beyond the writer's busy timeout
    w.put("ticks", ticks(100))
    assert wait_for(lambda: w.stats.failing)
    assert w.stats.failures == 1 and "locked" in w.stats.last_error
    assert w.pending_rows == 100  # kept for the retry, not lost
    blocker.execute("ROLLBACK")
    assert wait_for(lambda: not w.stats.failing)
    assert w.wait_idle(10)
    w.stop()
    assert connect(db_path).execute("SELECT count(*) FROM ticks").fetchone()[0] == 100
    assert w.stats.failures == 1 and w.not_stored() == 0


def test_a_full_database_is_given_up_at_stop_and_what_was_lost_is_counted(db_path):
    w = BatchWriter(db_path, flush_interval=0.01, stop_retry_s=0.3).start()
    w.put("ticks", ticks(100))
    assert w.wait_idle(10)
    con = w.backend.con  # the writer's own connection, idle between flushes
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.execute(f"PRAGMA max_page_count={pages}")  # the disk is full from now on
    w.put("ticks", ticks(20_000, start=100))
    assert wait_for(lambda: w.stats.failing)
    assert "full" in w.stats.last_error
    t = time.monotonic()
    w.stop(timeout=30)
    assert time.monotonic() - t < 15  # gave up on the store, did not hang
    assert w.stats.given_up["ticks"] == 20_000 and w.not_stored() == 20_000
    assert w.pending_rows == 0
    assert connect(db_path).execute("SELECT count(*) FROM ticks").fetchone()[0] == 100


def test_rows_are_stored_whatever_thread_queues_them(db_path):
    w = BatchWriter(db_path, flush_interval=0.01).start()
    threads = [
        threading.Thread(target=lambda k=k: w.put("ticks", ticks(500, start=k * 500)))
        for k in range(4)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    w.stop()
    assert connect(db_path).execute("SELECT count(*) FROM ticks").fetchone()[0] == 2000


def test_a_durable_write_waits_for_a_piece_of_a_flush_not_for_all_of_it(db_path, monkeypatch):
    """While the trading store waits for its turn (WriteTurn.urgent), the writer commits after
    the piece it is writing and lets it in; the rest of the flush follows."""
    from mandi.stores import sqlite as S
    from mandi.stores.writer import YIELD_ROWS

    turn = S.write_turn(db_path)
    seen: list[int] = []
    urgent_done = threading.Event()

    durable = connect(db_path, synchronous="FULL")

    def durable_write() -> None:
        with turn.urgent():
            seen.append(durable.execute("SELECT count(*) FROM ticks").fetchone()[0])
            durable.execute(
                "INSERT INTO system_events (timestamp, event_type, message) VALUES (1, 'x', 'y')"
            )
        urgent_done.set()

    write = S.SqliteBackend.write

    def first_piece_then_urgent(self, key, rows, isolated=False):
        write(self, key, rows, isolated)
        if not seen and not turn.wanted():  # the first piece: a durable writer arrives
            threading.Thread(target=durable_write, daemon=True).start()
            assert wait_for(turn.wanted)

    monkeypatch.setattr(S.SqliteBackend, "write", first_piece_then_urgent)
    w = BatchWriter(db_path, flush_interval=60, flush_items=10**6).start()
    w.put("ticks", ticks(5 * YIELD_ROWS + 7))
    w.stop(timeout=15)
    assert urgent_done.wait(15)
    assert seen == [YIELD_ROWS]  # it went in after one piece, not after the flush
    durable.close()
    con = connect(db_path)
    assert con.execute("SELECT count(*) FROM ticks").fetchone()[0] == 5 * YIELD_ROWS + 7
    assert w.stats.rows["ticks"] == 5 * YIELD_ROWS + 7 and w.not_stored() == 0


def test_a_write_turn_lets_a_durable_write_in_when_every_batch_transaction_ends(tmp_path):
    from mandi.stores.sqlite import write_turn

    turn = write_turn(str(tmp_path / "t.db"))
    assert turn is write_turn(str(tmp_path / "." / "t.db"))  # one per file
    turn.begin_bulk()
    turn.begin_bulk()  # two batch writers of the file
    entered = threading.Event()

    def durable() -> None:
        with turn.urgent():
            entered.set()

    threading.Thread(target=durable, daemon=True).start()
    assert wait_for(turn.wanted)  # it waits, announced
    turn.end_bulk()
    assert not entered.is_set()  # one batch transaction is still open
    turn.end_bulk()
    assert entered.wait(10) and wait_for(lambda: not turn.wanted())


def test_backlogged_above_the_high_water_mark_until_the_writer_catches_up(db_path):
    """Backpressure: ``backlogged`` says when a producer that can wait should (rows are queued,
    never dropped, at the mark), and is clear again once they are written."""
    w = BatchWriter(db_path, high_water_rows=1000, flush_interval=0.01)  # not started yet
    w.put("ticks", ticks(1000))
    assert not w.backlogged()
    w.put("ticks", ticks(1, start=1000))
    assert w.backlogged() and w.pending_rows == 1001 and not w.stats.dropped
    w.start()
    assert wait_for(lambda: not w.backlogged()) and w.wait_idle(20)
    w.stop()
    assert w.stats.rows["ticks"] == 1001


def test_the_high_water_mark_stays_below_the_drop_bound(db_path):
    w = BatchWriter(db_path, max_pending_rows=4000, high_water_rows=10**6)
    assert w.high_water_rows == 2000


def test_the_batch_writer_checkpoints_the_wal_and_a_durable_commit_then_never_does(
    db_path, tmp_path, monkeypatch
):
    """SQLite checkpoints inside whichever commit passes 1,000 pages of WAL; in a run that was
    an order's commit, or the batch commit it waited for. While a batch writer of the file is
    open it checkpoints after its commits instead, and the durable writers never do."""
    import shutil

    from mandi.stores import sqlite as sq
    from mandi.stores.trading import SqliteTradingStore

    def autocheckpoint(con):
        return con.execute("PRAGMA wal_autocheckpoint").fetchone()[0]

    monkeypatch.setattr(sq, "CHECKPOINT_EVERY_S", 0.0)
    store = SqliteTradingStore(db_path)
    store.heartbeat("paper")
    assert autocheckpoint(store.con) == sq.AUTOCHECKPOINT_PAGES  # alone: SQLite's default
    w = BatchWriter(db_path, flush_interval=0.01).start()
    store.heartbeat("paper")
    assert autocheckpoint(store.con) == 0 and autocheckpoint(w.backend.con) == 0
    w.put("ticks", ticks(500))
    assert w.wait_idle(20)
    # what the writer committed is in the database file itself, not only in its WAL
    shutil.copy(db_path, tmp_path / "main-file-only.db")
    alone = sqlite3.connect(tmp_path / "main-file-only.db")
    assert alone.execute("SELECT count(*) FROM ticks").fetchone()[0] == 500
    w.stop()
    store.heartbeat("paper")
    assert autocheckpoint(store.con) == sq.AUTOCHECKPOINT_PAGES  # the writer is gone
    store.close()
