"""The compiled forest against the libraries' own predict: LightGBM to the last bit (including
rows sitting exactly on split thresholds, NaN and zero handling), XGBoost to float32 precision
(the library computes in float32)."""

from __future__ import annotations

import numpy as np
import pytest

from mandi.ml.forest import compile_lightgbm, compile_xgboost

lgb = pytest.importorskip("lightgbm")
xgb = pytest.importorskip("xgboost")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5))
    X[::7, 1] = np.nan  # learnt missing-value directions
    X[::5, 3] = 0.0
    y = (X[:, 0] > 0.3).astype(int) + (np.nan_to_num(X[:, 1]) > 0).astype(int)
    return X, y


def probes(forest, rng):
    """Random rows, rows with NaN and exact zeros, and one row per split exactly on its
    threshold."""
    T = rng.normal(size=(500, forest.n_features))
    T[::3, 1] = np.nan
    T[::4, 2] = np.nan
    T[::5, 3] = 0.0
    split = forest.left >= 0
    P = np.tile(rng.normal(size=forest.n_features), (int(split.sum()), 1))
    P[np.arange(len(P)), forest.feature[split]] = forest.threshold[split]
    return np.vstack([T, P])


def test_lightgbm_exactly(data):
    X, y = data
    params = {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_leaves": 7}
    booster = lgb.train({**params, "num_threads": 1}, lgb.Dataset(X, y), num_boost_round=40)
    f = compile_lightgbm(booster)
    rows = probes(f, np.random.default_rng(1))
    mine = np.array([f.predict_proba(r) for r in rows])
    np.testing.assert_array_equal(mine, booster.predict(rows))


def test_xgboost_to_float32_precision(data):
    X, y = data
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=40)
    f = compile_xgboost(booster)
    rows = probes(f, np.random.default_rng(2))
    mine = np.array([f.predict_proba(r) for r in rows])
    lib = booster.inplace_predict(rows)
    np.testing.assert_allclose(mine, lib, rtol=0, atol=2e-6)
    assert (mine.argmax(axis=1) == lib.argmax(axis=1)).mean() > 0.999
