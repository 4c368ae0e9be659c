"""A real ``mandi run`` node (sim feed, pipeline, indicators, chains, paper trading, web) on a
temporary database and a free loopback port, shared by the API tests; tokens in a temporary file.
"""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from mandi.web.embed import start_node
from mandi.web.security import TokenStore

NIFTY = 256265
WEBHOOK_SECRET = "test-webhook-secret-0123456789"


class SecretWatch(logging.Handler):
    """Collects every log line of the session, to prove no secret is ever logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception:
            self.lines.append(str(record.msg))


@pytest.fixture(scope="session")
def web_tokens(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    store = TokenStore(str(path))
    out = {"path": str(path)}
    for key, scope in (("read", "read"), ("trade", "trade"), ("fuzz", "trade")):
        info, secret = store.create(scope, key)
        out[key] = secret
        out[key + "_id"] = info.id
    return out


@pytest.fixture(scope="session")
def watch_logs():
    h = SecretWatch()
    logging.getLogger().addHandler(h)
    logging.getLogger().setLevel(logging.INFO)
    yield h
    logging.getLogger().removeHandler(h)


@pytest.fixture(scope="package")  # stopped when the package's tests are done
def live(tmp_path_factory, web_tokens, watch_logs):
    db = tmp_path_factory.mktemp("node") / "mandi.db"
    node = start_node(
        {
            "store.db": str(db),
            "sim.date": "2026-04-13",
            "sim.seed": 11,
            "run.speed": 8.0,
            # a 15 s timeframe: indicators warm up (SMA_9) within seconds of wall time
            "pipeline.timeframes": (15, 60, 120, 180, 300),
            "indicators.timeframes": (15, 60),
            "run.port": 0,
            "run.status_interval": 0,
            "web.tokens_file": web_tokens["path"],
            "web.login_per_minute": 1000,
            "web.orders_per_minute": 1000,
            "web.commands_per_minute": 1000,
            "web.metrics_interval_s": 1.0,
            # baskets (tests/web/test_options_api.py) open several positions at once, and the
            # default strategies two at the open
            "risk.max_concurrent_positions": 20,
            "webhooks.secret": WEBHOOK_SECRET,
        }
    )
    try:
        wait_for_chain(node.url, web_tokens["read"])
        yield node
    finally:
        node.stop()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for_chain(url: str, token: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/api/v1/chain/NIFTY", headers=auth(token), timeout=30)
        last = r
        if (
            r.status_code == 200
            and r.json().get("live")
            and any((row.get("ce") or {}).get("ltp") for row in r.json()["rows"])
        ):
            return r.json()
        time.sleep(0.5)
    raise AssertionError(f"no live chain in time: {last.status_code if last else None}")


@pytest.fixture(scope="package")
def client(live):
    with httpx.Client(base_url=live.url, timeout=30) as c:
        yield c
