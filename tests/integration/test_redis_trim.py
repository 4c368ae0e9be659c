"""Entries trimmed (``MAXLEN``) before a consumer group read them are detected, counted once and
reported — on a real redis-server and a real 3-master Redis Cluster — and indengine reports them
when it (re)joins: one ERROR line, ``stream_trimmed_unread_total`` on ``/metrics`` and a
``system:stream_trimmed`` event."""

from __future__ import annotations

import asyncio
import logging
import urllib.request

from redis_server import any_redis, cluster, redis_cluster, redis_server  # noqa: F401 - fixtures
from test_redis_bridge import cfg_for, make_candles, publish, run_until, topic

from mandi.bus.codec import codec
from mandi.bus.redis import RedisLink, TrimWatch, id_tuple, set_group_cursor, stream_id
from mandi.model.events import SystemEvent
from mandi.services.distributed.indengine import GROUP, IndEngineService

TOKENS = [1, 2, 3, 4, 5, 6]  # spread over the cluster's masters


def _add(r, keys, start, n, maxlen=None):
    """XADD entries ``start+1 .. start+n`` (IDs ``{i}-0``) to every key, trimming exactly."""
    for k in keys:
        p = r.pipeline(transaction=False)
        for i in range(start + 1, start + n + 1):
            p.xadd(k, {"d": b"x"}, id=f"{i}-0", maxlen=maxlen, approximate=False)
        p.execute()


def _check(url, watch, keys):
    async def go():
        link = RedisLink(url, "test")
        try:
            return await watch.check(link, keys)
        finally:
            link.close()

    return asyncio.run(go())


def test_trimmed_unread_entries_are_counted_exactly_once(any_redis):  # noqa: F811
    r = any_redis.client()
    keys = [any_redis.key(f"candle:60s:NSE:{t}") for t in TOKENS]
    fresh = any_redis.key("candle:60s:NSE:99")
    for k in keys:
        r.xgroup_create(k, "g", "0", mkstream=True)
    _add(r, keys, 0, 10)
    for k in keys:
        r.xreadgroup("g", "c", {k: ">"}, count=4)  # read 1..4
    watch = TrimWatch("g")
    assert _check(any_redis.url, watch, keys) == []  # behind, nothing trimmed
    _add(r, keys, 10, 30, maxlen=8)  # 40 added, 33..40 left: 5..32 trimmed unread
    found = _check(any_redis.url, watch, keys)
    assert sorted(t.key for t in found) == sorted(keys)
    assert {(t.lost, t.exact, t.last_delivered, t.first) for t in found} == {
        (28, True, "4-0", "33-0")
    }
    assert "28 entries lost" in found[0].message("svc")
    assert _check(any_redis.url, watch, keys) == []  # counted once
    _add(r, keys, 40, 5, maxlen=8)  # 33..37 trimmed too: 5 more
    assert {t.lost for t in _check(any_redis.url, watch, keys)} == {5}
    assert watch.lost == dict.fromkeys(keys, 33)
    for k in keys:
        r.xreadgroup("g", "c", {k: ">"})  # the consumer reads on: no gap any more
    assert _check(any_redis.url, watch, keys) == []
    # a group created (at 0) after the stream was trimmed: everything removed is lost to it
    _add(r, [fresh], 0, 20, maxlen=5)
    r.xgroup_create(fresh, "g", "0")
    assert [(t.lost, t.exact) for t in _check(any_redis.url, watch, [fresh])] == [(15, True)]
    assert watch.lost[fresh] == 15


def test_a_reset_read_counter_gives_an_unknown_count_then_exact_increments(any_redis):  # noqa: F811
    r = any_redis.client()
    key = any_redis.key("candle:60s:NSE:98")
    r.xgroup_create(key, "g", "0", mkstream=True)
    _add(r, [key], 0, 10)
    r.xgroup_setid(key, "g", "6-0")  # as a warm start does: Redis forgets entries-read
    _add(r, [key], 10, 30, maxlen=8)  # 7..32 lost, but Redis cannot say how many
    watch = TrimWatch("g")
    (t,) = _check(any_redis.url, watch, [key])
    assert (t.lost, t.exact, t.first) == (0, False, "33-0")
    assert "an unknown number of (maybe 0) entries lost" in t.message("svc")
    assert watch.lost == {key: 0}  # on /metrics: a loss of unknown size
    assert _check(any_redis.url, watch, [key]) == []  # reported once
    _add(r, [key], 40, 5, maxlen=8)  # 33..37: certainly unread
    assert [(t.lost, t.exact) for t in _check(any_redis.url, watch, [key])] == [(5, True)]
    assert watch.lost == {key: 5}


def _set_cursor(url, key, group, entry_id):
    async def go():
        link = RedisLink(url, "test")
        try:
            (reply,) = await link.pipeline([set_group_cursor(key, group, entry_id)])
            return reply
        finally:
            link.close()

    return asyncio.run(go())


def test_setting_the_cursor_keeps_the_read_counter_exact(any_redis):  # noqa: F811
    r = any_redis.client()
    key = any_redis.key("candle:60s:NSE:97")
    r.xgroup_create(key, "g", "0", mkstream=True)
    _add(r, [key], 0, 2500, maxlen=2400)  # 1..100 trimmed; > 1,000 entries after the cursor
    assert _set_cursor(any_redis.url, key, "g", "300-0") == 1
    assert r.xinfo_groups(key)[0]["entries-read"] == 300  # trimmed ones count as read
    _add(r, [key], 2500, 500, maxlen=2000)  # 101..1000 trimmed: 301..1000 unread
    watch = TrimWatch("g")
    assert [(t.lost, t.exact) for t in _check(any_redis.url, watch, [key])] == [(700, True)]
    # what cannot be counted is not guessed: the cursor is set, the counter left unknown
    assert _set_cursor(any_redis.url, key, "g", "50-0") == 0  # entries after it trimmed
    assert r.xinfo_groups(key)[0]["last-delivered-id"] == b"50-0"
    assert r.xinfo_groups(key)[0]["entries-read"] is None
    r.xdel(key, "2990-0")
    assert _set_cursor(any_redis.url, key, "g", "2900-0") == 0  # an entry after it deleted
    assert r.xinfo_groups(key)[0]["entries-read"] is None
    assert _set_cursor(any_redis.url, key, "g", "2995-0") == 1
    assert r.xinfo_groups(key)[0]["entries-read"] == 2995


def test_no_trimming_no_report(any_redis):  # noqa: F811
    r = any_redis.client()
    keys = [any_redis.key(f"candle:60s:NSE:{t}") for t in TOKENS]
    for k in keys:
        r.xgroup_create(k, "g", "0", mkstream=True)
    _add(r, keys, 0, 30, maxlen=20)  # 1..10 trimmed: the group read exactly those (below)
    watch = TrimWatch("g")
    for k in keys:
        r.xgroup_setid(k, "g", "10-0", entries_read=10)
    _add(r, keys, 30, 5)  # the stream starts after the group's cursor; it is behind, not lossy
    assert _check(any_redis.url, watch, keys) == []
    assert watch.lost == {}


def _read_by_the_group(url, key, n):
    """What indengine read before it went down: the group's cursor at the ``n``-th entry."""
    import redis

    r = redis.Redis.from_url(url)
    r.xgroup_create(key, GROUP, "0", mkstream=True)
    got = r.xreadgroup(GROUP, "old-member", {key: ">"}, count=n)
    ids = [i for i, _ in got[0][1]]
    r.xack(key, GROUP, *ids)
    return r


def _metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_indengine_reports_candles_trimmed_while_it_was_down(redis_server, tmp_path, caplog):  # noqa: F811
    key = "candle:60s:NSE:7"
    cs = make_candles([7], 460)
    asyncio.run(publish(redis_server.url, cs[:60], retention_s=1920))  # MAXLEN ~ 32
    r = _read_by_the_group(redis_server.url, key, 60)
    asyncio.run(publish(redis_server.url, cs[60:], retention_s=1920))  # while it is down
    first = r.xrange(key, count=1)[0][0]
    lost = cs.index(next(c for c in cs if stream_id(c.bucket) == first.decode())) - 60
    assert lost > 0 and id_tuple(first) > id_tuple(stream_id(cs[59].bucket))
    svc = IndEngineService(cfg_for(redis_server.url, tmp_path), port=0)
    seen: dict[str, str] = {}

    async def scrape():
        task = asyncio.create_task(run_until(svc, lambda: "m" in seen))
        deadline = asyncio.get_running_loop().time() + 30
        while not (svc.state.state == "running" and r.xlen("system:stream_trimmed")):
            assert asyncio.get_running_loop().time() < deadline and not task.done()
            await asyncio.sleep(0.02)
        seen["m"] = await asyncio.to_thread(_metrics, svc.health.port)
        await task

    with caplog.at_level(logging.ERROR, logger="mandi.services.distributed.indengine"):
        asyncio.run(scrape())
    lines = [m for m in caplog.messages if "trimmed before consumer group" in m]
    assert len(lines) == 1, caplog.messages
    assert f"stream {key} " in lines[0] and f"group {GROUP}" in lines[0]
    assert f": {lost} entries lost" in lines[0]
    assert svc.stats["trimmed_unread"] == lost
    (metric,) = [x for x in seen["m"].splitlines() if x.startswith("mandi_stream_trimmed_unre")]
    assert f'group="{GROUP}"' in metric and f'stream="{key}"' in metric
    assert metric.endswith(f"}} {float(lost)}")
    ((_, fields),) = r.xrange("system:stream_trimmed")
    event = codec.decode(fields[b"d"])
    assert isinstance(event, SystemEvent) and event.kind == "stream_trimmed"
    assert event.severity == "ERROR" and event.data["lost"] == lost
    assert event.data["stream"] == key


def test_indengine_is_quiet_when_nothing_was_trimmed(redis_server, tmp_path, caplog):  # noqa: F811
    key = "candle:60s:NSE:7"
    cs = make_candles([7], 90)
    asyncio.run(publish(redis_server.url, cs[:60]))
    r = _read_by_the_group(redis_server.url, key, 60)
    # trimmed (MAXLEN ~ 32) while it is down, but only entries the group had read
    asyncio.run(publish(redis_server.url, cs[60:], retention_s=1920))
    left = r.xlen(key)
    assert left < 90 and r.xinfo_stream(key)["entries-added"] == 90
    svc = IndEngineService(cfg_for(redis_server.url, tmp_path), port=0)
    with caplog.at_level(logging.WARNING, logger="mandi.services.distributed.indengine"):
        asyncio.run(
            run_until(svc, lambda: svc.state.state == "running" and svc.stats["replayed"] >= left)
        )
    assert svc.stats["trimmed_unread"] == 0 and svc.trims.lost == {}
    assert not [m for m in caplog.messages if "trimmed" in m]
    assert r.xlen("system:stream_trimmed") == 0
    assert topic(cs[0]) == key


def test_a_service_node_on_a_cluster_reports_what_was_trimmed_while_it_was_down(cluster, tmp_path):  # noqa: F811
    """The strategy/gateway host (RedisNode) on a 3-master cluster: at start, each stream its
    group had not finished reading and that was trimmed since is reported with its count."""
    from mandi.services.distributed.node import RedisNode

    cs = make_candles(TOKENS, 300)
    asyncio.run(publish(cluster.url, cs[: 60 * len(TOKENS)], retention_s=1920))
    r = cluster.client()
    keys = [cluster.key(f"candle:60s:NSE:{t}") for t in TOKENS]
    assert len({r.get_node_from_key(k).port for k in keys}) > 1
    for k in keys:
        r.xgroup_create(k, "nodes", "0")
        r.xreadgroup("nodes", "old", {k: ">"}, count=60)
    asyncio.run(publish(cluster.url, cs[60 * len(TOKENS) :], retention_s=1920))
    expected = {}
    for k in keys:
        first = r.xrange(k, count=1)[0][0].decode()
        expected[k] = [stream_id(c.bucket) for c in cs[:: len(TOKENS)]].index(first) - 60
    assert all(n > 0 for n in expected.values())
    cfg = cfg_for(cluster.url, tmp_path)
    node = RedisNode(cfg, "node-test", "nodes", ["streams:candle:60s"], port=0)
    events: list[SystemEvent] = []
    node.bus.subscribe("system:stream_trimmed", lambda _t, e: events.append(e), name="probe")

    async def go():
        task = asyncio.create_task(node.run())
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while len(events) < len(keys) or node.state.state != "running":
                assert asyncio.get_running_loop().time() < deadline and not task.done()
                await asyncio.sleep(0.02)
        finally:
            node.stop.set()
            await asyncio.wait_for(task, 30)

    asyncio.run(go())
    assert node.trims.lost == expected
    assert sorted((e.data["stream"], e.data["lost"]) for e in events) == sorted(expected.items())
    assert all(e.severity == "ERROR" and e.source == "node-test" for e in events)


def test_indengine_counts_exactly_what_is_trimmed_after_its_warm_start(redis_server, tmp_path):  # noqa: F811
    """A warm start moves the group's cursor to the end of its replay; Redis would forget
    how many entries the group had read, and a trim while indengine is down again could
    only be reported as "an unknown number". The cursor keeps its count: the loss is exact."""
    import redis

    key = "candle:60s:NSE:7"
    cs = make_candles([7], 460)
    asyncio.run(publish(redis_server.url, cs[:60]))
    r = redis.Redis.from_url(redis_server.url)
    end = stream_id(cs[59].bucket).encode()
    svc = IndEngineService(cfg_for(redis_server.url, tmp_path), port=0)

    def moved():
        groups = r.xinfo_groups(key) if svc.state.state == "running" else []
        return any(g["last-delivered-id"] == end for g in groups)

    asyncio.run(run_until(svc, moved))
    assert svc.stats["replayed"] == 60  # its cursor was set by the warm start (SETID)
    (g,) = r.xinfo_groups(key)
    assert g["entries-read"] == 60 and g["lag"] == 0
    asyncio.run(publish(redis_server.url, cs[60:], retention_s=1920))  # while it is down
    first = r.xrange(key, count=1)[0][0].decode()
    lost = [stream_id(c.bucket) for c in cs].index(first) - 60
    assert lost > 0
    svc = IndEngineService(cfg_for(redis_server.url, tmp_path), port=0)
    asyncio.run(
        run_until(svc, lambda: svc.state.state == "running" and r.xlen("system:stream_trimmed"))
    )
    assert svc.stats["trimmed_unread"] == lost and svc.trims.lost == {key: lost}
    ((_, fields),) = r.xrange("system:stream_trimmed")
    event = codec.decode(fields[b"d"])
    assert event.data["lost"] == lost and event.data["exact"] is True
