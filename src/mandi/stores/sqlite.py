"""SQLite: connections, migrations, batched writing, stats and retention.

Market data is rebuildable, so its connection runs ``synchronous=NORMAL`` in WAL mode (a committed
transaction survives a process crash); orders, fills and idempotency records use
``synchronous=FULL`` (see the trading stores).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import StoreError
from mandi.model.market import Candle, Tick
from mandi.stores.schema import APPEND_ORDERED, MIGRATIONS, TIME_COLUMNS, WALL_CLOCK_TABLES
from mandi.stores.writer import BatchLoop, Reject

log = logging.getLogger(__name__)


def connect(
    path: str, synchronous: str = "NORMAL", readonly: bool = False, busy_timeout_ms: int = 30_000
) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with mandi's pragmas and the schema applied."""
    try:
        if readonly:
            con = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False
            )
        else:
            d = os.path.dirname(os.path.abspath(path))
            os.makedirs(d, exist_ok=True)
            con = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={synchronous}")
            migrate(con)
        con.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        return con
    except sqlite3.Error as e:
        raise StoreError(f"cannot open SQLite database {path!r}: {e}") from None


def rollback(con: sqlite3.Connection) -> None:
    """Undo a failed transaction, if SQLite has not already: a COMMIT that failed on a full disk
    rolled back by itself (a second ROLLBACK would hide the real error behind "no transaction is
    active"), one refused as busy left it open (and the next BEGIN would fail)."""
    if con.in_transaction:
        con.execute("ROLLBACK")


def migrate(con: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    done = {r[0] for r in con.execute("SELECT name FROM schema_migrations")}
    applied = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        con.execute("BEGIN IMMEDIATE")
        try:
            # re-check under the write lock: another process may have migrated meanwhile
            if con.execute("SELECT 1 FROM schema_migrations WHERE name=?", (name,)).fetchone():
                con.execute("COMMIT")
                continue
            for stmt in sql.split(";"):
                if stmt.strip():
                    con.execute(stmt)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time_ns()))
            con.execute("COMMIT")
        except sqlite3.Error:
            rollback(con)
            raise
        applied.append(name)
    n = con.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    con.execute(f"PRAGMA user_version={int(n)}")
    return applied


# --- rows -----------------------------------------------------------------------------------------

TICK_SQL = "INSERT INTO ticks VALUES (?,?,?,?,?,?,?)"
CANDLE_SQL = (
    "INSERT INTO candles VALUES (?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (token, timeframe, bucket) DO UPDATE SET open=excluded.open, "
    "high=excluded.high, low=excluded.low, close=excluded.close, volume=excluded.volume, "
    "oi=excluded.oi, ticks=excluded.ticks, exchange=excluded.exchange"
)
EVENT_SQL = (
    "INSERT INTO system_events (timestamp, event_type, message, severity, source, data) "
    "VALUES (?,?,?,?,?,?)"
)
REJECT_SQL = "INSERT INTO rejects (timestamp, store, target, reason, row) VALUES (?,?,?,?,?)"


def tick_row(t: Tick) -> tuple[Any, ...]:
    return (t.ts_event, t.token, t.price, t.volume, t.oi, t.bid, t.ask)


def candle_row(c: Candle) -> tuple[Any, ...]:
    return (
        c.token,
        c.exchange,
        c.timeframe,
        c.bucket,
        c.open,
        c.high,
        c.low,
        c.close,
        c.volume,
        c.oi,
        c.ticks,
    )


def row_candle(r: Sequence[Any]) -> Candle:
    """A ``candles`` row (in table column order) as a confirmed :class:`Candle`."""
    return Candle(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], True)


# --- the batched writer ---------------------------------------------------------------------------

# Every ``INSERT INTO t [(columns)] VALUES (?, ..., ?) [ON CONFLICT ...]`` is written as one
# statement of many rows (``VALUES (...),(...),...``, up to ``_MULTI_ROWS``), not one step per row.
# The reason is the GIL more than SQLite: Python's sqlite3 releases the GIL around every step, and a
# thread that wants it back while the kernel runs Python waits for the switch interval (5 ms). Row
# by row (``executemany``), the writer thread thus got about one row per 5 ms in a flat-out
# ``mandi run`` (an upsert of ``indicator_values`` measured ~960 us/row beside a busy thread, ~30
# us/row in statements of 128 rows, ~8 us/row in statements of 256 and more; bench_store). SQLite
# applies a multi-row VALUES row by row, in order, so the rows stored are the same - an upsert whose
# rows repeat a key updates it in order, exactly as ``executemany`` does. Rows of another width go
# through ``executemany``, which refuses them as before (the writer then isolates them).
_MULTI_ROWS = 256
_INSERT = re.compile(
    r"^(INSERT(?: OR \w+)? INTO \w+(?: \([\w ,]+\))?) "  # head
    r"VALUES (\(\?(?:, ?\?)*\))"  # one row of values
    r"((?: ON CONFLICT .*)?)$",  # tail
    re.DOTALL,
)
_MULTI: dict[str, tuple[str, str, str, int] | None] = {}
_MULTI_SQL: dict[tuple[str, int], str] = {}


def _multi_sql(sql: str, n: int, cache: bool = True) -> str:
    """``sql`` with ``n`` rows of values (cached for the full statements only)."""
    out = _MULTI_SQL.get((sql, n))
    if out is None:
        parts = _MULTI[sql]
        assert parts is not None
        head, values, tail, _ = parts
        out = f"{head} VALUES {','.join([values] * n)}{tail}"
        if cache:
            _MULTI_SQL[sql, n] = out
    return out


def _insert_rows(con: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Write ``rows`` with the insert ``sql`` in as few statements as its shape allows."""
    if sql not in _MULTI:
        m = _INSERT.match(sql)
        _MULTI[sql] = None if m is None else (m[1], m[2], m[3], m[2].count("?"))
    parts = _MULTI[sql]
    if parts is None or len(rows) < 2 or any(len(r) != parts[3] for r in rows):
        con.executemany(sql, rows)  # not an insert we can widen, or a row of another width
        return
    width = parts[3]
    step = max(1, min(_MULTI_ROWS, con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    full = len(rows) - len(rows) % step
    if full:
        flat = list(itertools.chain.from_iterable(rows[:full]))
        n = step * width
        con.executemany(_multi_sql(sql, step), [flat[i : i + n] for i in range(0, len(flat), n)])
    if full < len(rows):
        rest = rows[full:]
        flat = list(itertools.chain.from_iterable(rest))
        con.execute(_multi_sql(sql, len(rest), cache=False), flat)


# Errors caused by the rows written, not by the database: a value SQLite cannot hold (an integer
# beyond 64 bits raises OverflowError), a type it cannot bind, a wrong number of values, a
# constraint, a string or blob too big. Anything else (locked, full, read-only, I/O) is the store.
_BAD_ROW_ERRORS = (
    OverflowError,
    TypeError,
    ValueError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
)


class WriteTurn:
    """Turns at writing one SQLite file within this process: a durable write (the trading
    store's orders, fills, marks) goes before the batch writer's next transaction.

    SQLite lets one writer at a time into a file, and a connection that finds it locked polls
    (sleeps of up to 100 ms) while the batch writer, with a backlog, may begin its next
    transaction first: in a flat-out ``mandi run`` the trading kernel waited 2.3 s of 10 s that
    way. Here the durable writer announces itself (:meth:`urgent`) and is woken the moment the
    batch writer's transaction ends; the batch writer ends its transaction early, between
    pieces of a flush, while someone waits (:meth:`wanted`), and does not begin another until
    they are done. Other processes still meet SQLite's own busy timeout; a wait here gives up
    after ``timeout_s`` and lets SQLite decide.
    """

    def __init__(self, timeout_s: float = 30.0) -> None:
        self._cond = threading.Condition()
        self._urgent = 0
        self._bulk = 0  # batch writers of this file inside a transaction
        self.checkpointers = 0  # batch writers of this file that checkpoint its WAL
        self.timeout_s = timeout_s

    def wanted(self) -> bool:
        """Does a durable write wait for the batch writer?"""
        return self._urgent > 0

    @contextmanager
    def urgent(self, con: sqlite3.Connection | None = None) -> Iterator[None]:
        """Hold the turn for a durable write (waits for the batch writer's transaction).

        ``con``, the durable writer's connection, leaves the WAL's checkpoints to the batch
        writer while there is one (:meth:`SqliteBackend.commit`): SQLite runs a checkpoint
        inside whichever commit passes 1,000 pages of WAL, and one landing in an order's
        commit, or in the batch commit an order waits for, held the order 5–60 ms."""
        with self._cond:
            self._urgent += 1
            self._cond.wait_for(lambda: self._bulk == 0, self.timeout_s)
        try:
            if con is not None:
                pages = 0 if self.checkpointers else AUTOCHECKPOINT_PAGES
                con.execute(f"PRAGMA wal_autocheckpoint={pages}")
            yield
        finally:
            with self._cond:
                self._urgent -= 1
                self._cond.notify_all()

    def begin_bulk(self) -> None:
        """The batch writer's transaction begins (after any durable write waiting)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._urgent, self.timeout_s)
            self._bulk += 1

    def end_bulk(self) -> None:
        """The transaction :meth:`begin_bulk` announced is over (committed or rolled back)."""
        with self._cond:
            self._bulk -= 1
            if self._bulk == 0:
                self._cond.notify_all()


_TURNS: dict[str, WriteTurn] = {}
_TURNS_LOCK = threading.Lock()


def write_turn(path: str) -> WriteTurn:
    """The :class:`WriteTurn` of the database file ``path`` (one per file in this process)."""
    if not path or path == ":memory:":
        return WriteTurn()
    key = os.path.realpath(path)
    with _TURNS_LOCK:
        turn = _TURNS.get(key)
        if turn is None:
            turn = _TURNS[key] = WriteTurn()
        return turn


AUTOCHECKPOINT_PAGES = 1000  # SQLite's default
CHECKPOINT_EVERY_S = 1.0  # the batch writer's checkpoints, after its commit (outside the turn)


class SqliteBackend:
    """The SQLite half of a :class:`BatchWriter`: each flush is one transaction on the writer's
    own connection; bad rows are isolated inside it with savepoints and quarantined into the
    ``rejects`` table in the same transaction."""

    kind = "sqlite"
    atomic = True

    def __init__(
        self, path: str, statements: dict[str, str], synchronous: str, busy_timeout_ms: int
    ) -> None:
        self.label = f"SQLite {path}"
        self.path = path
        self.statements = statements
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self.con: sqlite3.Connection | None = None
        self.turn = write_turn(path)
        self._in_turn = False  # inside a transaction announced to the turn
        self._checkpointed = 0.0  # monotonic time of this writer's last checkpoint

    def connect(self) -> None:
        """Open the connection (on the caller's thread: a bad path stops start-up at once).
        The writer checkpoints the WAL itself, after its commits (:meth:`commit`)."""
        if self.con is None:
            self.con = connect(self.path, self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
            self.con.execute("PRAGMA wal_autocheckpoint=0")
            self.turn.checkpointers += 1

    def check(self, key: str) -> None:
        if key not in self.statements:
            raise StoreError(f"unknown writer statement {key!r}")

    def open(self) -> None:
        self.connect()

    def begin(self) -> None:
        assert self.con is not None
        self.turn.begin_bulk()
        self._in_turn = True
        try:
            self.con.execute("BEGIN")
        except BaseException:
            self._end_turn()
            raise

    def _end_turn(self) -> None:
        if self._in_turn:
            self._in_turn = False
            self.turn.end_bulk()

    def yield_wanted(self) -> bool:
        """End the transaction early: a durable write waits (:class:`WriteTurn`)."""
        return self.turn.wanted()

    def write(self, key: str, rows: list[tuple[Any, ...]], isolated: bool = False) -> None:
        con = self.con
        assert con is not None
        if not isolated:
            _insert_rows(con, self.statements[key], rows)
            return
        con.execute("SAVEPOINT mandi_rows")
        try:
            _insert_rows(con, self.statements[key], rows)
        except BaseException:
            con.execute("ROLLBACK TO mandi_rows")
            con.execute("RELEASE mandi_rows")
            raise
        con.execute("RELEASE mandi_rows")

    def commit(self) -> None:
        assert self.con is not None
        self.con.execute("COMMIT")
        self._end_turn()
        self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the WAL into the database at most once a second, after the commit has given
        the turn back and while no durable write waits for it: a PASSIVE checkpoint runs
        beside the other connections' reads and writes instead of inside someone's commit."""
        now = time.monotonic()
        if now - self._checkpointed < CHECKPOINT_EVERY_S or self.turn.wanted():
            return
        self._checkpointed = now
        # Busy, locked or full: what was committed is in the WAL and safe; the next one tries
        # again (and a full disk fails the next commit, where the writer reports it).
        assert self.con is not None
        with contextlib.suppress(sqlite3.OperationalError):
            self.con.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def rollback(self) -> None:
        try:
            if self.con is not None and self.con.in_transaction:
                self.con.execute("ROLLBACK")
        finally:
            self._end_turn()

    def is_bad_row(self, e: BaseException) -> bool:
        if isinstance(e, _BAD_ROW_ERRORS):
            return True
        # "Incorrect number of bindings" is the row's; a closed connection is not
        return isinstance(e, sqlite3.ProgrammingError) and "closed" not in str(e)

    def quarantine(self, rejects: list[Reject]) -> None:
        assert self.con is not None
        now = time.time_ns()
        self.con.executemany(REJECT_SQL, [r.as_row(self.kind, now) for r in rejects])

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None
            self.turn.checkpointers -= 1
        self._end_turn()


class BatchWriter(BatchLoop):
    """Writes rows into SQLite on a background thread in batched transactions
    (:class:`~mandi.stores.writer.BatchLoop`: flushing, bounds, quarantine, failure handling).

    A batch is flushed when ``flush_items`` items are pending or ``flush_interval`` seconds have
    passed since the first pending one (seed: 250 ms or 64 items); a flush writes everything
    queued at that moment in one transaction, so throughput grows with load. An *item* is
    ``(statement, rows)``; statements are named (``ticks``, ``candles``, ``events``, ``rejects``
    and whatever a layer adds with :meth:`register`). The queue is bounded by
    ``max_pending_rows``; rows beyond it are dropped and counted, never silently; a producer
    that can wait does so while :meth:`backlogged` (over ``high_water_rows``).
    """

    def __init__(
        self,
        path: str,
        statements: dict[str, str] | None = None,
        flush_interval: float = 0.25,
        flush_items: int = 64,
        max_pending_rows: int = 2_000_000,
        high_water_rows: int = 250_000,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 30_000,
        stop_retry_s: float = 10.0,
    ) -> None:
        self.path = path
        self.statements = {
            "ticks": TICK_SQL,
            "candles": CANDLE_SQL,
            "events": EVENT_SQL,
            "rejects": REJECT_SQL,
            **(statements or {}),
        }
        self._sqlite = SqliteBackend(path, self.statements, synchronous, busy_timeout_ms)
        super().__init__(
            self._sqlite,
            flush_interval=flush_interval,
            flush_items=flush_items,
            max_pending_rows=max_pending_rows,
            high_water_rows=high_water_rows,
            stop_retry_s=stop_retry_s,
            thread_name="mandi-sqlite-writer",
            logger=log,
        )

    def register(self, name: str, sql: str) -> None:
        """Name a statement for :meth:`put` (a layer's own tables)."""
        self.statements[name] = sql

    def start(self) -> BatchWriter:
        self._sqlite.connect()  # a bad path or an unwritable file fails here, not on the thread
        super().start()
        return self


# --- reads, stats, retention ----------------------------------------------------------------------


def load_candles(
    con: sqlite3.Connection,
    timeframe: int,
    start_ns: int = 0,
    end_ns: int = 1 << 62,
    tokens: Iterable[int] | None = None,
) -> list[Candle]:
    """Stored confirmed candles of ``timeframe`` with ``start_ns <= bucket < end_ns`` in
    (bucket, token) order — the order they were produced in."""
    sql = (
        "SELECT token, exchange, timeframe, bucket, open, high, low, close, volume, oi, ticks "
        "FROM candles WHERE timeframe=? AND bucket>=? AND bucket<?"
    )
    args: list[Any] = [timeframe, start_ns, end_ns]
    if tokens is not None:
        toks = list(tokens)
        sql += f" AND token IN ({','.join('?' * len(toks))})"
        args += toks
    sql += " ORDER BY bucket, token"
    return [row_candle(r) for r in con.execute(sql, args)]


def first_rowid_at(con: sqlite3.Connection, table: str, column: str, ts_ns: int) -> int:
    """The first rowid of an append-ordered ``table`` whose ``column`` is ``>= ts_ns`` (binary
    search over rowids; one past the last rowid if none)."""
    lo, hi = con.execute(f'SELECT min(rowid), max(rowid) FROM "{table}"').fetchone()
    if lo is None:
        return 1
    hi += 1
    while lo < hi:
        mid = (lo + hi) // 2
        row = con.execute(
            f'SELECT rowid, "{column}" FROM "{table}" WHERE rowid >= ? ORDER BY rowid LIMIT 1',
            (mid,),
        ).fetchone()
        if row is None or row[1] >= ts_ns:
            hi = mid
        else:
            lo = row[0] + 1
    return int(lo)


def table_stats(con: sqlite3.Connection, path: str) -> dict[str, Any]:
    """Row counts and time range per table, and the file size (``mandi db stats``)."""
    tables = [
        r[0]
        for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    out: dict[str, Any] = {"path": path, "tables": {}}
    size = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    out["file_size_bytes"] = size
    for t in tables:
        row: dict[str, Any] = {"rows": con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]}
        col = TIME_COLUMNS.get(t)
        if col:
            row["clock"] = "wall" if t in WALL_CLOCK_TABLES else "exchange"
        if col and t in APPEND_ORDERED:
            first = con.execute(f'SELECT "{col}" FROM "{t}" ORDER BY rowid LIMIT 1').fetchone()
            last = con.execute(f'SELECT "{col}" FROM "{t}" ORDER BY rowid DESC LIMIT 1').fetchone()
            row["first_ns"] = first[0] if first else None
            row["last_ns"] = last[0] if last else None
        elif col:
            lo, hi = con.execute(f'SELECT min("{col}"), max("{col}") FROM "{t}"').fetchone()
            row["first_ns"], row["last_ns"] = lo, hi
        out["tables"][t] = row
    return out


def cleanup(con: sqlite3.Connection, days: int, now_ns: int) -> dict[str, int]:
    """Delete rows older than ``days`` days from every time-keyed table; return counts."""
    if days < 0:
        raise StoreError(f"cleanup days must be >= 0, got {days}")
    cutoff = now_ns - days * 86_400 * NS_PER_SECOND
    deleted = {}
    for t, col in TIME_COLUMNS.items():
        exists = con.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (t,)
        ).fetchone()
        if not exists:
            continue
        if t in APPEND_ORDERED:
            end = first_rowid_at(con, t, col, cutoff)
            deleted[t] = con.execute(f'DELETE FROM "{t}" WHERE rowid < ?', (end,)).rowcount
        else:
            deleted[t] = con.execute(f'DELETE FROM "{t}" WHERE "{col}" < ?', (cutoff,)).rowcount
    return deleted


def get_meta(con: sqlite3.Connection, key: str) -> str | None:
    r = con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if r is None else str(r[0])


#: upsert of a ``meta`` key (also a writer statement: ``writer.put("meta", [(key, value)])``)
META_SQL = "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value"


def set_meta(con: sqlite3.Connection, key: str, value: str) -> None:
    con.execute(META_SQL, (key, value))


def meta_keys(con: sqlite3.Connection, prefix: str) -> list[str]:
    """The ``meta`` keys that start with ``prefix``."""
    return [
        str(k)
        for (k,) in con.execute(
            "SELECT key FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        )
    ]


def save_candles(con: sqlite3.Connection, candles: Sequence[Candle], meta: dict[str, str]) -> int:
    """Upsert confirmed candles (a history backfill) and ``meta`` keys in one transaction."""
    con.execute("BEGIN")
    try:
        con.executemany(CANDLE_SQL, [candle_row(c) for c in candles])
        for k, v in meta.items():
            set_meta(con, k, v)
    except BaseException:
        rollback(con)
        raise
    con.execute("COMMIT")
    return len(candles)


def checkpoint(con: sqlite3.Connection) -> None:
    """Fold the write-ahead log into the database file and truncate it (after a cleanup)."""
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
