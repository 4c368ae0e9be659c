"""Loopback ports for the servers the tests start in other processes.

``bind(("127.0.0.1", 0))`` then close hands out a port of the kernel's ephemeral range — the
range every outgoing connection of the suite (thousands of Redis, HTTP and WebSocket clients)
also takes its local port from. Between the test picking the port and the child binding it,
a connection could take it, and the child would fail to start (a rare flake, the worse on a
loaded machine where the child starts slowly). Ports here come from below that range, so no
outgoing connection ever uses them; each pytest-xdist worker has a slice of its own and walks
it round-robin, so two workers never pick the same port and one worker does not hand a port
out again until it went round its slice.
"""

from __future__ import annotations

import os
import random
import socket

_LOW = 15_000  # above the well-known service ports a developer's machine may run


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _slice() -> range:
    high = max(_LOW + 2_000, _ephemeral_low())
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = (high - _LOW) // workers
    start = _LOW + (worker % workers) * size
    return range(start, start + size)


_ports = _slice()
_next = random.Random(os.getpid()).randrange(len(_ports))


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on, outside the ephemeral range (see the module)."""
    global _next
    for _ in range(len(_ports)):
        port = _ports[_next % len(_ports)]
        _next += 1
        if _bindable(port):
            return port
    raise RuntimeError(f"no free loopback port in {_ports.start}-{_ports.stop - 1}")
