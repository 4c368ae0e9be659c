"""Feature rows in model order: :func:`build_features` over history (training, batch) and
:class:`FeatureBuilder` one bar at a time (live). Equal numbers by construction and by test
(``tests/unit/features/test_parity.py``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import DataError
from mandi.features.bars import BarState, VixState, bar_features, vix_features
from mandi.features.catalog import check_names, groups_of
from mandi.features.chain import ChainState, chain_features
from mandi.model.market import ChainSnapshot


@dataclass(frozen=True, slots=True)
class FeatureFrame:
    """Features of every bar of one series.

    ``X[i]`` are the features (in ``names`` order) at the end of the bar starting at
    ``bucket[i]``; ``close`` are the bars' closes (paise) for labels and P&L.
    """

    names: tuple[str, ...]
    timeframe: int
    bucket: NDArray[np.int64]
    close: NDArray[np.int64]
    X: NDArray[np.float64]
    symbol: str = ""

    @property
    def end(self) -> NDArray[np.int64]:
        """Decision times: the bars' ends (ns UTC)."""
        return self.bucket + self.timeframe * NS_PER_SECOND

    def complete(self) -> NDArray[np.bool_]:
        """Rows where every feature is known."""
        return np.asarray(np.isfinite(self.X).all(axis=1), dtype=np.bool_)

    def __len__(self) -> int:
        return len(self.bucket)


def _need(groups: tuple[str, ...], group: str, have: bool, what: str) -> None:
    if group in groups and not have:
        raise DataError(f"the {group} features need {what}")


def build_features(
    names: Sequence[str],
    timeframe: int,
    bucket: NDArray[np.int64],
    open_: NDArray[np.generic],
    high: NDArray[np.generic],
    low: NDArray[np.generic],
    close: NDArray[np.generic],
    *,
    vix: tuple[NDArray[np.int64], NDArray[np.generic]] | None = None,
    chains: Sequence[ChainSnapshot] | None = None,
    underlying: str = "",
    symbol: str = "",
) -> FeatureFrame:
    """Features ``names`` for every bar of one series (batch).

    Parameters
    ----------
    names : sequence of str
        Catalogue names (:mod:`mandi.features.catalog`), in the model's order.
    timeframe : int
        Bar length, seconds.
    bucket, open_, high, low, close : arrays
        The bars (start times ns UTC ascending; prices in paise).
    vix : (bucket, close), optional
        India VIX bars (paise), for the ``vix`` group.
    chains : sequence of ChainSnapshot, optional
        Recorded chains of ``underlying``, for the ``chain`` group.
    """
    names = check_names(names)
    groups = groups_of(names)
    _need(groups, "vix", vix is not None, "India VIX bars")
    _need(groups, "chain", chains is not None, "option-chain snapshots")
    bucket = np.asarray(bucket, dtype=np.int64)
    if len(bucket) > 1 and not (np.diff(bucket) > 0).all():
        raise DataError("bars must be in strictly ascending time order")
    cols: dict[str, NDArray[np.float64]] = {}
    if "bars" in groups or "time" in groups:
        cols.update(bar_features(bucket, open_, high, low, close, timeframe))
    if vix is not None and "vix" in groups:
        cols.update(vix_features(bucket, vix[0], vix[1]))
    if chains is not None and "chain" in groups:
        ends = bucket + timeframe * NS_PER_SECOND
        cols.update(chain_features(chains, ends, underlying or symbol))
    X = np.column_stack([cols[n] for n in names]) if len(bucket) else np.empty((0, len(names)))
    return FeatureFrame(
        names,
        timeframe,
        bucket,
        np.asarray(close).astype(np.int64),
        np.ascontiguousarray(X, dtype=np.float64),
        symbol,
    )


class FeatureBuilder:
    """Live features of one instrument, in a model's order.

    Feed it what the strategy sees — :meth:`update_vix` with VIX bars, :meth:`offer_chain` with
    chain snapshots — and call :meth:`update_bar` with each confirmed bar of the traded
    instrument: it returns the row at that bar's end, or None while any feature is missing.

    Examples
    --------
    >>> b = FeatureBuilder(("ret_1", "rsi_14", "tod"), timeframe=180)
    >>> row = b.update_bar(bucket, open_, high, low, close)  # doctest: +SKIP
    """

    __slots__ = ("_bars", "_chain", "_row", "_vix", "groups", "names", "timeframe")

    def __init__(self, names: Sequence[str], timeframe: int) -> None:
        self.names = check_names(names)
        self.groups = groups_of(self.names)
        self.timeframe = timeframe
        self._bars = BarState(timeframe)
        self._vix = VixState() if "vix" in self.groups else None
        self._chain = ChainState() if "chain" in self.groups else None
        self._row = np.full(len(self.names), math.nan)

    def update_vix(self, bucket: int, close: float) -> None:
        if self._vix is not None:
            self._vix.update(bucket, close)

    def offer_chain(self, snapshot: ChainSnapshot) -> None:
        if self._chain is not None:
            self._chain.offer(snapshot)

    def update_bar(
        self, bucket: int, open_: float, high: float, low: float, close: float
    ) -> NDArray[np.float64] | None:
        """Take a confirmed bar; the feature row at its end (None while incomplete). The row is
        reused by the next call: copy it to keep it."""
        self._bars.update(bucket, open_, high, low, close)
        v = self.values_at(bucket)
        row = self._row
        for i, name in enumerate(self.names):
            row[i] = v[name]
        return row if np.isfinite(row).all() else None

    def values_at(self, bucket: int) -> dict[str, float]:
        v = dict(self._bars.values())
        if self._vix is not None:
            v.update(self._vix.values(bucket))
        if self._chain is not None:
            v.update(self._chain.values(bucket + self.timeframe * NS_PER_SECOND))
        return v

    def last_values(self) -> dict[str, float]:
        """The last row by name (NaN where missing)."""
        return {n: float(x) for n, x in zip(self.names, self._row, strict=True)}
