"""The FastAPI application: REST under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``, docs at
``/api/docs``), the seed's ``/api/place_order`` and ``/api/positions``, ``/health``, Prometheus
``/metrics``, the WebSocket ``/ws`` and the dashboard at ``/``.

The routes live in routers by concern (:mod:`mandi.web.routers`: system/auth, market data,
chains, trading, backtests). Each is thin: a dependency checks the caller
(:mod:`mandi.web.deps`, :mod:`mandi.web.security`), the handler calls one method of the API core
(:class:`~mandi.web.api.MandiAPI`) and returns its value, validated against a response model
(:mod:`mandi.web.models`) so the OpenAPI schema documents every response. This module only
assembles them: middleware (request-body cap, security headers), errors as JSON, the WebSocket
(:mod:`mandi.web.ws`) and the dashboard. Handlers are ``async`` so that kernel reads run on the
node's event-loop thread; pure SQLite reads go to a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pathlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
)
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mandi.logs import printable
from mandi.web import routers
from mandi.web.api import ApiError, MandiAPI
from mandi.web.hub import Hub
from mandi.web.models import ErrorOut
from mandi.web.security import SESSION_COOKIE, AuthError, Security, redact_access_log
from mandi.web.ws import serve_ws

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


def create_app(api: MandiAPI, hub: Hub, security: Security) -> FastAPI:
    """The application for one node: the routers of :mod:`mandi.web.routers` over ``api``, the
    WebSocket over ``hub``, the dashboard; errors as JSON; body cap and security headers."""
    app = FastAPI(
        title="mandi",
        version="1",
        description=DESCRIPTION,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.api, app.state.hub, app.state.security = api, hub, security
    redact_access_log()  # web.access_log never shows a login link's code
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

    app.add_middleware(BodyLimit, max_bytes=security.max_body_bytes, counts=http_counts)

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
        log.exception("unhandled error on %s %s", request.method, printable(request.url.path))
        return JSONResponse(
            {"error": "internal_error", "message": "internal error (logged)"}, status_code=500
        )

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorOut, "description": text} for code, text in ERROR_RESPONSES.items()
    }
    for router in routers.ALL:
        app.include_router(router, responses=errors)

    # --- WebSocket ----------------------------------------------------------------------------
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await serve_ws(websocket, hub, security)

    # --- the dashboard ------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        code = request.query_params.get("token")
        if code is not None:  # a one-time login link: exchanged once, then out of the URL
            return await redeem_login_link(request, security, code)
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


async def redeem_login_link(request: Request, security: Security, code: str) -> Response:
    """``GET /?token=CODE``: a valid one-time code becomes a session cookie and a redirect to
    ``/`` (the code leaves the address bar and the history entry is replaced); a used, expired
    or unknown one redirects to ``/#login-link-invalid`` (the dashboard says so). Rate-limited
    like the login route; the code is never logged or echoed."""
    headers = {"Cache-Control": "no-store"}
    addr = request.client.host if request.client else "?"
    info = None
    if 0 < len(code) <= 100 and not security.login_limit.hit(addr):
        info = await run_in_threadpool(security.tokens.take_link, code)
    if info is None:
        security.failures += 1
        return RedirectResponse("/#login-link-invalid", status_code=303, headers=headers)
    sid, _ = security.sessions.create(info)
    response = RedirectResponse("/", status_code=303, headers=headers)
    response.set_cookie(
        SESSION_COOKIE,
        sid,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
        max_age=int(security.sessions.ttl_s),
    )
    log.info("login link used from %s (token %s)", printable(addr), info.id)
    return response


ERROR_RESPONSES = {
    401: "Not authenticated: no token, or a wrong one",
    403: "The token lacks the scope (or a cookie request lacks its CSRF header / origin)",
    404: "No such thing (the field says which)",
    413: "The request body is larger than web.max_body_bytes",
    422: "Bad input: the field is named, the value never echoed",
    429: "Rate-limited: retry after retry_after_s",
    503: "Trading or the store is not available in this node",
}


class BodyLimit:
    """ASGI middleware: a request body larger than ``max_bytes`` is refused with 413 before it
    is read (by its Content-Length) or as soon as the streamed bytes pass the cap (a chunked
    body; the application then sees the client as gone and whatever it answers is dropped), so
    no request can make the server hold more than the cap in memory."""

    def __init__(self, app: Any, max_bytes: int, counts: Counter[str]) -> None:
        self.app, self.max_bytes, self.counts = app, max_bytes, counts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        try:
            too_long = length is not None and int(length) > self.max_bytes
        except ValueError:
            too_long = True
        if too_long:
            await self._drain(receive)
            await self._refuse(send)
            return
        seen = 0
        refused = started = False

        async def capped_receive() -> Any:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    if not started:
                        if msg.get("more_body"):
                            await self._drain(receive)
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return msg

        async def watched_send(msg: Any) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out instead
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        await self.app(scope, capped_receive, watched_send)

    async def _drain(self, receive: Any, limit: int = 16 << 20, seconds: float = 2.0) -> None:
        """Read and drop what the client is still sending of a refused body — at most ``limit``
        bytes for ``seconds`` (nothing is kept) — so that the connection closes cleanly: closed
        with unread data, it is reset and the client may lose the 413 it was sent."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while limit > 0:
            left = end - loop.time()
            if left <= 0:
                return
            try:
                msg = await asyncio.wait_for(receive(), left)
            except TimeoutError:
                return
            if msg["type"] != "http.request":
                return
            limit -= len(msg.get("body", b""))
            if not msg.get("more_body"):
                return

    async def _refuse(self, send: Any) -> None:
        self.counts["4xx"] += 1
        body = json.dumps(
            {
                "error": "body_too_large",
                "message": f"the request body is larger than {self.max_bytes} bytes "
                "(web.max_body_bytes)",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


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
