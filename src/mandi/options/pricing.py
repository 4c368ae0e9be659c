"""Vectorized European option prices: Black-Scholes-Merton on spot and Black-76 on futures.

Conventions: ``t`` in years (ACT/365 to the 15:30 IST expiry), ``r`` and ``q`` continuously
compounded decimals, ``sigma`` a decimal; arrays broadcast against each other.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr


def bs_price(
    spot: ArrayLike, strike: ArrayLike, t: ArrayLike, r: ArrayLike, sigma: ArrayLike,
    is_call: ArrayLike, q: ArrayLike = 0.0,
) -> NDArray[np.float64]:
    """Black-Scholes-Merton price with continuous dividend yield ``q``.

    At ``t == 0`` or ``sigma == 0`` the price is the discounted intrinsic value of the forward.
    """
    s, k, t_, r_, v, q_ = (np.asarray(x, dtype=np.float64) for x in (spot, strike, t, r, sigma, q))
    forward = s * np.exp((r_ - q_) * t_)
    return black76_price(forward, k, t_, r_, v, is_call)


def black76_price(
    forward: ArrayLike, strike: ArrayLike, t: ArrayLike, r: ArrayLike, sigma: ArrayLike,
    is_call: ArrayLike,
) -> NDArray[np.float64]:
    """Black-76 price of an option on a forward/future ``forward``."""
    f, k, t_, r_, v = (np.asarray(x, dtype=np.float64) for x in (forward, strike, t, r, sigma))
    call = np.asarray(is_call, dtype=bool)
    sd = v * np.sqrt(np.maximum(t_, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.log(f / k) / sd + 0.5 * sd
    d2 = d1 - sd
    w = np.where(call, 1.0, -1.0)
    undiscounted = np.where(
        sd > 0, w * (f * ndtr(w * d1) - k * ndtr(w * d2)), np.maximum(w * (f - k), 0.0)
    )
    return np.asarray(np.exp(-r_ * t_) * undiscounted, dtype=np.float64)
