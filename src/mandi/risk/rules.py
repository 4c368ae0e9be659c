"""Pre-trade risk rules: pure functions ``(OrderContext) -> Denied | None``.

Every rule reads only the :class:`OrderContext` (the command, the instrument, the market and
portfolio numbers, the limits and the time) — no I/O, no clock — so each one is tested on its
own at its boundaries. :data:`ENTRY_RULES` guard orders that open or increase exposure,
:data:`EXIT_RULES` the reduce-only orders that close positions (an exit is never refused for
exposure, sizing, staleness, the daily caps or — by default — the HALTED latch: closing risk must
stay possible). The per-second order rate is not a denial: the order router paces orders so that
no exchange segment ever sees more than ``orders_per_second`` in any one-second window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mandi.core.calendar import (
    IST_OFFSET_NS,
    NS_PER_DAY,
    Phase,
    calendar,
    ist_date,
    ist_datetime,
)
from mandi.core.money import format_inr
from mandi.model.instruments import AnyInstrument, Future, Index
from mandi.model.orders import Intent, OrderType, Side, stop_on_wrong_side
from mandi.risk.config import RiskLimits, before_close_ns, session_for


@dataclass(frozen=True, slots=True)
class Allowed:
    """The order may go."""

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Denied:
    """The order is refused by ``rule`` (a stable name) for ``reason`` (with the numbers)."""

    rule: str
    reason: str

    def __bool__(self) -> bool:
        return False


ALLOWED = Allowed()
Decision = Allowed | Denied


@dataclass(slots=True)  # not frozen: built once per order on the hot path
class OrderContext:
    """Everything a rule may look at. Money in paise, times in ns UTC.

    ``position_value`` is the value already held in this instrument; ``exposure`` the value of all
    open positions; ``opens_position`` whether the order would start a new position (counted
    against ``max_concurrent_positions``); ``orders_last_minute``/``orders_today`` the orders
    already sent; ``slices`` how many child orders this one becomes."""

    now_ns: int
    instrument: AnyInstrument
    side: Side
    quantity: int
    intent: Intent
    limits: RiskLimits
    order_type: OrderType = OrderType.MARKET
    limit_price: int = 0
    ltp: int = 0
    ltp_ns: int = 0
    halted: bool = False
    halt_reason: str = ""
    open_positions: int = 0
    opens_position: bool = True
    position_value: int = 0
    exposure: int = 0
    available_cash: int = 0
    orders_last_minute: int = 0
    orders_today: int = 0
    slices: int = 1
    entry_block: tuple[str, str] = ("", "")  # (rule, reason) of a live input: feed, session
    trigger_price: int = 0  # SL / SL-M

    @property
    def price(self) -> int:
        """The price the order's value is judged at: the limit (LIMIT, SL), the trigger
        (SL-M), or the last traded price."""
        if self.order_type is OrderType.LIMIT or self.order_type is OrderType.SL:
            return self.limit_price
        if self.order_type is OrderType.SL_M:
            return self.trigger_price
        return self.ltp

    @property
    def value(self) -> int:
        return self.quantity * self.price


Rule = Callable[[OrderContext], Denied | None]


def halted(c: OrderContext) -> Denied | None:
    if c.halted and (c.intent is Intent.ENTRY or not c.limits.halt_allows_exits):
        return Denied(
            "halted",
            f"trading is HALTED ({c.halt_reason or 'kill switch'}); `mandi resume` clears it",
        )
    return None


def live_inputs(c: OrderContext) -> Denied | None:
    """New entries wait while a live input is unhealthy (a silent or reconnecting feed, a dead
    broker session); exits are not affected."""
    rule, reason = c.entry_block
    if rule and c.intent is Intent.ENTRY:
        return Denied(rule, reason)
    return None


def trading_hours(c: OrderContext) -> Denied | None:
    now = c.now_ns
    session = session_for(c.instrument.exchange, (now + IST_OFFSET_NS) // NS_PER_DAY)
    if session is None:
        day = ist_date(now)
        cal = calendar(c.instrument.exchange if c.instrument.exchange in ("NSE", "BSE") else "NSE")
        why = cal.holiday(day) or ("a weekend" if day.weekday() >= 5 else "not a trading day")
        return Denied("holiday", f"{day} is a market holiday ({why})")
    if not session.open_ns <= now < session.close_ns:
        pre = session.pre_open_ns is not None and session.pre_open_ns <= now < session.open_ns
        return Denied(
            "trading_hours",
            f"the market is not open at {ist_datetime(now):%H:%M:%S} IST "
            f"({Phase.PRE_OPEN.value if pre else Phase.CLOSED.value})",
        )
    cut = before_close_ns(session, c.limits.entry_cutoff)
    if c.intent is Intent.ENTRY and now >= cut:
        return Denied(
            "entry_cutoff",
            f"no new entries after {ist_datetime(cut):%H:%M} IST (intraday square-off)",
        )
    return None


def tradable(c: OrderContext) -> Denied | None:
    if isinstance(c.instrument, Index) or not c.instrument.tradable:
        return Denied(
            "not_tradable", f"{c.instrument.symbol} is an index, not a tradable instrument"
        )
    exp = getattr(c.instrument, "expiry", None)
    if exp is not None and exp < ist_date(c.now_ns):
        return Denied("expired", f"{c.instrument.symbol} expired on {exp}")
    return None


def lot_size(c: OrderContext) -> Denied | None:
    lot = max(c.instrument.lot_size, 1)
    if c.quantity <= 0 or c.quantity % lot:
        return Denied(
            "lot_size",
            f"quantity {c.quantity} is not a positive multiple of the lot "
            f"size {lot} of {c.instrument.symbol}",
        )
    return None


def freeze_quantity(c: OrderContext) -> Denied | None:
    freeze = c.instrument.freeze_qty
    if freeze <= 0:
        return None
    n = len(slice_quantity(c.quantity, freeze, c.instrument.lot_size))
    if n > c.limits.max_slices:
        return Denied(
            "freeze_quantity",
            f"quantity {c.quantity} needs {n} orders at the freeze quantity {freeze} of "
            f"{c.instrument.symbol} (at most {c.limits.max_slices})",
        )
    return None


def stale_data(c: OrderContext) -> Denied | None:
    if c.ltp_ns <= 0 or c.ltp <= 0:
        return Denied("no_market_data", f"no price has been seen for {c.instrument.symbol}")
    age = c.now_ns - c.ltp_ns
    if age > c.limits.stale_after_ns:
        return Denied(
            "stale_data",
            f"the last price of {c.instrument.symbol} is {age / 1e9:.1f} s "
            f"old (limit {c.limits.stale_after_ns / 1e9:g} s)",
        )
    return None


def price_sanity(c: OrderContext) -> Denied | None:
    if c.ltp <= 0:
        return Denied("price_sanity", f"no valid last price for {c.instrument.symbol}")
    if c.order_type.is_stop:
        d = stop_trigger(c)
        if d is not None:
            return d
    if c.order_type is OrderType.LIMIT or c.order_type is OrderType.SL:
        tick = max(c.instrument.tick_size, 1)
        if c.limit_price <= 0 or c.limit_price % tick:
            return Denied(
                "tick_size",
                f"limit price {format_inr(c.limit_price)} is not a "
                f"multiple of the tick size {format_inr(tick)}",
            )
        band = c.ltp * c.limits.limit_band
        if abs(c.limit_price - c.ltp) > band:
            return Denied(
                "price_band",
                f"limit price {format_inr(c.limit_price)} is more than "
                f"{c.limits.limit_band:.0%} away from the last price "
                f"{format_inr(c.ltp)}",
            )
    return None


def stop_trigger(c: OrderContext) -> Denied | None:
    """A stop (SL / SL-M) needs a trigger on the tick grid on the far side of the last price —
    above it for a BUY stop, below for a SELL stop — or it would fire at once; an SL's limit
    must not be worse than its trigger allows (a BUY SL's limit at or above the trigger)."""
    tick = max(c.instrument.tick_size, 1)
    t = c.trigger_price
    if t <= 0 or t % tick:
        return Denied(
            "stop_trigger",
            f"trigger price {format_inr(t)} is not a positive multiple of the tick size "
            f"{format_inr(tick)}",
        )
    if stop_on_wrong_side(c.side, t, c.ltp):
        where = "above" if c.side is Side.BUY else "below"
        return Denied(
            "stop_trigger",
            f"a {c.side.value} stop's trigger {format_inr(t)} must be {where} the last price "
            f"{format_inr(c.ltp)}: it would fire at once",
        )
    if c.order_type is OrderType.SL and (
        c.limit_price < t if c.side is Side.BUY else c.limit_price > t
    ):
        return Denied(
            "stop_trigger",
            f"an SL {c.side.value}'s limit {format_inr(c.limit_price)} must be "
            f"{'at or above' if c.side is Side.BUY else 'at or below'} its trigger {format_inr(t)}",
        )
    return None


def max_order_value(c: OrderContext) -> Denied | None:
    if c.value > c.limits.max_order_value:
        return Denied(
            "max_order_value",
            f"order value {format_inr(c.value)} exceeds the limit "
            f"{format_inr(c.limits.max_order_value)}",
        )
    return None


def max_position_value(c: OrderContext) -> Denied | None:
    total = c.position_value + c.value
    if total > c.limits.max_position_value:
        return Denied(
            "max_position_value",
            f"position in {c.instrument.symbol} would be worth {format_inr(total)}, "
            f"over the limit {format_inr(c.limits.max_position_value)}",
        )
    return None


def total_exposure(c: OrderContext) -> Denied | None:
    total = c.exposure + c.value
    if total > c.limits.max_total_exposure:
        return Denied(
            "total_exposure",
            f"total exposure would be {format_inr(total)}, over the "
            f"limit {format_inr(c.limits.max_total_exposure)}",
        )
    return None


def required_funds(c: OrderContext) -> int:
    """Cash an entry blocks: the premium/price for long options and stock buys, a margin
    fraction of the value for futures and short sales."""
    if isinstance(c.instrument, Future) or c.side is Side.SELL:
        return int(c.value * c.limits.margin_fraction)
    return c.value


def balance(c: OrderContext) -> Denied | None:
    need = required_funds(c)
    if need > c.available_cash:
        return Denied(
            "balance",
            f"order needs {format_inr(need)}, only {format_inr(c.available_cash)} is available",
        )
    return None


def max_concurrent_positions(c: OrderContext) -> Denied | None:
    if c.opens_position and c.open_positions >= c.limits.max_concurrent_positions:
        return Denied(
            "max_concurrent_positions",
            f"{c.open_positions} positions are open (limit {c.limits.max_concurrent_positions})",
        )
    return None


def order_rate(c: OrderContext) -> Denied | None:
    if c.orders_last_minute + c.slices > c.limits.orders_per_minute:
        return Denied(
            "rate_limit_minute",
            f"{c.orders_last_minute} orders in the last minute "
            f"(limit {c.limits.orders_per_minute})",
        )
    if c.orders_today + c.slices > c.limits.orders_per_day:
        return Denied(
            "rate_limit_day", f"{c.orders_today} orders today (limit {c.limits.orders_per_day})"
        )
    return None


ENTRY_RULES: tuple[Rule, ...] = (
    halted,
    live_inputs,
    trading_hours,
    tradable,
    lot_size,
    freeze_quantity,
    stale_data,
    price_sanity,
    max_order_value,
    max_position_value,
    total_exposure,
    balance,
    max_concurrent_positions,
    order_rate,
)
EXIT_RULES: tuple[Rule, ...] = (halted, trading_hours, lot_size, price_sanity)


def evaluate(c: OrderContext, rules: tuple[Rule, ...] | None = None) -> Decision:
    """Run the rules for the order's intent; the first denial wins."""
    for rule in (
        rules if rules is not None else (ENTRY_RULES if c.intent is Intent.ENTRY else EXIT_RULES)
    ):
        d = rule(c)
        if d is not None:
            return d
    return ALLOWED


def slice_quantity(quantity: int, freeze_qty: int, lot: int) -> list[int]:
    """Split ``quantity`` into child orders of at most ``freeze_qty`` (rounded down to whole
    lots); ``freeze_qty`` 0 means no limit. Exits use this too, with no cap on the count."""
    lot = max(lot, 1)
    if freeze_qty <= 0 or quantity <= freeze_qty:
        return [quantity]
    step = max(freeze_qty - freeze_qty % lot, lot)
    out = [step] * (quantity // step)
    if quantity % step:
        out.append(quantity % step)
    return out
