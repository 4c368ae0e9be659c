"""Angel One SmartAPI: the second live broker, on the same ports as Kite.

* :mod:`.wire` — REST payloads, the scrip master and candles ↔ mandi values (pure);
  :mod:`.frames` — SmartStream v2 frames (fast decoder, encoder);
* :mod:`.rest` — the REST client; :mod:`.session` — login (PIN + TOTP), refresh, logout;
  :mod:`.keeper` — the session of a running node, refreshed before it expires;
* :mod:`.ticker` — SmartStream; :mod:`.feed` — ``mandi run --feed angel``;
  :mod:`.broker` — the Broker port; :mod:`.instruments`, :mod:`.history`;
* :mod:`.fake` — ``mandi fakebroker angel``.
"""

from __future__ import annotations

from typing import Any

from mandi.core.clock import Clock
from mandi.execution.config import TradingConfig


def make_live_broker(cfg: TradingConfig, clock: Clock, **context: Any) -> Any:
    """The factory registered in :data:`mandi.brokers.LIVE_BROKERS` (needs the app config and
    the instrument master; shares the session keeper of the node's Angel feed)."""
    from mandi.brokers.angel import session as angel_session
    from mandi.brokers.angel.broker import AngelBroker
    from mandi.brokers.angel.keeper import SessionKeeper

    if "app" not in context or "master" not in context:
        from mandi.core.errors import ConfigError

        raise ConfigError(
            "trading.broker",
            "angel",
            "Angel One needs the node's config and instruments: "
            "run it with mandi run --mode live --broker angel",
        )
    app = context["app"]
    a = app.broker.angel
    feed = context.get("feed")
    keeper = getattr(feed, "session", None)
    if not isinstance(keeper, SessionKeeper):
        keeper = SessionKeeper(a, angel_session.fresh(a))
    rest = angel_session.rest_client(a, keeper.get())
    return AngelBroker(rest, context["master"], clock, a.poll_interval_s, keeper=keeper)
