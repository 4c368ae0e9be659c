"""Alerts: what the platform tells its operator, and how often.

:func:`alert_for` turns bus messages into :class:`Alert` s — the HALTED latch and the daily-loss
circuit breaker, every fill, a large win or loss, errors, feed and broker-session trouble, the
daily summary (the seed's Telegram alerts, seed 002). :class:`Outbox` batches them per notifier
and keeps within a message rate: alerts that arrive within ``batch_s`` of each other go out as one
message, and when ``max_per_minute`` messages were sent in the last minute the next one waits
(gathering what comes meanwhile) — nothing is dropped unless the bounded queue overflows, and then
the next message says how many were lost.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mandi.core.money import format_inr

#: severities, most urgent first
CRITICAL, ERROR, WARNING, INFO = "CRITICAL", "ERROR", "WARNING", "INFO"
#: system events about market data and the broker session that an operator must hear of
FEED_KINDS = frozenset(
    {
        "feed_unhealthy",
        "feed_healthy",
        "broker_session_ended",
        "broker_session_expiring",
        "position_mismatch",
        "backup_failed",
    }
)
_ICON = {
    "halted": "🛑",
    "resumed": "▶️",
    "fill": "✅",
    "win": "💰",
    "loss": "🔻",
    "error": "⚠️",
    "feed": "📡",
    "summary": "📊",
    "info": "ℹ️",
}


@dataclass(frozen=True)
class Alert:
    """One thing to tell the operator. ``kind``: halted | resumed | fill | win | loss | error |
    feed | summary | info."""

    kind: str
    severity: str
    text: str
    ts_ns: int = 0
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def line(self) -> str:
        return f"{_ICON.get(self.kind, '•')} {self.text}"

    @property
    def urgent(self) -> bool:
        return self.severity in (CRITICAL, ERROR)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "text": self.text,
            "ts_ns": self.ts_ns,
            "data": self.data,
        }


@dataclass(frozen=True)
class AlertRules:
    """Which events become alerts (``[notify]``)."""

    fills: bool = True
    large_pnl: int = 200_000  # paise: a closed position's P&L at least this large, either way
    errors: bool = True


def alert_for(topic: str, msg: Any, rules: AlertRules) -> Alert | None:
    """The alert for one bus message, or None when it is not worth a message."""
    name = type(msg).__name__
    ts = int(getattr(msg, "ts_event", 0) or 0)
    if name == "TradingHalted":
        what = "CIRCUIT BREAKER" if msg.source == "circuit_breaker" else "HALTED"
        return Alert(
            "halted",
            CRITICAL,
            f"{what}: {msg.reason} (no new entries; resume with /resume or mandi resume)",
            ts,
            {"source": msg.source, "reason": msg.reason},
        )
    if name == "TradingResumed":
        return Alert(
            "resumed", WARNING, f"trading resumed: {msg.reason}", ts, {"source": msg.source}
        )
    if name == "OrderFilled":
        if not rules.fills:
            return None
        intent = getattr(msg.intent, "value", str(msg.intent)).lower()
        side = getattr(msg.side, "value", str(msg.side))
        return Alert(
            "fill",
            INFO,
            f"FILL {side} {msg.quantity} {msg.symbol} @ {format_inr(msg.price)}"
            f" ({msg.strategy or 'manual'}, {intent}; charges {format_inr(msg.charges)})",
            ts,
            {"symbol": msg.symbol, "side": side, "quantity": msg.quantity, "price": msg.price},
        )
    if name == "PositionClosed":
        p = msg.position
        pnl = int(getattr(p, "realized_pnl", 0) or 0)
        if abs(pnl) < rules.large_pnl:
            return None
        kind = "win" if pnl > 0 else "loss"
        return Alert(
            kind,
            INFO if pnl > 0 else WARNING,
            f"{'WIN' if pnl > 0 else 'LOSS'} {format_inr(pnl)} on {p.symbol} "
            f"({p.strategy}; closed: {msg.reason})",
            ts,
            {"symbol": p.symbol, "pnl": pnl, "reason": msg.reason},
        )
    if name == "SystemEvent":
        if msg.kind in FEED_KINDS:
            sev = msg.severity if msg.kind != "feed_healthy" else INFO
            return Alert("feed", sev, msg.message, ts, {"event": msg.kind})
        if rules.errors and msg.severity in (ERROR, CRITICAL):
            return Alert("error", msg.severity, msg.message, ts, {"event": msg.kind})
    return None


def summary_alert(day: str, pnl: dict[str, Any], perf: dict[str, Any] | None, ts_ns: int) -> Alert:
    """The daily summary from the API core's ``pnl()`` and today's performance row (rupees)."""

    def inr(x: Any) -> str:
        return "–" if x is None else format_inr(round(float(x) * 100))

    parts = [f"Daily summary {day}: day P&L {inr(pnl.get('day_pnl'))}"]
    parts.append(
        f"realized {inr(pnl.get('realized_pnl'))}, unrealized {inr(pnl.get('unrealized_pnl'))}, "
        f"charges {inr(pnl.get('charges'))}"
    )
    if perf:
        n = perf.get("total_trades") or 0
        won = perf.get("winning_trades") or 0
        parts.append(
            f"{n} closed trades ({won} won, {perf.get('losing_trades') or 0} lost), "
            f"max drawdown {inr(perf.get('max_drawdown'))}"
        )
    parts.append(
        f"{pnl.get('orders_sent') or 0} orders, {pnl.get('fills') or 0} fills, "
        f"{pnl.get('open_positions') or 0} open" + ("; HALTED" if pnl.get("halted") else "")
    )
    return Alert("summary", INFO, "; ".join(parts), ts_ns, {"day": day, **pnl})


class Outbox:
    """Alerts waiting for one notifier: batched and rate-limited (see the module docstring).
    ``clock`` is monotonic seconds (injected for tests)."""

    def __init__(
        self,
        batch_s: float = 2.0,
        max_per_minute: int = 20,
        max_queued: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.batch_s = batch_s
        self.max_per_minute = max_per_minute
        self.max_queued = max_queued
        self.clock = clock
        self.queue: deque[Alert] = deque()
        self.dropped = 0  # not yet reported
        self.dropped_total = 0
        self.sent_messages = 0
        self._sent_at: deque[float] = deque()
        self._first_at: float | None = None

    def put(self, alert: Alert) -> None:
        if len(self.queue) >= self.max_queued:
            # the oldest routine alert goes (the newest state matters most); halts and errors
            # stay unless nothing else is left
            i = next((k for k, a in enumerate(self.queue) if not a.urgent), 0)
            del self.queue[i]
            self.dropped += 1
            self.dropped_total += 1
        if not self.queue:
            self._first_at = self.clock()
        self.queue.append(alert)

    def wait_s(self) -> float:
        """Seconds until :meth:`take` would return a batch (``inf`` while empty)."""
        if not self.queue:
            return math.inf
        now = self.clock()
        while self._sent_at and self._sent_at[0] <= now - 60:
            self._sent_at.popleft()
        rate = 0.0
        if len(self._sent_at) >= self.max_per_minute:
            rate = self._sent_at[0] + 60 - now
        urgent = any(a.urgent for a in self.queue)
        batch = 0.0 if urgent else (self._first_at or now) + self.batch_s - now
        return max(0.0, rate, batch)

    def take(self, max_alerts: int = 50) -> tuple[list[Alert], int]:
        """The next batch (oldest first) and how many alerts were dropped before it, when it is
        due; ([], 0) otherwise. Call :meth:`sent` or :meth:`put_back` after delivering it."""
        if self.wait_s() > 0:
            return [], 0
        n = min(max_alerts, len(self.queue))
        batch = [self.queue.popleft() for _ in range(n)]
        dropped, self.dropped = self.dropped, 0
        self._first_at = self.clock() if self.queue else None
        return batch, dropped

    def sent(self) -> None:
        self.sent_messages += 1
        self._sent_at.append(self.clock())

    def put_back(self, batch: list[Alert], dropped: int) -> None:
        """A failed delivery: the batch goes back to the front (within the queue's bound)."""
        for a in reversed(batch):
            if len(self.queue) >= self.max_queued:
                self.dropped += 1
                self.dropped_total += 1
                continue
            self.queue.appendleft(a)
        self.dropped += dropped
        self._first_at = self._first_at or self.clock()


def render_text(batch: list[Alert], dropped: int = 0, limit: int = 4000) -> list[str]:
    """Plain-text messages for a batch (one line per alert), split below ``limit`` characters
    (Telegram's is 4096)."""
    lines = [a.line for a in batch]
    if dropped:
        lines.append(f"({dropped} earlier alert(s) dropped: the alert queue was full)")
    head = "mandi" if len(batch) <= 1 else f"mandi · {len(batch)} alerts"
    out: list[str] = []
    cur = head
    for line in lines:
        line = line if len(line) < limit - len(head) - 2 else line[: limit - len(head) - 3] + "…"
        if len(cur) + 1 + len(line) > limit:
            out.append(cur)
            cur = head
        cur += "\n" + line
    out.append(cur)
    return out
