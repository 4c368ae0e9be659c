"""SQLite statements and reads of indicator values and engine snapshots (the single-process
indicator layer and the distributed indengine share them)."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

VALUE_SQL = (
    "INSERT INTO indicator_values VALUES (?,?,?,?,?,?) "
    "ON CONFLICT (timeframe, bucket, token, name) DO UPDATE SET value=excluded.value"
)
SNAPSHOT_SQL = "INSERT INTO indicator_snapshots (timestamp, specs, state) VALUES (?,?,?)"
PRUNE_SQL = (
    "DELETE FROM indicator_snapshots WHERE specs=? AND id NOT IN (SELECT id FROM "
    "indicator_snapshots WHERE specs=? ORDER BY id DESC LIMIT ?)"
)


def latest_snapshot(con: Any, specs: str) -> bytes | None:
    """The newest engine snapshot stored for these indicator specs, or None."""
    row = con.execute(
        "SELECT state FROM indicator_snapshots WHERE specs=? ORDER BY id DESC LIMIT 1", (specs,)
    ).fetchone()
    return None if row is None else bytes(row[0])


def write_values(
    con: sqlite3.Connection,
    rows: list[tuple[Any, ...]],
    snapshot: bytes | None = None,
    specs: str = "",
    keep: int = 0,
) -> None:
    """Upsert indicator value rows (and store an engine snapshot, keeping the newest ``keep``)
    in one transaction; rolled back on failure (the error propagates)."""
    con.execute("BEGIN")
    try:
        if rows:
            con.executemany(VALUE_SQL, rows)
        if snapshot is not None:
            con.execute(SNAPSHOT_SQL, (time.time_ns(), specs, snapshot))
            con.execute(PRUNE_SQL, (specs, specs, keep))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


def try_write_values_now(
    con: sqlite3.Connection, rows: list[tuple[Any, ...]], busy_timeout_ms: int
) -> bool | None:
    """Upsert ``rows`` only if the write lock is free right now: None when it is not (nothing
    written), True when written; a failure after the lock was taken is rolled back and raised."""
    try:
        con.execute("PRAGMA busy_timeout=0")
        try:
            con.execute("BEGIN IMMEDIATE")  # the write lock now, or SQLITE_BUSY at once
        finally:
            con.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    except sqlite3.OperationalError:
        return None
    try:
        con.executemany(VALUE_SQL, rows)
        con.execute("COMMIT")
        return True
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


VALUES_CACHE_KIB = 65_536  # page cache of a connection that writes values flat out


def tune_for_values(con: sqlite3.Connection) -> None:
    """Pragmas for a connection that upserts indicator values at a high rate (indengine).

    Each commit dirties about one page of the ``(token, timeframe, name, bucket)`` index per
    value, which SQLite's 2 MiB default cache evicts and re-reads from the OS on the next
    commit: a cache that holds the index's hot pages costs less CPU per value. (Checkpointing
    the WAL less often would save more, but a checkpoint of 10,000 pages stalls the commits
    behind it for ~40 ms: p99 tick → value at 1,000 candles/s went from 5–7 to 19 ms.)"""
    con.execute(f"PRAGMA cache_size=-{VALUES_CACHE_KIB}")


_ROWS_PER_STATEMENT = 128
_MANY_SQL = (
    "INSERT INTO indicator_values VALUES "
    + ",".join(["(?,?,?,?,?,?)"] * _ROWS_PER_STATEMENT)
    + " ON CONFLICT (timeframe, bucket, token, name) DO UPDATE SET value=excluded.value"
)


def write_values_and_snapshots(
    con: sqlite3.Connection,
    rows: list[tuple[Any, ...]],
    snapshots: Sequence[tuple[str, bytes]] = (),
    keep: int = 0,
) -> None:
    """Upsert indicator value rows (128 to a statement: the same rows, order and result as one
    by one) and store engine snapshots ``(label, state)`` — each label keeping its newest
    ``keep`` — in one transaction; rolled back on failure (the error propagates)."""
    con.execute("BEGIN")
    try:
        full = len(rows) - len(rows) % _ROWS_PER_STATEMENT
        if full:
            n = _ROWS_PER_STATEMENT
            con.executemany(
                _MANY_SQL,
                [tuple(itertools.chain.from_iterable(rows[i : i + n])) for i in range(0, full, n)],
            )
        if full < len(rows):
            con.executemany(VALUE_SQL, rows[full:])
        for label, state in snapshots:
            con.execute(SNAPSHOT_SQL, (time.time_ns(), label, state))
            con.execute(PRUNE_SQL, (label, label, keep))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
