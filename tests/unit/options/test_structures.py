"""Templates, whole-basket validation and the structure's risk numbers."""

from __future__ import annotations

import pytest

from mandi.core.errors import InstrumentError
from mandi.model.baskets import Basket, BasketLeg, BasketRejected
from mandi.model.orders import Side
from mandi.options.payoff import PayoffLeg, payoff
from mandi.options.structures import (
    TEMPLATES,
    MarginConfig,
    build,
    margin_estimate,
    payoff_legs,
    resolve,
    structure_risk,
)

from .structures_fixtures import FAR, NEAR, NOW, RATE, SPOT, master, model_prices

B, S = Side.BUY, Side.SELL


@pytest.fixture(scope="module")
def m():
    return master()


def sides(basket: Basket) -> list[tuple[str, Side, int]]:
    return [(leg.symbol, leg.side, leg.quantity) for leg in basket.legs]


def test_every_template_builds_and_validates(m) -> None:
    for name in TEMPLATES:
        basket = build(name, m, "NIFTY", NEAR, SPOT)
        legs = resolve(basket, m, NOW)
        assert len(legs) == len(TEMPLATES[name].legs)
        assert basket.template == name


def test_template_strikes_and_sides(m) -> None:
    ic = build("iron_condor", m, "NIFTY", NEAR, SPOT, lots=2)
    assert sides(ic) == [
        ("NIFTY26041423800PE", B, 130),
        ("NIFTY26041423900PE", S, 130),
        ("NIFTY26041424100CE", S, 130),
        ("NIFTY26041424200CE", B, 130),
    ]
    long_ic = build("iron_condor", m, "NIFTY", NEAR, SPOT, side="BUY")
    assert [leg.side for leg in long_ic.legs] == [S, B, B, S]
    cal = build("calendar", m, "NIFTY", NEAR, SPOT, option_type="PE", strike=2_395_000)
    assert sides(cal) == [("NIFTY26041423950PE", S, 65), ("NIFTY26042123950PE", B, 65)]
    assert sides(build("bear_put_spread", m, "NIFTY", NEAR, SPOT, width=1)) == [
        ("NIFTY26041424000PE", B, 65),
        ("NIFTY26041423950PE", S, 65),
    ]


def test_template_errors_name_the_problem(m) -> None:
    with pytest.raises(InstrumentError, match="unknown template 'condor'"):
        build("condor", m, "NIFTY", NEAR, SPOT)
    with pytest.raises(InstrumentError, match="no listed strike 30 strikes above"):
        build("strangle", m, "NIFTY", NEAR, SPOT, offset=30)
    with pytest.raises(InstrumentError, match="not listed"):
        build("straddle", m, "NIFTY", NEAR, SPOT, strike=2_401_000)
    with pytest.raises(InstrumentError, match="no NIFTY expiry after"):
        build("calendar", m, "NIFTY", FAR, SPOT)
    with pytest.raises(InstrumentError, match="one direction"):
        build("bull_call_spread", m, "NIFTY", NEAR, SPOT, side="SELL")


def test_a_bad_basket_is_rejected_whole_with_a_reason_per_leg(m) -> None:
    basket = Basket(
        (
            BasketLeg("NIFTY26041424000CE", S, 65),  # fine
            BasketLeg("NIFTY26041499999CE", S, 65),  # unknown
            BasketLeg("NIFTY26040724000CE", B, 65),  # expired
            BasketLeg("NIFTY26041424000PE", S, 100),  # not a lot multiple
            BasketLeg("BANKNIFTY26041452000PE", B, 30),  # another underlying
        ),
        template="iron_condor",
    )
    with pytest.raises(BasketRejected) as e:
        resolve(basket, m, NOW)
    text = {(i.leg, i.reason) for i in e.value.issues}
    assert (1, "unknown contract") in text
    assert (2, "expired on 2026-04-07") in text
    assert (3, "quantity is not a multiple of the lot size 65") in text
    assert any(
        i.leg == 4 and "underlying BANKNIFTY differs from NIFTY" in i.reason for i in e.value.issues
    )
    assert any(
        i.leg == -1 and "iron_condor has 4 legs, the basket 5" in i.reason for i in e.value.issues
    )
    assert not any(i.leg == 0 for i in e.value.issues)
    assert "leg 4 (NIFTY26041424000PE)" in str(e.value)


def test_custom_baskets_may_mix_underlyings_but_not_bad_quantities(m) -> None:
    mixed = Basket(
        (BasketLeg("NIFTY26041424000CE", S, 65), BasketLeg("BANKNIFTY26041452000PE", B, 30))
    )
    assert len(resolve(mixed, m, NOW)) == 2
    with pytest.raises(BasketRejected, match="quantity must be positive"):
        resolve(Basket((BasketLeg("NIFTY26041424000CE", S, 0),)), m, NOW)
    with pytest.raises(BasketRejected, match="not tradable"):
        resolve(Basket((BasketLeg("NIFTY 50", B, 1),)), m, NOW)
    with pytest.raises(BasketRejected, match="off the tick"):
        resolve(Basket((BasketLeg("NIFTY26041424000CE", S, 65, price=10_003),)), m, NOW)
    with pytest.raises(BasketRejected, match="at least one leg"):
        resolve(Basket(()), m, NOW)


def legs_for(m, basket: Basket) -> list[PayoffLeg]:
    prices, ivs = model_prices(m)
    return payoff_legs(resolve(basket, m, NOW), prices, SPOT, NOW, rate=RATE, ivs=ivs)


def test_ivs_are_implied_from_prices_when_not_given(m) -> None:
    prices, ivs = model_prices(m)
    basket = build("strangle", m, "NIFTY", NEAR, SPOT)
    implied = payoff_legs(resolve(basket, m, NOW), prices, SPOT, NOW, rate=RATE)
    given = payoff_legs(resolve(basket, m, NOW), prices, SPOT, NOW, rate=RATE, ivs=ivs)
    for a, b in zip(implied, given, strict=True):
        assert a.iv == pytest.approx(b.iv, abs=2e-3)  # prices are rounded to the 5-paise tick
    with pytest.raises(BasketRejected, match="no price"):
        payoff_legs(resolve(basket, m, NOW), {}, SPOT, NOW)


def test_iron_condor_risk_and_hedge_benefit(m) -> None:
    legs = legs_for(m, build("iron_condor", m, "NIFTY", NEAR, SPOT, offset=4, width=2))
    risk = structure_risk(legs, SPOT / 100, r=RATE)
    p = payoff(legs, SPOT / 100, r=RATE)
    assert risk.max_loss == round(-p.max_loss * 100) and risk.worst_case == risk.max_loss
    assert risk.max_profit == round(p.max_profit * 100) == risk.net_premium
    mg = risk.margin
    assert mg.total == mg.scan + mg.exposure + mg.premium
    # the wings cap the loss: the structure needs far less than its legs one by one
    assert mg.hedge_benefit == mg.standalone - mg.total > 0.5 * mg.standalone
    # exposure margin on the two short legs' notional: 2 % × 24,010 × 130 units
    assert mg.exposure == round(0.02 * 24_010 * 130 * 100)
    # the scan charge cannot exceed the most the structure can lose
    assert mg.scan <= risk.max_loss
    assert risk.notional == (24_010 * 260 * 100)


def test_naked_short_straddle_worst_case_is_the_scan_loss(m) -> None:
    legs = legs_for(m, build("straddle", m, "NIFTY", NEAR, SPOT))
    risk = structure_risk(legs, SPOT / 100, r=RATE)
    assert risk.max_loss is None and risk.max_profit == risk.net_premium > 0
    # an unweighted 2 × 7.5 % move against the straddle, revalued now
    spot = SPOT / 100
    credit = risk.net_premium / 100
    now, up = payoff(legs, spot, r=RATE, grid=[spot, spot * 1.15]).today
    assert risk.worst_case == pytest.approx((now - up) * 100, abs=1)
    assert risk.worst_case > 0.1 * spot * 65 * 100 - credit * 100
    wider = structure_risk(legs, spot, MarginConfig(price_scan_pct=10), r=RATE)
    assert wider.worst_case > risk.worst_case and wider.margin.total > risk.margin.total


def test_long_options_need_only_their_premium(m) -> None:
    legs = legs_for(m, build("straddle", m, "NIFTY", NEAR, SPOT, side="BUY"))
    mg = margin_estimate(legs, SPOT / 100, r=RATE)
    paid = round(sum(leg.quantity * leg.price for leg in legs) * 100)
    assert (mg.scan, mg.exposure, mg.premium, mg.total) == (0, 0, paid, paid)
    assert mg.hedge_benefit == 0
    risk = structure_risk(legs, SPOT / 100, r=RATE)
    assert risk.max_loss == paid and risk.net_premium == -paid


def test_margin_rejects_nothing_silently() -> None:
    with pytest.raises(ValueError, match="implied volatility"):
        margin_estimate([PayoffLeg("CE", -1, 1.0, 100, 0.1, float("nan"))], 100.0)
    leg = PayoffLeg("CE", -1, 1.0, 100, 0.1, 0.2)
    assert margin_estimate([leg], 100.0).total > 0
    assert margin_estimate([leg], 100.0).exposure == 200
