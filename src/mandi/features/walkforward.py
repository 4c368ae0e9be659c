"""Walk-forward splits with purging and an embargo (López de Prado's guards against leakage).

The labelled samples are cut, on trading-day boundaries, into ``folds + 1`` consecutive blocks of
days: the first only trains, each later one is a test fold whose model trains on everything
before it (an expanding window). A training sample whose label window reaches into the test
block — or comes within ``embargo`` bars of it — is dropped (purged), so no test return was seen
in training. The embargo is at least the label horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mandi.core.errors import ConfigError, DataError

MIN_TRAIN_ROWS = 50
MIN_TEST_ROWS = 10


@dataclass(frozen=True, slots=True)
class Fold:
    """One walk-forward step: ``train`` and ``test`` index the samples (ascending)."""

    number: int
    train: NDArray[np.int64]
    test: NDArray[np.int64]
    purged: int


def walk_forward(
    position: NDArray[np.int64],
    day: NDArray[np.int64],
    folds: int,
    horizon: int,
    embargo: int | None = None,
    *,
    min_train_rows: int = MIN_TRAIN_ROWS,
    min_test_rows: int = MIN_TEST_ROWS,
) -> list[Fold]:
    """Split samples into walk-forward folds.

    Parameters
    ----------
    position : int array
        Each sample's bar index in its series (ascending): purging is measured in bars.
    day : int array
        Each sample's trading day (any increasing day number).
    folds : int
        Number of test folds (≥ 1).
    horizon : int
        Label horizon in bars.
    embargo : int, optional
        Extra bars dropped before each test block; default and minimum: ``horizon``.

    Raises
    ------
    DataError
        Too little data for the folds asked (the message says the minimum).
    """
    if folds < 1:
        raise ConfigError("folds", folds, "must be ≥ 1")
    embargo = horizon if embargo is None else embargo
    if embargo < horizon:
        raise ConfigError("embargo", embargo, f"must be at least the label horizon ({horizon})")
    pos = np.asarray(position, dtype=np.int64)
    d = np.asarray(day, dtype=np.int64)
    if len(pos) > 1 and not ((np.diff(pos) > 0).all() and (np.diff(d) >= 0).all()):
        raise DataError("samples must be in time order")
    days = np.unique(d)
    n_days = len(days)
    per_fold = n_days // (folds + 1)
    need = (
        f"{folds} fold(s) need at least {folds + 1} trading days (one per test fold and one to "
        f"train on) with ≥ {min_train_rows} training and ≥ {min_test_rows} test rows each"
    )
    if per_fold < 1:
        raise DataError(
            f"too little data: {n_days} trading day(s), {len(pos)} labelled rows; {need}"
        )
    out = []
    for k in range(folds):
        lo_day = days[n_days - (folds - k) * per_fold]
        hi_day = days[n_days - (folds - k - 1) * per_fold] if k < folds - 1 else None
        in_test = (d >= lo_day) & (d < hi_day) if hi_day is not None else d >= lo_day
        test = np.flatnonzero(in_test)
        before = np.flatnonzero(d < lo_day)
        first = pos[test[0]] if len(test) else np.iinfo(np.int64).max
        keep = pos[before] + horizon + embargo < first
        train = before[keep]
        if len(train) < min_train_rows or len(test) < min_test_rows:
            raise DataError(
                f"too little data: fold {k + 1} has {len(train)} training and {len(test)} test "
                f"rows ({n_days} trading days, {len(pos)} labelled rows); {need}"
            )
        out.append(Fold(k + 1, train, test, int((~keep).sum())))
    return out
