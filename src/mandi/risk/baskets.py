"""One risk decision for a whole basket (a multi-leg structure), before any leg is sent.

Every leg is checked by the pre-trade rules that concern the order itself (HALTED latch, hours,
tradable, lot multiple, freeze slicing, stale data, price and trigger sanity); the money rules
are judged on the structure instead of leg by leg, because the legs hedge each other:

* ``basket_worst_case``: the structure's worst case (its maximum loss when bounded, else the loss
  of the margin scan; :func:`mandi.options.structures.structure_risk`) within the daily loss
  limit and within what is left of it today;
* ``basket_margin``: the margin estimate (with the hedge benefit) within the available cash;
* ``total_exposure``: the premium value of the legs plus the open exposure within the limit;
* ``max_concurrent_positions``: a structure counts as one new position;
* ``rate_limit_minute`` / ``rate_limit_day``: every slice of every leg counted.

Everything found is reported at once (:class:`BasketDenied`, one reason per leg, ``leg = -1``
for the structure) and nothing is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from mandi.core.money import format_inr
from mandi.model.baskets import LegIssue
from mandi.risk.config import RiskLimits
from mandi.risk.rules import (
    ALLOWED,
    Allowed,
    OrderContext,
    Rule,
    freeze_quantity,
    halted,
    lot_size,
    price_sanity,
    stale_data,
    tradable,
    trading_hours,
)

#: the per-leg rules (the money rules are the structure's)
LEG_RULES: tuple[Rule, ...] = (
    halted,
    trading_hours,
    tradable,
    lot_size,
    freeze_quantity,
    stale_data,
    price_sanity,
)
NO_CALENDAR_LEG_RULES: tuple[Rule, ...] = tuple(r for r in LEG_RULES if r is not trading_hours)


@dataclass(frozen=True, slots=True)
class BasketDenied:
    """The basket is refused by ``rule`` (the first found) with every issue found."""

    rule: str
    reason: str
    issues: tuple[LegIssue, ...]

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class StructureNumbers:
    """What the structure-level rules read (int paise): from ``structure_risk`` and the book."""

    worst_case: int
    margin: int
    premium_value: int
    exposure: int  # open positions' value now
    available_cash: int
    day_pnl: int  # today's realized + unrealized P&L (negative = a loss)
    open_positions: int
    orders_last_minute: int
    orders_today: int


def check_basket(
    legs: list[OrderContext],
    numbers: StructureNumbers,
    limits: RiskLimits,
    *,
    calendar_rules: bool = True,
) -> Allowed | BasketDenied:
    """The one decision for the basket whose legs are ``legs`` (module doc)."""
    issues: list[tuple[str, LegIssue]] = []
    rules = LEG_RULES if calendar_rules else NO_CALENDAR_LEG_RULES
    for i, ctx in enumerate(legs):
        for check in rules:
            d = check(ctx)
            if d is not None:
                issues.append((d.rule, LegIssue(i, ctx.instrument.symbol, d.reason)))
    n = numbers
    budget = limits.max_daily_loss + min(n.day_pnl, 0)
    if n.worst_case > budget:
        issues.append(
            (
                "basket_worst_case",
                LegIssue(
                    -1,
                    "",
                    f"worst case {format_inr(n.worst_case)} exceeds the daily loss budget "
                    f"{format_inr(max(budget, 0))} (limit {format_inr(limits.max_daily_loss)})",
                ),
            )
        )
    if n.margin > n.available_cash:
        issues.append(
            (
                "basket_margin",
                LegIssue(
                    -1,
                    "",
                    f"margin {format_inr(n.margin)} (with the hedge benefit) exceeds the "
                    f"available cash {format_inr(n.available_cash)}",
                ),
            )
        )
    if n.exposure + n.premium_value > limits.max_total_exposure:
        issues.append(
            (
                "total_exposure",
                LegIssue(
                    -1,
                    "",
                    f"exposure {format_inr(n.exposure + n.premium_value)} would exceed "
                    f"{format_inr(limits.max_total_exposure)}",
                ),
            )
        )
    if n.open_positions >= limits.max_concurrent_positions:
        issues.append(
            (
                "max_concurrent_positions",
                LegIssue(
                    -1,
                    "",
                    f"{n.open_positions} positions are open "
                    f"(limit {limits.max_concurrent_positions}; a basket counts as one)",
                ),
            )
        )
    slices = sum(ctx.slices for ctx in legs)
    if n.orders_last_minute + slices > limits.orders_per_minute:
        issues.append(
            (
                "rate_limit_minute",
                LegIssue(-1, "", f"{slices} orders would pass the per-minute cap"),
            )
        )
    elif n.orders_today + slices > limits.orders_per_day:
        issues.append(
            ("rate_limit_day", LegIssue(-1, "", f"{slices} orders would pass the daily cap"))
        )
    if not issues:
        return ALLOWED
    first_rule, first = issues[0]
    return BasketDenied(first_rule, str(first), tuple(i for _, i in issues))
