"""``mandi run --feed groww``: Groww's NATS feed as the node's feed
(:class:`~mandi.brokers.feed.BrokerFeed`: ATM window, order updates, reconnects), with the
session renewed before 06:00 IST when it can be."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from mandi.brokers.feed import BrokerFeed
from mandi.brokers.groww import instruments as groww_instruments
from mandi.brokers.groww import session as groww_session
from mandi.brokers.groww.ticker import GrowwTicker
from mandi.brokers.groww.wire import FeedKey, feed_key
from mandi.core.calendar import ist_date
from mandi.execution.live import FeedHealth
from mandi.model.instruments import InstrumentMaster

if TYPE_CHECKING:
    from mandi.config import AppConfig


async def open_groww_feed(cfg: AppConfig, node: Any) -> BrokerFeed:
    """The session (renewed if due), today's instruments, and a feed ready to start."""
    g = cfg.broker.groww
    now = node.clock.now_ns()
    offset = int(cfg.run.clock_offset_s * 1e9)
    session = await asyncio.to_thread(groww_session.fresh, g, time.time_ns())
    insts = await asyncio.to_thread(groww_instruments.load, g, ist_date(now))
    keeper = groww_session.keeper(g, session, offset)
    master = InstrumentMaster(insts)

    def key_of(token: int) -> FeedKey | None:
        inst = master.get(token)
        return feed_key(inst) if inst is not None else None

    def feed_token(public_key: str) -> dict[str, Any]:
        rest = groww_session.rest_client(g, keeper.get())
        try:
            return rest.socket_token(public_key)
        finally:
            rest.close()

    ticker = GrowwTicker(
        g.ws_url,
        feed_token,
        key_of,
        max_connections=g.max_connections,
        tokens_per_connection=g.tokens_per_connection,
        health=FeedHealth(g.silent_after_s, g.storm_reconnects, g.storm_window_s),
        backoff_max_s=g.backoff_max_s,
        heartbeat_s=g.heartbeat_s,
        now_ns=node.clock.now_ns,
    )
    return BrokerFeed("groww", g, keeper, insts, ticker, node.clock.now_ns)
