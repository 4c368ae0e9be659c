"""Element-wise numba kernels for prices, implied volatilities and Greeks.

Every array argument is a 1-D C-contiguous ``float64`` array (``uint8`` for the call flag) of
length ``n`` *or* 1; a length-1 array is broadcast by indexing with stride 0. Keeping one type
signature per kernel means one compilation (cached on disk) whatever the caller passes.
Each kernel has a serial variant and a ``parallel=True`` variant (``*_par``) used when the caller
asks for more than one thread.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from mandi.options._black import complementary_otm, normalised_otm, solve_total_vol
from mandi.options._special import (
    DBL_MIN,
    ONE_OVER_SQRT_TWO_PI,
    jit,
    jit_parallel,
    norm_cdf_given_pdf,
)

# IV status codes (mirrored by mandi.options.iv.IVStatus).
OK = 0
BELOW_INTRINSIC = 1
ABOVE_MAX = 2
AT_INTRINSIC = 3
EXPIRED = 4
BAD_INPUT = 5

_DAYS_PER_YEAR = 365.0

__all__ = [
    "ABOVE_MAX",
    "AT_INTRINSIC",
    "BAD_INPUT",
    "BELOW_INTRINSIC",
    "EXPIRED",
    "OK",
    "complementary_otm",
]


# --- element functions -------------------------------------------------------------------------
@jit
def black_price_one(f: float, k: float, t: float, df: float, sigma: float, call: bool) -> float:
    """Discounted Black price from forward ``f`` and discount factor ``df``.

    Computed as intrinsic + √(FK)·b(−|x|, s): a sum of non-negative terms, so deep out-of-the-
    money prices keep full relative precision (no F·N(d1) − K·N(d2) cancellation)."""
    if not (f > 0.0 and k > 0.0 and df > 0.0 and sigma >= 0.0 and t >= 0.0):
        return math.nan
    if not (math.isfinite(f) and math.isfinite(k) and math.isfinite(df)):
        return math.nan
    intrinsic = max(f - k, 0.0) if call else max(k - f, 0.0)
    s = sigma * math.sqrt(t)
    if s == 0.0:
        return df * intrinsic
    x = math.log(f / k)
    return df * (intrinsic + math.sqrt(f * k) * normalised_otm(-abs(x), s))


@jit
def black_price_pair(f: float, k: float, t: float, df: float, sigma: float) -> tuple[float, float]:
    """(call, put) = :func:`black_price_one` of each, bit for bit, at the cost of one: both
    are the discount of intrinsic + √(FK)·b(−|x|, s), with the same b."""
    if not (f > 0.0 and k > 0.0 and df > 0.0 and sigma >= 0.0 and t >= 0.0):
        return math.nan, math.nan
    if not (math.isfinite(f) and math.isfinite(k) and math.isfinite(df)):
        return math.nan, math.nan
    call_intrinsic = max(f - k, 0.0)
    put_intrinsic = max(k - f, 0.0)
    s = sigma * math.sqrt(t)
    if s == 0.0:
        return df * call_intrinsic, df * put_intrinsic
    x = math.log(f / k)
    time_value = math.sqrt(f * k) * normalised_otm(-abs(x), s)
    return df * (call_intrinsic + time_value), df * (put_intrinsic + time_value)


@jit
def implied_vol_one(
    price: float, f: float, k: float, t: float, df: float, call: bool
) -> tuple[float, int]:
    """(σ, status) reproducing the discounted Black ``price``; σ is NaN unless status is OK."""
    if not (
        math.isfinite(price)
        and math.isfinite(f)
        and math.isfinite(k)
        and math.isfinite(df)
        and not math.isnan(t)
    ):
        return math.nan, BAD_INPUT
    if not (f > 0.0 and k > 0.0 and df > 0.0 and price >= 0.0):
        return math.nan, BAD_INPUT
    if t <= 0.0:
        return math.nan, EXPIRED
    if math.isinf(t):
        return math.nan, BAD_INPUT
    p = price / df  # undiscounted
    if call:
        intrinsic = max(f - k, 0.0)
        upper = f
    else:
        intrinsic = max(k - f, 0.0)
        upper = k
    if p < intrinsic:
        return math.nan, BELOW_INTRINSIC
    if p >= upper:
        return math.nan, ABOVE_MAX
    time_value = p - intrinsic
    sqrt_fk = math.sqrt(f * k)
    beta = time_value / sqrt_fk
    if not beta > DBL_MIN:  # zero (or sub-normal) time value: no volatility is determined
        return math.nan, AT_INTRINSIC
    # b_max − β straight from prices: F − P for calls, K − P for puts (both after parity).
    cbeta = (upper - p) / sqrt_fk
    x = -abs(math.log(f / k))
    s = solve_total_vol(x, beta, cbeta)
    sigma = s / math.sqrt(t)
    if not (sigma > 0.0 and math.isfinite(sigma)):  # pragma: no cover - defensive
        return math.nan, BAD_INPUT
    return sigma, OK


@jit
def _invalid_greeks(u: float, k: float, t: float, r: float, q: float, sigma: float) -> bool:
    return not (
        u > 0.0
        and k > 0.0
        and t > 0.0
        and sigma > 0.0
        and u < math.inf
        and k < math.inf
        and t < math.inf
        and sigma < math.inf
        and abs(r) < math.inf
        and abs(q) < math.inf
    )


@jit
def bsm_greeks_one(
    spot: float, k: float, t: float, r: float, q: float, sigma: float, call: bool
) -> tuple[float, float, float, float, float]:
    """(delta, gamma, theta/day, vega/1 %, rho/1 %) of a Black-Scholes-Merton option.

    Written without data-dependent branches (w = ±1 selects call/put formulas) so that random
    mixes of calls and puts cost no branch mispredictions."""
    if _invalid_greeks(spot, k, t, r, q, sigma):
        nan = math.nan
        return nan, nan, nan, nan, nan
    w = 1.0 if call else -1.0
    sqrt_t = math.sqrt(t)
    s = sigma * sqrt_t
    d1 = (math.log(spot / k) + (r - q) * t) / s + 0.5 * s
    d2 = d1 - s
    dq = 1.0 if q == 0.0 else math.exp(-q * t)  # q = 0 is the common case (indices)
    dr = math.exp(-r * t)
    pdf = math.exp(-0.5 * d1 * d1) * ONE_OVER_SQRT_TWO_PI
    # φ(d2) = φ(d1)·F/K with F/K = (S/K)·exp((r−q)t) = (S/K)·dq/dr: no further exponential.
    pdf2 = pdf * (spot / k) * (dq / dr)
    n1 = norm_cdf_given_pdf(w * d1, pdf)  # Φ(w·d1)
    n2 = norm_cdf_given_pdf(w * d2, pdf2)  # Φ(w·d2)
    spot_dq = spot * dq
    k_dr = k * dr
    delta = w * dq * n1
    theta = -spot_dq * pdf * sigma / (2.0 * sqrt_t) + w * (q * spot_dq * n1 - r * k_dr * n2)
    rho = w * k_dr * t * n2
    gamma = dq * pdf / (spot * s)
    vega = spot_dq * pdf * sqrt_t
    return delta, gamma, theta / _DAYS_PER_YEAR, vega / 100.0, rho / 100.0


@jit
def black76_greeks_one(
    f: float, k: float, t: float, r: float, sigma: float, call: bool
) -> tuple[float, float, float, float, float]:
    """Greeks of a Black-76 option with respect to the forward (delta, gamma), the passage of
    time at a fixed forward (theta/day), σ (vega/1 %) and r at a fixed forward (rho/1 %)."""
    if _invalid_greeks(f, k, t, r, 0.0, sigma):
        nan = math.nan
        return nan, nan, nan, nan, nan
    w = 1.0 if call else -1.0
    sqrt_t = math.sqrt(t)
    s = sigma * sqrt_t
    d1 = math.log(f / k) / s + 0.5 * s
    dr = math.exp(-r * t)
    pdf = math.exp(-0.5 * d1 * d1) * ONE_OVER_SQRT_TWO_PI
    price = black_price_one(f, k, t, dr, sigma, call)
    delta = w * dr * norm_cdf_given_pdf(w * d1, pdf)
    gamma = dr * pdf / (f * s)
    vega = f * dr * pdf * sqrt_t
    theta = -f * dr * pdf * sigma / (2.0 * sqrt_t) + r * price
    rho = -t * price
    return delta, gamma, theta / _DAYS_PER_YEAR, vega / 100.0, rho / 100.0


@jit
def forward_and_discount(spot: float, r: float, q: float, t: float) -> tuple[float, float]:
    """(F, D) = (S·exp((r − q)t), exp(−rt)). With q = 0 (indices) F = S/D: one exponential
    less. Pricing, IV and the chain kernel all use this, so a price round-trips exactly."""
    df = math.exp(-r * t)
    if q == 0.0:
        return spot / df, df
    return spot * math.exp((r - q) * t), df


# --- array drivers -----------------------------------------------------------------------------
# ``a[i * ka]`` with ka ∈ {0, 1} broadcasts length-1 inputs without copying them.
@jit
def bsm_price_kernel(spot, k, t, r, q, sigma, call, out):  # type: ignore[no-untyped-def]
    ks, kk, kt, kr, kq, kv, kc = (
        int(spot.size > 1),
        int(k.size > 1),
        int(t.size > 1),
        int(r.size > 1),
        int(q.size > 1),
        int(sigma.size > 1),
        int(call.size > 1),
    )
    for i in range(out.size):
        tt = t[i * kt]
        f, df = forward_and_discount(spot[i * ks], r[i * kr], q[i * kq], tt)
        out[i] = black_price_one(f, k[i * kk], tt, df, sigma[i * kv], call[i * kc] != 0)


@jit
def black76_price_kernel(f, k, t, r, sigma, call, out):  # type: ignore[no-untyped-def]
    kf, kk, kt, kr, kv, kc = (
        int(f.size > 1),
        int(k.size > 1),
        int(t.size > 1),
        int(r.size > 1),
        int(sigma.size > 1),
        int(call.size > 1),
    )
    for i in range(out.size):
        tt = t[i * kt]
        out[i] = black_price_one(
            f[i * kf], k[i * kk], tt, math.exp(-r[i * kr] * tt), sigma[i * kv], call[i * kc] != 0
        )


@jit
def _iv_element(price, spot, k, t, r, q, call, is_forward, i, kp, ks, kk, kt, kr, kq, kc):  # type: ignore[no-untyped-def]
    tt = t[i * kt]
    rr = r[i * kr]
    ss = spot[i * ks]
    if is_forward:
        f, df = ss, math.exp(-rr * tt)
    else:
        f, df = forward_and_discount(ss, rr, q[i * kq], tt)
    return implied_vol_one(price[i * kp], f, k[i * kk], tt, df, call[i * kc] != 0)


@jit
def iv_kernel(price, spot, k, t, r, q, call, is_forward, out, status):  # type: ignore[no-untyped-def]
    """``spot`` is the forward when ``is_forward`` (Black-76; ``q`` ignored)."""
    kp, ks, kk, kt, kr, kq, kc = (
        int(price.size > 1),
        int(spot.size > 1),
        int(k.size > 1),
        int(t.size > 1),
        int(r.size > 1),
        int(q.size > 1),
        int(call.size > 1),
    )
    for i in range(out.size):
        out[i], status[i] = _iv_element(
            price, spot, k, t, r, q, call, is_forward, i, kp, ks, kk, kt, kr, kq, kc
        )


@jit_parallel
def iv_kernel_par(price, spot, k, t, r, q, call, is_forward, out, status):  # type: ignore[no-untyped-def]
    kp, ks, kk, kt, kr, kq, kc = (
        int(price.size > 1),
        int(spot.size > 1),
        int(k.size > 1),
        int(t.size > 1),
        int(r.size > 1),
        int(q.size > 1),
        int(call.size > 1),
    )
    for i in nb.prange(out.size):
        out[i], status[i] = _iv_element(
            price, spot, k, t, r, q, call, is_forward, i, kp, ks, kk, kt, kr, kq, kc
        )


@jit
def _greeks_element(spot, k, t, r, q, sigma, call, is_forward, i, ks, kk, kt, kr, kq, kv, kc, out):  # type: ignore[no-untyped-def]
    if is_forward:
        g = black76_greeks_one(
            spot[i * ks], k[i * kk], t[i * kt], r[i * kr], sigma[i * kv], call[i * kc] != 0
        )
    else:
        g = bsm_greeks_one(
            spot[i * ks],
            k[i * kk],
            t[i * kt],
            r[i * kr],
            q[i * kq],
            sigma[i * kv],
            call[i * kc] != 0,
        )
    out[0, i], out[1, i], out[2, i], out[3, i], out[4, i] = g


@jit
def greeks_kernel(spot, k, t, r, q, sigma, call, is_forward, out):  # type: ignore[no-untyped-def]
    """``out`` has shape (5, n): delta, gamma, theta, vega, rho."""
    ks, kk, kt, kr, kq, kv, kc = (
        int(spot.size > 1),
        int(k.size > 1),
        int(t.size > 1),
        int(r.size > 1),
        int(q.size > 1),
        int(sigma.size > 1),
        int(call.size > 1),
    )
    for i in range(out.shape[1]):
        _greeks_element(
            spot, k, t, r, q, sigma, call, is_forward, i, ks, kk, kt, kr, kq, kv, kc, out
        )


@jit_parallel
def greeks_kernel_par(spot, k, t, r, q, sigma, call, is_forward, out):  # type: ignore[no-untyped-def]
    ks, kk, kt, kr, kq, kv, kc = (
        int(spot.size > 1),
        int(k.size > 1),
        int(t.size > 1),
        int(r.size > 1),
        int(q.size > 1),
        int(sigma.size > 1),
        int(call.size > 1),
    )
    for i in nb.prange(out.shape[1]):
        _greeks_element(
            spot, k, t, r, q, sigma, call, is_forward, i, ks, kk, kt, kr, kq, kv, kc, out
        )


# The loop body is written out in both variants (no helper call): LLVM then vectorizes all but
# the exp/log calls, which a call boundary prevents.
@jit
def greeks_fast_kernel(spot, k_a, t_a, r, q, sigma_a, call_a, is_forward, out):  # type: ignore[no-untyped-def]
    """Greeks with scalar ``spot``, ``r``, ``q`` and full-length contiguous ``k``, ``t``,
    ``sigma``, ``call`` (one chain, or a book on one underlying): direct indexing and
    loop-invariant scalars let LLVM vectorize everything but the exp/log calls, about twice
    the speed of the general kernel. For Black-76 pass the forward as ``spot`` and ``q = r``."""
    scalars_ok = math.isfinite(spot + r + q) and spot > 0.0
    for i in range(k_a.size):
        k = k_a[i]
        t = t_a[i]
        sigma = sigma_a[i]
        w = 1.0 if call_a[i] != 0 else -1.0
        sqrt_t = math.sqrt(t)
        s = sigma * sqrt_t
        d1 = (math.log(spot / k) + (r - q) * t) / s + 0.5 * s
        d2 = d1 - s
        dq = math.exp(-q * t)
        dr = math.exp(-r * t)
        pdf = math.exp(-0.5 * d1 * d1) * ONE_OVER_SQRT_TWO_PI
        pdf2 = pdf * (spot / k) * (dq / dr)  # φ(d2) = φ(d1)·F/K
        n1 = norm_cdf_given_pdf(w * d1, pdf)
        n2 = norm_cdf_given_pdf(w * d2, pdf2)
        spot_dq = spot * dq
        k_dr = k * dr
        theta = -spot_dq * pdf * sigma / (2.0 * sqrt_t) + w * (q * spot_dq * n1 - r * k_dr * n2)
        # Black-76 is BSM on S = F with q = r, except rho: r moves the discounting only.
        rho = -t * w * (spot_dq * n1 - k_dr * n2) if is_forward else w * k_dr * t * n2
        ok = scalars_ok and k > 0.0 and t > 0.0 and sigma > 0.0 and k + t + sigma < math.inf
        nan = math.nan
        # Selects rather than an early exit keep the loop body branch-free (vectorizable).
        out[0, i] = w * dq * n1 if ok else nan
        out[1, i] = dq * pdf / (spot * s) if ok else nan
        out[2, i] = theta / _DAYS_PER_YEAR if ok else nan
        out[3, i] = spot_dq * pdf * sqrt_t / 100.0 if ok else nan
        out[4, i] = rho / 100.0 if ok else nan


@jit_parallel
def greeks_fast_kernel_par(spot, k_a, t_a, r, q, sigma_a, call_a, is_forward, out):  # type: ignore[no-untyped-def]
    scalars_ok = math.isfinite(spot + r + q) and spot > 0.0
    for i in nb.prange(k_a.size):
        k = k_a[i]
        t = t_a[i]
        sigma = sigma_a[i]
        w = 1.0 if call_a[i] != 0 else -1.0
        sqrt_t = math.sqrt(t)
        s = sigma * sqrt_t
        d1 = (math.log(spot / k) + (r - q) * t) / s + 0.5 * s
        d2 = d1 - s
        dq = math.exp(-q * t)
        dr = math.exp(-r * t)
        pdf = math.exp(-0.5 * d1 * d1) * ONE_OVER_SQRT_TWO_PI
        pdf2 = pdf * (spot / k) * (dq / dr)  # φ(d2) = φ(d1)·F/K
        n1 = norm_cdf_given_pdf(w * d1, pdf)
        n2 = norm_cdf_given_pdf(w * d2, pdf2)
        spot_dq = spot * dq
        k_dr = k * dr
        theta = -spot_dq * pdf * sigma / (2.0 * sqrt_t) + w * (q * spot_dq * n1 - r * k_dr * n2)
        # Black-76 is BSM on S = F with q = r, except rho: r moves the discounting only.
        rho = -t * w * (spot_dq * n1 - k_dr * n2) if is_forward else w * k_dr * t * n2
        ok = scalars_ok and k > 0.0 and t > 0.0 and sigma > 0.0 and k + t + sigma < math.inf
        nan = math.nan
        # Selects rather than an early exit keep the loop body branch-free (vectorizable).
        out[0, i] = w * dq * n1 if ok else nan
        out[1, i] = dq * pdf / (spot * s) if ok else nan
        out[2, i] = theta / _DAYS_PER_YEAR if ok else nan
        out[3, i] = spot_dq * pdf * sqrt_t / 100.0 if ok else nan
        out[4, i] = rho / 100.0 if ok else nan


def empty_status(n: int) -> np.ndarray:
    return np.empty(n, dtype=np.int8)
