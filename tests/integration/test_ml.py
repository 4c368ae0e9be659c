"""The ML pipeline end to end with a model trained in the test (tests/ml_kit.py):

* ``mandi run`` in paper mode: the ``alpha`` strategy computes its features from the live bars
  and option chain, and buys NIFTY options through the strike selector — entering, reversing,
  and going flat on a neutral prediction;
* ``mandi backtest --strategy alpha`` on that recorded session (the CLI in-process);
* ``mandi serve-model --db``: train → save → load → serve → predict gives the in-process
  probabilities bit for bit, for a feature row and for a symbol's latest bar from the store; bad
  requests are HTTP 422 naming the fields, counted, never a default prediction; /predict needs a
  token, /health does not.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

pytest.importorskip("lightgbm")

from mandi.ml.registry import load_model
from mandi.web.security import TokenStore
from ml_kit import ALPHA_NAMES as NAMES
from ml_kit import alpha_model
from ports import free_port

CONFIG = """
[sim]
underlyings = ["NIFTY"]
stocks = []
strikes_each_side = 6

[store]
store_ticks = false

[history]
sessions = 0  # the recorded store is the run's day alone (features' completeness below)

[indicators]
enabled = false

[pipeline]
timeframes = [60, 180]

[chains]
strikes_each_side = 6

[[strategies]]
name = "alpha"
symbols = ["NIFTY"]
timeframe = 180
params = {{ model = "{model}", confidence = 0.55, min_premium = 1.0 }}
"""


def mandi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mandi", *args], capture_output=True, text=True, timeout=600
    )


@contextlib.contextmanager
def server(model: str, *extra: str):
    """``mandi serve-model`` on a free loopback port with a fresh read token."""
    tokens = os.path.join(os.path.dirname(model), "tokens.json")
    _, secret = TokenStore(tokens).create("read", "test")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mandi", "serve-model", "--model", model, "--port", str(port),
         "--tokens-file", tokens, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=30) as client:
            deadline = time.monotonic() + 120
            while True:  # wait for the server to answer (generous: a loaded machine)
                try:
                    if client.get(f"{url}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "serve-model did not come up"
                time.sleep(0.1)
            yield url, {"Authorization": f"Bearer {secret}"}, client
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A model, and a paper session of mandi run trading it (09:15 → 09:46)."""
    d = tmp_path_factory.mktemp("alpha")
    model = alpha_model(d / "model")
    cfg = d / "alpha.toml"
    cfg.write_text(CONFIG.format(model=model))
    db = str(d / "run.db")
    p = mandi(
        "run", "-c", str(cfg), "--db", db, "--date", "2026-04-13", "--seed", "5", "--until",
        "09:46", "--speed", "inf", "--no-dashboard", "--status-interval", "0",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    return model, db


@pytest.fixture(scope="module")
def served(session):
    model, db = session
    with server(model, "--db", db) as (url, auth, client):
        yield load_model(model), url, auth, client


def q(db: str, sql: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_alpha_trades_atm_options_in_paper_mode(session):
    _, db = session
    sigs = q(db, "SELECT action, symbol, status, reason, metadata FROM trading_signals")
    assert sigs, "the alpha strategy never signalled"
    metas = [json.loads(s[4]) for s in sigs]
    assert all(m["model"] == "alpha-test" for m in metas)
    for m in metas:
        assert set(m["probabilities"]) == {"Bearish", "Neutral", "Bullish"}
        assert abs(sum(m["probabilities"].values()) - 1) < 1e-5
    assert {s[1] for s in sigs} == {"NIFTY"}  # the strategy signals on the index ...
    fills = q(db, "SELECT symbol, side FROM fills ORDER BY rowid")
    bought = [f[0] for f in fills if f[1] == "BUY"]
    assert len(bought) >= 2  # ... and the engine buys its options: a call or a put by the signal
    assert all(s.startswith("NIFTY") and s[-2:] in ("CE", "PE") for s in bought)
    entries = [m for m in metas if not m.get("exit")]
    assert {m["option_type"] for m in entries} == {"CE", "PE"}
    assert all(m["atm_premium"] >= 100 for m in entries)
    # a neutral prediction while holding: the strategy goes flat (a close, nothing opened)
    flat = [s for s, m in zip(sigs, metas, strict=True) if m.get("exit")]
    assert flat and flat[0][2] == "ORDERED" and flat[0][3] == "closing the position"
    assert any(f[1] == "SELL" for f in fills)


def test_alpha_backtests_on_the_recorded_session(session, tmp_path):
    from typer.testing import CliRunner

    from mandi.cli import app

    model, db = session
    out = tmp_path / "bt.json"
    r = CliRunner().invoke(
        app,
        ["backtest", "--data", db, "--symbol", "NIFTY", "--timeframe", "180", "--chains", db,
         "--strategy", "alpha", "--param", f"model={model}", "--param", "confidence=0.55",
         "--param", "min_premium=1", "--qty", "1", "--json", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output[-3000:]
    stats = json.loads(out.read_text())["stats"]
    assert stats["strategy"] == "alpha" and stats["trades"] + stats["open_positions"] >= 1


def test_round_trip_in_process_equals_http(served):
    local, url, auth, client = served
    rows = np.random.default_rng(3).normal(size=(20, len(NAMES))) * 1e-3 + [
        0, 0, 100, 1, 0.15, 0, 0, 3
    ]  # fmt: skip
    h = client.get(f"{url}/health").json()
    assert h["status"] == "ok" and h["model"]["name"] == local.name and h["compiled"]
    one = {"features": dict(zip(NAMES, rows[0].tolist(), strict=True))}
    r = client.post(f"{url}/predict", json=one, headers=auth)
    assert r.status_code == 200, r.text
    got = r.json()
    expected = local.predict_proba(rows[0]).tolist()
    assert [got["probabilities"][c] for c in local.classes] == expected  # bit for bit
    assert got["signal"] in ("Bearish", "Neutral", "Bullish") and got["model"] == local.name
    assert got["confidence"] == max(expected)
    many = {"rows": [dict(zip(NAMES, x.tolist(), strict=True)) for x in rows]}
    r = client.post(f"{url}/predict", json=many, headers=auth)
    probs = [[p["probabilities"][c] for c in local.classes] for p in r.json()["predictions"]]
    assert np.array_equal(probs, [local.predict_proba(x) for x in rows])


def test_serve_model_predicts_a_symbol_from_the_store(served):
    local, url, auth, client = served
    r = client.post(f"{url}/predict", json={"symbol": "NIFTY"}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    row = np.array([body["features"][n] for n in NAMES])
    expected = local.predict_proba(row).tolist()
    assert [body["probabilities"][c] for c in local.classes] == expected
    assert body["time"].startswith("2026-04-13T09:4")  # the last bar recorded
    assert 0 < body["features"]["tte_days"] < 2  # the 14-Apr weekly, the next day
    r = client.post(f"{url}/predict", json={"symbol": "BANKNIFTY"}, headers=auth)
    assert r.status_code == 422 and "BANKNIFTY" in r.json()["message"]


def test_bad_requests_are_refused_named_and_counted(served):
    _, url, auth, client = served
    row = dict.fromkeys(NAMES, 0.1)
    before = client.get(f"{url}/health").json()

    def post(body=None, content=None, headers=auth):
        kw = {"json": body} if content is None else {"content": content}
        h = headers if content is None else {**headers, "content-type": "application/json"}
        return client.post(f"{url}/predict", headers=h, **kw)

    assert post({"features": row}, headers={}).status_code == 401
    assert post({"features": row}, headers={"Authorization": "Bearer mandi_x"}).status_code == 401
    r = post({"features": {k: v for k, v in row.items() if k != "atm_iv"}})
    assert r.status_code == 422
    assert r.json()["fields"] == ["features.atm_iv"] and "missing" in r.json()["message"]
    r = post({"features": {**row, "alpha": 1.0}})
    assert r.status_code == 422 and r.json()["fields"] == ["features.alpha"]
    r = post({"features": {**row, "tod": None, "ret_1": "x"}})
    assert r.status_code == 422 and r.json()["fields"] == ["features.ret_1", "features.tod"]
    assert "Traceback" not in r.text
    r = post(content=b"{nope")
    assert r.status_code == 422 and r.json()["error"] == "invalid_body"
    assert post({"features": row, "symbol": "NIFTY"}).status_code == 422
    after = client.get(f"{url}/health").json()
    assert after["rejected"] - before["rejected"] == 5
    assert after["unauthorized"] - before["unauthorized"] == 2
    assert after["predictions"] == before["predictions"]  # no default prediction slipped out


def test_features_from_the_recorded_store(session, tmp_path):
    """``mandi features`` on the store ``mandi run`` wrote: its 3-minute candles, its INDIA VIX
    and its option chains (every 30 s) give complete rows after the first half hour."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from mandi.cli import app

    _, db = session
    out = tmp_path / "f.parquet"
    r = CliRunner().invoke(app, ["features", "--data", db, "--symbol", "NIFTY", "--out", str(out)])
    assert r.exit_code == 0, r.output
    t = pq.read_table(out).to_pandas()
    assert len(t) >= 9 and {"vix", "pcr_oi", "oi_chg_pe_30m"} <= set(t.columns)
    assert t["pcr_oi"].notna().all() and t["oi_chg_ce_3m"].iloc[1:].notna().all()
    assert t["tte_days"].between(0.2, 0.3).all()  # 13-Apr-2026: a Monday expiry (14th a holiday)
