"""What the tests against the fake brokers (Kite, Angel One, Groww) share: the fake's control
endpoints (its state, a fault to inject), waiting for a condition with a deadline, a broker
config pointed at the fake, a live broker with its events, and an event loop in a thread for
the tickers.

Import what a test module needs: ``from fakebroker import fault, state, wait_for``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import pytest

from mandi.brokers.live import LiveBroker
from mandi.config import load_config


class Fake(Protocol):
    """A fake broker server (``FakeKiteServer``, ``FakeAngelServer``, ``FakeGrowwServer``)."""

    rest_url: str

    def env(self) -> dict[str, str]: ...


B = TypeVar("B", bound=LiveBroker[Any])
Call = Callable[[Callable[[], Any]], Any]


def state(fake: Fake) -> dict[str, Any]:
    """The fake's counters and orders (``/_fake/state``)."""
    return httpx.get(f"{fake.rest_url}/_fake/state").json()  # type: ignore[no-any-return]


def fault(fake: Fake, kind: str, **kw: Any) -> None:
    """Inject a fault at the fake (``/_fake/fault``)."""
    r = httpx.post(f"{fake.rest_url}/_fake/fault", json={"fault": kind, **kw})
    assert r.status_code == 200, r.text


def wait_for(
    cond: Callable[[], Any], timeout: float = 20.0, what: str = "", every: float = 0.05
) -> Any:
    """``cond()``'s first truthy value, polled ``every`` seconds until ``timeout`` seconds
    have passed."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(every)


def broker_config(fake: Fake, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``broker.<name>`` of a config pointed at the fake (config and cache under ``tmp_path``)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return getattr(load_config(env=fake.env()).broker, name)


@contextmanager
def connected(b: B) -> Iterator[tuple[B, list[Any]]]:
    """``b`` connected, with the list its events are delivered to; closed at the end."""
    events: list[Any] = []
    b.set_event_sink(events.append)
    b.connect()
    try:
        yield b, events
    finally:
        b.close()


def until(b: LiveBroker[Any], events: list[Any], pred: Callable[[list[Any]], bool],
          what: str) -> None:  # fmt: skip
    """Wait until ``pred(events)``, delivering ``b``'s pending events meanwhile."""

    def check() -> bool:
        b.drain()
        return pred(events)

    wait_for(check, what=what)


@contextmanager
def loop_thread(closing: Callable[[], Any]) -> Iterator[Call]:
    """An event loop in a thread and ``call(fn)``, which runs ``fn`` on it (awaiting what it
    returns when that is a coroutine); at the end ``closing`` is called on it and it stops."""
    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()

    def call(fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            r = fn()
            return await r if asyncio.iscoroutine(r) else r

        return asyncio.run_coroutine_threadsafe(run(), loop).result(20)

    try:
        yield call
    finally:
        call(closing)
        loop.call_soon_threadsafe(loop.stop)
        th.join(5)
