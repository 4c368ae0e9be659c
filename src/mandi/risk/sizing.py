"""Position sizing: how many shares an entry may have (whole lots).

* ``risk_percent`` (seed "risk parity"): capital × risk-per-trade ÷ the loss per share at the
  stop-loss — a 2 % risk on ₹5,00,000 with a ₹45 stop distance gives 222 shares;
* ``fixed_amount``: a fixed rupee amount per trade ÷ the entry price;

then capped by the largest position allowed (max % of capital per position, max order value,
max position value) and rounded down to whole lots. Zero lots is a refusal with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from mandi.core.money import format_inr
from mandi.risk.config import RiskLimits


@dataclass(frozen=True, slots=True)
class Size:
    quantity: int
    reason: str = ""  # why it is zero


def size_entry(
    limits: RiskLimits,
    *,
    entry_price: int,
    stop_price: int,
    lot_size: int,
    capital: int | None = None,
) -> Size:
    """Shares to buy/sell at ``entry_price`` with a stop at ``stop_price`` (paise)."""
    lot = max(lot_size, 1)
    if entry_price <= 0:
        return Size(0, f"no valid entry price ({entry_price})")
    cap = limits.capital if capital is None else capital
    if limits.sizing == "fixed_amount":
        qty = limits.fixed_amount // entry_price
        basis = f"fixed amount {format_inr(limits.fixed_amount)}"
    else:
        per_share = abs(entry_price - stop_price)
        if per_share <= 0:
            return Size(0, "the stop-loss equals the entry price; risk per share is zero")
        budget = int(cap * limits.risk_per_trade)
        qty = budget // per_share
        basis = f"risk budget {format_inr(budget)} at {format_inr(per_share)}/share"
    largest = min(
        int(cap * limits.max_position_fraction), limits.max_order_value, limits.max_position_value
    )
    qty = min(qty, largest // entry_price)
    qty -= qty % lot
    if qty <= 0:
        return Size(
            0,
            f"one lot ({lot} × {format_inr(entry_price)}) does not fit the {basis} "
            f"and the position cap {format_inr(largest)}",
        )
    return Size(qty)
