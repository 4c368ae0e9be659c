"""Node wiring and service entry points (I/O shell)."""
