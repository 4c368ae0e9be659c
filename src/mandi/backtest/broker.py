"""The backtest broker: the paper broker plus matching on bars.

:class:`BacktestBroker` *is* :class:`~mandi.execution.paper.PaperBroker` — the same order book,
idempotent placing, lot/tick checks and the same shared fill simulator
(:mod:`mandi.execution.matching`) — with two more ways to match its working orders:

* :meth:`match_bar` — a bar's open (``FillSimulator.on_bar``): market orders accepted at or before
  the bar's start fill at its open (moved ``slippage_ticks`` against us), limit orders when the bar
  trades through them;
* :meth:`match_price` — one price print at a given moment (``FillSimulator.on_print``): used for
  the intrabar stop/target levels and for the "this bar's close" fill model;
* :meth:`match_quote` — a recorded quote of an option contract (a chain snapshot's LTP, bid and
  ask), and :meth:`settle` — an expired contract at its intrinsic value (option-leg backtests).

On tick data the backtester uses the paper broker's own ``on_market_data`` unchanged.
"""

from __future__ import annotations

from mandi.execution.matching import MarketPrint
from mandi.execution.paper import PaperBroker
from mandi.model.market import Candle


class BacktestBroker(PaperBroker):
    name = "backtest"
    is_live = False

    def match_bar(self, token: int, bar: Candle) -> int:
        """Fill what the bar's open (or range, for resting limits) fills; returns the number of
        fills."""
        if not self.sim.has_orders(token):
            return 0
        fills = self.sim.on_bar(token, bar)
        self._record_fills(fills)
        return len(fills)

    def match_price(self, token: int, price: int, ts: int, quantity: int = 0) -> int:
        """Fill what one print at ``price`` (paise) at time ``ts`` fills."""
        if not self.sim.has_orders(token):
            return 0
        fills = self.sim.on_print(token, MarketPrint(ts, price, traded_qty=quantity))
        self._record_fills(fills)
        return len(fills)

    def match_quote(self, token: int, quote: MarketPrint) -> int:
        """Fill what one recorded quote (last, bid, ask; a chain snapshot's) fills."""
        if not self.sim.has_orders(token):
            return 0
        fills = self.sim.on_print(token, quote)
        self._record_fills(fills)
        return len(fills)

    def settle(self, token: int, price: int, ts: int) -> int:
        """Fill the working (exit) orders of an expired contract at its settlement price."""
        if not self.sim.has_orders(token):
            return 0
        fills = self.sim.settle(token, price, ts)
        self._record_fills(fills)
        return len(fills)
