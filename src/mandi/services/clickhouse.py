"""The ClickHouse layer of the node: ``store.clickhouse_url`` set = confirmed candles (and
confirmed indicator values; ticks with ``store.clickhouse_ticks``) are copied into ClickHouse by
a :class:`~mandi.stores.clickhouse.ClickHouseWriter`, one queued item per kernel batch.

SQLite stays the store of record: a failing ClickHouse is loud (``system:clickhouse_failed``)
but does not halt trading; rows ClickHouse refuses are quarantined into SQLite's ``rejects``
table (``store = 'clickhouse'``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from mandi.core.errors import ConfigError
from mandi.model.market import Candle, IndicatorValue, Tick
from mandi.services.storage import StorageWatch
from mandi.stores.clickhouse import SETTING, ClickHouseTarget, ClickHouseWriter, parse_url
from mandi.stores.sqlite import candle_row, tick_row
from mandi.stores.writer import Reject

if TYPE_CHECKING:
    from mandi.config import AppConfig
    from mandi.services.context import NodeContext

log = logging.getLogger(__name__)


class ClickHouseSink:
    """A node :class:`~mandi.services.context.Layer` copying market data into ClickHouse."""

    name = "clickhouse"

    def __init__(self, cfg: AppConfig, target: ClickHouseTarget) -> None:
        st = cfg.store
        self.cfg = cfg
        self.writer = ClickHouseWriter(
            target,
            flush_interval=st.flush_interval_ms / 1000,
            flush_items=st.flush_items,
            max_pending_rows=st.max_pending_rows,
            on_reject=self._quarantine,
            high_water_rows=st.backpressure_rows,
        )
        self._ctx: NodeContext | None = None
        self._watch: StorageWatch | None = None
        self._candles: list[tuple[Any, ...]] = []
        self._values: list[tuple[Any, ...]] = []
        self._ticks: list[tuple[Any, ...]] = []

    def busy(self) -> bool:
        """Too many rows wait for ClickHouse: a replayable feed waits (backpressure)."""
        return self.writer.backlogged()

    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._watch = StorageWatch(
            self.writer,
            ctx.event,
            f"ClickHouse ({self.writer.target.safe()})",
            ("clickhouse_failed", "clickhouse_recovered"),
            "SQLite still stores everything",
        )
        self.writer.start()
        bus = ctx.bus
        bus.subscribe("candle:>", self._on_candle, name="clickhouse.candles")
        ind = self.cfg.indicators
        if ind.enabled and ind.store_values:
            bus.subscribe("ind:>", self._on_value, name="clickhouse.indicators")
        if self.cfg.store.clickhouse_ticks:
            bus.subscribe("tick:>", self._on_tick, name="clickhouse.ticks")

    def _quarantine(self, rejects: list[Reject]) -> None:
        """Rows ClickHouse refused (called on its writer thread): into SQLite's ``rejects``."""
        if self._ctx is not None:
            now = time.time_ns()
            self._ctx.writer.put("rejects", [r.as_row("clickhouse", now) for r in rejects])

    def _on_candle(self, topic: str, c: Candle) -> None:
        if c.closed:
            self._candles.append(candle_row(c))

    def _on_value(self, topic: str, v: IndicatorValue) -> None:
        if v.confirmed:
            self._values.append((v.token, v.exchange, v.timeframe, v.bucket, v.name, v.value))

    def _on_tick(self, topic: str, t: Tick) -> None:
        self._ticks.append(tick_row(t))

    def after_batch(self) -> None:
        if self._candles:
            self.writer.put("market_data", self._candles)
            self._candles = []
        if self._values:
            self.writer.put("indicator_values", self._values)
            self._values = []
        if self._ticks:
            self.writer.put("ticks", self._ticks)
            self._ticks = []

    def tasks(self) -> list[Coroutine[Any, Any, Any]]:
        return [self._watch_health()]

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            if self._watch is not None:
                self._watch.check()

    def close(self) -> None:
        self.after_batch()
        self.writer.stop()
        if self._watch is not None:
            self._watch.check()
        s = self.writer.stats
        log.info(
            "ClickHouse (%s): inserted %s rows; not stored %d; %d errors",
            self.writer.target.safe(),
            dict(s.rows),
            self.writer.not_stored(),
            s.errors,
        )


def open_clickhouse_sink(cfg: AppConfig) -> ClickHouseSink | None:
    """The ClickHouse layer for ``store.clickhouse_url``, or None when it is empty. A bad URL
    or a missing driver raises :class:`ConfigError` here, before anything starts; connecting
    happens on the writer thread."""
    url = cfg.store.clickhouse_url.strip()
    if not url:
        return None
    target = parse_url(url)
    module = "chdb" if target.kind == "chdb" else "clickhouse_connect"
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            SETTING, target.safe(), f"needs {module}: pip install 'mandi[clickhouse]'"
        ) from None
    return ClickHouseSink(cfg, target)
