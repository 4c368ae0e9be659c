"""Payoff and position Greeks of any option structure (a basket before it is placed, or the book).

A structure is a list of :class:`PayoffLeg` — an option (``"CE"``/``"PE"``) or a linear leg
(``"FUT"``: a future or the underlying itself, assumed to move one for one with the grid's
underlying price) with a signed quantity in units (+ long, − short), its entry price, its years
to expiry and its implied volatility. From it :func:`payoff` computes, over a grid of underlying
prices:

* the P&L at the first expiry (legs that expire later are valued by the model at their remaining
  time and their current IV — a calendar's payoff) and the P&L "today" (every leg at the model
  price at the current IVs, or ``horizon`` years from now);
* breakevens, maximum profit and maximum loss — exact for single-expiry structures (their expiry
  payoff is piecewise linear with kinks at the strikes, so the extremes sit at a strike, at zero,
  or are unbounded as the price rises: the slope there is the net quantity of calls and linear
  legs), on the grid (refined by secant steps) for mixed expiries;
* the probability of profit at the first expiry under the lognormal law the IV implies
  (``P(S_T < x) = Φ((ln(x/F) + σ²T/2) / σ√T)`` with the forward ``F = S·e^((r−q)T)``),
  exact over the profit intervals between breakevens;
* net delta, gamma, theta, vega (and rho) at the current price: Σ quantity × the leg's Greeks,
  in the trader's units of :mod:`mandi.options.greeks` (delta in units of the underlying, gamma
  per 1 point, theta in currency per calendar day, vega per 1 volatility point).

``model="bs"`` prices on the spot (Black-Scholes-Merton with dividend yield ``q``);
``model="black76"`` treats the grid as the futures price of the options' expiry (Black-76, ``q``
unused). Prices and P&L are in the currency units of the inputs (rupees for display; the
structure layer converts its int paise). Everything here is pure, vectorized computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec
import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

from mandi.options._payoff_kernels import structure_kernel

__all__ = [
    "Payoff",
    "PayoffLeg",
    "PositionGreeks",
    "StructureArrays",
    "evaluate",
    "lognormal_cdf",
    "payoff",
    "pnl",
    "position_greeks",
]

Model = Literal["bs", "black76"]
_F = NDArray[np.float64]


class PayoffLeg(msgspec.Struct, frozen=True):
    """One leg: ``kind`` ``"CE"``, ``"PE"`` or ``"FUT"`` (linear); ``quantity`` signed units;
    ``price`` the entry price; ``years`` to the leg's expiry (ignored for linear legs); ``iv`` a
    decimal volatility (ignored for linear legs)."""

    kind: str
    quantity: int
    price: float
    strike: float = 0.0
    years: float = 0.0
    iv: float = math.nan


class PositionGreeks(msgspec.Struct, frozen=True):
    """Net Greeks of a structure: Σ quantity × Greek (units as :mod:`mandi.options.greeks`)."""

    delta: float
    gamma: float
    theta: float
    vega: float


@dataclass(frozen=True, slots=True)
class StructureArrays:
    """The legs as columns (one element per leg) and what depends on the legs alone, built once
    per structure."""

    is_option: NDArray[np.bool_]
    is_call: NDArray[np.bool_]
    strike: _F
    quantity: _F
    price: _F
    years: _F
    iv: _F
    first_expiry: float  # years to the first option expiry (0 without options)
    single_expiry: bool  # every option expires at the same time
    upside_slope: float  # d(P&L)/dS as S → ∞ at any horizon: net calls + linear legs
    kinks: _F  # 0 and the strikes, sorted: where a single-expiry payoff may bend

    @classmethod
    def of(cls, legs: Sequence[PayoffLeg]) -> StructureArrays:
        if not legs:
            raise ValueError("a structure needs at least one leg")
        kinds = [leg.kind.upper() for leg in legs]
        bad = [k for k in kinds if k not in ("CE", "PE", "FUT")]
        if bad:
            raise ValueError(f"leg kind {bad[0]!r} is not one of CE, PE, FUT")
        options = [leg for leg, k in zip(legs, kinds, strict=True) if k != "FUT"]
        if any(not leg.strike > 0 for leg in options):
            raise ValueError("every option leg needs a positive strike")
        if any(leg.years > 0 and not (math.isfinite(leg.iv) and leg.iv > 0) for leg in options):
            raise ValueError("every unexpired option leg needs a positive implied volatility")
        expiries = {leg.years for leg in options}
        return cls(
            is_option=np.array([k != "FUT" for k in kinds]),
            is_call=np.array([k == "CE" for k in kinds]),
            strike=np.array([leg.strike for leg in legs], dtype=np.float64),
            quantity=np.array([leg.quantity for leg in legs], dtype=np.float64),
            price=np.array([leg.price for leg in legs], dtype=np.float64),
            years=np.array(
                [leg.years if k != "FUT" else math.inf for leg, k in zip(legs, kinds, strict=True)]
            ),
            iv=np.array([leg.iv for leg in legs], dtype=np.float64),
            first_expiry=min(expiries, default=0.0),
            single_expiry=len(expiries) <= 1,
            upside_slope=float(
                sum(leg.quantity for leg, k in zip(legs, kinds, strict=True) if k != "PE")
            ),
            kinks=np.array(sorted({0.0, *(leg.strike for leg in options)})),
        )


def evaluate(
    s: StructureArrays,
    spots: _F,
    horizon: float = 0.0,
    r: float = 0.0,
    q: float = 0.0,
    model: Model = "bs",
) -> _F:
    """Shape (5, points): the P&L ``horizon`` years from now and the net delta, gamma, theta and
    vega at each price of ``spots`` (one numba pass over points × legs)."""
    x = np.ascontiguousarray(spots, dtype=np.float64).reshape(-1)
    out = np.empty((5, x.size), dtype=np.float64)
    structure_kernel(
        x,
        s.is_option,
        s.is_call,
        s.strike,
        s.quantity,
        s.price,
        s.years,
        s.iv,
        float(horizon),
        float(r),
        float(q),
        model == "black76",
        out,
    )
    return out


def pnl(
    legs: Sequence[PayoffLeg] | StructureArrays,
    spots: NDArray[np.float64] | Sequence[float],
    *,
    horizon: float = 0.0,
    r: float = 0.0,
    q: float = 0.0,
    model: Model = "bs",
) -> _F:
    """P&L of the structure at each price of ``spots``, ``horizon`` years from now (0 = today,
    at the current IVs; past a leg's expiry the leg is worth its intrinsic value)."""
    s = legs if isinstance(legs, StructureArrays) else StructureArrays.of(legs)
    out: _F = evaluate(s, np.asarray(spots, dtype=np.float64), horizon, r, q, model)[0]
    return out


def position_greeks(
    legs: Sequence[PayoffLeg] | StructureArrays,
    spot: float,
    *,
    horizon: float = 0.0,
    r: float = 0.0,
    q: float = 0.0,
    model: Model = "bs",
) -> PositionGreeks:
    """Net Greeks at ``spot``: Σ quantity × the leg's Greeks. A linear leg has delta 1 and
    nothing else; an expired option its intrinsic delta (1/0 for calls, −1/0 for puts)."""
    s = legs if isinstance(legs, StructureArrays) else StructureArrays.of(legs)
    e = evaluate(s, np.array([float(spot)]), horizon, r, q, model)[1:, 0]
    return PositionGreeks(*(float(v) for v in e))


def lognormal_cdf(x: _F, forward: float, sigma: float, years: float) -> _F:
    """P(S_T ≤ x) when ln S_T is normal with mean ln F − σ²T/2 and variance σ²T."""
    x = np.asarray(x, dtype=np.float64)
    if not (sigma > 0 and years > 0):
        return np.where(x >= forward, 1.0, 0.0)
    sd = sigma * math.sqrt(years)
    with np.errstate(divide="ignore"):
        z = (np.log(np.maximum(x, 0.0) / forward) + 0.5 * sd * sd) / sd
    return np.asarray(ndtr(z), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Payoff:
    """What :func:`payoff` found. ``max_profit`` is ``inf`` and ``max_loss`` ``-inf`` when
    unbounded; ``max_loss`` is the lowest P&L (negative = a loss). ``net_premium`` is what opening
    the structure receives (positive: a credit, negative: a debit)."""

    spots: _F
    at_expiry: _F
    today: _F
    grid_greeks: _F  # (4, points): net delta, gamma, theta, vega along the grid at the horizon
    breakevens: tuple[float, ...]
    max_profit: float
    max_loss: float
    pop: float
    greeks: PositionGreeks
    expiry_years: float
    net_premium: float
    pop_iv: float
    exact: bool  # extremes and breakevens are exact (single expiry), not from the grid


def default_grid(s: StructureArrays, spot: float, sigma: float, points: int) -> _F:
    """``points`` prices around ``spot``: ±4 standard deviations to the first expiry, wide enough
    to show every strike with a margin, at least ±3 %."""
    t = s.first_expiry
    half = spot * (math.exp(4 * sigma * math.sqrt(t)) - 1) if sigma > 0 and t > 0 else 0.0
    strikes = s.strike[s.is_option]
    if strikes.size:
        half = max(half, 1.2 * float(np.abs(strikes - spot).max()))
    half = max(half, 0.03 * spot)
    return np.linspace(max(spot - half, spot * 1e-3), spot + half, points)


def _pop_sigma(s: StructureArrays, spot: float) -> float:
    """The IV of the option leg nearest the money (ATM IV), the default for the probability."""
    opt = s.is_option & np.isfinite(s.iv) & (s.iv > 0)
    if not opt.any():
        return math.nan
    i = np.argmin(np.where(opt, np.abs(s.strike - spot), np.inf))
    return float(s.iv[i])


def _expiry_kinks(s: StructureArrays) -> tuple[_F, _F]:
    """Points where the single-expiry payoff may bend (0 and the strikes) and its values there."""
    return s.kinks, evaluate(s, s.kinks, s.first_expiry)[0]


def _crossings(x: _F, v: _F, slope: float) -> list[float]:
    """Zero crossings of the piecewise linear function through (x, v), extended right with
    ``slope``: interpolated between points of opposite signs, points at zero where the sign
    changes around them, and one beyond the last point if the tail reaches zero."""
    sign = np.sign(v)
    i = np.flatnonzero(v[:-1] * v[1:] < 0)
    out = (x[i] - v[i] * (x[i + 1] - x[i]) / (v[i + 1] - v[i])).tolist()
    for z in np.flatnonzero(sign == 0):  # a touch of zero counts only where the sign changes
        left = sign[:z][sign[:z] != 0]
        after = sign[z + 1 :][sign[z + 1 :] != 0]
        right = after[0] if after.size else np.sign(slope)
        if left.size and right != 0 and left[-1] != right and x[z] > 0:
            out.append(float(x[z]))
    if v[-1] != 0 and slope != 0 and np.sign(v[-1]) != np.sign(slope):
        out.append(float(x[-1] - v[-1] / slope))
    return sorted(out)


def _profit_probability(
    edges: list[float], value_at: _F, forward: float, sigma: float, years: float
) -> float:
    """Σ over the intervals between ``edges`` (0 … ∞) where ``value_at`` (the P&L at each
    interval's midpoint) is positive, of the lognormal probability of the interval."""
    bounds = np.array([0.0, *edges, np.inf])
    cdf = lognormal_cdf(bounds, forward, sigma, years)
    cdf[-1] = 1.0
    mass = np.diff(cdf)
    return float(mass[value_at > 0].sum())


def _refine(
    s: StructureArrays, guesses: list[float], horizon: float, r: float, q: float, model: Model
) -> list[float]:
    """A few secant steps on each breakeven found on the grid (mixed expiries)."""
    if not guesses:
        return guesses
    x0 = np.array(guesses) * (1 - 1e-4)
    x1 = np.array(guesses)
    f0 = pnl(s, x0, horizon=horizon, r=r, q=q, model=model)
    for _ in range(6):
        f1 = pnl(s, x1, horizon=horizon, r=r, q=q, model=model)
        den = f1 - f0
        step = np.where(den != 0, f1 * (x1 - x0) / np.where(den != 0, den, 1.0), 0.0)
        x0, f0, x1 = x1, f1, x1 - step
    return sorted(float(x) for x in x1)


def payoff(
    legs: Sequence[PayoffLeg] | StructureArrays,
    spot: float,
    *,
    r: float = 0.0,
    q: float = 0.0,
    model: Model = "bs",
    grid: NDArray[np.float64] | Sequence[float] | None = None,
    points: int = 500,
    horizon: float = 0.0,
    pop_iv: float | None = None,
) -> Payoff:
    """The payoff analysis of a structure at the underlying price ``spot``.

    Parameters
    ----------
    legs : sequence of PayoffLeg (or StructureArrays)
        The structure.
    spot : float
        The current underlying price (the futures price with ``model="black76"``).
    r, q : float
        Continuous risk-free rate and dividend yield (decimals).
    grid : array_like, optional
        The prices to evaluate at; default ``points`` prices (see :func:`default_grid`).
    horizon : float
        Years from now at which ``today`` is evaluated (0 = now; a target-date view).
    pop_iv : float, optional
        Volatility of the probability of profit; default the IV of the leg nearest the money.

    Returns
    -------
    Payoff
    """
    s = legs if isinstance(legs, StructureArrays) else StructureArrays.of(legs)
    sigma = _pop_sigma(s, spot) if pop_iv is None else pop_iv
    x = (
        default_grid(s, spot, sigma if math.isfinite(sigma) else 0.0, points)
        if grid is None
        else np.asarray(grid, dtype=np.float64).reshape(-1)
    )
    t = s.first_expiry
    at_expiry = evaluate(s, x, t, r, q, model)[0]
    now = evaluate(s, x, horizon, r, q, model)
    slope = s.upside_slope
    if s.single_expiry:
        kx, kv = _expiry_kinks(s)
        breakevens = _crossings(kx, kv, slope)
        lo, hi = float(kv.min()), float(kv.max())
    else:
        guesses = _crossings(x, at_expiry, 0.0)
        breakevens = _refine(s, guesses, t, r, q, model)
        # the payoff below the grid tends to its value at 0; above it to the slope's sign
        ends = pnl(s, np.array([max(x[0] * 1e-6, 1e-9)]), horizon=t, r=r, q=q, model=model)
        lo = float(min(at_expiry.min(), ends.min()))
        hi = float(max(at_expiry.max(), ends.max()))
    max_profit = math.inf if slope > 0 else hi
    max_loss = -math.inf if slope < 0 else lo
    forward = spot if model == "black76" else spot * math.exp((r - q) * t)
    if math.isfinite(sigma) and t > 0:
        mids = _midpoints(breakevens)
        value_at = pnl(s, mids, horizon=t, r=r, q=q, model=model)
        pop = _profit_probability(breakevens, value_at, forward, sigma, t)
    else:
        pop = float(pnl(s, np.array([spot]), horizon=t, r=r, q=q, model=model)[0] > 0)
    return Payoff(
        spots=x,
        at_expiry=at_expiry,
        today=now[0],
        grid_greeks=now[1:],
        breakevens=tuple(breakevens),
        max_profit=max_profit,
        max_loss=max_loss,
        pop=pop,
        greeks=position_greeks(s, spot, r=r, q=q, model=model),
        expiry_years=t,
        net_premium=float(-(s.quantity @ s.price)),
        pop_iv=sigma,
        exact=s.single_expiry,
    )


def _midpoints(edges: list[float]) -> _F:
    """A point inside each interval of 0 < e1 < … < en < ∞ (beyond the last: twice it)."""
    if not edges:
        return np.array([1.0])  # one interval: the sign anywhere is the sign everywhere
    e = np.array(edges)
    inner = (e[:-1] + e[1:]) / 2
    return np.concatenate(([e[0] / 2], inner, [e[-1] * 2]))
