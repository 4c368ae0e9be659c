"""Loaders (CSV, Yahoo, Parquet, the store), reports (JSON shape, self-contained HTML, PNG), the
store tables, sweeps and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from mandi.backtest import BacktestError
from mandi.backtest.result import TRADE_KEYS
from mandi.cli import app
from mandi.core.calendar import ist_ns
from mandi.services.backtest import run
from mandi.services.backtest.data import load, load_csv, load_store_candles, write_parquet
from mandi.services.backtest.report import save_to_store, write_html, write_json, write_png
from mandi.services.backtest.sweep import parse_param, parse_params, sweep

DATA = pathlib.Path(__file__).parents[2] / "data"
NIFTY = DATA / "NIFTY50_3min_2025-07-23_to_2026-08-04.csv"
ORCL = DATA / "backtrader_orcl-1995-2014.txt"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    lines = NIFTY.read_text().splitlines()[:3001]
    p = tmp_path_factory.mktemp("d") / "nifty_small.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_common_csv_layout(small):
    s = load_csv(small)
    assert (s.symbol, s.timeframe, len(s)) == ("NIFTY", 180, 3000)
    assert int(s.bucket[0]) == ist_ns(dt.date(2025, 7, 23), dt.time(9, 15))
    assert int(s.end[0]) == ist_ns(dt.date(2025, 7, 23), dt.time(9, 18))
    assert int(s.open[0]) == 2513935 and int(s.close[0]) == 2512325  # paise, exact


def test_yahoo_layout_is_daily_from_the_session_open():
    s = load_csv(ORCL)
    assert (s.symbol, s.timeframe, len(s)) == ("BACKTRADER", 86_400, 5036)
    assert int(s.bucket[0]) == ist_ns(dt.date(1995, 1, 3), dt.time(9, 15))
    assert int(s.end[0]) == ist_ns(dt.date(1995, 1, 3), dt.time(15, 30))
    assert int(s.close[0]) == 212  # 2.117284 rounds to 212 paise
    assert int(s.volume[0]) == 36_301_200


def test_parquet_round_trip(small, tmp_path):
    pytest.importorskip("pyarrow")
    s = load_csv(small)
    p = tmp_path / "x.parquet"
    write_parquet(s, p)
    (t,) = load(p, symbol="NIFTY")
    for col in ("bucket", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(t, col), getattr(s, col))


def test_bad_files_name_the_row_and_value(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("datetime,open,high,low,close\n2026-01-02 09:15:00,1,2,0.5,1\nnope,1,2,0.5,1\n")
    with pytest.raises(BacktestError, match="row 3: bad time 'nope'"):
        load_csv(p)
    p.write_text("datetime,open,high,low\n2026-01-02 09:15:00,1,2,0.5\n")
    with pytest.raises(BacktestError, match="no column for close"):
        load_csv(p)
    p.write_text("datetime,open,high,low,close\n2026-01-02 09:15:00,1,2,0.5,-1\n")
    with pytest.raises(BacktestError, match="column close has a bad value"):
        load_csv(p)
    with pytest.raises(BacktestError, match="no such file"):
        load_csv(tmp_path / "missing.csv")


def test_store_candles(small, tmp_path):
    from mandi.stores.sqlite import candle_row, connect

    s = load_csv(small)
    db = tmp_path / "m.db"
    con = connect(str(db))
    con.executemany(
        "INSERT INTO candles VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [candle_row(c) for c in s.candles()],
    )
    con.close()
    (t,) = load_store_candles(db, 180)
    np.testing.assert_array_equal(t.close, s.close)
    a = run(db, "sma_cross", {"fast": 10, "slow": 30}, quantity=15, engine="event")
    b = run(small, "sma_cross", {"fast": 10, "slow": 30}, quantity=15, engine="event")
    assert [x.key()[:8] for x in a.trades] == [x.key()[:8] for x in b.trades]


def test_reports(small, tmp_path):
    res = run(small, "sma_cross", {"fast": 10, "slow": 30}, quantity=15)
    assert res.trades
    write_json(res, tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert set(doc) == {"stats", "trades", "equity"}
    assert tuple(doc["trades"][0]) == TRADE_KEYS
    assert doc["stats"]["final_value"] == res.final_value
    t0 = doc["trades"][0]
    assert t0["entry_price"] == res.trades[0].entry_price / 100  # rupees
    assert t0["entry_time"].endswith("+05:30")
    assert set(doc["equity"][0]) == {"time", "value"}
    write_html(res, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "<script src=" not in page  # plotly.js is embedded: the page is self-contained
    assert "plotly" in page.lower() and "Trades" in page
    write_png(res, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    df = res.trades_frame()
    assert list(df.columns[: len(TRADE_KEYS)]) == list(TRADE_KEYS) and len(df) == len(res.trades)
    assert df["pnl"].sum() == pytest.approx(sum(t.pnl for t in res.trades) / 100)


def test_results_saved_to_the_store(small, tmp_path):
    res = run(small, "sma_cross", {"fast": 10, "slow": 30}, quantity=15)
    db = tmp_path / "m.db"
    rid = save_to_store(res, db)
    assert save_to_store(res, db) == rid  # the same run is stored once
    con = sqlite3.connect(db)
    (n, trades, final) = con.execute(
        "SELECT count(*), sum(trades), sum(final_value) FROM backtest_runs"
    ).fetchone()
    assert (n, trades, final) == (1, len(res.trades), round(res.final_value * 100))
    rows = con.execute("SELECT pnl FROM backtest_trades WHERE run_id=? ORDER BY seq", (rid,))
    assert [r[0] for r in rows] == [t.pnl for t in res.trades]


def test_param_syntax():
    assert parse_param("fast=5..30:5") == ("fast", [5, 10, 15, 20, 25, 30])
    assert parse_param("k=1..3") == ("k", [1, 2, 3])
    assert parse_param("x=0.5..1.5:0.5") == ("x", [0.5, 1.0, 1.5])
    assert parse_param("a=1,2,4") == ("a", [1, 2, 4])
    assert parse_param("b=true") == ("b", [True])
    assert parse_params(["fast=5", "slow=20..40:10"]) == ({"fast": 5}, {"slow": [20, 30, 40]})
    for bad in ("fast", "=3", "f=5..1", "f=1..5:0"):
        with pytest.raises(BacktestError):
            parse_params([bad])


def test_the_kernel_package_points_to_the_shell_entry_points():
    import mandi.backtest
    import mandi.services.backtest as shell

    for name in ("run", "replay", "sweep"):
        with pytest.raises(AttributeError, match=f"from mandi.services.backtest import {name}"):
            getattr(mandi.backtest, name)
        assert callable(getattr(shell, name))


def test_sweep_in_parallel(small):
    rows = sweep(
        small,
        "sma_cross",
        ["fast=5..15:5", "slow=10..30:10"],
        processes=2,
        progress=False,
        quantity=15,
    )
    assert len(rows) == 9
    bad = [r for r in rows if "error" in r]
    assert {(r["params"]["fast"], r["params"]["slow"]) for r in bad} == {(10, 10), (15, 10)}
    ok = [r for r in rows if "error" not in r]
    sharpe = [r["sharpe"] for r in ok if r["sharpe"] is not None]
    assert sharpe == sorted(sharpe, reverse=True)
    assert all(r["engine"] == "vector" for r in ok)
    one = run(small, "sma_cross", {"fast": 5, "slow": 30}, quantity=15)
    row = next(r for r in ok if r["params"] == {"fast": 5, "slow": 30})
    assert row["final_value"] == one.final_value


def test_cli(small, tmp_path):
    out = tmp_path / "o.json"
    r = CliRunner().invoke(
        app,
        ["backtest", "--data", str(small), "-p", "fast=10", "-p", "slow=30", "--qty", "15",
         "--json", str(out), "--engine", "event"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "final value" in r.output
    assert json.loads(out.read_text())["stats"]["trades"] > 10
    r = CliRunner().invoke(
        app, ["backtest", "--data", str(small), "-p", "fast=40", "-p", "slow=30"]
    )
    assert r.exit_code == 2 and "fast (40) must be shorter than slow (30)" in r.output
    r = CliRunner().invoke(app, ["backtest", "--data", str(tmp_path / "nope.csv")])
    assert r.exit_code == 2 and "no such file" in r.output
