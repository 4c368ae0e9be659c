"""Telegram: alerts to the configured chats and commands from them, over the Bot API.

``[notify.telegram]``: ``bot_token`` (from @BotFather; keep it in the environment,
``MANDI_NOTIFY__TELEGRAM__BOT_TOKEN``), ``chat_ids`` (the chats that receive alerts and may send
commands) and ``api_url`` (``https://api.telegram.org``; a local Bot API server or a fake in tests).

* :class:`TelegramClient` speaks the Bot API over HTTPS (``httpx``): ``getMe``, ``sendMessage``
  and ``getUpdates`` with long polling (``timeout`` seconds held open by the server, ``offset`` =
  last update id + 1, so every update is handled once). A ``429`` answer's ``retry_after`` is
  honoured. The token is part of every URL (``/bot<token>/method``): URLs are never logged and
  the token is scrubbed from every error text.
* :class:`TelegramNotifier` sends an :class:`~mandi.notify.alerts.Outbox` batch as one plain-text
  message per chat (split below Telegram's 4,096 characters).
* :class:`TelegramPoller` reads updates and answers commands through
  :class:`~mandi.notify.commands.RemoteCommands`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from mandi.core.errors import MandiError
from mandi.notify.alerts import Alert, render_text

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # httpx logs URLs: the token is in them


class TelegramError(MandiError):
    """A Bot API call failed (``retry_after`` seconds when Telegram asked to slow down)."""

    def __init__(self, message: str, retry_after: float = 0.0, status: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class TelegramClient:
    """The few Bot API methods mandi uses."""

    def __init__(
        self, token: str, api_url: str = "https://api.telegram.org", timeout_s: float = 10
    ):
        if not token:
            raise MandiError("notify.telegram.bot_token is empty")
        self._token = token
        self._base = f"{api_url.rstrip('/')}/bot{token}"
        self._http = httpx.AsyncClient(timeout=timeout_s)
        self.timeout_s = timeout_s

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "<bot_token>")

    async def call(
        self, method: str, params: dict[str, Any], timeout_s: float | None = None
    ) -> Any:
        """One Bot API method with JSON parameters; returns its ``result``."""
        try:
            r = await self._http.post(
                f"{self._base}/{method}",
                json=params,
                timeout=timeout_s if timeout_s is not None else self.timeout_s,
            )
        except httpx.HTTPError as e:
            raise TelegramError(
                f"telegram {method}: {self._scrub(type(e).__name__)}: "
                f"{self._scrub(str(e)) or 'no answer'}"
            ) from None
        try:
            body = r.json()
        except ValueError:
            raise TelegramError(
                f"telegram {method}: HTTP {r.status_code}, not JSON", status=r.status_code
            ) from None
        if not body.get("ok"):
            params_ = body.get("parameters") or {}
            raise TelegramError(
                f"telegram {method}: {self._scrub(str(body.get('description', r.status_code)))}",
                float(params_.get("retry_after") or 0),
                int(body.get("error_code") or r.status_code),
            )
        return body.get("result")

    async def get_me(self) -> dict[str, Any]:
        return dict(await self.call("getMe", {}))

    async def send_message(self, chat_id: int, text: str) -> dict[str, Any]:
        return dict(
            await self.call(
                "sendMessage", {"chat_id": chat_id, "text": text, "disable_web_page_preview": True}
            )
        )

    async def get_updates(self, offset: int, timeout_s: int) -> list[dict[str, Any]]:
        """Long polling: waits up to ``timeout_s`` on the server for updates after ``offset``."""
        res = await self.call(
            "getUpdates",
            {"offset": offset, "timeout": timeout_s, "allowed_updates": ["message"]},
            timeout_s=timeout_s + self.timeout_s,
        )
        return list(res or [])

    async def close(self) -> None:
        await self._http.aclose()


class TelegramNotifier:
    """Alerts to every configured chat."""

    name = "telegram"

    def __init__(self, client: TelegramClient, chat_ids: tuple[int, ...]) -> None:
        self.client = client
        self.chat_ids = chat_ids

    async def deliver(self, batch: list[Alert], dropped: int = 0) -> None:
        for text in render_text(batch, dropped):
            for chat in self.chat_ids:
                await self.client.send_message(chat, text)


class TelegramPoller:
    """Commands from chats: ``getUpdates`` long polling, one answer per command."""

    def __init__(self, client: TelegramClient, commands: Any, poll_timeout_s: int = 25) -> None:
        self.client = client
        self.commands = commands
        self.poll_timeout_s = poll_timeout_s
        self.offset = 0
        self.updates = 0
        self.errors = 0

    async def run(self) -> None:
        backoff = 1.0
        while True:
            try:
                updates = await self.client.get_updates(self.offset, self.poll_timeout_s)
                backoff = 1.0
            except TelegramError as e:
                self.errors += 1
                wait = e.retry_after or backoff
                log.warning("telegram: %s; polling again in %.0f s", e, wait)
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, 60.0)
                continue
            for u in updates:
                self.offset = max(self.offset, int(u.get("update_id", 0)) + 1)
                self.updates += 1
                await self.handle(u)

    async def handle(self, update: dict[str, Any]) -> None:
        msg = update.get("message") or {}
        text = msg.get("text") or ""
        chat = (msg.get("chat") or {}).get("id")
        if not isinstance(chat, int) or not text.startswith("/"):
            return
        reply = await self.commands.handle(chat, text)
        try:
            await self.client.send_message(chat, reply)
        except TelegramError as e:
            self.errors += 1
            log.warning("telegram: could not answer chat %d: %s", chat, e)
