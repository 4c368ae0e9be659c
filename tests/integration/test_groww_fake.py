"""mandi's Groww adapter against ``mandi fakebroker groww`` (in a thread, on loopback), and the
official ``growwapi`` SDK as a second client of the same fake: its REST calls (with its URL
constants pointed at the fake, see tests/growwapi_sdk.py) and its NATS client (nats-py over the
websocket) with its own protobuf parser — whose output mandi's decoder must match on the same
frames. Faults are injected at the fake; the tests count the orders it received."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pyotp
import pytest
from fakebroker import broker_config, connected, fault, loop_thread, state, until, wait_for

from mandi.brokers.groww import session as groww_session
from mandi.brokers.groww.broker import GrowwBroker
from mandi.brokers.groww.fake import (
    DEMO_API_KEY,
    DEMO_API_SECRET,
    DEMO_TOTP_SECRET,
    FakeGroww,
    FakeGrowwServer,
)
from mandi.brokers.groww.frames import FrameDecoder, decode_order
from mandi.brokers.groww.ticker import GrowwTicker
from mandi.brokers.groww.wire import feed_key, groww_tag, parse_instruments, topics
from mandi.core.clock import LiveClock
from mandi.core.errors import BrokerSessionError
from mandi.execution.live import FeedHealth
from mandi.execution.ports import BrokerFill, OrderRequest
from mandi.model.instruments import InstrumentMaster
from mandi.model.market import Tick
from mandi.model.orders import OrderStatus, OrderType, Product, Side

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from growwapi_sdk import api, groww_sdk, require_sdk


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGrowwServer]:
    srv = FakeGrowwServer(FakeGroww()).start()
    yield srv
    srv.stop()


@pytest.fixture
def cfg(fake: FakeGrowwServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    return broker_config(fake, "groww", tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def master(fake: FakeGrowwServer) -> InstrumentMaster:
    return InstrumentMaster(
        parse_instruments(httpx.get(f"{fake.rest_url}/instruments/instrument.csv").text)
    )


# --- the official SDK as a second client ----------------------------------------------------------
def test_official_sdk_against_the_fake(
    fake: FakeGrowwServer, master: InstrumentMaster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_sdk()
    with groww_sdk(fake.rest_url, fake.ws_url, tmp_path, monkeypatch) as g:
        from growwapi.groww.exceptions import GrowwAPIException
        from growwapi.groww.proto.proto_parser import get_data_dict

        with pytest.raises(GrowwAPIException, match="Invalid TOTP"):
            g.GrowwAPI.get_access_token(DEMO_API_KEY, totp="000000")
        approval = g.GrowwAPI.get_access_token(DEMO_API_KEY, secret=DEMO_API_SECRET)
        token = g.GrowwAPI.get_access_token(DEMO_API_KEY, totp=pyotp.TOTP(DEMO_TOTP_SECRET).now())
        assert approval and token and approval != token
        a = api(g, token, fake.rest_url)
        assert a.get_user_profile()["ucc"] == "DM1234"
        assert a.get_available_margin_details()["clear_cash"] > 0
        infy = a.get_instrument_by_exchange_and_trading_symbol("NSE", "INFY")
        assert master.by_symbol("INFY").token == int(infy["exchange_token"]) << 8 | 1
        wait_for(lambda: state(fake)["ticks_seen"], what="the fake's market")
        order = dict(validity="DAY", exchange="NSE", order_type="MARKET", product="MIS",
                     quantity=1, segment="CASH", trading_symbol="INFY",
                     transaction_type="BUY")  # fmt: skip
        placed = a.place_order(**order, order_reference_id="sdk-0000001")
        wait_for(
            lambda: (
                a.get_order_status_by_reference("CASH", "sdk-0000001")["order_status"] == "EXECUTED"
            ),
            what="a fill",
        )
        (trade,) = a.get_trade_list_for_order(placed["groww_order_id"], "CASH")["trade_list"]
        assert trade["quantity"] == 1
        assert any(p["trading_symbol"] == "INFY" for p in a.get_positions_for_user()["positions"])
        with pytest.raises(GrowwAPIException, match="Duplicate order reference"):
            a.place_order(**order, order_reference_id="sdk-0000001")
        with pytest.raises(GrowwAPIException, match="Invalid trading symbol"):
            a.place_order(**{**order, "trading_symbol": "NOSUCH"}, order_reference_id="sdk-0000002")
        candles = a.get_historical_candles("NSE", "CASH", "NSE-INFY", "2026-01-05 09:15:00",
                                           "2026-01-05 09:20:00", "1minute")["candles"]  # fmt: skip
        assert [c[0][11:16] for c in candles] == [
            "09:15",
            "09:16",
            "09:17",
            "09:18",
            "09:19",
            "09:20",
        ]

        # the feed: the SDK's NATS client subscribes; mandi's decoder reads the same frames
        nifty = master.by_symbol("NIFTY")
        decoder = FrameDecoder()
        for inst in (master.by_symbol("INFY"), nifty):
            for subject, what in topics(feed_key(inst), "full"):
                decoder.route(subject, inst.token, inst.exchange, what)
        seen: list[tuple[str, bytes]] = []
        feed = g.GrowwFeed(a)
        real_update = feed._update_feed_data

        def keep(topic: str, data: bytes) -> None:
            seen.append((topic, bytes(data)))
            real_update(topic, data)

        feed._nats_client.callback = keep  # the raw frames the SDK's NATS client hands over
        inst_list = [
            {"exchange": "NSE", "segment": "CASH", "exchange_token": infy["exchange_token"]}
        ]
        feed.subscribe_ltp(inst_list)
        feed.subscribe_market_depth(inst_list)
        feed.subscribe_index_value(
            [{"exchange": "NSE", "segment": "CASH", "exchange_token": "NIFTY"}]
        )
        feed.subscribe_equity_order_updates()
        try:
            wait_for(lambda: {t.rsplit(".", 1)[0] for t, _ in seen}
                     >= {"/ld/eq/nse/price", "/ld/eq/nse/book", "/ld/indices/nse/price"},
                     what="price, book and index messages through the SDK")  # fmt: skip
            a.place_order(**{**order, "transaction_type": "SELL"}, order_reference_id="sdk-0000003")
            wait_for(lambda: any("order/updates" in t for t, _ in seen), what="an order update")
            checked = 0
            for topic, data in list(seen):
                if "order/updates" in topic:
                    sdk = get_data_dict(data, "order_updates")
                    ours = decode_order(data)
                    assert ours["growwOrderId"] == sdk["growwOrderId"]
                    assert ours["orderStatus"] == sdk["orderStatus"]
                    assert ours["filledQty"] == sdk.get("filledQty", 0)
                    assert ours["transactionType"] == sdk["transactionType"]
                    checked += 1
                    continue
                t = decoder.decode(topic.encode(), data, 1)
                if "indices" in topic:
                    v = get_data_dict(data, "index_value")
                    assert isinstance(t, Tick) and t.price == round(v["value"] * 100)
                    assert t.ts_event == round(v["tsInMillis"]) * 1_000_000
                elif "/price." in topic:
                    v = get_data_dict(data, "ltp")
                    assert isinstance(t, Tick) and t.price == round(v["ltp"] * 100)
                    assert t.volume == int(v["volume"]) and t.oi == int(v["openInterest"])
                else:
                    v = get_data_dict(data, "market_depth")
                    best_bid = v["buyBook"][min(v["buyBook"])] if v.get("buyBook") else None
                    if isinstance(t, Tick) and best_bid is not None:
                        assert t.bid == round(best_bid["price"] * 100)
                        assert t.bid_qty == int(best_bid["qty"])
                checked += 1
            assert checked >= 4
        finally:
            nc = feed._nats_client
            asyncio.run_coroutine_threadsafe(nc._socket.close(), nc._loop).result(10)
            nc._loop.call_soon_threadsafe(nc._loop.stop)


# --- mandi's session: login, renewal, fail closed -------------------------------------------------
def test_login_renew_and_fail_closed(fake: FakeGrowwServer, cfg: Any) -> None:
    s = groww_session.login(cfg)
    path = groww_session.token_file(cfg)
    assert path.stat().st_mode & 0o777 == 0o600 and s.user_id == "DM1234"
    assert s.access_token not in repr(s)
    # not due a minute before the renewal window: kept (the clock given, not read: the token
    # ends at 06:00 IST, so on the wall clock it is due from 05:30 IST, 00:00 UTC, every day)
    early = s.expires_ns - int((cfg.refresh_before_min + 1) * 60 * 1e9)
    assert groww_session.fresh(cfg, now_ns=early).access_token == s.access_token
    before = fake.fake.logins
    due = msgspec.structs.replace(cfg, refresh_before_min=24 * 60.0)  # ends within a day: due
    r = groww_session.fresh(due)
    assert fake.fake.logins == before + 1 and r.access_token != s.access_token
    assert groww_session.current(cfg).access_token == r.access_token  # stored
    # the approval flow (API secret) and a token generated on Groww's page work too
    by_secret = groww_session.login(
        msgspec.structs.replace(cfg, totp_secret="", api_secret=DEMO_API_SECRET)
    )
    assert by_secret.access_token not in (s.access_token, r.access_token)
    by_token = groww_session.login(msgspec.structs.replace(cfg, access_token=r.access_token))
    assert by_token.access_token == r.access_token
    with pytest.raises(BrokerSessionError):
        groww_session.login(
            msgspec.structs.replace(cfg, totp_secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
        )
    # no way to renew (a page token only) → fail closed, and stay dead
    keeper = groww_session.keeper(msgspec.structs.replace(due, totp_secret=""), r)
    with pytest.raises(BrokerSessionError, match="log in again"):
        keeper.get()
    assert keeper.dead
    with pytest.raises(BrokerSessionError):
        keeper.get()


# --- the Broker port ------------------------------------------------------------------------------
@pytest.fixture
def broker(
    fake: FakeGrowwServer, cfg: Any, master: InstrumentMaster
) -> Iterator[tuple[GrowwBroker, list[Any]]]:
    s = groww_session.login(cfg)
    with connected(GrowwBroker(groww_session.rest_client(cfg, s), master, LiveClock(), 0.3)) as b:
        yield b


def req(b: GrowwBroker, cid: str, qty: int = 1, symbol: str = "INFY") -> OrderRequest:
    inst = b.master.by_symbol(symbol)
    return OrderRequest(
        cid, inst.token, inst.exchange, symbol, Side.BUY, qty, OrderType.MARKET, 0, Product.MIS
    )


def has(status: OrderStatus, cid: str = "") -> Callable[[list[Any]], bool]:
    return lambda e: any(
        getattr(x, "status", None) is status and (not cid or x.client_order_id == cid) for x in e
    )


def fills(ev: list[Any], cid: str) -> int:
    return sum(x.quantity for x in ev if isinstance(x, BrokerFill) and x.client_order_id == cid)


def test_orders_fill_reject_timeout_restart_and_dead_token(
    fake: FakeGrowwServer, cfg: Any, broker: tuple[GrowwBroker, list[Any]]
) -> None:
    b, ev = broker
    wait_for(lambda: state(fake)["ticks_seen"], what="prices")
    b.place_order(req(b, "gw-fill-1", 2))
    until(b, ev, lambda e: fills(e, "gw-fill-1") == 2, "fills")
    rep = b.order_status("gw-fill-1")
    assert rep is not None and rep.status is OrderStatus.FILLED and len(rep.fills) >= 1
    assert b.order_status("never-sent") is None
    assert any(p.symbol == "INFY" and p.quantity >= 2 for p in b.positions())
    assert b.balance().cash > 0
    # a resting limit order: modified (quantity and price), then cancelled
    infy = b.master.by_symbol("INFY")
    low = b.order_status("gw-fill-1").fills[0].price // 2 // infy.tick_size * infy.tick_size
    b.place_order(OrderRequest("gw-limit-1", infy.token, "NSE", "INFY", Side.BUY, 1,
                               OrderType.LIMIT, low, Product.MIS))  # fmt: skip
    until(b, ev, has(OrderStatus.ACKED, "gw-limit-1"), "the limit order's ack")
    assert b.modify_order("gw-limit-1", quantity=2, limit_price=low - infy.tick_size).status == (
        "ACCEPTED"
    )
    held = fake.fake.orders[b.order_status("gw-limit-1").broker_order_id]
    assert (held.quantity, held.price, held.modified) == (2, low - infy.tick_size, True)
    assert b.cancel_order("gw-limit-1").status == "PENDING"
    until(b, ev, has(OrderStatus.CANCELLED, "gw-limit-1"), "the cancel")
    assert b.modify_order("gw-limit-1", quantity=3).status == "REJECTED"  # GA006: not open
    fault(fake, "reject")
    b.place_order(req(b, "gw-reject-1"))
    until(b, ev, has(OrderStatus.REJECTED, "gw-reject-1"), "the rejection")
    assert "RMS" in next(x for x in ev if getattr(x, "status", None) is OrderStatus.REJECTED).reason
    # an answer that never comes: UNKNOWN, then settled by its tag — and a "restarted" broker
    # (nothing in memory) finds it by its tag too, without sending it again
    fault(fake, "timeout", seconds=4)  # the client gives up after 2 s
    b._rest._http.timeout = httpx.Timeout(2.0)
    b.place_order(req(b, "gw-timeout-1", 3))
    until(b, ev, has(OrderStatus.UNKNOWN, "gw-timeout-1"), "UNKNOWN")
    fresh = GrowwBroker(groww_session.rest_client(cfg), b.master, LiveClock(), 0.3)
    rep = wait_for(lambda: fresh.order_status("gw-timeout-1"), what="the order at the fake")
    assert rep.quantity == 3
    until(b, ev, lambda e: fills(e, "gw-timeout-1") == 3, "fills")
    assert state(fake)["orders_by_tag"][groww_tag("gw-timeout-1")] == 1  # never re-sent
    fault(fake, "http429", count=2)
    b.place_order(req(b, "gw-429-1"))
    until(b, ev, has(OrderStatus.ACKED, "gw-429-1"), "ack after 429s")
    assert state(fake)["orders_by_tag"][groww_tag("gw-429-1")] == 1
    fault(fake, "token")
    # refused on the send, or at once when the order poller met the dead token first
    if b.place_order(req(b, "gw-dead-1")).status != "REJECTED":
        until(b, ev, has(OrderStatus.REJECTED, "gw-dead-1"), "the refusal")
    assert "log in again: mandi broker login groww" in b.session_dead
    n = state(fake)["counts"]["requests"]
    assert b.place_order(req(b, "gw-dead-2")).status == "REJECTED"
    time.sleep(0.6)
    assert state(fake)["counts"]["requests"] == n  # nothing sent, no polling


# --- the ticker -----------------------------------------------------------------------------------
def test_ticker_follows_faults(fake: FakeGrowwServer, cfg: Any, master: InstrumentMaster) -> None:
    s = groww_session.login(cfg)
    nifty, infy = master.by_symbol("NIFTY"), master.by_symbol("INFY")
    health = FeedHealth(silent_after_s=1.5, storm_reconnects=50)
    ticks: list[Tick] = []
    orders: list[dict[str, Any]] = []
    dead: list[str] = []
    reconnects: list[int] = []

    def feed_token(key: str) -> dict[str, Any]:
        rest = groww_session.rest_client(cfg, s)
        try:
            return rest.socket_token(key)
        finally:
            rest.close()

    t = GrowwTicker(fake.ws_url, feed_token, lambda tok: feed_key(master.by_token(tok)),
                    health=health, backoff_max_s=0.5, heartbeat_s=0.5)  # fmt: skip
    t.set_handlers(ticks.extend, orders.append)
    t.on_session_dead = dead.append
    t.on_reconnect = lambda: reconnects.append(1)
    with loop_thread(t.close) as call:
        call(lambda: t.subscribe([nifty.token, infy.token], "full"))
        call(t.connect)
        wait_for(lambda: {x.token for x in ticks} >= {nifty.token, infy.token}, what="ticks")
        assert any(x.token == infy.token and x.bid and x.ask for x in ticks)  # the book too
        # an order update arrives on the feed (the order subjects of the subscription)
        rest = groww_session.rest_client(cfg, s)
        rest.place_order({"trading_symbol": "INFY", "quantity": 1, "price": 0, "validity": "DAY",
                          "exchange": "NSE", "segment": "CASH", "product": "MIS",
                          "order_type": "MARKET", "transaction_type": "BUY",
                          "order_reference_id": "tick-0000001"})  # fmt: skip
        wait_for(lambda: any(o["orderStatus"] == "EXECUTED" for o in orders), what="updates")
        # the server's PING (replayed byte for byte) is answered with a PONG
        pongs = state(fake)["counts"]["pongs"]
        ping = base64.b64encode(b"PING\r\n").decode()
        assert (
            httpx.post(f"{fake.rest_url}/_fake/replay", json={"frames": [ping]}).status_code == 200
        )
        wait_for(lambda: state(fake)["counts"]["pongs"] > pongs, what="the PONG")
        bad = health.malformed
        fault(fake, "half_frame")
        wait_for(lambda: health.malformed > bad, what="the bad frame counted")
        n = len(ticks)
        wait_for(lambda: len(ticks) > n + 2, what="ticks after the bad frame")
        fault(fake, "drop")
        wait_for(lambda: reconnects, what="a reconnect")
        n = len(ticks)
        wait_for(lambda: len(ticks) > n + 2, what="ticks after the reconnect")
        silent = health.silent_timeouts
        fault(fake, "silent", seconds=2.5)
        wait_for(lambda: health.silent_timeouts > silent, what="the silence detected")
        fault(fake, "token")
        wait_for(lambda: dead, what="the session declared dead")
        assert "log in again" in dead[0]
        connects = t.connects
        time.sleep(1.0)
        assert (
            t.connects == connects and health.problem(time.time_ns(), True)[0] == "broker_session"
        )


def test_history_backfill_resumes(fake: FakeGrowwServer, cfg: Any, master: InstrumentMaster,
                                  tmp_path: Path) -> None:  # fmt: skip
    import datetime as dt

    from mandi.brokers.groww import history

    rest = groww_session.rest_client(cfg, groww_session.login(cfg))
    db = str(tmp_path / "h.db")
    start, end = dt.date(2026, 1, 5), dt.date(2026, 1, 6)  # a Monday and a Tuesday
    windows, rows = history.fetch(rest, master.by_symbol("INFY"), "1minute", start, end, db)
    assert (windows, rows) == (1, 2 * 375)
    assert history.fetch(rest, master.by_symbol("INFY"), "1minute", start, end, db) == (0, 0)
    with pytest.raises(ValueError, match="interval"):
        history.fetch(rest, master.by_symbol("INFY"), "7minute", start, end, db)
