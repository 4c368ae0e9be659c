"""Implied volatility for Black-Scholes-Merton and Black-76, vectorized, to machine precision.

The solver is Jäckel's "Let's Be Rational" (2015/2017), implemented in :mod:`._black` from the
paper's mathematics: the price is normalised and reduced to an out-of-the-money call, a rational
initial guess is taken on one of four branches, and two Householder steps of order three follow
(see that module's docstring). No tolerance or iteration limit needs tuning: the result is
accurate to a few ulp of σ wherever the price determines σ (i.e. wherever vega is not vanishing),
from minutes to years to expiry and from deep in to deep out of the money.

Where no volatility reproduces a price the result is NaN, and :func:`iv_status` (or
``return_status=True``) says why, per element, with an :class:`IVStatus` code.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mandi.options import _kernels
from mandi.options._arrays import kernel_args, size_of, thread_scope, use_parallel

__all__ = [
    "IVStatus",
    "black76_implied_vol",
    "black76_iv_status",
    "implied_vol",
    "iv_status",
]


class IVStatus(IntEnum):
    """Why an implied volatility is (or is not) available, one code per option.

    Attributes
    ----------
    OK
        σ found.
    BELOW_INTRINSIC
        Price below the discounted intrinsic value of the forward,
        ``exp(−rt)·max(±(F − K), 0)``: no volatility reproduces it (a stale or crossed quote).
    ABOVE_MAX
        Price at or above the no-arbitrage upper bound (``S·exp(−qt)`` for a call,
        ``K·exp(−rt)`` for a put): only σ = ∞ would.
    AT_INTRINSIC
        Price equal to the intrinsic value (zero time value, e.g. a zero price of an
        out-of-the-money option), or a time value so small that it is lost in rounding
        (below 2.2e-308·√(F·K)): σ = 0 in the limit, undetermined in practice.
    EXPIRED
        ``t ≤ 0``: the option has expired.
    BAD_INPUT
        A NaN/infinite input, non-positive spot/forward or strike, or a negative price.
    """

    OK = _kernels.OK
    BELOW_INTRINSIC = _kernels.BELOW_INTRINSIC
    ABOVE_MAX = _kernels.ABOVE_MAX
    AT_INTRINSIC = _kernels.AT_INTRINSIC
    EXPIRED = _kernels.EXPIRED
    BAD_INPUT = _kernels.BAD_INPUT


def _solve(
    price: ArrayLike,
    underlying: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    is_call: ArrayLike,
    is_forward: bool,
    threads: int,
) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    shape, (p, u, k, t_, r_, q_), call = kernel_args((price, underlying, strike, t, r, q), is_call)
    n = size_of(shape)
    out = np.empty(n, dtype=np.float64)
    status = np.empty(n, dtype=np.int8)
    if use_parallel(threads, n):
        with thread_scope(threads):
            _kernels.iv_kernel_par(p, u, k, t_, r_, q_, call, is_forward, out, status)
    else:
        _kernels.iv_kernel(p, u, k, t_, r_, q_, call, is_forward, out, status)
    return out.reshape(shape), status.reshape(shape)


@overload
def implied_vol(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = ...,
    *,
    return_status: Literal[False] = ...,
    threads: int = ...,
) -> NDArray[np.float64]: ...


@overload
def implied_vol(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = ...,
    *,
    return_status: Literal[True],
    threads: int = ...,
) -> tuple[NDArray[np.float64], NDArray[np.int8]]: ...


def implied_vol(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
    *,
    return_status: bool = False,
    threads: int = 1,
) -> NDArray[np.float64] | tuple[NDArray[np.float64], NDArray[np.int8]]:
    """Black-Scholes-Merton implied volatility of European option prices.

    Parameters
    ----------
    price : array_like
        Option premium (discounted, as quoted), same units as ``spot``.
    spot, strike, t, r, is_call, q : array_like
        As in :func:`mandi.options.bs_price` (``t`` years ACT/365 to 15:30 IST expiry; ``r`` and
        ``q`` continuous decimals). The forward is ``spot·exp((r − q)t)``.
    return_status : bool, keyword-only
        Also return the per-element :class:`IVStatus` codes (``int8`` array).
    threads : int, keyword-only
        1 (default) runs on the calling thread; ``n > 1`` uses up to ``n`` cores and ``0`` all
        of them (numba's parallel loop; worthwhile from a few thousand options).

    Returns
    -------
    ndarray of float64
        σ as a decimal (0.15 = 15 %); NaN where no volatility reproduces the price (see
        :class:`IVStatus`). With ``return_status=True`` a tuple ``(sigma, status)``.

    Examples
    --------
    >>> from mandi.options import bs_price, implied_vol
    >>> p = bs_price(24200.0, 24300.0, 4 / 365, 0.10, 0.12, True)
    >>> float(implied_vol(p, 24200.0, 24300.0, 4 / 365, 0.10, True))  # doctest: +ELLIPSIS
    0.12...
    """
    sigma, status = _solve(price, spot, strike, t, r, q, is_call, False, threads)
    return (sigma, status) if return_status else sigma


def iv_status(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
) -> NDArray[np.int8]:
    """Per-element :class:`IVStatus` codes of :func:`implied_vol` for the same arguments."""
    return _solve(price, spot, strike, t, r, q, is_call, False, 1)[1]


def black76_implied_vol(
    price: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    is_call: ArrayLike,
    *,
    return_status: bool = False,
    threads: int = 1,
) -> NDArray[np.float64] | tuple[NDArray[np.float64], NDArray[np.int8]]:
    """Black-76 implied volatility of options on a forward/future ``forward``.

    The premium is discounted at ``r`` over ``t``; otherwise as :func:`implied_vol` (the upper
    bound for a call is ``forward·exp(−rt)``).
    """
    sigma, status = _solve(price, forward, strike, t, r, 0.0, is_call, True, threads)
    return (sigma, status) if return_status else sigma


def black76_iv_status(
    price: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    is_call: ArrayLike,
) -> NDArray[np.int8]:
    """Per-element :class:`IVStatus` codes of :func:`black76_implied_vol`."""
    return _solve(price, forward, strike, t, r, 0.0, is_call, True, 1)[1]
