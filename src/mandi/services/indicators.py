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

import numpy as np

from mandi.indicators import IndicatorEngine, SnapshotError
from mandi.model.batches import (
    CANDLE_DTYPE,
    EXCHANGES,
    CandleBatch,
    IndicatorValueBatch,
    exchange_name,
)
from mandi.model.instruments import Option
from mandi.model.market import Candle, IndicatorValue
from mandi.stores.indicators import PRUNE_SQL, SNAPSHOT_SQL, VALUE_SQL, latest_snapshot
from mandi.stores.sqlite import connect, load_candles

if TYPE_CHECKING:
    from mandi.config import IndicatorsConfig
    from mandi.services.context import NodeContext

log = logging.getLogger(__name__)


#: the topic of preview batches (``batch:ind`` carries confirmed values only)
PREVIEW_TOPIC = "batch:pub:ind"


def _value_rows(b: IndicatorValueBatch, ok: np.ndarray) -> list[tuple[Any, ...]]:
    """``indicator_values`` rows of a batch's values that are not NaN (``ok``), candle by
    candle, names in order — what :meth:`IndicatorLayer.handle_candle` stores per candle."""
    j, k = np.nonzero(ok)
    names = np.array(b.names, dtype=object)[k]
    ex = np.array(EXCHANGES, dtype=object)[b.exchange[j]]
    return list(
        zip(
            b.token[j].tolist(),
            ex.tolist(),
            b.timeframe[j].tolist(),
            b.bucket[j].tolist(),
            names.tolist(),
            b.values[j, k].tolist(),
            strict=True,
        )
    )


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


def _warm_kernels(specs: Any) -> None:
    """Load the indicator bank's compiled kernels (numba's on-disk cache) with a throwaway
    engine, so the first minute's close — and the first order after it — does not wait for
    them."""
    records = np.zeros(1, dtype=CANDLE_DTYPE)
    records["timeframe"], records["closed"], records["close"] = 60, 1, 100
    IndicatorEngine(specs).process_records(records)


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
        # the columnar node: candles come as batches; previews stay subscribed as interests (no
        # handler) so that the pipeline still builds the forming candles of those series
        columnar = ctx.columnar and self.engine.fused
        if columnar:
            ctx.bus.subscribe("batch:candle", self.handle_candle_batch, name="indicators.process")
        forming = None if columnar else self.handle_forming
        self._tfs = np.array(sorted(self.cfg.timeframes), dtype=np.int64)
        previews: list[int] = []
        for tf in self.cfg.timeframes:
            if not columnar:
                ctx.bus.subscribe(f"candle:{tf}s:>", self.handle_candle, name="indicators.process")
            if self.cfg.previews == "all":
                ctx.bus.subscribe(f"pub:candle:{tf}s:>", forming, name="indicators.peek")
            elif self.cfg.previews == "underlyings":  # per series: the pipeline then builds
                for inst in ctx.master:  # forming candles only for these
                    if not isinstance(inst, Option):
                        previews.append(inst.token)
                        ctx.bus.subscribe(
                            f"pub:candle:{tf}s:{inst.exchange}:{inst.token}",
                            forming,
                            name="indicators.peek",
                        )
        self._preview_tokens = np.unique(np.array(previews, dtype=np.int64))
        if columnar:
            _warm_kernels(self.cfg.specs)

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

    def handle_candle_batch(self, topic: str, batch: CandleBatch) -> None:
        """The columnar path: the batch's confirmed candles of our timeframes through
        ``IndicatorEngine.process_records`` and its forming ones of the preview series through
        ``peek_arrays`` — in record order (a preview sees the state its series had then) —, out
        as :class:`IndicatorValueBatch` es on ``batch:ind``, an :class:`IndicatorValue` only for a
        topic somebody subscribed to with a handler; the same values and rows as
        :meth:`handle_candle` / :meth:`handle_forming` per candle (tested)."""
        r = batch.records
        ours = np.isin(r["timeframe"], self._tfs)
        closed = r["closed"] == 1
        bus = self._ctx.bus if self._ctx is not None else None
        readers = bus is not None and (
            bus.has_subscribers(PREVIEW_TOPIC) or bool(bus.wanted(("pub", "ind"), 4))
        )
        if self.cfg.previews == "none" or not readers:  # a preview nobody reads is not made
            peek = np.zeros(len(r), dtype=bool)
        elif self.cfg.previews == "all":
            peek = ours & ~closed
        else:
            peek = ours & ~closed & np.isin(r["token"], self._preview_tokens)
        use = (ours & closed) | peek
        if not use.any():
            return
        idx = np.flatnonzero(use)
        kind = closed[idx]
        cuts = np.flatnonzero(kind[1:] != kind[:-1]) + 1
        for part in np.split(idx, cuts):
            seg = r[part]
            if seg["closed"][0] == 1:
                self._values(seg, self.engine.process_records(seg).values, True)
            else:
                self._values(seg, self._peek(seg), False)

    def _peek(self, seg: np.ndarray) -> np.ndarray:
        values = np.full((len(seg), len(self.engine.names)), np.nan)
        codes = seg["exchange"]
        for code in np.unique(codes).tolist():
            sel = np.flatnonzero(codes == code)
            s = seg[sel]
            res = self.engine.peek_arrays(
                s["token"], s["timeframe"], s["bucket"], s["close"], exchange=exchange_name(code),
                high=s["high"], low=s["low"], open=s["open"], volume=s["volume"],
            )  # fmt: skip
            values[sel] = np.where((res.status == 0)[:, None], res.values, np.nan)
        return values

    def _values(self, seg: np.ndarray, values: np.ndarray, confirmed: bool) -> None:
        assert self._ctx is not None
        out = IndicatorValueBatch(
            seg["token"].copy(),
            seg["exchange"].copy(),
            seg["timeframe"].copy(),
            seg["bucket"].copy(),
            self.engine.names,
            values,
            confirmed,
        )
        bus = self._ctx.bus
        bus.publish(IndicatorValueBatch.topic if confirmed else PREVIEW_TOPIC, out)
        family = ("ind",) if confirmed else ("pub", "ind")
        if bus.wanted(family, 4):
            for v in out.to_values():
                if bus.has_subscribers(indicator_topic(v)):
                    bus.publish(indicator_topic(v), v)
        ok = ~np.isnan(values)
        n = int(ok.sum())
        if confirmed:
            self.values_published += n
            if self.cfg.store_values and n:
                self._rows += _value_rows(out, ok)
        else:
            self.previews_published += n

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
