"""A local Redis Cluster of real ``redis-server`` processes (``mandi up --shards N``, the tests).

:func:`start_cluster` starts ``masters`` × (1 + ``replicas``) ``redis-server --cluster-enabled
yes`` processes on free loopback ports (each with its cluster bus port, +10000, free too), gives
each master a contiguous range of hash slots — whole partitions
(:func:`~mandi.bus.redis.token_partition`), so one partition's instruments live on one master —
introduces the nodes to each other (``CLUSTER MEET``), attaches the replicas
(``CLUSTER REPLICATE``) and waits until every node says ``cluster_state:ok`` and every replica
is in sync. ``cluster-require-full-coverage no``: while a master fails over, the other masters
keep serving their slots.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mandi.bus.redis import (
    HASH_SLOTS,
    RedisCommandError,
    RedisTarget,
    RedisUnavailable,
    SyncRespConnection,
)
from mandi.core.errors import MandiError


class ClusterError(MandiError):
    """The local cluster could not be started or formed."""


@dataclass
class NodeProc:
    """One ``redis-server`` of a local cluster."""

    port: int
    pid: int
    role: str  # "master" | "replica"
    dir: str
    log: str
    cmd: list[str] = field(default_factory=list)
    replica_of: int = 0  # a replica's master port

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def cluster_ports(host: str, n: int, base: int = 0) -> list[int]:
    """``n`` ports free on ``host`` whose cluster bus ports (+10000) are free too: from ``base``
    upwards, or any free ones (``base`` = 0)."""
    out: list[int] = []
    port = base
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 5000:
            raise ClusterError(f"no {n} free port pairs (port, port+10000) on {host}")
        if base:
            port += 0 if tries == 1 else 1
        else:
            with socket.socket() as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
        if port in out or port + 10000 > 65535:
            continue
        if _port_free(host, port) and _port_free(host, port + 10000):
            out.append(port)
    return out


def slot_ranges(masters: int, partitions: int) -> list[tuple[int, int]]:
    """Contiguous slot ranges, one per master, on partition boundaries when there are at least
    as many partitions as masters (else an even split)."""
    if partitions >= masters:
        cuts = [i * partitions // masters * HASH_SLOTS // partitions for i in range(masters + 1)]
    else:
        cuts = [i * HASH_SLOTS // masters for i in range(masters + 1)]
    cuts[-1] = HASH_SLOTS
    return [(cuts[i], cuts[i + 1] - 1) for i in range(masters)]


def _call(host: str, port: int, *args: Any, timeout: float = 5.0) -> Any:
    con = SyncRespConnection(RedisTarget(host, port), timeout)
    try:
        return con.call(*args)
    finally:
        con.close()


def _wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except (RedisUnavailable, RedisCommandError) as e:
            last = e
        time.sleep(0.05)
    raise ClusterError(f"timed out waiting for {what}" + (f" ({last})" if last else ""))


def start_node(
    host: str,
    port: int,
    directory: Path,
    log_path: Path,
    *,
    aof: bool,
    fsync: str,
    node_timeout_ms: int,
    server: str = "redis-server",
    detach: bool = True,
) -> subprocess.Popen[bytes]:
    """One ``redis-server --cluster-enabled yes`` on ``host:port`` with its data in
    ``directory``; returns once it answers PING."""
    exe = shutil.which(server)
    if exe is None:
        raise ClusterError(
            f"{server} not found: install redis-server (apt-get install redis-server)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe,
        "--port", str(port),
        "--bind", host,
        "--dir", str(directory.resolve()),
        "--cluster-enabled", "yes",
        "--cluster-config-file", f"nodes-{port}.conf",
        "--cluster-node-timeout", str(node_timeout_ms),
        "--cluster-require-full-coverage", "no",
        "--cluster-replica-validity-factor", "0",  # a replica may always take over
        "--repl-diskless-sync-delay", "0",  # replicas sync at once (the default waits 5 s)
        "--appendonly", "yes" if aof else "no",
        "--appendfsync", fsync,
        "--save", "",
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--loglevel", "warning",
    ]  # fmt: skip
    with open(log_path, "ab") as logf:
        p = subprocess.Popen(
            cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=detach,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if _call(host, port, "PING", timeout=0.5) == b"PONG":
                return p
        except (RedisUnavailable, RedisCommandError):
            pass
        if p.poll() is not None:
            raise ClusterError(f"redis-server exited with {p.returncode}; see {log_path}")
        time.sleep(0.03)
    p.kill()
    raise ClusterError(f"redis-server did not answer on {host}:{port}; see {log_path}")


def node_id(host: str, port: int) -> str:
    return str(_call(host, port, "CLUSTER", "MYID").decode())


def cluster_ok(host: str, port: int) -> bool:
    info = _call(host, port, "CLUSTER", "INFO").decode()
    return "cluster_state:ok" in info


def start_cluster(
    state_dir: str | Path,
    host: str = "127.0.0.1",
    masters: int = 3,
    replicas: int = 0,
    *,
    base_port: int = 0,
    partitions: int = 16,
    node_timeout_ms: int = 2000,
    aof: bool = True,
    fsync: str = "everysec",
    server: str = "redis-server",
    detach: bool = True,
    timeout: float = 60.0,
) -> list[NodeProc]:
    """Start and form a local cluster (see the module documentation); returns its nodes,
    masters first. On failure every process started is killed."""
    if masters < 1 or replicas < 0:
        raise ClusterError(f"a cluster needs at least 1 master (got {masters}, {replicas})")
    total = masters * (1 + replicas)
    ports = cluster_ports(host, total, base_port)
    root = Path(state_dir)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    nodes: list[NodeProc] = []
    try:
        for i, port in enumerate(ports):
            role = "master" if i < masters else "replica"
            d = root / f"redis-{port}"
            log_path = root / "logs" / f"redis-{port}.log"
            p = start_node(
                host, port, d, log_path, aof=aof, fsync=fsync,
                node_timeout_ms=node_timeout_ms, server=server, detach=detach,
            )  # fmt: skip
            procs.append(p)
            nodes.append(
                NodeProc(port, p.pid, role, str(d), str(log_path), list(map(str, p.args)))  # type: ignore[arg-type]
            )
        form_cluster(host, nodes, masters, partitions, timeout)
    except BaseException:
        for p in procs:
            p.kill()
            p.wait()
        raise
    return nodes


def form_cluster(
    host: str, nodes: list[NodeProc], masters: int, partitions: int, timeout: float = 60.0
) -> None:
    """Slots, MEET, replicas and the wait for ``cluster_state:ok`` (see the module doc)."""
    master_nodes = nodes[:masters]
    for node, (lo, hi) in zip(master_nodes, slot_ranges(masters, partitions), strict=True):
        _call(host, node.port, "CLUSTER", "ADDSLOTSRANGE", lo, hi)
    first = nodes[0].port
    for node in nodes[1:]:
        _call(host, node.port, "CLUSTER", "MEET", host, first)

    def everybody_known() -> bool:
        for node in nodes:
            table = _call(host, node.port, "CLUSTER", "NODES").decode().strip().splitlines()
            if len(table) < len(nodes) or any("handshake" in row for row in table):
                return False
        return True

    _wait(everybody_known, timeout, "the cluster's nodes to meet")
    ids = {n.port: node_id(host, n.port) for n in master_nodes}
    replicas = nodes[masters:]
    for i, node in enumerate(replicas):
        master = master_nodes[i % masters]
        node.replica_of = master.port

        def attached(node: NodeProc = node, master: NodeProc = master) -> bool:
            try:
                _call(host, node.port, "CLUSTER", "REPLICATE", ids[master.port])
            except RedisCommandError:
                return False  # the master's id has not reached this node yet
            return True

        _wait(attached, timeout, f"replica {node.port} of {master.port}")
    _wait(lambda: all(cluster_ok(host, n.port) for n in nodes), timeout, "cluster_state:ok")

    def in_sync() -> bool:
        for node in replicas:
            info = _call(host, node.port, "INFO", "replication").decode()
            if "master_link_status:up" not in info:
                return False
        return True

    _wait(in_sync, timeout, "the replicas to sync")


def cluster_url(host: str, nodes: list[NodeProc]) -> str:
    """``redis://host:p1,host:p2,.../0`` naming the masters (any node would do as a seed)."""
    return "redis://" + ",".join(f"{host}:{n.port}" for n in nodes if n.role == "master") + "/0"


def masters_now(host: str, nodes: list[NodeProc]) -> dict[int, tuple[int, int]]:
    """``{master port: (first slot, last slot)}`` as the live nodes see it now (after a
    fail-over a former replica owns its master's slots)."""
    for n in nodes:
        try:
            reply = _call(host, n.port, "CLUSTER", "SLOTS", timeout=1.0)
        except (RedisUnavailable, RedisCommandError):
            continue
        return {int(r[2][1]): (int(r[0]), int(r[1])) for r in reply}
    raise ClusterError("no node of the cluster answers")


def stop_nodes(nodes: list[NodeProc], timeout: float = 20.0) -> list[int]:
    """SIGTERM every node (each flushes its AOF), SIGKILL after ``timeout``; returns the ports
    that had to be killed."""
    for n in nodes:
        _signal(n.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed = []
    for n in nodes:
        while _alive(n.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(n.pid):
            _signal(n.pid, signal.SIGKILL)
            killed.append(n.port)
    return killed


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
