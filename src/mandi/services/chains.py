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

Strike spacing comes from the instrument master: every (underlying, expiry)'s listed strikes go
to the matrix (``set_listed_strikes``) before any snapshot — the first stored snapshot of a day is
sparse and would otherwise fix a wrong grid — and into ``meta`` for ``mandi chain show``.
Snapshots are persisted on the ``persist_interval_s`` grid of exchange time (09:15:00, :30, ...),
also after a restart mid-interval.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from mandi.core.clock import NS_PER_SECOND
from mandi.model.market import ChainSnapshot, Tick
from mandi.options.chain import ChainAnalytics, ChainMatrix, ChainMatrixConfig
from mandi.options.chain.matrix import CE_IV, PE_IV
from mandi.pipeline.chains import ChainAssembler
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
        self._ctx: NodeContext | None = None
        self._known = 0  # instruments the assembler knows (the master grows on a new day)
        self._next_ns = 0
        self._next_persist_ns = -1  # -1: the first stamp decides (the next grid point)
        self._listed: set[tuple[str, Any]] = set()  # chains whose strikes the matrix knows
        self._pending: list[tuple[ChainSnapshot, ChainAnalytics | None]] = []
        self.snapshots = 0
        self.errors = 0

    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        rate = self.cfg.rate
        if rate is None:  # the simulator prices at its own rate; real chains use NSE's 10 %
            from mandi.feeds.sim import RISK_FREE_RATE

            rate = RISK_FREE_RATE if ctx.feed is not None and ctx.feed.name == "sim" else 0.10
        self.matrix = ChainMatrix(
            ChainMatrixConfig(
                strikes_each_side=self.cfg.strikes_each_side,
                rate=rate,
                diff_pos_threshold=self.cfg.diff_pos_threshold,
                diff_neg_threshold=self.cfg.diff_neg_threshold,
            )
        )
        self.assembler = ChainAssembler(ctx.master, source=ctx.feed.name if ctx.feed else "")
        ctx.writer.register("option_chain_snapshots", SNAPSHOT_SQL)
        ctx.writer.register("exchange_metadata", METADATA_SQL)
        ctx.writer.register("chain_strikes", STRIKES_SQL)
        if ctx.feed is not None and hasattr(ctx.feed, "on_snapshot"):
            # a source of whole chains (NSE's API): its snapshots, not ticks, feed the matrix
            ctx.feed.on_snapshot = self.handle_snapshot
        else:
            ctx.bus.subscribe("tick:>", self.handle_tick, name="chains.ticks")
        self._list_strikes()
        self._warm(ctx)

    def _list_strikes(self) -> None:
        """Give the matrix (and ``meta``) the listed strikes of chains it does not know yet."""
        assert self.matrix is not None and self.assembler is not None and self._ctx is not None
        new = {k: v for k, v in self.assembler.listed_strikes().items() if k not in self._listed}
        for (underlying, expiry), strikes in new.items():
            self.matrix.set_listed_strikes(underlying, expiry, strikes)
        self._listed.update(new)
        self._ctx.writer.put("chain_strikes", listed_strikes_rows(new))

    def _warm(self, ctx: NodeContext) -> None:
        """After a restart: the OI windows from today's stored snapshots, each contract's OI
        reference, and — when the node resumed a simulated day from the database — the latest
        quote of every contract and underlying from the stored ticks, so the chains go on as if
        the node had never stopped."""
        assert self.matrix is not None and self.assembler is not None
        resumed = ctx.stats.resumed_from_ns
        con = connect(ctx.cfg.store.db)
        try:
            from mandi.stores.history import last_chain_timestamp

            last = last_chain_timestamp(con)
            if last is None:
                return
            day = today_start_ns(last)
            snaps = load_snapshots(con, day)
            first_oi, ticks = (
                day_ticks(con, day, resumed)
                if resumed is not None and ctx.cfg.store.store_ticks
                else ({}, [])
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
        self.assembler.restore_oi_references(int(last), refs)
        for t in ticks:
            self.assembler.handle_tick(t)
        log.info(
            "chains warm: %d stored snapshots replayed into the OI windows, %d latest quotes",
            len(snaps),
            len(ticks),
        )

    def handle_tick(self, topic: str, tick: Tick) -> None:
        assert self.assembler is not None
        self.assembler.handle_tick(tick)

    def after_batch(self) -> None:
        ctx = self._ctx
        if ctx is None or self.assembler is None or hasattr(ctx.feed, "on_snapshot"):
            return
        if len(ctx.master) != self._known:
            self._known = len(ctx.master)  # a new simulated day brought new contracts
            self.assembler.add_instruments(ctx.master)
            self._list_strikes()
        now = ctx.stats.exchange_time_ns
        if now < self._next_ns:
            return
        step = int(self.cfg.interval_s * NS_PER_SECOND)
        stamp = now - now % step
        self._next_ns = stamp + step
        self.emit(stamp)

    def emit(self, ts_ns: int) -> None:
        """Build, analyse, publish (and at the persist cadence, store) every chain at ``ts_ns``."""
        ctx = self._ctx
        assert ctx is not None and self.assembler is not None and self.matrix is not None
        every = int(self.cfg.persist_interval_s * NS_PER_SECOND)
        if self._next_persist_ns < 0:  # start (or restart) on the grid: 09:15:00, :30, ...
            self._next_persist_ns = -(-ts_ns // every) * every
        persist = ts_ns >= self._next_persist_ns
        if persist:
            self._next_persist_ns = ts_ns - ts_ns % every + every
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
        pass
