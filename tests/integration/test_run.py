"""``mandi run`` as a subprocess: a short run, a bad config, and SIGKILL + restart."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from mandi.model.batches import TICK_FIELDS
from mandi.stores.ticks import read_ticks

ARGS = ["--date", "2026-04-13", "--seed", "11", "--status-interval", "1", "--no-dashboard"]


def mandi(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "mandi", *args],
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 180),
        **kw,
    )


def rows(db, sql):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_short_run_stores_ticks_and_candles(tmp_path):
    db = str(tmp_path / "run.db")
    p = mandi("run", "--db", db, "--speed", "inf", "--until", "09:17", *ARGS)
    assert p.returncode == 0, p.stderr
    assert "ticks=" in p.stderr  # the status line (not a terminal)
    con = sqlite3.connect(db)
    try:
        assert len(read_ticks(con)) > 10_000  # tick blocks
    finally:
        con.close()
    tfs = dict(rows(db, "SELECT timeframe, count(*) FROM candles GROUP BY timeframe"))
    assert tfs[60] > 100  # the 09:15 minute confirmed
    assert 1 not in tfs  # 1 s candles live in memory by default (store.second_candles)
    kinds = [k for (k,) in rows(db, "SELECT event_type FROM system_events ORDER BY id")]
    assert kinds == ["started", "stopped"]


def test_duration_stops_a_paced_run_on_time(tmp_path):
    db = str(tmp_path / "paced.db")
    t0 = time.monotonic()
    p = mandi("run", "--db", db, "--speed", "30", "--duration", "4", *ARGS)
    assert p.returncode == 0, p.stderr
    assert "stopping: duration 4 s elapsed" in p.stderr
    assert time.monotonic() - t0 < 60  # start-up + 4 s + shutdown, not the whole session
    stats = mandi("db", "stats", "--db", db, "--json")
    assert '"candles"' in stats.stdout and stats.returncode == 0


def test_a_bad_config_value_stops_start_up_with_one_line(tmp_path):
    p = mandi("run", "--db", str(tmp_path / "x.db"), "--speed", "-3")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "mandi: config run.speed = -3.0: Expected `float` > 0.0"
    ]
    env = {**os.environ, "MANDI_PIPELINE__TIMEFRAMES": "[60, -5]"}
    p = mandi("run", "--db", str(tmp_path / "x.db"), env=env)
    assert p.returncode == 2 and "pipeline.timeframes[1]" in p.stderr


def stored_ticks(db):
    """Every stored tick (blocks and rows) but its ``ts_init``, in time and token order."""
    con = sqlite3.connect(db)
    try:
        b = read_ticks(con)
    finally:
        con.close()
    rest = [f for f in TICK_FIELDS if f != "ts_init"]
    return sorted(zip(*(getattr(b, f).tolist() for f in rest), strict=True))


def dump(db):
    return {
        "candles": rows(db, "SELECT * FROM candles ORDER BY timeframe, bucket, token"),
        "ticks": stored_ticks(db),
        "indicators": rows(
            db, "SELECT * FROM indicator_values ORDER BY timeframe, bucket, token, name"
        ),
    }


@pytest.mark.slow
def test_sigkill_and_restart_loses_and_duplicates_nothing(tmp_path):
    clean, crashed = str(tmp_path / "clean.db"), str(tmp_path / "crashed.db")
    p = mandi("run", "--db", clean, "--speed", "inf", "--until", "09:26", *ARGS)
    assert p.returncode == 0, p.stderr
    env = {**os.environ, "MANDI_INDICATORS__SNAPSHOT_INTERVAL_S": "0.5"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mandi",
            "run",
            "--db",
            crashed,
            "--speed",
            "40",
            "--until",
            "09:26",
            *ARGS,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # wait until indicator values and a snapshot are stored
        time.sleep(0.3)
        if os.path.exists(crashed):
            try:
                n = rows(crashed, "SELECT count(*) FROM indicator_values")[0][0]
                snaps = rows(crashed, "SELECT count(*) FROM indicator_snapshots")[0][0]
            except sqlite3.OperationalError:
                continue
            if n > 100 and snaps:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (
        rows(crashed, "SELECT max(bucket) FROM candles")[0][0]
        < rows(clean, "SELECT max(bucket) FROM candles")[0][0]
    )  # it really died mid-run
    p = mandi("run", "--db", crashed, "--speed", "inf", "--until", "09:26", *ARGS)
    assert p.returncode == 0, p.stderr
    assert "resuming the simulated market" in p.stderr
    assert "indicators: restored a snapshot" in p.stderr
    a, b = dump(clean), dump(crashed)
    assert len(a["candles"]) == len(b["candles"])  # no duplicate, no gap
    assert a["candles"] == b["candles"]
    assert len(a["ticks"]) > 10_000 and a["ticks"] == b["ticks"]
    assert len(a["indicators"]) > 1000
    assert a["indicators"] == b["indicators"]  # values identical after restore + replay


def test_values_lost_between_candle_and_value_commits_are_rebuilt_on_restart(tmp_path):
    """A crash can land after candles were committed and before their indicator values were:
    the warm start's replay stores the values it recomputes."""
    db = str(tmp_path / "v.db")
    p = mandi("run", "--db", db, "--speed", "inf", "--until", "09:26", *ARGS)
    assert p.returncode == 0, p.stderr
    clean = rows(db, "SELECT * FROM indicator_values ORDER BY timeframe, bucket, token, name")
    assert len(clean) > 1000
    con = sqlite3.connect(db)
    con.execute("DELETE FROM indicator_values")
    con.execute("DELETE FROM indicator_snapshots")
    con.commit()
    con.close()
    p = mandi("run", "--db", db, "--speed", "inf", "--until", "09:26", *ARGS)
    assert p.returncode == 0, p.stderr
    assert "indicators warm: replayed" in p.stderr
    assert (
        rows(db, "SELECT * FROM indicator_values ORDER BY timeframe, bucket, token, name") == clean
    )
