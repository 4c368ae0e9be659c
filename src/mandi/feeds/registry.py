"""Which feed ``mandi run --feed NAME`` (and ``mandi service mdengine --feed NAME``) opens: a
small registry instead of a growing if-chain in the node.

An opener is ``async (config, node) -> Feed``; it uses only what every node offers (``clock``;
the tickserver feed also registers its instruments through the node). Brokers' feeds are
imported only when chosen.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from mandi.core.errors import ConfigError

Opener = Callable[[Any, Any], Awaitable[Any]]

#: name → "module:function" (imported when used) or the opener itself
FEEDS: dict[str, str | Opener] = {
    "kite": "mandi.brokers.kite.feed:open_kite_feed",
    "angel": "mandi.brokers.angel.feed:open_angel_feed",
    "groww": "mandi.brokers.groww.feed:open_groww_feed",
    "nse": "mandi.feeds.nse_live:open_nse_feed",
}
BROKER_FEEDS = ("kite", "angel", "groww")


def register_feed(name: str, opener: str | Opener) -> None:
    FEEDS[name] = opener


def opener(name: str) -> Opener:
    """The opener of feed ``name`` (a clear error naming the choices when there is none)."""
    found = FEEDS.get(name)
    if found is None:
        have = ", ".join(["sim", *sorted(FEEDS), "ws://host:port"])
        raise ConfigError("run.feed", name, f"no such feed; use one of {have}")
    if isinstance(found, str):
        module, _, fn = found.partition(":")
        opened: Opener = getattr(importlib.import_module(module), fn)
        return opened
    return found
