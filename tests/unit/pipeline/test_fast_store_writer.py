"""The SQLite writer's multi-row inserts (added for the tick-rate goal): the same rows, in the
same order, as ``executemany`` — whole blocks of 128, a remainder, and rows of a wrong width
refused as before."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mandi.stores.sqlite import CANDLE_SQL, TICK_SQL, BatchWriter, _insert_rows, connect


@pytest.mark.parametrize("n", [0, 1, 127, 128, 129, 1000])
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


def test_upserts_still_go_through_executemany(tmp_path: Path) -> None:
    con = connect(str(tmp_path / "t.db"))
    row = (1, "NSE", 60, 5, 1, 2, 0, 1, 3, 0, 1)
    _insert_rows(con, CANDLE_SQL, [row] * 300)  # the same key: one row, updated
    assert con.execute("SELECT count(*) FROM candles").fetchone()[0] == 1


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
