"""``mandi tickserver``: the simulated exchange as a WebSocket server (JSON messages).

Protocol (version 1; also in docs/tickserver.md). Every message is one JSON object.

* server → client on connect: ``{"type": "hello", "version": 1, "date": "2026-04-13", "seed": 42}``
* client → server:
  ``{"action": "instruments"}`` → ``{"type": "instruments", "date": ..., "csv": "<master CSV>"}``;
  ``{"action": "subscribe", "tokens": [256265, ...]}`` or ``{"action": "subscribe", "tokens":
  "all"}`` → ``{"type": "subscribed", "count": N}``; ``{"action": "unsubscribe", "tokens": [...]}``.
* server → client, one message per exchange step with the subscribed tokens' ticks:
  ``{"type": "ticks", "ts": ns, "data": [[token, exchange, ts_event, price, volume, last_qty, oi,
  bid, ask, bid_qty, ask_qty], ...]}`` (prices in paise, ``ts_event`` ns UTC, ``volume``
  cumulative; ``ts`` the step's exchange time, the client's clock for the tick policy);
  ``{"type": "session_end", "ts": ns}`` at the close; ``{"type": "day", "date": ...}`` when the
  next simulated day starts (fetch the instruments again).
* a malformed client message gets ``{"type": "error", "error": "..."}``; the connection stays.

The simulated market opens when the first client subscribes (so a client sees the day from
09:15), unless started with ``--no-wait``. Each client has a bounded queue; a client that falls
behind by more than ``client_queue`` messages is disconnected (counted) rather than slowing the
exchange or the other clients.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from typing import Any

import msgspec
import websockets
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from mandi.config import AppConfig
from mandi.core.calendar import calendar, ist_date
from mandi.core.clock import LiveClock
from mandi.feeds.sim import SimExchange, SimFeed, latest_trading_day
from mandi.model.instruments import instrument_csv_rows

log = logging.getLogger(__name__)
PROTOCOL_VERSION = 1


class Command(msgspec.Struct, forbid_unknown_fields=True):
    action: str
    tokens: list[int] | str | None = None


_decode_command = msgspec.json.Decoder(Command).decode
_encode = msgspec.json.Encoder().encode


def master_csv(instruments: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(instrument_csv_rows(instruments))
    return buf.getvalue()


class _Client:
    def __init__(self, ws: ServerConnection, queue_size: int) -> None:
        self.ws = ws
        self.tokens: set[int] | None = set()  # None = all
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)


class TickServer:
    """Broadcasts one simulated market to every connected client."""

    def __init__(
        self, cfg: AppConfig, client_queue: int = 1000, wait_for_client: bool = True
    ) -> None:
        self.cfg = cfg
        start = cfg.sim.date or latest_trading_day(calendar("NSE"), ist_date(LiveClock().now_ns()))
        self.exchange = SimExchange(cfg.sim, start)
        self.feed = SimFeed(self.exchange, cfg.run.speed, days=cfg.run.days or None)
        self.clients: set[_Client] = set()
        self.client_queue = client_queue
        self.dropped_clients = 0
        self.bad_commands = 0
        self._instruments_csv = master_csv(self.exchange.instruments)
        self.first_subscriber = asyncio.Event()
        self._closing: set[asyncio.Future[None]] = set()
        if not wait_for_client:
            self.first_subscriber.set()

    async def handle(self, ws: ServerConnection) -> None:
        client = _Client(ws, self.client_queue)
        self.clients.add(client)
        sender = asyncio.create_task(self._send_loop(client))
        try:
            await ws.send(
                _encode(
                    {
                        "type": "hello",
                        "version": PROTOCOL_VERSION,
                        "date": self.exchange.date.isoformat(),
                        "seed": self.cfg.sim.seed,
                    }
                ).decode()
            )
            async for raw in ws:
                reply = self._command(client, raw)
                if reply is not None:
                    await ws.send(_encode(reply).decode())
        except websockets.ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            sender.cancel()

    def _command(self, client: _Client, raw: str | bytes) -> dict[str, Any] | None:
        try:
            cmd = _decode_command(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self.bad_commands += 1
            return {"type": "error", "error": f"bad message: {e}"}
        if cmd.action == "instruments":
            return {
                "type": "instruments",
                "date": self.exchange.date.isoformat(),
                "csv": self._instruments_csv,
            }
        if cmd.action in ("subscribe", "unsubscribe"):
            if cmd.tokens == "all":
                client.tokens = None if cmd.action == "subscribe" else set()
            elif isinstance(cmd.tokens, list):
                if client.tokens is None:
                    client.tokens = {i.token for i in self.exchange.instruments}
                if cmd.action == "subscribe":
                    client.tokens |= set(cmd.tokens)
                else:
                    client.tokens -= set(cmd.tokens)
            else:
                self.bad_commands += 1
                return {"type": "error", "error": 'tokens must be a list of ints or "all"'}
            count = len(self.exchange.instruments) if client.tokens is None else len(client.tokens)
            if count:
                self.first_subscriber.set()
            return {"type": "subscribed", "count": count}
        self.bad_commands += 1
        return {
            "type": "error",
            "error": f"unknown action {cmd.action!r}; use instruments, subscribe or unsubscribe",
        }

    async def _send_loop(self, client: _Client) -> None:
        try:
            while True:
                await client.ws.send((await client.queue.get()).decode())
        except (websockets.ConnectionClosed, asyncio.CancelledError):
            pass

    def _broadcast(self, make: Any) -> None:
        for c in list(self.clients):
            payload = make(c)
            if payload is None:
                continue
            try:
                c.queue.put_nowait(payload)
            except asyncio.QueueFull:  # a slow client never slows the exchange
                self.dropped_clients += 1
                self.clients.discard(c)
                log.warning("disconnecting a slow tickserver client (%s)", c.ws.remote_address)
                self._closing.add(task := asyncio.ensure_future(c.ws.close(1013, "too slow")))
                task.add_done_callback(self._closing.discard)

    async def run(self) -> None:
        await self.first_subscriber.wait()  # the market opens when somebody watches it
        day = self.exchange.date
        async for batch in self.feed.batches():
            if self.exchange.date != day:
                day = self.exchange.date
                self._instruments_csv = master_csv(self.exchange.instruments)
                day_msg = _encode({"type": "day", "date": day.isoformat()})
                self._broadcast(lambda c, m=day_msg: m)
            if not batch:
                end_msg = _encode({"type": "session_end", "ts": self.feed.exchange_time_ns})
                self._broadcast(lambda c, m=end_msg: m)
                continue
            rows = [
                [
                    t.token,
                    t.exchange,
                    t.ts_event,
                    t.price,
                    t.volume,
                    t.last_qty,
                    t.oi,
                    t.bid,
                    t.ask,
                    t.bid_qty,
                    t.ask_qty,
                ]
                for t in batch
            ]
            now = self.feed.exchange_time_ns  # the step's time: the clients' clock
            everything = _encode({"type": "ticks", "ts": now, "data": rows})

            def make(
                c: _Client, rows: list[list[Any]] = rows, full: bytes = everything, now: int = now
            ) -> Any:
                if c.tokens is None:
                    return full
                mine = [r for r in rows if r[0] in c.tokens]
                return _encode({"type": "ticks", "ts": now, "data": mine}) if mine else None

            self._broadcast(make)


async def serve(
    cfg: AppConfig, host: str = "127.0.0.1", port: int = 9001, wait_for_client: bool = True
) -> None:
    """Run the tick server until cancelled; the market starts at the first subscription
    unless ``wait_for_client`` is False."""
    server = TickServer(cfg, wait_for_client=wait_for_client)
    async with ws_serve(server.handle, host, port, max_size=2**20):
        log.info(
            "tickserver on ws://%s:%d (simulated %s, seed %d, speed %g)",
            host,
            port,
            server.exchange.date,
            cfg.sim.seed,
            cfg.run.speed,
        )
        await server.run()
        log.info("tickserver: the simulated market ended")
