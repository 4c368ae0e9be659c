"""The single-process market node behind ``mandi run``: a tick's trip, top to bottom.

1. **Feed** (:meth:`MarketNode.prepare`): the simulator or a tickserver. Its instruments are
   registered through the context (:meth:`~mandi.services.context.NodeContext.add_instruments`)
   before their ticks arrive.
2. **Feed → queue** (:meth:`MarketNode._pump`, asyncio): a bounded queue of tick batches. A live
   source is never slowed: a full queue drops the batch and counts it. The simulator, which we
   control, is instead slowed by the queue (back-pressure), so ``--speed inf`` runs as fast as
   the kernel can go.
3. **Queue → kernel** (:meth:`MarketNode._kernel`): one batch at a time, cut at ``run.until``.
4. **Kernel** (:meth:`MarketNode.handle_batch`, synchronous): the candle pipeline (1 s
   aggregator → timeframe builder) publishes ticks and candles on the bus. The layers
   (indicators, chains, trading, web, the Redis bridge, the ClickHouse copy) subscribe to it
   through their :class:`~mandi.services.context.NodeContext`, never through the node.
5. **Into SQLite** (:meth:`MarketNode._queue_rows`): the batch's ticks, confirmed candles and
   system events are queued to the :class:`~mandi.stores.sqlite.BatchWriter`, which commits them
   on its own thread (:mod:`mandi.stores.writer`).

Around it: timers (the status line, bucket closing by wall time, storage health) and the
lifecycle: start, signals, and a shutdown in order (feed, kernel drain, layers, writer) whose exit
status says whether every row was stored (:mod:`mandi.services.storage`).

Two engines (``pipeline.engine``, DESIGN §11). ``fast`` (the default) is columnar: a feed batch
is a :class:`~mandi.model.batches.TickBatch`, cut into runs of one event second; per run the
pipeline publishes its candles as :class:`~mandi.model.batches.CandleBatch` es and the run goes
out once on ``batch:tick`` — the layers (indicators, chains, trading, the store) work on the
arrays, and a per-object message (``tick:…``, ``candle:…``) is made only for a topic somebody
subscribed to with a handler. ``reference`` is the readable per-object path (a ``Tick`` and a
``Candle`` per message); a differential test holds the two to the same messages and rows.

Storage: ticks as compressed columnar blocks (:mod:`mandi.stores.ticks`); confirmed timeframe
candles as rows; one-second candles in memory for ``store.second_candles_s`` (in SQLite too with
``store.second_candles = "sqlite"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import numpy as np

from mandi.bus.memory import MessageBus
from mandi.config import AppConfig
from mandi.core.calendar import ist_date, ist_ns
from mandi.core.clock import NS_PER_MS, NS_PER_SECOND, Clock, LiveClock
from mandi.core.errors import ConfigError, StoreError
from mandi.core.logs import RateLimitedLog
from mandi.model.batches import CANDLE_DTYPE, EXCHANGES, CandleBatch, TickBatch
from mandi.model.events import SystemEvent
from mandi.model.instruments import AnyInstrument, InstrumentMaster
from mandi.model.market import Candle, Tick
from mandi.pipeline.candles import CandlePipeline
from mandi.services.clickhouse import open_clickhouse_sink
from mandi.services.context import Feed, Layer, NodeContext, NodeStats
from mandi.services.resume import discard_after, find_resume_point
from mandi.services.storage import EXIT_NOT_STORED, StorageWatch, storage_summary
from mandi.stores.sqlite import META_SQL, BatchWriter, candle_row, connect, get_meta, set_meta
from mandi.stores.ticks import BLOCK_SQL, block_row

log = logging.getLogger(__name__)


class MarketNode:
    """Feed → pipeline → SQLite, with status; the layers plug into its bus through ``ctx``."""

    def __init__(
        self, cfg: AppConfig, clock: Clock | None = None, layers: list[Layer] | None = None
    ) -> None:
        self.cfg = cfg
        # store.clickhouse_url: market data also copied into ClickHouse (a bad URL stops here)
        self.clickhouse = open_clickhouse_sink(cfg)
        self.clock = clock or LiveClock()
        self.bus = MessageBus(self.clock)
        self.stats = NodeStats()
        self.master = InstrumentMaster()
        self.known_tokens: set[int] = set()  # the pipeline rejects ticks of other tokens
        self.queue: asyncio.Queue[Any] = asyncio.Queue(cfg.pipeline.tick_queue)
        self.pipeline = _candle_pipeline(cfg, self.bus, self.known_tokens)
        #: the columnar engine (DESIGN §11); "reference" keeps the per-object path
        self.columnar = cfg.pipeline.engine == "fast"
        self.pipeline.batches = self.columnar
        st = cfg.store
        self.writer = BatchWriter(
            st.db,
            flush_interval=st.flush_interval_ms / 1000,
            flush_items=st.flush_items,
            max_pending_rows=st.max_pending_rows,
            high_water_rows=st.backpressure_rows,
        )
        self.writer.register("tick_blocks", BLOCK_SQL)
        self.writer.register("meta", META_SQL)
        self.seconds_ring = SecondCandles(st.second_candles_s)
        self._store_seconds = st.second_candles == "sqlite"
        self.layers: list[Layer] = list(layers or [])
        if self.clickhouse is not None:  # first in, last out: it stops after the others
            self.layers.insert(0, self.clickhouse)
        self.ctx = NodeContext(
            cfg,
            self.clock,
            self.bus,
            self.master,
            self.writer,
            self.stats,
            layers=self.layers,
            known_tokens=self.known_tokens,
            watermark_ns=lambda: int(self.pipeline.seconds.watermark_ns),
            queue_depth=lambda: self.queue.qsize(),  # run() may replace the queue
            rejected_ticks=self.rejected_ticks,
            rejections=self.rejections,
            columnar=self.columnar,
        )
        if not self._store_seconds:
            self.ctx.second_candles = self.seconds_ring.candles
        self.storage = StorageWatch(self.writer, self.ctx.event, f"SQLite {st.db}")
        self._candle_rows: list[tuple[Any, ...]] = []
        self._event_rows: list[tuple[Any, ...]] = []
        self._stop = asyncio.Event()
        self._stop_reason = ""
        self._feed_done = False
        self._rejected_seen: Counter[str] = Counter()
        self._rejected_by_feed: dict[str, Counter[str]] = {}  # the pipeline's, per feed
        self._reject_log = RateLimitedLog(log)
        self._until_s = _parse_until(cfg.run.until)
        self._first_batch_at = self._last_batch_at = 0.0  # the kernel's own time, for its rate
        self._waited_s = 0.0  # ... of it waiting for storage (backpressure)
        self._until_reached = False
        if self.columnar:
            self.bus.subscribe(CandleBatch.topic, self._on_candle_batch, name="store.candles")
        else:
            self.bus.subscribe("candle:>", self._on_candle, name="store.candles")
        self.bus.subscribe("system:>", self._on_system_event, name="store.events")

    @property
    def feed(self) -> Feed | None:
        return self.ctx.feed

    def event(self, kind: str, message: str, severity: str = "INFO", **data: Any) -> None:
        self.ctx.event(kind, message, severity, **data)

    # --- 1. the feed ----------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Open storage, choose the feed and recover from what the database holds."""
        cfg = self.cfg
        self.writer.start()
        if cfg.run.feed == "sim":
            feed = self._sim_feed()
        elif cfg.run.feed.startswith("replay:"):  # a recording through the whole platform
            from mandi.feeds.replay import ReplayFeed, register, replay_path

            register()
            feed = ReplayFeed(replay_path(cfg.run.feed), cfg.run.speed, self.ctx)
        elif cfg.run.feed.startswith(("ws://", "wss://")):
            from mandi.feeds.ws import TickserverFeed

            feed = TickserverFeed(cfg.run.feed, self.ctx)
            try:
                await feed.connect_once()
            except (OSError, TimeoutError) as e:
                raise ConfigError("run.feed", cfg.run.feed, f"cannot connect ({e})") from None
        else:  # a broker's feed or NSE's chains: wall-clock time, live (mandi.feeds.registry)
            from mandi.feeds.registry import opener

            feed = await opener(cfg.run.feed)(cfg, self.ctx)
        self.ctx.feed = feed
        self.ctx.add_instruments(feed.instruments())

    def _sim_feed(self) -> Feed:
        from mandi.core.calendar import calendar
        from mandi.feeds.sim import SimExchange, SimFeed, latest_trading_day

        cfg = self.cfg
        identity = msgspec.json.encode(cfg.sim).decode()
        con = connect(cfg.store.db)
        try:
            start = cfg.sim.date or latest_trading_day(
                calendar("NSE"), ist_date(self.clock.now_ns())
            )
            resume = None
            held = get_meta(con, "sim.identity")
            if cfg.run.resume and held == identity:
                resume = find_resume_point(
                    con,
                    cfg.pipeline.timeframes,
                    cfg.store.store_ticks,
                    cfg.store.second_candles == "sqlite",
                )
                held_start = get_meta(con, "sim.start_date")
                if resume is not None and held_start:
                    start = dt.date.fromisoformat(held_start)
            elif held is not None and held != identity:
                log.warning("the database holds another simulation; not resuming it")
            if resume is not None:
                dropped = discard_after(con, resume.ts_ns)
                for c in resume.warm_candles:
                    self.pipeline.frames.handle_candle(c)
                for token, vol in resume.volume_baselines.items():
                    self.pipeline.seconds.set_volume_baseline(token, vol)
                for token, price in resume.last_prices.items():  # the price band's centre
                    self.pipeline.seconds.set_price_reference(token, price)
                self.stats.resumed_from_ns = resume.ts_ns
                log.info(
                    "resuming the simulated market at %s (%d ticks to re-emit removed, "
                    "%d candles warmed)",
                    _fmt(resume.ts_ns),
                    dropped,
                    len(resume.warm_candles),
                )
            set_meta(con, "sim.identity", identity)
            set_meta(con, "sim.start_date", start.isoformat())
        finally:
            con.close()
        ex = SimExchange(cfg.sim, start)
        feed = SimFeed(
            ex,
            cfg.run.speed,
            days=cfg.run.days or None,
            resume_from_ns=resume.ts_ns if resume else None,
        )
        return _SimFeedAdapter(feed, self.ctx)

    # --- 2. feed → queue ------------------------------------------------------------------------
    async def _pump(self) -> None:
        """Feed → queue. Live feeds never wait: a full queue drops the batch, counted."""
        assert self.feed is not None
        try:
            async for batch in self.feed.batches():
                if self.feed.live:
                    try:
                        self.queue.put_nowait(batch)
                    except asyncio.QueueFull:
                        self.stats.queue_dropped_ticks += len(batch)
                else:
                    await self.queue.put(batch)
        finally:
            await self.queue.put(None)  # end of feed (not of a session: see _kernel)
            self._feed_done = True

    # --- 3. queue → kernel ----------------------------------------------------------------------
    async def _kernel(self) -> None:
        while True:
            batch = await self.queue.get()
            if self._until_reached:
                continue
            if batch is None:  # the feed ended: time reaches the feed's (no session closes)
                self._end_of_feed()
                if self.queue.empty():
                    self.request_stop("the feed ended")
                    return
                continue
            kept = self._cut_at_until(batch)
            if kept is not None:
                if not self._first_batch_at:
                    self._first_batch_at = time.perf_counter()
                self.handle_batch(kept)
                self._last_batch_at = time.perf_counter()
            if self.feed is not None and not self.feed.live and self._storage_behind():
                # a replayable source waits for the writer (store.backpressure_rows) instead of
                # queueing rows ahead of it: memory stays flat, and the kernel's rate includes
                # storing what it made
                t0 = time.perf_counter()
                while self._storage_behind():
                    await asyncio.sleep(0.005)
                self._waited_s += time.perf_counter() - t0
            await asyncio.sleep(0)  # let timers (duration, status, snapshots) run between batches

    def _cut_at_until(self, batch: Any) -> Any:
        """Keep the ticks before the ``until`` time (None if none is left: an empty batch would
        mean the end of the session); reaching it stops the run."""
        if self._until_s is None or not len(batch):
            return batch
        columns = isinstance(batch, TickBatch)
        t = int(batch.ts_event.max()) if columns else batch[-1].ts_event
        limit = ist_ns(ist_date(t)) + self._until_s * NS_PER_SECOND
        if t < limit:
            return batch
        self._until_reached = True
        self.request_stop(f"exchange time reached {self.cfg.run.until}")
        if columns:
            kept = batch.take(batch.ts_event < limit)
            return kept if len(kept) else None
        return [x for x in batch if x.ts_event < limit] or None

    def _storage_behind(self) -> bool:
        """Too many rows wait for the SQLite writer, or a layer is busy (backpressure)."""
        return self.writer.backlogged() or self._layers_busy()

    def _layers_busy(self) -> bool:
        """A layer with an optional ``busy()`` (e.g. the Redis bridge while Redis is down and its
        bounded buffer is full) holds back a replayable feed, like a full SQLite writer."""
        return any(layer.busy() for layer in self.layers if hasattr(layer, "busy"))

    # --- 4. the kernel --------------------------------------------------------------------------
    def handle_batch(self, batch: list[Tick] | TickBatch) -> None:
        """Run one batch of ticks through the kernel (synchronously). Every feed's ticks come
        in here: the tick policy rejects (and counts) bad ones; only ticks with valid values
        are published and stored."""
        now = self._feed_clock()
        self._apply_price_limits()
        if self.columnar:
            self._handle_columns(batch if isinstance(batch, TickBatch) else tick_batch(batch), now)
            return
        if isinstance(batch, TickBatch):
            batch = batch.to_ticks()
        publish, last = self.bus.publish, self.stats.last_price
        kept: list[Tick] = []
        # Candles close only on the first tick of a new second, so a run of ticks within one
        # second goes through the pipeline in one call (the fast path's speed comes from the
        # batch) and its ticks are published after it — the order a tick-by-tick loop gives.
        for run in _same_second_runs(batch):
            valid = self.pipeline.handle_ticks(run, now)
            for t in valid:
                last[t.token] = t.price
                publish(f"tick:{t.exchange}:{t.token}", t)
            kept += valid
        self.stats.ticks_in += len(batch)
        self.stats.batches += 1
        if kept:
            self.stats.exchange_time_ns = kept[-1].ts_event
        elif self.feed is not None and not batch:  # an empty batch: the session is over
            self.pipeline.advance(self.feed.exchange_time_ns)
            self._end_of_session(self.feed.exchange_time_ns)
        if kept and self.cfg.store.store_ticks:
            self.writer.put("tick_blocks", [block_row(tick_batch(kept))])
        self._after_batch()

    def _handle_columns(self, batch: TickBatch, now: int | None) -> None:
        """The columnar kernel step: per run of one event second, the candles (batches, and
        objects for their subscribers), then the run's ticks the tick policy kept on
        ``batch:tick`` (and ``tick:…`` objects for their subscribers) — the order a
        tick-by-tick loop gives. Only the kept ticks are stored, as one block."""
        bus, pipeline = self.bus, self.pipeline
        starts = batch.second_starts()
        kept: list[TickBatch] = []
        refused = False
        for k in range(len(starts) - 1):
            run = batch.slice(starts[k], starts[k + 1])
            valid = pipeline.handle_batch(run, now)
            if valid is not None:  # the policy refused some: the others go on
                refused = True
                run = run.take(valid)
                if not len(run):
                    continue
            bus.publish(TickBatch.topic, run)
            if bus.wanted(("tick",), 2):
                self._tick_objects(run)
            kept.append(run)
        n = len(batch)
        self.stats.ticks_in += n
        self.stats.batches += 1
        # every run kept whole: they are the batch, in order (no copy of a whole feed batch)
        good = TickBatch.concat(kept) if refused else batch
        if len(good):
            m = len(good)
            self.stats.exchange_time_ns = int(good.ts_event[-1])
            _, last = np.unique(good.token[::-1], return_index=True)  # each token's last tick
            idx = m - 1 - last
            self.stats.last_price.update(
                zip(good.token[idx].tolist(), good.price[idx].tolist(), strict=True)
            )
            if self.cfg.store.store_ticks:
                self.writer.put("tick_blocks", [block_row(good)])
        elif self.feed is not None and not n:  # an empty batch: the session is over
            pipeline.advance(self.feed.exchange_time_ns)
            self._end_of_session(self.feed.exchange_time_ns)
        self._after_batch()

    def _after_batch(self) -> None:
        """The batch's candles and events to the writer, the layers' ``after_batch`` hooks."""
        self._queue_rows()
        for layer in self.layers:
            after = getattr(layer, "after_batch", None)
            if after is not None:
                after()
        self._report_rejections()

    def _tick_objects(self, run: TickBatch) -> None:
        """``tick:{exchange}:{token}`` messages for the topics somebody subscribed to."""
        from mandi.bus.memory import rows_wanted
        from mandi.model.batches import _EXCHANGE_CODES

        mask = rows_wanted(
            self.bus.wanted(("tick",), 2),
            [(run.exchange, _EXCHANGE_CODES.__getitem__), (run.token, int)],
        )
        rows = range(len(run)) if mask is None else np.flatnonzero(mask).tolist()
        publish = self.bus.publish
        for i in rows:
            t = run.tick(i)
            publish(f"tick:{t.exchange}:{t.token}", t)

    def _end_of_feed(self) -> None:
        if self.feed is not None:
            self.pipeline.advance(self.feed.exchange_time_ns)
        self._queue_rows()
        for layer in self.layers:
            after = getattr(layer, "after_batch", None)
            if after is not None:
                after()

    def _end_of_session(self, ts_ns: int) -> None:
        # the recording closed this session (a replay of it closes it too: mandi.feeds.replay)
        self.writer.put("meta", [(f"session.closed.{ist_date(ts_ns - 1).isoformat()}", str(ts_ns))])
        for layer in self.layers:
            hook = getattr(layer, "end_of_session", None)
            if hook is not None:
                hook(ts_ns)

    def _apply_price_limits(self) -> None:
        """Circuit limits a feed learnt (Angel One's SNAP_QUOTE frames carry them) bound the
        tick policy's price band from the next tick on."""
        take = getattr(self.feed, "take_price_limits", None)
        if take is None:
            return
        for token, (lower, upper) in take().items():
            self.pipeline.set_price_limits(token, lower, upper)

    def _feed_clock(self) -> int | None:
        """The clock a tick's time is checked against: the wall clock for a broker feed, the
        feed's own (simulated) exchange time otherwise; None before the feed has one."""
        feed = self.feed
        if feed is None:
            return None
        now = self.clock.now_ns() if feed.wall_clock else feed.exchange_time_ns
        return now if now > 0 else None

    def _report_rejections(self) -> None:
        """Count the kernel's new rejections against the feed, log each reason once a minute."""
        rejected = self.pipeline.seconds.rejected
        if rejected == self._rejected_seen:
            return
        feed = self.feed.name if self.feed is not None else "?"
        mine = self._rejected_by_feed.setdefault(feed, Counter())
        for reason, n in rejected.items():
            new = n - self._rejected_seen[reason]
            if new > 0:
                mine[reason] += new
                example = self.pipeline.seconds.last_rejection
                self._reject_log.warning(
                    f"{feed}:{reason}",
                    self.clock.now_ns(),
                    "feed %s: rejected %d tick(s): %s (%d from this feed; last %r)",
                    feed,
                    new,
                    reason,
                    mine[reason],
                    example[1] if example else None,
                )
        self._rejected_seen = Counter(rejected)

    def rejections(self) -> dict[str, dict[str, int]]:
        """Rejected ticks per feed and reason: the pipeline's (the tick policy) and what each
        feed could not even parse (``malformed``, ``malformed_frame``)."""
        out = {feed: dict(c) for feed, c in self._rejected_by_feed.items()}
        feed = self.feed
        own: Counter[str] | None = getattr(feed, "rejected", None)
        if feed is not None and own:
            mine = out.setdefault(feed.name, {})
            for reason, n in own.items():
                mine[reason] = mine.get(reason, 0) + n
        return {feed: dict(sorted(c.items())) for feed, c in sorted(out.items()) if c}

    def rejected_ticks(self) -> Counter[str]:
        """:meth:`rejections` summed over the feeds, per reason."""
        total: Counter[str] = Counter()
        for reasons in self.rejections().values():
            total.update(reasons)
        return total

    # --- 5. into SQLite -------------------------------------------------------------------------
    def _on_candle(self, topic: str, c: Candle) -> None:
        self.stats.candles_confirmed[c.timeframe] += 1
        if c.timeframe == 1:
            self.seconds_ring.add_one(c)
            if not self._store_seconds:
                return
        self._candle_rows.append(candle_row(c))

    def _on_candle_batch(self, topic: str, batch: CandleBatch) -> None:
        r = batch.records
        closed = r["closed"] == 1
        if not closed.any():
            return
        r = r[closed]
        tf = r["timeframe"]
        ones = tf == 1
        n1 = int(ones.sum())
        counts = self.stats.candles_confirmed
        if n1:  # most runs: only the seconds the run's first tick closed
            self.seconds_ring.add(r if n1 == len(r) else r[ones])
            counts[1] += n1
            if not self._store_seconds:
                if n1 == len(r):
                    return
                r, tf = r[~ones], tf[~ones]
        for t, k in zip(*np.unique(tf[tf != 1], return_counts=True), strict=True):
            counts[int(t)] += int(k)
        names = EXCHANGES
        self._candle_rows += [
            (tok, names[x], t, b, o, h, lo, c, v, oi, n)
            for tok, t, b, o, h, lo, c, v, oi, n, _, x in r.tolist()
        ]

    def _on_system_event(self, topic: str, e: SystemEvent) -> None:
        self._event_rows.append(
            (
                e.ts_event,
                e.kind,
                e.message,
                e.severity,
                e.source,
                msgspec.json.encode(e.data).decode(),
            )
        )

    def _queue_rows(self) -> None:
        """The batch's confirmed candles and events (its ticks went first, as a block): one
        writer item each."""
        if self._candle_rows:
            self.writer.put("candles", self._candle_rows)  # one item = whole seconds
            self._candle_rows = []
        if self._event_rows:
            self.writer.put("events", self._event_rows)
            self._event_rows = []

    # --- timers ---------------------------------------------------------------------------------
    async def _status(self) -> None:
        from mandi.services.status import StatusReporter

        reporter = StatusReporter(self.ctx)
        last_ticks, last_t = 0, time.monotonic()
        try:
            while True:
                await asyncio.sleep(self.cfg.run.status_interval)
                now = time.monotonic()
                self.stats.ticks_per_s = (self.stats.ticks_in - last_ticks) / (now - last_t)
                last_ticks, last_t = self.stats.ticks_in, now
                reporter.update()
        finally:
            # the last state too: a flat-out run may end before the first interval
            now = time.monotonic()
            if now > last_t:
                self.stats.ticks_per_s = (self.stats.ticks_in - last_ticks) / (now - last_t)
            reporter.update()
            reporter.close()

    async def _clock_driver(self) -> None:
        """For broker feeds: confirm buckets by wall time even if no tick arrives."""
        while True:
            await asyncio.sleep(0.25)
            if self.feed is not None and self.feed.wall_clock:
                self.pipeline.advance(self.clock.now_ns())
                self._queue_rows()

    async def _watch_storage(self) -> None:
        """A writer that cannot write raises ``system:storage_failed`` (see
        :mod:`mandi.services.storage`)."""
        while True:
            await asyncio.sleep(0.25)
            self.storage.check()

    # --- lifecycle ------------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    async def run(self) -> int:
        """Run until the duration, the ``until`` time, the end of the feed or a signal; the exit
        status: 0, or :data:`~mandi.services.storage.EXIT_NOT_STORED` when rows were lost."""
        self._feed_done = False
        # first: a live broker's worker starts (and reconciles) while the layers attach, and a
        # SIGTERM meanwhile must stop the node cleanly, not kill it half-started
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop, f"signal {sig.name}")
        try:
            await self.prepare()
            if self.columnar and self.feed is not None and not self.feed.live:
                # a replayable feed flat out brings whole minutes: a few in hand bound the memory
                self.queue = asyncio.Queue(min(4, self.cfg.pipeline.tick_queue))
            for layer in self.layers:
                layer.attach(self.ctx)
        except sqlite3.Error as e:  # e.g. a full disk at start-up: one line, not a traceback
            raise StoreError(f"the database {self.cfg.store.db} failed at start-up: {e}") from None
        # what start-up built (the instrument master, compiled kernels, the layers) lives for
        # the whole run: the collector's full passes skip it from now on, so one costs what
        # the run made since, not everything (a full pass over it stalled a step ~0.1 s)
        gc.collect()
        gc.freeze()
        self.event("started", f"mandi run started (feed {self.feed.name if self.feed else '?'})")
        tasks = [
            asyncio.create_task(self._pump(), name="feed"),
            asyncio.create_task(self._kernel(), name="kernel"),
            asyncio.create_task(self._clock_driver(), name="clock"),
            asyncio.create_task(self._watch_storage(), name="storage"),
        ]
        if self.cfg.run.status_interval > 0:
            tasks.append(asyncio.create_task(self._status(), name="status"))
        for layer in self.layers:
            tasks += [asyncio.create_task(c, name=layer.name) for c in layer.tasks()]
        duration = self.cfg.run.duration
        try:
            if duration > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), duration)
                self.request_stop(f"duration {duration:g} s elapsed")
            else:
                await self._stop.wait()
        finally:
            lost = await self._shutdown(tasks)
            gc.unfreeze()  # a process that runs nodes one after another (tests, benchmarks)
        return EXIT_NOT_STORED if lost else 0

    async def _shutdown(self, tasks: list[asyncio.Task[Any]]) -> int:
        """Stop in order; return how many rows were not stored."""
        log.info("stopping: %s", self._stop_reason or "requested")
        feed_task, kernel_task, *others = tasks
        feed_task.cancel()
        for t in others:
            t.cancel()
        await asyncio.gather(feed_task, *others, return_exceptions=True)
        kernel_task.cancel()
        await asyncio.gather(kernel_task, return_exceptions=True)
        # everything received from a live feed goes through the kernel and into SQLite before
        # exit; a replayable feed's queued batches were never received from anybody: the
        # simulator re-creates them on the next start
        if self.feed is not None and not self.feed.live:
            while not self.queue.empty():
                self.queue.get_nowait()
        while not self.queue.empty() and not self._until_reached:
            item = self.queue.get_nowait()
            kept = self._cut_at_until(item) if item is not None else None
            if kept is not None:
                self.handle_batch(kept)
        for layer in reversed(self.layers):
            try:
                layer.close()
            except Exception:
                log.exception("layer %s failed to close", layer.name)
        self.event("stopped", f"mandi run stopped: {self._stop_reason}")
        self._queue_rows()
        backlog, t0 = self.writer.pending_rows, time.perf_counter()
        self.writer.stop()
        drained = time.perf_counter() - t0
        self.storage.check()  # a failure seen only while stopping is still said out loud
        busy = self._last_batch_at - self._first_batch_at
        if busy > 0:
            # with a replayable feed the kernel waited for the writer (store.backpressure_rows):
            # its rate includes storing, but for the rows still queued at the end
            log.info(
                "kernel: %d ticks in %.3f s (%.0f ticks/s, first batch to last; %.3f s of it "
                "waiting for storage); the writer then stored the last %d rows in %.3f s",
                self.stats.ticks_in,
                busy,
                self.stats.ticks_in / busy,
                self._waited_s,
                backlog,
                drained,
            )
        log.info(
            "stored %s rows; dropped %d ticks at the queue, %s at the writer; rejected %s",
            dict(self.writer.stats.rows),
            self.stats.queue_dropped_ticks,
            dict(self.writer.stats.dropped) or 0,
            self.rejections() or 0,
        )
        lost, _ = storage_summary(self.writer, f"SQLite {self.cfg.store.db}")
        if self.clickhouse is not None:
            lost += self.clickhouse.writer.not_stored()
        return lost


class _SimFeedAdapter:
    """Presents a :class:`~mandi.feeds.sim.SimFeed` as a node :class:`Feed`; registers each new
    day's contracts before their ticks arrive."""

    name = "sim"
    live = False
    wall_clock = False

    def __init__(self, feed: Any, ctx: NodeContext) -> None:
        self._feed = feed
        self._ctx = ctx

    @property
    def exchange_time_ns(self) -> int:
        return int(self._feed.exchange_time_ns)

    def instruments(self) -> list[AnyInstrument]:
        return list(self._feed.exchange.instruments)

    async def batches(self) -> AsyncIterator[list[Tick] | TickBatch]:
        day = self._feed.exchange.date
        source = self._feed.column_batches() if self._ctx.columnar else self._feed.batches()
        async for batch in source:
            if self._feed.exchange.date != day:
                day = self._feed.exchange.date
                self._ctx.add_instruments(self.instruments())
            yield batch


def tick_batch(ticks: list[Tick]) -> TickBatch:
    """:func:`mandi.pipeline.fast.tick_batch` (imported when first needed)."""
    from mandi.pipeline.fast import tick_batch as make

    return make(ticks)


def _second(ts: Any) -> Any:
    """The event second of a timestamp; a value that is not an int (the policy rejects that
    tick) stays in the run it arrived in."""
    return ts // NS_PER_SECOND if type(ts) is int else None


def _candle_pipeline(cfg: AppConfig, bus: MessageBus, known_tokens: set[int]) -> Any:
    pipeline_class: Any = CandlePipeline
    if cfg.pipeline.engine == "fast":  # numba kernels, the same candles (tests/unit/pipeline)
        from mandi.pipeline.fast import FastCandlePipeline

        pipeline_class = FastCandlePipeline
    return pipeline_class(
        bus,
        cfg.pipeline.timeframes,
        known_tokens=known_tokens,
        close_delay_ns=cfg.pipeline.close_delay_ms * NS_PER_MS,
        emit_forming=cfg.pipeline.emit_forming,
        policy=cfg.ticks,
    )


def _same_second_runs(batch: list[Tick]) -> list[list[Tick]]:
    """Split a batch where the event second changes (usually it does not)."""
    if not batch:
        return []
    first, last = _second(batch[0].ts_event), _second(batch[-1].ts_event)
    if first == last and first is not None:
        return [batch]
    runs, start, cur = [], 0, first
    for i in range(1, len(batch)):
        sec = _second(batch[i].ts_event)
        if sec is not None and sec != cur:
            if cur is not None:
                runs.append(batch[start:i])
                start = i
            cur = sec
    runs.append(batch[start:])
    return runs


def _parse_until(text: str) -> int | None:
    if not text:
        return None
    try:
        t = dt.time.fromisoformat(text)
    except ValueError:
        raise ConfigError("run.until", text, "expected an IST time of day HH:MM[:SS]") from None
    return t.hour * 3600 + t.minute * 60 + t.second


def _fmt(ts_ns: int) -> str:
    from mandi.core.calendar import ist_datetime

    return ist_datetime(ts_ns).strftime("%Y-%m-%d %H:%M:%S IST")


class SecondCandles:
    """The last ``seconds`` of confirmed one-second candles, in memory (the seed keeps its 1 s
    candle streams for ten minutes): a ring of :data:`~mandi.model.batches.CANDLE_DTYPE` records
    that holds still when nothing comes."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        # (oldest bucket, newest bucket, records): a read skips the parts outside its range
        self._parts: list[tuple[int, int, np.ndarray]] = []
        self._newest = 0

    def add(self, records: np.ndarray) -> None:
        if not self.seconds or not len(records):
            return
        bucket = records["bucket"]
        lo, hi = int(bucket.min()), int(bucket.max())
        self._parts.append((lo, hi, records.copy()))  # the pipeline's records are a view
        self._newest = max(self._newest, hi)
        horizon = self._newest - self.seconds * NS_PER_SECOND
        while self._parts and self._parts[0][1] < horizon:
            self._parts.pop(0)

    def add_one(self, c: Candle) -> None:
        if self.seconds:
            from mandi.model.batches import exchange_code

            rec = np.array(
                [(c.token, 1, c.bucket, c.open, c.high, c.low, c.close, c.volume, c.oi, c.ticks,
                  1, exchange_code(c.exchange))],
                dtype=CANDLE_DTYPE,
            )  # fmt: skip
            self.add(rec)

    def candles(
        self, token: int, since_ns: int = 0, before_ns: int = 1 << 62, limit: int | None = None
    ) -> list[Candle]:
        """The held one-second candles of ``token`` with ``since_ns <= bucket < before_ns``,
        oldest first; with ``limit``, only the newest ``limit`` of them. The parts are read
        newest first, those outside the range not at all, and only the candles returned are
        made :class:`Candle` s."""
        from mandi.model.batches import records_to_candles

        picked: list[np.ndarray] = []
        n = 0
        for lo, hi, part in reversed(self._parts):
            if hi < since_ns or lo >= before_ns:
                continue
            sel = part[part["token"] == token]
            if lo < since_ns or hi >= before_ns:  # the range cuts this part
                b = sel["bucket"]
                sel = sel[(b >= since_ns) & (b < before_ns)]
            if len(sel):
                picked.append(sel)
                n += len(sel)
                if limit is not None and n >= limit:
                    break
        if not picked:
            return []
        records = np.concatenate(picked[::-1])
        if limit is not None:
            records = records[max(len(records) - limit, 0) :]
        return records_to_candles(records)
