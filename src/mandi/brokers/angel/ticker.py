"""SmartStream v2 client: the shared :class:`~mandi.brokers.ticker.WsTicker` (shards, health,
reconnects, a dead session) speaking Angel One's protocol.

The handshake carries ``Authorization`` (the JWT), ``x-api-key``, ``x-client-code`` and
``x-feed-token`` headers; subscriptions are ``{"correlationID", "action": 1|0, "params":
{"mode": 1|2|3, "tokenList": [{"exchangeType", "tokens"}]}}`` (mandi's ``ltp``/``quote``/``full``
→ LTP/QUOTE/SNAP_QUOTE); every binary frame is one instrument
(:func:`mandi.brokers.angel.frames.decode_tick`); the client sends the text ``ping`` every
``heartbeat_s`` and the server answers ``pong`` (both count as data for the silence watchdog).
SmartStream allows 3 connections per client and 1,000 instruments per connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import msgspec

from mandi.brokers.angel.frames import circuit_limits, decode_tick
from mandi.brokers.session import BrokerSession
from mandi.brokers.ticker import WsTicker
from mandi.execution.live import FeedHealth
from mandi.model.market import Tick

log = logging.getLogger(__name__)

MODE = {"ltp": 1, "quote": 2, "full": 3}


class AngelTicker(WsTicker):
    name = "angel"
    title = "Angel One"
    ping_text = "ping"

    def __init__(
        self,
        ws_url: str,
        api_key: str,
        client_code: str,
        session: Callable[[], BrokerSession],
        *,
        max_connections: int = 3,
        tokens_per_connection: int = 1000,
        health: FeedHealth | None = None,
        backoff_max_s: float = 30.0,
        heartbeat_s: float = 10.0,
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
        self.api_key, self.client_code, self.session = api_key, client_code, session
        self.ping_interval_s = heartbeat_s
        self.decoded = 0
        self._corr = 0

    @property
    def frames(self) -> int:
        return self.decoded

    def _handshake(self, shard: int) -> tuple[str, dict[str, str]]:
        s = self.session()  # refreshed when due; a refused refresh ends the ticker
        return self.ws_url, {
            "Authorization": f"Bearer {s.access_token}",
            "x-api-key": self.api_key,
            "x-client-code": self.client_code,
            "x-feed-token": s.feed_token,
        }

    def _message(self, action: int, tokens: list[int], mode: str) -> str:
        by_type: dict[int, list[str]] = {}
        for t in tokens:
            by_type.setdefault(t & 0xFF, []).append(str(t >> 8))
        self._corr += 1
        return msgspec.json.encode(
            {
                "correlationID": f"mandi{self._corr:05d}"[:10],
                "action": action,
                "params": {
                    "mode": MODE[mode],
                    "tokenList": [{"exchangeType": k, "tokens": v} for k, v in by_type.items()],
                },
            }
        ).decode()

    def _subscribe_messages(self, tokens: list[int], mode: str) -> list[str]:
        return [self._message(1, tokens, mode)]

    def _unsubscribe_messages(self, tokens: list[int], modes: dict[int, str]) -> list[str]:
        by_mode: dict[str, list[int]] = {}
        for t, m in modes.items():
            by_mode.setdefault(m, []).append(t)
        return [self._message(0, toks, m) for m, toks in by_mode.items()]

    def _decode(self, raw: bytes, now: int) -> list[Tick]:
        self.decoded += 1
        tick = decode_tick(raw, now)
        limits = circuit_limits(raw)
        if limits is not None:
            self.report_price_limits(tick.token, limits)
        return [tick]

    def _on_text(self, text: str) -> None:
        if text == "pong":
            return
        log.warning("Angel One ticker says: %s", text[:200])


__all__ = ["AngelTicker"]
