"""numba kernel of :mod:`mandi.options.payoff`: a structure's P&L and net Greeks over a price grid.

One pass over (grid point × leg) evaluates each leg once with the textbook closed forms
(``df·(F·N(d1) − K·N(d2))`` and its derivatives): for a payoff chart the absolute error of the
direct formula (~1e-13 of the price) is immaterial, and it is several times cheaper than the
relative-precision normalised Black function the chain's IV solver needs.
"""

from __future__ import annotations

import math

import numpy as np

from mandi.options._special import jit

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@jit
def _ncdf(z: float) -> float:
    return 0.5 * math.erfc(-z * _INV_SQRT2)


@jit
def leg_value_greeks(
    u: float,
    k: float,
    tau: float,
    r: float,
    q: float,
    sigma: float,
    call: bool,
    black76: bool,
) -> tuple[float, float, float, float, float]:
    """(value, delta, gamma, theta per day, vega per 1 %) of one option at underlying ``u``;
    intrinsic value and delta (and no gamma/theta/vega) once ``tau <= 0``."""
    if tau <= 0.0 or not sigma > 0.0:
        if call:
            return max(u - k, 0.0), 1.0 if u > k else 0.0, 0.0, 0.0, 0.0
        return max(k - u, 0.0), -1.0 if u < k else 0.0, 0.0, 0.0, 0.0
    df = math.exp(-r * tau)
    carry = 1.0 if black76 else math.exp((r - q) * tau)  # dF/du
    f = u * carry
    sq = math.sqrt(tau)
    s = sigma * sq
    d1 = (math.log(f / k) + 0.5 * s * s) / s
    d2 = d1 - s
    pdf = _INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
    if call:
        n1, n2 = _ncdf(d1), _ncdf(d2)
        value = df * (f * n1 - k * n2)
        delta = df * carry * n1
    else:
        n1, n2 = _ncdf(-d1), _ncdf(-d2)
        value = df * (k * n2 - f * n1)
        delta = -df * carry * n1
    gamma = df * carry * pdf / (u * s)
    decay = df * f * pdf * sigma / (2.0 * sq)  # the volatility part of −∂V/∂τ
    if black76:
        theta = r * value - decay
    elif call:
        theta = -decay - r * k * df * n2 + q * df * f * n1
    else:
        theta = -decay + r * k * df * n2 - q * df * f * n1
    vega = df * f * pdf * sq
    return value, delta, gamma, theta / 365.0, vega / 100.0


@jit
def structure_kernel(
    x: np.ndarray,
    is_option: np.ndarray,
    is_call: np.ndarray,
    strike: np.ndarray,
    quantity: np.ndarray,
    price: np.ndarray,
    years: np.ndarray,
    iv: np.ndarray,
    horizon: float,
    r: float,
    q: float,
    black76: bool,
    out: np.ndarray,
) -> None:
    """Fill ``out`` (5 × points): P&L at ``horizon`` years, net delta, gamma, theta, vega.

    Legs outer, points inner: what depends on the leg alone (discounting, σ√τ, ln K) is computed
    once per leg and ln u once per point, leaving two erfc and one exp per (point, leg)."""
    n = x.size
    out[:] = 0.0
    log_x = np.log(x)
    for j in range(strike.size):
        qty = quantity[j]
        tau = years[j] - horizon
        if not is_option[j]:
            for i in range(n):
                out[0, i] += qty * (x[i] - price[j])
                out[1, i] += qty
            continue
        k = strike[j]
        sigma = iv[j]
        call = is_call[j]
        if tau <= 0.0 or not sigma > 0.0:
            for i in range(n):
                value, delta, _, _, _ = leg_value_greeks(x[i], k, tau, r, q, sigma, call, black76)
                out[0, i] += qty * (value - price[j])
                out[1, i] += qty * delta
            continue
        df = math.exp(-r * tau)
        carry = 1.0 if black76 else math.exp((r - q) * tau)
        sq = math.sqrt(tau)
        s = sigma * sq
        shift = math.log(carry / k) + 0.5 * s * s
        for i in range(n):
            u = x[i]
            f = u * carry
            d1 = (log_x[i] + shift) / s
            d2 = d1 - s
            pdf = _INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
            if call:
                n1, n2 = _ncdf(d1), _ncdf(d2)
                value = df * (f * n1 - k * n2)
                delta = df * carry * n1
            else:
                n1, n2 = _ncdf(-d1), _ncdf(-d2)
                value = df * (k * n2 - f * n1)
                delta = -df * carry * n1
            decay = df * f * pdf * sigma / (2.0 * sq)
            if black76:
                theta = r * value - decay
            elif call:
                theta = -decay - r * k * df * n2 + q * df * f * n1
            else:
                theta = -decay + r * k * df * n2 - q * df * f * n1
            out[0, i] += qty * (value - price[j])
            out[1, i] += qty * delta
            out[2, i] += qty * df * carry * pdf / (u * s)
            out[3, i] += qty * theta / 365.0
            out[4, i] += qty * df * f * pdf * sq / 100.0
