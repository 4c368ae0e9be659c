"""A real ``redis-server`` for the distributed-mode tests, started on a free loopback port.

Import the fixtures into a test module (``from redis_server import redis_server``); tests are
skipped when ``redis-server`` is not installed (``make test`` installs it with apt-get).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from ports import free_port


class RedisServer:
    """One redis-server process: start, stop (SIGTERM), kill (SIGKILL), restart on the same
    port and data directory (so an AOF survives)."""

    def __init__(
        self, directory: Path, aof: bool = False, fsync: str = "everysec", port: int | None = None
    ) -> None:
        self.exe = shutil.which("redis-server")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.aof = aof
        self.fsync = fsync
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        assert self.exe, "redis-server not installed"
        cmd = [
            self.exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.aof else "no",
            "--appendfsync",
            self.fsync,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.02)
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
        raise RuntimeError("redis-server did not start")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self.proc = None

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def restart(self, down_s: float = 0.0) -> None:
        self.kill()
        time.sleep(down_s)
        self.start()


def _need_redis() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")


@pytest.fixture
def redis_server(tmp_path: Path):
    """A fresh redis-server (no persistence) on a free loopback port."""
    _need_redis()
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture
def redis_aof(tmp_path: Path):
    """A redis-server with AOF, fsync on every write: a SIGKILL loses nothing acknowledged."""
    _need_redis()
    server = RedisServer(tmp_path / "redis-aof", aof=True, fsync="always").start()
    yield server
    server.kill()


class ClusterServer:
    """A real Redis Cluster: ``masters`` × (1 + ``replicas``) ``redis-server --cluster-enabled
    yes`` processes on free loopback ports, formed by the product's own
    :func:`mandi.services.distributed.cluster.start_cluster` (what ``mandi up --shards N``
    runs)."""

    def __init__(
        self,
        directory: Path,
        masters: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 1000,
        aof: bool = False,
        fsync: str = "everysec",
    ) -> None:
        self.dir = directory
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.aof = aof
        self.fsync = fsync
        self.nodes: list = []

    def start(self) -> ClusterServer:
        from mandi.services.distributed.cluster import start_cluster

        self.nodes = start_cluster(
            self.dir,
            masters=self.masters,
            replicas=self.replicas,
            node_timeout_ms=self.node_timeout_ms,
            aof=self.aof,
            fsync=self.fsync,
            detach=False,
        )
        return self

    @property
    def url(self) -> str:
        from mandi.services.distributed.cluster import cluster_url

        return cluster_url("127.0.0.1", self.nodes)

    @staticmethod
    def key(topic: str) -> str:
        """The cluster key of a topic (the instrument token as a hash tag)."""
        from mandi.bus.redis import tagged

        return tagged(topic)

    def client(self) -> redis.RedisCluster:
        from redis.cluster import ClusterNode

        alive = [n for n in self.nodes if _alive(n.pid)]
        return redis.RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in alive], socket_timeout=10
        )

    def master_ports(self) -> list[int]:
        from mandi.services.distributed.cluster import masters_now

        return sorted(masters_now("127.0.0.1", self.nodes))

    def node_client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)

    def flush(self) -> None:
        for port in self.master_ports():
            self.node_client(port).flushall()

    def kill(self, port: int) -> None:
        """SIGKILL one node (a crash: a replica takes over a master's slots)."""
        import os

        (node,) = [n for n in self.nodes if n.port == port]
        os.kill(node.pid, signal.SIGKILL)
        while _alive(node.pid):
            time.sleep(0.01)

    def stop(self) -> None:
        import os

        for n in self.nodes:
            if _alive(n.pid):
                os.kill(n.pid, signal.SIGKILL)
        for n in self.nodes:
            while _alive(n.pid):
                time.sleep(0.01)


def _alive(pid: int) -> bool:
    from mandi.services.distributed.cluster import _alive as alive

    return alive(pid)


class SingleServer:
    """The single-Redis side of :func:`any_redis`: the same interface as :class:`ClusterServer`."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.url = server.url

    @staticmethod
    def key(topic: str) -> str:
        return topic

    def client(self) -> redis.Redis:
        return self.server.client()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """One 3-master Redis Cluster for the session (tests flush it: see :func:`cluster`)."""
    _need_redis()
    server = ClusterServer(tmp_path_factory.mktemp("cluster")).start()
    yield server
    server.stop()


@pytest.fixture
def cluster(redis_cluster):
    """The session's cluster, emptied."""
    redis_cluster.flush()
    return redis_cluster


@pytest.fixture(params=["single", "cluster"])
def any_redis(request, tmp_path):
    """The same test on one redis-server and on a 3-master cluster (keys hash-tagged there)."""
    _need_redis()
    if request.param == "single":
        server = RedisServer(tmp_path / "redis").start()
        yield SingleServer(server)
        server.kill()
    else:
        c = request.getfixturevalue("redis_cluster")
        c.flush()
        yield c
