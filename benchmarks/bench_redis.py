"""Distributed mode: candles/s through mdengine → Redis → indengine, and tick → indicator latency.

Everything runs on this machine in the same run, against a redis-server this script starts on a
free loopback port (no persistence):

* **baseline** — the single process (``mandi run``'s path): the same synthetic ticks through
  ``FastCandlePipeline`` and the ``IndicatorEngine`` on one in-process bus, values upserted
  into SQLite;
* **publish** — mdengine's side alone: ticks → ``FastCandlePipeline`` → ``StreamPublisher``
  (XADD + PUBLISH per candle and one SET per key, one MULTI/EXEC per batch), flat out;
* **transport** — candles through the bus: publisher → Redis → a consumer-group reader that
  decodes and acknowledges (XREADGROUP + XACK), in two processes, flat out;
* **end to end** — ticks → mdengine's path → Redis → the real ``mandi service indengine``
  (process, SQLite commit, values XADD + SET + PUBLISH, XACK), flat out, until drained; once with
  the seed's per-value indicator streams and once with ``redis.indicator_streams = false``
  (values PUBLISHed only);
* **latency** — ticks paced so indengine receives 10,000 candles/s (1,000 instruments, ten
  60 s buckets per wall second); latency is from the start of handling the batch of ticks
  holding the tick that confirms a candle (as mdengine hands a feed batch to the pipeline) to a
  subscriber receiving that candle's first indicator value on ``pub:ind:SMA_9:60s:*``, in
  another process (so it includes two Pub/Sub hops' worth of Python). The single-process
  baseline is the same tick → value path on one bus.

Each tick makes a 1 s candle as well (mdengine publishes those too; indengine does not read
them): the "candles/s" figures count the 60 s candles indengine consumes.
"""

from __future__ import annotations

import asyncio
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

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import report
from mandi.bus.codec import codec
from mandi.bus.memory import MessageBus
from mandi.bus.redis import GroupReader, RedisLink, StreamPublisher, discover, stream_id
from mandi.core.clock import TestClock
from mandi.indicators import IndicatorEngine
from mandi.model.market import Candle, Tick
from mandi.pipeline.fast import FastCandlePipeline
from mandi.services.indicators import VALUE_SQL
from mandi.stores.sqlite import connect

T0 = 1_776_052_500 * 10**9  # 2026-04-13 09:15 IST
NS = 10**9
TOKENS = 1000
QUICK = os.environ.get("MANDI_BENCH_QUICK") == "1"
BUCKETS = 60 if QUICK else 150  # flat-out runs: TOKENS x BUCKETS 60 s candles
LAT_SECONDS = 6 if QUICK else 20  # paced latency run


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    def __init__(self, directory: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                directory,
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(10).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), 5) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(10)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


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
    url: str, batches: list[list[Tick]], pace_s: float = 0.0, marks: dict[int, int] | None = None
) -> tuple[float, StreamPublisher]:
    """Ticks → FastCandlePipeline (mdengine's default engine, fed batches as mdengine feeds
    it) → StreamPublisher; ``marks[bucket]`` = the monotonic ns at which the batch holding the
    tick that confirms that bucket began to be handled."""
    link = RedisLink(url, "bench.mdengine")
    pub = StreamPublisher(link, retention_s=86_400, retention_1s_s=600)
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


def _candle(token: int, b: int) -> Candle:
    p = 2_000_000 + 100 * token + 5 * (b % 7)
    return Candle(token, "NSE", 60, T0 + b * 60 * NS, p, p + 50, p - 50, p + 5, 100, 0, 3, True)


async def publish_encoded(url: str, items: list[tuple[str, str, bytes]]) -> None:
    """Pre-encoded candles → StreamPublisher (XADD + SET + PUBLISH, MULTI/EXEC batches)."""
    link = RedisLink(url, "bench.publisher")
    pub = StreamPublisher(link, retention_s=86_400)
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
                cmds = reader.ack_packet(acks)
                await link.request(b"".join(cmds), len(cmds))
            got += len(entries)
        return time.perf_counter() - (t0 or time.perf_counter())

    out.put(asyncio.run(go()))


def _listen(url: str, seconds: float, out: mp.Queue) -> None:
    """Receive ``pub:ind:SMA_9:60s:*``; report (bucket, monotonic ns) of the first value of
    every bucket's candles (one sample per candle)."""
    import redis

    port = int(url.split(":")[2].split("/")[0])
    r = redis.Redis(port=port)
    ps = r.pubsub()
    ps.psubscribe("pub:ind:SMA_9:60s:*")
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + seconds
    ready = False
    while time.monotonic() < deadline:
        m = ps.get_message(timeout=0.2)
        if m is None:
            continue
        if m["type"] == "psubscribe":
            if not ready:
                out.put("ready")
                ready = True
            continue
        now = time.monotonic_ns()
        v = codec.decode(m["data"])
        if v.confirmed:
            got.append((v.bucket, now))
    out.put(got)


def _wait_http(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if json.loads(r.read())["state"] == "running":
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("indengine did not become ready")


def start_indengine(
    url: str, db: str, extra: dict[str, str] | None = None
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
        [
            sys.executable,
            "-m",
            "mandi",
            "service",
            "indengine",
            "--redis",
            url,
            "--db",
            db,
            "--port",
            str(port),
            "--log-level",
            "WARNING",
        ],
        env=env,
    )
    _wait_http(port)
    return p, port


def drained(url: str, expect_keys: int) -> bool:
    import redis

    port = int(url.split(":")[2].split("/")[0])
    r = redis.Redis(port=port)
    keys = list(r.smembers("streams:candle:60s"))
    if len(keys) < expect_keys:
        return False
    pipe = r.pipeline()
    for k in keys:
        pipe.xinfo_groups(k)
    for groups in pipe.execute():
        g = [x for x in groups if x["name"] == b"indengine"]
        if not g or g[0]["pending"] or (g[0]["lag"] or 0):
            return False
    return True


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


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
        base = baseline_throughput(batches, os.path.join(tmp, "single.db"))
        report("single process: ticks → candles → indicators → SQLite", n, base, "candles")

        dt, pub = asyncio.run(produce(server.url, batches))
        report(
            "mdengine path: ticks → candles → Redis (XADD+SET+PUBLISH)",
            n,
            dt,
            "candles",
            "single process",
            base,
            goal=">= 100,000 candles/s through the bus",
        )
        assert pub.stats.confirmed >= 2 * n - TOKENS, pub.stats

        server.flush()
        q0: mp.Queue = mp.get_context("fork").Queue()
        c = mp.get_context("fork").Process(target=_consume, args=(server.url, n, q0))
        c.start()
        encoded = [
            (f"candle:60s:NSE:{t}", stream_id(T0 + b * 60 * NS), codec.encode(candle))
            for b in range(BUCKETS)
            for t, candle in ((t, _candle(t, b)) for t in range(1, TOKENS + 1))
        ]
        t0 = time.perf_counter()
        asyncio.run(publish_encoded(server.url, encoded))
        c.join(300)
        dt = time.perf_counter() - t0
        report(
            "bus only: candles → Redis → XREADGROUP + decode + XACK",
            n,
            dt,
            "candles",
            "single process",
            base,
            goal=">= 100,000 candles/s through the bus",
        )

        server.flush()
        q: mp.Queue = mp.get_context("fork").Queue()
        c = mp.get_context("fork").Process(target=_consume, args=(server.url, n, q))
        c.start()
        t0 = time.perf_counter()
        asyncio.run(produce(server.url, batches))
        c.join(300)
        dt = time.perf_counter() - t0
        report(
            "bus transport: publish → Redis → XREADGROUP + decode + XACK",
            n,
            dt,
            "candles",
            "single process",
            base,
            goal=">= 100,000 candles/s through the bus",
        )

        for label, extra in (
            ("seed's per-value streams", {}),
            ("values PUBLISH only", {"MANDI_REDIS__INDICATOR_STREAMS": "false"}),
        ):
            server.flush()
            db = os.path.join(tmp, f"ind-{len(label)}.db")
            p, _ = start_indengine(server.url, db, extra)
            try:
                t0 = time.perf_counter()
                asyncio.run(produce(server.url, batches))
                while not drained(server.url, TOKENS):
                    time.sleep(0.05)
                dt = time.perf_counter() - t0
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(60)
            report(f"end to end via indengine ({label})", n, dt, "candles", "single process", base)
            con = sqlite3.connect(db)
            stored = con.execute("SELECT count(*) FROM indicator_values").fetchone()[0]
            con.close()
            assert stored > n * 3, stored

        # latency at 10,000 candles/s: bursts as a market makes them (every instrument's bucket
        # closes at once: 1,000 candles every 100 ms) and a steady flow (10 every millisecond)
        for label, tokens, pace in (
            ("10,000 candles/s in bursts of 1,000 every 100 ms", TOKENS, 0.1),
            ("10,000 candles/s steady: 10 every 1 ms", 10, 0.001),
            ("1,000 candles/s steady: 1 every 1 ms", 1, 0.001),
        ):
            server.flush()
            nb = int(LAT_SECONDS / pace)
            warm = 3  # buckets sent (and drained) first: stream discovery is not measured
            lat_batches = all_ticks(nb + warm, seed=9, tokens=tokens)
            base_lat = baseline_latency(lat_batches[warm:])
            p, _ = start_indengine(server.url, os.path.join(tmp, f"lat{tokens}.db"))
            try:
                asyncio.run(produce(server.url, lat_batches[:warm]))
                deadline = time.monotonic() + 60
                while not drained(server.url, tokens) and time.monotonic() < deadline:
                    time.sleep(0.05)
                lat_batches = lat_batches[warm:]
                q = mp.get_context("fork").Queue()
                lst = mp.get_context("fork").Process(
                    target=_listen, args=(server.url, LAT_SECONDS + 10, q)
                )
                lst.start()
                assert q.get(timeout=30) == "ready"
                marks: dict[int, int] = {}
                asyncio.run(produce(server.url, lat_batches, pace_s=pace, marks=marks))
                got = q.get(timeout=LAT_SECONDS + 60)
                lst.join(30)
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(60)
            per_candle = [(now - marks[b]) / 1e6 for b, now in got if b in marks]
            print(
                f"-- latency at {label}, tick → indicator value received "
                f"by a subscriber, ms ({len(per_candle):,} candles)"
            )
            for name, xs in (
                ("single process (in-process bus)", base_lat),
                ("distributed (mdengine → Redis → indengine → Pub/Sub)", per_candle),
            ):
                print(
                    f"   {name:<55} p50 {pct(xs, 50):8.3f}  p99 {pct(xs, 99):8.3f}  "
                    f"p99.9 {pct(xs, 99.9):8.3f}  max {max(xs):8.3f}",
                    flush=True,
                )
            print("   [goal: p99 <= 2 ms, p99.9 <= 5 ms]", flush=True)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
