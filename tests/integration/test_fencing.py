"""Fencing by lease (#18): a member stalled for longer than its lease (SIGSTOP here; a long GC
or a frozen VM alike) loses its partitions to another member; once it runs again, nothing it
does may touch them — no read that delivers their entries to it (they would stay pending where
XREADGROUP ``>`` never gives them to the new owner), no value, acknowledgement or snapshot.
On one Redis and on a 3-master cluster, with two real indengine processes."""

from __future__ import annotations

import signal
import time

import pytest
from redis_server import any_redis, redis_cluster  # noqa: F401 - fixtures
from test_redis_bridge import as_rows, make_candles, reference, stored_values
from test_redis_cluster import _indengine, _partitions, _Producer, _wait

from mandi.services.distributed.partitions import assign


def _pending(r, key, tokens):
    return sum(r.xpending(key(f"candle:60s:NSE:{t}"), "indengine")["pending"] for t in tokens)


@pytest.mark.slow
def test_a_member_stalled_past_its_lease_is_fenced_off_its_partitions(any_redis, tmp_path):  # noqa: F811
    srv = any_redis
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
        a.send_signal(signal.SIGSTOP)  # a stalls for longer than its lease (1.5 s)
        try:
            _wait(lambda: _partitions(pb) == set(range(16)), 30, "b to take a's partitions")
            time.sleep(0.3)  # b reads a's partitions now
        finally:
            a.send_signal(signal.SIGCONT)
        # a runs again: it must find out it lost them before anything of theirs reaches it;
        # then it takes its share back from b (a clean hand-over)
        _wait(lambda: _partitions(pa) == mine, 60, "a to take its share back")
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
