"""``mandi fakebroker angel``: a local Angel One SmartAPI server for tests and demos.

SmartAPI's REST routes at ``http://127.0.0.1:P`` (``/rest/auth/...``, ``/rest/secure/...``,
with SmartAPI's JSON envelope ``{"status", "message", "errorcode", "data"}`` and its error
codes), the scrip master at ``/OpenAPI_File/files/OpenAPIScripMaster.json`` and SmartStream v2 at
``ws://127.0.0.1:P/ws`` (header authentication, ``ping``/``pong``, LTP/QUOTE/SNAP_QUOTE binary
frames, 1,000 instruments a connection). The shared machinery (market, matching, faults,
``/_fake/...``) is :mod:`mandi.brokers.fake`.

* **Login** checks the API key (``X-PrivateKey``), the client code, the PIN and the TOTP (RFC
  6238 with the demo secret, ±1 step) and answers a JWT (whose ``exp`` is ``jwt_ttl_s`` away),
  a refresh token and a feed token; ``generateTokens`` trades a refresh token for new ones.
* **Errors** as SmartAPI sends them: a bad or expired JWT → HTTP 401 with ``AG8001``; a refused
  TOTP → ``AB1050``; an unknown symbol → ``AB1009``; an order not found → ``AB1013``; an
  injected 429 → HTTP 403 "Access denied because of exceeding access rate".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import secrets
import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from mandi.brokers.angel import frames
from mandi.brokers.angel.rest import ROUTES
from mandi.brokers.angel.wire import (
    EXCHANGE_TYPE,
    INTERVAL_MAX_DAYS,
    INTERVAL_SECONDS,
    SEGMENT_OF_TYPE,
    angel_token,
    mandi_token,
    scrip_master,
)
from mandi.brokers.fake import IST, Conn, FakeBroker, FakeOrder, FakeServer, ist_text
from mandi.config import SimConfig
from mandi.core.clock import NS_PER_MS, NS_PER_SECOND
from mandi.execution.config import MatchingConfig
from mandi.model.instruments import AnyInstrument, Future, Index, Option

DEMO_API_KEY = "mandi_angel_key"
DEMO_CLIENT = "D12345"
DEMO_PIN = "1234"
DEMO_TOTP_SECRET = "MANDIDEMOTOTPSECRETFORFAKEANGELQ"  # base32, 160 bits (a demo value)
SCRIP_PATH = "/OpenAPI_File/files/OpenAPIScripMaster.json"
_MODES = {1: "ltp", 2: "quote", 3: "full"}
_EX_TYPE_OF_SEG = {"NFO": 2, "BFO": 4, "NSE": 1, "BSE": 3, "INDICES": 1}


def _r(paise: int) -> float:
    return round(paise / 100, 2)


def make_jwt(subject: str, exp_s: int) -> str:
    """An unsigned-looking JWT with the claims SmartAPI's carry (mandi reads ``exp``)."""

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    head = b64({"alg": "HS512", "typ": "JWT"})
    body = b64(
        {"sub": subject, "exp": exp_s, "iat": int(time.time()), "nonce": secrets.token_hex(4)}
    )
    return f"{head}.{body}.{secrets.token_hex(16)}"


class FakeAngel(FakeBroker):
    """SmartAPI on loopback (see the module docstring)."""

    name = "angel"
    heartbeat = None  # SmartStream does not ping: the client does

    def __init__(
        self,
        sim: SimConfig | None = None,
        clock_offset_ns: int | None = None,
        cash: int = 10_000_000_00,
        matching: MatchingConfig | None = None,
        jwt_ttl_s: float = 8 * 3600,
    ) -> None:
        self.api_key, self.client_code, self.pin = DEMO_API_KEY, DEMO_CLIENT, DEMO_PIN
        self.totp_secret = DEMO_TOTP_SECRET
        self.jwt_ttl_s = jwt_ttl_s
        self.refresh_tokens: set[str] = set()
        self.feed_tokens: set[str] = set()
        self._taken: set[int] = set()
        super().__init__(sim, clock_offset_ns, cash, matching)
        self.user_id = self.client_code
        self.master_json = scrip_master(self.instruments.values())
        self.logins = 0
        self.refreshes = 0

    def broker_instrument(self, inst: AnyInstrument) -> AnyInstrument:
        """SmartAPI tokens: the simulator's number, keyed by segment (mandi's token encoding)."""
        seg = (inst.segment or inst.exchange).split("-")[0]
        ex_type = _EX_TYPE_OF_SEG.get(seg, EXCHANGE_TYPE.get(inst.exchange, 1))
        if isinstance(inst, Index) and inst.exchange == "BSE":
            ex_type = 3
        num = inst.token & 0xFFFFFF
        t = mandi_token(ex_type, num)
        while t in self._taken:
            num += 1
            t = mandi_token(ex_type, num)
        self._taken.add(t)
        return msgspec.structs.replace(inst, token=t)

    def env(self, rest_url: str, ws_url: str) -> dict[str, str]:
        return {
            "MANDI_BROKER__NAME": "angel",
            "MANDI_BROKER__ANGEL__API_KEY": self.api_key,
            "MANDI_BROKER__ANGEL__CLIENT_CODE": self.client_code,
            "MANDI_BROKER__ANGEL__PIN": self.pin,
            "MANDI_BROKER__ANGEL__TOTP_SECRET": self.totp_secret,
            "MANDI_BROKER__ANGEL__REST_URL": rest_url,
            "MANDI_BROKER__ANGEL__WS_URL": ws_url,
            "MANDI_BROKER__ANGEL__SCRIP_MASTER_URL": f"{rest_url}{SCRIP_PATH}",
            **{k: v for k, v in super().env(rest_url, ws_url).items() if k != "MANDI_BROKER__NAME"},
        }

    # --- the envelope -----------------------------------------------------------------------------
    def _ok(self, data: Any, message: str = "SUCCESS") -> JSONResponse:
        return JSONResponse({"status": True, "message": message, "errorcode": "", "data": data})

    def _err(self, code: str, message: str, status: int = 200) -> JSONResponse:
        return JSONResponse(
            {"status": False, "message": message, "errorcode": code, "data": None}, status
        )

    def _auth(self, request: Request) -> JSONResponse | None:
        if self.take_429():
            return JSONResponse(
                {"status": False, "message": "Access denied because of exceeding access rate"}, 403
            )
        if request.headers.get("x-privatekey") != self.api_key:
            return self._err("AG8004", "Invalid API Key", 401)
        jwt = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if jwt not in self.sessions:
            return JSONResponse(
                {"success": False, "message": "Invalid Token", "errorCode": "AG8001", "data": ""},
                401,
            )
        return None

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            d = json.loads(await request.body() or b"{}")
        except ValueError:
            return {}
        return d if isinstance(d, dict) else {}

    def _issue(self) -> dict[str, str]:
        jwt = make_jwt(self.client_code, int(time.time() + self.jwt_ttl_s))
        refresh, feed = make_jwt(self.client_code, int(time.time() + 86400)), secrets.token_hex(16)
        self.sessions.add(jwt)
        self.refresh_tokens.add(refresh)
        self.feed_tokens.add(feed)
        return {"jwtToken": jwt, "refreshToken": refresh, "feedToken": feed}

    # --- routes -----------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        r = ROUTES
        return [
            Route(r["login"], self.login, methods=["POST"]),
            Route(r["refresh"], self.refresh, methods=["POST"]),
            Route(r["logout"], self.logout, methods=["POST"]),
            Route(r["profile"], self.profile, methods=["GET"]),
            Route(r["rms"], self.rms, methods=["GET"]),
            Route(r["place"], self.place_route, methods=["POST"]),
            Route(r["modify"], self.modify_route, methods=["POST"]),
            Route(r["cancel"], self.cancel_route, methods=["POST"]),
            Route(r["orders"], self.order_book, methods=["GET"]),
            Route(r["trades"], self.trade_book, methods=["GET"]),
            Route(r["positions"], self.positions_route, methods=["GET"]),
            Route(r["candles"], self.candles, methods=["POST"]),
            Route(SCRIP_PATH, self.scrip_master),
            WebSocketRoute("/ws", self.ticker),
        ]

    async def login(self, request: Request) -> Response:
        import pyotp

        self.counts["requests"] += 1
        if request.headers.get("x-privatekey") != self.api_key:
            return self._err("AG8004", "Invalid API Key", 401)
        d = await self._body(request)
        if d.get("clientcode") != self.client_code or d.get("password") != self.pin:
            return self._err("AB1007", "Invalid client code or PIN")
        if not pyotp.TOTP(self.totp_secret).verify(str(d.get("totp") or ""), valid_window=1):
            return self._err("AB1050", "Invalid totp")
        self.logins += 1
        return self._ok(self._issue())

    async def refresh(self, request: Request) -> Response:
        self.counts["requests"] += 1
        d = await self._body(request)
        rt = str(d.get("refreshToken") or "")
        if rt not in self.refresh_tokens:
            return self._err("AB8050", "Invalid refresh token", 401)
        self.refresh_tokens.discard(rt)
        self.refreshes += 1
        return self._ok(self._issue())

    async def logout(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        jwt = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        self.sessions.discard(jwt)
        return self._ok("", "Logout Successfully")

    async def profile(self, request: Request) -> Response:
        return self._auth(request) or self._ok(
            {
                "clientcode": self.client_code,
                "name": self.user_name,
                "email": "",
                "mobileno": "",
                "exchanges": ["NSE", "BSE", "NFO", "BFO"],
                "products": ["MARGIN", "MIS", "NRML", "CNC", "CO", "BO"],
                "lastlogintime": "",
                "broker": "",
            }
        )

    async def rms(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        cash = f"{_r(self.cash_now()):.4f}"
        zero = "0.0000"
        return self._ok(
            {
                "net": cash,
                "availablecash": cash,
                "availableintradaypayin": zero,
                "availablelimitmargin": zero,
                "collateral": zero,
                "m2munrealized": zero,
                "m2mrealized": zero,
                "utiliseddebits": zero,
                "utilisedspan": None,
                "utilisedoptionpremium": None,
                "utilisedholdingsales": None,
                "utilisedexposure": None,
                "utilisedturnover": None,
                "utilisedpayout": zero,
            }
        )

    async def scrip_master(self, request: Request) -> Response:
        return PlainTextResponse(self.master_json, media_type="application/json")

    # --- orders -----------------------------------------------------------------------------------
    def order_json(self, o: FakeOrder) -> dict[str, Any]:
        inst = self.instruments[o.token]
        status = o.status.lower()
        return {
            "variety": "NORMAL",
            "ordertype": o.order_type,
            "producttype": o.product,
            "duration": "DAY",
            "price": _r(o.price),
            "triggerprice": 0.0,
            "quantity": str(o.quantity),
            "disclosedquantity": "0",
            "squareoff": 0.0,
            "stoploss": 0.0,
            "trailingstoploss": 0.0,
            "tradingsymbol": o.symbol,
            "transactiontype": o.side,
            "exchange": o.exchange,
            "symboltoken": angel_token(o.token)[1],
            "ordertag": o.tag,
            "instrumenttype": "OPTIDX" if isinstance(inst, Option) else "",
            "strikeprice": _r(inst.strike) if isinstance(inst, Option) else -1.0,
            "optiontype": inst.option_type if isinstance(inst, Option) else "",
            "expirydate": inst.expiry.strftime("%d%b%Y").upper()
            if isinstance(inst, Option | Future) and inst.expiry
            else "",
            "lotsize": str(inst.lot_size),
            "cancelsize": str(o.cancelled),
            "averageprice": _r(o.average_price),
            "filledshares": str(o.filled),
            "unfilledshares": str(o.quantity - o.filled),
            "orderid": o.order_id,
            "text": o.reason,
            "status": status,
            "orderstatus": status,
            "updatetime": ist_text(o.updated_ns, "%d-%b-%Y %H:%M:%S"),
            "exchtime": ist_text(o.placed_ns, "%d-%b-%Y %H:%M:%S"),
            "exchorderupdatetime": ist_text(o.updated_ns, "%d-%b-%Y %H:%M:%S"),
            "fillid": "",
            "filltime": "",
            "parentorderid": "",
            "uniqueorderid": o.extra.get("uniqueorderid", ""),
        }

    async def place_route(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        d = await self._body(request)
        try:
            seg, sym, tok = str(d["exchange"]), str(d["tradingsymbol"]), str(d["symboltoken"])
            side, otype = str(d["transactiontype"]), str(d["ordertype"])
            qty, product = int(str(d["quantity"])), str(d.get("producttype") or "INTRADAY")
            price = round(float(str(d.get("price") or 0)) * 100)
        except (KeyError, ValueError) as exc:
            self.counts["place"] += 1
            return self._err("AB1004", f"Invalid parameters: {exc}")
        if str(d.get("variety") or "NORMAL") not in ("NORMAL", "STOPLOSS", "AMO", "ROBO"):
            return self._err("AB1008", "Invalid Order Variety")
        if product not in ("INTRADAY", "CARRYFORWARD", "DELIVERY", "MARGIN", "BO"):
            return self._err("AB1012", "Invalid Product Type")
        inst = (
            self.instruments.get(mandi_token(EXCHANGE_TYPE.get(seg, 0), tok))
            if tok.isdigit()
            else None
        )
        if inst is None or inst.symbol != sym:
            self.counts["place"] += 1
            return self._err("AB1009", "Symbol Not Found")
        if side not in ("BUY", "SELL") or otype not in ("MARKET", "LIMIT"):
            return self._err("AB1004", "Invalid transactiontype or ordertype")
        tag = str(d.get("ordertag") or "")
        if len(tag) >= 20:
            return self._err("AB4008", "ordertag length should be less than 20 characters")
        o = self.place(inst, seg, side, otype, product, qty, price, tag)
        o.extra["uniqueorderid"] = secrets.token_hex(8)
        await self.maybe_late()
        return self._ok(
            {"script": sym, "orderid": o.order_id, "uniqueorderid": o.extra["uniqueorderid"]}
        )

    async def modify_route(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        d = await self._body(request)
        o = self.orders.get(str(d.get("orderid") or ""))
        if o is None:
            return self._err("AB1013", "Order not found")
        try:
            qty = int(str(d.get("quantity") or o.quantity))
            price = round(float(str(d.get("price") or o.price / 100)) * 100)
        except ValueError:
            return self._err("AB1004", "Invalid quantity or price")
        why = self.modify(o, qty, price)
        if why:
            return self._err("AB1004" if why.startswith("Invalid") else "AB1013", why)
        return self._ok({"orderid": o.order_id, "uniqueorderid": o.extra.get("uniqueorderid", "")})

    async def cancel_route(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        d = await self._body(request)
        o = self.orders.get(str(d.get("orderid") or ""))
        if o is None:
            return self._err("AB1013", "Order not found")
        why = self.cancel(o)
        if why:
            return self._err("AB1013", why)
        return self._ok({"orderid": o.order_id, "uniqueorderid": o.extra.get("uniqueorderid", "")})

    async def order_book(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        book = [self.order_json(o) for o in self.orders.values()]
        return self._ok(book or None)  # SmartAPI answers data: null for an empty book

    async def trade_book(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        rows = []
        for o in self.orders.values():
            for t in o.trades:
                rows.append(
                    {
                        "exchange": o.exchange,
                        "producttype": o.product,
                        "tradingsymbol": o.symbol,
                        "instrumenttype": "",
                        "symbolgroup": "",
                        "strikeprice": "",
                        "optiontype": "",
                        "expirydate": "",
                        "marketlot": "1",
                        "precision": "2",
                        "multiplier": "-1",
                        "tradevalue": f"{t.quantity * t.price / 100:.2f}",
                        "transactiontype": o.side,
                        "fillprice": _r(t.price),
                        "fillsize": str(t.quantity),
                        "orderid": o.order_id,
                        "fillid": t.trade_id,
                        "filltime": ist_text(t.ts_ns, "%d-%b-%Y %H:%M:%S"),
                    }
                )
        return self._ok(rows or None)

    async def positions_route(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        rows = [
            {
                "exchange": p.exchange,
                "symboltoken": angel_token(p.token)[1],
                "producttype": p.product,
                "tradingsymbol": p.symbol,
                "symbolname": p.symbol,
                "buyqty": str(p.buy_quantity),
                "sellqty": str(p.sell_quantity),
                "buyamount": f"{p.buy_value / 100:.2f}",
                "sellamount": f"{p.sell_value / 100:.2f}",
                "avgnetprice": f"{p.average_price / 100:.2f}",
                "netvalue": f"{(p.sell_value - p.buy_value) / 100:.2f}",
                "netqty": str(p.quantity),
                "netprice": f"{p.average_price / 100:.2f}",
                "ltp": f"{p.last_price / 100:.2f}",
                "pnl": f"{p.pnl / 100:.2f}",
            }
            for p in self.positions()
        ]
        return self._ok(rows or None)

    async def candles(self, request: Request) -> Response:
        if (e := self._auth(request)) is not None:
            return e
        d = await self._body(request)
        interval = str(d.get("interval") or "")
        seg, tok = str(d.get("exchange") or ""), str(d.get("symboltoken") or "")
        inst = (
            self.instruments.get(mandi_token(EXCHANGE_TYPE.get(seg, 0), tok))
            if tok.isdigit()
            else None
        )
        if inst is None or interval not in INTERVAL_SECONDS:
            return self._err("AB1004", "Invalid symboltoken or interval")
        try:
            start = dt.datetime.strptime(str(d["fromdate"]), "%Y-%m-%d %H:%M").replace(tzinfo=IST)
            end = dt.datetime.strptime(str(d["todate"]), "%Y-%m-%d %H:%M").replace(tzinfo=IST)
        except (KeyError, ValueError):
            return self._err("AB1004", "Invalid fromdate/todate (yyyy-MM-dd HH:mm)")
        if (end - start).days > INTERVAL_MAX_DAYS[interval]:
            return self._err("AB1004", f"interval exceeds {INTERVAL_MAX_DAYS[interval]} days")
        tf = INTERVAL_SECONDS[interval]
        rows = [
            [t.isoformat(), o, h, lo, c, v]
            for t, o, h, lo, c, v, _ in self.history(inst, tf, start, end, False)
        ]
        return self._ok(rows)

    # --- SmartStream ------------------------------------------------------------------------------
    async def ticker(self, ws: WebSocket) -> None:
        h = ws.headers
        jwt = h.get("authorization", "").removeprefix("Bearer ").strip()
        c = None
        if (
            h.get("x-api-key") == self.api_key
            and h.get("x-client-code") == self.client_code
            and h.get("x-feed-token") in self.feed_tokens
            and jwt in self.sessions
        ):
            c = self.accept_conn(ws, jwt)
        if c is None:
            await ws.close(code=1008)  # before accept: the handshake fails with HTTP 403
            return
        await ws.accept()
        sender = asyncio.create_task(self.send_loop(c))
        try:
            while True:
                msg = await ws.receive_text()
                if msg == "ping":
                    if not self.quiet():
                        with contextlib.suppress(asyncio.QueueFull):
                            c.queue.put_nowait("pong")
                    continue
                try:
                    self._command(c, json.loads(msg))
                except (ValueError, TypeError, KeyError) as e:
                    err = {"correlationID": "", "errorCode": "E1002", "errorMessage": str(e)}
                    with contextlib.suppress(asyncio.QueueFull):
                        c.queue.put_nowait(json.dumps(err))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            sender.cancel()
            self.drop_conn(c)

    def _command(self, c: Conn, d: dict[str, Any]) -> None:
        action, params = int(d["action"]), d["params"]
        mode = _MODES.get(int(params["mode"]))
        if mode is None:
            raise ValueError(f"invalid mode {params['mode']}")
        toks = [
            mandi_token(int(e["exchangeType"]), t) for e in params["tokenList"] for t in e["tokens"]
        ]
        if action == 1:
            new = [t for t in toks if t not in c.modes]
            if len(c.modes) + len(new) > 1000:
                raise ValueError("subscription limit: 1000 tokens a connection")
            for t in toks:
                c.modes[t] = mode
        elif action == 0:
            for t in toks:
                c.modes.pop(t, None)
        else:
            raise ValueError(f"invalid action {action}")

    def encode(self, conn: Conn, tokens: list[int]) -> list[bytes | str]:
        return [self._frame(t, conn.modes[t]) for t in tokens if t in self.last]

    def _frame(self, tok: int, mode: str) -> bytes:
        t = self.last[tok]
        ex_type, num = angel_token(tok)
        ts_ms = t.ts_event // NS_PER_MS
        seq = t.ts_event // NS_PER_SECOND
        if mode == "ltp":
            return frames.encode_ltp(ex_type, num, seq, ts_ms, t.price)
        o, h, lo = self.day_open[tok], self.day_high[tok], self.day_low[tok]
        quote = (
            ex_type, num, seq, ts_ms, t.price, t.last_qty, t.price, t.volume,
            float(t.bid_qty * 5), float(t.ask_qty * 5), o, h, lo, o,
        )  # fmt: skip
        if mode == "quote":
            return frames.encode_quote(*quote)
        step = self.instruments[tok].tick_size
        bids = [(t.bid_qty, max(t.bid - k * step, 0), 1 + k) for k in range(5)] if t.bid else []
        asks = [(t.ask_qty, t.ask + k * step, 1 + k) for k in range(5)] if t.ask else []
        return frames.encode_snap(
            *quote, t.ts_event // NS_PER_SECOND, t.oi, 0.0, bids, asks,
            round(t.price * 1.2), round(t.price * 0.8), h, lo,
        )  # fmt: skip


class FakeAngelServer(FakeServer):
    def __init__(self, fake: FakeAngel | None = None, host: str = "127.0.0.1", port: int = 0):
        super().__init__(fake or FakeAngel(), host, port)


__all__ = [
    "DEMO_API_KEY",
    "DEMO_CLIENT",
    "DEMO_PIN",
    "DEMO_TOTP_SECRET",
    "SEGMENT_OF_TYPE",
    "FakeAngel",
    "FakeAngelServer",
]
