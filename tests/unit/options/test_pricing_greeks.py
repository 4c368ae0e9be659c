"""Prices and Greeks: reference values, QuantLib on random grids, broadcasting, bad input."""

from __future__ import annotations

import csv
import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest

from mandi.core.calendar import ist_ns
from mandi.options import (
    Greeks,
    black76_greeks,
    black76_price,
    bs_price,
    greeks,
    year_fraction,
)

ql = pytest.importorskip("QuantLib")


def _reference_rows(data_dir: Path) -> list[dict[str, str]]:
    with open(data_dir / "black_scholes_reference_values.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["spot"] and r["quantity"] and r["expected"]]


def test_reference_values_haug_hull_quantlib(data_dir: Path) -> None:
    """65 published values (Haug via QuantLib's test suite, Hull, fightfinance)."""
    rows = _reference_rows(data_dir)
    assert len(rows) >= 60
    checked = 0
    for row in rows:
        s, k, t, r, q, v = (float(row[c]) for c in ("spot", "strike", "T_years", "r", "q", "sigma"))
        call = row["option_type"] == "call"
        price = float(bs_price(s, k, t, r, v, call, q))
        g = greeks(s, k, t, r, v, call, q)
        # The CSV's units: vega per 1.00 vol, theta per year, rho per 1.00 rate.
        values = {
            "price": price,
            "delta": float(g.delta),
            "gamma": float(g.gamma),
            "vega": float(g.vega) * 100,
            "theta": float(g.theta) * 365,
            "theta_per_day": float(g.theta),
            "rho": float(g.rho) * 100,
            "elasticity": float(g.delta) * s / price,
            # ∂V/∂q: for a put +S·t·e^(−qt)·N(−d1)
            "dividend_rho": -t * s * float(g.delta) * 1.0,
        }
        quantity = row["quantity"]
        assert quantity in values, quantity
        expected = float(row["expected"])
        tolerance = (
            float(row["tolerance"]) if row["tolerance"] else 0.5 * 10 ** -_decimals(row["expected"])
        )
        assert values[quantity] == pytest.approx(expected, abs=tolerance * 1.0001), row["case_id"]
        checked += 1
    assert checked == len(rows)


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _grid(n: int, seed: int) -> dict[str, np.ndarray]:
    """Random options over the whole domain: ln(S/K) in ±1.5, 1 minute to 5 years, vols 1 %-500 %,
    rates -1 %..15 %, dividend yields 0..10 %, calls and puts."""
    rng = np.random.default_rng(seed)
    spot = 10 ** rng.uniform(1, 5, n)
    return {
        "spot": spot,
        "strike": spot * np.exp(rng.uniform(-1.5, 1.5, n)),
        "t": 10 ** rng.uniform(math.log10(1 / (365 * 24 * 60)), math.log10(5), n),
        "r": rng.uniform(-0.01, 0.15, n),
        "q": np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0, 0.1, n)),
        "sigma": 10 ** rng.uniform(-2, math.log10(5), n),
        "call": rng.random(n) < 0.5,
    }


def _quantlib(spot, strike, t, r, q, sigma, call, black76=False):  # type: ignore[no-untyped-def]
    forward = spot if black76 else spot * math.exp((r - q) * t)
    discount = math.exp(-r * t)
    kind = ql.Option.Call if call else ql.Option.Put
    bc = ql.BlackCalculator(
        ql.PlainVanillaPayoff(kind, strike), forward, sigma * math.sqrt(t), discount
    )
    price = bc.value()
    theta = bc.theta(spot, t)
    rho = bc.rho(t)
    if black76:  # fixed forward: q = r, so d/dr = rho + dividend rho
        rho += bc.dividendRho(t)
    return price, bc.delta(spot), bc.gamma(spot), theta / 365, bc.vega(t) / 100, rho / 100


def _close(ours: float, ref: float, scale: float) -> bool:
    # 1e-9 relative; the floor covers QuantLib's own cancellation (it evaluates F·N(d1) − K·N(d2)
    # and theta/rho as differences of terms of size ~scale).
    return abs(ours - ref) <= 1e-9 * abs(ref) + 1e-13 * scale


@pytest.mark.parametrize("black76", [False, True])
def test_prices_and_greeks_match_quantlib_on_random_grid(black76: bool) -> None:
    g = _grid(3000, seed=11 if black76 else 7)
    if black76:
        price = black76_price(g["spot"], g["strike"], g["t"], g["r"], g["sigma"], g["call"])
        ours = black76_greeks(g["spot"], g["strike"], g["t"], g["r"], g["sigma"], g["call"])
    else:
        args = (g["spot"], g["strike"], g["t"], g["r"], g["sigma"], g["call"], g["q"])
        price = bs_price(*args)
        ours = greeks(*args)
    failures = []
    for i in range(len(g["spot"])):
        q = g["r"][i] if black76 else g["q"][i]
        ref = _quantlib(
            g["spot"][i],
            g["strike"][i],
            g["t"][i],
            g["r"][i],
            q,
            g["sigma"][i],
            bool(g["call"][i]),
            black76,
        )
        got = (price[i], ours.delta[i], ours.gamma[i], ours.theta[i], ours.vega[i], ours.rho[i])
        s, k, t = g["spot"][i], g["strike"][i], g["t"][i]
        # QuantLib's theta recovers r and r − q as ln(D)/t and ln(F/S)/t: for minutes to expiry
        # that costs it ~ε·(|V| + S·|Δ|)/t (checked against 50-digit arithmetic: ours is exact).
        # (the 1e13 turns that absolute error into a scale for _close's 1e-13 floor)
        theta_floor = 1e13 * 8 * 2.2e-16 * (abs(ref[0]) + s * abs(ref[1])) / t / 365
        scales = (
            max(s, k),
            1.0,
            1.0 / s,
            max(s, k) * (1 + g["sigma"][i] ** 2 / t) / 365 + theta_floor,
            max(s, k) / 100,
            max(s, k) * t / 100,
        )
        for name, a, b, scale in zip(
            ("price", "delta", "gamma", "theta", "vega", "rho"), got, ref, scales, strict=True
        ):
            if not _close(float(a), b, scale):
                failures.append((name, i, float(a), b))
    assert not failures, failures[:10]


def test_deep_out_of_the_money_prices_keep_relative_precision() -> None:
    """Where F·N(d1) − K·N(d2) cancels to nothing we still get the tiny price right."""
    import mpmath as mp

    mp.mp.dps = 50
    for s, k, t, v in [
        (100.0, 300.0, 0.05, 0.2),
        (24200.0, 26000.0, 1 / 365, 0.12),
        (100.0, 40.0, 0.1, 0.3),
    ]:
        got = float(bs_price(s, k, t, 0.0, v, k > s))
        sd = mp.mpf(v) * mp.sqrt(t)
        d1 = mp.log(mp.mpf(s) / k) / sd + sd / 2
        d2 = d1 - sd
        if k > s:
            exact = s * mp.ncdf(d1) - k * mp.ncdf(d2)
        else:
            exact = k * mp.ncdf(-d2) - s * mp.ncdf(-d1)
        assert got > 0
        # 1e-12: the problem's own conditioning (d ln b / d ln x ≈ (x/σ√t)² ≈ 600 here) applied
        # to the rounding of the inputs; the textbook formula gets 0 or noise for these.
        assert abs(got - float(exact)) <= 1e-12 * float(exact)


def test_broadcasting_shapes_and_scalars() -> None:
    strikes = np.array([[23000.0], [24000.0], [25000.0]])  # (3, 1)
    vols = np.array([0.1, 0.2])  # (2,)
    p = bs_price(24000.0, strikes, 0.1, 0.1, vols, True)
    assert p.shape == (3, 2)
    assert p[1, 1] == pytest.approx(
        float(bs_price(24000.0, 24000.0, 0.1, 0.1, 0.2, True)), rel=1e-15
    )
    g = greeks(24000.0, strikes, 0.1, 0.1, vols, np.array([True, False]))
    assert isinstance(g, Greeks) and g.delta.shape == (3, 2)
    assert g.delta[0, 0] > 0 > g.delta[0, 1]
    scalar = bs_price(100.0, 100.0, 1.0, 0.05, 0.2, "CE")
    assert scalar.shape == () and float(scalar) == pytest.approx(10.450583572185565, rel=1e-14)
    assert float(bs_price(100.0, 100.0, 1.0, 0.05, 0.2, "PE")) == pytest.approx(
        5.573526022256971, rel=1e-14
    )
    # a list of flags and the generic (array spot) kernel agree with the one-underlying kernel
    spots = np.full(3, 24000.0)
    a = greeks(spots, strikes[:, 0], 0.1, 0.1, 0.2, [True, False, True])
    b = greeks(24000.0, strikes[:, 0], 0.1, 0.1, 0.2, [True, False, True])
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-13)


def test_put_call_parity_and_limits() -> None:
    s, k, t, r, q, v = 24206.9, 24300.0, 4 / 365, 0.10, 0.01, 0.13
    c = float(bs_price(s, k, t, r, v, True, q))
    p = float(bs_price(s, k, t, r, v, False, q))
    assert c - p == pytest.approx(s * math.exp(-q * t) - k * math.exp(-r * t), rel=1e-12)
    # sigma = 0: discounted intrinsic of the forward; t = 0: intrinsic
    f = s * math.exp((r - q) * t)
    assert float(bs_price(s, 24000.0, t, r, 0.0, True, q)) == pytest.approx(
        math.exp(-r * t) * (f - 24000.0), rel=1e-15
    )
    assert float(bs_price(s, k, 0.0, r, v, False)) == pytest.approx(k - s, rel=1e-15)
    gc, gp = greeks(s, k, t, r, v, True, q), greeks(s, k, t, r, v, False, q)
    assert float(gc.delta - gp.delta) == pytest.approx(math.exp(-q * t), rel=1e-12)
    assert float(gc.gamma) == pytest.approx(float(gp.gamma), rel=1e-12)
    assert float(gc.vega) == pytest.approx(float(gp.vega), rel=1e-12)


def test_units_theta_per_day_vega_rho_per_point() -> None:
    s, k, t, r, v = 24200.0, 24300.0, 30 / 365, 0.07, 0.14
    g = greeks(s, k, t, r, v, True)
    h = 1e-6
    vega_fd = (bs_price(s, k, t, r, v + h, True) - bs_price(s, k, t, r, v - h, True)) / (2 * h)
    rho_fd = (bs_price(s, k, t, r + h, v, True) - bs_price(s, k, t, r - h, v, True)) / (2 * h)
    day = 1 / 365
    theta_fd = bs_price(s, k, t - day, r, v, True) - bs_price(s, k, t, r, v, True)
    assert float(g.vega) == pytest.approx(float(vega_fd) / 100, rel=1e-6)
    assert float(g.rho) == pytest.approx(float(rho_fd) / 100, rel=1e-6)
    assert float(g.theta) == pytest.approx(
        float(theta_fd), rel=1e-2
    )  # a one-day change, not dt → 0


def test_bad_input_gives_nan_not_exceptions() -> None:
    spot = np.array([100.0, -1.0, 0.0, np.nan, 100.0, 100.0, 100.0, np.inf])
    strike = np.array([100.0, 100.0, 100.0, 100.0, 0.0, 100.0, 100.0, 100.0])
    sigma = np.array([0.2, 0.2, 0.2, 0.2, 0.2, -0.1, 0.2, 0.2])
    t = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -0.5, 1.0])
    with np.errstate(all="raise"):  # nothing inside may trip a NumPy floating-point error
        p = bs_price(spot, strike, t, 0.05, sigma, True)
        g = greeks(spot, strike, t, 0.05, sigma, True)
    assert np.isfinite(p[0]) and np.isnan(p[1:]).all()
    for field in g:
        assert np.isfinite(field[0]) and np.isnan(field[1:]).all()
    # t = 0 or sigma = 0: prices are intrinsic values, Greeks undefined (NaN)
    g0 = greeks(100.0, 90.0, [0.0, 1.0], 0.05, [0.2, 0.0], True)
    assert np.isnan(g0.delta).all()
    with pytest.raises(ValueError, match="option type"):
        bs_price(100.0, 100.0, 1.0, 0.05, 0.2, "XX")
    with pytest.raises(ValueError, match="do not broadcast"):
        greeks([100.0, 101.0, 102.0], [90.0, 95.0], 1.0, 0.05, 0.2, True)
    with pytest.raises(ValueError, match="numeric"):
        bs_price("spot", 100.0, 1.0, 0.05, 0.2, True)


def test_year_fraction_to_1530_ist() -> None:
    expiry = dt.date(2026, 7, 14)
    snapshot = ist_ns(dt.date(2026, 7, 10), dt.time(15, 30))
    assert float(year_fraction(snapshot, expiry)) == pytest.approx(4 / 365, rel=1e-15)
    at_open = ist_ns(expiry, dt.time(9, 15))
    assert float(year_fraction(at_open, expiry)) == pytest.approx(6.25 / 24 / 365, rel=1e-12)
    after = ist_ns(expiry, dt.time(15, 31))
    assert float(year_fraction(after, expiry)) < 0
    many = year_fraction(np.array([snapshot, at_open]), expiry)
    assert many.shape == (2,)


@pytest.mark.parametrize("threads", [2, 0])
def test_threads_give_identical_results(threads: int) -> None:
    g = _grid(20_000, seed=3)
    args = (g["spot"][0], g["strike"], g["t"], 0.07, g["sigma"], g["call"])
    one, many = greeks(*args), greeks(*args, threads=threads)
    for x, y in zip(one, many, strict=True):
        np.testing.assert_array_equal(x, y)
