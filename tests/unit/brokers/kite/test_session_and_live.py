"""The token file, feed health as a risk input, and the ATM strike window."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from mandi.brokers.session import BrokerSession, load_session, save_session
from mandi.core.errors import BrokerSessionError
from mandi.execution.live import FeedHealth, strike_window
from mandi.model.instruments import Equity, Option
from mandi.model.orders import Intent, Side
from mandi.risk.config import RiskConfig, RiskLimits
from mandi.risk.rules import OrderContext, evaluate, live_inputs

S = 10**9


def test_session_file_is_private_and_never_shows_the_token(tmp_path: Path) -> None:
    p = tmp_path / "cfg" / "kite-session.json"
    s = BrokerSession("kite", "key", "AB1234", "A B", "SECRET-TOKEN", 1, 2)
    save_session(p, s)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    assert load_session(p, "kite") == s
    assert "SECRET-TOKEN" not in repr(s)
    assert load_session(p, "angel") is None
    os.chmod(p, 0o644)
    with pytest.raises(BrokerSessionError, match="readable by other users"):
        load_session(p, "kite")
    p.write_text("{")
    os.chmod(p, 0o600)
    with pytest.raises(BrokerSessionError, match="not a session file"):
        load_session(p, "kite")
    assert load_session(tmp_path / "none.json", "kite") is None


def test_feed_health_verdicts() -> None:
    h = FeedHealth(silent_after_s=10, storm_reconnects=3, storm_window_s=60)
    h.expected = 1
    assert h.problem(0, True)[0] == "feed_health"  # not connected yet
    h.on_connected(1 * S)
    h.on_message(2 * S, ticks=5)
    assert h.problem(5 * S, True) == ("", "")
    assert h.problem(20 * S, False) == ("", "")  # market closed: silence is normal
    rule, why = h.problem(20 * S, True)
    assert rule == "feed_health" and "no market data for 18 s" in why
    h.on_message(21 * S)  # a heartbeat is not market data
    assert h.problem(21 * S, True)[0] == "feed_health"
    for k in range(3):
        h.on_disconnected((30 + k) * S)
        h.on_connected((30 + k) * S)
    h.on_message(33 * S, ticks=1)
    assert "reconnect storm: 3 reconnects" in h.problem(34 * S, True)[1]
    h.on_message(100 * S, ticks=1)
    assert h.problem(100 * S, True) == ("", "")  # the storm aged out
    h.on_session_dead("token expired")
    assert h.problem(101 * S, True) == ("broker_session", "token expired")
    assert h.snapshot(101 * S)["reconnects"] == 3


def test_live_inputs_block_entries_not_exits() -> None:
    limits = RiskLimits.from_config(RiskConfig())
    inst = Equity(408065, "NSE", "INFY")
    base = dict(now_ns=0, instrument=inst, side=Side.BUY, quantity=1, limits=limits)
    blocked = OrderContext(intent=Intent.ENTRY, entry_block=("feed_health", "silent"), **base)
    d = live_inputs(blocked)
    assert d is not None and d.rule == "feed_health" and d.reason == "silent"
    assert (
        live_inputs(OrderContext(intent=Intent.EXIT, entry_block=("feed_health", "x"), **base))
        is None
    )
    assert live_inputs(OrderContext(intent=Intent.ENTRY, **base)) is None
    verdict = evaluate(blocked)
    assert getattr(verdict, "rule", "") == "feed_health"


def test_strike_window_follows_atm() -> None:
    exp = dt.date(2026, 1, 27)
    opts = [
        Option(
            1000 + k * 2 + (t == "PE"),
            "NSE",
            f"N{k}{t}",
            strike=k * 5000,
            option_type=t,
            expiry=exp,
            underlying="NIFTY",
        )
        for k in range(480, 500)
        for t in ("CE", "PE")
    ]
    w = strike_window(opts, 2417100, 2)  # nearest strike 24150 (24200 is farther)
    strikes = sorted({o.strike for o in opts if o.token in w})
    assert strikes == [2405000, 2410000, 2415000, 2420000, 2425000]
    assert len(w) == 10
    assert strike_window(opts, 10**9, 1) == {o.token for o in opts if o.strike >= 2490000}


def test_credentials_from_the_environment_stay_strings_and_never_show_in_errors() -> None:
    from mandi.config import load_config

    env = {
        "MANDI_BROKER__NAME": "kite",
        "MANDI_BROKER__KITE__API_SECRET": "0012345",
        "MANDI_BROKER__KITE__API_KEY": "98765",
    }
    k = load_config(None, env=env).broker.kite
    assert (k.api_secret, k.api_key) == ("0012345", "98765")
    with pytest.raises(Exception, match="<hidden>") as e:
        load_config(None, env={}, overrides={"broker.kite.api_secret": 424242})
    assert "424242" not in str(e.value)
