"""``mandi run --feed kite``: Kite's ticker as the node's feed
(:class:`~mandi.brokers.feed.BrokerFeed`: ATM window, postbacks, reconnects)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mandi.brokers.feed import BrokerFeed
from mandi.brokers.kite import instruments as kite_instruments
from mandi.brokers.kite import session as kite_session
from mandi.brokers.kite.ticker import KiteTicker
from mandi.core.calendar import ist_date
from mandi.execution.live import FeedHealth
from mandi.model.instruments import AnyInstrument, Index

if TYPE_CHECKING:
    from mandi.brokers.session import BrokerSession
    from mandi.config import AppConfig


def kite_feed(
    cfg: AppConfig,
    session: BrokerSession,
    instruments: list[AnyInstrument],
    now_ns: Callable[[], int],
) -> BrokerFeed:
    k = cfg.broker.kite
    ticker = KiteTicker(
        k.ws_url,
        session.api_key,
        session.access_token,
        max_connections=k.max_connections,
        tokens_per_connection=k.tokens_per_connection,
        health=FeedHealth(k.silent_after_s, k.storm_reconnects, k.storm_window_s),
        backoff_max_s=k.backoff_max_s,
        exchanges={i.token: i.exchange for i in instruments if isinstance(i, Index)},
        now_ns=now_ns,
    )
    return BrokerFeed("kite", k, session, instruments, ticker, now_ns)


async def open_kite_feed(cfg: AppConfig, node: Any) -> BrokerFeed:
    """The session, today's instruments, and a feed ready to start."""
    k = cfg.broker.kite
    now = node.clock.now_ns()
    session = kite_session.current(k, now_ns=now - int(cfg.run.clock_offset_s * 1e9))
    rest = kite_session.rest_client(k, session)
    try:
        insts = await asyncio.to_thread(kite_instruments.load, k, rest, ist_date(now))
    finally:
        rest.close()
    return kite_feed(cfg, session, insts, node.clock.now_ns)
