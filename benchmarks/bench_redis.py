"""Distributed mode: candles/s through mdengine → Redis → indengine, per shard on one Redis and
on a Redis Cluster, tick → indicator latency hop by hop, the cluster client chosen for the hot
paths, and a master failing over during a replay.

Everything runs on this machine in the same run against redis-server processes this script
starts on free loopback ports (no persistence; the fail-over cluster has replicas):

* **baseline** — the single process (``mandi run``'s path): the same synthetic ticks through
  ``FastCandlePipeline`` and the ``IndicatorEngine`` on one in-process bus, values upserted
  into SQLite;
* **single Redis** — mdengine's side alone (ticks → ``FastCandlePipeline`` →
  ``StreamPublisher``: XADD + PUBLISH per candle and one SET per key, flat out), the bus alone
  (publisher → Redis → a consumer group reader that decodes and acknowledges), and end to end
  (ticks → mdengine's path → Redis → the real ``mandi service indengine``: process, values
  XADD + SET + PUBLISH, SQLite commit, XACK) until drained;
* **cluster, per shard** — the same end to end on a local Redis Cluster (``start_cluster``, as
  ``mandi up --shards``) with 1 and 2 shards: per shard a feed-shard producer process, a master
  and an indengine (the indengines share the partitions). The CPU each role spends per candle
  (``/proc``) gives the capacity of a shard per core and the shards 100,000 candles/s needs;
* **client** — the cluster hot paths through redis-py's asyncio ``RedisCluster`` pipeline
  against the bridge's own routed RESP pipeline (same commands, same cluster);
* **latency** — ticks paced at 1,000 and 10,000 candles/s (steady and in bursts); a
  subscriber in another process receives the candle and its first value (``SMA_9``), so the
  time splits into tick → candle on Redis (mdengine hop) and candle → value (indengine hop:
  its read, process and send stages come from its ``/metrics``), beside the single process;
* **fail-over** — 3 masters with a replica each, ``redis.wait_replicas = 1``: a master is
  SIGKILLed during a replay; recovery time, and every value checked present exactly once.

Each tick makes a 1 s candle as well (mdengine publishes those too; indengine does not read
them): the "candles/s" figures count the 60 s candles indengine consumes.
``MANDI_BENCH_QUICK=1`` for a short run; ``MANDI_BENCH_RT=1`` runs the latency section again
with its processes (and Redis) at real-time priority (``SCHED_FIFO``, as a deployment with
cores of its own would; needs root), so other work on a shared machine shows less.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import os
import pathlib
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import report
from mandi.bus.codec import codec
from mandi.bus.memory import MessageBus
from mandi.bus.redis import (
    GroupReader,
    RedisLink,
    StreamPublisher,
    discover,
    pack,
    stream_id,
    tagged,
    token_partition,
)
from mandi.core.clock import TestClock
from mandi.indicators import IndicatorEngine
from mandi.model.market import Candle, Tick
from mandi.pipeline.fast import FastCandlePipeline
from mandi.services.distributed.cluster import (
    cluster_url,
    masters_now,
    start_cluster,
    stop_nodes,
)
from mandi.services.distributed.indengine import load_kernels
from mandi.stores.indicators import VALUE_SQL
from mandi.stores.sqlite import connect

T0 = 1_776_052_500 * 10**9  # 2026-04-13 09:15 IST
NS = 10**9
TOKENS = 1000
QUICK = os.environ.get("MANDI_BENCH_QUICK") == "1"
RT = os.environ.get("MANDI_BENCH_RT") == "1"
BUCKETS = 40 if QUICK else 120  # flat-out runs: TOKENS x BUCKETS 60 s candles
LAT_SECONDS = 5 if QUICK else 15  # each paced latency run
PARTITIONS = 16
HZ = os.sysconf("SC_CLK_TCK")


def ticks_for_bucket(b: int, rng: random.Random, price: dict[int, int], tokens: int) -> list[Tick]:
    """One tick per instrument in 60 s bucket ``b`` (event-time order)."""
    out = []
    start = T0 + b * 60 * NS
    for i, token in enumerate(range(1, tokens + 1)):
        price[token] += rng.randint(-20, 20) * 5
        ts = start + (i * 59 * NS) // tokens
        out.append(Tick(token, "NSE", ts, 0, price[token], volume=1000 * (b + 1)))
    return out


def all_ticks(buckets: int, seed: int = 5, tokens: int = TOKENS) -> list[list[Tick]]:
    rng = random.Random(seed)
    price = {t: 2_000_000 + 100 * t for t in range(1, tokens + 1)}
    return [ticks_for_bucket(b, rng, price, tokens) for b in range(buckets + 1)]


def shard_of(batches: list[list[Tick]], k: int, n: int) -> list[list[Tick]]:
    """The ticks of feed shard k of n (``mandi service mdengine --shard k/n``)."""
    if n == 1:
        return batches
    mine = {t for t in range(1, TOKENS + 1) if token_partition(t, PARTITIONS) % n == k}
    return [[t for t in b if t.token in mine] for b in batches]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except OSError:
        return 0.0


class Redis:
    def __init__(self, directory: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", directory,
             "--save", "", "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.pids = [self.proc.pid]
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(10).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port)

    def flush(self) -> None:
        self.client().flushall()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


class Cluster:
    def __init__(self, directory: str, masters: int, replicas: int = 0) -> None:
        self.nodes = start_cluster(
            pathlib.Path(directory), masters=masters, replicas=replicas, aof=False,
            node_timeout_ms=800, partitions=PARTITIONS, detach=False,
        )  # fmt: skip
        self.url = cluster_url("127.0.0.1", self.nodes)
        self.pids = [n.pid for n in self.nodes if n.role == "master"]

    def client(self) -> Any:
        import redis
        from redis.cluster import ClusterNode

        return redis.RedisCluster(
            startup_nodes=[
                ClusterNode("127.0.0.1", n.port) for n in self.nodes if n.role == "master"
            ]
        )

    def flush(self) -> None:
        import redis

        for port in masters_now("127.0.0.1", self.nodes):
            redis.Redis(port=port).flushall()

    def stop(self) -> None:
        stop_nodes(self.nodes, 10)


# --- baseline: the single process -----------------------------------------------------------------


def baseline_throughput(batches: list[list[Tick]], db: str) -> float:
    bus = MessageBus(TestClock())
    pipe = FastCandlePipeline(bus, (60,))
    engine = IndicatorEngine()
    rows: list[tuple] = []

    def on_candle(topic: str, c) -> None:
        for v in engine.process(c):
            rows.append((v.token, v.exchange, v.timeframe, v.bucket, v.name, v.value))

    bus.subscribe("candle:60s:>", on_candle)
    con = connect(db)
    t0 = time.perf_counter()
    for batch in batches:
        pipe.handle_ticks(batch)
        con.execute("BEGIN")
        con.executemany(VALUE_SQL, rows)
        con.execute("COMMIT")
        rows.clear()
    dt = time.perf_counter() - t0
    con.close()
    return dt


def baseline_latency(batches: list[list[Tick]]) -> list[float]:
    bus = MessageBus(TestClock())
    pipe = FastCandlePipeline(bus, (60,))
    engine = IndicatorEngine()
    lat: list[float] = []
    t_tick = [0]

    def on_candle(topic: str, c) -> None:
        vals = engine.process(c)
        if any(v.name == "SMA_9" for v in vals):
            lat.append((time.perf_counter_ns() - t_tick[0]) / 1e6)

    bus.subscribe("candle:60s:>", on_candle)
    for batch in batches:
        t_tick[0] = time.perf_counter_ns()
        pipe.handle_ticks(batch)
    return lat


# --- the mdengine side ----------------------------------------------------------------------------


async def produce(
    url: str,
    batches: list[list[Tick]],
    pace_s: float = 0.0,
    marks: dict[int, int] | None = None,
    client: str = "link",
) -> tuple[float, Any]:
    """Ticks → FastCandlePipeline (mdengine's default engine, fed batches as mdengine feeds
    it) → StreamPublisher; ``marks[bucket]`` = the monotonic ns at which the batch holding the
    tick that confirms that bucket began to be handled."""
    link = RedisLink(url, "bench.mdengine")
    pub = StreamPublisher(link, retention_s=86_400, retention_1s_s=600, partitions=PARTITIONS)
    task = asyncio.create_task(pub.run())
    bus = MessageBus(TestClock())
    pipe = FastCandlePipeline(bus, (60,))
    enc = codec.encode
    seen: set[int] = set()
    current = [0]

    def on_candle(topic: str, c) -> None:
        pub.confirmed(topic, stream_id(c.bucket), enc(c))
        if marks is not None and c.timeframe == 60 and c.bucket not in seen:
            seen.add(c.bucket)
            marks[c.bucket] = current[0]

    bus.subscribe("candle:>", on_candle)
    gc.collect()
    gc.freeze()  # the ticks prepared above: no collection walks them while producing
    t0 = time.perf_counter()
    for i, batch in enumerate(batches):
        current[0] = time.monotonic_ns()
        pipe.handle_ticks(batch)
        if pace_s:
            delay = t0 + (i + 1) * pace_s - time.perf_counter()
            await asyncio.sleep(max(0.0, delay))
        elif pub.pending > 20_000:
            await pub.drained()
        else:
            await asyncio.sleep(0)
    await pub.drained()
    dt = time.perf_counter() - t0
    task.cancel()
    link.close()
    return dt, pub


def _produce_proc(url: str, batches: list[list[Tick]], q: mp.Queue) -> None:
    import resource

    dt, pub = asyncio.run(produce(url, batches))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    q.put((dt, pub.stats.confirmed, ru.ru_utime + ru.ru_stime))


def _candle(token: int, b: int) -> Candle:
    p = 2_000_000 + 100 * token + 5 * (b % 7)
    return Candle(token, "NSE", 60, T0 + b * 60 * NS, p, p + 50, p - 50, p + 5, 100, 0, 3, True)


async def publish_encoded(url: str, items: list[tuple[str, str, bytes]]) -> None:
    """Pre-encoded candles → StreamPublisher (XADD + SET + PUBLISH per node, in batches)."""
    link = RedisLink(url, "bench.publisher")
    pub = StreamPublisher(link, retention_s=86_400, partitions=PARTITIONS)
    task = asyncio.create_task(pub.run())
    for i in range(0, len(items), 5000):
        for key, eid, payload in items[i : i + 5000]:
            pub.confirmed(key, eid, payload)
        if pub.pending > 20_000:
            await pub.drained()
        await asyncio.sleep(0)
    await pub.drained()
    task.cancel()
    link.close()


def _consume(url: str, n: int, out: mp.Queue) -> None:
    """A consumer group reader that decodes and acknowledges ``n`` 60 s candles."""

    async def go() -> float:
        link = RedisLink(url, "bench.reader")
        reader = GroupReader(link, "bench", "reader-1")
        reader.accept = lambda k: True
        await link.connection()
        reader.watch([f"wake:candle:60s:{p}" for p in range(PARTITIONS)])
        got = 0
        t0 = None
        while got < n:
            keys = await discover(link, ["streams:candle:60s"])
            await reader.add_keys(keys)
            entries = await reader.read(max(10, 5000 // max(1, len(reader.keys))), 100)
            if entries and t0 is None:
                t0 = time.perf_counter()
            acks: dict[str, list[bytes]] = {}
            for e in entries:
                codec.decode(e.payload)
                acks.setdefault(e.key, []).append(e.id)
            if acks:
                await link.pipeline(reader.ack_commands(acks))
            got += len(entries)
        reader.close()
        return time.perf_counter() - (t0 or time.perf_counter())

    out.put(asyncio.run(go()))


def _wait_http(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r,
        ):
            if json.loads(r.read())["state"] == "running":
                return
        time.sleep(0.1)
    raise RuntimeError("indengine did not become ready")


def _wait_settled(ports: list[int], timeout: float = 120) -> None:
    """Until the indengines own every partition between them, each its own share: a candle
    read while a partition is handed over can stay pending (see docs/distributed.md), and a
    flat-out run should measure the steady state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owned = []
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                owned.append(json.loads(r.read()).get("partitions") or [])
        flat = [p for ps in owned for p in ps]
        if len(ports) == 1 or (sorted(flat) == list(range(PARTITIONS)) and all(owned)):
            return
        time.sleep(0.2)
    raise RuntimeError(f"partitions did not settle among the indengines: {owned}")


def metrics(port: int) -> dict[str, float]:
    """indengine's /metrics as {name{labels}: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def start_indengine(
    url: str, db: str, extra: dict[str, str] | None = None, consumer: str = "bench-ind"
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANDI_")}
    env.update(
        {
            "MANDI_INDICATORS__TIMEFRAMES": "[60]",
            "MANDI_REDIS__RETENTION_S": "86400",
            "MANDI_REDIS__DISCOVER_INTERVAL_S": "0.1",
            "MANDI_REDIS__BLOCK_MS": "100",
            "MANDI_INDICATORS__PREVIEWS": "none",
            **(extra or {}),
        }
    )
    p = subprocess.Popen(
        [sys.executable, "-m", "mandi", "service", "indengine", "--redis", url, "--db", db,
         "--port", str(port), "--log-level", "WARNING", "--consumer", consumer],
        env=env,
    )  # fmt: skip
    return p, port


def stop(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def drained(client: Any, expect_keys: int) -> bool:
    keys = list(client.smembers("streams:candle:60s"))
    if len(keys) < expect_keys:
        return False
    for k in keys:
        g = [x for x in client.xinfo_groups(k) if x["name"] == b"indengine"]
        if not g or g[0]["pending"] or (g[0]["lag"] or 0):
            return False
    return True


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] if s else float("nan")


def line(name: str, xs: list[float]) -> None:
    print(
        f"   {name:<58} p50 {pct(xs, 50):8.3f}  p99 {pct(xs, 99):8.3f}  "
        f"p99.9 {pct(xs, 99.9):8.3f}  max {max(xs or [0]):8.3f}",
        flush=True,
    )


# --- end to end -----------------------------------------------------------------------------------


def end_to_end(
    server: Any, batches: list[list[Tick]], shards: int, tmp: str, extra: dict[str, str]
) -> tuple[float, dict[str, float]]:
    """Feed-shard producers (processes) → Redis → ``shards`` indengines, flat out, until
    drained; returns (seconds, CPU seconds by role).

    Every run gets fresh databases: a database left by an earlier run holds that run's final
    engine snapshots, which an indengine whose Redis is empty restores (the SQLite fallback),
    and then rejects every candle as already seen: it would compute nothing."""
    server.flush()
    ctx = mp.get_context("fork")
    dbs = [tempfile.mktemp(suffix=f"-e2e-{shards}-{k}.db", dir=tmp) for k in range(shards)]
    inds = [start_indengine(server.url, dbs[k], extra, f"ind-{k}") for k in range(shards)]
    try:
        for _, port in inds:
            _wait_http(port)
        _wait_settled([port for _, port in inds])
        cpu0 = {
            "redis": sum(cpu_s(p) for p in server.pids),
            "indengine": sum(cpu_s(p.pid) for p, _ in inds),
        }
        q: mp.Queue = ctx.Queue()
        t0 = time.perf_counter()
        producers = [
            ctx.Process(target=_produce_proc, args=(server.url, shard_of(batches, k, shards), q))
            for k in range(shards)
        ]
        for pr in producers:
            pr.start()
        produced = [q.get(timeout=600) for _ in producers]
        client = server.client()
        while not drained(client, TOKENS):
            time.sleep(0.05)
        dt = time.perf_counter() - t0
        for pr in producers:
            pr.join(10)
        cpu = {
            "producer": sum(c for _, _, c in produced),
            "redis": sum(cpu_s(p) for p in server.pids) - cpu0["redis"],
            "indengine": sum(cpu_s(p.pid) for p, _ in inds) - cpu0["indengine"],
        }
        values = 0.0  # computed in this run (none if the engines thought they had seen all)
        for k, (_, port) in enumerate(inds):
            m = metrics(port)

            def g(name: str, m: dict[str, float] = m) -> float:
                return m.get(f'mandi_{name}{{service="indengine"}}', 0.0)

            cs, reads = g("candles_processed_total"), g("commits_total")
            values += g("indicator_values_total")
            print(
                f"   indengine {k}: {cs:,.0f} candles in {g('batches_total'):,.0f} batches "
                f"({cs / max(1.0, g('batches_total')):,.0f} a batch), "
                f"{g('indicator_values_total'):,.0f} values, {reads:,.0f} commits; "
                f"partitions taken {g('partitions_taken_total'):.0f}, lost "
                f"{g('partitions_lost_total'):.0f}; replayed {g('replayed_total'):,.0f}",
                flush=True,
            )
        assert sum(n for _, n, _ in produced) >= 2 * TOKENS * (len(batches) - 2)
        assert values > 3 * TOKENS * (len(batches) - 2), values
    finally:
        for p, _ in inds:
            stop(p)
    stored = 0
    for k in range(shards):
        con = sqlite3.connect(dbs[k])
        stored += con.execute("SELECT count(*) FROM indicator_values").fetchone()[0]
        con.close()
    assert stored > 3 * TOKENS * (len(batches) - 2), stored
    return dt, cpu


def cpu_line(n: int, cpu: dict[str, float], dt: float) -> float:
    total = sum(cpu.values())
    parts = "  ".join(f"{k} {v / n * 1e6:5.1f}" for k, v in cpu.items())
    print(
        f"   CPU per candle (µs): {parts}  = {total / n * 1e6:5.1f} µs "
        f"→ {n / total:,.0f} candles/s per core; {total / dt:.2f} cores busy "
        f"(load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    return n / total


# --- the cluster client for the hot paths ---------------------------------------------------------


async def redispy_publish(url: str, items: list[tuple[str, bytes, bytes]]) -> float:
    """The publisher's commands (XADD + SET + SPUBLISH per candle) through redis-py's asyncio
    cluster pipeline."""
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    host_ports = [h.split(":") for h in url.split("//")[1].split("/")[0].split(",")]
    rc = RedisCluster(startup_nodes=[ClusterNode(h, int(p)) for h, p in host_ports])
    await rc.initialize()
    t0 = time.perf_counter()
    for i in range(0, len(items), 5000):
        pipe = rc.pipeline(transaction=False)
        for key, eid, payload in items[i : i + 5000]:
            pipe.xadd(key, {"d": payload}, id=eid, maxlen=180, approximate=True)
            pipe.set(key.replace("candle:60s:", "candle:60s:latest:"), payload, ex=1800)
            pipe.spublish("pub:" + key, payload)
        await pipe.execute(raise_on_error=False)
    dt = time.perf_counter() - t0
    await rc.aclose()
    return dt


async def link_publish(url: str, items: list[tuple[str, bytes, bytes]]) -> float:
    """The same commands through the bridge's routed pipeline (cached RESP prefixes)."""
    link = RedisLink(url, "bench.link")
    await link.connection()
    t0 = time.perf_counter()
    for i in range(0, len(items), 5000):
        cmds = []
        for key, eid, payload in items[i : i + 5000]:
            cmds.append((key, pack("XADD", key, "MAXLEN", "~", 180, eid, "d", payload)))
            cmds.append((key, pack("SET", key.replace("candle:60s:", "candle:60s:latest:"),
                                   payload, "EX", 1800)))  # fmt: skip
            cmds.append((key, pack("SPUBLISH", "pub:" + key, payload)))
        await link.pipeline(cmds)
    dt = time.perf_counter() - t0
    link.close()
    return dt


async def builder_publish(url: str, items: list[tuple[str, bytes, bytes]]) -> float:
    """The bridge's real publisher path (StreamPublisher: cached prefixes, one SET per key)."""
    link = RedisLink(url, "bench.pub")
    await link.connection()
    pub = StreamPublisher(link, retention_s=86_400, partitions=PARTITIONS)
    t0 = time.perf_counter()
    for i in range(0, len(items), 5000):
        for key, eid, payload in items[i : i + 5000]:
            pub.confirmed(key.replace("{", "").replace("}", ""), eid, payload)
        await pub.flush_once()
    dt = time.perf_counter() - t0
    link.close()
    return dt


async def redispy_read(url: str, keys: list[str], n: int) -> float:
    """XREADGROUP per key + XACK through redis-py's asyncio cluster pipeline."""
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    host_ports = [h.split(":") for h in url.split("//")[1].split("/")[0].split(",")]
    rc = RedisCluster(startup_nodes=[ClusterNode(h, int(p)) for h, p in host_ports])
    await rc.initialize()
    got = 0
    t0 = time.perf_counter()
    while got < n:
        pipe = rc.pipeline(transaction=False)
        for k in keys:
            pipe.xreadgroup("g-py", "c", {k: ">"}, count=50)
        replies = await pipe.execute()
        pipe = rc.pipeline(transaction=False)
        for reply in replies:
            for key, items in reply or ():
                for eid, fields in items:
                    codec.decode(fields[b"d"])
                    pipe.xack(key, "g-py", eid)
                    got += 1
        await pipe.execute()
    dt = time.perf_counter() - t0
    await rc.aclose()
    return dt


async def link_read(url: str, keys: list[str], n: int) -> float:
    """The same through the bridge's GroupReader (XREADGROUP per key) and routed XACKs."""
    link = RedisLink(url, "bench.read")
    reader = GroupReader(link, "g-link", "c")
    await reader.add_keys(keys)
    got = 0
    t0 = time.perf_counter()
    while got < n:
        entries = await reader.read_keys(keys, 50)
        acks: dict[str, list[bytes]] = {}
        for e in entries:
            codec.decode(e.payload)
            acks.setdefault(e.key, []).append(e.id)
        await link.pipeline(reader.ack_commands(acks))
        got += len(entries)
    dt = time.perf_counter() - t0
    link.close()
    return dt


# --- latency --------------------------------------------------------------------------------------


def _listen(url: str, cluster: bool, tokens: int, seconds: float, out: mp.Queue) -> None:
    """Receive each token's 60 s candles and SMA_9 values (the bridge's ``Subscriber``:
    hiredis, one connection per node — a Python subscriber of 20,000 messages/s must cost
    little, or it measures itself); report (kind, bucket, monotonic ns) of the first candle
    and the first value of every bucket."""
    from mandi.bus.redis import Subscriber

    got: list[tuple[str, int, int]] = []
    seen: set[tuple[str, int]] = set()
    decode = codec.decode

    def on(channel: bytes, data: bytes, pattern: bytes | None) -> None:
        now = time.monotonic_ns()
        x = decode(data)
        kind = "value" if channel.startswith(b"pub:ind:") else "candle"
        if (getattr(x, "confirmed", None) or getattr(x, "closed", None)) and (
            kind,
            x.bucket,
        ) not in seen:
            seen.add((kind, x.bucket))
            got.append((kind, x.bucket, now))

    async def go() -> None:
        link = RedisLink(url, "bench.listener")
        await link.connection()
        ready = asyncio.Event()
        sub = Subscriber(link, on, ready.set)
        channels = [
            ch
            for t in range(1, tokens + 1)
            for ch in (f"pub:candle:60s:NSE:{t}", f"pub:ind:SMA_9:60s:NSE:{t}")
        ]
        sub.set(sharded=[link.key(ch) for ch in channels])
        task = asyncio.create_task(sub.run())
        await ready.wait()
        await asyncio.sleep(0.3)  # the subscriptions are confirmed
        gc.freeze()
        out.put("ready")
        await asyncio.sleep(seconds)
        task.cancel()
        link.close()

    asyncio.run(go())
    out.put(got)


def _rt(*pids: int) -> None:
    """Real-time priority (``SCHED_FIFO``) for these processes (0: this one; children inherit
    it): woken at once whatever else the machine runs."""
    for pid in pids or (0,):
        with contextlib.suppress(PermissionError, AttributeError, OSError):
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(20))


def latency(
    server: Any,
    cluster: bool,
    tmp: str,
    scenarios: list[tuple[str, int, float]],
    extra: dict[str, str] | None = None,
) -> None:
    for label, tokens, pace in scenarios:
        server.flush()
        nb = int(LAT_SECONDS / pace)
        warm = 3  # buckets sent (and drained) first: stream discovery is not measured
        lat_batches = all_ticks(nb + warm, seed=9, tokens=tokens)
        base_lat = baseline_latency(lat_batches[warm:])
        db = tempfile.mktemp(suffix=".db", dir=tmp)  # a fresh one: no fallback snapshot
        p, port = start_indengine(server.url, db, extra)
        try:
            _wait_http(port)
            asyncio.run(produce(server.url, lat_batches[:warm]))
            deadline = time.monotonic() + 60
            client = server.client()
            while not drained(client, tokens) and time.monotonic() < deadline:
                time.sleep(0.05)
            lat_batches = lat_batches[warm:]
            q: mp.Queue = mp.get_context("fork").Queue()
            lst = mp.get_context("fork").Process(
                target=_listen, args=(server.url, cluster, tokens, LAT_SECONDS + 10, q)
            )
            lst.start()
            assert q.get(timeout=30) == "ready"
            time.sleep(0.5)
            before = metrics(port)
            marks: dict[int, int] = {}
            asyncio.run(produce(server.url, lat_batches, pace_s=pace, marks=marks))
            got = q.get(timeout=LAT_SECONDS + 60)
            lst.join(30)
            stages = metrics(port)
        finally:
            stop(p)
        _ = before
        candle = {b: t for k, b, t in got if k == "candle"}
        value = {b: t for k, b, t in got if k == "value"}
        total = [(value[b] - marks[b]) / 1e6 for b in value if b in marks]
        md_hop = [(candle[b] - marks[b]) / 1e6 for b in candle if b in marks]
        ind_hop = [(value[b] - candle[b]) / 1e6 for b in value if b in candle]
        where = "cluster" if cluster else "one Redis"
        print(
            f"-- latency on {where} at {label}: tick → indicator value received by a "
            f"subscriber, ms ({len(total):,} candles; load average {os.getloadavg()[0]:.1f})"
        )
        line("single process (in-process bus)", base_lat)
        line("distributed: tick → value (total)", total)
        line("  hop 1: tick → candle on Redis (mdengine + Pub/Sub)", md_hop)
        line("  hop 2: candle on Redis → value (indengine + Pub/Sub)", ind_hop)
        for stage in ("process", "send", "sqlite", "ack"):
            qs = [
                stages.get(
                    f'mandi_stage_seconds{{quantile="{q}",service="indengine",stage="{stage}"}}'
                )
                for q in ("0.5", "0.99", "0.999", "1.0")
            ]
            if qs[0] is not None:
                print(
                    f"     indengine {stage:<8} per batch ms: p50 {qs[0] * 1e3:7.3f}  "
                    f"p99 {qs[1] * 1e3:7.3f}  p99.9 {qs[2] * 1e3:7.3f}  max {qs[3] * 1e3:7.3f}"
                )
        print("   [goal: p99 <= 2 ms, p99.9 <= 5 ms]", flush=True)


# --- fail-over ------------------------------------------------------------------------------------


def failover(tmp: str) -> None:
    """3 masters + 1 replica each; candles published and processed with wait_replicas = 1;
    one master SIGKILLed mid-replay."""
    c = Cluster(os.path.join(tmp, "failover"), masters=3, replicas=1)
    tokens = list(range(1, 301))
    buckets = 40 if QUICK else 100
    candles = [_candle(t, b) for b in range(buckets) for t in tokens]
    try:
        db = os.path.join(tmp, "failover.db")
        p, port = start_indengine(c.url, db, {"MANDI_REDIS__WAIT_REPLICAS": "1",
                                              "MANDI_REDIS__BACKOFF_MAX_S": "0.3"})  # fmt: skip
        _wait_http(port)
        ctx = mp.get_context("fork")
        q: mp.Queue = ctx.Queue()

        def publish_paced(url: str, q: mp.Queue) -> None:
            async def go() -> None:
                link = RedisLink(url, "producer", backoff_max=0.3, wait_replicas=1)
                pub = StreamPublisher(link, retention_s=86_400, partitions=PARTITIONS)
                task = asyncio.create_task(pub.run())
                t0 = time.monotonic()
                for i, cd in enumerate(candles):
                    pub.confirmed(
                        f"candle:60s:NSE:{cd.token}", stream_id(cd.bucket), codec.encode(cd)
                    )
                    if i % 300 == 299:
                        await asyncio.sleep(max(0.0, t0 + (i + 1) / 3000 - time.monotonic()))
                await pub.drained()
                task.cancel()
                q.put(pub.stats.confirmed + pub.stats.duplicates)

            asyncio.run(go())

        prod = ctx.Process(target=publish_paced, args=(c.url, q))
        prod.start()
        time.sleep(len(candles) / 3000 / 3)
        victim = sorted(masters_now("127.0.0.1", c.nodes))[1]
        slots = masters_now("127.0.0.1", c.nodes)[victim]
        node = next(n for n in c.nodes if n.port == victim)
        t_kill = time.monotonic()
        os.kill(node.pid, signal.SIGKILL)
        while True:
            with contextlib.suppress(Exception):
                now = masters_now("127.0.0.1", c.nodes)
                if victim not in now and slots in now.values():
                    break
            time.sleep(0.02)
        promoted = time.monotonic() - t_kill
        client = c.client()
        token = next(t for t in tokens if slots[0] <= key_slot_of(t) <= slots[1])
        key = tagged(f"ind:SMA_9:60s:NSE:{token}")
        n0 = client.xlen(key)
        while client.xlen(key) <= n0 and time.monotonic() - t_kill < 60:
            time.sleep(0.02)
        flowing = time.monotonic() - t_kill
        sent = q.get(timeout=300)
        prod.join(30)
        while not drained(client, len(tokens)):
            time.sleep(0.1)
        stop(p)
        expected = IndicatorEngine().process_many(candles)
        con = sqlite3.connect(db)
        rows = con.execute("SELECT count(*) FROM indicator_values").fetchone()[0]
        con.close()
        per_key = Counter(tagged(f"ind:{v.name}:60s:NSE:{v.token}") for v in expected)
        pipe = client.pipeline()
        for k in per_key:
            pipe.xlen(k)
        in_redis = sum(pipe.execute())
        lost = len(expected) - min(rows, in_redis)
        dup = max(rows, in_redis) - len(expected)
        print(
            f"-- fail-over: 3 masters + 1 replica each, wait_replicas = 1, {len(candles):,} "
            f"candles paced at 3,000/s; master :{victim} SIGKILLed mid-replay\n"
            f"   replica promoted after {promoted:.2f} s, values flowing on its slots again "
            f"after {flowing:.2f} s; candles written {sent:,}; values {len(expected):,} expected"
            f", {rows:,} in SQLite, {in_redis:,} in Redis streams: {lost} lost, {dup} duplicated"
            f"   [goal: 0 lost, 0 duplicated]",
            flush=True,
        )
    finally:
        c.stop()


def key_slot_of(token: int) -> int:
    from mandi.bus.redis import key_slot

    return key_slot(str(token))


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    if shutil.which("redis-server") is None:
        print("redis-server not installed: skipped (apt-get install redis-server)")
        return
    tmp = tempfile.mkdtemp(prefix="mandi-bench-redis-")
    server = Redis(tmp)
    try:
        batches = all_ticks(BUCKETS)
        n = TOKENS * BUCKETS  # 60 s candles confirmed
        print(
            f"-- {TOKENS} instruments x {BUCKETS} buckets = {n:,} 60 s candles "
            f"(+ as many 1 s candles published); load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} CPUs"
        )
        load_kernels(None)  # compiled once here: the services load them from numba's cache
        base = baseline_throughput(batches, os.path.join(tmp, "single.db"))
        report("single process: ticks → candles → indicators → SQLite", n, base, "candles")

        dt, pub = asyncio.run(produce(server.url, batches))
        report("mdengine path: ticks → candles → Redis (XADD+SET+PUBLISH)", n, dt, "candles",
               "single process", base)  # fmt: skip
        assert pub.stats.confirmed >= 2 * n - TOKENS, pub.stats

        encoded = [
            (f"candle:60s:NSE:{t}", stream_id(T0 + b * 60 * NS), codec.encode(_candle(t, b)))
            for b in range(BUCKETS)
            for t in range(1, TOKENS + 1)
        ]
        server.flush()
        q0: mp.Queue = mp.get_context("fork").Queue()
        c = mp.get_context("fork").Process(target=_consume, args=(server.url, n, q0))
        c.start()
        t0 = time.perf_counter()
        asyncio.run(publish_encoded(server.url, encoded))
        c.join(300)
        report("bus only: candles → Redis → XREADGROUP + decode + XACK", n,
               time.perf_counter() - t0, "candles", "single process", base)  # fmt: skip

        goal = ">= 100,000 candles/s end to end"
        dt, cpu = end_to_end(server, batches, 1, tmp, {})
        report("end to end, one Redis, one indengine", n, dt, "candles", "single process",
               base, goal=goal)  # fmt: skip
        cpu_line(n, cpu, dt)
        dt, cpu = end_to_end(server, batches, 1, tmp, {"MANDI_REDIS__INDICATOR_STREAMS": "false"})
        report("end to end, one Redis (values PUBLISHed only)", n, dt, "candles",
               "single process", base)  # fmt: skip
        cpu_line(n, cpu, dt)

        capacity = {}
        for shards in (1, 2):
            cl = Cluster(os.path.join(tmp, f"cluster{shards}"), masters=shards)
            try:
                dt, cpu = end_to_end(cl, batches, shards, tmp, {})
                report(f"end to end, cluster of {shards} shard(s): {shards} feed shard(s), "
                       f"master(s), indengine(s)", n, dt, "candles", "single process", base,
                       goal=goal)  # fmt: skip
                capacity[shards] = (n / dt, cpu_line(n, cpu, dt))
            finally:
                cl.stop()
        (r1, per_core), (r2, _) = capacity[1], capacity[2]
        print(
            f"   scaling: 2 shards {r2 / r1:.2f}x of 1 shard on {os.cpu_count()} CPUs shared "
            f"with other work; a shard needs {1e6 / per_core:.0f} µs of CPU per candle, so "
            f"100,000 candles/s needs ≈ {100_000 / per_core:.1f} cores (e.g. "
            f"{max(1, round(100_000 / per_core / 2))} shards of 2 cores: producer, master, "
            f"indengine each ≈ 0.7 core)",
            flush=True,
        )

        # the client for the cluster hot paths: redis-py's cluster pipeline vs the bridge's
        cl = Cluster(os.path.join(tmp, "client"), masters=2)
        try:
            items = [(tagged(k), eid.encode(), payload) for k, eid, payload in encoded]
            m = len(items)
            t_py = asyncio.run(redispy_publish(cl.url, items))
            cl.flush()
            t_link = asyncio.run(link_publish(cl.url, items))
            cl.flush()
            t_pub = asyncio.run(builder_publish(cl.url, items))
            report("publish XADD+SET+SPUBLISH: redis-py asyncio RedisCluster", m, t_py, "candles")
            report("publish: the bridge's routed pipeline (same commands)", m, t_link, "candles",
                   "redis-py", t_py)  # fmt: skip
            report("publish: StreamPublisher (cached prefixes, SET per key)", m, t_pub,
                   "candles", "redis-py", t_py)  # fmt: skip
            keys = sorted({k for k, _, _ in items})
            r = cl.client()
            for k in keys:
                r.xgroup_create(k, "g-py", id="0")
            t_py = asyncio.run(redispy_read(cl.url, keys, m))
            t_link = asyncio.run(link_read(cl.url, keys, m))
            report("read XREADGROUP per key + decode + XACK: redis-py", m, t_py, "candles")
            report("read: the bridge's GroupReader + routed XACKs", m, t_link, "candles",
                   "redis-py", t_py)  # fmt: skip
        finally:
            cl.stop()

        scenarios = [
            ("1,000 candles/s steady: 1 every 1 ms", 1, 0.001),
            ("10,000 candles/s steady: 10 every 1 ms", 10, 0.001),
            ("10,000 candles/s in bursts of 1,000 every 100 ms", TOKENS, 0.1),
        ]
        latency(server, False, tmp, scenarios)
        cl = Cluster(os.path.join(tmp, "latency"), masters=2)
        try:
            latency(cl, True, tmp, scenarios[:2])
        finally:
            cl.stop()
        if RT:
            _rt(0, *server.pids)  # this process, Redis, and the ones it starts from now on
            print("-- the same at real-time priority (SCHED_FIFO: as if on cores of its own)")
            latency(server, False, tmp, scenarios[:2])
            lean = {"MANDI_INDICATORS__STORE_VALUES": "false",
                    "MANDI_REDIS__INDICATOR_STREAMS": "false"}  # fmt: skip
            print("-- … with values only PUBLISHed and not stored in SQLite (the lean setting)")
            latency(server, False, tmp, scenarios[:2], lean)
            cl = Cluster(os.path.join(tmp, "latency-rt"), masters=2)
            try:
                _rt(*cl.pids)
                latency(cl, True, tmp, scenarios[:2])
            finally:
                cl.stop()
        failover(tmp)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
