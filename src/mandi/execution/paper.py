"""The paper broker: a simulated broker behind the :class:`~mandi.execution.ports.Broker` port.

It fills orders with the shared fill simulator (:mod:`mandi.execution.matching`) on the market data
the node feeds it (``on_market_data``), exactly as the backtester does, and keeps its own order
book in a :class:`PaperBook` — in memory, or in SQLite (``mandi.stores.trading.SqlitePaperBook``,
``synchronous=FULL``) so that, like a real broker, it still knows after *our* process crashed
which orders it received and what filled. Placing is idempotent by client order id.

It is pure kernel code (its only I/O is the book the shell hands it), so it lives in the kernel
beside the simulator; the shell picks it for ``paper`` mode (``mandi.brokers.make_broker``) and
the backtester extends it (:class:`mandi.backtest.broker.BacktestBroker`).

Like a broker's RMS it rejects an order whose quantity is not a multiple of the lot size or
whose limit price is off the tick grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from mandi.core.clock import Clock
from mandi.execution.config import MatchingConfig
from mandi.execution.matching import Fill, FillSimulator, MarketPrint, StopRejected
from mandi.execution.ports import (
    BrokerAck,
    BrokerBalance,
    BrokerEvent,
    BrokerFill,
    BrokerOrderReport,
    BrokerOrderUpdate,
    BrokerPosition,
    OrderRequest,
)
from mandi.model.batches import TickBatch, TokenValues
from mandi.model.market import Tick
from mandi.model.orders import OrderStatus, OrderType, Product, Side

log = logging.getLogger(__name__)
S = OrderStatus


@dataclass(frozen=True, slots=True)
class PaperOrder:
    """One order in the paper broker's book."""

    client_order_id: str
    broker_order_id: str
    token: int
    exchange: str
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType
    limit_price: int
    product: Product
    reference_price: int
    lot_size: int
    tick_size: int
    accepted_ns: int
    status: OrderStatus
    filled_qty: int = 0
    reason: str = ""
    fills: tuple[BrokerFill, ...] = ()
    trigger_price: int = 0
    oco_group: str = ""

    def report(self) -> BrokerOrderReport:
        return BrokerOrderReport(
            self.client_order_id,
            self.status,
            self.quantity,
            self.filled_qty,
            self.fills,
            self.broker_order_id,
            self.reason,
        )


class PaperBook(Protocol):
    """Storage of the paper broker's book; every call commits before returning."""

    def load(self) -> list[PaperOrder]: ...

    def get(self, client_order_id: str) -> PaperOrder | None: ...

    def save(self, order: PaperOrder, new_fill: BrokerFill | None = None) -> None: ...


class MemoryPaperBook:
    def __init__(self) -> None:
        self.orders: dict[str, PaperOrder] = {}

    def load(self) -> list[PaperOrder]:
        return list(self.orders.values())

    def get(self, client_order_id: str) -> PaperOrder | None:
        return self.orders.get(client_order_id)

    def save(self, order: PaperOrder, new_fill: BrokerFill | None = None) -> None:
        self.orders[order.client_order_id] = order


class PaperBroker:
    name = "paper"
    is_live = False
    #: SL / SL-M and OCO groups live in the shared fill simulator, as a real broker holds them
    native_order_types = frozenset(OrderType)
    native_oco = True

    def __init__(
        self,
        clock: Clock,
        book: PaperBook | None = None,
        matching: MatchingConfig | None = None,
        cash: int = 0,
    ) -> None:
        self.clock = clock
        self.book: PaperBook = book if book is not None else MemoryPaperBook()
        self.sim = FillSimulator(matching)
        self.cash = cash
        self._sink: Callable[[BrokerEvent], None] = lambda e: None
        self._orders: dict[str, PaperOrder] = {}
        self._last_volume = TokenValues()  # per token: the volume of its last tick
        self.placed = 0
        for o in self.book.load():
            self._orders[o.client_order_id] = o
            if not o.status.terminal:
                self.sim.add(
                    o.client_order_id,
                    o.token,
                    o.side,
                    o.quantity - o.filled_qty,
                    accepted_ns=o.accepted_ns,
                    order_type=o.order_type,
                    limit_price=o.limit_price,
                    reference_price=o.reference_price,
                    lot_size=o.lot_size,
                    tick_size=o.tick_size,
                    fills_so_far=len(o.fills),
                    trigger_price=o.trigger_price,
                    oco_group=o.oco_group,
                )

    # --- the port ---------------------------------------------------------------------------------
    def connect(self) -> None:
        return None

    def subscribe(self, tokens: list[int]) -> None:
        return None  # the node feeds every tick through on_market_data

    def set_event_sink(self, sink: Callable[[BrokerEvent], None]) -> None:
        self._sink = sink

    def place_order(self, request: OrderRequest) -> BrokerAck:
        r = request
        held = self._orders.get(r.client_order_id) or self.book.get(r.client_order_id)
        if held is not None:  # idempotent: the same client id is the same order
            self._orders[r.client_order_id] = held
            return BrokerAck(
                "REJECTED" if held.status is S.REJECTED else "ACCEPTED",
                held.broker_order_id,
                held.reason,
            )
        reason = ""
        if r.quantity <= 0 or r.quantity % max(r.lot_size, 1):
            reason = f"quantity {r.quantity} is not a multiple of the lot size {r.lot_size}"
        elif OrderType(r.order_type).has_limit and (
            r.limit_price <= 0 or r.limit_price % max(r.tick_size, 1)
        ):
            reason = f"limit price {r.limit_price} is not on the tick grid of {r.tick_size}"
        elif OrderType(r.order_type).is_stop and (
            r.trigger_price <= 0 or r.trigger_price % max(r.tick_size, 1)
        ):
            reason = f"trigger price {r.trigger_price} is not on the tick grid of {r.tick_size}"
        now = self.clock.now_ns()
        self.placed += 1
        o = PaperOrder(
            r.client_order_id,
            f"P{r.client_order_id.replace('-', '')[:15]}",
            r.token,
            r.exchange,
            r.symbol,
            Side(r.side),
            r.quantity,
            OrderType(r.order_type),
            r.limit_price,
            Product(r.product),
            r.reference_price,
            r.lot_size,
            r.tick_size,
            now,
            S.REJECTED if reason else S.ACKED,
            reason=reason,
            trigger_price=r.trigger_price,
            oco_group=r.oco_group,
        )
        if not reason:
            try:
                self.sim.add(
                    o.client_order_id,
                    o.token,
                    o.side,
                    o.quantity,
                    accepted_ns=now,
                    order_type=o.order_type,
                    limit_price=o.limit_price,
                    reference_price=o.reference_price,
                    lot_size=o.lot_size,
                    tick_size=o.tick_size,
                    trigger_price=o.trigger_price,
                    oco_group=o.oco_group,
                )
            except StopRejected as e:  # the market already passed the trigger
                o = replace(o, status=S.REJECTED, reason=str(e).split(": ", 1)[-1])
        self.book.save(o)
        self._orders[o.client_order_id] = o
        if o.status is S.REJECTED:
            return BrokerAck("REJECTED", o.broker_order_id, o.reason)
        return BrokerAck("ACCEPTED", o.broker_order_id)

    def modify_order(
        self, client_order_id: str, quantity: int | None = None, limit_price: int | None = None
    ) -> BrokerAck:
        o = self._orders.get(client_order_id)
        w = self.sim.get(client_order_id)
        if o is None or w is None or o.status.terminal:
            return BrokerAck("REJECTED", reason="no open order to modify")
        new_qty = quantity if quantity is not None else o.quantity
        if new_qty < o.filled_qty or new_qty % max(o.lot_size, 1):
            return BrokerAck("REJECTED", o.broker_order_id, f"bad quantity {new_qty}")
        o = replace(
            o,
            quantity=new_qty,
            limit_price=limit_price if limit_price is not None else o.limit_price,
        )
        self.sim.cancel(client_order_id)
        if new_qty > o.filled_qty:
            self.sim.add(
                client_order_id,
                o.token,
                o.side,
                new_qty - o.filled_qty,
                accepted_ns=self.clock.now_ns(),
                order_type=o.order_type,
                limit_price=o.limit_price,
                reference_price=o.reference_price,
                lot_size=o.lot_size,
                tick_size=o.tick_size,
                fills_so_far=len(o.fills),
                trigger_price=w.trigger,
                oco_group=o.oco_group,
            )
        else:
            o = replace(o, status=S.FILLED)
        self._orders[client_order_id] = o
        self.book.save(o)
        return BrokerAck("ACCEPTED", o.broker_order_id)

    def cancel_order(self, client_order_id: str) -> BrokerAck:
        o = self._orders.get(client_order_id) or self.book.get(client_order_id)
        if o is None:
            return BrokerAck("REJECTED", reason="unknown order")
        if o.status.terminal:
            return BrokerAck("REJECTED", o.broker_order_id, f"order is {o.status.value}")
        self.sim.cancel(client_order_id)
        o = replace(o, status=S.CANCELLED, reason="cancelled by the client")
        self._orders[client_order_id] = o
        self.book.save(o)
        return BrokerAck("ACCEPTED", o.broker_order_id)

    def order_status(self, client_order_id: str) -> BrokerOrderReport | None:
        o = self._orders.get(client_order_id) or self.book.get(client_order_id)
        return o.report() if o is not None else None

    def orders(self) -> list[BrokerOrderReport]:
        return [o.report() for o in self._orders.values()]

    def positions(self) -> list[BrokerPosition]:
        net: dict[int, list[int]] = {}
        sym: dict[int, str] = {}
        for o in self._orders.values():
            for f in o.fills:
                q = f.quantity * o.side.sign
                v = net.setdefault(o.token, [0, 0])
                v[0] += q
                v[1] += q * f.price
                sym[o.token] = o.symbol
        return [
            BrokerPosition(t, sym[t], q, (v / q) if q else 0.0) for t, (q, v) in net.items() if q
        ]

    def balance(self) -> BrokerBalance:
        flow = sum(
            -o.side.sign * f.quantity * f.price for o in self._orders.values() for f in o.fills
        )
        return BrokerBalance(self.cash + flow)

    # --- market data ------------------------------------------------------------------------------
    def on_market_data(self, t: Tick) -> None:
        prev = self._last_volume.get(t.token)
        self._last_volume.set(t.token, t.volume)
        if not self.sim.has_orders(t.token):
            return
        traded = t.volume - prev if prev is not None and t.volume >= prev else t.last_qty
        fills = self.sim.on_print(
            t.token,
            MarketPrint(t.ts_event, t.price, t.bid, t.ask, t.bid_qty, t.ask_qty, max(traded, 0)),
        )
        self._record_fills(fills)

    def active_tokens(self) -> set[int]:
        """Tokens with working orders: their ticks must go through :meth:`on_market_data` one by
        one (they can fill); any other tick only leaves its volume behind."""
        return self.sim.active_tokens()

    def on_market_batch(self, batch: TickBatch, lo: int, hi: int) -> None:
        """Ticks ``lo`` to ``hi`` of ``batch``, none of an instrument with working orders: what
        :meth:`on_market_data` does for each of them (remember the volume), in one call."""
        self._last_volume.set_batch(batch.token, batch.volume, lo, hi)

    def _record_fills(self, fills: list[Fill]) -> None:
        """Book the simulator's fills and report them: the broker's record first, then the
        client hears of it; then the OCO partners the simulator cancelled."""
        self._record(fills)
        for cid, why in self.sim.take_cancelled():
            o = self._orders.get(cid)
            if o is None or o.status.terminal:
                continue
            o = replace(o, status=S.CANCELLED, reason=why)
            self._orders[cid] = o
            self.book.save(o)
            self._sink(BrokerOrderUpdate(cid, S.CANCELLED, self.clock.now_ns(), why))

    def _record(self, fills: list[Fill]) -> None:
        for f in fills:
            o = self._orders[f.order_id]
            bf = BrokerFill(f.order_id, f.fill_id, f.quantity, f.price, f.ts)
            filled = o.filled_qty + f.quantity
            o = replace(
                o,
                filled_qty=filled,
                fills=(*o.fills, bf),
                status=S.FILLED if filled == o.quantity else S.PARTIALLY_FILLED,
            )
            self._orders[f.order_id] = o
            self.book.save(o, bf)
            self._sink(bf)
