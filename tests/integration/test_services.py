"""The distributed mode as processes: tickserver → mdengine-sim → indengine over a real Redis
gives exactly the single-process results; indengine SIGKILLed 20 times, or Redis restarted, during
a 100,000-candle replay loses and duplicates nothing; ``mandi up`` / ``ps`` / ``down``."""

from __future__ import annotations

import asyncio
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

import msgspec
import pytest
import redis
from redis_server import free_port, redis_aof, redis_server  # noqa: F401 - fixtures
from test_redis_bridge import as_rows, make_candles, reference, stored_values, topic

from mandi.bus.codec import codec
from mandi.bus.redis import RedisLink, StreamPublisher, stream_id

SMALL_SIM = {
    "MANDI_SIM__UNDERLYINGS": '["NIFTY"]',
    "MANDI_SIM__STOCKS": '["RELIANCE"]',
    "MANDI_SIM__STRIKES_EACH_SIDE": "2",
    # mandi run backfills earlier sessions before the feed (mandi.services.history); the
    # services do not, so the reference run compares without it
    "MANDI_HISTORY__SESSIONS": "0",
}
DATE, SEED = "2026-04-13", "7"
CUT_NS = 1_776_052_500 * 10**9 + 15 * 60 * 10**9  # 09:30 IST


def env(**extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith("MANDI_")}
    return {**e, **SMALL_SIM, **extra}


def mandi(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "mandi", *args], **kw)


def health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def backlog(r, tfs=(60, 120, 180, 300), group="indengine"):
    """(pending, lag) of a group over every registered candle stream of ``tfs``; lag counts the
    entries after the group's last-delivered ID (Redis's own lag is an estimate that an AOF
    reload can leave off)."""
    pending = lag = 0
    for tf in tfs:
        for key in r.smembers(f"streams:candle:{tf}s"):
            for g in r.xinfo_groups(key):
                if g["name"] == group.encode():
                    pending += g["pending"]
                    lag += len(r.xrange(key, b"(" + g["last-delivered-id"], "+"))
            if not any(g["name"] == group.encode() for g in r.xinfo_groups(key)):
                lag += r.xlen(key)
    return pending, lag


def ended_by(rows, cut, tf_col, bucket_col):
    return sorted(r for r in rows if r[bucket_col] + r[tf_col] * 10**9 <= cut)


def db_rows(db, sql):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_tickserver_mdengine_indengine_equal_the_single_process_run(redis_server, tmp_path):  # noqa: F811
    url = redis_server.url
    ws, m_md, m_ind = free_port(), free_port(), free_port()
    single, md_db, ind_db = (str(tmp_path / n) for n in ("single.db", "md.db", "ind.db"))
    common = ["--date", DATE, "--seed", SEED]
    log = open(tmp_path / "services.log", "wb")  # noqa: SIM115
    procs = []
    # 1 s candles in SQLite too (by default they stay in memory), so they are compared as well
    seconds = {"MANDI_STORE__SECOND_CANDLES": "sqlite"}
    # the single-process reference on the same seed first (the tickserver is a live source: a
    # starved client would be disconnected)
    ref = subprocess.run(
        [
            sys.executable,
            "-m",
            "mandi",
            "run",
            "--db",
            single,
            "--speed",
            "inf",
            "--until",
            "09:31",
            "--no-dashboard",
            "--status-interval",
            "0",
            *common,
        ],
        env=env(**seconds),
        capture_output=True,
        timeout=240,
    )
    assert ref.returncode == 0, ref.stderr.decode()[-2000:]
    try:
        procs.append(
            mandi(
                "service",
                "tickserver",
                "--ws-port",
                str(ws),
                "--port",
                "0",
                "--speed",
                "60",
                "--client-queue",  # a client starved by a loaded machine is not dropped
                "100000",
                *common,
                env=env(),
                stdout=log,
                stderr=log,
            )
        )
        ind = mandi(
            "service",
            "indengine",
            "--redis",
            url,
            "--db",
            ind_db,
            "--port",
            str(m_ind),
            env=env(),
            stdout=log,
            stderr=log,
        )
        procs.append(ind)
        wait_for(lambda: (health(m_ind) or {}).get("state") == "running", 60, "indengine")
        wait_for(lambda: _port_open(ws), 60, "the tickserver")
        md = mandi(
            "service",
            "mdengine-sim",
            "--redis",
            url,
            "--feed",
            f"ws://127.0.0.1:{ws}",
            "--db",
            md_db,
            "--port",
            str(m_md),
            "--until",
            "09:31",
            "--status-interval",
            "0",
            *common,
            env=env(**seconds),
            stdout=log,
            stderr=log,
        )
        procs.append(md)
        assert md.wait(timeout=120) == 0
        r = redis_server.client()
        wait_for(lambda: backlog(r) == (0, 0), 60, "indengine to drain its streams")
        ind.send_signal(signal.SIGTERM)
        assert ind.wait(timeout=30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        log.close()
    # (both add the timeframes the strategies follow, e.g. 900 s, to the pipeline's)
    q = "SELECT * FROM candles"
    a = ended_by(db_rows(single, q), CUT_NS, 2, 3)
    b = ended_by(db_rows(md_db, q), CUT_NS, 2, 3)
    assert len(a) > 10_000 and {r[2] for r in a} >= {1, 60, 120, 180, 300}
    assert a == b
    q = "SELECT * FROM indicator_values WHERE timeframe IN (60, 120, 180, 300)"
    a = ended_by(db_rows(single, q), CUT_NS, 2, 3)
    b = ended_by(db_rows(ind_db, q), CUT_NS, 2, 3)
    assert len(a) > 300 and {r[4] for r in a} >= {"SMA_9", "EMA_9", "RSI_14"}
    assert a == b
    # the Redis streams hold the same candles and values
    r = redis_server.client()
    in_redis = []
    for key in r.smembers("streams:candle:60s"):
        in_redis += [codec.decode(f[b"d"]) for _, f in r.xrange(key)]
    single_60 = [x for x in db_rows(single, "SELECT * FROM candles WHERE timeframe=60")]
    assert sorted(
        (
            c.token,
            c.exchange,
            c.timeframe,
            c.bucket,
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume,
            c.oi,
            c.ticks,
        )
        for c in in_redis
        if c.bucket + 60 * 10**9 <= CUT_NS
    ) == ended_by(single_60, CUT_NS, 2, 3)
    vals = []
    for key in r.smembers("streams:ind:60s"):
        vals += [codec.decode(f[b"d"]) for _, f in r.xrange(key)]
    assert sorted(as_rows(v for v in vals if v.bucket + 60 * 10**9 <= CUT_NS)) == [
        x for x in a if x[2] == 60
    ]


def _port_open(port):
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


# --- fault injection ------------------------------------------------------------------------------

TOKENS = list(range(1, 501))
BUCKETS = 200  # 500 series x 200 buckets = 100,000 candles


class Producer(threading.Thread):
    """Publishes the candles the way mdengine does (StreamPublisher), paced, surviving Redis
    restarts (it retries with backoff and buffers)."""

    def __init__(self, url, candles, per_second):
        super().__init__(daemon=True)
        self.url, self.candles, self.rate = url, candles, per_second
        self.error = None
        self.published = 0
        self.stats = None

    def run(self):
        try:
            asyncio.run(self._go())
        except Exception as e:
            self.error = e

    async def _go(self):
        link = RedisLink(self.url, "producer", backoff_initial=0.05, backoff_max=0.5)
        pub = StreamPublisher(link, retention_s=86_400)
        task = asyncio.create_task(pub.run())
        t0 = time.monotonic()
        step = len(TOKENS)
        for i in range(0, len(self.candles), step):
            for c in self.candles[i : i + step]:
                pub.confirmed(topic(c), stream_id(c.bucket), codec.encode(c))
            self.published = i + step
            delay = t0 + self.published / self.rate - time.monotonic()
            await asyncio.sleep(max(delay, 0))
        await pub.drained()
        self.stats = pub.stats
        task.cancel()


def _fault_env(url):
    return env(
        MANDI_INDICATORS__TIMEFRAMES="[60]",
        MANDI_REDIS__SNAPSHOT_INTERVAL_S="0.3",
        MANDI_REDIS__BLOCK_MS="100",
        MANDI_REDIS__RETENTION_S="86400",
        MANDI_REDIS__BACKOFF_MAX_S="0.5",
        MANDI_REDIS__URL=url,
    )


def _check_effectively_once(r, candles, db):
    expected = reference(candles)
    assert len(expected) > 500_000
    assert as_rows(expected) == stored_values(db)  # 0 lost, 0 duplicated, same values
    per_key = Counter(f"ind:{v.name}:60s:NSE:{v.token}" for v in expected)
    sample = random.Random(3).sample(sorted(per_key), 200)
    pipe = r.pipeline()
    for key in sample:
        pipe.xrange(key)
    for key, entries in zip(sample, pipe.execute(), strict=True):
        ids = [e[0] for e in entries]
        assert len(ids) == per_key[key] and len(set(ids)) == len(ids), key
    pipe = r.pipeline()
    for key in per_key:
        pipe.xlen(key)
    assert sum(pipe.execute()) == len(expected)
    pending = sum(r.xpending(f"candle:60s:NSE:{t}", "indengine")["pending"] for t in TOKENS)
    assert pending == 0  # the pending list is drained
    assert r.xlen("dlq:indengine") == 0


@pytest.mark.slow
def test_indengine_sigkilled_20_times_during_a_100k_candle_replay(redis_server, tmp_path):  # noqa: F811
    r = redis_server.client()
    candles = make_candles(TOKENS, BUCKETS, seed=11)
    assert len(candles) == 100_000
    producer = Producer(redis_server.url, candles, per_second=5_000)
    producer.start()
    db = str(tmp_path / "ind.db")
    rng = random.Random(2026)
    log = open(tmp_path / "indengine.log", "wb")  # noqa: SIM115
    kills = 0
    states = Counter()
    try:
        while kills < 20:
            port = free_port()
            p = mandi(
                "service",
                "indengine",
                "--db",
                db,
                "--port",
                str(port),
                env=_fault_env(redis_server.url),
                stdout=log,
                stderr=log,
            )
            try:
                wait_for(lambda port=port: health(port) is not None, 60, "indengine to start")
                time.sleep(rng.uniform(0.05, 0.8))
                states[(health(port) or {}).get("state")] += 1
            finally:
                p.send_signal(signal.SIGKILL)
                p.wait()
            kills += 1
        producer.join(120)
        assert producer.error is None and producer.published == len(candles)
        port = free_port()
        p = mandi(
            "service",
            "indengine",
            "--db",
            db,
            "--port",
            str(port),
            env=_fault_env(redis_server.url),
            stdout=log,
            stderr=log,
        )
        try:
            wait_for(
                lambda: (
                    backlog(r, (60,)) == (0, 0) and (health(port) or {}).get("state") == "running"
                ),
                120,
                "the final run",
            )
        finally:
            p.send_signal(signal.SIGTERM)
            assert p.wait(30) == 0
    finally:
        log.close()
    assert states["running"] + states["warming"] >= 10, states  # killed while working
    _check_effectively_once(r, candles, db)
    text = (tmp_path / "indengine.log").read_text()
    assert text.count("restored ind:snapshot:engine") >= 10  # warm starts, not cold replays


@pytest.mark.slow
def test_redis_restarted_twice_during_a_100k_candle_replay(redis_aof, tmp_path):  # noqa: F811
    r = redis_aof.client()
    candles = make_candles(TOKENS, BUCKETS, seed=12)
    producer = Producer(redis_aof.url, candles, per_second=12_000)
    producer.start()
    db = str(tmp_path / "ind.db")
    port = free_port()
    log = open(tmp_path / "indengine.log", "wb")  # noqa: SIM115
    p = mandi(
        "service",
        "indengine",
        "--db",
        db,
        "--port",
        str(port),
        env=_fault_env(redis_aof.url),
        stdout=log,
        stderr=log,
    )
    try:
        wait_for(lambda: (health(port) or {}).get("state") == "running", 60, "indengine")
        for _ in range(2):
            wait_for(
                lambda: len(stored_values_fast(db)) > 0 if os.path.exists(db) else False,
                60,
                "progress",
            )
            time.sleep(1.0)
            redis_aof.kill()  # a crash: only what the AOF holds survives
            wait_for(
                lambda: (health(port) or {}).get("state") in ("redis_down", "waiting_for_redis"),
                30,
                "indengine to notice",
            )
            time.sleep(0.5)
            redis_aof.start()
            wait_for(lambda: (health(port) or {}).get("state") == "running", 30, "recovery")
        producer.join(120)
        assert producer.error is None and producer.published == len(candles)
        r = redis_aof.client()
        wait_for(lambda: backlog(r, (60,)) == (0, 0), 120, "indengine to drain")
        time.sleep(0.3)
    finally:
        p.send_signal(signal.SIGTERM)
        code = p.wait(30)
        log.close()
    assert code == 0
    assert producer.stats.confirmed + producer.stats.duplicates >= len(candles)
    _check_effectively_once(r, candles, db)


def stored_values_fast(db):
    try:
        return db_rows(db, "SELECT 1 FROM indicator_values LIMIT 1")
    except sqlite3.OperationalError:
        return []


# --- mandi up / ps / down -------------------------------------------------------------------------


@pytest.mark.slow
def test_up_ps_down(tmp_path):
    if not __import__("shutil").which("redis-server"):
        pytest.skip("redis-server is not installed")
    state = tmp_path / "state"
    ports = {
        k: str(free_port())
        for k in (
            "TICKSERVER_PORT",
            "TICKSERVER_METRICS_PORT",
            "MDENGINE_SIM_PORT",
            "INDENGINE_PORT",
        )
    }
    e = env(
        **{f"MANDI_SERVICES__{k}": v for k, v in ports.items()},
        MANDI_SERVICES__REDIS_PORT="0",
        MANDI_SERVICES__STATE_DIR=str(state),
        MANDI_STORE__DB=str(tmp_path / "mandi.db"),
    )
    up = subprocess.run(
        [
            sys.executable,
            "-m",
            "mandi",
            "up",
            "--services",
            "tickserver,mdengine-sim,indengine",
            "--speed",
            "200",
            "--date",
            DATE,
            "--json",
        ],
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert up.returncode == 0, up.stderr
        rows = {x["service"]: x for x in json.loads(up.stdout)}
        assert set(rows) == {"redis", "tickserver", "mdengine-sim", "indengine"}
        assert all(x["alive"] for x in rows.values())
        assert rows["indengine"]["state"] in ("running", "warming", "waiting_for_redis")
        r = redis.Redis(port=rows["redis"]["port"])
        wait_for(lambda: r.scard("streams:candle:60s") > 0, 60, "candles in Redis")
        wait_for(lambda: r.scard("streams:ind:60s") > 0, 60, "indicators in Redis")
        assert r.config_get("appendonly")["appendonly"] == "yes"
        ps = subprocess.run(
            [sys.executable, "-m", "mandi", "ps", "--json"],
            env=e,
            capture_output=True,
            text=True,
            timeout=60,
        )
        states = {x["service"]: x["state"] for x in json.loads(ps.stdout)}
        assert states == {
            "redis": "running",
            "tickserver": "running",
            "mdengine-sim": "running",
            "indengine": "running",
        }
        again = subprocess.run(
            [sys.executable, "-m", "mandi", "up"], env=e, capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 2 and "already up" in again.stderr
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "mandi", "down"],
            env=e,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert down.returncode == 0, down.stderr
    assert "had to kill" not in down.stderr  # every service stopped on SIGTERM
    from mandi.services.distributed.supervisor import alive

    assert not any(alive(x["pid"]) for x in rows.values())
    assert (state / "redis" / "appendonlydir").exists()
    # the services' data is in the shared SQLite database
    assert db_rows(str(tmp_path / "mandi.db"), "SELECT count(*) FROM candles")[0][0] > 0


@pytest.mark.slow
def test_up_with_shards_starts_a_cluster_and_scaled_indengines_share_it(tmp_path):
    if not __import__("shutil").which("redis-server"):
        pytest.skip("redis-server is not installed")
    state = tmp_path / "state"
    e = env(
        MANDI_SERVICES__INDENGINE_PORT=str(free_port()),
        MANDI_SERVICES__REDIS_PORT="0",
        MANDI_SERVICES__STATE_DIR=str(state),
        MANDI_STORE__DB=str(tmp_path / "mandi.db"),
        MANDI_REDIS__LEASE_MS="1500",
    )
    up = subprocess.run(
        [sys.executable, "-m", "mandi", "up", "--shards", "2", "--replicas", "1",
         "--services", "indengine", "--scale", "indengine=2"],
        env=e, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.startswith("Redis Cluster: redis://127.0.0.1:")
        masters = [ln.split()[0] for ln in up.stdout.splitlines() if ln.endswith(" master")]
        assert len(masters) == 2 and sum(" replica of " in ln for ln in up.stdout.splitlines()) == 2
        dep = json.loads((state / "deployment.json").read_text())
        ports = {s["name"]: s["port"] for s in dep["services"]}
        assert set(ports) == {"indengine-1", "indengine-2"}

        def shares():
            got = [set((health(p) or {}).get("partitions", [])) for p in ports.values()]
            return all(got) and set.union(*got) == set(range(16)) and not set.intersection(*got)

        wait_for(shares, 60, "the two indengines to share the 16 partitions")
        ps = subprocess.run(
            [sys.executable, "-m", "mandi", "ps", "--json"],
            env=e, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        rows = {x["service"]: x for x in json.loads(ps.stdout)}
        nodes = [r for name, r in rows.items() if name.startswith("redis:")]
        assert len(nodes) == 4 and all(r["state"].startswith("running (") for r in nodes)
        assert sorted(r["role"] for r in nodes) == ["master", "master", "replica", "replica"]
        r = redis.RedisCluster(host="127.0.0.1", port=int(masters[0].split(":")[1]))
        assert r.get("lease:indengine:0") in (b"indengine-%s-%d" % (os.uname().nodename.encode(), i)
                                               for i in (1, 2))  # fmt: skip
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "mandi", "down"], env=e, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
    assert down.returncode == 0, down.stderr
    from mandi.services.distributed.supervisor import alive

    assert not any(alive(n["pid"]) for n in dep["cluster"])
    assert not any(alive(s["pid"]) for s in dep["services"])


_ = msgspec  # (kept for readers decoding entries by hand)
