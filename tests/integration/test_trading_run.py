"""``mandi run`` trading on the simulated market, as a subprocess: paper trading with status, the
trading CLI, manual orders through the running node, modes, and SIGKILL crash/restart."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

DATE = ["--date", "2026-04-13", "--seed", "11", "--no-dashboard"]
CONFIG = """
[sim]
underlyings = ["NIFTY"]
stocks = ["RELIANCE", "INFY"]
strikes_each_side = 6

[indicators]
enabled = false

[chains]
enabled = false

[trading]
allow_short = true

[risk]
max_concurrent_positions = 6
max_daily_loss_inr = 100000

[[strategies]]
name = "sma_cross"
symbols = ["NIFTY", "RELIANCE", "INFY"]
timeframe = 60
params = { fast = 2, slow = 5 }

[[strategies]]
name = "momentum"
symbols = ["RELIANCE"]
timeframe = 60
params = { lookback = 3, threshold_pct = 0.05 }
"""


@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "trading.toml"
    p.write_text(CONFIG)
    return str(p)


def mandi(*args: str, timeout: float = 180, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mandi", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mandi", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows(db: str, sql: str, args: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def count(db: str, sql: str) -> int:
    r = rows(db, sql)
    return int(r[0][0]) if r else 0


def check_books(db: str) -> None:
    """Every order at most once, every position equal to the sum of its fills, our view of every
    order equal to the broker's."""
    # one entry order group per signal, every id unique (the primary keys enforce the rest)
    assert (
        rows(
            db,
            "SELECT signal_id FROM orders WHERE intent='ENTRY' AND signal_id != '' "
            "GROUP BY signal_id HAVING count(DISTINCT parent_id) > 1",
        )
        == []
    )
    assert (
        rows(
            db,
            "SELECT client_order_id FROM paper_orders WHERE client_order_id NOT IN "
            "(SELECT order_id FROM orders)",
        )
        == []
    )
    # fills add up per order, and match the broker's book
    assert (
        rows(
            db,
            "SELECT o.order_id FROM orders o LEFT JOIN (SELECT order_id, sum(quantity) q "
            "FROM fills GROUP BY order_id) f ON f.order_id = o.order_id "
            "WHERE o.filled_qty != coalesce(f.q, 0)",
        )
        == []
    )
    assert (
        rows(
            db,
            "SELECT o.order_id FROM orders o JOIN paper_orders p ON p.client_order_id = "
            "o.order_id WHERE p.filled_qty != o.filled_qty",
        )
        == []
    )
    # positions equal the sum of their fills
    assert (
        rows(
            db,
            """
        SELECT p.position_id FROM positions p LEFT JOIN (
            SELECT position_id,
                   sum(CASE WHEN intent='ENTRY' THEN quantity ELSE 0 END) AS bought,
                   sum(CASE WHEN intent='EXIT' THEN quantity ELSE 0 END) AS sold
            FROM fills GROUP BY position_id) f ON f.position_id = p.position_id
        WHERE p.quantity != coalesce(f.bought, 0) - coalesce(f.sold, 0)
           OR p.entry_qty != coalesce(f.bought, 0)
           OR (p.status = 'CLOSED') != (p.quantity = 0)""",
        )
        == []
    )
    assert (
        rows(
            db,
            "SELECT fill_id FROM fills WHERE position_id NOT IN "
            "(SELECT position_id FROM positions)",
        )
        == []
    )


def test_paper_trading_run_with_status_and_the_trading_cli(tmp_path, cfg):
    db = str(tmp_path / "run.db")
    p = mandi(
        "run",
        "-c",
        cfg,
        "--db",
        db,
        "--speed",
        "inf",
        "--until",
        "09:35",
        "--status-interval",
        "0.5",
        *DATE,
    )
    assert p.returncode == 0, p.stderr
    assert "| paper signals=" in p.stderr  # the status line shows trading
    signals = count(db, "SELECT count(*) FROM trading_signals")
    orders = count(db, "SELECT count(*) FROM orders")
    fills = count(db, "SELECT count(*) FROM fills")
    assert signals >= 5 and orders >= 3 and fills >= 3, (signals, orders, fills)
    assert count(db, "SELECT count(*) FROM positions") >= 1
    assert count(db, "SELECT count(*) FROM trading_signals WHERE status='NEW'") == 0
    assert count(db, "SELECT count(*) FROM daily_performance WHERE date='2026-04-13'") == 1
    kinds = {k for (k,) in rows(db, "SELECT event_type FROM system_events")}
    assert {"started", "trading_started", "stopped"} <= kinds
    check_books(db)
    # the CLI reads the same database
    out = mandi("positions", "--db", db, "--all", "--json")
    assert out.returncode == 0 and len(json.loads(out.stdout)) >= 1
    out = mandi("orders", "--db", db, "--json", "-n", "500")
    assert len(json.loads(out.stdout)) == orders
    out = mandi("signals", "--db", db, "--json", "-n", "500")
    got = json.loads(out.stdout)
    assert len(got) == signals and {"signal_id", "strategy", "action", "status"} <= set(got[0])
    table = mandi("orders", "--db", db)
    assert table.returncode == 0 and "orders" in table.stdout
    # kill switch
    assert "HALTED" in mandi("halt", "--db", db, "--reason", "test halt").stdout
    assert "already HALTED" in mandi("halt", "--db", db).stdout
    assert "resumed" in mandi("resume", "--db", db).stdout
    # a manual order needs a running node
    no_node = mandi("order", "buy", "RELIANCE", "--qty", "1", "--db", db)
    assert no_node.returncode == 2 and "no running mandi node" in no_node.stderr


def test_manual_order_through_a_running_node(tmp_path, cfg):
    db = str(tmp_path / "live.db")
    proc = spawn(
        "run",
        "-c",
        cfg,
        "--db",
        db,
        "--speed",
        "3",
        "--duration",
        "60",
        "--status-interval",
        "30",
        *DATE,
    )
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not rows(
            db, "SELECT value FROM meta WHERE key='trading.heartbeat'"
        ):
            time.sleep(0.2)
        time.sleep(2)  # some market data first
        ok = mandi("order", "buy", "RELIANCE", "--qty", "2", "--db", db, "--wait", "15")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "order accepted (paper mode)" in ok.stdout
        bad = mandi("order", "buy", "NIFTY", "--qty", "1", "--db", db, "--wait", "15")
        assert bad.returncode == 3 and "not_tradable" in bad.stderr
        lot = mandi("order", "sell", "INFY", "--qty", "5", "--db", db, "--wait", "15")
        assert lot.returncode == 3 and "nothing_to_sell" in lot.stderr
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not rows(
            db, "SELECT 1 FROM positions WHERE strategy='manual'"
        ):
            time.sleep(0.2)
        held = rows(db, "SELECT quantity, status FROM positions WHERE strategy='manual'")
        assert held == [(2, "OPEN")]
        req = rows(db, "SELECT status, rule FROM order_requests ORDER BY id")
        assert req == [("ACCEPTED", ""), ("DENIED", "not_tradable"), ("DENIED", "nothing_to_sell")]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    check_books(db)


def test_live_mode_refuses_to_start_and_logging_mode_places_nothing(tmp_path, cfg):
    db = str(tmp_path / "m.db")
    p = mandi("run", "-c", cfg, "--db", db, "--mode", "live", *DATE)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("mandi: config trading.broker")
    env = {**os.environ, "MANDI_TRADING__BROKER": "kite"}
    p = mandi("run", "-c", cfg, "--db", db, "--mode", "live", *DATE, env=env)
    assert p.returncode == 2 and "no such live broker" in p.stderr
    p = mandi(
        "run",
        "-c",
        cfg,
        "--db",
        db,
        "--mode",
        "logging",
        "--speed",
        "inf",
        "--until",
        "09:28",
        "--status-interval",
        "0",
        *DATE,
    )
    assert p.returncode == 0, p.stderr
    assert "LOGGING ONLY" in p.stderr
    assert count(db, "SELECT count(*) FROM trading_signals WHERE status='LOGGED'") >= 1
    assert count(db, "SELECT count(*) FROM orders") == 0
    assert count(db, "SELECT count(*) FROM paper_orders") == 0


@pytest.mark.slow
def test_sigkill_while_paper_trading_loses_and_duplicates_nothing(tmp_path, cfg):
    """Kill ``mandi run`` at random moments while it trades; restart each time. No order is
    placed twice, positions equal their fills, the broker's book and ours agree, and a HALTED
    latch set between runs holds across the restart."""
    db = str(tmp_path / "crash.db")
    rnd = random.Random(20260413)
    args = [
        "run",
        "-c",
        cfg,
        "--db",
        db,
        "--speed",
        "inf",
        "--until",
        "09:35",
        "--status-interval",
        "0",
        *DATE,
    ]
    kills = 0
    for _ in range(3):
        proc = spawn(*args)
        start = time.monotonic()
        before = count(db, "SELECT count(*) FROM orders")
        while time.monotonic() - start < 60 and proc.poll() is None:
            time.sleep(0.05)
            if count(db, "SELECT count(*) FROM orders") > before:
                break  # it is trading now
        time.sleep(rnd.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        check_books(db)  # consistent even straight after a kill
    assert kills >= 2
    orders_before = count(db, "SELECT count(*) FROM orders WHERE intent='ENTRY'")
    assert orders_before > 0
    assert mandi("halt", "--db", db, "--reason", "crash test").returncode == 0
    ordered = count(db, "SELECT count(*) FROM trading_signals WHERE status='ORDERED'")
    p = mandi(*[a if a != "09:35" else "09:40" for a in args])  # new market while halted
    assert p.returncode == 0, p.stderr
    assert "latch HALTED" in p.stderr  # restored before any signal was acted on
    check_books(db)
    # halted: no signal became an order, no new entry was placed (exits stay possible)
    assert count(db, "SELECT count(*) FROM trading_signals WHERE status='ORDERED'") == ordered
    assert count(db, "SELECT count(*) FROM orders WHERE intent='ENTRY'") == orders_before
    # after a manual reset the next run trades again, still without a duplicate
    assert mandi("resume", "--db", db).returncode == 0
    halted = count(db, "SELECT count(*) FROM trading_signals WHERE reason LIKE 'halted%'")
    p = mandi(*[a if a != "09:35" else "09:50" for a in args])
    assert p.returncode == 0, p.stderr
    check_books(db)
    assert count(db, "SELECT count(*) FROM trading_signals WHERE reason LIKE 'halted%'") == halted
    assert count(db, "SELECT count(*) FROM orders WHERE intent='ENTRY'") > orders_before
