"""ClickHouse: market data in (Replacing)MergeTree tables, as well as or instead of SQLite.

``store.clickhouse_url`` chooses the transport (empty = off):

* ``chdb:///abs/dir`` (or ``chdb://rel/dir``, ``chdb://:memory:``): chdb, ClickHouse in-process
  (``pip install 'mandi[clickhouse]'``). One process can hold one chdb directory at a time.
* ``http[s]://[user[:password]@]host[:port][/database]``: a ClickHouse server through
  clickhouse-connect. The password may come from ``$MANDI_CLICKHOUSE_PASSWORD`` instead of the
  URL; it is never logged (:meth:`ClickHouseTarget.safe`).

The tables are the seed's (``market_data`` for live candles, ``historical_data`` for imported
ones, ``options_data`` for chain snapshots, ``trading_signals``, ``positions``,
``performance_metrics``) plus ``ticks`` and ``indicator_values``. Market-data tables are
``ReplacingMergeTree(version)`` ordered by their natural key — (timeframe, token, bucket) for
candles — so a replayed or restarted write of the same key never shows twice after ``FINAL``
(every read here uses it); the latest write wins, as SQLite's upserts. Values are mandi's: int
paise, int ns UTC (a materialized ``timestamp`` column shows them as ``DateTime64(9)``).

:class:`ClickHouseWriter` runs the writer loop SQLite's ``BatchWriter`` runs
(:mod:`mandi.stores.writer`): rows are queued from the event loop (never blocking), a background
thread connects, creates the schema and inserts every 250 ms or ``flush_items`` items, one
column-oriented insert per table (Arrow IPC for chdb, the native columnar insert of
clickhouse-connect). The node layer that feeds it is :mod:`mandi.services.clickhouse`. chdb and
clickhouse-connect are imported only when used.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import ConfigError, RowError, StoreError
from mandi.model.market import Candle, IndicatorValue
from mandi.stores.sqlite import candle_row, row_candle
from mandi.stores.writer import BatchLoop, Reject

log = logging.getLogger(__name__)

SETTING = "store.clickhouse_url"
PASSWORD_ENV = "MANDI_CLICKHOUSE_PASSWORD"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# --- schema ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """One ClickHouse table: columns in insert order (the SQLite row order where one exists),
    then ``version`` (added by the writer) for the replacing engines."""

    name: str
    columns: tuple[tuple[str, str], ...]
    order_by: str
    time_column: str  # int ns: retention, stats and the partition (by month)
    replacing: bool = True
    # rows carry their own version as their last value (the record's update time: an order's
    # or a position's newest state wins, whatever order the inserts came in)
    row_version: bool = False

    @property
    def insert_columns(self) -> list[str]:
        return [c for c, _ in self.columns] + (["version"] if self.replacing else [])

    @property
    def insert_types(self) -> list[str]:
        return [t for _, t in self.columns] + (["UInt64"] if self.replacing else [])

    def ddl(self, db: str) -> str:
        cols = [f"`{c}` {t}" for c, t in self.columns]
        if self.replacing:
            cols.append("`version` UInt64")
        tc = self.time_column
        cols.append(
            f"`timestamp_utc` DateTime64(9, 'UTC') MATERIALIZED fromUnixTimestamp64Nano({tc})"
        )
        engine = "ReplacingMergeTree(version)" if self.replacing else "MergeTree"
        return (
            f"CREATE TABLE IF NOT EXISTS `{db}`.`{self.name}` ({', '.join(cols)}) "
            f"ENGINE = {engine} "
            f"PARTITION BY toYYYYMM(toDateTime(intDiv({tc}, 1000000000), 'UTC')) "
            f"ORDER BY ({self.order_by})"
        )


_I, _U, _F, _S, _LS = "Int64", "UInt64", "Float64", "String", "LowCardinality(String)"
_NF = "Nullable(Float64)"
_CANDLE_COLUMNS = (
    ("token", _I),
    ("exchange", _LS),
    ("timeframe", _I),
    ("bucket", _I),
    ("open", _I),
    ("high", _I),
    ("low", _I),
    ("close", _I),
    ("volume", _I),
    ("oi", _I),
    ("ticks", _I),
)
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        # live candles (mandi.stores.sqlite.candle_row order) and imported history
        Table("market_data", _CANDLE_COLUMNS, "timeframe, token, bucket", "bucket"),
        Table("historical_data", _CANDLE_COLUMNS, "timeframe, token, bucket", "bucket"),
        # tick_row order; no natural key, so the whole tick is the key: a replayed tick
        # collapses, two different ticks of one nanosecond both stay
        Table(
            "ticks",
            tuple((c, _I) for c in ("ts_event", "token", "price", "volume", "oi", "bid", "ask")),
            "token, ts_event, volume, price, oi, bid, ask",
            "ts_event",
        ),
        Table(
            "indicator_values",
            (
                ("token", _I),
                ("exchange", _LS),
                ("timeframe", _I),
                ("bucket", _I),
                ("name", _LS),
                ("value", _F),
            ),
            "timeframe, token, name, bucket",
            "bucket",
        ),
        # chain snapshots: mandi.stores.chains.snapshot_rows order
        Table(
            "options_data",
            (
                ("timestamp", _I),
                ("exchange", _LS),
                ("underlying", _LS),
                ("expiry", _S),
                ("strike", _I),
                ("option_type", _LS),
                ("symbol", _S),
                ("oi", _I),
                ("ltp", _I),
                ("token", _I),
                ("underlying_price", _I),
                ("moneyness", _LS),
                ("pct_change_3m", _NF),
                ("pct_change_5m", _NF),
                ("pct_change_10m", _NF),
                ("pct_change_15m", _NF),
                ("pct_change_30m", _NF),
                ("volume", _I),
                ("oi_change", _I),
                ("bid", _I),
                ("ask", _I),
                ("iv", _NF),
                ("lot_size", _I),
                ("source", _LS),
                ("created_at", _I),
            ),
            "underlying, expiry, timestamp, strike, option_type",
            "timestamp",
        ),
        # the seed's trading tables (003 §7), in mandi's units; written by the trading record
        # (mandi.services.record) when store.clickhouse_url is set
        Table(
            "trading_signals",
            (
                ("timestamp", _I),
                ("signal_id", _S),
                ("symbol", _S),
                ("asset_type", _LS),
                ("strategy", _LS),
                ("action", _LS),
                ("price", _I),
                ("quantity", _I),
                ("confidence", _F),
                ("target", _I),
                ("stop_loss", _I),
                ("metadata", _S),
            ),
            "timestamp, signal_id",
            "timestamp",
        ),
        Table(
            "positions",
            (
                ("position_id", _S),
                ("signal_id", _S),
                ("symbol", _S),
                ("underlying", _LS),
                ("strike", _I),
                ("option_type", _LS),
                ("expiry", _S),
                ("entry_timestamp", _I),
                ("entry_premium", _I),
                ("quantity", _I),
                ("lot_size", _I),
                ("total_investment", _I),
                ("stop_loss_premium", _I),
                ("target_premium", _I),
                ("current_premium", _I),
                ("unrealized_pnl", _I),
                ("exit_timestamp", "Nullable(Int64)"),
                ("exit_premium", "Nullable(Int64)"),
                ("exit_reason", "Nullable(String)"),
                ("realized_pnl", _I),
                ("status", _LS),
                ("paper_trade", "UInt8"),
                ("metadata", _S),
                ("updated_at", _I),
            ),
            "entry_timestamp, position_id",
            "entry_timestamp",
            row_version=True,
        ),
        # every order as it is now (ReplacingMergeTree by its update time)
        Table(
            "orders",
            (
                ("client_order_id", _S),
                ("parent_id", _S),
                ("token", _I),
                ("exchange", _LS),
                ("symbol", _S),
                ("side", _LS),
                ("quantity", _I),
                ("order_type", _LS),
                ("limit_price", _I),
                ("product", _LS),
                ("intent", _LS),
                ("strategy", _LS),
                ("signal_id", _S),
                ("position_id", _S),
                ("status", _LS),
                ("filled_qty", _I),
                ("fill_value", _I),
                ("broker_order_id", _S),
                ("reason", _S),
                ("charges", _I),
                ("created_ns", _I),
                ("updated_ns", _I),
            ),
            "created_ns, client_order_id",
            "created_ns",
            row_version=True,
        ),
        # the seed's daily_performance row per IST trading day (day_ns: its midnight, IST)
        Table(
            "daily_performance",
            (
                ("date", _S),
                ("day_ns", _I),
                ("total_trades", _I),
                ("winning_trades", _I),
                ("losing_trades", _I),
                ("gross_profit", _I),
                ("gross_loss", _I),
                ("net_pnl", _I),
                ("charges", _I),
                ("max_drawdown", _I),
                ("peak", _I),
                ("updated_ns", _I),
            ),
            "date",
            "day_ns",
            row_version=True,
        ),
        Table(
            "performance_metrics",
            (("timestamp", _I), ("metric_name", _LS), ("metric_value", _F), ("labels", _S)),
            "metric_name, timestamp",
            "timestamp",
            replacing=False,
        ),
    )
}
CANDLE_TABLES = ("market_data", "historical_data")


def _lit(text: str) -> str:
    """A ClickHouse string literal (quotes and backslashes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- URLs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClickHouseTarget:
    kind: Literal["chdb", "http"]
    database: str = "mandi"
    path: str = ""  # chdb: the data directory (":memory:" for none)
    host: str = ""
    port: int = 0
    secure: bool = False
    username: str = "default"
    password: str = field(default="", repr=False)

    def safe(self) -> str:
        """The URL without its password, for logs and errors."""
        if self.kind == "chdb":
            return f"chdb://{self.path}?database={self.database}"
        scheme = "https" if self.secure else "http"
        user = f"{self.username}:***@" if self.password else f"{self.username}@"
        return f"{scheme}://{user}{self.host}:{self.port}/{self.database}"


def _redact(url: str) -> str:
    try:
        p = urllib.parse.urlsplit(url)
        if p.password is not None:
            host = p.hostname or ""
            port = f":{p.port}" if p.port else ""
            return p._replace(netloc=f"{p.username or ''}:***@{host}{port}").geturl()
    except ValueError:
        return "<unparsable URL>"
    return url


def parse_url(url: str, env: dict[str, str] | None = None) -> ClickHouseTarget:
    """``store.clickhouse_url`` as a target; a :class:`ConfigError` naming the setting (and the
    URL without its password) when it is malformed."""
    environ = os.environ if env is None else env

    def bad(reason: str) -> ConfigError:
        return ConfigError(SETTING, _redact(url), reason)

    try:
        p = urllib.parse.urlsplit(url.strip())
        port = p.port
    except ValueError as e:
        raise bad(f"not a URL ({e})") from None
    q = dict(urllib.parse.parse_qsl(p.query))
    scheme = p.scheme.lower()
    if scheme == "chdb":
        path = url.strip()[len("chdb://") :].split("?", 1)[0] if "://" in url else ""
        if not path:
            raise bad(
                "chdb:// needs a directory (chdb:///abs/dir, chdb://rel/dir, chdb://:memory:)"
            )
        db = q.get("database", "mandi")
        if not _IDENT.match(db):
            raise bad(f"database {db!r} is not a plain identifier")
        return ClickHouseTarget("chdb", db, path=path)
    if scheme in ("http", "https", "clickhouse"):
        if not p.hostname:
            raise bad("no host (http://host:8123/database)")
        db = p.path.strip("/") or q.get("database", "mandi")
        if not _IDENT.match(db):
            raise bad(f"database {db!r} is not a plain identifier")
        secure = scheme == "https" or q.get("secure", "") in ("1", "true")
        password = urllib.parse.unquote(p.password or "") or environ.get(PASSWORD_ENV, "")
        return ClickHouseTarget(
            "http",
            db,
            host=p.hostname,
            port=port or (8443 if secure else 8123),
            secure=secure,
            username=urllib.parse.unquote(p.username or "") or "default",
            password=password,
        )
    raise bad("the scheme must be chdb://, http:// or https:// (empty turns ClickHouse off)")


# --- transports -----------------------------------------------------------------------------------


class Transport(Protocol):
    """What the store needs from a ClickHouse connection."""

    def command(self, sql: str) -> None: ...

    def rows(self, sql: str) -> list[tuple[Any, ...]]: ...

    def insert(
        self, table: str, names: list[str], types: list[str], columns: list[Sequence[Any]]
    ) -> None:
        """Insert column-oriented data (one sequence per column) into ``database.table``."""
        ...

    def close(self) -> None: ...


_ARROW = {"Int64": "int64", "UInt64": "uint64", "UInt8": "uint8", "Float64": "float64"}


def _arrow_type(pa: Any, ch_type: str) -> Any:
    inner = ch_type.removeprefix("Nullable(").removeprefix("LowCardinality(").rstrip(")")
    return getattr(pa, _ARROW[inner])() if inner in _ARROW else pa.string()


class ChdbTransport:
    """chdb: ClickHouse in this process. Inserts go as Arrow IPC streams (columnar)."""

    _open: ClassVar[dict[str, int]] = {}  # chdb allows one data directory per process
    _open_lock = threading.Lock()

    def __init__(self, target: ClickHouseTarget) -> None:
        try:
            import pyarrow as pa
            import pyarrow.ipc as ipc
            from chdb.state.sqlitelike import Connection
        except ImportError as e:
            raise StoreError(
                f"{SETTING} = {target.safe()} needs chdb: pip install 'mandi[clickhouse]' ({e})"
            ) from None
        self._pa, self._ipc = pa, ipc
        path = target.path
        if path != ":memory:":
            path = os.path.abspath(path)
            os.makedirs(path, exist_ok=True)
        with self._open_lock:
            other = [p for p, n in self._open.items() if n and p != path]
            if other:
                raise StoreError(
                    f"chdb holds {other[0]!r} in this process; it cannot also open {path!r} "
                    "(one chdb directory per process)"
                )
            try:
                self._con = Connection(path)
            except Exception as e:
                raise StoreError(f"cannot open chdb at {path!r}: {e}") from None
            self._open[path] = self._open.get(path, 0) + 1
        self.path = path
        self.database = target.database
        self._lock = threading.Lock()

    def command(self, sql: str) -> None:
        with self._lock:
            self._con.query(sql, "CSV")

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self._lock:
            t = self._con.query(sql, "Arrowtable")
        cols = [c.to_pylist() for c in t.columns]
        return list(zip(*cols, strict=True)) if cols else []

    def insert(
        self, table: str, names: list[str], types: list[str], columns: list[Sequence[Any]]
    ) -> None:
        pa = self._pa
        arrays = [pa.array(c, type=_arrow_type(pa, t)) for c, t in zip(columns, types, strict=True)]
        tbl = pa.Table.from_arrays(arrays, names=names)
        buf = io.BytesIO()
        with self._ipc.new_stream(buf, tbl.schema) as w:
            w.write_table(tbl)
        cols = ", ".join(f"`{n}`" for n in names)
        with (
            self._lock,
            self._con.send_insert(
                f"INSERT INTO `{self.database}`.`{table}` ({cols})", "ArrowStream"
            ) as ins,
        ):
            ins.append(buf.getvalue())
            ins.finish()

    def close(self) -> None:
        with self._lock, self._open_lock:
            if self._con is not None:
                self._con.close()
                self._con = None  # type: ignore[assignment]
                self._open[self.path] -= 1


class HttpTransport:
    """A ClickHouse server through clickhouse-connect (HTTP, native columnar inserts)."""

    def __init__(self, target: ClickHouseTarget, connect_timeout: float = 5.0) -> None:
        try:
            import clickhouse_connect
        except ImportError as e:
            raise StoreError(
                f"{SETTING} = {target.safe()} needs clickhouse-connect: "
                f"pip install 'mandi[clickhouse]' ({e})"
            ) from None
        self.database = target.database
        self._secret = target.password
        try:
            self._client = clickhouse_connect.get_client(
                host=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                secure=target.secure,
                connect_timeout=connect_timeout,
            )
        except Exception as e:
            raise StoreError(f"cannot connect to {target.safe()}: {self._clean(e)}") from None
        self._lock = threading.Lock()

    def _clean(self, e: BaseException) -> str:
        text = str(e)
        return text.replace(self._secret, "***") if self._secret else text

    def command(self, sql: str) -> None:
        with self._lock:
            self._client.command(sql)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return [tuple(r) for r in self._client.query(sql).result_rows]

    def insert(
        self, table: str, names: list[str], types: list[str], columns: list[Sequence[Any]]
    ) -> None:
        with self._lock:
            self._client.insert(
                table,
                columns,
                column_names=names,
                database=self.database,
                column_type_names=types,
                column_oriented=True,
            )

    def close(self) -> None:
        self._client.close()


def open_transport(target: ClickHouseTarget) -> Transport:
    if target.kind == "chdb":
        return ChdbTransport(target)
    return HttpTransport(target)


# --- the store ------------------------------------------------------------------------------------


class ClickHouseStore:
    """Schema, columnar inserts and reads over one transport (thread-safe)."""

    def __init__(self, transport: Transport, database: str, url: str = "") -> None:
        self.transport = transport
        self.database = database
        self.url = url  # safe (no password)

    @classmethod
    def open(cls, url: str | ClickHouseTarget, create: bool = True) -> ClickHouseStore:
        target = parse_url(url) if isinstance(url, str) else url
        store = cls(open_transport(target), target.database, target.safe())
        if create:
            try:
                store.create_schema()
            except Exception:
                store.close()
                raise
        return store

    def _q(self, table: str) -> str:
        return f"`{self.database}`.`{table}`"

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except StoreError:
            raise
        except Exception as e:
            clean = getattr(self.transport, "_clean", str)
            raise StoreError(f"ClickHouse {what} failed ({self.url}): {clean(e)}") from None

    def create_schema(self) -> None:
        self._call("CREATE DATABASE", self.transport.command,
                   f"CREATE DATABASE IF NOT EXISTS `{self.database}`")  # fmt: skip
        for t in TABLES.values():
            self._call(f"CREATE TABLE {t.name}", self.transport.command, t.ddl(self.database))

    def tables(self) -> list[str]:
        rows = self._call(
            "SHOW TABLES",
            self.transport.rows,
            f"SELECT name FROM system.tables WHERE database = '{self.database}' ORDER BY name",
        )
        return [r[0] for r in rows]

    def insert_rows(
        self, table: str, rows: Sequence[Sequence[Any]], version: int | None = None
    ) -> int:
        """Insert row tuples (in the table's column order, without ``version``) as one
        column-oriented insert; ``version`` defaults to now (later writes win)."""
        if not rows:
            return 0
        spec = TABLES.get(table)
        if spec is None:
            raise StoreError(f"unknown ClickHouse table {table!r}")
        width = len(spec.columns) + (1 if spec.row_version else 0)
        try:
            columns: list[Sequence[Any]] = [list(c) for c in zip(*rows, strict=True)]
        except ValueError:
            raise RowError(f"{table}: rows of different widths") from None
        if len(columns) != width:
            raise RowError(f"{table}: rows of {len(columns)} columns, the table has {width}")
        if spec.replacing and not spec.row_version:
            columns.append([time.time_ns() if version is None else version] * len(rows))
        try:
            self.transport.insert(table, spec.insert_columns, spec.insert_types, columns)
        except (OverflowError, TypeError, ValueError) as e:  # pyarrow's Arrow{Invalid,TypeError}
            raise RowError(f"{table}: a value ClickHouse cannot hold ({e})") from None
        except StoreError:
            raise
        except Exception as e:
            clean = getattr(self.transport, "_clean", str)
            raise StoreError(
                f"ClickHouse INSERT INTO {table} failed ({self.url}): {clean(e)}"
            ) from None
        return len(rows)

    def insert_candles(self, candles: Iterable[Candle], table: str = "market_data") -> int:
        return self.insert_rows(table, [candle_row(c) for c in candles])

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return list(self._call("query", self.transport.rows, sql))

    def load_candles(
        self,
        timeframe: int,
        start_ns: int = 0,
        end_ns: int = 1 << 62,
        tokens: Iterable[int] | None = None,
        table: str = "market_data",
    ) -> list[Candle]:
        """Confirmed candles of ``timeframe`` with ``start_ns <= bucket < end_ns`` in (bucket,
        token) order, deduplicated (``FINAL``), as :func:`mandi.stores.sqlite.load_candles`."""
        if table not in CANDLE_TABLES:
            raise StoreError(f"{table!r} holds no candles")
        cols = ", ".join(c for c, _ in _CANDLE_COLUMNS)
        sql = (
            f"SELECT {cols} FROM {self._q(table)} FINAL WHERE timeframe = {int(timeframe)} "
            f"AND bucket >= {int(start_ns)} AND bucket < {int(end_ns)}"
        )
        if tokens is not None:
            toks = [int(t) for t in tokens]
            if not toks:
                return []
            sql += f" AND token IN ({','.join(map(str, toks))})"
        sql += " ORDER BY bucket, token"
        return [row_candle(r) for r in self.rows(sql)]

    def load_indicator_values(
        self, timeframe: int, start_ns: int = 0, end_ns: int = 1 << 62
    ) -> list[IndicatorValue]:
        sql = (
            "SELECT token, exchange, timeframe, bucket, name, value FROM "
            f"{self._q('indicator_values')} FINAL WHERE timeframe = {int(timeframe)} "
            f"AND bucket >= {int(start_ns)} AND bucket < {int(end_ns)} ORDER BY bucket, token, name"
        )
        return [IndicatorValue(*r) for r in self.rows(sql)]

    # --- history for the API (newest ``limit`` before ``end_ns``, oldest first) ----------------
    def recent_candles(
        self, token: int, exchange: str, timeframe: int, end_ns: int, limit: int
    ) -> list[Candle]:
        cols = ", ".join(c for c, _ in _CANDLE_COLUMNS)
        rows = self.rows(
            f"SELECT {cols} FROM {self._q('market_data')} FINAL WHERE timeframe = "
            f"{int(timeframe)} AND token = {int(token)} AND exchange = {_lit(exchange)} AND "
            f"bucket < {int(end_ns)} ORDER BY bucket DESC LIMIT {int(limit)}"
        )
        return [row_candle(r) for r in reversed(rows)]

    def indicator_names(self, token: int, exchange: str, timeframe: int) -> list[str]:
        rows = self.rows(
            f"SELECT DISTINCT name FROM {self._q('indicator_values')} WHERE timeframe = "
            f"{int(timeframe)} AND token = {int(token)} AND exchange = {_lit(exchange)} "
            "ORDER BY name"
        )
        return [str(r[0]) for r in rows]

    def recent_indicator_values(
        self, token: int, exchange: str, timeframe: int, name: str, end_ns: int, limit: int
    ) -> list[tuple[int, float]]:
        rows = self.rows(
            f"SELECT bucket, value FROM {self._q('indicator_values')} FINAL WHERE timeframe = "
            f"{int(timeframe)} AND token = {int(token)} AND exchange = {_lit(exchange)} AND "
            f"name = {_lit(name)} AND bucket < {int(end_ns)} ORDER BY bucket DESC "
            f"LIMIT {int(limit)}"
        )
        return [(int(b), float(v)) for b, v in reversed(rows)]

    def stats(self) -> dict[str, Any]:
        """Per table: rows after deduplication (``rows``), rows stored before merges
        (``stored_rows``) and the time range (int ns)."""
        out: dict[str, Any] = {"url": self.url, "database": self.database, "tables": {}}
        present = set(self.tables())
        for name, spec in TABLES.items():
            if name not in present:
                continue
            tc = spec.time_column
            final = " FINAL" if spec.replacing else ""
            ((n, lo, hi),) = self.rows(
                f"SELECT count(), min({tc}), max({tc}) FROM {self._q(name)}{final}"
            )
            ((stored,),) = self.rows(f"SELECT count() FROM {self._q(name)}")
            out["tables"][name] = {
                "rows": int(n),
                "stored_rows": int(stored),
                "first_ns": int(lo) if n else None,
                "last_ns": int(hi) if n else None,
            }
        return out

    def cleanup(self, days: int, now_ns: int | None = None) -> dict[str, int]:
        """Delete rows older than ``days`` days (by each table's time column) from every
        table; return the stored rows deleted per table."""
        if days < 0:
            raise StoreError(f"cleanup days must be >= 0, got {days}")
        now = time.time_ns() if now_ns is None else now_ns
        cutoff = now - days * 86_400 * NS_PER_SECOND
        deleted: dict[str, int] = {}
        present = set(self.tables())
        for name, spec in TABLES.items():
            if name not in present:
                continue
            where = f"{spec.time_column} < {int(cutoff)}"
            ((n,),) = self.rows(f"SELECT count() FROM {self._q(name)} WHERE {where}")
            if n:
                self._call(
                    f"DELETE FROM {name}",
                    self.transport.command,
                    f"ALTER TABLE {self._q(name)} DELETE WHERE {where} SETTINGS mutations_sync = 2",
                )
            deleted[name] = int(n)
        return deleted

    def optimize(self, table: str) -> None:
        """Merge ``table``'s parts now (``OPTIMIZE ... FINAL``): deduplicates on disk."""
        self._call("OPTIMIZE", self.transport.command, f"OPTIMIZE TABLE {self._q(table)} FINAL")

    def close(self) -> None:
        self.transport.close()


# --- the batched writer ---------------------------------------------------------------------------


class ClickHouseBackend:
    """The ClickHouse half of a :class:`ClickHouseWriter`: connect (and create the schema) on the
    writer thread, one column-oriented insert per table; refused rows go to ``on_reject``."""

    kind = "clickhouse"
    atomic = False  # each table's insert lands on its own; a retry repeats only the failed one

    def __init__(
        self, target: ClickHouseTarget, on_reject: Callable[[list[Reject]], None] | None
    ) -> None:
        self.target = target
        self.label = f"ClickHouse ({target.safe()})"
        self.on_reject = on_reject
        self.store: ClickHouseStore | None = None

    def check(self, key: str) -> None:
        if key not in TABLES:
            raise StoreError(f"unknown ClickHouse table {key!r}")

    def open(self) -> None:
        self.store = ClickHouseStore.open(self.target)

    def begin(self) -> None:
        pass

    def write(self, key: str, rows: list[tuple[Any, ...]], isolated: bool = False) -> None:
        assert self.store is not None
        self.store.insert_rows(key, rows)  # one insert: all or nothing either way

    def commit(self) -> None:
        pass

    def yield_wanted(self) -> bool:
        return False  # not atomic: each insert is its own unit

    def rollback(self) -> None:
        pass

    def is_bad_row(self, e: BaseException) -> bool:
        return isinstance(e, RowError)

    def quarantine(self, rejects: list[Reject]) -> None:
        if self.on_reject is not None:
            self.on_reject(rejects)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


class ClickHouseWriter(BatchLoop):
    """Inserts rows into ClickHouse on a background thread, in column-oriented batches
    (:class:`~mandi.stores.writer.BatchLoop`, the loop SQLite's ``BatchWriter`` uses too).

    ``put`` only queues (the caller's event loop never waits for ClickHouse). The thread opens
    the store (connect + schema; retried with backoff while the server is unreachable), then
    flushes when ``flush_items`` items are pending or ``flush_interval`` s after the first one:
    everything queued goes out as one insert per table. At most ``max_pending_rows`` rows wait;
    more are dropped and counted (a replayable feed waits while it is :meth:`backlogged`). A
    failed insert is counted, logged (the URL without its password) and retried with backoff,
    keeping its rows; replacing tables make the retry of a
    partly applied insert harmless. Rows ClickHouse refuses are isolated and handed to
    ``on_reject`` (the node stores them in SQLite's ``rejects``). ``stop`` flushes what is
    queued, giving up on an unreachable server after ``stop_retry_s``.
    """

    def __init__(
        self,
        url: str | ClickHouseTarget,
        flush_interval: float = 0.25,
        flush_items: int = 64,
        max_pending_rows: int = 2_000_000,
        stop_retry_s: float = 10.0,
        on_reject: Callable[[list[Reject]], None] | None = None,
        high_water_rows: int = 250_000,
    ) -> None:
        self.target = parse_url(url) if isinstance(url, str) else url
        self._clickhouse = ClickHouseBackend(self.target, on_reject)
        super().__init__(
            self._clickhouse,
            flush_interval=flush_interval,
            flush_items=flush_items,
            max_pending_rows=max_pending_rows,
            high_water_rows=high_water_rows,
            stop_retry_s=stop_retry_s,
            thread_name="mandi-clickhouse-writer",
            logger=log,
        )

    @property
    def store(self) -> ClickHouseStore | None:
        """The open store (None before the writer thread connected)."""
        return self._clickhouse.store

    def start(self) -> ClickHouseWriter:
        super().start()
        return self
