"""The SQLite store: migrations, the batched writer, idempotent candles, stats, retention."""

import sqlite3
import threading
import time

import pytest

from mandi.core.calendar import parse_ist
from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import StoreError
from mandi.model.market import Candle, Tick
from mandi.stores.schema import MIGRATIONS
from mandi.stores.sqlite import (
    BatchWriter,
    candle_row,
    cleanup,
    connect,
    first_rowid_at,
    load_candles,
    table_stats,
    tick_row,
)

T0 = parse_ist("2026-04-13 09:15:00")


def candle(token, bucket, close=100, tf=60):
    return Candle(token, "NSE", tf, bucket, close, close, close, close, 1, 0, 1, True)


def test_wal_and_migrations_are_recorded_once(db_path):
    con = connect(db_path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = [r[0] for r in con.execute("SELECT name FROM schema_migrations")]
    assert names == [n for n, _ in MIGRATIONS]
    assert con.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    con2 = connect(db_path)  # re-opening applies nothing twice
    assert con2.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


def test_writer_flushes_by_count_and_by_time(db_path):
    w = BatchWriter(db_path, flush_interval=0.2, flush_items=3).start()
    reader = connect(db_path)
    count = lambda: reader.execute("SELECT count(*) FROM candles").fetchone()[0]  # noqa: E731
    w.put("candles", [candle_row(candle(1, T0))])
    w.put("candles", [candle_row(candle(2, T0))])
    time.sleep(0.05)
    assert count() == 0  # neither 3 items nor 200 ms yet
    w.put("candles", [candle_row(candle(3, T0))])
    assert w.wait_idle(5)
    assert count() == 3  # flushed at 3 items
    w.put("candles", [candle_row(candle(4, T0))])
    t = time.monotonic()
    assert w.wait_idle(5)
    assert time.monotonic() - t >= 0.15 and count() == 4  # flushed by time
    w.stop()
    assert w.stats.rows["candles"] == 4 and w.stats.flushes == 2


def test_candles_are_idempotent_on_token_timeframe_bucket(db_path):
    w = BatchWriter(db_path).start()
    rows = [candle_row(candle(1, T0 + i * 60 * NS_PER_SECOND)) for i in range(10)]
    w.put("candles", rows)
    w.put("candles", rows)  # a replay
    w.put("candles", [candle_row(candle(1, T0, close=105))])  # a correction wins
    w.stop()
    con = connect(db_path)
    got = load_candles(con, 60)
    assert len(got) == 10 and got[0].close == 105


def test_stop_flushes_everything_queued(db_path):
    w = BatchWriter(db_path, flush_interval=60, flush_items=10**6).start()
    w.put("ticks", [tick_row(Tick(1, "NSE", T0 + i, 0, 100, i)) for i in range(5000)])
    w.stop()
    assert connect(db_path).execute("SELECT count(*) FROM ticks").fetchone()[0] == 5000


def test_a_full_queue_drops_and_counts(db_path):
    w = BatchWriter(db_path, max_pending_rows=1000)  # not started: nothing drains
    assert w.put("ticks", [(0,) * 7] * 800)
    assert not w.put("ticks", [(0,) * 7] * 300)
    assert w.stats.dropped["ticks"] == 300
    with pytest.raises(StoreError, match="bogus"):
        w.put("bogus", [(1,)])


def test_failed_flush_is_retried_without_losing_rows(db_path):
    w = BatchWriter(db_path, flush_interval=0.01, busy_timeout_ms=50).start()
    blocker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")  # the writer cannot commit while this is held
    w.put("ticks", [tick_row(Tick(1, "NSE", T0, 0, 100))])
    threading.Timer(0.5, lambda: blocker.execute("ROLLBACK")).start()
    assert w.wait_idle(20)
    w.stop()
    assert w.stats.errors >= 1 and "locked" in w.stats.last_error
    assert connect(db_path).execute("SELECT count(*) FROM ticks").fetchone()[0] == 1


def test_first_rowid_at_binary_search(db_path):
    con = connect(db_path)
    con.executemany(
        "INSERT INTO ticks VALUES (?,?,?,?,?,?,?)",
        [(T0 + i * 10, 1, 1, 0, 0, 0, 0) for i in range(1000)],
    )
    for ts in (T0 - 5, T0, T0 + 5, T0 + 4990, T0 + 9990, T0 + 10**6):
        expect = (
            con.execute("SELECT min(rowid) FROM ticks WHERE ts_event >= ?", (ts,)).fetchone()[0]
            or 1001
        )
        assert first_rowid_at(con, "ticks", "ts_event", ts) == expect


def test_stats_and_cleanup(db_path):
    con = connect(db_path)
    day = 86_400 * NS_PER_SECOND
    con.executemany(
        "INSERT INTO ticks VALUES (?,?,?,?,?,?,?)",
        [(T0 + d * day, 1, 1, 0, 0, 0, 0) for d in range(10)],
    )
    con.executemany(
        "INSERT INTO candles VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [candle_row(candle(1, T0 + d * day)) for d in range(10)],
    )
    stats = table_stats(con, db_path)
    assert stats["tables"]["ticks"] == {
        "rows": 10,
        "first_ns": T0,
        "last_ns": T0 + 9 * day,
        "clock": "exchange",
    }
    assert stats["tables"]["system_events"]["clock"] == "wall"
    assert stats["tables"]["candles"]["rows"] == 10 and stats["file_size_bytes"] > 0
    deleted = cleanup(con, 3, T0 + 9 * day)
    assert deleted["ticks"] == 6 and deleted["candles"] == 6
    assert con.execute("SELECT min(ts_event) FROM ticks").fetchone()[0] == T0 + 6 * day
    with pytest.raises(StoreError):
        cleanup(con, -1, 0)
