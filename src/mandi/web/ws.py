"""The ``/ws`` endpoint: authentication before anything, then the subscribe protocol of
:mod:`mandi.web.hub`.

A socket that did not authenticate on the handshake (``Authorization`` header or the session
cookie) is a *pending* socket: it gets one challenge (``{"type": "error", "error":
"not_authenticated"}``) and must send ``{"op": "auth", "token": "..."}`` within
``web.ws_auth_timeout_s``. Until then it receives nothing else — no snapshot, no metrics, no
channel — and holds no client slot of the hub: pending sockets are capped per client address
(``web.ws_unauth_per_address``) and in total (``web.ws_unauth_max``), separately from
``web.max_clients``, so unauthenticated sockets can never lock an authenticated dashboard out.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from mandi.web.hub import MAX_MESSAGE_BYTES, Client, Hub
from mandi.web.security import SESSION_COOKIE, AuthError, Principal, RateLimiter, Security

AUTH_FAILURES = 3  # wrong tokens on one socket, then it is closed


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
    if principal is None:
        addr = websocket.client.host if websocket.client else "?"
        if not hub.admit_pending(addr):  # refused before the handshake completes (HTTP 403)
            await websocket.close(code=1013, reason="too many unauthenticated connections")
            return
        try:
            await websocket.accept()
            principal = await _authenticate(websocket, hub, security, addr)
        except (WebSocketDisconnect, RuntimeError):
            principal = None
        finally:
            hub.release_pending(addr)
        if principal is None:
            return
    else:
        await websocket.accept()
    await _serve(websocket, hub, principal)


async def _authenticate(
    websocket: WebSocket, hub: Hub, security: Security, addr: str
) -> Principal | None:
    """The challenge: only ``auth`` messages count, until the deadline; None when the socket was
    closed (timeout, too many failures, or the client left)."""

    async def error(code: str, message: str) -> None:
        hub.errors_sent += 1
        await websocket.send_text(hub.encode_type("error", error=code, message=message))

    timeout_s = hub.cfg.ws_auth_timeout_s
    await error(
        "not_authenticated",
        f'send {{"op": "auth", "token": "..."}} within {timeout_s:g} s '
        "(or log in to the dashboard)",
    )
    deadline = time.monotonic() + timeout_s
    failures = 0
    while True:
        try:
            msg = await asyncio.wait_for(websocket.receive(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            hub.auth_timeouts += 1
            await websocket.close(code=4401, reason="authentication timeout")
            return None
        if msg["type"] == "websocket.disconnect":
            return None
        obj = _object(msg.get("text"))
        if obj is None or obj.get("op") != "auth":
            failures += 1
            await error("not_authenticated", 'authenticate first: {"op": "auth", "token": "..."}')
        else:
            tok = obj.get("token")
            info = None
            if (
                isinstance(tok, str)
                and tok
                and len(tok) <= 200
                and not security.login_limit.hit(addr)
            ):
                info = security.tokens.verify(tok)
                if info is None:
                    security.failures += 1
            if info is not None:
                return Principal(info.id, info.name, info.scope, "message")
            failures += 1
            await error("invalid_token", "the token is not valid (or too many attempts)")
        if failures >= AUTH_FAILURES:
            await asyncio.sleep(0.2)
            await websocket.close(code=4401, reason="authentication failed")
            return None


def _object(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str) or len(text) > MAX_MESSAGE_BYTES:
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


async def _serve(websocket: WebSocket, hub: Hub, principal: Principal) -> None:
    """An authenticated client: a hub slot, hello + snapshot, then its messages."""

    async def close(code: int, reason: str) -> None:
        await websocket.close(code=code, reason=reason)

    client = Client(send=websocket.send_text, close=close)
    if not hub.add(client):
        await websocket.close(code=1013, reason="too many clients")
        return
    client.scope, client.name = principal.scope, principal.token_id
    hub.hello(client)
    limiter = RateLimiter(50, 1.0)
    try:
        while not client.closed:
            msg = await websocket.receive()
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
            _handle(hub, client, obj)
    except WebSocketDisconnect:
        pass
    except RuntimeError:  # the socket closed under us
        pass
    finally:
        hub.remove(client)


def _handle(hub: Hub, client: Client, obj: dict[str, Any]) -> None:
    op = obj["op"]
    if op == "auth":
        hub.error(client, "already_authenticated", "this connection is logged in")
    elif op == "ping":
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
            hub.error(client, "bad_message", '"channels" must be a list of 1-200 channel names')
            return
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
        hub.error(client, "unknown_op", "unknown op; use subscribe, unsubscribe, ping or auth")
