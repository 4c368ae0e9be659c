"""The backtest's trading store: :class:`~mandi.execution.memstore.MemoryTradingStore` with
indexes, so that a run with a hundred thousand orders stays linear (same semantics)."""

from __future__ import annotations

from mandi.execution.memstore import MemoryTradingStore
from mandi.model.orders import OrderRecord


class BacktestStore(MemoryTradingStore):
    def __init__(self) -> None:
        super().__init__()
        self._by_parent: dict[str, list[str]] = {}
        self._exit_parents: dict[str, set[str]] = {}

    def _index(self, o: OrderRecord) -> None:
        kids = self._by_parent.setdefault(o.parent_id, [])
        if o.client_order_id not in kids:
            kids.append(o.client_order_id)
        if o.intent == "EXIT":
            self._exit_parents.setdefault(o.position_id, set()).add(o.parent_id)

    def save_new_orders(
        self, orders: list[OrderRecord], signal_status: tuple[str, str, str] | None = None
    ) -> None:
        for o in orders:
            if o.client_order_id not in self.orders:
                self._index(o)
        super().save_new_orders(orders, signal_status)

    def save_order(self, order: OrderRecord, event: str = "") -> None:
        if order.client_order_id not in self.orders:
            self._index(order)
        super().save_order(order, event)

    def order_ids(self, parent_id: str) -> list[str]:
        return list(self._by_parent.get(parent_id, ()))

    def exit_order_count(self, position_id: str) -> int:
        return len(self._exit_parents.get(position_id, ()))
