"""No feature at time t depends on data after t: perturbing every bar, VIX bar and chain snapshot
after a cut leaves every row up to the cut bit-identical (and the perturbation does show after
it, so the check can fail)."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from mandi.backtest.bars import BarSeries
from mandi.features import ALL_FEATURES, build_features

from .synth import chains, market


def perturb(s: BarSeries, after: int, rng) -> BarSeries:
    f = np.ones(len(s))
    f[after:] = rng.uniform(0.9, 1.1, len(s) - after)
    scale = lambda a: np.rint(a * f).astype(np.int64)  # noqa: E731
    o, c = scale(s.open), scale(s.close)
    h = np.maximum(scale(s.high), np.maximum(o, c))
    lo = np.minimum(scale(s.low), np.minimum(o, c))
    return BarSeries(s.instrument, s.timeframe, s.bucket, o, h, lo, c, s.volume)


def features(nifty, vix, snaps):
    return build_features(
        ALL_FEATURES, nifty.timeframe, nifty.bucket, nifty.open, nifty.high, nifty.low,
        nifty.close, vix=(vix.bucket, vix.close), chains=snaps, underlying="NIFTY",
    ).X  # fmt: skip


@pytest.fixture(scope="module")
def data():
    nifty, vix = market(seed=5, per_day=50)
    return nifty, vix, chains(nifty, every_s=90, strikes_each_side=8, seed=5)


@pytest.mark.parametrize("cut", [30, 77, 120])
def test_perturbing_the_future_changes_no_past_feature(data, cut):
    nifty, vix, snaps = data
    base = features(nifty, vix, snaps)
    rng = np.random.default_rng(cut)
    end = int(nifty.bucket[cut]) + nifty.timeframe * 10**9  # the decision time of row `cut`
    later = [
        msgspec.structs.replace(
            s,
            underlying_price=int(s.underlying_price * rng.uniform(0.95, 1.05)),
            rows=tuple(
                msgspec.structs.replace(
                    r, call=msgspec.structs.replace(r.call, oi=r.call.oi * 3 + 65)
                )
                for r in s.rows
            ),
        )
        if s.ts_event > end
        else s
        for s in snaps
    ]
    moved = features(perturb(nifty, cut + 1, rng), perturb(vix, cut + 1, rng), later)
    np.testing.assert_array_equal(moved[: cut + 1], base[: cut + 1])
    changed = ~np.isclose(moved[cut + 1 :], base[cut + 1 :], equal_nan=True)
    assert changed.any(axis=0).sum() >= len(ALL_FEATURES) - 3  # nearly every feature moved
