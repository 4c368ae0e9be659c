"""mandi's Kite adapter against ``mandi fakebroker kite`` (in a thread, on loopback), and the
official ``kiteconnect`` package as a second client of the same fake: REST through
``KiteConnect(root=...)``, ticks through the SDK's own parser. Faults are injected at the fake;
every test counts the orders the fake received."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import kiteconnect
import msgspec
import pytest
from fakebroker import fault, state, until, wait_for
from kiteconnect import exceptions as kex
from websockets.asyncio.client import connect

from mandi.brokers.kite.broker import KiteBroker
from mandi.brokers.kite.fake import DEMO_API_KEY, DEMO_API_SECRET, FakeKiteServer
from mandi.brokers.kite.frames import decode_ticks
from mandi.brokers.kite.rest import KiteRest
from mandi.brokers.kite.ticker import KiteTicker
from mandi.brokers.kite.wire import kite_tag, parse_instruments
from mandi.bus.memory import MessageBus
from mandi.core.clock import LiveClock
from mandi.core.errors import BrokerInputError, BrokerSessionError
from mandi.execution.live import FeedHealth
from mandi.execution.memstore import MemoryTradingStore
from mandi.execution.orders import OrderManager
from mandi.execution.ports import BrokerFill, BrokerOrderUpdate, OrderRequest
from mandi.feeds.kite import FrameStats, parse_frame
from mandi.model.instruments import InstrumentMaster
from mandi.model.market import Tick
from mandi.model.orders import Order, OrderStatus, OrderType, Product, Side
from mandi.risk.ratelimit import OrderRateLimiter
from ports import free_port

DATA = Path(__file__).resolve().parents[1] / "data" / "broker_ticks"
INFY = 408065
NIFTY = 256265


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeKiteServer]:
    srv = FakeKiteServer().start()
    yield srv
    srv.stop()


def login(fake: FakeKiteServer) -> KiteRest:
    r = KiteRest(DEMO_API_KEY, root=fake.rest_url, timeout=2.0)
    r.create_session("any-request-token", DEMO_API_SECRET)
    return r


# --- the official SDK as a second client ----------------------------------------------------------
def test_official_sdk_rest_against_the_fake(fake: FakeKiteServer) -> None:
    kite = kiteconnect.KiteConnect(DEMO_API_KEY, root=fake.rest_url)
    with pytest.raises(kex.TokenException):
        kite.generate_session("rt", "wrong secret")
    s = kite.generate_session("rt", DEMO_API_SECRET)
    assert s["user_id"] == "DM1234" and s["access_token"]
    assert kite.profile()["user_id"] == "DM1234"
    nfo = kite.instruments("NFO")
    assert nfo and all(i["exchange"] == "NFO" and i["instrument_type"] in ("CE", "PE") for i in nfo)
    assert all(i["instrument_token"] & 0xFF == 2 for i in nfo)  # Kite's segment byte
    with pytest.raises(kex.InputException):
        kite.place_order("regular", "NSE", "NOSUCH", "BUY", 1, "MIS", "MARKET")
    wait_for(lambda: state(fake)["ticks_seen"], what="the fake's market")
    oid = kite.place_order("regular", "NSE", "INFY", "BUY", 1, "MIS", "MARKET", tag="sdk1")
    wait_for(lambda: kite.order_history(oid)[-1]["status"] == "COMPLETE", what="a fill")
    (trade,) = kite.order_trades(oid)
    assert trade["quantity"] == 1 and trade["average_price"] > 0
    assert any(p["tradingsymbol"] == "INFY" for p in kite.positions()["net"])
    assert kite.margins()["equity"]["available"]["cash"] > 0
    candles = kite.historical_data(INFY, "2026-01-05 09:15:00", "2026-01-05 09:20:00", "minute")
    assert [c["date"].minute for c in candles] == [15, 16, 17, 18, 19, 20]
    r = httpx.get(
        f"{fake.rest_url}/user/profile",
        headers={"Authorization": f"token {DEMO_API_KEY}:{s['access_token']}"},
    )
    assert r.status_code == 400 and r.json()["error_type"] == "InputException"  # no version


async def _collect(url: str, send: list[dict], want: Callable[[list[bytes]], bool]) -> list[bytes]:
    got: list[bytes] = []
    async with connect(url) as ws:
        for m in send:
            await ws.send(msgspec.json.encode(m).decode())
        async with asyncio.timeout(20):
            while not want(got):
                m = await ws.recv()
                if isinstance(m, bytes) and len(m) > 1:
                    got.append(m)
    return got


def test_official_sdk_parses_the_fakes_frames_as_mandi_does(fake: FakeKiteServer) -> None:
    rest = login(fake)
    url = f"{fake.ws_url}?api_key={DEMO_API_KEY}&access_token={rest.access_token}"
    cmds = [{"a": "subscribe", "v": [NIFTY, INFY]}, {"a": "mode", "v": ["full", [NIFTY, INFY]]}]
    got = asyncio.run(_collect(url, cmds, lambda g: len(g) >= 4))
    sdk = kiteconnect.KiteTicker("k", "t")
    seen = set()
    for m in got:
        ours = decode_ticks(m, 0, None, FrameStats())
        theirs = sdk._parse_binary(m)
        assert len(ours) == len(theirs) > 0
        for t, p in zip(ours, theirs, strict=True):
            seen.add(t.token)
            assert t.token == p["instrument_token"]
            assert t.price == round(p["last_price"] * 100)
            assert t.ts_event == int(p["exchange_timestamp"].timestamp()) * 10**9
            if p["mode"] == "full" and p["tradable"]:
                assert t.volume == p["volume_traded"]
                assert t.bid == round(p["depth"]["buy"][0]["price"] * 100)
    assert seen <= {NIFTY, INFY} and NIFTY in seen


# --- mandi's ticker: real captures replayed, faults -----------------------------------------------
class TickerRun:
    """A KiteTicker on its own loop thread, its ticks collected."""

    def __init__(self, fake: FakeKiteServer, token: str, silent_after_s: float = 5.0) -> None:
        import threading

        self.health = FeedHealth(silent_after_s=silent_after_s, storm_reconnects=50)
        self.ticks: list[Tick] = []
        self.orders: list[dict] = []
        self.reconnects = 0
        self.dead: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.ticker = KiteTicker(
            fake.ws_url, DEMO_API_KEY, token, health=self.health, backoff_max_s=0.5
        )
        self.ticker.set_handlers(self.ticks.extend, self.orders.append)
        self.ticker.on_reconnect = self._reconnected
        self.ticker.on_session_dead = self.dead.append
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def _reconnected(self) -> None:
        self.reconnects += 1

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            r = fn()
            return await r if asyncio.iscoroutine(r) else r

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(20)

    def close(self) -> None:
        self.call(self.ticker.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_ticker_replays_real_frames_and_survives_faults(fake: FakeKiteServer) -> None:
    rest = login(fake)
    run = TickerRun(fake, rest.access_token, silent_after_s=1.5)
    try:
        run.call(lambda: run.ticker.subscribe([NIFTY, INFY], "full"))
        run.call(run.ticker.connect)
        wait_for(lambda: {t.token for t in run.ticks} >= {NIFTY}, what="ticks")
        # real captured frames, byte for byte through the fake's socket
        names = [
            "kite_capture_2026-01-21/multi_packet.bin",
            "kite_capture_2026-01-21/single_index_full.bin",
        ]
        raw = [(DATA / n).read_bytes() for n in names]
        want = [t for m in raw for t in parse_frame(m, stats=FrameStats())]
        r = httpx.post(
            f"{fake.rest_url}/_fake/replay",
            json={"frames": [base64.b64encode(m).decode() for m in raw]},
        )
        assert r.json()["connections"] >= 1
        strip = lambda ts: [(t.token, t.price, t.volume, t.oi, t.bid, t.ask) for t in ts]  # noqa: E731
        wait_for(lambda: all(x in strip(run.ticks) for x in strip(want)), what="replayed ticks")
        # a half-written frame is counted and skipped; ticks go on
        bad = run.health.malformed
        fault(fake, "half_frame")
        wait_for(lambda: run.health.malformed > bad, what="the bad frame")
        n = len(run.ticks)
        wait_for(lambda: len(run.ticks) > n + 2, what="ticks after the bad frame")
        # a dropped socket: reconnect with backoff, resubscribe, ticks again
        fault(fake, "drop")
        wait_for(lambda: run.reconnects >= 1, what="a reconnect")
        n = len(run.ticks)
        wait_for(lambda: len(run.ticks) > n + 2, what="ticks after the reconnect")
        # a silent socket (not even heartbeats) is detected and replaced
        silent = run.health.silent_timeouts
        fault(fake, "silent", seconds=2.5)
        wait_for(lambda: run.health.silent_timeouts > silent, what="the silence")
        n = len(run.ticks)
        wait_for(lambda: len(run.ticks) > n + 2, what="ticks after the silence")
        assert run.health.problem(time.time_ns(), True) == ("", "") or run.health.reconnects
        # a dead token: the ticker stops, no reconnect loop
        fault(fake, "token")
        wait_for(lambda: run.dead, what="the session to be declared dead")
        connects = run.ticker.connects
        time.sleep(1.0)
        assert run.ticker.connects == connects
        assert run.health.problem(time.time_ns(), True)[0] == "broker_session"
    finally:
        run.close()


# --- the Broker port ------------------------------------------------------------------------------
class OnLoop(KiteBroker):
    """A KiteBroker driven as the node drives it: connected and called on a running event loop
    (here on a thread of its own), so orders leave through the order sender's kept-alive
    connections instead of the worker thread."""

    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.on_loop(self.connect)
        wait_for(lambda: self.sender is not None and self.sender.ready, what="order connections")

    def on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def call() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def place_order(self, request: OrderRequest) -> Any:
        return self.on_loop(super().place_order, request)

    def close(self) -> None:
        self.on_loop(super().close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(params=["worker", "sender"])
def broker(
    fake: FakeKiteServer, request: pytest.FixtureRequest
) -> Iterator[tuple[KiteBroker, list[Any]]]:
    rest = login(fake)
    master = InstrumentMaster(parse_instruments(rest.instruments()))
    cls = OnLoop if request.param == "sender" else KiteBroker
    b = cls(rest, master, LiveClock(), poll_interval_s=0.3, retry_429=3)
    events: list[Any] = []
    b.set_event_sink(events.append)
    if isinstance(b, OnLoop):
        b.start()
    else:
        b.connect()
    yield b, events
    written = b.sender.written if b.sender is not None else 0
    b.close()
    if isinstance(b, OnLoop):  # every order went out through the sender, none by the worker
        assert written == b.sent >= 1


def req(cid: str, qty: int = 1, token: int = INFY, symbol: str = "INFY") -> OrderRequest:
    return OrderRequest(cid, token, "NSE", symbol, Side.BUY, qty, OrderType.MARKET, 0, Product.MIS)


def cid(b: KiteBroker, name: str) -> str:
    """An order id of its own for each way of sending (the fake lives for the module)."""
    return f"ord-{name}-{type(b).__name__}"


def test_orders_ack_fill_and_reject_with_kites_reason(
    fake: FakeKiteServer, broker: tuple[KiteBroker, list[Any]]
) -> None:
    b, ev = broker
    wait_for(lambda: state(fake)["ticks_seen"], what="prices")
    assert b.place_order(req(cid(b, "fill"), 3)).status == "PENDING"
    until(b, ev, lambda e: sum(x.quantity for x in e if isinstance(x, BrokerFill)) == 3, "fills")
    acks = [x for x in ev if isinstance(x, BrokerOrderUpdate) and x.status is OrderStatus.ACKED]
    assert len(acks) == 1 and acks[0].broker_order_id
    rep = b.order_status(cid(b, "fill"))
    assert rep is not None and rep.status is OrderStatus.FILLED and rep.filled_qty == 3
    assert {f.fill_id for f in rep.fills} == {x.fill_id for x in ev if isinstance(x, BrokerFill)}
    assert b.order_status("never-sent") is None
    ev.clear()
    fault(fake, "reject")
    b.place_order(req(cid(b, "reject")))
    until(
        b,
        ev,
        lambda e: any(getattr(x, "status", None) is OrderStatus.REJECTED for x in e),
        "the rejection",
    )
    rej = next(x for x in ev if getattr(x, "status", None) is OrderStatus.REJECTED)
    assert "RMS:Margin Exceeds" in rej.reason
    assert state(fake)["orders_by_tag"][kite_tag(cid(b, "reject"))] == 1


def test_timeout_after_accept_is_unknown_then_found_by_tag(
    fake: FakeKiteServer, broker: tuple[KiteBroker, list[Any]]
) -> None:
    b, ev = broker
    fault(fake, "timeout", seconds=4)  # the client gives up after 2 s
    b.place_order(req(cid(b, "timeout"), 2))
    until(
        b,
        ev,
        lambda e: any(getattr(x, "status", None) is OrderStatus.UNKNOWN for x in e),
        "UNKNOWN",
    )
    rep = wait_for(lambda: b.order_status(cid(b, "timeout")), what="the order at Kite")
    assert rep.quantity == 2
    until(
        b,
        ev,
        lambda e: sum(x.quantity for x in e if isinstance(x, BrokerFill)) == 2,
        "the fills (postbacks/polling)",
    )
    assert state(fake)["orders_by_tag"][kite_tag(cid(b, "timeout"))] == 1  # never re-sent


def test_http_429_is_retried_without_duplicates(
    fake: FakeKiteServer, broker: tuple[KiteBroker, list[Any]]
) -> None:
    b, ev = broker
    fault(fake, "http429", count=2)
    b.place_order(req(cid(b, "429")))
    until(b, ev, lambda e: any(getattr(x, "status", None) is OrderStatus.ACKED for x in e), "ack")
    assert state(fake)["orders_by_tag"][kite_tag(cid(b, "429"))] == 1


def test_modify_and_cancel(fake: FakeKiteServer, broker: tuple[KiteBroker, list[Any]]) -> None:
    b, ev = broker
    r = OrderRequest(
        cid(b, "limit"), INFY, "NSE", "INFY", Side.BUY, 1, OrderType.LIMIT, 100, Product.MIS
    )  # ₹1: never fills
    b.place_order(r)
    until(b, ev, lambda e: any(getattr(x, "status", None) is OrderStatus.ACKED for x in e), "ack")
    assert b.modify_order(cid(b, "limit"), quantity=2, limit_price=105).status == "ACCEPTED"
    assert b.cancel_order(cid(b, "limit")).status == "PENDING"
    until(
        b,
        ev,
        lambda e: any(getattr(x, "status", None) is OrderStatus.CANCELLED for x in e),
        "the cancel",
    )
    rep = b.order_status(cid(b, "limit"))
    assert rep is not None and rep.status is OrderStatus.CANCELLED and rep.quantity == 2
    assert b.cancel_order(cid(b, "limit")).status == "REJECTED"  # Kite: OrderException


def test_a_reconciliation_pass_reads_the_order_book_once(fake: FakeKiteServer) -> None:
    """After a crash the node restores its open orders and settles them in one pass: one
    ``GET /orders`` (and one ``GET /trades``) for all of them, never a request per order; the
    fills come from Kite's trades, an order Kite never saw is not sent again when too old."""
    rest = login(fake)
    paths: list[str] = []
    rest._http.event_hooks["request"].append(lambda r: paths.append(f"{r.method} {r.url.path}"))
    master = InstrumentMaster(parse_instruments(rest.instruments()))
    clock = LiveClock()
    b = KiteBroker(rest, master, clock, poll_interval_s=3600)
    b.connect()
    wait_for(lambda: state(fake)["ticks_seen"], what="prices")
    held = [f"ord-rec-{i}" for i in range(3)]
    for i, c in enumerate(held):  # sent before the crash; their answers were lost
        rest.place_order(b._params(req(c, i + 1), master.get(INFY), kite_tag(c)))
    tags = {kite_tag(c) for c in held}
    wait_for(
        lambda: [o["status"] for o in rest.orders() if o["tag"] in tags] == ["COMPLETE"] * 3,
        what="the fills at Kite",
    )
    orders = [
        Order(
            c,
            token=INFY,
            exchange="NSE",
            symbol="INFY",
            side=Side.BUY,
            quantity=i + 1,
            status=OrderStatus.SUBMITTED,
            created_ns=1,
        )
        for i, c in enumerate([*held, "ord-rec-never"])
    ]

    def fill(o: Order, f: BrokerFill) -> None:
        o.apply_fill(f.fill_id, f.quantity, f.price, f.ts_ns)

    om = OrderManager(
        store=MemoryTradingStore(),
        broker=b,
        clock=clock,
        bus=MessageBus(clock),
        limiter=OrderRateLimiter(),
        master=master,
        fill_handler=fill,
    )
    om.restore(orders)
    paths.clear()
    try:
        om.reconcile_all()
    finally:
        b.close()
    assert sorted(paths) == ["GET /orders", "GET /trades"]
    assert [(o.status, o.filled_qty) for o in orders[:3]] == [
        (OrderStatus.FILLED, i + 1) for i in range(3)
    ]
    assert orders[3].status is OrderStatus.CANCELLED  # created long ago: not sent again
    assert all(n == 1 for n in state(fake)["orders_by_tag"].values())


def test_a_dead_token_fails_closed(fake: FakeKiteServer) -> None:
    rest = login(fake)
    b = KiteBroker(
        rest,
        InstrumentMaster(parse_instruments(rest.instruments())),
        LiveClock(),
        poll_interval_s=0.2,
    )
    ev: list[Any] = []
    b.set_event_sink(ev.append)
    b.connect()
    try:
        fault(fake, "token")
        with pytest.raises(BrokerSessionError):
            rest.profile()
        b.place_order(req("ord-dead-1"))
        until(
            b,
            ev,
            lambda e: any(getattr(x, "status", None) is OrderStatus.REJECTED for x in e),
            "the rejection",
        )
        assert "log in again" in b.session_dead
        before = state(fake)["counts"]["requests"]
        ack = b.place_order(req("ord-dead-2"))
        assert ack.status == "REJECTED" and "not sent" in ack.reason
        time.sleep(0.6)  # polling must not hammer a dead token
        assert state(fake)["counts"]["requests"] == before  # nothing sent, no polling
    finally:
        b.close()
    with pytest.raises(BrokerInputError, match="InputException"):  # a new login works again
        login(fake).place_order({"exchange": "NSE"})


# --- login through the loopback callback, history, the instrument cache --------------------------
def test_login_through_the_loopback_callback(fake: FakeKiteServer, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    port = free_port()
    fake.fake.redirect_url = f"http://127.0.0.1:{port}/kite/callback"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANDI_")}
    env.update(fake.env(), XDG_CONFIG_HOME=str(tmp_path))
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mandi",
            "broker",
            "login",
            "kite",
            "--callback-port",
            str(port),
            "--timeout",
            "30",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        login_url = env["MANDI_BROKER__KITE__LOGIN_URL"] + f"?api_key={DEMO_API_KEY}&v=3"

        def browser() -> bool:  # what the user's browser does after logging in
            try:
                return httpx.get(login_url, follow_redirects=True).status_code == 200
            except httpx.ConnectError:
                return False  # the callback server is not up yet

        wait_for(browser, what="the callback server")
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "logged in to Kite as DM1234" in out
    assert "request_token" not in out + err  # the redirect URL is never echoed
    saved = tmp_path / "mandi" / "kite-session.json"
    assert saved.stat().st_mode & 0o777 == 0o600


def test_history_backfill_is_resumable(fake: FakeKiteServer, tmp_path: Path) -> None:
    import datetime as dt
    import sqlite3

    from mandi.brokers.kite import history

    rest = login(fake)
    inst = InstrumentMaster(parse_instruments(rest.instruments())).by_symbol("INFY")
    db = str(tmp_path / "h.db")
    steps: list[tuple[int, int, int]] = []
    start, end = dt.date(2026, 1, 5), dt.date(2026, 1, 7)  # Monday to Wednesday
    windows, rows = history.fetch(rest, inst, "minute", start, end, db, lambda *a: steps.append(a))
    assert (windows, rows) == (1, 3 * 375)
    assert steps == [(1, 1, 3 * 375)]
    assert history.fetch(rest, inst, "minute", start, end, db) == (0, 0)  # resumed: done
    w2, r2 = history.fetch(rest, inst, "minute", start, dt.date(2026, 1, 8), db)
    assert (w2, r2) == (1, 375)  # only the new day
    con = sqlite3.connect(db)
    n, first = con.execute(
        "SELECT count(*), min(bucket) FROM candles WHERE token=? AND timeframe=60", (inst.token,)
    ).fetchone()
    con.close()
    assert n == 4 * 375
    assert (
        first
        == int(
            dt.datetime(
                2026, 1, 5, 9, 15, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
            ).timestamp()
        )
        * 10**9
    )
    big = dt.date(2025, 1, 1)
    with pytest.raises(BrokerInputError, match="max limit"):  # the fake enforces Kite's limits
        rest.historical(inst.token, "minute", f"{big} 00:00:00", "2025-06-01 00:00:00")


def test_instrument_cache_and_a_clear_error_when_stale_and_unreachable(
    fake: FakeKiteServer, tmp_path: Path
) -> None:
    import datetime as dt

    from mandi.brokers.kite import instruments
    from mandi.config import KiteConfig
    from mandi.core.errors import InstrumentError

    freeze = tmp_path / "qtyfreeze.csv"
    freeze.write_text("SYMBOL,VOL_FRZ_QTY\nNIFTY,1800\n")
    cfg = KiteConfig(cache_dir=str(tmp_path / "cache"), freeze_file=str(freeze))
    day = dt.date(2026, 1, 5)
    insts = instruments.load(cfg, login(fake), day)
    assert instruments.dump_path(cfg, day).exists()
    nifty_opts = [i for i in insts if getattr(i, "underlying", "") == "NIFTY"]
    assert nifty_opts and all(i.freeze_qty == 1800 for i in nifty_opts)
    assert instruments.load(cfg, None, day) == insts  # from the cache, no Kite needed
    dead = KiteRest(DEMO_API_KEY, "x", root="http://127.0.0.1:9", timeout=1.0)
    with pytest.raises(InstrumentError, match=r"cached dump is from 2026-01-05.*unreachable"):
        instruments.load(cfg, dead, dt.date(2026, 1, 6))
