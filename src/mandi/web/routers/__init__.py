"""The REST routers, one per concern, each a thin layer over the API core (:mod:`mandi.web.api`)
reached through the dependencies of :mod:`mandi.web.deps`:

* :mod:`.system` — health, Prometheus metrics, status, the dashboard's login/session;
* :mod:`.market` — instruments, underlyings, the info bar, candles, indicators;
* :mod:`.chains` — option chain tables with their analytics;
* :mod:`.trading` — signals, orders, positions, P&L, risk; placing and cancelling orders, the
  HALTED latch; the seed's aliases;
* :mod:`.backtests` — stored backtest runs.
"""

from mandi.web.routers import backtests, chains, market, system, trading

ALL = (system.router, market.router, chains.router, trading.router, backtests.router)

__all__ = ["ALL"]
