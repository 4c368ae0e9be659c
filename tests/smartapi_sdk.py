"""Import the official ``smartapi-python`` package without letting it reach the network.

At import time ``SmartApi.smartConnect`` asks ``api.ipify.org`` for the machine's public IP
(and falls back to a constant when that fails). Tests must not send traffic beyond loopback, so
the import runs with ``requests.get`` refusing any non-loopback URL; the SDK then uses its
fallback. Its classes also create a ``logs/`` folder in the working directory: callers chdir
to a temporary directory first.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse


def import_smartapi() -> Any:
    import requests

    real_get = requests.get

    def loopback_only(url: str, *a: Any, **kw: Any) -> Any:
        if urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise requests.ConnectionError(f"tests: no network beyond loopback ({url})")
        return real_get(url, *a, **kw)

    requests.get = loopback_only  # type: ignore[assignment]
    try:
        import SmartApi
        import SmartApi.smartWebSocketV2
    finally:
        requests.get = real_get  # type: ignore[assignment]
    return SmartApi
