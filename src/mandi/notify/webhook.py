"""A generic webhook notifier: each batch of alerts is POSTed as JSON that Slack's incoming
webhooks (``text``) and Discord's webhooks (``content``) both understand, with the alerts
themselves under ``alerts`` for anything else (``[notify.webhook] url``)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

from mandi.core.errors import MandiError
from mandi.notify.alerts import Alert, render_text

log = logging.getLogger(__name__)


class WebhookError(MandiError):
    pass


def payload(batch: list[Alert], dropped: int = 0) -> dict[str, Any]:
    """The JSON body: Slack reads ``text``, Discord ``content`` (≤ 2,000 characters)."""
    text = "\n".join(render_text(batch, dropped, limit=40_000))
    return {
        "text": text,
        "content": text if len(text) <= 2000 else text[:1999] + "…",
        "username": "mandi",
        "alerts": [a.as_json() for a in batch],
        "dropped": dropped,
    }


class WebhookNotifier:
    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise MandiError(f"notify.webhook.url must be http(s)://..., got {url[:40]!r}")
        self.url = url
        self._where = urlsplit(url).netloc  # for messages: the path may hold a secret
        self._http = httpx.AsyncClient(timeout=timeout_s)

    async def deliver(self, batch: list[Alert], dropped: int = 0) -> None:
        try:
            r = await self._http.post(self.url, json=payload(batch, dropped))
        except httpx.HTTPError as e:
            raise WebhookError(f"webhook {self._where}: {type(e).__name__}") from None
        if r.status_code >= 300:
            raise WebhookError(f"webhook {self._where}: HTTP {r.status_code}")

    async def close(self) -> None:
        await self._http.aclose()
