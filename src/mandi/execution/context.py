"""What the execution stages share: their collaborators, the entries in flight, today's P&L and
cash, and the risk context of an order.

The stages (:mod:`~mandi.execution.entries`, :mod:`~mandi.execution.exits`,
:mod:`~mandi.execution.fills`, :mod:`~mandi.execution.manual`) each do one job; everything they
must agree on lives here, once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from mandi.bus.memory import MessageBus
from mandi.core.calendar import IST_OFFSET_NS, NS_PER_DAY, ist_date
from mandi.core.clock import Clock
from mandi.execution.charges import ChargesModel
from mandi.execution.config import TradingConfig
from mandi.execution.orders import OrderManager
from mandi.execution.ports import TradingStore
from mandi.model.instruments import AnyInstrument, InstrumentMaster
from mandi.model.marketstate import MarketState
from mandi.model.orders import Intent, OrderType, Product, Side
from mandi.model.trading import RiskDenied, SignalGenerated
from mandi.portfolio.performance import PerformanceTracker
from mandi.portfolio.positions import PositionBook
from mandi.risk.config import RiskLimits
from mandi.risk.engine import RiskEngine
from mandi.risk.rules import Denied, OrderContext
from mandi.signals.manager import DENIED


@dataclass(slots=True)
class InFlight:
    """An entry order whose position does not exist yet (or is still filling)."""

    parent_id: str
    strategy: str
    source: int
    bias: int
    token: int
    value: int
    children: set[str] = field(default_factory=set)


def tag_for(source: int, bias: int) -> str:
    """The order tag that remembers which instrument a strategy watched and in which direction
    (a signal on NIFTY may trade a NIFTY option)."""
    return f"src:{source}:{bias}"


def parse_tag(tag: str) -> tuple[int, int]:
    """(source token, bias) of a :func:`tag_for` tag; (0, 0) for any other tag."""
    parts = tag.split(":")
    if len(parts) == 3 and parts[0] == "src":
        try:
            return int(parts[1]), int(parts[2])
        except ValueError:
            pass
    return 0, 0


class ExecutionContext:
    """The collaborators and the shared state of the execution stages.

    ``orders`` is None in logging-only mode (there is no order path at all)."""

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
        self.mode, self.cfg, self.limits = mode, cfg, limits
        self.store, self.bus, self.clock, self.master = store, bus, clock, master
        self.market, self.book, self.perf, self.risk = market, book, perf, risk
        self.orders, self.charges = orders, charges
        self.paper = mode != "live"
        self.product = Product(cfg.product)
        #: entry orders (by parent id) whose positions are not open yet
        self.inflight: dict[str, InFlight] = {}
        self._day_index = -1
        self._day = dt.date(1970, 1, 1)

    # --- the day ----------------------------------------------------------------------------------
    def today(self) -> dt.date:
        """The IST date of the clock (cached per day: it is asked on every decision)."""
        now = self.clock.now_ns()
        idx = (now + IST_OFFSET_NS) // NS_PER_DAY
        if idx != self._day_index:
            self._day_index, self._day = idx, ist_date(now)
        return self._day

    def day_pnl(self) -> int:
        """Today's realized P&L net of charges plus the unrealized P&L of open positions."""
        return self.perf.realized(self.today()) + self.book.unrealized()

    def available_cash(self) -> int:
        pending = sum(f.value for f in self.inflight.values() if f.bias > 0)
        return (
            self.limits.capital + self.perf.realized(self.today()) - self.book.invested() - pending
        )

    # --- risk -------------------------------------------------------------------------------------
    def order_context(
        self,
        inst: AnyInstrument,
        side: Side,
        qty: int,
        intent: Intent,
        order_type: OrderType = OrderType.MARKET,
        limit_price: int = 0,
        slices: int = 1,
        opens_position: bool = True,
        trigger_price: int = 0,
    ) -> OrderContext:
        """What the risk rules see of one order: the market, the book, the entries in flight,
        the cash and the order rate."""
        now = self.clock.now_ns()
        lim = self.orders.limiter if self.orders is not None else None
        queued = len(self.orders.queue) if self.orders is not None else 0
        return OrderContext(
            now_ns=now,
            instrument=inst,
            side=side,
            quantity=qty,
            intent=intent,
            limits=self.limits,
            order_type=order_type,
            limit_price=limit_price,
            ltp=self.market.ltp(inst.token),
            ltp_ns=self.market.last_ns(inst.token),
            halted=self.risk.halted,
            halt_reason=self.risk.latch.reason,
            open_positions=self.book.open_count + len(self.inflight),
            opens_position=opens_position,
            position_value=self.book.value_in(inst.token),
            exposure=self.book.exposure() + sum(f.value for f in self.inflight.values()),
            available_cash=self.available_cash(),
            orders_last_minute=(lim.sent_last_minute(now) if lim else 0) + queued,
            orders_today=(lim.sent_today(now) if lim else 0) + queued,
            slices=slices,
            entry_block=self.risk.entry_block(),
            trigger_price=trigger_price,
        )

    # --- signal outcomes --------------------------------------------------------------------------
    def finish_signal(self, signal_id: str, status: str, reason: str = "") -> None:
        """Store a signal's final status (ORDERED, LOGGED, DENIED, IGNORED)."""
        self.store.set_signal_status(signal_id, status, reason, self.clock.now_ns())

    def deny_signal(self, sig: SignalGenerated, d: Denied, **about: Any) -> None:
        """Record and publish the denial of ``sig`` and mark it DENIED."""
        self.risk.deny(
            RiskDenied(
                self.clock.now_ns(),
                d.rule,
                d.reason,
                sig.strategy,
                sig.signal_id,
                about.get("order_id", ""),
                about.get("symbol", sig.symbol),
                about.get("side", ""),
                about.get("quantity", 0),
            )
        )
        self.finish_signal(sig.signal_id, DENIED, f"{d.rule}: {d.reason}")
