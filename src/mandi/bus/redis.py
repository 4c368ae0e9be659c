"""The Redis bridge: the in-process bus's messages on Redis Streams and Pub/Sub (shell code).

Keys are the bus topics themselves (the seed's names, see :mod:`mandi.bus.memory`):

=============================================  =====================================================
``candle:{tf}s:{exchange}:{token}``            stream of confirmed candles, ``MAXLEN ~`` ≈ 3 h
``candle:{tf}s:latest:{exchange}:{token}``     the latest confirmed candle, 30 min TTL
``pub:candle:{tf}s:{exchange}:{token}``        Pub/Sub: confirmed *and* forming candles
``ind:{name}:{tf}s:{exchange}:{token}``        stream of confirmed indicator values
``ind:{name}:{tf}s:latest:{exchange}:{token}`` the latest value, 30 min TTL
``pub:ind:{name}:{tf}s:{exchange}:{token}``    Pub/Sub: confirmed values and previews
``ind:snapshot:engine``                        the indicator engine snapshot (+ stream IDs)
``streams:{family}:{tf}s``                     SET of the stream keys of a family (discovery)
``dlq:{group}``                                dead-letter stream of a consumer group
=============================================  =====================================================

**Redis Cluster.** The same code runs on one Redis or on a Redis Cluster (``redis.url`` naming
one or more of its nodes: ``redis://h1:7000,h2:7001/0``; a cluster is recognised at connect).
On a cluster every per-instrument key carries its token as a hash tag —
``candle:60s:NSE:{256265}``, ``candle:60s:latest:NSE:{256265}``, ``ind:SMA_9:60s:NSE:{256265}``
— so everything of one instrument (its candles, values, latest keys and the acknowledgement of
its candles) lives in one slot, on one master; its live channels are *sharded* Pub/Sub
(``SPUBLISH pub:candle:60s:NSE:{256265}``): a plain PUBLISH is copied to every node of a
cluster. On a single Redis the key names are unchanged (no braces).

Every stream entry has one field ``d``: the message encoded by the one codec
(:data:`mandi.bus.codec.codec`, msgpack). Confirmed results go XADD + SET + PUBLISH, forming
results are PUBLISHed only. A batch is one pipeline per node, in order; nothing needs a
transaction across instruments (see *Delivery* in ``docs/distributed.md``).

**Idempotent streams.** A bucketed message (candle, indicator value) is added with an explicit
stream ID derived from its bucket (``{bucket_ms}-0``); Redis refuses an ID not above the stream's
top, so re-publishing after a restart, a retry or a fail-over never duplicates an entry — the
refusal is counted (``duplicates``), not an error. Together with consumer groups that acknowledge
only after their own output is written this gives effectively-once results. With
``wait_replicas`` a write counts only once that many replicas hold it (``WAIT``), so a master
that dies before replicating loses nothing: the batch is written again to the replica that took
over.

The hot paths (publishing batches, XREADGROUP, commit + XACK) speak RESP directly over one
socket per node and role with the ``hiredis`` parser, building packets from cached byte
prefixes and routing them with the cluster's slot map: redis-py's cluster client costs several
times more per command (``benchmarks/bench_redis.py`` measures both); redis-py serves the
blocking helpers (:func:`sync_client`).
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import itertools
import logging
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import hiredis

from mandi.core.errors import BusError

log = logging.getLogger(__name__)

DATA_FIELD = b"d"
TRANSIENT = ("LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
ID_NOT_NEWER = "equal or smaller than the target stream top item"
HASH_SLOTS = 16384
TOPOLOGY_REFRESH_S = 5.0  # a cluster's replicas are looked up again this often (wait_replicas)
_TF_RE = re.compile(r"^(\d+)s$")
_ReplyError = hiredis.ReplyError


# --- key names ------------------------------------------------------------------------------------


def latest_key(key: str) -> str:
    """``candle:60s:NSE:256265`` → ``candle:60s:latest:NSE:256265`` (``latest`` goes before the
    exchange segment; ``ind:SMA_9:60s:NSE:1`` → ``ind:SMA_9:60s:latest:NSE:1``; a tagged
    ``…:NSE:{1}`` keeps its tag)."""
    parts = key.split(":")
    return ":".join([*parts[:-2], "latest", *parts[-2:]])


def pub_channel(key: str) -> str:
    """The Pub/Sub channel of a stream key: ``pub:`` + the key."""
    return "pub:" + key


def stream_id(bucket_ns: int) -> str:
    """The explicit stream ID of a bucketed message: ``{bucket in ms}-0``."""
    return f"{bucket_ns // 1_000_000}-0"


def timeframe_of(key: str) -> int | None:
    """The timeframe (seconds) named by a key's ``{tf}s`` segment, else None."""
    for seg in key.split(":"):
        m = _TF_RE.match(seg)
        if m:
            return int(m.group(1))
    return None


def registry_key(key: str) -> str:
    """The discovery SET a stream key is registered in: ``streams:candle:60s``,
    ``streams:ind:60s`` (``streams:{first segment}`` for keys without a timeframe)."""
    tf = timeframe_of(key)
    family = key.split(":", 1)[0]
    return f"streams:{family}:{tf}s" if tf is not None else f"streams:{family}"


def stream_maxlen(key: str, retention_s: int, floor: int = 32) -> int:
    """``MAXLEN ~`` of a stream: ``retention_s`` worth of buckets of its timeframe (3 h of 60 s
    candles = 180 entries; 10,800 of 1 s candles), at least ``floor``."""
    tf = timeframe_of(key) or 1
    return max(retention_s // tf, floor)


def tagged(topic: str) -> str:
    """The cluster key of a topic: its trailing instrument token as a hash tag
    (``candle:60s:NSE:256265`` → ``candle:60s:NSE:{256265}``); other topics unchanged."""
    head, sep, last = topic.rpartition(":")
    return f"{head}:{{{last}}}" if sep and last.isdigit() else topic


def untagged(key: str) -> str:
    """The topic of a key (hash-tag braces removed)."""
    return key.replace("{", "").replace("}", "") if "{" in key else key


@functools.lru_cache(maxsize=1 << 18)
def key_slot(key: str | bytes) -> int:
    """The Redis Cluster hash slot of a key (CRC16 of its ``{tag}`` if it has one)."""
    k = key.encode() if isinstance(key, str) else key
    s = k.find(b"{")
    if s >= 0:
        e = k.find(b"}", s + 1)
        if e > s + 1:
            k = k[s + 1 : e]
    return binascii.crc_hqx(k, 0) & (HASH_SLOTS - 1)


def token_partition(token: int, partitions: int) -> int:
    """The partition of an instrument: its hash slot scaled to ``partitions`` (so partition
    ``p`` is the slot range ``[p·16384/P, (p+1)·16384/P)`` and, on a cluster whose masters own
    whole ranges — ``mandi up`` makes them so — lives on one master)."""
    return key_slot(str(token)) * partitions // HASH_SLOTS


@functools.lru_cache(maxsize=1024)
def first_token(partition: int, partitions: int) -> int:
    """The smallest token in a partition (its slot is in the partition's range)."""
    return next(t for t in itertools.count(1) if token_partition(t, partitions) == partition)


def partition_tag(partition: int, partitions: int) -> str:
    """A hash tag (``{token}``) whose slot is in ``partition``: a key on that partition's
    master, e.g. to listen to its doorbell where the publishers ring it."""
    return f"{{{first_token(partition, partitions)}}}"


def key_token(key: str) -> int | None:
    """The instrument token at the end of a (tagged or plain) key, else None."""
    last = key.rpartition(":")[2].strip("{}")
    return int(last) if last.isdigit() else None


def key_partition(key: str, partitions: int) -> int | None:
    """The partition of a per-instrument key (None for other keys)."""
    token = key_token(key)
    return None if token is None else token_partition(token, partitions)


def parse_candle_key(key: str) -> tuple[int, str, int] | None:
    """``candle:{tf}s:{exchange}:{token}`` (or ``…:{{token}}``) → (token, exchange, tf), else
    None."""
    parts = untagged(key).split(":")
    if len(parts) != 4 or parts[0] != "candle":
        return None
    m = _TF_RE.match(parts[1])
    if not m or not parts[3].isdigit():
        return None
    return int(parts[3]), parts[2], int(m.group(1))


def id_tuple(entry_id: bytes | str) -> tuple[int, int]:
    """A stream ID as a comparable (ms, seq) tuple."""
    s = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


def wake_channel(registry: str, partition: int) -> str:
    """The doorbell channel of a stream family's partition on a cluster: the publisher
    announces there which stream keys got entries (``wake:candle:60s:3``)."""
    return f"wake:{registry.removeprefix('streams:')}:{partition}"


# --- RESP packing ---------------------------------------------------------------------------------


def _b(x: bytes | str | int | float) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    return str(x).encode()


def pack(*args: bytes | str | int | float) -> bytes:
    """One command in RESP."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = _b(a)
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def pack_prefix(*args: bytes | str | int, total: int) -> bytes:
    """The RESP of a command's first arguments, for a command of ``total`` arguments whose
    remaining ones are appended later (cached per key on the hot paths)."""
    parts = [b"*%d\r\n" % total]
    for a in args:
        b = _b(a)
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


MULTI = pack("MULTI")
_OK_QUEUED = (b"+OK\r\n", b"+QUEUED\r\n")
EXEC = pack("EXEC")

#: one routed command: (the key that decides its node — None: any node —, its RESP)
Command = tuple[str | bytes | None, bytes]
#: several commands of one key in one RESP blob: (key, RESP, how many commands)
Commands = tuple[str | bytes | None, bytes, int]


class RedisUnavailable(BusError):
    """Redis cannot be reached (or the connection broke); the caller retries with backoff."""


class RedisCommandError(BusError):
    """Redis answered a command with an error."""


# --- connections ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: parsed from ``redis://[user:password@]host:port[,host:port…]/db``,
    ``rediss://`` (TLS) or ``unix:///path/redis.sock?db=0``. More than one ``host:port`` names
    seed nodes of a cluster (:attr:`seeds`). The password is never logged (see :meth:`safe`)."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    unix_path: str | None = None
    seeds: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_url(cls, url: str) -> RedisTarget:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("redis", "rediss", "unix"):
            raise BusError(
                f"unsupported Redis URL scheme {u.scheme!r} (redis://, rediss://, unix://)"
            )
        q = urllib.parse.parse_qs(u.query)
        creds, _, hosts = u.netloc.rpartition("@")
        user_raw, has_pw, pw_raw = creds.partition(":")
        user = urllib.parse.unquote(user_raw) if user_raw else None
        pw = urllib.parse.unquote(pw_raw) if has_pw else None
        if u.scheme == "unix":
            return cls(db=int(q.get("db", ["0"])[0]), username=user, password=pw, unix_path=u.path)
        path = u.path.strip("/")
        db = int(path) if path.isdigit() else int(q.get("db", ["0"])[0])
        nodes = tuple(_host_port(h, url) for h in hosts.split(",") if h)
        host, port = nodes[0] if nodes else ("127.0.0.1", 6379)
        return cls(host, port, db, user, pw, u.scheme == "rediss", None, nodes)

    def at(self, host: str, port: int) -> RedisTarget:
        """The same credentials and TLS, another node."""
        return replace(self, host=host, port=port, seeds=())

    def nodes(self) -> list[tuple[str, int]]:
        """Every node named: the seeds (or the one host)."""
        return list(self.seeds) or [(self.host, self.port)]

    def safe(self) -> str:
        """The URL without credentials, for logs and health output."""
        if self.unix_path:
            return f"unix://{self.unix_path}?db={self.db}"
        hosts = ",".join(f"{h}:{p}" for h, p in self.nodes())
        return f"{'rediss' if self.tls else 'redis'}://{hosts}/{self.db}"

    def handshake(self) -> list[bytes]:
        out = []
        if self.password is not None:
            out.append(
                pack("AUTH", self.username, self.password)
                if self.username
                else pack("AUTH", self.password)
            )
        if self.db:
            out.append(pack("SELECT", self.db))
        return out


def _host_port(text: str, url: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if text.rfind(":") > text.rfind("]") else (text, "", "")
    host = host.strip("[]") or "127.0.0.1"
    try:
        return host, int(port) if port else 6379
    except ValueError:
        raise BusError(
            f"bad Redis node {text!r} in the URL (host:port)"
            + ("" if "@" not in url else "; credentials are not shown")
        ) from None


class RespConnection:
    """One asyncio RESP2 connection: send a packet of pipelined commands, read N replies.

    Error replies come back as ``hiredis.ReplyError`` objects among the replies (the caller
    decides); a broken connection raises :class:`RedisUnavailable`.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._r, self._w = reader, writer
        self._parser = hiredis.Reader()
        self.closed = False

    @classmethod
    async def open(cls, target: RedisTarget, timeout: float = 2.0) -> RespConnection:
        try:
            if target.unix_path:
                coro = asyncio.open_unix_connection(target.unix_path, limit=1 << 22)
            else:
                ctx = ssl.create_default_context() if target.tls else None
                coro = asyncio.open_connection(target.host, target.port, ssl=ctx, limit=1 << 22)
            async with asyncio.timeout(timeout):
                r, w = await coro
        except (OSError, TimeoutError) as e:
            raise RedisUnavailable(f"cannot connect to Redis at {target.safe()}: {e}") from None
        conn = cls(r, w)
        sock = w.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hs = target.handshake()
        if hs:
            async with asyncio.timeout(timeout):
                replies = await conn.request(b"".join(hs), len(hs))
            for reply in replies:
                if isinstance(reply, hiredis.ReplyError):
                    conn.close()
                    raise RedisCommandError(f"Redis handshake refused: {reply}")
        return conn

    async def request(self, packet: bytes, n: int, queued: int = 0) -> list[Any]:
        """Send ``packet`` (``n`` commands) and return the ``n`` replies in order.

        ``queued``: the packet starts with MULTI and ``queued`` commands; their ``+OK`` and
        ``+QUEUED`` replies are checked as raw bytes at once instead of parsed one by one (a
        large transaction has hundreds of thousands of them).
        """
        if self.closed:
            raise RedisUnavailable("connection closed")
        try:
            if packet:
                self._w.write(packet)
                await self._w.drain()
            out: list[Any] = []
            parser = self._parser
            if queued:
                expect = _OK_QUEUED[0] + _OK_QUEUED[1] * queued
                buf = bytearray()
                while len(buf) < len(expect):
                    data = await self._r.read(1 << 20)
                    if not data:
                        raise ConnectionResetError("Redis closed the connection")
                    buf += data
                    if not expect.startswith(bytes(buf[: len(expect)])):
                        break  # an error at queue time: parse everything the slow way
                if buf[: len(expect)] == expect:
                    out = [b"OK", *([b"QUEUED"] * queued)]
                    parser.feed(bytes(buf[len(expect) :]))
                else:
                    parser.feed(bytes(buf))
            while len(out) < n:
                reply = parser.gets()
                while reply is not False and len(out) < n:
                    out.append(reply)
                    if len(out) < n:
                        reply = parser.gets()
                if len(out) >= n:
                    break
                data = await self._r.read(1 << 20)
                if not data:
                    raise ConnectionResetError("Redis closed the connection")
                parser.feed(data)
            return out
        except (OSError, EOFError, asyncio.IncompleteReadError, hiredis.ProtocolError) as e:
            self.close()
            raise RedisUnavailable(f"Redis connection lost: {e!r}") from None
        except asyncio.CancelledError:
            self.close()  # a reply may still be on its way: this connection is out of step
            raise

    def send(self, packet: bytes) -> None:
        """Write without waiting for replies (subscriptions: their confirmations arrive as
        messages)."""
        if self.closed:
            raise RedisUnavailable("connection closed")
        self._w.write(packet)

    async def call(self, *args: bytes | str | int | float) -> Any:
        """One command; an error reply raises :class:`RedisCommandError`."""
        (reply,) = await self.request(pack(*args), 1)
        if isinstance(reply, hiredis.ReplyError):
            raise RedisCommandError(str(reply))
        return reply

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self._w.close()


class SyncRespConnection:
    """A blocking twin of :class:`RespConnection` for one node (tools, tests; the blocking
    helpers of the services use :func:`sync_client`, which also speaks to a cluster)."""

    def __init__(self, target: RedisTarget, timeout: float = 2.0) -> None:
        try:
            if target.unix_path:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(timeout)
                s.connect(target.unix_path)
            else:
                s = socket.create_connection((target.host, target.port), timeout)
                if target.tls:
                    s = ssl.create_default_context().wrap_socket(s, server_hostname=target.host)
        except OSError as e:
            raise RedisUnavailable(f"cannot connect to Redis at {target.safe()}: {e}") from None
        self._s = s
        self._parser = hiredis.Reader()
        hs = target.handshake()
        if hs:
            for reply in self.request(b"".join(hs), len(hs)):
                if isinstance(reply, hiredis.ReplyError):
                    raise RedisCommandError(f"Redis handshake refused: {reply}")

    def request(self, packet: bytes, n: int, timeout: float | None = None) -> list[Any]:
        try:
            if timeout is not None:
                self._s.settimeout(timeout)
            self._s.sendall(packet)
            out: list[Any] = []
            while len(out) < n:
                reply = self._parser.gets()
                if reply is not False:
                    out.append(reply)
                    continue
                data = self._s.recv(1 << 20)
                if not data:
                    raise ConnectionResetError("Redis closed the connection")
                self._parser.feed(data)
            return out
        except (OSError, hiredis.ProtocolError) as e:
            raise RedisUnavailable(f"Redis connection lost: {e!r}") from None

    def call(self, *args: bytes | str | int | float) -> Any:
        (reply,) = self.request(pack(*args), 1)
        if isinstance(reply, hiredis.ReplyError):
            raise RedisCommandError(str(reply))
        return reply

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._s.close()


def is_cluster(url: str, timeout: float = 2.0) -> bool:
    """Whether the Redis at ``url`` is a cluster (more than one node named, or the node says
    ``cluster_enabled:1``)."""
    target = RedisTarget.from_url(url)
    if len(target.seeds) > 1:
        return True
    if target.unix_path:
        return False
    con = SyncRespConnection(target, timeout)
    try:
        info = con.call("INFO", "cluster")
    finally:
        con.close()
    return b"cluster_enabled:1" in info


def sync_client(url: str, timeout: float = 2.0, read_timeout: float | None = None) -> Any:
    """A blocking redis-py client for ``url``: ``redis.RedisCluster`` on a cluster, else
    ``redis.Redis`` (the services' blocking helpers: history reads, trading commands, the
    mdengine restart backfill; not a hot path). ``read_timeout``: how long a reply may take
    (default ``timeout`` + 30 s; more for blocking commands)."""
    import redis

    target = RedisTarget.from_url(url)
    common: dict[str, Any] = {
        "username": target.username,
        "password": target.password,
        "socket_timeout": timeout + 30 if read_timeout is None else read_timeout,
        "socket_connect_timeout": timeout,
    }
    if target.unix_path:
        return redis.Redis(unix_socket_path=target.unix_path, db=target.db, **common)
    if is_cluster(url, timeout):
        from redis.cluster import ClusterNode

        nodes = [ClusterNode(h, p) for h, p in target.nodes()]  # type: ignore[no-untyped-call]
        return redis.RedisCluster(startup_nodes=nodes, ssl=target.tls, **common)
    return redis.Redis(target.host, target.port, target.db, ssl=target.tls, **common)


class BlockingRedis:
    """A thread-safe blocking client (redis-py, cluster-aware) for the services' helpers that
    run in worker threads: commands as :meth:`call` ``(*args)``; a lost connection is retried
    once, then :class:`RedisUnavailable`; an error reply is :class:`RedisCommandError`."""

    def __init__(self, url: str, timeout: float = 2.0, read_timeout: float | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.read_timeout = read_timeout
        self.cluster = False
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import redis

                try:
                    self._client = sync_client(self.url, self.timeout, self.read_timeout)
                except (OSError, BusError, redis.RedisError) as e:
                    raise RedisUnavailable(
                        f"cannot connect to Redis at {RedisTarget.from_url(self.url).safe()}: {e}"
                    ) from None
                self.cluster = isinstance(self._client, redis.RedisCluster)
            return self._client

    def key(self, topic: str) -> str:
        """The Redis key of a topic (hash-tagged on a cluster)."""
        self.client()
        return tagged(topic) if self.cluster else topic

    def call(self, *args: bytes | str | int | float) -> Any:
        import redis

        for attempt in (0, 1):
            client = self.client()
            try:
                return client.execute_command(*args)
            except redis.ResponseError as e:
                raise RedisCommandError(str(e)) from None
            except (redis.ConnectionError, redis.TimeoutError, redis.RedisClusterException) as e:
                self.close()
                if attempt:
                    raise RedisUnavailable(f"Redis connection lost: {e}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


class Backoff:
    """Jittered exponential backoff: ``initial`` doubling up to ``maximum`` seconds."""

    def __init__(self, initial: float = 0.1, maximum: float = 5.0) -> None:
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def next(self) -> float:
        d = self._next * (0.5 + random.random())
        self._next = min(self._next * 2, self.maximum)
        return min(d, self.maximum)

    def reset(self) -> None:
        self._next = self.initial


@dataclass
class LinkStats:
    connects: int = 0
    failures: int = 0
    down_since: float | None = None  # monotonic
    last_error: str = ""
    moved: int = 0  # MOVED/ASK replies followed (a cluster's slots changed hands)
    refreshes: int = 0  # slot maps loaded
    remaps: int = 0  # slot maps that moved slots to other masters (a fail-over, resharding)
    not_replicated: int = 0  # writes a WAIT found on fewer replicas than asked (retried)
    unreplicated: int = 0  # durable writes to a master with fewer replicas than asked


Addr = tuple[str, int]
#: the key index of commands whose key is not their first argument (XREADGROUP: after STREAMS)
_KEY_AT = {b"XGROUP": 2, b"XINFO": 2, b"EVAL": 3, b"EVALSHA": 3, b"OBJECT": 2, b"MEMORY": 2}
_KEYLESS = frozenset(
    {b"PING", b"WAIT", b"PUBLISH", b"INFO", b"CLUSTER", b"CONFIG", b"FLUSHALL", b"DBSIZE", b"AUTH"}
)


def command_key(args: Sequence[bytes | str | int | float]) -> bytes | None:
    """The key that routes a command on a cluster (None: any node)."""
    name = _b(args[0]).upper()
    if name in _KEYLESS or len(args) < 2:
        return None
    if name in (b"XREADGROUP", b"XREAD"):
        for i, a in enumerate(args):
            if _b(a).upper() == b"STREAMS":
                return _b(args[i + 1])
        return None
    return _b(args[_KEY_AT.get(name, 1)])


class RedisLink:
    """A reconnecting link to Redis — one node, or every master of a cluster — for one role
    (publishing, reading, committing).

    :meth:`pipeline` sends commands routed by their keys: on one Redis as one packet; on a
    cluster as one packet per master, concurrently, each in the given order, following MOVED
    and ASK redirections and reloading the slot map when a node fails (its replica takes
    over). ``wait_replicas`` > 0 appends ``WAIT`` to every packet and fails the call (the
    caller retries: every write of the bridge is idempotent) until that many replicas
    acknowledged it. :meth:`connection` waits — retrying with jittered exponential backoff,
    logging once per outage (with the number of attempts) — until Redis answers; :attr:`up`
    tells the health endpoint whether it is reachable now.
    """

    def __init__(
        self,
        url: str,
        role: str = "redis",
        connect_timeout: float = 2.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self.url = url
        self.target = RedisTarget.from_url(url)
        self.role = role
        self.connect_timeout = connect_timeout
        self.backoff = Backoff(backoff_initial, backoff_max)
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.stats = LinkStats()
        self.up = False
        #: None until the first connection tells: True on a Redis Cluster
        self.cluster: bool | None = None
        self._conns: dict[Addr, RespConnection] = {}
        self._locks: dict[Addr, asyncio.Lock] = {}
        self._slots: list[Addr] = []
        self._masters: list[Addr] = []
        self._known: list[Addr] = self.target.nodes()
        self._default: Addr = self._known[0]
        self._stale = True  # the slot map must be (re)loaded
        self._topology_lock = asyncio.Lock()
        self._attempts_in_outage = 0
        self._replicas: dict[Addr, int] = {}  # a cluster's masters: replicas they have now
        self._refreshed = 0.0
        self._unreplicated_warned: set[Addr] = set()

    # --- keys ------------------------------------------------------------------------------------
    def key(self, topic: str) -> str:
        """The Redis key of a bus topic here (hash-tagged on a cluster)."""
        return tagged(topic) if self.cluster else topic

    @property
    def masters(self) -> list[Addr]:
        """The masters of the cluster (or the one node)."""
        return list(self._masters) if self.cluster else [self._default]

    def node_of(self, key: str | bytes | None) -> Addr:
        """The node that serves ``key`` now."""
        if not self.cluster or key is None:
            return self._default
        return self._slots[key_slot(key)]

    # --- connections -----------------------------------------------------------------------------
    async def connection(self) -> RespConnection:
        """A connection to the (default) node, once Redis answers; on a cluster the slot map is
        loaded first."""
        while True:
            try:
                await self._topology()
                return await self._conn(self._default)
            except (RedisUnavailable, RedisCommandError) as e:
                self._mark_down(str(e))
                await asyncio.sleep(self.backoff.next())

    async def ready(self) -> None:
        """One attempt to learn the topology (single Redis or cluster, and the slot map);
        :class:`RedisUnavailable` if no node answers."""
        try:
            await self._topology()
        except RedisUnavailable as e:
            self._mark_down(str(e))
            raise

    async def _open(self, addr: Addr) -> RespConnection:
        target = self.target if self.target.unix_path else self.target.at(*addr)
        conn = await RespConnection.open(target, self.connect_timeout)
        try:
            async with asyncio.timeout(self.connect_timeout):
                (pong,) = await conn.request(pack("PING"), 1)
        except TimeoutError:
            conn.close()
            raise RedisUnavailable(f"no reply from Redis at {target.safe()}") from None
        if isinstance(pong, hiredis.ReplyError):
            conn.close()
            raise RedisUnavailable(str(pong))
        self.stats.connects += 1
        if self._attempts_in_outage:
            log.info(
                "%s: Redis at %s is back after %d attempt(s), %.1f s",
                self.role,
                target.safe(),
                self._attempts_in_outage,
                time.monotonic() - (self.stats.down_since or time.monotonic()),
            )
        self.up = True
        self.stats.down_since = None
        self._attempts_in_outage = 0
        self.backoff.reset()
        return conn

    async def _conn(self, addr: Addr) -> RespConnection:
        conn = self._conns.get(addr)
        if conn is None or conn.closed:
            conn = self._conns[addr] = await self._open(addr)
        return conn

    async def _topology(self) -> None:
        """Find out whether this is a cluster and load its slot map (when unknown or stale;
        with ``wait_replicas``, every few seconds too: replicas come and go)."""
        if (
            self.cluster
            and self.wait_replicas
            and time.monotonic() - self._refreshed > TOPOLOGY_REFRESH_S
        ):
            self._stale = True
        if not self._stale and self.cluster is not None:
            return
        async with self._topology_lock:
            if not self._stale and self.cluster is not None:
                return
            errors = []
            # the nodes we know, the default (last seen working) last if it just failed
            candidates = list(dict.fromkeys([*self._masters, *self._known, self._default]))
            random.shuffle(candidates)
            for addr in candidates:
                try:
                    (reply,) = await self._exclusive(addr, pack("CLUSTER", "SLOTS"), 1)
                except (RedisUnavailable, RedisCommandError, TimeoutError) as e:
                    self._drop(addr)
                    errors.append(str(e) or "timeout")
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    if "cluster support disabled" in str(reply) or "unknown command" in str(reply):
                        self.cluster = False
                        self._default = addr
                        self._stale = False
                        return
                    errors.append(str(reply))
                    continue
                if self._load_slots(reply):
                    self.cluster = True
                    self._stale = False
                    self._refreshed = time.monotonic()
                    self.stats.refreshes += 1
                    # keyless commands go to a node that just answered
                    self._default = addr if addr in self._masters else self._masters[0]
                    if self.wait_replicas:
                        await self._count_replicas()
                    return
                errors.append(f"{addr[0]}:{addr[1]} does not cover every slot yet")
            raise RedisUnavailable(
                f"no Redis node answered at {self.target.safe()}: {'; '.join(errors[-3:])}"
            )

    async def _count_replicas(self) -> None:
        """How many replicas each master has now, from the master itself (``ROLE``: CLUSTER
        SLOTS leaves out replicas the gossip has not reported an offset for yet)."""
        for addr in self._masters:
            try:
                (role,) = await self._exclusive(addr, pack("ROLE"), 1)
                if isinstance(role, list) and role and role[0] == b"master":
                    self._replicas[addr] = len(role[2] or ())
            except (RedisUnavailable, TimeoutError):
                self._drop(addr)  # a master that does not answer: its replica will take over

    async def _exclusive(self, addr: Addr, packet: bytes, n: int) -> list[Any]:
        """A request on a node's connection while no pipeline uses it (a connection carries
        one request at a time: replies are matched by order)."""
        lock = self._locks.get(addr)
        if lock is None:
            lock = self._locks[addr] = asyncio.Lock()
        async with lock, asyncio.timeout(self.connect_timeout):
            conn = await self._conn(addr)
            return await conn.request(packet, n)

    def _load_slots(self, reply: Any) -> bool:
        slots: list[Addr | None] = [None] * HASH_SLOTS
        masters: dict[Addr, int] = {}
        known: dict[Addr, None] = dict.fromkeys(self._known)
        for rng in reply or ():
            lo, hi, master = int(rng[0]), int(rng[1]), rng[2]
            host = master[0].decode() or self._default[0]
            addr = (host, int(master[1]))
            masters[addr] = len(rng) - 3
            known[addr] = None
            for rep in rng[3:]:
                known[(rep[0].decode() or host, int(rep[1]))] = None
            slots[lo : hi + 1] = [addr] * (hi - lo + 1)
        if any(s is None for s in slots):
            return False
        if self._slots and slots != self._slots:
            self.stats.remaps += 1
        self._slots = slots  # type: ignore[assignment]
        self._masters = list(masters)
        self._replicas = masters
        self._known = list(known)
        return True

    def _drop(self, addr: Addr) -> None:
        conn = self._conns.pop(addr, None)
        if conn is not None:
            conn.close()

    def _mark_down(self, reason: str) -> None:
        if self._attempts_in_outage == 0:
            log.warning(
                "%s: Redis at %s unavailable (%s); retrying with backoff",
                self.role,
                self.target.safe(),
                reason,
            )
            self.stats.down_since = self.stats.down_since or time.monotonic()
        self._attempts_in_outage += 1
        self.stats.failures += 1
        self.stats.last_error = reason
        self.up = False

    def broken(self, reason: str, addr: Addr | None = None) -> None:
        """The caller saw a connection fail: drop it (the next use reconnects and, on a
        cluster, reloads the slot map)."""
        for a in [addr] if addr is not None else list(self._conns):
            self._drop(a)
        if self.cluster:
            self._stale = True
        self._mark_down(reason)

    # --- requests --------------------------------------------------------------------------------
    def _replicas_to_wait(self, addr: Addr) -> int:
        """``wait_replicas``, but on a cluster no more than the master has now: after a
        fail-over the promoted replica serves without one until another joins (a warning,
        counted in ``stats.unreplicated``) rather than refusing every write."""
        want = self.wait_replicas
        if not want or not self.cluster:
            return want
        have = self._replicas.get(addr, want)
        if have < want:
            self.stats.unreplicated += 1
            if addr not in self._unreplicated_warned:
                self._unreplicated_warned.add(addr)
                log.warning(
                    "%s: %s:%d has %d replica(s), fewer than redis.wait_replicas = %d: its "
                    "writes wait for %d until more join",
                    self.role, addr[0], addr[1], have, want, have,
                )  # fmt: skip
        else:
            self._unreplicated_warned.discard(addr)
        return min(want, have)

    async def _node_request(
        self,
        addr: Addr,
        packet: bytes,
        n: int,
        timeout: float,
        queued: int = 0,
        durable: bool = False,
    ) -> list[Any]:
        wait = self._replicas_to_wait(addr) if durable else 0
        lock = self._locks.get(addr)
        if lock is None:
            lock = self._locks[addr] = asyncio.Lock()
        async with lock:
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                async with asyncio.timeout(timeout):
                    conn = await self._conn(addr)
                    if wait:
                        suffix = pack("WAIT", wait, self.wait_timeout_ms)
                        replies = await conn.request(packet + suffix, n + 1, queued)
                    else:
                        replies = await conn.request(packet, n, queued)
            except TimeoutError:
                self.broken(f"no reply within {timeout:g} s", addr)
                raise RedisUnavailable(f"no reply from Redis within {timeout:g} s") from None
            except RedisUnavailable as e:
                self.broken(str(e), addr)
                raise
        if wait:
            acked = replies.pop()
            if not isinstance(acked, int) or acked < wait:
                self.stats.not_replicated += 1
                if self.cluster:
                    self._stale = True  # the replica may be gone: look again
                raise RedisUnavailable(
                    f"{acked} of {wait} replica(s) of {addr[0]}:{addr[1]} acknowledged "
                    f"within {self.wait_timeout_ms} ms (the write is retried)"
                )
        first = replies[0] if replies else None
        if isinstance(first, _ReplyError) and str(first).split(" ", 1)[0] in TRANSIENT:
            # restarting (loading its AOF), failing over: unavailable for now
            self.broken(str(first), addr)
            raise RedisUnavailable(str(first))
        return replies

    async def request(
        self, packet: bytes, n: int, timeout: float = 30.0, queued: int = 0
    ) -> list[Any]:
        """Send a packet of ``n`` commands to the (default) node and return the replies; one
        attempt. :class:`RedisUnavailable` after marking the link down (also when no reply
        comes within ``timeout`` seconds: a silent peer is treated as dead). On a cluster use
        :meth:`pipeline` for keyed commands."""
        try:
            await self._topology()
        except RedisUnavailable as e:
            self._mark_down(str(e))
            raise
        return await self._node_request(self._default, packet, n, timeout, queued)

    async def pipeline(
        self,
        commands: Sequence[Command | Commands],
        timeout: float = 30.0,
        durable: bool = False,
        atomic: bool = False,
    ) -> list[Any]:
        """Send routed commands (``(key, RESP)`` or ``(key, RESP, n)`` for n commands of one
        key; see :func:`command_key`) and return their replies in order, one per command: one
        packet per node, concurrently, each node's in the given order.
        One attempt: a node that fails raises :class:`RedisUnavailable` (the commands other
        nodes ran stay done; callers send idempotent batches and retry them whole).
        ``durable``: the writes count only once ``wait_replicas`` replicas hold them
        (``WAIT``; see :meth:`_replicas_to_wait`), else :class:`RedisUnavailable`.
        ``atomic``: on one Redis the whole batch is one MULTI/EXEC, so a consumer blocked on
        the streams wakes to all of it, not to its first entry (a cluster cannot run a
        transaction across slots: there each node's commands run in order, and the doorbells
        wake consumers after them)."""
        if not commands:
            return []
        try:
            await self._topology()
        except RedisUnavailable as e:
            self._mark_down(str(e))
            raise
        if not self.cluster:
            n = sum([c[2] if len(c) == 3 else 1 for c in commands])
            packet = b"".join([c[1] for c in commands])
            if not atomic:
                return await self._node_request(self._default, packet, n, timeout, durable=durable)
            replies = await self._node_request(
                self._default, MULTI + packet + EXEC, n + 2, timeout, queued=n, durable=durable
            )
            done = replies[-1]
            if not isinstance(done, list):  # EXECABORT: refused at queue time, nothing ran
                raise RedisCommandError(f"Redis refused the transaction: {done}")
            return done
        # where each entry's replies start
        at = list(itertools.accumulate([c[2] if len(c) == 3 else 1 for c in commands], initial=0))
        out: list[Any] = [None] * at[-1]
        todo = list(range(len(commands)))
        for _ in range(5):  # redirections: at most a few rounds while slots move
            todo = await self._routed(commands, todo, out, at, timeout, durable)
            if not todo:
                return out
            self._stale = True
            await self._topology()
        raise RedisUnavailable("the cluster kept redirecting these keys (slots moving?)")

    async def _routed(
        self,
        commands: Sequence[Command | Commands],
        idx: list[int],
        out: list[Any],
        at: list[int],
        timeout: float,
        durable: bool,
    ) -> list[int]:
        """One round of a cluster pipeline; returns the indexes redirected elsewhere."""
        slots = self._slots
        whole = len(idx) == len(commands)  # the first round: every command, in order
        if len(self._masters) == 1 and self._masters[0] == self._default:
            # one master serves every slot (a 1-shard cluster): no routing per command
            groups = {self._default: idx}
        else:
            groups = {}
            for i in idx:
                key = commands[i][0]
                addr = self._default if key is None else slots[key_slot(key)]
                groups.setdefault(addr, []).append(i)
        items = list(groups.items())
        results = await asyncio.gather(
            *(
                self._node_request(
                    a,
                    b"".join([commands[i][1] for i in ix]),
                    at[-1] if whole and len(ix) == len(idx) else sum(at[i + 1] - at[i] for i in ix),
                    timeout,
                    durable=durable,
                )
                for a, ix in items
            ),
            return_exceptions=True,
        )
        again: list[int] = []
        failure: BaseException | None = None
        for (_, ix), res in zip(items, results, strict=True):
            if isinstance(res, BaseException):
                failure = failure or res
                continue
            if _ReplyError not in map(type, res):  # no redirection, nothing failed
                if whole and len(ix) == len(idx):
                    out[:] = res
                else:
                    pos = 0
                    for i in ix:
                        nxt = pos + at[i + 1] - at[i]
                        out[at[i] : at[i + 1]] = res[pos:nxt]
                        pos = nxt
                continue
            pos = 0
            for i in ix:
                k = at[i + 1] - at[i]
                got = res[pos : pos + k]
                pos += k
                redirect = None
                for r in got:
                    if r.__class__ is _ReplyError:
                        text = str(r)
                        if text.startswith(("MOVED ", "ASK ")):
                            redirect = text
                        elif text.split(" ", 1)[0] in TRANSIENT:
                            self._stale = True
                            failure = failure or RedisUnavailable(text)
                if redirect is not None:
                    self.stats.moved += 1
                    if redirect.startswith("ASK ") and k == 1:
                        got = [await self._ask(redirect, commands[i][1], timeout)]
                    else:
                        again.append(i)
                        continue
                out[at[i] : at[i + 1]] = got
        if failure is not None:
            if isinstance(failure, RedisUnavailable):
                raise failure
            raise failure
        return again

    async def _ask(self, text: str, command: bytes, timeout: float) -> Any:
        """Follow one ASK redirection (a slot being migrated): ASKING + the command there."""
        host, _, port = text.split(" ")[2].rpartition(":")
        replies = await self._node_request((host, int(port)), pack("ASKING") + command, 2, timeout)
        return replies[1]

    async def request_retrying(
        self, packet: bytes, n: int, stop: asyncio.Event | None = None, queued: int = 0
    ) -> list[Any]:
        """Send an idempotent packet until it succeeds (or ``stop`` is set: RedisUnavailable)."""
        while True:
            try:
                return await self.request(packet, n, queued=queued)
            except RedisUnavailable:
                if stop is not None and stop.is_set():
                    raise
                await asyncio.sleep(self.backoff.next())

    async def pipeline_retrying(
        self,
        commands: Sequence[Command | Commands],
        stop: asyncio.Event | None = None,
        durable: bool = False,
        atomic: bool = False,
    ) -> list[Any]:
        """:meth:`pipeline` of idempotent commands until it succeeds (or ``stop`` is set:
        RedisUnavailable)."""
        while True:
            try:
                return await self.pipeline(commands, durable=durable, atomic=atomic)
            except RedisUnavailable:
                if stop is not None and stop.is_set():
                    raise
                await asyncio.sleep(self.backoff.next())

    async def call(self, *args: bytes | str | int | float) -> Any:
        """One command, routed by its key; an error reply raises :class:`RedisCommandError`."""
        (reply,) = await self.pipeline([(command_key(args), pack(*args))])
        if isinstance(reply, hiredis.ReplyError):
            raise RedisCommandError(str(reply))
        return reply

    async def each_master(self, *args: bytes | str | int | float) -> list[Any]:
        """One command on every master (e.g. ``INFO``), replies in :attr:`masters` order."""
        await self._topology()
        packet = pack(*args)
        return [
            (await self._node_request(a, packet, 1, self.connect_timeout * 5))[0]
            for a in self.masters
        ]

    def close(self) -> None:
        for addr in list(self._conns):
            self._drop(addr)
        self.up = False


def run_in_thread(coro_fn: Any, timeout: float) -> Any:
    """Run ``coro_fn()`` on a fresh event loop in a helper thread and return its result (the
    synchronous shutdown paths run inside an event loop they must not re-enter)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro_fn())
        except BaseException as e:  # handed back to the caller
            box["error"] = e

    t = threading.Thread(target=target, name="redis-flush", daemon=True)
    t.start()
    t.join(timeout + 5)
    if "error" in box:
        raise box["error"]
    return box.get("result")


# --- publishing -----------------------------------------------------------------------------------


@dataclass
class PublisherStats:
    confirmed: int = 0  # stream entries written
    duplicates: int = 0  # XADDs refused because the entry was already there (replays)
    forming: int = 0  # PUBLISH-only messages sent
    batches: int = 0
    dropped: int = 0  # refused at the bounded buffer (live sources only)
    errors: int = 0  # other error replies
    last_batch_ms: float = 0.0
    last_error: str = ""


class _KeyInfo:
    """Cached RESP prefixes of one stream key (its XADD, latest SET and channel)."""

    __slots__ = ("fenced", "key", "latest", "maxlen", "pub", "set", "xadd")

    def __init__(self, key: str, retention_s: int, sharded: bool) -> None:
        self.key = key  # the Redis key (tagged on a cluster): routes the commands
        self.latest = latest_key(key)
        self.xadd = pack_prefix(
            b"XADD", key, b"MAXLEN", b"~", stream_maxlen(key, retention_s), total=8
        )
        self.set = pack_prefix(b"SET", self.latest, total=5)
        self.pub = pack_prefix(b"SPUBLISH" if sharded else b"PUBLISH", pub_channel(key), total=3)
        self.maxlen = stream_maxlen(key, retention_s)
        k, ch = key.encode(), pub_channel(key).encode()
        # its key and channel as arguments of a fenced values script (fenced_values_head)
        self.fenced = b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(ch), ch)


class BatchBuilder:
    """Builds the routed commands of confirmed results (XADD + PUBLISH each, one latest-key SET
    per key) and PUBLISH-only messages. On a cluster (:attr:`cluster`) keys are hash-tagged and
    per-instrument channels are sharded (SPUBLISH)."""

    def __init__(
        self,
        retention_s: int,
        latest_ttl_s: int,
        retention_1s_s: int | None = None,
        cluster: bool = False,
    ) -> None:
        self.retention_s = retention_s
        self.retention_1s_s = retention_s if retention_1s_s is None else retention_1s_s
        self._ttl_suffix = b"$2\r\nEX\r\n" + b"$%d\r\n%d\r\n" % (
            len(str(latest_ttl_s)),
            latest_ttl_s,
        )
        self._keys: dict[str, _KeyInfo] = {}
        # (topic, partitions) -> (registry, partition, key, key as bytes), None: no partition
        self._bells: dict[tuple[str, int], tuple[str, int, str, bytes] | None] = {}
        self.registered: set[str] = set()  # topics registered in their discovery sets
        self.latest_ttl_s = latest_ttl_s
        self.cluster = cluster

    def use_cluster(self, cluster: bool) -> None:
        """Build for a cluster (tags, sharded channels) or a single Redis."""
        if cluster != self.cluster:
            self.cluster = cluster
            self._keys.clear()
            self._bells.clear()

    def info(self, topic: str) -> _KeyInfo:
        ki = self._keys.get(topic)
        if ki is None:
            r = self.retention_1s_s if timeframe_of(topic) == 1 else self.retention_s
            key = tagged(topic) if self.cluster else topic
            ki = self._keys[topic] = _KeyInfo(key, r, key != topic)
        return ki

    def confirmed(
        self, cmds: list[Command | Commands], topic: str, entry_id: bytes, payload: bytes
    ) -> None:
        """Append XADD + PUBLISH of one confirmed message, as one routed entry of two commands
        (their replies: the XADD's, then the PUBLISH's).

        Its latest-key SET comes from :meth:`latest`, once per key per batch (only the newest
        one matters: a SET costs Redis about as much as the XADD; a batch often holds several
        per key)."""
        ki = self.info(topic)
        n = len(payload)
        cmds.append(
            (
                ki.key,
                b"%s$%d\r\n%s\r\n$1\r\nd\r\n$%d\r\n%s\r\n%s$%d\r\n%s\r\n"
                % (ki.xadd, len(entry_id), entry_id, n, payload, ki.pub, n, payload),
                2,
            )
        )

    def latest(self, cmds: list[Command | Commands], newest: dict[str, bytes]) -> int:
        """Append ``SET latest-key payload EX ttl`` for each topic's newest payload; return the
        commands added."""
        info, ttl = self.info, self._ttl_suffix
        for topic, payload in newest.items():
            ki = info(topic)
            cmds.append((ki.key, b"%s$%d\r\n%s\r\n%s" % (ki.set, len(payload), payload, ttl)))
        return len(newest)

    def forming(self, channel: str, payload: bytes) -> Command:
        """PUBLISH (sharded on a cluster for per-instrument channels) of a ``pub:…`` channel."""
        if channel.startswith("pub:"):
            ki = self.info(channel[4:])
            return (ki.key if self.cluster and ki.key != channel[4:] else None,
                    b"%s$%d\r\n%s\r\n" % (ki.pub, len(payload), payload))  # fmt: skip
        return (None, pack("PUBLISH", channel, payload))

    def registration(self, topics: Iterable[str]) -> list[Command]:
        """SADD commands registering new stream keys in their discovery sets."""
        by_reg: dict[str, list[str]] = {}
        for t in topics:
            by_reg.setdefault(registry_key(t), []).append(self.info(t).key)
        return [(reg, pack("SADD", reg, *ks)) for reg, ks in by_reg.items()]

    def doorbells(self, topics: Iterable[str], partitions: int, node_of: Any) -> list[Command]:
        """On a cluster: one ``PUBLISH wake:{family}:{tf}s:{partition}`` per family, partition
        and node, naming the keys that got entries (routed to that node, after its XADDs, so a
        woken consumer finds them there)."""
        groups: dict[tuple[str, int, Addr], list[bytes]] = {}
        bells = self._bells
        for t in topics:
            bell = bells.get((t, partitions))
            if bell is None:  # parsed once per topic: this runs for every key of every batch
                ki = self.info(t)
                p = key_partition(t, partitions)
                bell = bells[(t, partitions)] = (
                    None if p is None else (registry_key(t), p, ki.key, ki.key.encode())
                )
            if bell is None:
                continue
            reg, p, key, raw = bell
            groups.setdefault((reg, p, node_of(key)), []).append(raw)
        return [
            (ks[0], pack("PUBLISH", wake_channel(reg, p), b" ".join(ks)))
            for (reg, p, _), ks in groups.items()
        ]


def tally_xadds(replies: Sequence[Any], at: Iterable[int], stats: PublisherStats) -> None:
    """Count the XADD replies at the indexes ``at``: written, refused as already present
    (a replay; not an error) or errors."""
    for i in at:
        r = replies[i]
        if r.__class__ is _ReplyError:
            if ID_NOT_NEWER in str(r):
                stats.duplicates += 1
            else:
                stats.errors += 1
                stats.last_error = str(r)
        else:
            stats.confirmed += 1


class StreamPublisher:
    """Buffers confirmed and forming messages (bounded) and writes them to Redis in batches.

    :meth:`confirmed` and :meth:`forming` are synchronous (called from bus handlers) and take
    bus topics; the :meth:`run` task writes everything buffered as one pipeline per node per
    batch, retrying a failed batch with backoff until Redis takes it (explicit stream IDs make
    the retry idempotent). While Redis is down the buffer grows up to ``max_buffer`` messages;
    beyond it :meth:`busy` is True (a replayable source waits) and, for live sources, new
    messages are dropped and counted — the SQLite store still holds the candles. On a cluster
    each batch also rings the doorbells of the partitions it wrote to (``partitions``).
    """

    def __init__(
        self,
        link: RedisLink,
        retention_s: int = 10_800,
        latest_ttl_s: int = 1800,
        max_buffer: int = 200_000,
        max_batch: int = 5_000,
        retention_1s_s: int | None = None,
        partitions: int = 16,
    ) -> None:
        self.link = link
        self.builder = BatchBuilder(retention_s, latest_ttl_s, retention_1s_s)
        self.max_buffer = max_buffer
        self.max_batch = max_batch
        self.partitions = partitions
        self.stats = PublisherStats()
        self._confirmed: list[tuple[str, bytes, bytes]] = []
        self._forming: dict[str, bytes] = {}  # channel -> latest payload (coalesced)
        self._extra: list[Command] = []  # extra commands for the next batch
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._new_keys: set[str] = set()
        self._reg_epoch = 0
        self.stop = asyncio.Event()

    # -- producers (sync) --
    @property
    def pending(self) -> int:
        return len(self._confirmed) + len(self._forming)

    def busy(self) -> bool:
        return len(self._confirmed) >= self.max_buffer

    def confirmed(
        self, topic: str, entry_id: str | bytes, payload: bytes, live: bool = False
    ) -> bool:
        if live and len(self._confirmed) >= self.max_buffer:
            self.stats.dropped += 1
            return False
        if topic not in self.builder.registered:
            self._new_keys.add(topic)
        self._confirmed.append((topic, _b(entry_id), payload))
        self._kick()
        return True

    def forming(self, channel: str, payload: bytes) -> None:
        self._forming[channel] = payload
        self._kick()

    def extra(self, packed: bytes, key: str | None = None) -> None:
        """Add one packed command (routed by ``key``) to the next batch (e.g. a watermark
        SET)."""
        self._extra.append((key, packed))
        self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    # -- the writer --
    def _take(
        self,
    ) -> tuple[
        list[Command | Commands],
        Sequence[int],
        list[tuple[str, bytes, bytes]],
        dict[str, bytes],
        list[Command],
    ]:
        """Build the next batch: (commands, XADD indexes, taken confirmed, forming, extra)."""
        take = self._confirmed[: self.max_batch]
        self._confirmed = self._confirmed[self.max_batch :]
        forming, self._forming = self._forming, {}
        extra, self._extra = self._extra, []
        link, builder = self.link, self.builder
        builder.use_cluster(bool(link.cluster))
        if link.stats.connects != self._reg_epoch:
            # a new connection: Redis may have restarted without its data, register again
            self._reg_epoch = link.stats.connects
            self._new_keys |= builder.registered
            builder.registered.clear()
        new = [t for t, _, _ in take if t in self._new_keys]
        cmds: list[Command | Commands] = [*builder.registration(dict.fromkeys(new))]
        # the XADDs' replies: after the registrations, every other one (XADD, PUBLISH)
        at = range(len(cmds), len(cmds) + 2 * len(take), 2)
        add = builder.confirmed
        newest: dict[str, bytes] = {}
        for topic, eid, payload in take:
            add(cmds, topic, eid, payload)
            newest[topic] = payload
        builder.latest(cmds, newest)
        cmds += extra
        if link.cluster and newest:
            cmds += builder.doorbells(newest, self.partitions, link.node_of)
        cmds += [builder.forming(ch, payload) for ch, payload in forming.items()]
        return cmds, at, take, forming, extra

    async def flush_once(self, retry: bool = True) -> int:
        """Write what is buffered (one batch; retried until Redis takes it unless ``retry`` is
        False); return the number of confirmed messages written."""
        if not (self._confirmed or self._forming or self._extra):
            return 0
        t0 = time.perf_counter()
        try:
            await self.link.ready()
            cmds, at, take, forming, extra = self._take()
        except RedisUnavailable:
            if not retry or self.stop.is_set():
                raise
            await asyncio.sleep(self.link.backoff.next())
            return 0
        try:
            if retry:
                replies = await self.link.pipeline_retrying(
                    cmds, self.stop, durable=True, atomic=True
                )
            else:
                replies = await self.link.pipeline(cmds, durable=True, atomic=True)
        except (RedisUnavailable, RedisCommandError):
            # stopping while Redis is down: keep it, in order
            self._confirmed[:0] = take
            self._forming = {**forming, **self._forming}
            self._extra[:0] = extra
            raise
        self._account(replies, at, take, forming)
        self.stats.last_batch_ms = (time.perf_counter() - t0) * 1000
        return len(take)

    def _account(
        self,
        replies: list[Any],
        at: Sequence[int],
        take: list[tuple[str, bytes, bytes]],
        forming: dict[str, bytes],
    ) -> None:
        tally_xadds(replies, at, self.stats)
        self.stats.forming += len(forming)
        self.stats.batches += 1
        for t, _, _ in take:
            if t in self._new_keys:
                self._new_keys.discard(t)
                self.builder.registered.add(t)

    async def run(self) -> None:
        """Write batches until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._confirmed or self._forming or self._extra:
                with contextlib.suppress(RedisCommandError):
                    await self.flush_once()
            self._idle.set()

    async def drained(self) -> None:
        """Wait until everything buffered so far is written."""
        while self.pending or self._extra or not self._idle.is_set():
            await self._idle.wait()
            if self.pending or self._extra:
                self._idle.clear()
                self._wake.set()

    def flush_blocking(self, timeout: float = 10.0) -> int:
        """Write what is left synchronously (shutdown, outside the event loop's tasks: on a
        fresh connection in a helper thread); return the number of confirmed messages that could
        NOT be written."""
        if not (self._confirmed or self._forming or self._extra):
            return 0
        saved = self.link

        async def flush() -> None:
            self.link = RedisLink(
                saved.url,
                f"{saved.role}.final",
                saved.connect_timeout,
                backoff_max=0.5,
                wait_replicas=saved.wait_replicas,
                wait_timeout_ms=saved.wait_timeout_ms,
            )
            deadline = time.monotonic() + timeout
            try:
                while (self._confirmed or self._forming or self._extra) and (
                    time.monotonic() < deadline
                ):
                    try:
                        async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                            await self.flush_once(retry=False)
                    except (RedisUnavailable, RedisCommandError, TimeoutError) as e:
                        self.stats.last_error = str(e)
                        await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            finally:
                self.link.close()

        try:
            run_in_thread(flush, timeout)
        finally:
            self.link = saved
        return len(self._confirmed)


# --- consuming ------------------------------------------------------------------------------------


@dataclass
class Entry:
    """One stream entry read by a consumer: its key, ID and ``d`` payload (None if missing)."""

    key: str
    id: bytes
    payload: bytes | None
    fields: list[bytes] = field(default_factory=list)

    @property
    def key_bytes(self) -> bytes:
        return self.key.encode()

    @property
    def topic(self) -> str:
        """The bus topic of the entry's stream (the key without a cluster's hash tag)."""
        return untagged(self.key)


def _entries(key: str, raw: list[Any]) -> list[Entry]:
    out = []
    for item in raw or ():
        if item is None:
            continue
        eid, fields = item[0], item[1]
        if fields is None:  # an entry trimmed while pending (XREADGROUP of the PEL)
            out.append(Entry(key, eid, None, []))
            continue
        payload = None
        for i in range(0, len(fields) - 1, 2):
            if fields[i] == DATA_FIELD:
                payload = fields[i + 1]
                break
        out.append(Entry(key, eid, payload, fields))
    return out


MessageHandler = Any  # (channel: bytes, data: bytes, pattern: bytes | None) -> None


class Subscriber:
    """Pub/Sub that survives reconnects and fail-overs: channels and patterns on one node
    (``SUBSCRIBE``/``PSUBSCRIBE``: a cluster copies plain PUBLISHes to every node) and, on a
    cluster, sharded channels on the masters that own them (``SSUBSCRIBE``, one per channel).

    :meth:`run` keeps the connections; ``handler(channel, data, pattern)`` gets every message
    and ``on_subscribed()`` runs after each (re)subscription — messages sent while it was not
    subscribed are lost (Pub/Sub keeps nothing), so a consumer that depends on them re-reads
    its streams then. Changing the subscriptions (:meth:`set`) resubscribes.
    """

    def __init__(
        self,
        link: RedisLink,
        handler: MessageHandler,
        on_subscribed: Any = None,
    ) -> None:
        self.link = link
        self.handler = handler
        self.on_subscribed = on_subscribed
        self.channels: frozenset[str] = frozenset()
        self.patterns: frozenset[str] = frozenset()
        self.sharded: frozenset[str] = frozenset()
        #: plain channel -> a key: subscribed on that key's node (where it is published)
        self.near: dict[str, str] = {}
        self.received = 0
        self.resubscribes = 0
        self._changed: asyncio.Event | None = None

    def set(
        self,
        channels: Iterable[str] = (),
        patterns: Iterable[str] = (),
        sharded: Iterable[str] = (),
        near: dict[str, str] | None = None,
    ) -> None:
        """Subscribe to exactly these (a change takes effect at once, resubscribing).

        ``near``: on a cluster, plain channels subscribed on the node of the key given for
        them — the node their publisher sends them to — rather than on any one node: a plain
        PUBLISH reaches every node, but the others get it over the cluster bus, later."""
        new = (frozenset(channels), frozenset(patterns), frozenset(sharded))
        near = dict(near or {})
        if new != (self.channels, self.patterns, self.sharded) or near != self.near:
            self.channels, self.patterns, self.sharded = new
            self.near = near
            if self._changed is not None:
                self._changed.set()

    def _plan(self) -> dict[Addr, list[bytes]]:
        """The subscribe commands per node."""
        link = self.link
        plan: dict[Addr, list[bytes]] = {}
        first = link.node_of(None)
        by_node: dict[Addr, list[str]] = {}
        for ch in sorted(self.channels):
            by_node.setdefault(link.node_of(self.near.get(ch)), []).append(ch)
        for node, chs in by_node.items():
            plan.setdefault(node, []).append(pack("SUBSCRIBE", *chs))
        if self.patterns:
            plan.setdefault(first, []).append(pack("PSUBSCRIBE", *sorted(self.patterns)))
        verb = "SSUBSCRIBE" if link.cluster else "SUBSCRIBE"
        for ch in sorted(self.sharded):
            plan.setdefault(link.node_of(ch), []).append(pack(verb, ch))
        return plan

    async def run(self) -> None:
        """Subscribe and deliver messages until cancelled."""
        self._changed = asyncio.Event()
        link = self.link
        while True:
            self._changed.clear()
            conns: list[RespConnection] = []
            readers: list[asyncio.Task[Any]] = []
            try:
                await link.ready()
                plan = self._plan()
                for addr, cmds in plan.items():
                    conn = await link._open(addr)
                    conns.append(conn)
                    for i in range(0, len(cmds), 1000):
                        conn.send(b"".join(cmds[i : i + 1000]))
                readers = [asyncio.create_task(self._pump(c)) for c in conns]
                self.resubscribes += 1
                if self.on_subscribed is not None:
                    self.on_subscribed()
                changed = asyncio.create_task(self._changed.wait())
                done, _ = await asyncio.wait(
                    [*readers, changed], return_when=asyncio.FIRST_COMPLETED
                )
                changed.cancel()
                for t in done:
                    if t is not changed and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
                if not plan:
                    await self._changed.wait()
            except (RedisUnavailable, RedisCommandError) as e:
                link.broken(str(e))
                await asyncio.sleep(link.backoff.next())
            finally:
                for t in readers:
                    t.cancel()
                for c in conns:
                    c.close()

    async def _pump(self, conn: RespConnection) -> None:
        handler = self.handler
        while True:
            (m,) = await conn.request(b"", 1)
            if not isinstance(m, list) or not m:
                continue
            kind = m[0]
            if kind in (b"message", b"smessage") and len(m) == 3:
                self.received += 1
                handler(m[1], m[2], None)
            elif kind == b"pmessage" and len(m) == 4:
                self.received += 1
                handler(m[2], m[3], m[1])
            elif kind == b"sunsubscribe" and self.link.cluster:
                # the slot moved (fail-over, resharding): subscribe again where it lives now
                self.link._stale = True
                raise RedisUnavailable(f"sharded channel {m[1]!r} moved")
            elif isinstance(m, hiredis.ReplyError):
                raise RedisCommandError(f"subscribe refused: {m}")


# --- fencing by lease ------------------------------------------------------------------------
# A member of a consumer group that stalls for longer than its lease (SIGSTOP, a long GC, a
# frozen VM) loses its partitions to another member while it cannot tell. Everything it does to
# a partition's keys afterwards must fail: its fencing token — the epoch its lease was taken
# with (``epoch:{lease:…}``, incremented at every acquisition) — is written by each new owner
# into the partition's *fence keys* (only ever raised), and every read and write of the
# partition is a script that first checks the fence still holds the caller's epoch. A fence
# key shares its slot with the keys it guards (on a cluster one per instrument, tagged like the
# instrument's keys; on one Redis one per partition), so the check and the command are one
# atomic step on one node. A refused step answers ``FENCED <fence key>`` (:class:`Fenced`).

_FENCE_TAKE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = tonumber(ARGV[1])
if cur > epoch then return cur end
if cur < epoch then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
"""

_FENCED_EXEC = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED ' .. KEYS[1]) end
local out, i = {}, 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  out[#out + 1] = redis.pcall(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return out
"""

_FENCED_READ = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED ' .. KEYS[1]) end
return redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
                  'STREAMS', KEYS[2], '>')
"""

# one Redis: KEYS = f fence keys, then the stream keys; ARGV = f, group, consumer, count,
# want tops (1/0), then the fences' epochs. Reads the streams (XREADGROUP ``>``, no BLOCK: a
# script cannot block) and answers {found (1/0), reply, tops}: tops, if asked, each stream's
# last ID (a stream that gave nothing: what the group has read of it, so the caller can block on
# XREAD after exactly that)
_FENCED_READ_ALL = """
local f = tonumber(ARGV[1])
local lost = {}
for i = 1, f do
  if redis.call('GET', KEYS[i]) ~= ARGV[5 + i] then lost[#lost + 1] = KEYS[i] end
end
if #lost > 0 then return redis.error_reply('FENCED ' .. table.concat(lost, ' ')) end
local out = {}
local i = f + 1
while i <= #KEYS do
  local j = math.min(#KEYS, i + 2999)
  local args = {'XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS'}
  for k = i, j do args[#args + 1] = KEYS[k] end
  for k = i, j do args[#args + 1] = '>' end
  local r = redis.call(unpack(args))
  if r then for _, x in ipairs(r) do out[#out + 1] = x end end
  i = j + 1
end
local tops = {}
if ARGV[5] == '1' then
  for k = f + 1, #KEYS do
    local last = redis.call('XREVRANGE', KEYS[k], '+', '-', 'COUNT', 1)
    tops[#tops + 1] = last[1] and last[1][1] or '0-0'
  end
end
return {#out > 0 and 1 or 0, out, tops}
"""


# one candle's values: KEYS[1] the fence; ARGV epoch, PUBLISH or SPUBLISH, MAXLEN (0: no
# XADD), entry ID, then (key, channel, payload) per value. Not the general script above: a
# specialised one costs Redis ~9 µs a candle of seven values, the general one ~23
_FENCED_VALUES = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED ' .. KEYS[1]) end
local pub, maxlen, id = ARGV[2], ARGV[3], ARGV[4]
local written, dup, errors, last = 0, 0, 0, ''
for i = 5, #ARGV, 3 do
  if maxlen ~= '0' then
    local r = redis.pcall('XADD', ARGV[i], 'MAXLEN', '~', maxlen, id, 'd', ARGV[i + 2])
    if type(r) ~= 'table' or not r.err then written = written + 1
    elseif string.find(r.err, 'equal or smaller', 1, true) then dup = dup + 1
    else errors = errors + 1 last = r.err end
  end
  redis.call(pub, ARGV[i + 1], ARGV[i + 2])
end
return {written, dup, errors, last}
"""
_FENCED_VALUES_HEAD = pack_prefix(b"EVAL", _FENCED_VALUES, b"1", total=0)[len(b"*0\r\n") :]


class Fenced(BusError):
    """A fenced read or write found another epoch in its fence key: the partition it guards
    belongs to another member now (this one stalled past its lease). ``keys``: the fence keys."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = sorted(set(keys))
        super().__init__(f"fenced off by a newer owner: {' '.join(self.keys)}")


def fenced_keys(reply: Any) -> list[str] | None:
    """The fence keys of a ``FENCED`` error reply (None for any other reply)."""
    if isinstance(reply, hiredis.ReplyError):
        text = str(reply)
        if text.startswith("FENCED "):
            return text.split()[1:]
    return None


def fence_take(fence_key: str, epoch: int) -> Command:
    """Raise a fence key to ``epoch`` (a new owner's, before it touches the partition); never
    lowers it. Replies 0, or the newer epoch found there (the caller is stale itself)."""
    return fence_key, pack("EVAL", _FENCE_TAKE, 1, fence_key, epoch)


def fenced_values_head(
    fence_key: bytes, epoch: int, sharded: bool, maxlen: int, entry_id: bytes, values: int
) -> bytes:
    """The RESP head of a fenced write of one candle's ``values`` (XADD ``entry_id`` + PUBLISH
    each; ``maxlen`` 0: PUBLISH only); each value then follows as its key and channel
    (:attr:`_KeyInfo.fenced`) and its payload. Replies ``[written, duplicates, errors, last
    error]``, or ``FENCED <fence key>`` and nothing was written."""
    e, m = b"%d" % epoch, b"%d" % maxlen
    verb = b"SPUBLISH" if sharded else b"PUBLISH"
    return b"*%d\r\n%s$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        8 + 3 * values, _FENCED_VALUES_HEAD, len(fence_key), fence_key, len(e), e,
        len(verb), verb, len(m), m, len(entry_id), entry_id,
    )  # fmt: skip


def fenced(fence_key: str, epoch: int, commands: Sequence[Sequence[bytes | str | int]]) -> Command:
    """``commands`` (each a list of arguments, all on keys of the fence key's slot) run in one
    script only while ``fence_key`` holds ``epoch``: replies a list of their replies (errors in
    place), or ``FENCED <fence key>`` and nothing ran."""
    args: list[bytes | str | int] = []
    for c in commands:
        args += [len(c), *c]
    return fence_key, pack("EVAL", _FENCED_EXEC, 1, fence_key, epoch, *args)


class PendingWatch:
    """Tells a group consumer when entries delivered to it may be pending unprocessed, so that
    it claims them again (in ID order, before it reads on) — and keeps telling until it has.

    XREADGROUP ``>`` delivers an entry once: one whose reply is lost stays pending and ``>``
    never returns it again. That happens after

    * a read that raised: on a cluster a read is one command per master, and when one master
      fails the entries the others delivered are dropped with the round; the link goes on
      over the connections it has (no reconnect needed), and after a fail-over the promoted
      replica may be served over a connection opened before (the slot map was asked there);
    * a reconnect (a reply lost with the old connection; an AOF that kept the delivery but
      not an unsent XACK);
    * a slot-map change: a promoted replica may lack the last XACKs of its old master.

    :meth:`check` is true from any of these until :meth:`recovered`; a recovery that fails
    half-way leaves it true (it is tried again), and a reconnect during a recovery makes it
    true again."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._seen = self._epoch()
        self.due = False

    def _epoch(self) -> tuple[int, int]:
        return self.link.stats.connects, self.link.stats.remaps

    def check(self) -> bool:
        """True while the consumer's pending entries must be claimed before reading on."""
        now = self._epoch()
        if now != self._seen:
            self._seen, self.due = now, True
        return self.due

    def read_failed(self) -> None:
        """A read raised: what it delivered (on any node) may be pending unprocessed."""
        self.due = True

    def recovered(self) -> None:
        """The pending entries seen at the last :meth:`check` were claimed and processed."""
        self.due = False


class GroupReader:
    """A consumer in a consumer group over a changing set of stream keys.

    * :meth:`add_keys` creates the group on new keys (``XGROUP CREATE ... 0 MKSTREAM``: a key
      discovered late is read from its first entry, nothing published before is missed);
    * :meth:`read`: on one Redis XREADGROUP ``>`` BLOCK over every key with one cached packed
      command; on a cluster (where one command cannot span slots) XREADGROUP per key, for the
      keys the publishers' doorbells named (``wake:{family}:{tf}s:{partition}``, see
      :meth:`watch`) and, every ``sweep_s`` and whenever nothing rang for ``block_ms``, for
      every key (a missed doorbell costs latency, never an entry);
    * :meth:`claim` takes over pending entries idle for ``min_idle_ms`` (XAUTOCLAIM) and
      returns them with their delivery counts (XPENDING), so poison entries can be
      dead-lettered after N deliveries;
    * :meth:`ack_commands`, :meth:`dead_letter_commands` build the XACK and the
      move-to-dead-letter commands a caller adds to its own commit.
    """

    def __init__(
        self,
        link: RedisLink,
        group: str,
        consumer: str,
        dead_letter_maxlen: int = 100_000,
        sweep_s: float = 5.0,
    ) -> None:
        self.link = link
        self.group = group
        self.consumer = consumer
        self.keys: list[str] = []
        self._known: set[str] = set()
        self._cached: tuple[int, int, bytes] | None = None
        self._per_key: dict[str, bytes] = {}
        self._per_key_count = 0
        self.dlq_key = f"dlq:{group}"
        self.dead_letter_maxlen = dead_letter_maxlen
        self.dead_lettered = 0
        self.sweep_s = sweep_s
        self.sweeps = 0
        self._next_sweep = 0.0
        self._dirty: set[str] = set()
        self._rang: asyncio.Event | None = None
        self._bell: Subscriber | None = None
        self._bell_task: asyncio.Task[Any] | None = None
        self._bell_channels: frozenset[str] = frozenset()
        self._bell_near: dict[str, str] = {}
        #: keys a doorbell named that this reader does not follow yet: accept(key) decides
        self.accept: Any = None
        self.discovered: list[str] = []
        #: fencing (see :func:`fenced`): ``fence(key) -> (fence key, epoch)`` makes every read
        #: and claim of ``key`` a script that checks the fence first; ``None``: plain commands
        self.fence: Any = None
        #: awaited with keys about to be added (e.g. to raise their fences first)
        self.on_add: Any = None
        #: fence keys that refused a read since the caller last looked (cluster reads go on
        #: with the other keys); the caller hands their partitions over
        self.fenced: set[str] = set()
        self._tops: dict[str, bytes] = {}  # one Redis, fenced: what the group read, per key

    async def add_keys(self, keys: Iterable[str]) -> list[str]:
        new = [k for k in keys if k not in self._known]
        if not new:
            return []
        if self.on_add is not None:
            await self.on_add(new)
        await self._create_groups(new)
        self.keys += new
        self._known.update(new)
        self._cached = None
        return new

    def remove_keys(self, keys: Iterable[str]) -> None:
        """Stop reading these keys (another consumer owns them now)."""
        gone = set(keys) & self._known
        if gone:
            self.keys = [k for k in self.keys if k not in gone]
            self._known -= gone
            self._dirty -= gone
            self._cached = None
            for k in gone:
                self._tops.pop(k, None)

    async def _create_groups(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), 2000):
            chunk = keys[i : i + 2000]
            cmds = [(k, pack("XGROUP", "CREATE", k, self.group, "0", "MKSTREAM")) for k in chunk]
            for k, r in zip(chunk, await self.link.pipeline(cmds), strict=True):
                if isinstance(r, hiredis.ReplyError) and "BUSYGROUP" not in str(r):
                    raise RedisCommandError(f"XGROUP CREATE {k} {self.group}: {r}")

    async def recreate_groups(self) -> None:
        """After NOGROUP (Redis lost its data or a key was deleted): create them again."""
        await self._create_groups(self.keys)

    # --- doorbells (cluster) -----------------------------------------------------------------
    def watch(self, channels: Iterable[str], near: dict[str, str] | None = None) -> None:
        """Listen to these doorbell channels (on a cluster; ignored on one Redis), each on the
        node of the key ``near`` gives for it (a key of its partition: where it rings)."""
        self._bell_channels = frozenset(channels)
        self._bell_near = dict(near or {})
        if self._bell is not None:
            self._bell.set(channels=self._bell_channels, near=self._bell_near)

    def _ring(self, channel: bytes, data: bytes, pattern: bytes | None) -> None:
        for k in data.decode().split(" "):
            if k in self._known:
                self._dirty.add(k)
            elif k and (self.accept is None or self.accept(k)):
                self.discovered.append(k)
        if self._rang is not None:
            self._rang.set()

    def _resubscribed(self) -> None:
        self._next_sweep = 0.0  # doorbells may have rung while we were away: read every key
        if self._rang is not None:
            self._rang.set()

    def _start_bell(self) -> None:
        if self._bell_task is None or self._bell_task.done():
            self._rang = asyncio.Event()
            link = self.link
            sub_link = RedisLink(
                link.url, f"{link.role}.doorbell", link.connect_timeout, backoff_max=1.0
            )
            self._bell = Subscriber(sub_link, self._ring, self._resubscribed)
            self._bell.set(channels=self._bell_channels, near=self._bell_near)
            self._bell_task = asyncio.create_task(self._bell.run())

    def close(self) -> None:
        if self._bell_task is not None:
            self._bell_task.cancel()
            self._bell_task = None
        if self._bell is not None:
            self._bell.link.close()

    # --- reading -------------------------------------------------------------------------------
    def _read_packet(self, count: int, block_ms: int) -> bytes:
        c = self._cached
        if c is None or c[0] != count or c[1] != block_ms:
            args: list[bytes | str | int] = [
                "XREADGROUP",
                "GROUP",
                self.group,
                self.consumer,
                "COUNT",
                count,
            ]
            if block_ms >= 0:
                args += ["BLOCK", block_ms]
            args += ["STREAMS", *self.keys, *([">"] * len(self.keys))]
            c = self._cached = (count, block_ms, pack(*args))
        return c[2]

    async def read(self, count: int = 1000, block_ms: int = 1000) -> list[Entry]:
        """New entries for this consumer (``[]`` after ``block_ms`` without any)."""
        if not self.keys and not (self.link.cluster and self._bell_channels):
            await asyncio.sleep(block_ms / 1000)
            return []
        await self.link.ready()
        if self.link.cluster:
            return await self._read_cluster(count, block_ms)
        if self.fence is not None:
            return await self._read_fenced(count, block_ms)
        (reply,) = await self.link.request(
            self._read_packet(count, block_ms), 1, timeout=max(block_ms, 0) / 1000 + 10.0
        )
        if isinstance(reply, hiredis.ReplyError):
            await self._nogroup(reply)
            return []
        out: list[Entry] = []
        for key, items in reply or ():
            out += _entries(key.decode(), items)
        return out

    async def _read_fenced(self, count: int, block_ms: int) -> list[Entry]:
        """One Redis, fenced. A script cannot block, so: a plain ``XREAD BLOCK`` after what
        the group has read of each key (its last ID, tracked from the replies: race-free, an
        entry that came meanwhile answers at once) says which keys have new entries, and the
        read itself is a script over those keys (every fence checked, then XREADGROUP ``>``).
        Keys whose position is not known yet (just added) are read by the script first; it
        answers their last IDs when it finds nothing."""
        tops = self._tops
        fresh = [k for k in self.keys if k not in tops]
        if fresh:
            got, found = await self._script_read(fresh, count, want_tops=True)
            if found:
                return got
        if block_ms < 0:
            return []
        keys = self.keys
        (woke,) = await self.link.request(
            pack("XREAD", "COUNT", 1, "BLOCK", block_ms, "STREAMS", *keys,
                 *[tops[k] for k in keys]),
            1, timeout=block_ms / 1000 + 10.0,
        )  # fmt: skip
        if not woke or isinstance(woke, hiredis.ReplyError):
            return []
        ready = [k.decode() for k, _ in woke]
        got, found = await self._script_read(ready, count, want_tops=False)
        if not found:  # entries gone meanwhile (dead-lettered): ask their position again
            for k in ready:
                tops.pop(k, None)
        return got

    async def _script_read(
        self, keys: list[str], count: int, want_tops: bool
    ) -> tuple[list[Entry], bool]:
        fences: dict[str, int] = {}
        for k in keys:
            fk, epoch = self.fence(k)
            fences[fk] = epoch
        (reply,) = await self.link.request(
            pack(
                "EVAL", _FENCED_READ_ALL, len(fences) + len(keys), *fences, *keys,
                len(fences), self.group, self.consumer, count, int(want_tops), *fences.values(),
            ),
            1, timeout=10.0,
        )  # fmt: skip
        gone = fenced_keys(reply)
        if gone is not None:
            raise Fenced(gone)
        if isinstance(reply, hiredis.ReplyError):
            await self._nogroup(reply)
            return [], False
        found, data, last = reply
        tops = self._tops
        if want_tops:  # a key that gave entries: what it gave (below); else the stream's top
            tops.update(zip(keys, last, strict=True))
        if not found:
            return [], False
        out: list[Entry] = []
        for key, items in data:
            got = _entries(key.decode(), items)
            if got:
                tops[got[-1].key] = got[-1].id
            out += got
        return out, True

    async def _nogroup(self, reply: Any) -> None:
        if "NOGROUP" in str(reply):
            log.warning(
                "consumer group %s missing (Redis restarted empty?); recreating", self.group
            )
            await self.recreate_groups()
            return
        raise RedisCommandError(str(reply))

    async def _read_cluster(self, count: int, block_ms: int) -> list[Entry]:
        self._start_bell()
        assert self._rang is not None
        now = time.monotonic()
        if not self._dirty and not self.discovered and now < self._next_sweep:
            self._rang.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(block_ms / 1000):
                    await self._rang.wait()
            if not self._dirty and not self.discovered:
                self._next_sweep = 0.0  # quiet for block_ms: look at every key
        if self.discovered:
            new, self.discovered = self.discovered, []
            self._dirty.update(await self.add_keys(dict.fromkeys(new)))
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.sweep_s
            self.sweeps += 1
            keys = list(self.keys)
            self._dirty.clear()
        else:
            keys, self._dirty = list(self._dirty), set()
        return await self.read_keys(keys, count)

    async def read_keys(self, keys: Sequence[str], count: int) -> list[Entry]:
        """XREADGROUP ``>`` of each key (routed; one command per key); a key that filled its
        ``count`` is read again next time."""
        if not keys:
            return []
        if count != self._per_key_count:
            self._per_key, self._per_key_count = {}, count
        cache = self._per_key
        cmds: list[Command] = []
        fence = self.fence
        for k in keys:
            if fence is not None:  # the epoch may change: packed each time
                fk, epoch = fence(k)
                cmds.append((k, pack(
                    "EVAL", _FENCED_READ, 2, fk, k, epoch, self.group, self.consumer, count,
                )))  # fmt: skip
                continue
            p = cache.get(k)
            if p is None:
                p = cache[k] = pack(
                    "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count,
                    "STREAMS", k, ">",
                )  # fmt: skip
            cmds.append((k, p))
        out: list[Entry] = []
        for k, reply in zip(keys, await self.link.pipeline(cmds), strict=True):
            if reply is None:
                continue
            if isinstance(reply, hiredis.ReplyError):
                gone = fenced_keys(reply)
                if gone is not None:  # not ours any more: nothing was delivered
                    self.fenced.update(gone)
                    continue
                await self._nogroup(reply)
                continue
            for _, items in reply:
                got = _entries(k, items)
                if len(got) >= count:
                    self._dirty.add(k)
                out += got
        return out

    async def pending_keys(self, keys: Sequence[str] | None = None) -> dict[str, int]:
        """{key: pending count} of keys with pending entries in this group (any consumer)."""
        keys = list(self.keys if keys is None else keys)
        out: dict[str, int] = {}
        for i in range(0, len(keys), 2000):
            chunk = keys[i : i + 2000]
            replies = await self.link.pipeline(
                [(k, pack("XPENDING", k, self.group)) for k in chunk]
            )
            for k, r in zip(chunk, replies, strict=True):
                if isinstance(r, list) and r and r[0]:
                    out[k] = int(r[0])
        return out

    async def claim(
        self,
        min_idle_ms: int,
        keys: Sequence[str] | None = None,
    ) -> list[tuple[Entry, int]]:
        """Claim pending entries idle ≥ ``min_idle_ms`` (of any consumer, this one included)
        and return them with their delivery counts, in ID order per key."""
        out: list[tuple[Entry, int]] = []
        for key in await self.pending_keys(keys):
            cursor = b"0-0"
            claimed: list[Entry] = []
            while True:
                r = await self._claim_call(
                    key, "XAUTOCLAIM", key, self.group, self.consumer, min_idle_ms, cursor,
                    "COUNT", 1000,
                )  # fmt: skip
                cursor = r[0]
                claimed += _entries(key, r[1])
                if cursor == b"0-0":
                    break
            if not claimed:
                continue
            deliveries: dict[bytes, int] = {}
            lo, hi = claimed[0].id, claimed[-1].id
            rows = await self.link.call(
                "XPENDING", key, self.group, lo, hi, len(claimed) + 10, self.consumer
            )
            for row in rows or ():
                deliveries[row[0]] = int(row[3])
            out += [(e, deliveries.get(e.id, 1)) for e in claimed]
        return out

    async def take_over(self, keys: Sequence[str] | None = None) -> dict[str, dict[bytes, int]]:
        """Make this consumer the owner of every pending entry of the group *without* counting a
        delivery (XAUTOCLAIM ... JUSTID), and return ``{key: {id: deliveries so far}}``.

        A warm start that is killed before it reaches an entry has not tried it: counting the
        take-over as a delivery would send a healthy entry to the dead letters after a few
        crashes (and lose its results). :meth:`claim_ids` counts the real attempts."""
        out: dict[str, dict[bytes, int]] = {}
        for key in await self.pending_keys(keys):
            cursor, ids = b"0-0", []
            while True:
                r = await self._claim_call(
                    key, "XAUTOCLAIM", key, self.group, self.consumer, 0, cursor, "COUNT", 1000,
                    "JUSTID",
                )  # fmt: skip
                cursor = r[0]
                ids += list(r[1])
                if cursor == b"0-0":
                    break
            if not ids:
                continue
            rows = await self.link.call(
                "XPENDING", key, self.group, min(ids, key=id_tuple), max(ids, key=id_tuple),
                len(ids) + 10, self.consumer,
            )  # fmt: skip
            out[key] = {row[0]: int(row[3]) for row in rows or ()}
        return out

    async def claim_ids(self, wanted: dict[str, list[bytes]]) -> list[Entry]:
        """XCLAIM the given pending entries (one round trip): each counts one more delivery —
        call it right before they are processed. Entries deleted meanwhile are dropped from the
        pending list by Redis and not returned."""
        keys = [k for k, ids in wanted.items() if ids]
        if not keys:
            return []
        cmds = [
            self._claim_command(k, "XCLAIM", k, self.group, self.consumer, 0, *wanted[k])
            for k in keys
        ]
        out: list[Entry] = []
        for k, r in zip(keys, await self.link.pipeline(cmds), strict=True):
            r = self._claimed(r)
            if isinstance(r, hiredis.ReplyError):
                raise RedisCommandError(f"XCLAIM {k} {self.group}: {r}")
            out += _entries(k, r)
        return out

    def _claim_command(self, key: str, *args: bytes | str | int) -> Command:
        if self.fence is None:
            return key, pack(*args)
        fk, epoch = self.fence(key)
        return fenced(fk, epoch, [args])

    def _claimed(self, reply: Any) -> Any:
        """The reply of a (maybe fenced) claim: raises :class:`Fenced` when refused."""
        if self.fence is None:
            return reply
        gone = fenced_keys(reply)
        if gone is not None:
            raise Fenced(gone)
        return reply[0] if isinstance(reply, list) else reply

    async def _claim_call(self, key: str, *args: bytes | str | int) -> Any:
        (reply,) = await self.link.pipeline([self._claim_command(key, *args)])
        reply = self._claimed(reply)
        if isinstance(reply, hiredis.ReplyError):
            raise RedisCommandError(str(reply))
        return reply

    def ack_commands(self, acks: dict[str, list[bytes]]) -> list[Command]:
        """XACK commands (one per key) for ``{key: [ids]}``."""
        return [(k, pack("XACK", k, self.group, *ids)) for k, ids in acks.items() if ids]

    def ack_packet(self, acks: dict[str, list[bytes]]) -> list[bytes]:
        """The XACK commands of :meth:`ack_commands` as packed bytes (one Redis)."""
        return [c for _, c in self.ack_commands(acks)]

    def dead_letter_commands(self, entry: Entry, reason: str, deliveries: int) -> list[Command]:
        """Move ``entry`` to the dead-letter stream: XADD ``dlq:{group}`` with the reason, XACK
        it, and XDEL it from its stream (so a replay never meets it again). On a cluster the
        dead-letter stream lives elsewhere: send the first command before the others."""
        self.dead_lettered += 1
        return [
            (
                self.dlq_key,
                pack(
                    "XADD",
                    self.dlq_key,
                    "MAXLEN",
                    "~",
                    self.dead_letter_maxlen,
                    "*",
                    "stream",
                    entry.key,
                    "id",
                    entry.id,
                    "reason",
                    reason,
                    "deliveries",
                    deliveries,
                    "consumer",
                    self.consumer,
                    "ts_ns",
                    time.time_ns(),
                    "payload",
                    entry.payload or b"",
                ),
            ),
            *self._move_out(entry),
        ]

    def _move_out(self, entry: Entry) -> list[Command]:
        """XACK + XDEL of a dead-lettered entry (one fenced script when fencing is on)."""
        move: list[list[bytes | str | int]] = [
            ["XACK", entry.key, self.group, entry.id],
            ["XDEL", entry.key, entry.id],
        ]
        if self.fence is not None:
            fk, epoch = self.fence(entry.key)
            return [fenced(fk, epoch, move)]
        return [(entry.key, pack(*c)) for c in move]

    def dead_letter_packet(self, entry: Entry, reason: str, deliveries: int) -> list[bytes]:
        """:meth:`dead_letter_commands` as packed bytes (one Redis)."""
        return [c for _, c in self.dead_letter_commands(entry, reason, deliveries)]


async def xrange(
    link: RedisLink,
    keys_starts: Sequence[tuple[str, str]],
    count: int,
) -> dict[str, list[Entry]]:
    """XRANGE of many keys in one round trip per node: ``[(key, start)]`` with ``start`` as
    Redis takes it (``-`` or ``(ID`` for exclusive); up to ``count`` entries each."""
    if not keys_starts:
        return {}
    cmds = [(k, pack("XRANGE", k, s, "+", "COUNT", count)) for k, s in keys_starts]
    replies = await link.pipeline(cmds)
    out: dict[str, list[Entry]] = {}
    for (k, _), r in zip(keys_starts, replies, strict=True):
        if isinstance(r, hiredis.ReplyError):
            raise RedisCommandError(f"XRANGE {k}: {r}")
        out[k] = _entries(k, r)
    return out


async def discover(link: RedisLink, registries: Iterable[str]) -> list[str]:
    """The stream keys registered in the discovery SETs ``registries`` (sorted)."""
    regs = list(registries)
    if not regs:
        return []
    replies = await link.pipeline([(r, pack("SMEMBERS", r)) for r in regs])
    keys: set[str] = set()
    for r in replies:
        if isinstance(r, list):
            keys.update(x.decode() for x in r)
    return sorted(keys)


async def group_backlog(link: RedisLink, keys: Sequence[str], group: str) -> tuple[int, int]:
    """(pending, lag) of ``group`` summed over ``keys``: entries delivered but not acknowledged,
    and entries after the group's last-delivered ID (XINFO GROUPS, checked with XRANGE where
    Redis reports a lag)."""
    pending = lag = 0
    behind: list[tuple[str, bytes, int]] = []  # (key, last-delivered-id, reported lag)
    for i in range(0, len(keys), 2000):
        chunk = keys[i : i + 2000]
        replies = await link.pipeline([(k, pack("XINFO", "GROUPS", k)) for k in chunk])
        for key, r in zip(chunk, replies, strict=True):
            if not isinstance(r, list):
                continue
            for g in r:
                info = dict(zip(g[::2], g[1::2], strict=False))
                if info.get(b"name") == group.encode():
                    pending += int(info.get(b"pending") or 0)
                    lag_v = int(info.get(b"lag") or 0)
                    if lag_v:
                        behind.append((key, info[b"last-delivered-id"], lag_v))
    # Redis's lag is an estimate from counters an AOF reload can leave off (seen: lag 20 with
    # the last entry delivered); what is truly undelivered is what lies after the group's cursor
    for i in range(0, len(behind), 2000):
        chunk_b = behind[i : i + 2000]
        replies = await link.pipeline(
            [(k, pack("XRANGE", k, b"(" + last, "+", "COUNT", n)) for k, last, n in chunk_b]
        )
        lag += sum(len(r) for r in replies if isinstance(r, list))
    return pending, lag


# --- entries trimmed before a group read them -----------------------------------------------------


@dataclass
class Trimmed:
    """Entries of ``key`` removed (``MAXLEN ~`` trimming) before ``group`` read them.

    ``lost`` is exact when ``exact``; otherwise (the group's read counter was reset by
    ``XGROUP SETID`` and nothing was read since) it is a lower bound, 0 when unknown."""

    key: str
    group: str
    lost: int
    exact: bool
    last_delivered: str
    first: str

    def message(self, service: str) -> str:
        """The one log line (and system-event message) for this loss."""
        if self.exact:
            n = f"{self.lost}"
        else:
            n = f"at least {self.lost}" if self.lost else "an unknown number of (maybe 0)"
        return (
            f"{service}: stream {self.key} was trimmed before consumer group {self.group} read "
            f"it: {n} entries lost (the group had read up to {self.last_delivered}, the "
            f"stream now starts at {self.first}); the consumer was behind for longer than "
            f"the stream's retention (redis.retention_s)"
        )


# XGROUP SETID that keeps the group's read counter (entries-read) exact: the entries up to and
# including the id = entries ever added − the entries after it, counted in one atomic step
# (producers append concurrently). Exact only while every entry after the id is still there:
# trimming removes from the head, so an entry ≤ id left proves none after it went, and no XDEL
# may have removed one after it; otherwise plain SETID (counter unknown, as Redis would leave
# it). Returns 1 when the counter was set. XINFO and XRANGE are read-only: allowed in a script.
_SETID_COUNTED = """
local key, group, id = KEYS[1], ARGV[1], ARGV[2]
if KEYS[2] and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return redis.error_reply('FENCED ' .. KEYS[2])
end
local info = redis.call('XINFO', 'STREAM', key)
local s = {}
for i = 1, #info, 2 do s[info[i]] = info[i + 1] end
local function after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
local added = s['entries-added']
local deleted = s['max-deleted-entry-id']
if added == nil or (deleted and after(deleted, id))
    or (added > s['length'] and #redis.call('XRANGE', key, '-', id, 'COUNT', 1) == 0) then
  redis.call('XGROUP', 'SETID', key, group, id)
  return 0
end
local n, from = 0, '(' .. id
while true do
  local got = redis.call('XRANGE', key, from, '+', 'COUNT', 1000)
  n = n + #got
  if #got < 1000 then break end
  from = '(' .. got[#got][1]
end
redis.call('XGROUP', 'SETID', key, group, id, 'ENTRIESREAD', added - n)
return 1
"""


def set_group_cursor(
    key: str, group: str, entry_id: bytes | str, fence: tuple[str, int] | None = None
) -> Command:
    """``XGROUP SETID key group entry_id`` with ``ENTRIESREAD`` set to the entries up to and
    including ``entry_id`` (trimmed ones too), so :class:`TrimWatch` can still count exactly
    what is trimmed before the group reads on. One ``EVAL`` on ``key`` (routed to its node on
    a cluster); replies 1, or 0 when the count cannot be known (the cursor is set anyway).
    With a ``fence`` (key, epoch: see :func:`fenced`) nothing is done unless it holds."""
    if fence is None:
        return key, pack("EVAL", _SETID_COUNTED, 1, key, group, entry_id)
    return key, pack("EVAL", _SETID_COUNTED, 2, key, fence[0], group, entry_id, fence[1])


def _fields(reply: Any) -> dict[bytes, Any]:
    return dict(zip(reply[::2], reply[1::2], strict=False)) if isinstance(reply, list) else {}


class TrimWatch:
    """Detects, for one consumer group, stream entries trimmed away before the group read them
    (a consumer down for longer than the retention), and counts each loss once.

    :meth:`check` costs one ``XINFO GROUPS`` per key (pipelined, one round trip per node) and
    an ``XINFO STREAM`` only for the keys whose group is behind (lag ≠ 0 or unknown) — call it
    when a consumer (re)joins, before it moves its group's cursor, and on a periodic sweep,
    never per read.

    With Redis 7's counters: a group that read up to ``last-delivered-id`` L has read
    ``entries-read`` R entries; a stream that ever had ``entries-added`` A entries and now
    holds ``length`` N starting at F has removed A − N of them. When F > L (or the stream is
    empty and its top is past L), every remaining entry is unread, so A − N − R entries were
    removed unread. R is unknown (nil) after ``XGROUP CREATE … 0`` (then R = 0 when L is
    ``0-0``) or a plain ``XGROUP SETID`` until the group reads again (use
    :func:`set_group_cursor`): the loss is then counted only from the removals seen after the
    first detection (a lower bound)."""

    def __init__(self, group: str) -> None:
        self.group = group
        #: entries lost per stream key (a counter; a key appears at its first detection)
        self.lost: dict[str, int] = {}
        self.detected = 0  # detections (log lines)
        # key → removals (A − N) already accounted for while its gap persists
        self._upto: dict[str, int] = {}

    async def check(self, link: RedisLink, keys: Sequence[str]) -> list[Trimmed]:
        """New losses on ``keys`` since the last check (each counted in :attr:`lost`)."""
        group = self.group.encode()
        behind: list[tuple[str, dict[bytes, Any]]] = []
        for i in range(0, len(keys), 2000):
            chunk = keys[i : i + 2000]
            replies = await link.pipeline([(k, pack("XINFO", "GROUPS", k)) for k in chunk])
            for key, r in zip(chunk, replies, strict=True):
                for g in r if isinstance(r, list) else ():
                    info = _fields(g)
                    if info.get(b"name") == group:
                        if info.get(b"lag") != 0 or info.get(b"entries-read") is None:
                            behind.append((key, info))
                        else:
                            self._upto.pop(key, None)  # caught up: no gap
        out: list[Trimmed] = []
        for i in range(0, len(behind), 2000):
            chunk_b = behind[i : i + 2000]
            replies = await link.pipeline([(k, pack("XINFO", "STREAM", k)) for k, _ in chunk_b])
            for (key, g), r in zip(chunk_b, replies, strict=True):
                found = self._judge(key, g, _fields(r)) if isinstance(r, list) else None
                if found is not None:
                    out.append(found)
        return out

    def _judge(self, key: str, g: dict[bytes, Any], s: dict[bytes, Any]) -> Trimmed | None:
        last = g.get(b"last-delivered-id") or b"0-0"
        first_entry = s.get(b"first-entry")
        first = first_entry[0] if first_entry else None
        top = s.get(b"last-generated-id") or b"0-0"
        added = int(s.get(b"entries-added") or 0)
        removed = added - int(s.get(b"length") or 0)
        gap = id_tuple(first) > id_tuple(last) if first else id_tuple(top) > id_tuple(last)
        if not gap or removed <= 0:
            self._upto.pop(key, None)
            return None
        read = g.get(b"entries-read")
        seen = self._upto.get(key)
        exact = True
        if read is not None:
            base = int(read)
        elif last == b"0-0":
            base = 0
        else:  # the read counter was reset (SETID): only what is removed from now on counts
            base, exact = removed if seen is None else seen, seen is not None
        if seen is not None:
            base = max(base, seen)
        self._upto[key] = max(removed, base)
        lost = removed - base
        if lost <= 0 and (exact or seen is not None):
            return None
        # a key with a detection is on /metrics even when the count is unknown (0 so far)
        self.lost[key] = self.lost.get(key, 0) + max(lost, 0)
        self.detected += 1
        start = (first or top).decode()
        return Trimmed(key, self.group, max(lost, 0), exact, last.decode(), start)
