"""The feature catalogue: every feature mandi can compute, by name, in four groups.

A model is trained on an ordered list of these names and records it (with a hash of the feature
code, see :mod:`mandi.ml.registry`); the same list drives the online builder that feeds it live.

========  ==================================================================================
group     features (at the end of bar *i* of the traded instrument, timeframe ``tf``)
========  ==================================================================================
bars      ``ret_1 ret_3 ret_6 ret_12``: log return over 1/3/6/12 bars;
          ``vol_12``: standard deviation (ddof 0) of the last 12 one-bar log returns;
          ``rsi_14``: RSI(14), Wilder (as :class:`mandi.indicators.RSI`);
          ``mom_20``: close / SMA(20) − 1; ``range_1``: (high − low) / close;
          ``ret_day``: log(close / the day's first open)
time      ``tod``: minutes from the 09:15 IST open to the end of the bar
vix       ``vix``: India VIX close of the latest VIX bar that *started before* this bar (so the
          order in which same-time bars arrive never matters); ``vix_chg_10``: its log change
          over 10 VIX bars
chain     from the nearest expiry's latest chain snapshot at or before the bar's end, on the
          same IST day, run through the feature code's own
          :class:`~mandi.options.chain.ChainMatrix` (r = 10 %, one sample per decision):
          ``pcr_oi pcr_volume atm_iv``; ``iv_skew`` (put IV two strikes below ATM − call IV two
          strikes above); ``max_pain_dist`` ((max pain − spot) / spot); ``itm_ce_delta_pct
          itm_pe_delta_pct``; ``oi_chg_{ce,pe}_{3,5,10,15,30}m``: % change of the total OI of
          the ATM ± 5 strikes over the window (the newest sample at least that old);
          ``tte_days``: calendar days to expiry (15:30 IST)
========  ==================================================================================

Every feature is NaN until it has the history it needs; a row with any NaN is not a decision
(training drops it and counts it, strategies do not predict on it, the model server refuses it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mandi.core.errors import ConfigError

OI_WINDOWS_MINUTES = (3, 5, 10, 15, 30)
OI_STRIKES_EACH_SIDE = 5
SKEW_STRIKES = 2
CHAIN_RATE = 0.10  # NSE's published convention (the feature definition, not the simulator's)

BAR_FEATURES = (
    "ret_1",
    "ret_3",
    "ret_6",
    "ret_12",
    "vol_12",
    "rsi_14",
    "mom_20",
    "range_1",
    "ret_day",
)
TIME_FEATURES = ("tod",)
VIX_FEATURES = ("vix", "vix_chg_10")
CHAIN_FEATURES = (
    "pcr_oi",
    "pcr_volume",
    "atm_iv",
    "iv_skew",
    "max_pain_dist",
    "itm_ce_delta_pct",
    "itm_pe_delta_pct",
    *(f"oi_chg_{side}_{w}m" for side in ("ce", "pe") for w in OI_WINDOWS_MINUTES),
    "tte_days",
)

GROUPS: dict[str, tuple[str, ...]] = {
    "bars": BAR_FEATURES,
    "time": TIME_FEATURES,
    "vix": VIX_FEATURES,
    "chain": CHAIN_FEATURES,
}
ALL_FEATURES: tuple[str, ...] = tuple(n for names in GROUPS.values() for n in names)
GROUP_OF: dict[str, str] = {n: g for g, names in GROUPS.items() for n in names}

#: bars of history the bar features need before the first complete row
BARS_WARMUP = 21
#: VIX bars the VIX features need
VIX_WARMUP = 11


def features_of(groups: Iterable[str]) -> tuple[str, ...]:
    """The feature names of ``groups`` in catalogue order (unknown group: ConfigError)."""
    wanted = list(groups)
    for g in wanted:
        if g not in GROUPS:
            raise ConfigError("features.groups", g, f"unknown group; use {', '.join(GROUPS)}")
    return tuple(n for g in GROUPS if g in wanted for n in GROUPS[g])


def check_names(names: Sequence[str], where: str = "features") -> tuple[str, ...]:
    """``names`` as a tuple, after checking each is in the catalogue and none repeats."""
    unknown = [n for n in names if n not in GROUP_OF]
    if unknown:
        raise ConfigError(where, ", ".join(unknown), "unknown feature(s); see mandi.features")
    dup = sorted({n for n in names if list(names).count(n) > 1})
    if dup:
        raise ConfigError(where, ", ".join(dup), "listed twice")
    if not names:
        raise ConfigError(where, "", "no features")
    return tuple(names)


def groups_of(names: Iterable[str]) -> tuple[str, ...]:
    """The groups ``names`` draw on, in catalogue order."""
    used = {GROUP_OF[n] for n in names}
    return tuple(g for g in GROUPS if g in used)
