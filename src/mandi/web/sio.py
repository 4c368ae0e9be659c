"""Socket.IO for seed 001's dashboards (``/socket.io/``): the seed's events ``data_update_NSE``,
``data_update_BSE`` (the exchange's chain table with its info bar, about once a second) and
``position_closed`` (a closed position, for the toast), with the same authentication as ``/ws``.

A Socket.IO client connects with its token in the ``auth`` payload
(``sio.connect(url, auth={"token": "mandi_…"})``), an ``Authorization: Bearer`` header or the
dashboard's session cookie; anything else is refused at connect (``connect_error``), and token
attempts are rate-limited per address like the login route. The browser ``Origin`` rule is the one
of ``/ws`` (the page's own origin or ``web.ws_origins``). A connected client is a client of the
WebSocket hub (:mod:`mandi.web.hub`) — the same conflation, queue bound and slow-client policy —
subscribed to the three seed channels; it may ``emit("subscribe", [channels])`` (and
``unsubscribe``) for any other hub channel, each delivered as an event of the channel's name.
``metrics`` and ``snapshot`` arrive as events of those names.

python-socketio is a runtime dependency: the endpoint is part of the server ``mandi run`` starts
(about 2 MB with python-engineio; its client side is only needed by tests).
"""

from __future__ import annotations

import json
import logging
from http.cookies import SimpleCookie
from typing import Any

import socketio

from mandi.web.hub import Client, Hub
from mandi.web.security import SESSION_COOKIE, AuthError, Principal, Security

log = logging.getLogger(__name__)
SEED_CHANNELS = ["data_update_NSE", "data_update_BSE", "position_closed"]


def socketio_app(app: Any, hub: Hub, security: Security) -> Any:
    """``app`` with Socket.IO served beside it at ``/socket.io/``."""
    sio = socketio.AsyncServer(
        async_mode="asgi",
        cors_allowed_origins=lambda origin, environ: security.origin_allowed(
            origin, environ.get("HTTP_HOST")
        ),
        max_http_buffer_size=1 << 16,
        logger=False,
        engineio_logger=False,
    )
    clients: dict[str, Client] = {}

    def principal(environ: dict[str, Any], auth: Any) -> Principal:
        addr = str(environ.get("REMOTE_ADDR") or "?")
        token = auth.get("token") if isinstance(auth, dict) else None
        if isinstance(token, str) and token:
            if len(token) > 200 or security.login_limit.hit(addr):
                raise AuthError(401, "invalid_token", "the token is not valid (or too many tries)")
            info = security.tokens.verify(token)
            if info is None:
                security.failures += 1
                raise AuthError(401, "invalid_token", "the token is not valid")
            return Principal(info.id, info.name, info.scope, "socketio")
        cookie = SimpleCookie(environ.get("HTTP_COOKIE") or "").get(SESSION_COOKIE)
        return security.authenticate(
            environ.get("HTTP_AUTHORIZATION"), cookie.value if cookie else None
        )

    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            p = principal(environ, auth)
            Security.require(p, "read")
        except AuthError as e:
            raise socketio.exceptions.ConnectionRefusedError(
                {"error": e.code, "message": str(e)}
            ) from None

        async def send(frame: str) -> None:
            for line in frame.split("\n"):
                if not line:
                    continue
                msg = json.loads(line)
                if "channel" in msg:
                    await sio.emit(msg["channel"], msg.get("data"), to=sid)
                elif msg.get("type") not in (None, "hello", "subscribed", "unsubscribed", "pong"):
                    await sio.emit(msg["type"], msg.get("data", msg), to=sid)

        async def close(code: int, reason: str) -> None:
            await sio.disconnect(sid)

        client = Client(send=send, close=close)
        if not hub.add(client):
            raise socketio.exceptions.ConnectionRefusedError(
                {"error": "too_many_clients", "message": "too many clients"}
            )
        client.scope, client.name = p.scope, p.token_id
        clients[sid] = client
        hub.send_direct(client, hub.encode_type("snapshot", hub.snapshot()))
        hub.subscribe(client, SEED_CHANNELS)

    async def disconnect(sid: str, *args: Any) -> None:
        client = clients.pop(sid, None)
        if client is not None:
            hub.remove(client)

    async def change(sid: str, channels: Any, subscribe: bool) -> dict[str, Any]:
        client = clients.get(sid)
        if client is None:
            return {"error": "not_connected"}
        if isinstance(channels, str):
            channels = [channels]
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            return {"error": "bad_message", "message": "send a list of channel names"}
        if not subscribe:
            return {"unsubscribed": hub.unsubscribe(client, channels[:200])}
        ok, errors = hub.subscribe(client, channels[:200])
        return {"subscribed": ok, "errors": errors}

    async def on_subscribe(sid: str, channels: Any = None) -> dict[str, Any]:
        return await change(sid, channels, True)

    async def on_unsubscribe(sid: str, channels: Any = None) -> dict[str, Any]:
        return await change(sid, channels, False)

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    sio.on("subscribe", on_subscribe)
    sio.on("unsubscribe", on_unsubscribe)
    return socketio.ASGIApp(sio, other_asgi_app=app, socketio_path="socket.io")
