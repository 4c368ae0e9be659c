"""Forward-return labels: classes by threshold, never across the session or over a data gap."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from mandi.core.calendar import ist_ns
from mandi.core.errors import ConfigError
from mandi.features import forward_labels
from mandi.features.labels import DOWN, NEUTRAL, UP

DAY = dt.date(2026, 4, 15)


def buckets(n, day=DAY, start=dt.time(9, 15)):
    return ist_ns(day, start) + np.arange(n, dtype=np.int64) * 180 * 10**9


def test_classes_by_threshold():
    close = np.array([10000, 10020, 10000, 9990, 9990, 10100])
    lab = forward_labels(buckets(6), close, 180, 1, threshold=0.0015)
    assert lab.y.tolist() == [UP, DOWN, NEUTRAL, NEUTRAL, UP, -1]
    np.testing.assert_allclose(lab.forward_return[0], np.log(10020 / 10000))
    assert lab.dropped == {"end_of_data": 1, "crosses_day": 0, "gap": 0}


def test_no_label_across_the_close_or_a_gap():
    day1 = buckets(4, start=dt.time(15, 18))  # 15:18, 15:21, 15:24, 15:27
    day2 = buckets(4, DAY + dt.timedelta(days=1))
    b = np.concatenate([day1, day2])
    b = np.delete(b, 6)  # a missing bar on day 2 (09:21)
    close = np.full(len(b), 10000)
    lab = forward_labels(b, close, 180, 2, threshold=0.001)
    # day 1: 15:18 → 15:24 ok, 15:21 → 15:27 ok, 15:24 and 15:27 would cross the close
    assert lab.y.tolist() == [NEUTRAL, NEUTRAL, -1, -1, -1, -1, -1]
    assert lab.dropped == {"end_of_data": 2, "crosses_day": 2, "gap": 1}


def test_bad_parameters_are_named():
    with pytest.raises(ConfigError, match="horizon"):
        forward_labels(buckets(3), np.ones(3), 180, 0, 0.001)
    with pytest.raises(ConfigError, match="threshold"):
        forward_labels(buckets(3), np.ones(3), 180, 1, float("nan"))
