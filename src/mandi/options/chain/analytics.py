"""Whole-chain analytics: put-call ratios, max pain, ATM strike, and the per-snapshot summary.

Units (DESIGN §2: analytics are floats): strikes, prices and the underlying in **rupees**
(paise / 100); open interest, change in OI and volume in **contracts** (shares / lot size), as
NSE prints them. PCR and max pain are the same in shares or contracts.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mandi.model.market import ChainSnapshot
from mandi.options.iv import IVStatus

__all__ = [
    "ATM",
    "ITM",
    "MONEYNESS_LABELS",
    "OTM",
    "ChainAnalytics",
    "StrikeStatus",
    "atm_strike",
    "chain_arrays",
    "max_pain",
    "pcr",
]

# Moneyness classes per side (seed schema stores them as text: ITM / ATM / OTM).
ITM, ATM, OTM = 1, 0, -1
MONEYNESS_LABELS = {ITM: "ITM", ATM: "ATM", OTM: "OTM"}


class StrikeStatus(IntEnum):
    """Why a strike's side has no IV/Greeks (NaN), or a warning about its quotes.

    Codes 0-5 are the :class:`~mandi.options.IVStatus` codes of the IV solver; the others come
    from the quotes. Precedence when several apply: MISSING, NO_PRICE, the IV status, CROSSED.
    """

    OK = IVStatus.OK
    BELOW_INTRINSIC = IVStatus.BELOW_INTRINSIC
    ABOVE_MAX = IVStatus.ABOVE_MAX
    AT_INTRINSIC = IVStatus.AT_INTRINSIC
    EXPIRED = IVStatus.EXPIRED
    BAD_INPUT = IVStatus.BAD_INPUT
    MISSING = 10
    """No contract listed at this strike in the snapshot (a hole in the strike grid)."""
    NO_PRICE = 11
    """The contract has no positive last price (no trade yet, or a zero/negative value)."""
    CROSSED = 12
    """Bid above ask: bid and ask are set to NaN; LTP, IV and Greeks are kept."""


@dataclass(frozen=True, slots=True)
class ChainArrays:
    """The columns of a whole :class:`ChainSnapshot` (every listed strike, ascending)."""

    strikes: NDArray[np.float64]  # rupees
    ce_oi: NDArray[np.float64]  # contracts; NaN where the side is missing
    pe_oi: NDArray[np.float64]
    ce_volume: NDArray[np.float64]
    pe_volume: NDArray[np.float64]
    ce_oi_change: NDArray[np.float64]
    pe_oi_change: NDArray[np.float64]


def chain_arrays(snapshot: ChainSnapshot) -> ChainArrays:
    """OI, volume and change in OI of every strike of ``snapshot`` in contracts."""
    n = len(snapshot.rows)
    values = np.full((7, n), np.nan)
    for j, row in enumerate(snapshot.rows):
        values[0, j] = row.strike
        c = row.call
        if c is not None:
            values[1, j] = c.oi
            values[3, j] = c.volume
            values[5, j] = c.oi_change
        p = row.put
        if p is not None:
            values[2, j] = p.oi
            values[4, j] = p.volume
            values[6, j] = p.oi_change
    values[0] /= 100.0
    values[1:] /= max(snapshot.lot_size, 1)
    return ChainArrays(*values)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 and math.isfinite(denominator) else math.nan


@overload
def pcr(chain: ChainSnapshot, by: str = "oi") -> float: ...


@overload
def pcr(chain: ArrayLike, by: ArrayLike) -> float: ...


def pcr(chain: ChainSnapshot | ArrayLike, by: Any = "oi") -> float:
    """Put-call ratio: Σ puts / Σ calls.

    Parameters
    ----------
    chain : ChainSnapshot or array_like
        A snapshot (all its strikes are summed), or the put-side values.
    by : {"oi", "volume", "oi_change"} or array_like
        With a snapshot, what to sum: open interest (default), traded volume, or change in
        OI (then the ratio can be negative). With put values, the call-side values.

    Returns
    -------
    float
        The ratio; NaN when the call total is 0 or not finite. Missing sides (NaN) count as 0.

    Examples
    --------
    >>> pcr([120.0, 80.0], [100.0, 100.0])
    1.0
    """
    if isinstance(chain, ChainSnapshot):
        a = chain_arrays(chain)
        columns = {
            "oi": (a.pe_oi, a.ce_oi),
            "volume": (a.pe_volume, a.ce_volume),
            "oi_change": (a.pe_oi_change, a.ce_oi_change),
        }
        if by not in columns:
            raise ValueError(f"pcr: by = {by!r}; use 'oi', 'volume' or 'oi_change'")
        puts, calls = columns[by]
    else:
        puts, calls = np.asarray(chain, dtype=np.float64), np.asarray(by, dtype=np.float64)
    return _ratio(float(np.nansum(puts)), float(np.nansum(calls)))


@overload
def max_pain(chain: ChainSnapshot) -> float: ...


@overload
def max_pain(chain: ArrayLike, call_oi: ArrayLike, put_oi: ArrayLike) -> float: ...


def max_pain(
    chain: ChainSnapshot | ArrayLike,
    call_oi: ArrayLike | None = None,
    put_oi: ArrayLike | None = None,
) -> float:
    """The max-pain strike: the listed strike ``s`` minimising what option holders receive at
    expiry, Σ_K CE_OI(K)·max(0, s − K) + PE_OI(K)·max(0, K − s).

    Parameters
    ----------
    chain : ChainSnapshot or array_like
        A snapshot (strikes in rupees are returned), or the strikes.
    call_oi, put_oi : array_like, optional
        With strikes: the call and put open interest per strike (NaN counts as 0).

    Returns
    -------
    float
        The strike (rupees for a snapshot; the units of ``chain`` otherwise); the lowest one on
        ties; NaN when there is no open interest at all.

    Notes
    -----
    O(n log n) with prefix sums instead of the O(n²) double loop.
    """
    if isinstance(chain, ChainSnapshot):
        a = chain_arrays(chain)
        strikes, calls, puts = a.strikes, a.ce_oi, a.pe_oi
    else:
        if call_oi is None or put_oi is None:
            raise TypeError("max_pain(strikes, call_oi, put_oi) needs both OI arrays")
        strikes = np.asarray(chain, dtype=np.float64)
        calls = np.asarray(call_oi, dtype=np.float64)
        puts = np.asarray(put_oi, dtype=np.float64)
    return _max_pain(strikes, calls, puts)


def _max_pain(strikes: np.ndarray, calls: np.ndarray, puts: np.ndarray) -> float:
    ok = np.isfinite(strikes)
    strikes, calls, puts = strikes[ok], calls[ok], puts[ok]
    if strikes.size == 0:
        return math.nan
    order = np.argsort(strikes, kind="stable")
    k = strikes[order]
    c = np.nan_to_num(calls[order], nan=0.0)
    p = np.nan_to_num(puts[order], nan=0.0)
    if not (c.sum() > 0 or p.sum() > 0):
        return math.nan
    # calls struck below s pay s·ΣCE − Σ CE·K; puts struck above s pay Σ PE·K − s·ΣPE
    c_cum = np.concatenate(([0.0], np.cumsum(c)))[:-1]
    ck_cum = np.concatenate(([0.0], np.cumsum(c * k)))[:-1]
    p_tail = np.cumsum(p[::-1])[::-1] - p
    pk_tail = np.cumsum((p * k)[::-1])[::-1] - p * k
    pain = (k * c_cum - ck_cum) + (pk_tail - k * p_tail)
    return float(k[int(np.argmin(pain))])


def atm_strike(strikes: ArrayLike, underlying_price: float) -> float:
    """The listed strike nearest to ``underlying_price`` (the lower one on a tie); NaN if none.

    ``strikes`` and ``underlying_price`` in the same units.
    """
    k = np.asarray(strikes, dtype=np.float64)
    k = k[np.isfinite(k)]
    if k.size == 0 or not math.isfinite(underlying_price):
        return math.nan
    k = np.sort(k)
    return float(k[int(np.argmin(np.abs(k - underlying_price)))])


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return [_jsonable(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True, slots=True, eq=False)
class ChainAnalytics:
    """Everything the dashboard and strategies read about one chain snapshot.

    Per-strike arrays cover the matrix's strike window (``strikes``, ascending, on a uniform
    grid of ``strike_step`` around the window centre); ``ce_*`` / ``pe_*`` are the call and put
    sides. Whole-chain numbers (PCR, totals, max pain) use every strike of the snapshot, as NSE's
    published totals do. Units: rupees, contracts, IV as a decimal, theta per day, vega per vol
    point (see the module docstring). NaN means "not available"; ``ce_status``/``pe_status``
    say why (:class:`StrikeStatus`).
    """

    underlying: str
    exchange: str
    expiry: dt.date
    ts_event: int
    source: str
    underlying_price: float
    time_to_expiry: float  # years, ACT/365 to 15:30 IST
    rate: float
    strike_step: float
    atm_strike: float
    atm_iv: float  # mean of the ATM call and put IVs (either alone if one is missing)
    strikes: NDArray[np.float64]
    moneyness: NDArray[np.float64]  # K / S
    ce_class: NDArray[np.int8]  # ITM (1), ATM (0), OTM (−1)
    pe_class: NDArray[np.int8]
    ce_status: NDArray[np.int8]
    pe_status: NDArray[np.int8]
    ce_theoretical: NDArray[np.float64]  # Black-Scholes at atm_iv
    pe_theoretical: NDArray[np.float64]
    ce_price_diff: NDArray[np.float64]  # LTP − theoretical, rupees
    pe_price_diff: NDArray[np.float64]
    ce_highlight: NDArray[np.int8]  # +1 diff > DIFF_POS, −1 diff < −DIFF_NEG, else 0
    pe_highlight: NDArray[np.int8]
    oi_windows_minutes: tuple[int, ...]
    oi_change_pct: NDArray[np.float64]  # (window, side 0 = CE / 1 = PE, strike)
    oi_window_seconds: NDArray[np.float64]  # the look-back actually used per window; NaN = none
    total_ce_oi: float
    total_pe_oi: float
    total_ce_volume: float
    total_pe_volume: float
    total_ce_oi_change: float
    total_pe_oi_change: float
    pcr_oi: float
    pcr_volume: float
    pcr_oi_change: float
    max_pain: float
    itm_ce_oi: float  # window baskets, contracts
    itm_pe_oi: float
    otm_ce_oi: float
    otm_pe_oi: float
    ce_delta_oi: float  # Σ OI·delta over the window (puts negative)
    pe_delta_oi: float
    itm_ce_delta_pct: float  # 100 · Σ_ITM OI·|Δ| / Σ OI·|Δ| per side
    itm_pe_delta_pct: float
    diff_pos_threshold: float
    diff_neg_threshold: float
    slot: int = -1  # ring slot written (−1 when analytics were computed outside a matrix)
    extra: dict[str, Any] = field(default_factory=dict)

    def oi_change(self, minutes: int, side: str = "CE") -> NDArray[np.float64]:
        """OI % change per strike over the ``minutes`` window for ``side`` ("CE"/"PE")."""
        w = self.oi_windows_minutes.index(minutes)
        out: NDArray[np.float64] = self.oi_change_pct[w, 0 if side.upper() == "CE" else 1]
        return out

    def moneyness_labels(self, side: str = "CE") -> list[str]:
        """ "ITM"/"ATM"/"OTM" per strike (the seed schema's ``moneyness`` column)."""
        classes = self.ce_class if side.upper() == "CE" else self.pe_class
        return [MONEYNESS_LABELS[int(c)] for c in classes]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (lists for arrays, None for NaN, ISO date)."""
        return {name: _jsonable(getattr(self, name)) for name in self.__slots__}
