"""Vectorized European option prices: Black-Scholes-Merton on spot and Black-76 on futures.

Conventions used throughout :mod:`mandi.options`:

* ``t`` is the time to expiry in years, ACT/365, measured to the exact expiry moment (15:30 IST
  on the expiry date; see :func:`year_fraction`);
* ``r`` (risk-free) and ``q`` (dividend yield) are continuously compounded decimals
  (10 % = ``0.10``); ``sigma`` is a decimal annual volatility (15 % = ``0.15``);
* prices are in the currency units of ``spot``/``strike`` (rupees when you pass rupees);
* ``is_call`` is a boolean (or ``"CE"``/``"PE"``, ``"c"``/``"p"`` strings);
* all array arguments broadcast against each other (NumPy rules) and the result has the
  broadcast shape (a 0-d array for scalar inputs).

Invalid input (non-positive spot/strike/forward, negative ``sigma`` or ``t``, NaN) gives NaN for
that element, never an exception.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mandi.core.calendar import EXPIRY_TIME, NS_PER_DAY, ist_ns
from mandi.options import _kernels
from mandi.options._arrays import kernel_args, size_of

__all__ = ["DAYS_PER_YEAR", "NS_PER_YEAR", "black76_price", "bs_price", "year_fraction"]

DAYS_PER_YEAR = 365
NS_PER_YEAR = DAYS_PER_YEAR * NS_PER_DAY


def bs_price(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
) -> NDArray[np.float64]:
    """Black-Scholes-Merton price of a European option with continuous dividend yield ``q``.

    Parameters
    ----------
    spot, strike : array_like
        Underlying spot price and strike (same currency units), both > 0.
    t : array_like
        Years to expiry (ACT/365). At ``t == 0`` the price is the intrinsic value.
    r, q : array_like
        Continuously compounded risk-free rate and dividend yield, decimals.
    sigma : array_like
        Annual volatility, decimal. At ``sigma == 0`` the price is the discounted intrinsic
        value of the forward ``spot·exp((r − q)t)``.
    is_call : array_like of bool or {"CE", "PE", "c", "p"}
        True for calls, False for puts.

    Returns
    -------
    ndarray of float64
        Discounted option prices; NaN where an input is invalid (see module docstring).

    Notes
    -----
    Evaluated as ``exp(−rt)·(intrinsic + √(FK)·b(−|ln F/K|, σ√t))`` with Jäckel's normalised
    Black function ``b``, so deep out-of-the-money prices keep full relative precision.
    """
    shape, (s, k, t_, r_, v, q_), call = kernel_args((spot, strike, t, r, sigma, q), is_call)
    out = np.empty(size_of(shape), dtype=np.float64)
    _kernels.bsm_price_kernel(s, k, t_, r_, q_, v, call, out)
    return out.reshape(shape)


def black76_price(
    forward: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
) -> NDArray[np.float64]:
    """Black-76 price of a European option on a forward or future.

    ``forward`` is the futures price for the option's expiry; the premium is discounted at
    ``r`` over ``t``. Other parameters and the result as in :func:`bs_price`.
    """
    shape, (f, k, t_, r_, v), call = kernel_args((forward, strike, t, r, sigma), is_call)
    out = np.empty(size_of(shape), dtype=np.float64)
    _kernels.black76_price_kernel(f, k, t_, r_, v, call, out)
    return out.reshape(shape)


def year_fraction(ts_ns: ArrayLike, expiry: dt.date) -> NDArray[np.float64]:
    """Years (ACT/365) from ``ts_ns`` (int ns UTC, scalar or array) to 15:30 IST on ``expiry``.

    The result is negative after expiry; :func:`mandi.options.implied_vol` reports such
    contracts as ``EXPIRED``. One year is 365 × 86 400 s exactly (calendar time, as NSE uses for
    its published IVs).
    """
    expiry_ns = ist_ns(expiry, EXPIRY_TIME)
    ts = np.asarray(ts_ns, dtype=np.int64)
    # Integer difference first: float64 cannot hold epoch nanoseconds exactly.
    return np.asarray((expiry_ns - ts) / NS_PER_YEAR, dtype=np.float64)
