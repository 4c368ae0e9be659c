"""Zerodha Kite Connect v3: the first live broker (see docs and the README).

* :mod:`.wire` — REST payloads ↔ mandi values (pure); :mod:`.frames` — ticker frames;
* :mod:`.rest` — the REST client; :mod:`.session` — login, the token file, logout;
* :mod:`.ticker` — the WebSocket client (shards, health, reconnects);
* :mod:`.feed` — ``mandi run --feed kite``; :mod:`.broker` — the Broker port for live orders;
* :mod:`.instruments` — the daily instrument dump; :mod:`.history` — candle backfill;
* :mod:`.fake` — ``mandi fakebroker kite``, the local server tests and demos use.
"""

from __future__ import annotations

from typing import Any

from mandi.core.clock import Clock
from mandi.execution.config import TradingConfig


def make_live_broker(cfg: TradingConfig, clock: Clock, **context: Any) -> Any:
    """The factory registered in :data:`mandi.brokers.LIVE_BROKERS` (needs the app config,
    the instrument master and the node's Kite feed in ``context``)."""
    from mandi.brokers.kite import session as kite_session
    from mandi.brokers.kite.broker import KiteBroker

    if "app" not in context or "master" not in context:
        from mandi.core.errors import ConfigError

        raise ConfigError(
            "trading.broker",
            "kite",
            "Kite needs the node's config and instruments: "
            "run it with mandi run --mode live --broker kite",
        )
    app = context["app"]
    k = app.broker.kite
    s = kite_session.current(k, now_ns=clock.now_ns() - int(app.run.clock_offset_s * 1e9))
    broker = KiteBroker(kite_session.rest_client(k, s), context["master"], clock, k.poll_interval_s)
    broker.order_connections = k.order_connections
    feed = context.get("feed")
    if feed is not None and hasattr(feed, "on_order"):
        feed.on_order = broker.handle_postback
    if feed is not None and hasattr(feed, "on_session_dead"):
        # the ticker refused for the token: the broker stops sending at once (not at the
        # first order Kite refuses)
        feed.on_session_dead = broker.mark_dead
    return broker
