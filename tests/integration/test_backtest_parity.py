"""Live/backtest parity: a paper session recorded by ``mandi run`` on the simulator, replayed tick
by tick through the backtester, reproduces every signal the live run made and every paper fill
(id, order, time, quantity, price, charges)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from mandi.services.backtest import replay

CONFIG = """
[sim]
underlyings = ["NIFTY"]
stocks = ["RELIANCE", "INFY"]
strikes_each_side = 4

[[strategies]]
name = "sma_cross"
id = "sma_fast"
symbols = ["RELIANCE", "INFY"]
timeframe = 60
params = { fast = 3, slow = 8 }

[[strategies]]
name = "momentum"
id = "mom"
symbols = ["RELIANCE"]
timeframe = 60
params = { lookback = 3, threshold_pct = 0.05 }

[[strategies]]
name = "ema_cross"          # an index signal: trades a NIFTY option picked from the chain
id = "ema_nifty"
symbols = ["NIFTY"]
timeframe = 60
params = { fast = 3, slow = 8 }
"""


@pytest.mark.slow
def test_replay_reproduces_signals_and_paper_fills(tmp_path: pathlib.Path):
    cfg = tmp_path / "parity.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "session.db"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mandi",
            "run",
            "--config",
            str(cfg),
            "--date",
            "2026-04-13",
            "--seed",
            "11",
            "--until",
            "09:50",
            "--speed",
            "inf",
            "--db",
            str(db),
            "--no-dashboard",
            "--status-interval",
            "0",
        ],
        check=True,
        capture_output=True,
        timeout=280,
    )
    rep = replay(db, str(cfg))
    assert rep.ticks > 50_000
    assert len(rep.recorded_signals) >= 10, "the session should trade"
    assert len(rep.recorded_fills) >= 10
    assert any(s[1] == "ema_nifty" for s in rep.recorded_signals)
    assert rep.signals_match, rep.differences()
    assert rep.fills_match, rep.differences()
    assert rep.notes[0].startswith(f"{rep.ticks} of {rep.ticks}")
