"""The WebSocket hub: bus → browsers, without ever slowing the engine.

Protocol (``/ws``; every frame is UTF-8 text)
==============================================

Server → client frames carry one or more JSON messages separated by ``\\n`` (NDJSON; a frame with
one message is plain JSON). Messages:

* ``{"type": "hello", "data": {...}}`` first: server version, your scope, the channel catalogue;
* ``{"type": "snapshot", "data": {...}}`` next: the current state — status, every underlying's
  info bar, open positions, the latest signal, the risk state;
* ``{"channel": "<name>", "data": {...}, "ts": <server time, Unix ms>}`` for every update of a
  subscribed channel (the seed's ``{channel, data, ts}``);
* ``{"type": "metrics", "data": {...}, "ts": ...}`` every ``web.metrics_interval_s`` (2 s) to
  every client: ticks/s, queues, lags, drops, risk state, fan-out statistics;
* ``{"type": "subscribed" | "unsubscribed", "channels": [...]}``, ``{"type": "pong"}``,
  ``{"type": "error", "error": "<code>", "message": "...", ...}`` (a bad message gets an error
  frame; the connection stays open).

Client → server (JSON objects): ``{"op": "subscribe", "channels": [...]}``,
``{"op": "unsubscribe", "channels": [...]}``, ``{"op": "ping"}``, and ``{"op": "auth", "token":
"..."}`` for clients that cannot send a header or cookie on the handshake.

Channels (bus topic names, so the Redis keys of the distributed mode are the same strings):

==========================================  ======================================  ===========
``tick:{EX}:{token}``                       last tick                               conflated
``candle:{tf}s:{EX}:{token}``               confirmed candles (``tf`` 1 or a tf)    every one
``pub:candle:{tf}s:{EX}:{token}``           the forming candle                      conflated
``ind:{NAME|*}:{tf}s:{EX}:{token}``         confirmed indicator values              every one
``pub:ind:{NAME|*}:{tf}s:{EX}:{token}``     indicator previews on the forming bar   conflated
``chain:{U}`` / ``chain:{U}:{YYYY-MM-DD}``  the chain table + summary (not the raw  conflated,
                                            snapshot of the bus topic)              ≤ 1/s
``overview:{U}``                            the info bar of one underlying          ≤ 1/s
``data_update_NSE`` / ``data_update_BSE``   the seed's per-exchange payload (the    ≤ 1/s
                                            NIFTY / SENSEX chain table + summary)
``signal:{strategy|*|>}``                   signals (with alpha-card fields)        every one
``order:{status|*|>}``                      order events                            every one
``position:{opened|updated|closed|>}``      positions; ``updated`` (MTM) conflated  mixed
``position_closed``                         the seed's toast channel                every one
``risk:{denied|halted|resumed|>}``          risk decisions and the latch            every one
``system:{kind|>}``                         system events                           every one
==========================================  ======================================  ===========

Flow control. Bus handlers run inside the kernel and only store the message (a dict write or a
list append): encoding and sending happen later, off the kernel's path, on a cadence
(``web.flush_interval_ms``) that stretches so that fan-out never takes more than
``web.cpu_budget`` of the event loop. Each message is encoded once, whatever the number of
clients. Every client has its own bounded pending set: a newer update of a conflated channel
replaces the one it has not read yet (a slow browser skips stale updates), and a client that
falls ``web.client_queue`` events behind, or whose socket does not take a frame within
``web.send_timeout_s``, is disconnected (close code 1013) — it never holds anybody else back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from mandi.web import serialize as ser
from mandi.web.api import EXCHANGE_DEFAULT_UNDERLYING, VERSION, ApiError, MandiAPI

log = logging.getLogger(__name__)

_enc = msgspec.json.Encoder()
MAX_CHANNELS_PER_CLIENT = 200
MAX_MESSAGE_BYTES = 16_384
_EX = r"[A-Z]{2,8}"
_TOKEN = r"\d{1,12}"
_NAME = r"(?:[A-Za-z0-9_.]{1,40}|\*)"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("tick", re.compile(rf"^tick:{_EX}:{_TOKEN}$")),
    ("candle", re.compile(rf"^candle:(\d+)s:{_EX}:{_TOKEN}$")),
    ("forming", re.compile(rf"^pub:candle:(\d+)s:{_EX}:{_TOKEN}$")),
    ("ind", re.compile(rf"^ind:{_NAME}:(\d+)s:{_EX}:{_TOKEN}$")),
    ("preview", re.compile(rf"^pub:ind:{_NAME}:(\d+)s:{_EX}:{_TOKEN}$")),
    ("events", re.compile(r"^(signal|order|position|risk|system):([A-Za-z0-9_.-]{1,40}|\*|>)$")),
]
_POLLED = re.compile(r"^(chain|overview):([A-Z0-9&_-]{1,20})(?::(\d{4}-\d{2}-\d{2}))?$")
_DATA_UPDATE = re.compile(r"^data_update_(NSE|BSE)$")


class ChannelError(ValueError):
    def __init__(self, channel: str, reason: str) -> None:
        self.channel = channel
        super().__init__(reason)


@dataclass(eq=False)
class Client:
    """One WebSocket connection (``send`` is the socket's text sender)."""

    send: Callable[[str], Awaitable[None]]
    close: Callable[[int, str], Awaitable[None]]
    scope: str = ""
    name: str = ""
    channels: set[str] = field(default_factory=set)
    pending: dict[Any, str] = field(default_factory=dict)
    events_pending: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    dropped: str = ""
    messages: int = 0
    frames: int = 0
    skipped: int = 0
    task: asyncio.Task[None] | None = None
    sending_since: float = 0.0


@dataclass(eq=False)
class _BusChannel:
    """One bus subscription shared by every client of one channel."""

    channel: str
    pattern: str
    alias: str | None = None  # the channel name clients see, when not the topic
    conflate_all: bool = False
    clients: set[Client] = field(default_factory=set)
    latest: dict[Any, tuple[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, Any]] = field(default_factory=list)
    last_sent: dict[Any, str] = field(default_factory=dict)  # for a late subscriber
    sub: Any = None


@dataclass(eq=False)
class _Polled:
    channel: str
    kind: str  # chain | overview | data_update
    underlying: str
    expiry: str | None
    clients: set[Client] = field(default_factory=set)
    last_key: Any = None
    last_frame: str | None = None
    next_at: float = 0.0


class Hub:
    """Fan-out of bus messages and polled state to WebSocket clients (see the module doc)."""

    def __init__(self, api: MandiAPI, cfg: Any) -> None:
        self.api = api
        self.node = api.node
        self.cfg = cfg
        self.clients: set[Client] = set()
        self._bus: dict[str, _BusChannel] = {}
        self._polled: dict[str, _Polled] = {}
        self._dirty: set[_BusChannel] = set()
        self._seq = itertools.count()
        self._event_cap = cfg.client_queue
        self.messages_sent = 0
        self.frames_sent = 0
        self.skipped = 0
        self.dropped_clients = 0
        self.bus_overflow = 0
        self.errors_sent = 0
        self._busy = 0.0
        self._busy_window = (time.perf_counter(), 0.0)
        self.busy_ratio = 0.0
        self.interval = cfg.flush_interval_ms / 1000
        self.ticks_per_s: float | None = None
        self._last_metrics: str | None = None
        self._stopping = False
        # sockets still authenticating: no client slot, counted per address (see mandi.web.ws)
        self.pending: Counter[str] = Counter()
        self.pending_refused = 0
        self.auth_timeouts = 0

    # --- channels ---------------------------------------------------------------------------------
    def parse(self, channel: str) -> tuple[str, dict[str, Any]]:
        """Validate a channel name; returns (kind, details) or raises :class:`ChannelError`."""
        if not isinstance(channel, str) or not channel or len(channel) > 120:
            raise ChannelError(str(channel)[:120], "a channel is a non-empty string")
        if channel in ("position_closed",):
            return "bus", {"pattern": "position:closed", "alias": "position_closed"}
        m = _DATA_UPDATE.match(channel)
        if m:
            u = EXCHANGE_DEFAULT_UNDERLYING[m.group(1)]
            return "polled", {"kind": "data_update", "underlying": u, "expiry": None}
        m = _POLLED.match(channel)
        if m:
            kind, u, exp = m.group(1), m.group(2), m.group(3)
            try:
                self.api._underlying(u)
                if exp:
                    self.api.pick_expiry(u, exp)
            except ApiError as e:
                raise ChannelError(channel, str(e)) from None
            return "polled", {"kind": kind, "underlying": u, "expiry": exp}
        for kind, rx in _PATTERNS:
            m = rx.match(channel)
            if not m:
                continue
            if kind == "events":
                return "bus", {"pattern": channel}
            parts = channel.split(":")
            token, exchange = int(parts[-1]), parts[-2]
            inst = self.node.master.get(token)
            if inst is None or inst.exchange != exchange:
                raise ChannelError(channel, f"no instrument {exchange}:{token}")
            if kind != "tick":
                tf = int(m.group(1))
                ok = (
                    (1, *self.node.cfg.pipeline.timeframes)
                    if kind == "candle"
                    else self.node.cfg.pipeline.timeframes
                )
                if tf not in ok:
                    raise ChannelError(
                        channel, f"timeframe {tf}s is not built (use one of {list(ok)})"
                    )
            return "bus", {"pattern": channel, "conflate": kind in ("tick", "forming", "preview")}
        raise ChannelError(
            channel,
            "unknown channel (see the protocol in the docs: tick:, "
            "candle:, pub:candle:, ind:, pub:ind:, chain:, overview:, "
            "signal:, order:, position:, risk:, system:, "
            "data_update_NSE, position_closed)",
        )

    def subscribe(
        self, client: Client, channels: list[str]
    ) -> tuple[list[str], list[dict[str, str]]]:
        ok: list[str] = []
        errors: list[dict[str, str]] = []
        for ch in channels:
            if ch in client.channels:
                ok.append(ch)
                continue
            if len(client.channels) >= MAX_CHANNELS_PER_CLIENT:
                errors.append(
                    {
                        "channel": ch,
                        "message": f"at most {MAX_CHANNELS_PER_CLIENT} channels per connection",
                    }
                )
                continue
            try:
                kind, d = self.parse(ch)
            except ChannelError as e:
                errors.append({"channel": e.channel, "message": str(e)})
                continue
            if kind == "bus":
                bc = self._bus.get(ch)
                if bc is None:
                    bc = self._bus[ch] = _BusChannel(
                        ch, d["pattern"], d.get("alias"), d.get("conflate", False)
                    )
                    bc.sub = self.node.bus.subscribe(
                        bc.pattern, self._handler(bc), name=f"web.{ch}"
                    )
                bc.clients.add(client)
                for key, frame in bc.last_sent.items():  # the latest value at once
                    self._push(client, key, frame, conflate=True)
            else:
                pc = self._polled.get(ch)
                if pc is None:
                    pc = self._polled[ch] = _Polled(ch, d["kind"], d["underlying"], d["expiry"])
                pc.clients.add(client)
                if pc.last_frame is not None:
                    self._push(client, ("polled", ch), pc.last_frame, conflate=True)
                else:
                    pc.next_at = 0.0
            client.channels.add(ch)
            ok.append(ch)
        if ok:
            client.wake.set()
        return ok, errors

    def unsubscribe(self, client: Client, channels: list[str]) -> list[str]:
        done = []
        for ch in channels:
            if ch not in client.channels:
                continue
            client.channels.discard(ch)
            done.append(ch)
            bc = self._bus.get(ch)
            if bc is not None:
                bc.clients.discard(client)
                if not bc.clients:  # nobody left: the kernel stops paying for it
                    self.node.bus.unsubscribe(bc.sub)
                    del self._bus[ch]
                    self._dirty.discard(bc)
            pc = self._polled.get(ch)
            if pc is not None:
                pc.clients.discard(client)
                if not pc.clients:
                    del self._polled[ch]
        return done

    def _handler(self, bc: _BusChannel) -> Callable[[str, Any], None]:
        """The bus handler: runs in the kernel, so it only stores (O(1))."""
        dirty, cap = self._dirty, self._event_cap

        if bc.conflate_all:
            latest = bc.latest

            def conflated(topic: str, msg: Any) -> None:
                latest[topic] = (topic, msg)
                dirty.add(bc)

            return conflated

        events, latest = bc.events, bc.latest

        def handler(topic: str, msg: Any) -> None:
            if topic == "position:updated":  # MTM updates: the newest per position wins
                pos = getattr(msg, "position", None)
                latest[(topic, getattr(pos, "position_id", ""))] = (topic, msg)
            elif len(events) < cap:
                events.append((topic, msg))
            else:
                self.bus_overflow += 1
            dirty.add(bc)

        return handler

    # --- encoding and queueing --------------------------------------------------------------------
    def encode(self, channel: str, data: Any) -> str:
        return _enc.encode(
            {"channel": channel, "data": data, "ts": time.time_ns() // 1_000_000}
        ).decode()

    @staticmethod
    def encode_type(kind: str, data: Any = None, **extra: Any) -> str:
        msg: dict[str, Any] = {"type": kind}
        if data is not None:
            msg["data"] = data
        msg.update(extra)
        if kind == "metrics":
            msg["ts"] = time.time_ns() // 1_000_000
        return _enc.encode(msg).decode()

    def _push(self, c: Client, key: Any, frame: str, conflate: bool) -> None:
        if c.closed:
            return
        if conflate:
            if key in c.pending:
                c.skipped += 1
                self.skipped += 1
            c.pending[key] = frame
        else:
            c.pending[next(self._seq)] = frame
            c.events_pending += 1
            if c.events_pending > self._event_cap:
                self._drop(c, f"more than {self._event_cap} events behind")
                return
        c.wake.set()

    def send_direct(self, c: Client, frame: str) -> None:
        """A reply to one client (never conflated)."""
        self._push(c, next(self._seq), frame, conflate=False)

    def error(self, c: Client, code: str, message: str, **extra: Any) -> None:
        self.errors_sent += 1
        self.send_direct(c, self.encode_type("error", error=code, message=message, **extra))

    def _drop(self, c: Client, why: str) -> None:
        if c.closed:
            return
        c.closed = True
        c.dropped = why
        self.dropped_clients += 1
        log.warning("dropping a slow WebSocket client (%s)", why)
        c.wake.set()

    def flush(self) -> int:
        """Encode what the bus left since the last flush (once) and queue it per client."""
        n = 0
        dirty = list(self._dirty)
        self._dirty.clear()  # in place: the bus handlers hold this very set
        for bc in dirty:
            if not bc.clients:
                bc.latest.clear()
                bc.events.clear()
                continue
            name = bc.alias
            if bc.latest:
                items = dict(bc.latest)  # the bus handler holds this very dict
                bc.latest.clear()
                for key, (topic, msg) in items.items():
                    frame = self.encode(name or topic, ser.message(topic, msg))
                    bc.last_sent[key] = frame
                    for c in bc.clients:
                        self._push(c, key, frame, conflate=True)
                    n += 1
            if bc.events:
                evs = list(bc.events)
                bc.events.clear()
                for topic, msg in evs:
                    frame = self.encode(name or topic, ser.message(topic, msg))
                    for c in bc.clients:
                        self._push(c, next(self._seq), frame, conflate=False)
                    n += 1
        return n

    def poll(self, now: float) -> int:
        """Chain tables and info bars for their subscribers, at most every chain_interval_s."""
        n = 0
        for pc in list(self._polled.values()):
            if not pc.clients or now < pc.next_at:
                continue
            pc.next_at = now + self.cfg.chain_interval_s
            try:
                key, data = self._polled_data(pc)
            except ApiError as e:
                if pc.last_key != ("error", e.code):
                    pc.last_key = ("error", e.code)
                    for c in pc.clients:
                        self.error(c, e.code, str(e), channel=pc.channel)
                continue
            if key == pc.last_key and key is not None:
                continue
            pc.last_key = key
            pc.last_frame = frame = self.encode(pc.channel, data)
            for c in pc.clients:
                self._push(c, ("polled", pc.channel), frame, conflate=True)
            n += 1
        return n

    def _polled_data(self, pc: _Polled) -> tuple[Any, Any]:
        api = self.api
        if pc.kind == "overview":
            d = api.overview(pc.underlying)
            return (d.get("price"), d.get("time"), d.get("pcr"), d.get("vix")), d
        exp = api.pick_expiry(pc.underlying, pc.expiry)
        m = api._matrix()
        a = m.analytics(pc.underlying, exp) if (m is not None and exp is not None) else None
        key = (id(a), getattr(a, "ts_event", None)) if a is not None else None
        if key is not None and key == pc.last_key:
            return key, None
        d = api.chain(pc.underlying, exp.isoformat() if exp else None)
        if pc.kind == "data_update":  # the seed's payload: the table plus its info bar
            d = {**d, "exchange": d.get("exchange"), "info": d.get("summary")}
        return key, d

    # --- per client -------------------------------------------------------------------------------
    def admit_pending(self, addr: str) -> bool:
        """Room for one more unauthenticated socket from ``addr`` (``web.ws_unauth_per_address``,
        ``web.ws_unauth_max`` in total)? Counts it when there is; release it when it is done."""
        if (
            self.pending[addr] >= self.cfg.ws_unauth_per_address
            or self.pending.total() >= self.cfg.ws_unauth_max
        ):
            self.pending_refused += 1
            return False
        self.pending[addr] += 1
        return True

    def release_pending(self, addr: str) -> None:
        self.pending[addr] -= 1
        if self.pending[addr] <= 0:
            del self.pending[addr]

    def add(self, c: Client) -> bool:
        if len(self.clients) >= self.cfg.max_clients:
            return False
        self.clients.add(c)
        c.task = asyncio.get_running_loop().create_task(self._writer(c), name="web.ws.writer")
        return True

    def hello(self, c: Client) -> None:
        self.send_direct(
            c,
            self.encode_type(
                "hello",
                {
                    "version": VERSION,
                    "scope": c.scope,
                    "protocol": "ndjson-frames",
                    "channels": [
                        "tick:{EX}:{token}",
                        "candle:{tf}s:{EX}:{token}",
                        "pub:candle:{tf}s:{EX}:{token}",
                        "ind:{NAME|*}:{tf}s:{EX}:{token}",
                        "pub:ind:{NAME|*}:{tf}s:{EX}:{token}",
                        "chain:{U}[:{expiry}]",
                        "overview:{U}",
                        "data_update_NSE",
                        "data_update_BSE",
                        "signal:>",
                        "order:>",
                        "position:>",
                        "position_closed",
                        "risk:>",
                        "system:>",
                    ],
                    "timeframes": list(self.node.cfg.pipeline.timeframes),
                    "metrics_interval_s": self.cfg.metrics_interval_s,
                },
            ),
        )
        self.send_direct(c, self.encode_type("snapshot", self.snapshot()))

    def snapshot(self) -> dict[str, Any]:
        api = self.api
        overviews = {}
        for u in api.underlyings():
            with contextlib.suppress(ApiError):
                overviews[u["symbol"]] = api.overview(u["symbol"])
        out: dict[str, Any] = {
            "status": api.status(),
            "underlyings": api.underlyings(),
            "overview": overviews,
            "risk": api.risk(),
        }
        with contextlib.suppress(ApiError):
            out["positions"] = api.positions("open")
        with contextlib.suppress(ApiError):
            out["alpha"] = api.alpha()
        return out

    def remove(self, c: Client) -> None:
        self.unsubscribe(c, list(c.channels))
        self.clients.discard(c)
        c.closed = True
        c.wake.set()

    async def _writer(self, c: Client) -> None:
        """Sends a client's pending messages as one frame. A send runs synchronously while the
        socket takes data (no extra task, no loop turn), so its CPU time is measured exactly; a
        send that waits for a full socket is watched by :meth:`check_stalled`."""
        try:
            while True:
                await c.wake.wait()
                c.wake.clear()
                if c.closed:
                    break
                if not c.pending:
                    continue
                items, c.pending, c.events_pending = c.pending, {}, 0
                frame = "\n".join(items.values())
                w0, t0 = time.perf_counter(), time.thread_time()
                c.sending_since = time.monotonic()
                await c.send(frame)
                c.sending_since = 0.0
                cpu, wall = time.thread_time() - t0, time.perf_counter() - w0
                # a send that waited for the socket let other tasks run meanwhile: their CPU
                # time is not ours (count a typical send instead)
                self._busy += cpu if wall < 0.002 else min(cpu, 0.0002)
                c.messages += len(items)
                c.frames += 1
                self.messages_sent += len(items)
                self.frames_sent += 1
        except asyncio.CancelledError:
            pass
        except Exception:
            c.closed = True
        if c.dropped and not self._stopping:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.close(1013, "too slow; reconnect"), 1.0)

    def check_stalled(self, now: float) -> None:
        """Drop clients whose socket has not taken a frame within ``web.send_timeout_s``."""
        limit = self.cfg.send_timeout_s
        for c in list(self.clients):
            if c.sending_since and now - c.sending_since > limit and not c.closed:
                self._drop(c, f"a frame was not taken within {limit:g} s")
                if c.task is not None:
                    c.task.cancel()  # the writer is stuck in its send; it closes the socket

    # --- loops ------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Flush, poll and metrics on their cadences, inside the CPU budget."""
        base = self.cfg.flush_interval_ms / 1000
        budget = self.cfg.cpu_budget
        next_metrics = time.monotonic()
        last_ticks, last_t = self.node.stats.ticks_in, time.monotonic()
        win_start, win_busy = time.perf_counter(), 0.0
        while True:
            await asyncio.sleep(self.interval)
            t0 = time.thread_time()  # this thread's CPU: not the SQLite writer's
            now = time.monotonic()
            try:
                self.check_stalled(now)
                self.flush()
                self.poll(now)
                if now >= next_metrics:
                    next_metrics = now + self.cfg.metrics_interval_s
                    dt_s = now - last_t
                    if dt_s > 0:
                        self.ticks_per_s = (self.node.stats.ticks_in - last_ticks) / dt_s
                    last_ticks, last_t = self.node.stats.ticks_in, now
                    if self.clients:
                        self.broadcast_metrics()
            except Exception:
                log.exception("web hub flush failed")
            busy = time.thread_time() - t0 + self._busy
            self._busy = 0.0
            win_busy += busy
            elapsed = time.perf_counter() - win_start
            if elapsed >= 2.0:
                self.busy_ratio = win_busy / elapsed
                win_start, win_busy = time.perf_counter(), 0.0
            # stretch the cadence so that busy / interval stays within the budget
            self.interval = min(max(base, busy / budget), 5.0)

    def broadcast_metrics(self) -> None:
        data = self.api.status()
        frame = self.encode_type("metrics", data)
        self._last_metrics = frame
        for c in list(self.clients):
            self._push(c, "metrics", frame, conflate=True)

    def stats(self) -> dict[str, Any]:
        return {
            "clients": len(self.clients),
            "unauthenticated": self.pending.total(),
            "unauthenticated_refused": self.pending_refused,
            "auth_timeouts": self.auth_timeouts,
            "messages_sent": self.messages_sent,
            "frames_sent": self.frames_sent,
            "skipped": self.skipped,
            "dropped_clients": self.dropped_clients,
            "bus_overflow": self.bus_overflow,
            "channels": len(self._bus) + len(self._polled),
            "flush_interval_ms": round(self.interval * 1000, 1),
            "busy_ratio": round(self.busy_ratio, 4),
        }

    async def close_all(self) -> None:
        self._stopping = True
        for c in list(self.clients):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.close(1001, "server shutting down"), 1.0)
            self.remove(c)
            if c.task is not None:
                c.task.cancel()
        for bc in list(self._bus.values()):
            with contextlib.suppress(ValueError):
                self.node.bus.unsubscribe(bc.sub)
        self._bus.clear()
        self._polled.clear()
