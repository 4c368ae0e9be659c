"""``mandi service indengine``: confirmed candles from Redis → indicators → Redis + SQLite.

The same :class:`~mandi.indicators.IndicatorEngine` as ``mandi run`` (``process`` for confirmed
candles, ``peek`` for forming ones), behind a consumer group shared by any number of indengine
processes:

* **Partitions.** The instruments are split into ``redis.partitions`` partitions (by hash slot,
  :func:`~mandi.bus.redis.token_partition`); the live members of group ``indengine`` share
  them (:mod:`.partitions`: rendezvous hashing, one lease per partition). Each partition has
  its own engine and snapshot (``ind:snapshot:engine:{k}of{P}``; ``ind:snapshot:engine`` when
  ``P`` = 1), so a partition moves between processes with its state: a member that joins
  takes its share from the others (each commits, snapshots and releases it first), the
  partitions of a member that dies are taken over when its leases expire.
* **Live.** XREADGROUP ``>`` over the candle streams of the owned partitions (on a cluster:
  per key, woken by the publishers' doorbells) → ``process`` → the values go to Redis at once
  (``ind:{name}:{tf}s:...`` XADD with the bucket's ID + SET latest + PUBLISH: idempotent, so
  they need not wait for anything) → the values are committed to SQLite (``indicator_values``
  upsert, off the event loop, several batches per transaction under load) → then the candles
  are acknowledged (XACK) together with any due snapshot. A candle is acknowledged only once
  its results are in Redis and SQLite; a snapshot is written only after everything it reflects
  is.
* **Previews.** Forming candles on Pub/Sub ``pub:candle:{tf}s:*`` → ``peek`` → PUBLISH
  ``pub:ind:...`` only.
* **Warm start (the seed's), per partition.** Load the partition's snapshot (engine state +
  the stream ID it reflects for every stream), falling back to the newest SQLite
  ``indicator_snapshots`` row of the partition; take over the group's pending entries of the
  partition's streams and move those delivered ``redis.dead_letter_after`` times to
  ``dlq:indengine``; replay every stream after the snapshot's ID (XRANGE), committing the
  results again (idempotent: upserts and explicit stream IDs), then acknowledge the pending
  entries and go live. A candle the engine has already seen is rejected as stale, so nothing is
  counted twice and nothing acknowledged is lost.
* **Bad input.** An entry without a payload, one that does not decode, or one that is not a
  confirmed candle of its stream's series is moved to the dead-letter stream with the reason.
* **Redis down / fail-over.** Reads and writes retry with backoff; values not yet written are
  kept and written again (to the replica that took over, on a cluster). With
  ``redis.wait_replicas`` a write counts only once replicated (``WAIT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sqlite3
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import numpy as np
from hiredis import ReplyError

from mandi.bus.codec import codec
from mandi.bus.redis import (
    ID_NOT_NEWER,
    BatchBuilder,
    Command,
    Commands,
    Entry,
    Fenced,
    GroupReader,
    PendingWatch,
    RedisCommandError,
    RedisLink,
    RedisUnavailable,
    StreamPublisher,
    Subscriber,
    TrimWatch,
    discover,
    fence_take,
    fenced,
    fenced_keys,
    fenced_values_head,
    first_token,
    group_backlog,
    id_tuple,
    key_partition,
    key_token,
    latest_key,
    parse_candle_key,
    partition_tag,
    set_group_cursor,
    stream_id,
    tagged,
    token_partition,
    wake_channel,
    xrange,
)
from mandi.config import AppConfig
from mandi.indicators import IndicatorEngine, SnapshotError
from mandi.model.events import SystemEvent
from mandi.model.market import Candle, IndicatorValue
from mandi.services.distributed.health import (
    HealthServer,
    Sample,
    ServiceState,
    link_samples,
    publisher_samples,
    trim_samples,
)
from mandi.services.distributed.partitions import LeaseKeeper, Membership
from mandi.services.indicators import indicator_topic
from mandi.stores.indicators import latest_snapshot, tune_for_values, write_values_and_snapshots

log = logging.getLogger(__name__)

SNAPSHOT_KEY = "ind:snapshot:engine"
GROUP = "indengine"
MAX_INFLIGHT = 8  # batches whose values are out but whose SQLite commit + XACK are not
SMALL_BATCH = 64  # fewer candles of a partition: one by one (the columns cost ~0.1 ms a call)
STAGES = ("process", "send", "sqlite", "ack")
# values sent at most about this many commands per transaction: a single Redis runs a
# transaction without serving anybody else (heartbeats, other services) meanwhile
SEND_CHUNK = 10_000  # timed per batch (see IndEngineService.timings)


def _chunks(cmds: list[Command | Commands], limit: int) -> Iterable[list[Command | Commands]]:
    """``cmds`` in consecutive pieces of about ``limit`` commands (an entry of several
    commands is never split)."""
    start = size = 0
    for i, c in enumerate(cmds):
        size += c[2] if len(c) == 3 else 1
        if size >= limit:
            yield cmds[start : i + 1]
            start, size = i + 1, 0
    if start < len(cmds):
        yield cmds[start:]


class RedisSnapshot(msgspec.Struct):
    """The value of a partition's snapshot key: the engine state and the last stream ID it
    reflects for every candle stream of the partition."""

    version: int
    specs: str
    ts_ns: int
    streams: dict[str, str]
    engine: bytes


_snap_enc = msgspec.msgpack.Encoder()
_snap_dec = msgspec.msgpack.Decoder(RedisSnapshot)


def snapshot_key(partition: int, partitions: int, cluster: bool = False) -> str:
    """``ind:snapshot:engine`` (one partition) or ``ind:snapshot:engine:{k}of{P}``; on a
    cluster with the first token of the partition as its hash tag
    (``ind:snapshot:engine:3of16:{181}``), so the snapshot lives on the master of the
    partition's instruments: a master restarted from its AOF then loses the newest values and
    the snapshot that counts them together, never one without the other."""
    if partitions == 1:
        return SNAPSHOT_KEY
    key = f"{SNAPSHOT_KEY}:{partition}of{partitions}"
    return f"{key}:{partition_tag(partition, partitions)}" if cluster else key


class Partition:
    """One partition this process owns: its engine and the stream positions it reflects."""

    def __init__(
        self, index: int, total: int, specs: Any, specs_key: str, cluster: bool = False
    ) -> None:
        self.index = index
        self.engine = IndicatorEngine(specs)
        self.last_ids: dict[str, bytes] = {}
        self.snapshot_key = snapshot_key(index, total, cluster)
        # the label of its SQLite fallback snapshots (the whole engine's: the specs alone)
        self.sqlite_label = specs_key if total == 1 else f"{specs_key}#{index}of{total}"
        self.last_snapshot = time.monotonic()
        self.last_sqlite_snapshot: float | None = None


_F64 = struct.Struct(">Bd")


class ValueWriter:
    """Indicator values straight from the engine's columns to their stream commands and SQLite
    rows: payloads are assembled from cached bytes exactly as the codec encodes an
    :class:`~mandi.model.market.IndicatorValue` (checked at start: :attr:`exact`; the general
    path is used otherwise), and each value's XADD + PUBLISH is one cached-prefix blob."""

    def __init__(self, names: tuple[str, ...], builder: BatchBuilder, streams_on: bool) -> None:
        enc = msgspec.msgpack.encode
        self.names = names
        self.builder = builder
        self.streams_on = streams_on
        self._mid = [enc("name") + enc(n) + enc("value") for n in names]
        self._tail = enc("confirmed") + enc(True)
        self._series: dict[tuple[int, str, int], tuple[bytes, list[tuple[str, Any, Any]]]] = {}
        #: ``fence(token) -> (fence key, epoch)``: each candle's values are one fenced script
        #: (written only while this member's epoch of the partition holds); None: plain
        self.fence: Any = None
        self._cluster = builder.cluster
        sample = IndicatorValue(256265, "NSE", 60, 1_776_052_500 * 10**9, names[0], 0.1, True)
        self.exact = bool(names) and self.payload(
            self._head(256265, "NSE", 60), enc(sample.bucket), 0, 0.1
        ) == codec.encode(sample)

    @staticmethod
    def _head(token: int, exchange: str, tf: int) -> bytes:
        enc = msgspec.msgpack.encode
        return b"".join(
            [b"\x88", enc("type"), enc("IndicatorValue"), enc("token"), enc(token),
             enc("exchange"), enc(exchange), enc("timeframe"), enc(tf), enc("bucket")]
        )  # fmt: skip

    def payload(self, head: bytes, bucket: bytes, k: int, value: float) -> bytes:
        return b"".join([head, bucket, self._mid[k], _F64.pack(0xCB, value), self._tail])

    def _of(self, token: int, exchange: str, tf: int) -> tuple[bytes, list[tuple[str, Any, Any]]]:
        b = self.builder
        if self._cluster != b.cluster:
            self._series.clear()
            self._cluster = b.cluster
        s = self._series.get((token, exchange, tf))
        if s is None:
            per_name = []
            for n in self.names:
                topic = f"ind:{n}:{tf}s:{exchange}:{token}"
                ki = b.info(topic)
                per_name.append((topic, ki, ki.key if b.cluster else None))
            s = self._series[(token, exchange, tf)] = (self._head(token, exchange, tf), per_name)
        return s

    def emit(
        self,
        token: int,
        exchange: str,
        tf: int,
        bucket: int,
        row: list[float],
        batch: _Batch,
        store: bool,
    ) -> int:
        """Commands (and rows) of one candle's values; returns how many (NaN: warming up).

        The values of one candle are one routed blob: their keys share the instrument's hash
        tag (one slot on a cluster), so routing and reply bookkeeping cost once per candle."""
        head, per_name = self._of(token, exchange, tf)
        bb = msgspec.msgpack.encode(bucket)
        eid = b"%d-0" % (bucket // 1_000_000)
        id_field = b"$%d\r\n%s\r\n$1\r\nd\r\n" % (len(eid), eid)
        newest, rows, names = batch.newest, batch.rows, self.names
        mid, tail, pack_f, streams_on = self._mid, self._tail, _F64.pack, self.streams_on
        fence = self.fence
        if fence is not None:
            return self._emit_fenced(
                fence, (token, exchange, tf, bucket), per_name, head, eid, row, batch, store
            )
        parts: list[bytes] = []
        route: str | None = None
        n = 0
        for k, v in enumerate(row):
            if v != v:
                continue
            payload = b"".join([head, bb, mid[k], pack_f(0xCB, v), tail])
            topic, ki, route = per_name[k]
            size = len(payload)
            if streams_on:
                parts.append(
                    b"%s%s$%d\r\n%s\r\n%s$%d\r\n%s\r\n"
                    % (ki.xadd, id_field, size, payload, ki.pub, size, payload)
                )
                newest[topic] = payload
                route = ki.key
            else:
                parts.append(b"%s$%d\r\n%s\r\n" % (ki.pub, size, payload))
            if store:
                rows.append((token, exchange, tf, bucket, names[k], v))
            n += 1
        if n:
            batch.cmds.append((route, b"".join(parts), 2 * n if streams_on else n))
        return n

    def _emit_fenced(
        self,
        fence: Any,
        series: tuple[int, str, int, int],
        per_name: list[tuple[str, Any, Any]],
        head: bytes,
        eid: bytes,
        row: list[float],
        batch: _Batch,
        store: bool,
    ) -> int:
        """:meth:`emit` as one fenced script (see :func:`fenced_values_head`): written only
        while this member's epoch of the instrument's partition holds."""
        token, exchange, tf, bucket = series
        newest, rows, names, streams_on = batch.newest, batch.rows, self.names, self.streams_on
        mid, tail, pack_f = self._mid, self._tail, _F64.pack
        bb = msgspec.msgpack.encode(bucket)
        parts: list[bytes] = []
        topic, ki = "", None
        for k, v in enumerate(row):
            if v != v:
                continue
            payload = b"".join([head, bb, mid[k], pack_f(0xCB, v), tail])
            topic, ki, _ = per_name[k]
            parts.append(b"%s$%d\r\n%s\r\n" % (ki.fenced, len(payload), payload))
            if streams_on:
                newest[topic] = payload
            if store:
                rows.append((token, exchange, tf, bucket, names[k], v))
        if ki is not None:
            fk, epoch = fence(token)
            sharded = ki.key != topic  # tagged: a cluster's sharded channel
            maxlen = ki.maxlen if streams_on else 0
            head = fenced_values_head(fk, epoch, sharded, maxlen, eid, len(parts))
            batch.cmds.append((ki.key, head + b"".join(parts), 1))
        return len(parts)


class _Batch:
    """The output of processing some entries: values out now, rows and acks after."""

    __slots__ = (
        "acks",
        "candles",
        "cmds",
        "dead",
        "dlq",
        "newest",
        "rows",
        "snapshots",
        "values",
    )

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.cmds: list[Command | Commands] = []  # value XADD + PUBLISH
        self.newest: dict[str, bytes] = {}  # indicator topic -> newest payload (one SET each)
        self.values = 0
        self.acks: dict[str, list[bytes]] = {}
        self.dlq: list[Command] = []  # dead-letter XADDs: written before anything else
        self.dead: list[Command] = []  # then the XACK + XDEL of the dead-lettered entries
        self.candles = 0
        # (partition, Redis snapshot blob, SQLite copy or None), written with the acks
        self.snapshots: list[tuple[Partition, bytes, bytes | None]] = []

    def empty(self) -> bool:
        return not (self.rows or self.cmds or self.acks or self.dlq or self.snapshots)


def load_kernels(specs: Any) -> None:
    """Run the engine's compiled paths once on a throwaway engine, so loading (or compiling)
    them happens before the service reports ready, not in its first live batch (a stall of
    about a second that every candle queued behind it would wait out)."""
    engine = IndicatorEngine(specs)
    c = Candle(1, "NSE", 60, 60 * 10**9, 100, 100, 100, 100, 1, 0, 1, True)
    engine.process_many([c])
    engine.process(msgspec.structs.replace(c, bucket=2 * c.bucket))
    engine.restore(engine.snapshot())


class IndEngineService:
    """The indengine service (see the module documentation)."""

    def __init__(
        self,
        cfg: AppConfig,
        consumer: str | None = None,
        port: int | None = None,
    ) -> None:
        rc = cfg.redis
        self.cfg = cfg
        self.service = "indengine"
        self.state = ServiceState(self.service)
        # stable across restarts: a restarted member takes its own partitions back at once
        self.consumer = consumer or rc.consumer or f"{self.service}-{socket.gethostname()}"
        self.nparts = rc.partitions
        self.specs_key = ",".join(IndicatorEngine(cfg.indicators.specs).specs)
        self.timeframes = tuple(cfg.indicators.timeframes)
        self.link = self._link("")
        self._aux = self._link(".aux")
        self._writer = self._link(".values")
        self._members_link = self._link(".members")
        self.reader = GroupReader(self.link, GROUP, self.consumer, sweep_s=rc.sweep_s)
        self.reader.accept = self.mine
        self.reader.fence = self.fence_of  # every read and claim checks the partition's lease
        self.reader.on_add = self._fence_new_keys
        self._recover_due = False  # claim pending entries before reading on (new keys fenced)
        self._warming: int | None = None  # the partition a warm start is taking
        self.trims = TrimWatch(GROUP)  # candles trimmed before the group read them
        self.builder = BatchBuilder(rc.retention_s, rc.latest_ttl_s)
        names = IndicatorEngine(cfg.indicators.specs).names
        self.values = ValueWriter(names, self.builder, rc.indicator_streams)
        self.values.fence = self.value_fence
        self._fence_bytes: dict[tuple[int, bool], bytes] = {}
        self._name_index = {n: i for i, n in enumerate(names)}
        self.previews = StreamPublisher(self._link(".previews"), max_buffer=rc.buffer_max)
        self.membership = Membership(
            self._members_link, GROUP, self.consumer, self.nparts, rc.lease_ms
        )
        self.partitions: dict[int, Partition] = {}
        self._leased: set[int] = set()  # leases held: partitions owned or about to be taken
        self._keeper: LeaseKeeper | None = None
        self._wanted: set[int] = set()
        self._lost: set[int] = set()
        self._part_of: dict[str, int | None] = {}
        self.port = cfg.services.indengine_port if port is None else port
        self.con: sqlite3.Connection | None = None
        # store.clickhouse_url: the values in ClickHouse too (acknowledged once inserted)
        self.clickhouse: Any = None
        if cfg.store.clickhouse_url.strip() and cfg.indicators.store_values:
            from mandi.services.clickhouse import open_clickhouse_sink
            from mandi.stores.clickhouse import ClickHouseWriter

            open_clickhouse_sink(cfg)  # a bad URL or a missing driver: one line, before starting
            self.clickhouse = ClickHouseWriter(
                cfg.store.clickhouse_url,
                flush_interval=cfg.store.flush_interval_ms / 1000,
                flush_items=cfg.store.flush_items,
                max_pending_rows=cfg.store.max_pending_rows,
            )
        self.stop = asyncio.Event()
        self.stats: Counter[str] = Counter()
        self.dead_reasons: Counter[str] = Counter()
        self.last_commit_ms = 0.0
        self.backlog = (0, 0)
        self._encode = codec.encode
        self._streams_on = rc.indicator_streams
        self._reg_epoch = -1
        self._outq: asyncio.Queue[_Batch] | None = None  # processed: values to send
        self._inflight: asyncio.Queue[_Batch] | None = None  # values sent: SQLite, XACK
        self._acker: asyncio.Task[Any] | None = None
        self._sender: asyncio.Task[Any] | None = None
        self._acker_error: BaseException | None = None
        self._all_keys: list[str] = []
        self.failed = ""  # why the service stopped on its own (exit status 1)
        # seconds per live batch and stage, the last 10,000 (quantiles on /metrics): where a
        # candle's time goes between its read and its values' publication, and behind it
        self.timings: dict[str, deque[float]] = {s: deque(maxlen=10_000) for s in STAGES}

    def _link(self, suffix: str) -> RedisLink:
        rc = self.cfg.redis
        return RedisLink(
            rc.url,
            f"{self.service}{suffix}",
            rc.connect_timeout_s,
            backoff_max=rc.backoff_max_s,
            wait_replicas=rc.wait_replicas,
            wait_timeout_ms=rc.wait_timeout_ms,
        )

    # --- keys ----------------------------------------------------------------------------------
    def partition_of(self, key: str) -> int | None:
        p = self._part_of.get(key, -1)
        if p == -1:
            parsed = parse_candle_key(key)
            p = None
            if parsed is not None and parsed[2] in self.timeframes:
                p = key_partition(key, self.nparts)
            self._part_of[key] = p
        return p

    def mine(self, key: str) -> bool:
        p = self.partition_of(key)
        return p is not None and p in self.partitions

    # --- fencing (see mandi.bus.redis: fence keys, epochs) ------------------------------------
    def _fence_name(self, token: int | None, partition: int | None) -> str:
        """The fence key of an instrument's keys: on a cluster its own (``fence:indengine:
        {token}``, in the slot of its keys), on one Redis its partition's
        (``fence:indengine:3``)."""
        return f"fence:{GROUP}:{{{token}}}" if self.link.cluster else f"fence:{GROUP}:{partition}"

    def fence_key(self, key: str) -> str:
        """The fence key guarding ``key`` (see :meth:`_fence_name`)."""
        return self._fence_name(key_token(key), self.partition_of(key))

    def _snapshot_fence(self, part: Partition) -> str:
        # on a cluster the snapshot key's tag is the partition's first token
        return self._fence_name(first_token(part.index, self.nparts), part.index)

    def fence_of(self, key: str) -> tuple[str, int]:
        """(fence key, this member's epoch of the key's partition; 0 — never a fence's value —
        when it holds no lease there)."""
        p = self.partition_of(key)
        epoch = self.membership.epochs.get(p, 0) if p is not None else 0
        return self._fence_name(key_token(key), p), epoch

    def value_fence(self, token: int) -> tuple[bytes, int]:
        """(fence key, epoch) of an instrument's values (see :meth:`_fence_name`)."""
        p = token_partition(token, self.nparts)
        cluster = bool(self.link.cluster)
        fk = self._fence_bytes.get((token, cluster))
        if fk is None:
            fk = self._fence_bytes[(token, cluster)] = self._fence_name(token, p).encode()
        return fk, self.membership.epochs.get(p, 0)

    def _fenced_latest(self, newest: dict[str, bytes]) -> list[Command]:
        """The latest-value SETs, in one fenced script per fence key (see :meth:`value_fence`)."""
        ttl = self.cfg.redis.latest_ttl_s
        by_fence: dict[tuple[bytes, int], list[list[bytes | str | int]]] = {}
        for topic, payload in newest.items():
            key = self.builder.info(topic).key
            fence = self.value_fence(key_token(topic) or 0)
            by_fence.setdefault(fence, []).append(["SET", latest_key(key), payload, "EX", ttl])
        return [fenced(fk.decode(), epoch, sets) for (fk, epoch), sets in by_fence.items()]

    def _partition_of_fence(self, fence_key: str) -> int:
        n = int(fence_key.rpartition(":")[2].strip("{}"))
        return token_partition(n, self.nparts) if "{" in fence_key else n

    def _fenced_off(self, keys: Iterable[str]) -> None:
        """Fence keys refused us: their partitions are another member's (we stalled past the
        lease). Handed over (as lost) before anything else is read."""
        parts = {self._partition_of_fence(k) for k in keys} & set(self.partitions)
        if parts:
            self.stats["fenced"] += 1
            log.warning(
                "%s: fenced off partition(s) %s: a newer owner took them (this member stalled "
                "past its lease)",
                self.service,
                sorted(parts),
            )
            self._lost |= parts

    async def _take_fences(self, fences: Iterable[str], epoch: int) -> None:
        """Raise these fence keys to ``epoch`` before touching what they guard; a newer epoch
        found there means we are stale ourselves: :class:`Fenced`."""
        fs = sorted(set(fences))
        for i in range(0, len(fs), 2000):
            chunk = fs[i : i + 2000]
            replies = await self._send([fence_take(f, epoch) for f in chunk])
            newer = [f for f, r in zip(chunk, replies, strict=True) if r != 0]
            if newer:
                raise Fenced(newer)

    async def _fence_new_keys(self, keys: list[str]) -> None:
        """Keys found after their partition was taken: raise their fences (a new instrument on
        a cluster has its own), then claim what a stale member may have read of them first."""
        by_epoch: dict[int, list[str]] = {}
        for k in keys:
            if self.partition_of(k) == self._warming:
                continue  # its warm start raised the fences and takes over its pending entries
            fk, epoch = self.fence_of(k)
            if epoch:
                by_epoch.setdefault(epoch, []).append(fk)
        if not by_epoch:
            return
        try:
            for epoch, fs in by_epoch.items():
                await self._take_fences(fs, epoch)
        except Fenced as e:
            self._fenced_off(e.keys)
        self._recover_due = True

    def position(self) -> dict[tuple[int, str, int], int]:
        """``{(token, exchange, timeframe): last processed bucket}`` over owned partitions."""
        out: dict[tuple[int, str, int], int] = {}
        for part in self.partitions.values():
            out.update(part.engine.position())
        return out

    async def discover_streams(self) -> list[str]:
        self._all_keys = await discover(
            self.link, [f"streams:candle:{tf}s" for tf in self.timeframes]
        )
        return [k for k in self._all_keys if self.partition_of(k) is not None]

    def _show_partitions(self) -> None:
        self.state.detail["partitions"] = sorted(self.partitions)

    def _keys_of(self, partition: int) -> list[str]:
        return [k for k in self._all_keys if self.partition_of(k) == partition]

    def _doorbells(self) -> list[str]:
        return [
            wake_channel(f"streams:candle:{tf}s", p)
            for tf in self.timeframes
            for p in self.partitions
        ]

    def _doorbell_nodes(self) -> dict[str, str]:
        """Each doorbell channel -> a key of its partition: listened to on that master, where
        the publishers ring it (not a cluster-bus hop away: ~8 ms at p50 on this machine)."""
        return {
            wake_channel(f"streams:candle:{tf}s", p): partition_tag(p, self.nparts)
            for tf in self.timeframes
            for p in self.partitions
        }

    # --- processing ----------------------------------------------------------------------------
    def process(self, entries: Iterable[Entry], batch: _Batch, track: bool = True) -> None:
        """Run entries through their partitions' engines, collecting outputs, acks and dead
        letters.

        The valid candles of a partition go through :meth:`IndicatorEngine.process_many` in one
        compiled call (the same values, in the same order, as ``process`` one by one)."""
        by_part: dict[int, list[Candle]] = {}
        acks, parts = batch.acks, self.partitions
        for e in entries:
            key = e.key
            p = self.partition_of(key)
            part = parts.get(p) if p is not None else None
            if part is None:
                continue  # not ours (any more): its owner reads it; left pending, not acked
            if e.payload is None:
                if not e.fields:  # deleted while pending: nothing to process
                    acks.setdefault(key, []).append(e.id)
                    continue
                self._dead(batch, e, "no 'd' field in the entry", 1)
                continue
            try:
                c = codec.decode(e.payload)
            except (msgspec.DecodeError, msgspec.ValidationError) as ex:
                self._dead(batch, e, f"undecodable: {ex}", 1)
                continue
            if (
                type(c) is not Candle
                or not c.closed
                or f"candle:{c.timeframe}s:{c.exchange}:{c.token}" != e.topic
            ):
                self._dead(batch, e, f"not a confirmed candle of {key}: {type(c).__name__}", 1)
                continue
            by_part.setdefault(p, []).append(c)  # type: ignore[arg-type]
            if track:
                last = part.last_ids.get(key)
                if last is None or (
                    e.id > last if len(e.id) == len(last) else id_tuple(e.id) > id_tuple(last)
                ):
                    part.last_ids[key] = e.id
            acks.setdefault(key, []).append(e.id)
        for p, candles in by_part.items():
            batch.candles += len(candles)
            engine = parts[p].engine
            if engine.fused and self.values.exact:
                self._emit_columns(engine, candles, batch)
            else:
                self._emit(engine.process_many(candles), batch)

    def _emit_columns(self, engine: IndicatorEngine, candles: list[Candle], batch: _Batch) -> None:
        """The columnar path (close-only indicator sets, the default): one compiled call per
        exchange, payloads and commands from cached bytes — no message objects per value."""
        store = self.cfg.indicators.store_values
        if len(candles) < SMALL_BATCH:  # the columns' fixed cost exceeds a few candles' work
            self._emit_rows(engine.process_many(candles), batch, store)
            return
        by_ex: dict[str, list[Candle]] = {}
        for c in candles:
            by_ex.setdefault(c.exchange, []).append(c)
        for ex, cs in by_ex.items():
            res = engine.process_arrays(
                [c.token for c in cs],
                [c.timeframe for c in cs],
                [c.bucket for c in cs],
                [c.close for c in cs],
                exchange=ex,
                high=[c.high for c in cs],
                low=[c.low for c in cs],
                open=[c.open for c in cs],
                volume=[c.volume for c in cs],
            )
            vals = res.values.tolist()
            for j in np.flatnonzero(res.status == 0).tolist():
                c = cs[j]
                batch.values += self.values.emit(
                    c.token, ex, c.timeframe, c.bucket, vals[j], batch, store
                )

    def _emit_rows(self, values: list[IndicatorValue], batch: _Batch, store: bool) -> None:
        """Values of a few candles (in candle order) through the same cached-bytes writer."""
        index = self._name_index
        nan = float("nan")
        row: list[float] = []
        key: tuple[int, str, int, int] | None = None
        for v in values:
            k = (v.token, v.exchange, v.timeframe, v.bucket)
            if k != key:
                if key is not None:
                    batch.values += self.values.emit(*key, row, batch, store)
                key, row = k, [nan] * len(index)
            row[index[v.name]] = v.value
        if key is not None:
            batch.values += self.values.emit(*key, row, batch, store)

    def _emit(self, values: list[IndicatorValue], batch: _Batch) -> None:
        """The general path (any indicator set): one message per value."""
        batch.values += len(values)
        encode, builder = self._encode, self.builder
        cmds, newest = batch.cmds, batch.newest
        if self._streams_on:
            add = builder.confirmed
            for v in values:
                topic = indicator_topic(v)
                payload = encode(v)
                add(cmds, topic, b"%d-0" % (v.bucket // 1_000_000), payload)
                newest[topic] = payload
        else:
            forming = builder.forming
            cmds += [forming("pub:" + indicator_topic(v), encode(v)) for v in values]
        if self.cfg.indicators.store_values:
            batch.rows += [
                (v.token, v.exchange, v.timeframe, v.bucket, v.name, v.value) for v in values
            ]

    def _dead(self, batch: _Batch, e: Entry, reason: str, deliveries: int) -> None:
        log.warning("%s: dead-lettering %s %s: %s", self.service, e.key, e.id.decode(), reason)
        self.dead_reasons[reason.split(":")[0]] += 1
        first, *rest = self.reader.dead_letter_commands(e, reason, deliveries)
        batch.dlq.append(first)
        batch.dead += rest

    def _snapshot_of(
        self, part: Partition, final: bool = False
    ) -> tuple[Partition, bytes, bytes | None]:
        """(partition, Redis blob, SQLite copy or None) of a partition's state now."""
        blob = part.engine.snapshot()
        redis_blob = _snap_enc.encode(
            RedisSnapshot(
                1,
                self.specs_key,
                time.time_ns(),
                {k: v.decode() for k, v in part.last_ids.items()},
                blob,
            )
        )
        now = time.monotonic()
        part.last_snapshot = now
        sqlite_blob = None  # the SQLite copy (a fallback) less often than the Redis one
        if (
            final
            or part.last_sqlite_snapshot is None
            or now - part.last_sqlite_snapshot >= self.cfg.indicators.snapshot_interval_s
        ):
            sqlite_blob = blob
            part.last_sqlite_snapshot = now
        return part, redis_blob, sqlite_blob

    def _due_snapshots(self, batch: _Batch) -> None:
        interval = self.cfg.redis.snapshot_interval_s
        now = time.monotonic()
        for part in self.partitions.values():
            if now - part.last_snapshot >= interval:
                batch.snapshots.append(self._snapshot_of(part))

    # --- committing ----------------------------------------------------------------------------
    async def _send(
        self,
        cmds: Sequence[Command | Commands],
        link: RedisLink | None = None,
        durable: bool = False,
        atomic: bool = False,
    ) -> list[Any]:
        """A pipeline of idempotent commands, retried until Redis (or the replica that took
        over) takes it (``durable``: replicated as ``redis.wait_replicas`` asks; ``atomic``:
        one transaction on a single Redis)."""
        link = link or self.link
        while True:
            try:
                replies = await link.pipeline(cmds, durable=durable, atomic=atomic)
            except RedisCommandError as e:  # refused at queue time: nothing ran; retried
                self.stats["commit_errors"] += 1
                log.error("%s: Redis refused the commit: %s", self.service, e)
                if self.stop.is_set():
                    raise RedisUnavailable(str(e)) from None
                await self._sleep(link.backoff.next())
                continue
            except RedisUnavailable:
                self.state.set("redis_down")
                if self.stop.is_set():
                    raise
                await self._sleep(link.backoff.next())
                continue
            if self.state.state == "redis_down":
                self.state.set("running")
            return replies

    async def commit(self, batch: _Batch) -> None:
        """Hand a processed batch on: its values go to Redis next (the sender, on a connection
        of its own, so reading goes on meanwhile), then SQLite, then the XACKs and snapshots
        (the acker), in order. Waits only when :data:`MAX_INFLIGHT` batches are behind."""
        if batch.empty():
            return
        if batch.dlq:  # the dead letters exist before their entries are acknowledged away,
            await self._send(batch.dlq, durable=True)  # and are gone before anything reads on
            await self._send(batch.dead)
        if self._acker_error is not None:
            raise self._acker_error
        assert self._outq is not None
        await self._outq.put(batch)

    async def _send_loop(self) -> None:
        """The values of the batches waiting, in order (a stream refuses an ID below its top:
        batches never overtake each other), as one pipeline — one transaction on a single
        Redis — then on to the acker."""
        assert self._outq is not None and self._inflight is not None
        q, link = self._outq, self._writer
        done: list[_Batch] = []
        try:
            while True:
                done = [await q.get()]
                while not q.empty():
                    done.append(q.get_nowait())
                t0 = time.perf_counter()
                if link.cluster is None:
                    await link.ready()
                self.builder.use_cluster(bool(link.cluster))
                if link.stats.connects != self._reg_epoch:  # (re)connected: register again
                    self._reg_epoch = link.stats.connects
                    self.builder.registered.clear()
                newest: dict[str, bytes] = {}
                cmds: list[Command | Commands] = []
                for b in done:
                    newest.update(b.newest)
                    cmds += b.cmds
                new = [t for t in newest if t not in self.builder.registered]
                tail: list[Command | Commands] = [*self.builder.registration(new)]
                tail += self._fenced_latest(newest)
                whole = [*cmds, *tail]
                for chunk in _chunks(whole, SEND_CHUNK):  # Redis serves others in between
                    replies = await self._send(chunk, link, durable=True, atomic=True)
                    self._tally(replies)
                if whole:
                    self.builder.registered.update(new)
                    self.timings["send"].append(time.perf_counter() - t0)
                for b in done:
                    self.stats["candles"] += b.candles
                    self.stats["values"] += b.values
                    await self._inflight.put(b)
                    q.task_done()
                done = []
                self.last_commit_ms = (time.perf_counter() - t0) * 1000
        except Exception as e:  # stopping while Redis is down (replayed next start), or a bug
            if not isinstance(e, RedisUnavailable):
                log.exception("%s: writing values failed; stopping", self.service)
                self.failed = f"writing values failed: {e!r}"
                self.stop.set()
            self._acker_error = e
            for _ in done:
                q.task_done()
            while not q.empty():
                q.get_nowait()
                q.task_done()

    def _tally(self, replies: list[Any]) -> None:
        """Count the value XADDs among a commit's replies: an XADD answers with the entry's ID
        (every other command of a commit with an integer or OK), or refuses an entry already
        there (a replay: counted, not an error)."""
        written = dup = errors = 0
        flat: list[Any] = []
        for r in replies:  # a fenced script answers with a list (or FENCED: nothing written)
            if r.__class__ is list:
                if len(r) == 4 and r[0].__class__ is int:  # a candle's values: counts
                    written, dup, errors = written + r[0], dup + r[1], errors + r[2]
                    if r[2]:
                        log.error("%s: %s", self.service, r[3].decode(errors="replace"))
                    continue
                flat += r
            elif (gone := fenced_keys(r)) is not None:
                self.stats["fenced_writes"] += 1
                self._fenced_off(gone)
            else:
                flat.append(r)
        for r in flat:
            t = r.__class__
            if t is bytes:
                if r != b"OK":
                    written += 1
            elif t is ReplyError:
                if ID_NOT_NEWER in str(r):
                    dup += 1
                else:
                    errors += 1
                    log.error("%s: %s", self.service, r)
        self.stats["values_written"] += written
        self.stats["values_duplicate"] += dup
        self.stats["value_errors"] += errors

    def _commit_sqlite(self, rows: list[tuple[Any, ...]], snaps: list[tuple[str, bytes]]) -> None:
        if self.con is None or not (rows or snaps):
            return
        delay = 0.05
        while True:
            try:  # snapshots here are the fallback: kept as the single process keeps them
                write_values_and_snapshots(
                    self.con, rows, snaps, self.cfg.indicators.snapshots_kept
                )
                return
            except sqlite3.Error as e:
                self.stats["sqlite_errors"] += 1
                log.error(
                    "%s: SQLite commit failed (%s); retrying in %.2f s", self.service, e, delay
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _ack_loop(self) -> None:
        """Behind the values: the SQLite commit of every batch waiting (one transaction, off the
        event loop), then their XACKs and snapshots in one pipeline."""
        assert self._inflight is not None
        q = self._inflight
        done: list[_Batch] = []
        try:
            while True:
                done = [await q.get()]
                while not q.empty():
                    done.append(q.get_nowait())
                rows = [r for b in done for r in b.rows]
                snaps = [(p.sqlite_label, s) for b in done for p, _, s in b.snapshots if s]
                if rows or snaps:
                    t0 = time.perf_counter()
                    await asyncio.to_thread(self._commit_sqlite, rows, snaps)
                    self.timings["sqlite"].append(time.perf_counter() - t0)
                if rows and self.clickhouse is not None:  # the system of record has them first
                    self.clickhouse.put("indicator_values", rows)
                    await asyncio.to_thread(self.clickhouse.wait_idle, 3600.0)
                acks: dict[str, list[bytes]] = {}
                for b in done:
                    for k, ids in b.acks.items():
                        acks.setdefault(k, []).extend(ids)
                snaps_out = [(p, blob) for b in done for p, blob, _ in b.snapshots]
                cmds = self._fenced_acks(acks, snaps_out)
                if cmds:
                    t0 = time.perf_counter()
                    replies = await self._send(cmds, self._aux)
                    self.timings["ack"].append(time.perf_counter() - t0)
                    gone: list[str] = []
                    for r in replies:
                        f = fenced_keys(r)
                        if f is not None:  # a newer owner has them: nothing written
                            gone += f
                            continue
                        for x in r if isinstance(r, list) else (r,):
                            if isinstance(x, Exception):
                                self.stats["command_errors"] += 1
                                log.error("%s: %s", self.service, x)
                    if gone:
                        self.stats["fenced_writes"] += len(gone)
                        self._fenced_off(gone)
                self.stats["acked"] += sum(len(v) for v in acks.values())
                self.stats["snapshots"] += sum(len(b.snapshots) for b in done)
                self.stats["commits"] += 1
                for _ in done:
                    q.task_done()
        except Exception as e:  # stopping while Redis is down (the rest is replayed), or a bug
            if not isinstance(e, RedisUnavailable):
                log.exception("%s: acknowledging failed; stopping", self.service)
                self.failed = f"acknowledging failed: {e!r}"
                self.stop.set()
            self._acker_error = e
            while not q.empty():
                q.get_nowait()
                q.task_done()
            for _ in done:
                q.task_done()

    def _fenced_acks(
        self, acks: dict[str, list[bytes]], snapshots: list[tuple[Partition, bytes]]
    ) -> list[Command]:
        """The XACKs and snapshot SETs, one fenced script per fence key: written only while
        this member's epoch of the partition holds (a stale member writes nothing)."""
        by_fence: dict[str, list[list[bytes | str | int]]] = {}
        for k, ids in acks.items():
            if ids:
                by_fence.setdefault(self.fence_key(k), []).append(["XACK", k, GROUP, *ids])
        for part, blob in snapshots:
            by_fence.setdefault(self._snapshot_fence(part), []).append(
                ["SET", part.snapshot_key, blob]
            )
        epochs = self.membership.epochs
        return [
            fenced(fk, epochs.get(self._partition_of_fence(fk), 0), c) for fk, c in by_fence.items()
        ]

    async def drain(self) -> None:
        """Wait until every batch handed to :meth:`commit` is committed and acknowledged."""
        if self._outq is not None:
            await self._outq.join()
        if self._inflight is not None:
            await self._inflight.join()
        if self._acker_error is not None:
            raise self._acker_error

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stop.wait()

    # --- partitions: warm start and hand-over ----------------------------------------------------
    async def load_snapshot(self, part: Partition) -> dict[str, bytes]:
        """Restore a partition's newest usable snapshot; return the stream IDs it reflects."""
        raw = await self.link.call("GET", part.snapshot_key)
        if raw is not None:
            try:
                snap = _snap_dec.decode(raw)
                if snap.specs != self.specs_key:
                    raise SnapshotError(f"snapshot of {snap.specs}, engine has {self.specs_key}")
                part.engine.restore(snap.engine)
                log.info(
                    "%s: restored %s (%d series)",
                    self.service,
                    part.snapshot_key,
                    len(part.engine.position()),
                )
                self.stats["restored_redis"] += 1
                return {k: v.encode() for k, v in snap.streams.items()}
            except (msgspec.DecodeError, msgspec.ValidationError, SnapshotError) as e:
                log.warning(
                    "%s: %s unusable (%s); trying SQLite", self.service, part.snapshot_key, e
                )
        if self.con is not None:
            blob = await asyncio.to_thread(latest_snapshot, self.con, part.sqlite_label)
            if blob is not None:
                try:
                    part.engine.restore(blob)
                    self.stats["restored_sqlite"] += 1
                    log.info(
                        "%s: restored the SQLite snapshot of partition %d (%d series)",
                        self.service,
                        part.index,
                        len(part.engine.position()),
                    )
                except SnapshotError as e:
                    log.warning("%s: SQLite snapshot unusable (%s)", self.service, e)
        return {}

    def _replay_start(self, part: Partition, key: str, ids: dict[str, bytes]) -> str:
        # snapshots of a single Redis name plain keys, a cluster's tagged ones: either works
        for k in (key, tagged(key)):
            if k in ids:
                return "(" + ids[k].decode()
        parsed = parse_candle_key(key)
        if parsed is not None:
            last = part.engine.position().get(parsed)
            if last is not None:
                return "(" + stream_id(last)
        return "-"

    async def take(self, index: int) -> None:
        """Warm start of one partition (its lease is held): snapshot, pending, replay.

        Interrupted (Redis unavailable half-way), the partition is not owned: the next
        rebalance takes it again from the start (its lease is still ours). Kept half-warmed it
        would read on with entries taken over but never acknowledged, and a gap in its engine.
        """
        part = Partition(
            index, self.nparts, self.cfg.indicators.specs, self.specs_key, bool(self.link.cluster)
        )
        self.partitions[index] = part
        self._show_partitions()
        keys = self._keys_of(index)
        try:
            await self._warm(part, keys)
        except (RedisUnavailable, RedisCommandError, Fenced) as e:
            if isinstance(e, Fenced):
                self._fenced_off(e.keys)
            if self.partitions.get(index) is part:
                del self.partitions[index]
                self._show_partitions()
                self.reader.remove_keys(keys)
            if not isinstance(e, Fenced):
                raise

    async def _warm(self, part: Partition, keys: list[str]) -> None:
        rc = self.cfg.redis
        index = part.index
        # the new epoch in every fence of the partition before anything of it is touched: a
        # member that held it before and stalled can no longer read, claim or write it
        epoch = self.membership.epochs.get(index, 0)
        await self._take_fences([self._snapshot_fence(part), *map(self.fence_key, keys)], epoch)
        self._warming = index
        try:
            await self.reader.add_keys(keys)
        finally:
            self._warming = None
        await self.check_trims(self.link, keys)  # before the replay moves the group's cursor
        ids = await self.load_snapshot(part)
        part.last_ids = {k: ids[k] for k in keys if k in ids}
        # 1. take over what earlier owners (or earlier incarnations) left pending, without
        #    counting that as a delivery; an entry already tried ``dead_letter_after`` times
        #    (e.g. one that crashes the process) goes to the dead letters
        pending = await self.reader.take_over(keys)
        poison = {
            k: [i for i, n in got.items() if n >= rc.dead_letter_after]
            for k, got in pending.items()
        }
        batch = _Batch()
        for e in await self.reader.claim_ids(poison):
            n = pending[e.key][e.id]
            self._dead(batch, e, f"delivered {n} times without acknowledgement", n)
        for k, bad in poison.items():
            for i in bad:
                del pending[k][i]
        await self.commit(batch)
        # 2. replay every stream after the snapshot's position; a pending entry met here is
        #    acknowledged with its results. It is not claimed (counted as a delivery) first: a
        #    crash loop killed mid-replay would otherwise send healthy candles to the dead
        #    letters after ``dead_letter_after`` kills, losing their values. A poison entry
        #    cannot crash the replay: what does not decode is dead-lettered in process()
        position = {k: self._replay_start(part, k, ids) for k in keys}
        replayed = 0
        ends: dict[str, bytes] = {}
        chunk, per_round = 200, 5  # ≤ 1,000 candles per batch: the loop stays responsive
        todo = list(position.items())
        while todo:
            now, todo = todo[:per_round], todo[per_round:]
            got = await xrange(self.link, now, chunk)
            met = {
                k: [e.id for e in entries if e.id in pending.get(k, ())]
                for k, entries in got.items()
            }
            batch = _Batch()
            for key, entries in got.items():
                self.process(entries, batch)
                replayed += len(entries)
                if entries:
                    ends[key] = entries[-1].id
                if len(entries) == chunk:
                    todo.append((key, "(" + entries[-1].id.decode()))
            batch.acks = {k: v for k, v in met.items() if v}  # the rest were acknowledged
            self._due_snapshots(batch)  # during a long replay too: a crash loop makes progress
            await self.commit(batch)
            for k, done in met.items():
                for i in done:
                    del pending[k][i]
            await asyncio.sleep(0)  # /health, heartbeats and the acker between batches
            if self.stop.is_set():
                return  # stopping: the rest is replayed at the next start
        # what the replay committed need not be delivered again: move the group's cursor to
        # the end of the replay (pending entries stay pending; they are acknowledged next),
        # keeping its read counter exact so that a later trim is counted exactly
        if ends:
            replies = await self._send(
                [set_group_cursor(k, GROUP, i, self.fence_of(k)) for k, i in ends.items()]
            )
            gone = [f for r in replies for f in fenced_keys(r) or ()]
            if gone:
                raise Fenced(gone)
        # 3. the pending entries the replay did not meet (older than the snapshot: stale, no
        #    output) are claimed, processed and acknowledged
        keep = await self.reader.claim_ids({k: list(v) for k, v in pending.items()})
        batch = _Batch()
        self.process(keep, batch, track=False)
        batch.snapshots.append(self._snapshot_of(part))
        await self.commit(batch)
        self.stats["replayed"] += replayed
        self.stats["partitions_taken"] += 1
        log.info(
            "%s: partition %d taken (%d streams): replayed %d candles, re-acknowledged %d pending",
            self.service,
            index,
            len(keys),
            replayed,
            len(keep),
        )

    async def hand_over(self, indexes: Iterable[int], lost: bool = False) -> None:
        """Stop reading these partitions; unless their leases are already lost, commit what
        they hold, write their final snapshots and release them."""
        indexes = set(indexes)
        self._leased -= indexes
        parts = [self.partitions.pop(i) for i in indexes if i in self.partitions]
        if not parts:
            return
        gone = {p.index for p in parts}
        self._show_partitions()
        self.reader.remove_keys([k for k in self.reader.keys if self.partition_of(k) in gone])
        # keys found (by discovery or a doorbell) while they were ours, not added yet: read
        # later, their entries would be delivered to this member, skipped as not ours and left
        # pending where XREADGROUP ">" never returns them to the new owner
        self.reader.discovered = [
            k for k in self.reader.discovered if self.partition_of(k) not in gone
        ]
        self.reader.watch(self._doorbells(), self._doorbell_nodes())
        if lost:
            self.stats["partitions_lost"] += len(parts)
            log.warning(
                "%s: leases of partition(s) %s lost; another member owns them now",
                self.service,
                sorted(gone),
            )
            return
        await self.drain()
        batch = _Batch()
        batch.snapshots = [self._snapshot_of(p, final=True) for p in parts]
        await self.commit(batch)
        await self.drain()
        await self.membership.release(gone)
        self.stats["partitions_released"] += len(parts)
        log.info("%s: partition(s) %s handed over", self.service, sorted(gone))

    async def rebalance(self) -> None:
        """Hand over what is no longer wanted (or lost), take what is wanted and free."""
        lost, self._lost = self._lost, set()
        if lost:
            self._leased -= lost
            for p in lost:  # what is still in flight for them is refused (epoch 0)
                self.membership.epochs.pop(p, None)
            await self.hand_over(lost & set(self.partitions), lost=True)
        extra = set(self.partitions) - self._wanted
        if extra:
            await self.hand_over(sorted(extra))
        missing = sorted(self._wanted - set(self.partitions))
        if not missing:
            return
        got = await self.membership.acquire(missing)
        self._leased |= got
        if got:
            await self.discover_streams()
            for p in sorted(got):
                await self.take(p)
                if self.stop.is_set():
                    return
            self.reader.watch(self._doorbells(), self._doorbell_nodes())

    def _members_report(self, live: list[str] | None, lost: set[int]) -> None:
        """From the lease keeper (on the loop): who is alive (None: not known this round, the
        member's marker being on a failing master), which leases expired."""
        if live is not None:
            self.membership.live = live
            self._wanted = self.membership.wanted()
        self._lost |= lost & self._leased

    def _members_error(self, e: BaseException) -> None:
        log.error("%s: %s; stopping", self.service, e)
        self.failed = str(e)
        self.stop.set()

    # --- live ----------------------------------------------------------------------------------
    async def _discover_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.redis.discover_interval_s)
            with contextlib.suppress(RedisUnavailable, RedisCommandError):
                keys = await discover(
                    self._aux, [f"streams:candle:{tf}s" for tf in self.timeframes]
                )
                self._all_keys = keys
                known = self.reader._known
                self.reader.discovered += [k for k in keys if k not in known and self.mine(k)]

    async def _backlog_loop(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            with contextlib.suppress(RedisUnavailable, RedisCommandError):
                keys = list(self.reader.keys)
                self.backlog = await group_backlog(self._aux, keys, GROUP)
                await self.check_trims(self._aux, keys)

    async def check_trims(self, link: RedisLink, keys: list[str]) -> None:
        """Candles trimmed away before this group read them (every member was down, or behind,
        for longer than the retention): one ERROR line per stream, counted
        (``stream_trimmed_unread_total``), and a ``system:stream_trimmed`` event."""
        for t in await self.trims.check(link, keys):
            message = t.message(self.service)
            log.error("%s", message)
            self.stats["trimmed_unread"] += t.lost
            self.state.detail["trimmed_unread"] = sum(self.trims.lost.values())
            event = SystemEvent(
                time.time_ns(),
                "stream_trimmed",
                message,
                "ERROR",
                self.service,
                {"stream": t.key, "group": t.group, "lost": t.lost, "exact": t.exact},
            )
            self.previews.confirmed("system:stream_trimmed", "*", self._encode(event))

    async def _preview_loop(self) -> None:
        """Forming candles (Pub/Sub) → ``peek`` → ``pub:ind:...``."""
        if self.cfg.indicators.previews == "none":
            return
        link = self._link(".pubsub")
        sub = Subscriber(link, self._preview)
        await link.connection()
        if link.cluster:
            await self._preview_channels(sub)
            task = asyncio.create_task(sub.run())
            try:
                while True:  # new instruments, partitions moving
                    await asyncio.sleep(max(self.cfg.redis.discover_interval_s, 1.0))
                    with contextlib.suppress(RedisUnavailable, RedisCommandError):
                        await self._preview_channels(sub)
            finally:
                task.cancel()
                link.close()
        sub.set(patterns=[f"pub:candle:{tf}s:*" for tf in self.timeframes])
        try:
            await sub.run()
        finally:
            link.close()

    async def _preview_channels(self, sub: Subscriber) -> None:
        """On a cluster: the sharded channels of the owned underlyings' candles (forming
        candles are published for underlyings unless ``redis.forming = "all"``)."""
        from mandi.model.instruments import Option, parse_instrument_csv
        from mandi.services.distributed.mdengine import MASTER_KEY

        raw = await self._aux.call("GET", MASTER_KEY)
        every = self.cfg.redis.forming == "all"
        insts = (
            [i for i in parse_instrument_csv(raw.decode()) if every or not isinstance(i, Option)]
            if raw
            else []
        )
        sub.set(
            sharded=[
                "pub:" + tagged(f"candle:{tf}s:{i.exchange}:{i.token}")
                for i in insts
                for tf in self.timeframes
                if self.mine(tagged(f"candle:{tf}s:{i.exchange}:{i.token}"))
            ]
        )

    def _preview(self, channel: bytes, data: bytes, pattern: bytes | None) -> None:
        try:
            c = codec.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.stats["previews_undecodable"] += 1
            return
        if type(c) is not Candle or c.closed:
            return
        p = self.partition_of(f"candle:{c.timeframe}s:{c.exchange}:{c.token}")
        part = self.partitions.get(p) if p is not None else None
        if part is None:
            return
        for v in part.engine.peek(c):
            self.previews.forming("pub:" + indicator_topic(v), self._encode(v))
        self.stats["previews"] += 1

    async def run(self, signals: bool = True) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM) if signals else ():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop.set)
        self.health = health = HealthServer(
            self.state, self.cfg.services.host, self.port, self.samples
        )
        await health.start()
        self._outq = asyncio.Queue(MAX_INFLIGHT)
        self._inflight = asyncio.Queue(MAX_INFLIGHT)
        self._acker = asyncio.create_task(self._ack_loop())
        if self.clickhouse is not None:
            self.clickhouse.start()
        self._sender = asyncio.create_task(self._send_loop())
        tasks: list[asyncio.Task[Any]] = []
        joined = False
        try:
            self.state.set(
                "waiting_for_redis", redis=self.link.target.safe(), consumer=self.consumer
            )
            await self._until_stopped(self.link.connection())
            if self.stop.is_set():
                return 0
            self.builder.use_cluster(bool(self.link.cluster))  # keys tagged on a cluster
            from mandi.stores.sqlite import connect

            # values (if stored) and fallback snapshots; off the loop: another service may hold
            # the database's write lock for a while (health must still answer)
            self.con = await asyncio.to_thread(connect, self.cfg.store.db)
            tune_for_values(self.con)
            self.state.set("warming", partitions=[])
            # join: the partitions this member should own among the live ones
            while not self.stop.is_set():
                try:
                    await self.membership.heartbeat()
                    self._wanted = self.membership.wanted()
                    joined = True
                    if self._keeper is None:  # beats and renewals from now on, on a thread
                        self._keeper = LeaseKeeper(
                            self.cfg.redis.url,
                            self.membership,
                            lambda: set(self._leased),
                            self._members_report,
                            self._members_error,
                            asyncio.get_running_loop(),
                        ).start()
                    await self.discover_streams()
                    await self.rebalance()
                    break
                except (RedisUnavailable, RedisCommandError) as e:
                    log.warning(
                        "%s: warm start interrupted (%s); starting it again", self.service, e
                    )
                    self.state.set("waiting_for_redis")
                    for p in list(self.partitions):  # taken again (their leases are ours)
                        self.partitions.pop(p)
                    await self._sleep(self.link.backoff.next())
            if self.stop.is_set():
                return 0
            await asyncio.to_thread(load_kernels, self.cfg.indicators.specs)
            gc.collect()
            gc.freeze()  # what warm start built lives on: later collections skip it
            # a batch's rows live until their commit: collect young objects less often, so
            # the collector does not walk a big batch again and again (it frees no cycles)
            gc.set_threshold(50_000, 20, 100)
            # the SQLite thread binds rows holding the GIL: hand it back to the loop sooner
            # than the default 5 ms, or a candle read meanwhile waits that long
            sys.setswitchinterval(0.0005)
            self.state.set("running", streams=len(self.reader.keys))
            tasks += [
                asyncio.create_task(c)
                for c in (
                    self._discover_loop(),
                    self._backlog_loop(),
                    self._preview_loop(),
                    self.previews.run(),
                )
            ]
            await self._live()
        finally:
            self.state.set("stopping")
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(RedisUnavailable, TimeoutError):
                async with asyncio.timeout(5):
                    await self.drain()
            if self._acker is not None:
                self._acker.cancel()
            if self._sender is not None:
                self._sender.cancel()
            await asyncio.gather(
                *[t for t in (self._acker, self._sender) if t is not None], return_exceptions=True
            )
            if self._keeper is not None:
                await asyncio.to_thread(self._keeper.stop)
            if joined and self.link.up:
                with contextlib.suppress(RedisUnavailable, RedisCommandError, TimeoutError):
                    async with asyncio.timeout(2):
                        await self.membership.leave()
            self.previews.flush_blocking(1.0)
            if self.clickhouse is not None:
                await asyncio.to_thread(self.clickhouse.stop)
            self.reader.close()
            for link in (
                self.link,
                self._aux,
                self._writer,
                self._members_link,
                self.previews.link,
            ):
                link.close()
            if self.con is not None:
                self.con.close()
            self.state.set("stopped")
            await health.close()
            log.info("%s stopped: %s", self.service, dict(self.stats))
        return 1 if self.failed else 0

    async def _until_stopped(self, coro: Any) -> Any:
        task = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            stopper.cancel()
            return task.result()
        task.cancel()
        return None

    async def _recover_pending(self) -> None:
        """After a failed read, a reconnect or a fail-over (see :class:`PendingWatch`): entries
        Redis delivered to us whose reply we never read (or that a failed cluster read
        dropped), or whose XACK it lost, stay pending and XREADGROUP ``>`` never returns them
        again. Claim and process them now, before reading on: stale ones give no output and are
        acknowledged, unseen ones are processed in ID order (a newer candle processed first
        would make them stale, and their values would be lost)."""
        rc = self.cfg.redis
        await self.drain()  # what is in flight acknowledges its own entries first
        batch = _Batch()
        keep: list[Entry] = []
        for e, deliveries in await self.reader.claim(0):
            if deliveries >= rc.dead_letter_after:
                self._dead(
                    batch, e, f"delivered {deliveries} times without acknowledgement", deliveries
                )
            else:
                keep.append(e)
        self.process(keep, batch)
        await self.commit(batch)
        if keep:
            self.stats["recovered"] += len(keep)
            log.info(
                "%s: %d pending entries claimed again (failed read, reconnect, fail-over)",
                self.service,
                len(keep),
            )

    async def _live(self) -> None:
        rc = self.cfg.redis
        watch = PendingWatch(self.link)
        while not self.stop.is_set():
            if self._lost or self._wanted != set(self.partitions):
                try:
                    await self.rebalance()
                except (RedisUnavailable, RedisCommandError) as e:
                    log.warning("%s: rebalancing interrupted (%s)", self.service, e)
                    await self._sleep(self.link.backoff.next())
                    continue
            if watch.check() or self._recover_due:  # until a recovery completes: nothing new
                try:  # is read before it
                    await self._recover_pending()
                    watch.recovered()
                    self._recover_due = False
                except Fenced as e:
                    self._fenced_off(e.keys)
                    continue
                except RedisUnavailable:
                    self.state.set("redis_down")
                    await self._sleep(self.link.backoff.next())
                    continue
                except RedisCommandError as e:
                    log.error("%s: recovering pending entries failed: %s", self.service, e)
                    await self._sleep(self.link.backoff.next())
                    continue
            if self.reader.discovered and not self.link.cluster:
                new, self.reader.discovered = self.reader.discovered, []
                try:
                    await self.reader.add_keys(new)
                except RedisUnavailable:
                    self.reader.discovered = new + self.reader.discovered
            try:
                # COUNT is per stream: bound the whole batch to ~5,000 entries
                count = max(10, min(rc.read_count, 5000 // max(1, len(self.reader.keys))))
                entries = await self._until_stopped(self.reader.read(count, rc.block_ms))
            except Fenced as e:  # one Redis: nothing was read
                self._fenced_off(e.keys)
                continue
            except RedisUnavailable:
                watch.read_failed()
                self.state.set("redis_down")
                await self._sleep(self.link.backoff.next())
                continue
            except RedisCommandError as e:
                watch.read_failed()
                log.error("%s: reading failed: %s", self.service, e)
                await self._sleep(self.link.backoff.next())
                continue
            if entries is None:  # stopping
                break
            if self.reader.fenced:  # cluster: those keys delivered nothing; the rest did
                gone, self.reader.fenced = self.reader.fenced, set()
                self._fenced_off(gone)
            if watch.check():
                continue  # read over a new connection or slot map: recovered in ID order first
            if self.state.state == "redis_down":
                self.state.set("running")
            t0 = time.perf_counter()
            batch = _Batch()
            self.process(entries, batch)
            if entries:
                self.stats["batches"] += 1
                self.timings["process"].append(time.perf_counter() - t0)
                self._due_snapshots(batch)
            await self.commit(batch)
        # graceful stop: everything processed is committed; final snapshots
        if self.link.up and self.partitions:
            with contextlib.suppress(RedisUnavailable, TimeoutError):
                async with asyncio.timeout(5):
                    await self.drain()
                    batch = _Batch()
                    batch.snapshots = [
                        self._snapshot_of(p, final=True) for p in self.partitions.values()
                    ]
                    await self.commit(batch)
                    await self.drain()
                    await self.membership.release(self._leased)

    # --- metrics -------------------------------------------------------------------------------
    def samples(self) -> Iterable[Sample]:
        s = self.stats
        yield (
            "candles_processed_total",
            "counter",
            "Confirmed candles processed",
            s["candles"],
            {},
        )
        yield (
            "indicator_values_total",
            "counter",
            "Confirmed indicator values produced",
            s["values"],
            {},
        )
        yield (
            "indicator_values_duplicate_total",
            "counter",
            "Values already in their stream (replays after a restart)",
            s["values_duplicate"],
            {},
        )
        yield ("acked_total", "counter", "Stream entries acknowledged", s["acked"], {})
        yield ("commits_total", "counter", "Commit transactions", s["commits"], {})
        yield ("batches_total", "counter", "Live read batches processed", s["batches"], {})
        yield ("replayed_total", "counter", "Candles replayed at warm start", s["replayed"], {})
        yield ("snapshots_total", "counter", "Engine snapshots stored", s["snapshots"], {})
        yield ("previews_total", "counter", "Forming candles previewed", s["previews"], {})
        yield ("partitions", "gauge", "Partitions owned", len(self.partitions), {})
        yield ("members", "gauge", "Live members of the group", len(self.membership.live), {})
        for what in ("taken", "released", "lost"):
            yield (
                f"partitions_{what}_total",
                "counter",
                f"Partitions {what}",
                s[f"partitions_{what}"],
                {},
            )
        yield (
            "fenced_total",
            "counter",
            "Times a fence refused this member's read or write (it had stalled past a lease)",
            s["fenced"],
            {},
        )
        yield (
            "fenced_writes_total",
            "counter",
            "Writes (values, acknowledgements, snapshots) refused by a partition's fence",
            s["fenced_writes"],
            {},
        )
        for reason, n in self.dead_reasons.items():
            yield (
                "dead_lettered_total",
                "counter",
                "Entries moved to the dead-letter stream",
                n,
                {"reason": reason},
            )
        rejected: Counter[str] = Counter()
        for part in self.partitions.values():
            rejected.update(part.engine.rejected)
        for reason, n in rejected.items():
            yield (
                "candles_rejected_total",
                "counter",
                "Candles the engine rejected",
                n,
                {"reason": reason},
            )
        yield ("streams", "gauge", "Candle streams consumed", len(self.reader.keys), {})
        yield from trim_samples(self.trims)
        yield (
            "pending",
            "gauge",
            "Delivered, not yet acknowledged (sampled every 5 s)",
            self.backlog[0],
            {},
        )
        yield ("lag", "gauge", "Not yet delivered (sampled every 5 s)", self.backlog[1], {})
        yield ("last_commit_ms", "gauge", "Duration of the last commit", self.last_commit_ms, {})
        for stage, xs in self.timings.items():
            if not xs:
                continue
            ordered = sorted(xs)
            for q in (0.5, 0.99, 0.999, 1.0):
                yield (
                    "stage_seconds",
                    "gauge",
                    "Seconds per live batch and stage (process: read to values built; send: "
                    "values to Redis; sqlite, ack: behind them), over the last 10,000 batches",
                    ordered[min(len(ordered) - 1, int(q * len(ordered)))],
                    {"stage": stage, "quantile": str(q)},
                )
        if self.clickhouse is not None:
            ch = self.clickhouse.stats
            for table, n in ch.rows.items():
                yield ("clickhouse_rows_total", "counter", "Rows inserted", n, {"table": table})
            yield ("clickhouse_errors_total", "counter", "Failed ClickHouse calls", ch.errors, {})
        yield from link_samples(self.link, "consumer")
        yield from publisher_samples(self.previews, "previews")


async def run_indengine(
    cfg: AppConfig, port: int | None = None, consumer: str | None = None
) -> int:
    return await IndEngineService(cfg, consumer, port).run()


__all__ = ["GROUP", "SNAPSHOT_KEY", "IndEngineService", "IndicatorValue", "run_indengine"]
