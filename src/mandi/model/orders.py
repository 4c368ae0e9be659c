"""Orders: the explicit order state machine, the order commands and the order events.

State machine (DESIGN §3.10)::

    NEW ──▶ SUBMITTED ──▶ ACKED ──▶ PARTIALLY_FILLED ──▶ FILLED
     │          │  ╲         │  ╲          │   ╲
     │          │   ╲        │   ╲         │    ╲──▶ CANCELLED (the unfilled rest)
     │          ▼    ▼       ▼    ▼        ▼
     └──▶ REJECTED   UNKNOWN ◀─────────────┘
                        │
                        └──▶ (reconciled with the broker) ACKED / PARTIALLY_FILLED / FILLED /
                             CANCELLED / REJECTED, or SUBMITTED again when the broker never
                             received it

* ``NEW``: persisted (``synchronous=FULL``) with its deterministic client order id, not yet sent.
* ``SUBMITTED``: handed to the broker; ``ACKED``: the broker accepted it.
* ``UNKNOWN``: we cannot tell what the broker did (a timeout, an error while sending, a crash
  between persisting and hearing back). An UNKNOWN order is *never* re-sent blindly: it is
  reconciled with the broker's order book first (:meth:`Order.reconcile`).
* ``FILLED``, ``CANCELLED`` and ``REJECTED`` are terminal and absorbing.

Fills carry a broker fill id; a fill id seen before is ignored (duplicate delivery), and the filled
quantity can never exceed the order quantity (an over-fill raises :class:`OrderError` and changes
nothing).

Commands are imperative (:class:`SubmitOrder`, :class:`CancelOrder`), events past tense
(:class:`OrderSubmitted`, :class:`OrderAccepted`, :class:`OrderRejected`, :class:`OrderFilled`,
:class:`OrderCancelled`, :class:`OrderUnknown`). Bus topics: ``order:{status}`` —
``order:submitted``, ``order:accepted``, ``order:rejected``, ``order:filled`` (every fill,
partial or final), ``order:cancelled``, ``order:unknown``; ``order:logged`` for a trade that
logging-only mode described instead of placing (:class:`mandi.model.trading.TradeLogged`).

Prices are int paise, quantities shares (units), times int ns UTC.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from mandi.core.errors import OrderError
from mandi.model.base import Message, message


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    """Kite's order types: ``SL`` (stop-loss limit: at the trigger it becomes a LIMIT order at
    ``limit_price``) and ``SL-M`` (stop-loss market: at the trigger it becomes a MARKET order).
    A BUY stop triggers when the last price rises to its trigger, a SELL stop when it falls to
    it; a stop whose trigger the market has already passed is rejected, never filled at once."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    SL = "SL"
    SL_M = "SL-M"

    @property
    def is_stop(self) -> bool:
        return self is OrderType.SL or self is OrderType.SL_M

    @property
    def has_limit(self) -> bool:
        return self is OrderType.LIMIT or self is OrderType.SL


def stop_triggered(side: Side, trigger: int, last: int) -> bool:
    """Whether a stop with ``trigger`` fires on a print at ``last`` (paise): a BUY stop when the
    last price is at or above its trigger, a SELL stop when at or below. The one trigger rule of
    the fill simulator, the risk check and every broker emulation."""
    return last >= trigger if side is Side.BUY else last <= trigger


def stop_on_wrong_side(side: Side, trigger: int, reference: int) -> bool:
    """Whether the market (``reference``, the last price; 0 = unknown) is already at or beyond
    a new stop's trigger — such a stop would fire at once and is refused."""
    return reference > 0 and stop_triggered(side, trigger, reference)


class Product(StrEnum):
    """Kite's product codes: ``MIS`` intraday (squared off by 15:15), ``NRML`` F&O carry-forward,
    ``CNC`` equity delivery."""

    MIS = "MIS"
    NRML = "NRML"
    CNC = "CNC"


class Intent(StrEnum):
    """Why an order exists: to open/increase a position or to reduce/close one (reduce-only)."""

    ENTRY = "ENTRY"
    EXIT = "EXIT"


class OrderStatus(StrEnum):
    NEW = "NEW"
    SUBMITTED = "SUBMITTED"
    ACKED = "ACKED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def working(self) -> bool:
        """Sent (or possibly sent) and not finished."""
        return self in (
            OrderStatus.SUBMITTED,
            OrderStatus.ACKED,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.UNKNOWN,
        )


S = OrderStatus
TERMINAL: frozenset[OrderStatus] = frozenset({S.FILLED, S.CANCELLED, S.REJECTED})

#: Legal status changes (fills move to PARTIALLY_FILLED/FILLED through :meth:`Order.apply_fill`).
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.NEW: frozenset({S.SUBMITTED, S.REJECTED, S.CANCELLED, S.UNKNOWN}),
    S.SUBMITTED: frozenset(
        {S.ACKED, S.PARTIALLY_FILLED, S.FILLED, S.REJECTED, S.CANCELLED, S.UNKNOWN}
    ),
    S.ACKED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.UNKNOWN}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.UNKNOWN}),
    # UNKNOWN leaves only through reconciliation with the broker's book
    S.UNKNOWN: frozenset(
        {S.SUBMITTED, S.ACKED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED}
    ),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
}


class Order:
    """The mutable state of one order (one child order when a big order is sliced).

    ``client_order_id`` is deterministic (``stable_id`` of its origin), persisted before the
    order is sent, and used by the broker to deduplicate. ``parent_id`` groups the slices of one
    logical order. ``fill_value`` is Σ qty × price (paise), so the average price is exact.
    """

    __slots__ = (
        "broker_order_id",
        "charges",
        "client_order_id",
        "created_ns",
        "exchange",
        "fill_ids",
        "fill_value",
        "filled_qty",
        "intent",
        "limit_price",
        "oco_group",
        "order_type",
        "parent_id",
        "position_id",
        "product",
        "quantity",
        "reason",
        "segment",
        "side",
        "signal_id",
        "slice_count",
        "slice_no",
        "status",
        "stop_loss",
        "strategy",
        "symbol",
        "tag",
        "target",
        "token",
        "trigger_price",
        "updated_ns",
    )

    def __init__(
        self,
        client_order_id: str,
        *,
        token: int,
        exchange: str,
        symbol: str,
        side: Side,
        quantity: int,
        created_ns: int,
        order_type: OrderType = OrderType.MARKET,
        limit_price: int = 0,
        product: Product = Product.MIS,
        intent: Intent = Intent.ENTRY,
        strategy: str = "",
        signal_id: str = "",
        position_id: str = "",
        parent_id: str = "",
        slice_no: int = 0,
        slice_count: int = 1,
        segment: str = "",
        tag: str = "",
        status: OrderStatus = OrderStatus.NEW,
        filled_qty: int = 0,
        fill_value: int = 0,
        fill_ids: tuple[str, ...] = (),
        broker_order_id: str = "",
        reason: str = "",
        charges: int = 0,
        updated_ns: int | None = None,
        stop_loss: int = 0,
        target: int = 0,
        trigger_price: int = 0,
        oco_group: str = "",
    ) -> None:
        if quantity <= 0:
            raise OrderError(f"order {client_order_id}: quantity must be positive, got {quantity}")
        if order_type in (OrderType.LIMIT, OrderType.SL) and limit_price <= 0:
            raise OrderError(
                f"order {client_order_id}: a {OrderType(order_type).value} order needs a positive "
                f"limit price, got {limit_price}"
            )
        if order_type in (OrderType.SL, OrderType.SL_M) and trigger_price <= 0:
            raise OrderError(
                f"order {client_order_id}: a {OrderType(order_type).value} order needs a positive "
                f"trigger price, got {trigger_price}"
            )
        self.client_order_id = client_order_id
        self.token, self.exchange, self.symbol = token, exchange, symbol
        # enum conversions only when given plain strings (records from a store)
        self.side = side if type(side) is Side else Side(side)
        self.quantity = quantity
        self.order_type = order_type if type(order_type) is OrderType else OrderType(order_type)
        self.limit_price = limit_price
        self.product = product if type(product) is Product else Product(product)
        self.intent = intent if type(intent) is Intent else Intent(intent)
        self.strategy, self.signal_id, self.position_id = strategy, signal_id, position_id
        self.parent_id = parent_id or client_order_id
        self.slice_no, self.slice_count = slice_no, slice_count
        self.segment, self.tag = segment, tag
        self.stop_loss, self.target = stop_loss, target
        self.trigger_price, self.oco_group = trigger_price, oco_group
        self.status = status if type(status) is OrderStatus else OrderStatus(status)
        self.filled_qty, self.fill_value = filled_qty, fill_value
        self.fill_ids: set[str] = set(fill_ids)
        self.broker_order_id, self.reason, self.charges = broker_order_id, reason, charges
        self.created_ns = created_ns
        self.updated_ns = created_ns if updated_ns is None else updated_ns

    # --- reading ----------------------------------------------------------------------------------
    @property
    def remaining(self) -> int:
        return self.quantity - self.filled_qty

    @property
    def avg_price(self) -> float:
        return self.fill_value / self.filled_qty if self.filled_qty else 0.0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def __repr__(self) -> str:
        return (
            f"<Order {self.client_order_id[:8]} {self.side.value} {self.quantity} {self.symbol}"
            f" {self.status.value} filled={self.filled_qty}>"
        )

    # --- changing ---------------------------------------------------------------------------------
    def can(self, to: OrderStatus) -> bool:
        return to in TRANSITIONS[self.status]

    def transition(self, to: OrderStatus, ts_ns: int, reason: str = "") -> OrderStatus:
        """Move to ``to``; returns the previous status. An illegal move raises
        :class:`OrderError` and changes nothing. FILLED/PARTIALLY_FILLED are reached through
        :meth:`apply_fill` (or :meth:`reconcile`), never set directly."""
        to = OrderStatus(to)
        if to in (S.FILLED, S.PARTIALLY_FILLED):
            raise OrderError(f"order {self.client_order_id}: {to.value} is reached by fills")
        if to not in TRANSITIONS[self.status]:
            raise OrderError(
                f"order {self.client_order_id}: illegal transition "
                f"{self.status.value} -> {to.value}"
            )
        prev = self.status
        self.status = to
        self.updated_ns = max(self.updated_ns, ts_ns)
        if reason:
            self.reason = reason
        return prev

    def apply_fill(self, fill_id: str, quantity: int, price: int, ts_ns: int) -> bool:
        """Apply one execution. Returns False for a duplicate fill id (ignored); raises
        :class:`OrderError` for a fill the state machine cannot accept (a terminal order, an
        over-fill, a non-positive quantity or price — except a price of 0 on an exit: an option
        expiring worthless is settled at 0) and changes nothing then."""
        if fill_id in self.fill_ids:
            return False
        if quantity <= 0 or price < 0 or (price == 0 and self.intent is not Intent.EXIT):
            raise OrderError(
                f"order {self.client_order_id}: bad fill {fill_id} "
                f"(quantity {quantity}, price {price})"
            )
        if self.status in TERMINAL or self.status is S.NEW:
            raise OrderError(
                f"order {self.client_order_id}: fill {fill_id} on a {self.status.value} order"
            )
        if self.filled_qty + quantity > self.quantity:
            raise OrderError(
                f"order {self.client_order_id}: fill {fill_id} of {quantity} would "
                f"over-fill ({self.filled_qty} of {self.quantity} filled)"
            )
        self.fill_ids.add(fill_id)
        self.filled_qty += quantity
        self.fill_value += quantity * price
        self.status = S.FILLED if self.filled_qty == self.quantity else S.PARTIALLY_FILLED
        self.updated_ns = max(self.updated_ns, ts_ns)
        return True

    def reconcile(self, broker_status: OrderStatus, ts_ns: int, reason: str = "") -> None:
        """Adopt the broker's view of a non-terminal order after its fills have been applied.

        Used for UNKNOWN orders and after a restart; the fills themselves come first through
        :meth:`apply_fill` so quantities stay consistent. A broker status that contradicts our
        fills (FILLED while we hold fewer) raises :class:`OrderError`."""
        broker_status = OrderStatus(broker_status)
        if self.terminal:
            return
        if broker_status in (S.FILLED, S.PARTIALLY_FILLED):
            # our fills were applied first, so our status already says the same thing
            if (broker_status is S.FILLED) != (
                self.filled_qty == self.quantity
            ) or not self.filled_qty:
                raise OrderError(
                    f"order {self.client_order_id}: broker says "
                    f"{broker_status.value} but {self.filled_qty} of "
                    f"{self.quantity} are known filled"
                )
            return
        if self.status is broker_status or (
            broker_status is S.ACKED and self.status is S.PARTIALLY_FILLED
        ):
            return  # nothing new (we may know more than the broker's coarse status)
        self.transition(broker_status, ts_ns, reason)

    # --- snapshots --------------------------------------------------------------------------------
    def to_record(self) -> OrderRecord:
        return OrderRecord(
            client_order_id=self.client_order_id,
            parent_id=self.parent_id,
            token=self.token,
            exchange=self.exchange,
            symbol=self.symbol,
            side=self.side._value_,  # plain str (faster than .value)
            quantity=self.quantity,
            order_type=self.order_type._value_,
            limit_price=self.limit_price,
            product=self.product._value_,
            intent=self.intent._value_,
            strategy=self.strategy,
            signal_id=self.signal_id,
            position_id=self.position_id,
            slice_no=self.slice_no,
            slice_count=self.slice_count,
            segment=self.segment,
            tag=self.tag,
            status=self.status._value_,
            filled_qty=self.filled_qty,
            fill_value=self.fill_value,
            fill_ids=tuple(sorted(self.fill_ids)),
            broker_order_id=self.broker_order_id,
            reason=self.reason,
            charges=self.charges,
            created_ns=self.created_ns,
            updated_ns=self.updated_ns,
            stop_loss=self.stop_loss,
            target=self.target,
            trigger_price=self.trigger_price,
            oco_group=self.oco_group,
        )

    @classmethod
    def from_record(cls, r: OrderRecord) -> Order:
        return cls(
            r.client_order_id,
            token=r.token,
            exchange=r.exchange,
            symbol=r.symbol,
            side=Side(r.side),
            quantity=r.quantity,
            created_ns=r.created_ns,
            order_type=OrderType(r.order_type),
            limit_price=r.limit_price,
            product=Product(r.product),
            intent=Intent(r.intent),
            strategy=r.strategy,
            signal_id=r.signal_id,
            position_id=r.position_id,
            parent_id=r.parent_id,
            slice_no=r.slice_no,
            slice_count=r.slice_count,
            segment=r.segment,
            tag=r.tag,
            status=OrderStatus(r.status),
            filled_qty=r.filled_qty,
            fill_value=r.fill_value,
            fill_ids=r.fill_ids,
            broker_order_id=r.broker_order_id,
            reason=r.reason,
            charges=r.charges,
            updated_ns=r.updated_ns,
            stop_loss=r.stop_loss,
            target=r.target,
            trigger_price=r.trigger_price,
            oco_group=r.oco_group,
        )


class OrderRecord(msgspec.Struct, frozen=True):
    """An immutable copy of an :class:`Order` (for stores, events and the API)."""

    client_order_id: str
    parent_id: str
    token: int
    exchange: str
    symbol: str
    side: str
    quantity: int
    order_type: str
    limit_price: int
    product: str
    intent: str
    strategy: str
    signal_id: str
    position_id: str
    slice_no: int
    slice_count: int
    segment: str
    tag: str
    status: str
    filled_qty: int
    fill_value: int
    fill_ids: tuple[str, ...]
    broker_order_id: str
    reason: str
    charges: int
    created_ns: int
    updated_ns: int
    stop_loss: int = 0
    target: int = 0
    trigger_price: int = 0  # SL / SL-M
    oco_group: str = ""  # one-cancels-other partners share it (a GTT OCO's two legs)


# --- commands -------------------------------------------------------------------------------------


@message
class SubmitOrder(Message, frozen=True):
    """Command: place an order (before slicing). ``client_order_id`` is deterministic;
    ``reference_price`` is the price the decision was made at (LTP or touch), used by the risk
    rules for value and band checks."""

    client_order_id: str
    ts_event: int
    token: int
    exchange: str
    symbol: str
    side: Side
    quantity: int
    reference_price: int
    order_type: OrderType = OrderType.MARKET
    limit_price: int = 0
    product: Product = Product.MIS
    intent: Intent = Intent.ENTRY
    strategy: str = ""
    signal_id: str = ""
    position_id: str = ""
    stop_loss: int = 0
    target: int = 0
    tag: str = ""
    trigger_price: int = 0  # SL / SL-M: the last price that turns the stop into an order
    oco_group: str = ""  # a GTT OCO: when one order of the group fills, the others cancel


@message
class CancelOrder(Message, frozen=True):
    """Command: cancel the unfilled rest of an order."""

    client_order_id: str
    ts_event: int
    reason: str = ""


# --- events ---------------------------------------------------------------------------------------


@message
class OrderSubmitted(Message, frozen=True):
    """An order was persisted and handed to the broker."""

    ts_event: int
    order: OrderRecord


@message
class OrderAccepted(Message, frozen=True):
    """The broker acknowledged an order."""

    ts_event: int
    order: OrderRecord


@message
class OrderRejected(Message, frozen=True):
    """The broker (or our pre-send checks) rejected an order; ``reason`` says why."""

    ts_event: int
    order: OrderRecord
    reason: str


@message
class OrderCancelled(Message, frozen=True):
    ts_event: int
    order: OrderRecord
    reason: str = ""


@message
class OrderUnknown(Message, frozen=True):
    """We cannot tell what the broker did with an order; it will be reconciled, not re-sent."""

    ts_event: int
    order: OrderRecord
    reason: str


@message
class OrderFilled(Message, frozen=True):
    """One execution (partial or final) of an order, with its Indian charges.

    ``charges`` is the total in paise (rounded); ``charges_detail`` the components in rupees as
    exact decimal strings (brokerage, stt, exchange, sebi, stamp, gst, ...)."""

    ts_event: int
    fill_id: str
    client_order_id: str
    token: int
    exchange: str
    symbol: str
    side: Side
    quantity: int
    price: int
    filled_qty: int
    order_quantity: int
    charges: int
    intent: Intent
    strategy: str = ""
    position_id: str = ""
    signal_id: str = ""
    charges_detail: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.filled_qty == self.order_quantity
