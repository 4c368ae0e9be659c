"""``mandi fakebroker kite``: a local Kite Connect server for tests and demos.

It speaks Kite Connect v3 on loopback — REST at ``http://127.0.0.1:P`` and the ticker at
``ws://127.0.0.1:P/ws`` — well enough for the official ``kiteconnect`` client and for mandi's
adapter. What every fake shares (the simulated market, matching, faults, ``/_fake/...``) is
:mod:`mandi.brokers.fake`; this module adds Kite's wire protocol:

* **Login.** ``/connect/login`` logs the demo account in and redirects to ``redirect_url`` with
  a fresh ``request_token``; ``POST /session/token`` accepts any request token whose checksum
  (SHA-256 of api_key + request_token + api_secret) is right. Like Kite, every session of the
  account sees the same orders and positions.
* **Tokens**: option tokens get Kite's segment byte; the instrument dump is Kite's CSV.
* **Orders** in Kite's JSON; updates go to every ticker connection of the account as text
  postbacks. Kite's checks: the ``X-Kite-Version`` header, the session, 20-character tags.
* **History**: ``/instruments/historical`` answers deterministic minute candles (OI for F&O)
  for the session minutes of past trading days, within Kite's span limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from mandi.brokers.fake import (
    IST,
    Conn,
    FakeBroker,
    FakeOrder,
    FakeServer,
    ist_text,
    market_offset_ns,
)
from mandi.brokers.kite import frames
from mandi.brokers.kite.wire import (
    INTERVAL_MAX_DAYS,
    INTERVAL_SECONDS,
    checksum,
    instrument_dump,
    rupees,
)
from mandi.config import SimConfig
from mandi.core.clock import NS_PER_SECOND
from mandi.execution.config import MatchingConfig
from mandi.model.instruments import AnyInstrument, Future, Index, Option

DEMO_API_KEY = "mandi_demo_key"
DEMO_API_SECRET = "mandi_demo_secret"
_SEG_BYTE = {"NFO": 2, "BFO": 5, "NSE": 1, "BSE": 4, "INDICES": 9}
_STATUS = {"OPEN": "OPEN", "COMPLETE": "COMPLETE", "REJECTED": "REJECTED"}


_UTILISED = (
    "debits", "exposure", "m2m_realised", "m2m_unrealised", "option_premium", "payout", "span",
    "holding_sales", "turnover",
)  # fmt: skip


_UTILISED = ("debits", "exposure", "m2m_realised", "m2m_unrealised", "option_premium", "payout",
             "span", "holding_sales", "turnover")  # fmt: skip


def _r(paise: int) -> float:
    return round(paise / 100, 2)


class FakeKite(FakeBroker):
    """Kite Connect on loopback (see the module docstring)."""

    name = "kite"
    heartbeat = frames.HEARTBEAT

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
        self.api_key, self.api_secret, self.redirect_url = api_key, api_secret, redirect_url
        self._taken: set[int] = set()
        super().__init__(sim, clock_offset_ns, cash, matching)
        self.dump = instrument_dump(self.instruments.values())

    def broker_instrument(self, inst: AnyInstrument) -> AnyInstrument:
        """Indices and stocks keep their tokens; F&O contracts get Kite's segment byte."""
        seg = (inst.segment or "NSE").split("-")[0]
        t = inst.token
        if t & 0xFF != _SEG_BYTE.get(seg, t & 0xFF):
            t = ((inst.token & 0xFFFFFF) << 8) | _SEG_BYTE[seg]
            while t in self._taken:
                t += 256
        self._taken.add(t)
        return msgspec.structs.replace(inst, token=t)

    def env(self, rest_url: str, ws_url: str) -> dict[str, str]:
        return {
            "MANDI_BROKER__NAME": "kite",
            "MANDI_BROKER__KITE__API_KEY": self.api_key,
            "MANDI_BROKER__KITE__API_SECRET": self.api_secret,
            "MANDI_BROKER__KITE__REST_URL": rest_url,
            "MANDI_BROKER__KITE__WS_URL": ws_url,
            "MANDI_BROKER__KITE__LOGIN_URL": f"{rest_url}/connect/login",
            **{k: v for k, v in super().env(rest_url, ws_url).items() if k != "MANDI_BROKER__NAME"},
        }

    # --- helpers ----------------------------------------------------------------------------------
    def _ok(self, data: Any) -> JSONResponse:
        return JSONResponse({"status": "success", "data": data})

    def _err(self, status: int, kind: str, message: str) -> JSONResponse:
        return JSONResponse(
            {"status": "error", "message": message, "data": None, "error_type": kind}, status
        )

    def _auth(self, request: Request) -> JSONResponse | None:
        """Kite's checks: the version header, then the session; plus injected 429s."""
        if self.take_429():
            return self._err(429, "NetworkException", "Too many requests")
        if request.headers.get("x-kite-version") != "3":
            return self._err(400, "InputException", "Missing or invalid X-Kite-Version header")
        auth = request.headers.get("authorization", "")
        key, _, tok = auth.removeprefix("token ").partition(":")
        if key != self.api_key or tok not in self.sessions:
            return self._err(403, "TokenException", "Incorrect `api_key` or `access_token`.")
        return None

    def order_json(self, o: FakeOrder) -> dict[str, Any]:
        return {
            "placed_by": self.user_id,
            "order_id": o.order_id,
            "exchange_order_id": o.extra.get("exchange_order_id"),
            "parent_order_id": None,
            "status": o.status,
            "status_message": o.reason or None,
            "status_message_raw": o.reason or None,
            "order_timestamp": ist_text(o.placed_ns),
            "exchange_update_timestamp": ist_text(o.updated_ns),
            "exchange_timestamp": ist_text(o.placed_ns),
            "variety": "regular",
            "modified": o.modified,
            "exchange": o.exchange,
            "tradingsymbol": o.symbol,
            "instrument_token": o.token,
            "order_type": o.order_type,
            "transaction_type": o.side,
            "validity": "DAY",
            "validity_ttl": 0,
            "product": o.product,
            "quantity": o.quantity,
            "disclosed_quantity": 0,
            "price": _r(o.price),
            "trigger_price": 0,
            "average_price": _r(o.average_price),
            "filled_quantity": o.filled,
            "pending_quantity": o.pending,
            "cancelled_quantity": o.cancelled,
            "market_protection": 0,
            "meta": {},
            "tag": o.tag or None,
            "tags": [o.tag] if o.tag else [],
            "guid": o.extra.get("guid", ""),
        }

    def trade_json(self, o: FakeOrder) -> list[dict[str, Any]]:
        return [
            {
                "trade_id": t.trade_id,
                "order_id": o.order_id,
                "exchange": o.exchange,
                "tradingsymbol": o.symbol,
                "instrument_token": o.token,
                "product": o.product,
                "average_price": _r(t.price),
                "quantity": t.quantity,
                "exchange_order_id": o.extra.get("exchange_order_id"),
                "transaction_type": o.side,
                "fill_timestamp": ist_text(t.ts_ns),
                "order_timestamp": ist_text(o.placed_ns),
                "exchange_timestamp": ist_text(t.ts_ns),
            }
            for t in o.trades
        ]

    def order_changed(self, o: FakeOrder) -> None:
        """Kite's postback: the order's JSON as a text message on every ticker connection."""
        data = self.order_json(o)
        self.broadcast(msgspec.json.encode({"type": "order", "id": "", "data": data}).decode())

    # --- routes -----------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
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
            Route("/orders/{variety}", self.place_route, methods=["POST"]),
            Route("/orders/{variety}/{order_id}", self.modify_or_cancel, methods=["PUT", "DELETE"]),
            Route("/orders", self.list_orders),
            Route("/orders/{order_id}", self.order_history),
            Route("/orders/{order_id}/trades", self.order_trades),
            Route("/trades", self.all_trades),
            Route("/portfolio/positions", self.positions_route),
            Route("/portfolio/holdings", self.holdings),
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
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        key, rt, cs = (str(form.get(k) or "") for k in ("api_key", "request_token", "checksum"))
        if key != self.api_key:
            return self._err(403, "TokenException", "Invalid `api_key`.")
        if not rt or cs != checksum(key, rt, self.api_secret):
            return self._err(403, "TokenException", "Invalid `checksum`.")
        tok = secrets.token_hex(16)
        self.sessions.add(tok)
        return self._ok(
            {
                **self._profile(),
                "user_shortname": "Demo",
                "avatar_url": None,
                "api_key": self.api_key,
                "access_token": tok,
                "public_token": secrets.token_hex(8),
                "refresh_token": "",
                "enctoken": "",
                "login_time": ist_text(self.now_ns()),
                "meta": {"demat_consent": "physical"},
            }
        )

    def _profile(self) -> dict[str, Any]:
        return {
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

    async def profile(self, request: Request) -> Response:
        return self._auth(request) or self._ok(self._profile())

    async def margins(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        cash = _r(self.cash_now())
        eq = {
            "enabled": True,
            "net": cash,
            "available": {
                "adhoc_margin": 0,
                "cash": cash,
                "opening_balance": _r(self.cash),
                "live_balance": cash,
                "collateral": 0,
                "intraday_payin": 0,
            },
            "utilised": dict.fromkeys(_UTILISED, 0),
        }
        if request.path_params.get("segment") == "equity":
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
            inst = self.by_symbol(ex, sym)
            if inst is not None and inst.token in self.last:
                out[key] = {
                    "instrument_token": inst.token,
                    "last_price": _r(self.last[inst.token].price),
                }
        return self._ok(out)

    # --- orders -----------------------------------------------------------------------------------
    async def place_route(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        f = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        try:
            ex, sym = str(f["exchange"]), str(f["tradingsymbol"])
            side, otype = str(f["transaction_type"]), str(f["order_type"])
            qty, product = int(str(f["quantity"])), str(f.get("product") or "MIS")
            price = round(float(str(f.get("price") or 0)) * 100)
        except (KeyError, ValueError) as exc:
            self.counts["place"] += 1
            return self._err(400, "InputException", f"Invalid or missing parameter {exc}")
        inst = self.by_symbol(ex, sym)
        if inst is None:
            self.counts["place"] += 1
            return self._err(400, "InputException", f"Invalid `tradingsymbol`: {ex}:{sym}")
        if side not in ("BUY", "SELL") or otype not in ("MARKET", "LIMIT"):
            return self._err(400, "InputException", "Invalid `transaction_type` or `order_type`.")
        tag = str(f.get("tag") or "")
        if tag and (len(tag) > 20 or not tag.isalnum()):
            return self._err(400, "InputException", "Tag length should be at most 20 characters")
        guid = secrets.token_hex(6)
        o = self.place(inst, ex, side, otype, product, qty, price, tag, guid=guid)
        o.extra["exchange_order_id"] = None if o.status == "REJECTED" else f"1{o.order_id[-15:]}"
        await self.maybe_late()
        return self._ok({"order_id": o.order_id})

    async def modify_or_cancel(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        o = self.orders.get(request.path_params["order_id"])
        if o is None:
            return self._err(400, "InputException", "Invalid `order_id`.")
        if request.method == "DELETE":
            why = self.cancel(o)
        else:
            f = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            qty = int(str(f.get("quantity") or o.quantity))
            price = round(float(str(f.get("price") or o.price / 100)) * 100)
            why = self.modify(o, qty, price)
        if why:
            kind = "InputException" if why.startswith("Invalid") else "OrderException"
            return self._err(400, kind, why)
        return self._ok({"order_id": o.order_id})

    async def list_orders(self, request: Request) -> Response:
        return self._auth(request) or self._ok([self.order_json(o) for o in self.orders.values()])

    async def order_history(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        o = self.orders.get(request.path_params["order_id"])
        if o is None:
            return self._err(400, "InputException", "Invalid `order_id`.")
        return self._ok([self.order_json(o)])

    async def order_trades(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        o = self.orders.get(request.path_params["order_id"])
        return self._ok(self.trade_json(o) if o else [])

    async def all_trades(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        return self._ok([t for o in self.orders.values() for t in self.trade_json(o)])

    async def positions_route(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        net = [
            {
                "tradingsymbol": p.symbol,
                "exchange": p.exchange,
                "instrument_token": p.token,
                "product": p.product,
                "quantity": p.quantity,
                "buy_quantity": p.buy_quantity,
                "sell_quantity": p.sell_quantity,
                "buy_value": _r(p.buy_value),
                "sell_value": _r(p.sell_value),
                "multiplier": 1,
                "average_price": p.average_price / 100,
                "last_price": _r(p.last_price),
                "pnl": _r(p.pnl),
            }
            for p in self.positions()
        ]
        return self._ok({"net": net, "day": net})

    async def holdings(self, request: Request) -> Response:
        return self._auth(request) or self._ok([])

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
        if (end - start).days > INTERVAL_MAX_DAYS[interval]:
            return self._err(
                400,
                "InputException",
                f"interval exceeds max limit: {INTERVAL_MAX_DAYS[interval]} days",
            )
        oi = q.get("oi") == "1" and isinstance(inst, Option | Future)
        rows = []
        for t, o, h, lo, c, v, i in self.history(inst, INTERVAL_SECONDS[interval], start, end, oi):
            rows.append(
                [t.strftime("%Y-%m-%dT%H:%M:%S+0530"), o, h, lo, c, v, *([i] if oi else [])]
            )
        return self._ok({"candles": rows})

    # --- ticker -----------------------------------------------------------------------------------
    async def ticker(self, ws: WebSocket) -> None:
        q = ws.query_params
        tok = q.get("access_token", "")
        c = None
        if q.get("api_key") == self.api_key and tok in self.sessions:
            c = self.accept_conn(ws, tok)
        if c is None:
            await ws.close(code=1008)  # before accept: the handshake fails with HTTP 403
            return
        await ws.accept()
        sender = asyncio.create_task(self.send_loop(c))
        try:
            while True:
                msg = await ws.receive_text()
                try:
                    self._ticker_command(c, msgspec.json.decode(msg))
                except (msgspec.DecodeError, ValueError, TypeError, KeyError, IndexError) as e:
                    with contextlib.suppress(asyncio.QueueFull):
                        c.queue.put_nowait(
                            msgspec.json.encode(
                                {"type": "error", "data": f"bad message: {e}"}
                            ).decode()
                        )
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            sender.cancel()
            self.drop_conn(c)

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

    def encode(self, conn: Conn, tokens: list[int]) -> list[bytes | str]:
        """One Kite message with a packet per instrument that ticked, in the connection's mode."""
        if not tokens:
            return []
        return [frames.encode_message([self._packet(t, conn.modes[t]) for t in tokens])]

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
                tok, t.price, t.last_qty, t.price, t.volume, t.bid_qty * 5, t.ask_qty * 5,
                o, h, lo, c,
            )  # fmt: skip
        step = self.instruments[tok].tick_size
        bids = [(t.bid_qty, max(t.bid - k * step, 0), 1 + k) for k in range(5)] if t.bid else []
        asks = [(t.ask_qty, t.ask + k * step, 1 + k) for k in range(5)] if t.ask else []
        return frames.encode_full(
            tok, t.price, t.last_qty, t.price, t.volume, t.bid_qty * 5, t.ask_qty * 5,
            o, h, lo, c, s, t.oi, t.oi, t.oi, s, bids, asks,
        )  # fmt: skip


class FakeKiteServer(FakeServer):
    """Runs a :class:`FakeKite` under uvicorn on 127.0.0.1."""

    def __init__(self, fake: FakeKite | None = None, host: str = "127.0.0.1", port: int = 0):
        super().__init__(fake or FakeKite(), host, port)


__all__ = [
    "DEMO_API_KEY",
    "DEMO_API_SECRET",
    "FakeKite",
    "FakeKiteServer",
    "market_offset_ns",
    "rupees",
]
