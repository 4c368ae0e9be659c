"""``mandi features`` and ``mandi train`` on real NIFTY 50 / India VIX 3-minute bars (a short
slice): the Parquet file carries its definition and trains again, the model directory holds
model, manifest, report.json (ISO windows, baselines) and report.html; bad input is one line
and exit status 2."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mandi.cli import app
from mandi.ml.registry import load_model

pytest.importorskip("lightgbm")
NIFTY = "NIFTY50_3min_2025-07-23_to_2026-08-04.csv"
VIX = "INDIAVIX_3min_2025-07-30_to_2026-08-04.csv"


@pytest.fixture(scope="module")
def month(data_dir, tmp_path_factory):
    """About a month of bars of each (the CLI reads files)."""
    d = tmp_path_factory.mktemp("month")
    for name in (NIFTY, VIX):
        lines = (data_dir / name).read_text().splitlines()
        (d / name).write_text("\n".join(lines[:1] + lines[1100:3700]) + "\n")
    return d / NIFTY, d / VIX


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_features_then_train_then_load(month, tmp_path):
    nifty, vix = month
    out = tmp_path / "f.parquet"
    r = invoke("features", "--data", nifty, "--vix", vix, "--out", out, "--horizon", "5")
    assert r.exit_code == 0, r.output
    t = pq.read_table(out)
    meta = json.loads(t.schema.metadata[b"mandi.features"])
    assert meta["names"][:2] == ["ret_1", "ret_3"] and "vix" in meta["names"]
    assert {"time", "close", "fwd_ret_5", "label_5"} <= set(t.column_names)
    model = tmp_path / "model"
    r = invoke(
        "train", "--data", out, "--model", "lightgbm", "--horizon", "5", "--folds", "2",
        "--trees", "15", "--out", model, "--quiet", "--no-controls",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((model / "report.json").read_text())
    assert [f["fold"] for f in report["folds"]] == [1, 2]
    f = report["folds"][0]
    assert f["train_start"] < f["train_end"] < f["test_start"] < f["test_end"]
    assert set(report["baselines"]) == {"majority", "momentum", "logistic"}
    assert (model / "report.html").read_text().count("<img") == 3
    m = load_model(model)
    assert m.feature_names == tuple(meta["names"]) and m.horizon == 5


def test_train_from_raw_bars_with_xgboost(month, tmp_path):
    nifty = month[0]
    r = invoke(
        "train", "--data", nifty, "--model", "xgboost", "--horizon", "3", "--folds", "2",
        "--trees", "10", "--features", "bars,time", "--threshold", "0.03%", "--out",
        tmp_path / "x", "--quiet", "--no-controls",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "x" / "report.json").read_text())
    assert report["threshold"] == pytest.approx(0.0003) and "vix" not in report["features"]
    assert load_model(tmp_path / "x").kind == "xgboost"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--folds", "40"], "too little data"),
        (["--model", "torch"], "model = 'torch': use lightgbm or xgboost"),
        (["--features", "chain"], "the chain features need option-chain snapshots"),
        (["--features", "bars,rsi_99"], "rsi_99"),
        (["--threshold", "lots"], "use auto, a log return"),
        (["--embargo", "1"], "at least the label horizon"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(month, tmp_path, args, message):
    r = invoke("train", "--data", month[0], "--out", tmp_path / "m", "--quiet", *args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "m" / "manifest.json").exists()
