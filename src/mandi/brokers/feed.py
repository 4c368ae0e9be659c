"""``mandi run --feed NAME`` for a broker: its ticker as the node's feed (Kite and Angel One
share this).

At start: the session, today's instruments (cached), then the ticker subscribes the configured
underlyings (``broker.NAME.symbols``: indices and stocks) and, for each index, the calls and
puts within ``strikes_each_side`` strikes of ATM on the nearest ``expiries`` expiries. As the
index moves, the window follows ATM: new strikes are subscribed, those that left the window
(with a margin of two strikes, so a price sitting between two strikes does not churn) are
unsubscribed.

Order postbacks arriving on the ticker go to ``on_order`` (the live broker sets it); every
reconnect calls ``on_reconnect`` (the trading layer reconciles). Ticks go into a bounded queue:
a full queue drops the batch and counts it, never slowing the socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from mandi.brokers.ticker import WsTicker
from mandi.core.calendar import ist_date
from mandi.core.errors import ConfigError
from mandi.execution.live import strike_window
from mandi.model.instruments import AnyInstrument, Index, InstrumentMaster, Option
from mandi.model.market import Tick

log = logging.getLogger(__name__)


class BrokerFeed:
    """A broker's ticker presented as a node feed (see the module docstring)."""

    live = True
    wall_clock = True

    def __init__(
        self,
        name: str,
        cfg: Any,
        session: Any,
        instruments: list[AnyInstrument],
        ticker: WsTicker,
        now_ns: Callable[[], int],
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.session = session
        self._instruments = instruments
        self.master = InstrumentMaster(instruments)
        self.now_ns = now_ns
        self.ticker = ticker
        self.health = ticker.health
        self.exchange_time_ns = 0
        self.on_order: Callable[[dict[str, Any]], None] = lambda order: None
        self.on_reconnect: Callable[[], None] = lambda: None
        # the ticker was refused for the session (the live broker sets it: it stops sending)
        self.on_session_dead: Callable[[str], None] = lambda reason: None
        self.ticker.set_handlers(self._on_ticks, lambda o: self.on_order(o))
        self.ticker.on_reconnect = lambda: self.on_reconnect()
        self.ticker.on_session_dead = lambda reason: self.on_session_dead(reason)
        self._queue: asyncio.Queue[list[Tick]] = asyncio.Queue(10_000)
        self.dropped = 0
        self._underlyings: dict[int, list[Option]] = {}  # index token -> its options
        self._window: dict[int, set[int]] = {}
        self._plan()

    def take_price_limits(self) -> dict[int, tuple[int, int]]:
        """Circuit limits the ticker learnt since the last call (token -> (lower, upper))."""
        return self.ticker.take_price_limits()

    @property
    def rejected(self) -> Counter[str]:
        """Frames the ticker could not decode, by reason (the node counts them per feed)."""
        return self.ticker.rejected

    def _plan(self) -> None:
        k = self.cfg
        today = ist_date(self.now_ns())
        base: list[int] = []
        for sym in k.symbols:
            try:
                inst = self.master.by_symbol(sym)
            except Exception:
                raise ConfigError(
                    f"broker.{self.name}.symbols", sym, f"not in {self.name}'s instruments"
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
        keep = getattr(self.session, "maintain", None)  # a session refreshed before expiry
        keeper = asyncio.create_task(keep()) if keep is not None else None
        try:
            while True:
                yield await self._queue.get()
        finally:
            if keeper is not None:
                keeper.cancel()
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
            "%s feed: %s ATM window follows %.2f (+%d -%d instruments)",
            self.name,
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
            "frames": self.ticker.frames,
            "session_expires_ns": self.session.expires_ns,
        }
