"""Walk-forward folds: test days after training days, purged and embargoed by at least the label
horizon, and a clear error with the minimum when the data is too short."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mandi.core.errors import ConfigError, DataError
from mandi.features import walk_forward


def samples(days=20, per_day=100, skip=()):
    pos = np.arange(days * per_day, dtype=np.int64)
    day = pos // per_day
    keep = ~np.isin(pos, skip)
    return pos[keep], day[keep]


@pytest.mark.parametrize("embargo", [None, 12])
def test_folds_are_forward_purged_and_embargoed(embargo):
    pos, day = samples()
    folds = walk_forward(pos, day, folds=4, horizon=5, embargo=embargo)
    assert [f.number for f in folds] == [1, 2, 3, 4]
    gap = 5 + (embargo or 5)
    tested = np.concatenate([f.test for f in folds])
    assert len(np.unique(tested)) == len(tested)  # test folds never overlap
    for f in folds:
        assert day[f.train].max() < day[f.test].min()  # train strictly before test
        assert pos[f.train].max() + gap < pos[f.test].min()  # purged + embargo
        assert f.purged == gap  # exactly the rows within reach of the test block
        assert len(f.test) == 400  # 4 days of 100 rows
    # expanding: each fold trains on more than the one before
    assert all(len(a.train) < len(b.train) for a, b in itertools.pairwise(folds))


def test_embargo_shorter_than_the_horizon_is_refused():
    pos, day = samples()
    with pytest.raises(ConfigError, match="embargo"):
        walk_forward(pos, day, folds=2, horizon=10, embargo=5)


def test_too_little_data_says_the_minimum():
    pos, day = samples(days=3)
    with pytest.raises(
        DataError, match=r"too little data: 3 trading day.*5 fold\(s\) need at least 6"
    ):
        walk_forward(pos, day, folds=5, horizon=5)
    pos, day = samples(days=6, per_day=20)
    with pytest.raises(DataError, match="fold 1 has"):
        walk_forward(pos, day, folds=2, horizon=5)
