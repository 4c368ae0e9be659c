"""System and auth routes: ``/health``, ``/metrics``, ``/api/v1/status`` and the dashboard's
session (``/api/v1/auth/*``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from mandi.web.api import ApiError
from mandi.web.deps import Api, Read, Sec, caller, client_address
from mandi.web.models import HealthOut, LoginBody, LoginOut, LogoutOut, SessionOut, StatusOut
from mandi.web.security import SESSION_COOKIE, AuthError

router = APIRouter()


@router.get(
    "/health",
    tags=["system"],
    summary="Liveness (no auth; no secrets)",
    response_model=HealthOut,
)
async def health(api: Api) -> Any:
    return api.health()


@router.get(
    "/metrics",
    tags=["system"],
    response_class=PlainTextResponse,
    summary="Prometheus metrics (read scope)",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(p: Read, api: Api, request: Request) -> PlainTextResponse:
    text = api.metrics_text()
    counts = request.app.state.http_counts
    text += "".join(
        f'mandi_http_responses_total{{class="{k}"}} {v}\n' for k, v in sorted(counts.items())
    )
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


@router.get(
    "/api/v1/status",
    tags=["system"],
    summary="System status: ticks/s, queues, lags, drops, rejects, risk state, WebSocket fan-out",
    response_model=StatusOut,
    response_model_exclude_unset=True,
)
async def status(p: Read, api: Api) -> Any:
    return api.status()


@router.post(
    "/api/v1/auth/login",
    tags=["auth"],
    summary="Exchange a token for a dashboard session cookie (rate-limited)",
    response_model=LoginOut,
)
async def login(body: LoginBody, request: Request, response: Response, security: Sec) -> Any:
    wait = security.login_limit.hit(client_address(request))
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


@router.post(
    "/api/v1/auth/logout",
    tags=["auth"],
    summary="End the dashboard session",
    response_model=LogoutOut,
)
async def logout(request: Request, response: Response, security: Sec) -> Any:
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        security.sessions.drop(sid)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"logged_out": True}


@router.get(
    "/api/v1/auth/session",
    tags=["auth"],
    summary="Who am I: authenticated or not (always 200), scope and the CSRF token",
    response_model=SessionOut,
    response_model_exclude_unset=True,
)
async def session(request: Request) -> Any:
    try:
        p = caller(request)
    except AuthError:
        return {"authenticated": False}
    out: dict[str, Any] = {"authenticated": True, **p.public()}
    if p.via == "session":
        out["csrf_token"] = p.csrf
    return out
