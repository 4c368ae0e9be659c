"""Run the official ``growwapi`` SDK against ``mandi fakebroker groww``, never beyond loopback.

The SDK takes no base URL and calls the network as soon as ``GrowwAPI`` is constructed (its
changelog). So, for the duration of a test:

* its URL attributes are re-pointed at the fake (``GrowwAPI.INSTRUMENT_CSV_URL``,
  ``GrowwAPI._GROWW_GENERATE_SOCKET_TOKEN_URL``, ``GrowwFeed._GROWW_SOCKET_URL``, the instance's
  ``domain``); the access-token URL is a literal inside ``get_access_token``, so requests to
  ``https://api.groww.in`` are rewritten to the fake;
* ``requests`` refuses every other non-loopback URL;
* the files the SDK writes next to its own source (the NATS credentials, the instrument CSV)
  go to the test's temporary directory instead of the shared virtualenv.

``growwapi`` pins ``pandas<3`` while the benchmark extra needs pandas 3: ``make test`` installs
it without its pins (see the Makefile); tests skip with that reason when it is absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

LOOPBACK = ("127.0.0.1", "localhost", "::1")
REAL_HOSTS = ("api.groww.in", "growwapi-assets.groww.in")


def require_sdk() -> Any:
    return pytest.importorskip(
        "growwapi",
        reason="the official growwapi SDK is not installed (make test installs it without its "
        "pandas<3 pin: pip install --no-deps growwapi==1.5.0)",
    )


@contextmanager
def groww_sdk(rest_url: str, ws_url: str, tmp: Path, mp: pytest.MonkeyPatch) -> Iterator[Any]:
    """The ``growwapi`` module, pointed at the fake (see the module docstring)."""
    require_sdk()
    import growwapi
    import growwapi.common.files as files
    import growwapi.groww.client as client
    import growwapi.groww.feed as feed
    import requests

    def guard(real: Any) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            url = kw.pop("url", None) or args[0]
            host = urlparse(url).hostname
            if host in REAL_HOSTS:
                url = (
                    rest_url
                    + urlparse(url).path
                    + (f"?{urlparse(url).query}" if urlparse(url).query else "")
                )
            elif host not in LOOPBACK:
                raise requests.ConnectionError(f"tests: no network beyond loopback ({url})")
            return real(url, *args[1:], **kw)

        return call

    for verb in ("get", "post", "put"):
        mp.setattr(requests, verb, guard(getattr(requests, verb)))
    mp.setattr(client.GrowwAPI, "INSTRUMENT_CSV_URL", rest_url + "/instruments/instrument.csv")
    mp.setattr(
        client.GrowwAPI,
        "_GROWW_GENERATE_SOCKET_TOKEN_URL",
        rest_url + "/v1/api/apex/v1/socket/token/create/",
    )
    mp.setattr(feed.GrowwFeed, "_GROWW_SOCKET_URL", ws_url)
    mp.setattr(feed.GrowwFeed, "_nats_clients", {})
    sandbox = tmp / "sdk"
    sandbox.mkdir(exist_ok=True)
    mp.setattr(client, "get_cwd", lambda *a: str(sandbox / "pkg"))
    (sandbox / "pkg").mkdir(exist_ok=True)

    def write(name: str) -> Any:
        def w(text: str) -> str:
            p = sandbox / name
            p.write_text(text, encoding="utf-8")
            return str(p)

        return w

    mp.setattr(files, "generate_token_file", write("a.creds"))
    mp.setattr(files, "generate_seed_file", write("b.creds"))
    yield growwapi


def api(growwapi: Any, token: str, rest_url: str) -> Any:
    """A ``GrowwAPI`` whose ``domain`` is the fake's (its constructor's changelog call is
    rewritten to the fake too)."""
    g = growwapi.GrowwAPI(token)
    g.domain = rest_url + "/v1"
    return g
