"""``mandi service gateway`` serves ``mandi run``'s REST + WebSocket API from Redis: a real
redis-server, ``mdengine`` (simulated feed) and ``indengine`` on one shared SQLite file (as
``mandi up`` runs them), and the gateway as a process; checked over HTTP and a WebSocket."""

from __future__ import annotations

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
import pytest
from redis_server import RedisServer, _need_redis, free_port
from websockets.sync.client import connect

from mandi.bus.codec import codec
from mandi.config import load_config
from mandi.model.instruments import InstrumentMaster, parse_instrument_csv
from mandi.services.distributed.node import RedisHistory
from mandi.web import serialize as ser
from mandi.web.api import MandiAPI
from mandi.web.security import TokenStore

NIFTY = 256265
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


def test_state_changes_need_a_token_and_name_the_strategy_service(deployment):
    d = deployment
    wait_for(lambda: get(d, f"/api/v1/instruments/{NIFTY}").status_code == 200, 60, "the master")
    order = {"side": "BUY", "token": NIFTY, "quantity": 75}
    url = d.url + "/api/v1/orders"
    assert httpx.post(url, json=order, timeout=10).status_code == 401
    assert httpx.post(url, json=order, headers=auth("mandi_x_wrong"), timeout=10).status_code == 401
    assert (
        httpx.post(url, json=order, headers=auth(d.tokens["read"]), timeout=10).status_code == 403
    )
    assert httpx.post(d.url + "/api/v1/trading/halt", json={}, timeout=10).status_code == 401
    for path, body in (
        ("/api/v1/orders", order),
        ("/api/v1/trading/halt", {"reason": "test"}),
        ("/api/v1/trading/resume", {}),
    ):
        r = httpx.post(d.url + path, json=body, headers=auth(d.tokens["trade"]), timeout=10)
        assert r.status_code == 503, (path, r.text)
        e = r.json()
        assert e["error"] == "trading_unavailable" and e["service"] == "strategy"
        assert "strategy service" in e["message"]
    r = httpx.delete(url + "/abc123", headers=auth(d.tokens["trade"]), timeout=10)
    assert r.status_code == 503 and r.json()["service"] == "strategy"
    # reads of the trading side come from the shared store (empty: no strategy service here)
    for path in ("/api/v1/positions", "/api/v1/orders", "/api/v1/signals"):
        r = get(d, path)
        assert r.status_code == 200 and r.json() == [], (path, r.text)
    assert get(d, "/api/v1/risk").json() == {"trading": False}
    # nothing was sent anywhere: no command stream exists in Redis
    assert not [k for k in d.redis.client().keys("*") if k.startswith((b"order", b"cmd"))]


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


def test_sigterm_stops_the_gateway_cleanly(deployment):  # last: it stops the gateway
    d = deployment
    gw = d.procs[0]
    gw.send_signal(signal.SIGTERM)
    assert gw.wait(30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(d.url + "/health", timeout=5)
