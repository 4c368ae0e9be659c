"""``mandi run --feed nse`` against a local server replaying the real NSE and BSE option-chain
files: cookies and browser headers, snapshots through the chain layer into the matrix, the
analytics and ``option_chain_snapshots``; and NSE on a bad day (a changed JSON format, HTML
instead of JSON, 403) giving a clear health state, backoff and blocked entries."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mandi.brokers.fake import FakeServer
from mandi.config import load_config
from mandi.core.errors import ConfigError
from mandi.feeds.nse_live import NseFeed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nse_replay import NseReplay


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    srv = FakeServer(NseReplay()).start()  # type: ignore[arg-type]
    yield srv
    srv.stop()


def cfg(server: FakeServer, **nse: Any) -> Any:
    env = {**server.env(), "MANDI_NSE__UNDERLYINGS": '["NIFTY"]'}
    c = load_config(env=env, overrides={f"nse.{k}": v for k, v in nse.items()})
    return c


def test_polls_nse_and_bse_with_cookies(server: FakeServer) -> None:
    replay: NseReplay = server.fake  # type: ignore[assignment]
    replay.mode = "ok"
    feed = NseFeed(cfg(server).nse)
    snaps, ticks = feed.poll_once()
    by = {(s.underlying, s.expiry.isoformat()) for s in snaps}
    assert by == {("NIFTY", "2026-07-14"), ("SENSEX", "2026-07-16")}
    assert feed.health.state == "ok" and feed.health.problem(0, True) == ("", "")
    assert replay.hits["/option-chain"] == 1  # the page once, for its cookies
    assert {t.token for t in ticks} == {256265, 265}
    nifty = next(s for s in snaps if s.underlying == "NIFTY")
    assert nifty.underlying_price == 2420690 and len(nifty.rows) == 99
    legacy = NseFeed(cfg(server, api="legacy").nse)
    snaps, _ = legacy.poll_once()
    assert len([s for s in snaps if s.underlying == "NIFTY"]) == 18  # every expiry in one call


def test_a_bad_day_at_nse_is_a_clear_health_state(server: FakeServer) -> None:
    replay: NseReplay = server.fake  # type: ignore[assignment]
    feed = NseFeed(cfg(server, bse_underlyings=[]).nse)
    try:
        replay.mode = "changed"
        assert feed.poll_once()[0] == []
        assert feed.health.state == "format changed"
        rule, why = feed.health.problem(0, True)
        assert rule == "feed_health" and "format changed" in why and "NIFTY" in why
        replay.mode = "html"
        feed.poll_once()
        assert feed.health.state == "blocked" and "HTML instead of JSON" in feed.health.reason
        first = feed.next_delay_s
        feed.poll_once()
        assert feed.next_delay_s > first * 1.2  # exponential backoff (jittered)
        replay.mode = "blocked"
        feed.poll_once()
        assert "HTTP 403" in feed.health.reason
        replay.mode = "ok"
        assert feed.poll_once()[0] and feed.health.state == "ok"
        assert feed.next_delay_s == feed.cfg.interval_s
    finally:
        replay.mode = "ok"
    with pytest.raises(ConfigError, match="polite minimum"):
        cfg(server, interval_s=5)


def test_mandi_run_feed_nse_stores_and_analyses_the_chains(
    server: FakeServer, tmp_path: Path
) -> None:
    from mandi.services.chains import ChainLayer
    from mandi.services.node import MarketNode

    c = cfg(server, interval_s=15)
    c = msgspec.structs.replace(
        c,
        run=msgspec.structs.replace(c.run, feed="nse", duration=3.0, status_interval=0),
        store=msgspec.structs.replace(c.store, db=str(tmp_path / "m.db")),
        pipeline=msgspec.structs.replace(c.pipeline, engine="reference"),
    )
    layer = ChainLayer(c.chains)
    seen: list[Any] = []
    node = MarketNode(c, layers=[layer])
    node.bus.subscribe("analytics:>", lambda topic, a: seen.append((topic, a)), name="test")
    assert asyncio.run(node.run()) == 0
    assert layer.snapshots == 2 and layer.errors == 0
    topics = {t for t, _ in seen}
    assert topics == {"analytics:NIFTY:2026-07-14", "analytics:SENSEX:2026-07-16"}
    a = next(x for t, x in seen if t.startswith("analytics:NIFTY"))
    assert a.max_pain == 24200 and abs(a.pcr_oi - 1.272612) < 1e-4  # the derived checks
    con = sqlite3.connect(c.store.db)
    rows = dict(
        con.execute("SELECT underlying, count(*) FROM option_chain_snapshots GROUP BY underlying")
    )
    con.close()
    assert rows.keys() == {"NIFTY", "SENSEX"} and rows["NIFTY"] >= 99
