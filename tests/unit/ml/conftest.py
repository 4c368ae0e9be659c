"""A tiny saved model (random data, a few trees) in a temporary registry directory."""

from __future__ import annotations

import numpy as np
import pytest

from mandi.ml.registry import Manifest, feature_code_hash, now_iso, save_model
from mandi.ml.train import TrainConfig, fit

NAMES = ("ret_1", "ret_3", "rsi_14", "tod")


def make_model(path, kind="lightgbm", names=NAMES, seed=0, trees=10):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(600, len(names)))
    y = (X[:, 0] > 0.4).astype(np.int8) + (X[:, 1] > -0.2).astype(np.int8)
    booster = fit(TrainConfig(model=kind, trees=trees, min_child_samples=10), X, y)
    m = Manifest(
        name=f"test-{kind}",
        kind=kind,
        features=list(names),
        feature_hash=feature_code_hash(),
        timeframe=180,
        horizon=3,
        threshold=0.0005,
        created=now_iso(),
        training_window={"start": "2026-04-13T09:15:00+05:30", "end": "", "rows": 600},
    )
    save_model(path, booster, m)
    return path, X


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("models") / "tiny")
