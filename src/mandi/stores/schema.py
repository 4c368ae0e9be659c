"""SQLite schema as named, ordered migrations.

``ticks`` is append-only and deliberately unindexed (the seed's columns: time, token, LTP, volume,
OI, bid, ask): rows arrive in event-time order, so the rowid orders them in time and
:func:`mandi.stores.sqlite.first_rowid_at` finds a time by binary search. That keeps the writer
above 500,000 rows/s. ``candles`` is keyed (timeframe, bucket, token) so live inserts append, with
an index by token for per-instrument reads.

Each concern appends its own migrations to :data:`MIGRATIONS`; applied names are recorded in
``schema_migrations`` so a database created by an older mandi is upgraded in place, and
``PRAGMA user_version`` holds the number applied. Times are int ns UTC, prices int paise.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_market_data", """
        CREATE TABLE IF NOT EXISTS ticks (
            ts_event INTEGER NOT NULL,
            token INTEGER NOT NULL,
            price INTEGER NOT NULL,
            volume INTEGER NOT NULL,
            oi INTEGER NOT NULL,
            bid INTEGER NOT NULL,
            ask INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS candles (
            token INTEGER NOT NULL,
            exchange TEXT NOT NULL,
            timeframe INTEGER NOT NULL,
            bucket INTEGER NOT NULL,
            open INTEGER NOT NULL,
            high INTEGER NOT NULL,
            low INTEGER NOT NULL,
            close INTEGER NOT NULL,
            volume INTEGER NOT NULL,
            oi INTEGER NOT NULL,
            ticks INTEGER NOT NULL,
            PRIMARY KEY (timeframe, bucket, token)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS idx_candles_token ON candles (token, timeframe, bucket);
        CREATE TABLE IF NOT EXISTS system_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            timestamp INTEGER NOT NULL,
            event_type TEXT NOT NULL,
            message TEXT NOT NULL,
            severity TEXT NOT NULL DEFAULT 'INFO',
            source TEXT NOT NULL DEFAULT '',
            data TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX IF NOT EXISTS idx_system_events_ts ON system_events (timestamp);
        CREATE TABLE IF NOT EXISTS meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
    """),
    ("0002_indicators", """
        CREATE TABLE IF NOT EXISTS indicator_values (
            token INTEGER NOT NULL,
            exchange TEXT NOT NULL,
            timeframe INTEGER NOT NULL,
            bucket INTEGER NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (timeframe, bucket, token, name)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS idx_indicator_values_token
            ON indicator_values (token, timeframe, name, bucket);
        CREATE TABLE IF NOT EXISTS indicator_snapshots (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            timestamp INTEGER NOT NULL,
            specs TEXT NOT NULL,
            state BLOB NOT NULL
        );
    """),
]

# Tables with a time column, for stats and retention: table -> column (int ns).
TIME_COLUMNS: dict[str, str] = {
    "ticks": "ts_event",
    "candles": "bucket",
    "system_events": "timestamp",
    "indicator_values": "bucket",
    "indicator_snapshots": "timestamp",
}

# Append-only tables whose rowid order is time order (no time index; see the module doc).
APPEND_ORDERED: frozenset[str] = frozenset({"ticks"})
