"""Positions and P&L from fills.

A position is one trade's life: opened by the fills of an entry order (from a signal or a manual
order), reduced and closed by exit fills. Several positions may hold the same instrument (one per
strategy signal); the broker sees their sum.

Money is int paise and exact: ``cost`` is the cost basis of the open quantity (Σ qty × price);
an exit of ``q`` of ``Q`` open shares removes ``cost × q // Q`` of it (the last exit removes the
rest), so realized P&L adds up to the paise. ``realized_pnl`` is net of every charge paid so far
(entry and exit); ``unrealized_pnl`` marks the open quantity at the latest price.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from mandi.model.instruments import AnyInstrument, Future, Option
from mandi.model.orders import Intent, Side
from mandi.model.trading import ClosedTrade, PositionRecord

OPEN, CLOSED = "OPEN", "CLOSED"


class Position:
    __slots__ = (
        "charges",
        "closing",
        "cost",
        "current_price",
        "direction",
        "entry_qty",
        "entry_ts",
        "entry_value",
        "exchange",
        "exit_attempts",
        "exit_qty",
        "exit_reason",
        "exit_ts",
        "exit_value",
        "expiry",
        "high_water",
        "lot_size",
        "metadata",
        "option_type",
        "paper",
        "position_id",
        "product",
        "quantity",
        "realized_gross",
        "signal_id",
        "status",
        "stop_loss",
        "strategy",
        "strike",
        "symbol",
        "target",
        "tick_size",
        "token",
        "underlying",
        "updated_ns",
    )

    def __init__(
        self,
        position_id: str,
        *,
        signal_id: str,
        strategy: str,
        instrument: AnyInstrument,
        product: str,
        direction: int,
        ts_ns: int,
        stop_loss: int = 0,
        target: int = 0,
        paper: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.position_id, self.signal_id, self.strategy = position_id, signal_id, strategy
        self.token, self.exchange, self.symbol = (
            instrument.token,
            instrument.exchange,
            instrument.symbol,
        )
        self.lot_size, self.tick_size = instrument.lot_size, instrument.tick_size
        is_deriv = isinstance(instrument, Option | Future)
        self.underlying = instrument.underlying if is_deriv else instrument.symbol  # type: ignore[union-attr]
        self.expiry: dt.date | None = instrument.expiry if is_deriv else None  # type: ignore[union-attr]
        self.strike = instrument.strike if isinstance(instrument, Option) else 0
        self.option_type = instrument.option_type if isinstance(instrument, Option) else ""
        self.product, self.direction = product, direction
        self.status = OPEN
        self.quantity = self.cost = 0
        self.entry_qty = self.exit_qty = self.entry_value = self.exit_value = 0
        self.realized_gross = self.charges = 0
        self.stop_loss, self.target = stop_loss, target
        self.current_price = self.high_water = 0
        self.entry_ts, self.exit_ts = ts_ns, 0
        self.exit_reason = ""
        self.closing = False
        self.exit_attempts = 0
        self.paper = paper
        self.metadata = dict(metadata or {})
        self.updated_ns = ts_ns

    # --- numbers ----------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.status == OPEN

    @property
    def is_option(self) -> bool:
        return bool(self.option_type)

    @property
    def entry_price(self) -> int:
        """Average entry price (paise, rounded)."""
        return round(self.entry_value / self.entry_qty) if self.entry_qty else 0

    @property
    def exit_price(self) -> int:
        return round(self.exit_value / self.exit_qty) if self.exit_qty else 0

    @property
    def entry_side(self) -> Side:
        return Side.BUY if self.direction > 0 else Side.SELL

    def mark(self) -> int:
        return self.current_price or self.entry_price

    def unrealized(self, price: int | None = None) -> int:
        p = self.mark() if price is None else price
        return self.direction * (self.quantity * p - self.cost) if self.quantity else 0

    @property
    def realized(self) -> int:
        return self.realized_gross - self.charges

    @property
    def value(self) -> int:
        """Exposure at the mark."""
        return self.quantity * self.mark()

    # --- changes ----------------------------------------------------------------------------------
    def apply_fill(
        self, intent: Intent, quantity: int, price: int, charges: int, ts_ns: int
    ) -> int:
        """Apply one fill; returns the gross realized P&L it produced (0 for entries)."""
        self.charges += charges
        self.updated_ns = max(self.updated_ns, ts_ns)
        if intent is Intent.ENTRY:
            self.quantity += quantity
            self.cost += quantity * price
            self.entry_qty += quantity
            self.entry_value += quantity * price
            if self.current_price == 0:
                self.current_price = price
            self._water(price)
            return 0
        q = min(quantity, self.quantity)
        removed = self.cost if q == self.quantity else self.cost * q // self.quantity
        self.cost -= removed
        self.quantity -= q
        gross = self.direction * (q * price - removed)
        self.realized_gross += gross
        self.exit_qty += q
        self.exit_value += q * price
        self.current_price = price
        if self.quantity == 0:
            self.status = CLOSED
            self.exit_ts = ts_ns
            self.closing = False
        return gross

    def _water(self, price: int) -> None:
        if self.high_water == 0 or (
            price > self.high_water if self.direction > 0 else price < self.high_water
        ):
            self.high_water = price

    def update_price(self, price: int, ts_ns: int) -> None:
        self.current_price = price
        self._water(price)
        self.updated_ns = max(self.updated_ns, ts_ns)

    # --- records ----------------------------------------------------------------------------------
    def to_record(self) -> PositionRecord:
        return PositionRecord(
            position_id=self.position_id,
            signal_id=self.signal_id,
            strategy=self.strategy,
            token=self.token,
            exchange=self.exchange,
            symbol=self.symbol,
            underlying=self.underlying,
            strike=self.strike,
            option_type=self.option_type,
            expiry=self.expiry,
            product=self.product,
            direction=self.direction,
            lot_size=self.lot_size,
            status=self.status,
            quantity=self.quantity,
            entry_timestamp=self.entry_ts,
            entry_premium=self.entry_price,
            cost=self.cost,
            total_investment=self.entry_value,
            stop_loss_premium=self.stop_loss,
            target_premium=self.target,
            current_premium=self.mark(),
            unrealized_pnl=self.unrealized(),
            realized_pnl=self.realized,
            charges=self.charges,
            entry_qty=self.entry_qty,
            exit_qty=self.exit_qty,
            high_water=self.high_water,
            exit_timestamp=self.exit_ts or None,
            exit_premium=self.exit_price if self.exit_qty else None,
            exit_reason=self.exit_reason,
            paper_trade=self.paper,
            updated_ns=self.updated_ns,
            metadata={
                **self.metadata,
                "tick_size": self.tick_size,
                "realized_gross": self.realized_gross,
                "exit_value": self.exit_value,
                "exit_attempts": self.exit_attempts,
            },
        )

    @classmethod
    def from_record(cls, r: PositionRecord, instrument: AnyInstrument) -> Position:
        meta = dict(r.metadata)
        p = cls(
            r.position_id,
            signal_id=r.signal_id,
            strategy=r.strategy,
            instrument=instrument,
            product=r.product,
            direction=r.direction,
            ts_ns=r.entry_timestamp,
            stop_loss=r.stop_loss_premium,
            target=r.target_premium,
            paper=r.paper_trade,
        )
        p.status, p.quantity, p.cost = r.status, r.quantity, r.cost
        p.entry_qty, p.exit_qty = r.entry_qty, r.exit_qty
        p.entry_value = r.total_investment
        p.exit_value = int(meta.pop("exit_value", 0))
        p.realized_gross = int(meta.pop("realized_gross", r.realized_pnl + r.charges))
        p.exit_attempts = int(meta.pop("exit_attempts", 0))
        meta.pop("tick_size", None)
        p.charges = r.charges
        p.current_price, p.high_water = r.current_premium, r.high_water
        p.exit_ts, p.exit_reason = r.exit_timestamp or 0, r.exit_reason
        p.updated_ns = r.updated_ns
        p.metadata = meta
        return p

    def closed_trade(self, order_id: str) -> ClosedTrade:
        invested = self.entry_value or 1
        return ClosedTrade(
            position_id=self.position_id,
            order_id=order_id,
            strategy=self.strategy,
            symbol=self.symbol,
            side=self.entry_side.value,
            quantity=self.entry_qty,
            entry_price=self.entry_price,
            exit_price=self.exit_price,
            pnl=self.realized,
            pnl_pct=round(100 * self.realized / invested, 4),
            charges=self.charges,
            entry_time=self.entry_ts,
            exit_time=self.exit_ts,
            exit_reason=self.exit_reason,
        )


class PositionBook:
    """Every position the kernel knows, indexed by id and by instrument."""

    def __init__(self) -> None:
        self._all: dict[str, Position] = {}
        self._open_by_token: dict[int, dict[str, Position]] = {}

    def __iter__(self) -> Iterator[Position]:
        return iter(self._all.values())

    def __len__(self) -> int:
        return len(self._all)

    def get(self, position_id: str) -> Position | None:
        return self._all.get(position_id)

    def add(self, p: Position) -> None:
        self._all[p.position_id] = p
        if p.is_open:
            self._open_by_token.setdefault(p.token, {})[p.position_id] = p

    def closed(self, p: Position) -> None:
        book = self._open_by_token.get(p.token)
        if book is not None:
            book.pop(p.position_id, None)
            if not book:
                del self._open_by_token[p.token]

    def forget_closed(self, keep: int = 1000) -> None:
        """Drop the oldest closed positions beyond ``keep`` (they live on in the store)."""
        closed = [p for p in self._all.values() if not p.is_open]
        for p in closed[: max(len(closed) - keep, 0)]:
            del self._all[p.position_id]

    def open_positions(self) -> list[Position]:
        return [p for book in self._open_by_token.values() for p in book.values()]

    def open_for_token(self, token: int) -> tuple[Position, ...]:
        book = self._open_by_token.get(token)
        return tuple(book.values()) if book else ()

    def has_open(self, token: int) -> bool:
        return token in self._open_by_token

    def open_tokens(self) -> set[int]:
        """Tokens with an open position."""
        return set(self._open_by_token)

    @property
    def open_count(self) -> int:
        return sum(len(b) for b in self._open_by_token.values())

    def exposure(self) -> int:
        return sum(p.value for book in self._open_by_token.values() for p in book.values())

    def unrealized(self) -> int:
        return sum(p.unrealized() for book in self._open_by_token.values() for p in book.values())

    def invested(self) -> int:
        """Cash tied up in open positions: the cost basis of longs, margin is not modelled here."""
        return sum(
            p.cost
            for book in self._open_by_token.values()
            for p in book.values()
            if p.direction > 0
        )

    def value_in(self, token: int) -> int:
        return sum(p.value for p in self.open_for_token(token))
