"""The indicator layer of ``mandi run``: confirmed candles → indicator values, persisted.

* confirmed candles ``candle:{tf}s:...`` of the configured timeframes → ``IndicatorEngine.process``
  → ``ind:{name}:{tf}s:{exchange}:{token}`` on the bus and ``indicator_values`` in SQLite (upsert
  on (timeframe, bucket, token, name), so replays never duplicate);
* forming candles ``pub:candle:...`` → ``peek`` → ``pub:ind:...`` (previews, never stored);
* warm start: restore the latest ``indicator_snapshots`` row, replay the stored candles after the
  position it reflects, then go live; a candle the engine has already seen (the node re-emits the
  last stored second after a restart) is rejected as stale, never applied twice;
* a snapshot is queued to the same writer as the values every ``snapshot_interval_s`` and at
  shutdown: the writer commits in order, so a stored snapshot never runs ahead of stored values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from mandi.indicators import IndicatorEngine, SnapshotError
from mandi.model.instruments import Option
from mandi.model.market import Candle, IndicatorValue
from mandi.stores.indicators import PRUNE_SQL, SNAPSHOT_SQL, VALUE_SQL, latest_snapshot
from mandi.stores.sqlite import connect, load_candles

if TYPE_CHECKING:
    from mandi.config import IndicatorsConfig
    from mandi.services.context import NodeContext

log = logging.getLogger(__name__)


def indicator_topic(v: IndicatorValue) -> str:
    prefix = "ind" if v.confirmed else "pub:ind"
    return f"{prefix}:{v.name}:{v.timeframe}s:{v.exchange}:{v.token}"


def warm_start(
    engine: IndicatorEngine,
    con: Any,
    timeframes: tuple[int, ...],
    specs_key: str,
    on_values: Callable[[list[IndicatorValue]], object] | None = None,
) -> tuple[int, int]:
    """Restore the latest snapshot and replay stored candles after it; ``on_values`` receives
    the values the replay produces (they may never have been stored: the process can die after
    its candles were committed and before their values were). Returns (candles replayed, values
    produced)."""
    blob = latest_snapshot(con, specs_key)
    if blob is not None:
        try:
            engine.restore(blob)
            log.info("indicators: restored a snapshot of %d series", len(engine.position()))
        except SnapshotError as e:
            log.warning("indicator snapshot unusable (%s); rebuilding from stored candles", e)
    position = engine.position()
    replayed = produced = 0
    for tf in timeframes:
        # every stored candle after its series' position; without a snapshot, all of them
        known = [b for (_, _, t), b in position.items() if t == tf]
        since = min(known) + 1 if known else 0
        for c in load_candles(con, tf, since):
            last = position.get((c.token, c.exchange, tf))
            if last is not None and c.bucket <= last:
                continue
            values = engine.process(c)
            produced += len(values)
            replayed += 1
            if on_values is not None and values:
                on_values(values)
    return replayed, produced


class IndicatorLayer:
    """Plugs the :class:`IndicatorEngine` into a node (through its
    :class:`~mandi.services.context.NodeContext`)."""

    name = "indicators"

    def __init__(self, cfg: IndicatorsConfig) -> None:
        self.cfg = cfg
        self.engine = IndicatorEngine(cfg.specs)
        self._specs_key = ",".join(self.engine.specs)
        self._rows: list[tuple[Any, ...]] = []
        self._ctx: NodeContext | None = None
        self.values_published = 0
        self.previews_published = 0

    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        ctx.writer.register("indicator_values", VALUE_SQL)
        ctx.writer.register("indicator_snapshots", SNAPSHOT_SQL)
        ctx.writer.register("indicator_snapshots_prune", PRUNE_SQL)
        con = connect(ctx.cfg.store.db)
        try:
            replayed, produced = warm_start(
                self.engine, con, self.cfg.timeframes, self._specs_key, self._store_values
            )
        finally:
            con.close()
        if replayed:
            log.info("indicators warm: replayed %d stored candles (%d values)", replayed, produced)
        for tf in self.cfg.timeframes:
            ctx.bus.subscribe(f"candle:{tf}s:>", self.handle_candle, name="indicators.process")
            if self.cfg.previews == "all":
                ctx.bus.subscribe(
                    f"pub:candle:{tf}s:>", self.handle_forming, name="indicators.peek"
                )
            elif self.cfg.previews == "underlyings":  # per series: the pipeline then builds
                for inst in ctx.master:  # forming candles only for these
                    if not isinstance(inst, Option):
                        ctx.bus.subscribe(
                            f"pub:candle:{tf}s:{inst.exchange}:{inst.token}",
                            self.handle_forming,
                            name="indicators.peek",
                        )

    def _store_values(self, values: list[IndicatorValue]) -> None:
        if self.cfg.store_values:
            self._rows.extend(
                (v.token, v.exchange, v.timeframe, v.bucket, v.name, v.value) for v in values
            )

    def handle_candle(self, topic: str, candle: Candle) -> None:
        assert self._ctx is not None
        publish = self._ctx.bus.publish
        values = self.engine.process(candle)
        for v in values:
            publish(indicator_topic(v), v)
        self._store_values(values)
        self.values_published += len(values)

    def handle_forming(self, topic: str, candle: Candle) -> None:
        assert self._ctx is not None
        publish = self._ctx.bus.publish
        for v in self.engine.peek(candle):
            publish(indicator_topic(v), v)
            self.previews_published += 1

    def after_batch(self) -> None:
        if self._rows and self._ctx is not None:
            self._ctx.writer.put("indicator_values", self._rows)
            self._rows = []

    def save_snapshot(self) -> None:
        if self._ctx is None:
            return
        self.after_batch()  # values first: the writer commits in order
        self._ctx.writer.put(
            "indicator_snapshots",
            [(self._ctx.clock.now_ns(), self._specs_key, self.engine.snapshot())],
        )

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.snapshot_interval_s)
            self.save_snapshot()

    def tasks(self) -> list[Coroutine[Any, Any, Any]]:
        return [self._snapshots()]

    def close(self) -> None:
        self.save_snapshot()
        if self._ctx is not None:
            self._ctx.writer.put(
                "indicator_snapshots_prune",
                [(self._specs_key, self._specs_key, self.cfg.snapshots_kept)],
            )
