"""The option-chain layer of ``mandi run``.

Ticks of option contracts and underlyings → :class:`~mandi.pipeline.chains.ChainAssembler` →
every ``interval_s`` of exchange time one :class:`ChainSnapshot` per (underlying, expiry) →
:class:`~mandi.options.chain.ChainMatrix` (IV, Greeks, OI windows, PCR, max pain) → the bus:
``chain:{underlying}:{expiry}`` (the snapshot) and ``analytics:{underlying}:{expiry}`` (its
:class:`~mandi.options.chain.ChainAnalytics`). Snapshots are persisted every
``persist_interval_s`` (the seed's 30 s) into ``option_chain_snapshots`` with
``exchange_metadata``; on start, today's stored snapshots are replayed into the matrix (without
notifying anybody) so the 3–30 minute OI windows are warm at once, and each contract's change in
OI is measured against the same first reading of the day as before the restart.

When. The chain stamped ``t`` (on the ``interval_s`` grid) is every quote that arrived before
the first tick at or after ``t``, and is built at that tick — so it does not depend on how a
feed batches its ticks: a live run, a replay of its recording and a flat-out simulation make the
same chains. Snapshots are persisted on the ``persist_interval_s`` grid of exchange time (:00,
:30, ...), also after a restart mid-interval; a simulated day has no tick before 09:15:00, so its
first persisted chain is 09:15:30.

Strike spacing comes from the instrument master: every (underlying, expiry)'s listed strikes go
to the matrix (``set_listed_strikes``) before any snapshot — the first stored snapshot of a day is
sparse and would otherwise fix a wrong grid — and into ``meta`` for ``mandi chain show``.

Two engines (``pipeline.engine``): the reference takes ``tick:>`` objects into a
:class:`ChainAssembler` and processes every snapshot through the matrix; the columnar one takes
``batch:tick`` into :class:`~mandi.pipeline.chains.ChainColumns` and stages each moment's chains
as arrays (:meth:`ChainMatrix.stage_frames`): a snapshot object, the matrix work and the
analytics are made only for who reads them — subscribers of ``chain:`` / ``analytics:``
topics, the persistence every 30 s, the trading kernel asking for the latest chain
(:meth:`ChainLayer.latest_snapshot`, :meth:`ChainLayer.latest_analytics`) — with the same
values as the reference (tested). Both restart alike (:meth:`ChainLayer._warm`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from mandi.bus.memory import rows_wanted
from mandi.core.clock import NS_PER_SECOND
from mandi.model import _columns as columns
from mandi.model.batches import TickBatch
from mandi.model.market import ChainSnapshot, Tick
from mandi.options.chain import ChainAnalytics, ChainMatrix, ChainMatrixConfig
from mandi.options.chain.matrix import CE_IV, PE_IV
from mandi.pipeline.chains import ChainAssembler, ChainColumns, ChainFrame
from mandi.stores.chains import (
    METADATA_SQL,
    SNAPSHOT_SQL,
    STRIKES_SQL,
    atm_paise,
    day_ticks,
    listed_strikes_rows,
    load_snapshots,
    metadata_row,
    snapshot_rows,
    today_start_ns,
)
from mandi.stores.sqlite import connect

if TYPE_CHECKING:
    from mandi.config import ChainsConfig
    from mandi.services.context import NodeContext

log = logging.getLogger(__name__)


def chain_topic(prefix: str, underlying: str, expiry: Any) -> str:
    return f"{prefix}:{underlying}:{expiry.isoformat()}"


class ChainLayer:
    """Plugs the chain assembler and matrix into a node (through its
    :class:`~mandi.services.context.NodeContext`)."""

    name = "chains"

    def __init__(self, cfg: ChainsConfig) -> None:
        self.cfg = cfg
        self.matrix: ChainMatrix | None = None
        self.assembler: ChainAssembler | None = None
        self.columns: ChainColumns | None = None  # the columnar engine
        self._ctx: NodeContext | None = None
        self._known = 0  # instruments the assembler knows (the master grows on a new day)
        self._next_ns = 0  # the next chain falls due at the first tick at or after this time
        self._step_ns = max(1, int(cfg.interval_s * NS_PER_SECOND))
        self._next_persist_ns = -1  # -1: the first stamp decides (the next grid point)
        self._listed: set[tuple[str, Any]] = set()  # chains whose strikes the matrix knows
        self._frames: dict[tuple[str, dt.date], ChainFrame] = {}  # the latest, columnar
        self._pending: list[tuple[ChainSnapshot, ChainAnalytics | None]] = []
        self.snapshots = 0
        self.errors = 0

    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        rate = self.cfg.rate
        if rate is None:  # the simulator prices at its own rate; real chains use NSE's 10 %
            from mandi.feeds.sim import RISK_FREE_RATE

            rate = RISK_FREE_RATE if _label(ctx.feed) == "sim" else 0.10
        self.matrix = ChainMatrix(
            ChainMatrixConfig(
                strikes_each_side=self.cfg.strikes_each_side,
                rate=rate,
                diff_pos_threshold=self.cfg.diff_pos_threshold,
                diff_neg_threshold=self.cfg.diff_neg_threshold,
            )
        )
        source = _label(ctx.feed)
        columnar = ctx.columnar
        if columnar:
            self.columns = ChainColumns(ctx.master, source=source)
        else:
            self.assembler = ChainAssembler(ctx.master, source=source)
        ctx.writer.register("option_chain_snapshots", SNAPSHOT_SQL)
        ctx.writer.register("exchange_metadata", METADATA_SQL)
        ctx.writer.register("chain_strikes", STRIKES_SQL)
        if ctx.feed is not None and hasattr(ctx.feed, "on_snapshot"):
            # a source of whole chains (NSE's API): its snapshots, not ticks, feed the matrix
            ctx.feed.on_snapshot = self.handle_snapshot
            self.columns = None
            self.assembler = ChainAssembler(ctx.master, source=source)
        elif columnar:
            ctx.bus.subscribe(TickBatch.topic, self.handle_batch, name="chains.ticks")
        else:
            ctx.bus.subscribe("tick:>", self.handle_tick, name="chains.ticks")
        self._list_strikes()
        self._warm(ctx)

    def _list_strikes(self) -> None:
        """Give the matrix (and ``meta``) the listed strikes of chains it does not know yet."""
        source = self.columns if self.columns is not None else self.assembler
        assert self.matrix is not None and source is not None and self._ctx is not None
        new = {k: v for k, v in source.listed_strikes().items() if k not in self._listed}
        for (underlying, expiry), strikes in new.items():
            self.matrix.set_listed_strikes(underlying, expiry, strikes)
        self._listed.update(new)
        if new:
            self._ctx.writer.put("chain_strikes", listed_strikes_rows(new))

    def _warm(self, ctx: NodeContext) -> None:
        """After a restart: the OI windows from today's stored snapshots, each contract's OI
        reference, and — when the node resumed a simulated day from the database — the latest
        quote of every contract and underlying from the stored ticks (the ticks before the
        resume point; chains fall due again from the first interval at or after it), so the
        chains go on as if the node had never stopped."""
        source = self.columns if self.columns is not None else self.assembler
        assert self.matrix is not None and source is not None
        resumed = ctx.stats.resumed_from_ns
        con = connect(ctx.cfg.store.db)
        try:
            from mandi.stores.history import last_chain_timestamp

            last = last_chain_timestamp(con)
            ref = last if last is not None else resumed  # a day to warm up
            if ref is None:
                return
            day = today_start_ns(ref)
            snaps = load_snapshots(con, day) if last is not None else []
            first_oi, ticks = (
                day_ticks(con, day, resumed)
                if resumed is not None and ctx.cfg.store.store_ticks
                else ({}, TickBatch.empty())
            )
        finally:
            con.close()
        for s in snaps:
            self.matrix.process_option_chain(s.underlying, s, notify=False)
        refs = {  # oi_change = oi − the first reading of the day
            q.token: q.oi - q.oi_change
            for s in snaps
            for r in s.rows
            for q in (r.call, r.put)
            if q is not None and q.token
        }
        refs.update(first_oi)  # the stored ticks know it exactly
        source.restore_oi_references(int(ref), refs)
        if self.columns is not None:
            self.columns.handle_batch(ticks)
        else:
            for t in ticks.to_ticks():
                source.handle_tick(t)
        if resumed is not None:  # a chain stamped before it fell due before the restart
            self._next_ns = -(-resumed // self._step_ns) * self._step_ns
        log.info(
            "chains warm: %d stored snapshots replayed into the OI windows, %d latest quotes",
            len(snaps),
            len(ticks),
        )

    def _new_contracts(self) -> None:
        ctx = self._ctx
        assert ctx is not None
        if len(ctx.master) != self._known:
            self._known = len(ctx.master)  # a new simulated day brought new contracts
            if self.assembler is not None:
                self.assembler.add_instruments(ctx.master)
            if self.columns is not None:
                self.columns.add_instruments(ctx.master)
            self._list_strikes()

    def handle_tick(self, topic: str, tick: Tick) -> None:
        """A tick (reference engine): the chain falls due before it if it starts a new
        interval (module docstring)."""
        assert self.assembler is not None
        ts = tick.ts_event
        if ts >= self._next_ns:
            self._new_contracts()
            stamp = ts - ts % self._step_ns
            self._next_ns = stamp + self._step_ns
            self.emit(stamp)
        self.assembler.handle_tick(tick)

    def handle_batch(self, topic: str, batch: TickBatch) -> None:
        """A tick batch (columnar engine): applied in one call per interval it spans."""
        cols = self.columns
        assert cols is not None
        n, i = len(batch), 0
        ts = batch.ts_event
        while i < n:
            j = columns.first_at_or_after(ts, i, n, self._next_ns)
            if j > i:
                cols.handle_batch(batch.slice(i, j))
            if j < n:
                self._new_contracts()
                t = int(ts[j])
                stamp = t - t % self._step_ns
                self._next_ns = stamp + self._step_ns
                self.emit(stamp)
            i = j

    def end_of_session(self, ts_ns: int) -> None:
        """The session is over (the feed said so at ``ts_ns``): the last chain falls due."""
        if self._ctx is None or (self.assembler is None and self.columns is None):
            return
        if ts_ns >= self._next_ns and self._next_ns:
            stamp = ts_ns - ts_ns % self._step_ns
            self._next_ns = stamp + self._step_ns
            self.emit(stamp)

    def _persist_due(self, ts_ns: int) -> bool:
        """Is the chain stamped ``ts_ns`` one to store: the first at or after each point of the
        ``persist_interval_s`` grid, from the first grid point at or after the first chain (on
        a restart too)."""
        every = int(self.cfg.persist_interval_s * NS_PER_SECOND)
        if self._next_persist_ns < 0:  # start (or restart) on the grid: :00, :30, ...
            self._next_persist_ns = -(-ts_ns // every) * every
        if ts_ns < self._next_persist_ns:
            return False
        self._next_persist_ns = ts_ns - ts_ns % every + every
        return True

    def emit(self, ts_ns: int) -> None:
        """Build, analyse, publish (and at the persist cadence, store) every chain at ``ts_ns``."""
        if self.columns is not None:
            self._emit_frames(ts_ns)
            return
        ctx = self._ctx
        assert ctx is not None and self.assembler is not None and self.matrix is not None
        persist = self._persist_due(ts_ns)
        for snap in self.assembler.snapshots(ts_ns):
            try:
                analytics = self.matrix.process_option_chain(snap.underlying, snap)
            except Exception as e:
                self.errors += 1
                ctx.event("chain_error", f"{snap.underlying} {snap.expiry}: {e}", "ERROR")
                continue
            self.snapshots += 1
            ctx.bus.publish(chain_topic("chain", snap.underlying, snap.expiry), snap)
            if analytics is not None:
                ctx.bus.publish(chain_topic("analytics", snap.underlying, snap.expiry), analytics)
            if persist:
                rows = snapshot_rows(snap, analytics, ctx.clock.now_ns(), self._ivs(snap))
                ctx.writer.put("option_chain_snapshots", rows)
                ctx.writer.put(
                    "exchange_metadata",
                    [metadata_row(snap, atm_paise(analytics), ctx.clock.now_ns())],
                )

    def _emit_frames(self, ts_ns: int) -> None:
        """The columnar emit: the chains as arrays, staged in the matrix; objects and analytics
        only for who wants them (module docstring)."""
        ctx, cols, matrix = self._ctx, self.columns, self.matrix
        assert ctx is not None and cols is not None and matrix is not None
        persist = self._persist_due(ts_ns)
        frames = cols.frames(ts_ns)
        if not frames:
            return
        try:
            matrix.stage_frames(frames)
        except Exception as e:  # a frame the matrix refuses (bad lot size …): reported
            self.errors += 1
            ctx.event("chain_error", f"chains at {ts_ns}: {e}", "ERROR")
            return
        self.snapshots += len(frames)
        for f in frames:
            self._frames[(f.underlying, f.expiry)] = f
        bus = ctx.bus
        if bus.has_subscribers("batch:chain"):
            bus.publish("batch:chain", frames)
        want_snap = bus.wanted(("chain",), 2)
        want_ana = bus.wanted(("analytics",), 2)
        if want_snap or want_ana or persist:
            keys = [(f.underlying, f.expiry.isoformat()) for f in frames]
            snap_rows = _wanted_keys(want_snap, keys)
            ana_rows = _wanted_keys(want_ana, keys)
            for k, f in enumerate(frames):
                if not (snap_rows[k] or ana_rows[k] or persist):
                    continue
                snap = f.snapshot()
                analytics = self._analytics_of(f)
                if snap_rows[k]:
                    bus.publish(chain_topic("chain", f.underlying, f.expiry), snap)
                if ana_rows[k] and analytics is not None:
                    bus.publish(chain_topic("analytics", f.underlying, f.expiry), analytics)
                if persist:
                    now = ctx.clock.now_ns()
                    rows = snapshot_rows(snap, analytics, now, self._ivs(snap))
                    ctx.writer.put("option_chain_snapshots", rows)
                    ctx.writer.put(
                        "exchange_metadata", [metadata_row(snap, atm_paise(analytics), now)]
                    )

    def _analytics_of(self, f: ChainFrame) -> ChainAnalytics | None:
        assert self.matrix is not None
        try:
            return self.matrix.analytics(f.underlying, f.expiry)
        except Exception as e:
            self.errors += 1
            if self._ctx is not None:
                self._ctx.event("chain_error", f"{f.underlying} {f.expiry}: {e}", "ERROR")
            return None

    def latest_snapshot(self, underlying: str, expiry: dt.date) -> ChainSnapshot | None:
        """The newest chain of (underlying, expiry) the columnar engine made, as a
        :class:`ChainSnapshot` (what ``chain:...`` subscribers got last)."""
        f = self._frames.get((underlying, expiry))
        return f.snapshot() if f is not None else None

    def latest_analytics(self, underlying: str, expiry: dt.date | None) -> ChainAnalytics | None:
        """The analytics of that newest chain (what ``analytics:...`` subscribers got last);
        ``expiry`` None: the nearest expiry seen."""
        if expiry is None:
            mine = [e for u, e in self._frames if u == underlying]
            if not mine:
                return None
            expiry = min(mine)
        f = self._frames.get((underlying, expiry))
        return self._analytics_of(f) if f is not None else None

    def handle_snapshot(self, snap: ChainSnapshot) -> None:
        """A whole chain from a polled source: analysed and published like an assembled one,
        and stored every time (as ``mandi chain import`` stores a file)."""
        ctx = self._ctx
        assert ctx is not None and self.matrix is not None
        try:
            analytics = self.matrix.process_option_chain(snap.underlying, snap)
        except Exception as e:
            self.errors += 1
            ctx.event("chain_error", f"{snap.underlying} {snap.expiry}: {e}", "ERROR")
            return
        self.snapshots += 1
        ctx.bus.publish(chain_topic("chain", snap.underlying, snap.expiry), snap)
        if analytics is not None:
            ctx.bus.publish(chain_topic("analytics", snap.underlying, snap.expiry), analytics)
        now = ctx.clock.now_ns()
        rows = snapshot_rows(snap, analytics, now, self._ivs(snap))
        ctx.writer.put("option_chain_snapshots", rows)
        ctx.writer.put("exchange_metadata", [metadata_row(snap, atm_paise(analytics), now)])

    def _ivs(self, snap: ChainSnapshot) -> dict[tuple[int, str], float]:
        """The matrix's IVs of the snapshot's window strikes, to store beside the quotes."""
        assert self.matrix is not None
        try:
            data, strikes = self.matrix.latest(snap.underlying, snap.expiry)
        except KeyError:
            return {}
        out: dict[tuple[int, str], float] = {}
        for j, k in enumerate(strikes.tolist()):
            if k == k:  # not NaN
                out[(round(k * 100), "CE")] = float(data[CE_IV, j])
                out[(round(k * 100), "PE")] = float(data[PE_IV, j])
        return out

    def tasks(self) -> list[Coroutine[Any, Any, Any]]:
        return []

    def close(self) -> None:
        if self.columns is not None and self.matrix is not None:
            self.matrix.flush_staged()


def _label(feed: Any) -> str:
    """What a feed's data is labelled with: its name, or a replay's recorded feed's."""
    return "" if feed is None else str(getattr(feed, "label", feed.name))


def _wanted_keys(constraints: list[Any], keys: list[tuple[str, str]]) -> list[bool]:
    """Per (underlying, expiry) key: does a constraint of ``chain:{u}:{e}`` topics match it."""
    if not constraints:
        return [False] * len(keys)
    import numpy as np

    u = np.array([k[0] for k in keys], dtype=object)
    e = np.array([k[1] for k in keys], dtype=object)
    mask = rows_wanted(constraints, [(u, str), (e, str)])
    return [True] * len(keys) if mask is None else mask.tolist()
