"""The fill simulator shared by paper trading and the backtester.

It holds working orders per instrument and matches them against market data — ticks
(:meth:`FillSimulator.on_print`) or bars (:meth:`FillSimulator.on_bar`) — with no I/O, no clock and
no notion of "paper" or "backtest": the caller hands it data in time order.

Fill model (stated, tested):

* **No look-ahead**: an order only fills on data strictly *after* the moment it was accepted
  (``print.ts > accepted_ns``; for bars, a bar that starts at or after acceptance).
* **Market orders** fill at the next print's price — the last trade, or the touch (ask for a buy,
  bid for a sell) with ``price_source="touch"`` — moved ``slippage_ticks`` ticks against us
  (``no_quote_slippage_ticks`` more when a touch print has no quote and the last price is used).
  On bars: at the next bar's open (``bar_fill="open"``) or close (``"close"``).
* **Limit orders** that were *marketable* when accepted (a buy limit at or above the reference
  price) fill like market orders on the first print whose price (after slippage) is within the
  limit, at that price. A *resting* limit fills only when the market
  trades through it (a print strictly below a buy limit / above a sell limit; a bar whose low/high
  passes it) and then at the limit price (or the bar's open if it opened beyond the limit).
* **Stop orders** (``SL-M``, ``SL``) rest untriggered until a print strictly after their
  acceptance reaches the trigger — the *last* price at or above it for a BUY stop, at or below
  it for a SELL stop (:func:`stop_triggered`, the one rule every broker emulation uses) — and
  then act at once on that print as a market order (``SL-M``) or as a limit order at their
  ``limit_price`` (``SL``). On a bar a BUY stop triggers when the high reaches it and fills at the
  trigger, or at the open when the bar opened beyond it (a gap); a SELL stop mirrors that with the
  low. A stop whose trigger is already on the wrong side of the reference price when it arrives
  (a BUY stop at or below it, a SELL stop at or above it) is refused (:class:`StopRejected`),
  never filled at once.
* **One-cancels-other** groups (a GTT OCO's stop and target): when an order of a group fills,
  the group's other orders are cancelled (:meth:`FillSimulator.take_cancelled` hands them to the
  broker). Within one bar a group's stops are matched before its limits (the pessimistic path:
  when a bar touches both the stop and the target, the stop wins).
* **Expiry settlement** (:meth:`FillSimulator.settle`): every working order of a contract fills
  at the settlement price (its intrinsic value, possibly 0) — the way an option that reaches
  expiry leaves a book.
* **Partial fills by available volume**: a market/marketable order takes at most the displayed
  opposite quantity (ask qty for a buy), a resting limit at most the traded quantity of the print,
  a bar at most its volume — times ``participation`` and rounded down to whole lots. Where the data
  carries no quantity (0), the quantity is not limited.

Fill ids are deterministic (``{order_id}:{n}``) so a restarted paper broker and its client agree.
"""

from __future__ import annotations

from typing import NamedTuple

from mandi.core.errors import OrderError
from mandi.execution.config import MatchingConfig
from mandi.model.market import Candle
from mandi.model.orders import OrderType, Side, stop_on_wrong_side, stop_triggered


class StopRejected(OrderError):
    """A stop order whose trigger the market has already passed (it would fill at once)."""


class MarketPrint(NamedTuple):
    """One market update as the simulator needs it (paise / shares)."""

    ts: int
    last: int
    bid: int = 0
    ask: int = 0
    bid_qty: int = 0
    ask_qty: int = 0
    traded_qty: int = 0


class Fill(NamedTuple):
    order_id: str
    fill_id: str
    token: int
    side: Side
    quantity: int
    price: int
    ts: int


class WorkingOrder:
    __slots__ = (
        "accepted_ns",
        "fills",
        "limit_price",
        "lot",
        "marketable",
        "oco_group",
        "order_id",
        "order_type",
        "remaining",
        "side",
        "tick",
        "token",
        "trigger",
    )

    def __init__(
        self,
        order_id: str,
        token: int,
        side: Side,
        quantity: int,
        order_type: OrderType,
        limit_price: int,
        accepted_ns: int,
        lot: int,
        tick: int,
        marketable: bool,
        fills: int = 0,
        trigger: int = 0,
        oco_group: str = "",
    ) -> None:
        self.order_id, self.token, self.side = order_id, token, side
        self.remaining, self.order_type, self.limit_price = quantity, order_type, limit_price
        self.accepted_ns, self.lot, self.tick = accepted_ns, max(lot, 1), max(tick, 1)
        self.marketable, self.fills = marketable, fills
        self.trigger = trigger  # > 0 while a stop waits for its trigger; 0 once it fired
        self.oco_group = oco_group

    @property
    def waiting(self) -> bool:
        """An untriggered stop."""
        return self.trigger > 0


class FillSimulator:
    """Working orders by token, matched against prints or bars."""

    def __init__(self, config: MatchingConfig | None = None) -> None:
        self.config = config or MatchingConfig()
        self._by_token: dict[int, dict[str, WorkingOrder]] = {}
        self._orders: dict[str, WorkingOrder] = {}
        self._groups: dict[str, set[str]] = {}  # OCO group -> its working orders
        self._cancelled: list[tuple[str, str]] = []  # (order id, reason) for the broker

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def __len__(self) -> int:
        return len(self._orders)

    def has_orders(self, token: int) -> bool:
        return token in self._by_token

    def active_tokens(self) -> set[int]:
        """Tokens with working orders."""
        return set(self._by_token)

    def get(self, order_id: str) -> WorkingOrder | None:
        return self._orders.get(order_id)

    def add(
        self,
        order_id: str,
        token: int,
        side: Side,
        quantity: int,
        *,
        accepted_ns: int,
        order_type: OrderType = OrderType.MARKET,
        limit_price: int = 0,
        reference_price: int = 0,
        lot_size: int = 1,
        tick_size: int = 5,
        fills_so_far: int = 0,
        trigger_price: int = 0,
        oco_group: str = "",
    ) -> WorkingOrder:
        """Start working an order. ``reference_price`` (the touch or LTP at acceptance) decides
        whether a limit order is marketable, and refuses a stop already triggered
        (:class:`StopRejected`). ``oco_group`` links the orders of a one-cancels-other group."""
        if order_id in self._orders:
            raise OrderError(f"order {order_id} is already working")
        if quantity <= 0:
            raise OrderError(f"order {order_id}: quantity must be positive, got {quantity}")
        order_type, side = OrderType(order_type), Side(side)
        if order_type.has_limit and limit_price <= 0:
            raise OrderError(f"order {order_id}: limit price must be positive")
        if order_type.is_stop:
            if trigger_price <= 0:
                raise OrderError(f"order {order_id}: a stop needs a positive trigger price")
            if stop_on_wrong_side(side, trigger_price, reference_price):
                where = "above" if side is Side.BUY else "below"
                raise StopRejected(
                    f"order {order_id}: a {side.value} stop's trigger must be {where} the last "
                    f"price ({trigger_price / 100:g} vs {reference_price / 100:g})"
                )
        marketable = order_type is OrderType.MARKET or (
            order_type is OrderType.LIMIT
            and reference_price > 0
            and (
                limit_price >= reference_price
                if side is Side.BUY
                else limit_price <= reference_price
            )
        )
        w = WorkingOrder(
            order_id,
            token,
            side,
            quantity,
            order_type,
            limit_price,
            accepted_ns,
            lot_size,
            tick_size,
            marketable,
            fills_so_far,
            trigger_price if order_type.is_stop else 0,
            oco_group,
        )
        self._orders[order_id] = w
        self._by_token.setdefault(token, {})[order_id] = w
        if oco_group:
            self._groups.setdefault(oco_group, set()).add(order_id)
        return w

    def cancel(self, order_id: str) -> int:
        """Stop working an order; returns the quantity that was still open (0 if none)."""
        w = self._orders.pop(order_id, None)
        if w is None:
            return 0
        book = self._by_token[w.token]
        del book[order_id]
        if not book:
            del self._by_token[w.token]
        if w.oco_group:
            group = self._groups.get(w.oco_group)
            if group is not None:
                group.discard(order_id)
                if not group:
                    del self._groups[w.oco_group]
        return w.remaining

    def take_cancelled(self) -> list[tuple[str, str]]:
        """The orders the simulator cancelled itself since the last call (an OCO partner of a
        filled order), as ``(order id, reason)``; the broker reports them cancelled."""
        out, self._cancelled = self._cancelled, []
        return out

    def _trigger(self, w: WorkingOrder) -> None:
        """A stop fired: from now on it is a market order (SL-M) or a limit (SL)."""
        w.trigger = 0
        w.marketable = w.order_type is OrderType.SL_M

    # --- matching ---------------------------------------------------------------------------------
    def _take(self, w: WorkingOrder, available: int) -> int:
        if not self.config.limit_by_volume or available <= 0:
            qty = w.remaining
        else:
            qty = min(w.remaining, int(available * self.config.participation))
        return qty - qty % w.lot if qty < w.remaining else qty

    def _fill(self, w: WorkingOrder, qty: int, price: int, ts: int, out: list[Fill]) -> None:
        if qty <= 0:
            return
        w.fills += 1
        w.remaining -= qty
        out.append(Fill(w.order_id, f"{w.order_id}:{w.fills}", w.token, w.side, qty, price, ts))
        if w.oco_group:  # one filled: the others of its group are cancelled
            for other in list(self._groups.get(w.oco_group, ())):
                if other != w.order_id and self.cancel(other):
                    self._cancelled.append((other, f"OCO: {w.order_id} filled"))
        if w.remaining == 0:
            self.cancel(w.order_id)

    def on_print(self, token: int, p: MarketPrint) -> list[Fill]:
        """Match the working orders of ``token`` against one print (in time order)."""
        book = self._by_token.get(token)
        if not book or p.last <= 0:
            return []
        cfg = self.config
        out: list[Fill] = []
        for w in list(book.values()):
            if p.ts <= w.accepted_ns or w.order_id not in self._orders:
                continue  # too early, or cancelled by an OCO partner in this print
            buy = w.side is Side.BUY
            if w.trigger:
                if not stop_triggered(w.side, w.trigger, p.last):
                    continue
                self._trigger(w)
                if not w.marketable and (p.last > w.limit_price if buy else p.last < w.limit_price):
                    continue  # an SL triggered beyond its limit: it rests as a limit
                w.marketable = True  # acts on this print like a marketable order
            if w.marketable:
                base = p.last
                slip = cfg.slippage_ticks * w.tick
                if cfg.price_source == "touch":
                    touch = p.ask if buy else p.bid
                    if touch > 0:
                        base = touch
                    else:
                        slip += cfg.no_quote_slippage_ticks * w.tick
                price = base + slip if buy else max(base - slip, w.tick)
                if w.order_type is OrderType.LIMIT and (
                    price > w.limit_price if buy else price < w.limit_price
                ):
                    continue  # the market moved past the limit: it waits for a better print
                avail = (p.ask_qty if buy else p.bid_qty) or p.traded_qty
            else:
                through = p.last < w.limit_price if buy else p.last > w.limit_price
                if not through:
                    continue
                price = w.limit_price
                avail = p.traded_qty
            self._fill(w, self._take(w, avail), price, p.ts, out)
        return out

    def settle(self, token: int, price: int, ts: int) -> list[Fill]:
        """Fill every working order of ``token`` at the settlement ``price`` (paise, ≥ 0) — an
        expired contract's intrinsic value."""
        if price < 0:
            raise OrderError(f"settlement price of {token} must not be negative, got {price}")
        out: list[Fill] = []
        for w in list(self._by_token.get(token, {}).values()):
            self._fill(w, w.remaining, price, ts, out)
        return out

    def on_bar(self, token: int, bar: Candle, ts: int | None = None) -> list[Fill]:
        """Match against one confirmed bar. Market orders accepted before the bar started fill
        at its open (``bar_fill="open"``), or at its close if accepted before it ended
        (``"close"``); ``ts`` is the fill time to report (default: the bar's start)."""
        book = self._by_token.get(token)
        if not book:
            return []
        cfg = self.config
        end = bar.bucket + bar.timeframe * 1_000_000_000
        when = bar.bucket if ts is None else ts
        out: list[Fill] = []
        # stops first: when a bar touches an OCO group's stop and its target, the stop wins
        for w in sorted(book.values(), key=lambda x: not x.trigger):
            if w.order_id not in self._orders:
                continue  # cancelled by an OCO partner in this bar
            at_open = cfg.bar_fill == "open" or not w.marketable or w.trigger
            if (at_open and w.accepted_ns > bar.bucket) or (not at_open and w.accepted_ns >= end):
                continue
            buy = w.side is Side.BUY
            slip = cfg.slippage_ticks * w.tick
            if w.trigger:
                reach = bar.high if buy else bar.low
                if not stop_triggered(w.side, w.trigger, reach):
                    continue
                # the trigger, or the open when the bar opened beyond it
                level = max(bar.open, w.trigger) if buy else min(bar.open, w.trigger)
                self._trigger(w)
                if w.order_type is OrderType.SL and (
                    level > w.limit_price if buy else level < w.limit_price
                ):
                    continue  # beyond the SL's limit: it rests as a limit for later bars
                price = level + slip if buy else max(level - slip, w.tick)
                if w.order_type is OrderType.SL:
                    price = min(price, w.limit_price) if buy else max(price, w.limit_price)
                self._fill(w, self._take(w, bar.volume), price, when, out)
                continue
            if w.marketable:
                base = bar.open if at_open else bar.close
                price = base + slip if buy else max(base - slip, w.tick)
                if w.order_type is OrderType.LIMIT:
                    if (bar.low > w.limit_price) if buy else (bar.high < w.limit_price):
                        continue  # never traded at or inside the limit in this bar
                    price = min(price, w.limit_price) if buy else max(price, w.limit_price)
            else:
                through = bar.low < w.limit_price if buy else bar.high > w.limit_price
                if not through:
                    continue
                price = min(bar.open, w.limit_price) if buy else max(bar.open, w.limit_price)
            self._fill(w, self._take(w, bar.volume), price, when, out)
        return out
