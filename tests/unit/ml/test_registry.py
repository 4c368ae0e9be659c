"""The model registry: save → load → predict gives the library's probabilities; a missing or
corrupt directory and a model trained on other features are one clear error line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mandi.ml.registry import ModelError, load_model
from ml_kit import NAMES, make_model


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost"])
def test_round_trip(tmp_path, kind):
    pytest.importorskip(kind)
    path, X = make_model(tmp_path / kind, kind)
    m = load_model(path)
    assert (m.name, m.kind, m.feature_names, m.classes) == (
        f"test-{kind}", kind, NAMES, ("down", "neutral", "up")
    )  # fmt: skip
    assert m.forest is not None  # the compiled per-row path is in use
    lib = m.predict_many(X[:50])
    one = np.array([m.predict_proba(x) for x in X[:50]])
    np.testing.assert_allclose(one, lib, rtol=0, atol=1e-12 if kind == "lightgbm" else 2e-6)
    manifest = json.loads((path / "manifest.json").read_text())
    assert {"features", "feature_hash", "training_window", "versions", "metrics"} <= set(manifest)
    assert manifest["versions"][kind]


def broken(src, tmp_path, edit):
    dst = tmp_path / "m"
    shutil.copytree(src, dst)
    edit(dst)
    return dst


def set_manifest(key, value):
    def edit(d):
        m = json.loads((d / "manifest.json").read_text())
        m[key] = value
        (d / "manifest.json").write_text(json.dumps(m))

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: shutil.rmtree(d), "no such directory"),
        (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "manifest.json is corrupt"),
        (lambda d: (d / "model.txt").unlink(), "model.txt is missing"),
        (lambda d: (d / "model.txt").write_text("garbage"), "model.txt is corrupt"),
        (set_manifest("feature_hash", "0123abcd"), "trained on feature code 0123abcd, this mandi"),
        (set_manifest("features", ["ret_1", "ret_3", "rsi_14", "alpha_magic"]), "unknown to this"),
        (set_manifest("features", ["ret_1", "ret_3"]), "takes 4 features, the manifest lists 2"),
        (set_manifest("kind", "torch"), "unknown kind 'torch'"),
    ],
)
def test_bad_model_directories_are_one_line_errors(tiny_model, tmp_path, edit, message):
    path = broken(tiny_model[0], tmp_path, edit)
    with pytest.raises(ModelError, match=message) as e:
        load_model(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
