"""Read queries shared by the API core (``mandi.web.api``) and the CLI (``mandi positions``,
``orders``, ``signals``, ``order``, ``resume``): the only place their SQL lives.

Every function takes ``db``: an open :class:`sqlite3.Connection` (the API keeps one read-only
connection per worker thread, see :class:`ReadOnlyConnections`) or a path (the CLI: opened
read-only for the one query and closed again; a path that does not exist reads as no rows).
A table that does not exist yet reads as no rows too (a database written by an older mandi, or one
``mandi run`` has not written to yet). Rows come back as plain dicts keyed by column name; values
are as stored (int paise, int ns).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from mandi.core.errors import StoreError

Db = sqlite3.Connection | str
Row = dict[str, Any]
T = TypeVar("T")

FINAL_ORDER_STATUSES = ("FILLED", "CANCELLED", "REJECTED")
_NEVER = 1 << 62  # "before the end of time": the newest rows


def _with(db: Db, fn: Callable[[sqlite3.Connection], T], empty: T) -> T:
    """Run ``fn`` on ``db`` (a connection, or a path opened read-only for the call)."""
    if isinstance(db, sqlite3.Connection):
        try:
            return fn(db)
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return empty
            raise StoreError(f"database read failed: {e}") from None
    if not os.path.exists(db):
        return empty
    from mandi.stores.sqlite import connect

    con = connect(db, readonly=True)
    try:
        return _with(con, fn, empty)
    finally:
        con.close()


def _rows(db: Db, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
    def run(con: sqlite3.Connection) -> list[Row]:
        cur = con.execute(sql, args)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    return _with(db, run, [])


def _scalar(db: Db, sql: str, args: tuple[Any, ...] = ()) -> Any:
    def run(con: sqlite3.Connection) -> Any:
        row = con.execute(sql, args).fetchone()
        return None if row is None else row[0]

    return _with(db, run, None)


class ReadOnlyConnections:
    """One read-only connection to ``path`` per thread (SQLite connections are not shared across
    threads; the API's reads run on the event loop and in worker threads)."""

    def __init__(self, path: str, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            try:
                con = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, timeout=10, check_same_thread=False
                )
                con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            except sqlite3.Error as e:
                raise StoreError(f"cannot read the database: {e}") from None
            self._local.con = con
        return con


# --- market data ----------------------------------------------------------------------------------


def candles(db: Db, token: int, timeframe: int, limit: int, before_ns: int = _NEVER) -> list[Row]:
    """The newest ``limit`` confirmed candles of (token, timeframe) before ``before_ns``, oldest
    first (columns of :class:`~mandi.model.market.Candle`)."""
    rows = _rows(
        db,
        "SELECT token, exchange, timeframe, bucket, open, high, low, close, volume, oi, ticks "
        "FROM candles WHERE token=? AND timeframe=? AND bucket<? ORDER BY bucket DESC LIMIT ?",
        (token, timeframe, before_ns, limit),
    )
    rows.reverse()
    return rows


def last_close_before(db: Db, token: int, timeframe: int, before_ns: int) -> int | None:
    """The close (paise) of the last candle of (token, timeframe) starting before ``before_ns``."""
    v = _scalar(
        db,
        "SELECT close FROM candles WHERE token=? AND timeframe=? AND bucket<? "
        "ORDER BY bucket DESC LIMIT 1",
        (token, timeframe, before_ns),
    )
    return None if v is None else int(v)


def first_open_since(db: Db, token: int, timeframe: int, since_ns: int) -> int | None:
    """The open (paise) of the first candle of (token, timeframe) from ``since_ns`` on."""
    v = _scalar(
        db,
        "SELECT open FROM candles WHERE token=? AND timeframe=? AND bucket>=? "
        "ORDER BY bucket LIMIT 1",
        (token, timeframe, since_ns),
    )
    return None if v is None else int(v)


def indicator_names(db: Db, token: int, timeframe: int) -> list[str]:
    """Names of the indicators stored for (token, timeframe)."""
    return [
        r["name"]
        for r in _rows(
            db,
            "SELECT DISTINCT name FROM indicator_values WHERE token=? AND timeframe=?",
            (token, timeframe),
        )
    ]


def indicator_points(
    db: Db, token: int, timeframe: int, name: str, limit: int, before_ns: int = _NEVER
) -> list[tuple[int, float]]:
    """The newest ``limit`` (bucket, value) of one indicator before ``before_ns``, oldest first."""
    rows = _rows(
        db,
        "SELECT bucket, value FROM indicator_values WHERE token=? AND timeframe=? AND "
        "name=? AND bucket<? ORDER BY bucket DESC LIMIT ?",
        (token, timeframe, name, before_ns, limit),
    )
    return [(r["bucket"], r["value"]) for r in reversed(rows)]


# --- trading --------------------------------------------------------------------------------------


def signals(db: Db, limit: int = 50, strategy: str | None = None) -> list[Row]:
    """Trading signals, newest first (of one strategy when given)."""
    if strategy:
        return _rows(
            db,
            "SELECT * FROM trading_signals WHERE strategy=? ORDER BY timestamp DESC LIMIT ?",
            (strategy, limit),
        )
    return _rows(db, "SELECT * FROM trading_signals ORDER BY timestamp DESC LIMIT ?", (limit,))


def signal(db: Db, signal_id: str) -> Row | None:
    """One trading signal by id (with its status and the reason for it)."""
    rows = _rows(db, "SELECT * FROM trading_signals WHERE signal_id=?", (signal_id,))
    return rows[0] if rows else None


def orders(db: Db, status: str | None = None, limit: int = 100) -> list[Row]:
    """Orders (slices), newest first; ``status`` one order status, or ``OPEN`` for every order not
    yet final (filled, cancelled or rejected)."""
    where: str = ""
    args: tuple[str, ...] = ()
    if status == "OPEN":
        where = f" WHERE status NOT IN {FINAL_ORDER_STATUSES!r}"
    elif status:
        where, args = " WHERE status=?", (status,)
    return _rows(
        db, f"SELECT * FROM orders{where} ORDER BY timestamp DESC, slice_no LIMIT ?", (*args, limit)
    )


def order_statuses(db: Db, order_id: str) -> list[str]:
    """The statuses of an order id or of the slices of a parent id (empty: no such order)."""
    return [
        r["status"]
        for r in _rows(
            db, "SELECT status FROM orders WHERE order_id=? OR parent_id=?", (order_id, order_id)
        )
    ]


def positions(db: Db, status: str = "open", limit: int = 100) -> list[Row]:
    """Positions, newest entry first: ``status`` ``open``, ``closed`` or ``all``."""
    where = {"open": " WHERE status='OPEN'", "closed": " WHERE status='CLOSED'"}.get(status, "")
    return _rows(
        db, f"SELECT * FROM positions{where} ORDER BY entry_timestamp DESC LIMIT ?", (limit,)
    )


def daily_performance(db: Db, days: int = 30) -> list[Row]:
    """Daily performance rows, newest day first."""
    return _rows(db, "SELECT * FROM daily_performance ORDER BY date DESC LIMIT ?", (days,))


def trades(db: Db, limit: int = 100) -> list[Row]:
    """Closed trades, newest exit first."""
    return _rows(db, "SELECT * FROM trades ORDER BY exit_time DESC LIMIT ?", (limit,))


def order_request(db: Db, request_id: str) -> Row | None:
    """A manual order request (``mandi order``) and its outcome, or None."""
    rows = _rows(db, "SELECT * FROM order_requests WHERE request_id=?", (request_id,))
    return rows[0] if rows else None


# --- backtests ------------------------------------------------------------------------------------

_RUN_COLUMNS = (
    "run_id, created_at, strategy, symbols, timeframe, engine, params, data_start, data_end, "
    "initial_value, final_value, total_return, sharpe, max_drawdown, trades"
)


def backtest_runs(db: Db, limit: int = 50, strategy: str | None = None) -> list[Row]:
    """Stored backtest runs (without their stats and equity), newest first."""
    if strategy:
        return _rows(
            db,
            f"SELECT {_RUN_COLUMNS} FROM backtest_runs WHERE strategy=? "
            "ORDER BY created_at DESC LIMIT ?",
            (strategy, limit),
        )
    return _rows(
        db, f"SELECT {_RUN_COLUMNS} FROM backtest_runs ORDER BY created_at DESC LIMIT ?", (limit,)
    )


def backtest_run(db: Db, run_id: str) -> Row | None:
    """One stored backtest run with its stats and equity curve (JSON text), or None."""
    rows = _rows(db, "SELECT * FROM backtest_runs WHERE run_id=?", (run_id,))
    return rows[0] if rows else None


def backtest_trades(db: Db, run_id: str, limit: int = 10_000) -> list[Row]:
    """The trades of one stored backtest run, in order."""
    return _rows(
        db, "SELECT * FROM backtest_trades WHERE run_id=? ORDER BY seq LIMIT ?", (run_id, limit)
    )
