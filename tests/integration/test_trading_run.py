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

from mandi.stores.ticks import read_ticks, tick_span

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
        stderr=subprocess.DEVNULL,  # never read: a full pipe would block the process
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


def stored_ticks(db: str, what=read_ticks):
    """``what`` of the ticks stored so far (tick blocks and rows; 0 when the file is not there)."""
    if not os.path.exists(db):
        return None
    con = sqlite3.connect(db)
    try:
        return what(con)
    except sqlite3.OperationalError:  # the schema is not there yet
        return None
    finally:
        con.close()


def tick_tokens(db: str) -> int:
    b = stored_ticks(db)
    return 0 if b is None else len(set(b.token.tolist()))


def count(db: str, sql: str) -> int:
    r = rows(db, sql)
    return int(r[0][0]) if r else 0


def check_books(db: str, settled: bool = True) -> None:
    """Every order at most once, every position equal to the sum of its fills, our view of every
    order equal to the broker's — once settled: straight after a SIGKILL the paper broker (a
    broker with its own book, as a real one) may hold a fill our books learn of only from the
    start-up reconciliation."""
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
    if settled:
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
    assert {"started", "stopped"} <= kinds
    assert "trading layer started in paper mode with 2 strategies" in p.stderr
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
        # some market data first: prices for the stocks (written after the kernel saw them)
        while time.monotonic() < deadline + 40 and (tick_tokens(db) < 3):
            time.sleep(0.2)
        ok = mandi("order", "buy", "RELIANCE", "--qty", "2", "--db", db, "--wait", "15")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "order accepted (paper mode)" in ok.stdout
        bad = mandi("order", "buy", "NIFTY", "--qty", "1", "--db", db, "--wait", "15")
        assert bad.returncode == 3 and "not_tradable" in bad.stderr
        big = mandi("order", "buy", "INFY", "--qty", "1000", "--db", db, "--wait", "15")
        assert big.returncode == 3 and "max_order_value" in big.stderr
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not rows(
            db, "SELECT 1 FROM positions WHERE strategy='manual'"
        ):
            time.sleep(0.2)
        held = rows(db, "SELECT quantity, status FROM positions WHERE strategy='manual'")
        assert held == [(2, "OPEN")]
        req = rows(db, "SELECT status, rule FROM order_requests ORDER BY id")
        assert req == [("ACCEPTED", ""), ("DENIED", "not_tradable"), ("DENIED", "max_order_value")]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    check_books(db)


def test_live_mode_refuses_to_start_and_logging_mode_places_nothing(tmp_path, cfg):
    db = str(tmp_path / "m.db")
    p = mandi("run", "-c", cfg, "--db", db, "--mode", "live", *DATE)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("mandi: config trading.broker")
    env = {**os.environ, "MANDI_TRADING__BROKER": "upstox"}
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
    # The crash runs get far more market than they can reach before they are killed (a kill
    # comes at most 1.5 s after the run's next order), so every kill lands on a live process
    # however fast or slow the machine is; the later runs continue from wherever they stopped.
    crash_args = [a if a != "09:35" else "11:30" for a in args]
    kills = 0
    for _ in range(3):
        proc = spawn(*crash_args)
        before = count(db, "SELECT count(*) FROM orders")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if count(db, "SELECT count(*) FROM orders") > before:
                break  # it is trading now
        time.sleep(rnd.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        check_books(db, settled=False)  # consistent even straight after a kill
    assert kills == 3
    orders_before = count(db, "SELECT count(*) FROM orders WHERE intent='ENTRY'")
    assert orders_before > 0
    reached = stored_ticks(db, tick_span)[1] // 1_000_000_000 + 19800  # IST s

    def until(minutes_later: int) -> list[str]:
        t = (reached + minutes_later * 60) % 86400
        hhmm = f"{t // 3600:02d}:{t % 3600 // 60:02d}"
        return [a if a != "09:35" else hhmm for a in args]

    assert mandi("halt", "--db", db, "--reason", "crash test").returncode == 0
    ordered = count(db, "SELECT count(*) FROM trading_signals WHERE status='ORDERED'")
    p = mandi(*until(5))  # new market while halted
    assert p.returncode == 0, p.stderr
    assert "latch HALTED" in p.stderr  # restored before any signal was acted on
    check_books(db)
    # halted: no signal became an order, no new entry was placed (exits stay possible)
    assert count(db, "SELECT count(*) FROM trading_signals WHERE status='ORDERED'") == ordered
    assert count(db, "SELECT count(*) FROM orders WHERE intent='ENTRY'") == orders_before
    # after a manual reset the next run trades again, still without a duplicate
    assert mandi("resume", "--db", db).returncode == 0
    halted = count(db, "SELECT count(*) FROM trading_signals WHERE reason LIKE 'halted%'")
    p = mandi(*until(20))
    assert p.returncode == 0, p.stderr
    check_books(db)
    assert count(db, "SELECT count(*) FROM trading_signals WHERE reason LIKE 'halted%'") == halted
    assert count(db, "SELECT count(*) FROM orders WHERE intent='ENTRY'") > orders_before


def test_the_status_shows_signals_positions_pnl_and_denials():
    from rich.console import Console

    from mandi.services.status import one_line, render

    snap = {
        "exchange_time": "2026-04-13 10:00:00",
        "ticks_in": 10,
        "ticks_per_s": 1.0,
        "candles_confirmed": {60: 3},
        "rows_written": {},
        "tick_queue": 0,
        "writer_pending_rows": 0,
        "dropped_queue_ticks": 0,
        "dropped_writer_rows": 0,
        "rejected_ticks": {},
        "handler_errors": 0,
        "writer_errors": 0,
        "last_flush_ms": 0.0,
        "indices": {},
        "trading": {
            "mode": "paper",
            "halted": True,
            "halt_reason": "daily loss",
            "strategies": 2,
            "signals": 7,
            "signal_duplicates": 1,
            "last_signal": "sma_cross BUY NIFTY",
            "logged_trades": 0,
            "orders_sent": 4,
            "orders_queued": 0,
            "fills": 4,
            "open_positions": [
                {
                    "strategy": "sma_cross",
                    "symbol": "NIFTY2642124200CE",
                    "quantity": 130,
                    "entry": 15000,
                    "ltp": 15500,
                    "pnl": 65000,
                    "stop_loss": 10500,
                    "target": 24000,
                }
            ],
            "realized_pnl": -1000,
            "unrealized_pnl": 65000,
            "day_pnl": 64000,
            "charges": 3200,
            "denials": {"max_concurrent_positions": 2},
            "last_denial": "x: y",
            "strategy_errors": {},
        },
    }
    console = Console(record=True, width=160)
    console.print(render(snap))
    text = console.export_text()
    for want in (
        "signals",
        "7",
        "NIFTY2642124200CE",
        "P&L today",
        "₹640.00",
        "max_concurrent_positions 2",
        "HALTED",
    ):
        assert want in text, want
    line = one_line(snap)
    assert "signals=7" in line and "positions=1" in line and "denials=2" in line
