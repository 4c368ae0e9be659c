"""The bus on a 1-master Redis Cluster (``mandi up --shards 1``), where a pipeline goes to the
one master without routing each command: replies in order (several commands per entry, error
replies in place), the publisher's XADD tally, and indengine's outputs equal to the kernel's."""

from __future__ import annotations

import asyncio

import pytest
from redis_server import ClusterServer, _need_redis
from test_redis_bridge import (
    as_rows,
    caught_up,
    cfg_for,
    make_candles,
    publish,
    reference,
    run_until,
    stored_values,
)

from mandi.bus.codec import codec
from mandi.bus.redis import RedisLink, pack, tagged
from mandi.services.distributed.indengine import IndEngineService


@pytest.fixture(scope="module")
def one_shard(tmp_path_factory):
    _need_redis()
    server = ClusterServer(tmp_path_factory.mktemp("one-shard"), masters=1).start()
    yield server
    server.stop()


def test_a_one_master_pipeline_keeps_replies_in_order_with_errors_in_place(one_shard):
    one_shard.flush()
    a, b = tagged("t:x:1"), tagged("t:y:2")

    async def go():
        link = RedisLink(one_shard.url, "test")
        try:
            cmds = [
                (a, pack("SET", a, "1") + pack("INCR", a), 2),
                (b, pack("XADD", b, "*", "d", "v")),
                (a, pack("XLEN", a)),  # WRONGTYPE: an error reply, in its place
                (None, pack("PING")),
                (b, pack("XLEN", b) + pack("GET", a), 2),
            ]
            replies = await link.pipeline(cmds)
            return link.cluster, replies
        finally:
            link.close()

    is_cluster, replies = asyncio.run(go())
    assert is_cluster and len(replies) == 7
    assert replies[:2] == [b"OK", 2] and replies[2].count(b"-") == 1
    assert "WRONGTYPE" in str(replies[3])
    assert replies[4:] == [b"PONG", 1, b"2"]


def test_indengine_on_one_master_equals_the_kernel(one_shard, tmp_path):
    one_shard.flush()
    r = one_shard.client()
    tokens = list(range(1, 21))
    cs = make_candles(tokens, 30)
    first = asyncio.run(publish(one_shard.url, cs[: len(cs) // 2]))
    assert first.stats.confirmed == len(cs) // 2 and first.stats.duplicates == 0
    again = asyncio.run(publish(one_shard.url, cs[:10]))  # a replay: refused and counted
    assert again.stats.duplicates == 10 and again.stats.confirmed == 0
    cfg = cfg_for(one_shard.url, tmp_path)
    svc = IndEngineService(cfg, port=0)

    async def go():
        task = asyncio.create_task(run_until(svc, lambda: caught_up(svc, cs)))
        while svc.state.state != "running":
            assert not task.done()  # it stopped before it ran
            await asyncio.sleep(0.02)
        await publish(one_shard.url, cs[len(cs) // 2 :])
        await task

    asyncio.run(go())
    expected = reference(cs)
    assert as_rows(expected) == stored_values(cfg.store.db)
    assert svc.stats["values_written"] == len(expected)
    for v in expected[-7:]:  # the last candle's values: stream top and latest key
        key = tagged(f"ind:{v.name}:60s:NSE:{v.token}")
        assert codec.decode(r.xrevrange(key, count=1)[0][1][b"d"]) == v
        assert codec.decode(r.get(tagged(f"ind:{v.name}:60s:latest:NSE:{v.token}"))) == v
    per_key = {}
    for v in expected:
        k = tagged(f"ind:{v.name}:60s:NSE:{v.token}")
        per_key[k] = per_key.get(k, 0) + 1
    assert all(r.xlen(k) == n for k, n in per_key.items())
    assert (
        sum(r.xpending(tagged(f"candle:60s:NSE:{t}"), "indengine")["pending"] for t in tokens) == 0
    )
