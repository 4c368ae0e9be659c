"""The chain view after a restart (#13): the strike spacing comes from the instrument master, not
from the first (sparse) snapshot of the day, and a node restarted mid-session shows the same
chain as one that never stopped — the matrix the dashboard reads, and ``mandi chain show``.

Two runs of the simulated NIFTY market from 09:15 to 09:18:55 on the node ``mandi run`` uses
(its chain layer): one uninterrupted, one stopped at 09:15:45 and restarted on the same database
(resuming the day) — so that even the 3-minute OI windows at the end reach back only to what both
nodes computed live (earlier, a restarted node's windows use the stored 30-second snapshots).
A chain stamped S holds the quotes before S, so the first stored snapshot is 09:15:30 — the
first the restarted node replays; the options trade rarely here (``option_tick_probability``),
so only a few of the 41 listed strikes have traded by then and its strikes are far apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import sqlite3
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mandi.cli import app
from mandi.config import load_config
from mandi.options.chain.analytics import ChainAnalytics
from mandi.options.chain.matrix import _infer_step
from mandi.services.chains import ChainLayer
from mandi.services.node import MarketNode

STEP = 50.0  # NIFTY's listed strikes (the simulator's real spacing)
SETTINGS = {
    "sim.date": "2026-04-13",
    "sim.underlyings": ("NIFTY",),
    "sim.stocks": (),
    "run.speed": math.inf,
    "run.status_interval": 0.0,
    "sim.option_tick_probability": 0.003,  # a sparse first stored snapshot (module docstring)
}


def run(db: str, until: str) -> dict[Any, ChainAnalytics]:
    cfg = load_config(env={}, overrides={**SETTINGS, "store.db": db, "run.until": until})
    layer = ChainLayer(cfg.chains)
    node = MarketNode(cfg, layers=[layer])
    assert asyncio.run(node.run()) == 0
    assert layer.matrix is not None
    chains = layer.matrix.keys()  # (underlying, expiry) pairs: a method, not a dict
    return {key: layer.matrix.analytics(*key) for key in chains}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: Any) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("chains")
    straight, restarted = str(d / "straight.db"), str(d / "restarted.db")
    out = {"straight_db": straight, "restarted_db": restarted}
    out["straight"] = run(straight, "09:18:55")
    run(restarted, "09:15:45")
    con = sqlite3.connect(restarted)
    first = con.execute(
        "SELECT expiry, strike FROM option_chain_snapshots WHERE timestamp = "
        "(SELECT min(timestamp) FROM option_chain_snapshots) GROUP BY expiry, strike"
    ).fetchall()
    con.close()
    out["first_snapshot_strikes"] = {
        e: [k / 100 for x, k in first if x == e] for e in sorted({e for e, _ in first})
    }
    out["restarted"] = run(restarted, "09:18:55")
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def test_the_first_stored_snapshot_is_sparse(runs: dict[str, Any]) -> None:
    # the premise: the spacing inferred from the first stored snapshot would be wrong
    steps = {e: _infer_step(np.array(ks)) for e, ks in runs["first_snapshot_strikes"].items()}
    assert all(len(ks) < 30 for ks in runs["first_snapshot_strikes"].values())  # of 41
    assert any(step != STEP for step in steps.values()), steps


def test_a_restarted_node_shows_the_chain_of_an_uninterrupted_one(runs: dict[str, Any]) -> None:
    straight, restarted = runs["straight"], runs["restarted"]
    assert straight.keys() == restarted.keys() and len(straight) >= 2  # weekly and monthly
    for key, a in straight.items():
        b = restarted[key]
        assert a.ts_event == b.ts_event
        assert a.strike_step == b.strike_step == STEP
        assert a.atm_strike in a.strikes  # the ATM strike is on the grid
        assert np.allclose(np.diff(b.strikes), STEP)
        for f in dataclasses.fields(ChainAnalytics):
            if f.name != "slot":  # the place in the ring, not part of the view
                assert same(getattr(a, f.name), getattr(b, f.name)), (key, f.name)
        # the 3-minute OI windows are live (for the few strikes that trade here; deterministic)
        assert np.isfinite(a.oi_change_pct[0]).sum() > 5


def test_mandi_chain_show_grids_at_the_listed_spacing(runs: dict[str, Any]) -> None:
    outputs = []
    for db in (runs["straight_db"], runs["restarted_db"]):
        args = ["chain", "show", "NIFTY", "--db", db, "--strikes", "5", "--json"]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        outputs.append(json.loads(r.stdout))
    a, b = outputs
    assert a == b  # the same chain, restarted or not
    strikes = [row["strike"] for row in a["rows"]]
    atm = a["atm_strike"]
    assert strikes == [atm + STEP * i for i in range(-5, 6)]  # 11 strikes, 50 apart, ATM in it
