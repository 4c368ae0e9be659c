"""What broker REST clients share: request pacing and turning transport failures into mandi's
exceptions without echoing URLs (they may carry tokens)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx

from mandi.core.errors import BrokerNetworkError

# httpx logs every URL at INFO; some broker URLs carry tokens
logging.getLogger("httpx").setLevel(logging.WARNING)


class Pacer:
    """At most ``rate`` calls per second (thread-safe; blocks the calling thread)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            t = max(now, self._next)
            self._next = t + self.interval
        if t > now:
            time.sleep(t - now)


def send(
    http: httpx.Client, title: str, what: str, root: str, method: str, path: str, **kw: Any
) -> httpx.Response:
    """One request; a timeout or an unreachable broker becomes :class:`BrokerNetworkError`
    (the order's outcome is then unknown, never assumed)."""
    try:
        return http.request(method, path, **kw)
    except httpx.TimeoutException:
        raise BrokerNetworkError(f"{title} {what}: timed out", "Timeout") from None
    except httpx.HTTPError as e:
        raise BrokerNetworkError(
            f"{title} {what}: cannot reach {root} ({type(e).__name__})", "Network"
        ) from None
