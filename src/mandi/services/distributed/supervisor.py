"""``mandi up`` / ``mandi down`` / ``mandi ps``: a whole local deployment as child processes.

``up`` starts (unless ``--redis URL`` names one) a local ``redis-server`` on loopback with AOF
persistence in ``{state_dir}/redis`` — or, with ``--shards N``, a local Redis Cluster of N
masters (``--replicas R`` each; :mod:`.cluster`) — then each service as ``mandi service NAME``
(``--scale indengine=2``: two indengines sharing the partitions; ``--scale mdengine-sim=2``:
two feed shards) in its own
session (so it outlives the command and a terminal's Ctrl-C), with its log in
``{state_dir}/logs/NAME.log`` and its PID in ``{state_dir}/run/NAME.pid``; the deployment is
described in ``{state_dir}/deployment.json``. It waits until every service answers ``/health``
and prints the state of each. ``down`` stops the services in reverse start order (SIGTERM:
each commits and acknowledges what it has, then exits; SIGKILL after
``services.stop_timeout_s``), then the Redis it started (SIGTERM: Redis flushes its AOF).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mandi.config import AppConfig
from mandi.core.errors import MandiError
from mandi.services.distributed import SERVICES
from mandi.services.distributed.cluster import (
    ClusterError,
    NodeProc,
    cluster_url,
    start_cluster,
    stop_nodes,
)


class SupervisorError(MandiError):
    """The local deployment cannot be started or stopped as asked."""


@dataclass
class Proc:
    name: str
    pid: int
    port: int  # metrics/health port (redis: its port)
    log: str
    cmd: list[str] = field(default_factory=list)


@dataclass
class Deployment:
    state_dir: str
    redis_url: str
    redis: Proc | None
    services: list[Proc]
    started: float
    cluster: list[NodeProc] = field(default_factory=list)  # --shards: the cluster's nodes

    def save(self) -> None:
        Path(self.state_dir, "deployment.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_dir: str) -> Deployment | None:
        p = Path(state_dir, "deployment.json")
        if not p.exists():
            return None
        d = json.loads(p.read_text())
        return cls(
            d["state_dir"],
            d["redis_url"],
            Proc(**d["redis"]) if d["redis"] else None,
            [Proc(**s) for s in d["services"]],
            d["started"],
            [NodeProc(**n) for n in d.get("cluster", [])],
        )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def health(host: str, port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=timeout) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def _ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), 0.5) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(
    state_dir: str, host: str, port: int, server: str = "redis-server"
) -> tuple[Proc, str]:
    """A local redis-server with AOF in ``{state_dir}/redis``; returns (process, URL)."""
    exe = shutil.which(server)
    if exe is None:
        raise SupervisorError(
            f"{server} not found: install redis-server (apt-get install "
            "redis-server) or pass --redis URL"
        )
    if port == 0 or not port_free(host, port):
        port = free_port(host)
    d = Path(state_dir, "redis")
    d.mkdir(parents=True, exist_ok=True)
    log_path = str(Path(state_dir, "logs", "redis.log"))
    cmd = [
        exe,
        "--port",
        str(port),
        "--bind",
        host,
        "--dir",
        str(d.resolve()),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
    ]
    with open(log_path, "ab") as logf:
        p = subprocess.Popen(
            cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _ping(host, port):
            break
        if p.poll() is not None:
            raise SupervisorError(f"redis-server exited with {p.returncode}; see {log_path}")
        time.sleep(0.05)
    else:
        p.kill()
        raise SupervisorError(f"redis-server did not answer on {host}:{port}; see {log_path}")
    return Proc("redis", p.pid, port, log_path, cmd), f"redis://{host}:{port}/0"


def service_port(cfg: AppConfig, name: str) -> int:
    return int(getattr(cfg.services, SERVICES[name]))


SCALABLE = ("indengine", "mdengine", "mdengine-sim")  # strategy: one per portfolio


def up(
    cfg: AppConfig,
    redis_url: str | None,
    services: list[str],
    config_path: str | None,
    extra: dict[str, list[str]] | None = None,
    wait_s: float = 60.0,
    env: dict[str, str] | None = None,
    shards: int = 0,
    replicas: int = 0,
    scale: dict[str, int] | None = None,
) -> Deployment:
    """Start the deployment (see the module documentation); returns it once every service
    answers ``/health`` (or ``wait_s`` passed). ``shards`` > 0: a local Redis Cluster of that
    many masters with ``replicas`` each instead of one redis-server; ``scale``: copies of a
    service (indengines share the partitions, mdengine copies are feed shards)."""
    sc = cfg.services
    state_dir = os.path.abspath(sc.state_dir)
    old = Deployment.load(state_dir)
    if old is not None and any(alive(p.pid) for p in old.services):
        raise SupervisorError(f"a deployment is already up in {state_dir} (mandi ps; mandi down)")
    for sub in ("logs", "run"):
        Path(state_dir, sub).mkdir(parents=True, exist_ok=True)
    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        raise SupervisorError(
            f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}"
        )
    scale = dict(scale or {})
    bad = [n for n, k in scale.items() if n not in SCALABLE or k < 1]
    if bad:
        raise SupervisorError(
            f"--scale {', '.join(bad)}: only {', '.join(SCALABLE)} scale, to 1 or more copies"
        )
    if redis_url is not None and shards:
        raise SupervisorError("--shards starts a local cluster: leave out --redis")
    redis_proc = None
    nodes: list[NodeProc] = []
    extra_env: dict[str, str] = {}
    if redis_url is None and shards:
        try:
            nodes = start_cluster(
                Path(state_dir, "redis"),
                sc.host,
                shards,
                replicas,
                base_port=sc.redis_port,
                partitions=cfg.redis.partitions,
                node_timeout_ms=sc.cluster_node_timeout_ms,
                server=sc.redis_server,
            )
        except ClusterError as e:
            raise SupervisorError(str(e)) from None
        redis_url = cluster_url(sc.host, nodes)
        if replicas and "MANDI_REDIS__WAIT_REPLICAS" not in os.environ:
            extra_env["MANDI_REDIS__WAIT_REPLICAS"] = "1"  # fail-over loses nothing
    elif redis_url is None:
        redis_proc, redis_url = start_redis(state_dir, sc.host, sc.redis_port, sc.redis_server)
    dep = Deployment(state_dir, redis_url, redis_proc, [], time.time(), nodes)
    dep.save()
    base_env = {**os.environ, **(env or {}), **extra_env, "MANDI_REDIS_URL": redis_url}
    host = socket.gethostname()
    for name in services:
        copies = scale.get(name, 1)
        for k in range(copies):
            label = name if copies == 1 else f"{name}-{k + 1}"
            port = service_port(cfg, name) if k == 0 else free_port(sc.host)
            cmd = [sys.executable, "-m", "mandi", "service", name, "--redis", redis_url]
            if config_path:
                cmd += ["--config", config_path]
            if name == "mdengine-sim" and "tickserver" in services:
                cmd += ["--feed", f"ws://{sc.host}:{sc.tickserver_port}"]
            cmd += (extra or {}).get(name, [])
            if copies > 1:
                cmd += ["--port", str(port)]
                if name.startswith("mdengine"):  # feed shards, each with its own database
                    db = Path(cfg.store.db)
                    cmd += ["--shard", f"{k}/{copies}", "--db", str(db.with_stem(f"{db.stem}-{k}"))]
                else:
                    cmd += ["--consumer", f"{name}-{host}-{k + 1}"]
            log_path = str(Path(state_dir, "logs", f"{label}.log"))
            with open(log_path, "ab") as logf:
                p = subprocess.Popen(
                    cmd,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=base_env,
                )
            Path(state_dir, "run", f"{label}.pid").write_text(str(p.pid))
            dep.services.append(Proc(label, p.pid, port, log_path, cmd))
            dep.save()
            if name == "tickserver":  # mdengine-sim connects to it: wait for its port
                _wait_port(sc.host, sc.tickserver_port, 20, p)
    deadline = time.monotonic() + wait_s
    for s in dep.services:
        while time.monotonic() < deadline and alive(s.pid):
            if health(sc.host, s.port, 0.5) is not None:
                break
            time.sleep(0.1)
    return dep


def _wait_port(host: str, port: int, timeout: float, p: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)


def status(cfg: AppConfig) -> list[dict[str, Any]]:
    """One row per process of the deployment: name, pid, alive, port, state."""
    dep = Deployment.load(os.path.abspath(cfg.services.state_dir))
    if dep is None:
        return []
    rows = []
    for n in dep.cluster:
        rows.append(
            {
                "service": f"redis:{n.port}",
                "pid": n.pid,
                "alive": alive(n.pid),
                "port": n.port,
                "state": _node_state(cfg.services.host, n.port) if alive(n.pid) else "exited",
                "role": n.role,
                "url": f"redis://{cfg.services.host}:{n.port}",
            }
        )
    if dep.redis is not None:
        rows.append(
            {
                "service": "redis",
                "pid": dep.redis.pid,
                "alive": alive(dep.redis.pid),
                "port": dep.redis.port,
                "state": "running" if _ping(cfg.services.host, dep.redis.port) else "down",
                "url": dep.redis_url,
            }
        )
    for s in dep.services:
        h = health(cfg.services.host, s.port, 3.0) if alive(s.pid) else None
        rows.append(
            {
                "service": s.name,
                "pid": s.pid,
                "alive": alive(s.pid),
                "port": s.port,
                "state": (h or {}).get("state", "exited" if not alive(s.pid) else "?"),
                "ready": (h or {}).get("ready", False),
                "log": s.log,
            }
        )
    return rows


def _node_state(host: str, port: int) -> str:
    """A cluster node as ``mandi ps`` shows it: its role and whether the cluster is ok."""
    from mandi.bus.redis import RedisCommandError, RedisTarget, RedisUnavailable, SyncRespConnection

    try:
        con = SyncRespConnection(RedisTarget(host, port), 1.0)
        try:
            role = con.call("ROLE")[0].decode().replace("slave", "replica")
            ok = b"cluster_state:ok" in con.call("CLUSTER", "INFO")
        finally:
            con.close()
    except (RedisUnavailable, RedisCommandError):
        return "down"
    return f"{'running' if ok else 'cluster_down'} ({role})"


def _stop(pids: list[int], timeout: float) -> list[int]:
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    killed = []
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


def down(cfg: AppConfig) -> list[str]:
    """Stop the deployment gracefully; return what had to be killed."""
    state_dir = os.path.abspath(cfg.services.state_dir)
    dep = Deployment.load(state_dir)
    if dep is None:
        return []
    killed: list[str] = []
    # consumers first, producers last: nothing depends on the order for correctness (what is
    # not acknowledged is delivered again), but a feed is not torn down under a live client
    for s in reversed(dep.services):
        if alive(s.pid) and _stop([s.pid], cfg.services.stop_timeout_s):
            killed.append(s.name)
        Path(state_dir, "run", f"{s.name}.pid").unlink(missing_ok=True)
    if dep.redis is not None and alive(dep.redis.pid) and _stop([dep.redis.pid], 20.0):
        killed.append("redis")
    killed += [f"redis:{port}" for port in stop_nodes(dep.cluster)]
    Path(state_dir, "deployment.json").rename(Path(state_dir, "deployment.stopped.json"))
    return killed
