"""Kite ticker client: the shared :class:`~mandi.brokers.ticker.WsTicker` (shards, health,
reconnects, a dead token) speaking Kite's protocol.

Kite allows 3,000 instruments per connection and 3 connections per API key. The handshake
carries ``api_key`` and ``access_token`` in the query; subscriptions are ``{"a": "subscribe"}``
then ``{"a": "mode"}``; binary frames decode with
:func:`mandi.brokers.kite.frames.decode_ticks` (1-byte heartbeats count as data); text messages
carry order postbacks (``{"type": "order"}``) and errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode

import msgspec

from mandi.brokers.kite.frames import decode_ticks
from mandi.brokers.ticker import WsTicker
from mandi.execution.live import FeedHealth
from mandi.feeds.kite import FrameStats
from mandi.model.market import Tick

log = logging.getLogger(__name__)


class KiteTicker(WsTicker):
    name = "kite"
    title = "Kite"

    def __init__(
        self,
        ws_url: str,
        api_key: str,
        access_token: str,
        *,
        max_connections: int = 3,
        tokens_per_connection: int = 3000,
        health: FeedHealth | None = None,
        backoff_max_s: float = 30.0,
        exchanges: dict[int, str] | None = None,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(
            ws_url,
            max_connections=max_connections,
            tokens_per_connection=tokens_per_connection,
            health=health,
            backoff_max_s=backoff_max_s,
            now_ns=now_ns,
        )
        self._query = urlencode({"api_key": api_key, "access_token": access_token})
        self.exchanges = exchanges or {}
        self.stats = FrameStats()

    @property
    def frames(self) -> int:
        return self.stats.frames

    def _handshake(self, shard: int) -> tuple[str, dict[str, str]]:
        return f"{self.ws_url}?{self._query}", {}

    def _subscribe_messages(self, tokens: list[int], mode: str) -> list[str]:
        enc = msgspec.json.encode
        return [
            enc({"a": "subscribe", "v": tokens}).decode(),
            enc({"a": "mode", "v": [mode, tokens]}).decode(),
        ]

    def _unsubscribe_messages(self, tokens: list[int], modes: dict[int, str]) -> list[str]:
        return [msgspec.json.encode({"a": "unsubscribe", "v": tokens}).decode()]

    def _decode(self, raw: bytes, now: int) -> list[Tick]:
        return decode_ticks(raw, now, self.exchanges, self.stats)

    def _on_text(self, text: str) -> None:
        try:
            msg = msgspec.json.decode(text)
        except msgspec.DecodeError:
            self._health.malformed += 1
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "order" and isinstance(msg.get("data"), dict):
            self.on_order(msg["data"])
        elif kind == "error":
            log.warning("Kite ticker says: %s", msg.get("data"))
        elif kind == "message":
            log.info("Kite ticker message: %s", msg.get("data"))


__all__ = ["KiteTicker"]
