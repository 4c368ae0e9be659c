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
    (
        "0001_market_data",
        """
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
    """,
    ),
    (
        "0002_indicators",
        """
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
    """,
    ),
    # The seed's OI-tracker tables (seed 001 §4), plus the columns a multi-underlying platform
    # needs (underlying, expiry, volume, change in OI, bid/ask, IV). Times are int ns UTC, strikes
    # and prices int paise, OI and volume in shares; pct_change_* in percent.
    (
        "0003_option_chains",
        """
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
    """,
    ),
    # Trading (issue 5): the seed tables trading_signals (seed 003 §7.1), orders and trades
    # (seed 002), positions (seed 003 §7.2), daily_performance (seed 002) with the seed's column
    # names, plus fills, the order state log, the HALTED latch, CLI order requests and the paper
    # broker's book. Money int paise, times int ns UTC; written with synchronous=FULL.
    (
        "0004_trading",
        """
        CREATE TABLE IF NOT EXISTS trading_signals (
            signal_id TEXT PRIMARY KEY,
            timestamp INTEGER NOT NULL,
            symbol TEXT NOT NULL,
            asset_type TEXT NOT NULL,
            strategy TEXT NOT NULL,
            action TEXT NOT NULL,
            price INTEGER NOT NULL,
            quantity INTEGER NOT NULL,
            confidence REAL NOT NULL,
            target INTEGER NOT NULL,
            stop_loss INTEGER NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            token INTEGER NOT NULL,
            exchange TEXT NOT NULL,
            timeframe INTEGER NOT NULL,
            bucket INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'NEW',
            reason TEXT NOT NULL DEFAULT '',
            processed_at INTEGER
        );
        CREATE INDEX IF NOT EXISTS idx_trading_signals_ts ON trading_signals (timestamp);
        CREATE INDEX IF NOT EXISTS idx_trading_signals_strategy
            ON trading_signals (strategy, timestamp);
        CREATE TABLE IF NOT EXISTS orders (
            order_id TEXT PRIMARY KEY,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            quantity INTEGER NOT NULL,
            price INTEGER NOT NULL,
            status TEXT NOT NULL,
            filled_price INTEGER NOT NULL DEFAULT 0,
            filled_qty INTEGER NOT NULL DEFAULT 0,
            timestamp INTEGER NOT NULL,
            strategy_name TEXT NOT NULL,
            parent_id TEXT NOT NULL,
            token INTEGER NOT NULL,
            exchange TEXT NOT NULL,
            order_type TEXT NOT NULL,
            product TEXT NOT NULL,
            intent TEXT NOT NULL,
            signal_id TEXT NOT NULL,
            position_id TEXT NOT NULL,
            slice_no INTEGER NOT NULL,
            slice_count INTEGER NOT NULL,
            segment TEXT NOT NULL,
            tag TEXT NOT NULL,
            broker_order_id TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT '',
            charges INTEGER NOT NULL DEFAULT 0,
            fill_value INTEGER NOT NULL DEFAULT 0,
            fill_ids TEXT NOT NULL DEFAULT '[]',
            stop_loss INTEGER NOT NULL DEFAULT 0,
            target INTEGER NOT NULL DEFAULT 0,
            updated_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS idx_orders_parent ON orders (parent_id);
        CREATE INDEX IF NOT EXISTS idx_orders_status ON orders (status);
        CREATE INDEX IF NOT EXISTS idx_orders_position ON orders (position_id);
        CREATE INDEX IF NOT EXISTS idx_orders_ts ON orders (timestamp);
        CREATE TABLE IF NOT EXISTS order_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            order_id TEXT NOT NULL,
            timestamp INTEGER NOT NULL,
            status TEXT NOT NULL,
            event TEXT NOT NULL,
            segment TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX IF NOT EXISTS idx_order_events_order ON order_events (order_id);
        CREATE INDEX IF NOT EXISTS idx_order_events_ts ON order_events (timestamp, event);
        CREATE TABLE IF NOT EXISTS fills (
            fill_id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            timestamp INTEGER NOT NULL,
            token INTEGER NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            quantity INTEGER NOT NULL,
            price INTEGER NOT NULL,
            charges INTEGER NOT NULL,
            charges_detail TEXT NOT NULL DEFAULT '{}',
            intent TEXT NOT NULL,
            strategy TEXT NOT NULL,
            position_id TEXT NOT NULL,
            signal_id TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX IF NOT EXISTS idx_fills_order ON fills (order_id);
        CREATE INDEX IF NOT EXISTS idx_fills_position ON fills (position_id);
        CREATE INDEX IF NOT EXISTS idx_fills_ts ON fills (timestamp);
        CREATE TABLE IF NOT EXISTS trades (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            order_id TEXT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            quantity INTEGER NOT NULL,
            entry_price INTEGER NOT NULL,
            exit_price INTEGER NOT NULL,
            pnl INTEGER NOT NULL,
            pnl_pct REAL NOT NULL,
            entry_time INTEGER NOT NULL,
            exit_time INTEGER NOT NULL,
            position_id TEXT NOT NULL UNIQUE,
            strategy TEXT NOT NULL,
            charges INTEGER NOT NULL,
            exit_reason TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS idx_trades_exit ON trades (exit_time);
        CREATE TABLE IF NOT EXISTS positions (
            position_id TEXT PRIMARY KEY,
            signal_id TEXT NOT NULL,
            symbol TEXT NOT NULL,
            underlying TEXT NOT NULL,
            strike INTEGER NOT NULL,
            option_type TEXT NOT NULL,
            expiry TEXT,
            entry_timestamp INTEGER NOT NULL,
            entry_premium INTEGER NOT NULL,
            quantity INTEGER NOT NULL,
            lot_size INTEGER NOT NULL,
            total_investment INTEGER NOT NULL,
            stop_loss_premium INTEGER NOT NULL,
            target_premium INTEGER NOT NULL,
            current_premium INTEGER NOT NULL,
            unrealized_pnl INTEGER NOT NULL,
            exit_timestamp INTEGER,
            exit_premium INTEGER,
            exit_reason TEXT,
            realized_pnl INTEGER NOT NULL,
            status TEXT NOT NULL,
            paper_trade INTEGER NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            updated_at INTEGER NOT NULL,
            strategy TEXT NOT NULL,
            token INTEGER NOT NULL,
            exchange TEXT NOT NULL,
            product TEXT NOT NULL,
            direction INTEGER NOT NULL,
            cost INTEGER NOT NULL,
            charges INTEGER NOT NULL,
            entry_qty INTEGER NOT NULL,
            exit_qty INTEGER NOT NULL,
            high_water INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS idx_positions_status ON positions (status);
        CREATE INDEX IF NOT EXISTS idx_positions_entry ON positions (entry_timestamp);
        CREATE TABLE IF NOT EXISTS daily_performance (
            date TEXT PRIMARY KEY,
            total_trades INTEGER NOT NULL,
            winning_trades INTEGER NOT NULL,
            losing_trades INTEGER NOT NULL,
            gross_profit INTEGER NOT NULL,
            gross_loss INTEGER NOT NULL,
            net_pnl INTEGER NOT NULL,
            max_drawdown INTEGER NOT NULL,
            charges INTEGER NOT NULL DEFAULT 0,
            peak INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS risk_latch (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            halted INTEGER NOT NULL,
            reason TEXT NOT NULL,
            source TEXT NOT NULL,
            timestamp INTEGER NOT NULL,
            version INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS order_requests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL UNIQUE,
            created_at INTEGER NOT NULL,
            symbol TEXT NOT NULL,
            exchange TEXT NOT NULL DEFAULT '',
            side TEXT NOT NULL,
            quantity INTEGER NOT NULL,
            limit_price INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'PENDING',
            rule TEXT NOT NULL DEFAULT '',
            result TEXT NOT NULL DEFAULT '',
            order_ids TEXT NOT NULL DEFAULT '[]',
            processed_at INTEGER
        );
        CREATE INDEX IF NOT EXISTS idx_order_requests_status ON order_requests (status);
        CREATE TABLE IF NOT EXISTS paper_orders (
            client_order_id TEXT PRIMARY KEY,
            broker_order_id TEXT NOT NULL,
            token INTEGER NOT NULL,
            exchange TEXT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            quantity INTEGER NOT NULL,
            order_type TEXT NOT NULL,
            limit_price INTEGER NOT NULL,
            product TEXT NOT NULL,
            reference_price INTEGER NOT NULL,
            lot_size INTEGER NOT NULL,
            tick_size INTEGER NOT NULL,
            accepted_ns INTEGER NOT NULL,
            status TEXT NOT NULL,
            filled_qty INTEGER NOT NULL,
            reason TEXT NOT NULL,
            fills TEXT NOT NULL DEFAULT '[]'
        );
        CREATE INDEX IF NOT EXISTS idx_paper_orders_status ON paper_orders (status);
    """,
    ),
    (
        "0005_backtests",
        # mandi backtest results for the dashboard: one row per run (its statistics and settings
        # as JSON, the headline numbers as columns) and its closed trades. Money in paise.
        """
        CREATE TABLE IF NOT EXISTS backtest_runs (
            run_id TEXT PRIMARY KEY,
            created_at INTEGER NOT NULL,
            strategy TEXT NOT NULL,
            symbols TEXT NOT NULL,
            timeframe INTEGER NOT NULL,
            engine TEXT NOT NULL,
            params TEXT NOT NULL,
            data_start INTEGER,
            data_end INTEGER,
            initial_value INTEGER NOT NULL,
            final_value INTEGER NOT NULL,
            total_return REAL,
            sharpe REAL,
            max_drawdown REAL,
            trades INTEGER NOT NULL,
            stats TEXT NOT NULL,
            equity TEXT NOT NULL DEFAULT '[]'
        );
        CREATE INDEX IF NOT EXISTS idx_backtest_runs_created ON backtest_runs (created_at);
        CREATE TABLE IF NOT EXISTS backtest_trades (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            symbol TEXT NOT NULL,
            strategy TEXT NOT NULL,
            side TEXT NOT NULL,
            quantity INTEGER NOT NULL,
            entry_time INTEGER NOT NULL,
            exit_time INTEGER NOT NULL,
            entry_price INTEGER NOT NULL,
            exit_price INTEGER NOT NULL,
            charges INTEGER NOT NULL,
            pnl INTEGER NOT NULL,
            exit_reason TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        );
    """,
    ),
    (
        "0006_stop_orders",
        # SL / SL-M orders carry a trigger price, and the two legs of a GTT-style OCO a group
        # id — in our order book and in the paper broker's own book.
        """
        ALTER TABLE orders ADD COLUMN trigger_price INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE orders ADD COLUMN oco_group TEXT NOT NULL DEFAULT '';
        ALTER TABLE paper_orders ADD COLUMN trigger_price INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE paper_orders ADD COLUMN oco_group TEXT NOT NULL DEFAULT '';
        ALTER TABLE order_requests ADD COLUMN trigger_price INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE order_requests ADD COLUMN basket TEXT NOT NULL DEFAULT '';
    """,
    ),
    (
        "0007_rejects",
        # rows a writer could not store (a value the store cannot hold, a wrong width): kept here
        # with the reason instead of killing the writer (mandi.stores.writer). ``store`` is the
        # writer that refused it (sqlite, clickhouse), ``target`` its statement or table, ``row``
        # the values as a JSON array (integers exact, whatever their size).
        """
        CREATE TABLE IF NOT EXISTS rejects (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            timestamp INTEGER NOT NULL,
            store TEXT NOT NULL,
            target TEXT NOT NULL,
            reason TEXT NOT NULL,
            row TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS idx_rejects_ts ON rejects (timestamp);
    """,
    ),
    (
        "0008_tick_blocks",
        # ticks as compressed columnar blocks in arrival order (mandi.stores.ticks): one row per
        # writer flush; start_ns/end_ns are the smallest and largest event time in the block
        """
        CREATE TABLE IF NOT EXISTS tick_blocks (
            seq INTEGER PRIMARY KEY,
            start_ns INTEGER NOT NULL,
            end_ns INTEGER NOT NULL,
            ticks INTEGER NOT NULL,
            codec INTEGER NOT NULL,
            data BLOB NOT NULL
        );
        CREATE INDEX IF NOT EXISTS idx_tick_blocks_end ON tick_blocks (end_ns);
    """,
    ),
]

# Tables with a time column, for stats and retention: table -> column (int ns).
TIME_COLUMNS: dict[str, str] = {
    "ticks": "ts_event",
    "tick_blocks": "end_ns",  # a block goes when its newest tick is past retention
    "candles": "bucket",
    "system_events": "timestamp",
    "indicator_values": "bucket",
    "indicator_snapshots": "timestamp",
    "option_chain_snapshots": "timestamp",
    "trading_signals": "timestamp",
    "order_events": "timestamp",
    "order_requests": "created_at",
    "rejects": "timestamp",
}

# Tables whose time column is the wall clock of the machine (when something happened here);
# every other time column is exchange time (simulated time with the simulator, in backtests the
# bars' time), which `mandi db stats` says per table.
WALL_CLOCK_TABLES: frozenset[str] = frozenset(
    {"system_events", "indicator_snapshots", "order_requests", "rejects"}
)

# Append-only tables whose rowid order is time order (no time index; see the module doc).
APPEND_ORDERED: frozenset[str] = frozenset({"ticks"})
