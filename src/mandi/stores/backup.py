"""Backups of the SQLite database while it is in use, and their restore.

:func:`backup` copies the database with SQLite's online backup API (``sqlite3.Connection.backup``)
in one step, inside one read transaction: the copy is the database exactly as of one commit, even
while ``mandi run`` keeps writing (WAL mode lets the writer go on meanwhile; a backup taken in
several steps would restart at every write of another connection). The copy is written beside its
final name and renamed only after ``PRAGMA integrity_check`` passed on it, so a file named like a
backup is always a whole one; then the oldest backups beyond ``keep`` are deleted.

:func:`restore` copies a backup over a database file the same way (never while a node writes it:
the CLI checks the heartbeat first).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import time
from dataclasses import dataclass

from mandi.core.errors import StoreError

#: backup file names: ``<db stem>-YYYYmmdd-HHMMSS.db`` (UTC, so the names sort by time)
_NAME = re.compile(r"^(?P<stem>.+)-(?P<when>\d{8}-\d{6})\.db$")


@dataclass(frozen=True)
class BackupInfo:
    path: str
    size_bytes: int
    created: dt.datetime  # UTC, from the name
    seconds: float = 0.0  # how long taking it took (0 when listed)
    deleted: tuple[str, ...] = ()  # older backups removed by the rotation


def default_dir(db: str) -> str:
    """``backups/`` beside the database file."""
    return os.path.join(os.path.dirname(os.path.abspath(db)), "backups")


def _stem(db: str) -> str:
    return os.path.splitext(os.path.basename(db))[0]


def list_backups(db: str, directory: str = "") -> list[BackupInfo]:
    """The backups of ``db`` in ``directory`` (default :func:`default_dir`), newest first."""
    directory = directory or default_dir(db)
    stem = _stem(db)
    out = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        m = _NAME.match(name)
        if m is None or m.group("stem") != stem:
            continue
        path = os.path.join(directory, name)
        when = dt.datetime.strptime(m.group("when"), "%Y%m%d-%H%M%S").replace(tzinfo=dt.UTC)
        out.append(BackupInfo(path, os.path.getsize(path), when))
    out.sort(key=lambda b: b.created, reverse=True)
    return out


def _copy(src: sqlite3.Connection, dest_path: str) -> None:
    dst = sqlite3.connect(dest_path)
    try:
        src.backup(dst)  # pages=-1: the whole database in one step, one read transaction
        row = dst.execute("PRAGMA integrity_check").fetchone()
        if row is None or row[0] != "ok":
            raise StoreError(f"the copy in {dest_path} failed its integrity check: {row}")
    finally:
        dst.close()


def backup(
    db: str, directory: str = "", keep: int = 7, now: dt.datetime | None = None
) -> BackupInfo:
    """Copy ``db`` into ``directory`` as ``<stem>-<UTC time>.db`` and keep the newest ``keep``
    backups (0 = keep all). Safe while another process writes the database."""
    if not os.path.exists(db):
        raise StoreError(f"no database at {db}")
    directory = directory or default_dir(db)
    os.makedirs(directory, exist_ok=True)
    when = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    path = os.path.join(directory, f"{_stem(db)}-{when}.db")
    tmp = f"{path}.partial"
    t0 = time.perf_counter()
    try:
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            src.execute("PRAGMA busy_timeout=30000")
            if os.path.exists(tmp):
                os.remove(tmp)
            _copy(src, tmp)
        finally:
            src.close()
        os.replace(tmp, path)
    except sqlite3.Error as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise StoreError(f"backup of {db} failed: {e}") from None
    took = time.perf_counter() - t0
    deleted = []
    if keep > 0:
        for old in list_backups(db, directory)[keep:]:
            os.remove(old.path)
            deleted.append(old.path)
    created = dt.datetime.strptime(when, "%Y%m%d-%H%M%S").replace(tzinfo=dt.UTC)
    return BackupInfo(path, os.path.getsize(path), created, took, tuple(deleted))


def restore(backup_path: str, db: str) -> None:
    """Replace ``db`` by the backup (its -wal and -shm files go too); the caller makes sure no
    process has the database open for writing."""
    if not os.path.exists(backup_path):
        raise StoreError(f"no backup at {backup_path}")
    tmp = f"{db}.restoring"
    try:
        src = sqlite3.connect(f"file:{backup_path}?mode=ro", uri=True)
        try:
            if os.path.exists(tmp):
                os.remove(tmp)
            _copy(src, tmp)
        finally:
            src.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot restore from {backup_path}: {e}") from None
    for suffix in ("-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    os.replace(tmp, db)


def table_digests(path: str) -> dict[str, tuple[int, str]]:
    """Per table: (rows, SHA-256 of its rows in primary-key order) — two databases with equal
    digests hold the same data."""
    import hashlib

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        ]
        out = {}
        for t in tables:
            h = hashlib.sha256()
            n = 0
            cols = len(con.execute(f'SELECT * FROM "{t}" LIMIT 0').description)
            order = ", ".join(str(i) for i in range(1, cols + 1))
            for row in con.execute(f'SELECT * FROM "{t}" ORDER BY {order}'):
                h.update(repr(row).encode())
                n += 1
            out[t] = (n, h.hexdigest())
        return out
    finally:
        con.close()
