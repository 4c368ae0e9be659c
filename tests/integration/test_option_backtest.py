"""An option-leg backtest on a session recorded by ``mandi run``: the short straddle trades the
recorded CE and PE contracts and every fill equals the recorded quote (bid for a sell, ask for a
buy) of the snapshot it filled on; ``mandi backtest --json`` names each trade's contract."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from mandi.services.backtest import run

CONFIG = """\
strategies = []
[sim]
underlyings = ["NIFTY"]
stocks = []
strikes_each_side = 8
[pipeline]
timeframes = [60]
[indicators]
specs = []
"""
PARAMS = {"entry": "09:17", "exit": "09:27", "stop_loss_pct": 30}


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("recorded")
    (d / "m.toml").write_text(CONFIG)
    db = str(d / "session.db")
    args = ["--config", str(d / "m.toml"), "--db", db, "--date", "2026-04-13", "--seed", "3"]
    args += ["--until", "09:30", "--speed", "inf", "--no-dashboard", "--status-interval", "0"]
    p = subprocess.run(
        [sys.executable, "-m", "mandi", "run", *args], capture_output=True, text=True, timeout=240
    )
    assert p.returncode == 0, p.stderr
    return db


def recorded_quotes(db: str) -> dict[tuple[str, int], tuple[int, int, int]]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT symbol, timestamp, ltp, bid, ask FROM option_chain_snapshots")
        return {(s, ts): (ltp, bid, ask) for s, ts, ltp, bid, ask in rows}
    finally:
        con.close()


def test_fills_are_the_recorded_quotes_of_ce_and_pe_legs(session):
    res = run(session, "short_straddle", PARAMS)
    assert res.stats["engine"] == "option-legs" and res.stats["risk_denials"] == {}
    quotes = recorded_quotes(session)
    kinds = {t.symbol[-2:] for t in res.trades}
    assert kinds == {"CE", "PE"} and len(res.trades) == 2
    assert len(res.fills) == 4
    for f in res.fills:
        # a fill lands on a snapshot's moment, or 1 ns after it for a stop that quote triggered
        snap_ts = f.ts_event - f.ts_event % 10**9
        ltp, bid, ask = quotes[(f.symbol, snap_ts)]
        assert f.price == (ask if f.side.value == "BUY" else bid), (f, ltp, bid, ask)
    (s,) = res.structures
    assert len(s["legs"]) == 2 and s["pnl"] == pytest.approx(sum(t.pnl for t in res.trades) / 100)


def test_cli_backtest_of_a_recorded_session(session, tmp_path):
    out = tmp_path / "bt.json"
    p = subprocess.run(
        [sys.executable, "-m", "mandi", "backtest", "--data", session, "--strategy",
         "short_straddle", *(x for k, v in PARAMS.items() for x in ("--param", f"{k}={v}")),
         "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "structures" in p.stdout and "legs" in p.stdout
    doc = json.loads(out.read_text())
    syms = [t["symbol"] for t in doc["trades"]]
    assert sorted(x[-2:] for x in syms) == ["CE", "PE"] and all(x.startswith("NIFTY") for x in syms)
    assert doc["structures"][0]["legs"] and doc["stats"]["underlying"] == "NIFTY"


def test_basket_show_on_the_recorded_session(session):
    base = [sys.executable, "-m", "mandi", "basket", "show", "NIFTY", "--db", session]
    p = subprocess.run(
        [*base, "iron_condor", "--offset", "2", "--json"], capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [leg["side"] for leg in doc["legs"]] == ["BUY", "SELL", "SELL", "BUY"]
    assert doc["net_premium"] > 0 and doc["max_profit"] == pytest.approx(doc["net_premium"])
    assert doc["max_loss"] < 0 and len(doc["breakevens"]) == 2
    assert doc["margin"]["hedge_benefit"] > 0
    # the stored quotes are what the legs are priced at: a sell at the bid, a buy at the ask
    quotes = recorded_quotes(session)
    stamp = max(ts for (_, ts) in quotes)
    for leg in doc["legs"]:
        _, bid, ask = quotes[(leg["symbol"], stamp)]
        assert round(leg["price"] * 100) == (ask if leg["side"] == "BUY" else bid)
    bad = subprocess.run(
        [*base, "--leg", "SELL:NIFTYNOPE:1", "--leg", f"BUY:{doc['legs'][0]['symbol']}:1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "leg 1 (NIFTYNOPE): unknown contract" in bad.stderr
