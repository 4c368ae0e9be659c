"""The notification layer of ``mandi run`` (and the distributed gateway): bus → alerts →
notifiers, and chat commands → the API core.

* Bus handlers only append the message (they run inside the kernel); a task turns them into
  alerts (:func:`~mandi.notify.alerts.alert_for`) every 200 ms and hands them to each notifier's
  :class:`~mandi.notify.alerts.Outbox` (batched, rate-limited); one sender task per notifier
  delivers, and on failure puts the batch back and retries with backoff (Telegram's
  ``retry_after`` honoured) — a notifier that fails never raises an alert about itself.
* The daily summary goes out once per trading day when exchange time passes
  ``notify.daily_summary_at`` (15:30 IST: the close).
* Telegram commands (``/status /positions /pnl /halt /resume``) come in by long polling and run
  against the node's API core — the web layer's when it runs, else one of this layer's own — under
  the API's authorization (:mod:`mandi.notify.commands`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from mandi.core.calendar import calendar, ist_date, ist_ns
from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import MandiError
from mandi.core.money import to_paise
from mandi.notify.alerts import AlertRules, Outbox, alert_for, summary_alert

if TYPE_CHECKING:
    from mandi.services.context import NodeContext

log = logging.getLogger(__name__)
TOPICS = ("risk:halted", "risk:resumed", "order:filled", "position:closed", "system:>")


class NotifyLayer:
    """Plugs the configured notifiers into a node (inert when none is configured)."""

    name = "notify"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        n = cfg.notify
        self.rules = AlertRules(n.fills, to_paise(n.large_pnl_inr), n.errors)
        self.notifiers: list[Any] = []
        self.outboxes: list[Outbox] = []
        self.telegram: Any = None
        self.poller: Any = None
        self.api: Any = None
        self._own_api = False
        self._inbox: deque[tuple[str, Any]] = deque(maxlen=10_000)
        self._wake: list[asyncio.Event] = []
        self._ctx: NodeContext | None = None
        self._subs: list[Any] = []
        self.summaries: list[str] = []  # the days summarized
        self.delivered = 0
        self.failures = 0
        t = n.telegram
        if t.bot_token and t.chat_ids:
            from mandi.notify.telegram import TelegramClient, TelegramNotifier

            self.telegram = TelegramClient(t.bot_token, t.api_url)
            self._add(TelegramNotifier(self.telegram, t.chat_ids))
        elif t.bot_token or t.chat_ids:
            log.warning("notify.telegram needs both bot_token and chat_ids; Telegram is off")
        if n.webhook.url:
            from mandi.notify.webhook import WebhookNotifier

            self._add(WebhookNotifier(n.webhook.url, n.webhook.timeout_s))

    def _add(self, notifier: Any) -> None:
        self.notifiers.append(notifier)
        self.outboxes.append(Outbox(self.cfg.notify.batch_s, self.cfg.notify.max_per_minute))

    @property
    def active(self) -> bool:
        return bool(self.notifiers)

    # --- wiring -----------------------------------------------------------------------------------
    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        if not self.active:
            return
        for topic in TOPICS:
            self._subs.append(ctx.bus.subscribe(topic, self._on_bus, name="notify"))
        web = ctx.layer("web")
        self.api = getattr(web, "api", None)
        if self.api is None:  # no dashboard: the API core for the commands and the summary
            from mandi.web.api import MandiAPI

            self.api = MandiAPI(ctx)
            self.api.attach()
            self._own_api = True
        t = self.cfg.notify.telegram
        if self.telegram is not None and t.commands != "none":
            from mandi.notify.commands import ChatAuth, RemoteCommands
            from mandi.notify.telegram import TelegramPoller
            from mandi.web.security import RateLimiter

            security = getattr(web, "security", None)
            limiter = (
                security.command_limit
                if security is not None
                else RateLimiter(self.cfg.web.commands_per_minute)
            )
            auth = ChatAuth({c: t.commands for c in t.chat_ids}, limiter)
            self.poller = TelegramPoller(
                self.telegram, RemoteCommands(self.api, auth, self._call), t.poll_timeout_s
            )
        names = ", ".join(x.name for x in self.notifiers)
        log.info(
            "notifications: %s%s",
            names,
            f" (commands from {len(t.chat_ids)} chat(s), scope {t.commands})"
            if self.poller
            else "",
        )

    def _on_bus(self, topic: str, msg: Any) -> None:
        self._inbox.append((topic, msg))  # in the kernel: O(1), nothing else

    async def _call(self, fn: Any, *args: Any) -> Any:
        """An API core call, as the REST routes make it (see mandi.web.deps.command)."""
        from mandi.web.deps import command

        return await command(self.api, fn, *args)

    # --- tasks ------------------------------------------------------------------------------------
    def tasks(self) -> list[Coroutine[Any, Any, Any]]:
        if not self.active:
            return []
        self._wake = [asyncio.Event() for _ in self.notifiers]
        out: list[Coroutine[Any, Any, Any]] = [self._pump(), self._lifetime()]
        out += [self._sender(i) for i in range(len(self.notifiers))]
        if self.poller is not None:
            out.append(self.poller.run())
        if self.cfg.notify.daily_summary_at:
            out.append(self._daily_summary())
        return out

    def route(self) -> int:
        """Turn what the bus left into alerts for every outbox; returns how many."""
        n = 0
        while self._inbox:
            topic, msg = self._inbox.popleft()
            try:
                alert = alert_for(topic, msg, self.rules)
            except Exception:
                log.exception("notify: cannot make an alert of %s", topic)
                continue
            if alert is not None:
                self.put(alert)
                n += 1
        return n

    def put(self, alert: Any) -> None:
        for i, box in enumerate(self.outboxes):
            box.put(alert)
            if i < len(self._wake):
                self._wake[i].set()

    async def _pump(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.route()

    async def _sender(self, i: int) -> None:
        notifier, box, wake = self.notifiers[i], self.outboxes[i], self._wake[i]
        backoff = 1.0
        while True:
            wait = box.wait_s()
            if wait == float("inf"):
                wake.clear()
                await wake.wait()
                continue
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), wait)
                wake.clear()
                continue
            batch, dropped = box.take()
            if not batch:
                continue
            try:
                await notifier.deliver(batch, dropped)
            except MandiError as e:
                box.put_back(batch, dropped)
                self.failures += 1
                pause = max(getattr(e, "retry_after", 0.0) or 0.0, backoff)
                log.warning("notify %s: %s; retrying in %.0f s", notifier.name, e, pause)
                await asyncio.sleep(pause)
                backoff = min(backoff * 2, 120.0)
                continue
            box.sent()
            self.delivered += len(batch)
            backoff = 1.0

    async def _daily_summary(self) -> None:
        at = dt.time.fromisoformat(self.cfg.notify.daily_summary_at)
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                self.summary_due(at)

    def summary_due(self, at: dt.time) -> bool:
        """Queue the daily summary when market time has passed ``at`` — or the last second of
        the session, whichever is earlier: a feed's ticks stop at the close — on a day not yet
        summarized (and trading runs here); True when one was queued. Market time is the wall
        clock for a broker feed, the last tick's time for a replayed one (the simulator)."""
        ctx = self._ctx
        if ctx is None or self.api is None:
            return False
        wall = ctx.feed is not None and ctx.feed.wall_clock
        now = ctx.clock.now_ns() if wall else ctx.stats.exchange_time_ns
        if not now:
            return False
        day = ist_date(now)
        session = calendar("NSE").session(day)
        due = ist_ns(day, at)
        if session is not None:
            due = min(due, session.close_ns - NS_PER_SECOND)
        if now < due or day.isoformat() in self.summaries:
            return False
        try:
            pnl = self.api.pnl()
        except MandiError:  # no trading in this node
            return False
        perf = next(
            (r for r in self.api.daily_performance(3) if r.get("date") == day.isoformat()), None
        )
        self.summaries.append(day.isoformat())
        self.put(summary_alert(day.isoformat(), pnl, perf, now))
        return True

    def close(self) -> None:
        self.route()
        if self._ctx is not None:
            for s in self._subs:
                with contextlib.suppress(ValueError):
                    self._ctx.bus.unsubscribe(s)
        if self._own_api and self.api is not None:
            self.api.detach()

    async def _lifetime(self) -> None:
        """Holds the HTTP clients open while the node runs; closes them when it stops."""
        try:
            await asyncio.Event().wait()
        finally:
            for x in [self.telegram, *self.notifiers]:
                closer = getattr(x, "close", None)
                if closer is not None:
                    with contextlib.suppress(Exception):
                        await closer()
