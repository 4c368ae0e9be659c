"""Market-data feeds (I/O shell): the simulated exchange, replay, NSE files, broker websockets."""
