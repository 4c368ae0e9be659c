"""Logging helpers: a rate-limited warning that keeps the count of what it suppressed."""

from __future__ import annotations

import logging

from mandi.core.clock import NS_PER_SECOND


class RateLimitedLog:
    """Log a message at most once per ``interval_ns`` per key; suppressed repeats are counted
    and reported with the next message of that key, so nothing is dropped silently."""

    def __init__(self, logger: logging.Logger, interval_ns: int = 60 * NS_PER_SECOND) -> None:
        self._log = logger
        self._interval = interval_ns
        self._last: dict[str, int] = {}
        self.suppressed: dict[str, int] = {}

    def warning(self, key: str, now_ns: int, msg: str, *args: object) -> None:
        self.log(logging.WARNING, key, now_ns, msg, *args)

    def log(self, level: int, key: str, now_ns: int, msg: str, *args: object) -> None:
        last = self._last.get(key)
        if last is not None and now_ns - last < self._interval:
            self.suppressed[key] = self.suppressed.get(key, 0) + 1
            return
        self._last[key] = now_ns
        skipped = self.suppressed.pop(key, 0)
        if skipped:
            msg += f" (+{skipped} similar suppressed)"
        self._log.log(level, msg, *args)
