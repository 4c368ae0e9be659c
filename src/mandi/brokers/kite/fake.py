"""``mandi fakebroker kite``: a local Kite Connect server for tests and demos.

It speaks Kite Connect v3 on loopback — REST at ``http://127.0.0.1:P`` and the ticker at
``ws://127.0.0.1:P/ws`` — well enough for the official ``kiteconnect`` client and for mandi's
adapter:

* **Login.** ``/connect/login`` logs the demo account in and redirects to ``redirect_url`` with
  a fresh ``request_token``; ``POST /session/token`` accepts any request token whose checksum
  (SHA-256 of api_key + request_token + api_secret) is right. Like Kite, every session of the
  account sees the same orders and positions.
* **Prices** come from the simulated exchange (:mod:`mandi.feeds.sim`) paced in real time;
  option tokens get Kite's segment byte. Outside market hours the fake shifts its clock into the
  latest session (``clock_offset_ns``; ``mandi fakebroker`` prints the matching
  ``MANDI_RUN__CLOCK_OFFSET_S``).
* **Orders** are matched by the kernel's fill simulator (:mod:`mandi.execution.matching`) on
  those prices; updates go to every ticker connection of the account as text postbacks.
* **Faults** (``POST /_fake/fault {"fault": ..., "count"|"seconds": ...}``): ``reject`` (the RMS
  rejects the next orders), ``timeout`` (an order is accepted but the answer comes too late),
  ``http429``, ``token`` (every session is invalidated: ``TokenException``), ``drop`` (ticker
  sockets closed), ``silent`` (ticker sends nothing, not even heartbeats), ``half_frame``.
  ``GET /_fake/state`` shows what the fake holds (order counts for tests); ``POST
  /_fake/replay {"frames": [base64...]}`` sends recorded ticker messages byte for byte.
* **History**: ``/instruments/historical`` answers deterministic minute candles (a seeded walk
  around the instrument's simulated price; OI for F&O) for the session minutes of past trading
  days.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from mandi.brokers.kite import frames
from mandi.brokers.kite.wire import INTERVAL_SECONDS, checksum, instrument_dump
from mandi.config import SimConfig
from mandi.core.calendar import calendar, ist_date, ist_ns
from mandi.core.clock import NS_PER_SECOND
from mandi.execution.config import MatchingConfig
from mandi.execution.matching import FillSimulator, MarketPrint
from mandi.model.instruments import AnyInstrument, Future, Index, Option
from mandi.model.market import Tick
from mandi.model.orders import OrderType, Side

log = logging.getLogger(__name__)

DEMO_API_KEY = "mandi_demo_key"
DEMO_API_SECRET = "mandi_demo_secret"
DEMO_USER = ("DM1234", "Demo Trader")
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
_SEG_BYTE = {"NFO": 2, "BFO": 5, "NSE": 1, "BSE": 4, "INDICES": 9}


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


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (what Kite's API takes)."""
    from urllib.parse import parse_qsl

    return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))


def _ist_text(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / NS_PER_SECOND, IST).strftime("%Y-%m-%d %H:%M:%S")


def _rupees(paise: int) -> float:
    return round(paise / 100, 2)


@dataclass
class Faults:
    reject: int = 0
    timeout: int = 0
    timeout_s: float = 10.0
    http429: int = 0
    half_frame: int = 0
    silent_until: float = 0.0  # monotonic


@dataclass
class Conn:
    ws: WebSocket
    token: str
    modes: dict[int, str] = field(default_factory=dict)
    last_sent: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue[bytes | str | None] = field(default_factory=lambda: asyncio.Queue(2000))


class FakeKite:
    """The fake's state and its ASGI app (:attr:`app`)."""

    def __init__(
        self,
        sim: SimConfig | None = None,
        api_key: str = DEMO_API_KEY,
        api_secret: str = DEMO_API_SECRET,
        redirect_url: str = "http://127.0.0.1:8765/kite/callback",
        clock_offset_ns: int | None = None,
        cash: int = 10_000_000_00,
        matching: MatchingConfig | None = None,
    ) -> None:
        from mandi.feeds.sim import SimExchange

        self.api_key, self.api_secret, self.redirect_url = api_key, api_secret, redirect_url
        now = time.time_ns()
        self.offset_ns = market_offset_ns(now) if clock_offset_ns is None else clock_offset_ns
        market_now = now + self.offset_ns
        cfg = sim or SimConfig(strikes_each_side=10, stocks=("RELIANCE", "INFY", "TCS"))
        cfg = msgspec.structs.replace(cfg, date=ist_date(market_now))
        self.exchange = SimExchange(cfg)
        self.start_ns = market_now
        # Kite tokens: indices and stocks keep theirs; F&O contracts get Kite's segment byte
        self.kite_token: dict[int, int] = {}
        taken: set[int] = set()
        insts: list[AnyInstrument] = []
        for i in self.exchange.instruments:
            seg = (i.segment or "NSE").split("-")[0]
            t = i.token
            if t & 0xFF != _SEG_BYTE.get(seg, t & 0xFF):
                t = ((i.token & 0xFFFFFF) << 8) | _SEG_BYTE[seg]
                while t in taken:
                    t += 256
            taken.add(t)
            self.kite_token[i.token] = t
            insts.append(msgspec.structs.replace(i, token=t))
        self.instruments = {i.token: i for i in insts}
        self.by_symbol = {
            (i.segment.split("-")[0] if i.segment else i.exchange, i.symbol): i for i in insts
        }
        self.dump = instrument_dump(insts)
        # accounts: one demo account; sessions are access tokens of it
        self.user_id, self.user_name = DEMO_USER
        self.sessions: set[str] = set()
        self.request_tokens_used: set[str] = set()
        self.orders: dict[str, dict[str, Any]] = {}
        self.trades: dict[str, list[dict[str, Any]]] = {}
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
        self.market_task: asyncio.Task[None] | None = None
        self.app = Starlette(routes=self._routes(), lifespan=self._lifespan)

    # --- helpers ----------------------------------------------------------------------------------
    def now_ns(self) -> int:
        return time.time_ns() + self.offset_ns

    def _ok(self, data: Any) -> JSONResponse:
        return JSONResponse({"status": "success", "data": data})

    def _err(self, status: int, kind: str, message: str) -> JSONResponse:
        return JSONResponse(
            {"status": "error", "message": message, "data": None, "error_type": kind}, status
        )

    def _auth(self, request: Request) -> JSONResponse | None:
        """Kite's checks: the version header, then the session; plus injected 429s."""
        self.counts["requests"] += 1
        if self.faults.http429 > 0:
            self.faults.http429 -= 1
            return self._err(429, "NetworkException", "Too many requests")
        if request.headers.get("x-kite-version") != "3":
            return self._err(400, "InputException", "Missing or invalid X-Kite-Version header")
        auth = request.headers.get("authorization", "")
        key, _, tok = auth.removeprefix("token ").partition(":")
        if key != self.api_key or tok not in self.sessions:
            return self._err(403, "TokenException", "Incorrect `api_key` or `access_token`.")
        return None

    def _next_id(self) -> str:
        self._seq += 1
        return f"{2600000000000000 + self._seq}"

    # --- routes -----------------------------------------------------------------------------------
    def _routes(self) -> list[Any]:
        return [
            Route("/connect/login", self.login_page),
            Route("/session/token", self.session_token, methods=["POST", "DELETE"]),
            Route("/user/profile", self.profile),
            Route("/user/margins", self.margins),
            Route("/user/margins/{segment}", self.margins),
            Route("/instruments", self.instrument_dump),
            Route("/instruments/historical/{token:int}/{interval}", self.historical),
            Route("/instruments/{exchange}", self.instrument_dump),
            Route("/quote/ltp", self.ltp),
            Route("/orders/{variety}", self.place, methods=["POST"]),
            Route("/orders/{variety}/{order_id}", self.modify_or_cancel, methods=["PUT", "DELETE"]),
            Route("/orders", self.list_orders),
            Route("/orders/{order_id}", self.order_history),
            Route("/orders/{order_id}/trades", self.order_trades),
            Route("/trades", self.all_trades),
            Route("/portfolio/positions", self.positions),
            Route("/portfolio/holdings", self.holdings),
            Route("/_fake/fault", self.inject, methods=["POST"]),
            Route("/_fake/state", self.state),
            Route("/_fake/replay", self.replay, methods=["POST"]),
            WebSocketRoute("/ws", self.ticker),
        ]

    async def login_page(self, request: Request) -> Response:
        if request.query_params.get("api_key") != self.api_key:
            return PlainTextResponse("Invalid api_key", 400)
        rt = secrets.token_hex(16)
        sep = "&" if "?" in self.redirect_url else "?"
        return RedirectResponse(
            f"{self.redirect_url}{sep}action=login&type=login&status=success&request_token={rt}",
            302,
        )

    async def session_token(self, request: Request) -> Response:
        self.counts["requests"] += 1
        if request.method == "DELETE":
            q = request.query_params
            if q.get("api_key") != self.api_key:
                return self._err(403, "TokenException", "Invalid api_key")
            self.sessions.discard(q.get("access_token", ""))
            return self._ok(True)
        form = await _form(request)
        key, rt, cs = (str(form.get(k) or "") for k in ("api_key", "request_token", "checksum"))
        if key != self.api_key:
            return self._err(403, "TokenException", "Invalid `api_key`.")
        if not rt or cs != checksum(key, rt, self.api_secret):
            return self._err(403, "TokenException", "Invalid `checksum`.")
        tok = secrets.token_hex(16)
        self.sessions.add(tok)
        return self._ok(
            {
                "user_type": "individual",
                "email": "demo@example.invalid",
                "user_name": self.user_name,
                "user_shortname": "Demo",
                "broker": "ZERODHA",
                "exchanges": ["NSE", "NFO", "BSE", "BFO"],
                "products": ["CNC", "NRML", "MIS"],
                "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
                "avatar_url": None,
                "user_id": self.user_id,
                "api_key": self.api_key,
                "access_token": tok,
                "public_token": secrets.token_hex(8),
                "refresh_token": "",
                "enctoken": "",
                "login_time": _ist_text(self.now_ns()),
                "meta": {"demat_consent": "physical"},
            }
        )

    async def profile(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        return self._ok(
            {
                "user_id": self.user_id,
                "user_name": self.user_name,
                "broker": "ZERODHA",
                "email": "demo@example.invalid",
                "user_type": "individual",
                "exchanges": ["NSE", "NFO", "BSE", "BFO"],
                "products": ["CNC", "NRML", "MIS"],
                "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
                "meta": {},
            }
        )

    def _cash_now(self) -> int:
        flow = 0
        for o in self.orders.values():
            sign = 1 if o["transaction_type"] == "BUY" else -1
            for t in self.trades.get(o["order_id"], []):
                flow -= sign * t["quantity"] * round(t["average_price"] * 100)
        return self.cash + flow

    async def margins(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        cash = _rupees(self._cash_now())
        eq = {
            "enabled": True,
            "net": cash,
            "available": {
                "adhoc_margin": 0,
                "cash": cash,
                "opening_balance": _rupees(self.cash),
                "live_balance": cash,
                "collateral": 0,
                "intraday_payin": 0,
            },
            "utilised": {
                "debits": 0,
                "exposure": 0,
                "m2m_realised": 0,
                "m2m_unrealised": 0,
                "option_premium": 0,
                "payout": 0,
                "span": 0,
                "holding_sales": 0,
                "turnover": 0,
            },
        }
        seg = request.path_params.get("segment")
        if seg == "equity":
            return self._ok(eq)
        return self._ok({"equity": eq, "commodity": {**eq, "net": 0}})

    async def instrument_dump(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        ex = request.path_params.get("exchange")
        if not ex:
            return PlainTextResponse(self.dump, media_type="text/csv")
        lines = self.dump.splitlines()
        keep = [lines[0]] + [ln for ln in lines[1:] if ln.rsplit(",", 1)[-1] == ex]
        return PlainTextResponse("\n".join(keep) + "\n", media_type="text/csv")

    async def ltp(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        out = {}
        for key in request.query_params.getlist("i"):
            ex, _, sym = key.partition(":")
            inst = self.by_symbol.get((ex, sym))
            if inst is not None and inst.token in self.last:
                out[key] = {
                    "instrument_token": inst.token,
                    "last_price": _rupees(self.last[inst.token].price),
                }
        return self._ok(out)

    # --- orders -----------------------------------------------------------------------------------
    def _order_json(self, **kw: Any) -> dict[str, Any]:
        now = _ist_text(self.now_ns())
        base: dict[str, Any] = {
            "placed_by": self.user_id,
            "order_id": "",
            "exchange_order_id": None,
            "parent_order_id": None,
            "status": "OPEN",
            "status_message": None,
            "status_message_raw": None,
            "order_timestamp": now,
            "exchange_update_timestamp": now,
            "exchange_timestamp": now,
            "variety": "regular",
            "modified": False,
            "exchange": "",
            "tradingsymbol": "",
            "instrument_token": 0,
            "order_type": "MARKET",
            "transaction_type": "BUY",
            "validity": "DAY",
            "validity_ttl": 0,
            "product": "MIS",
            "quantity": 0,
            "disclosed_quantity": 0,
            "price": 0,
            "trigger_price": 0,
            "average_price": 0,
            "filled_quantity": 0,
            "pending_quantity": 0,
            "cancelled_quantity": 0,
            "market_protection": 0,
            "meta": {},
            "tag": None,
            "tags": [],
            "guid": secrets.token_hex(6),
        }
        base.update(kw)
        return base

    async def place(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        f = await _form(request)
        self.counts["place"] += 1
        try:
            ex, sym = str(f["exchange"]), str(f["tradingsymbol"])
            side, otype = str(f["transaction_type"]), str(f["order_type"])
            qty, product = int(str(f["quantity"])), str(f.get("product") or "MIS")
            price = float(str(f.get("price") or 0))
        except (KeyError, ValueError) as exc:
            return self._err(400, "InputException", f"Invalid or missing parameter {exc}")
        inst = self.by_symbol.get((ex, sym))
        if inst is None:
            return self._err(400, "InputException", f"Invalid `tradingsymbol`: {ex}:{sym}")
        if side not in ("BUY", "SELL") or otype not in ("MARKET", "LIMIT"):
            return self._err(400, "InputException", "Invalid `transaction_type` or `order_type`.")
        tag = str(f.get("tag") or "") or None
        if tag is not None and (len(tag) > 20 or not tag.isalnum()):
            return self._err(400, "InputException", "Tag length should be at most 20 characters")
        oid = self._next_id()
        o = self._order_json(
            order_id=oid,
            exchange_order_id=f"1{oid[-15:]}",
            exchange=ex,
            tradingsymbol=sym,
            instrument_token=inst.token,
            order_type=otype,
            transaction_type=side,
            product=product,
            quantity=qty,
            price=price,
            pending_quantity=qty,
            tag=tag,
            tags=[tag] if tag else [],
            status="OPEN",
        )
        reason = ""
        if self.faults.reject > 0:
            self.faults.reject -= 1
            reason = "RMS:Margin Exceeds, Required:1000000, Available:0 (fake: injected reject)"
        elif qty <= 0 or qty % inst.lot_size:
            reason = f"Quantity should be a multiple of lot size {inst.lot_size}"
        elif otype == "LIMIT" and (price <= 0 or round(price * 100) % inst.tick_size):
            reason = f"Price {price} is not a multiple of tick size {inst.tick_size / 100:g}"
        self.orders[oid] = o
        self.trades[oid] = []
        if reason:
            o.update(status="REJECTED", status_message=reason, pending_quantity=0)
        else:
            last = self.last.get(inst.token)
            self.sim.add(
                oid,
                inst.token,
                Side(side),
                qty,
                accepted_ns=self.now_ns(),
                order_type=OrderType(otype),
                limit_price=round(price * 100),
                reference_price=last.price if last else 0,
                lot_size=inst.lot_size,
                tick_size=inst.tick_size,
            )
        self._postback(o)
        if self.faults.timeout > 0:  # accepted, but the answer comes after the client gave up
            self.faults.timeout -= 1
            await asyncio.sleep(self.faults.timeout_s)
        return self._ok({"order_id": oid})

    async def modify_or_cancel(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        oid = request.path_params["order_id"]
        o = self.orders.get(oid)
        if o is None:
            return self._err(400, "InputException", "Invalid `order_id`.")
        if o["status"] != "OPEN":
            return self._err(
                400, "OrderException", f"Order cannot be modified or cancelled: {o['status']}"
            )
        if request.method == "DELETE":
            self.counts["cancel"] += 1
            left = self.sim.cancel(oid)
            o.update(
                status="CANCELLED",
                status_message="Cancelled by the user",
                cancelled_quantity=left,
                pending_quantity=0,
            )
            self._postback(o)
            return self._ok({"order_id": oid})
        self.counts["modify"] += 1
        f = await _form(request)
        qty = int(str(f.get("quantity") or o["quantity"]))
        price = float(str(f.get("price") or o["price"]))
        inst = self.instruments[o["instrument_token"]]
        if qty < o["filled_quantity"] or qty % inst.lot_size:
            return self._err(400, "InputException", f"Invalid quantity {qty}")
        self.sim.cancel(oid)
        o.update(
            quantity=qty, price=price, pending_quantity=qty - o["filled_quantity"], modified=True
        )
        if qty > o["filled_quantity"]:
            last = self.last.get(inst.token)
            self.sim.add(
                oid,
                inst.token,
                Side(o["transaction_type"]),
                qty - o["filled_quantity"],
                accepted_ns=self.now_ns(),
                order_type=OrderType(o["order_type"]),
                limit_price=round(price * 100),
                reference_price=last.price if last else 0,
                lot_size=inst.lot_size,
                tick_size=inst.tick_size,
                fills_so_far=len(self.trades[oid]),
            )
        else:
            o.update(status="COMPLETE")
        self._postback(o)
        return self._ok({"order_id": oid})

    async def list_orders(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        return self._ok(list(self.orders.values()))

    async def order_history(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        o = self.orders.get(request.path_params["order_id"])
        if o is None:
            return self._err(400, "InputException", "Invalid `order_id`.")
        return self._ok([o])

    async def order_trades(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        return self._ok(self.trades.get(request.path_params["order_id"], []))

    async def all_trades(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        return self._ok([t for ts in self.trades.values() for t in ts])

    def _net(self) -> list[dict[str, Any]]:
        net: dict[int, dict[str, Any]] = {}
        for o in self.orders.values():
            for t in self.trades.get(o["order_id"], []):
                p = net.setdefault(
                    o["instrument_token"],
                    {
                        "tradingsymbol": o["tradingsymbol"],
                        "exchange": o["exchange"],
                        "instrument_token": o["instrument_token"],
                        "product": o["product"],
                        "quantity": 0,
                        "buy_quantity": 0,
                        "sell_quantity": 0,
                        "buy_value": 0.0,
                        "sell_value": 0.0,
                        "multiplier": 1,
                    },
                )
                q, v = t["quantity"], t["quantity"] * t["average_price"]
                if o["transaction_type"] == "BUY":
                    p["quantity"] += q
                    p["buy_quantity"] += q
                    p["buy_value"] += v
                else:
                    p["quantity"] -= q
                    p["sell_quantity"] += q
                    p["sell_value"] += v
        for tok, p in net.items():
            last = self.last.get(tok)
            lp = _rupees(last.price) if last else 0.0
            bq, sq = p["buy_quantity"], p["sell_quantity"]
            p["average_price"] = (
                p["buy_value"] / bq
                if p["quantity"] > 0 and bq
                else p["sell_value"] / sq
                if p["quantity"] < 0 and sq
                else 0.0
            )
            p["last_price"] = lp
            p["pnl"] = round(p["sell_value"] - p["buy_value"] + p["quantity"] * lp, 2)
        return list(net.values())

    async def positions(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        net = self._net()
        return self._ok({"net": net, "day": net})

    async def holdings(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        return self._ok([])

    async def historical(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        token, interval = request.path_params["token"], request.path_params["interval"]
        inst = self.instruments.get(token)
        if inst is None or interval not in INTERVAL_SECONDS:
            return self._err(400, "InputException", "invalid token or interval")
        q = request.query_params
        try:
            start = dt.datetime.fromisoformat(q["from"]).replace(tzinfo=IST)
            end = dt.datetime.fromisoformat(q["to"]).replace(tzinfo=IST)
        except (KeyError, ValueError):
            return self._err(400, "InputException", "invalid from/to")
        from mandi.brokers.kite.wire import INTERVAL_MAX_DAYS

        if (end - start).days > INTERVAL_MAX_DAYS[interval]:
            return self._err(
                400,
                "InputException",
                f"interval exceeds max limit: {INTERVAL_MAX_DAYS[interval]} days",
            )
        oi = q.get("oi") == "1" and isinstance(inst, Option | Future)
        rows = list(_history(inst, interval, start, end, oi, self._base_price(inst)))
        return self._ok({"candles": rows})

    def _base_price(self, inst: AnyInstrument) -> float:
        last = self.last.get(inst.token)
        if last is not None:
            return last.price / 100
        return 100.0 if isinstance(inst, Option) else 1000.0

    # --- faults and state -------------------------------------------------------------------------
    async def inject(self, request: Request) -> Response:
        if request.client is None or request.client.host not in ("127.0.0.1", "::1"):
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
        elif kind == "drop":
            for c in list(self.conns):
                with contextlib.suppress(asyncio.QueueFull):
                    c.queue.put_nowait(None)
        elif kind == "token":
            self.sessions.clear()
            for c in list(self.conns):
                with contextlib.suppress(asyncio.QueueFull):
                    c.queue.put_nowait(None)
        else:
            return PlainTextResponse(f"unknown fault {kind!r}", 400)
        return JSONResponse({"ok": True, "fault": kind})

    async def replay(self, request: Request) -> Response:
        """Send recorded binary messages (base64 list ``frames``) to every ticker connection,
        byte for byte: real captures through the fake's socket."""
        if request.client is None or request.client.host not in ("127.0.0.1", "::1"):
            return PlainTextResponse("loopback only", 403)
        import base64

        msgs = [base64.b64decode(f) for f in (await request.json())["frames"]]
        for c in list(self.conns):
            for m in msgs:
                with contextlib.suppress(asyncio.QueueFull):
                    c.queue.put_nowait(m)
        return JSONResponse({"ok": True, "frames": len(msgs), "connections": len(self.conns)})

    async def state(self, request: Request) -> Response:
        if request.client is None or request.client.host not in ("127.0.0.1", "::1"):
            return PlainTextResponse("loopback only", 403)
        by_tag: dict[str, int] = {}
        for o in self.orders.values():
            if o["tag"]:
                by_tag[o["tag"]] = by_tag.get(o["tag"], 0) + 1
        return JSONResponse(
            {
                "orders": len(self.orders),
                "orders_by_tag": by_tag,
                "statuses": {oid: o["status"] for oid, o in self.orders.items()},
                "filled": {oid: o["filled_quantity"] for oid, o in self.orders.items()},
                "connections": len(self.conns),
                "sessions": len(self.sessions),
                "counts": self.counts,
                "clock_offset_ns": self.offset_ns,
                "ticks_seen": len(self.last),
            }
        )

    # --- ticker -----------------------------------------------------------------------------------
    async def ticker(self, ws: WebSocket) -> None:
        q = ws.query_params
        tok = q.get("access_token", "")
        if q.get("api_key") != self.api_key or tok not in self.sessions:
            await ws.close(code=1008)  # before accept: the handshake fails with HTTP 403
            return
        if len(self.conns) >= 3:
            await ws.close(code=1008)
            return
        await ws.accept()
        c = Conn(ws, tok)
        self.conns.append(c)
        sender = asyncio.create_task(self._send_loop(c))
        try:
            while True:
                msg = await ws.receive_text()
                try:
                    d = msgspec.json.decode(msg)
                    self._ticker_command(c, d)
                except (msgspec.DecodeError, ValueError, TypeError, KeyError, IndexError) as e:
                    c.queue.put_nowait(
                        msgspec.json.encode({"type": "error", "data": f"bad message: {e}"}).decode()
                    )
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            sender.cancel()
            if c in self.conns:
                self.conns.remove(c)

    def _ticker_command(self, c: Conn, d: dict[str, Any]) -> None:
        action, v = d["a"], d["v"]
        if action == "subscribe":
            new = [int(t) for t in v if int(t) not in c.modes]
            if len(c.modes) + len(new) > 3000:
                raise ValueError("a connection may subscribe to at most 3000 instruments")
            for t in new:
                c.modes[t] = "quote"
        elif action == "unsubscribe":
            for t in v:
                c.modes.pop(int(t), None)
        elif action == "mode":
            mode, toks = v[0], v[1]
            if mode not in ("ltp", "quote", "full"):
                raise ValueError(f"unknown mode {mode}")
            for t in toks:
                if int(t) in c.modes:
                    c.modes[int(t)] = mode

    async def _send_loop(self, c: Conn) -> None:
        while True:
            item = await c.queue.get()
            if item is None:  # dropped by a fault: close without a close frame's courtesy
                with contextlib.suppress(Exception):
                    await c.ws.close(code=1011)
                if c in self.conns:
                    self.conns.remove(c)
                return
            if time.monotonic() < self.faults.silent_until:
                continue
            if isinstance(item, bytes):
                await c.ws.send_bytes(item)
            else:
                await c.ws.send_text(item)
            c.last_sent = time.monotonic()

    def _postback(self, o: dict[str, Any]) -> None:
        text = msgspec.json.encode({"type": "order", "id": "", "data": o}).decode()
        for c in list(self.conns):
            with contextlib.suppress(asyncio.QueueFull):
                c.queue.put_nowait(text)

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
                if now >= heartbeat_at:
                    heartbeat_at = now + 1.0
                    for c in self.conns:
                        if now - c.last_sent >= 1.0:
                            with contextlib.suppress(asyncio.QueueFull):
                                c.queue.put_nowait(frames.HEARTBEAT)
        except Exception:
            log.exception("fake Kite market stopped")

    def handle_batch(self, batch: list[Tick]) -> None:
        """One step of the simulated market: fills, then frames to every subscriber."""
        kt = self.kite_token
        packets: dict[tuple[int, str], bytes] = {}
        ticked: list[int] = []
        for t in batch:
            tok = kt.get(t.token, t.token)
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
        if not self.conns:
            return
        for c in self.conns:
            ps = []
            for tok in ticked:
                mode = c.modes.get(tok)
                if mode is None:
                    continue
                key = (tok, mode)
                p = packets.get(key)
                if p is None:
                    p = packets[key] = self._packet(tok, mode)
                ps.append(p)
            if ps:
                msg = frames.encode_message(ps)
                if self.faults.half_frame > 0:
                    self.faults.half_frame -= 1
                    msg = msg[: max(len(msg) // 2, 3)]
                with contextlib.suppress(asyncio.QueueFull):
                    c.queue.put_nowait(msg)

    def _packet(self, tok: int, mode: str) -> bytes:
        t = self.last[tok]
        if mode == "ltp":
            return frames.encode_ltp(tok, t.price)
        o, h, lo = self.day_open[tok], self.day_high[tok], self.day_low[tok]
        c = o  # the fake's previous close is its open
        s = t.ts_event // NS_PER_SECOND
        if isinstance(self.instruments.get(tok), Index):
            return frames.encode_index(tok, t.price, h, lo, o, c, s if mode == "full" else None)
        if mode == "quote":
            return frames.encode_quote(
                tok,
                t.price,
                t.last_qty,
                t.price,
                t.volume,
                t.bid_qty * 5,
                t.ask_qty * 5,
                o,
                h,
                lo,
                c,
            )
        inst = self.instruments[tok]
        step = inst.tick_size
        bids = [(t.bid_qty, max(t.bid - k * step, 0), 1 + k) for k in range(5)] if t.bid else []
        asks = [(t.ask_qty, t.ask + k * step, 1 + k) for k in range(5)] if t.ask else []
        return frames.encode_full(
            tok,
            t.price,
            t.last_qty,
            t.price,
            t.volume,
            t.bid_qty * 5,
            t.ask_qty * 5,
            o,
            h,
            lo,
            c,
            s,
            t.oi,
            t.oi,
            t.oi,
            s,
            bids,
            asks,
        )

    def _apply_fill(self, oid: str, qty: int, price: int, ts: int) -> None:
        o = self.orders[oid]
        trades = self.trades[oid]
        trades.append(
            {
                "trade_id": f"{90000000 + sum(len(v) for v in self.trades.values())}",
                "order_id": oid,
                "exchange": o["exchange"],
                "tradingsymbol": o["tradingsymbol"],
                "instrument_token": o["instrument_token"],
                "product": o["product"],
                "average_price": _rupees(price),
                "quantity": qty,
                "exchange_order_id": o["exchange_order_id"],
                "transaction_type": o["transaction_type"],
                "fill_timestamp": _ist_text(ts),
                "order_timestamp": o["order_timestamp"],
                "exchange_timestamp": _ist_text(ts),
            }
        )
        filled = o["filled_quantity"] + qty
        value = sum(t["quantity"] * round(t["average_price"] * 100) for t in trades)
        o.update(
            filled_quantity=filled,
            pending_quantity=o["quantity"] - filled,
            average_price=_rupees(round(value / filled)),
            status="COMPLETE" if filled >= o["quantity"] else "OPEN",
            exchange_update_timestamp=_ist_text(ts),
        )
        self._postback(o)


def _history(
    inst: AnyInstrument,
    interval: str,
    start: dt.datetime,
    end: dt.datetime,
    oi: bool,
    base: float,
) -> Iterable[list[Any]]:
    """Deterministic candles of past session minutes (see the module docstring)."""
    tf = INTERVAL_SECONDS[interval]
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
                row: list[Any] = [
                    t.strftime("%Y-%m-%dT%H:%M:%S+0530"),
                    *(round(round(x / tick) * tick, 2) for x in (op, hi, lo, cl)),
                    int(1000 + (seed % 5000)),
                ]
                if oi:
                    row.append(int(100_000 + (seed % 50_000)))
                yield row
                price = cl
        d += dt.timedelta(days=1)


# --- serving -------------------------------------------------------------------------------------
class FakeKiteServer:
    """Runs a :class:`FakeKite` under uvicorn on 127.0.0.1 (in this thread or a background one)."""

    def __init__(self, fake: FakeKite | None = None, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.fake = fake or FakeKite()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
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
        f = self.fake
        out = {
            "MANDI_BROKER__NAME": "kite",
            "MANDI_BROKER__KITE__API_KEY": f.api_key,
            "MANDI_BROKER__KITE__API_SECRET": f.api_secret,
            "MANDI_BROKER__KITE__REST_URL": self.rest_url,
            "MANDI_BROKER__KITE__WS_URL": self.ws_url,
            "MANDI_BROKER__KITE__LOGIN_URL": f"{self.rest_url}/connect/login",
        }
        if f.offset_ns:
            out["MANDI_RUN__CLOCK_OFFSET_S"] = str(f.offset_ns // NS_PER_SECOND)
        return out

    def serve(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> FakeKiteServer:
        self._thread = threading.Thread(target=self.serve, name="fake-kite", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake Kite server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()


__all__ = ["DEMO_API_KEY", "DEMO_API_SECRET", "FakeKite", "FakeKiteServer", "market_offset_ns"]
