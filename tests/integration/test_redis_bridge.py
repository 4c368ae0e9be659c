"""The Redis bridge and indengine in-process, against a real redis-server: key names, MAXLEN
trimming, TTLs, idempotent re-publishing, dead letters, waiting for Redis and reconnecting."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import urllib.error
import urllib.request

import msgspec
import pytest
from redis_server import RedisServer, redis_aof, redis_server  # noqa: F401 - fixtures

from mandi.bus.codec import codec
from mandi.bus.redis import (
    GroupReader,
    RedisLink,
    StreamPublisher,
    latest_key,
    registry_key,
    stream_id,
    token_partition,
)
from mandi.config import load_config
from mandi.indicators import IndicatorEngine
from mandi.model.market import Candle, Tick
from mandi.services.distributed.indengine import IndEngineService, RedisSnapshot, snapshot_key

T0 = 1_776_052_500 * 10**9  # 2026-04-13 09:15 IST


def make_candles(tokens, n, tf=60, seed=1, start=0):
    """Deterministic random-walk candles in production order (bucket, then token)."""
    rng = random.Random(seed)
    price = {t: 2_000_000 + 1000 * t for t in tokens}
    out = []
    for b in range(start, start + n):
        for t in tokens:
            o = price[t]
            c = o + rng.randint(-500, 500)
            price[t] = c
            out.append(
                Candle(
                    t,
                    "NSE",
                    tf,
                    T0 + b * tf * 10**9,
                    o,
                    max(o, c) + 50,
                    min(o, c) - 50,
                    c,
                    rng.randint(1, 10_000),
                    0,
                    5,
                    True,
                )
            )
    return out


def reference(candles, specs=None):
    engine = IndicatorEngine(specs)
    return engine.process_many(candles)


def topic(c):
    return f"candle:{c.timeframe}s:{c.exchange}:{c.token}"


async def publish(url, candles, retention_s=10_800, **kw):
    link = RedisLink(url, "test")
    pub = StreamPublisher(link, retention_s, **kw)
    task = asyncio.create_task(pub.run())
    for c in candles:
        pub.confirmed(topic(c), stream_id(c.bucket), codec.encode(c))
    await pub.drained()
    task.cancel()
    link.close()
    return pub


def cfg_for(url, tmp_path, **over):
    base = {
        "redis.url": url,
        "store.db": str(tmp_path / "ind.db"),
        "redis.block_ms": 50,
        "redis.snapshot_interval_s": 0.2,
        "redis.discover_interval_s": 0.1,
        "indicators.timeframes": [60],
        "redis.retention_s": 86_400,
    }
    return load_config(env={}, overrides={**base, **over})


async def run_until(svc, predicate, timeout=30.0):
    task = asyncio.create_task(svc.run(signals=False))
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            assert not task.done(), task.exception()
            assert asyncio.get_running_loop().time() < deadline, (
                svc.state.as_dict(),
                dict(svc.stats),
            )
            await asyncio.sleep(0.02)
    finally:
        svc.stop.set()
        await asyncio.wait_for(task, 30)


def caught_up(svc, candles):
    last = {}
    for c in candles:
        last[(c.token, c.exchange, c.timeframe)] = c.bucket
    pos = svc.position()
    return svc.state.state == "running" and all(pos.get(k) == b for k, b in last.items())


def stored_values(db):
    con = sqlite3.connect(db)
    try:
        return sorted(
            con.execute(
                "SELECT token, exchange, timeframe, bucket, name, value FROM indicator_values"
            ).fetchall()
        )
    finally:
        con.close()


def as_rows(values):
    return sorted((v.token, v.exchange, v.timeframe, v.bucket, v.name, v.value) for v in values)


# --- publishing: names, trimming, TTLs, idempotence -----------------------------------------------


def test_keys_trimming_ttls_and_idempotent_republishing(redis_server):  # noqa: F811
    r = redis_server.client()
    ps = r.pubsub()
    ps.psubscribe("pub:candle:*")
    assert ps.get_message(timeout=2)["type"] == "psubscribe"
    one_min = make_candles([256265], 1000, tf=60)
    one_sec = make_candles([256265], 2000, tf=1, seed=2)
    pub = asyncio.run(
        publish(redis_server.url, one_min + one_sec, retention_s=10_800, retention_1s_s=600)
    )
    assert pub.stats.confirmed == 3000 and pub.stats.duplicates == 0
    key = "candle:60s:NSE:256265"
    # MAXLEN ~ 3 h of 60 s buckets = 180 (whole 100-entry nodes are trimmed)
    assert 180 <= r.xlen(key) < 180 + 100
    assert 600 <= r.xlen("candle:1s:NSE:256265") < 600 + 100
    last_id, fields = r.xrevrange(key, count=1)[0]
    assert last_id.decode() == f"{one_min[-1].bucket // 1_000_000}-0"
    assert codec.decode(fields[b"d"]) == one_min[-1]
    assert latest_key(key) == "candle:60s:latest:NSE:256265"
    assert codec.decode(r.get("candle:60s:latest:NSE:256265")) == one_min[-1]
    assert 1790 <= r.ttl("candle:60s:latest:NSE:256265") <= 1800
    assert r.smembers(registry_key(key)) == {key.encode()}
    assert r.smembers("streams:candle:1s") == {b"candle:1s:NSE:256265"}
    got = []
    while (m := ps.get_message(timeout=0.5)) is not None:
        if m["type"] == "pmessage":
            got.append((m["channel"].decode(), codec.decode(m["data"])))
    assert [c for ch, c in got if ch == "pub:" + key] == one_min
    # re-publishing (a restart, a retried batch) duplicates nothing
    n = r.xlen(key)
    again = asyncio.run(publish(redis_server.url, one_min[-50:]))
    assert again.stats.duplicates == 50 and again.stats.confirmed == 0
    assert r.xlen(key) == n


def test_forming_results_are_published_only(redis_server):  # noqa: F811
    r = redis_server.client()
    ps = r.pubsub()
    ps.psubscribe("pub:*")
    ps.get_message(timeout=2)

    async def go():
        link = RedisLink(redis_server.url, "test")
        pub = StreamPublisher(link)
        task = asyncio.create_task(pub.run())
        c = make_candles([7], 1)[0]
        forming = msgspec.structs.replace(c, closed=False)
        for close in (100, 200, 300):  # coalesced: the latest per channel per batch
            pub.forming(
                "pub:candle:60s:NSE:7", codec.encode(msgspec.structs.replace(forming, close=close))
            )
        pub.forming("pub:tick:NSE:7", codec.encode(Tick(7, "NSE", c.bucket, 0, 123)))
        await pub.drained()
        task.cancel()
        link.close()

    asyncio.run(go())
    msgs = []
    while (m := ps.get_message(timeout=0.5)) is not None:
        if m["type"] == "pmessage":
            msgs.append((m["channel"], codec.decode(m["data"])))
    assert [(ch, x.close) for ch, x in msgs if ch == b"pub:candle:60s:NSE:7"] == [
        (b"pub:candle:60s:NSE:7", 300)
    ]
    assert any(ch == b"pub:tick:NSE:7" for ch, _ in msgs)
    assert r.keys("*") == []  # no stream, no latest key, no registry for forming results


# --- indengine: outputs, snapshot, dead letters ---------------------------------------------------


def test_indengine_outputs_match_the_kernel_and_are_acknowledged(redis_server, tmp_path):  # noqa: F811
    r = redis_server.client()
    cs = make_candles([1, 2, 3], 60)
    asyncio.run(publish(redis_server.url, cs))
    expected = reference(cs)
    cfg = cfg_for(redis_server.url, tmp_path)
    svc = IndEngineService(cfg, port=0)
    asyncio.run(run_until(svc, lambda: caught_up(svc, cs)))
    assert as_rows(expected) == stored_values(cfg.store.db)
    v = expected[-1]
    key = f"ind:{v.name}:60s:NSE:{v.token}"
    entries = r.xrange(key)
    assert len(entries) == sum(1 for x in expected if (x.name, x.token) == (v.name, v.token))
    assert entries[-1][0].decode() == stream_id(v.bucket)
    assert codec.decode(entries[-1][1][b"d"]) == v
    assert codec.decode(r.get(f"ind:{v.name}:60s:latest:NSE:{v.token}")) == v
    assert 1790 <= r.ttl(f"ind:{v.name}:60s:latest:NSE:{v.token}") <= 1800
    assert key.encode() in r.smembers("streams:ind:60s")
    snap_key = snapshot_key(token_partition(1, 16), 16)
    snap = msgspec.msgpack.decode(r.get(snap_key), type=RedisSnapshot)
    assert snap.streams["candle:60s:NSE:1"] == stream_id(cs[-1].bucket)
    for t in (1, 2, 3):
        assert r.xpending(f"candle:60s:NSE:{t}", "indengine")["pending"] == 0
    assert r.xlen("dlq:indengine") == 0


def test_malformed_entries_go_to_the_dead_letter_stream_with_their_reason(redis_server, tmp_path):  # noqa: F811
    r = redis_server.client()
    good = make_candles([1], 40)
    asyncio.run(publish(redis_server.url, good[:20]))
    key = "candle:60s:NSE:1"
    base = good[19].bucket // 1_000_000
    r.xadd(key, {"d": b"\xc1 not msgpack"}, id=f"{base}-1")
    r.xadd(key, {"d": codec.encode(Tick(1, "NSE", 1, 0, 5))}, id=f"{base}-2")
    r.xadd(key, {"x": b"no d field"}, id=f"{base}-3")
    other = msgspec.structs.replace(good[20], token=2)  # a candle of another series
    r.xadd(key, {"d": codec.encode(other)}, id=f"{base}-4")
    asyncio.run(publish(redis_server.url, good[20:]))
    svc = IndEngineService(cfg_for(redis_server.url, tmp_path), port=0)
    asyncio.run(run_until(svc, lambda: caught_up(svc, good) and svc.reader.dead_lettered >= 4))
    dead = r.xrange("dlq:indengine")
    reasons = [f[b"reason"].decode() for _, f in dead]
    assert len(dead) == 4
    assert reasons[0].startswith("undecodable")
    assert "not a confirmed candle" in reasons[1] and "Tick" in reasons[1]
    assert reasons[2] == "no 'd' field in the entry"
    assert "not a confirmed candle" in reasons[3]
    assert {f[b"stream"] for _, f in dead} == {key.encode()}
    assert dead[0][1][b"payload"] == b"\xc1 not msgpack"
    assert r.xlen(key) == 40  # moved out of the stream: a replay never meets them again
    assert r.xpending(key, "indengine")["pending"] == 0
    assert as_rows(reference(good)) == stored_values(svc.cfg.store.db)  # the rest went on
    assert svc.dead_reasons["undecodable"] == 1


def test_an_entry_delivered_too_often_is_dead_lettered_at_start(redis_server, tmp_path):  # noqa: F811
    r = redis_server.client()
    cs = make_candles([5], 30)
    asyncio.run(publish(redis_server.url, cs))
    key = "candle:60s:NSE:5"
    r.xgroup_create(key, "indengine", id="0")
    ((_, [(poison_id, _)]),) = r.xreadgroup("indengine", "crashed", {key: ">"}, count=1)
    for _ in range(4):  # as if four incarnations crashed on it: 5 deliveries
        r.xclaim(key, "indengine", "crashed", 0, [poison_id])
    r.xgroup_setid(key, "indengine", id="0")  # the rest were never delivered
    svc = IndEngineService(
        cfg_for(redis_server.url, tmp_path, **{"redis.dead_letter_after": 5}), port=0
    )
    asyncio.run(run_until(svc, lambda: caught_up(svc, cs)))
    ((_, f),) = r.xrange("dlq:indengine")
    assert f[b"id"] == poison_id and f[b"reason"].startswith(b"delivered 5 times")
    assert as_rows(reference(cs[1:])) == stored_values(svc.cfg.store.db)
    assert r.xpending(key, "indengine")["pending"] == 0


def test_a_warm_start_counts_a_delivery_only_when_it_tries_the_entry(redis_server, tmp_path):  # noqa: F811
    """Only an attempt to process an entry counts towards the dead letters: incarnations killed
    during a long warm start (before they met the entry) must not make a healthy candle poison.
    Here each pending entry was delivered once; with ``dead_letter_after = 2`` one more
    *attempt* is allowed — and it succeeds."""
    r = redis_server.client()
    cs = make_candles([6], 10)
    asyncio.run(publish(redis_server.url, cs))
    key = "candle:60s:NSE:6"
    r.xgroup_create(key, "indengine", id="0")
    r.xreadgroup("indengine", "crashed", {key: ">"}, count=3)  # delivered once, never acked
    svc = IndEngineService(
        cfg_for(redis_server.url, tmp_path, **{"redis.dead_letter_after": 2}), port=0
    )
    asyncio.run(run_until(svc, lambda: caught_up(svc, cs)))
    assert r.xlen("dlq:indengine") == 0
    assert as_rows(reference(cs)) == stored_values(svc.cfg.store.db)
    assert r.xpending(key, "indengine")["pending"] == 0


def test_taking_over_pending_entries_does_not_count_a_delivery(redis_server):  # noqa: F811
    r = redis_server.client()
    asyncio.run(publish(redis_server.url, make_candles([7], 5)))
    key = "candle:60s:NSE:7"
    r.xgroup_create(key, "indengine", id="0")
    r.xreadgroup("indengine", "crashed", {key: ">"}, count=3)

    async def take_over_as(consumer):
        link = RedisLink(redis_server.url, consumer)
        try:
            reader = GroupReader(link, "indengine", consumer)
            await reader.add_keys([key])
            return await reader.take_over()
        finally:
            link.close()

    for i in range(4):  # incarnations killed right after taking over
        got = asyncio.run(take_over_as(f"incarnation-{i}"))
        assert list(got[key].values()) == [1, 1, 1]
    assert {p["consumer"] for p in r.xpending_range(key, "indengine", "-", "+", 10)} == {
        b"incarnation-3"
    }


# --- waiting for Redis, reconnecting --------------------------------------------------------------


def _get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_waits_for_redis_at_start_and_reconnects_after_a_restart(tmp_path):
    server = RedisServer(tmp_path / "r", aof=True, fsync="always")
    if server.exe is None:
        pytest.skip("redis-server is not installed")
    cfg = cfg_for(server.url, tmp_path, **{"redis.backoff_max_s": 0.3})
    svc = IndEngineService(cfg, port=0)
    first, second = make_candles([9], 30), make_candles([9], 30, start=30)

    async def go():
        task = asyncio.create_task(svc.run(signals=False))
        try:
            while svc.state.state != "waiting_for_redis":
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.5)  # several failed attempts
            port = svc.health.port
            status, body = await asyncio.to_thread(_get, port, "/health")
            assert status == 200 and json.loads(body)["state"] == "waiting_for_redis"
            assert (await asyncio.to_thread(_get, port, "/ready"))[0] == 503
            assert svc.link.stats.failures >= 2
            await asyncio.to_thread(server.start)
            await publish(server.url, first)
            while not caught_up(svc, first):
                assert not task.done()
                await asyncio.sleep(0.02)
            assert (await asyncio.to_thread(_get, port, "/ready"))[0] == 200
            await asyncio.to_thread(server.kill)  # Redis crashes mid-run ...
            while svc.state.state != "redis_down":
                await asyncio.sleep(0.02)
            _, body = await asyncio.to_thread(_get, port, "/health")
            assert json.loads(body)["state"] == "redis_down"
            await asyncio.to_thread(server.start)  # ... and comes back with its AOF
            await publish(server.url, second)
            while not caught_up(svc, second):
                assert not task.done()
                await asyncio.sleep(0.02)
            status, metrics = await asyncio.to_thread(_get, port, "/metrics")
            assert status == 200
            assert b'mandi_candles_processed_total{service="indengine"}' in metrics
            assert b'mandi_redis_up{role="consumer",service="indengine"} 1.0' in metrics
        finally:
            svc.stop.set()
            await asyncio.wait_for(task, 30)

    try:
        asyncio.run(go())
        assert as_rows(reference(first + second)) == stored_values(cfg.store.db)
        r = server.client()
        assert r.xpending("candle:60s:NSE:9", "indengine")["pending"] == 0
        assert r.xlen("ind:SMA_9:60s:NSE:9") == 60 - 8
    finally:
        server.kill()
