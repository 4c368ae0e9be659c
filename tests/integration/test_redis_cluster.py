"""The bus on a real Redis Cluster (3 masters on loopback, formed by the product's own
``start_cluster``): hash-tagged keys, one instrument in one slot, sharded channels read by
redis-py's cluster client, indengine's outputs equal to the kernel's, partitions shared by
indengine processes that join and die, and a master killed during a replay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter

import pytest
from redis_server import (  # noqa: F401 - fixtures
    ClusterServer,
    _need_redis,
    any_redis,
    cluster,
    free_port,
    redis_cluster,
)
from test_redis_bridge import (
    as_rows,
    caught_up,
    cfg_for,
    make_candles,
    publish,
    reference,
    run_until,
    stored_values,
    topic,
)

from mandi.bus.codec import codec
from mandi.bus.redis import (
    GroupReader,
    PendingWatch,
    RedisLink,
    RedisUnavailable,
    StreamPublisher,
    discover,
    key_slot,
    partition_tag,
    stream_id,
    tagged,
    token_partition,
    untagged,
    wake_channel,
)
from mandi.services.distributed.cluster import masters_now, slot_ranges
from mandi.services.distributed.indengine import IndEngineService, snapshot_key
from mandi.services.distributed.partitions import (
    DuplicateMember,
    LeaseKeeper,
    Membership,
    assign,
)


def test_slot_ranges_follow_partitions_and_tags_put_an_instrument_in_one_slot():
    assert slot_ranges(3, 16) == [(0, 5119), (5120, 10239), (10240, 16383)]
    assert slot_ranges(2, 16) == [(0, 8191), (8192, 16383)]
    for token in (256265, 1, 99926000):
        keys = [
            tagged(f"candle:60s:NSE:{token}"),
            tagged(f"candle:60s:latest:NSE:{token}"),
            tagged(f"ind:SMA_9:300s:NSE:{token}"),
            "pub:" + tagged(f"ind:RSI_14:60s:NSE:{token}"),
        ]
        assert keys[0] == f"candle:60s:NSE:{{{token}}}"
        assert len({key_slot(k) for k in keys}) == 1
        assert untagged(keys[0]) == f"candle:60s:NSE:{token}"
        p = token_partition(token, 16)
        slot = key_slot(keys[0])
        lo, hi = next((a, b) for a, b in slot_ranges(3, 16) if a <= slot <= b)
        assert lo <= p * 1024 <= slot <= hi  # the instrument's partition lives on its master
    assert tagged("signal:abc") == "signal:abc"  # not per instrument: not tagged


def test_rendezvous_assignment_moves_only_the_share_of_who_came_or_went():
    before = assign(["a", "b", "c"], 64)
    after = assign(["a", "b", "c", "d"], 64)
    moved = {p for p in before if before[p] != after[p]}
    assert moved and all(after[p] == "d" for p in moved)  # only to the newcomer
    gone = assign(["a", "c", "d"], 64)
    assert all(gone[p] == after[p] for p in after if after[p] != "b")
    assert Counter(after.values()).keys() == {"a", "b", "c", "d"}


def test_publishing_on_a_cluster_tags_keys_and_shards_channels(cluster):  # noqa: F811
    r = cluster.client()
    tokens = [256265, 1, 2, 3, 4, 5]
    node = cluster.node_client(r.get_node_from_key(tagged("candle:60s:NSE:1")).port)
    ps = node.pubsub()  # sharded Pub/Sub: subscribed on the channel's master
    ps.ssubscribe("pub:" + tagged("candle:60s:NSE:1"))
    assert ps.get_sharded_message(timeout=2)["type"] == "ssubscribe"
    cs = make_candles(tokens, 20)
    pub = asyncio.run(publish(cluster.url, cs))
    assert pub.stats.confirmed == len(cs) and pub.stats.duplicates == 0
    for t in tokens:
        key = tagged(f"candle:60s:NSE:{t}")
        assert r.xlen(key) == 20
        last = [c for c in cs if c.token == t][-1]
        assert codec.decode(r.get(tagged(f"candle:60s:latest:NSE:{t}"))) == last
        assert r.xrevrange(key, count=1)[0][0].decode() == stream_id(last.bucket)
    assert {k.decode() for k in r.smembers("streams:candle:60s")} == {
        tagged(f"candle:60s:NSE:{t}") for t in tokens
    }
    got = []
    while (m := ps.get_sharded_message(timeout=0.5)) is not None:
        if m["type"] == "smessage":
            got.append(codec.decode(m["data"]))
    assert got == [c for c in cs if c.token == 1]
    assert not r.exists("candle:60s:NSE:1")  # no untagged twin
    again = asyncio.run(publish(cluster.url, cs[-12:]))  # a replay: refused, counted
    assert again.stats.duplicates == 12 and again.stats.confirmed == 0


def test_a_cluster_reader_is_woken_by_doorbells_and_sweeps_every_key(cluster):  # noqa: F811
    async def go():
        link = RedisLink(cluster.url, "reader")
        reader = GroupReader(link, "g", "c1", sweep_s=60)
        reader.accept = lambda k: True
        try:
            await link.connection()
            reader.watch([wake_channel("streams:candle:60s", p) for p in range(16)])
            first = make_candles([11, 12, 13], 2)
            await publish(cluster.url, first)
            await reader.add_keys(await discover(link, ["streams:candle:60s"]))
            got = await reader.read(100, 200)  # the first read sweeps every key
            for _ in range(20):
                if len(got) >= len(first):
                    break
                got += await reader.read(100, 200)
            assert sorted((e.topic, e.id) for e in got) == sorted(
                (topic(c), stream_id(c.bucket).encode()) for c in first
            )
            assert reader.sweeps >= 1
            while reader._bell is None or reader._bell.resubscribes == 0:
                await asyncio.sleep(0.01)  # the doorbells are subscribed ...
            assert await reader.read(100, 50) == []  # ... and a sweep followed
            sweeps = reader.sweeps
            later = make_candles([12], 1, start=5)
            t0 = time.monotonic()
            task = asyncio.create_task(reader.read(100, 5000))
            await asyncio.sleep(0.2)
            await publish(cluster.url, later)
            woke = await task
            while not woke and time.monotonic() - t0 < 4:  # (a late doorbell woke it early)
                woke = await reader.read(100, 5000)
            assert [e.topic for e in woke] == ["candle:60s:NSE:12"]
            assert time.monotonic() - t0 < 4.0 and reader.sweeps == sweeps  # a doorbell
        finally:
            reader.close()
            link.close()

    asyncio.run(go())


def test_doorbells_are_listened_to_on_their_partitions_master(cluster):  # noqa: F811
    """#18 latency: a doorbell is published on its partition's master; subscribed on another
    node it came over the cluster bus (~8 ms more). Each is now subscribed where it rings."""
    channels = [wake_channel("streams:candle:60s", p) for p in range(16)]
    near = {ch: partition_tag(p, 16) for p, ch in enumerate(channels)}
    r = cluster.client()
    home = {ch: r.get_node_from_key(near[ch]).port for ch in channels}
    assert len(set(home.values())) == 3  # the 16 partitions spread over the 3 masters

    def subscribed():
        return {
            (ch.decode(), port): n
            for port in cluster.master_ports()
            for ch, n in cluster.node_client(port).pubsub_numsub(*channels)
        }

    async def go():
        link = RedisLink(cluster.url, "reader")
        reader = GroupReader(link, "g", "c1", sweep_s=60)
        try:
            await link.connection()
            reader.watch(channels, near)
            await reader.read(10, 50)  # starts the doorbell subscriber
            for _ in range(1500):  # 30 s on a loaded machine
                subs = subscribed()
                if sum(subs.values()) == len(channels):
                    break
                await asyncio.sleep(0.02)
            assert {ch: port for (ch, port), n in subs.items() if n} == home
            assert all(n in (0, 1) for n in subs.values())
        finally:
            reader.close()
            link.close()

    asyncio.run(go())


def test_a_read_failing_on_one_master_leaves_what_the_others_delivered_pending(cluster):  # noqa: F811
    """A cluster read is one XREADGROUP per master: when one master fails, what the others
    delivered is dropped with the round and ``>`` never returns it again. The link goes on over
    the connections it has (no reconnect tells; the bug of #18's fail-over): the consumer's
    PendingWatch is due from the failed read until it has claimed its pending entries."""
    r = cluster.client()
    first: dict[int, int] = {}  # master port -> an instrument on it
    for t in range(1, 100):
        first.setdefault(r.get_node_from_key(tagged(f"candle:60s:NSE:{t}")).port, t)
    (_, ta), (pb, tb) = list(first.items())[:2]
    ka, kb = tagged(f"candle:60s:NSE:{ta}"), tagged(f"candle:60s:NSE:{tb}")
    cs = make_candles([ta, tb], 3)

    async def go():
        link = RedisLink(cluster.url, "reader")
        reader = GroupReader(link, "g", "c1")
        try:
            await reader.add_keys([ka, kb])  # the group on both: a connection to each master
            watch = PendingWatch(link)
            await publish(cluster.url, cs)
            cluster.node_client(pb).client_kill_filter(_type="normal", skipme=True)
            with pytest.raises(RedisUnavailable):
                await reader.read_keys([ka, kb], 100)  # b's master fails the round
            assert not watch.check()  # no reconnect, no new slot map: the link cannot tell
            watch.read_failed()
            assert r.xpending(ka, "g")["pending"] == 3  # delivered by a's master, never seen
            got = await reader.read_keys([ka, kb], 100)
            assert {e.key for e in got} == {kb}  # ``>``: a's entries are not delivered again
            assert watch.check()
            claimed = await reader.claim(0, [ka])  # the recovery: claimed, in ID order
            assert [e.id for e, _ in claimed] == [
                stream_id(c.bucket).encode() for c in cs if c.token == ta
            ]
            watch.recovered()
            assert not watch.check()
        finally:
            reader.close()
            link.close()

    asyncio.run(go())


def test_leases_on_healthy_masters_are_renewed_while_another_master_stalls(cluster):  # noqa: F811
    """#18: one failing command skipped the whole renewal round, so a master failing for longer
    than a lease cost every lease. A master stalled for > 2 leases (``CLIENT PAUSE``: its
    clients wait, the cluster keeps it) holding this member's marker and some leases: the
    leases on the other masters are renewed throughout, those on the stalled one are given up
    (reported lost, nothing else), and after it answers again they are taken and kept."""
    # leases long enough that a loaded machine still renews the healthy ones in time (renewals
    # every lease_ms/3); the pause outlasts a lease and then some, so the stalled ones expire
    lease_ms, pause_ms = 3000, 7000
    r = cluster.client()
    masters = {r.get_node_from_key(f"lease:g{n}:{p}").port for n in range(3) for p in range(16)}
    assert len(masters) == 3
    nodes = {port: cluster.node_client(port) for port in masters}

    def on(key):
        return r.get_node_from_key(key).port

    # a group whose member marker lives on a master that holds some of its leases too
    group = next(
        g for g in (f"g{n}" for n in range(99))
        if on(f"member:{g}:a") in {on(f"lease:{g}:{p}") for p in range(16)}
    )  # fmt: skip
    victim = on(f"member:{group}:a")
    stalled = {p for p in range(16) if on(f"lease:{group}:{p}") == victim}
    healthy = set(range(16)) - stalled
    assert stalled and healthy

    async def go():
        link = RedisLink(cluster.url, "members")
        m = Membership(link, group, "a", 16, lease_ms)
        await m.heartbeat()
        leased = await m.acquire(range(16))
        assert leased == set(range(16))
        reports, errors = [], []

        def report(live, lost):
            reports.append((live, set(lost)))
            leased.difference_update(lost)  # as the service: a lost lease is handed over

        keeper = LeaseKeeper(
            cluster.url, m, lambda: set(leased), report, errors.append, asyncio.get_running_loop()
        ).start()
        try:
            while not any(live == ["a"] for live, _ in reports):
                await asyncio.sleep(0.02)
            nodes[victim].execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
            t0 = time.monotonic()
            while time.monotonic() - t0 < pause_ms / 1000 + 0.3:  # 2.3 leases, and then some
                for p in healthy:  # never expired: renewed while the victim stalls
                    assert nodes[on(f"lease:{group}:{p}")].get(f"lease:{group}:{p}") == b"a", p
                await asyncio.sleep(0.1)
            lost = set().union(*(lo for _, lo in reports))
            assert lost == stalled  # given up: not renewed for a whole lease
            assert leased == healthy
            n = len(reports)
            assert await m.acquire(stalled) == stalled  # the master answers again
            leased.update(stalled)
            await asyncio.sleep(2 * lease_ms / 1000)
            assert not set().union(*(lo for _, lo in reports[n:]))
            assert reports[-1][0] == ["a"]  # the beats go on
            for p in range(16):
                key = f"lease:{group}:{p}"
                assert nodes[on(key)].get(key) == b"a" and nodes[on(key)].pttl(key) > 0
            assert not errors
        finally:
            nodes[victim].execute_command("CLIENT", "UNPAUSE")
            await asyncio.to_thread(keeper.stop)
            link.close()

    asyncio.run(go())


def test_two_live_processes_with_one_member_name_stop_with_duplicate_member(cluster):  # noqa: F811
    """Two members with one name would read the same partitions at once. The first beat of a
    member may find its crashed predecessor's marker (taken over silently); a later beat that
    finds another live process's marker stops with :class:`DuplicateMember`, naming the
    member and the other process — from the warm-start beat and from the lease keeper; the
    one that stops leaves the marker to the other."""

    async def go():
        link = RedisLink(cluster.url, "members")
        first = Membership(link, "dupgroup", "x", 16, 3000)
        second = Membership(link, "dupgroup", "x", 16, 3000)
        other = Membership(link, "dupgroup", "y", 16, 3000)
        try:
            assert await first.heartbeat() == ["x"]
            assert await other.heartbeat() == ["x", "y"]
            assert await second.heartbeat() == ["x", "y"]  # its first beat: a restart, maybe
            with pytest.raises(DuplicateMember, match=r"member 'x'.*--consumer"):
                await first.heartbeat()  # the marker holds the second's nonce now
            await first.leave()  # the twin that stopped leaves the marker and name alone
            mk = "member:dupgroup:x"
            assert await link.call("GET", mk) == second.nonce.encode()
            assert b"x" in await link.call("SMEMBERS", "members:dupgroup")
            errors, reports = [], []
            keeper = LeaseKeeper(
                cluster.url, second, set, lambda live, lost: reports.append(live),
                errors.append, asyncio.get_running_loop(),
            ).start()  # fmt: skip
            try:
                while not reports:  # the keeper beats as "x"
                    await asyncio.sleep(0.02)
                third = Membership(link, "dupgroup", "x", 16, 3000)
                await third.heartbeat()  # a third process takes the name
                for _ in range(1500):  # 30 s: the keeper beats every second
                    if errors:
                        break
                    await asyncio.sleep(0.02)
                assert len(errors) == 1 and isinstance(errors[0], DuplicateMember), errors
                assert second.nonce not in str(errors[0]) and third.nonce in str(errors[0])
                # the other member is not affected
                assert await other.heartbeat() == ["x", "y"]
            finally:
                await asyncio.to_thread(keeper.stop)
        finally:
            link.close()

    asyncio.run(go())


def test_a_stream_found_before_its_partition_was_handed_over_is_never_read(cluster, tmp_path):  # noqa: F811
    """#18: a key discovered (or named by a doorbell) while its partition was ours, but not yet
    read, was added and read after the hand-over: its entries were delivered to this member,
    skipped as not ours and left pending, where XREADGROUP ">" never gives them to the new
    owner. Handing a partition over forgets such keys."""
    cfg = cfg_for(cluster.url, tmp_path)
    svc = IndEngineService(cfg, port=0)
    every = set(range(cfg.redis.partitions))
    part = 5
    token = next(
        t for t in range(1000, 100_000) if token_partition(t, cfg.redis.partitions) == part
    )
    key = tagged(f"candle:60s:NSE:{token}")
    done = asyncio.Event()

    async def go():
        task = asyncio.create_task(run_until(svc, done.is_set, timeout=60))
        while svc.state.state != "running" or set(svc.partitions) != every:
            assert not task.done()
            await asyncio.sleep(0.02)
        hand_over = svc.hand_over

        async def found_just_before(indexes, lost=False):
            svc.reader.discovered.append(key)  # as the discover loop or a doorbell does
            await hand_over(indexes, lost)

        svc.hand_over = found_just_before
        svc.membership.wanted = lambda: every - {part}  # the keeper's next report hands it over
        while part in svc.partitions:
            assert not task.done()  # the service stopped (or run_until timed out) first
            await asyncio.sleep(0.02)
        await publish(cluster.url, make_candles([token], 3))
        sweeps = svc.reader.sweeps
        while svc.reader.sweeps < sweeps + 2:  # every key read twice since
            assert not task.done()
            await asyncio.sleep(0.02)
        done.set()
        await task

    asyncio.run(go())
    assert key not in svc.reader.keys
    r = cluster.client()
    groups = {g["name"] for g in r.xinfo_groups(key)} if r.exists(key) else set()
    pending = r.xpending(key, "indengine")["pending"] if b"indengine" in groups else 0
    assert pending == 0


def test_indengine_on_a_cluster_equals_the_kernel(cluster, tmp_path):  # noqa: F811
    r = cluster.client()
    tokens = list(range(1, 25))
    cs = make_candles(tokens, 30)
    asyncio.run(publish(cluster.url, cs[: len(cs) // 2]))  # some before, some while it runs
    cfg = cfg_for(cluster.url, tmp_path)
    svc = IndEngineService(cfg, port=0)

    async def go():
        task = asyncio.create_task(run_until(svc, lambda: caught_up(svc, cs)))
        while svc.state.state != "running":
            assert not task.done()  # it stopped before it ran
            await asyncio.sleep(0.02)
        await publish(cluster.url, cs[len(cs) // 2 :])
        await task

    asyncio.run(go())
    expected = reference(cs)
    assert as_rows(expected) == stored_values(cfg.store.db)
    v = expected[-1]
    key = tagged(f"ind:{v.name}:60s:NSE:{v.token}")
    assert codec.decode(r.xrevrange(key, count=1)[0][1][b"d"]) == v
    assert codec.decode(r.get(tagged(f"ind:{v.name}:60s:latest:NSE:{v.token}"))) == v
    assert key.encode() in r.smembers("streams:ind:60s")
    assert (
        sum(r.xpending(tagged(f"candle:60s:NSE:{t}"), "indengine")["pending"] for t in tokens) == 0
    )
    assert svc.stats["partitions_taken"] == 16
    assert not any(r.exists(f"lease:indengine:{p}") for p in range(16))  # released at stop
    for p in range(16):  # each on the master of its partition's instruments
        key = snapshot_key(p, 16, cluster=True)
        assert r.exists(key) and key_slot(key) * 16 // 16384 == p


def test_a_warm_start_cut_half_way_is_dropped_and_taken_again(cluster, tmp_path):  # noqa: F811
    """Redis fails (every connection killed) while a partition is half-way through its warm
    start (part of its streams replayed) — at the service's start, and later when a partition
    whose lease was lost is taken again, live. The partition is dropped, not kept half-warmed
    (its engine with a gap, its other streams never replayed), and the warm start begins
    again: new candles get the kernel's values, every value once, nothing left pending."""
    r = cluster.client()
    tokens = list(range(1, 121))
    cs = make_candles(tokens, 30, seed=5)
    mid = make_candles(tokens, 10, seed=6, start=30)
    more = make_candles(tokens, 5, seed=7, start=40)
    asyncio.run(publish(cluster.url, cs))
    # snapshots at the end of each warm start only: a partition taken again replays ``mid``
    cfg = cfg_for(cluster.url, tmp_path, **{"redis.snapshot_interval_s": 3600})
    svc = IndEngineService(cfg, port=0)
    cuts = []
    expected = as_rows(reference(cs + mid + more))

    def done():  # processed, and committed (links still recovering from a kill commit later)
        if not caught_up(svc, cs + mid + more):
            return False
        with contextlib.closing(sqlite3.connect(cfg.store.db)) as con:
            return con.execute("SELECT count(*) FROM indicator_values").fetchone()[0] >= len(
                expected
            )

    def half_warm(taken, old=None):  # a partition in its warm start, some streams replayed
        if svc.stats["partitions_taken"] != taken:
            return None
        if old is None:  # at the start: taken in order, the last one is under way
            fresh = [p for p in svc.partitions.values() if p.index >= taken]
        else:
            fresh = [p for p in svc.partitions.values() if p.index == old.index and p is not old]
        return fresh[-1] if fresh and fresh[-1].engine.position() else None

    def kill():  # the loop waits meanwhile: the warm start is cut where it stands
        for port in cluster.master_ports():
            cluster.node_client(port).client_kill_filter(_type="normal", skipme=True)

    async def go():
        task = asyncio.create_task(run_until(svc, done, timeout=90))
        # 1. at the start: partitions 0 and 1 taken, the next one half-way
        while (part := half_warm(2)) is None:
            assert svc.state.state != "running" and not task.done()  # not missed
            await asyncio.sleep(0)
        cuts.append(part)
        kill()
        # 2. live: a partition's lease lost; taken again, it replays ``mid`` after its snapshot
        while not caught_up(svc, cs):
            await asyncio.sleep(0.02)
        await publish(cluster.url, mid)
        while not caught_up(svc, cs + mid):
            await asyncio.sleep(0.02)
        old = svc.partitions[max(svc.partitions, key=lambda i: len(svc._keys_of(i)))]
        taken = svc.stats["partitions_taken"]
        r.delete(f"lease:indengine:{old.index}")
        while (part := half_warm(taken, old)) is None:
            assert not task.done()
            await asyncio.sleep(0)
        cuts.append(part)
        kill()
        await publish(cluster.url, more)  # computed from a gap if the cut one were kept
        await task

    asyncio.run(go())
    for part in cuts:
        assert svc.partitions[part.index] is not part  # a new engine: not kept half-warmed
    assert svc.stats["partitions_lost"] == 1
    assert expected == stored_values(cfg.store.db)  # once each, no gap
    assert (
        sum(r.xpending(tagged(f"candle:60s:NSE:{t}"), "indengine")["pending"] for t in tokens) == 0
    )
    assert r.xlen("dlq:indengine") == 0


def test_indengine_claims_what_a_failed_cluster_read_dropped_before_reading_on(cluster, tmp_path):  # noqa: F811
    """#18's fail-over bug without a fail-over: a sweep's round fails on one master (its
    connections killed) after another master delivered entries; then a doorbell names only a
    key of that other master, read over its old connection. indengine claims the dropped
    entries first (values in order, none lost, nothing left pending)."""
    r = cluster.client()
    first: dict[int, int] = {}  # master port -> an instrument on it
    for t in range(1, 100):
        first.setdefault(r.get_node_from_key(tagged(f"candle:60s:NSE:{t}")).port, t)
    (_, ta), (pb, tb) = list(first.items())[:2]
    early = make_candles([ta, tb], 12)
    dropped = make_candles([ta, tb], 3, start=12)
    later = make_candles([ta], 3, start=15)
    cfg = cfg_for(cluster.url, tmp_path, **{"redis.block_ms": 1500, "redis.sweep_s": 60})
    svc = IndEngineService(cfg, port=0)
    every = early + dropped + later

    keys = [tagged(topic(c)) for c in every[:2]]

    def done():  # processed, and acknowledged
        return (
            caught_up(svc, every) and sum(r.xpending(k, "indengine")["pending"] for k in keys) == 0
        )

    async def go():
        task = asyncio.create_task(run_until(svc, done, timeout=60))
        await publish(cluster.url, early)
        while not caught_up(svc, early):
            await asyncio.sleep(0.02)
        failures = svc.link.stats.failures
        cluster.node_client(pb).client_kill_filter(_type="normal", skipme=True)
        w = cluster.client()
        for c in dropped:  # no doorbell: the next sweep reads them (and fails on b's master)
            w.xadd(tagged(topic(c)), {"d": codec.encode(c)}, id=stream_id(c.bucket))
        while svc.link.stats.failures == failures:
            await asyncio.sleep(0.005)
        await publish(cluster.url, later)  # a's doorbell, within block_ms: no sweep before
        await task

    asyncio.run(go())
    assert as_rows(reference(every)) == stored_values(cfg.store.db)
    assert svc.stats["recovered"] >= 3  # what the failed round dropped, claimed


def test_a_service_node_gets_what_a_failed_cluster_read_dropped_first_in_order(cluster, tmp_path):  # noqa: F811
    """The same failed round under the strategy/gateway host (RedisNode): its layers get the
    dropped candles before newer ones, each series in order, none missing, none left
    pending (before the fix: only after ``redis.claim_idle_ms``, out of order)."""
    from mandi.services.distributed.node import RedisNode

    r = cluster.client()
    first: dict[int, int] = {}  # master port -> an instrument on it
    for t in range(1, 100):
        first.setdefault(r.get_node_from_key(tagged(f"candle:60s:NSE:{t}")).port, t)
    (_, ta), (pb, tb) = list(first.items())[:2]
    early = make_candles([ta, tb], 4)
    dropped = make_candles([ta, tb], 3, start=4)
    later = make_candles([ta], 3, start=7)
    every = early + dropped + later
    cfg = cfg_for(cluster.url, tmp_path, **{"redis.block_ms": 1500, "redis.sweep_s": 60})
    node = RedisNode(cfg, "node-test", "nodes", ["streams:candle:60s"], port=0)
    seen: list[tuple[int, int]] = []
    node.bus.subscribe("candle:>", lambda _t, c: seen.append((c.token, c.bucket)), name="probe")
    keys = [tagged(topic(c)) for c in every[:2]]

    def done():
        return len(seen) >= len(every) and sum(r.xpending(k, "nodes")["pending"] for k in keys) == 0

    async def wait(pred, what, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, (what, seen)
            await asyncio.sleep(0.005)

    async def go():
        task = asyncio.create_task(node.run())
        try:
            await publish(cluster.url, early)
            await wait(lambda: len(seen) == len(early), "early")
            failures = node.link.stats.failures
            cluster.node_client(pb).client_kill_filter(_type="normal", skipme=True)
            w = cluster.client()
            for c in dropped:  # no doorbell: the next sweep reads them (and fails on b's master)
                w.xadd(tagged(topic(c)), {"d": codec.encode(c)}, id=stream_id(c.bucket))
            await wait(lambda: node.link.stats.failures > failures, "the failed round")
            await publish(cluster.url, later)  # a's doorbell, within block_ms: no sweep before
            await wait(done, "every candle, acknowledged")
        finally:
            node.stop.set()
            await asyncio.wait_for(task, 30)

    asyncio.run(go())
    assert sorted(seen) == sorted((c.token, c.bucket) for c in every)  # once each
    for t in (ta, tb):
        mine = [b for tok, b in seen if tok == t]
        assert mine == sorted(mine), t  # each series in order


# --- processes: partitions shared, a member dying, a master failing over ------------------------


def _env(url, **extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith("MANDI_")}
    e.update(
        MANDI_REDIS__URL=url,
        MANDI_INDICATORS__TIMEFRAMES="[60]",
        MANDI_INDICATORS__PREVIEWS="none",
        MANDI_REDIS__SNAPSHOT_INTERVAL_S="0.5",
        MANDI_REDIS__BLOCK_MS="100",
        MANDI_REDIS__RETENTION_S="86400",
        MANDI_REDIS__BACKOFF_MAX_S="0.3",
        MANDI_REDIS__LEASE_MS="1500",
        MANDI_REDIS__DISCOVER_INTERVAL_S="0.2",
        **extra,
    )
    return e


def _health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _indengine(url, db, log, name, **extra):
    port = free_port()
    p = subprocess.Popen(
        [sys.executable, "-m", "mandi", "service", "indengine", "--db", db, "--port", str(port),
         "--consumer", name],
        env=_env(url, **extra), stdout=log, stderr=log,
    )  # fmt: skip
    return p, port


def _partitions(port):
    h = _health(port) or {}
    return set(h.get("partitions", [])) if h.get("state") == "running" else None


class _Producer(threading.Thread):
    """Candles published as mdengine publishes them (paced); survives fail-overs."""

    def __init__(self, url, candles, per_second, wait_replicas=0, step=200):
        super().__init__(daemon=True)
        self.url, self.candles, self.rate, self.step = url, candles, per_second, step
        self.wait_replicas = wait_replicas
        self.error = None
        self.published = 0
        self.stats = None

    def run(self):
        try:
            asyncio.run(self._go())
        except Exception as e:  # reported by the test
            self.error = e

    async def _go(self):
        link = RedisLink(
            self.url, "producer", backoff_initial=0.05, backoff_max=0.3,
            wait_replicas=self.wait_replicas,
        )  # fmt: skip
        pub = StreamPublisher(link, retention_s=86_400)
        task = asyncio.create_task(pub.run())
        t0 = time.monotonic()
        for i, c in enumerate(self.candles):
            pub.confirmed(topic(c), stream_id(c.bucket), codec.encode(c))
            if i % self.step == self.step - 1:
                self.published = i + 1
                await asyncio.sleep(max(0.0, t0 + self.published / self.rate - time.monotonic()))
        self.published = len(self.candles)
        await pub.drained()
        self.stats = pub.stats
        task.cancel()
        link.close()


def _check_once(r, candles, db, tokens):
    expected = reference(candles)
    assert as_rows(expected) == stored_values(db)  # 0 lost, 0 duplicated, same values
    per_key = Counter(tagged(f"ind:{v.name}:60s:NSE:{v.token}") for v in expected)
    for key in random.Random(3).sample(sorted(per_key), 60):
        ids = [e[0] for e in r.xrange(key)]
        assert len(ids) == per_key[key] == len(set(ids)), key
    pending = sum(r.xpending(tagged(f"candle:60s:NSE:{t}"), "indengine")["pending"] for t in tokens)
    assert pending == 0
    assert r.xlen("dlq:indengine") == 0


@pytest.mark.slow
def test_indengines_share_partitions_take_over_from_a_dead_one_and_rebalance(cluster, tmp_path):  # noqa: F811
    r = cluster.client()
    tokens = list(range(1, 61))
    candles = make_candles(tokens, 30, seed=21)
    producer = _Producer(cluster.url, candles, per_second=900)
    db = str(tmp_path / "ind.db")
    log = open(tmp_path / "indengine.log", "wb")  # noqa: SIM115
    procs = []
    try:
        a, pa = _indengine(cluster.url, db, log, "a")
        b, pb = _indengine(cluster.url, db, log, "b")
        procs += [a, b]
        _wait(lambda: _partitions(pa) and _partitions(pb), 60, "two members")
        _wait(lambda: len(_partitions(pa) | _partitions(pb)) == 16, 30, "all 16 shared")
        assert not _partitions(pa) & _partitions(pb)  # never one partition twice
        producer.start()
        _wait(lambda: producer.published > len(candles) // 4, 60, "the replay to start")
        b.send_signal(signal.SIGKILL)  # a member dies: its leases expire, a takes over
        b.wait()
        _wait(lambda: _partitions(pa) == set(range(16)), 30, "a to own every partition")
        c, pc = _indengine(cluster.url, db, log, "c")  # a member joins: a hands over its share
        procs.append(c)
        _wait(lambda: _partitions(pc), 60, "c to take its share")
        _wait(
            lambda: (
                (_partitions(pa) or set()) | (_partitions(pc) or set()) == set(range(16))
                and not (_partitions(pa) or set()) & (_partitions(pc) or set())
            ),
            30,
            "a and c to split the partitions",
        )
        assert _partitions(pc) == {p for p, m in assign(["a", "c"], 16).items() if m == "c"}
        producer.join(120)
        assert producer.error is None and producer.published == len(candles)
        _wait(
            lambda: sum(r.xpending(tagged(f"candle:60s:NSE:{t}"), "indengine")["pending"]
                        for t in tokens) == 0
            and sorted(r.xlen(tagged(f"ind:SMA_9:60s:NSE:{t}")) for t in tokens)[0] == 22,
            60,
            "every candle processed",
        )  # fmt: skip
    except AssertionError as e:  # what the members were doing: their exit codes and log
        log.flush()
        tail = (tmp_path / "indengine.log").read_text(errors="replace")[-6000:]
        codes = [p.poll() for p in procs]
        raise AssertionError(f"{e}; exit codes {codes}; log:\n{tail}") from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = [p.wait(30) for p in procs]
        log.close()
    assert codes[0] == 0 and codes[2] == 0
    _check_once(r, candles, db, tokens)
    text = (tmp_path / "indengine.log").read_text()
    assert "handed over" in text and "taken" in text


@pytest.mark.slow
def test_a_master_killed_during_a_replay_fails_over_with_nothing_lost(tmp_path):
    """3 masters with a replica each; writes wait for their replica (``wait_replicas = 1``).
    A master is SIGKILLed mid-replay: its replica takes over, the producer and indengine carry
    on against it, and every value is there exactly once."""
    _need_redis()
    c = ClusterServer(tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=500).start()
    try:
        tokens = list(range(1, 61))
        candles = make_candles(tokens, 30, seed=23)
        producer = _Producer(c.url, candles, per_second=900, wait_replicas=1)
        db = str(tmp_path / "ind.db")
        log = open(tmp_path / "indengine.log", "wb")  # noqa: SIM115
        p, port = _indengine(c.url, db, log, "solo", MANDI_REDIS__WAIT_REPLICAS="1")
        try:
            _wait(lambda: _partitions(port) == set(range(16)), 60, "indengine")
            producer.start()
            _wait(lambda: producer.published > len(candles) // 3, 60, "the replay to start")
            victim = c.master_ports()[1]
            slots = masters_now("127.0.0.1", c.nodes)[victim]
            t_kill = time.monotonic()
            c.kill(victim)

            def promoted():
                try:
                    now = masters_now("127.0.0.1", c.nodes)
                except Exception:
                    return False
                return victim not in now and slots in now.values()

            _wait(promoted, 30, "the replica to take over")
            failover_s = time.monotonic() - t_kill
            token = next(t for t in tokens if slots[0] <= key_slot(str(t)) <= slots[1])
            key = tagged(f"ind:SMA_9:60s:NSE:{token}")
            r = c.client()
            n0 = r.xlen(key)
            try:
                # new values, or all 22 already (a fast machine finished the token before the
                # fail-over was seen): the exactly-once check below holds either way
                _wait(lambda: c.client().xlen(key) > n0 or c.client().xlen(key) == 22, 60,
                      "values on the failed-over shard")  # fmt: skip
            except AssertionError:
                p.send_signal(signal.SIGUSR1)  # its tasks' stacks to the log
                time.sleep(1)
                raise
            recovery_s = time.monotonic() - t_kill
            print(f"fail-over: replica promoted {failover_s:.2f} s, values flowing again "
                  f"{recovery_s:.2f} s after the kill")  # fmt: skip
            producer.join(120)
            assert producer.error is None and producer.published == len(candles)
            _wait(
                lambda: sum(c.client().xpending(tagged(f"candle:60s:NSE:{t}"), "indengine")
                            ["pending"] for t in tokens) == 0
                and min(c.client().xlen(tagged(f"ind:SMA_9:60s:NSE:{t}")) for t in tokens) == 22,
                240,  # generous: a fail-over on a machine running two suites at once took > 90 s
                "every candle processed",
            )  # fmt: skip
        finally:
            p.send_signal(signal.SIGTERM)
            code = p.wait(30)
            log.close()
        assert code == 0
        assert recovery_s < 20
        _check_once(c.client(), candles, db, tokens)
    finally:
        c.stop()
