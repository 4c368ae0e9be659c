"""A service host for ``mandi run``'s layers, fed from Redis instead of a feed.

``RedisNode`` gives its layers the :class:`~mandi.services.context.NodeContext` ``mandi run``
gives them — ``bus`` (the in-process :class:`~mandi.bus.memory.MessageBus`), ``clock``, ``cfg``,
``master`` (loaded from ``instruments:master``), ``writer`` (the SQLite
:class:`~mandi.stores.sqlite.BatchWriter`), ``event(...)``; no feed, and the watermark is the end of
the last candle or tick received — so the strategy/execution layer and the web layer run unchanged
in a service:

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
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterable, Sequence
from contextvars import ContextVar
from typing import Any

import hiredis
import msgspec

from mandi.bus.codec import codec
from mandi.bus.memory import MessageBus
from mandi.bus.redis import (
    EXEC,
    MULTI,
    BlockingRedis,
    Command,
    Entry,
    GroupReader,
    PendingWatch,
    RedisCommandError,
    RedisLink,
    RedisUnavailable,
    StreamPublisher,
    Subscriber,
    TrimWatch,
    _entries,
    discover,
    pack,
    partition_tag,
    stream_id,
    tagged,
    untagged,
    wake_channel,
)
from mandi.config import AppConfig
from mandi.core.clock import NS_PER_SECOND, Clock, LiveClock
from mandi.core.errors import MandiError
from mandi.model.instruments import InstrumentMaster, parse_instrument_csv
from mandi.model.market import Candle, IndicatorValue, Tick
from mandi.services.context import NodeContext, NodeStats
from mandi.services.distributed.health import (
    HealthServer,
    Sample,
    ServiceState,
    link_samples,
    publisher_samples,
    trim_samples,
)
from mandi.services.distributed.mdengine import MASTER_KEY
from mandi.services.storage import EXIT_NOT_STORED, StorageWatch, storage_summary
from mandi.stores.sqlite import BatchWriter

log = logging.getLogger(__name__)


class RedisNode:
    """Consumers on Redis → the same layers/kernel code as ``mandi run`` → outputs on Redis."""

    context_class: type[NodeContext] = NodeContext

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
        self.stats = NodeStats()
        # no feed here: exchange time comes from the data (the end of the last candle or the
        # last tick seen)
        self.watermark_ns = 0
        st = cfg.store
        # flush at once: a read batch is acknowledged only after its rows are committed
        self.writer = BatchWriter(
            st.db,
            flush_interval=0.0,
            flush_items=st.flush_items,
            max_pending_rows=st.max_pending_rows,
        )
        self.consumer = consumer or rc.consumer or f"{service}-{socket.gethostname()}"
        self.link = self._new_link("", rc.wait_replicas)
        self._aux = self._new_link(".aux")
        self.reader = GroupReader(self.link, group, self.consumer, sweep_s=rc.sweep_s)
        self.trims = TrimWatch(group)  # entries trimmed before the group read them
        self.reader.watch(  # each doorbell on its partition's master, where it rings
            [wake_channel(reg, p) for reg in self.registries for p in range(rc.partitions)],
            {
                wake_channel(reg, p): partition_tag(p, rc.partitions)
                for reg in self.registries
                for p in range(rc.partitions)
            },
        )
        self.publisher = StreamPublisher(
            self._new_link(".out", rc.wait_replicas),
            rc.retention_s,
            rc.latest_ttl_s,
            rc.buffer_max,
            rc.publish_batch,
            partitions=rc.partitions,
        )
        self.subscriber: Subscriber | None = None
        self.stop = asyncio.Event()
        self.received = 0
        self.acked = 0
        self.dead = 0
        self.pubsub_received = 0
        self.ctx = self.context_class(
            cfg,
            self.clock,
            self.bus,
            self.master,
            self.writer,
            self.stats,
            source=service,
            layers=self.layers,
            known_tokens=self.known_tokens,
            watermark_ns=lambda: self.watermark_ns,
        )
        self.storage = StorageWatch(self.writer, self.ctx.event, f"SQLite {st.db}")
        for pattern in self.outputs:
            self.bus.subscribe(pattern, self._output, name=f"{service}.redis-out")

    def _new_link(self, suffix: str, wait_replicas: int = 0) -> RedisLink:
        rc = self.cfg.redis
        return RedisLink(
            rc.url,
            f"{self.service}{suffix}",
            rc.connect_timeout_s,
            backoff_max=rc.backoff_max_s,
            wait_replicas=wait_replicas,
            wait_timeout_ms=rc.wait_timeout_ms,
        )

    def _output(self, topic: str, msg: Any) -> None:
        bucket = getattr(msg, "bucket", None)
        eid = stream_id(bucket) if isinstance(bucket, int) else "*"
        self.publisher.confirmed(topic, eid, codec.encode(msg))

    # --- inputs ---------------------------------------------------------------------------------
    async def load_master(self) -> None:
        raw = await self.link.call("GET", MASTER_KEY)
        if raw:
            self.ctx.add_instruments(parse_instrument_csv(raw.decode()))

    def _deliver(
        self, entries: Iterable[Entry], dead: list[Command], acks: dict[str, list[bytes]]
    ) -> None:
        publish = self.bus.publish
        for e in entries:
            if e.payload is None:
                if e.fields:
                    dead += self.reader.dead_letter_commands(e, "no 'd' field in the entry", 1)
                    self.dead += 1
                else:
                    acks.setdefault(e.key, []).append(e.id)
                continue
            try:
                msg = codec.decode(e.payload)
            except (msgspec.DecodeError, msgspec.ValidationError) as ex:
                dead += self.reader.dead_letter_commands(e, f"undecodable: {ex}", 1)
                self.dead += 1
                continue
            self._advance(msg)
            publish(e.topic, msg)  # handler errors are isolated by the bus
            acks.setdefault(e.key, []).append(e.id)
        self.received += sum(len(v) for v in acks.values())

    async def _commit(self, dead: list[Command], acks: dict[str, list[bytes]]) -> None:
        for layer in self.layers:
            after = getattr(layer, "after_batch", None)
            if after is not None:
                after()
        await asyncio.to_thread(self.writer.wait_idle, 3600.0)  # the layers' rows are committed
        # dead letters (every third command is the dead-letter XADD) exist before their entries
        # are acknowledged away; then the XACKs
        for cmds in (dead[0::3], dead[1::3] + dead[2::3] + self.reader.ack_commands(acks)):
            while cmds:
                try:
                    await self.link.pipeline(cmds)
                    break
                except RedisUnavailable:
                    self.state.set("redis_down")
                    await asyncio.sleep(self.link.backoff.next())
        self.acked += sum(len(v) for v in acks.values())

    async def _own_pending(self) -> None:
        """Entries delivered to this consumer before a restart, in order, first (XREADGROUP
        from ``0`` per key)."""
        starts = dict.fromkeys(self.reader.keys, "0")
        count = self.cfg.redis.read_count
        while starts:
            keys = list(starts)
            replies = await self.link.pipeline(
                [
                    (k, pack("XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count,
                             "STREAMS", k, starts[k]))
                    for k in keys
                ]
            )  # fmt: skip
            got: list[Entry] = []
            for key, reply in zip(keys, replies, strict=True):
                if isinstance(reply, hiredis.ReplyError) and "NOGROUP" in str(reply):
                    starts.pop(key, None)  # Redis lost the group: nothing pending (read recreates)
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    raise RedisCommandError(str(reply))
                es = [e for _, items in reply or () for e in _entries(key, items)]
                got += es
                if es:
                    starts[key] = es[-1].id.decode()
                else:
                    starts.pop(key, None)
            if got:
                dead: list[Command] = []
                acks: dict[str, list[bytes]] = {}
                self._deliver(got, dead, acks)
                await self._commit(dead, acks)

    async def _claim(self) -> None:
        """Take over entries other consumers left pending too long; dead-letter poison."""
        rc = self.cfg.redis
        claimed = await self.reader.claim(rc.claim_idle_ms)
        if not claimed:
            return
        dead: list[Command] = []
        acks: dict[str, list[bytes]] = {}
        ok = []
        for e, n in claimed:
            if n >= rc.dead_letter_after:
                dead += self.reader.dead_letter_commands(
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
        link = self._new_link(".pubsub")
        self.subscriber = sub = Subscriber(
            link, lambda ch, data, _: self._on_pubsub(ch.decode(), data)
        )
        await link.connection()
        await self._subscriptions()
        try:
            await sub.run()
        finally:
            link.close()

    async def _subscriptions(self) -> None:
        """What :attr:`pubsub` asks for: patterns as they are (plain PUBLISHes: signals,
        orders, events…) and, on a cluster, the sharded per-instrument channels they match
        (candles and values from the discovery sets, ticks from the instrument master)."""
        sub = self.subscriber
        if sub is None:
            return
        if not sub.link.cluster:
            sub.set(patterns=self.pubsub)
            return
        import fnmatch

        rc, cfg = self.cfg.redis, self.cfg
        tfs = sorted({1, *cfg.pipeline.timeframes, *cfg.indicators.timeframes})
        registries = [f"streams:{fam}:{tf}s" for fam in ("candle", "ind") for tf in tfs]
        keys = await discover(self._aux, registries)
        channels = ["pub:" + k for k in keys]
        if rc.ticks != "none":
            channels += [
                "pub:" + tagged(f"tick:{i.exchange}:{i.token}")
                for i in self.master
                if rc.ticks == "all" or i.token in self._tick_tokens()
            ]
        wanted = [
            ch for ch in channels if any(fnmatch.fnmatchcase(untagged(ch), p) for p in self.pubsub)
        ]
        sub.set(patterns=self.pubsub, sharded=wanted)

    def _tick_tokens(self) -> set[int]:
        from mandi.model.instruments import Option

        return {i.token for i in self.master if not isinstance(i, Option)}

    def _on_pubsub(self, channel: str, data: bytes) -> None:
        channel = untagged(channel)
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
        if type(msg) is Candle and msg.closed:
            end = msg.bucket + msg.timeframe * NS_PER_SECOND
        elif type(msg) is Tick:
            end = msg.ts_event
        else:
            return
        if end > self.watermark_ns:
            self.watermark_ns = end

    async def _maintain(self) -> None:
        loop_time = asyncio.get_running_loop().time
        next_trim_check = loop_time() + self.cfg.redis.sweep_s
        while True:
            await asyncio.sleep(self.cfg.redis.discover_interval_s)
            with contextlib.suppress(RedisUnavailable, RedisCommandError):
                keys = await discover(self._aux, self.registries)
                self._new = [k for k in keys if k not in self.reader._known]
                await self._subscriptions()
                if loop_time() >= next_trim_check:
                    next_trim_check = loop_time() + self.cfg.redis.sweep_s
                    await self.check_trims(self._aux, list(self.reader.keys))

    async def check_trims(self, link: RedisLink, keys: list[str]) -> None:
        """Entries trimmed away before this group read them (the consumer was down, or behind,
        for longer than the retention): one ERROR line per stream, counted
        (``stream_trimmed_unread_total``), and a ``system:stream_trimmed`` event."""
        for t in await self.trims.check(link, keys):
            message = t.message(self.service)
            log.error("%s", message)
            self.state.detail["trimmed_unread"] = sum(self.trims.lost.values())
            self.ctx.event(
                "stream_trimmed",
                message,
                "ERROR",
                stream=t.key,
                group=t.group,
                lost=t.lost,
                exact=t.exact,
            )

    async def _watch_storage(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self.storage.check()

    # --- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> int:
        """Serve until stopped; the exit status says whether every row was stored."""
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
                layer.attach(self.ctx)
            self.state.set("warming")
            await self.reader.add_keys(await discover(self.link, self.registries))
            await self.check_trims(self.link, list(self.reader.keys))
            await self._own_pending()
            self.state.set("running", streams=len(self.reader.keys))
            coros: list[Coroutine[Any, Any, Any]] = [
                self._pubsub_loop(),
                self._maintain(),
                self._watch_storage(),
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
            self.storage.check()
            lost, _ = storage_summary(self.writer, f"SQLite {self.cfg.store.db}")
            self.publisher.flush_blocking(5.0)
            self.reader.close()
            for link in (self.link, self._aux, self.publisher.link):
                link.close()
            self.state.set("stopped")
            await health.close()
        return EXIT_NOT_STORED if lost else 0

    async def _live(self) -> None:
        rc = self.cfg.redis
        loop_time = asyncio.get_running_loop().time
        last_claim = loop_time()
        watch = PendingWatch(self.link)
        while not self.stop.is_set():
            if watch.check():  # what a failed read dropped: first, in order (see PendingWatch)
                try:
                    await self._own_pending()
                    watch.recovered()
                except RedisUnavailable:
                    self.state.set("redis_down")
                    await asyncio.sleep(self.link.backoff.next())
                    continue
                except RedisCommandError as e:
                    log.error("%s: re-reading pending entries failed: %s", self.service, e)
                    await asyncio.sleep(self.link.backoff.next())
                    continue
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
                watch.read_failed()
                self.state.set("redis_down")
                await asyncio.sleep(self.link.backoff.next())
                continue
            if watch.check():
                continue  # read over a new connection or slot map: pending ones first, in order
            if self.state.state == "redis_down":
                self.state.set("running")
            if entries:
                dead: list[Command] = []
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
        yield from trim_samples(self.trims)
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

    layers: list[Any] = [TradingLayer(cfg)]
    if cfg.store.clickhouse_url.strip():  # the trading record in ClickHouse (a server)
        from mandi.services.record import ClickHouseRecordLayer

        layers.append(ClickHouseRecordLayer(cfg))
    return layers


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
        outputs=["signal:>", "order:>", "fill:>", "position:>", "risk:>", "system:>"],
        port=port,
        consumer=consumer,
    )
    node.layers.append(CommandConsumer(node))
    return await node.run()


async def run_gateway(cfg: AppConfig, port: int) -> int:
    """``mandi service gateway``: every Pub/Sub channel (``pub:*``) → the web layer; trading
    commands relayed to the strategy service (``cmd:strategy``)."""
    return await GatewayNode(cfg, port).run()


# --- the gateway ---------------------------------------------------------------------------------


class GatewayContext(NodeContext):
    """The gateway's node context: what :class:`~mandi.web.api.MandiAPI` reads in ``mandi run``
    plus where trading and history live (see :class:`GatewayNode`)."""

    trading_service = "strategy"
    trading_relay: CommandRelay | None = None
    history: RedisHistory | None = None


class GatewayNode(RedisNode):
    """The gateway's host: a :class:`RedisNode` on every ``pub:*`` channel that also keeps the
    ``stats`` :class:`~mandi.web.api.MandiAPI` reads in ``mandi run`` (ticks received, last
    prices, confirmed candles per timeframe, exchange time: all from what comes over Pub/Sub;
    no tick queue, no tick validation here), and gives its layers a :class:`GatewayContext`:

    * ``trading_service``: execution (orders, cancels, halt/resume, live P&L) belongs to that
      service; ``trading_relay`` (a :class:`CommandRelay`) sends the API's state-changing calls
      there over ``cmd:strategy`` and waits (bounded) for the answer; positions, orders and
      signals are read from SQLite;
    * ``history``: candles and indicator values from the Redis streams, read when the SQLite
      file (``store.db``, shared with mdengine/indengine/strategy on one machine) has none —
      a gateway on a machine of its own.

    The instrument master is reloaded when ``instruments:master`` changes (mdengine may start
    after the gateway)."""

    context_class = GatewayContext
    trading_service = GatewayContext.trading_service

    def __init__(
        self,
        cfg: AppConfig,
        port: int = -1,
        layers: Sequence[Any] | None = None,
        clock: Clock | None = None,
        command_timeout: float | None = None,
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
        self.trading_relay = CommandRelay(
            cfg.redis.url,
            command_timeout_s() if command_timeout is None else command_timeout,
            cfg.redis.connect_timeout_s,
            cfg.run.mode,
        )
        self.layers.append(CallerLayer(self.trading_relay))
        self.history: Any = RedisHistory(cfg.redis.url, cfg.redis.connect_timeout_s)
        if cfg.store.clickhouse_url.strip():  # history from the system of record first
            from mandi.services.record import ClickHouseHistory, LayeredHistory

            self.history = LayeredHistory(ClickHouseHistory(cfg.store.clickhouse_url), self.history)
        assert isinstance(self.ctx, GatewayContext)
        self.ctx.trading_relay = self.trading_relay
        self.ctx.history = self.history
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
                await self._subscriptions()

    async def run(self) -> int:
        try:
            return await super().run()
        finally:
            self.history.close()
            self.trading_relay.close()

    def samples(self) -> Iterable[Sample]:
        yield from super().samples()
        r = self.trading_relay
        for outcome, n in sorted(r.outcomes.items()):
            yield (
                "commands_total",
                "counter",
                "Trading commands relayed to the strategy service, by outcome",
                n,
                {"outcome": outcome},
            )


class RedisHistory:
    """Confirmed candles and indicator values read back from their Redis streams (XREVRANGE;
    ``redis.retention_s`` of each timeframe), oldest first. Blocking, one connection per thread:
    the API runs these reads in worker threads. Raises ``RedisUnavailable`` when Redis cannot be
    reached (the API answers 503)."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.redis = BlockingRedis(url, timeout_s)

    def _range(self, topic: str, end_ns: int, limit: int) -> list[Any]:
        """The ``limit`` newest messages of a stream with a bucket before ``end_ns``."""
        end = "+" if end_ns >= 1 << 62 else f"({end_ns // 1_000_000}-0"
        out = []
        key = self.redis.key(topic)
        for item in self.redis.call("XREVRANGE", key, end, "-", "COUNT", limit) or ():
            fields = item[1] or {}
            if isinstance(fields, list):
                fields = dict(zip(fields[::2], fields[1::2], strict=False))
            payload = fields.get(b"d")
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
        match, cursor = self.redis.key(f"ind:*:{timeframe}s:{exchange}:{token}"), "0"
        names: set[str] = set()
        while True:
            cursor_b, keys = self.redis.call(
                "SSCAN", f"streams:ind:{timeframe}s", cursor, "MATCH", match, "COUNT", 1000
            )
            names.update(k.decode().split(":")[1] for k in keys)
            cursor = cursor_b.decode() if isinstance(cursor_b, bytes) else str(cursor_b)
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
        self.redis.close()


# --- trading commands: gateway → strategy ---------------------------------------------------------

CMD_STREAM = "cmd:strategy"
CMD_GROUP = "strategy-cmd"
CMD_MAXLEN = 10_000
CMD_KINDS = frozenset({"place", "cancel", "halt", "resume", "status"})
REPLY_TTL_MS = 60_000  # an answer nobody popped (the gateway gave up) disappears
CLAIM_TTL_MS = (
    24 * 3600 * 1000
)  # who won a command: the strategy ("run") or the gateway ("expired")
TIMEOUT_ENV = "MANDI_GATEWAY_COMMAND_TIMEOUT_S"
DEFAULT_COMMAND_TIMEOUT_S = 5.0

#: the authenticated caller of the current HTTP request (set by :class:`CallerMiddleware`)
_CALLER: ContextVar[dict[str, str] | None] = ContextVar("mandi_gateway_caller", default=None)


def command_timeout_s() -> float:
    """How long the gateway waits for the strategy service: ``$MANDI_GATEWAY_COMMAND_TIMEOUT_S``
    (seconds, default 5)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_COMMAND_TIMEOUT_S
    except ValueError:
        value = DEFAULT_COMMAND_TIMEOUT_S
    return value if 0.05 <= value <= 300 else DEFAULT_COMMAND_TIMEOUT_S


def reply_key(cmd_id: str) -> str:
    return f"cmd:reply:{cmd_id}"


def claim_key(cmd_id: str) -> str:
    return f"cmd:claim:{cmd_id}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CommandRelay:
    """The gateway's :class:`~mandi.web.api.TradingPort`: each call is one command on
    ``cmd:strategy`` (msgpack map in the entry's ``d`` field: ``v``, ``id``, ``kind``, ``args``,
    ``caller`` — token id, name, scope, how it authenticated; never the secret — ``sent_ms``,
    ``expires_ms``), answered on the list ``cmd:reply:{id}`` (BLPOP, bounded by ``timeout_s``).

    On a timeout the gateway marks the command ``expired`` (``SET cmd:claim:{id} expired NX``)
    and deletes it from the stream: the strategy service claims a command the same way
    (``run``) before executing it, so exactly one side wins and a late command is never
    executed; commands past ``expires_ms`` are ignored too (a gateway that died while
    waiting). When the strategy service had already claimed it, the gateway waits one more
    ``timeout_s`` for the answer and otherwise says the outcome is unknown.

    Blocking: the web layer calls it from worker threads (never on the gateway's event loop,
    see ``mandi.web.app``), one command at a time over one connection (a lock)."""

    def __init__(self, url: str, timeout_s: float, connect_timeout_s: float, mode: str) -> None:
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.mode = mode
        self.outcomes: Counter[str] = Counter()
        # replies may take two timeouts (BLPOP twice) plus the connection's own allowance
        self.redis = BlockingRedis(url, connect_timeout_s, 2 * timeout_s + connect_timeout_s + 5)
        self._lock = threading.Lock()  # web worker threads: one command at a time
        self._risk: dict[str, Any] = {}

    # --- transport --------------------------------------------------------------------------
    def _drop(self) -> None:
        self.redis.close()

    def _unavailable(self, e: Exception) -> MandiError:
        from mandi.web.api import ApiError

        self._drop()
        self.outcomes["redis_unavailable"] += 1
        return ApiError(
            503,
            "redis_unavailable",
            f"cannot reach Redis to relay the command to the strategy service: {e}",
            service="strategy",
        )

    def _pop(self, key: str, wait_s: float) -> bytes | None:
        reply = self.redis.call("BLPOP", key, f"{wait_s:.3f}")
        return None if reply is None else reply[1]

    def call(self, kind: str, **args: Any) -> Any:
        """Send one command and return the strategy service's ``result``; raises ApiError
        (timeout 504, Redis 503, strategy-side refusals) or MandiError (what the kernel raised,
        as in ``mandi run``)."""
        with self._lock:
            return self._call(kind, **args)

    def _call(self, kind: str, **args: Any) -> Any:
        from mandi.web.api import ApiError

        cmd_id = uuid.uuid4().hex
        sent = _now_ms()
        cmd = {
            "v": 1,
            "id": cmd_id,
            "kind": kind,
            "args": args,
            "caller": _CALLER.get() or {},
            "sent_ms": sent,
            "expires_ms": sent + int(self.timeout_s * 1000),
        }
        r = self.redis
        try:  # (a stale connection — Redis restarted — is reconnected once)
            eid = r.call(
                "XADD", CMD_STREAM, "MAXLEN", "~", CMD_MAXLEN, "*", "d", msgspec.msgpack.encode(cmd)
            )
        except RedisUnavailable as e:
            raise self._unavailable(e) from None
        except RedisCommandError as e:
            raise ApiError(503, "redis_error", f"Redis refused the command: {e}") from None
        try:
            raw = self._pop(reply_key(cmd_id), self.timeout_s)
            if raw is None:
                won = r.call("SET", claim_key(cmd_id), "expired", "NX", "PX", CLAIM_TTL_MS)
                if won:  # the strategy service never took it: it never will
                    r.call("XDEL", CMD_STREAM, eid)
                    self.outcomes["timeout"] += 1
                    raise ApiError(
                        504,
                        "trading_timeout",
                        f"no strategy service answered within {self.timeout_s:g} s; the "
                        f"{kind} command was withdrawn and will not be executed later (is "
                        "`mandi service strategy` running?)",
                        service="strategy",
                        command=kind,
                    )
                raw = self._pop(reply_key(cmd_id), self.timeout_s)
                if raw is None:
                    self.outcomes["unknown"] += 1
                    raise ApiError(
                        504,
                        "trading_timeout",
                        f"the strategy service took the {kind} command but did not answer "
                        f"within {2 * self.timeout_s:g} s: it may have been applied (check "
                        "/api/v1/orders and /api/v1/risk)",
                        service="strategy",
                        command=kind,
                        outcome="unknown",
                    )
        except (RedisUnavailable, RedisCommandError) as e:
            raise self._unavailable(e) from None
        reply = msgspec.msgpack.decode(raw)
        error = reply.get("error")
        if error is None:
            self.outcomes["ok"] += 1
            return reply.get("result")
        self.outcomes[str(error)] += 1
        message = str(reply.get("message") or error)
        if error == "refused":  # a MandiError from the kernel: the API maps it as in mandi run
            raise MandiError(message)
        if error == "unavailable":
            raise ApiError(503, "trading_unavailable", message, service="strategy")
        if error == "forbidden":
            raise ApiError(403, "insufficient_scope", message)
        raise ApiError(502, "strategy_error", message, service="strategy")

    def close(self) -> None:
        self._drop()

    # --- the TradingPort ----------------------------------------------------------------------
    def place(
        self,
        request_id: str,
        symbol: str,
        side: str,
        quantity: int,
        limit_price: int,
        exchange: str | None,
        trigger_price: int = 0,
    ) -> tuple[str, str, str, tuple[str, ...]]:
        status, reason, rule, ids = self.call(
            "place",
            request_id=request_id,
            symbol=symbol,
            side=side,
            quantity=quantity,
            limit_price=limit_price,
            exchange=exchange,
            trigger_price=trigger_price,
        )
        return str(status), str(reason), str(rule), tuple(ids)

    def cancel(self, client_order_id: str, reason: str) -> bool | None:
        r = self.call("cancel", client_order_id=client_order_id, reason=reason)
        return None if r is None else bool(r)

    def halt(self, reason: str) -> bool:
        r = self.call("halt", reason=reason)
        self._risk = dict(r["risk"])
        return bool(r["changed"])

    def resume(self, reason: str) -> bool:
        r = self.call("resume", reason=reason)
        self._risk = dict(r["risk"])
        return bool(r["changed"])

    def risk_state(self) -> dict[str, Any]:
        """The risk state the last halt/resume answered with."""
        return dict(self._risk)

    def status(self) -> dict[str, Any]:
        return dict(self.call("status"))

    # reads are served from SQLite by the API (``MandiAPI.trading`` is None in the gateway)
    def open_positions(self) -> list[Any]:
        return []

    def positions(self) -> list[Any]:
        return []

    def open_orders(self) -> list[Any]:
        return []

    def today(self) -> Any:
        return None


class CallerMiddleware:
    """ASGI middleware of the gateway's web app: for state-changing requests, who is calling
    (the route's own dependency still authenticates and checks the scope; this only records the
    principal for the command it may relay). The secret never leaves the gateway."""

    def __init__(self, app: Any, security: Any) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") not in ("POST", "DELETE"):
            await self.app(scope, receive, send)
            return
        from starlette.requests import HTTPConnection

        from mandi.web.security import SESSION_COOKIE

        conn = HTTPConnection(scope)
        sec = self.security
        failures = sec.failures
        caller = None
        try:
            p = sec.authenticate(
                conn.headers.get("authorization"), conn.cookies.get(SESSION_COOKIE)
            )
            caller = {"token_id": p.token_id, "name": p.name, "scope": p.scope, "via": p.via}
        except MandiError:
            pass  # the route answers 401/403 itself
        finally:
            sec.failures = failures  # counted once, by the route
        token = _CALLER.set(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            _CALLER.reset(token)


class CallerLayer:
    """Installs :class:`CallerMiddleware` on the gateway's web layer (when there is one)."""

    name = "callers"

    def __init__(self, relay: CommandRelay) -> None:
        self.relay = relay

    def attach(self, ctx: NodeContext) -> None:
        web = ctx.layer("web")
        if web is not None and getattr(web, "app", None) is not None:
            web.app.add_middleware(CallerMiddleware, security=web.security)

    def tasks(self) -> list[Coroutine[Any, Any, Any]]:
        return []

    def close(self) -> None:
        pass


class CommandConsumer:
    """The strategy service's side of :class:`CommandRelay`: consumer group ``strategy-cmd`` on
    ``cmd:strategy``. Each command is checked (kind, the caller's scope, ``expires_ms``),
    claimed (``SET cmd:claim:{id} run NX``; a command the gateway already gave up on is
    skipped), executed on the node's loop through :class:`~mandi.web.api.KernelTrading` —
    the code ``mandi run``'s API calls, so the risk manager decides the same way — answered
    (``RPUSH cmd:reply:{id}`` with a TTL) and only then acknowledged (XACK). A redelivered
    command runs again: orders are idempotent by ``request_id`` (the kernel's order ids derive
    from it and stored ids are never sent twice), halt/resume/cancel are idempotent."""

    name = "commands"

    def __init__(self, node: RedisNode) -> None:
        rc = node.cfg.redis
        self.link = RedisLink(
            rc.url, f"{node.service}.cmd", rc.connect_timeout_s, backoff_max=rc.backoff_max_s
        )
        self.consumer = node.consumer
        self.counts: Counter[str] = Counter()
        self._ctx: NodeContext | None = None

    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx

    def tasks(self) -> list[Coroutine[Any, Any, Any]]:
        return [self._run()]

    def close(self) -> None:
        self.link.close()

    def _port(self) -> Any:
        from mandi.web.api import KernelTrading

        trading = self._ctx.layer("trading") if self._ctx is not None else None
        kernel = getattr(trading, "kernel", None)
        return KernelTrading(kernel) if kernel is not None else None

    async def _run(self) -> None:
        created = False
        start = "0"  # own pending entries first (a restart), then new ones
        while True:
            try:
                if not created:
                    with contextlib.suppress(RedisCommandError):  # BUSYGROUP: it exists
                        await self.link.call(
                            "XGROUP", "CREATE", CMD_STREAM, CMD_GROUP, "0", "MKSTREAM"
                        )
                    created = True
                reply = await self.link.call(
                    "XREADGROUP",
                    "GROUP",
                    CMD_GROUP,
                    self.consumer,
                    "COUNT",
                    50,
                    "BLOCK",
                    1000,
                    "STREAMS",
                    CMD_STREAM,
                    start,
                )
                entries = [] if not reply else _entries(CMD_STREAM, reply[0][1])
                if start == "0" and not entries:
                    start = ">"
                for e in entries:
                    await self._handle(e)
                    await self.link.call("XACK", CMD_STREAM, CMD_GROUP, e.id)
            except (RedisUnavailable, RedisCommandError) as e:
                log.warning("command stream: %s", e)
                created = False
                await asyncio.sleep(self.link.backoff.next())

    async def _handle(self, e: Entry) -> None:
        try:
            cmd = msgspec.msgpack.decode(e.payload or b"")
            cmd_id, kind = str(cmd["id"]), str(cmd["kind"])
            args = dict(cmd.get("args") or {})
            expires = int(cmd["expires_ms"])
            caller = dict(cmd.get("caller") or {})
        except Exception as ex:
            self.counts["malformed"] += 1
            log.error("command %s on %s is malformed (%s); skipped", e.id, CMD_STREAM, ex)
            return
        if _now_ms() > expires:
            self.counts["expired"] += 1
            log.warning("command %s (%s) arrived after its deadline; not executed", cmd_id, kind)
            return
        won = await self.link.call("SET", claim_key(cmd_id), "run", "NX", "PX", CLAIM_TTL_MS)
        if won is None and await self.link.call("GET", claim_key(cmd_id)) != b"run":
            self.counts["expired"] += 1
            log.warning("command %s (%s): the gateway gave up on it; not executed", cmd_id, kind)
            return
        who = f"{caller.get('name', '?')} ({caller.get('token_id', '?')})"
        log.info("command %s %s from %s", kind, cmd_id, who)
        reply = self.execute(kind, args, caller)
        self.counts[str(reply.get("error", "ok"))] += 1
        key = reply_key(cmd_id)
        await self.link.pipeline(  # one key: one slot, so one transaction on a cluster too
            [
                (key, MULTI),
                (key, pack("RPUSH", key, msgspec.msgpack.encode(reply))),
                (key, pack("PEXPIRE", key, REPLY_TTL_MS)),
                (key, EXEC),
            ]
        )

    def execute(self, kind: str, args: dict[str, Any], caller: dict[str, Any]) -> dict[str, Any]:
        """Run one command on the trading kernel; the answer as a plain map."""
        from mandi.web.security import scope_allows

        if kind not in CMD_KINDS:
            return {"error": "bad_command", "message": f"unknown command {kind!r}"}
        if kind != "status" and not scope_allows(str(caller.get("scope", "")), "trade"):
            return {"error": "forbidden", "message": "this needs a 'trade' token"}
        t = self._port()
        if t is None:
            return {
                "error": "unavailable",
                "message": "the strategy service's trading layer is not running",
            }
        try:
            if kind == "place":
                status, reason, rule, ids = t.place(
                    str(args["request_id"]),
                    str(args["symbol"]),
                    str(args["side"]),
                    int(args["quantity"]),
                    int(args["limit_price"]),
                    args.get("exchange") or None,
                    int(args.get("trigger_price") or 0),
                )
                result: Any = [status, reason, rule, list(ids)]
            elif kind == "cancel":
                result = t.cancel(str(args["client_order_id"]), str(args.get("reason", "")))
            elif kind in ("halt", "resume"):
                fn = t.halt if kind == "halt" else t.resume
                result = {"changed": fn(str(args.get("reason", ""))), "risk": t.risk_state()}
            else:
                result = t.status()
        except MandiError as ex:
            return {"error": "refused", "message": str(ex)}
        except Exception as ex:
            log.exception("command %s failed", kind)
            return {"error": "internal", "message": f"{type(ex).__name__}: {ex}"}
        return {"result": result}
