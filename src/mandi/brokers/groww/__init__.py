"""Groww's trading API: the third live broker, on the same ports as Kite and Angel One.

* :mod:`.wire` — REST payloads, the instrument CSV and candles ↔ mandi values (pure);
  :mod:`.proto` — the live feed's protobuf messages; :mod:`.nats` — the NATS protocol (pure);
  :mod:`.frames` — feed messages → ticks and order updates (and back, for the fake);
* :mod:`.rest` — the REST client; :mod:`.session` — login (TOTP, API secret or a token), the
  token file, renewal;
* :mod:`.ticker` — NATS over a websocket; :mod:`.feed` — ``mandi run --feed groww``;
  :mod:`.broker` — the Broker port; :mod:`.instruments`, :mod:`.history`;
* :mod:`.fake` — ``mandi fakebroker groww``.
"""

from __future__ import annotations

from typing import Any

from mandi.core.clock import Clock
from mandi.execution.config import TradingConfig


def make_live_broker(cfg: TradingConfig, clock: Clock, **context: Any) -> Any:
    """The factory registered in :data:`mandi.brokers.LIVE_BROKERS` (needs the app config and
    the instrument master; shares the session keeper of the node's Groww feed)."""
    from mandi.brokers.groww import session as groww_session
    from mandi.brokers.groww.broker import GrowwBroker
    from mandi.brokers.keeper import SessionKeeper

    if "app" not in context or "master" not in context:
        from mandi.core.errors import ConfigError

        raise ConfigError(
            "trading.broker",
            "groww",
            "Groww needs the node's config and instruments: "
            "run it with mandi run --mode live --broker groww",
        )
    app = context["app"]
    g = app.broker.groww
    feed = context.get("feed")
    keeper = getattr(feed, "session", None)
    if not isinstance(keeper, SessionKeeper):
        keeper = groww_session.keeper(g, groww_session.fresh(g))
    rest = groww_session.rest_client(g, keeper.get())
    broker = GrowwBroker(rest, context["master"], clock, g.poll_interval_s, keeper=keeper)
    if feed is not None and hasattr(feed, "on_order"):
        feed.on_order = broker.handle_postback
    return broker
