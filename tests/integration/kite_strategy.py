"""A strategy for the live end-to-end test: buys INFY once, on a tick, unless it already holds
a position (so a restart does not buy again). It lets one second of market data pass first:
the trading layer blocks entries until its feed-health check (every 0.25 s) has seen the feed
connected, so a signal on the very first tick could be refused."""

from __future__ import annotations

from mandi.model.market import Tick
from mandi.strategy.base import Strategy


class BuyOnce(Strategy):
    name = "buy_once"

    def on_tick(self, tick: Tick) -> None:
        first = getattr(self, "_first_ns", 0) or tick.ts_init
        self._first_ns = first
        if tick.ts_init - first < 1_000_000_000:
            return
        if getattr(self, "_sent", False) or self.ctx.positions(self.id):
            return
        self._sent = True
        self.signal("BUY", confidence=1.0, quantity=1)
