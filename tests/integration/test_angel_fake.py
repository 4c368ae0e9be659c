"""mandi's Angel One adapter against ``mandi fakebroker angel`` (in a thread, on loopback), and
the official ``smartapi-python`` package as a second client of the same fake: REST through
``SmartConnect(root=...)``, SmartStream through ``SmartWebSocketV2`` (its ``ROOT_URI`` pointed
at the fake) and the SDK's own frame parser. Faults are injected at the fake; the tests count
the orders it received."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from fakebroker import broker_config, connected, fault, loop_thread, state, until, wait_for

from mandi.brokers.angel import session as angel_session
from mandi.brokers.angel.broker import AngelBroker
from mandi.brokers.angel.fake import (
    DEMO_API_KEY,
    DEMO_CLIENT,
    DEMO_PIN,
    DEMO_TOTP_SECRET,
    FakeAngel,
    FakeAngelServer,
)
from mandi.brokers.angel.frames import decode_tick
from mandi.brokers.angel.keeper import SessionKeeper
from mandi.brokers.angel.ticker import AngelTicker
from mandi.brokers.angel.wire import angel_tag, parse_scrip_master
from mandi.core.clock import LiveClock
from mandi.core.errors import BrokerSessionError
from mandi.execution.live import FeedHealth
from mandi.execution.ports import BrokerFill, OrderRequest
from mandi.model.instruments import InstrumentMaster
from mandi.model.market import Tick
from mandi.model.orders import OrderStatus, OrderType, Product, Side

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from smartapi_sdk import import_smartapi


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAngelServer]:
    srv = FakeAngelServer(FakeAngel(jwt_ttl_s=3600)).start()
    yield srv
    srv.stop()


@pytest.fixture
def cfg(fake: FakeAngelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    return broker_config(fake, "angel", tmp_path, monkeypatch)


# --- the official SDK as a second client ----------------------------------------------------------
def test_official_sdk_against_the_fake(fake: FakeAngelServer, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # the SDK writes logs/ here
    import_smartapi()
    from SmartApi import SmartConnect
    from SmartApi.smartWebSocketV2 import SmartWebSocketV2

    api = SmartConnect(api_key=DEMO_API_KEY, root=fake.rest_url)
    bad = api.generateSession(DEMO_CLIENT, DEMO_PIN, "000000")
    assert bad["status"] is False and bad["errorcode"] == "AB1050"
    s = api.generateSession(DEMO_CLIENT, DEMO_PIN, pyotp.TOTP(DEMO_TOTP_SECRET).now())
    assert s["data"]["clientcode"] == DEMO_CLIENT and s["data"]["feedToken"]
    assert float(api.rmsLimit()["data"]["availablecash"]) > 0
    master = parse_scrip_master(httpx.get(fake.env()["MANDI_BROKER__ANGEL__SCRIP_MASTER_URL"]).text)
    infy = InstrumentMaster(master).by_symbol("INFY")
    wait_for(lambda: state(fake)["ticks_seen"], what="the fake's market")
    order = {
        "variety": "NORMAL", "tradingsymbol": "INFY", "symboltoken": str(infy.token >> 8),
        "transactiontype": "BUY", "exchange": "NSE", "ordertype": "MARKET",
        "producttype": "INTRADAY", "duration": "DAY", "price": "0", "quantity": "1",
        "ordertag": "sdk1",
    }  # fmt: skip
    oid = api.placeOrder(dict(order))
    wait_for(
        lambda: any(o["orderid"] == oid and o["orderstatus"] == "complete"
                    for o in api.orderBook()["data"] or []),
        what="a fill",
    )  # fmt: skip
    (trade,) = [t for t in api.tradeBook()["data"] if t["orderid"] == oid]
    assert int(trade["fillsize"]) == 1
    assert any(p["tradingsymbol"] == "INFY" for p in api.position()["data"])
    bad_sym = api.placeOrderFullResponse({**order, "tradingsymbol": "NOSUCH"})
    assert bad_sym["errorcode"] == "AB1009"
    candles = api.getCandleData(
        {"exchange": "NSE", "symboltoken": str(infy.token >> 8), "interval": "ONE_MINUTE",
         "fromdate": "2026-01-05 09:15", "todate": "2026-01-05 09:20"}
    )  # fmt: skip
    assert [c[0][11:16] for c in candles["data"]] == [
        "09:15",
        "09:16",
        "09:17",
        "09:18",
        "09:19",
        "09:20",
    ]
    # SmartStream: the SDK connects to the fake, subscribes, and its parser reads our frames
    sws = SmartWebSocketV2(s["data"]["jwtToken"], DEMO_API_KEY, DEMO_CLIENT, s["data"]["feedToken"])
    sws.ROOT_URI = fake.ws_url
    got: list[dict[str, Any]] = []
    raw: list[bytes] = []
    real = sws._parse_binary_data

    def keep(data: bytes) -> dict[str, Any]:
        raw.append(bytes(data))
        return real(data)

    sws._parse_binary_data = keep  # type: ignore[method-assign]
    sws.on_data = lambda ws, msg: got.append(msg)
    sws.on_open = lambda ws: sws.subscribe(
        "t1", 3, [{"exchangeType": 1, "tokens": [str(infy.token >> 8)]}]
    )
    sws.on_error = lambda *a: None
    th = threading.Thread(target=sws.connect, daemon=True)
    th.start()
    try:
        wait_for(lambda: len(got) >= 3, what="SmartStream frames through the SDK")
    finally:
        sws.close_connection()
        th.join(5)
    for m, b in zip(got, raw, strict=False):
        t = decode_tick(b)
        assert m["subscription_mode"] == 3 and t.token == infy.token
        assert t.price == m["last_traded_price"] and t.oi == m["open_interest"]


# --- mandi's session: login, refresh before expiry, fail closed -----------------------------------
def test_login_refresh_and_fail_closed(fake: FakeAngelServer, cfg: Any) -> None:
    s = angel_session.login(cfg)
    path = angel_session.token_file(cfg)
    assert path.stat().st_mode & 0o777 == 0o600
    assert "refresh_token" in path.read_text() and s.feed_token
    cfg = msgspec_replace(cfg, refresh_before_min=10.0)
    assert angel_session.fresh(cfg).access_token == s.access_token  # not due: kept
    due = msgspec_replace(cfg, refresh_before_min=120.0)  # the 1 h JWT is due
    before = fake.fake.refreshes
    r = angel_session.fresh(due)
    assert fake.fake.refreshes == before + 1 and r.access_token != s.access_token
    assert angel_session.current(cfg).access_token == r.access_token  # stored
    fault(fake, "token")  # the fake forgets every session and refresh token
    fake.fake.refresh_tokens.clear()
    keeper = SessionKeeper(due, r)
    with pytest.raises(BrokerSessionError, match="log in again"):
        keeper.get()
    assert keeper.dead  # and stays dead: no loop on a dead refresh token
    with pytest.raises(BrokerSessionError):
        keeper.get()


def msgspec_replace(cfg: Any, **kw: Any) -> Any:
    import msgspec

    return msgspec.structs.replace(cfg, **kw)


# --- the Broker port and the ticker ---------------------------------------------------------------
@pytest.fixture
def broker(fake: FakeAngelServer, cfg: Any) -> Iterator[tuple[AngelBroker, list[Any]]]:
    s = angel_session.login(cfg)
    master = InstrumentMaster(parse_scrip_master(httpx.get(cfg.scrip_master_url).text))
    with connected(AngelBroker(angel_session.rest_client(cfg, s), master, LiveClock(), 0.3)) as b:
        yield b


def req(b: AngelBroker, cid: str, qty: int = 1) -> OrderRequest:
    infy = b.master.by_symbol("INFY")
    return OrderRequest(
        cid, infy.token, "NSE", "INFY", Side.BUY, qty, OrderType.MARKET, 0, Product.MIS
    )


def has(status: OrderStatus) -> Callable[[list[Any]], bool]:
    return lambda e: any(getattr(x, "status", None) is status for x in e)


def test_orders_fill_reject_timeout_and_dead_token(
    fake: FakeAngelServer, broker: tuple[AngelBroker, list[Any]]
) -> None:
    b, ev = broker
    wait_for(lambda: state(fake)["ticks_seen"], what="prices")
    b.place_order(req(b, "ang-fill-1", 2))
    until(b, ev, lambda e: sum(x.quantity for x in e if isinstance(x, BrokerFill)) == 2, "fills")
    rep = b.order_status("ang-fill-1")
    assert rep is not None and rep.status is OrderStatus.FILLED and len(rep.fills) >= 1
    assert b.order_status("never-sent") is None
    fault(fake, "reject")
    b.place_order(req(b, "ang-reject-1"))
    until(b, ev, has(OrderStatus.REJECTED), "the rejection")
    assert "RMS" in next(x for x in ev if getattr(x, "status", None) is OrderStatus.REJECTED).reason
    ev.clear()
    fault(fake, "timeout", seconds=4)  # the client gives up after 2 s
    b._rest._http.timeout = httpx.Timeout(2.0)
    b.place_order(req(b, "ang-timeout-1", 3))
    until(b, ev, has(OrderStatus.UNKNOWN), "UNKNOWN")
    rep = wait_for(lambda: b.order_status("ang-timeout-1"), what="the order at the fake")
    assert rep.quantity == 3
    until(b, ev, lambda e: sum(x.quantity for x in e if isinstance(x, BrokerFill)) == 3, "fills")
    assert state(fake)["orders_by_tag"][angel_tag("ang-timeout-1")] == 1  # never re-sent
    fault(fake, "http429", count=2)
    b.place_order(req(b, "ang-429-1"))
    until(b, ev, lambda e: any(getattr(x, "client_order_id", "") == "ang-429-1"
                               and getattr(x, "status", None) is OrderStatus.ACKED for x in e),
          "ack after 429s")  # fmt: skip
    assert state(fake)["orders_by_tag"][angel_tag("ang-429-1")] == 1
    fault(fake, "token")
    # refused on the send, or at once when the order poller met the dead token first
    if b.place_order(req(b, "ang-dead-1")).status != "REJECTED":
        until(b, ev, lambda e: any(getattr(x, "client_order_id", "") == "ang-dead-1"
                                   and getattr(x, "status", None) is OrderStatus.REJECTED
                                   for x in e), "the refusal")  # fmt: skip
    assert "log in again: mandi broker login angel" in b.session_dead
    n = state(fake)["counts"]["requests"]
    assert b.place_order(req(b, "ang-dead-2")).status == "REJECTED"
    time.sleep(0.6)
    assert state(fake)["counts"]["requests"] == n  # nothing sent, no polling


def test_ticker_follows_faults(fake: FakeAngelServer, cfg: Any) -> None:
    s = angel_session.login(cfg)
    master = InstrumentMaster(parse_scrip_master(httpx.get(cfg.scrip_master_url).text))
    nifty, infy = master.by_symbol("NIFTY"), master.by_symbol("INFY")
    health = FeedHealth(silent_after_s=1.5, storm_reconnects=50)
    ticks: list[Tick] = []
    dead: list[str] = []
    reconnects: list[int] = []
    t = AngelTicker(fake.ws_url, cfg.api_key, cfg.client_code, lambda: s, health=health,
                    backoff_max_s=0.5, heartbeat_s=0.5)  # fmt: skip
    t.set_handlers(ticks.extend, lambda o: None)
    t.on_session_dead = dead.append
    t.on_reconnect = lambda: reconnects.append(1)
    with loop_thread(t.close) as call:
        call(lambda: t.subscribe([nifty.token, infy.token], "full"))
        call(t.connect)
        wait_for(lambda: {x.token for x in ticks} >= {nifty.token, infy.token}, what="ticks")
        bad = health.malformed
        fault(fake, "half_frame")
        wait_for(lambda: health.malformed > bad, what="the bad frame counted")
        fault(fake, "drop")
        wait_for(lambda: reconnects, what="a reconnect")
        n = len(ticks)
        wait_for(lambda: len(ticks) > n + 2, what="ticks after the reconnect")
        silent = health.silent_timeouts
        fault(fake, "silent", seconds=2.5)
        wait_for(lambda: health.silent_timeouts > silent, what="the silence detected")
        fault(fake, "token")
        wait_for(lambda: dead, what="the session declared dead")
        connects = t.connects
        time.sleep(1.0)
        assert (
            t.connects == connects and health.problem(time.time_ns(), True)[0] == "broker_session"
        )
