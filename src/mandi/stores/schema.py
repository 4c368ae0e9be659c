"""SQLite schema as named, ordered migrations.

Each concern appends its own migrations to :data:`MIGRATIONS`; applied names are recorded in
``schema_migrations`` so a database created by an older mandi is upgraded in place, and
``PRAGMA user_version`` holds the number applied. Times are int ns UTC, prices int paise.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_market_data", """
        CREATE TABLE IF NOT EXISTS ticks (
            token INTEGER NOT NULL,
            exchange TEXT NOT NULL,
            ts_event INTEGER NOT NULL,
            price INTEGER NOT NULL,
            volume INTEGER NOT NULL,
            last_qty INTEGER NOT NULL,
            oi INTEGER NOT NULL,
            bid INTEGER NOT NULL,
            ask INTEGER NOT NULL,
            bid_qty INTEGER NOT NULL,
            ask_qty INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS idx_ticks_ts ON ticks (ts_event);
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
            PRIMARY KEY (token, timeframe, bucket)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS idx_candles_tf_bucket ON candles (timeframe, bucket);
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
]

# Tables with a time column, for stats and retention: table -> column (int ns).
TIME_COLUMNS: dict[str, str] = {
    "ticks": "ts_event",
    "candles": "bucket",
    "system_events": "timestamp",
}
