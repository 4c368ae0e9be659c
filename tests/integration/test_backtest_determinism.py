"""Determinism: the same inputs give byte-identical JSON — three runs of each engine, in this
process and through the CLI in fresh processes."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from mandi.services.backtest.api import load_data, run

DATA = pathlib.Path(__file__).parents[1] / "data" / "NIFTY50_3min_2025-07-23_to_2026-08-04.csv"


def test_three_runs_identical_json():
    bars = load_data(DATA)
    for engine, kw in (
        ("event", {"stop_loss_pct": 0.4, "target_pct": 0.8, "allow_short": True}),
        ("vector", {"stop_loss_pct": 0.4, "target_pct": 0.8}),
    ):
        docs = [
            run(
                bars, "ema_cross", {"fast": 9, "slow": 21}, quantity=15, engine=engine, **kw
            ).to_json()
            for _ in range(3)
        ]
        assert docs[0] == docs[1] == docs[2]
        assert b'"trades"' in docs[0] and len(docs[0]) > 100_000


def test_cli_runs_identical_json(tmp_path: pathlib.Path):
    outs = []
    for k in range(2):  # fresh processes (three in-process runs are above)
        out = tmp_path / f"run{k}.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mandi",
                "backtest",
                "--data",
                str(DATA),
                "--strategy",
                "sma_cross",
                "--param",
                "fast=10",
                "--param",
                "slow=30",
                "--qty",
                "15",
                "--from",
                "2026-01-01",
                "--to",
                "2026-03-31",
                "--engine",
                "event",
                "--json",
                str(out),
            ],
            check=True,
            capture_output=True,
            timeout=240,
        )
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
