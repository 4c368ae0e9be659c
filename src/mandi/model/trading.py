"""Trading messages: signals, risk decisions, positions and the halt latch — and the records the
trading store keeps (:class:`Latch`, :class:`DailyRow`, :class:`ClosedTrade`), shared by risk,
portfolio and execution.

Bus topics (all published by the trading kernel, ``mandi.system.kernel``):

==============================  ==========================================================
``signal:{strategy}``           :class:`SignalGenerated` — persisted *before* it is published
``risk:denied``                 :class:`RiskDenied` — a signal or order refused, with the rule
``risk:halted``                 :class:`TradingHalted` — the HALTED latch was set
``risk:resumed``                :class:`TradingResumed` — the latch was cleared by hand
``order:logged``                :class:`TradeLogged` — logging-only mode's intended trade
``order:{status}``              order events, see :mod:`mandi.model.orders`
``position:opened``             :class:`PositionOpened`
``position:updated``            :class:`PositionUpdated` (fills, and MTM every monitor interval)
``position:closed``             :class:`PositionClosed`
``system:strategy_error``       :class:`~mandi.model.events.SystemEvent` for a strategy that raised
==============================  ==========================================================

Prices int paise, quantities shares, times int ns UTC; ``confidence`` is 0..1.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import msgspec

from mandi.model.base import Message, message
from mandi.model.orders import Side


@message
class SignalGenerated(Message, frozen=True):
    """A strategy's trading signal.

    ``signal_id`` is ``stable_id(strategy, token, timeframe, bucket)``: the same strategy on the
    same series and candle always yields the same id, so a redelivered or replayed signal can
    never create a second order. ``token``/``symbol`` name what the strategy watched (an index,
    a stock); the executor decides what to trade (the stock itself, or an option on the index).
    ``price`` is the watched instrument's price at the signal; ``target``/``stop_loss`` are in
    the same terms (0 = let the risk manager's percentages decide).
    """

    signal_id: str
    ts_event: int
    strategy: str
    token: int
    exchange: str
    symbol: str
    timeframe: int
    bucket: int
    action: Side
    price: int
    asset_type: str = "INDEX"  # INDEX | EQUITY | FUTURE | OPTION
    confidence: float = 1.0
    target: int = 0
    stop_loss: int = 0
    quantity: int = 0  # 0 = sized by the risk manager
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


@message
class RiskDenied(Message, frozen=True):
    """A signal or an order was refused. ``rule`` is a stable name (``trading_hours``,
    ``max_order_value``, ``signal_age`` ...), ``reason`` the human sentence with the numbers."""

    ts_event: int
    rule: str
    reason: str
    strategy: str = ""
    signal_id: str = ""
    client_order_id: str = ""
    symbol: str = ""
    side: str = ""
    quantity: int = 0


@message
class TradeLogged(Message, frozen=True):
    """Logging-only mode: the full trade that would have been placed (no order exists)."""

    ts_event: int
    signal_id: str
    strategy: str
    token: int
    symbol: str
    side: Side
    quantity: int
    entry_price: int
    stop_loss: int
    target: int
    max_loss: int
    investment: int
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class PositionRecord(msgspec.Struct, frozen=True):
    """A snapshot of one position, in the seed's ``positions`` columns (plus mandi's own).

    ``quantity`` is the open quantity (shares, always ≥ 0) and ``direction`` +1 long / −1 short;
    ``cost`` is the cost basis of the open quantity (Σ qty × price, paise). ``realized_pnl`` is net
    of all charges paid so far; ``unrealized_pnl`` is the mark-to-market of the open quantity."""

    position_id: str
    signal_id: str
    strategy: str
    token: int
    exchange: str
    symbol: str
    underlying: str
    strike: int
    option_type: str
    expiry: dt.date | None
    product: str
    direction: int
    lot_size: int
    status: str  # OPEN | CLOSED
    quantity: int
    entry_timestamp: int
    entry_premium: int
    cost: int
    total_investment: int
    stop_loss_premium: int
    target_premium: int
    current_premium: int
    unrealized_pnl: int
    realized_pnl: int
    charges: int
    entry_qty: int
    exit_qty: int
    high_water: int
    exit_timestamp: int | None = None
    exit_premium: int | None = None
    exit_reason: str = ""
    paper_trade: bool = True
    updated_ns: int = 0
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


@message
class PositionOpened(Message, frozen=True):
    ts_event: int
    position: PositionRecord


@message
class PositionUpdated(Message, frozen=True):
    ts_event: int
    position: PositionRecord


@message
class PositionClosed(Message, frozen=True):
    ts_event: int
    position: PositionRecord
    reason: str


@message
class TradingHalted(Message, frozen=True):
    """The HALTED latch was set (daily-loss circuit breaker, kill switch, or a failure while
    computing P&L — the breaker fails closed). Only a manual reset clears it."""

    ts_event: int
    reason: str
    source: str  # circuit_breaker | kill_switch | fail_closed | cli


@message
class TradingResumed(Message, frozen=True):
    ts_event: int
    reason: str
    source: str


# --- records of the trading store -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latch:
    """The persisted HALTED latch. ``version`` grows with every change so a process can tell a
    newer value written by another (``mandi halt`` / ``mandi resume``) from its own."""

    halted: bool = False
    reason: str = ""
    source: str = ""
    ts_ns: int = 0
    version: int = 0


@dataclass(frozen=True, slots=True)
class DailyRow:
    """A ``daily_performance`` row (money in paise)."""

    date: str
    total_trades: int = 0
    winning_trades: int = 0
    losing_trades: int = 0
    gross_profit: int = 0
    gross_loss: int = 0
    net_pnl: int = 0
    charges: int = 0
    max_drawdown: int = 0
    peak: int = 0


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """A ``trades`` row: one position from entry to its final exit."""

    position_id: str
    order_id: str
    strategy: str
    symbol: str
    side: str
    quantity: int
    entry_price: int
    exit_price: int
    pnl: int
    pnl_pct: float
    charges: int
    entry_time: int
    exit_time: int
    exit_reason: str
