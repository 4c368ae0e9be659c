"""The execution engine: signals → trade plans → risk → orders (or a log line), fills →
positions, and exits — a thin coordinator over one stage per job:

* :class:`~mandi.execution.entries.EntryStage` — a signal at most once: checks, plan
  (:mod:`~mandi.execution.plan`: instrument, size, exit levels), risk, submit;
* :class:`~mandi.execution.exits.ExitStage` — stop-loss, target, trailing, expiry, square-off,
  halt and opposite-signal exits;
* :class:`~mandi.execution.fills.FillStage` — a fill becomes order state, charges, position and
  the daily row (one transaction), and a finished order leaves the in-flight entries;
* :class:`~mandi.execution.manual.ManualOrders` — ``mandi order`` through the same rules.

They share one :class:`~mandi.execution.context.ExecutionContext` (collaborators, entries in
flight, today's P&L, the risk context of an order). One code path for the three modes:

* ``logging``: everything up to and including the risk check runs; the full intended trade
  (instrument, quantity, entry, stop-loss, target, max loss) is logged and published as
  :class:`~mandi.model.trading.TradeLogged` on ``order:logged``. There is no broker: no code path
  can place an order.
* ``paper`` / ``live``: allowed orders go to the :class:`~mandi.execution.orders.OrderManager`
  and its broker (the paper broker, or a live one that only ``live`` mode accepts).
"""

from __future__ import annotations

from mandi.bus.memory import MessageBus
from mandi.core.clock import Clock
from mandi.execution.baskets import BasketExecutor
from mandi.execution.charges import ChargesModel
from mandi.execution.config import TradingConfig
from mandi.execution.context import ExecutionContext, InFlight, parse_tag, tag_for
from mandi.execution.entries import EntryStage
from mandi.execution.exits import ExitStage
from mandi.execution.fills import FillStage
from mandi.execution.manual import ManualOrders, ManualResult
from mandi.execution.orders import OrderManager
from mandi.execution.plan import Plan
from mandi.execution.ports import TradingStore
from mandi.model.instruments import InstrumentMaster
from mandi.model.marketstate import MarketState
from mandi.portfolio.performance import PerformanceTracker
from mandi.portfolio.positions import PositionBook
from mandi.risk.config import RiskLimits
from mandi.risk.engine import RiskEngine

__all__ = ["ExecutionEngine", "InFlight", "ManualResult", "Plan", "parse_tag", "tag_for"]


class ExecutionEngine:
    """Builds the execution stages on one context and exposes their entry points:
    :attr:`handle_signal` (bus handler of ``signal:>``), :attr:`apply_fill` and
    :attr:`order_done` (the order manager's callbacks), :attr:`check_exits` and
    :attr:`exit_position` (the position monitor, the backtester), :attr:`handle_manual`."""

    def __init__(
        self,
        *,
        mode: str,
        cfg: TradingConfig,
        limits: RiskLimits,
        store: TradingStore,
        bus: MessageBus,
        clock: Clock,
        master: InstrumentMaster,
        market: MarketState,
        book: PositionBook,
        perf: PerformanceTracker,
        risk: RiskEngine,
        orders: OrderManager | None,
        charges: ChargesModel,
    ) -> None:
        if mode not in ("logging", "paper", "live"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "logging" and orders is not None:
            raise ValueError("logging-only mode has no order path")
        if mode != "logging" and orders is None:
            raise ValueError(f"{mode} mode needs an order manager")
        broker = orders.broker if orders is not None else None
        if broker is not None and broker.is_live and mode != "live":
            raise ValueError(f"a live broker ({broker.name}) cannot be used in {mode} mode")
        self.mode = mode
        self.ctx = ctx = ExecutionContext(
            mode=mode,
            cfg=cfg,
            limits=limits,
            store=store,
            bus=bus,
            clock=clock,
            master=master,
            market=market,
            book=book,
            perf=perf,
            risk=risk,
            orders=orders,
            charges=charges,
        )
        self.exits = ExitStage(ctx)
        self.entries = EntryStage(ctx, self.exits)
        self.fills = FillStage(ctx)
        self.manual = ManualOrders(ctx, self.entries, self.exits)
        if cfg.exit_orders == "stop_orders":
            self.fills.protect = self.exits.protect
        self.baskets = BasketExecutor(ctx, self.entries, self.exits, cfg.basket_on_failure)
        self.place_basket = self.baskets.place
        # the stages' entry points, bound once (the backtester calls check_exits per bar)
        self.handle_signal = self.entries.handle_signal
        self.apply_fill = self.fills.apply
        self.order_done = self.fills.order_done
        self.check_exits = self.exits.check
        self.exit_position = self.exits.exit_position
        self.handle_manual = self.manual.handle

    @property
    def inflight(self) -> dict[str, InFlight]:
        """Entry orders (by parent id) whose positions are not open yet."""
        return self.ctx.inflight

    def day_pnl(self) -> int:
        """Today's realized P&L net of charges plus the unrealized P&L of open positions."""
        return self.ctx.day_pnl()
