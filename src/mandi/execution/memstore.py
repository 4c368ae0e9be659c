"""An in-memory :class:`~mandi.execution.ports.TradingStore` for tests, benchmarks and the
backtester (no durability; same semantics as the SQLite store)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from mandi.model.events import SystemEvent
from mandi.model.orders import OrderFilled, OrderRecord, OrderStatus
from mandi.model.trading import (
    ClosedTrade,
    DailyRow,
    Latch,
    PositionRecord,
    RiskDenied,
    SignalGenerated,
)

_TERMINAL = {OrderStatus.FILLED.value, OrderStatus.CANCELLED.value, OrderStatus.REJECTED.value}


class MemoryTradingStore:
    def __init__(self) -> None:
        self.signals: dict[str, SignalGenerated] = {}
        self.signal_state: dict[str, tuple[str, str]] = {}
        self.orders: dict[str, OrderRecord] = {}
        self.order_events: list[tuple[str, str, int]] = []
        self.fills: dict[str, OrderFilled] = {}
        self.positions: dict[str, PositionRecord] = {}
        self.trades: list[ClosedTrade] = []
        self.daily: dict[str, DailyRow] = {}
        self.latch = Latch()
        self.events: list[SystemEvent] = []
        self.denials: list[RiskDenied] = []
        self.sends: list[tuple[str, int]] = []
        self._by_parent: dict[str, list[str]] = {}
        self._exit_parents: dict[str, set[str]] = {}

    # units of work: every write here is immediate and nothing is durable
    def unit(self) -> AbstractContextManager[None]:
        return nullcontext()

    def sync(self) -> None:
        pass

    # signals
    def insert_signal(self, signal: SignalGenerated) -> str | None:
        if signal.signal_id in self.signals:
            return self.signal_state[signal.signal_id][0]
        self.signals[signal.signal_id] = signal
        self.signal_state[signal.signal_id] = ("NEW", "")
        return None

    def signal_status(self, signal_id: str) -> str | None:
        s = self.signal_state.get(signal_id)
        return s[0] if s else None

    def set_signal_status(self, signal_id: str, status: str, reason: str, ts_ns: int) -> None:
        if signal_id in self.signal_state:
            self.signal_state[signal_id] = (status, reason)

    # orders
    def save_new_orders(
        self, orders: list[OrderRecord], signal_status: tuple[str, str, str] | None = None
    ) -> None:
        for o in orders:
            if o.client_order_id not in self.orders:
                self.orders[o.client_order_id] = o
                self.order_events.append((o.client_order_id, o.status, o.created_ns))
                self._by_parent.setdefault(o.parent_id, []).append(o.client_order_id)
                if o.intent == "EXIT":
                    self._exit_parents.setdefault(o.position_id, set()).add(o.parent_id)
        if signal_status is not None:
            self.set_signal_status(*signal_status, 0)

    def save_order(self, order: OrderRecord, event: str = "") -> None:
        prev = self.orders.get(order.client_order_id)
        if order.status == OrderStatus.SUBMITTED.value and (
            prev is None or prev.status != order.status
        ):
            self.sends.append((order.segment, order.updated_ns))
        self.orders[order.client_order_id] = order
        self.order_events.append((order.client_order_id, order.status, order.updated_ns))

    def record_fill(
        self,
        order: OrderRecord,
        fill: OrderFilled,
        position: PositionRecord | None,
        trade: ClosedTrade | None,
        daily: DailyRow | None,
    ) -> bool:
        if fill.fill_id in self.fills:
            return False
        self.fills[fill.fill_id] = fill
        self.save_order(order)
        if position is not None:
            self.positions[position.position_id] = position
        if trade is not None:
            self.trades.append(trade)
        if daily is not None:
            self.daily[daily.date] = daily
        return True

    def open_orders(self) -> list[OrderRecord]:
        return [o for o in self.orders.values() if o.status not in _TERMINAL]

    def order_ids(self, parent_id: str) -> list[str]:
        return list(self._by_parent.get(parent_id, ()))

    def sends_since(self, ts_ns: int) -> list[tuple[str, int]]:
        return [s for s in self.sends if s[1] >= ts_ns]

    # positions
    def save_position(self, position: PositionRecord) -> None:
        self.positions[position.position_id] = position

    def open_positions(self) -> list[PositionRecord]:
        return [p for p in self.positions.values() if p.status == "OPEN"]

    def exit_order_count(self, position_id: str) -> int:
        return len(self._exit_parents.get(position_id, ()))

    def load_daily(self, date: str) -> DailyRow | None:
        return self.daily.get(date)

    def save_daily(self, row: DailyRow) -> None:
        self.daily[row.date] = row

    def save_marks(self, positions: list[PositionRecord], daily: DailyRow | None) -> None:
        for p in positions:
            self.save_position(p)
        if daily is not None:
            self.save_daily(daily)

    # latch and events
    def load_latch(self) -> Latch:
        return self.latch

    def save_latch(self, latch: Latch) -> Latch:
        if latch.version == self.latch.version + 1:
            self.latch = latch
        return self.latch

    def record_event(self, event: SystemEvent) -> None:
        self.events.append(event)

    def record_denial(self, denial: RiskDenied) -> None:
        self.denials.append(denial)
