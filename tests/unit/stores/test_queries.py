"""The read queries the API core and the CLI share (mandi.stores.queries), on real SQLite files."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from mandi.core.errors import StoreError
from mandi.stores import queries
from mandi.stores.sqlite import connect

NS = 1_000_000_000


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "q.db")
    con = connect(path)
    con.executemany(
        "INSERT INTO candles (token, exchange, timeframe, bucket, open, high, low, close, volume,"
        " oi, ticks) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [(7, "NSE", 60, b * 60 * NS, 100 + b, 110 + b, 90 + b, 105 + b, 1, 0, 3) for b in range(5)],
    )
    cols = [(r[1], r[2]) for r in con.execute("PRAGMA table_info(orders)")]
    for i, status in enumerate(("FILLED", "ACKED", "CANCELLED", "PARTIALLY_FILLED")):
        row = {c: ("" if "TEXT" in kind.upper() else 0) for c, kind in cols}
        row.update(order_id=f"o{i}", status=status, timestamp=i * NS, slice_no=0)
        con.execute(
            f"INSERT INTO orders ({','.join(row)}) VALUES ({','.join('?' * len(row))})",
            tuple(row.values()),
        )
    con.close()
    return path


def test_candles_newest_before_oldest_first_and_the_previous_close(db):
    rows = queries.candles(db, 7, 60, limit=2, before_ns=4 * 60 * NS)
    assert [r["bucket"] for r in rows] == [2 * 60 * NS, 3 * 60 * NS]
    assert set(rows[0]) == {
        "token", "exchange", "timeframe", "bucket", "open", "high", "low", "close", "volume",
        "oi", "ticks",
    }  # fmt: skip
    assert queries.last_close_before(db, 7, 60, 2 * 60 * NS) == 106
    assert queries.first_open_since(db, 7, 60, 3 * 60 * NS) == 103
    assert queries.last_close_before(db, 8, 60, 2 * 60 * NS) is None


def test_order_filters_open_and_by_status(db):
    assert [r["order_id"] for r in queries.orders(db)] == ["o3", "o2", "o1", "o0"]
    assert [r["order_id"] for r in queries.orders(db, "OPEN")] == ["o3", "o1"]
    assert [r["order_id"] for r in queries.orders(db, "FILLED", limit=5)] == ["o0"]
    assert (
        queries.order_statuses(db, "o2") == ["CANCELLED"] and queries.order_statuses(db, "x") == []
    )


def test_a_missing_file_or_table_reads_as_no_rows_and_a_connection_per_thread(db, tmp_path):
    assert queries.orders(str(tmp_path / "absent.db")) == []
    bare = str(tmp_path / "bare.db")
    sqlite3.connect(bare).close()  # a database without mandi's tables
    assert queries.trades(bare) == [] and queries.order_request(bare, "r") is None
    reads = queries.ReadOnlyConnections(db)
    con = reads.get()
    assert reads.get() is con
    other: list[sqlite3.Connection] = []
    t = threading.Thread(target=lambda: other.append(reads.get()))
    t.start()
    t.join()
    assert other[0] is not con and len(queries.positions(con, "all")) == 0
    with pytest.raises(StoreError):
        queries.ReadOnlyConnections(str(tmp_path / "nowhere" / "x.db")).get()
    with pytest.raises(StoreError):  # a broken query is an error, not an empty answer
        queries._rows(con, "SELECT nope FROM orders")
