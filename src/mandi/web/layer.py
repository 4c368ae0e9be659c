"""The web layer of ``mandi run``: the API core, the WebSocket hub and uvicorn serving the FastAPI
app on the node's own event loop (http://127.0.0.1:8080 by default).

The socket is bound in :meth:`WebLayer.attach`, so a port in use or a refused address stops
start-up with one clear line, and ``port = 0`` picks a free port (``layer.port`` tells which).
uvicorn runs as one of the node's tasks without its own signal handling (the node owns SIGINT /
SIGTERM); at shutdown the clients are told (close 1001) and the server is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import sys
import time
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from mandi.core.errors import ConfigError

if TYPE_CHECKING:
    from mandi.services.context import NodeContext

log = logging.getLogger(__name__)
TURN_S = 0.1  # the longest the web layer waits for a turn of the event loop


class WebLayer:
    """Plugs the REST + WebSocket gateway and the dashboard into a node through its
    :class:`~mandi.services.context.NodeContext` (``mandi run``'s, or the distributed
    ``mandi service gateway``'s, whose context adds the trading relay and the Redis history)."""

    name = "web"

    def __init__(self, cfg: Any, host: str | None = None, port: int | None = None) -> None:
        self.cfg = cfg  # the AppConfig
        self.host = host if host is not None else cfg.run.host
        self.port = port if port is not None else cfg.run.port
        self.api: Any = None
        self.hub: Any = None
        self.security: Any = None
        self.app: Any = None
        self.asgi: Any = None  # the app with Socket.IO beside it
        self.server: Any = None
        self._sock: socket.socket | None = None
        self._last_turn = time.monotonic()
        self.login_url = ""
        self.announce = _to_terminal  # where the one-time login link goes (never the log)

    def attach(self, ctx: NodeContext) -> None:
        from mandi.web.api import MandiAPI
        from mandi.web.app import chart_library, create_app
        from mandi.web.hub import Hub
        from mandi.web.security import Security, TokenStore, check_bind

        w = self.cfg.web
        tokens = TokenStore(w.tokens_file)
        check_bind(self.host, tokens)
        self.security = Security.from_config(tokens, w)
        self.api = MandiAPI(ctx)
        self.hub = Hub(self.api, w)
        self.api.hub = self.hub
        self.api.attach()
        self.app = create_app(self.api, self.hub, self.security)
        from mandi.web.sio import socketio_app  # seed 001's dashboards: /socket.io/

        self.asgi = socketio_app(self.app, self.hub, self.security)
        self._sock = _bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        if w.login_link:
            self._login_link(tokens)
        log.info(
            "dashboard and API on http://%s:%d (tokens: %s, %d configured)",
            shown,
            self.port,
            tokens.path,
            len(tokens.tokens()),
        )
        if not tokens.tokens():
            log.warning(
                "no API token exists yet: create one with `mandi token create --scope "
                "trade` to log in to the dashboard"
            )
        if chart_library() is None:
            log.warning(
                "the chart library is not installed (run `make ui`); the dashboard shows no chart"
            )

    def _login_link(self, tokens: Any) -> None:
        """The owner's token (created on the first start) and a one-time login link for it,
        written to the terminal once — never to the log."""
        owner, created = tokens.ensure_owner()
        code = tokens.add_link(owner.id, self.cfg.web.login_link_ttl_s)
        self.login_url = f"{browser_url(self.host, self.port)}/?token={code}"
        lines = []
        if created:
            lines.append(
                f"mandi: created the owner's trade token {owner.id}; its secret is in "
                f"{tokens.owner_secret_path} (mode 0600) for curl and scripts"
            )
        minutes = self.cfg.web.login_link_ttl_s / 60
        lines += [
            f"mandi: open the dashboard with this one-time login link (works once, for "
            f"{minutes:g} min; `mandi token link` prints another):",
            f"    {self.login_url}",
        ]
        self.announce("\n".join(lines) + "\n")

    def tasks(self) -> list[Coroutine[Any, Any, Any]]:
        return [self._serve(), self.hub.run(), self._heartbeat()]

    async def _heartbeat(self) -> None:
        """Notes that the event loop gave the web layer a turn (see :meth:`busy`)."""
        while True:
            self._last_turn = time.monotonic()
            await asyncio.sleep(TURN_S / 5)

    def busy(self) -> bool:
        """The node's back-pressure hook for a replayable feed: True when the loop has not run
        the web layer for ``TURN_S`` — a simulator running behind its pace fills the tick queue
        and the kernel would drain it without yielding, leaving requests and browsers waiting for
        seconds; this lends them a turn (the kernel sleeps 5 ms) at most every ``TURN_S``.
        A live feed never waits for it."""
        return time.monotonic() - self._last_turn > TURN_S

    async def _serve(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.asgi,
            log_config=None,
            access_log=self.cfg.web.access_log,
            lifespan="off",
            ws="websockets-sansio",
            # no permessage-deflate: compressing every frame once per client would cost the
            # engine's loop CPU in proportion to the number of browsers
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=2,
            ws_max_size=1 << 16,
            server_header=False,
        )
        self.server = server = _Server(config)
        assert self._sock is not None
        try:
            await server.serve(sockets=[self._sock])
        except asyncio.CancelledError:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.hub.close_all(), 3)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.shutdown(sockets=[self._sock]), 5)
            raise

    def close(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.api is not None:
            self.api.detach()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()


class _Server:
    """uvicorn's server without its own signal handling (the node owns the signals)."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield

        return Server(config)


def _to_terminal(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def browser_url(host: str, port: int) -> str:
    """The URL a browser on this machine opens for a server bound to ``host``: a wildcard
    address (0.0.0.0, ::) is reached at the loopback address."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        why = (
            "the port is in use (another mandi run?)" if e.errno == errno.EADDRINUSE else e.strerror
        )
        raise ConfigError("run.port", port, f"cannot listen on {host}:{port}: {why}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock
