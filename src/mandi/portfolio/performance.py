"""Daily performance (the seed's ``daily_performance`` row) and the day's P&L for the breaker.

Per IST trading day: closed trades, winners and losers (by each position's whole-life net P&L),
gross profit and gross loss (their sums), ``net_pnl`` (realized P&L of the day's fills net of the
day's charges), ``charges`` and ``max_drawdown`` — the largest fall of the intraday equity curve
(net realized + unrealized, sampled at every fill and monitor check) from its running peak.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from mandi.model.trading import DailyRow


@dataclasses.dataclass
class _Day:
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


class PerformanceTracker:
    """Keeps the daily rows of the days it has seen (loaded from the store on first use)."""

    def __init__(self, load: Callable[[str], DailyRow | None] | None = None) -> None:
        self._load = load
        self._days: dict[dt.date, _Day] = {}

    def _day(self, day: dt.date) -> _Day:
        d = self._days.get(day)
        if d is None:
            key = day.isoformat()
            stored = self._load(key) if self._load is not None else None
            d = _Day(*dataclasses.astuple(stored)) if stored is not None else _Day(key)
            self._days[day] = d
        return d

    def on_fill(self, day: dt.date, gross_realized: int, charges: int) -> None:
        d = self._day(day)
        d.net_pnl += gross_realized - charges
        d.charges += charges

    def on_close(self, day: dt.date, position_pnl: int) -> None:
        d = self._day(day)
        d.total_trades += 1
        if position_pnl > 0:
            d.winning_trades += 1
            d.gross_profit += position_pnl
        elif position_pnl < 0:
            d.losing_trades += 1
            d.gross_loss += position_pnl

    def mark(self, day: dt.date, unrealized: int) -> None:
        """Sample the equity curve (realized net + ``unrealized``) for the drawdown."""
        d = self._day(day)
        equity = d.net_pnl + unrealized
        if equity > d.peak:
            d.peak = equity
        d.max_drawdown = max(d.max_drawdown, d.peak - equity)

    def realized(self, day: dt.date) -> int:
        return self._day(day).net_pnl

    def row(self, day: dt.date) -> DailyRow:
        d = self._day(day)
        return DailyRow(
            d.date,
            d.total_trades,
            d.winning_trades,
            d.losing_trades,
            d.gross_profit,
            d.gross_loss,
            d.net_pnl,
            d.charges,
            d.max_drawdown,
            d.peak,
        )
