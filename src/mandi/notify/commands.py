"""Remote control from a chat: ``/status /positions /pnl /halt /resume /help``, as one more thin
layer over the API core (:class:`~mandi.web.api.MandiAPI`), with the API's authorization.

A chat is a principal like an API token: :class:`ChatAuth` gives each configured chat id a scope
(``read`` for the reads, ``trade`` for halt and resume too — the same scopes and the same check,
:meth:`~mandi.web.security.Security.require`, as the REST routes) and puts halt and resume under
the same per-principal rate limit as the REST routes (``web.commands_per_minute``). A chat that is
not configured is refused, whatever it asks, and the refusal is counted and logged (its id, never
the message).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mandi.core.errors import MandiError
from mandi.logs import printable
from mandi.web.security import AuthError, Principal, RateLimiter, Security

log = logging.getLogger(__name__)

HELP = (
    "mandi commands:\n"
    "/status - the node: mode, market time, data flow, risk state\n"
    "/positions - open positions with entry, mark and MTM\n"
    "/pnl - today's P&L\n"
    "/halt [reason] - set the HALTED latch: no new entries (trade scope)\n"
    "/resume [reason] - clear the latch (trade scope)\n"
    "/help - this list"
)
NEEDS = {
    "/status": "read",
    "/positions": "read",
    "/pnl": "read",
    "/halt": "trade",
    "/resume": "trade",
    "/help": "read",
    "/start": "read",
}


@dataclass
class ChatAuth:
    """Which chats may command, with which scope; the halt/resume rate limit per chat."""

    chats: dict[int, str]  # chat id -> "read" | "trade"
    command_limit: RateLimiter
    refused: int = 0

    def principal(self, chat_id: int) -> Principal | None:
        scope = self.chats.get(chat_id)
        if scope is None:
            return None
        return Principal(f"chat:{chat_id}", f"chat {chat_id}", scope, "chat")


def _inr(x: Any) -> str:
    from mandi.core.money import format_inr

    return "–" if x is None else format_inr(round(float(x) * 100))


class RemoteCommands:
    """Runs one chat command against the API core and returns the reply text.

    ``call(fn, *args)`` runs an API core method the way the REST routes do (on the node's loop in
    ``mandi run``; off it where calls are relayed)."""

    def __init__(
        self,
        api: Any,
        auth: ChatAuth,
        call: Callable[..., Awaitable[Any]],
    ) -> None:
        self.api = api
        self.auth = auth
        self.call = call
        self.handled = 0

    async def handle(self, chat_id: int, text: str) -> str:
        word, _, rest = (text or "").strip().partition(" ")
        cmd = word.split("@", 1)[0].lower()  # /status@mandi_bot in groups
        p = self.auth.principal(chat_id)
        if p is None:
            self.auth.refused += 1
            log.warning(
                "chat %d is not allowed to command this node (refused %s)",
                chat_id,
                printable(cmd[:20]),
            )
            return (
                f"This chat (id {chat_id}) may not command this node: add it to "
                "notify.telegram.chat_ids."
            )
        needed = NEEDS.get(cmd)
        if needed is None:
            return "Unknown command. /help lists them."
        try:
            Security.require(p, needed)
            if needed == "trade":
                wait = self.auth.command_limit.hit(p.token_id)
                if wait:
                    return f"Too many trading commands; retry in {wait:.0f} s."
            self.handled += 1
            return await self._run(cmd, rest.strip()[:200])
        except AuthError as e:
            self.auth.refused += 1
            return f"Refused: {e}"
        except MandiError as e:  # the API core's errors (trading not running, ...)
            return f"Cannot do that now: {e}"

    async def _run(self, cmd: str, arg: str) -> str:
        api = self.api
        if cmd in ("/help", "/start"):
            return HELP
        if cmd == "/status":
            s = await self.call(api.status)
            r = s.get("risk") or {}
            t = s.get("trading") or {}
            state = (
                f"HALTED ({r.get('halt_reason')})"
                if r.get("halted")
                else ("trading" if r.get("trading") else "trading off")
            )
            return (
                f"mandi {s.get('mode', '?')} · {s.get('exchange_time', '-')} IST · "
                f"{s.get('ticks_per_s') or 0:,.0f} ticks/s\n"
                f"{state}; day P&L {_inr(t.get('day_pnl'))}; "
                f"{len(t.get('open_positions') or [])} open position(s)"
            )
        if cmd == "/pnl":
            d = await self.call(api.pnl)
            return (
                f"day P&L {_inr(d.get('day_pnl'))} (realized {_inr(d.get('realized_pnl'))}, "
                f"unrealized {_inr(d.get('unrealized_pnl'))}, charges {_inr(d.get('charges'))})"
                f"; {d.get('fills') or 0} fills, {d.get('open_positions') or 0} open"
            )
        if cmd == "/positions":
            ps = await self.call(api.positions, "open", 20)
            if not ps:
                return "No open positions."
            return "\n".join(
                f"{p['symbol']} {p['net_quantity']:+d} @ {p.get('entry_premium')} → "
                f"{p.get('current_premium')} MTM {_inr(p.get('mtm'))} ({p.get('strategy')})"
                for p in ps
            )
        if cmd == "/halt":
            d = await self.call(api.halt, arg or "halted from a chat")
            return ("Trading HALTED: " if d.get("changed") else "Already halted: ") + str(
                d.get("halt_reason", "")
            )
        if cmd == "/resume":
            d = await self.call(api.resume, arg or "resumed from a chat")
            return "Trading resumed." if d.get("changed") else "Trading was not halted."
        return "Unknown command. /help lists them."
