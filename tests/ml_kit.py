"""Small models for the ML tests, trained in the test (random rows, a few trees) and saved to a
registry directory exactly as ``mandi train`` saves them."""

from __future__ import annotations

import numpy as np

from mandi.ml.registry import Manifest, feature_code_hash, now_iso, save_model
from mandi.ml.train import TrainConfig, fit

NAMES = ("ret_1", "ret_3", "rsi_14", "tod")


def save(path, booster, kind, names, n, underlying=""):
    m = Manifest(
        name=f"test-{kind}" if not underlying else "alpha-test",
        kind=kind,
        features=list(names),
        feature_hash=feature_code_hash(),
        timeframe=180,
        horizon=3,
        threshold=0.0005,
        created=now_iso(),
        training_window={"start": "2026-04-13T09:15:00+05:30", "end": "", "rows": n},
        underlying=underlying,
    )
    save_model(path, booster, m)


def make_model(path, kind="lightgbm", names=NAMES, seed=0, trees=10):
    """A model on random rows whose classes follow the first two features."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(600, len(names)))
    y = (X[:, 0] > 0.4).astype(np.int8) + (X[:, 1] > -0.2).astype(np.int8)
    booster = fit(TrainConfig(model=kind, trees=trees, min_child_samples=10), X, y)
    save(path, booster, kind, names, 600)
    return path, X


# bar, time and chain features that are all known 12 minutes into a session
ALPHA_NAMES = (
    "ret_1", "ret_3", "tod", "pcr_oi", "atm_iv", "oi_chg_ce_3m", "oi_chg_pe_3m", "tte_days"
)  # fmt: skip


def alpha_model(path):
    """A model whose classes follow the last bar's return (up above +2 bp, down below −2 bp,
    neutral between), over plausible values of the other features: a strategy using it gets
    confident, changing predictions from real features."""
    rng = np.random.default_rng(7)
    n = 4000
    X = np.column_stack(
        [
            rng.normal(0, 8e-4, n),
            rng.normal(0, 1.5e-3, n),
            rng.uniform(0, 375, n),
            rng.uniform(0.5, 1.5, n),
            rng.uniform(0.05, 0.4, n),
            rng.normal(0, 2, n),
            rng.normal(0, 2, n),
            rng.uniform(0, 10, n),
        ]
    )
    y = np.where(X[:, 0] > 2e-4, 2, np.where(X[:, 0] < -2e-4, 0, 1)).astype(np.int8)
    booster = fit(TrainConfig(trees=30, min_child_samples=20), X, y)
    save(path, booster, "lightgbm", ALPHA_NAMES, n, underlying="NIFTY")
    return str(path)
