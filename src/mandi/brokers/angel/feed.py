"""``mandi run --feed angel``: SmartStream as the node's feed
(:class:`~mandi.brokers.feed.BrokerFeed`: ATM window, reconnects), with the session kept fresh."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from mandi.brokers.angel import instruments as angel_instruments
from mandi.brokers.angel import session as angel_session
from mandi.brokers.angel.keeper import SessionKeeper
from mandi.brokers.angel.ticker import AngelTicker
from mandi.brokers.feed import BrokerFeed
from mandi.core.calendar import ist_date
from mandi.execution.live import FeedHealth

if TYPE_CHECKING:
    from mandi.config import AppConfig


async def open_angel_feed(cfg: AppConfig, node: Any) -> BrokerFeed:
    """The session (refreshed if due), today's scrip master, and a feed ready to start."""
    a = cfg.broker.angel
    now = node.clock.now_ns()
    offset = int(cfg.run.clock_offset_s * 1e9)
    session = await asyncio.to_thread(angel_session.fresh, a, time.time_ns())
    insts = await asyncio.to_thread(angel_instruments.load, a, ist_date(now))
    keeper = SessionKeeper(a, session, offset)
    ticker = AngelTicker(
        a.ws_url,
        a.api_key,
        session.user_id or a.client_code,
        keeper.get,
        max_connections=a.max_connections,
        tokens_per_connection=a.tokens_per_connection,
        health=FeedHealth(a.silent_after_s, a.storm_reconnects, a.storm_window_s),
        backoff_max_s=a.backoff_max_s,
        heartbeat_s=a.heartbeat_s,
        now_ns=node.clock.now_ns,
    )
    return BrokerFeed("angel", a, keeper, insts, ticker, node.clock.now_ns)
