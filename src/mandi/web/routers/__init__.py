"""The REST routers, one per concern, each a thin layer over the API core (:mod:`mandi.web.api`)
reached through the dependencies of :mod:`mandi.web.deps`:

* :mod:`.system` — health, Prometheus metrics, status, the dashboard's login/session;
* :mod:`.market` — instruments, underlyings, the info bar, candles, indicators;
* :mod:`.chains` — option chain tables with their analytics;
* :mod:`.trading` — signals, orders, positions, P&L, risk; placing and cancelling orders, the
  HALTED latch; the seed's aliases;
* :mod:`.backtests` — stored backtest runs;
* :mod:`.options` — basket templates, payoff and Greeks, the volatility and OI views;
* :mod:`.webhooks` — inbound signal webhooks (TradingView / ChartInk alerts).
"""

from mandi.web.routers import backtests, chains, market, options, system, trading, webhooks

ALL = (
    system.router,
    market.router,
    chains.router,
    options.router,
    trading.router,
    backtests.router,
    webhooks.router,
)

__all__ = ["ALL"]
