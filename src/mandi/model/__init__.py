"""Domain model: market data, instruments, and the messages of the bus."""
