"""Kite ticker client (asyncio + websockets): the :class:`~mandi.execution.live.LiveFeed` of
Kite.

* **Shards.** Kite allows 3,000 instruments per connection and 3 connections per API key;
  subscriptions are spread over up to ``max_connections`` connections, each holding at most
  ``tokens_per_connection``. Asking for more is refused with a clear error.
* **Messages.** Binary frames → ticks (:func:`mandi.brokers.kite.frames.decode_ticks`); 1-byte
  heartbeats count as data; text messages carry order postbacks (``{"type": "order"}``) and
  errors. A half-written or otherwise malformed frame is counted and skipped.
* **Health and reconnects.** A socket silent for ``silent_after_s`` (not even a heartbeat) is
  treated as dead; every drop reconnects with jittered exponential backoff and resubscribes,
  and calls ``on_reconnect`` so the broker reconciles. A handshake refused with HTTP 403 (a
  dead access token) stops the ticker for good — no loop on a dead token.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

import msgspec
import websockets
from websockets.asyncio.client import connect

from mandi.brokers.kite.frames import decode_ticks
from mandi.core.errors import ConfigError, ParseError
from mandi.execution.live import FeedHealth
from mandi.feeds.kite import FrameStats
from mandi.model.market import Tick

log = logging.getLogger(__name__)


class KiteTicker:
    name = "kite"

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
        self.ws_url = ws_url
        self._query = urlencode({"api_key": api_key, "access_token": access_token})
        self.max_connections = max_connections
        self.per_connection = tokens_per_connection
        self._health = health or FeedHealth()
        self.backoff_max_s = backoff_max_s
        self.exchanges = exchanges or {}
        self.now_ns = now_ns
        self.stats = FrameStats()
        self.modes: dict[int, str] = {}  # token -> mode, all shards
        self.shard_of: dict[int, int] = {}
        self._sockets: dict[int, Any] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.on_ticks: Callable[[list[Tick]], None] = lambda ticks: None
        self.on_order: Callable[[dict[str, Any]], None] = lambda order: None
        self.on_reconnect: Callable[[], None] = lambda: None
        self.on_session_dead: Callable[[str], None] = lambda reason: None
        self.connects = 0
        self._closing = False

    @property
    def health(self) -> FeedHealth:
        return self._health

    def set_handlers(
        self,
        on_ticks: Callable[[list[Tick]], None],
        on_order: Callable[[dict[str, Any]], None],
    ) -> None:
        self.on_ticks, self.on_order = on_ticks, on_order

    # --- subscriptions ----------------------------------------------------------------------------
    def subscribe(self, tokens: Iterable[int], mode: str = "full") -> None:
        new = [int(t) for t in tokens if self.modes.get(int(t)) != mode]
        if not new:
            return
        counts = [0] * self.max_connections
        for s in self.shard_of.values():
            counts[s] += 1
        placed: dict[int, list[int]] = {}
        for t in new:
            held = self.shard_of.get(t)
            if held is not None:
                s = held
            else:
                free = [i for i, n in enumerate(counts) if n < self.per_connection]
                if not free:
                    raise ConfigError(
                        "broker.kite.symbols",
                        len(self.modes) + 1,
                        f"Kite allows {self.max_connections} connections of "
                        f"{self.per_connection} instruments; subscribe fewer",
                    )
                s = free[0]
                counts[s] += 1
                self.shard_of[t] = s
            self.modes[t] = mode
            placed.setdefault(s, []).append(t)
        for s, toks in placed.items():
            self._send(s, {"a": "subscribe", "v": toks})
            self._send(s, {"a": "mode", "v": [mode, toks]})
            if s not in self._tasks and not self._closing and self._running:
                self._start_shard(s)
        self._health.expected = len(set(self.shard_of.values()))

    def unsubscribe(self, tokens: Iterable[int]) -> None:
        by_shard: dict[int, list[int]] = {}
        for t in tokens:
            s = self.shard_of.pop(int(t), None)
            self.modes.pop(int(t), None)
            if s is not None:
                by_shard.setdefault(s, []).append(int(t))
        for s, toks in by_shard.items():
            self._send(s, {"a": "unsubscribe", "v": toks})

    def _send(self, shard: int, msg: dict[str, Any]) -> None:
        ws = self._sockets.get(shard)
        if ws is not None:
            task = asyncio.ensure_future(ws.send(msgspec.json.encode(msg).decode()))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # --- running ----------------------------------------------------------------------------------
    _running = False

    async def connect(self) -> None:
        """Start one task per shard in use (they reconnect by themselves)."""
        self._running = True
        for s in sorted(set(self.shard_of.values())) or [0]:
            self._start_shard(s)
        self._health.expected = max(len(set(self.shard_of.values())), 1)

    def _start_shard(self, s: int) -> None:
        self._tasks[s] = asyncio.create_task(self._shard(s), name=f"kite-ticker-{s}")

    async def close(self) -> None:
        self._closing = True
        for t in self._tasks.values():
            t.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    async def wait_connected(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self._health.up < self._health.expected:
            if self._health.dead:
                raise ConnectionError(self._health.dead)
            if time.monotonic() > deadline:
                raise TimeoutError("the Kite ticker did not connect")
            await asyncio.sleep(0.02)

    async def _shard(self, s: int) -> None:
        delay = 0.5
        first = True
        url = f"{self.ws_url}?{self._query}"
        silent = self._health.silent_after_ns / 1e9
        while not self._closing:
            was_silent = False
            try:
                async with connect(
                    url, open_timeout=10, max_size=2**22, close_timeout=1.0, ping_interval=None
                ) as ws:
                    self._sockets[s] = ws
                    self.connects += 1
                    self._health.on_connected(self.now_ns())
                    mine = [t for t, sh in self.shard_of.items() if sh == s]
                    by_mode: dict[str, list[int]] = {}
                    for t in mine:
                        by_mode.setdefault(self.modes[t], []).append(t)
                    if mine:
                        await ws.send(msgspec.json.encode({"a": "subscribe", "v": mine}).decode())
                    for mode, toks in by_mode.items():
                        await ws.send(
                            msgspec.json.encode({"a": "mode", "v": [mode, toks]}).decode()
                        )
                    if not first:
                        log.info(
                            "Kite ticker %d reconnected; %d instruments resubscribed", s, len(mine)
                        )
                        self.on_reconnect()
                    first = False
                    delay = 0.5
                    while True:
                        try:
                            async with asyncio.timeout(silent):
                                raw = await ws.recv()
                        except TimeoutError:
                            was_silent = True
                            raise
                        self._handle(raw)
            except websockets.InvalidStatus as e:
                code = e.response.status_code
                if code in (401, 403):
                    reason = (
                        "Kite refused the access token (HTTP 403: TokenException); "
                        "log in again: mandi broker login kite"
                    )
                    log.error("Kite ticker: %s", reason)
                    self._health.on_session_dead(reason)
                    self.on_session_dead(reason)
                    return
                log.warning("Kite ticker %d: handshake refused (HTTP %d)", s, code)
            except (OSError, TimeoutError, websockets.WebSocketException) as e:
                log.warning(
                    "Kite ticker %d: %s; reconnecting",
                    s,
                    "silent socket" if was_silent else type(e).__name__,
                )
            finally:
                if self._sockets.pop(s, None) is not None:
                    self._health.on_disconnected(self.now_ns(), was_silent)
            if self._closing:
                return
            wait = delay * (0.5 + random.random())
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.backoff_max_s)

    def _handle(self, raw: bytes | str) -> None:
        now = self.now_ns()
        if isinstance(raw, bytes):
            try:
                ticks = decode_ticks(raw, now, self.exchanges, self.stats)
            except ParseError as e:
                self._health.malformed += 1
                if self._health.malformed <= 3 or self._health.malformed % 100 == 0:
                    log.warning(
                        "Kite ticker: bad frame skipped (%s); %d so far", e, self._health.malformed
                    )
                self._health.on_message(now)
                return
            self._health.on_message(now, len(ticks))
            if ticks:
                self.on_ticks(ticks)
            return
        self._health.on_message(now)
        try:
            msg = msgspec.json.decode(raw)
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
