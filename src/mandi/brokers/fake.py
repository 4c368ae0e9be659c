"""What every ``mandi fakebroker NAME`` shares: a simulated exchange, an order book matched by the
kernel's fill simulator, injectable faults, ticker connections, and the uvicorn runner.

A broker's fake (:mod:`mandi.brokers.kite.fake`, :mod:`mandi.brokers.angel.fake`) subclasses
:class:`FakeBroker` and adds only its wire protocol: its REST routes (rendering
:class:`FakeOrder`\\ s in the broker's JSON), its login, its instrument master and the frames
of its ticker (:meth:`FakeBroker.encode`).

* **Prices** come from the simulated exchange (:mod:`mandi.feeds.sim`) paced in real time. Outside
  market hours the fake shifts its clock into the latest session (``clock_offset_ns``; the
  printed ``MANDI_RUN__CLOCK_OFFSET_S`` makes mandi follow).
* **Orders** are matched by :class:`~mandi.execution.matching.FillSimulator` on those prices;
  every change goes to :meth:`FakeBroker.order_changed` (the broker's postback, if it has one).
* **Faults** (``POST /_fake/fault {"fault": ..., "count"|"seconds": ...}``, loopback only):
  ``reject`` (the RMS rejects the next orders), ``timeout`` (an order is accepted but the answer
  comes after the client gave up, and the order's postbacks are lost too: the client learns of
  it only by reading the order book), ``http429``, ``token`` (every session is invalidated),
  ``drop`` (ticker sockets closed), ``silent`` (the ticker sends nothing), ``half_frame`` (the next
  message is cut in half). ``GET /_fake/state`` shows what the fake holds (order counts for tests);
  ``POST /_fake/replay {"frames": [base64...]}`` sends recorded ticker messages byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.websockets import WebSocket

from mandi.config import SimConfig
from mandi.core.calendar import calendar, ist_date, ist_ns
from mandi.core.clock import NS_PER_SECOND
from mandi.execution.config import MatchingConfig
from mandi.execution.matching import FillSimulator, MarketPrint
from mandi.model.instruments import AnyInstrument, Option
from mandi.model.market import Tick
from mandi.model.orders import OrderType, Side

log = logging.getLogger(__name__)

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
DEMO_USER = ("DM1234", "Demo Trader")


def market_offset_ns(now_ns: int) -> int:
    """0 when NSE is open now; else the shift that puts "now" at 10:00 IST of the latest
    trading day (whole seconds)."""
    cal = calendar("NSE")
    day = ist_date(now_ns)
    s = cal.session(day) if cal.is_trading_day(day) else None
    if s is not None and s.open_ns <= now_ns < s.close_ns - 60 * NS_PER_SECOND:
        return 0
    d = day
    while not cal.is_trading_day(d) or (d == day and now_ns < ist_ns(d, dt.time(10, 0))):
        d -= dt.timedelta(days=1)
    target = ist_ns(d, dt.time(10, 0))
    return (target - now_ns) // NS_PER_SECOND * NS_PER_SECOND


def ist_text(ts_ns: int, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return dt.datetime.fromtimestamp(ts_ns / NS_PER_SECOND, IST).strftime(fmt)


def loopback(request: Request | WebSocket) -> bool:
    return request.client is not None and request.client.host in ("127.0.0.1", "::1")


@dataclass
class Faults:
    reject: int = 0
    timeout: int = 0
    timeout_s: float = 10.0
    http429: int = 0
    half_frame: int = 0
    silent_until: float = 0.0  # monotonic


@dataclass
class FakeTrade:
    trade_id: str
    quantity: int
    price: int  # paise
    ts_ns: int


@dataclass
class FakeOrder:
    """A broker-neutral order of the fake; each fake renders it in its broker's JSON."""

    order_id: str
    token: int
    exchange: str  # as the broker names it (NFO, NSE ...)
    symbol: str
    side: str  # BUY | SELL
    order_type: str  # MARKET | LIMIT
    product: str
    quantity: int
    price: int  # paise (0 for market orders)
    tag: str
    placed_ns: int
    status: str = "OPEN"  # OPEN | COMPLETE | REJECTED | CANCELLED
    reason: str = ""
    filled: int = 0
    cancelled: int = 0
    updated_ns: int = 0
    modified: bool = False
    trades: list[FakeTrade] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return self.quantity - self.filled if self.status == "OPEN" else 0

    @property
    def average_price(self) -> int:
        q = sum(t.quantity for t in self.trades)
        return round(sum(t.quantity * t.price for t in self.trades) / q) if q else 0


@dataclass
class FakePosition:
    token: int
    symbol: str
    exchange: str
    product: str
    quantity: int = 0
    buy_quantity: int = 0
    sell_quantity: int = 0
    buy_value: int = 0  # paise
    sell_value: int = 0
    last_price: int = 0

    @property
    def average_price(self) -> int:
        if self.quantity > 0 and self.buy_quantity:
            return round(self.buy_value / self.buy_quantity)
        if self.quantity < 0 and self.sell_quantity:
            return round(self.sell_value / self.sell_quantity)
        return 0

    @property
    def pnl(self) -> int:
        return self.sell_value - self.buy_value + self.quantity * self.last_price


@dataclass
class Conn:
    """One ticker connection: what it follows (token → mode) and its outgoing queue."""

    ws: WebSocket
    token: str
    modes: dict[int, str] = field(default_factory=dict)
    last_sent: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue[bytes | str | None] = field(default_factory=lambda: asyncio.Queue(2000))


class FakeBroker:
    """The shared state and machinery of a fake broker (see the module docstring)."""

    name = "fake"
    max_connections = 3
    heartbeat: bytes | str | None = None  # sent to a quiet connection every second

    def __init__(
        self,
        sim: SimConfig | None = None,
        clock_offset_ns: int | None = None,
        cash: int = 10_000_000_00,
        matching: MatchingConfig | None = None,
    ) -> None:
        from mandi.feeds.sim import SimExchange

        now = time.time_ns()
        self.offset_ns = market_offset_ns(now) if clock_offset_ns is None else clock_offset_ns
        market_now = now + self.offset_ns
        cfg = sim or SimConfig(strikes_each_side=10, stocks=("RELIANCE", "INFY", "TCS"))
        cfg = msgspec.structs.replace(cfg, date=ist_date(market_now))
        self.exchange = SimExchange(cfg)
        self.start_ns = market_now
        self.token_of: dict[int, int] = {}  # simulator token → the broker's token
        insts = [self.broker_instrument(i) for i in self.exchange.instruments]
        for sim_inst, inst in zip(self.exchange.instruments, insts, strict=True):
            self.token_of[sim_inst.token] = inst.token
        self.instruments: dict[int, AnyInstrument] = {i.token: i for i in insts}
        self.user_id, self.user_name = DEMO_USER
        self.sessions: set[str] = set()
        # orders whose postbacks are lost (a ``timeout`` fault)
        self.lost_postbacks: set[str] = set()
        self.orders: dict[str, FakeOrder] = {}
        self.cash = cash
        self.sim = FillSimulator(matching or MatchingConfig(participation=1.0))
        self.last: dict[int, Tick] = {}
        self.day_open: dict[int, int] = {}
        self.day_high: dict[int, int] = {}
        self.day_low: dict[int, int] = {}
        self.conns: list[Conn] = []
        self.faults = Faults()
        self.counts: dict[str, int] = {"place": 0, "modify": 0, "cancel": 0, "requests": 0}
        self._seq = 0
        self._trade_seq = 0
        self.market_task: asyncio.Task[None] | None = None
        self.app = Starlette(routes=[*self.routes(), *self._fake_routes()], lifespan=self._lifespan)

    # --- what a broker's fake provides ------------------------------------------------------------
    def broker_instrument(self, inst: AnyInstrument) -> AnyInstrument:
        """The simulator's instrument as the broker lists it (its token); identity by default."""
        return inst

    def routes(self) -> list[BaseRoute]:
        """The broker's REST routes and its ticker (``/ws``)."""
        return []

    def encode(self, conn: Conn, tokens: list[int]) -> list[bytes | str]:
        """Ticker messages for ``conn`` about the ``tokens`` that just ticked (its modes)."""
        return []

    def order_changed(self, order: FakeOrder) -> None:
        """A postback hook: every change of an order (placed, filled, cancelled...)."""
        return None

    def _changed(self, order: FakeOrder) -> None:
        if order.order_id not in self.lost_postbacks:
            self.order_changed(order)

    def env(self, rest_url: str, ws_url: str) -> dict[str, str]:
        """The ``MANDI_*`` variables that point mandi at this fake."""
        out = {"MANDI_BROKER__NAME": self.name}
        if self.offset_ns:
            out["MANDI_RUN__CLOCK_OFFSET_S"] = str(self.offset_ns // NS_PER_SECOND)
        return out

    # --- helpers ----------------------------------------------------------------------------------
    def now_ns(self) -> int:
        return time.time_ns() + self.offset_ns

    def next_id(self) -> str:
        self._seq += 1
        return f"{2600000000000000 + self._seq}"

    def take_429(self) -> bool:
        """Count a request; True when an injected HTTP 429 is due."""
        self.counts["requests"] += 1
        if self.faults.http429 > 0:
            self.faults.http429 -= 1
            return True
        return False

    async def maybe_late(self) -> None:
        """An injected timeout: the answer comes after the client gave up."""
        if self.faults.timeout > 0:
            self.faults.timeout -= 1
            await asyncio.sleep(self.faults.timeout_s)

    def by_symbol(self, exchange: str, symbol: str) -> AnyInstrument | None:
        for i in self.instruments.values():
            seg = i.segment.split("-")[0] if i.segment else i.exchange
            if i.symbol == symbol and exchange in (seg, i.exchange):
                return i
        return None

    # --- the order book ---------------------------------------------------------------------------
    def place(
        self,
        inst: AnyInstrument,
        exchange: str,
        side: str,
        order_type: str,
        product: str,
        quantity: int,
        price: int,
        tag: str = "",
        **extra: Any,
    ) -> FakeOrder:
        """Accept (or reject, with the broker's reason) an order and start matching it."""
        self.counts["place"] += 1
        oid = self.next_id()
        now = self.now_ns()
        o = FakeOrder(
            oid, inst.token, exchange, inst.symbol, side, order_type, product, quantity, price,
            tag, now, updated_ns=now, extra=dict(extra),
        )  # fmt: skip
        reason = ""
        if self.faults.reject > 0:
            self.faults.reject -= 1
            reason = "RMS:Margin Exceeds, Required:1000000, Available:0 (fake: injected reject)"
        elif quantity <= 0 or quantity % inst.lot_size:
            reason = f"Quantity should be a multiple of lot size {inst.lot_size}"
        elif order_type == "LIMIT" and (price <= 0 or price % inst.tick_size):
            reason = (
                f"Price {price / 100:g} is not a multiple of tick size {inst.tick_size / 100:g}"
            )
        self.orders[oid] = o
        if self.faults.timeout > 0:  # its answer will be late: its postbacks are lost too
            self.lost_postbacks.add(oid)
        if reason:
            o.status, o.reason = "REJECTED", reason
        else:
            self._match(o, quantity)
        self._changed(o)
        return o

    def _match(self, o: FakeOrder, quantity: int) -> None:
        inst = self.instruments[o.token]
        last = self.last.get(o.token)
        self.sim.add(
            o.order_id,
            o.token,
            Side(o.side),
            quantity,
            accepted_ns=self.now_ns(),
            order_type=OrderType(o.order_type),
            limit_price=o.price,
            reference_price=last.price if last else 0,
            lot_size=inst.lot_size,
            tick_size=inst.tick_size,
            fills_so_far=len(o.trades),
        )

    def modify(self, o: FakeOrder, quantity: int, price: int) -> str:
        """Change an open order; returns the broker's refusal ("" when done)."""
        if o.status != "OPEN":
            return f"Order cannot be modified: {o.status}"
        inst = self.instruments[o.token]
        if quantity < o.filled or quantity % inst.lot_size:
            return f"Invalid quantity {quantity}"
        self.counts["modify"] += 1
        self.sim.cancel(o.order_id)
        o.quantity, o.price, o.modified, o.updated_ns = quantity, price, True, self.now_ns()
        if quantity > o.filled:
            self._match(o, quantity - o.filled)
        else:
            o.status = "COMPLETE"
        self._changed(o)
        return ""

    def cancel(self, o: FakeOrder) -> str:
        if o.status != "OPEN":
            return f"Order cannot be cancelled: {o.status}"
        self.counts["cancel"] += 1
        o.cancelled = self.sim.cancel(o.order_id)
        o.status, o.reason, o.updated_ns = "CANCELLED", "Cancelled by the user", self.now_ns()
        self._changed(o)
        return ""

    def _apply_fill(self, oid: str, qty: int, price: int, ts: int) -> None:
        o = self.orders[oid]
        self._trade_seq += 1
        o.trades.append(FakeTrade(f"{90000000 + self._trade_seq}", qty, price, ts))
        o.filled += qty
        o.updated_ns = ts
        if o.filled >= o.quantity:
            o.status = "COMPLETE"
        self._changed(o)

    def positions(self) -> list[FakePosition]:
        net: dict[int, FakePosition] = {}
        for o in self.orders.values():
            for t in o.trades:
                p = net.setdefault(o.token, FakePosition(o.token, o.symbol, o.exchange, o.product))
                v = t.quantity * t.price
                if o.side == "BUY":
                    p.quantity += t.quantity
                    p.buy_quantity += t.quantity
                    p.buy_value += v
                else:
                    p.quantity -= t.quantity
                    p.sell_quantity += t.quantity
                    p.sell_value += v
        for tok, p in net.items():
            last = self.last.get(tok)
            p.last_price = last.price if last else 0
        return list(net.values())

    def cash_now(self) -> int:
        flow = 0
        for o in self.orders.values():
            sign = 1 if o.side == "BUY" else -1
            flow -= sign * sum(t.quantity * t.price for t in o.trades)
        return self.cash + flow

    def history(
        self, inst: AnyInstrument, tf: int, start: dt.datetime, end: dt.datetime, oi: bool
    ) -> Iterator[tuple[dt.datetime, float, float, float, float, int, int]]:
        """Deterministic candles (rupees) of past session minutes: a seeded walk around the
        instrument's price; (time, open, high, low, close, volume, oi)."""
        last = self.last.get(inst.token)
        base = (
            last.price / 100 if last is not None else 100.0 if isinstance(inst, Option) else 1000.0
        )
        yield from history_rows(inst, tf, start, end, oi, base)

    # --- the ticker -------------------------------------------------------------------------------
    def accept_conn(self, ws: WebSocket, token: str) -> Conn | None:
        """A new ticker connection of a valid session (None when over the limit)."""
        if len(self.conns) >= self.max_connections:
            return None
        c = Conn(ws, token)
        self.conns.append(c)
        return c

    def drop_conn(self, c: Conn) -> None:
        if c in self.conns:
            self.conns.remove(c)

    def broadcast(self, msg: bytes | str) -> None:
        for c in list(self.conns):
            with contextlib.suppress(asyncio.QueueFull):
                c.queue.put_nowait(msg)

    async def send_loop(self, c: Conn) -> None:
        while True:
            item = await c.queue.get()
            if item is None:  # dropped by a fault: close without a close frame's courtesy
                with contextlib.suppress(Exception):
                    await c.ws.close(code=1011)
                self.drop_conn(c)
                return
            if time.monotonic() < self.faults.silent_until:
                continue
            if isinstance(item, bytes):
                await c.ws.send_bytes(item)
            else:
                await c.ws.send_text(item)
            c.last_sent = time.monotonic()

    def quiet(self) -> bool:
        """True while the ``silent`` fault holds the ticker's tongue."""
        return time.monotonic() < self.faults.silent_until

    # --- the market -------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        self.market_task = asyncio.create_task(self._market())
        try:
            yield
        finally:
            self.market_task.cancel()

    async def _market(self) -> None:
        from mandi.feeds.sim import SimFeed

        # paced from now: a tick's exchange time is the fake's market clock when it is sent
        feed = SimFeed(self.exchange, 1.0, resume_from_ns=max(self.now_ns(), self.start_ns))
        heartbeat_at = time.monotonic() + 1.0
        try:
            async for batch in feed.batches():
                self.handle_batch(batch)
                now = time.monotonic()
                if now >= heartbeat_at and self.heartbeat is not None:
                    heartbeat_at = now + 1.0
                    for c in self.conns:
                        if now - c.last_sent >= 1.0:
                            with contextlib.suppress(asyncio.QueueFull):
                                c.queue.put_nowait(self.heartbeat)
        except Exception:
            log.exception("fake %s market stopped", self.name)

    def handle_batch(self, batch: list[Tick]) -> None:
        """One step of the simulated market: fills, then frames to every subscriber."""
        ticked: list[int] = []
        for t in batch:
            tok = self.token_of.get(t.token, t.token)
            prev = self.last.get(tok)
            t = msgspec.structs.replace(t, token=tok)
            self.last[tok] = t
            ticked.append(tok)
            if tok not in self.day_open:
                self.day_open[tok] = self.day_high[tok] = self.day_low[tok] = t.price
            self.day_high[tok] = max(self.day_high[tok], t.price)
            self.day_low[tok] = min(self.day_low[tok], t.price)
            if self.sim.has_orders(tok):
                traded = t.volume - prev.volume if prev and t.volume >= prev.volume else t.last_qty
                mp = MarketPrint(
                    t.ts_event, t.price, t.bid, t.ask, t.bid_qty, t.ask_qty, max(traded, 0)
                )
                for f in self.sim.on_print(tok, mp):
                    self._apply_fill(f.order_id, f.quantity, f.price, f.ts)
        for c in list(self.conns):
            for msg in self.encode(c, [t for t in ticked if t in c.modes]):
                if self.faults.half_frame > 0:
                    self.faults.half_frame -= 1
                    msg = msg[: max(len(msg) // 2, 3)]
                with contextlib.suppress(asyncio.QueueFull):
                    c.queue.put_nowait(msg)

    # --- faults and state -------------------------------------------------------------------------
    def _fake_routes(self) -> list[BaseRoute]:
        return [
            Route("/_fake/fault", self._inject, methods=["POST"]),
            Route("/_fake/state", self._state),
            Route("/_fake/replay", self._replay, methods=["POST"]),
        ]

    async def _inject(self, request: Request) -> Response:
        if not loopback(request):
            return PlainTextResponse("loopback only", 403)
        d = await request.json()
        kind, n, secs = d.get("fault"), int(d.get("count", 1)), float(d.get("seconds", 10))
        if kind == "reject":
            self.faults.reject += n
        elif kind == "timeout":
            self.faults.timeout += n
            self.faults.timeout_s = secs
        elif kind == "http429":
            self.faults.http429 += n
        elif kind == "half_frame":
            self.faults.half_frame += n
        elif kind == "silent":
            self.faults.silent_until = time.monotonic() + secs
        elif kind in ("drop", "token"):
            if kind == "token":
                self.sessions.clear()
            for c in list(self.conns):
                with contextlib.suppress(asyncio.QueueFull):
                    c.queue.put_nowait(None)
        else:
            return PlainTextResponse(f"unknown fault {kind!r}", 400)
        return JSONResponse({"ok": True, "fault": kind})

    async def _replay(self, request: Request) -> Response:
        """Send recorded binary messages (base64 list ``frames``) to every ticker connection,
        byte for byte: real captures through the fake's socket."""
        if not loopback(request):
            return PlainTextResponse("loopback only", 403)
        msgs = [base64.b64decode(f) for f in (await request.json())["frames"]]
        for m in msgs:
            self.broadcast(m)
        return JSONResponse({"ok": True, "frames": len(msgs), "connections": len(self.conns)})

    async def _state(self, request: Request) -> Response:
        if not loopback(request):
            return PlainTextResponse("loopback only", 403)
        by_tag: dict[str, int] = {}
        for o in self.orders.values():
            if o.tag:
                by_tag[o.tag] = by_tag.get(o.tag, 0) + 1
        return JSONResponse(
            {
                "orders": len(self.orders),
                "orders_by_tag": by_tag,
                "statuses": {oid: o.status for oid, o in self.orders.items()},
                "filled": {oid: o.filled for oid, o in self.orders.items()},
                "connections": len(self.conns),
                "sessions": len(self.sessions),
                "counts": self.counts,
                "clock_offset_ns": self.offset_ns,
                "ticks_seen": len(self.last),
            }
        )


def history_rows(
    inst: AnyInstrument, tf: int, start: dt.datetime, end: dt.datetime, oi: bool, base: float
) -> Iterable[tuple[dt.datetime, float, float, float, float, int, int]]:
    """Deterministic candles of past session minutes (see :meth:`FakeBroker.history`)."""
    cal = calendar("NSE")
    d = start.date()
    tick = inst.tick_size / 100 or 0.05
    while d <= end.date():
        if cal.is_trading_day(d):
            seed = int.from_bytes(hashlib.sha256(f"{inst.token}|{d}".encode()).digest()[:8], "big")
            price = base * (1 + ((seed % 2001) - 1000) / 50_000)
            o = dt.datetime.combine(d, dt.time(9, 15), IST)
            steps = 375 * 60 // tf if tf < 86400 else 1
            for k in range(steps):
                t = o + dt.timedelta(seconds=k * tf)
                if t < start or t > end:
                    continue
                r = ((seed >> (k % 48)) & 0xFFFF) / 0xFFFF - 0.5
                seed = (seed * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
                op = price
                cl = max(tick, price * (1 + r * 0.002))
                hi, lo = max(op, cl) * 1.0005, min(op, cl) * 0.9995
                op, hi, lo, cl = (round(round(x / tick) * tick, 2) for x in (op, hi, lo, cl))
                yield (
                    t, op, hi, lo, cl, int(1000 + (seed % 5000)),
                    int(100_000 + (seed % 50_000)) if oi else 0,
                )  # fmt: skip
                price = cl
        d += dt.timedelta(days=1)


class FakeServer:
    """Runs a :class:`FakeBroker` under uvicorn on 127.0.0.1 (in this thread or a background
    one)."""

    def __init__(self, fake: FakeBroker, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.fake = fake
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        # listening from here on: a client told the URL before uvicorn runs waits in the
        # backlog instead of being refused (the CLI prints the URLs first, then serves)
        self.sock.listen(128)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.fake.app,
                log_level="warning",
                ws_ping_interval=None,
                lifespan="on",
                timeout_graceful_shutdown=1,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    def env(self) -> dict[str, str]:
        """The ``MANDI_*`` variables that point mandi at this fake."""
        return self.fake.env(self.rest_url, self.ws_url)

    def serve(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> FakeServer:
        self._thread = threading.Thread(target=self.serve, name=f"fake-{self.fake.name}")
        self._thread.daemon = True
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the fake {self.fake.name} server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()
