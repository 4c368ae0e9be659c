"""The WebSocket side every broker feed shares (asyncio + websockets): the
:class:`~mandi.execution.live.LiveFeed` of Kite, Angel One and Groww.

* **Shards.** Subscriptions are spread over up to ``max_connections`` connections, each holding at
  most ``tokens_per_connection`` instruments (the broker's limits). Asking for more is refused
  with a clear error naming them.
* **Messages.** Binary frames → ticks through the broker's decoder (:meth:`WsTicker._decode`); a
  half-written or otherwise malformed frame is counted (``health.malformed``, ``rejected``) and
  skipped. Text messages go to :meth:`WsTicker._on_text` (order postbacks, pongs, errors).
* **Health and reconnects.** A socket silent for ``silent_after_s`` (not even a heartbeat) is
  treated as dead; every drop reconnects with jittered exponential backoff and resubscribes, and
  calls ``on_reconnect`` so the broker reconciles. A handshake refused with HTTP 401/403 (a dead
  token) stops the ticker for good — no loop on a dead token. Brokers whose server expects the
  client to ping (Angel One's ``ping``/``pong``, Groww's NATS ``PING``) set
  :attr:`WsTicker.ping_text`.
* **Protocols with a greeting** (Groww's NATS: the server's INFO, the client's signed CONNECT)
  override :meth:`WsTicker._open` (credentials fetched per connection, off the event loop) and
  :meth:`WsTicker._greet` (run before the subscriptions are sent); a stream protocol whose
  messages span websocket frames decodes per connection in :meth:`WsTicker._decode_from`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import websockets
from websockets.asyncio.client import connect

from mandi.core.errors import BrokerError, BrokerSessionError, ConfigError, ParseError
from mandi.execution.live import FeedHealth
from mandi.model.market import Tick

log = logging.getLogger(__name__)


class WsTicker:
    """Shards, reconnects and health of a broker's ticker (see the module docstring)."""

    name = "ticker"
    title = "the broker"
    ping_text: str | bytes | None = None  # a heartbeat the client sends every ping_interval_s
    ping_interval_s = 10.0

    def __init__(
        self,
        ws_url: str,
        *,
        max_connections: int = 3,
        tokens_per_connection: int = 3000,
        health: FeedHealth | None = None,
        backoff_max_s: float = 30.0,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.ws_url = ws_url
        self.max_connections = max_connections
        self.per_connection = tokens_per_connection
        self._health = health or FeedHealth()
        self.backoff_max_s = backoff_max_s
        self.now_ns = now_ns
        self.modes: dict[int, str] = {}  # token -> mode, all shards
        self.shard_of: dict[int, int] = {}
        self.rejected: Counter[str] = Counter()  # frames that could not be decoded, by reason
        self.price_limits: dict[int, tuple[int, int]] = {}  # token -> circuit (lower, upper)
        self._new_limits: dict[int, tuple[int, int]] = {}
        self._sockets: dict[int, Any] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.on_ticks: Callable[[list[Tick]], None] = lambda ticks: None
        self.on_order: Callable[[dict[str, Any]], None] = lambda order: None
        self.on_reconnect: Callable[[], None] = lambda: None
        self.on_session_dead: Callable[[str], None] = lambda reason: None
        self.connects = 0
        self._closing = False
        self._running = False

    # --- what a broker says its own way -----------------------------------------------------------
    def _handshake(self, shard: int) -> tuple[str, dict[str, str]]:
        """The URL and headers of a connection."""
        return self.ws_url, {}

    async def _open(self, shard: int) -> tuple[str, dict[str, str]]:
        """The URL and headers of a new connection (may fetch credentials; off the loop)."""
        return self._handshake(shard)

    async def _greet(self, ws: Any, shard: int) -> None:
        """What the protocol exchanges before subscribing (nothing by default)."""
        return None

    def _subscribe_messages(self, tokens: list[int], mode: str) -> list[str] | list[bytes]:
        raise NotImplementedError

    def _unsubscribe_messages(
        self, tokens: list[int], modes: dict[int, str]
    ) -> list[str] | list[bytes]:
        raise NotImplementedError

    def _decode(self, raw: bytes, now: int) -> list[Tick]:
        """One binary message → ticks; :class:`ParseError` for a bad one."""
        raise NotImplementedError

    def _decode_from(self, shard: int, raw: bytes, now: int) -> list[Tick]:
        """One binary message of connection ``shard`` → ticks (per-connection state)."""
        return self._decode(raw, now)

    def _on_text(self, text: str) -> None:
        return None

    @property
    def frames(self) -> int:
        return 0

    # --- the LiveFeed port ------------------------------------------------------------------------
    @property
    def health(self) -> FeedHealth:
        return self._health

    def set_handlers(
        self,
        on_ticks: Callable[[list[Tick]], None],
        on_order: Callable[[dict[str, Any]], None],
    ) -> None:
        self.on_ticks, self.on_order = on_ticks, on_order

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
                        f"broker.{self.name}.symbols",
                        len(self.modes) + 1,
                        f"{self.title} allows {self.max_connections} connections of "
                        f"{self.per_connection} instruments; subscribe fewer",
                    )
                s = free[0]
                counts[s] += 1
                self.shard_of[t] = s
            self.modes[t] = mode
            placed.setdefault(s, []).append(t)
        for s, toks in placed.items():
            for m in self._subscribe_messages(toks, mode):
                self._send(s, m)
            if s not in self._tasks and not self._closing and self._running:
                self._start_shard(s)
        self._health.expected = len(set(self.shard_of.values()))

    def unsubscribe(self, tokens: Iterable[int]) -> None:
        by_shard: dict[int, dict[int, str]] = {}
        for t in tokens:
            s = self.shard_of.pop(int(t), None)
            mode = self.modes.pop(int(t), None)
            if s is not None and mode is not None:
                by_shard.setdefault(s, {})[int(t)] = mode
        for s, modes in by_shard.items():
            for m in self._unsubscribe_messages(list(modes), modes):
                self._send(s, m)

    def _send(self, shard: int, msg: str | bytes) -> None:
        ws = self._sockets.get(shard)
        if ws is not None:
            task = asyncio.ensure_future(ws.send(msg))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # --- running ----------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Start one task per shard in use (they reconnect by themselves)."""
        self._running = True
        for s in sorted(set(self.shard_of.values())) or [0]:
            self._start_shard(s)
        self._health.expected = max(len(set(self.shard_of.values())), 1)

    def _start_shard(self, s: int) -> None:
        self._tasks[s] = asyncio.create_task(self._shard(s), name=f"{self.name}-ticker-{s}")

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
                raise TimeoutError(f"the {self.title} ticker did not connect")
            await asyncio.sleep(0.02)

    async def _ping(self, ws: Any) -> None:
        assert self.ping_text is not None
        while True:
            await asyncio.sleep(self.ping_interval_s)
            await ws.send(self.ping_text)

    async def _shard(self, s: int) -> None:
        delay = 0.5
        first = True
        silent = self._health.silent_after_ns / 1e9
        while not self._closing:
            was_silent = False
            pinger: asyncio.Task[None] | None = None
            try:
                url, headers = await self._open(s)
            except BrokerSessionError as e:  # the session could not be kept alive: fail closed
                reason = str(e)
                if "log in again" not in reason:
                    reason += f"; log in again: mandi broker login {self.name}"
                self._health.on_session_dead(reason)
                self.on_session_dead(reason)
                return
            except (BrokerError, OSError) as e:  # the credentials' server is unreachable: retry
                log.warning("%s ticker %d: %s; retrying", self.title, s, e)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.backoff_max_s)
                continue
            try:
                async with connect(
                    url,
                    additional_headers=headers or None,
                    open_timeout=10,
                    max_size=2**22,
                    close_timeout=1.0,
                    ping_interval=None,
                ) as ws:
                    await self._greet(ws, s)
                    self._sockets[s] = ws
                    self.connects += 1
                    self._health.on_connected(self.now_ns())
                    mine = [t for t, sh in self.shard_of.items() if sh == s]
                    by_mode: dict[str, list[int]] = {}
                    for t in mine:
                        by_mode.setdefault(self.modes[t], []).append(t)
                    for mode, toks in by_mode.items():
                        for m in self._subscribe_messages(toks, mode):
                            await ws.send(m)
                    if self.ping_text is not None:
                        pinger = asyncio.create_task(self._ping(ws))
                    if not first:
                        log.info(
                            "%s ticker %d reconnected; %d instruments resubscribed",
                            self.title,
                            s,
                            len(mine),
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
                        self._handle(raw, s)
            except BrokerSessionError as e:  # refused in the greeting: fail closed
                reason = f"{e}; log in again: mandi broker login {self.name}"
                log.error("%s ticker: %s", self.title, reason)
                self._health.on_session_dead(reason)
                self.on_session_dead(reason)
                return
            except websockets.InvalidStatus as e:
                code = e.response.status_code
                if code in (401, 403):
                    reason = (
                        f"{self.title} refused the session (HTTP {code}); "
                        f"log in again: mandi broker login {self.name}"
                    )
                    log.error("%s ticker: %s", self.title, reason)
                    self._health.on_session_dead(reason)
                    self.on_session_dead(reason)
                    return
                log.warning("%s ticker %d: handshake refused (HTTP %d)", self.title, s, code)
            except (OSError, TimeoutError, websockets.WebSocketException, ParseError) as e:
                log.warning(
                    "%s ticker %d: %s; reconnecting",
                    self.title,
                    s,
                    "silent socket" if was_silent else type(e).__name__,
                )
            finally:
                if pinger is not None:
                    pinger.cancel()
                if self._sockets.pop(s, None) is not None:
                    self._health.on_disconnected(self.now_ns(), was_silent)
            if self._closing:
                return
            wait = delay * (0.5 + random.random())
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.backoff_max_s)

    def _handle(self, raw: bytes | str, shard: int = 0) -> None:
        now = self.now_ns()
        if isinstance(raw, bytes):
            try:
                ticks = self._decode_from(shard, raw, now)
            except ParseError as e:
                self._bad_frame(str(e))
                self._health.on_message(now)
                return
            self._health.on_message(now, len(ticks))
            if ticks:
                self.on_ticks(ticks)
            return
        self._health.on_message(now)
        self._on_text(raw)

    def report_price_limits(self, token: int, limits: tuple[int, int]) -> None:
        """A frame told ``token``'s circuit limits (lower, upper paise; 0 = unknown side)."""
        if self.price_limits.get(token) != limits:
            self.price_limits[token] = limits
            self._new_limits[token] = limits

    def take_price_limits(self) -> dict[int, tuple[int, int]]:
        """The circuit limits that changed since the last call (the node hands them to the
        tick policy, whose price band they bound)."""
        new, self._new_limits = self._new_limits, {}
        return new

    def _bad_frame(self, reason: str) -> None:
        """Count a frame (or a message in it) that could not be decoded; log a few of them."""
        self._health.malformed += 1
        self.rejected["malformed_frame"] += 1
        if self._health.malformed <= 3 or self._health.malformed % 100 == 0:
            log.warning(
                "%s ticker: bad frame skipped (%s); %d so far",
                self.title,
                reason,
                self._health.malformed,
            )
