"""Baskets: multi-leg orders (an option structure placed as one).

A :class:`Basket` is a list of :class:`BasketLeg` (contract, side, quantity in units, optional
limit price) with the name of the template it was built from (``"custom"`` when built by hand,
see :mod:`mandi.options.structures`). A basket is checked, risk-assessed and accepted or rejected
*whole*; :class:`BasketRejected` carries one reason per offending leg
(:class:`LegIssue`, ``leg = -1`` for a reason about the structure as a whole).

Prices are int paise, quantities units (shares), times int ns UTC.
"""

from __future__ import annotations

import msgspec

from mandi.core.errors import OrderError
from mandi.model.orders import Product, Side


class BasketLeg(msgspec.Struct, frozen=True):
    """One leg: ``symbol`` (and ``exchange`` when the symbol is ambiguous), ``side``,
    ``quantity`` in units (a lot multiple), ``price`` a limit price in paise (0 = market)."""

    symbol: str
    side: Side
    quantity: int
    exchange: str = ""
    price: int = 0


class Basket(msgspec.Struct, frozen=True):
    """A structure to place as one: its legs, the template it follows (``"custom"`` = by hand),
    the product and a free tag."""

    legs: tuple[BasketLeg, ...]
    template: str = "custom"
    product: Product = Product.MIS
    tag: str = ""


class LegIssue(msgspec.Struct, frozen=True):
    """Why leg ``leg`` (its index; -1 = the structure as a whole) cannot be placed."""

    leg: int
    symbol: str
    reason: str

    def __str__(self) -> str:
        where = "structure" if self.leg < 0 else f"leg {self.leg + 1} ({self.symbol})"
        return f"{where}: {self.reason}"


class BasketRejected(OrderError):
    """A basket refused whole before any leg was sent, with every reason found."""

    def __init__(self, issues: list[LegIssue], rule: str = "basket") -> None:
        self.issues = issues
        self.rule = rule
        super().__init__("basket rejected: " + "; ".join(str(i) for i in issues))
