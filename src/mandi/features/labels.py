"""Forward-return labels (seed 001): the log return from a bar's close to the close ``horizon``
bars later, classed down / neutral / up by a threshold.

A label exists only when the later bar is on the same IST trading day (positions are intraday)
and exactly ``horizon × timeframe`` later (a gap in the data would stretch the horizon): the
others are counted, never silently stretched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import ConfigError
from mandi.features.bars import ist_day

CLASSES = ("down", "neutral", "up")
DOWN, NEUTRAL, UP = 0, 1, 2
#: the dashboard's (seed 001's) words for the classes
CLASS_LABELS = {"down": "Bearish", "neutral": "Neutral", "up": "Bullish"}


@dataclass(frozen=True, slots=True)
class Labels:
    """``y`` class per bar (−1 = no label), ``forward_return`` (log; NaN = none) and why bars
    have none: ``end_of_data``, ``crosses_day`` (the horizon runs past the session), ``gap``
    (bars missing inside the horizon)."""

    y: NDArray[np.int8]
    forward_return: NDArray[np.float64]
    horizon: int
    threshold: float
    dropped: dict[str, int]

    @property
    def valid(self) -> NDArray[np.bool_]:
        return self.y >= 0


def forward_returns(
    bucket: NDArray[np.int64], close: NDArray[np.generic], timeframe: int, horizon: int
) -> tuple[NDArray[np.float64], dict[str, int]]:
    """Log returns over ``horizon`` bars where defined (NaN elsewhere) and the drop counts."""
    if horizon < 1:
        raise ConfigError("horizon", horizon, "must be ≥ 1 bar")
    b = np.asarray(bucket, dtype=np.int64)
    c = np.asarray(close, dtype=np.float64)
    n = len(b)
    out = np.full(n, np.nan)
    dropped = {"end_of_data": min(horizon, n), "crosses_day": 0, "gap": 0}
    if n <= horizon:
        return out, dropped
    now, later = slice(0, n - horizon), slice(horizon, n)
    same_day = ist_day(b[later]) == ist_day(b[now])
    exact = (b[later] - b[now]) == horizon * timeframe * NS_PER_SECOND
    dropped["crosses_day"] = int((~same_day).sum())
    dropped["gap"] = int((same_day & ~exact).sum())
    ok = same_day & exact
    r = np.log(c[later]) - np.log(c[now])
    out[now] = np.where(ok, r, np.nan)
    return out, dropped


def forward_labels(
    bucket: NDArray[np.int64],
    close: NDArray[np.generic],
    timeframe: int,
    horizon: int,
    threshold: float,
) -> Labels:
    """Classes of the forward returns: up above ``threshold``, down below −``threshold``
    (a log return, e.g. 0.0005 = 5 bp), neutral between."""
    if not threshold >= 0:
        raise ConfigError("threshold", threshold, "must be ≥ 0")
    r, dropped = forward_returns(bucket, close, timeframe, horizon)
    y = np.full(len(r), -1, dtype=np.int8)
    ok = np.isfinite(r)
    y[ok] = NEUTRAL
    y[ok & (r > threshold)] = UP
    y[ok & (r < -threshold)] = DOWN
    return Labels(y, r, horizon, float(threshold), dropped)
