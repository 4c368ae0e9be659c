"""The node context: what a layer of the platform may use of the node that hosts it.

A *layer* (history, indicators, option chains, trading, backups, the web gateway, notifications,
the Redis bridge, the ClickHouse sink) plugs into a node — ``mandi run``'s
:class:`~mandi.services.node.MarketNode`, or a distributed service's
:class:`~mandi.services.distributed.node.RedisNode` — through a :class:`NodeContext`, never
through the node itself. The context is the whole contract:

=====================  ======================================================================
``cfg``                the frozen :class:`~mandi.config.AppConfig`
``clock``              the node's :class:`~mandi.core.clock.Clock` (wall time in the shell)
``bus``                the in-process :class:`~mandi.bus.memory.MessageBus` (subscribe, publish)
``master``             the :class:`~mandi.model.instruments.InstrumentMaster` (grows when a feed
                       brings new contracts: see :meth:`NodeContext.add_instruments`)
``writer``             the SQLite writer (:class:`RowWriter`: ``register`` a statement, ``put``
                       rows; committed in order on the writer thread)
``stats``              :class:`NodeStats`: ticks in, last prices, exchange time, resume point
``feed``               the :class:`Feed` (name, live, wall_clock), or None (a Redis service)
``event(...)``         publish a :class:`~mandi.model.events.SystemEvent` on ``system:{kind}``
``add_instruments``    register a feed's instruments (the master and the pipeline's known tokens)
``watermark_ns()``     the exchange time the data has reached
``queue_depth()``      tick batches waiting for the kernel (0 without a feed)
``rejected_ticks()``   rejected ticks per reason, all feeds (the tick policy's and the feeds')
``rejections()``       rejected ticks per feed, then per reason
``layer(name)``        another layer of the same node, or None
``columnar``           True: the node publishes tick and candle batches (``batch:tick``,
                       ``batch:candle``) and makes per-object messages only for their
                       subscribers (``mandi run``'s fast engine, docs/architecture.md §3)
=====================  ======================================================================

A layer reads what it needs at :meth:`Layer.attach` and keeps the context, not the node. Storage
failures reach layers as events: ``system:storage_failed`` / ``system:storage_recovered``
(:mod:`mandi.services.storage`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mandi.model.events import SystemEvent
from mandi.model.instruments import AnyInstrument, InstrumentMaster

if TYPE_CHECKING:
    from mandi.bus.memory import MessageBus
    from mandi.config import AppConfig
    from mandi.core.clock import Clock
    from mandi.model.batches import TickBatch
    from mandi.model.market import Tick
    from mandi.stores.writer import WriterStats


class Feed(Protocol):
    """A source of tick batches for the node."""

    @property
    def name(self) -> str: ...

    @property
    def exchange_time_ns(self) -> int: ...

    @property
    def live(self) -> bool:
        """True: a real-time source that must never be slowed (overflow is dropped)."""
        ...

    @property
    def wall_clock(self) -> bool:
        """True: exchange time is wall time (brokers), so buckets close by the clock."""
        ...

    def instruments(self) -> list[AnyInstrument]: ...

    def batches(self) -> AsyncIterator[list[Tick] | TickBatch]: ...


class RowWriter(Protocol):
    """What layers use of the SQLite writer (:class:`~mandi.stores.sqlite.BatchWriter`)."""

    stats: WriterStats

    @property
    def pending_rows(self) -> int: ...

    def register(self, name: str, sql: str) -> None:
        """Name a statement (``INSERT ... VALUES (?, ...)``) for :meth:`put`."""
        ...

    def put(self, name: str, rows: list[tuple[Any, ...]]) -> bool:
        """Queue rows for a named statement; never blocks (False: the queue was full)."""
        ...


class Layer(Protocol):
    """A part of the platform that plugs into a node (indicators, chains, trading, web).

    ``attach`` runs after the feed and the instrument master are known and before the first
    tick: subscribe to the bus, open stores, restore state. ``tasks`` returns long-running
    coroutines (timers, servers). ``close`` runs at shutdown after the kernel has drained, before
    the SQLite writer stops. Two optional hooks: ``after_batch()`` runs after each kernel batch
    (queue the batch's rows), ``busy() -> bool`` holds back a replayable feed while True.
    """

    name: str

    def attach(self, ctx: NodeContext) -> None: ...

    def tasks(self) -> list[Coroutine[Any, Any, Any]]: ...

    def close(self) -> None: ...


@dataclass
class NodeStats:
    """What the node counts as ticks go through it (read by status, the API and metrics)."""

    started_wall: float = field(default_factory=time.monotonic)
    ticks_in: int = 0
    batches: int = 0
    queue_dropped_ticks: int = 0
    candles_confirmed: Counter[int] = field(default_factory=Counter)
    last_price: dict[int, int] = field(default_factory=dict)
    exchange_time_ns: int = 0
    resumed_from_ns: int | None = None
    ticks_per_s: float = 0.0


def _zero() -> int:
    return 0


def _none_rejected() -> Counter[str]:
    return Counter()


def _no_rejections() -> dict[str, dict[str, int]]:
    return {}


class NodeContext:
    """What a layer may use of its node (see the module docstring for the list)."""

    def __init__(
        self,
        cfg: AppConfig,
        clock: Clock,
        bus: MessageBus,
        master: InstrumentMaster,
        writer: RowWriter,
        stats: NodeStats,
        *,
        source: str = "node",
        layers: Sequence[Any] = (),
        known_tokens: set[int] | None = None,
        watermark_ns: Callable[[], int] = _zero,
        queue_depth: Callable[[], int] = _zero,
        rejected_ticks: Callable[[], Counter[str]] = _none_rejected,
        rejections: Callable[[], dict[str, dict[str, int]]] = _no_rejections,
        columnar: bool = False,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.bus = bus
        self.master = master
        self.writer = writer
        self.stats = stats
        self.feed: Feed | None = None
        self.source = source
        #: the node's layers, in order (read-only for layers: use :meth:`layer`)
        self.layers = layers
        self.known_tokens = known_tokens if known_tokens is not None else set()
        self.watermark_ns = watermark_ns
        self.queue_depth = queue_depth
        self.rejected_ticks = rejected_ticks
        self.rejections = rejections
        self.columnar = columnar
        #: the held one-second candles ``(token, since_ns, before_ns, limit)`` → the newest
        #: ``limit`` of the token's in that range, oldest first (``store.second_candles =
        #: "memory"``: they are not in SQLite), or None
        self.second_candles: Callable[[int, int, int, int | None], list[Any]] | None = None

    def event(self, kind: str, message: str, severity: str = "INFO", **data: Any) -> None:
        """Publish a :class:`SystemEvent` on ``system:{kind}`` (stored by the node, shown by
        the API and the dashboard)."""
        self.bus.publish(
            f"system:{kind}",
            SystemEvent(self.clock.now_ns(), kind, message, severity, self.source, data),
        )

    def add_instruments(self, instruments: Iterable[AnyInstrument]) -> int:
        """Register instruments (a feed's, a new simulated day's contracts) before their ticks
        arrive: the master learns the new ones and the pipeline accepts their tokens. Returns
        how many were new."""
        added = 0
        for inst in instruments:
            if inst.token not in self.master:
                self.master.add(inst)
                added += 1
            self.known_tokens.add(inst.token)
        return added

    def layer(self, name: str) -> Any:
        """The node's layer called ``name``, or None."""
        for layer in self.layers:
            if getattr(layer, "name", "") == name:
                return layer
        return None
