"""The SQLite writer's multi-row inserts (added for the tick-rate goal): the same rows, in the
same order, as ``executemany`` — whole statements, a remainder, upserts whose rows repeat a key,
inserts with a column list, and rows of a wrong width refused as before."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mandi.stores.chains import SNAPSHOT_SQL
from mandi.stores.indicators import VALUE_SQL
from mandi.stores.sqlite import (
    CANDLE_SQL,
    EVENT_SQL,
    META_SQL,
    TICK_SQL,
    BatchWriter,
    _insert_rows,
    connect,
)


@pytest.mark.parametrize("n", [0, 1, 127, 128, 129, 255, 256, 257, 1000])
def test_multi_row_inserts_keep_every_row_in_order(tmp_path: Path, n: int) -> None:
    con = connect(str(tmp_path / "t.db"))
    rows = [(10**18 + i, i % 7, 100 + i, i * 3, i, 99 + i, 101 + i) for i in range(n)]
    con.execute("BEGIN")
    _insert_rows(con, TICK_SQL, rows)
    con.execute("COMMIT")
    assert con.execute("SELECT * FROM ticks ORDER BY rowid").fetchall() == rows


def test_rows_of_another_width_fail_like_executemany(tmp_path: Path) -> None:
    con = connect(str(tmp_path / "t.db"))
    rows = [(1, 2, 3, 4, 5, 6, 7)] * 200
    rows[150] = (1, 2, 3)
    with pytest.raises(sqlite3.ProgrammingError):
        _insert_rows(con, TICK_SQL, rows)


def _snapshot_row(i: int) -> tuple[object, ...]:
    # (timestamp, underlying, expiry, strike, option_type) is unique: i % 40 repeats it
    k = i % 40
    return (
        10**18 + k // 4, "NSE", "NIFTY", "2026-04-16", 2_400_000 + 5_000 * (k % 4), "CE",
        f"NIFTY{k}", i, 100 + i, 1000 + k, 2_400_000, "ATM", 0.5, None, 1.5, None, 2.5,
        i, 0, 99, 101, 0.2 if i % 3 else None, 75, "sim", i,
    )  # fmt: skip


CASES = {
    # upserts that repeat keys: the later row wins, as with executemany
    "candles": (
        CANDLE_SQL,
        lambda i: (i % 9, "NSE", 60, 10**18 + i % 5, i, i + 2, i - 1, i + 1, i * 3, 0, i % 4),
    ),
    "indicator_values": (
        VALUE_SQL,
        lambda i: (i % 11, "NSE", 60, 10**18 + i % 13, f"ema_{i % 3}", i / 7),
    ),
    # a column list and ON CONFLICT DO NOTHING: the first row wins
    "option_chain_snapshots": (SNAPSHOT_SQL, _snapshot_row),
    "system_events": (EVENT_SQL, lambda i: (i, "e", f"m{i}", "INFO", "test", "{}")),
    "meta": (META_SQL, lambda i: (f"k{i % 17}", str(i))),
}


def _table(con: sqlite3.Connection, table: str) -> list[tuple[object, ...]]:
    return sorted(con.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


@pytest.mark.parametrize("table", sorted(CASES))
@pytest.mark.parametrize("n", [1, 2, 255, 256, 600])
def test_inserts_and_upserts_store_what_executemany_stores(
    tmp_path: Path, table: str, n: int
) -> None:
    sql, make = CASES[table]
    rows = [make(i) for i in range(n)]
    wide, plain = connect(str(tmp_path / "a.db")), connect(str(tmp_path / "b.db"))
    for con, write in ((wide, _insert_rows), (plain, sqlite3.Connection.executemany)):
        con.execute("BEGIN")
        write(con, sql, rows)
        con.execute("COMMIT")
    got, want = _table(wide, table), _table(plain, table)
    assert got == want and len(want) >= min(n, 2)


def test_a_statement_never_has_more_values_than_sqlite_allows(tmp_path: Path) -> None:
    con = connect(str(tmp_path / "t.db"))
    con.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)  # 14 rows of 7 values at most
    rows = [(10**18 + i, i % 7, 100 + i, i * 3, i, 99 + i, 101 + i) for i in range(300)]
    _insert_rows(con, TICK_SQL, rows)
    assert con.execute("SELECT * FROM ticks ORDER BY rowid").fetchall() == rows


def test_the_writer_stores_every_tick(tmp_path: Path) -> None:
    path = str(tmp_path / "w.db")
    w = BatchWriter(path).start()
    rows = [(10**18 + i, i % 5, 100, i, 0, 99, 101) for i in range(10_000)]
    for i in range(0, len(rows), 333):
        assert w.put("ticks", rows[i : i + 333])
    assert w.wait_idle(60)
    w.stop()
    con = connect(path)
    assert con.execute("SELECT * FROM ticks ORDER BY rowid").fetchall() == rows
