"""``mandi service mdengine`` / ``mdengine-sim``: feed → 1 s → timeframes → Redis (+ SQLite).

The service *is* the single-process :class:`~mandi.services.node.MarketNode` (the same feed,
pipeline, SQLite batch writer, ClickHouse sink when ``store.clickhouse_url`` is set, and restart
recovery as ``mandi run``) with one more layer, the
:class:`RedisPublishLayer`, which forwards what the kernel publishes on the in-process bus:

* confirmed candles ``candle:{tf}s:{exchange}:{token}`` (1 s included) → XADD (explicit ID from
  the bucket) + SET ``...:latest:...`` (TTL) + PUBLISH ``pub:candle:...``, one MULTI/EXEC per
  batch, with the 1 s watermark ``mdengine:watermark:{service}`` in the same transaction;
* forming candles ``pub:candle:...`` (underlyings by default) and ticks ``pub:tick:...`` →
  PUBLISH only (coalesced: the latest per channel per batch);
* the instrument master → ``instruments:master`` (CSV), for the other services.

Restart: a simulated feed resumes from what SQLite holds (``mandi run``'s recovery); candles
SQLite holds after the Redis watermark are re-published first (duplicates are refused by their
explicit IDs), so neither store misses what the other got before a crash. While Redis is down the
publisher retries with backoff and buffers up to ``redis.buffer_max`` messages; then a
replayable feed (the simulator) waits, a live feed's overflow is dropped and counted (SQLite still
stores it).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import socket
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from mandi.bus.codec import codec
from mandi.bus.redis import (
    RedisLink,
    RedisUnavailable,
    StreamPublisher,
    pack,
    stream_id,
    sync_client,
    token_partition,
)
from mandi.config import AppConfig
from mandi.core.clock import NS_PER_SECOND
from mandi.model.instruments import Option, instrument_csv_rows
from mandi.model.market import Candle, Tick
from mandi.services.distributed.health import (
    HealthServer,
    Sample,
    ServiceState,
    publisher_samples,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mandi.services.context import NodeContext

log = logging.getLogger(__name__)

MASTER_KEY = "instruments:master"


def watermark_key(service: str, shard: tuple[int, int] = (0, 1)) -> str:
    k, n = shard
    return f"mdengine:watermark:{service}" + ("" if n == 1 else f":{k}of{n}")


class ShardFeed:
    """A feed restricted to one feed shard: the ticks of the instruments whose partition
    ``p`` has ``p % n == k`` (``mandi service mdengine --shard K/N``; the partitions are
    indengine's, so a shard's candles land on the masters its partitions live on)."""

    def __init__(self, feed: Any, shard: tuple[int, int], partitions: int) -> None:
        self._feed = feed
        self.k, self.n = shard
        self.partitions = partitions
        self._mine: dict[int, bool] = {}
        self.name = f"{feed.name} shard {self.k}/{self.n}"
        self.live = feed.live
        self.wall_clock = getattr(feed, "wall_clock", False)

    @property
    def exchange_time_ns(self) -> int:
        return int(self._feed.exchange_time_ns)

    def instruments(self) -> list[Any]:
        return list(self._feed.instruments())

    def mine(self, token: int) -> bool:
        m = self._mine.get(token)
        if m is None:
            m = self._mine[token] = token_partition(token, self.partitions) % self.n == self.k
        return m

    async def batches(self) -> AsyncIterator[list[Tick]]:
        mine = self.mine
        async for batch in self._feed.batches():
            kept = [t for t in batch if mine(t.token)]
            if kept or not batch:  # an empty batch ends the session: pass it on
                yield kept


class RedisPublishLayer:
    """A node :class:`~mandi.services.context.Layer` forwarding the node's bus to Redis."""

    name = "redis"

    def __init__(
        self,
        cfg: AppConfig,
        service: str = "mdengine",
        state: ServiceState | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        rc = cfg.redis
        self.cfg = cfg
        self.service = service
        self.shard = shard
        self.state = state or ServiceState(service)
        self.link = RedisLink(
            rc.url,
            service,
            rc.connect_timeout_s,
            backoff_max=rc.backoff_max_s,
            wait_replicas=rc.wait_replicas,
            wait_timeout_ms=rc.wait_timeout_ms,
        )
        self.publisher = StreamPublisher(
            self.link,
            rc.retention_s,
            rc.latest_ttl_s,
            rc.buffer_max,
            rc.publish_batch,
            rc.retention_1s_s,
            rc.partitions,
        )
        self.ctx: NodeContext | None = None
        self._live = False
        self._watermark = 0  # last 1 s bucket handed to the publisher
        self._sent_watermark = 0
        self.backfilled = 0
        self._encode = codec.encode

    # --- Layer ---------------------------------------------------------------------------------
    def attach(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self._live = bool(ctx.feed is not None and ctx.feed.live)
        bus, rc = ctx.bus, self.cfg.redis
        bus.subscribe("candle:>", self._on_candle, name="redis.candles")
        underlyings = [i for i in ctx.master if not isinstance(i, Option)]
        if rc.forming == "all":
            bus.subscribe("pub:candle:>", self._on_forming, name="redis.forming")
        elif rc.forming == "underlyings":
            for inst in underlyings:  # the pipeline builds forming candles only for these
                for tf in ctx.cfg.pipeline.timeframes:
                    bus.subscribe(
                        f"pub:candle:{tf}s:{inst.exchange}:{inst.token}",
                        self._on_forming,
                        name="redis.forming",
                    )
        if rc.ticks == "all":
            bus.subscribe("tick:>", self._on_tick, name="redis.ticks")
        elif rc.ticks == "underlyings":
            for inst in underlyings:
                bus.subscribe(
                    f"tick:{inst.exchange}:{inst.token}", self._on_tick, name="redis.ticks"
                )
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(instrument_csv_rows(ctx.master))
        self.publisher.extra(pack("SET", MASTER_KEY, buf.getvalue()), MASTER_KEY)
        self._backfill(ctx)

    def _backfill(self, ctx: NodeContext) -> None:
        """Re-publish the candles SQLite holds after the Redis watermark (a crash may have left
        Redis behind SQLite); the explicit stream IDs refuse what Redis already has."""
        import redis

        try:
            client = sync_client(self.cfg.redis.url, self.link.connect_timeout)
            try:
                raw = client.get(watermark_key(self.service, self.shard))
            finally:
                client.close()
        except (RedisUnavailable, redis.RedisError, OSError):
            return  # Redis down now: the service waits for it before the feed starts anyway
        if raw is None:
            return
        from mandi.stores.sqlite import connect, load_candles

        wm = int(raw)
        con = connect(ctx.cfg.store.db)
        try:
            tfs = (1, *ctx.cfg.pipeline.timeframes)
            rows: list[Candle] = []
            for tf in tfs:
                rows += load_candles(con, tf, wm - tf * NS_PER_SECOND)
        finally:
            con.close()
        rows.sort(key=lambda c: (c.bucket + c.timeframe * NS_PER_SECOND, c.timeframe, c.token))
        for c in rows:
            self._on_candle(f"candle:{c.timeframe}s:{c.exchange}:{c.token}", c)
        self.backfilled = len(rows)
        if rows:
            log.info(
                "%s: re-publishing %d stored candles after the Redis watermark",
                self.service,
                len(rows),
            )

    def _on_candle(self, topic: str, c: Candle) -> None:
        self.publisher.confirmed(topic, stream_id(c.bucket), self._encode(c), live=self._live)
        if c.timeframe == 1 and c.bucket > self._watermark:
            self._watermark = c.bucket

    def _on_forming(self, topic: str, c: Candle) -> None:
        self.publisher.forming(topic, self._encode(c))

    def _on_tick(self, topic: str, t: Tick) -> None:
        self.publisher.forming("pub:" + topic, self._encode(t))

    def after_batch(self) -> None:
        if self._watermark > self._sent_watermark:
            self._sent_watermark = self._watermark
            key = watermark_key(self.service, self.shard)
            self.publisher.extra(pack("SET", key, self._watermark), key)

    def busy(self) -> bool:
        return self.publisher.busy()

    def tasks(self) -> list[Coroutine[Any, Any, Any]]:
        return [self.publisher.run(), self._watch()]

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            if self.state.state in ("running", "redis_down"):
                self.state.set(
                    "running" if self.link.up or self.link.stats.connects == 0 else "redis_down",
                    buffered=self.publisher.pending,
                )

    def close(self) -> None:
        self.after_batch()
        left = self.publisher.flush_blocking(timeout=self.cfg.redis.connect_timeout_s * 5)
        if left:
            log.error(
                "%s: %d candles could not be published to Redis before exit (SQLite "
                "holds them; they are re-published at the next start)",
                self.service,
                left,
            )
        self.link.close()

    # --- metrics -------------------------------------------------------------------------------
    def samples(self) -> Iterable[Sample]:
        yield from publisher_samples(self.publisher, "candles")
        ctx = self.ctx
        if ctx is None:
            return
        s = ctx.stats
        yield ("ticks_total", "counter", "Ticks received from the feed", s.ticks_in, {})
        yield (
            "ticks_dropped_total",
            "counter",
            "Ticks dropped at the full queue",
            s.queue_dropped_ticks,
            {},
        )
        for tf, n in s.candles_confirmed.items():
            yield ("candles_total", "counter", "Confirmed candles", n, {"timeframe": str(tf)})
        for feed, reasons in ctx.rejections().items():
            for reason, n in reasons.items():
                labels = {"feed": feed, "reason": reason}
                yield ("ticks_rejected_total", "counter", "Rejected ticks", n, labels)
        w = ctx.writer.stats
        for table, n in w.rows.items():
            yield ("sqlite_rows_total", "counter", "Rows committed to SQLite", n, {"table": table})
        yield (
            "sqlite_pending_rows",
            "gauge",
            "Rows waiting for the SQLite writer",
            ctx.writer.pending_rows,
            {},
        )
        for table, n in w.quarantined.items():
            yield (
                "sqlite_quarantined_rows_total",
                "counter",
                "Rows SQLite refused (kept in rejects)",
                n,
                {"table": table},
            )
        yield ("sqlite_failing", "gauge", "1 while SQLite cannot write", int(w.failing), {})
        clickhouse = ctx.layer("clickhouse")
        if clickhouse is not None:  # store.clickhouse_url: the node's ClickHouse sink
            ch = clickhouse.writer.stats
            for table, n in ch.rows.items():
                yield ("clickhouse_rows_total", "counter", "Rows inserted", n, {"table": table})
            yield ("clickhouse_errors_total", "counter", "Failed ClickHouse calls", ch.errors, {})
        yield ("feed_queue", "gauge", "Tick batches waiting for the kernel", ctx.queue_depth(), {})
        yield (
            "exchange_time_seconds",
            "gauge",
            "Exchange time of the last tick",
            s.exchange_time_ns / 1e9,
            {},
        )


async def wait_for_redis(link: RedisLink, state: ServiceState) -> None:
    """Start-up: wait (retrying with backoff) until Redis answers, reporting the state."""
    state.set("waiting_for_redis", redis=link.target.safe())
    await link.connection()


async def run_mdengine(
    cfg: AppConfig, service: str, port: int, shard: tuple[int, int] = (0, 1)
) -> int:
    """``mandi service mdengine`` / ``mdengine-sim`` (``shard``: one feed shard of N)."""
    from mandi.services.node import MarketNode

    class ShardNode(MarketNode):
        async def prepare(self) -> None:
            await super().prepare()
            if shard[1] > 1 and self.ctx.feed is not None:
                self.ctx.feed = ShardFeed(self.ctx.feed, shard, cfg.redis.partitions)

    state = ServiceState(service if shard[1] == 1 else f"{service}-{shard[0]}of{shard[1]}")
    layer = RedisPublishLayer(cfg, service, state, shard)
    node = ShardNode(cfg, layers=[layer])
    health = HealthServer(state, cfg.services.host, port, layer.samples)
    await health.start()
    try:
        await wait_for_redis(layer.link, state)
        state.set("running", feed=cfg.run.feed)
        code = await node.run()
    finally:
        state.set("stopped")
        await health.close()
    return code


async def run_tickserver(
    cfg: AppConfig,
    host: str,
    port: int,
    metrics_port: int,
    wait_for_client: bool = True,
    client_queue: int = 1000,
) -> int:
    """``mandi service tickserver``: ``mandi tickserver`` plus /metrics, /health, /ready."""
    from websockets.asyncio.server import serve as ws_serve

    from mandi.feeds.tickserver import TickServer

    state = ServiceState("tickserver")
    server = TickServer(cfg, client_queue=client_queue, wait_for_client=wait_for_client)

    def samples() -> Iterable[Sample]:
        yield ("clients", "gauge", "Connected WebSocket clients", len(server.clients), {})
        yield (
            "clients_dropped_total",
            "counter",
            "Slow clients disconnected",
            server.dropped_clients,
            {},
        )
        yield (
            "bad_commands_total",
            "counter",
            "Malformed client messages",
            server.bad_commands,
            {},
        )
        yield (
            "exchange_time_seconds",
            "gauge",
            "Simulated exchange time",
            server.feed.exchange_time_ns / 1e9,
            {},
        )

    health = HealthServer(state, cfg.services.host, metrics_port, samples)
    await health.start()
    try:
        async with ws_serve(
            server.handle,
            host,
            port,
            max_size=2**20,
            family=socket.AF_INET if ":" not in host else socket.AF_INET6,
        ):
            state.set(
                "running",
                url=f"ws://{host}:{port}",
                date=str(server.exchange.date),
                seed=cfg.sim.seed,
            )
            await server.run()
            log.info("tickserver: the simulated market ended")
            state.set("finished")
            await asyncio.Event().wait()  # keep serving the last state until stopped
    finally:
        state.set("stopped")
        await health.close()
    return 0
