"""Seed 000's deep-learning tensors: normalized ``(time, channel, strike)`` windows of the option
chain matrix, centred on the at-the-money strike of each time step.

Normalization per channel kind (so that one model sees every underlying, level and day alike):

=========================  =====================================================================
channels                   value in the tensor
=========================  =====================================================================
LTP, bid, ask (CE and PE)  price / underlying price of that time step
volume, OI, change in OI   sign(x) · log(1 + |x|) (contracts)
underlying                 log(price / the window's last price)
IV                         as is (a decimal)
delta                      as is
gamma                      gamma × underlying
theta, vega                per unit of underlying (÷ underlying)
=========================  =====================================================================

Missing values (no contract, no quote, no IV) become 0 and are flagged False in ``mask``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mandi.options.chain import (
    CE_ASK,
    CE_BID,
    CE_GAMMA,
    CE_LTP,
    CE_OI,
    CE_OI_CHANGE,
    CE_THETA,
    CE_VEGA,
    CE_VOLUME,
    CHANNEL_NAMES,
    N_CHANNELS,
    PE_ASK,
    PE_BID,
    PE_GAMMA,
    PE_LTP,
    PE_OI,
    PE_OI_CHANGE,
    PE_THETA,
    PE_VEGA,
    PE_VOLUME,
    UNDERLYING,
    ChainHistory,
)

_PRICE = (CE_LTP, CE_BID, CE_ASK, PE_LTP, PE_BID, PE_ASK)
_COUNT = (CE_VOLUME, CE_OI, CE_OI_CHANGE, PE_VOLUME, PE_OI, PE_OI_CHANGE)
_PER_SPOT = (CE_THETA, CE_VEGA, PE_THETA, PE_VEGA)
_TIMES_SPOT = (CE_GAMMA, PE_GAMMA)


@dataclass(frozen=True, slots=True)
class DLTensor:
    """``values`` (time, channel, strike) float32 with ``mask`` (True = a real value), the
    ``times`` (ns) of the time steps, the strike ``offsets`` from the ATM (in strike steps) and
    the ``channels`` names."""

    values: NDArray[np.float32]
    mask: NDArray[np.bool_]
    times: NDArray[np.int64]
    offsets: NDArray[np.int64]
    channels: tuple[str, ...]


def build_dl_tensor(
    history: ChainHistory,
    *,
    window: int | None = None,
    strikes_each_side: int | None = None,
    channels: Sequence[int] | None = None,
) -> DLTensor:
    """The normalized tensor of the last ``window`` time steps of a chain's history.

    Parameters
    ----------
    history : ChainHistory
        ``ChainMatrix.history(underlying, expiry)`` (time order).
    window : int, optional
        Time steps (default: all); fewer available steps are zero-padded at the start (mask
        False).
    strikes_each_side : int, optional
        Strikes kept either side of each step's ATM strike (default: the matrix's half width).
    channels : sequence of int, optional
        Channel indexes (default: all 23, in matrix order).
    """
    data, strikes, times = history.data, history.strikes, history.times
    n, _, width = data.shape
    half = (width - 1) // 2 if strikes_each_side is None else strikes_each_side
    chans = tuple(range(N_CHANNELS)) if channels is None else tuple(channels)
    steps = n if window is None else window
    span = 2 * half + 1
    out = np.full((steps, N_CHANNELS, span), np.nan)
    out_times = np.zeros(steps, dtype=np.int64)
    take = min(n, steps)
    src = range(n - take, n)
    spots = np.full(steps, np.nan)
    for row, t in enumerate(src, start=steps - take):
        spot_row = data[t, UNDERLYING]
        spot = float(np.nanmean(spot_row)) if np.isfinite(spot_row).any() else np.nan
        spots[row] = spot
        out_times[row] = times[t]
        k = strikes[t]
        if not (np.isfinite(spot) and np.isfinite(k).any()):
            continue
        atm = int(np.nanargmin(np.abs(k - spot)))
        lo, hi = atm - half, atm + half + 1
        s_lo, s_hi = max(lo, 0), min(hi, width)
        out[row, :, s_lo - lo : s_lo - lo + (s_hi - s_lo)] = data[t, :, s_lo:s_hi]
    last_spot = spots[np.isfinite(spots)][-1] if np.isfinite(spots).any() else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        sp = spots[:, None]
        for c in _PRICE + _PER_SPOT:
            out[:, c] = out[:, c] / sp
        for c in _TIMES_SPOT:
            out[:, c] = out[:, c] * sp
        for c in _COUNT:  # IV and delta stay as they are
            out[:, c] = np.sign(out[:, c]) * np.log1p(np.abs(out[:, c]))
        out[:, UNDERLYING] = np.log(out[:, UNDERLYING] / last_spot)
    sel = out[:, list(chans)]
    mask = np.isfinite(sel)
    values = np.where(mask, sel, 0.0).astype(np.float32)
    return DLTensor(
        values,
        mask,
        out_times,
        np.arange(-half, half + 1, dtype=np.int64),
        tuple(CHANNEL_NAMES[c] for c in chans),
    )
