"""Order-rate limiting: ≤ N orders in any one-second window per exchange segment (SEBI's 10/s
for algorithmic orders), plus per-minute and per-day caps across all segments.

A classic token bucket (capacity 10, refill 10/s) lets up to 20 orders through inside one second
(a full bucket at t, a refilled one at t + 0.99 s), so the per-second limit is a *sliding window
log*: the times of the last N sends per segment; a send is allowed when the oldest of them is at
least one second old. The router asks :meth:`OrderRateLimiter.next_slot` when the next order of a
segment may go and holds it until then — orders are paced, not dropped.
"""

from __future__ import annotations

from collections import deque

from mandi.core.calendar import ist_date
from mandi.core.clock import NS_PER_SECOND

MINUTE_NS = 60 * NS_PER_SECOND


class OrderRateLimiter:
    def __init__(self, per_second: int = 10, per_minute: int = 120, per_day: int = 1000) -> None:
        if per_second < 1:
            raise ValueError(f"per_second must be >= 1, got {per_second}")
        self.per_second, self.per_minute, self.per_day = per_second, per_minute, per_day
        self._second: dict[str, deque[int]] = {}
        self._minute: deque[int] = deque()
        self._day_key: object = None
        self._day_count = 0

    def next_slot(self, segment: str, now_ns: int) -> int:
        """The earliest time (≥ ``now_ns``) an order of ``segment`` may be sent."""
        q = self._second.get(segment)
        if q is None or len(q) < self.per_second:
            return now_ns
        return max(now_ns, q[0] + NS_PER_SECOND)

    def try_acquire(self, segment: str, now_ns: int) -> bool:
        """Record a send at ``now_ns`` if the one-second window allows it."""
        if self.next_slot(segment, now_ns) > now_ns:
            return False
        self.record(segment, now_ns)
        return True

    def record(self, segment: str, ts_ns: int) -> None:
        """Count a send (also used to restore sends from the store after a restart)."""
        q = self._second.setdefault(segment, deque())
        q.append(ts_ns)
        while len(q) > self.per_second:
            q.popleft()
        self._minute.append(ts_ns)
        day = ist_date(ts_ns)
        if day != self._day_key:
            if self._day_key is None or day > self._day_key:  # type: ignore[operator]
                self._day_key, self._day_count = day, 0
            else:
                return  # a restored send of an earlier day
        self._day_count += 1

    def sent_last_minute(self, now_ns: int) -> int:
        q = self._minute
        while q and q[0] <= now_ns - MINUTE_NS:
            q.popleft()
        return len(q)

    def sent_today(self, now_ns: int) -> int:
        return self._day_count if ist_date(now_ns) == self._day_key else 0
