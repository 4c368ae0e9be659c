"""Fencing by lease (#18): a member stalled for longer than its lease (SIGSTOP here; a long GC
or a frozen VM alike) loses its partitions to another member; once it runs again, nothing it
does may touch them — no read that delivers their entries to it (they would stay pending where
XREADGROUP ``>`` never gives them to the new owner), no value, acknowledgement or snapshot.
On one Redis and on a 3-master cluster, with two real indengine processes."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest
from redis_server import any_redis, cluster, redis_cluster  # noqa: F401 - fixtures
from test_redis_bridge import (
    as_rows,
    caught_up,
    cfg_for,
    make_candles,
    publish,
    reference,
    stored_values,
)
from test_redis_cluster import _indengine, _partitions, _Producer, _wait

from mandi.bus.redis import token_partition
from mandi.services.distributed.indengine import IndEngineService
from mandi.services.distributed.partitions import assign


class _Touches(threading.Thread):
    """When consumer ``a`` last touched each stream of some partitions (``XINFO CONSUMERS``
    idle: an XREADGROUP of ``a`` on the stream sets it, delivering or not), sampled with the
    partition's epoch: a touch after another member took the partition, while that member's
    epoch stands, is a stale read."""

    def __init__(self, r, key, partitions, tokens):
        super().__init__(daemon=True)
        self.r = r
        self.streams = {
            p: [key(f"candle:60s:NSE:{t}") for t in tokens if token_partition(t, 16) == p]
            for p in partitions
        }
        self.samples = []  # (partition, epoch after the touch, when a last touched a stream)
        self.done = threading.Event()

    def epoch(self, p):
        return int(self.r.get(f"epoch:{{lease:indengine:{p}}}") or 0)

    def run(self):
        while not self.done.is_set():
            for p, keys in self.streams.items():
                touched = []
                for k in keys:
                    for c in self.r.xinfo_consumers(k, "indengine"):
                        if c["name"] in ("a", b"a"):
                            touched.append(time.time() - c["idle"] / 1000)
                if touched:
                    self.samples.append((p, self.epoch(p), max(touched)))
            self.done.wait(0.02)


def _pending(r, key, tokens):
    return sum(r.xpending(key(f"candle:60s:NSE:{t}"), "indengine")["pending"] for t in tokens)


@pytest.mark.slow
def test_a_member_stalled_past_its_lease_is_fenced_off_its_partitions(cluster, tmp_path):  # noqa: F811
    """SIGSTOP past the lease while candles flow, SIGCONT: the resumed member's first reads
    (before its lease keeper reports) are refused — its log says ``fenced off`` in most runs —
    so it never touches a stream of the partitions the other took (Redis's own record of when
    each consumer last read a stream), and every value is computed once, nothing left pending.
    (One Redis: the next test.)"""
    srv = cluster
    r = srv.client()
    tokens = list(range(1, 41))
    candles = make_candles(tokens, 40, seed=5)
    # ~6 s of candles, a few every 16 ms: some arrive in any moment the stalled member reads
    producer = _Producer(srv.url, candles, per_second=250, step=4)
    db = str(tmp_path / "ind.db")
    log = open(tmp_path / "indengine.log", "wb")  # noqa: SIM115
    procs = []
    try:
        a, pa = _indengine(srv.url, db, log, "a")
        b, pb = _indengine(srv.url, db, log, "b")
        procs += [a, b]
        _wait(lambda: _partitions(pa) and _partitions(pb), 60, "two members")
        _wait(lambda: len(_partitions(pa) | _partitions(pb)) == 16, 30, "all 16 shared")
        mine = {p for p, m in assign(["a", "b"], 16).items() if m == "a"}
        producer.start()
        _wait(lambda: producer.published > len(candles) // 5, 60, "candles to flow")
        touches = _Touches(r, srv.key, mine, tokens)
        a.send_signal(signal.SIGSTOP)  # a stalls for longer than its lease (1.5 s)
        try:
            _wait(lambda: _partitions(pb) == set(range(16)), 30, "b to take a's partitions")
            taken, b_epoch = time.time(), {p: touches.epoch(p) for p in mine}
            touches.start()
            time.sleep(0.3)  # b reads a's partitions now
        finally:
            a.send_signal(signal.SIGCONT)
        # a runs again: it must find out it lost them before anything of theirs reaches it;
        # then it takes its share back from b (a clean hand-over)
        _wait(lambda: _partitions(pa) == mine, 60, "a to take its share back")
        touches.done.set()
        touches.join(10)
        stale = [(p, t - taken) for p, e, t in touches.samples if e == b_epoch[p] and t > taken]
        assert not stale, f"a read partitions b owned: {stale[:5]}"  # unfenced: 3 of 9 runs
        producer.join(120)
        assert producer.error is None and producer.published == len(candles)
        _wait(
            lambda: (
                _pending(r, srv.key, tokens) == 0
                and min(r.xlen(srv.key(f"ind:SMA_9:60s:NSE:{t}")) for t in tokens) == 32
            ),
            60,
            "every candle processed",
        )
    except AssertionError as e:
        log.flush()
        tail = (tmp_path / "indengine.log").read_text(errors="replace")[-6000:]
        raise AssertionError(f"{e}; exit codes {[p.poll() for p in procs]}; log:\n{tail}") from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        codes = [p.wait(30) for p in procs]
        log.close()
    assert codes == [0, 0]
    expected = reference(candles)
    assert as_rows(expected) == stored_values(db)  # 0 lost, 0 duplicated, the kernel's values
    for t in tokens:  # every value stream: each value once, in order, equal to the kernel's
        key = srv.key(f"ind:SMA_9:60s:NSE:{t}")
        ids = [e[0] for e in r.xrange(key)]
        assert len(ids) == len(set(ids)) == 32
    assert _pending(r, srv.key, tokens) == 0
    assert r.xlen("dlq:indengine") == 0
    text = (tmp_path / "indengine.log").read_text()
    assert "lost" in text


@pytest.mark.slow
def test_a_member_that_has_not_learned_of_its_lost_lease_reads_and_writes_nothing(
    any_redis,  # noqa: F811
    tmp_path,
):
    """The window fencing closes, held open: member ``a``'s lease keeper stops (no renewal
    reaches Redis, no report reaches its loop — what a resumed process is like until its
    keeper's next round, or a member cut off from its leases' master) while its loop reads on.
    ``b`` takes every partition when the leases expire. Unfenced, ``a``'s next reads deliver
    candles of ``b``'s partitions to it (pending under ``a``, never given to ``b``): ``a``
    processes and acknowledges them and ``b``'s engines miss them. Fenced, ``a``'s reads are
    refused, it gives the partitions up, and ``b`` computes every value exactly once."""
    srv = any_redis
    r = srv.client()
    tokens = list(range(1, 41))
    candles = make_candles(tokens, 40, seed=9)
    first, later = candles[: len(candles) // 4], candles[len(candles) // 4 :]
    cfg = cfg_for(srv.url, tmp_path, **{"redis.lease_ms": 1500, "redis.block_ms": 100})
    svc = IndEngineService(cfg, consumer="a", port=0)
    log = open(tmp_path / "indengine.log", "wb")  # noqa: SIM115
    procs = []

    async def go():
        task = asyncio.create_task(svc.run(signals=False))
        try:
            await publish(srv.url, first, retention_s=86_400)
            deadline = time.monotonic() + 60
            while not caught_up(svc, first):
                assert not task.done() and time.monotonic() < deadline, dict(svc.stats)
                await asyncio.sleep(0.02)
            assert svc._keeper is not None
            await asyncio.to_thread(svc._keeper.stop)  # renewals stop; a reads on
            b, pb = _indengine(srv.url, cfg.store.db, log, "b")
            procs.append(b)
            await asyncio.to_thread(
                _wait, lambda: _partitions(pb) == set(range(16)), 60, "b to take every partition"
            )
            await publish(srv.url, later, retention_s=86_400)
            await asyncio.to_thread(
                _wait,
                lambda: (
                    _pending(r, srv.key, tokens) == 0
                    and min(r.xlen(srv.key(f"ind:SMA_9:60s:NSE:{t}")) for t in tokens) == 32
                ),
                60,
                "every candle processed",
            )
        finally:
            svc.stop.set()
            await asyncio.wait_for(task, 30)

    try:
        asyncio.run(go())
    except AssertionError as e:
        log.flush()
        tail = (tmp_path / "indengine.log").read_text(errors="replace")[-4000:]
        raise AssertionError(f"{e}; a: {dict(svc.stats)}; b's log:\n{tail}") from None
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(30) for p in procs]
        log.close()
    assert codes == [0]
    assert as_rows(reference(candles)) == stored_values(cfg.store.db)  # 0 lost, 0 duplicated
    for t in tokens:
        ids = [e[0] for e in r.xrange(srv.key(f"ind:SMA_9:60s:NSE:{t}"))]
        assert len(ids) == len(set(ids)) == 32
    assert _pending(r, srv.key, tokens) == 0
    assert svc.stats["fenced"] >= 1  # a found out from a refused read, and stopped there
    assert svc.stats["candles"] == len(first)  # nothing later reached a (unfenced: 510-1,170)
