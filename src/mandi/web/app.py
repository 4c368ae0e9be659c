"""The FastAPI application: REST under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``, docs at
``/api/docs``), the seed's ``/api/place_order`` and ``/api/positions``, ``/health``, Prometheus
``/metrics``, the WebSocket ``/ws`` and the dashboard at ``/``.

Route handlers are thin: they check the caller (:mod:`mandi.web.security`), call one
:class:`~mandi.web.api.MandiAPI` method and map :class:`~mandi.web.api.ApiError` to HTTP. They
are ``async`` so that kernel reads run on the node's event-loop thread; pure SQLite reads go to a
worker thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import pathlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request, Response, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketDisconnect

from mandi.web.api import DB_METHODS, ApiError, MandiAPI
from mandi.web.hub import MAX_MESSAGE_BYTES, Client, Hub
from mandi.web.security import (
    CSRF_HEADER,
    SESSION_COOKIE,
    AuthError,
    Principal,
    RateLimiter,
    Security,
)

log = logging.getLogger(__name__)

WEB_DIR = pathlib.Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
UI_DIR = WEB_DIR / "ui"
CHART_JS = ("lightweight-charts", "dist", "lightweight-charts.standalone.production.js")

DESCRIPTION = """
The REST API of a running `mandi run` node. **Units**: prices and money in **rupees** (JSON
numbers); times as `time` (ISO 8601, IST offset) and `t` (Unix seconds, UTC); quantities in
shares; option-chain OI and volume in contracts. **Auth**: `Authorization: Bearer <token>`
(create one with `mandi token create --scope read|trade`) or the dashboard's session cookie.
`read` tokens may call every GET and the WebSocket; state changes (orders, cancel, halt, resume)
need a `trade` token. Errors are JSON: `{"error": code, "message": ..., "field": ...}`.
"""

Limit = Annotated[int, Query(ge=1, le=5000, description="How many rows (newest first).")]
TokenQ = Annotated[int, Query(ge=0, le=2**40, description="Instrument token.")]


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=200, description="An API token (secret).")


class OrderBody(BaseModel):
    """A manual order through the risk manager (paper or live, as ``run.mode`` says)."""

    model_config = ConfigDict(extra="forbid")
    side: Literal["BUY", "SELL"]
    symbol: str | None = Field(
        None, min_length=1, max_length=64, description="Trading symbol, e.g. NIFTY2641424200CE."
    )
    token: int | None = Field(
        None, ge=0, le=2**40, description="Instrument token (instead of symbol)."
    )
    exchange: Literal["NSE", "BSE"] | None = None
    quantity: int | None = Field(None, gt=0, le=10_000_000, description="Shares (units).")
    lots: int | None = Field(None, gt=0, le=100_000, description="Lots (instead of quantity).")
    price: float | None = Field(
        None, ge=0, le=1e8, description="Limit price in rupees; omit or 0 for a market order."
    )
    request_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Idempotency key: the same id never places a second order.",
    )


class SeedOrderBody(BaseModel):
    """The seed's ``/api/place_order`` body (``action``/``qty`` accepted as aliases)."""

    model_config = ConfigDict(extra="ignore")
    side: Literal["BUY", "SELL"] | None = None
    action: Literal["BUY", "SELL"] | None = None
    symbol: str | None = Field(None, min_length=1, max_length=64)
    token: int | None = Field(None, ge=0, le=2**40)
    exchange: Literal["NSE", "BSE"] | None = None
    quantity: int | None = Field(None, gt=0, le=10_000_000)
    qty: int | None = Field(None, gt=0, le=10_000_000)
    lots: int | None = Field(None, gt=0, le=100_000)
    price: float | None = Field(None, ge=0, le=1e8)
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=200)


def _caller(request: Request) -> Principal:
    security: Security = request.app.state.security
    return security.authenticate(
        request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE)
    )


def _reader(request: Request) -> Principal:
    p = _caller(request)
    Security.require(p, "read")
    return p


def _trader(request: Request) -> Principal:
    p = _caller(request)
    security: Security = request.app.state.security
    security.require(p, "trade")
    if p.via == "session":  # cookie auth: same origin and the CSRF header
        if not security.origin_allowed(request.headers.get("origin"), request.headers.get("host")):
            raise AuthError(403, "bad_origin", "cross-origin request refused")
        security.check_csrf(p, request.headers.get(CSRF_HEADER))
    return p


Read = Annotated[Principal, Depends(_reader)]
Trade = Annotated[Principal, Depends(_trader)]


def create_app(api: MandiAPI, hub: Hub, security: Security) -> FastAPI:
    """The application for one node (see the module docstring)."""
    app = FastAPI(
        title="mandi",
        version="1",
        description=DESCRIPTION,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.api, app.state.hub, app.state.security = api, hub, security
    http_counts: Counter[str] = Counter()
    app.state.http_counts = http_counts

    if security.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(security.cors_origins),
            allow_credentials=False,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        )
        if request.url.path.startswith("/api"):
            h.setdefault("Cache-Control", "no-store")
        http_counts[f"{response.status_code // 100}xx"] += 1
        return response

    # --- errors: JSON, naming the field, never echoing the input -----------------------------
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, e: AuthError) -> JSONResponse:
        hdr = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse({"error": e.code, "message": str(e)}, status_code=e.status, headers=hdr)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ())),
                "message": err.get("msg", "invalid"),
            }
            for err in e.errors()
        ]
        first = errors[0] if errors else {"field": "?", "message": "invalid"}
        return JSONResponse(
            {
                "error": "invalid_parameter",
                "message": f"{first['field']}: {first['message']}",
                "field": first["field"],
                "errors": errors,
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return JSONResponse(
            {"error": code, "message": str(e.detail)},
            status_code=e.status_code,
            headers=getattr(e, "headers", None),
        )

    @app.exception_handler(Exception)
    async def crashed(request: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal_error", "message": "internal error (logged)"}, status_code=500
        )

    def limited(p: Principal, limiter: RateLimiter) -> None:
        wait = limiter.hit(p.token_id)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"too many orders; retry in {wait:.1f} s",
                retry_after_s=round(wait, 1),
            )

    async def call(name: str, *args: Any, **kw: Any) -> Any:
        fn = getattr(api, name)
        if name in DB_METHODS:
            return await run_in_threadpool(fn, *args, **kw)
        return fn(*args, **kw)

    async def command(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """A trading call. In ``mandi run`` it runs on the loop, beside the kernel it drives; on
        the distributed gateway it waits for the strategy service's answer (up to its
        timeout), so it runs in a worker thread there and the loop keeps serving."""
        if not api.relayed:
            return fn(*args, **kw)
        ctx = contextvars.copy_context()  # the authenticated caller rides along
        return await run_in_threadpool(ctx.run, fn, *args, **kw)

    # --- public -------------------------------------------------------------------------------
    @app.get("/health", tags=["system"], summary="Liveness (no auth; no secrets)")
    async def health() -> dict[str, Any]:
        return api.health()

    @app.get(
        "/metrics",
        tags=["system"],
        response_class=PlainTextResponse,
        summary="Prometheus metrics (read scope)",
    )
    async def metrics(p: Read) -> PlainTextResponse:
        text = api.metrics_text()
        text += "".join(
            f'mandi_http_responses_total{{class="{k}"}} {v}\n'
            for k, v in sorted(http_counts.items())
        )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # --- auth ---------------------------------------------------------------------------------
    @app.post(
        "/api/v1/auth/login",
        tags=["auth"],
        summary="Exchange a token for a dashboard session cookie (rate-limited)",
    )
    async def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
        addr = request.client.host if request.client else "?"
        wait = security.login_limit.hit(addr)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"too many login attempts; retry in {wait:.0f} s",
                retry_after_s=round(wait, 1),
            )
        sid, p = security.login(body.token)
        response.set_cookie(
            SESSION_COOKIE,
            sid,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
            max_age=int(security.sessions.ttl_s),
        )
        return {**p.public(), "csrf_token": p.csrf}

    @app.post("/api/v1/auth/logout", tags=["auth"], summary="End the dashboard session")
    async def logout(request: Request, response: Response) -> dict[str, Any]:
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            security.sessions.drop(sid)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return {"logged_out": True}

    @app.get(
        "/api/v1/auth/session",
        tags=["auth"],
        summary="Who am I: authenticated or not (always 200), scope and the CSRF token",
    )
    async def session(request: Request) -> dict[str, Any]:
        try:
            p = _caller(request)
        except AuthError:
            return {"authenticated": False}
        out: dict[str, Any] = {"authenticated": True, **p.public()}
        if p.via == "session":
            out["csrf_token"] = p.csrf
        return out

    # --- reads --------------------------------------------------------------------------------
    @app.get(
        "/api/v1/status",
        tags=["system"],
        summary="System status: ticks/s, queues, lags, "
        "drops, rejects, risk state, WebSocket fan-out",
    )
    async def status(p: Read) -> dict[str, Any]:
        return api.status()

    @app.get("/api/v1/instruments", tags=["market"], summary="Instruments (filterable)")
    async def instruments(
        p: Read,
        exchange: Literal["NSE", "BSE"] | None = None,
        kind: Literal["index", "equity", "future", "option"] | None = None,
        underlying: Annotated[str | None, Query(max_length=20)] = None,
        expiry: Annotated[str | None, Query(max_length=10, description="YYYY-MM-DD")] = None,
        q: Annotated[str | None, Query(max_length=40)] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 200,
        offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
    ) -> dict[str, Any]:
        return api.instruments(exchange, kind, underlying, expiry, q, limit, offset)

    @app.get("/api/v1/instruments/{token}", tags=["market"], summary="One instrument")
    async def instrument(p: Read, token: Annotated[int, Path(ge=0, le=2**40)]) -> Any:
        from mandi.web import serialize as ser

        return ser.instrument(api.instrument(token, field="path"))

    @app.get(
        "/api/v1/underlyings",
        tags=["market"],
        summary="Underlyings with option chains and their expiries",
    )
    async def underlyings(p: Read) -> list[dict[str, Any]]:
        return api.underlyings()

    @app.get(
        "/api/v1/overview/{underlying}",
        tags=["market"],
        summary="Info bar: price, change vs previous close, PCR, India VIX, ITM delta %",
    )
    async def overview(p: Read, underlying: str) -> dict[str, Any]:
        return api.overview(underlying[:20])

    @app.get("/api/v1/candles", tags=["market"], summary="Confirmed candles (oldest first)")
    async def candles(
        p: Read,
        token: TokenQ,
        timeframe: Annotated[int, Query(ge=1, le=86400, description="Seconds")] = 60,
        limit: Limit = 300,
        before: Annotated[str | None, Query(max_length=40)] = None,
    ) -> Any:
        return await call("candles", token, timeframe, limit, before)

    @app.get(
        "/api/v1/indicators",
        tags=["market"],
        summary="Confirmed indicator values per name (oldest first)",
    )
    async def indicators(
        p: Read,
        token: TokenQ,
        timeframe: Annotated[int, Query(ge=1, le=86400)] = 60,
        names: Annotated[
            list[str] | None,
            Query(max_length=40, description="e.g. SMA_9 (repeat or comma-separate)"),
        ] = None,
        limit: Limit = 300,
        before: Annotated[str | None, Query(max_length=40)] = None,
    ) -> Any:
        flat = [n for x in (names or []) for n in x.split(",") if n] or None
        return await call("indicators", token, timeframe, flat, limit, before)

    @app.get(
        "/api/v1/chain/{underlying}",
        tags=["options"],
        summary="Option chain table with OI, OI % change, IV, Greeks, PCR, max pain",
    )
    async def chain(
        p: Read,
        underlying: str,
        expiry: Annotated[str | None, Query(max_length=10, description="YYYY-MM-DD")] = None,
    ) -> Any:
        return api.chain(underlying[:20], expiry)

    @app.get("/api/v1/signals", tags=["trading"], summary="Recent signals (newest first)")
    async def signals(
        p: Read, limit: Limit = 50, strategy: Annotated[str | None, Query(max_length=64)] = None
    ) -> Any:
        return api.signals(limit, strategy)

    @app.get(
        "/api/v1/alpha",
        tags=["trading"],
        summary="The latest signal as the alpha card (signal, confidence, probabilities)",
    )
    async def alpha(p: Read) -> Any:
        return api.alpha()

    @app.get("/api/v1/orders", tags=["trading"], summary="Orders (newest first)")
    async def orders(
        p: Read,
        limit: Limit = 100,
        status: Literal[
            "OPEN",
            "NEW",
            "SUBMITTED",
            "ACKED",
            "PARTIALLY_FILLED",
            "FILLED",
            "CANCELLED",
            "REJECTED",
            "UNKNOWN",
        ]
        | None = None,
    ) -> Any:
        return api.orders(status, limit)

    @app.get("/api/v1/positions", tags=["trading"], summary="Positions with live MTM")
    async def positions(
        p: Read, status: Literal["open", "closed", "all"] = "open", limit: Limit = 100
    ) -> Any:
        return api.positions(status, limit)

    @app.get("/api/v1/pnl", tags=["trading"], summary="Today's P&L (realized, unrealized)")
    async def pnl(p: Read) -> Any:
        return await command(api.pnl)

    @app.get("/api/v1/performance/daily", tags=["trading"], summary="Daily performance rows")
    async def daily(p: Read, days: Annotated[int, Query(ge=1, le=3650)] = 30) -> Any:
        return api.daily_performance(days)

    @app.get("/api/v1/trades", tags=["trading"], summary="Closed trades (newest first)")
    async def trades(p: Read, limit: Limit = 100) -> Any:
        return await call("trades", limit)

    @app.get(
        "/api/v1/risk",
        tags=["trading"],
        summary="Risk state: HALTED latch, denials by rule, recent denials",
    )
    async def risk(p: Read) -> Any:
        return api.risk()

    # --- state changes (trade scope) ----------------------------------------------------------
    async def place(p: Principal, body: dict[str, Any]) -> dict[str, Any]:
        limited(p, security.order_limit)
        out: dict[str, Any] = await command(api.place_order, **body)
        return out

    @app.post(
        "/api/v1/orders",
        tags=["trading"],
        status_code=201,
        summary="Place an order through the risk manager (trade scope; rate-limited)",
        responses={
            409: {"description": "Denied by the risk manager: the body has `rule` and `reason`"}
        },
    )
    async def place_order(body: OrderBody, p: Trade) -> Any:
        return await place(p, body.model_dump())

    @app.delete(
        "/api/v1/orders/{order_id}", tags=["trading"], summary="Cancel an open order (trade scope)"
    )
    async def cancel_order(p: Trade, order_id: str) -> Any:
        limited(p, security.order_limit)
        return await command(api.cancel_order, order_id[:80])

    @app.post(
        "/api/v1/trading/halt",
        tags=["trading"],
        summary="Set the HALTED latch: no new entries (trade scope)",
    )
    async def halt(p: Trade, body: ReasonBody | None = None) -> Any:
        return await command(api.halt, body.reason if body else "")

    @app.post(
        "/api/v1/trading/resume",
        tags=["trading"],
        summary="Clear the HALTED latch by hand (trade scope)",
    )
    async def resume(p: Trade, body: ReasonBody | None = None) -> Any:
        return await command(api.resume, body.reason if body else "")

    # --- the seed's routes --------------------------------------------------------------------
    @app.post(
        "/api/place_order",
        tags=["seed"],
        summary="Seed alias of POST /api/v1/orders (adds success/message)",
    )
    async def seed_place(body: SeedOrderBody, p: Trade) -> JSONResponse:
        side = body.side or body.action
        if side is None:
            raise ApiError(
                422,
                "invalid_parameter",
                "body.side: give side (or action) BUY or SELL",
                "body.side",
            )
        args = {
            "side": side,
            "symbol": body.symbol,
            "token": body.token,
            "exchange": body.exchange,
            "quantity": body.quantity or body.qty,
            "lots": body.lots,
            "price": body.price,
            "request_id": body.request_id,
        }
        try:
            out = await place(p, args)
        except ApiError as e:
            return JSONResponse(
                {"success": False, "message": str(e), **e.body()}, status_code=e.status
            )
        return JSONResponse({"success": True, "message": f"order {out['status'].lower()}", **out})

    @app.get("/api/positions", tags=["seed"], summary="Seed alias: open positions with MTM")
    async def seed_positions(p: Read) -> dict[str, Any]:
        return {"positions": api.positions("open")}

    # --- WebSocket ----------------------------------------------------------------------------
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await serve_ws(websocket, hub, security)

    # --- the dashboard ------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    @app.get("/vendor/lightweight-charts.js", include_in_schema=False)
    async def chart_js() -> Response:
        path = chart_library()
        if path is None:
            return PlainTextResponse(
                "// lightweight-charts is not installed: run `make ui` (npm ci in "
                "src/mandi/web/ui)\n",
                status_code=404,
                media_type="text/javascript",
            )
        return FileResponse(
            path, media_type="text/javascript", headers={"Cache-Control": "max-age=3600"}
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def chart_library() -> pathlib.Path | None:
    """The installed lightweight-charts bundle (``src/mandi/web/ui/node_modules`` by ``make ui``,
    or ``MANDI_UI_NODE_MODULES``)."""
    roots = [os.environ.get("MANDI_UI_NODE_MODULES", ""), str(UI_DIR / "node_modules")]
    for root in roots:
        if root:
            p = pathlib.Path(root, *CHART_JS)
            if p.is_file():
                return p
    return None


async def serve_ws(websocket: WebSocket, hub: Hub, security: Security) -> None:
    """One WebSocket connection: origin and auth checks, then the subscribe protocol."""
    headers = websocket.headers
    if not security.origin_allowed(headers.get("origin"), headers.get("host")):
        await websocket.close(code=1008, reason="origin not allowed")
        return
    principal: Principal | None = None
    try:
        principal = security.authenticate(
            headers.get("authorization"), websocket.cookies.get(SESSION_COOKIE)
        )
    except AuthError as e:
        if headers.get("authorization"):  # a bad header: refuse the handshake
            await websocket.close(code=1008, reason=e.code)
            return
    await websocket.accept()

    async def close(code: int, reason: str) -> None:
        await websocket.close(code=code, reason=reason)

    client = Client(send=websocket.send_text, close=close)
    if not hub.add(client):
        await websocket.close(code=1013, reason="too many clients")
        return
    if principal is not None:
        client.scope, client.name = principal.scope, principal.token_id
        hub.hello(client)
    else:
        hub.error(
            client,
            "not_authenticated",
            'send {"op": "auth", "token": "..."} within 10 s (or log in to the dashboard)',
        )
    deadline = time.monotonic() + 10.0
    limiter = RateLimiter(50, 1.0)
    failures = 0
    try:
        while not client.closed:
            timeout = None if principal is not None else max(0.0, deadline - time.monotonic())
            try:
                msg = await asyncio.wait_for(websocket.receive(), timeout)
            except TimeoutError:
                await websocket.close(code=4401, reason="authentication timeout")
                break
            if msg["type"] == "websocket.disconnect":
                break
            text = msg.get("text")
            if text is None:
                hub.error(client, "bad_message", "send JSON text frames")
                continue
            if len(text) > MAX_MESSAGE_BYTES:
                hub.error(client, "bad_message", f"messages are at most {MAX_MESSAGE_BYTES} bytes")
                continue
            if limiter.hit("m"):
                hub.error(client, "rate_limited", "more than 50 messages per second")
                continue
            try:
                obj = json.loads(text)
            except ValueError:
                hub.error(client, "bad_json", "the message is not valid JSON")
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
                hub.error(
                    client,
                    "bad_message",
                    'a message is an object with "op": subscribe | unsubscribe | ping | auth',
                )
                continue
            op = obj["op"]
            if op == "auth":
                tok = obj.get("token")
                if principal is not None:
                    hub.error(client, "already_authenticated", "this connection is logged in")
                    continue
                addr = websocket.client.host if websocket.client else "?"
                if (
                    not isinstance(tok, str)
                    or not tok
                    or len(tok) > 200
                    or security.login_limit.hit(addr)
                ):
                    failures += 1
                    hub.error(
                        client, "invalid_token", "the token is not valid (or too many attempts)"
                    )
                else:
                    info = security.tokens.verify(tok)
                    if info is None:
                        failures += 1
                        security.failures += 1
                        hub.error(client, "invalid_token", "the token is not valid")
                    else:
                        principal = Principal(info.id, info.name, info.scope, "message")
                        client.scope, client.name = info.scope, info.id
                        hub.hello(client)
                if failures >= 3:
                    await asyncio.sleep(0.2)
                    await websocket.close(code=4401, reason="authentication failed")
                    break
                continue
            if principal is None:
                hub.error(
                    client,
                    "not_authenticated",
                    'authenticate first: {"op": "auth", "token": "..."}',
                )
                continue
            if op == "ping":
                hub.send_direct(client, hub.encode_type("pong"))
            elif op in ("subscribe", "unsubscribe"):
                chans = obj.get("channels")
                if isinstance(chans, str):
                    chans = [chans]
                if (
                    not isinstance(chans, list)
                    or not chans
                    or not all(isinstance(c, str) for c in chans)
                    or len(chans) > 200
                ):
                    hub.error(
                        client, "bad_message", '"channels" must be a list of 1-200 channel names'
                    )
                    continue
                if op == "subscribe":
                    ok, errors = hub.subscribe(client, chans)
                    for err in errors:
                        hub.error(client, "bad_channel", err["message"], channel=err["channel"])
                    if ok:
                        hub.send_direct(client, hub.encode_type("subscribed", channels=ok))
                else:
                    done = hub.unsubscribe(client, chans)
                    hub.send_direct(client, hub.encode_type("unsubscribed", channels=done))
            else:
                hub.error(
                    client,
                    "unknown_op",
                    f"unknown op {op[:40]!r}; use subscribe, unsubscribe, ping or auth",
                )
    except WebSocketDisconnect:
        pass
    except RuntimeError:  # the socket closed under us
        pass
    finally:
        hub.remove(client)
