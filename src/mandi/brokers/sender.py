"""The order sender: pre-built HTTP/1.1 requests written from the node's event loop over
connections opened ahead and kept alive.

Placing an order is the one broker request whose latency matters. Through the general REST
client it pays twice before a byte leaves: a thread hand-off (the broker's worker thread must
wake up and take the GIL from a loop that may be busy with the next ticks — milliseconds on a
loaded node) and building the request in httpx (~200 µs). Here the kernel's ``place_order``
call, on the loop's thread, renders the request from a template (the request line and the fixed
headers are bytes prepared once per session; only the body and its length change) and writes it
into an idle connection: ``transport.write`` hands it to the socket at once. The loop reads the
answer (parsed with h11) and calls back.

* **Connections.** ``warm`` connections (TLS for ``https``) are opened at start and reopened when
  the server closes one; one request at a time per connection (no pipelining), at most
  ``max_connections``; an idle one older than ``idle_s`` is replaced (a server that times it out
  would otherwise race the next order). A request that finds no idle connection waits for one
  and is written the moment one is free.
* **Outcomes.** ``on_done(status, body, error)``: the HTTP status and body, or an error —
  :class:`NotSent` when the request never left (the caller may send it another way: nothing
  reached the broker), :class:`~mandi.core.errors.BrokerNetworkError` when it left and no
  answer came (a connection broken or ``timeout_s`` passed: the outcome is unknown — the order
  is reconciled by its tag, never sent again blindly).
* **Threads.** Everything here runs on the loop's thread; :meth:`OrderSender.send` must be
  called there (the broker checks and uses its worker otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from mandi.core.errors import BrokerError, BrokerNetworkError

log = logging.getLogger(__name__)

#: (HTTP status, body) or an error
OnDone = Callable[[int, bytes, BrokerError | None], None]


class NotSent(BrokerError):
    """The request never left this process (no connection could be had)."""


@dataclass(frozen=True, slots=True)
class RequestTemplate:
    """An HTTP/1.1 request with fixed headers: :meth:`render` adds the body."""

    method: str
    target: str
    head: bytes  # request line and headers up to "Content-Length: "

    @classmethod
    def build(cls, method: str, url: str, headers: dict[str, str]) -> RequestTemplate:
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return cls(method, target, ("\r\n".join(lines) + "\r\nContent-Length: ").encode())

    def render(self, body: bytes) -> bytes:
        return b"%b%d\r\n\r\n%b" % (self.head, len(body), body)


@dataclass(slots=True)
class _Pending:
    request: bytes
    method: str
    target: str
    on_done: OnDone


class _Connection(asyncio.Protocol):
    """One kept-alive connection: at most one request in flight."""

    def __init__(self, sender: OrderSender) -> None:
        self.sender = sender
        self.transport: asyncio.Transport | None = None
        self.h11 = h11.Connection(h11.CLIENT)
        self.inflight: _Pending | None = None
        self.status = 0
        self.body: list[bytes] = []
        self.deadline: asyncio.TimerHandle | None = None
        self.used = time.monotonic()
        self.closed = False
        self.told = False  # h11 knows of the request in flight

    # --- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.inflight is None:
            self._fail("an answer nobody asked for")
            return
        try:
            self._tell_h11()
            self.h11.receive_data(data)
            while True:
                ev = self.h11.next_event()
                if ev is h11.NEED_DATA:
                    return
                if isinstance(ev, h11.Response):
                    self.status = ev.status_code
                elif isinstance(ev, h11.Data):
                    self.body.append(bytes(ev.data))
                elif isinstance(ev, h11.EndOfMessage):
                    self._answered()
                    return
                elif isinstance(ev, h11.ConnectionClosed):
                    self._fail("the connection was closed")
                    return
        except h11.RemoteProtocolError as e:
            self._fail(f"a malformed answer ({e})")

    def eof_received(self) -> bool | None:
        with contextlib.suppress(h11.RemoteProtocolError):
            self._tell_h11()
            self.h11.receive_data(b"")
            if self.inflight is not None:  # a body that ends with the connection
                ev = self.h11.next_event()
                while isinstance(ev, h11.Data):
                    self.body.append(bytes(ev.data))
                    ev = self.h11.next_event()
                if isinstance(ev, h11.EndOfMessage):
                    self._answered()
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.inflight is not None:
            self._fail("the connection was lost")
        self.sender._lost(self)

    # --- requests ---------------------------------------------------------------------------------
    def write(self, p: _Pending, timeout_s: float, loop: asyncio.AbstractEventLoop) -> int:
        """Send ``p`` now; returns ``perf_counter_ns`` as it left."""
        assert self.transport is not None
        self.inflight = p
        self.transport.write(p.request)
        sent = time.perf_counter_ns()
        self.status, self.body, self.told = 0, [], False
        self.used = time.monotonic()
        self.deadline = loop.call_later(timeout_s, self._fail, f"no answer in {timeout_s:g} s")
        return sent

    def _tell_h11(self) -> None:
        """h11 learns of the request (after it left: only for its bookkeeping — e.g. that an
        answer to a HEAD has no body); what went out is the template's bytes."""
        if not self.told and self.inflight is not None:
            self.told = True
            p = self.inflight
            self.h11.send(h11.Request(method=p.method, target=p.target, headers=[("Host", "-")]))
            self.h11.send(h11.EndOfMessage())

    def _answered(self) -> None:
        p, status, body = self.inflight, self.status, b"".join(self.body)
        self._clear()
        reusable = self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE
        if reusable:
            self.h11.start_next_cycle()
        else:
            self.close()
        assert p is not None
        self.sender._done(self, p, status, body, None)

    def _fail(self, why: str) -> None:
        p = self.inflight
        self._clear()
        self.close()
        if p is not None:
            err = BrokerNetworkError(f"{self.sender.title} place order: {why}", "Network")
            self.sender._done(self, p, 0, b"", err)

    def _clear(self) -> None:
        self.inflight = None
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class OrderSender:
    """Kept-alive HTTP/1.1 connections to one broker endpoint (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 7.0,
        warm: int = 2,
        max_connections: int = 4,
        idle_s: float = 30.0,
        title: str = "the broker",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self._ssl = ssl_context
        self.timeout_s = timeout_s
        self.warm = max(warm, 1)
        self.max_connections = max(max_connections, self.warm)
        self.idle_s = idle_s
        self.title = title
        self.loop: asyncio.AbstractEventLoop | None = None
        self._idle: deque[_Connection] = deque()
        self._busy: set[_Connection] = set()
        self._opening = 0
        self._waiting: deque[_Pending] = deque()
        self._closed = False
        self._failures = 0
        self._retry_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self.opened = 0  # connections opened (for status and tests)
        self.written = 0
        self.last_write_ns = 0  # perf_counter_ns just after the last request left

    @staticmethod
    def usable(url: str) -> bool:
        """False where this sender cannot stand in for httpx: not http(s), or a proxy is
        configured for the host (httpx honours ``HTTPS_PROXY``; this sender connects directly)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        proxies = urllib.request.getproxies()
        if parts.scheme in proxies or "all" in proxies:
            return bool(urllib.request.proxy_bypass(parts.hostname))
        return True

    # --- life -------------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the warm connections (in the background, on ``loop``'s thread)."""
        self.loop = loop
        self._fill()
        self._sweeper = loop.call_later(min(self.idle_s, 5.0), self._sweep)

    def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for t in list(self._tasks):
            t.cancel()
        for c in [*self._idle, *self._busy]:
            c.close()
        self._idle.clear()
        while self._waiting:
            self._waiting.popleft().on_done(0, b"", NotSent(f"{self.title}: closing"))

    @property
    def ready(self) -> bool:
        """An idle connection is open (a request written now leaves at once)."""
        return any(not c.closed for c in self._idle)

    @property
    def connections(self) -> int:
        return len(self._idle) + len(self._busy)

    # --- sending ----------------------------------------------------------------------------------
    def send(self, template: RequestTemplate, body: bytes, on_done: OnDone) -> bool:
        """Write ``template`` + ``body`` now on an idle connection (True), or as soon as one is
        open (False). Call on the loop's thread."""
        p = _Pending(template.render(body), template.method, template.target, on_done)
        if self._closed or self.loop is None:
            on_done(0, b"", NotSent(f"{self.title}: the order sender is not running"))
            return False
        while self._idle:
            c = self._idle.pop()  # the most recently used: the least likely to be timed out
            if not c.closed:
                self._write(c, p)
                return True
        self._waiting.append(p)
        self._fill()
        return False

    def _write(self, c: _Connection, p: _Pending) -> None:
        assert self.loop is not None
        self._busy.add(c)
        self.last_write_ns = c.write(p, self.timeout_s, self.loop)
        self.written += 1

    def _done(
        self, c: _Connection, p: _Pending, status: int, body: bytes, err: BrokerError | None
    ) -> None:
        self._busy.discard(c)
        if not c.closed and not self._closed:
            self._release(c)
        try:
            p.on_done(status, body, err)
        except Exception:
            log.exception("%s: an order answer's handler failed", self.title)
        self._fill()

    def _release(self, c: _Connection) -> None:
        if self._waiting:
            self._write(c, self._waiting.popleft())
        else:
            self._idle.append(c)

    def _lost(self, c: _Connection) -> None:
        self._busy.discard(c)
        with contextlib.suppress(ValueError):
            self._idle.remove(c)
        if not self._closed:
            self._fill()

    # --- connections ------------------------------------------------------------------------------
    def _fill(self) -> None:
        """Open connections up to ``warm`` (more while requests wait, up to the maximum)."""
        if self._closed or self.loop is None:
            return
        have = self.connections + self._opening
        want = max(self.warm, min(self.max_connections, len(self._busy) + len(self._waiting)))
        delay = max(self._retry_at - time.monotonic(), 0.0)
        for _ in range(want - have):
            self._opening += 1
            task = self.loop.create_task(self._open(delay))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _open(self, delay: float) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            assert self.loop is not None
            ctx = None
            if self.tls:
                ctx = self._ssl or _default_ssl()
            _, proto = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=ctx,
                    server_hostname=self.host if ctx else None,
                ),
                self.timeout_s,
            )
        except (OSError, TimeoutError, ssl.SSLError) as e:
            self._opening -= 1
            self._failures += 1
            backoff = min(0.25 * 2 ** min(self._failures, 6), 15.0)
            self._retry_at = time.monotonic() + backoff
            log.warning(
                "%s order connection to %s:%d failed (%s); retrying in %.1f s",
                self.title, self.host, self.port, type(e).__name__, backoff,
            )  # fmt: skip
            if self.connections == 0 and self._opening == 0:
                # no connection to wait for: the waiting requests never left, so the caller
                # may send them another way
                while self._waiting:
                    self._waiting.popleft().on_done(0, b"", NotSent(f"{self.title}: {e!s}"))
                self._fill()
            return
        except asyncio.CancelledError:
            self._opening -= 1
            raise
        self._opening -= 1
        self._failures = 0
        self.opened += 1
        assert isinstance(proto, _Connection)
        if self._closed:
            proto.close()
            return
        self._release(proto)

    def _sweep(self) -> None:
        """Replace idle connections older than ``idle_s``."""
        if self._closed or self.loop is None:
            return
        now = time.monotonic()
        for c in list(self._idle):
            if now - c.used > self.idle_s:
                self._idle.remove(c)
                c.close()  # connection_lost refills the pool
        self._sweeper = self.loop.call_later(min(self.idle_s, 5.0), self._sweep)


def _default_ssl() -> ssl.SSLContext:
    """The TLS context httpx would use (certifi's roots)."""
    import httpx

    ctx: ssl.SSLContext = httpx.create_ssl_context()
    return ctx
