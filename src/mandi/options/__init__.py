"""Option analytics: pricing, implied volatility, Greeks and the option-chain matrix.

The public API (DESIGN §7)::

    from mandi.options import bs_price, implied_vol, greeks            # NumPy-vectorized
    from mandi.options import black76_price, black76_implied_vol       # options on futures
    from mandi.options.chain import ChainMatrix, max_pain, pcr

Conventions: ``t`` in years ACT/365 to the 15:30 IST expiry (:func:`year_fraction`), ``r`` and
``q`` continuous decimals, ``sigma`` decimal; theta per calendar day, vega and rho per 1
percentage point. Everything here is pure computation (no I/O, no clock).
"""

from mandi.options.greeks import Greeks, black76_greeks, greeks
from mandi.options.iv import (
    IVStatus,
    black76_implied_vol,
    black76_iv_status,
    implied_vol,
    iv_status,
)
from mandi.options.pricing import black76_price, bs_price, year_fraction

__all__ = [
    "Greeks",
    "IVStatus",
    "black76_greeks",
    "black76_implied_vol",
    "black76_iv_status",
    "black76_price",
    "bs_price",
    "greeks",
    "implied_vol",
    "iv_status",
    "year_fraction",
]
