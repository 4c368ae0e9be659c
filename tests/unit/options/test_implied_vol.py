"""Implied volatility: round trips over the whole domain, QuantLib prices, NSE's published IVs,
no-solution reasons."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mandi.options import (
    IVStatus,
    black76_implied_vol,
    black76_iv_status,
    black76_price,
    bs_price,
    implied_vol,
    iv_status,
)
from mandi.options._black import normalised_otm, normalised_vega

MINUTE = 1 / (365 * 24 * 60)


def _domain(n: int, seed: int) -> dict[str, np.ndarray]:
    """ln(F/K) within ±3, one minute to five years, vols 1 %-500 %, calls and puts."""
    rng = np.random.default_rng(seed)
    forward = 10 ** rng.uniform(0, 5, n)
    return {
        "forward": forward,
        "strike": forward * np.exp(-rng.uniform(-3, 3, n)),
        "t": 10 ** rng.uniform(math.log10(MINUTE), math.log10(5), n),
        "sigma": 10 ** rng.uniform(-2, math.log10(5), n),
        "r": rng.uniform(-0.01, 0.15, n),
        "call": rng.random(n) < 0.5,
    }


def _resolvable(price: np.ndarray, vega_per_unit: np.ndarray, tol: float) -> np.ndarray:
    """Options whose price moves by at least ~64 ulps when σ moves by ``tol``: there σ is
    determined to ``tol`` by a double-precision price ('vega not negligible')."""
    # prices below 1e-290 of the currency unit are zero for all purposes (their normalised time
    # value underflows to sub-normal numbers; the solver reports AT_INTRINSIC)
    return (vega_per_unit * tol >= 64 * np.spacing(np.maximum(price, 1e-300))) & (price > 1e-290)


def _vega(forward, strike, t, r, sigma):  # type: ignore[no-untyped-def]
    s = np.broadcast_to(sigma * np.sqrt(t), np.shape(forward))
    x = np.log(forward / strike)
    v = np.array([normalised_vega(-abs(a), b) for a, b in zip(x, s, strict=True)])
    return np.exp(-r * t) * np.sqrt(forward * strike) * v * np.sqrt(t)


def test_black76_round_trip_whole_domain_to_1e_10() -> None:
    g = _domain(200_000, seed=1)
    price = black76_price(g["forward"], g["strike"], g["t"], g["r"], g["sigma"], g["call"])
    iv, status = black76_implied_vol(
        price, g["forward"], g["strike"], g["t"], g["r"], g["call"], return_status=True
    )
    vega = _vega(g["forward"], g["strike"], g["t"], g["r"], g["sigma"])
    resolvable = _resolvable(price, vega, 1e-10)
    assert resolvable.sum() > 40_000  # the rest: time value below the price's rounding
    assert (status[resolvable] == IVStatus.OK).all()
    err = np.abs(iv - g["sigma"])[resolvable]
    assert err.max() <= 1e-10, err.max()
    # machine precision wherever the price pins σ down that far: where a relative change of
    # 1e-14 in σ moves the price by 64 ulps, σ comes back within a few ulps
    sharp = _resolvable(price, vega * g["sigma"], 1e-14)
    assert sharp.sum() > 30_000
    assert (np.abs(iv - g["sigma"]) / g["sigma"])[sharp].max() < 1e-14
    # every element has a reason; NaN exactly where the status is not OK
    assert np.array_equal(np.isnan(iv), status != IVStatus.OK)
    # unresolvable prices (time value lost in rounding) are reported, not made up
    assert set(np.unique(status)) <= {IVStatus.OK, IVStatus.AT_INTRINSIC, IVStatus.BELOW_INTRINSIC}


def test_bsm_round_trip_with_dividends_and_extreme_corners() -> None:
    cases = [
        # spot, strike, t, r, q, sigma
        (24206.9, 24200.0, MINUTE, 0.10, 0.0, 0.12),  # ATM, one minute left
        (24206.9, 24500.0, 15 * MINUTE, 0.10, 0.0, 0.25),  # OTM, 15 minutes
        (24206.9, 21000.0, 30 * MINUTE, 0.10, 0.0, 0.90),  # deep ITM put side
        (100.0, 100.0, 5.0, 0.05, 0.03, 0.01),  # 1 % vol, 5 years
        (100.0, 300.0, 2.0, 0.05, 0.02, 5.0),  # 500 % vol
        (100.0, 5.0, 2.0, 0.05, 0.02, 5.0),
        (100.0, 100.0 * (1 + 1e-12), 0.5, 0.0, 0.0, 0.2),  # x ≈ 0
        (100.0, 100.0, 0.5, 0.0, 0.0, 0.2),  # x = 0 exactly
    ]
    for s, k, t, r, q, v in cases:
        for call in (True, False):
            p = bs_price(s, k, t, r, v, call, q)
            iv, status = implied_vol(p, s, k, t, r, call, q, return_status=True)
            f = s * math.exp((r - q) * t)
            vega = _vega(np.array([f]), np.array([k]), t, r, v)
            if _resolvable(p, vega, 1e-12)[0]:
                assert float(iv) == pytest.approx(v, abs=1e-12, rel=1e-13), (s, k, t, v, call)
            elif status == IVStatus.OK:  # time value of a few ulps: σ as good as it gets
                assert abs(float(iv) - v) * float(vega[0]) <= 1e3 * math.ulp(float(p))
            else:  # e.g. the in-the-money side of a 15-minute option: time value < 1 ulp
                assert status == IVStatus.AT_INTRINSIC, (s, k, t, v, call)


def test_round_trip_against_quantlib_prices() -> None:
    ql = pytest.importorskip("QuantLib")
    g = _domain(3000, seed=5)
    prices = np.empty(3000)
    for i in range(3000):
        kind = ql.Option.Call if g["call"][i] else ql.Option.Put
        payoff = ql.PlainVanillaPayoff(kind, float(g["strike"][i]))
        sd = float(g["sigma"][i] * math.sqrt(g["t"][i]))
        prices[i] = ql.BlackCalculator(
            payoff, float(g["forward"][i]), sd, math.exp(-g["r"][i] * g["t"][i])
        ).value()
    iv = black76_implied_vol(prices, g["forward"], g["strike"], g["t"], g["r"], g["call"])
    vega = _vega(g["forward"], g["strike"], g["t"], g["r"], g["sigma"])
    # QuantLib's prices carry an absolute error ~ε·max(F, K) (its F·N(d1) − K·N(d2))
    ql_error = 8 * 2.2e-16 * np.maximum(g["forward"], g["strike"])
    ok = vega * 1e-10 >= 16 * ql_error
    assert ok.sum() > 300
    assert np.abs(iv - g["sigma"])[ok].max() <= 1e-10


@settings(max_examples=300, deadline=None)
@given(
    x=st.floats(-8.0, 8.0),
    s=st.floats(1e-3, 12.0),
    call=st.booleans(),
)
@example(x=8.0, s=0.212890625, call=False)
def test_property_normalised_round_trip(x: float, s: float, call: bool) -> None:
    """Forward 1, strike e^−x, t = 1: σ = s; wherever b'(s)·1e-12 is above the price's
    rounding, σ comes back to 1e-12 (unless the time value is below the documented limit)."""
    strike = math.exp(-x)
    price = float(black76_price(1.0, strike, 1.0, 0.0, s, call))
    iv = float(black76_implied_vol(price, 1.0, strike, 1.0, 0.0, call))
    vega = math.sqrt(strike) * normalised_vega(-abs(x), s)
    if normalised_otm(-abs(x), s) < sys.float_info.min:
        # a time value below 2.2e-308·√(F·K) is documented as lost in rounding (AT_INTRINSIC);
        # hypothesis found x = 8, s = 0.2129 (a put worth 2.5e-313)
        status = int(black76_iv_status(price, 1.0, strike, 1.0, 0.0, call))
        assert math.isnan(iv) and status == IVStatus.AT_INTRINSIC
    elif vega * 1e-12 >= 64 * math.ulp(price):
        assert iv == pytest.approx(s, abs=1e-12)
    else:
        assert math.isnan(iv) or abs(iv - s) * vega <= 1e3 * math.ulp(price)


def test_statuses_say_why_there_is_no_vol() -> None:
    s, k, t, r = 24206.9, 24200.0, 4 / 365, 0.10
    f = s * math.exp(r * t)
    df = math.exp(-r * t)
    price = np.array(
        [
            100.0,  # fine
            df * (f - 24000.0) - 1.0,  # ITM call below discounted intrinsic
            s * 1.0,  # call at its upper bound S (q = 0)
            0.0,  # zero price, OTM call (strike 24500)
            100.0,  # expired
            -5.0,  # negative price
            np.nan,  # missing price
            100.0,  # bad strike
        ]
    )
    strike = np.array([k, 24000.0, k, 24500.0, k, k, k, 0.0])
    tt = np.array([t, t, t, t, 0.0, t, t, t])
    with np.errstate(all="raise"):
        iv, status = implied_vol(price, s, strike, tt, r, True, return_status=True)
    assert list(status) == [
        IVStatus.OK,
        IVStatus.BELOW_INTRINSIC,
        IVStatus.ABOVE_MAX,
        IVStatus.AT_INTRINSIC,
        IVStatus.EXPIRED,
        IVStatus.BAD_INPUT,
        IVStatus.BAD_INPUT,
        IVStatus.BAD_INPUT,
    ]
    assert np.isfinite(iv[0]) and np.isnan(iv[1:]).all()
    assert np.array_equal(iv_status(price, s, strike, tt, r, True), status)
    # puts: above K·e^(−rt) is impossible
    assert iv_status(k * df * 1.0001, s, k, t, r, False) == IVStatus.ABOVE_MAX
    assert black76_iv_status(f * df, f, k, t, r, True) == IVStatus.ABOVE_MAX
    assert IVStatus(int(status[1])).name == "BELOW_INTRINSIC"


def test_nse_published_ivs_reproduced(data_dir: Path) -> None:
    """NSE's own IVs of the 10-Jul-2026 NIFTY snapshot (expiry 14-Jul-2026): NSE's convention is
    spot, r = 10 %, q = 0, calendar time to 15:30 on expiry / 365, last price."""
    with open(data_dir / "nse_iv_cases_NIFTY_2026-07-10_exp2026-07-14.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 145
    spot = np.array([float(r["spot_underlyingValue"]) for r in rows])
    strike = np.array([float(r["strike"]) for r in rows])
    call = np.array([r["option_type"] == "CE" for r in rows])
    price = np.array([float(r["lastPrice"]) for r in rows])
    nse_iv = np.array([float(r["nse_implied_vol_pct"]) for r in rows]) / 100
    t = 4 / 365  # Fri 10-Jul 15:30 → Tue 14-Jul 15:30
    assert float(rows[0]["T_years"]) == pytest.approx(t, rel=1e-9)
    iv, status = implied_vol(price, spot, strike, t, 0.10, call, return_status=True)
    solved = status == IVStatus.OK
    # two deep-ITM calls trade below the discounted intrinsic value: no BS vol exists
    no_solution = {
        (int(k), "CE" if c else "PE") for k, c in zip(strike[~solved], call[~solved], strict=True)
    }
    assert no_solution == {(21900, "CE"), (22650, "CE")}
    assert (status[~solved] == IVStatus.BELOW_INTRINSIC).all()
    diff = np.abs(iv - nse_iv) * 100  # vol points
    stale = (strike == 25950) & ~call  # deep-ITM put, LTP 1991 far from NSE's 48.17 % value
    assert diff[solved & ~stale].max() <= 0.01
    assert (solved & ~stale).sum() == 142
    # the stale one has a solution (LTP above intrinsic), just not NSE's: 84.18 %
    assert float(iv[stale][0]) == pytest.approx(0.841818, abs=1e-5)
    # and it matches the computed column of the table to its 4 decimals everywhere it has one
    computed = np.array([float(r["computed_bs_iv_pct_r10"] or "nan") for r in rows]) / 100
    has = np.isfinite(computed)
    assert np.abs(iv[has] - computed[has]).max() <= 0.5e-6 + 1e-12


@pytest.mark.parametrize("threads", [2, 0])
def test_threads_give_identical_results(threads: int) -> None:
    g = _domain(20_000, seed=9)
    price = black76_price(g["forward"], g["strike"], g["t"], g["r"], g["sigma"], g["call"])
    a = black76_implied_vol(price, g["forward"], g["strike"], g["t"], g["r"], g["call"])
    b = black76_implied_vol(
        price, g["forward"], g["strike"], g["t"], g["r"], g["call"], threads=threads
    )
    np.testing.assert_array_equal(a, b)


def test_broadcast_and_string_flags() -> None:
    strikes = np.array([23500.0, 24000.0, 24500.0])
    flags = np.array(["PE", "CE", "CE"])
    price = bs_price(24206.9, strikes, 4 / 365, 0.1, [0.2, 0.15, 0.13], flags)
    iv = implied_vol(price, 24206.9, strikes, 4 / 365, 0.1, flags)
    np.testing.assert_allclose(iv, [0.2, 0.15, 0.13], rtol=1e-13)
    grid = implied_vol(price[None, :] * np.ones((2, 1)), 24206.9, strikes, 4 / 365, 0.1, flags)
    assert grid.shape == (2, 3)


def test_normalised_black_regions_against_50_digit_reference() -> None:
    """b(x, s) in each evaluation region (asymptotic, small-t series, Φ difference, erfcx) to
    within a small multiple of the problem's own conditioning."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    rng = np.random.default_rng(2)
    for _ in range(1500):
        x = -(10 ** rng.uniform(-8, 1.5))
        s = 10 ** rng.uniform(-4, 1.3)
        xm, sm = mp.mpf(x), mp.mpf(s)
        exact = mp.e ** (xm / 2) * mp.ncdf(xm / sm + sm / 2) - mp.e ** (-xm / 2) * mp.ncdf(
            xm / sm - sm / 2
        )
        if exact < mp.mpf("1e-290"):
            continue
        h = abs(x / s)
        # rounding of x/s in double costs ~ε·h² relative (exp(−h²/2) prefactor)
        tol = 2.2e-16 * (64 + 2 * h * h)
        assert abs(normalised_otm(x, s) - exact) <= tol * exact, (x, s)
