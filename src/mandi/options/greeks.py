"""Vectorized Greeks of European options (Black-Scholes-Merton and Black-76).

Units (the usual trader's units, as NSE and broker terminals show them):

* ``delta`` — ∂V/∂S (∂V/∂F for Black-76), per unit of the underlying;
* ``gamma`` — ∂²V/∂S², per unit of the underlying;
* ``theta`` — value change per **calendar day** of time passing (−∂V/∂t / 365), usually negative;
* ``vega``  — value change per **1 percentage point** of volatility (∂V/∂σ / 100);
* ``rho``   — value change per **1 percentage point** of the rate r (∂V/∂r / 100); for
  Black-76 at a fixed forward (so rho = −t·V/100).

Elements with invalid input, ``t ≤ 0`` or ``sigma ≤ 0`` are NaN in every field.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mandi.options import _kernels
from mandi.options._arrays import kernel_args, size_of, thread_scope, use_parallel

__all__ = ["Greeks", "black76_greeks", "greeks"]


class Greeks(NamedTuple):
    """Greeks of each option, arrays of the broadcast input shape (see module docstring)."""

    delta: NDArray[np.float64]
    gamma: NDArray[np.float64]
    theta: NDArray[np.float64]
    vega: NDArray[np.float64]
    rho: NDArray[np.float64]


def _compute(
    underlying: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    is_forward: bool,
    threads: int,
) -> Greeks:
    shape, (u, k, t_, r_, q_, v), call = kernel_args((underlying, strike, t, r, q, sigma), is_call)
    n = size_of(shape)
    out = np.empty((5, n), dtype=np.float64)
    if u.size == 1 and r_.size == 1 and q_.size == 1 and n > 1:
        # One underlying: the vectorizable kernel (needs the per-option arrays full length).
        k, t_, v, call = (_full(a, n) for a in (k, t_, v, call))
        spot, rate = float(u[0]), float(r_[0])
        dividend = rate if is_forward else float(q_[0])
        if use_parallel(threads, n):
            with thread_scope(threads):
                _kernels.greeks_fast_kernel_par(
                    spot, k, t_, rate, dividend, v, call, is_forward, out
                )
        else:
            _kernels.greeks_fast_kernel(spot, k, t_, rate, dividend, v, call, is_forward, out)
    elif use_parallel(threads, n):
        with thread_scope(threads):
            _kernels.greeks_kernel_par(u, k, t_, r_, q_, v, call, is_forward, out)
    else:
        _kernels.greeks_kernel(u, k, t_, r_, q_, v, call, is_forward, out)
    return Greeks(*(out[i].reshape(shape) for i in range(5)))


def _full(a: np.ndarray, n: int) -> np.ndarray:
    return a if a.size == n else np.full(n, a[0], dtype=a.dtype)


def greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
    *,
    threads: int = 1,
) -> Greeks:
    """Black-Scholes-Merton Greeks.

    Parameters
    ----------
    spot, strike, t, r, sigma, is_call, q : array_like
        As in :func:`mandi.options.bs_price`.
    threads : int, keyword-only
        1 (default) on the calling thread; ``n > 1`` up to ``n`` cores, ``0`` all cores.

    Returns
    -------
    Greeks
        ``.delta .gamma .theta .vega .rho`` with theta per calendar day and vega, rho per 1
        percentage point (see module docstring).
    """
    return _compute(spot, strike, t, r, q, sigma, is_call, False, threads)


def black76_greeks(
    forward: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    *,
    threads: int = 1,
) -> Greeks:
    """Black-76 Greeks with respect to the forward/future price ``forward`` (delta, gamma),
    time at a fixed forward (theta per day), σ (vega per 1 %) and r at a fixed forward
    (rho per 1 %)."""
    return _compute(forward, strike, t, r, 0.0, sigma, is_call, True, threads)
