"""Ports of the trading kernel: the broker and the trading store (protocols), and the values
that cross them.

The kernel only sees these protocols; the shell implements them — the paper broker
(:class:`mandi.execution.paper.PaperBroker`, kernel code over the shared fill simulator, chosen by
``mandi.brokers.make_broker``), ``mandi.stores.trading`` (:class:`TradingStore` on SQLite with
``synchronous=FULL``) — and tests and the backtester use the in-memory store
(:class:`mandi.execution.memstore.MemoryTradingStore`). Calls are synchronous; a broker whose API
is slow answers ``place_order`` with ``PENDING`` and reports the outcome through the event sink.

The store's records (:class:`~mandi.model.trading.Latch`, :class:`~mandi.model.trading.DailyRow`,
:class:`~mandi.model.trading.ClosedTrade`) live in :mod:`mandi.model.trading` — risk and portfolio
use them without importing execution — and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mandi.model.batches import TickBatch
from mandi.model.market import Tick
from mandi.model.orders import OrderFilled, OrderRecord, OrderStatus, OrderType, Product, Side
from mandi.model.trading import ClosedTrade, DailyRow, Latch, PositionRecord
from mandi.risk.engine import RiskStore
from mandi.signals.manager import SignalStore

__all__ = [
    "Broker",
    "BrokerAck",
    "BrokerBalance",
    "BrokerEvent",
    "BrokerFill",
    "BrokerOrderReport",
    "BrokerOrderUpdate",
    "BrokerPosition",
    "ClosedTrade",
    "DailyRow",
    "Latch",
    "OrderRequest",
    "TradingStore",
]

# --- broker values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a broker is asked to place. ``client_order_id`` makes placing idempotent."""

    client_order_id: str
    token: int
    exchange: str
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType
    limit_price: int
    product: Product
    reference_price: int = 0  # the decision price (paper: decides whether a limit is marketable)
    lot_size: int = 1
    tick_size: int = 5
    trigger_price: int = 0  # SL / SL-M
    oco_group: str = ""  # one-cancels-other partners (a GTT OCO's stop and target)


@dataclass(frozen=True, slots=True)
class BrokerAck:
    """The broker's immediate answer: ``ACCEPTED``, ``REJECTED`` (with ``reason``) or
    ``PENDING`` (the outcome will come as an event)."""

    status: str
    broker_order_id: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BrokerFill:
    client_order_id: str
    fill_id: str
    quantity: int
    price: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class BrokerOrderUpdate:
    """A status change reported by the broker (accepted, rejected, cancelled)."""

    client_order_id: str
    status: OrderStatus
    ts_ns: int
    reason: str = ""
    broker_order_id: str = ""


BrokerEvent = BrokerFill | BrokerOrderUpdate


@dataclass(frozen=True, slots=True)
class BrokerOrderReport:
    """The broker's book entry of one order, for reconciliation: its status and every fill."""

    client_order_id: str
    status: OrderStatus
    quantity: int
    filled_qty: int
    fills: tuple[BrokerFill, ...] = ()
    broker_order_id: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    token: int
    symbol: str
    quantity: int  # signed: + long, − short
    average_price: float


@dataclass(frozen=True, slots=True)
class BrokerBalance:
    cash: int
    used_margin: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Broker(Protocol):
    """The broker port (DESIGN §3.10): connect, subscribe, place/modify/cancel, orders,
    positions, balance. ``is_live`` is True only for brokers that move real money; the execution
    engine refuses a live broker unless the mode is ``live``."""

    name: str
    is_live: bool
    # What the broker holds itself. Optional (adapters that do not say are taken to hold MARKET
    # and LIMIT only): other types and OCO groups are then held by the kernel
    # (:mod:`mandi.execution.stops`) with the fill simulator's trigger rule. See
    # :func:`native_order_types` and :func:`native_oco`.
    # native_order_types: frozenset[OrderType]
    # native_oco: bool
    # Optional too: ``order_reports(client_order_ids) -> {id: BrokerOrderReport | None}``, the
    # reports of many orders from one read of the broker's book (a reconciliation pass uses it
    # when it has more than one order to settle; else :meth:`order_status` per order).

    def connect(self) -> None: ...

    def subscribe(self, tokens: list[int]) -> None: ...

    def set_event_sink(self, sink: Callable[[BrokerEvent], None]) -> None: ...

    def on_market_data(self, tick: Tick) -> None:
        """Market data the broker may need (a simulating broker fills on it; live: no-op)."""
        ...

    def active_tokens(self) -> set[int]:
        """Instruments whose ticks the broker needs one by one through :meth:`on_market_data`
        (a simulating broker's working orders; live: none)."""
        ...

    def on_market_batch(self, batch: TickBatch, lo: int, hi: int) -> None:
        """Ticks ``lo`` to ``hi`` of ``batch``, of instruments not in :meth:`active_tokens`:
        what :meth:`on_market_data` does for each of them, in one call."""
        ...

    def place_order(self, request: OrderRequest) -> BrokerAck: ...

    def modify_order(
        self, client_order_id: str, quantity: int | None = None, limit_price: int | None = None
    ) -> BrokerAck: ...

    def cancel_order(self, client_order_id: str) -> BrokerAck: ...

    def order_status(self, client_order_id: str) -> BrokerOrderReport | None:
        """The broker's record of an order, or None if it never received it."""
        ...

    def orders(self) -> list[BrokerOrderReport]: ...

    def positions(self) -> list[BrokerPosition]: ...

    def balance(self) -> BrokerBalance: ...


BASIC_ORDER_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT})


def native_order_types(broker: object) -> frozenset[OrderType]:
    """The order types ``broker`` holds itself (MARKET and LIMIT unless it declares more)."""
    types: frozenset[OrderType] = getattr(broker, "native_order_types", BASIC_ORDER_TYPES)
    return types


def native_oco(broker: object) -> bool:
    """Whether ``broker`` links one-cancels-other orders itself (a GTT OCO)."""
    return bool(getattr(broker, "native_oco", False))


# --- the store ------------------------------------------------------------------------------------


class TradingStore(SignalStore, RiskStore, Protocol):
    """Durable state of the trading kernel. Every method commits before it returns (the SQLite
    store runs ``synchronous=FULL``): what the kernel was told is stored is stored — except
    inside a unit of work (:meth:`~mandi.signals.manager.SignalStore.unit`, the handling of one
    signal), whose writes are one transaction made durable by ``sync()``, which the order router
    calls before anything goes to the broker, or at the unit's end.

    Signals (:class:`~mandi.signals.manager.SignalStore`) and the latch, events and denials
    (:class:`~mandi.risk.engine.RiskStore`) are the narrow ports of the signal manager and the
    risk engine; the rest is execution's own."""

    # orders
    def save_new_orders(
        self, orders: list[OrderRecord], signal_status: tuple[str, str, str] | None = None
    ) -> None:
        """Insert NEW orders (ignoring ids already stored) and optionally set a signal's
        (id, status, reason) — one transaction."""
        ...

    def save_order(self, order: OrderRecord, event: str = "") -> None: ...

    def record_fill(
        self,
        order: OrderRecord,
        fill: OrderFilled,
        position: PositionRecord | None,
        trade: ClosedTrade | None,
        daily: DailyRow | None,
    ) -> bool:
        """Store a fill with the order, position, closed trade and daily row it changed — one
        transaction. False if the fill id was already stored (nothing changes)."""
        ...

    def open_orders(self) -> list[OrderRecord]: ...

    def order_ids(self, parent_id: str) -> list[str]: ...

    def sends_since(self, ts_ns: int) -> list[tuple[str, int]]:
        """(segment, time) of every order handed to the broker since ``ts_ns``."""
        ...

    # positions and performance
    def save_position(self, position: PositionRecord) -> None: ...

    def open_positions(self) -> list[PositionRecord]: ...

    def exit_order_count(self, position_id: str) -> int: ...

    def load_daily(self, date: str) -> DailyRow | None: ...

    def save_daily(self, row: DailyRow) -> None: ...

    def save_marks(self, positions: list[PositionRecord], daily: DailyRow | None) -> None:
        """The marks of open positions and the day's row (``None``: no row), one transaction."""
        ...
