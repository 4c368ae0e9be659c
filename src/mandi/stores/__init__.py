"""Storage backends (I/O shell): SQLite by default, ClickHouse at scale."""
