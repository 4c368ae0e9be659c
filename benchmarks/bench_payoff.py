"""Payoff + position Greeks of a 4-leg structure over a 500-point grid (goal: < 1 ms).

``mandi.options.payoff.payoff`` (P&L at expiry and today, breakevens, max profit/loss, probability
of profit, net Greeks at the spot and along the grid) is measured against the straightforward way
of getting the same curves with mandi's public vectorized API in the same run: ``bs_price`` over
the (legs × points) grid for today's P&L, intrinsic values for the expiry P&L, ``greeks`` over
the grid for the Greek profiles, breakevens by interpolating the grid. Also: the whole-structure
risk numbers (payoff + SPAN-style margin with the hedge benefit), the number a basket's risk
decision costs.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import best_of, report
from mandi.options import bs_price, greeks
from mandi.options.payoff import PayoffLeg, StructureArrays, payoff
from mandi.options.structures import structure_risk

SPOT = 24_010.0
RATE = 0.065
LEGS = [
    PayoffLeg("PE", 75, 22.5, 23_500, 6 / 365, 0.17),
    PayoffLeg("PE", -75, 48.0, 23_700, 6 / 365, 0.155),
    PayoffLeg("CE", -75, 44.0, 24_300, 6 / 365, 0.135),
    PayoffLeg("CE", 75, 17.5, 24_500, 6 / 365, 0.14),
]
POINTS = 500
N = 2000


def baseline(grid: np.ndarray) -> tuple[np.ndarray, ...]:
    """The same curves from the public vectorized API (no breakevens solved exactly)."""
    s = StructureArrays.of(LEGS)
    x = grid[None, :]
    k, t, v, c = (a[:, None] for a in (s.strike, s.years, s.iv, s.is_call))
    today = s.quantity @ (bs_price(x, k, t, RATE, v, c) - s.price[:, None])
    intrinsic = np.where(c, np.maximum(x - k, 0), np.maximum(k - x, 0))
    expiry = s.quantity @ (intrinsic - s.price[:, None])
    g = greeks(x, k, t, RATE, v, c)
    profile = [s.quantity @ a for a in g[:4]]
    sign = np.sign(expiry)
    i = np.flatnonzero(sign[:-1] * sign[1:] < 0)
    be = grid[i] - expiry[i] * (grid[i + 1] - grid[i]) / (expiry[i + 1] - expiry[i])
    return today, expiry, be, *profile


def main() -> None:
    s = StructureArrays.of(LEGS)
    grid = payoff(s, SPOT, r=RATE, points=POINTS).spots
    baseline(grid)
    ours = best_of(lambda: [payoff(s, SPOT, r=RATE, points=POINTS) for _ in range(N)], 5) / N
    base = best_of(lambda: [baseline(grid) for _ in range(N)], 5) / N
    report(
        f"payoff + Greeks, 4 legs x {POINTS} points ({ours * 1e3:.3f} ms each)",
        1,
        ours,
        "structures",
        "bs_price + greeks on the grid",
        base,
        goal="< 1 ms",
    )
    risk_n = 200
    risk = best_of(lambda: [structure_risk(LEGS, SPOT, r=RATE) for _ in range(risk_n)], 3)
    report(
        f"structure risk (payoff + margin + hedge benefit) ({risk / risk_n * 1e3:.3f} ms each)",
        risk_n,
        risk,
        "structures",
        "payoff alone",
        ours * risk_n,
    )


if __name__ == "__main__":
    main()
