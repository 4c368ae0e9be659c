"""Payoff and position Greeks of every template against closed-form values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mandi.options import black76_greeks, black76_price, bs_price, greeks
from mandi.options.payoff import PayoffLeg, StructureArrays, payoff, pnl, position_greeks
from mandi.options.structures import build, payoff_legs, resolve

from .structures_fixtures import NEAR, NOW, RATE, SPOT, master, model_prices

S = SPOT / 100


def _norm_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def lognormal_cdf(x: float, sigma: float, t: float, r: float = RATE) -> float:
    """P(S_T ≤ x) under the risk-neutral lognormal law at volatility sigma."""
    f = S * math.exp(r * t)
    sd = sigma * math.sqrt(t)
    return _norm_cdf((math.log(x / f) + sd * sd / 2) / sd)


@pytest.fixture(scope="module")
def market():
    m = master()
    prices, ivs = model_prices(m)
    return m, prices, ivs


def legs_of(market, template: str, **kw) -> list[PayoffLeg]:
    m, prices, ivs = market
    basket = build(template, m, "NIFTY", NEAR, SPOT, **kw)
    return payoff_legs(resolve(basket, m, NOW), prices, SPOT, NOW, rate=RATE, ivs=ivs)


def atm_iv(legs: list[PayoffLeg]) -> float:
    return min(legs, key=lambda p: abs(p.strike - S)).iv


def check_greeks(legs: list[PayoffLeg]) -> None:
    """Net Greeks = Σ quantity × the library's (exact) Greeks of each leg."""
    a = StructureArrays.of(legs)
    g = greeks(S, a.strike, a.years, RATE, a.iv, a.is_call)
    got = position_greeks(legs, S, r=RATE)
    for name, want in zip(("delta", "gamma", "theta", "vega"), g[:4], strict=False):
        assert getattr(got, name) == pytest.approx(float(a.quantity @ want), rel=1e-9, abs=1e-9)


def test_short_straddle_closed_form(market) -> None:
    legs = legs_of(market, "straddle")
    assert [leg.kind for leg in legs] == ["CE", "PE"] and all(leg.quantity == -65 for leg in legs)
    k = legs[0].strike
    assert k == 24_000  # the listed strike nearest 24,010
    credit = legs[0].price + legs[1].price
    p = payoff(legs, S, r=RATE)
    assert p.breakevens == pytest.approx((k - credit, k + credit), abs=1e-9)
    assert p.max_profit == pytest.approx(credit * 65)
    assert p.max_loss == -math.inf
    assert p.net_premium == pytest.approx(credit * 65)
    sigma, t = atm_iv(legs), legs[0].years
    want = lognormal_cdf(k + credit, sigma, t) - lognormal_cdf(k - credit, sigma, t)
    assert p.pop == pytest.approx(want, rel=1e-12)
    # at expiry: credit − |S − K| per unit
    assert p.at_expiry == pytest.approx(65 * (credit - np.abs(p.spots - k)), abs=1e-7)
    check_greeks(legs)
    # closed form: a straddle's delta is e^{-qt}(2 N(d1) - 1) per unit (q = 0), for one IV
    d1 = (math.log(S / k) + (RATE + sigma**2 / 2) * t) / (sigma * math.sqrt(t))
    same_iv = [PayoffLeg(x.kind, x.quantity, x.price, x.strike, x.years, sigma) for x in legs]
    assert position_greeks(same_iv, S, r=RATE).delta == pytest.approx(
        -65 * (2 * _norm_cdf(d1) - 1), rel=1e-10
    )


def test_long_strangle_closed_form(market) -> None:
    legs = legs_of(market, "strangle", side="BUY", offset=3)
    call, put = legs
    assert (call.strike, put.strike) == (24_150, 23_850)
    assert call.quantity == put.quantity == 65
    debit = call.price + put.price
    p = payoff(legs, S, r=RATE)
    assert p.breakevens == pytest.approx((put.strike - debit, call.strike + debit))
    assert p.max_loss == pytest.approx(-debit * 65)
    assert p.max_profit == math.inf
    sigma, t = atm_iv(legs), call.years
    want = 1 - (
        lognormal_cdf(call.strike + debit, sigma, t) - lognormal_cdf(put.strike - debit, sigma, t)
    )
    assert p.pop == pytest.approx(want, rel=1e-12)
    check_greeks(legs)


@pytest.mark.parametrize(
    ("template", "debit_spread", "calls"),
    [
        ("bull_call_spread", True, True),
        ("bear_call_spread", False, True),
        ("bull_put_spread", False, False),
        ("bear_put_spread", True, False),
    ],
)
def test_vertical_spreads_closed_form(market, template, debit_spread, calls) -> None:
    legs = legs_of(market, template, width=4, lots=2)
    assert all((leg.kind == "CE") == calls for leg in legs)
    q = 130
    assert {abs(leg.quantity) for leg in legs} == {q}
    width = abs(legs[1].strike - legs[0].strike)
    assert width == 200
    net = -sum(leg.quantity * leg.price for leg in legs) / q  # > 0 credit
    assert (net < 0) == debit_spread
    p = payoff(legs, S, r=RATE)
    if debit_spread:
        assert p.max_loss == pytest.approx(net * q)
        assert p.max_profit == pytest.approx((width + net) * q)
    else:
        assert p.max_profit == pytest.approx(net * q)
        assert p.max_loss == pytest.approx(-(width - net) * q)
    lo, hi = sorted(leg.strike for leg in legs)
    # the breakeven sits the premium away from the short strike of a credit spread (the long of
    # a debit one), inside [lo, hi]
    be = (lo + abs(net)) if calls else (hi - abs(net))
    assert p.breakevens == pytest.approx((be,))
    sigma, t = atm_iv(legs), legs[0].years
    below = lognormal_cdf(be, sigma, t)
    bullish = template.startswith("bull")
    assert p.pop == pytest.approx(1 - below if bullish else below, rel=1e-12)
    check_greeks(legs)


def test_short_iron_condor_closed_form(market) -> None:
    legs = legs_of(market, "iron_condor", offset=4, width=2)
    strikes = [leg.strike for leg in legs]
    assert strikes == [23_700, 23_800, 24_200, 24_300]
    assert [leg.quantity for leg in legs] == [65, -65, -65, 65]
    credit = -sum(leg.quantity * leg.price for leg in legs) / 65
    p = payoff(legs, S, r=RATE)
    assert p.max_profit == pytest.approx(credit * 65)
    assert p.max_loss == pytest.approx(-(100 - credit) * 65)
    assert p.breakevens == pytest.approx((23_800 - credit, 24_200 + credit))
    sigma, t = atm_iv(legs), legs[0].years
    want = lognormal_cdf(24_200 + credit, sigma, t) - lognormal_cdf(23_800 - credit, sigma, t)
    assert p.pop == pytest.approx(want, rel=1e-12)
    check_greeks(legs)


def test_short_iron_fly_closed_form(market) -> None:
    legs = legs_of(market, "iron_fly", width=3)
    assert sorted(leg.strike for leg in legs) == [23_850, 24_000, 24_000, 24_150]
    credit = -sum(leg.quantity * leg.price for leg in legs) / 65
    p = payoff(legs, S, r=RATE)
    assert p.max_profit == pytest.approx(credit * 65)
    assert p.max_loss == pytest.approx(-(150 - credit) * 65)
    assert p.breakevens == pytest.approx((24_000 - credit, 24_000 + credit))
    check_greeks(legs)


@pytest.mark.parametrize("option_type", ["CE", "PE"])
def test_long_butterfly_closed_form(market, option_type) -> None:
    legs = legs_of(market, "butterfly", width=2, option_type=option_type)
    assert [(leg.strike, leg.quantity) for leg in legs] == [
        (23_900, 65),
        (24_000, -130),
        (24_100, 65),
    ]
    debit = sum(leg.quantity * leg.price for leg in legs) / 65
    p = payoff(legs, S, r=RATE)
    assert p.max_profit == pytest.approx((100 - debit) * 65)
    assert p.max_loss == pytest.approx(-debit * 65)
    assert p.breakevens == pytest.approx((23_900 + debit, 24_100 - debit))
    sigma, t = atm_iv(legs), legs[0].years
    want = lognormal_cdf(24_100 - debit, sigma, t) - lognormal_cdf(23_900 + debit, sigma, t)
    assert p.pop == pytest.approx(want, rel=1e-12)
    check_greeks(legs)


def test_calendar_payoff_at_first_expiry(market) -> None:
    legs = legs_of(market, "calendar")
    near, far = legs
    assert near.quantity == -65 and far.quantity == 65 and far.years > near.years
    p = payoff(legs, S, r=RATE)
    assert not p.exact
    # at the near expiry the far call is worth its Black-Scholes value over the remaining time
    tau = far.years - near.years
    k = near.strike
    far_value = bs_price(p.spots, k, tau, RATE, far.iv, True)
    want = 65 * (far_value - far.price) - 65 * (np.maximum(p.spots - k, 0) - near.price)
    assert p.at_expiry == pytest.approx(want, rel=1e-9, abs=1e-6)
    assert len(p.breakevens) == 2
    assert pnl(legs, list(p.breakevens), horizon=near.years, r=RATE) == pytest.approx(
        [0, 0], abs=1e-6
    )
    # the most it can lose is the debit (with r = 0 the tails tend to exactly that)
    debit = (far.price - near.price) * 65
    assert -debit * 1.0001 <= p.max_loss < 0
    assert p.max_profit == pytest.approx(p.at_expiry.max())
    assert p.max_profit == pytest.approx(float(want.max()))
    check_greeks(legs)


def test_today_is_the_library_price_and_black76_matches() -> None:
    legs = [
        PayoffLeg("CE", -50, 210.0, 24_000, 9 / 365, 0.14),
        PayoffLeg("PE", 50, 120.0, 23_700, 16 / 365, 0.17),
        PayoffLeg("FUT", 25, 24_050.0),
    ]
    x = np.linspace(22_000, 26_000, 41)
    ce = bs_price(x, 24_000, 9 / 365, RATE, 0.14, True, 0.01)
    pe = bs_price(x, 23_700, 16 / 365, RATE, 0.17, False, 0.01)
    want = -50 * (ce - 210) + 50 * (pe - 120) + 25 * (x - 24_050)
    assert pnl(legs, x, r=RATE, q=0.01) == pytest.approx(want, rel=1e-10, abs=1e-7)
    ce = black76_price(x, 24_000, 9 / 365, RATE, 0.14, True)
    pe = black76_price(x, 23_700, 16 / 365, RATE, 0.17, False)
    want = -50 * (ce - 210) + 50 * (pe - 120) + 25 * (x - 24_050)
    assert pnl(legs, x, r=RATE, model="black76") == pytest.approx(want, rel=1e-10, abs=1e-7)
    g = black76_greeks(
        24_100.0,
        np.array([24_000, 23_700]),
        np.array([9, 16]) / 365,
        RATE,
        np.array([0.14, 0.17]),
        np.array([True, False]),
    )
    got = position_greeks(legs, 24_100.0, r=RATE, model="black76")
    assert got.delta == pytest.approx(-50 * g.delta[0] + 50 * g.delta[1] + 25, rel=1e-10)
    assert got.theta == pytest.approx(-50 * g.theta[0] + 50 * g.theta[1], rel=1e-10)
    assert got.vega == pytest.approx(-50 * g.vega[0] + 50 * g.vega[1], rel=1e-10)
    assert got.gamma == pytest.approx(-50 * g.gamma[0] + 50 * g.gamma[1], rel=1e-10)


def test_covered_call_slope_and_horizon() -> None:
    legs = [PayoffLeg("FUT", 75, 24_000.0), PayoffLeg("CE", -75, 150.0, 24_200, 7 / 365, 0.15)]
    p = payoff(legs, 24_000.0)
    assert p.max_profit == pytest.approx(75 * (200 + 150))
    assert p.max_loss == pytest.approx(-75 * (24_000 - 150))  # the price going to zero
    assert p.breakevens == pytest.approx((24_000 - 150,))
    # a week later the option has expired: "today" at that horizon equals the expiry payoff
    later = payoff(legs, 24_000.0, horizon=7 / 365, grid=p.spots)
    assert later.today == pytest.approx(p.at_expiry)


def test_bad_structures_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one leg"):
        payoff([], 100.0)
    with pytest.raises(ValueError, match="kind 'XX'"):
        payoff([PayoffLeg("XX", 1, 1.0, 100)], 100.0)
    with pytest.raises(ValueError, match="implied volatility"):
        payoff([PayoffLeg("CE", 1, 1.0, 100, 0.1)], 100.0)
    with pytest.raises(ValueError, match="positive strike"):
        payoff([PayoffLeg("PE", 1, 1.0, 0, 0.1, 0.2)], 100.0)
