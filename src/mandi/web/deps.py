"""FastAPI dependencies the routers share: the API core, the caller (and its scope), the rate
limits, and how a call reaches the core (on the loop, in a worker thread, or relayed).

Routers never build anything: the application (:func:`mandi.web.app.create_app`) puts the API
core, the hub and the security state on ``app.state``, and these dependencies hand them over.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from mandi.web.api import DB_METHODS, ApiError, MandiAPI
from mandi.web.security import CSRF_HEADER, SESSION_COOKIE, AuthError, Principal, Security

T = TypeVar("T")


def get_api(request: Request) -> MandiAPI:
    """The node's API core."""
    api: MandiAPI = request.app.state.api
    return api


def get_security(request: Request) -> Security:
    security: Security = request.app.state.security
    return security


Api = Annotated[MandiAPI, Depends(get_api)]
Sec = Annotated[Security, Depends(get_security)]


def caller(request: Request) -> Principal:
    """Who is calling (bearer token or session cookie); 401 when nobody."""
    return get_security(request).authenticate(
        request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE)
    )


def _reader(request: Request) -> Principal:
    p = caller(request)
    Security.require(p, "read")
    return p


def _trader(request: Request) -> Principal:
    p = caller(request)
    security = get_security(request)
    security.require(p, "trade")
    if p.via == "session":  # cookie auth: same origin and the CSRF header
        if not security.origin_allowed(request.headers.get("origin"), request.headers.get("host")):
            raise AuthError(403, "bad_origin", "cross-origin request refused")
        security.check_csrf(p, request.headers.get(CSRF_HEADER))
    return p


Read = Annotated[Principal, Depends(_reader)]
Trade = Annotated[Principal, Depends(_trader)]


def _limited(wait: float, what: str) -> None:
    if wait:
        raise ApiError(
            429,
            "rate_limited",
            f"too many {what}; retry in {wait:.1f} s",
            retry_after_s=round(wait, 1),
        )


def _order_rate(p: Trade, security: Sec) -> Principal:
    """A trade caller within ``web.orders_per_minute`` (orders and cancels, per token)."""
    _limited(security.order_limit.hit(p.token_id), "orders")
    return p


def _command_rate(p: Trade, security: Sec) -> Principal:
    """A trade caller within ``web.commands_per_minute`` (halt/resume, per token)."""
    _limited(security.command_limit.hit(p.token_id), "trading commands")
    return p


OrderCaller = Annotated[Principal, Depends(_order_rate)]
CommandCaller = Annotated[Principal, Depends(_command_rate)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "?"


async def read_db(api: MandiAPI, name: str, *args: Any) -> Any:
    """An API core read: SQLite-only methods in a worker thread, the rest on the loop (they read
    the kernel, which lives on the loop)."""
    fn = getattr(api, name)
    if name in DB_METHODS:
        return await run_in_threadpool(fn, *args)
    return fn(*args)


async def command(api: MandiAPI, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """A trading call. In ``mandi run`` it runs on the loop, beside the kernel it drives; on the
    distributed gateway it waits for the strategy service's answer (up to its timeout), so it
    runs in a worker thread there and the loop keeps serving."""
    if not api.relayed:
        return fn(*args, **kw)
    ctx = contextvars.copy_context()  # the authenticated caller rides along
    return await run_in_threadpool(ctx.run, fn, *args, **kw)


Limit = Annotated[int, Query(ge=1, le=5000, description="How many rows (newest first).")]
TokenQ = Annotated[int, Query(ge=0, le=2**40, description="Instrument token.")]
