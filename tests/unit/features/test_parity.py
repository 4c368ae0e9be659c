"""Streaming = batch: every feature computed one bar at a time (FeatureBuilder, what strategies
run) equals the batch computation (build_features, what training runs), feature by feature —
on the real NIFTY 50 / India VIX 3-minute data and on synthetic option chains."""

from __future__ import annotations

import numpy as np
import pytest

from mandi.features import (
    ALL_FEATURES,
    BAR_FEATURES,
    TIME_FEATURES,
    VIX_FEATURES,
    FeatureBuilder,
    build_features,
)

from .synth import chains, market


def stream(names, series, vix=None, snaps=()):
    """Feed the builder as a live strategy sees the data: VIX bars and chain snapshots up to
    each bar's end (in time order), then the bar itself."""
    b = FeatureBuilder(names, series.timeframe)
    out = np.full((len(series), len(names)), np.nan)
    vi = si = 0
    snaps = sorted(snaps, key=lambda s: s.ts_event)
    for i in range(len(series)):
        end = int(series.bucket[i]) + series.timeframe * 10**9
        while vix is not None and vi < len(vix) and vix.bucket[vi] < end:
            b.update_vix(int(vix.bucket[vi]), int(vix.close[vi]))  # same-time VIX bar first
            vi += 1
        while si < len(snaps) and snaps[si].ts_event <= end:
            b.offer_chain(snaps[si])
            si += 1
        b.update_bar(
            int(series.bucket[i]),
            int(series.open[i]),
            int(series.high[i]),
            int(series.low[i]),
            int(series.close[i]),
        )
        out[i] = b._row
    return out


def assert_same(names, batch, online):
    for j, name in enumerate(names):
        a, o = batch[:, j], online[:, j]
        np.testing.assert_array_equal(np.isnan(a), np.isnan(o), err_msg=f"{name}: NaN pattern")
        ok = np.isfinite(a)
        assert ok.any(), f"{name} is never computed"
        np.testing.assert_allclose(o[ok], a[ok], rtol=1e-12, atol=1e-15, err_msg=name)


def test_bar_time_and_vix_features_on_real_nifty_and_vix(nifty_real, vix_real):
    names = BAR_FEATURES + TIME_FEATURES + VIX_FEATURES
    s = nifty_real.take(slice(0, 1500))  # 12 days including the VIX file's first day
    f = build_features(
        names, s.timeframe, s.bucket, s.open, s.high, s.low, s.close,
        vix=(vix_real.bucket, vix_real.close),
    )  # fmt: skip
    assert_same(names, f.X, stream(names, s, vix_real))
    assert f.complete().sum() > 600


@pytest.fixture(scope="module")
def synthetic():
    nifty, vix = market(seed=3, per_day=60)
    return nifty, vix, chains(nifty, every_s=90, strikes_each_side=8, seed=3)


def test_every_feature_on_synthetic_chains_across_an_expiry_roll(synthetic):
    nifty, vix, snaps = synthetic
    names = ALL_FEATURES
    f = build_features(
        names, nifty.timeframe, nifty.bucket, nifty.open, nifty.high, nifty.low, nifty.close,
        vix=(vix.bucket, vix.close), chains=snaps, underlying="NIFTY",
    )  # fmt: skip
    online = stream(names, nifty, vix, snaps)
    assert_same(names, f.X, online)
    # the chain features follow the front expiry: 14-Apr on the 13th and 14th, 21-Apr after
    tte = f.X[:, names.index("tte_days")]
    day = (nifty.bucket - nifty.bucket[0]) // (86_400 * 10**9)
    assert np.nanmax(tte[day == 1]) < 1 < np.nanmin(tte[day == 2])
    # each day starts without chain history for the OI windows, never with yesterday's chain
    oi30 = f.X[:, names.index("oi_chg_ce_30m")]
    assert np.isnan(oi30[day == 2][:9]).all() and np.isfinite(oi30[day == 2][12:]).any()


def test_chain_features_use_the_latest_snapshot_at_or_before_each_bar_end(synthetic):
    nifty, _, snaps = synthetic
    f = build_features(
        ("atm_iv", "pcr_oi"), 180, nifty.bucket, nifty.open, nifty.high, nifty.low, nifty.close,
        chains=snaps, underlying="NIFTY",
    )  # fmt: skip
    # dropping every snapshot but the last one before each bar end changes nothing
    ends = set((nifty.bucket + 180 * 10**9).tolist())
    last = {}
    for s in snaps:
        end = min(e for e in ends if e >= s.ts_event)
        key = (end, s.expiry)
        if key not in last or s.ts_event >= last[key].ts_event:
            last[key] = s
    g = build_features(
        ("atm_iv", "pcr_oi"), 180, nifty.bucket, nifty.open, nifty.high, nifty.low, nifty.close,
        chains=list(last.values()), underlying="NIFTY",
    )  # fmt: skip
    np.testing.assert_array_equal(f.X, g.X)
