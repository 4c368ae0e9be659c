"""``mandi service indengine``: confirmed candles from Redis → indicators → SQLite + Redis.

The same :class:`~mandi.indicators.IndicatorEngine` as ``mandi run`` (``process`` for confirmed
candles, ``peek`` for forming ones), behind a consumer group:

* **Live.** XREADGROUP ``>`` over the candle streams of the configured timeframes (discovered
  from ``streams:candle:{tf}s``) → ``process`` → the values are committed to SQLite
  (``indicator_values`` upsert, the single process's table) and then, in one MULTI/EXEC, written to
  Redis (``ind:{name}:{tf}s:...`` XADD with the bucket's ID + SET latest + PUBLISH) together with
  the XACK of the candles that produced them — and, every ``redis.snapshot_interval_s``, the
  engine snapshot. A candle is acknowledged only once its results are committed.
* **Previews.** Forming candles on Pub/Sub ``pub:candle:{tf}s:*`` → ``peek`` → PUBLISH
  ``pub:ind:...`` only.
* **Warm start (the seed's).** Load ``ind:snapshot:engine`` (engine state + the stream ID it
  reflects for every stream), falling back to the newest SQLite ``indicator_snapshots`` row;
  claim this group's pending entries (XAUTOCLAIM) and move those delivered
  ``redis.dead_letter_after`` times to ``dlq:indengine``; replay every stream after the
  snapshot's ID (XRANGE), committing the results again (idempotent: upserts and explicit stream
  IDs), then acknowledge the claimed entries and go live. A candle the engine has already seen is
  rejected as stale, so nothing is counted twice and nothing acknowledged is lost.
* **Bad input.** An entry without a payload, one that does not decode, or one that is not a
  confirmed candle of its stream's series is moved to the dead-letter stream with the reason.
* **Redis down.** Reads and commits retry with backoff; a batch whose commit failed is kept and
  committed again when Redis is back (the engine never runs ahead of what it can commit).

One indengine owns its streams (the engine's state is per series); several instances split the
instruments with ``--shard K/N`` (token modulo N), each with its own consumer and snapshot key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import hiredis
import msgspec

from mandi.bus.codec import codec
from mandi.bus.redis import (
    EXEC,
    MULTI,
    BatchBuilder,
    Entry,
    GroupReader,
    RedisCommandError,
    RedisLink,
    RedisUnavailable,
    RespConnection,
    StreamPublisher,
    count_xadd_replies,
    discover,
    id_tuple,
    pack,
    parse_candle_key,
    stream_id,
    xrange,
)
from mandi.config import AppConfig
from mandi.indicators import IndicatorEngine, SnapshotError
from mandi.model.market import Candle, IndicatorValue
from mandi.services.distributed.health import (
    HealthServer,
    Sample,
    ServiceState,
    link_samples,
    publisher_samples,
)
from mandi.services.indicators import indicator_topic
from mandi.stores.indicators import latest_snapshot, try_write_values_now, write_values

log = logging.getLogger(__name__)

SNAPSHOT_KEY = "ind:snapshot:engine"
GROUP = "indengine"


class RedisSnapshot(msgspec.Struct):
    """The value of ``ind:snapshot:engine``: the engine state and the last stream ID it
    reflects for every candle stream."""

    version: int
    specs: str
    ts_ns: int
    streams: dict[str, str]
    engine: bytes


_snap_enc = msgspec.msgpack.Encoder()
_snap_dec = msgspec.msgpack.Decoder(RedisSnapshot)


class _Batch:
    """The output of processing some entries, committed as one unit."""

    __slots__ = (
        "acks",
        "candles",
        "commands",
        "dead",
        "newest",
        "queued",
        "rows",
        "values",
    )

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.commands: list[bytes] = []  # XADD + PUBLISH pairs of values
        self.newest: dict[str, bytes] = {}  # indicator key -> newest payload (one SET each)
        self.values = 0
        self.acks: dict[str, list[bytes]] = {}
        self.dead: list[bytes] = []  # dead-letter commands
        self.candles = 0

    def empty(self) -> bool:
        return not (self.rows or self.commands or self.acks or self.dead)


INLINE_ROWS = 2_000  # value rows committed on the loop when the lock is free (~1 ms at most)
BUSY_TIMEOUT_MS = 30_000  # as mandi.stores.sqlite.connect sets it


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
        shard: tuple[int, int] = (0, 1),
        consumer: str | None = None,
        port: int | None = None,
    ) -> None:
        rc = cfg.redis
        self.cfg = cfg
        self.shard = shard
        k, n = shard
        self.service = "indengine" if n == 1 else f"indengine-{k}of{n}"
        self.state = ServiceState(self.service)
        self.consumer = consumer or rc.consumer or f"{self.service}-{socket.gethostname()}"
        self.snapshot_key = SNAPSHOT_KEY if n == 1 else f"{SNAPSHOT_KEY}:{k}of{n}"
        self.engine = IndicatorEngine(cfg.indicators.specs)
        self.specs_key = ",".join(self.engine.specs)
        self.timeframes = tuple(cfg.indicators.timeframes)
        self.link = RedisLink(
            rc.url, self.service, rc.connect_timeout_s, backoff_max=rc.backoff_max_s
        )
        self.reader = GroupReader(self.link, GROUP, self.consumer)
        self.builder = BatchBuilder(rc.retention_s, rc.latest_ttl_s)
        self.previews = StreamPublisher(
            RedisLink(
                rc.url,
                f"{self.service}.previews",
                rc.connect_timeout_s,
                backoff_max=rc.backoff_max_s,
            ),
            max_buffer=rc.buffer_max,
        )
        self.last_ids: dict[str, bytes] = {}
        self.port = cfg.services.indengine_port if port is None else port
        self.con: sqlite3.Connection | None = None
        self.stop = asyncio.Event()
        self.stats: Counter[str] = Counter()
        self.dead_reasons: Counter[str] = Counter()
        self.last_commit_ms = 0.0
        self.backlog = (0, 0)
        self._last_snapshot = time.monotonic()
        self._last_sqlite_snapshot: float | None = None
        self._encode = codec.encode
        self._streams_on = rc.indicator_streams
        self._reg_epoch = -1

    # --- keys ----------------------------------------------------------------------------------
    def mine(self, key: str) -> bool:
        parsed = parse_candle_key(key)
        if parsed is None:
            return False
        token, _, tf = parsed
        k, n = self.shard
        return tf in self.timeframes and token % n == k

    async def discover_streams(self) -> list[str]:
        keys = await discover(self.link, [f"streams:candle:{tf}s" for tf in self.timeframes])
        return await self.reader.add_keys([k for k in keys if self.mine(k)])

    # --- processing ----------------------------------------------------------------------------
    def process(self, entries: Iterable[Entry], batch: _Batch, track: bool = True) -> None:
        """Run entries through the engine, collecting outputs, acks and dead letters.

        The valid candles of the batch go through :meth:`IndicatorEngine.process_many` in one
        compiled call (the same values, in the same order, as ``process`` one by one)."""
        candles: list[Candle] = []
        last_ids, acks = self.last_ids, batch.acks
        for e in entries:
            key = e.key
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
                or f"candle:{c.timeframe}s:{c.exchange}:{c.token}" != key
            ):
                self._dead(batch, e, f"not a confirmed candle of {key}: {type(c).__name__}", 1)
                continue
            candles.append(c)
            if track:
                last = last_ids.get(key)
                if last is None or (
                    e.id > last if len(e.id) == len(last) else id_tuple(e.id) > id_tuple(last)
                ):
                    last_ids[key] = e.id
            acks.setdefault(key, []).append(e.id)
        if not candles:
            return
        batch.candles += len(candles)
        values = self.engine.process_many(candles)
        batch.values += len(values)
        encode, add = self._encode, self.builder.confirmed
        rows, commands, newest = batch.rows, batch.commands, batch.newest
        streams_on = self._streams_on
        for v in values:
            topic = indicator_topic(v)
            payload = encode(v)
            if streams_on:
                add(commands, topic, b"%d-0" % (v.bucket // 1_000_000), payload)
                newest[topic] = payload
            else:
                commands.append(pack("PUBLISH", "pub:" + topic, payload))
        if self.cfg.indicators.store_values:
            rows += [(v.token, v.exchange, v.timeframe, v.bucket, v.name, v.value) for v in values]

    def _dead(self, batch: _Batch, e: Entry, reason: str, deliveries: int) -> None:
        log.warning("%s: dead-lettering %s %s: %s", self.service, e.key, e.id.decode(), reason)
        self.dead_reasons[reason.split(":")[0]] += 1
        batch.dead += self.reader.dead_letter_packet(e, reason, deliveries)

    # --- committing ----------------------------------------------------------------------------
    def _snapshot_blob(self, engine_blob: bytes) -> bytes:
        return _snap_enc.encode(
            RedisSnapshot(
                1,
                self.specs_key,
                time.time_ns(),
                {k: v.decode() for k, v in self.last_ids.items()},
                engine_blob,
            )
        )

    def _commit_sqlite(self, batch: _Batch, snapshot: bytes | None) -> None:
        if self.con is None or not (batch.rows or snapshot):
            return
        delay = 0.05
        while True:
            try:  # a snapshot here is the fallback: kept as the single process keeps it
                write_values(
                    self.con,
                    batch.rows,
                    snapshot,
                    self.specs_key,
                    self.cfg.indicators.snapshots_kept,
                )
                return
            except sqlite3.Error as e:
                self.stats["sqlite_errors"] += 1
                log.error(
                    "%s: SQLite commit failed (%s); retrying in %.2f s", self.service, e, delay
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _commit_inline(self, batch: _Batch) -> bool:
        """Commit a small batch of values on the loop when the write lock is free right now
        (the common case: a thread hop costs more than the commit); False otherwise, and the
        caller commits from a thread that waits for the lock."""
        con = self.con
        if con is None or len(batch.rows) > INLINE_ROWS:
            return False
        try:
            return bool(try_write_values_now(con, batch.rows, BUSY_TIMEOUT_MS))
        except sqlite3.Error as e:
            self.stats["sqlite_errors"] += 1
            log.warning("%s: SQLite commit on the loop failed (%s); retrying", self.service, e)
            return False

    async def commit(self, batch: _Batch, snapshot: bool = False) -> None:
        """SQLite first, then one Redis transaction with the values, the XACKs, the dead letters
        and (optionally) the snapshot; retried until Redis takes it."""
        if batch.empty() and not snapshot:
            return
        t0 = time.perf_counter()
        engine_blob = self.engine.snapshot() if snapshot else None
        # the SQLite copy of the snapshot (a fallback) less often than the Redis one
        sqlite_blob = None
        if engine_blob is not None and (
            self._last_sqlite_snapshot is None
            or time.monotonic() - self._last_sqlite_snapshot
            >= self.cfg.indicators.snapshot_interval_s
            or self.stop.is_set()
        ):
            sqlite_blob = engine_blob
            self._last_sqlite_snapshot = time.monotonic()
        if (batch.rows or sqlite_blob is not None) and not (
            sqlite_blob is None and self._commit_inline(batch)
        ):  # off the loop: /health keeps answering while it waits for the write lock
            await asyncio.to_thread(self._commit_sqlite, batch, sqlite_blob)
        if self.link.stats.connects != self._reg_epoch:  # (re)connected: register again
            self._reg_epoch = self.link.stats.connects
            self.builder.registered.clear()
        new = [k for k in batch.newest if k not in self.builder.registered]
        regs = self.builder.registration(new)
        sets: list[bytes] = []
        self.builder.latest(sets, batch.newest)
        tail = sets + regs + batch.dead + self.reader.ack_packet(batch.acks)
        if snapshot:
            assert engine_blob is not None
            tail.append(pack("SET", self.snapshot_key, self._snapshot_blob(engine_blob)))
        packet = b"".join([MULTI, *batch.commands, *tail, EXEC])
        queued = (2 * batch.values if self._streams_on else len(batch.commands)) + len(tail)
        while True:
            try:
                replies = await self.link.request(packet, queued + 2, queued=queued)
            except RedisUnavailable:
                self.state.set("redis_down")
                await self._sleep(self.link.backoff.next())
                continue
            ex = replies[-1]
            if isinstance(ex, hiredis.ReplyError) or not isinstance(ex, list):
                self.stats["commit_errors"] += 1
                log.error("%s: Redis refused the commit transaction: %s", self.service, ex)
                await self._sleep(self.link.backoff.next())
                continue
            break
        if self._streams_on:
            from mandi.bus.redis import PublisherStats

            ps = PublisherStats()
            count_xadd_replies(ex[: 2 * batch.values], ps)
            self.stats["values_written"] += ps.confirmed
            self.stats["values_duplicate"] += ps.duplicates
            self.stats["value_errors"] += ps.errors
        for r in ex[len(ex) - len(tail) :]:
            if isinstance(r, hiredis.ReplyError):
                self.stats["command_errors"] += 1
                log.error("%s: %s", self.service, r)
        self.builder.registered.update(new)
        self.stats["candles"] += batch.candles
        self.stats["values"] += batch.values
        self.stats["acked"] += sum(len(v) for v in batch.acks.values())
        self.stats["commits"] += 1
        if snapshot:
            self.stats["snapshots"] += 1
            self._last_snapshot = time.monotonic()
        self.last_commit_ms = (time.perf_counter() - t0) * 1000
        if self.state.state == "redis_down":
            self.state.set("running")

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stop.wait()

    # --- warm start ----------------------------------------------------------------------------
    async def load_snapshot(self) -> dict[str, bytes]:
        """Restore the newest usable snapshot; return the stream IDs it reflects."""
        raw = await self.link.call("GET", self.snapshot_key)
        if raw is not None:
            try:
                snap = _snap_dec.decode(raw)
                if snap.specs != self.specs_key:
                    raise SnapshotError(f"snapshot of {snap.specs}, engine has {self.specs_key}")
                self.engine.restore(snap.engine)
                log.info(
                    "%s: restored %s (%d series)",
                    self.service,
                    self.snapshot_key,
                    len(self.engine.position()),
                )
                self.stats["restored_redis"] += 1
                return {k: v.encode() for k, v in snap.streams.items()}
            except (msgspec.DecodeError, msgspec.ValidationError, SnapshotError) as e:
                log.warning(
                    "%s: %s unusable (%s); trying SQLite", self.service, self.snapshot_key, e
                )
        if self.con is not None:
            blob = latest_snapshot(self.con, self.specs_key)
            if blob is not None:
                try:
                    self.engine.restore(blob)
                    self.stats["restored_sqlite"] += 1
                    log.info(
                        "%s: restored the SQLite snapshot (%d series)",
                        self.service,
                        len(self.engine.position()),
                    )
                except SnapshotError as e:
                    log.warning("%s: SQLite snapshot unusable (%s)", self.service, e)
        return {}

    def _replay_start(self, key: str, ids: dict[str, bytes]) -> str:
        if key in ids:
            return "(" + ids[key].decode()
        parsed = parse_candle_key(key)
        if parsed is not None:
            last = self.engine.position().get(parsed)
            if last is not None:
                return "(" + stream_id(last)
        return "-"

    async def warm_start(self) -> None:
        rc = self.cfg.redis
        ids = await self.load_snapshot()
        self.last_ids = dict(ids)
        # 1. take over what earlier incarnations (or dead consumers) left pending, without
        #    counting that as a delivery; an entry already tried ``dead_letter_after`` times
        #    (e.g. one that crashes the process) goes to the dead letters
        pending = await self.reader.take_over()
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
        #    claimed first (one more delivery: a real attempt) and acknowledged with its results
        position = {k: self._replay_start(k, ids) for k in self.reader.keys}
        replayed = 0
        ends: dict[str, bytes] = {}
        chunk, per_round = 200, 25  # ≤ 5,000 candles per commit: the loop stays responsive
        todo = list(position.items())
        while todo:
            now, todo = todo[:per_round], todo[per_round:]
            got = await xrange(self.link, now, chunk)
            met = {
                k: [e.id for e in entries if e.id in pending.get(k, ())]
                for k, entries in got.items()
            }
            await self.reader.claim_ids(met)
            batch = _Batch()
            for key, entries in got.items():
                self.process(entries, batch)
                replayed += len(entries)
                if entries:
                    ends[key] = entries[-1].id
                if len(entries) == chunk:
                    todo.append((key, "(" + entries[-1].id.decode()))
            batch.acks = {k: v for k, v in met.items() if v}  # the rest were acknowledged
            # snapshots during a long replay too: a crash loop still makes progress
            due = time.monotonic() - self._last_snapshot >= rc.snapshot_interval_s
            await self.commit(batch, snapshot=due)
            for k, done in met.items():
                for i in done:
                    del pending[k][i]
            if self.stop.is_set():
                return  # stopping: the rest is replayed at the next start
        # what the replay committed need not be delivered again: move the group's cursor to
        # the end of the replay (pending entries stay pending; they are acknowledged next)
        if ends:
            setid = [pack("XGROUP", "SETID", k, GROUP, i) for k, i in ends.items()]
            await self.link.request(b"".join(setid), len(setid))
        # 3. the pending entries the replay did not meet (older than the snapshot: stale, no
        #    output) are claimed, processed and acknowledged
        keep = await self.reader.claim_ids({k: list(v) for k, v in pending.items()})
        batch = _Batch()
        self.process(keep, batch, track=False)
        await self.commit(batch, snapshot=True)
        self.stats["replayed"] += replayed
        log.info(
            "%s: warm start replayed %d candles, re-acknowledged %d pending",
            self.service,
            replayed,
            len(keep),
        )

    # --- live ----------------------------------------------------------------------------------
    async def _discover_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.redis.discover_interval_s)
            with contextlib.suppress(RedisUnavailable, RedisCommandError):
                await self._discover_new()

    async def _discover_new(self) -> None:
        keys = await discover(self._aux, [f"streams:candle:{tf}s" for tf in self.timeframes])
        known = self.reader._known
        self._pending_new = [k for k in keys if k not in known and self.mine(k)]

    async def _backlog_loop(self) -> None:
        from mandi.bus.redis import group_backlog

        while True:
            await asyncio.sleep(5.0)
            with contextlib.suppress(RedisUnavailable, RedisCommandError):
                self.backlog = await group_backlog(self._aux, list(self.reader.keys), GROUP)

    async def _preview_loop(self) -> None:
        """Forming candles (Pub/Sub) → ``peek`` → ``pub:ind:...``."""
        rc = self.cfg.redis
        if self.cfg.indicators.previews == "none":
            return
        patterns = [f"pub:candle:{tf}s:*" for tf in self.timeframes]
        while True:
            try:
                conn = await RespConnection.open(self.link.target, rc.connect_timeout_s)
            except (RedisUnavailable, RedisCommandError):
                await asyncio.sleep(self.link.backoff.next())
                continue
            try:
                await conn.request(pack("PSUBSCRIBE", *patterns), len(patterns))
                while True:
                    (msg,) = await conn.request(b"", 1)
                    if not isinstance(msg, list) or len(msg) != 4 or msg[0] != b"pmessage":
                        continue
                    self._preview(msg[3])
            except RedisUnavailable:
                await asyncio.sleep(self.link.backoff.next())
            finally:
                conn.close()

    def _preview(self, data: bytes) -> None:
        try:
            c = codec.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.stats["previews_undecodable"] += 1
            return
        if type(c) is not Candle or c.closed or c.token % self.shard[1] != self.shard[0]:
            return
        for v in self.engine.peek(c):
            self.previews.forming("pub:" + indicator_topic(v), self._encode(v))
        self.stats["previews"] += 1

    async def run(self, signals: bool = True) -> int:
        rc = self.cfg.redis
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM) if signals else ():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop.set)
        self.health = health = HealthServer(
            self.state, self.cfg.services.host, self.port, self.samples
        )
        await health.start()
        self._aux = RedisLink(
            rc.url, f"{self.service}.aux", rc.connect_timeout_s, backoff_max=rc.backoff_max_s
        )
        self._pending_new = []
        tasks: list[asyncio.Task[Any]] = []
        try:
            self.state.set(
                "waiting_for_redis", redis=self.link.target.safe(), consumer=self.consumer
            )
            await self._until_stopped(self.link.connection())
            if self.stop.is_set():
                return 0
            from mandi.stores.sqlite import connect

            # values (if stored) and fallback snapshots; off the loop: another service may hold
            # the database's write lock for a while (health must still answer)
            self.con = await asyncio.to_thread(connect, self.cfg.store.db)
            self.state.set("warming")
            while not self.stop.is_set():
                try:
                    await self.discover_streams()
                    await self.warm_start()
                    break
                except (RedisUnavailable, RedisCommandError) as e:
                    log.warning(
                        "%s: warm start interrupted (%s); starting it again", self.service, e
                    )
                    self.state.set("waiting_for_redis")
                    await self._sleep(self.link.backoff.next())
            if self.stop.is_set():
                return 0
            await asyncio.to_thread(load_kernels, self.cfg.indicators.specs)
            self.state.set("running", streams=len(self.reader.keys))
            tasks = [
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
            self.previews.flush_blocking(1.0)
            self.link.close()
            self._aux.close()
            self.previews.link.close()
            if self.con is not None:
                self.con.close()
            self.state.set("stopped")
            await health.close()
            log.info("%s stopped: %s", self.service, dict(self.stats))
        return 0

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
        """After a reconnect: entries Redis delivered to us whose reply we never read, or whose
        XACK it lost in a crash (an AOF keeps the delivery, not the unsent ack), stay pending
        and XREADGROUP ``>`` never returns them again. Claim and process them now: stale ones
        give no output and are acknowledged, unseen ones are processed in ID order."""
        rc = self.cfg.redis
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
            log.info("%s: %d pending entries claimed after a reconnect", self.service, len(keep))

    async def _live(self) -> None:
        rc = self.cfg.redis
        connects = self.link.stats.connects
        while not self.stop.is_set():
            if self.link.stats.connects != connects:  # reconnected since the last read
                connects = self.link.stats.connects  # (a reconnect during recovery: again)
                try:
                    await self._recover_pending()
                except RedisUnavailable:
                    self.state.set("redis_down")
                    await self._sleep(self.link.backoff.next())
                    continue
                except RedisCommandError as e:
                    log.error("%s: recovering pending entries failed: %s", self.service, e)
                    await self._sleep(self.link.backoff.next())
                    continue
            if self._pending_new:
                new, self._pending_new = self._pending_new, []
                try:
                    await self.reader.add_keys(new)
                except RedisUnavailable:
                    self._pending_new = new + self._pending_new
            try:
                # COUNT is per stream: bound the whole batch to ~5,000 entries
                count = max(10, min(rc.read_count, 5000 // max(1, len(self.reader.keys))))
                entries = await self._until_stopped(self.reader.read(count, rc.block_ms))
            except RedisUnavailable:
                self.state.set("redis_down")
                await self._sleep(self.link.backoff.next())
                continue
            except RedisCommandError as e:
                log.error("%s: reading failed: %s", self.service, e)
                await self._sleep(self.link.backoff.next())
                continue
            if entries is None:  # stopping
                break
            if self.link.stats.connects != connects:
                continue  # read over a new connection: recovered in ID order, with older ones
            if self.state.state == "redis_down":
                self.state.set("running")
            batch = _Batch()
            self.process(entries, batch)
            due = time.monotonic() - self._last_snapshot >= rc.snapshot_interval_s
            await self.commit(batch, snapshot=due and bool(entries))
        # graceful stop: a final snapshot (everything processed is committed already)
        if self.link.up:
            with contextlib.suppress(RedisUnavailable, TimeoutError):
                async with asyncio.timeout(5):
                    await self.commit(_Batch(), snapshot=True)

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
        yield ("replayed_total", "counter", "Candles replayed at warm start", s["replayed"], {})
        yield ("snapshots_total", "counter", "Engine snapshots stored", s["snapshots"], {})
        yield ("previews_total", "counter", "Forming candles previewed", s["previews"], {})
        for reason, n in self.dead_reasons.items():
            yield (
                "dead_lettered_total",
                "counter",
                "Entries moved to the dead-letter stream",
                n,
                {"reason": reason},
            )
        for reason, n in self.engine.rejected.items():
            yield (
                "candles_rejected_total",
                "counter",
                "Candles the engine rejected",
                n,
                {"reason": reason},
            )
        yield ("streams", "gauge", "Candle streams consumed", len(self.reader.keys), {})
        yield (
            "pending",
            "gauge",
            "Delivered, not yet acknowledged (sampled every 5 s)",
            self.backlog[0],
            {},
        )
        yield ("lag", "gauge", "Not yet delivered (sampled every 5 s)", self.backlog[1], {})
        yield ("last_commit_ms", "gauge", "Duration of the last commit", self.last_commit_ms, {})
        yield from link_samples(self.link, "consumer")
        yield from publisher_samples(self.previews, "previews")


async def run_indengine(
    cfg: AppConfig,
    shard: tuple[int, int] = (0, 1),
    port: int | None = None,
    consumer: str | None = None,
) -> int:
    return await IndEngineService(cfg, shard, consumer, port).run()


__all__ = ["GROUP", "SNAPSHOT_KEY", "IndEngineService", "IndicatorValue", "run_indengine"]
