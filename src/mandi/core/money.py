"""Money as integer paise (1 INR = 100 paise) and tick-size rounding.

Prices and money are ``int`` paise everywhere in mandi; floats are for analytics only.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Annotated

import msgspec

PAISE_PER_RUPEE = 100
#: The largest amount a setting in rupees may hold (₹1 lakh crore, 10**14 paise): far above any
#: account, and small enough that paise products (value × quantity) stay exact in int64. Larger,
#: infinite or NaN amounts are typos and stop start-up naming the key.
MAX_CONFIG_INR = 1e12
#: A configured amount of rupees (``*_inr`` settings): finite, 0 ≤ x ≤ :data:`MAX_CONFIG_INR`.
Rupees = Annotated[float, msgspec.Meta(ge=0, le=MAX_CONFIG_INR)]


def to_paise(rupees: float | int | str | Decimal) -> int:
    """Convert rupees to paise, rounding half-even to the nearest paisa.

    Strings may carry Indian digit grouping (``"2,267.60"``). Raises ``ValueError`` naming the
    value for anything that is not a finite number, or too large to convert exactly.
    """
    try:
        if isinstance(rupees, str):
            d = Decimal(rupees.replace(",", "").strip())
        elif isinstance(rupees, float):
            if not math.isfinite(rupees):
                raise ValueError
            d = Decimal(repr(rupees))
        else:
            d = Decimal(rupees)
        if not d.is_finite():
            raise ValueError
    except (InvalidOperation, ValueError):
        raise ValueError(f"not a finite amount of rupees: {rupees!r}") from None
    try:
        return int((d * PAISE_PER_RUPEE).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    except InvalidOperation:  # more digits than the decimal context holds (≥ 1e26 rupees)
        raise ValueError(f"too large an amount of rupees: {rupees!r}") from None


def to_rupees(paise: int) -> float:
    """Paise to rupees as a float (for display and analytics only)."""
    return paise / PAISE_PER_RUPEE


def round_to_tick(paise: int, tick: int, mode: str = "nearest") -> int:
    """Round a price in paise to a multiple of ``tick`` paise.

    ``mode`` is ``"nearest"`` (ties away from zero), ``"down"`` (floor) or ``"up"`` (ceiling);
    buy limits usually round down and sell limits up.
    """
    if tick <= 0:
        raise ValueError(f"tick size must be positive paise, got {tick}")
    if mode == "down":
        return (paise // tick) * tick
    if mode == "up":
        return -((-paise) // tick) * tick
    if mode == "nearest":
        q, r = divmod(paise, tick)
        return (q + (1 if 2 * r >= tick else 0)) * tick
    raise ValueError(f"unknown rounding mode {mode!r}; use nearest, down or up")


class LimitPriceError(ValueError):
    """A limit price that is not a positive multiple of the instrument's tick; ``nearest`` are
    the closest valid prices (paise), one or two."""

    def __init__(self, message: str, nearest: tuple[int, ...]) -> None:
        self.nearest = nearest
        super().__init__(message)


def nearest_ticks(paise: int | Decimal, tick: int) -> tuple[int, ...]:
    """The valid prices (positive multiples of ``tick`` paise) closest to ``paise``: the one
    below and the one above, or only the one above when nothing positive lies below."""
    if tick <= 0:
        raise ValueError(f"tick size must be positive paise, got {tick}")
    below = int(Decimal(paise) // tick) * tick
    above = below + tick
    return (above,) if below <= 0 else (below, above)


def check_limit_price(paise: int, tick: int) -> int:
    """``paise`` when it is a valid limit price (a positive multiple of ``tick``), else raises
    :class:`LimitPriceError` whose message names the nearest valid prices. A limit price never
    becomes zero: zero is a market order, which only an explicit MARKET request may place."""
    if paise > 0 and paise % tick == 0:
        return paise
    near = nearest_ticks(max(paise, 0), tick)
    raise LimitPriceError(_limit_message(tick, near), near)


def limit_price_paise(rupees: float | int | str | Decimal, tick: int) -> int:
    """A limit price given in rupees as paise, without rounding: it must be a positive multiple
    of the instrument's ``tick`` (paise) exactly, else :class:`LimitPriceError` names the
    nearest valid prices (``0.001`` is not 0 paise — a market order — but an error saying
    ₹0.05)."""
    try:
        if isinstance(rupees, str):
            d = Decimal(rupees.replace(",", "").strip())
        elif isinstance(rupees, float):
            d = Decimal(repr(rupees)) if math.isfinite(rupees) else Decimal("NaN")
        else:
            d = Decimal(rupees)
    except (InvalidOperation, ValueError):
        d = Decimal("NaN")
    if not d.is_finite():
        raise LimitPriceError("a limit price must be a finite number of rupees", ())
    exact = d * PAISE_PER_RUPEE
    if exact > 0 and exact == exact.to_integral_value() and int(exact) % tick == 0:
        return int(exact)
    near = nearest_ticks(max(exact, Decimal(0)), tick)
    raise LimitPriceError(_limit_message(tick, near), near)


def _limit_message(tick: int, near: tuple[int, ...]) -> str:
    shown = " or ".join(format_inr(p) for p in near)
    return (
        f"a limit price must be a positive multiple of the tick size {format_inr(tick)}; "
        f"the nearest valid prices are {shown}"
    )


def format_inr(paise: int) -> str:
    """Format paise as rupees with Indian digit grouping: ``1234567_89`` → ``₹12,34,567.89``."""
    sign = "-" if paise < 0 else ""
    rupees, p = divmod(abs(paise), PAISE_PER_RUPEE)
    s = str(rupees)
    if len(s) > 3:
        head, tail = s[:-3], s[-3:]
        groups: list[str] = []
        while len(head) > 2:
            groups.insert(0, head[-2:])
            head = head[:-2]
        if head:
            groups.insert(0, head)
        s = ",".join([*groups, tail])
    return f"{sign}₹{s}.{p:02d}"
