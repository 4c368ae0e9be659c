"""``/metrics`` (Prometheus text format), ``/health`` and ``/ready`` of a service.

A tiny asyncio HTTP/1.1 server (GET only, one request per connection) so a service needs no web
framework. Metrics are read from the service's own stats objects at scrape time by a
collector function, never counted twice. ``/health`` answers 200 with the service's state as
JSON while the process is alive (even when Redis is down: the state says so); ``/ready`` answers
200 only while the service is doing its work (``running``), 503 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from mandi.core.errors import MandiError

log = logging.getLogger(__name__)

#: (name, "counter" | "gauge", help, value, labels)
Sample = tuple[str, str, str, float, dict[str, str]]


def dump_tasks() -> None:
    """Log the stack of every asyncio task (``kill -USR1 PID``: where is a service waiting?)."""
    buf = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(limit=12, file=buf)
    log.warning("asyncio tasks (SIGUSR1):\n%s", buf.getvalue())


class ServiceState:
    """What a service is doing: ``starting``, ``waiting_for_redis``, ``warming``, ``running``,
    ``redis_down`` (retrying; buffering within a bound), ``stopping``, ``stopped``."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.state = "starting"
        self.since = time.time()
        self.started = time.time()
        self.detail: dict[str, Any] = {}

    def set(self, state: str, **detail: Any) -> None:
        if state != self.state:
            log.info("%s: %s -> %s", self.service, self.state, state)
            self.state, self.since = state, time.time()
        self.detail.update(detail)

    @property
    def ready(self) -> bool:
        return self.state == "running"

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "state": self.state,
            "ready": self.ready,
            "since": self.since,
            "uptime_s": round(time.time() - self.started, 3),
            "pid": os.getpid(),
            **self.detail,
        }


class _Collector:
    def __init__(self, prefix: str, fn: Callable[[], Iterable[Sample]]) -> None:
        self.prefix, self.fn = prefix, fn

    def collect(self) -> Iterable[Any]:
        families: dict[str, Any] = {}
        for name, kind, help_text, value, labels in self.fn():
            full = f"{self.prefix}_{name}"
            fam = families.get(full)
            if fam is None:
                cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                fam = families[full] = cls(full, help_text, labels=sorted(labels))
            fam.add_metric([labels[k] for k in sorted(labels)], float(value))
        return list(families.values())


class HealthServer:
    """Serves ``/metrics``, ``/health`` and ``/ready`` for one service on ``host:port``."""

    def __init__(
        self,
        state: ServiceState,
        host: str,
        port: int,
        samples: Callable[[], Iterable[Sample]],
        prefix: str = "mandi",
    ) -> None:
        self.state = state
        self.host, self.port = host, port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(prefix, self._with_state(samples)))
        self._server: asyncio.AbstractServer | None = None

    def _with_state(
        self, samples: Callable[[], Iterable[Sample]]
    ) -> Callable[[], Iterable[Sample]]:
        def all_samples() -> Iterable[Sample]:
            svc = {"service": self.state.service}
            yield ("up", "gauge", "1 while the service process runs", 1, svc)
            yield (
                "ready",
                "gauge",
                "1 while the service is running (not warming, not waiting for Redis)",
                1 if self.state.ready else 0,
                svc,
            )
            yield (
                "state_since_seconds",
                "gauge",
                "Unix time of the last state change",
                self.state.since,
                {**svc, "state": self.state.state},
            )
            for name, kind, h, v, labels in samples():
                yield name, kind, h, v, {**svc, **labels}

        return all_samples

    async def start(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
        if self.port < 0:
            return
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as e:  # one line naming the address, not a traceback
            raise MandiError(
                f"{self.state.service}: cannot serve /metrics and /health on "
                f"{self.host}:{self.port}: {e.strerror or e} (choose another with --port, or "
                f"services.{self.state.service.replace('-', '_')}_port; 0 picks a free one)"
            ) from None
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info(
            "%s: /metrics /health /ready on http://%s:%d", self.state.service, self.host, self.port
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while True:  # skip the headers
                h = await asyncio.wait_for(reader.readline(), 5)
                if h in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else "/"
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path == "/metrics":
                status, ctype = "200 OK", "text/plain; version=0.0.4; charset=utf-8"
                body = generate_latest(self.registry)
            elif path == "/health":
                status, ctype = "200 OK", "application/json"
                body = json.dumps(self.state.as_dict()).encode()
            elif path == "/ready":
                ok = self.state.ready
                status = "200 OK" if ok else "503 Service Unavailable"
                ctype, body = (
                    "application/json",
                    json.dumps({"ready": ok, "state": self.state.state}).encode(),
                )
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"/metrics /health /ready\n"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: "
                f"{len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(head + (body if parts and parts[0] != "HEAD" else b""))
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None


def link_samples(link: Any, role: str) -> Iterable[Sample]:
    """Samples of a :class:`~mandi.bus.redis.RedisLink`."""
    lab = {"role": role}
    yield ("redis_up", "gauge", "1 while the Redis connection works", 1 if link.up else 0, lab)
    yield ("redis_connects_total", "counter", "Redis connections opened", link.stats.connects, lab)
    yield ("redis_failures_total", "counter", "Failed Redis attempts", link.stats.failures, lab)


def trim_samples(watch: Any) -> Iterable[Sample]:
    """Samples of a :class:`~mandi.bus.redis.TrimWatch`: entries trimmed before the group read
    them, per stream (absent until one is)."""
    for key, n in sorted(watch.lost.items()):
        yield (
            "stream_trimmed_unread_total",
            "counter",
            "Stream entries trimmed before the consumer group read them (lost to it)",
            n,
            {"stream": key, "group": watch.group},
        )


def publisher_samples(pub: Any, role: str) -> Iterable[Sample]:
    """Samples of a :class:`~mandi.bus.redis.StreamPublisher`."""
    s, lab = pub.stats, {"role": role}
    yield (
        "published_total",
        "counter",
        "Stream entries written (XADD+SET+PUBLISH)",
        s.confirmed,
        lab,
    )
    yield (
        "publish_duplicates_total",
        "counter",
        "XADDs refused as already present (replays)",
        s.duplicates,
        lab,
    )
    yield ("published_forming_total", "counter", "PUBLISH-only messages", s.forming, lab)
    yield (
        "publish_dropped_total",
        "counter",
        "Messages dropped at the full buffer",
        s.dropped,
        lab,
    )
    yield ("publish_errors_total", "counter", "Error replies", s.errors, lab)
    yield ("publish_buffer", "gauge", "Messages waiting for Redis", pub.pending, lab)
    yield ("publish_last_batch_ms", "gauge", "Duration of the last batch", s.last_batch_ms, lab)
    yield from link_samples(pub.link, role)
