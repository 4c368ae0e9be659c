"""``mandi fakebroker groww``: a local Groww trading API for tests and demos.

Groww's REST API at ``http://127.0.0.1:P/v1/...`` (the ``{"status", "payload"}`` envelope, the
``GA00x`` error codes, the ``X-API-VERSION`` header), the instrument CSV at
``/instruments/instrument.csv`` and the live feed at ``ws://127.0.0.1:P/ws``: a NATS server
over a websocket (binary frames, as nats-server sends them) with protobuf payloads. The shared
machinery (market, matching, faults, ``/_fake/...``) is :mod:`mandi.brokers.fake`.

* **Login** (``/v1/token/api/access``, authenticated by the API key): the TOTP flow (RFC 6238
  with the demo secret, ±1 step) or the approval flow (SHA-256 of the secret and a timestamp
  within 10 minutes); the token's ``expiry`` is 06:00 IST next.
* **Feed tokens** (``/v1/api/apex/v1/socket/token/create/``) are bound to the client's nkey;
  the NATS ``CONNECT`` must carry one and the server nonce signed with that key (ed25519), and
  its access token must still be alive — else ``-ERR 'Authorization Violation'``. Subjects are
  Groww's (``/ld/fo/nse/price.<token>``, ``.../book.<token>``, ``/ld/indices/nse/price.NIFTY``,
  ``stocks[_fo]/order/updates.apex.<subscription>``); 1,000 instruments a connection; the
  server pings quiet clients (``PING`` every second of silence) and counts their ``PONG``\\ s.
* **Errors** as Groww sends them: a bad or expired token → HTTP 401; a bad symbol → GA001
  "Invalid trading symbol."; an unknown order → GA004; a reused ``order_reference_id`` →
  GA007; an injected 429 → HTTP 429.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from mandi.brokers.fake import IST, Conn, FakeBroker, FakeOrder, FakeServer, ist_text
from mandi.brokers.groww import frames, nats
from mandi.brokers.groww.rest import ROUTES
from mandi.brokers.groww.wire import (
    INTERVAL_MAX_DAYS,
    INTERVAL_SECONDS,
    SEGMENT_OF_CODE,
    checksum,
    feed_key,
    groww_symbol,
    instrument_csv,
    mandi_token,
    next_six_ist,
    topics,
)
from mandi.config import SimConfig
from mandi.core.clock import NS_PER_MS, NS_PER_SECOND
from mandi.core.errors import ParseError
from mandi.execution.config import MatchingConfig
from mandi.model.instruments import AnyInstrument, Future, Index, Option

DEMO_API_KEY = "mandi_groww_key"
DEMO_API_SECRET = "mandi_groww_secret"
DEMO_TOTP_SECRET = "MANDIDEMOGROWWTOTPSECRETFAKEQQQQ"  # base32, 160 bits (a demo value)
DEMO_UCC = "DM1234"
DEMO_SUBSCRIPTION = "mandi-demo-subscription"
INSTRUMENTS_PATH = "/instruments/instrument.csv"
MAX_INSTRUMENTS = 1000  # a connection
_REF = re.compile(r"^[A-Za-z0-9-]{8,20}$")
_STATUS = {"OPEN": "ACKED", "COMPLETE": "EXECUTED", "REJECTED": "REJECTED",
           "CANCELLED": "CANCELLED"}  # fmt: skip
_EXCHANGE_CODE = {"BSE": 0, "NSE": 1}
Handler = Callable[[Request], Awaitable[Response]]
_SEGMENT_CODE = {"CASH": 0, "FNO": 1}


def _r(paise: int) -> float:
    return round(paise / 100, 2)


def _verify(public_key: str, nonce: bytes, sig: str) -> bool:
    """Is ``sig`` (base64, standard or URL-safe) the ed25519 signature of ``nonce`` by the nkey
    ``public_key`` (base32: prefix ``U``, 32-byte key, CRC-16)?"""
    import nacl.exceptions
    import nacl.signing

    try:
        raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
        if len(raw) != 35 or raw[0] != 20 << 3:
            return False
        s = sig.replace("-", "+").replace("_", "/")
        nacl.signing.VerifyKey(raw[1:33]).verify(nonce, base64.b64decode(s + "=" * (-len(s) % 4)))
        return True
    except (ValueError, nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False


class _NoSuchOrder(Exception):
    """An order the fake does not hold (Groww's GA004)."""


@dataclass
class NatsConn(Conn):
    """A feed connection: its subscriptions (subject → sid) and what it answered."""

    subs: dict[bytes, bytes] = field(default_factory=dict)
    by_token: dict[int, list[tuple[bytes, bytes, str]]] = field(default_factory=dict)
    pongs: int = 0


class FakeGroww(FakeBroker):
    """Groww's trading API on loopback (see the module docstring)."""

    name = "groww"
    heartbeat = nats.PING_CMD  # the server pings a client that heard nothing for a second

    def __init__(
        self,
        sim: SimConfig | None = None,
        clock_offset_ns: int | None = None,
        cash: int = 10_000_000_00,
        matching: MatchingConfig | None = None,
        token_ttl_s: float | None = None,
    ) -> None:
        self.api_key, self.api_secret = DEMO_API_KEY, DEMO_API_SECRET
        self.totp_secret = DEMO_TOTP_SECRET
        self.token_ttl_s = token_ttl_s  # None: until 06:00 IST, as Groww's
        self.socket_tokens: dict[str, tuple[str, str]] = {}  # feed token → (nkey, access token)
        self._taken: set[int] = set()
        super().__init__(sim, clock_offset_ns, cash, matching)
        self.user_id = DEMO_UCC
        self.csv = instrument_csv(self.instruments.values())
        self.subjects: dict[bytes, tuple[int, str]] = {}  # subject → (token, what)
        self.by_groww_symbol: dict[str, AnyInstrument] = {}
        for inst in self.instruments.values():
            self.by_groww_symbol[groww_symbol(inst)] = inst
            for subject, what in topics(feed_key(inst), "full"):
                self.subjects[subject.encode()] = (inst.token, what)
        self.logins = 0
        self.counts["pongs"] = 0
        self._client_ids = 0

    # --- identity ---------------------------------------------------------------------------------
    def broker_instrument(self, inst: AnyInstrument) -> AnyInstrument:
        """Groww's tokens: the simulator's number per (exchange, segment); NSE's indices by
        their name, as Groww lists them."""
        segment = "FNO" if isinstance(inst, Option | Future) else "CASH"
        if isinstance(inst, Index) and inst.exchange == "NSE" and inst.symbol.isalnum():
            t = mandi_token("NSE", "CASH", inst.symbol)
        else:
            num = inst.token & 0xFFFFFF
            t = mandi_token(inst.exchange, segment, str(num))
            while t in self._taken:
                num += 1
                t = mandi_token(inst.exchange, segment, str(num))
        self._taken.add(t)
        return msgspec.structs.replace(inst, token=t)

    def next_id(self) -> str:
        return "GMK" + super().next_id()

    def env(self, rest_url: str, ws_url: str) -> dict[str, str]:
        return {
            "MANDI_BROKER__NAME": "groww",
            "MANDI_BROKER__GROWW__API_KEY": self.api_key,
            "MANDI_BROKER__GROWW__TOTP_SECRET": self.totp_secret,
            "MANDI_BROKER__GROWW__REST_URL": rest_url,
            "MANDI_BROKER__GROWW__WS_URL": ws_url,
            "MANDI_BROKER__GROWW__INSTRUMENTS_URL": f"{rest_url}{INSTRUMENTS_PATH}",
            **{k: v for k, v in super().env(rest_url, ws_url).items() if k != "MANDI_BROKER__NAME"},
        }

    # --- the envelope -----------------------------------------------------------------------------
    def _ok(self, payload: Any) -> JSONResponse:
        return JSONResponse({"status": "SUCCESS", "payload": payload})

    def _err(self, code: str, message: str, status: int = 400) -> JSONResponse:
        return JSONResponse(
            {"status": "FAILURE", "error": {"code": code, "message": message, "metadata": None}},
            status,
        )

    def _bearer(self, request: Request) -> str:
        return request.headers.get("authorization", "").removeprefix("Bearer ").strip()

    def _auth(self, request: Request) -> JSONResponse | None:
        if self.take_429():
            return self._err("GA003", "Rate limit exceeded", 429)
        if request.headers.get("x-api-version") != "1.0":
            return self._err("GA001", "X-API-VERSION header is missing or invalid")
        if self._bearer(request) not in self.sessions:
            return self._err("GA005", "Authentication failed: invalid or expired token", 401)
        return None

    def _api(self, handler: Handler) -> Handler:
        """``handler`` as Groww's API serves it: :meth:`_auth`'s checks first, and an unknown
        order (:class:`_NoSuchOrder`) answered with GA004, HTTP 404."""

        async def route(request: Request) -> Response:
            if (e := self._auth(request)) is not None:
                return e
            try:
                return await handler(request)
            except _NoSuchOrder:
                return self._err("GA004", "Requested entity does not exist", 404)

        return route

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            d = json.loads(await request.body() or b"{}")
        except ValueError:
            return {}
        return d if isinstance(d, dict) else {}

    # --- routes -----------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        r, api = ROUTES, self._api
        return [
            Route(r["access"], self.access_token, methods=["POST"]),
            Route(r["socket_token"], api(self.socket_token), methods=["POST"]),
            Route(r["profile"], api(self.profile), methods=["GET"]),
            Route("/v1/changelog", self.changelog, methods=["GET"]),
            Route(r["margins"], api(self.margins), methods=["GET"]),
            Route(r["place"], api(self.place_route), methods=["POST"]),
            Route(r["modify"], api(self.modify_route), methods=["POST"]),
            Route(r["cancel"], api(self.cancel_route), methods=["POST"]),
            Route(r["orders"], api(self.order_list), methods=["GET"]),
            Route("/v1/order/detail/{order_id}", api(self.order_detail), methods=["GET"]),
            Route("/v1/order/status/reference/{ref}", api(self.status_by_ref), methods=["GET"]),
            Route("/v1/order/status/{order_id}", api(self.order_status), methods=["GET"]),
            Route(r["trades"], api(self.trade_list), methods=["GET"]),
            Route(r["positions"], api(self.positions_route), methods=["GET"]),
            Route("/v1/positions/trading-symbol", api(self.positions_route), methods=["GET"]),
            Route(r["candles"], api(self.candles), methods=["GET"]),
            Route(INSTRUMENTS_PATH, self.instrument_csv),
            WebSocketRoute("/ws", self.feed),
        ]

    async def access_token(self, request: Request) -> Response:
        import pyotp

        self.counts["requests"] += 1
        if self._bearer(request) != self.api_key:
            return JSONResponse({"error": {"displayMessage": "Invalid API key"}}, 401)
        d = await self._body(request)
        kind = d.get("key_type")
        if kind == "totp":
            if not pyotp.TOTP(self.totp_secret).verify(str(d.get("totp") or ""), valid_window=1):
                return JSONResponse({"error": {"displayMessage": "Invalid TOTP"}}, 400)
        elif kind == "approval":
            try:
                ts = int(str(d.get("timestamp") or ""))
            except ValueError:
                ts = 0
            ok = d.get("checksum") == checksum(self.api_secret, ts)
            if not ok or abs(time.time() - ts) > 600:
                return JSONResponse({"error": {"displayMessage": "Invalid checksum"}}, 400)
        else:
            return JSONResponse({"error": {"displayMessage": "key_type: totp or approval"}}, 400)
        token = secrets.token_urlsafe(32)
        self.sessions.add(token)
        self.logins += 1
        expires = (
            time.time_ns() + int(self.token_ttl_s * NS_PER_SECOND)
            if self.token_ttl_s is not None
            else next_six_ist(time.time_ns())
        )
        return JSONResponse(
            {
                "token": token,
                "tokenRefId": f"ref-{self.logins}",
                "sessionName": "mandi",
                "expiry": ist_text(expires, "%Y-%m-%dT%H:%M:%S"),
                "isActive": True,
            }
        )

    async def socket_token(self, request: Request) -> Response:
        key = str((await self._body(request)).get("socketKey") or "")
        if not key.startswith("U") or len(key) != 56:
            return self._err("GA001", "socketKey is not a user nkey")
        token = "ey" + secrets.token_urlsafe(48)
        self.socket_tokens[token] = (key, self._bearer(request))
        return JSONResponse({"token": token, "subscriptionId": DEMO_SUBSCRIPTION})

    async def profile(self, request: Request) -> Response:
        return self._ok(
            {
                "vendor_user_id": "d86890d1-mandi-fake-groww",
                "ucc": self.user_id,
                "nse_enabled": True,
                "bse_enabled": True,
                "ddpi_enabled": False,
                "active_segments": ["CASH", "FNO"],
            }
        )

    async def changelog(self, request: Request) -> Response:
        return JSONResponse({"info": [], "warning": []})

    async def margins(self, request: Request) -> Response:
        cash = _r(self.cash_now())
        return self._ok(
            {
                "clear_cash": cash,
                "net_margin_used": 0.0,
                "brokerage_and_charges": 0.0,
                "collateral_used": 0.0,
                "collateral_available": 0.0,
                "adhoc_margin": 0.0,
                "fno_margin_details": {
                    "net_fno_margin_used": 0.0,
                    "span_margin_used": 0.0,
                    "exposure_margin_used": 0.0,
                    "future_balance_available": cash,
                    "option_buy_balance_available": cash,
                    "option_sell_balance_available": cash,
                },
                "equity_margin_details": {
                    "net_equity_margin_used": 0.0,
                    "cnc_margin_used": 0.0,
                    "mis_margin_used": 0.0,
                    "cnc_balance_available": cash,
                    "mis_balance_available": cash,
                },
                "commodity_margin_details": {},
            }
        )

    async def instrument_csv(self, request: Request) -> Response:
        return PlainTextResponse(self.csv, media_type="text/csv")

    # --- orders -----------------------------------------------------------------------------------
    def order_json(self, o: FakeOrder) -> dict[str, Any]:
        seg = SEGMENT_OF_CODE[o.token & 0x7F][1]
        return {
            "groww_order_id": o.order_id,
            "trading_symbol": o.symbol,
            "order_status": _STATUS[o.status],
            "remark": o.reason or ("Order placed successfully" if o.status == "OPEN" else ""),
            "quantity": o.quantity,
            "price": _r(o.price),
            "trigger_price": 0,
            "filled_quantity": o.filled,
            "remaining_quantity": o.quantity - o.filled,
            "average_fill_price": _r(o.average_price),
            "deliverable_quantity": o.filled if o.product == "CNC" else 0,
            "amo_status": "NA",
            "validity": "DAY",
            "exchange": o.exchange,
            "order_type": o.order_type,
            "transaction_type": o.side,
            "segment": seg,
            "product": o.product,
            "created_at": ist_text(o.placed_ns, "%Y-%m-%dT%H:%M:%S"),
            "exchange_time": ist_text(o.placed_ns, "%Y-%m-%dT%H:%M:%S"),
            "trade_date": ist_text(o.updated_ns, "%Y-%m-%dT%H:%M:%S"),
            "order_reference_id": o.tag,
        }

    def _status_short(self, o: FakeOrder) -> dict[str, Any]:
        j = self.order_json(o)
        keys = ("groww_order_id", "order_status", "remark", "filled_quantity", "order_reference_id")
        return {k: j[k] for k in keys}

    def order_changed(self, o: FakeOrder) -> None:
        """The order update on the feed, to every connection following the order subjects."""
        seg = SEGMENT_OF_CODE[o.token & 0x7F][1]
        subject = (
            f"stocks_fo/order/updates.apex.{DEMO_SUBSCRIPTION}"
            if seg == "FNO"
            else f"stocks/order/updates.apex.{DEMO_SUBSCRIPTION}"
        ).encode()
        payload = frames.encode_order(
            {
                "growwOrderId": o.order_id,
                "exchangeOrderId": f"1100{o.order_id[-12:]}",
                "orderStatus": _STATUS[o.status],
                "qty": o.quantity,
                "filledQty": o.filled,
                "remainingQty": o.quantity - o.filled,
                "price": o.price,
                "avgFillPrice": o.average_price,
                "exchange": o.exchange,
                "segment": seg,
                "product": o.product,
                "orderType": o.order_type,
                "transactionType": o.side,
                "remark": o.reason,
                "contractId": o.symbol,
            }
        )
        for c in list(self.conns):
            sid = c.subs.get(subject) if isinstance(c, NatsConn) else None
            if sid is not None:
                with contextlib.suppress(asyncio.QueueFull):
                    c.queue.put_nowait(nats.msg(subject, sid, payload))

    def _instrument(self, exchange: str, segment: str, symbol: str) -> AnyInstrument | None:
        for i in self.instruments.values():
            key = feed_key(i)
            if i.symbol == symbol and key.exchange == exchange and key.segment == segment:
                return i
        return None

    async def place_route(self, request: Request) -> Response:
        d = await self._body(request)
        try:
            ex, seg = str(d["exchange"]), str(d["segment"])
            sym, side, otype = (
                str(d["trading_symbol"]),
                str(d["transaction_type"]),
                str(d["order_type"]),
            )
            qty, product = int(d["quantity"]), str(d["product"])
            price = round(float(d.get("price") or 0) * 100)
            ref = str(d.get("order_reference_id") or "")
        except (KeyError, ValueError, TypeError) as exc:
            self.counts["place"] += 1
            return self._err("GA001", f"Bad request: {exc}")
        if str(d.get("validity") or "") != "DAY":
            return self._err("GA001", "validity: only DAY is supported")
        if product not in ("CNC", "MIS", "NRML") or side not in ("BUY", "SELL"):
            return self._err("GA001", "Invalid product or transaction_type")
        if otype not in ("MARKET", "LIMIT"):
            return self._err("GA001", f"order_type {otype}: the fake takes MARKET and LIMIT")
        if ref and (not _REF.match(ref) or ref.count("-") > 2):
            return self._err("GA001", "order_reference_id: 8 to 20 alphanumerics, at most two -")
        if ref and any(o.tag == ref for o in self.orders.values()):
            return self._err("GA007", "Duplicate order reference id")
        inst = self._instrument(ex, seg, sym)
        if inst is None:
            self.counts["place"] += 1
            return self._err("GA001", "Invalid trading symbol.")
        o = self.place(inst, ex, side, otype, product, qty, price, ref)
        await self.maybe_late()
        return self._ok(
            {
                "groww_order_id": o.order_id,
                "order_status": _STATUS[o.status],
                "order_reference_id": ref,
                "remark": o.reason or "Order placed successfully",
            }
        )

    def _order(self, order_id: str) -> FakeOrder:
        return self._known(self.orders.get(order_id))

    def _known(self, o: FakeOrder | None) -> FakeOrder:
        """``o``, unless there is none: GA004, answered by :meth:`_api`."""
        if o is None:
            raise _NoSuchOrder
        return o

    async def modify_route(self, request: Request) -> Response:
        d = await self._body(request)
        o = self._order(str(d.get("groww_order_id") or ""))
        try:
            qty = int(d.get("quantity") or o.quantity)
            price = round(float(d.get("price") or o.price / 100) * 100)
        except (ValueError, TypeError):
            return self._err("GA001", "Invalid quantity or price")
        why = self.modify(o, qty, price)
        if why:
            return self._err("GA006", why)
        return self._ok({"groww_order_id": o.order_id, "order_status": "MODIFICATION_REQUESTED"})

    async def cancel_route(self, request: Request) -> Response:
        d = await self._body(request)
        o = self._order(str(d.get("groww_order_id") or ""))
        why = self.cancel(o)
        if why:
            return self._err("GA006", why)
        return self._ok({"groww_order_id": o.order_id, "order_status": "CANCELLATION_REQUESTED"})

    def _page(self, request: Request, rows: list[Any], largest: int) -> list[Any]:
        q = request.query_params
        try:
            page, size = int(q.get("page") or 0), int(q.get("page_size") or 25)
        except ValueError:
            page, size = 0, 25
        size = max(1, min(size, largest))
        return rows[page * size : (page + 1) * size]

    async def order_list(self, request: Request) -> Response:
        seg = request.query_params.get("segment")
        rows = [
            self.order_json(o)
            for o in self.orders.values()
            if not seg or SEGMENT_OF_CODE[o.token & 0x7F][1] == seg
        ]
        return self._ok({"order_list": self._page(request, rows, 100)})

    async def order_detail(self, request: Request) -> Response:
        o = self._order(request.path_params["order_id"])
        return self._ok(self.order_json(o))

    async def order_status(self, request: Request) -> Response:
        o = self._order(request.path_params["order_id"])
        return self._ok(self._status_short(o))

    async def status_by_ref(self, request: Request) -> Response:
        ref = request.path_params["ref"]
        o = self._known(next((x for x in self.orders.values() if x.tag == ref), None))
        return self._ok(self._status_short(o))

    async def trade_list(self, request: Request) -> Response:
        o = self._order(request.path_params["order_id"])
        seg = SEGMENT_OF_CODE[o.token & 0x7F][1]
        rows = [
            {
                "price": _r(t.price),
                "isin": "",
                "quantity": t.quantity,
                "groww_order_id": o.order_id,
                "groww_trade_id": t.trade_id,
                "exchange_trade_id": f"5{t.trade_id}",
                "exchange_order_id": f"1100{o.order_id[-12:]}",
                "trade_status": "EXECUTED",
                "trading_symbol": o.symbol,
                "remark": "",
                "exchange": o.exchange,
                "segment": seg,
                "product": o.product,
                "transaction_type": o.side,
                "created_at": ist_text(t.ts_ns, "%Y-%m-%dT%H:%M:%S"),
                "trade_date_time": ist_text(t.ts_ns, "%Y-%m-%dT%H:%M:%S"),
                "settlement_number": "2025001",
            }
            for t in o.trades
        ]
        return self._ok({"trade_list": self._page(request, rows, 50)})

    async def positions_route(self, request: Request) -> Response:
        q = request.query_params
        rows = []
        for p in self.positions():
            seg = SEGMENT_OF_CODE[p.token & 0x7F][1]
            if (q.get("segment") and q["segment"] != seg) or (
                q.get("trading_symbol") and q["trading_symbol"] != p.symbol
            ):
                continue
            buy_avg = p.buy_value / p.buy_quantity if p.buy_quantity else 0
            sell_avg = p.sell_value / p.sell_quantity if p.sell_quantity else 0
            realised = min(p.buy_quantity, p.sell_quantity) * (sell_avg - buy_avg)
            rows.append(
                {
                    "trading_symbol": p.symbol,
                    "segment": seg,
                    "credit_quantity": p.buy_quantity,
                    "credit_price": round(buy_avg / 100, 2),
                    "debit_quantity": p.sell_quantity,
                    "debit_price": round(sell_avg / 100, 2),
                    "carry_forward_credit_quantity": 0,
                    "carry_forward_credit_price": 0,
                    "carry_forward_debit_quantity": 0,
                    "carry_forward_debit_price": 0,
                    "exchange": p.exchange,
                    "symbol_isin": "",
                    "quantity": p.quantity,
                    "product": p.product,
                    "net_carry_forward_quantity": 0,
                    "net_price": _r(p.average_price),
                    "net_carry_forward_price": 0,
                    "realised_pnl": round(realised / 100, 2),
                }
            )
        return self._ok({"positions": rows})

    async def candles(self, request: Request) -> Response:
        q = request.query_params
        interval = q.get("candle_interval", "")
        inst = self.by_groww_symbol.get(q.get("groww_symbol", ""))
        if inst is None or interval not in INTERVAL_SECONDS:
            return self._err("GA001", "Invalid groww_symbol or candle_interval")
        try:
            start, end = (
                dt.datetime.strptime(q[k], "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST)
                for k in ("start_time", "end_time")
            )
        except (KeyError, ValueError):
            return self._err("GA001", "start_time/end_time: yyyy-MM-dd HH:mm:ss")
        if (end - start).days > INTERVAL_MAX_DAYS[interval]:
            return self._err("GA001", f"range exceeds {INTERVAL_MAX_DAYS[interval]} days")
        oi = isinstance(inst, Option | Future)
        tf = INTERVAL_SECONDS[interval]
        rows = [
            [t.strftime("%Y-%m-%dT%H:%M:%S"), o, h, lo, c, v, i if oi else None]
            for t, o, h, lo, c, v, i in self.history(inst, tf, start, end, oi)
        ]
        return self._ok(
            {
                "candles": rows,
                "closing_price": rows[-1][4] if rows else None,
                "start_time": q["start_time"],
                "end_time": q["end_time"],
                "interval_in_minutes": tf // 60,
            }
        )

    # --- the feed: NATS over a websocket ---------------------------------------------------------
    def accept_conn(self, ws: WebSocket, token: str) -> NatsConn | None:
        if len(self.conns) >= self.max_connections:
            return None
        c = NatsConn(ws, token)
        self.conns.append(c)
        return c

    async def feed(self, ws: WebSocket) -> None:
        await ws.accept()
        nonce = secrets.token_urlsafe(16)
        self._client_ids += 1
        await ws.send_bytes(
            nats.info(
                {
                    "server_id": "NMANDIFAKEGROWW", "server_name": "mandi-fake-groww",
                    "version": "2.10.22", "proto": 1, "headers": True, "auth_required": True,
                    "max_payload": nats.MAX_PAYLOAD, "client_id": self._client_ids,
                    "client_ip": ws.client.host if ws.client else "", "nonce": nonce,
                }
            )
        )  # fmt: skip
        stream = nats.NatsStream(server=False)
        c: NatsConn | None = None
        sender: asyncio.Task[None] | None = None
        try:
            pending: list[nats.Op] = []
            async with asyncio.timeout(10):  # CONNECT first, as nats-server wants
                while not any(op[0] == nats.CONNECT for op in pending):
                    ops, error = stream.feed(await self._receive(ws))
                    if error:
                        raise ParseError(error)
                    pending += ops
            i = next(k for k, op in enumerate(pending) if op[0] == nats.CONNECT)
            access = self._authorize(pending[i][1], nonce.encode())
            if access is None:
                await ws.send_bytes(nats.err("Authorization Violation"))
                await ws.close()
                return
            c = self.accept_conn(ws, access)
            if c is None:
                await ws.send_bytes(nats.err("maximum connections exceeded"))
                await ws.close()
                return
            sender = asyncio.create_task(self.send_loop(c))
            self._commands(c, pending[i + 1 :])
            while True:
                ops, error = stream.feed(await self._receive(ws))
                self._commands(c, ops)
                if error:  # nats-server's answer to garbage: an error, then the door
                    await ws.send_bytes(nats.err("Unknown Protocol Operation"))
                    await ws.close()
                    break
        except (WebSocketDisconnect, RuntimeError, TimeoutError, ParseError):
            pass
        finally:
            if sender is not None:
                sender.cancel()
            if c is not None:
                self.drop_conn(c)

    async def _receive(self, ws: WebSocket) -> bytes:
        m = await ws.receive()
        if m.get("type") == "websocket.disconnect":
            raise WebSocketDisconnect(int(m.get("code") or 1000))
        if m.get("bytes") is not None:
            return bytes(m["bytes"])
        return str(m.get("text") or "").encode()

    def _authorize(self, opts: dict[str, Any], nonce: bytes) -> str | None:
        """The access token behind a CONNECT's feed token, when the token is alive and the
        nonce is signed by its key."""
        held = self.socket_tokens.get(str(opts.get("jwt") or ""))
        if held is None:
            return None
        key, access = held
        if access not in self.sessions or not _verify(key, nonce, str(opts.get("sig") or "")):
            return None
        return access

    def _put(self, c: Conn, item: bytes | None) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            c.queue.put_nowait(item)

    def _commands(self, c: NatsConn, ops: list[nats.Op]) -> None:
        for op in ops:
            kind = op[0]
            if kind == nats.PING:
                if not self.quiet():
                    self._put(c, nats.PONG_CMD)
            elif kind == nats.PONG:
                c.pongs += 1
                self.counts["pongs"] += 1
            elif kind == nats.SUB:
                self._subscribe(c, op[1], op[2])
            elif kind == nats.UNSUB:
                self._unsubscribe(c, op[1])
            elif kind == nats.PUB:
                self._put(c, nats.err(f"Permissions Violation for Publish to {op[1].decode()}"))

    def _subscribe(self, c: NatsConn, subject: bytes, sid: bytes) -> None:
        orders = {s.encode() for s in
                  (f"stocks_fo/order/updates.apex.{DEMO_SUBSCRIPTION}",
                   f"stocks/order/updates.apex.{DEMO_SUBSCRIPTION}")}  # fmt: skip
        if subject in orders:
            c.subs[subject] = sid
            return
        found = self.subjects.get(subject)
        if found is None:
            self._put(
                c, nats.err(f'Permissions Violation for Subscription to "{subject.decode()}"')
            )
            return
        token, what = found
        if token not in c.by_token and len(c.by_token) >= MAX_INSTRUMENTS:
            self._put(c, nats.err(f"subscription limit: {MAX_INSTRUMENTS} instruments"))
            return
        c.subs[subject] = sid
        c.by_token.setdefault(token, []).append((subject, sid, what))
        c.modes[token] = "sub"

    def _unsubscribe(self, c: NatsConn, sid: bytes) -> None:
        for subject, s in list(c.subs.items()):
            if s != sid:
                continue
            del c.subs[subject]
            found = self.subjects.get(subject)
            if found is None:
                continue
            token = found[0]
            left = [x for x in c.by_token.get(token, []) if x[1] != sid]
            if left:
                c.by_token[token] = left
            else:
                c.by_token.pop(token, None)
                c.modes.pop(token, None)

    def encode(self, conn: Conn, tokens: list[int]) -> list[bytes | str]:
        if not isinstance(conn, NatsConn):
            return []
        out: list[bytes | str] = []
        for tok in tokens:
            t = self.last.get(tok)
            if t is None:
                continue
            ts_ms = t.ts_event // NS_PER_MS
            for subject, sid, what in conn.by_token.get(tok, ()):
                out.append(nats.msg(subject, sid, self._payload(tok, what, ts_ms)))
        return out

    def _payload(self, tok: int, what: str, ts_ms: int) -> bytes:
        t = self.last[tok]
        ex = _EXCHANGE_CODE.get(t.exchange, 1)
        if what == "index":
            return frames.encode_index(t.price, ts_ms, exchange=ex)
        seg = _SEGMENT_CODE[SEGMENT_OF_CODE[tok & 0x7F][1]]
        if what == "book":
            step = self.instruments[tok].tick_size
            bids = [(max(t.bid - k * step, 0), t.bid_qty) for k in range(5)] if t.bid else []
            asks = [(t.ask + k * step, t.ask_qty) for k in range(5)] if t.ask else []
            return frames.encode_book(bids, asks, ts_ms, exchange=ex, segment=seg)
        o = self.day_open[tok]
        ohlc = (o, self.day_high[tok], self.day_low[tok], o)
        return frames.encode_price(t.price, t.volume, t.oi, ts_ms, ohlc, t.bid_qty * 5,
                                   t.ask_qty * 5, exchange=ex, segment=seg)  # fmt: skip


class FakeGrowwServer(FakeServer):
    def __init__(self, fake: FakeGroww | None = None, host: str = "127.0.0.1", port: int = 0):
        super().__init__(fake or FakeGroww(), host, port)


__all__ = [
    "DEMO_API_KEY",
    "DEMO_API_SECRET",
    "DEMO_SUBSCRIPTION",
    "DEMO_TOTP_SECRET",
    "DEMO_UCC",
    "FakeGroww",
    "FakeGrowwServer",
]
