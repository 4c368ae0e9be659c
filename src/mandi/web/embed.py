"""Run a whole ``mandi run`` node (feed, pipeline, indicators, chains, trading, web) in a
background thread with its own event loop — for tests, benchmarks and notebooks that want the
real server on a loopback port while they drive it from the outside.

>>> node = start_node({"store.db": "/tmp/x.db", "run.speed": 20, "run.port": 0})  # doctest: +SKIP
>>> node.url  # doctest: +SKIP
'http://127.0.0.1:41234'
>>> node.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from mandi.core.errors import MandiError


class RunningNode:
    """A node running in a thread. ``call(fn)`` runs ``fn()`` on the node's loop (where the
    kernel lives) and returns its result."""

    def __init__(self, node: Any, thread: threading.Thread) -> None:
        self.node = node
        self.thread = thread
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None

    def layer(self, name: str) -> Any:
        for layer in self.node.layers:
            if getattr(layer, "name", "") == name:
                return layer
        return None

    @property
    def web(self) -> Any:
        return self.layer("web")

    @property
    def url(self) -> str:
        web = self.web
        host = web.host if ":" not in web.host else f"[{web.host}]"
        return f"http://{host}:{web.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws"

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        assert self.loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.node.request_stop, "stopped by its owner")
        self.thread.join(timeout)


def start_node(
    overrides: Mapping[str, Any],
    layers: Callable[[Any], list[Any]] | None = None,
    ready_timeout: float = 120.0,
) -> RunningNode:
    """Build the config (defaults + ``overrides`` in ``"section.key"`` form), the ``mandi run``
    layers and the node; run it in a thread; return once the web layer is listening."""
    from mandi.cli import build_layers
    from mandi.config import load_config
    from mandi.services.node import MarketNode
    from mandi.services.trading import prepare_config

    # no one-time login link unless asked: an embedded node has no terminal to print it to
    cfg = prepare_config(load_config(overrides={"web.login_link": False, **overrides}, env={}))
    node = MarketNode(cfg, layers=(layers or build_layers)(cfg))
    started = threading.Event()
    holder: dict[str, Any] = {}

    def main() -> None:
        async def go() -> int:
            holder["loop"] = asyncio.get_running_loop()
            started.set()
            return await node.run()

        try:
            asyncio.run(go())
        except BaseException as e:
            holder["error"] = e
            started.set()

    thread = threading.Thread(target=main, name="mandi-node", daemon=True)
    running = RunningNode(node, thread)
    thread.start()
    started.wait(ready_timeout)
    running.loop = holder.get("loop")
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if "error" in holder:
            running.error = holder["error"]
            raise MandiError(f"the node failed to start: {holder['error']!r}")
        web = running.web
        if web is None or (web.server is not None and web.server.started):
            return running
        if not thread.is_alive():
            raise MandiError("the node stopped while starting")
        time.sleep(0.05)
    running.stop()
    raise MandiError("the node did not start in time")
