"""End to end against ``mandi fakebroker NAME`` (a subprocess) for Kite, Angel One and Groww,
through the command line as a user would: login, instrument sync, ``mandi run --mode live
--broker NAME`` (live feed → candles → a strategy → risk → an order at the fake → postback →
fill → position), a manual ``mandi order``, ``mandi halt`` blocking new orders, and a SIGKILL
between send and acknowledgement followed by a restart that reconciles the order by its tag
without sending it again.

Groww runs the same path with one ``mandi run`` (the suite's time is counted): trade, manual
order, halt, then a clean stop; its crash-and-reconcile half (the shared
:class:`~mandi.brokers.live.LiveBroker` code) is covered against the same fake by
tests/integration/test_groww_fake.py without a second node."""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakebroker
import httpx
import pytest

from mandi.brokers.angel.wire import angel_tag
from mandi.brokers.groww.wire import groww_tag
from mandi.brokers.kite.wire import kite_tag

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"

CONFIG = """
[[strategies]]
name = "kite_strategy:BuyOnce"
id = "buy_once"
symbols = ["INFY"]
timeframe = 60

[indicators]
enabled = false

[pipeline]
engine = "reference"

[chains]
enabled = false

[trading]
reconcile_interval_s = 1.0
request_poll_s = 0.2

[risk]
sizing = "fixed_amount"
fixed_amount_inr = 5000.0

[broker.kite]
symbols = ["NIFTY", "INFY"]
strikes_each_side = 1
poll_interval_s = 0.5
timeout_s = 2.0

[broker.angel]
symbols = ["NIFTY", "INFY"]
strikes_each_side = 1
poll_interval_s = 0.5
timeout_s = 2.0
heartbeat_s = 2.0

[broker.groww]
symbols = ["NIFTY", "INFY"]
strikes_each_side = 1
poll_interval_s = 0.5
timeout_s = 2.0
heartbeat_s = 2.0
"""
TAG = {"kite": kite_tag, "angel": angel_tag, "groww": groww_tag}
WHO = {
    "kite": "logged in to Kite as DM1234",
    "angel": "logged in to Angel One as D12345",
    "groww": "logged in to Groww as DM1234",
}


# the node runs in a subprocess: a longer deadline, a calmer poll
wait_for = functools.partial(fakebroker.wait_for, timeout=60.0, every=0.1)


@pytest.fixture
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    name = request.param
    base = {k: v for k, v in os.environ.items() if not k.startswith("MANDI_")}
    base.update(
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        PYTHONPATH=os.pathsep.join([str(SRC), str(HERE), base.get("PYTHONPATH", "")]),
    )
    fake = subprocess.Popen(
        [sys.executable, "-m", "mandi", "fakebroker", name, "--port", "0"],
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert fake.stdout is not None
        for _ in range(12):  # the export lines come first, then a comment line
            line = fake.stdout.readline()
            if line.startswith("export "):
                k, _, v = line.removeprefix("export ").strip().partition("=")
                base[k] = v
            if line.startswith("#") or not line:
                break
        assert base["MANDI_BROKER__NAME"] == name
        base["MANDI_STORE__DB"] = str(tmp_path / "mandi.db")
        (tmp_path / "mandi.toml").write_text(CONFIG)
        base["MANDI_TEST_CONFIG"] = str(tmp_path / "mandi.toml")
        yield base
    finally:
        fake.terminate()
        try:
            fake.wait(10)
        except subprocess.TimeoutExpired:
            fake.kill()
            raise


def mandi(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "mandi", *args], env=env, capture_output=True, text=True, timeout=60
    )
    if check:
        assert r.returncode == 0, r.stderr
    return r


def fake_state(env: dict[str, str]) -> dict[str, Any]:
    return httpx.get(rest_url(env) + "/_fake/state").json()  # type: ignore[no-any-return]


def rest_url(env: dict[str, str]) -> str:
    return env[f"MANDI_BROKER__{env['MANDI_BROKER__NAME'].upper()}__REST_URL"]


def stored_secrets(env: dict[str, str]) -> list[str]:
    """The token values the logins stored (never to be logged; the broker's error texts may
    name the *field* ``access_token``)."""
    out: list[str] = []
    for f in (Path(env["XDG_CONFIG_HOME"]) / "mandi").glob("*-session.json"):
        for k, v in json.loads(f.read_text()).items():
            if isinstance(v, str) and len(v) >= 8 and ("token" in k or "secret" in k):
                out.append(v)
    return out


def orders(env: dict[str, str]) -> dict[str, tuple[str, int]]:
    con = sqlite3.connect(env["MANDI_STORE__DB"])
    try:
        rows = con.execute("SELECT order_id, status, filled_qty FROM orders").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()
    return {r[0]: (r[1], r[2]) for r in rows}


def start_run(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mandi",
            "run",
            "--mode",
            "live",
            "--broker",
            env["MANDI_BROKER__NAME"],
            "--no-dashboard",
            "--status-interval",
            "0",
            "--config",
            env["MANDI_TEST_CONFIG"],
        ],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("env", ["kite", "angel"], indirect=True)
def test_live_trading_against_the_fake_end_to_end(env: dict[str, str], tmp_path: Path) -> None:
    name = env["MANDI_BROKER__NAME"]
    extra = ["--request-token", "any-token"] if name == "kite" else []
    out = mandi(env, "broker", "login", name, *extra).stdout
    assert WHO[name] in out
    session = tmp_path / "config" / "mandi" / f"{name}-session.json"
    assert session.stat().st_mode & 0o777 == 0o600
    assert "logged in as" in mandi(env, "broker", "status", name).stdout
    assert "instruments" in mandi(env, "instruments", "sync", name).stdout
    log = tmp_path / "run.log"
    try:
        first, before = trade_then_crash(env, log)
        reconcile_after_restart(env, log, first, before)
    except AssertionError:
        print(log.read_text()[-6000:])  # the node's side of the story
        raise
    text = log.read_text()
    assert not [v for v in stored_secrets(env) if v in text]
    assert "mandi_demo_secret" not in text
    assert env.get("MANDI_BROKER__ANGEL__PIN", "no pin") not in text.replace("12345", "")


@pytest.mark.parametrize("env", ["groww"], indirect=True)
def test_groww_live_trading_in_one_run(env: dict[str, str], tmp_path: Path) -> None:
    out = mandi(env, "broker", "login", "groww").stdout
    assert WHO["groww"] in out
    assert (tmp_path / "config" / "mandi" / "groww-session.json").stat().st_mode & 0o777 == 0o600
    assert "instruments" in mandi(env, "instruments", "sync", "groww").stdout
    log = tmp_path / "run.log"
    run = start_run(env, log)
    try:
        strategy_manual_and_halt(env)
        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == 0
    except AssertionError:
        print(log.read_text()[-6000:])
        raise
    finally:
        if run.poll() is None:
            run.kill()
    st = fake_state(env)
    assert st["orders"] == 2 and all(n == 1 for n in st["orders_by_tag"].values())
    assert not [v for v in stored_secrets(env) if v in log.read_text()]


def strategy_manual_and_halt(env: dict[str, str]) -> str:
    """The strategy's order fills, a manual order fills, a halt refuses the next; returns the
    strategy's order id."""
    (first,) = wait_for(
        lambda: [o for o, (s, _) in orders(env).items() if s == "FILLED"],
        what="the strategy's order to fill",
    )
    assert fake_state(env)["orders"] == 1
    r = mandi(env, "order", "buy", "INFY", "--qty", "1")
    assert "accepted" in r.stdout, r.stdout + r.stderr
    wait_for(
        lambda: sum(s == "FILLED" for s, _ in orders(env).values()) == 2,
        what="the manual order to fill",
    )
    mandi(env, "halt", "--reason", "test")
    r = mandi(env, "order", "buy", "INFY", "--qty", "1", check=False)
    assert r.returncode != 0 and "halted" in (r.stdout + r.stderr).lower()
    assert fake_state(env)["orders"] == 2
    mandi(env, "resume")
    return str(first)


def trade_then_crash(env: dict[str, str], log: Path) -> tuple[str, set[str]]:
    """Strategy order, manual order, halt, then SIGKILL with an order in flight; returns the
    strategy's order id and the orders stored before the one in flight."""
    run = start_run(env, log)
    try:
        # feed -> candles -> strategy -> risk -> order at the fake -> postback -> fill
        first = strategy_manual_and_halt(env)
        # the answer to the next order never comes: SIGKILL while it is in flight
        httpx.post(
            rest_url(env) + "/_fake/fault",
            json={"fault": "timeout", "seconds": 30},
        )
        before = set(orders(env))
        mandi(env, "order", "buy", "INFY", "--qty", "1")
        wait_for(lambda: fake_state(env)["orders"] == 3, what="the order to reach the fake")
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        return first, before
    finally:
        if run.poll() is None:
            run.kill()


def reconcile_after_restart(env: dict[str, str], log: Path, first: str, before: set[str]) -> None:
    held = orders(env)
    # the answer never came; the order is SUBMITTED, or ACKED (or even FILLED, on a loaded
    # machine) where the broker's polling found it in the order book by its tag before the SIGKILL
    pending = [o for o in held if o not in before]
    assert len(pending) == 1, held
    assert held[pending[0]][0] in ("SUBMITTED", "UNKNOWN", "NEW", "ACKED", "FILLED"), held
    run = start_run(env, log)
    try:
        wait_for(lambda: orders(env)[pending[0]][0] == "FILLED", what="reconciliation")
        st = fake_state(env)
        assert st["orders"] == 3  # nothing was sent twice
        tag = TAG[env["MANDI_BROKER__NAME"]]
        assert st["orders_by_tag"][tag(pending[0])] == 1
        assert st["orders_by_tag"][tag(first)] == 1
        if env["MANDI_BROKER__NAME"] == "kite":
            a_dead_token_fails_closed(env, log)
        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == 0
    finally:
        if run.poll() is None:
            run.kill()


def a_dead_token_fails_closed(env: dict[str, str], log: Path) -> None:
    """Kite invalidates the access token under a running node: it says so (log, system event,
    "log in again"), blocks new entries, sends nothing more — an exit included, which Kite
    would refuse with that token — and does not loop on the dead token."""
    placed = fake_state(env)["orders"]
    seen = infy_ticks(env)  # the node has a price, so an exit can pass risk
    wait_for(lambda: infy_ticks(env) > seen, what="INFY's prices")
    httpx.post(rest_url(env) + "/_fake/fault", json={"fault": "token"})
    again = "log in again: mandi broker login kite"
    wait_for(lambda: again in log.read_text(), what="the node to see the dead session")
    wait_for(
        lambda: {"broker_session_ended", "feed_unhealthy"} <= set(system_events(env)),
        what="the system events",
    )
    entry = mandi(env, "order", "buy", "INFY", "--qty", "1", check=False)
    assert entry.returncode != 0 and again in entry.stdout + entry.stderr
    mandi(env, "order", "sell", "INFY", "--qty", "1")  # an exit: risk lets it through ...
    refused = wait_for(
        lambda: [r for s, r in reasons(env) if s == "REJECTED" and again in r],
        what="the exit refused without a request",
    )
    assert refused[0].startswith("not sent")  # ... the broker does not send it
    quiet = fake_state(env)["counts"]["requests"]
    time.sleep(1.5)  # three polling intervals: nothing may be asked with the dead token
    st = fake_state(env)
    assert st["counts"]["requests"] == quiet and st["connections"] == 0
    assert st["orders"] == placed


def infy_ticks(env: dict[str, str]) -> int:
    """INFY's stored ticks (the columnar tick blocks; one-second candles stay in memory)."""
    from mandi.stores.ticks import read_ticks

    con = sqlite3.connect(env["MANDI_STORE__DB"])
    try:
        return len(read_ticks(con, tokens=[408065]).token)
    finally:
        con.close()


def system_events(env: dict[str, str]) -> list[str]:
    con = sqlite3.connect(env["MANDI_STORE__DB"])
    try:
        return [r[0] for r in con.execute("SELECT event_type FROM system_events")]
    finally:
        con.close()


def reasons(env: dict[str, str]) -> list[tuple[str, str]]:
    con = sqlite3.connect(env["MANDI_STORE__DB"])
    try:
        return list(con.execute("SELECT status, reason FROM orders"))
    finally:
        con.close()
