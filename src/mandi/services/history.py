"""Warm-up from history: before the first tick, the candles of the sessions before the feed's
start go into the candle store, and the indicator and trading layers warm up from the store.

:class:`HistoryLayer` is the first layer of ``mandi run``. For a feed with a
:class:`~mandi.feeds.history.HistorySource` (the simulator's own past, or a broker's historical
API) it stores ``history.sessions`` sessions of candles of every underlying (indices and stocks;
not options) at every pipeline timeframe, never over a candle the store already holds, so a
restart or a later run changes nothing that was recorded live. The later layers then find them
where they find stored candles after a restart: the indicator engine replays them, the strategies
warm up on them with their signals suppressed — at 09:15 the averages and oscillators are warm and
the first signal can come with the first candle. A feed with no source (a tickserver, or a broker
whose history was fetched ahead with ``mandi history fetch``) warms up on what the store holds.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from mandi.core.calendar import calendar, ist_date
from mandi.feeds.history import HistorySource, history_source
from mandi.model.instruments import Option
from mandi.stores.history import insert_missing_candles
from mandi.stores.sqlite import connect, get_meta

if TYPE_CHECKING:
    from mandi.services.context import NodeContext

log = logging.getLogger(__name__)


def backfill(
    source: HistorySource,
    db: str,
    instruments: list[Any],
    timeframes: tuple[int, ...],
    start: dt.date,
    sessions: int,
    per_series: int = 500,
) -> tuple[int, int]:
    """Store ``sessions`` sessions of ``source``'s candles before ``start``, at most the last
    ``per_series`` of each (instrument, timeframe) — what a strategy warms up on — and only
    candles the store does not hold; returns (candles from the source, candles inserted)."""
    days = source.sessions_before(start, sessions)
    if not days:
        return 0, 0
    cal = calendar("NSE")
    first = cal.session(days[0])
    opening = cal.session(start)
    if first is None or opening is None:
        return 0, 0
    total = inserted = 0
    con = connect(db)
    try:
        for inst in instruments:
            batch = []
            for tf in timeframes:
                batch += source.candles(inst, tf, first.open_ns, opening.open_ns)[-per_series:]
            total += len(batch)
            if batch:
                inserted += insert_missing_candles(con, batch)
    finally:
        con.close()
    return total, inserted


class HistoryLayer:
    """The first layer of ``mandi run``: the history backfill before anything warms up."""

    name = "history"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.stored = 0
        self.source: HistorySource | None = None

    def attach(self, ctx: NodeContext) -> None:
        cfg = self.cfg
        sessions = cfg.history.sessions
        feed = ctx.feed
        if sessions <= 0 or feed is None:
            return
        start = self._start_date(ctx)
        self.source = source = history_source(cfg, feed.name, start)
        if source is None:
            return
        covers = getattr(source, "covers", lambda inst: True)
        insts = [i for i in ctx.master if not isinstance(i, Option) and covers(i)]
        tfs = tuple(sorted({*cfg.pipeline.timeframes, *cfg.indicators.timeframes}))
        t0 = time.perf_counter()
        total, self.stored = backfill(source, cfg.store.db, insts, tfs, start, sessions)
        log.info(
            "history: %d sessions before %s from %s: %d candles of %d instruments at %s s "
            "(%d new, %d already stored) in %.1f s",
            sessions,
            start.isoformat(),
            source.name,
            total,
            len(insts),
            "/".join(map(str, tfs)),
            self.stored,
            total - self.stored,
            time.perf_counter() - t0,
        )

    def _start_date(self, ctx: NodeContext) -> dt.date:
        """The day the feed started on (a simulation's first day, even when it resumes a
        later one: its history ends where the simulation began)."""
        con = connect(ctx.cfg.store.db)
        try:
            held = get_meta(con, "sim.start_date") if ctx.feed and ctx.feed.name == "sim" else None
        finally:
            con.close()
        if held:
            return dt.date.fromisoformat(held)
        assert ctx.feed is not None
        return ist_date(ctx.feed.exchange_time_ns)

    def tasks(self) -> list[Coroutine[Any, Any, Any]]:
        return []

    def close(self) -> None:
        pass
