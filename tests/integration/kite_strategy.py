"""A strategy for the live end-to-end test: buys INFY once, on a tick, unless it already holds
a position (so a restart does not buy again)."""

from __future__ import annotations

from mandi.model.market import Tick
from mandi.strategy.base import Strategy


class BuyOnce(Strategy):
    name = "buy_once"

    def on_tick(self, tick: Tick) -> None:
        if getattr(self, "_sent", False) or self.ctx.positions(self.id):
            return
        self._sent = True
        self.signal("BUY", confidence=1.0, quantity=1)
