"""``mandi features`` and ``mandi train`` on real NIFTY 50 / India VIX 3-minute bars (a short
slice): the Parquet file carries its definition and trains again, the model directory holds
model, manifest, report.json (ISO windows, baselines) and report.html; bad input is one line
and exit status 2."""

from __future__ import annotations

import json

import numpy as np
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
    # ... and the xgboost strategy trades it in a backtest, going flat on neutral predictions
    from mandi.services.backtest import run

    params = {"model": str(tmp_path / "x"), "confidence": 0.4, "exit_on_neutral": True}
    res = run(str(nifty), "xgboost", params, quantity=1)
    exits = [s for s in res.signals if s.metadata.get("exit")]
    assert len(res.trades) >= 3 and exits
    assert all(s.metadata["alpha_signal"] == "Neutral" for s in exits)
    assert "EXIT_SIGNAL" in {t.exit_reason for t in res.trades}


def test_features_with_a_chain_file_and_dl_tensors(data_dir, tmp_path):
    """One NSE option-chain snapshot (10-Jul-2026 15:30): the day's last bar gets chain
    features, and one DL tensor is written."""
    lines = (data_dir / NIFTY).read_text().splitlines()
    day = [x for x in lines if x.startswith(("2026-07-09", "2026-07-10"))]
    (tmp_path / "n.csv").write_text("\n".join([lines[0], *day]) + "\n")
    chain = data_dir / "option_chain" / "nse_oc_v3_NIFTY_2026-07-10_1530_exp2026-07-14.json"
    r = invoke(
        "features", "--data", tmp_path / "n.csv", "--chains", chain, "--underlying", "NIFTY",
        "--features", "time,chain", "--out", tmp_path / "f.parquet", "--tensors",
        tmp_path / "t.npz", "--window", "4",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    t = pq.read_table(tmp_path / "f.parquet").to_pandas()
    assert t["pcr_oi"].notna().sum() == 1 and t["pcr_oi"].iloc[-1] > 0  # only 15:27-15:30
    assert 3.5 < t["tte_days"].iloc[-1] < 4.5  # to Tue 14-Jul 15:30
    z = np.load(tmp_path / "t.npz")
    assert z["X"].shape == (1, 4, 23, 21) and z["mask"][0, -1].any() and not z["mask"][0, 0].any()


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
