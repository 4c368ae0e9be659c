"""Option-chain features (the ``chain`` group of :mod:`mandi.features.catalog`) and seed 000's
compact features.

Chain features are sampled *at decisions*: at the end of each bar, the nearest expiry's latest
snapshot at or before that moment is run through the feature code's own
:class:`~mandi.options.chain.ChainMatrix` (once; a snapshot already seen is not fed again), and
the features are read from its analytics. Training (:func:`chain_features`, from stored
snapshots) and live (:class:`ChainState`, fed what the strategy sees) therefore run the very same
matrix over the very same samples — whatever cadence the chains were recorded or published at.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from mandi.features.bars import ist_day
from mandi.features.catalog import (
    CHAIN_FEATURES,
    CHAIN_RATE,
    OI_STRIKES_EACH_SIDE,
    OI_WINDOWS_MINUTES,
    SKEW_STRIKES,
)
from mandi.model.market import ChainSnapshot
from mandi.options.chain import (
    CE_IV,
    CE_OI,
    PE_IV,
    PE_OI,
    ChainAnalytics,
    ChainMatrix,
    ChainMatrixConfig,
)

_NAN_VALUES = dict.fromkeys(CHAIN_FEATURES, math.nan)
_EPOCH = dt.date(1970, 1, 1)


def feature_matrix_config() -> ChainMatrixConfig:
    """The matrix configuration that is part of the chain features' definition."""
    return ChainMatrixConfig(
        strikes_each_side=OI_STRIKES_EACH_SIDE + 5,
        rate=CHAIN_RATE,
        oi_windows_minutes=OI_WINDOWS_MINUTES,
        history_minutes=float(max(OI_WINDOWS_MINUTES)) + 5.0,
    )


def _oi_change_pct(now: NDArray[np.float64], pct: NDArray[np.float64]) -> float:
    """% change of Σ OI over strikes from per-strike OI now and per-strike % changes."""
    ok = np.isfinite(now) & np.isfinite(pct) & (pct > -100.0)
    if not ok.any():
        return math.nan
    then = now[ok] / (1.0 + pct[ok] / 100.0)
    total_then = float(then.sum())
    if total_then <= 0:
        return math.nan
    return (float(now[ok].sum()) / total_then - 1.0) * 100.0


def build_compact_features(
    analytics: ChainAnalytics, matrix: NDArray[np.float64], strikes: NDArray[np.float64]
) -> dict[str, float]:
    """Seed 000's compact features of one chain sample: PCR, ATM IV, IV skew, max-pain
    distance, ITM delta shares, OI % change windows around the ATM, time to expiry.

    Parameters
    ----------
    analytics : ChainAnalytics
        What :meth:`ChainMatrix.process_option_chain` returned for the sample.
    matrix, strikes : arrays
        The same sample's ``(23, width)`` matrix and strike grid (``ChainMatrix.latest``).
    """
    a = analytics
    v = dict(_NAN_VALUES)
    spot = a.underlying_price
    v["pcr_oi"] = a.pcr_oi
    v["pcr_volume"] = a.pcr_volume
    v["atm_iv"] = a.atm_iv
    v["itm_ce_delta_pct"] = a.itm_ce_delta_pct
    v["itm_pe_delta_pct"] = a.itm_pe_delta_pct
    v["tte_days"] = a.time_to_expiry * 365.0
    if spot > 0 and math.isfinite(a.max_pain):
        v["max_pain_dist"] = (a.max_pain - spot) / spot
    if not math.isfinite(a.atm_strike) or not np.isfinite(strikes).any():
        return v
    k0 = int(np.nanargmin(np.abs(strikes - a.atm_strike)))
    width = len(strikes)
    lo_k, hi_k = k0 - SKEW_STRIKES, k0 + SKEW_STRIKES
    if lo_k >= 0 and hi_k < width:
        v["iv_skew"] = float(matrix[PE_IV, lo_k] - matrix[CE_IV, hi_k])
    sl = slice(max(0, k0 - OI_STRIKES_EACH_SIDE), min(width, k0 + OI_STRIKES_EACH_SIDE + 1))
    pct = a.oi_change_pct
    for w_i, w in enumerate(a.oi_windows_minutes):
        v[f"oi_chg_ce_{w}m"] = _oi_change_pct(matrix[CE_OI, sl], pct[w_i, 0, sl])
        v[f"oi_chg_pe_{w}m"] = _oi_change_pct(matrix[PE_OI, sl], pct[w_i, 1, sl])
    return {k: (float(x) if math.isfinite(x) else math.nan) for k, x in v.items()}


def _front_expiry(expiries: Sequence[dt.date], day: int) -> dt.date | None:
    today = _EPOCH + dt.timedelta(days=day)
    later = [e for e in expiries if e >= today]
    return min(later) if later else None


class ChainState:
    """The ``chain`` group, live: :meth:`offer` the snapshots you see, :meth:`values` at each
    decision (bar end)."""

    __slots__ = ("_fed", "_pending", "_sample", "matrix")

    def __init__(self) -> None:
        self.matrix = ChainMatrix(feature_matrix_config())
        self._pending: dict[dt.date, deque[ChainSnapshot]] = {}  # the latest few per expiry
        self._fed: dict[dt.date, int] = {}  # ts of the last sample fed per expiry
        self._sample: tuple[int, dict[str, float]] | None = None  # (ts, values) in use

    def offer(self, snapshot: ChainSnapshot) -> None:
        """A snapshot the strategy sees (any expiry, time order per expiry; at equal times the
        last offered wins)."""
        held = self._pending.get(snapshot.expiry)
        if held is None:
            held = self._pending[snapshot.expiry] = deque(maxlen=8)
        if held and snapshot.ts_event <= held[-1].ts_event:
            if snapshot.ts_event == held[-1].ts_event:
                held[-1] = snapshot
            return
        held.append(snapshot)

    def values(self, decision_ns: int) -> dict[str, float]:
        """Features at ``decision_ns`` (a bar's end)."""
        day = int(ist_day(decision_ns))
        expiry = _front_expiry(list(self._pending), day)
        if expiry is not None:
            snap = next(
                (s for s in reversed(self._pending[expiry]) if s.ts_event <= decision_ns), None
            )
            if snap is not None and snap.ts_event > self._fed.get(expiry, -1):
                self._sample = (snap.ts_event, _feed(self.matrix, snap))
                self._fed[expiry] = snap.ts_event
        if self._sample is None or int(ist_day(self._sample[0])) != day:
            return dict(_NAN_VALUES)
        return dict(self._sample[1])


def _feed(matrix: ChainMatrix, snap: ChainSnapshot) -> dict[str, float]:
    a = matrix.process_option_chain(snap.underlying, snap, notify=False)
    if a is None:  # older than what the matrix holds: not a sample
        return dict(_NAN_VALUES)
    m, strikes = matrix.latest(snap.underlying, snap.expiry)
    return build_compact_features(a, m, strikes)


def chain_features(
    snapshots: Sequence[ChainSnapshot], decision_ns: NDArray[np.int64], underlying: str
) -> dict[str, NDArray[np.float64]]:
    """The ``chain`` group at each decision time (ascending bar ends) from recorded snapshots of
    ``underlying`` (any expiries, any order)."""
    ends = np.asarray(decision_ns, dtype=np.int64)
    out = {name: np.full(len(ends), np.nan) for name in CHAIN_FEATURES}
    by_expiry: dict[dt.date, list[ChainSnapshot]] = {}
    for s in snapshots:
        if s.underlying == underlying:
            by_expiry.setdefault(s.expiry, []).append(s)
    for lst in by_expiry.values():
        lst.sort(key=lambda s: s.ts_event)
    times = {e: np.array([s.ts_event for s in lst], dtype=np.int64) for e, lst in by_expiry.items()}
    expiries = sorted(by_expiry)
    matrix = ChainMatrix(feature_matrix_config())
    fed: dict[dt.date, int] = {}
    sample: tuple[int, dict[str, float]] | None = None
    for i, end in enumerate(ends.tolist()):
        day = int(ist_day(end))
        expiry = _front_expiry(expiries, day)
        if expiry is not None:
            j = int(np.searchsorted(times[expiry], end, side="right")) - 1
            # at equal times the last one recorded wins (as ChainState.offer)
            if j >= 0 and by_expiry[expiry][j].ts_event > fed.get(expiry, -1):
                snap = by_expiry[expiry][j]
                sample = (snap.ts_event, _feed(matrix, snap))
                fed[expiry] = snap.ts_event
        if sample is None or int(ist_day(sample[0])) != day:
            continue
        for name, x in sample[1].items():
            out[name][i] = x
    return out
