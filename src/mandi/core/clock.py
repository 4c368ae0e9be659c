"""Clocks: the only source of time for the kernel.

The kernel never reads the wall clock; it is handed a :class:`Clock`. The shell uses
:class:`LiveClock`; backtests and tests use :class:`TestClock` and advance it explicitly.
All times are ``int`` nanoseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import time
from typing import Protocol

NS_PER_SECOND = 1_000_000_000
NS_PER_MS = 1_000_000


class Clock(Protocol):
    """Something that tells the time in integer nanoseconds (UTC epoch)."""

    def now_ns(self) -> int: ...


class LiveClock:
    """Wall-clock time; used by the I/O shell only."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.time_ns()


class OffsetClock:
    """Wall-clock time shifted by a fixed offset: demos and tests against a fake broker outside
    market hours (``run.clock_offset_s``); the shell refuses it with a real broker."""

    __slots__ = ("offset_ns",)

    def __init__(self, offset_ns: int) -> None:
        self.offset_ns = offset_ns

    def now_ns(self) -> int:
        return time.time_ns() + self.offset_ns


class TestClock:
    """A clock that only moves when told to; time never goes backwards."""

    __test__ = False  # not a pytest test class
    __slots__ = ("_now",)

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def set(self, ns: int) -> None:
        """Move to ``ns``; earlier times are ignored so the clock stays monotonic."""
        if ns > self._now:
            self._now = ns

    def advance(self, ns: int) -> int:
        """Move forward by ``ns`` nanoseconds and return the new time."""
        if ns < 0:
            raise ValueError(f"cannot advance a clock by a negative amount: {ns}")
        self._now += ns
        return self._now
