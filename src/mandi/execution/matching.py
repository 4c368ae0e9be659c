"""The fill simulator shared by paper trading and the backtester.

It holds working orders per instrument and matches them against market data — ticks
(:meth:`FillSimulator.on_print`) or bars (:meth:`FillSimulator.on_bar`) — with no I/O, no clock and
no notion of "paper" or "backtest": the caller hands it data in time order.

Fill model (stated, tested):

* **No look-ahead**: an order only fills on data strictly *after* the moment it was accepted
  (``print.ts > accepted_ns``; for bars, a bar that starts at or after acceptance).
* **Market orders** fill at the next print's price — the last trade, or the touch (ask for a buy,
  bid for a sell) with ``price_source="touch"`` — moved ``slippage_ticks`` ticks against us.
  On bars: at the next bar's open (``bar_fill="open"``) or close (``"close"``).
* **Limit orders** that were *marketable* when accepted (a buy limit at or above the reference
  price) fill like market orders on the first print whose price (after slippage) is within the
  limit, at that price. A *resting* limit fills only when the market
  trades through it (a print strictly below a buy limit / above a sell limit; a bar whose low/high
  passes it) and then at the limit price (or the bar's open if it opened beyond the limit).
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
from mandi.model.orders import OrderType, Side


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
        "order_id",
        "order_type",
        "remaining",
        "side",
        "tick",
        "token",
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
    ) -> None:
        self.order_id, self.token, self.side = order_id, token, side
        self.remaining, self.order_type, self.limit_price = quantity, order_type, limit_price
        self.accepted_ns, self.lot, self.tick = accepted_ns, max(lot, 1), max(tick, 1)
        self.marketable, self.fills = marketable, fills


class FillSimulator:
    """Working orders by token, matched against prints or bars."""

    def __init__(self, config: MatchingConfig | None = None) -> None:
        self.config = config or MatchingConfig()
        self._by_token: dict[int, dict[str, WorkingOrder]] = {}
        self._orders: dict[str, WorkingOrder] = {}

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
    ) -> WorkingOrder:
        """Start working an order. ``reference_price`` (the touch or LTP at acceptance) decides
        whether a limit order is marketable."""
        if order_id in self._orders:
            raise OrderError(f"order {order_id} is already working")
        if quantity <= 0:
            raise OrderError(f"order {order_id}: quantity must be positive, got {quantity}")
        order_type, side = OrderType(order_type), Side(side)
        if order_type is OrderType.LIMIT and limit_price <= 0:
            raise OrderError(f"order {order_id}: limit price must be positive")
        marketable = order_type is OrderType.MARKET or (
            reference_price > 0
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
        )
        self._orders[order_id] = w
        self._by_token.setdefault(token, {})[order_id] = w
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
        return w.remaining

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
            if p.ts <= w.accepted_ns:
                continue
            buy = w.side is Side.BUY
            if w.marketable:
                base = p.last
                if cfg.price_source == "touch":
                    touch = p.ask if buy else p.bid
                    base = touch if touch > 0 else p.last
                slip = cfg.slippage_ticks * w.tick
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
        for w in list(book.values()):
            at_open = cfg.bar_fill == "open" or not w.marketable
            if (at_open and w.accepted_ns > bar.bucket) or (not at_open and w.accepted_ns >= end):
                continue
            buy = w.side is Side.BUY
            slip = cfg.slippage_ticks * w.tick
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
