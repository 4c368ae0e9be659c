"""Normalised Black function and its inversion ("Let's Be Rational"), as numba scalar kernels.

Notation (P. Jäckel, *Let's Be Rational*, Wilmott 2015, 2017): for a forward ``F``, strike ``K``,
total volatility ``s = σ√T`` and log-moneyness ``x = ln(F/K)``, the undiscounted Black price is
``√(FK) · b(x, s)`` with the normalised Black function

    b(x, s) = θ·[exp(x/2)·Φ(θ(x/s + s/2)) − exp(−x/2)·Φ(θ(x/s − s/2))],   θ = ±1 (call/put).

Put-call parity turns every option into an out-of-the-money call: ``b_θ(x, s) = ι + b(−|x|, s)``
with ``ι`` the normalised intrinsic value, so the core works on ``x ≤ 0`` only.

Evaluation of ``b(x ≤ 0, s)`` to (near) full relative precision, with ``h = x/s``, ``t = s/2``
and ``Ψ(u) = Φ(u)/φ(u)`` (so that ``b = φ-prefactor · [Ψ(h+t) − Ψ(h−t)]``):

* ``h + t < −9.8``: asymptotic series of Ψ for large negative arguments, summed in a
  difference form that has no cancellation;
* ``t < 0.21``: Taylor series in ``t`` (odd powers up to t¹⁵); the coefficients are
  polynomials in ``h²`` and ``a = Ψ'(h) = 1 + hΨ(h)``, derived in ``_SERIES_*`` below from
  ``Ψ' = 1 + uΨ``;
* ``h + t > 0.85``: the plain difference of normal CDFs (no significant cancellation there);
* otherwise: the erfcx form ``½·exp(−(h²+t²)/2)·[erfcx(−(h+t)/√2) − erfcx(−(h−t)/√2)]``,
  whose terms are insensitive to rounding of their arguments.

The inversion follows the structure of Jäckel's algorithm, re-derived and written here from the
paper's mathematics: four branches around the inflection point ``s_c = √(2|x|)``; in the two
central branches a convexity-preserving rational cubic (Delbourgo–Gregory) interpolation of
``s(β)`` matching the second derivative (zero) at the inflection point; in the lowest and highest
branches a rational cubic of the transformed maps ``f_lower`` / ``f_upper`` whose inverses are
closed-form. The guess is then refined by two Householder steps of order three on a
branch-specific objective (``1/ln b − 1/ln β`` below, ``b − β`` in the middle,
``ln((b_max − β)/(b_max − b))`` above), which brings it to machine precision. In the highest
branch ``b_max − b`` is evaluated directly as a sum of positive terms, never by subtraction.
"""

from __future__ import annotations

import math

import numpy as np

from mandi.options._special import (
    DBL_EPSILON,
    DBL_MAX,
    DBL_MIN,
    ONE_OVER_SQRT_TWO,
    ONE_OVER_SQRT_TWO_PI,
    SQRT_PI_OVER_TWO,
    erfcx,
    jit,
    ndtri,
    norm_cdf,
)

# --- region thresholds of the normalised Black evaluation ------------------------------------
ASYMPTOTIC_LIMIT = -9.8  # h + t below this: asymptotic expansion (needs |h+t| ≳ 9.8 for ε)
SMALL_T_LIMIT = 0.21  # t below this: Taylor series; t¹⁷ term < ε relative at the boundary
NORMAL_CDF_LIMIT = 0.85  # h + t above this: plain Φ difference is well conditioned
HUGE_NEGATIVE_X = -1400.0  # exp(x/2) underflows below this: b is 0 in double precision

# Small-t series: E(h, t) = Ψ(h+t) − Ψ(h−t) = 2t · Σ_k [A_k(h²) + B_k(h²)·a] · t^(2k),
# with A_k, B_k the polynomials of Ψ^(2k+1)(h)/(2k+1)! (coefficients in increasing powers of
# h²). Derived exactly with rational arithmetic from Ψ' = 1 + hΨ; see tests/unit/options.
_SERIES_A_NUM = (
    (0,),
    (-1, 0),
    (-7, -1, 0),
    (-57, -18, -1, 0),
    (-561, -285, -33, -1, 0),
    (-6555, -4680, -840, -52, -1, 0),
    (-89055, -82845, -20370, -1926, -75, -1, 0),
    (-1381905, -1595790, -501795, -64260, -3795, -102, -1, 0),
)
_SERIES_B_NUM = (
    (1,),
    (3, 1),
    (15, 10, 1),
    (105, 105, 21, 1),
    (945, 1260, 378, 36, 1),
    (10395, 17325, 6930, 990, 55, 1),
    (135135, 270270, 135135, 25740, 2145, 78, 1),
    (2027025, 4729725, 2837835, 675675, 75075, 4095, 105, 1),
)
_SERIES_TERMS = len(_SERIES_A_NUM)


def _series_table(numerators: tuple[tuple[int, ...], ...]) -> np.ndarray:
    table = np.zeros((_SERIES_TERMS, _SERIES_TERMS), dtype=np.float64)
    for k, row in enumerate(numerators):
        table[k, : len(row)] = np.array(row, dtype=np.float64) / math.factorial(2 * k + 1)
    return table


SERIES_A = _series_table(_SERIES_A_NUM)
SERIES_B = _series_table(_SERIES_B_NUM)

# Transformed-map constants.
_TWO_PI = 2.0 * math.pi
_TWO_PI_OVER_SQRT_27 = 2.0 * math.pi / math.sqrt(27.0)
_SQRT_THREE = math.sqrt(3.0)
_ONE_OVER_SQRT_THREE = 1.0 / math.sqrt(3.0)

# Branch codes of the inversion.
_LOWER, _MIDDLE, _UPPER = 0, 1, 2
ITERATIONS = 2  # Householder(3) steps after the rational guess
_MAX_RATIONAL_CUBIC_R = 2.0 / (DBL_EPSILON * DBL_EPSILON)
_MIN_RATIONAL_CUBIC_R = -(1.0 - math.sqrt(DBL_EPSILON))


# --- normalised Black ------------------------------------------------------------------------
@jit
def _asymptotic(h: float, t: float) -> float:
    """Ψ(h+t) − Ψ(h−t) for h + t ≤ −9.8: Σ_k (−1)^k (2k−1)!! (p^(2k+1) − q^(2k+1)), p = −1/(h+t),
    q = 1/(t−h). The differences D_n = p^n − q^n follow D_(n+2) = p²·D_n + q^n·(p² − q²)
    with only positive terms, so no cancellation even when t ≪ |h|."""
    u = -(h + t)
    v = t - h
    p = 1.0 / u
    q = 1.0 / v
    d1 = 2.0 * t / (u * v)  # p − q without cancellation
    p2 = p * p
    p2_minus_q2 = d1 * (p + q)
    d = d1
    qn = q
    coefficient = 1.0
    total = d1
    for k in range(1, 60):
        d = p2 * d + qn * p2_minus_q2
        qn *= q * q
        coefficient *= -(2.0 * k - 1.0)
        term = coefficient * d
        total += term
        if abs(term) <= 1e-17 * abs(total):
            break
    return total


@jit
def _small_t(h: float, t: float) -> float:
    """Ψ(h+t) − Ψ(h−t) for t < 0.21 by its Taylor series in t."""
    a = 1.0 + h * SQRT_PI_OVER_TWO * erfcx(-ONE_OVER_SQRT_TWO * h)
    h2 = h * h
    w = t * t
    total = 0.0
    for k in range(_SERIES_TERMS - 1, -1, -1):
        ca = 0.0
        cb = 0.0
        for j in range(k, -1, -1):
            ca = ca * h2 + SERIES_A[k, j]
            cb = cb * h2 + SERIES_B[k, j]
        total = total * w + (ca + cb * a)
    return 2.0 * t * total


@jit
def normalised_otm_and_vega(x: float, s: float) -> tuple[float, float]:
    """b(x, s) of an out-of-the-money call (``x ≤ 0``, ``s ≥ 0``) and its vega ∂b/∂s, which
    share the factor φ(h)·exp(−t²/2) = exp(−(h² + t²)/2)/√(2π)."""
    if s <= 0.0 or x < HUGE_NEGATIVE_X:
        return 0.0, (ONE_OVER_SQRT_TWO_PI if x == 0.0 and s <= 0.0 else 0.0)
    h = x / s
    t = 0.5 * s
    vega = ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * (h * h + t * t))
    if h + t < ASYMPTOTIC_LIMIT:
        return vega * _asymptotic(h, t), vega
    if t < SMALL_T_LIMIT:
        return vega * _small_t(h, t), vega
    if h + t > NORMAL_CDF_LIMIT:
        b = math.exp(0.5 * x) * norm_cdf(h + t) - math.exp(-0.5 * x) * norm_cdf(h - t)
        return b, vega
    # ½·exp(−(h²+t²)/2) = vega·√(π/2)
    bracket = erfcx(-ONE_OVER_SQRT_TWO * (h + t)) - erfcx(-ONE_OVER_SQRT_TWO * (h - t))
    return vega * SQRT_PI_OVER_TWO * bracket, vega


@jit
def normalised_otm(x: float, s: float) -> float:
    """b(x, s) of an out-of-the-money call, ``x ≤ 0``, ``s ≥ 0``."""
    return normalised_otm_and_vega(x, s)[0]


@jit
def complementary_otm_and_vega(x: float, s: float) -> tuple[float, float]:
    """b_max − b(x, s) = exp(x/2)·Φ(−h−t) + exp(−x/2)·Φ(h−t) for ``x ≤ 0`` (a sum of
    positive terms, accurate where b is close to its upper bound b_max = exp(x/2)), and ∂b/∂s."""
    if s <= 0.0:
        return math.exp(0.5 * x), (ONE_OVER_SQRT_TWO_PI if x == 0.0 else 0.0)
    h = x / s
    t = 0.5 * s
    vega = ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * (h * h + t * t))
    prefactor = vega * SQRT_PI_OVER_TWO  # ½·exp(−(h²+t²)/2)
    # exp(−x/2)·Φ(h−t) = ½·exp(−(h²+t²)/2)·erfcx((t−h)/√2); t − h ≥ 0 so no overflow.
    second = prefactor * erfcx(ONE_OVER_SQRT_TWO * (t - h))
    if h + t >= 0.0:
        first = prefactor * erfcx(ONE_OVER_SQRT_TWO * (h + t))
    else:
        first = math.exp(0.5 * x) * norm_cdf(-(h + t))
    return first + second, vega


@jit
def complementary_otm(x: float, s: float) -> float:
    """b_max − b(x, s) for ``x ≤ 0`` (see :func:`complementary_otm_and_vega`)."""
    return complementary_otm_and_vega(x, s)[0]


@jit
def normalised_vega(x: float, s: float) -> float:
    """∂b/∂s = φ(x/s)·exp(−s²/8) (the same for calls and puts)."""
    if x == 0.0:
        h = 0.0
    elif s <= 0.0:
        return 0.0
    else:
        h = x / s
    t = 0.5 * s
    return ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * (h * h + t * t))


# --- rational cubic interpolation (Delbourgo & Gregory 1985) --------------------------------
@jit
def _rational_cubic(
    u: float, omu: float, h: float, y_l: float, y_r: float, d_l: float, d_r: float, r: float
) -> float:
    """Interpolant at fraction ``u`` (and ``omu = 1 − u``, passed separately for accuracy near
    the right end) of an interval of width ``h``: values y, slopes d, control parameter r."""
    if r >= _MAX_RATIONAL_CUBIC_R:  # the limit r → ∞ is linear interpolation
        return y_r * u + y_l * omu
    u2 = u * u
    omu2 = omu * omu
    numerator = (
        y_r * u2 * u
        + (r * y_r - h * d_r) * u2 * omu
        + (r * y_l + h * d_l) * u * omu2
        + y_l * omu2 * omu
    )
    return numerator / (1.0 + (r - 3.0) * u * omu)


@jit
def _r_fit_left(h: float, y_l: float, y_r: float, d_l: float, d_r: float, dd_l: float) -> float:
    """Control parameter making the interpolant's second derivative at the left end ``dd_l``."""
    numerator = 0.5 * h * dd_l + (d_r - d_l)
    denominator = (y_r - y_l) / h - d_l
    if denominator == 0.0:
        return _MAX_RATIONAL_CUBIC_R if numerator > 0.0 else _MIN_RATIONAL_CUBIC_R
    return numerator / denominator


@jit
def _r_fit_right(h: float, y_l: float, y_r: float, d_l: float, d_r: float, dd_r: float) -> float:
    """Control parameter making the interpolant's second derivative at the right end ``dd_r``."""
    numerator = 0.5 * h * dd_r + (d_r - d_l)
    denominator = d_r - (y_r - y_l) / h
    if denominator == 0.0:
        return _MAX_RATIONAL_CUBIC_R if numerator > 0.0 else _MIN_RATIONAL_CUBIC_R
    return numerator / denominator


@jit
def _r_shape_preserving(d_l: float, d_r: float, slope: float) -> float:
    """Smallest control parameter that keeps the interpolant monotone and convex/concave when
    the data are (Delbourgo & Gregory's sufficient conditions)."""
    monotonic = d_l * slope >= 0.0 and d_r * slope >= 0.0
    convex = d_l <= slope <= d_r
    concave = d_l >= slope >= d_r
    if not (monotonic or convex or concave):
        return _MIN_RATIONAL_CUBIC_R
    r1 = -DBL_MAX
    r2 = -DBL_MAX
    if monotonic:
        r1 = (d_r + d_l) / slope if slope != 0.0 else _MAX_RATIONAL_CUBIC_R
    if convex or concave:
        left = slope - d_l
        right = d_r - slope
        if left != 0.0 and right != 0.0:
            r2 = max(abs(left / right), abs(right / left))
        else:
            r2 = _MAX_RATIONAL_CUBIC_R
    elif monotonic:
        r2 = _MAX_RATIONAL_CUBIC_R
    return max(_MIN_RATIONAL_CUBIC_R, r1, r2)


@jit
def _convex_r(r_fit: float, h: float, y_l: float, y_r: float, d_l: float, d_r: float) -> float:
    return max(r_fit, _r_shape_preserving(d_l, d_r, (y_r - y_l) / h))


# --- transformed maps for the outer branches ------------------------------------------------
@jit
def _f_lower(x: float, s: float) -> tuple[float, float, float]:
    """f(s) = 2π|x|/√27 · Φ(−z)³ with z = |x|/(√3 s), and df/dβ, d²f/dβ² along b(x, s).

    f ≈ b for s → 0 (so df/dβ → 1 at β = 0) and is inverted in closed form."""
    ax = abs(x)
    z = _ONE_OVER_SQRT_THREE * ax / s
    y = z * z
    s2 = s * s
    cdf = norm_cdf(-z)
    mills = SQRT_PI_OVER_TWO * erfcx(ONE_OVER_SQRT_TWO * z)  # Φ(−z)/φ(z), no underflow
    f = _TWO_PI_OVER_SQRT_27 * ax * cdf * cdf * cdf
    fp = _TWO_PI * y * cdf * cdf * math.exp(y + 0.125 * s2)
    fpp = (
        _TWO_PI
        * y
        / s
        * cdf
        * math.exp(2.0 * y + 0.25 * s2)
        * (2.0 * z + (0.25 * s2 - 2.0 - 2.0 * y) * mills)
    )
    return f, fp, fpp


@jit
def _f_lower_inverse(x: float, f: float) -> float:
    if f <= 0.0:
        return 0.0
    ratio = f / (_TWO_PI_OVER_SQRT_27 * abs(x))
    return abs(x / (_SQRT_THREE * ndtri(ratio ** (1.0 / 3.0))))


@jit
def _f_upper(x: float, s: float) -> tuple[float, float, float]:
    """f(s) = Φ(−s/2) and df/dβ, d²f/dβ² along b(x, s); inverted by s = −2·Φ⁻¹(f)."""
    f = norm_cdf(-0.5 * s)
    w = (x / s) ** 2
    fp = -0.5 * math.exp(0.5 * w)
    fpp = SQRT_PI_OVER_TWO * math.exp(w + 0.125 * s * s) * w / s
    return f, fp, fpp


# --- the inversion ---------------------------------------------------------------------------
@jit
def solve_total_vol(x: float, beta: float, cbeta: float) -> float:
    """Total volatility s with b(x, s) = β for an OTM call (``x ≤ 0``).

    ``cbeta = b_max − β`` must be passed accurately (computed from prices, not by subtraction);
    callers guarantee ``0 < β`` and ``0 < cbeta``.
    """
    b_max = math.exp(0.5 * x)
    s_c = math.sqrt(-2.0 * x)
    b_c, v_c = normalised_otm_and_vega(x, s_c)
    if beta < b_c:
        s_l = s_c - b_c / v_c
        b_l, v_l = normalised_otm_and_vega(x, s_l)
        if beta < b_l:
            f_l, fp_l, fpp_l = _f_lower(x, s_l)
            r = _r_fit_right(b_l, 0.0, f_l, 1.0, fp_l, fpp_l)
            r = _convex_r(r, b_l, 0.0, f_l, 1.0, fp_l)
            u = beta / b_l
            f = _rational_cubic(u, 1.0 - u, b_l, 0.0, f_l, 1.0, fp_l, r)
            if not f > 0.0:  # fall back to a quadratic through the same end data
                f = (f_l * u + b_l * (1.0 - u)) * u
            s = _f_lower_inverse(x, f)
            branch = _LOWER
        else:
            h = b_c - b_l
            d_l = 1.0 / v_l
            d_r = 1.0 / v_c
            r = _r_fit_right(h, s_l, s_c, d_l, d_r, 0.0)
            r = _convex_r(r, h, s_l, s_c, d_l, d_r)
            u = (beta - b_l) / h
            s = _rational_cubic(u, (b_c - beta) / h, h, s_l, s_c, d_l, d_r, r)
            branch = _MIDDLE
    else:
        s_u = s_c + (b_max - b_c) / v_c if v_c > DBL_MIN else DBL_MAX
        b_u, v_u = normalised_otm_and_vega(x, s_u)
        if beta <= b_u:
            h = b_u - b_c
            d_l = 1.0 / v_c
            d_r = 1.0 / v_u
            r = _r_fit_left(h, s_c, s_u, d_l, d_r, 0.0)
            r = _convex_r(r, h, s_c, s_u, d_l, d_r)
            u = (beta - b_c) / h
            s = _rational_cubic(u, (b_u - beta) / h, h, s_c, s_u, d_l, d_r, r)
            branch = _MIDDLE
        else:
            f_u, fp_u, fpp_u = _f_upper(x, s_u)
            h = complementary_otm(x, s_u)  # b_max − b_u without cancellation
            u = (beta - b_u) / h
            omu = cbeta / h
            f = -1.0
            if -math.sqrt(DBL_MAX) < fpp_u < math.sqrt(DBL_MAX):
                r = _r_fit_left(h, f_u, 0.0, fp_u, -0.5, fpp_u)
                r = _convex_r(r, h, f_u, 0.0, fp_u, -0.5)
                f = _rational_cubic(u, omu, h, f_u, 0.0, fp_u, -0.5, r)
            if not f > 0.0:
                f = (f_u * omu + 0.5 * h * u) * omu
            s = -2.0 * ndtri(f)
            branch = _UPPER
    if not s > 0.0:
        s = s_c if s_c > 0.0 else 1e-8
    return _householder(x, beta, cbeta, s, branch)


@jit
def _householder(x: float, beta: float, cbeta: float, s: float, branch: int) -> float:
    """Refine s by Householder steps of order 3 on the branch's objective g(s) = 0.

    With b' = ∂b/∂s, b''/b' = x²/s³ − s/4 and b'''/b' = (b''/b')² − 3x²/s⁴ − 1/4, and
    g = G(b(s)): ν = −g/g', h₂ = g''/g' = (G''/G')·b' + b''/b',
    h₃ = g'''/g' = (G'''/G')·b'² + 3(G''/G')·b'' + b'''/b'; step ν(1 + h₂ν/2)/(1 + ν(h₂ + h₃ν/6)).
    """
    log_beta = math.log(beta) if branch == _LOWER else 0.0
    log_cbeta = math.log(cbeta) if branch == _UPPER else 0.0
    for _ in range(ITERATIONS):
        if branch == _UPPER:
            bc, vega = complementary_otm_and_vega(x, s)
            b = 0.0
        else:
            b, vega = normalised_otm_and_vega(x, s)
            bc = 0.0
        if not vega > 0.0:
            break
        x2_over_s2 = (x / s) * (x / s)
        b2 = x2_over_s2 / s - 0.25 * s  # b''/b'
        b3 = b2 * b2 - 3.0 * x2_over_s2 / (s * s) - 0.25  # b'''/b'
        if branch == _LOWER:
            if not b > 0.0:
                break
            log_b = math.log(b)
            r1 = vega / b
            nu = (log_beta - log_b) * log_b / (log_beta * r1)
            c = (log_b + 2.0) / log_b
            h2 = -c * r1 + b2
            h3 = (2.0 * log_b * log_b + 6.0 * log_b + 6.0) / (log_b * log_b) * r1 * r1
            h3 += -3.0 * c * r1 * b2 + b3
        elif branch == _UPPER:
            if not bc > 0.0:
                break
            r1 = vega / bc
            nu = (math.log(bc) - log_cbeta) / r1
            h2 = r1 + b2
            h3 = 2.0 * r1 * r1 + 3.0 * r1 * b2 + b3
        else:
            nu = (beta - b) / vega
            h2 = b2
            h3 = b3
        ds = nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + h3 * nu / 6.0))
        if not math.isfinite(ds):
            break
        s += max(ds, -0.5 * s)
        if abs(ds) <= DBL_EPSILON * s:
            break
    return s
