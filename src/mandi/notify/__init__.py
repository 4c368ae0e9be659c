"""Notifications and remote control (the seed's Telegram alerts, DESIGN §11).

A :class:`Notifier` delivers batches of :class:`~mandi.notify.alerts.Alert` s; the layer
:class:`mandi.services.notify.NotifyLayer` feeds every configured notifier from the node's bus
(the HALTED latch and circuit breaker, fills, large wins and losses, errors, feed and broker
trouble, a daily summary), batched and rate-limited per notifier. Implementations:
:class:`~mandi.notify.telegram.TelegramNotifier` (with chat commands,
:mod:`mandi.notify.commands`) and :class:`~mandi.notify.webhook.WebhookNotifier`
(Slack/Discord-compatible JSON).
"""

from __future__ import annotations

from typing import Protocol

from mandi.notify.alerts import Alert, AlertRules, Outbox, alert_for


class Notifier(Protocol):
    """Where alerts go. ``deliver`` raises a :class:`~mandi.core.errors.MandiError` when the
    batch did not get through (it is then retried)."""

    @property
    def name(self) -> str: ...

    async def deliver(self, batch: list[Alert], dropped: int = 0) -> None: ...


__all__ = ["Alert", "AlertRules", "Notifier", "Outbox", "alert_for"]
