"""Chain history analytics for the volatility and OI views (pure: rows in, series out).

The rows are those of :func:`mandi.stores.chains.chain_history` — ``(timestamp, expiry, strike,
option_type, ltp, bid, ask, oi, oi_change, volume, iv, underlying_price)`` with prices and
strikes in paise, IV a decimal (None where none fits), time in ns. Series are per snapshot time:

* :func:`atm_series` — the ATM strike (listed strike nearest the underlying), its call and put
  prices, the straddle premium (call + put) and the ATM IV (mean of the two IVs, either alone);
* :func:`pcr_series` — PCR of open interest and max pain through the day;
* :func:`iv_rank` — where today's IV sits in its history: rank = (IV − min) / (max − min),
  percentile = share of history strictly below it (both in %).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mandi.core.calendar import ist_date
from mandi.options.chain.analytics import max_pain

Row = Sequence[Any]


@dataclass(frozen=True, slots=True)
class AtmPoint:
    ts: int
    expiry: dt.date
    spot: int
    strike: int
    call: int | None  # paise
    put: int | None
    straddle: int | None
    iv: float | None


@dataclass(frozen=True, slots=True)
class PcrPoint:
    ts: int
    spot: int
    pcr: float | None
    max_pain: int | None  # paise
    call_oi: int
    put_oi: int


def _iv(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(x) and x > 0 else None


def _groups(rows: Iterable[Row]) -> dict[tuple[int, str], list[Row]]:
    out: dict[tuple[int, str], list[Row]] = {}
    for r in rows:
        out.setdefault((int(r[0]), str(r[1])), []).append(r)
    return out


def _nearest_expiry(expiries: Iterable[str], day: dt.date, strictly_after: bool) -> str | None:
    later = sorted(
        e for e in expiries if (e > day.isoformat() if strictly_after else e >= day.isoformat())
    )
    return later[0] if later else None


def atm_series(
    rows: Iterable[Row], *, expiry: dt.date | None = None, skip_expiry_day: bool = False
) -> list[AtmPoint]:
    """The ATM point of every snapshot time: of ``expiry``, or of the nearest expiry on or after
    the snapshot's IST day (after it with ``skip_expiry_day``: an expiring chain's IV says
    little)."""
    by_time: dict[int, dict[str, list[Row]]] = {}
    for (ts, exp), rs in _groups(rows).items():
        by_time.setdefault(ts, {})[exp] = rs
    out = []
    for ts in sorted(by_time):
        chains = by_time[ts]
        if expiry is not None:
            key: str | None = expiry.isoformat() if expiry.isoformat() in chains else None
        else:
            key = _nearest_expiry(chains, ist_date(ts), skip_expiry_day)
            if key is None and skip_expiry_day:
                key = _nearest_expiry(chains, ist_date(ts), False)
        if key is None:
            continue
        rs = chains[key]
        spot = int(rs[0][11])
        sides: dict[int, dict[str, Row]] = {}
        for r in rs:
            sides.setdefault(int(r[2]), {})[str(r[3])] = r
        both = [k for k, v in sides.items() if "CE" in v and "PE" in v] or list(sides)
        strike = min(both, key=lambda k: (abs(k - spot), k))
        ce, pe = sides[strike].get("CE"), sides[strike].get("PE")
        call = int(ce[4]) if ce is not None and ce[4] else None
        put = int(pe[4]) if pe is not None and pe[4] else None
        ivs = [v for v in (_iv(ce[10]) if ce else None, _iv(pe[10]) if pe else None) if v]
        out.append(
            AtmPoint(
                ts,
                dt.date.fromisoformat(key),
                spot,
                strike,
                call,
                put,
                call + put if call is not None and put is not None else None,
                sum(ivs) / len(ivs) if ivs else None,
            )
        )
    return out


def pcr_series(rows: Iterable[Row]) -> list[PcrPoint]:
    """PCR (put OI / call OI) and max pain of one expiry's chain at every snapshot time."""
    out = []
    for (ts, _), rs in sorted(_groups(rows).items()):
        strikes = sorted({int(r[2]) for r in rs})
        index = {k: i for i, k in enumerate(strikes)}
        ce = np.zeros(len(strikes))
        pe = np.zeros(len(strikes))
        for r in rs:
            (ce if r[3] == "CE" else pe)[index[int(r[2])]] = r[7] or 0
        c, p = int(ce.sum()), int(pe.sum())
        pain = max_pain(np.array(strikes, dtype=np.float64), ce, pe) if c + p > 0 else math.nan
        out.append(
            PcrPoint(
                ts,
                int(rs[0][11]),
                p / c if c > 0 else None,
                round(pain) if math.isfinite(pain) else None,
                c,
                p,
            )
        )
    return out


def iv_rank(history: Sequence[float], current: float) -> tuple[float | None, float | None]:
    """(IV rank %, IV percentile %) of ``current`` against ``history`` (None without a range)."""
    h = np.array([x for x in history if x is not None and math.isfinite(x)], dtype=np.float64)
    if h.size == 0 or not math.isfinite(current):
        return None, None
    lo, hi = float(h.min()), float(h.max())
    rank = 100.0 * (current - lo) / (hi - lo) if hi > lo else None
    if rank is not None:
        rank = min(max(rank, 0.0), 100.0)
    return rank, 100.0 * float((h < current).mean())
