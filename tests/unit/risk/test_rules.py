"""Every pre-trade risk rule at its boundaries (table-driven)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import msgspec
import pytest

from mandi.core.calendar import ist_ns
from mandi.model.instruments import Equity, Index, Option
from mandi.model.orders import Intent, OrderType, Side
from mandi.risk import rules
from mandi.risk.config import RiskConfig, RiskLimits
from mandi.risk.rules import Allowed, Denied, OrderContext, evaluate, slice_quantity

DAY = dt.date(2026, 4, 15)
LIMITS = RiskLimits.from_config(RiskConfig())  # ₹50,000 order/position, ₹2,00,000 exposure ...
OPT = Option(
    10,
    "NSE",
    "NIFTY2642124200CE",
    "NIFTY",
    "NFO-OPT",
    65,
    5,
    1800,
    underlying="NIFTY",
    expiry=dt.date(2026, 4, 21),
    strike=2_420_000,
    option_type="CE",
)
STOCK = Equity(20, "NSE", "RELIANCE", "RELIANCE", "NSE", 1, 5)
S = 1_000_000_000


def with_expiry(expiry: dt.date) -> Option:
    return msgspec.structs.replace(OPT, expiry=expiry)


def at(h: int, m: int, s: float = 0) -> int:
    return ist_ns(DAY, dt.time(h, m)) + int(s * S)


BASE = OrderContext(
    now_ns=at(10, 0),
    instrument=OPT,
    side=Side.BUY,
    quantity=65,
    intent=Intent.ENTRY,
    limits=LIMITS,
    ltp=15000,
    ltp_ns=at(10, 0) - S,
    available_cash=10**9,
)


def ctx(**kw) -> OrderContext:
    return dataclasses.replace(BASE, **kw)


def test_the_base_context_passes_every_rule():
    assert isinstance(evaluate(BASE), Allowed)


# (id, context changes, expected rule or None)
CASES = [
    # halted latch: entries refused, exits allowed unless configured otherwise
    ("halted entry", dict(halted=True), "halted"),
    ("halted exit", dict(halted=True, intent=Intent.EXIT, side=Side.SELL), None),
    (
        "halted exit strict",
        dict(
            halted=True,
            intent=Intent.EXIT,
            limits=dataclasses.replace(LIMITS, halt_allows_exits=False),
        ),
        "halted",
    ),
    # trading hours and holidays
    ("before open", dict(now_ns=at(9, 14, 59.999), ltp_ns=at(9, 14, 59)), "trading_hours"),
    ("at the open", dict(now_ns=at(9, 15), ltp_ns=at(9, 15)), None),
    ("last entry second", dict(now_ns=at(15, 14, 59.999), ltp_ns=at(15, 14, 59)), None),
    ("entry at cutoff", dict(now_ns=at(15, 15), ltp_ns=at(15, 15)), "entry_cutoff"),
    (
        "Muhurat entry before its cutoff",
        dict(
            now_ns=ist_ns(dt.date(2025, 10, 21), dt.time(14, 29)),
            ltp_ns=ist_ns(dt.date(2025, 10, 21), dt.time(14, 29)),
            instrument=with_expiry(dt.date(2025, 10, 28)),
        ),
        None,
    ),
    (
        "Muhurat entry at its cutoff (close 14:45 - 15 min)",
        dict(
            now_ns=ist_ns(dt.date(2025, 10, 21), dt.time(14, 30)),
            ltp_ns=ist_ns(dt.date(2025, 10, 21), dt.time(14, 30)),
            instrument=with_expiry(dt.date(2025, 10, 28)),
        ),
        "entry_cutoff",
    ),
    (
        "exit after cutoff",
        dict(now_ns=at(15, 29, 59), ltp_ns=at(15, 29, 59), intent=Intent.EXIT),
        None,
    ),
    (
        "exit at close",
        dict(now_ns=at(15, 30), ltp_ns=at(15, 30), intent=Intent.EXIT),
        "trading_hours",
    ),
    (
        "holiday",
        dict(
            now_ns=ist_ns(dt.date(2026, 4, 14), dt.time(11)),
            ltp_ns=ist_ns(dt.date(2026, 4, 14), dt.time(11)),
        ),
        "holiday",
    ),
    (
        "weekend",
        dict(
            now_ns=ist_ns(dt.date(2026, 4, 18), dt.time(11)),
            ltp_ns=ist_ns(dt.date(2026, 4, 18), dt.time(11)),
        ),
        "holiday",
    ),
    # what is tradable
    ("index", dict(instrument=Index(1, "NSE", "NIFTY")), "not_tradable"),
    ("expired option", dict(instrument=with_expiry(dt.date(2026, 4, 13))), "expired"),
    ("expiring today", dict(instrument=with_expiry(DAY)), None),
    # lot size
    ("one lot", dict(quantity=65), None),
    ("not a lot multiple", dict(quantity=64), "lot_size"),
    ("zero", dict(quantity=0), "lot_size"),
    ("negative", dict(quantity=-65), "lot_size"),
    # freeze quantity: at most 10 slices of 1800
    (
        "ten slices of 27 lots",
        dict(
            quantity=17_550,
            ltp=1,
            limits=dataclasses.replace(
                LIMITS, max_order_value=10**12, max_position_value=10**12, max_total_exposure=10**12
            ),
        ),
        None,
    ),
    (
        "eleven slices",
        dict(
            quantity=17_550 + 65,
            ltp=1,
            limits=dataclasses.replace(
                LIMITS, max_order_value=10**12, max_position_value=10**12, max_total_exposure=10**12
            ),
        ),
        "freeze_quantity",
    ),
    # stale data (30 s)
    ("no price", dict(ltp_ns=0), "no_market_data"),
    ("30 s old", dict(ltp_ns=at(10, 0) - 30 * S), None),
    ("30 s + 1 ns old", dict(ltp_ns=at(10, 0) - 30 * S - 1), "stale_data"),
    ("stale exit allowed", dict(ltp_ns=at(9, 30), intent=Intent.EXIT), None),
    # price sanity: tick grid and ±20 % band for limits
    ("zero ltp", dict(ltp=0, ltp_ns=at(10, 0)), "no_market_data"),
    ("limit off the tick grid", dict(order_type=OrderType.LIMIT, limit_price=15001), "tick_size"),
    ("limit +20 %", dict(order_type=OrderType.LIMIT, limit_price=18000), None),
    ("limit beyond +20 %", dict(order_type=OrderType.LIMIT, limit_price=18005), "price_band"),
    ("limit -20 %", dict(order_type=OrderType.LIMIT, limit_price=12000), None),
    ("limit beyond -20 %", dict(order_type=OrderType.LIMIT, limit_price=11995), "price_band"),
    # order value ₹50,000 (65 × ₹769.23 = ₹49,999.95)
    ("order at the limit", dict(quantity=1, instrument=STOCK, ltp=5_000_000), None),
    (
        "order one paisa over",
        dict(
            quantity=1,
            instrument=STOCK,
            ltp=5_000_005,
            limits=dataclasses.replace(LIMITS, max_position_value=10**9),
        ),
        "max_order_value",
    ),
    # position value ₹50,000 including what is held
    (
        "position at the limit",
        dict(quantity=1, instrument=STOCK, ltp=1_000_000, position_value=4_000_000),
        None,
    ),
    (
        "position over",
        dict(quantity=1, instrument=STOCK, ltp=1_000_000, position_value=4_000_001),
        "max_position_value",
    ),
    # total exposure ₹2,00,000
    ("exposure at the limit", dict(exposure=20_000_000 - 65 * 15000), None),
    ("exposure over", dict(exposure=20_000_000 - 65 * 15000 + 1), "total_exposure"),
    # balance: the premium for a long option, margin for a short sale
    ("cash just enough", dict(available_cash=65 * 15000), None),
    ("cash one paisa short", dict(available_cash=65 * 15000 - 1), "balance"),
    (
        "short sale needs margin",
        dict(side=Side.SELL, instrument=STOCK, quantity=10, ltp=100_000, available_cash=200_000),
        None,
    ),
    (
        "short sale short of margin",
        dict(side=Side.SELL, instrument=STOCK, quantity=10, ltp=100_000, available_cash=199_999),
        "balance",
    ),
    # concurrent positions (3)
    ("two open", dict(open_positions=2), None),
    ("three open", dict(open_positions=3), "max_concurrent_positions"),
    ("adding to a position", dict(open_positions=3, opens_position=False), None),
    # per-minute / per-day caps
    ("minute cap reached exactly", dict(orders_last_minute=119), None),
    ("minute cap exceeded", dict(orders_last_minute=120), "rate_limit_minute"),
    (
        "sliced order counts every slice",
        dict(orders_last_minute=115, slices=6),
        "rate_limit_minute",
    ),
    ("day cap", dict(orders_today=1000), "rate_limit_day"),
]


@pytest.mark.parametrize(("name", "changes", "rule"), CASES, ids=[c[0] for c in CASES])
def test_rule_boundaries(name: str, changes: dict, rule: str | None) -> None:
    d = evaluate(ctx(**changes))
    if rule is None:
        assert isinstance(d, Allowed), d
    else:
        assert isinstance(d, Denied) and d.rule == rule, d
        assert d.reason  # every denial says why, with numbers


def test_exits_skip_the_entry_only_rules():
    exit_rules = {r.__name__ for r in rules.EXIT_RULES}
    assert exit_rules == {"halted", "trading_hours", "lot_size", "price_sanity"}
    d = evaluate(
        ctx(
            intent=Intent.EXIT,
            side=Side.SELL,
            quantity=65 * 100,
            exposure=10**12,
            available_cash=0,
            open_positions=99,
            orders_today=10**6,
        )
    )
    assert isinstance(d, Allowed)


@pytest.mark.parametrize(
    ("qty", "freeze", "lot", "want"),
    [
        (650, 1800, 65, [650]),
        (1755, 1800, 65, [1755]),  # 27 lots: the most below NIFTY's freeze of 1800
        (1820, 1800, 65, [1755, 65]),  # slices stay whole lots: 1800 is not a multiple of 65
        (3600, 1800, 1, [1800, 1800]),
        (5000, 0, 1, [5000]),
        (90, 30, 30, [30, 30, 30]),
    ],
)
def test_freeze_quantity_slicing(qty: int, freeze: int, lot: int, want: list[int]) -> None:
    out = slice_quantity(qty, freeze, lot)
    assert out == want and sum(out) == qty
    assert all(q % lot == 0 for q in out)
