"""Numba kernels of :class:`mandi.pipeline.chains.ChainColumns`: tick batches into the latest
quote of every contract, and chains out as arrays. Arrays in, arrays out; nothing allocated."""

# numba kernels: mypy cannot see through @njit
# mypy: disable-error-code="no-untyped-def,no-any-return"

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from mandi.model.batches import (
    T_ASK,
    T_ASK_QTY,
    T_BID,
    T_BID_QTY,
    T_OI,
    T_PRICE,
    T_TS,
    T_VOLUME,
)

_OPTIONS: dict[str, Any] = {"cache": True, "error_model": "numpy", "_nrt": False}
_bare: Any = njit(**_OPTIONS)

# columns of the per-token state ``q``
Q_PRICE, Q_BID, Q_ASK, Q_VOLUME, Q_OI, Q_BID_QTY, Q_ASK_QTY = range(7)
Q_QUOTED = 7  # an option's quote of today is held
Q_REF = 8  # the OI its change is measured against
Q_HAS_REF = 9
Q_HAS_PRICE = 10  # a non-option's latest price is held
NQ = 11

# the quote fields in tick rows, and where they go
_TICK_ROWS = (T_PRICE, T_BID, T_ASK, T_VOLUME, T_OI, T_BID_QTY, T_ASK_QTY)


@_bare
def apply_ticks(slots, data, lo, hi, chain_of, q, live, day_lo, day_hi):
    """Ticks ``lo`` to ``hi`` in order: an option's tick becomes its contract's quote (its first
    OI of the day the reference of its change), any other tick the token's latest price. Stops
    at the first tick outside ``[day_lo, day_hi)`` and returns its index (``hi`` when done)."""
    for i in range(lo, hi):
        ts = data[T_TS, i]
        if ts < day_lo or ts >= day_hi:
            return i
        k = slots[i]
        c = chain_of[k]
        if c < 0:
            q[k, Q_PRICE] = data[T_PRICE, i]
            q[k, Q_HAS_PRICE] = 1
            continue
        live[c] = 1
        if q[k, Q_HAS_REF] == 0:
            q[k, Q_REF] = data[T_OI, i]
            q[k, Q_HAS_REF] = 1
        q[k, Q_PRICE] = data[T_PRICE, i]
        q[k, Q_BID] = data[T_BID, i]
        q[k, Q_ASK] = data[T_ASK, i]
        q[k, Q_VOLUME] = data[T_VOLUME, i]
        q[k, Q_OI] = data[T_OI, i]
        q[k, Q_BID_QTY] = data[T_BID_QTY, i]
        q[k, Q_ASK_QTY] = data[T_ASK_QTY, i]
        q[k, Q_QUOTED] = 1
    return hi


@_bare
def chain_rows(strikes, slots, q, raw, quotes):
    """One chain as the matrix's raw rows — ``raw[r]`` = strike, then ltp, bid, ask, volume,
    OI, change in OI of the call and of the put (paise, shares; NaN for a side without a
    quote) — and a copy of its quotes (``quotes[r, side]`` = the ``q`` row, zeros without one)."""
    nan = np.nan
    for r in range(len(strikes)):
        raw[r, 0] = strikes[r]
        for side in range(2):
            base = 1 + 6 * side
            k = slots[r, side]
            if k >= 0 and q[k, Q_QUOTED] != 0:
                for f in range(5):
                    raw[r, base + f] = q[k, f]
                raw[r, base + 5] = q[k, Q_OI] - q[k, Q_REF]
                for f in range(NQ):
                    quotes[r, side, f] = q[k, f]
            else:
                for f in range(6):
                    raw[r, base + f] = nan
                for f in range(NQ):
                    quotes[r, side, f] = 0
