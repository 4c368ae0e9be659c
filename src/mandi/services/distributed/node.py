"""A service host for ``mandi run``'s layers, fed from Redis instead of a feed.

``RedisNode`` offers what a :class:`~mandi.services.node.Layer` expects of its node — ``bus``
(the in-process :class:`~mandi.bus.memory.MessageBus`), ``clock``, ``cfg``, ``master`` (loaded
from ``instruments:master``), ``writer`` (the SQLite :class:`~mandi.stores.sqlite.BatchWriter`)
and ``event(...)`` — so the strategy/execution layer and the web layer run unchanged in a service:

* **stream inputs**: a consumer group over the streams of the given discovery sets (e.g.
  ``streams:candle:60s``); each entry is decoded and published on the local bus under its key
  (the key *is* the in-process topic). After a read batch has gone through the bus, the layers'
  ``after_batch`` run and the writer's queue is committed; only then are the entries
  acknowledged (XACK). At start the consumer's own pending entries are processed first; entries
  other consumers left pending for ``redis.claim_idle_ms`` are claimed (XAUTOCLAIM); an entry
  delivered ``redis.dead_letter_after`` times, or one that does not decode, goes to
  ``dlq:{group}`` with the reason.
* **Pub/Sub inputs** (live views such as forming candles, previews and ticks): ``pub:X`` is
  published locally as ``X`` when the message is confirmed (a confirmed candle or value) and as
  ``pub:X`` otherwise — the same topics a layer sees in ``mandi run``.
* **outputs**: local topics matching ``outputs`` go to Redis like mdengine's candles
  (XADD + SET latest + PUBLISH; explicit IDs for bucketed messages, ``*`` otherwise).

Sinks must be idempotent (they are: SQLite upserts keyed by the message, deterministic ids), so
at-least-once delivery gives effectively-once results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections import Counter
from collections.abc import Coroutine, Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import hiredis
import msgspec

from mandi.bus.codec import codec
from mandi.bus.memory import MessageBus
from mandi.bus.redis import (
    EXEC,
    MULTI,
    Entry,
    GroupReader,
    RedisCommandError,
    RedisLink,
    RedisTarget,
    RedisUnavailable,
    RespConnection,
    StreamPublisher,
    SyncRespConnection,
    _entries,
    discover,
    pack,
    stream_id,
)
from mandi.config import AppConfig
from mandi.core.clock import NS_PER_SECOND, Clock, LiveClock
from mandi.model.events import SystemEvent
from mandi.model.instruments import InstrumentMaster, parse_instrument_csv
from mandi.model.market import Candle, IndicatorValue, Tick
from mandi.services.distributed.health import (
    HealthServer,
    Sample,
    ServiceState,
    link_samples,
    publisher_samples,
)
from mandi.services.distributed.mdengine import MASTER_KEY
from mandi.services.node import NodeStats
from mandi.stores.sqlite import BatchWriter

log = logging.getLogger(__name__)


class RedisNode:
    """Consumers on Redis → the same layers/kernel code as ``mandi run`` → outputs on Redis."""

    def __init__(
        self,
        cfg: AppConfig,
        service: str,
        group: str,
        registries: Sequence[str],
        layers: Sequence[Any] = (),
        pubsub: Sequence[str] = (),
        outputs: Sequence[str] = (),
        port: int = -1,
        consumer: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        rc = cfg.redis
        self.cfg = cfg
        self.service = service
        self.group = group
        self.registries = list(registries)
        self.layers = list(layers)
        self.pubsub = list(pubsub)
        self.outputs = list(outputs)
        self.port = port
        self.state = ServiceState(service)
        self.clock = clock or LiveClock()
        self.bus = MessageBus(self.clock)
        self.master = InstrumentMaster()
        self.known_tokens: set[int] = set()
        # what mandi run's layers also read of their node: no feed here (exchange time comes
        # from the data: the watermark is the end of the last candle or the last tick seen)
        self.feed = None
        self.stats: Any = SimpleNamespace(resumed_from_ns=None)
        self.pipeline = SimpleNamespace(seconds=SimpleNamespace(watermark_ns=0))
        st = cfg.store
        # flush at once: a read batch is acknowledged only after its rows are committed
        self.writer = BatchWriter(
            st.db,
            flush_interval=0.0,
            flush_items=st.flush_items,
            max_pending_rows=st.max_pending_rows,
        )
        self.consumer = consumer or rc.consumer or f"{service}-{socket.gethostname()}"
        self.link = RedisLink(rc.url, service, rc.connect_timeout_s, backoff_max=rc.backoff_max_s)
        self._aux = RedisLink(
            rc.url, f"{service}.aux", rc.connect_timeout_s, backoff_max=rc.backoff_max_s
        )
        self.reader = GroupReader(self.link, group, self.consumer)
        self.publisher = StreamPublisher(
            RedisLink(rc.url, f"{service}.out", rc.connect_timeout_s, backoff_max=rc.backoff_max_s),
            rc.retention_s,
            rc.latest_ttl_s,
            rc.buffer_max,
            rc.publish_batch,
        )
        self.stop = asyncio.Event()
        self.received = 0
        self.acked = 0
        self.dead = 0
        self.pubsub_received = 0
        for pattern in self.outputs:
            self.bus.subscribe(pattern, self._output, name=f"{service}.redis-out")

    # --- what layers use ------------------------------------------------------------------------
    def event(self, kind: str, message: str, severity: str = "INFO", **data: Any) -> None:
        self.bus.publish(
            f"system:{kind}",
            SystemEvent(self.clock.now_ns(), kind, message, severity, self.service, data),
        )

    def _output(self, topic: str, msg: Any) -> None:
        bucket = getattr(msg, "bucket", None)
        eid = stream_id(bucket) if isinstance(bucket, int) else "*"
        self.publisher.confirmed(topic, eid, codec.encode(msg))

    # --- inputs ---------------------------------------------------------------------------------
    async def load_master(self) -> None:
        raw = await self.link.call("GET", MASTER_KEY)
        if raw:
            for inst in parse_instrument_csv(raw.decode()):
                if inst.token not in self.master:
                    self.master.add(inst)
                self.known_tokens.add(inst.token)

    def _deliver(
        self, entries: Iterable[Entry], dead: list[bytes], acks: dict[str, list[bytes]]
    ) -> None:
        publish = self.bus.publish
        for e in entries:
            if e.payload is None:
                if e.fields:
                    dead += self.reader.dead_letter_packet(e, "no 'd' field in the entry", 1)
                    self.dead += 1
                else:
                    acks.setdefault(e.key, []).append(e.id)
                continue
            try:
                msg = codec.decode(e.payload)
            except (msgspec.DecodeError, msgspec.ValidationError) as ex:
                dead += self.reader.dead_letter_packet(e, f"undecodable: {ex}", 1)
                self.dead += 1
                continue
            self._advance(msg)
            publish(e.key, msg)  # handler errors are isolated by the bus
            acks.setdefault(e.key, []).append(e.id)
        self.received += sum(len(v) for v in acks.values())

    async def _commit(self, dead: list[bytes], acks: dict[str, list[bytes]]) -> None:
        for layer in self.layers:
            after = getattr(layer, "after_batch", None)
            if after is not None:
                after()
        await asyncio.to_thread(self.writer.wait_idle, 3600.0)  # the layers' rows are committed
        cmds = dead + self.reader.ack_packet(acks)
        if not cmds:
            return
        packet = b"".join([MULTI, *cmds, EXEC])
        while True:
            try:
                replies = await self.link.request(packet, len(cmds) + 2)
                if isinstance(replies[-1], hiredis.ReplyError):
                    raise RedisCommandError(str(replies[-1]))
                break
            except (RedisUnavailable, RedisCommandError):
                self.state.set("redis_down")
                await asyncio.sleep(self.link.backoff.next())
        self.acked += sum(len(v) for v in acks.values())

    async def _own_pending(self) -> None:
        """Entries delivered to this consumer before a restart, in order, first."""
        starts = dict.fromkeys(self.reader.keys, "0")
        while starts:
            keys = list(starts)
            (reply,) = await self.link.request(
                pack(
                    "XREADGROUP",
                    "GROUP",
                    self.group,
                    self.consumer,
                    "COUNT",
                    self.cfg.redis.read_count,
                    "STREAMS",
                    *keys,
                    *[starts[k] for k in keys],
                ),
                1,
            )
            if isinstance(reply, hiredis.ReplyError):
                raise RedisCommandError(str(reply))
            got: list[Entry] = []
            for key, items in reply or ():
                es = _entries(key.decode(), items)
                got += es
                if es:
                    starts[key.decode()] = es[-1].id.decode()
            done = {k for k in keys if not any(e.key == k for e in got)}
            for k in done:
                starts.pop(k, None)
            if got:
                dead: list[bytes] = []
                acks: dict[str, list[bytes]] = {}
                self._deliver(got, dead, acks)
                await self._commit(dead, acks)

    async def _claim(self) -> None:
        """Take over entries other consumers left pending too long; dead-letter poison."""
        rc = self.cfg.redis
        claimed = await self.reader.claim(rc.claim_idle_ms)
        if not claimed:
            return
        dead: list[bytes] = []
        acks: dict[str, list[bytes]] = {}
        ok = []
        for e, n in claimed:
            if n >= rc.dead_letter_after:
                dead += self.reader.dead_letter_packet(
                    e, f"delivered {n} times without acknowledgement", n
                )
                self.dead += 1
            else:
                ok.append(e)
        self._deliver(ok, dead, acks)
        await self._commit(dead, acks)

    async def _pubsub_loop(self) -> None:
        if not self.pubsub:
            return
        while True:
            try:
                conn = await RespConnection.open(self.link.target, self.cfg.redis.connect_timeout_s)
            except (RedisUnavailable, RedisCommandError):
                await asyncio.sleep(self.link.backoff.next())
                continue
            try:
                await conn.request(pack("PSUBSCRIBE", *self.pubsub), len(self.pubsub))
                while True:
                    (m,) = await conn.request(b"", 1)
                    if isinstance(m, list) and len(m) == 4 and m[0] == b"pmessage":
                        self._on_pubsub(m[2].decode(), m[3])
            except RedisUnavailable:
                await asyncio.sleep(self.link.backoff.next())
            finally:
                conn.close()

    def _on_pubsub(self, channel: str, data: bytes) -> None:
        try:
            msg = codec.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        self.pubsub_received += 1
        # confirmed candles/values and plain messages (ticks) under their in-process topic;
        # forming candles and previews keep the pub: prefix, as in mandi run
        confirmed = getattr(msg, "closed", getattr(msg, "confirmed", True))
        topic = channel[4:] if confirmed and channel.startswith("pub:") else channel
        if type(msg) is Tick:
            self._advance(msg)
        self.bus.publish(topic, msg)

    def _advance(self, msg: Any) -> None:
        seconds = self.pipeline.seconds
        if type(msg) is Candle and msg.closed:
            end = msg.bucket + msg.timeframe * NS_PER_SECOND
        elif type(msg) is Tick:
            end = msg.ts_event
        else:
            return
        if end > seconds.watermark_ns:
            seconds.watermark_ns = end

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.redis.discover_interval_s)
            with contextlib.suppress(RedisUnavailable, RedisCommandError):
                keys = await discover(self._aux, self.registries)
                self._new = [k for k in keys if k not in self.reader._known]

    # --- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop.set)
        health = HealthServer(self.state, self.cfg.services.host, self.port, self.samples)
        await health.start()
        self._new = []
        tasks: list[asyncio.Task[Any]] = []
        self.writer.start()
        try:
            self.state.set("waiting_for_redis", redis=self.link.target.safe())
            await self.link.connection()
            await self.load_master()
            for layer in self.layers:
                layer.attach(self)
            self.state.set("warming")
            await self.reader.add_keys(await discover(self.link, self.registries))
            await self._own_pending()
            self.state.set("running", streams=len(self.reader.keys))
            coros: list[Coroutine[Any, Any, Any]] = [
                self._pubsub_loop(),
                self._maintain(),
                self.publisher.run(),
            ]
            for layer in self.layers:
                coros += layer.tasks()
            tasks = [asyncio.create_task(c) for c in coros]
            await self._live()
        finally:
            self.state.set("stopping")
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for layer in reversed(self.layers):
                try:
                    layer.close()
                except Exception:
                    log.exception("layer %s failed to close", getattr(layer, "name", layer))
            self.writer.stop()
            self.publisher.flush_blocking(5.0)
            for link in (self.link, self._aux, self.publisher.link):
                link.close()
            self.state.set("stopped")
            await health.close()
        return 0

    async def _live(self) -> None:
        rc = self.cfg.redis
        loop_time = asyncio.get_running_loop().time
        last_claim = loop_time()
        while not self.stop.is_set():
            if self._new:
                new, self._new = self._new, []
                with contextlib.suppress(RedisUnavailable):
                    await self.reader.add_keys(new)
            if loop_time() - last_claim > max(rc.claim_idle_ms / 2000, 1.0):
                last_claim = loop_time()
                with contextlib.suppress(RedisUnavailable):
                    await self._claim()
            read = asyncio.ensure_future(self.reader.read(rc.read_count, rc.block_ms))
            stopper = asyncio.ensure_future(self.stop.wait())
            done, _ = await asyncio.wait({read, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
                break
            stopper.cancel()
            try:
                entries = read.result()
            except RedisUnavailable:
                self.state.set("redis_down")
                await asyncio.sleep(self.link.backoff.next())
                continue
            if self.state.state == "redis_down":
                self.state.set("running")
            if entries:
                dead: list[bytes] = []
                acks: dict[str, list[bytes]] = {}
                self._deliver(entries, dead, acks)
                await self._commit(dead, acks)

    def samples(self) -> Iterable[Sample]:
        yield (
            "received_total",
            "counter",
            "Stream entries delivered to the layers",
            self.received,
            {},
        )
        yield ("acked_total", "counter", "Stream entries acknowledged", self.acked, {})
        yield (
            "dead_lettered_total",
            "counter",
            "Entries moved to the dead-letter stream",
            self.dead,
            {},
        )
        yield (
            "pubsub_received_total",
            "counter",
            "Pub/Sub messages received",
            self.pubsub_received,
            {},
        )
        yield ("streams", "gauge", "Streams consumed", len(self.reader.keys), {})
        yield (
            "handler_errors_total",
            "counter",
            "Bus handler errors (isolated)",
            self.bus.handler_errors,
            {},
        )
        yield from link_samples(self.link, "consumer")
        yield from publisher_samples(self.publisher, "outputs")


def strategy_layers(cfg: AppConfig) -> list[Any]:
    """The layers of the strategy/execution service: the trading layer ``mandi run`` plugs into
    its node (strategies → signals → risk → execution in ``run.mode``), unchanged."""
    from mandi.services.trading import TradingLayer

    return [TradingLayer(cfg)]


def gateway_layers(cfg: AppConfig) -> list[Any]:
    """The layers of the gateway service: the web layer ``mandi run`` uses (REST + WebSocket +
    dashboard on ``run.host:run.port``, the same security), unless ``run.dashboard`` is off."""
    if not cfg.run.dashboard:
        return []
    from mandi.web.layer import WebLayer

    return [WebLayer(cfg)]


async def run_strategy(cfg: AppConfig, port: int, consumer: str | None = None) -> int:
    """``mandi service strategy``: confirmed candles (streams, consumer group ``strategy``),
    indicator values and ticks (Pub/Sub) → the trading layers; their signals, orders and
    events go back to Redis streams."""
    tfs = sorted(set(cfg.pipeline.timeframes))
    node = RedisNode(
        cfg,
        "strategy",
        "strategy",
        [f"streams:candle:{tf}s" for tf in tfs],
        strategy_layers(cfg),
        pubsub=["pub:tick:*", "pub:ind:*"],
        outputs=["signal:>", "order:>", "fill:>", "position:>"],
        port=port,
        consumer=consumer,
    )
    return await node.run()


async def run_gateway(cfg: AppConfig, port: int) -> int:
    """``mandi service gateway``: every Pub/Sub channel (``pub:*``) → the web layer."""
    return await GatewayNode(cfg, port).run()


# --- the gateway ---------------------------------------------------------------------------------


class GatewayNode(RedisNode):
    """The gateway's host: a :class:`RedisNode` on every ``pub:*`` channel that also keeps what
    :class:`~mandi.web.api.MandiAPI` reads of a ``MarketNode`` — ``stats`` (ticks received,
    last prices, confirmed candles per timeframe, exchange time: all from what comes over
    Pub/Sub), an always-empty ``queue``, ``pipeline.seconds.rejected`` — and

    * ``trading_service``: execution (orders, cancels, halt/resume, live P&L) belongs to that
      service; the API answers its state-changing routes with 503 ``trading_unavailable``
      naming it (nothing is relayed) and reads positions, orders and signals from SQLite;
    * ``history``: candles and indicator values from the Redis streams, read when the SQLite
      file (``store.db``, shared with mdengine/indengine/strategy on one machine) has none —
      a gateway on a machine of its own.

    The instrument master is reloaded when ``instruments:master`` changes (mdengine may start
    after the gateway)."""

    trading_service = "strategy"

    def __init__(
        self,
        cfg: AppConfig,
        port: int = -1,
        layers: Sequence[Any] | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            cfg,
            "gateway",
            "gateway",
            [],
            gateway_layers(cfg) if layers is None else layers,
            pubsub=["pub:*"],
            port=port,
            clock=clock,
        )
        self.stats = NodeStats()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()  # no feed queue here: always empty
        self.pipeline.seconds.rejected = Counter()  # no ticks are validated here
        self.history = RedisHistory(cfg.redis.url, cfg.redis.connect_timeout_s)
        self._ticked: set[int] = set()
        self._master_size = -1
        self.bus.subscribe("tick:>", self._on_tick, name="gateway.stats")
        self.bus.subscribe("candle:>", self._on_candle, name="gateway.stats")

    def _on_tick(self, topic: str, t: Tick) -> None:
        s = self.stats
        s.ticks_in += 1
        s.last_price[t.token] = t.price
        self._ticked.add(t.token)
        if t.ts_event > s.exchange_time_ns:
            s.exchange_time_ns = t.ts_event

    def _on_candle(self, topic: str, c: Candle) -> None:
        s = self.stats
        s.candles_confirmed[c.timeframe] += 1
        # instruments whose ticks are not on Pub/Sub (redis.ticks): the last 1 s close
        if c.timeframe == 1 and c.token not in self._ticked:
            s.last_price[c.token] = c.close
        end = c.bucket + c.timeframe * NS_PER_SECOND
        if end > s.exchange_time_ns:
            s.exchange_time_ns = end
        self._advance(c)

    async def load_master(self) -> None:
        size = await self.link.call("STRLEN", MASTER_KEY)
        if size != self._master_size:
            self._master_size = size
            await super().load_master()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.redis.discover_interval_s)
            with contextlib.suppress(RedisUnavailable, RedisCommandError):
                await self.load_master()

    async def run(self) -> int:
        try:
            return await super().run()
        finally:
            self.history.close()


class RedisHistory:
    """Confirmed candles and indicator values read back from their Redis streams (XREVRANGE;
    ``redis.retention_s`` of each timeframe), oldest first. Blocking, one connection per thread:
    the API runs these reads in worker threads. Raises ``RedisUnavailable`` when Redis cannot be
    reached (the API answers 503)."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.target = RedisTarget.from_url(url)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._conns: list[SyncRespConnection] = []
        self._lock = threading.Lock()

    def _call(self, *args: str | int) -> Any:
        for attempt in (0, 1):
            con: SyncRespConnection | None = getattr(self._local, "con", None)
            try:
                if con is None:
                    con = self._local.con = SyncRespConnection(self.target, self.timeout_s)
                    with self._lock:
                        self._conns.append(con)
                return con.call(*args)
            except RedisUnavailable:
                if con is not None:
                    con.close()
                self._local.con = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _range(self, key: str, end_ns: int, limit: int) -> list[Any]:
        """The ``limit`` newest messages of a stream with a bucket before ``end_ns``."""
        end = "+" if end_ns >= 1 << 62 else f"({end_ns // 1_000_000}-0"
        out = []
        for item in self._call("XREVRANGE", key, end, "-", "COUNT", limit) or ():
            fields = item[1] or []
            payload = dict(zip(fields[::2], fields[1::2], strict=False)).get(b"d")
            if payload is None:
                continue
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                out.append(codec.decode(payload))
        out.reverse()
        return out

    def candles(
        self, token: int, exchange: str, timeframe: int, end_ns: int, limit: int
    ) -> list[Candle]:
        key = f"candle:{timeframe}s:{exchange}:{token}"
        return [c for c in self._range(key, end_ns, limit) if type(c) is Candle]

    def indicator_names(self, token: int, exchange: str, timeframe: int) -> list[str]:
        match, cursor = f"ind:*:{timeframe}s:{exchange}:{token}", "0"
        names: set[str] = set()
        while True:
            cursor_b, keys = self._call(
                "SSCAN", f"streams:ind:{timeframe}s", cursor, "MATCH", match, "COUNT", 1000
            )
            names.update(k.decode().split(":")[1] for k in keys)
            cursor = cursor_b.decode()
            if cursor == "0":
                return sorted(names)

    def indicator_values(
        self, token: int, exchange: str, timeframe: int, name: str, end_ns: int, limit: int
    ) -> list[tuple[int, float]]:
        key = f"ind:{name}:{timeframe}s:{exchange}:{token}"
        return [
            (v.bucket, v.value)
            for v in self._range(key, end_ns, limit)
            if type(v) is IndicatorValue
        ]

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for con in conns:
            con.close()
