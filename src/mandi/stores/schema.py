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
    # The seed's OI-tracker tables (seed 001 §4), plus the columns a multi-underlying platform
    # needs (underlying, expiry, volume, change in OI, bid/ask, IV). Times are int ns UTC, strikes
    # and prices int paise, OI and volume in shares; pct_change_* in percent.
    ("0003_option_chains", """
        CREATE TABLE IF NOT EXISTS option_chain_snapshots (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            timestamp INTEGER NOT NULL,
            exchange TEXT NOT NULL,
            underlying TEXT NOT NULL,
            expiry TEXT NOT NULL,
            strike INTEGER NOT NULL,
            option_type TEXT NOT NULL,
            symbol TEXT NOT NULL,
            oi INTEGER NOT NULL,
            ltp INTEGER NOT NULL,
            token INTEGER NOT NULL,
            underlying_price INTEGER NOT NULL,
            moneyness TEXT NOT NULL,
            pct_change_3m REAL,
            pct_change_5m REAL,
            pct_change_10m REAL,
            pct_change_15m REAL,
            pct_change_30m REAL,
            volume INTEGER NOT NULL DEFAULT 0,
            oi_change INTEGER NOT NULL DEFAULT 0,
            bid INTEGER NOT NULL DEFAULT 0,
            ask INTEGER NOT NULL DEFAULT 0,
            iv REAL,
            lot_size INTEGER NOT NULL DEFAULT 1,
            source TEXT NOT NULL DEFAULT '',
            created_at INTEGER NOT NULL,
            UNIQUE (timestamp, underlying, expiry, strike, option_type)
        );
        CREATE INDEX IF NOT EXISTS idx_snapshots_exchange_timestamp
            ON option_chain_snapshots (exchange, timestamp);
        CREATE INDEX IF NOT EXISTS idx_snapshots_token ON option_chain_snapshots (token);
        CREATE INDEX IF NOT EXISTS idx_snapshots_moneyness
            ON option_chain_snapshots (exchange, moneyness, timestamp);
        CREATE INDEX IF NOT EXISTS idx_snapshots_underlying_price
            ON option_chain_snapshots (exchange, timestamp, underlying_price);
        CREATE INDEX IF NOT EXISTS idx_snapshots_underlying
            ON option_chain_snapshots (underlying, expiry, timestamp);
        CREATE TABLE IF NOT EXISTS exchange_metadata (
            exchange TEXT PRIMARY KEY,
            last_update_time INTEGER NOT NULL,
            last_atm_strike INTEGER NOT NULL,
            last_underlying_price INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
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
    "option_chain_snapshots": "timestamp",
}

# Append-only tables whose rowid order is time order (no time index; see the module doc).
APPEND_ORDERED: frozenset[str] = frozenset({"ticks"})
