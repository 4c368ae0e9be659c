"""``mandi run --feed kite``: Kite's ticker as the node's feed.

At start: the session from the token file, today's instrument dump (cached), then the ticker
subscribes the configured underlyings (``broker.kite.symbols``: indices and stocks) and, for
each index, the calls and puts within ``strikes_each_side`` strikes of ATM on the nearest
``expiries`` expiries. As the index moves, the window follows ATM: new strikes are subscribed,
those that left the window (with a margin of two strikes, so a price sitting between two strikes
does not churn) are unsubscribed.

Order postbacks arriving on the ticker go to ``on_order`` (the live broker sets it); every
reconnect calls ``on_reconnect`` (the trading layer reconciles).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from mandi.brokers.kite import instruments as kite_instruments
from mandi.brokers.kite import session as kite_session
from mandi.brokers.kite.ticker import KiteTicker
from mandi.core.calendar import ist_date
from mandi.core.errors import ConfigError
from mandi.execution.live import FeedHealth, strike_window
from mandi.model.instruments import AnyInstrument, Index, InstrumentMaster, Option
from mandi.model.market import Tick

if TYPE_CHECKING:
    from mandi.brokers.session import BrokerSession
    from mandi.config import AppConfig
    from mandi.core.clock import Clock

log = logging.getLogger(__name__)


class KiteFeed:
    name = "kite"
    live = True
    wall_clock = True

    def __init__(
        self,
        cfg: AppConfig,
        session: BrokerSession,
        instruments: list[AnyInstrument],
        now_ns: Callable[[], int],
    ) -> None:
        k = cfg.broker.kite
        self.cfg = k
        self.session = session
        self._instruments = instruments
        self.master = InstrumentMaster(instruments)
        self.now_ns = now_ns
        self.health = FeedHealth(k.silent_after_s, k.storm_reconnects, k.storm_window_s)
        self.ticker = KiteTicker(
            k.ws_url,
            session.api_key,
            session.access_token,
            max_connections=k.max_connections,
            tokens_per_connection=k.tokens_per_connection,
            health=self.health,
            backoff_max_s=k.backoff_max_s,
            exchanges={i.token: i.exchange for i in instruments if isinstance(i, Index)},
            now_ns=now_ns,
        )
        self.exchange_time_ns = 0
        self.on_order: Callable[[dict[str, Any]], None] = lambda order: None
        self.on_reconnect: Callable[[], None] = lambda: None
        self.ticker.set_handlers(self._on_ticks, lambda o: self.on_order(o))
        self.ticker.on_reconnect = lambda: self.on_reconnect()
        self._queue: asyncio.Queue[list[Tick]] = asyncio.Queue(10_000)
        self.dropped = 0
        self._underlyings: dict[int, list[Option]] = {}  # index token -> its options (expiries)
        self._atm: dict[int, int] = {}
        self._window: dict[int, set[int]] = {}
        self._plan(cfg)

    def _plan(self, cfg: AppConfig) -> None:
        k = cfg.broker.kite
        today = ist_date(self.now_ns())
        base: list[int] = []
        for sym in k.symbols:
            try:
                inst = self.master.by_symbol(sym)
            except Exception:
                raise ConfigError(
                    "broker.kite.symbols", sym, "not in Kite's instrument dump"
                ) from None
            base.append(inst.token)
            if isinstance(inst, Index) and k.strikes_each_side > 0 and k.expiries > 0:
                exps = [e for e in self.master.expiries(sym) if e >= today][: k.expiries]
                self._underlyings[inst.token] = [
                    o for e in exps for o in self.master.options(sym, e)
                ]
        self.ticker.subscribe(base, k.mode)

    # --- the node's Feed --------------------------------------------------------------------------
    def instruments(self) -> list[AnyInstrument]:
        return self._instruments

    async def batches(self) -> AsyncIterator[list[Tick]]:
        await self.ticker.connect()
        try:
            while True:
                yield await self._queue.get()
        finally:
            await self.ticker.close()

    def _on_ticks(self, ticks: list[Tick]) -> None:
        self.exchange_time_ns = ticks[-1].ts_event
        try:
            self._queue.put_nowait(ticks)
        except asyncio.QueueFull:
            self.dropped += len(ticks)
        for t in ticks:
            if t.token in self._underlyings:
                self._follow_atm(t.token, t.price)

    def _follow_atm(self, token: int, spot: int) -> None:
        opts = self._underlyings[token]
        n = self.cfg.strikes_each_side
        want = strike_window(opts, spot, n)
        held = self._window.get(token, set())
        if want <= held:
            return
        keep = strike_window(opts, spot, n + 2)
        drop = held - keep
        self.ticker.subscribe(sorted(want - held), self.cfg.mode)
        if drop:
            self.ticker.unsubscribe(sorted(drop))
        self._window[token] = (held - drop) | want
        log.info(
            "Kite feed: %s ATM window follows %.2f (+%d -%d instruments)",
            self.master.by_token(token).symbol,
            spot / 100,
            len(want - held),
            len(drop),
        )

    def status(self) -> dict[str, Any]:
        return {
            **self.health.snapshot(self.now_ns()),
            "subscribed": len(self.ticker.modes),
            "queue_dropped": self.dropped,
            "frames": self.ticker.stats.frames,
            "session_expires_ns": self.session.expires_ns,
        }


async def open_kite_feed(cfg: AppConfig, clock: Clock) -> KiteFeed:
    """The session, today's instruments, and a feed ready to start (see the module docstring)."""
    k = cfg.broker.kite
    now = clock.now_ns()
    session = kite_session.current(k, now_ns=now - int(cfg.run.clock_offset_s * 1e9))
    rest = kite_session.rest_client(k, session)
    try:
        insts = await asyncio.to_thread(kite_instruments.load, k, rest, ist_date(now))
    finally:
        rest.close()
    return KiteFeed(cfg, session, insts, clock.now_ns)
