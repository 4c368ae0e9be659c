"""``mandi service gateway`` serves ``mandi run``'s REST + WebSocket API from Redis: a real
redis-server, ``mdengine`` (simulated feed) and ``indengine`` on one shared SQLite file (as
``mandi up`` runs them), and the gateway as a process; checked over HTTP and a WebSocket."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from types import SimpleNamespace

import httpx
import msgspec
import pytest
from redis_server import RedisServer, _need_redis, free_port
from websockets.sync.client import connect

from mandi.bus.codec import codec
from mandi.config import load_config
from mandi.core.ids import stable_id
from mandi.model.instruments import InstrumentMaster, parse_instrument_csv
from mandi.services.distributed.node import CMD_STREAM, RedisHistory
from mandi.web import serialize as ser
from mandi.web.api import MandiAPI
from mandi.web.security import TokenStore

NIFTY = 256265
CMD_TIMEOUT_S = 2.0  # the gateway's wait for the strategy service
TF = 15  # a short timeframe: candles and warm indicators within seconds of wall time
ENV = {
    "MANDI_SIM__UNDERLYINGS": '["NIFTY"]',
    "MANDI_SIM__STOCKS": '["RELIANCE"]',
    "MANDI_SIM__STRIKES_EACH_SIDE": "2",
    "MANDI_PIPELINE__TIMEFRAMES": f"[{TF}, 60]",
    "MANDI_INDICATORS__TIMEFRAMES": f"[{TF}]",
    "MANDI_CHAINS__ENABLED": "false",
}


def health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def wait_for(pred, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        for p in procs:
            assert p.poll() is None, (
                f"a service exited with {p.returncode} while waiting for {what}"
            )
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    _need_redis()
    tmp = tmp_path_factory.mktemp("gateway")
    server = RedisServer(tmp / "redis").start()
    store = TokenStore(str(tmp / "tokens.json"))
    tokens = {scope: store.create(scope, scope)[1] for scope in ("read", "trade")}
    db, web, gw_port = str(tmp / "mandi.db"), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANDI_")}
    env.update(
        ENV,
        MANDI_REDIS_URL=server.url,
        MANDI_WEB__TOKENS_FILE=str(tmp / "tokens.json"),
        MANDI_WEB__METRICS_INTERVAL_S="1",
        MANDI_RUN__PORT=str(web),
        MANDI_REDIS__TICKS="all",  # the strategy service's prices for manual orders
        MANDI_GATEWAY_COMMAND_TIMEOUT_S=str(CMD_TIMEOUT_S),
    )
    log = open(tmp / "services.log", "wb")  # noqa: SIM115
    procs: list[subprocess.Popen[bytes]] = []

    def service(*args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [sys.executable, "-m", "mandi", "service", *args, "--db", db],
            env=env,
            stdout=log,
            stderr=log,
        )
        procs.append(p)
        return p

    try:
        service("gateway", "--port", str(gw_port))
        service("indengine", "--port", "0")
        # the gateway is up (and subscribed) before mdengine publishes anything
        wait_for(
            lambda: (health(gw_port) or {}).get("state") == "running", 30, "the gateway", procs
        )
        service(
            "mdengine",
            "--feed",
            "sim",
            "--port",
            "0",
            "--speed",
            "30",
            "--date",
            "2026-04-13",
            "--seed",
            "7",
            "--status-interval",
            "0",
        )
        yield SimpleNamespace(
            url=f"http://127.0.0.1:{web}",
            ws_url=f"ws://127.0.0.1:{web}/ws",
            redis=server,
            db=db,
            tokens=tokens,
            procs=procs,
            gw_port=gw_port,
            log=tmp / "services.log",
            service=service,
        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()
        server.kill()


def get(d, path: str, as_: str | None = "read", **params) -> httpx.Response:
    headers = auth(d.tokens[as_]) if as_ else {}
    return httpx.get(d.url + path, params=params, headers=headers, timeout=10)


def stored_candles(db: str, token: int, tf: int) -> list[tuple[int, int, int, int, int]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(
            "SELECT bucket, open, high, low, close FROM candles WHERE token=? AND timeframe=? "
            "ORDER BY bucket",
            (token, tf),
        ).fetchall()
    finally:
        con.close()


def test_health_status_and_instruments_from_redis(deployment):
    d = deployment
    h = get(d, "/health", as_=None)
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "ok" and body["feed"] is None and body["trading"] is False
    # the instrument master came over Redis (mdengine writes it after the gateway started)
    inst = wait_for(
        lambda: get(d, f"/api/v1/instruments/{NIFTY}").status_code == 200, 60, "the master"
    )
    assert inst
    assert get(d, f"/api/v1/instruments/{NIFTY}").json()["symbol"] == "NIFTY"
    assert get(d, "/api/v1/status", as_=None).status_code == 401
    # ticks and candles counted from Pub/Sub
    st = wait_for(
        lambda: (
            (s := get(d, "/api/v1/status").json())["ticks_in"] > 0
            and s["candles_confirmed"].get(str(TF), 0) > 0
            and s
        ),
        60,
        "ticks and candles in /api/v1/status",
        d.procs,
    )
    assert st["exchange_time"].startswith("2026-04-13") and "NIFTY" in st["indices"]
    assert (health(d.gw_port) or {}).get("state") == "running"


def test_candles_are_served_from_the_shared_store_and_redis(deployment):
    d = deployment

    def served():
        r = get(d, "/api/v1/candles", token=NIFTY, timeframe=TF, limit=1000)
        return r.status_code == 200 and len(r.json()["candles"]) >= 3 and r.json()

    body = wait_for(served, 60, "NIFTY candles from the gateway", d.procs)
    got = [(c["t"], c["open"], c["close"]) for c in body["candles"]]
    stored = {b // 10**9: (o / 100, c / 100) for b, o, _h, _l, c in stored_candles(d.db, NIFTY, TF)}
    assert all(stored.get(t) == (o, c) for t, o, c in got), "not the candles mdengine stored"
    assert body["instrument"]["symbol"] == "NIFTY" and body["timeframe"] == TF

    # a gateway that cannot open mdengine's SQLite (another machine) reads the Redis streams
    history = RedisHistory(d.redis.url)
    try:
        from_redis = history.candles(NIFTY, "NSE", TF, 1 << 62, 1000)
        assert len(from_redis) >= 3
        last = from_redis[-1].bucket
        # mdengine's SQLite writer may commit a batch after Redis got it
        wait_for(lambda: stored_candles(d.db, NIFTY, TF)[-1][0] >= last, 30, "SQLite to catch up")
        sql = {b: (o, c) for b, o, _h, _l, c in stored_candles(d.db, NIFTY, TF)}
        assert all(sql.get(c.bucket) == (c.open, c.close) for c in from_redis)
        cfg = load_config(env={}, overrides={"store.db": str(d.db) + ".empty", **_cfg_overrides()})
        master = InstrumentMaster()
        for inst in parse_instrument_csv(d.redis.client().get("instruments:master").decode()):
            master.add(inst)
        api = MandiAPI(SimpleNamespace(cfg=cfg, master=master, history=history))  # type: ignore[arg-type]
        sqlite3.connect(cfg.store.db).close()  # an empty database: nothing stored here
        # (bounded by `before`: newer candles keep arriving)
        out = api.candles(NIFTY, TF, limit=5, before=ser.iso(last + 10**9))["candles"]
        assert [c["t"] for c in out] == [c.bucket // 10**9 for c in from_redis[-5:]]
        assert [c["close"] for c in out] == [c.close / 100 for c in from_redis[-5:]]
        assert api.candles(NIFTY, TF, limit=5, before=out[-1]["time"])["candles"][-1] == out[-2]
        names = wait_for(lambda: api.indicator_names(NIFTY, TF), 60, "indicator streams")
        assert "SMA_9" in names
        ind = api.indicators(NIFTY, TF, ["SMA_9"], limit=3)
        assert ind["series"]["SMA_9"] and ind["series"]["SMA_9"][-1]["value"] > 0
    finally:
        history.close()


def _cfg_overrides() -> dict:
    return {
        "pipeline.timeframes": (TF, 60),
        "indicators.timeframes": (TF,),
    }


def test_websocket_receives_live_candles_and_indicators_over_redis(deployment):
    d = deployment
    wait_for(lambda: get(d, f"/api/v1/instruments/{NIFTY}").status_code == 200, 60, "the master")
    channels = [
        f"candle:{TF}s:NSE:{NIFTY}",
        f"pub:candle:{TF}s:NSE:{NIFTY}",
        f"ind:*:{TF}s:NSE:{NIFTY}",
        f"tick:NSE:{NIFTY}",
    ]
    seen: dict[str, list] = {}
    with connect(d.ws_url, additional_headers=auth(d.tokens["read"])) as ws:
        first = [json.loads(x) for x in ws.recv(timeout=10).split("\n")]
        assert first[0]["type"] == "hello" and first[0]["data"]["scope"] == "read"
        ws.send(json.dumps({"op": "subscribe", "channels": channels}))
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            try:
                frame = ws.recv(timeout=2)
            except TimeoutError:
                continue
            for line in frame.split("\n"):
                m = json.loads(line)
                assert m.get("type") != "error", m
                if "channel" in m:
                    kind = (
                        m["channel"].split(":")[0]
                        if not m["channel"].startswith("pub:")
                        else "forming"
                    )
                    seen.setdefault(kind, []).append(m)
            if {"candle", "forming", "ind", "tick"} <= seen.keys():
                break
    assert {"candle", "forming", "ind", "tick"} <= seen.keys(), sorted(seen)
    # each confirmed candle is the entry mdengine added to its Redis stream
    r = d.redis.client()
    for m in seen["candle"]:
        t = m["data"]["t"]
        entries = r.xrange(f"candle:{TF}s:NSE:{NIFTY}", f"{t * 1000}-0", f"{t * 1000}-0")
        assert entries, f"candle {t} is not in Redis"
        c = codec.decode(entries[0][1][b"d"])
        assert c.close / 100 == m["data"]["close"]
    for m in seen["ind"]:
        name = m["channel"].split(":")[1]
        assert m["channel"] == f"ind:{name}:{TF}s:NSE:{NIFTY}"
        assert r.exists(f"ind:{name}:{TF}s:NSE:{NIFTY}"), "an indicator value not from Redis"
    assert all(m["data"]["closed"] is False for m in seen["forming"] if "closed" in m["data"])


def trade(d, path: str, body: dict | None = None, method: str = "POST") -> httpx.Response:
    return httpx.request(
        method, d.url + path, json=body, headers=auth(d.tokens["trade"]), timeout=30
    )


def orders_of(db: str, request_id: str) -> list[tuple[str, str]]:
    """The orders a manual request placed (their parent id derives from the request id)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(
            "SELECT order_id, status FROM orders WHERE parent_id=? OR order_id=?",
            (stable_id("manual", request_id),) * 2,
        ).fetchall()
    except sqlite3.OperationalError:  # no orders table yet
        return []
    finally:
        con.close()


def command(kind: str, args: dict, expires_ms: int, cmd_id: str) -> bytes:
    return msgspec.msgpack.encode(
        {
            "v": 1,
            "id": cmd_id,
            "kind": kind,
            "args": args,
            "caller": {"token_id": "t", "name": "test", "scope": "trade", "via": "bearer"},
            "sent_ms": expires_ms - 1000,
            "expires_ms": expires_ms,
        }
    )


def reliance_order(request_id: str) -> dict:
    return {"side": "BUY", "symbol": "RELIANCE", "quantity": 1, "request_id": request_id}


def test_without_a_strategy_service_commands_time_out_and_are_withdrawn(deployment):
    d = deployment
    wait_for(lambda: get(d, f"/api/v1/instruments/{NIFTY}").status_code == 200, 60, "the master")
    order = reliance_order("gone-1")
    url = d.url + "/api/v1/orders"
    assert httpx.post(url, json=order, timeout=10).status_code == 401
    assert httpx.post(url, json=order, headers=auth("mandi_x_wrong"), timeout=10).status_code == 401
    assert (
        httpx.post(url, json=order, headers=auth(d.tokens["read"]), timeout=10).status_code == 403
    )
    assert httpx.post(d.url + "/api/v1/trading/halt", json={}, timeout=10).status_code == 401
    r = d.redis.client()
    assert r.xlen(CMD_STREAM) == 0, "a refused request was relayed"
    for path, body, method in (
        ("/api/v1/orders", order, "POST"),
        ("/api/v1/trading/halt", {"reason": "test"}, "POST"),
        ("/api/v1/orders/abc123", None, "DELETE"),
    ):
        t0 = time.monotonic()
        resp = trade(d, path, body, method)
        took = time.monotonic() - t0
        assert resp.status_code == 504, (path, resp.text)
        e = resp.json()
        assert e["error"] == "trading_timeout" and e["service"] == "strategy"
        assert "will not be executed later" in e["message"]
        assert CMD_TIMEOUT_S - 0.1 <= took < CMD_TIMEOUT_S + 3, took
    # the wait happens off the gateway's event loop: it keeps answering meanwhile
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(trade, d, "/api/v1/trading/resume", {"reason": "t"}, "POST")
        time.sleep(0.3)
        answered = []
        while not waiting.done():
            t0 = time.monotonic()
            assert get(d, "/api/v1/status").status_code == 200
            answered.append(time.monotonic() - t0)
        assert waiting.result().status_code == 504
    assert len(answered) >= 3 and max(answered) < 0.5 * CMD_TIMEOUT_S, answered
    # withdrawn: deleted from the stream and marked expired (a strategy service never runs it)
    assert r.xlen(CMD_STREAM) == 0
    claims = [k for k in r.keys("cmd:claim:*")]
    assert len(claims) == 4 and {r.get(k) for k in claims} == {b"expired"}
    # commands a gateway could not withdraw (it died while waiting, or lost its XDEL): one past
    # its deadline, one the gateway marked expired; neither may run when the strategy starts
    now = int(time.time() * 1000)
    r.xadd(CMD_STREAM, {"d": command("place", _args("gone-2"), now - 1, "c-gone-2")})
    r.set("cmd:claim:c-gone-3", "expired")
    r.xadd(CMD_STREAM, {"d": command("place", _args("gone-3"), now + 3_600_000, "c-gone-3")})
    r.xadd(CMD_STREAM, {"d": command("halt", {"reason": "stale"}, now - 1, "c-gone-4")})
    # reads of the trading side come from the shared store (empty: no strategy service here)
    for path in ("/api/v1/positions", "/api/v1/orders", "/api/v1/signals"):
        resp = get(d, path)
        assert resp.status_code == 200 and resp.json() == [], (path, resp.text)
    assert get(d, "/api/v1/risk").json() == {"trading": False}


def _args(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "symbol": "RELIANCE",
        "side": "BUY",
        "quantity": 1,
        "limit_price": 0,
        "exchange": "NSE",
    }


def test_open_positions_are_read_from_the_strategy_services_store(deployment):
    d = deployment
    con = sqlite3.connect(d.db, timeout=30)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(positions)")]
        row = dict.fromkeys(cols, 0)
        row.update(
            position_id="P-1",
            signal_id="S-1",
            symbol="NIFTY",
            underlying="NIFTY",
            option_type="",
            expiry=None,
            entry_timestamp=1_776_052_500 * 10**9,
            entry_premium=2_400_000,
            quantity=75,
            lot_size=75,
            status="OPEN",
            metadata="{}",
            strategy="sma_cross",
            token=NIFTY,
            exchange="NSE",
            product="MIS",
            direction=1,
            entry_qty=75,
        )
        with con:
            con.execute(
                f"INSERT INTO positions ({','.join(row)}) VALUES ({','.join('?' * len(row))})",
                tuple(row.values()),
            )
    finally:
        con.close()
    got = get(d, "/api/v1/positions").json()
    assert [p["position_id"] for p in got] == ["P-1"]
    assert got[0]["net_quantity"] == 75 and got[0]["status"] == "OPEN"
    assert get(d, "/api/v1/positions", status="closed").json() == []
    assert get(d, "/api/positions").json()["positions"][0]["position_id"] == "P-1"
    with contextlib.closing(sqlite3.connect(d.db, timeout=30)) as con, con:
        con.execute("DELETE FROM positions WHERE position_id='P-1'")  # not for the strategy


def test_commands_are_relayed_to_the_strategy_service(deployment):
    d = deployment
    r = d.redis.client()
    d.service("strategy", "--port", "0")

    def consumed():
        groups = r.xinfo_groups(CMD_STREAM)
        last = r.xrevrange(CMD_STREAM, count=1)[0][0]
        return groups and groups[0]["pending"] == 0 and groups[0]["last-delivered-id"] == last

    wait_for(consumed, 60, "the strategy service to read the command stream", d.procs)
    # the gateway sees the strategy's risk events (risk:> is one of its outputs)
    with connect(d.ws_url, additional_headers=auth(d.tokens["read"])) as ws:
        ws.recv(timeout=10)
        ws.send(json.dumps({"op": "subscribe", "channels": ["risk:>"]}))
        # an order as mandi run's API answers it: accepted (prices come over Pub/Sub; retried
        # while the strategy service has none yet, within the order rate limit)
        for _ in range(8):
            resp = trade(d, "/api/v1/orders", reliance_order("gw-1"))
            if resp.status_code != 409 or resp.json().get("rule") != "no_market_data":
                break
            time.sleep(2)
        assert resp.status_code == 201, resp.text
        first = resp.json()
        assert first["status"] == "ACCEPTED" and first["order_ids"], first
        assert first["symbol"] == "RELIANCE" and first["request_id"] == "gw-1"
        placed = wait_for(lambda: orders_of(d.db, "gw-1"), 30, "the order in SQLite")
        assert [o for o, _ in placed] == first["order_ids"]
        # the same request id again: answered, nothing new placed
        again = trade(d, "/api/v1/orders", reliance_order("gw-1"))
        # as mandi run answers a repeat: the original orders, before any risk check
        assert again.status_code == 201, again.text
        assert again.json()["status"] == "ACCEPTED"
        assert again.json()["order_ids"] == first["order_ids"]
        time.sleep(1)
        assert [o for o, _ in orders_of(d.db, "gw-1")] == first["order_ids"]
        # halt through the gateway: the strategy's risk manager refuses the next order
        h = trade(d, "/api/v1/trading/halt", {"reason": "gateway test"})
        assert h.status_code == 200, h.text
        assert h.json()["changed"] is True and h.json()["halted"] is True
        assert h.json()["halt_reason"] == "gateway test"
        denied = trade(d, "/api/v1/orders", reliance_order("gw-2"))
        assert denied.status_code == 409, denied.text
        e = denied.json()
        assert e["error"] == "risk_denied" and e["status"] == "DENIED" and e["rule"], e
        assert "halt" in (e["rule"] + e["reason"]).lower(), e
        assert orders_of(d.db, "gw-2") == []
        seen: dict[str, dict] = {}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not {"risk:halted", "risk:denied"} <= seen.keys():
            try:
                frame = ws.recv(timeout=2)
            except TimeoutError:
                continue
            for line in frame.split("\n"):
                m = json.loads(line)
                if "channel" in m:
                    seen[m["channel"]] = m["data"]
    assert {"risk:halted", "risk:denied"} <= seen.keys(), sorted(seen)
    assert seen["risk:denied"]["rule"] == e["rule"]
    assert seen["risk:halted"]["reason"] == "gateway test"
    assert get(d, "/api/v1/pnl").status_code == 200
    assert get(d, "/api/v1/pnl").json()["halted"] is True
    res = trade(d, "/api/v1/trading/resume", {"reason": "done"})
    assert res.status_code == 200 and res.json()["changed"] is True and not res.json()["halted"]
    # nothing withdrawn or expired ever ran: no orders, and the stale halt did not halt
    for rid in ("gone-1", "gone-2", "gone-3"):
        assert orders_of(d.db, rid) == [], rid
    assert "(place) arrived after its deadline; not executed" in d.log.read_text()
    assert "the gateway gave up on it; not executed" in d.log.read_text()


def test_sigterm_stops_the_gateway_cleanly(deployment):  # last: it stops the gateway
    d = deployment
    gw = d.procs[0]
    gw.send_signal(signal.SIGTERM)
    assert gw.wait(30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(d.url + "/health", timeout=5)
