"""The option-chain layer of ``mandi run``.

Ticks of option contracts and underlyings → :class:`~mandi.pipeline.chains.ChainAssembler` →
every ``interval_s`` of exchange time one :class:`ChainSnapshot` per (underlying, expiry) →
:class:`~mandi.options.chain.ChainMatrix` (IV, Greeks, OI windows, PCR, max pain) → the bus:
``chain:{underlying}:{expiry}`` (the snapshot) and ``analytics:{underlying}:{expiry}`` (its
:class:`~mandi.options.chain.ChainAnalytics`). Snapshots are persisted every
``persist_interval_s`` (the seed's 30 s) into ``option_chain_snapshots`` with
``exchange_metadata``; on start, today's stored snapshots are replayed into the matrix (without
notifying anybody) so the 3–30 minute OI windows are warm at once.
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
    atm_paise,
    load_snapshots,
    metadata_row,
    snapshot_rows,
    today_start_ns,
)
from mandi.stores.sqlite import connect

if TYPE_CHECKING:
    from mandi.config import ChainsConfig
    from mandi.services.node import MarketNode

log = logging.getLogger(__name__)


def chain_topic(prefix: str, underlying: str, expiry: Any) -> str:
    return f"{prefix}:{underlying}:{expiry.isoformat()}"


class ChainLayer:
    """Plugs the chain assembler and matrix into a :class:`MarketNode`."""

    name = "chains"

    def __init__(self, cfg: ChainsConfig) -> None:
        self.cfg = cfg
        self.matrix: ChainMatrix | None = None
        self.assembler: ChainAssembler | None = None
        self._node: MarketNode | None = None
        self._next_ns = 0
        self._next_persist_ns = 0
        self._pending: list[tuple[ChainSnapshot, ChainAnalytics | None]] = []
        self.snapshots = 0
        self.errors = 0

    def attach(self, node: MarketNode) -> None:
        self._node = node
        rate = self.cfg.rate
        if rate is None:  # the simulator prices at its own rate; real chains use NSE's 10 %
            from mandi.feeds.sim import RISK_FREE_RATE

            rate = RISK_FREE_RATE if node.feed is not None and node.feed.name == "sim" else 0.10
        self.matrix = ChainMatrix(
            ChainMatrixConfig(
                strikes_each_side=self.cfg.strikes_each_side,
                rate=rate,
                diff_pos_threshold=self.cfg.diff_pos_threshold,
                diff_neg_threshold=self.cfg.diff_neg_threshold,
            )
        )
        self.assembler = ChainAssembler(node.master, source=node.feed.name if node.feed else "")
        node.writer.statements["option_chain_snapshots"] = SNAPSHOT_SQL
        node.writer.statements["exchange_metadata"] = METADATA_SQL
        if node.feed is not None and hasattr(node.feed, "on_snapshot"):
            # a source of whole chains (NSE's API): its snapshots, not ticks, feed the matrix
            node.feed.on_snapshot = self.handle_snapshot
        else:
            node.bus.subscribe("tick:>", self.handle_tick, name="chains.ticks")
        self._warm(node)

    def _warm(self, node: MarketNode) -> None:
        assert self.matrix is not None
        con = connect(node.cfg.store.db)
        try:
            from mandi.stores.history import last_chain_timestamp

            last = last_chain_timestamp(con)
            if last is None:
                return
            snaps = load_snapshots(con, today_start_ns(last))
        finally:
            con.close()
        for s in snaps:
            self.matrix.process_option_chain(s.underlying, s, notify=False)
        if snaps:
            log.info("chains warm: %d stored snapshots replayed into the OI windows", len(snaps))

    def handle_tick(self, topic: str, tick: Tick) -> None:
        assert self.assembler is not None
        self.assembler.handle_tick(tick)

    def after_batch(self) -> None:
        node = self._node
        if node is None or self.assembler is None or hasattr(node.feed, "on_snapshot"):
            return
        if self.assembler is not None and len(node.master) != getattr(self, "_known", 0):
            self._known = len(node.master)  # a new simulated day brought new contracts
            self.assembler.add_instruments(node.master)
        now = node.stats.exchange_time_ns
        if now < self._next_ns:
            return
        step = int(self.cfg.interval_s * NS_PER_SECOND)
        stamp = now - now % step
        self._next_ns = stamp + step
        self.emit(stamp)

    def emit(self, ts_ns: int) -> None:
        """Build, analyse, publish (and at the persist cadence, store) every chain at ``ts_ns``."""
        node = self._node
        assert node is not None and self.assembler is not None and self.matrix is not None
        persist = ts_ns >= self._next_persist_ns
        if persist:
            self._next_persist_ns = (
                ts_ns
                - ts_ns % int(self.cfg.persist_interval_s * 1e9)
                + int(self.cfg.persist_interval_s * NS_PER_SECOND)
            )
        for snap in self.assembler.snapshots(ts_ns):
            try:
                analytics = self.matrix.process_option_chain(snap.underlying, snap)
            except Exception as e:
                self.errors += 1
                node.event("chain_error", f"{snap.underlying} {snap.expiry}: {e}", "ERROR")
                continue
            self.snapshots += 1
            node.bus.publish(chain_topic("chain", snap.underlying, snap.expiry), snap)
            if analytics is not None:
                node.bus.publish(chain_topic("analytics", snap.underlying, snap.expiry), analytics)
            if persist:
                rows = snapshot_rows(snap, analytics, node.clock.now_ns(), self._ivs(snap))
                node.writer.put("option_chain_snapshots", rows)
                node.writer.put(
                    "exchange_metadata",
                    [metadata_row(snap, atm_paise(analytics), node.clock.now_ns())],
                )

    def handle_snapshot(self, snap: ChainSnapshot) -> None:
        """A whole chain from a polled source: analysed and published like an assembled one,
        and stored every time (as ``mandi chain import`` stores a file)."""
        node = self._node
        assert node is not None and self.matrix is not None
        try:
            analytics = self.matrix.process_option_chain(snap.underlying, snap)
        except Exception as e:
            self.errors += 1
            node.event("chain_error", f"{snap.underlying} {snap.expiry}: {e}", "ERROR")
            return
        self.snapshots += 1
        node.bus.publish(chain_topic("chain", snap.underlying, snap.expiry), snap)
        if analytics is not None:
            node.bus.publish(chain_topic("analytics", snap.underlying, snap.expiry), analytics)
        now = node.clock.now_ns()
        rows = snapshot_rows(snap, analytics, now, self._ivs(snap))
        node.writer.put("option_chain_snapshots", rows)
        node.writer.put("exchange_metadata", [metadata_row(snap, atm_paise(analytics), now)])

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
