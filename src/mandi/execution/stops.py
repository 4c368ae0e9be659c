"""Stop orders a broker cannot hold itself, held by the kernel with the simulator's semantics.

A broker adapter declares which order types it supports natively (``Broker.native_order_types``;
the paper and backtest brokers hold SL, SL-M and OCO groups in the shared fill simulator). For
any other broker the order manager keeps a stop here and, when a last price strictly after the
stop was accepted reaches its trigger (:func:`mandi.model.orders.stop_triggered`, the rule the
fill simulator uses), sends what the stop becomes: a MARKET order (SL-M) or a LIMIT order at the
stop's limit (SL). The partners of its one-cancels-other group are dropped then, so a GTT-style
target/stop pair never sends both.

Pure kernel code: prices in, triggered stops out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mandi.model.orders import OrderType, Side, stop_on_wrong_side, stop_triggered


@dataclass(frozen=True, slots=True)
class PendingStop:
    """A stop held by the kernel: ``order_type`` SL or SL-M, or LIMIT for the target leg of an
    OCO pair whose broker cannot hold the pair (it is sent when its price is traded through)."""

    order_id: str
    token: int
    side: Side
    order_type: OrderType
    trigger: int
    limit_price: int
    accepted_ns: int
    oco_group: str = ""


@dataclass
class StopEmulator:
    """The kernel's book of emulated stops (module doc)."""

    pending: dict[str, PendingStop] = field(default_factory=dict)
    _by_token: dict[int, set[str]] = field(default_factory=dict)
    _groups: dict[str, set[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, stop: PendingStop, last: int = 0) -> None:
        """Hold ``stop``; refused (``ValueError``) when ``last`` already passed its trigger."""
        if stop.order_type.is_stop and stop_on_wrong_side(stop.side, stop.trigger, last):
            raise ValueError(
                f"order {stop.order_id}: the {stop.side.value} stop's trigger is on the wrong "
                "side of the last price"
            )
        self.pending[stop.order_id] = stop
        self._by_token.setdefault(stop.token, set()).add(stop.order_id)
        if stop.oco_group:
            self._groups.setdefault(stop.oco_group, set()).add(stop.order_id)

    def cancel(self, order_id: str) -> PendingStop | None:
        stop = self.pending.pop(order_id, None)
        if stop is None:
            return None
        ids = self._by_token.get(stop.token)
        if ids is not None:
            ids.discard(order_id)
            if not ids:
                del self._by_token[stop.token]
        if stop.oco_group:
            group = self._groups.get(stop.oco_group)
            if group is not None:
                group.discard(order_id)
                if not group:
                    del self._groups[stop.oco_group]
        return stop

    def watches(self, token: int) -> bool:
        return token in self._by_token

    def on_price(self, token: int, last: int, ts: int) -> tuple[list[PendingStop], list[str]]:
        """(stops that fire on this last price, OCO partners dropped because of them). A stop
        fires only on a price after its acceptance; a LIMIT partner when traded through."""
        ids = self._by_token.get(token)
        if not ids or last <= 0:
            return [], []
        fired: list[PendingStop] = []
        dropped: list[str] = []
        for oid in sorted(ids, key=lambda i: not self.pending[i].order_type.is_stop):
            stop = self.pending.get(oid)
            if stop is None or ts <= stop.accepted_ns:
                continue
            if stop.order_type.is_stop:
                hit = stop_triggered(stop.side, stop.trigger, last)
            else:  # a resting limit partner: traded through
                hit = last < stop.limit_price if stop.side is Side.BUY else last > stop.limit_price
            if not hit:
                continue
            self.cancel(oid)
            fired.append(stop)
            for other in list(self._groups.get(stop.oco_group, ())) if stop.oco_group else ():
                if self.cancel(other) is not None:
                    dropped.append(other)
        return fired, dropped
