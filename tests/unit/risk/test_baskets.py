"""One risk decision for a whole basket: per-leg order rules, structure-level money rules."""

from __future__ import annotations

import datetime as dt

import msgspec

from mandi.core.calendar import ist_ns
from mandi.model.instruments import Option
from mandi.model.orders import Intent, Side
from mandi.risk.baskets import StructureNumbers, check_basket
from mandi.risk.config import RiskConfig, RiskLimits
from mandi.risk.rules import OrderContext

NOW = ist_ns(dt.date(2026, 4, 15), dt.time(10, 0))
LIMITS = RiskLimits.from_config(RiskConfig(max_daily_loss_inr=20_000, capital_inr=500_000))


def leg(symbol: str, side: Side, qty: int = 65, ltp_ns: int = NOW) -> OrderContext:
    inst = Option(hash(symbol) % 10**6, "NSE", symbol, "NIFTY", "NFO-OPT", 65, 5, 1800,
                  underlying="NIFTY", expiry=dt.date(2026, 4, 21))  # fmt: skip
    return OrderContext(NOW, inst, side, qty, Intent.ENTRY, LIMITS, ltp=10_000, ltp_ns=ltp_ns)


def numbers(**kw) -> StructureNumbers:
    base = dict(worst_case=1_500_000, margin=6_000_000, premium_value=2_000_000, exposure=0,
                available_cash=50_000_000, day_pnl=0, open_positions=0, orders_last_minute=0,
                orders_today=0)  # fmt: skip
    return StructureNumbers(**{**base, **kw})


def test_a_sound_basket_is_allowed_and_a_worst_case_over_budget_is_not():
    legs = [leg("A", Side.BUY), leg("B", Side.SELL), leg("C", Side.SELL), leg("D", Side.BUY)]
    assert check_basket(legs, numbers(), LIMITS)
    d = check_basket(legs, numbers(worst_case=2_100_000), LIMITS)
    assert not d and d.rule == "basket_worst_case"
    # a loss already taken today shrinks what the structure may lose
    d = check_basket(legs, numbers(day_pnl=-600_000), LIMITS)
    assert not d and "budget ₹14,000.00" in d.reason


def test_every_issue_is_reported_with_its_leg():
    legs = [leg("A", Side.BUY), leg("B", Side.SELL, qty=100), leg("C", Side.SELL, ltp_ns=1)]
    d = check_basket(legs, numbers(margin=60_000_000), LIMITS)
    assert not d and d.rule == "lot_size"
    found = {(i.leg, i.reason.split(" ")[0]) for i in d.issues}
    assert (1, "quantity") in found and any(i.leg == 2 for i in d.issues)
    assert any(i.leg == -1 and "margin" in i.reason for i in d.issues)
    assert not any(i.leg == 0 for i in d.issues)


def test_a_basket_counts_as_one_position_and_its_slices_count_for_the_rate():
    legs = [leg("A", Side.BUY), leg("B", Side.SELL)]
    limits = msgspec.structs.replace(
        RiskConfig(max_daily_loss_inr=20_000), max_concurrent_positions=3
    )
    lim = RiskLimits.from_config(limits)
    assert check_basket(legs, numbers(open_positions=2), lim)
    d = check_basket(legs, numbers(open_positions=3), lim)
    assert not d and d.rule == "max_concurrent_positions"
    d = check_basket(legs, numbers(orders_last_minute=lim.orders_per_minute - 1), lim)
    assert not d and d.rule == "rate_limit_minute"
