"""``mandi db backup``: a copy of a database that another connection keeps writing is one whole
commit of it (no torn transaction), passes its integrity check, restores to an identical copy,
and the rotation keeps the newest."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import threading

import pytest

from mandi.core.errors import StoreError
from mandi.services.backup import next_run
from mandi.stores.backup import backup, list_backups, restore, table_digests
from mandi.stores.sqlite import CANDLE_SQL, connect

BATCH = 200  # candles per transaction of the writer


def _writer(db: str, stop: threading.Event, written: list[int]) -> None:
    """Another connection appending BATCH candles per transaction until told to stop."""
    con = connect(db)
    i = 0
    while not stop.is_set():
        rows = [
            (256265, "NSE", 60, (i + k) * 60_000_000_000, 100, 110, 90, 105, i + k, 0, 1)
            for k in range(BATCH)
        ]
        con.execute("BEGIN")
        con.executemany(CANDLE_SQL, rows)
        con.execute("COMMIT")
        i += BATCH
        written.append(i)
    con.close()


def test_a_backup_of_a_live_database_is_one_commit_and_restores_identically(tmp_path):
    db = str(tmp_path / "live.db")
    connect(db).close()
    stop, written = threading.Event(), []
    t = threading.Thread(target=_writer, args=(db, stop, written), daemon=True)
    t.start()
    try:
        while len(written) < 5:  # the writer is well under way
            stop.wait(0.01)
        info = backup(db, str(tmp_path / "bk"), keep=3)
        during = len(written)
    finally:
        stop.set()
        t.join(30)
    assert during > 5 or len(written) > during  # writes went on around the copy
    con = sqlite3.connect(info.path)
    n, top = con.execute("SELECT count(*), max(volume) FROM candles").fetchone()
    con.close()
    assert n > 0 and n % BATCH == 0 and top == n - 1  # whole transactions, no gap
    # the copy is the source as of that commit: the same rows, byte for byte
    src = sqlite3.connect(db)
    same = src.execute("SELECT count(*) FROM candles WHERE volume < ?", (n,)).fetchone()[0]
    src.close()
    assert same == n
    # restore (through the CLI) into a new file: identical to the backup, table by table
    target = str(tmp_path / "restored.db")
    p = subprocess.run(
        [sys.executable, "-m", "mandi", "db", "restore", info.path, "--db", target],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert table_digests(target) == table_digests(info.path)
    assert table_digests(target)["candles"][0] == n


def test_rotation_keeps_the_newest_and_names_sort_by_time(tmp_path):
    db = str(tmp_path / "m.db")
    connect(db).close()
    d = str(tmp_path / "bk")
    t0 = dt.datetime(2026, 4, 13, 10, 0, tzinfo=dt.UTC)
    made = [backup(db, d, keep=2, now=t0 + dt.timedelta(days=i)) for i in range(3)]
    kept = list_backups(db, d)
    assert [b.path for b in kept] == [made[2].path, made[1].path]
    assert made[2].deleted == (made[0].path,)
    with pytest.raises(StoreError, match="no database"):
        backup(str(tmp_path / "absent.db"), d)
    with pytest.raises(StoreError, match="no backup"):
        restore(str(tmp_path / "absent.db"), db)


def test_the_daily_backup_runs_at_the_next_ist_time():
    at = dt.time(16, 0)
    before = dt.datetime(2026, 4, 13, 9, 0, tzinfo=dt.UTC)  # 14:30 IST
    assert next_run(before, at).isoformat() == "2026-04-13T16:00:00+05:30"
    after = dt.datetime(2026, 4, 13, 11, 0, tzinfo=dt.UTC)  # 16:30 IST
    assert next_run(after, at).isoformat() == "2026-04-14T16:00:00+05:30"
