"""The option-chain matrix: per (underlying, expiry) a preallocated ring buffer
``(time, channel, strike)`` of float64, fed one :class:`ChainSnapshot` at a time.

Channels (the 23-channel matrix; index constants below, names in :data:`CHANNEL_NAMES`)::

     0 CE_LTP   1 CE_BID   2 CE_ASK   3 CE_VOLUME   4 CE_OI   5 CE_OI_CHANGE
     6 PE_LTP   7 PE_BID   8 PE_ASK   9 PE_VOLUME  10 PE_OI  11 PE_OI_CHANGE
    12 UNDERLYING
    13 CE_IV   14 CE_DELTA   15 CE_GAMMA   16 CE_THETA   17 CE_VEGA
    18 PE_IV   19 PE_DELTA   20 PE_GAMMA   21 PE_THETA   22 PE_VEGA

Units: prices and the underlying in rupees; volume, OI and change in OI in contracts (shares /
lot size, as NSE shows them); IV a decimal; delta per rupee of underlying, gamma per rupee²,
theta rupees per calendar day, vega rupees per vol point. No trade / no quote / a missing
contract is NaN (never 0); why is in :class:`~mandi.options.chain.StrikeStatus`.

Strike window. Each buffer tracks ``2·strikes_each_side + 1`` strikes on a uniform grid of the
chain's strike step centred
on a listed strike. The centre starts at the ATM strike (listed strike nearest the underlying)
and moves to the new ATM as soon as the ATM is ``recentre_strikes`` steps or more away from it
(default 1: the window always follows the underlying). When the window moves, strikes entering it
start with no history at the earlier slots and strikes leaving it keep theirs: every slot
records its own strike grid, and OI windows look a strike up by value, so a strike that left and
comes back within 30 minutes has its OI changes again. Grid strikes the snapshot does not list
are MISSING columns (NaN).

The strike step is a property of the instrument master, not of whatever rows arrived first: it
is ``strike_step`` when configured, else the most common spacing of the expiry's listed strikes
(:meth:`ChainMatrix.set_listed_strikes`, from the master), else — for a chain nobody listed, e.g.
one NSE file — the most common spacing of its first snapshot's strikes. (The first snapshot of a
day can be sparse: at 09:15:00 six of 41 NIFTY strikes have traded, 150 points apart.)

Time comes only from ``snapshot.ts_event``. Snapshots falling in the same
``sample_interval_seconds`` bucket overwrite the newest slot (the latest one wins); a snapshot
older than the newest slot is rejected (counted in ``stats["out_of_order"]``). Memory per
buffer: ``capacity × 23 × width × 8`` bytes (362 × 23 × 41 × 8 ≈ 2.7 MB with the defaults: 30
minutes at 5-second resolution, ±20 strikes; analytics are still computed for every snapshot),
reserved at once but paged in slot by slot as the ring fills.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import numpy as np
from numpy.typing import NDArray

from mandi.core.calendar import EXPIRY_TIME, ist_ns
from mandi.core.errors import ConfigError, DataError
from mandi.model.market import ChainSnapshot
from mandi.options._arrays import thread_scope
from mandi.options.chain import _kernels as _k
from mandi.options.chain.analytics import ChainAnalytics, _ratio
from mandi.options.pricing import NS_PER_YEAR

__all__ = [
    "CE_ASK",
    "CE_BID",
    "CE_DELTA",
    "CE_GAMMA",
    "CE_IV",
    "CE_LTP",
    "CE_OI",
    "CE_OI_CHANGE",
    "CE_THETA",
    "CE_VEGA",
    "CE_VOLUME",
    "CHANNEL_NAMES",
    "N_BASE_CHANNELS",
    "N_CHANNELS",
    "PE_ASK",
    "PE_BID",
    "PE_DELTA",
    "PE_GAMMA",
    "PE_IV",
    "PE_LTP",
    "PE_OI",
    "PE_OI_CHANGE",
    "PE_THETA",
    "PE_VEGA",
    "PE_VOLUME",
    "UNDERLYING",
    "ChainBuffer",
    "ChainHistory",
    "ChainMatrix",
    "ChainMatrixConfig",
]

log = logging.getLogger(__name__)

CE_LTP, CE_BID, CE_ASK, CE_VOLUME, CE_OI, CE_OI_CHANGE = range(0, 6)
PE_LTP, PE_BID, PE_ASK, PE_VOLUME, PE_OI, PE_OI_CHANGE = range(6, 12)
UNDERLYING = 12
CE_IV, CE_DELTA, CE_GAMMA, CE_THETA, CE_VEGA = range(13, 18)
PE_IV, PE_DELTA, PE_GAMMA, PE_THETA, PE_VEGA = range(18, 23)
N_BASE_CHANNELS = 13
N_CHANNELS = 23
# fmt: off
CHANNEL_NAMES = (
    "ce_ltp", "ce_bid", "ce_ask", "ce_volume", "ce_oi", "ce_oi_change",
    "pe_ltp", "pe_bid", "pe_ask", "pe_volume", "pe_oi", "pe_oi_change",
    "underlying",
    "ce_iv", "ce_delta", "ce_gamma", "ce_theta", "ce_vega",
    "pe_iv", "pe_delta", "pe_gamma", "pe_theta", "pe_vega",
)
# fmt: on

_NS_PER_MINUTE = 60_000_000_000
_NAN6 = (math.nan,) * 6
_QUOTE_FIELDS = operator.attrgetter("ltp", "bid", "ask", "volume", "oi", "oi_change")
# raw per-row columns: strike, then ltp, bid, ask, volume, oi, oi_change for CE and for PE
_R_STRIKE, _R_CE, _R_PE = 0, 1, 7


class ChainFrameLike(Protocol):
    """A chain given as arrays (``mandi.pipeline.chains.ChainFrame``): a snapshot's header and
    ``raw``, its rows as :func:`_rows_to_array` makes them (sorted by strike, no duplicate)."""

    underlying: str
    exchange: str
    expiry: dt.date
    ts_event: int
    underlying_price: int
    lot_size: int
    source: str
    raw: NDArray[np.float64]


class ChainMatrixConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Configuration of a :class:`ChainMatrix` (values are validated on construction).

    Attributes
    ----------
    strikes_each_side : int
        Strikes tracked on each side of the window centre (window = 2N + 1 strikes).
    history_minutes : float
        Minutes of history the ring must hold (≥ the longest OI window).
    sample_interval_seconds : float
        Resolution of the history: one slot per interval, the last snapshot in it wins (every
        snapshot is still processed and returns fresh analytics). An OI window of w minutes
        compares with the newest slot at or before now − w.
    capacity : int or None
        Ring slots; default ``history_minutes·60 / sample_interval_seconds + 2``.
    rate, dividend_yield : float
        Continuous r and q for IV and Greeks (NSE's convention: r = 10 %, q = 0).
    price_source : {"ltp", "mid"}
        Price the IV is solved from: last price (NSE's convention), or the bid/ask mid when both
        quotes are valid (falling back to LTP).
    oi_windows_minutes : tuple of int
        Look-backs of the OI % change (the seed's 3, 5, 10, 15 and 30 minutes).
    diff_pos_threshold, diff_neg_threshold : float
        Rupees. A side is highlighted +1 when LTP − theoretical > ``diff_pos_threshold`` (the
        option trades rich against the ATM-vol price) and −1 when LTP − theoretical <
        −``diff_neg_threshold`` (cheap). The seed's DIFF_POS_THRESHOLD / DIFF_NEG_THRESHOLD.
    recentre_strikes : int
        Move the window centre to the ATM strike once it is this many strikes away.
    strike_step : float or None
        Grid spacing in rupees; None infers it from the first snapshot of each buffer.
    """

    strikes_each_side: int = 20
    history_minutes: float = 30.0
    sample_interval_seconds: float = 5.0
    capacity: int | None = None
    rate: float = 0.10
    dividend_yield: float = 0.0
    price_source: str = "ltp"
    oi_windows_minutes: tuple[int, ...] = (3, 5, 10, 15, 30)
    diff_pos_threshold: float = 3.0
    diff_neg_threshold: float = 2.0
    recentre_strikes: int = 1
    strike_step: float | None = None

    def __post_init__(self) -> None:
        def bad(key: str, reason: str) -> ConfigError:
            return ConfigError(f"options.chain.{key}", getattr(self, key), reason)

        if self.strikes_each_side < 0:
            raise bad("strikes_each_side", "must be ≥ 0")
        if not self.sample_interval_seconds > 0:
            raise bad("sample_interval_seconds", "must be > 0")
        if not self.oi_windows_minutes or min(self.oi_windows_minutes) <= 0:
            raise bad("oi_windows_minutes", "needs at least one window, all > 0 minutes")
        if self.history_minutes < max(self.oi_windows_minutes):
            raise bad("history_minutes", "must cover the longest OI window")
        if self.capacity is not None and self.capacity < 2:
            raise bad("capacity", "must be ≥ 2")
        if self.price_source not in ("ltp", "mid"):
            raise bad("price_source", "use 'ltp' or 'mid'")
        if self.recentre_strikes < 1:
            raise bad("recentre_strikes", "must be ≥ 1")
        if self.strike_step is not None and not self.strike_step > 0:
            raise bad("strike_step", "must be > 0 rupees")
        if not (math.isfinite(self.rate) and math.isfinite(self.dividend_yield)):
            raise bad("rate", "rate and dividend_yield must be finite")
        if self.diff_pos_threshold < 0 or self.diff_neg_threshold < 0:
            raise bad("diff_pos_threshold", "thresholds are non-negative rupee amounts")

    @property
    def width(self) -> int:
        return 2 * self.strikes_each_side + 1

    @property
    def slots(self) -> int:
        if self.capacity is not None:
            return self.capacity
        return math.ceil(self.history_minutes * 60 / self.sample_interval_seconds) + 2


@dataclass(frozen=True, slots=True)
class ChainHistory:
    """A chronological copy of a buffer: ``times`` (n,) ns, ``data`` (n, 23, width),
    ``strikes`` (n, width) rupees."""

    times: NDArray[np.int64]
    data: NDArray[np.float64]
    strikes: NDArray[np.float64]


class ChainBuffer:
    """The ring of one (underlying, expiry). Slots are written in time order; ``head`` is the
    newest slot, ``count`` how many hold data."""

    __slots__ = (
        "_data",
        "capacity",
        "centre",
        "count",
        "expiry",
        "head",
        "interval_ns",
        "pending",
        "step",
        "strikes",
        "times",
        "underlying",
        "width",
    )

    def __init__(
        self, underlying: str, expiry: dt.date, capacity: int, width: int, interval_ns: int
    ) -> None:
        self.underlying = underlying
        self.expiry = expiry
        self.capacity = capacity
        self.width = width
        self.interval_ns = interval_ns
        # np.empty, not np.full(nan): every slot is written whole (the kernel fills all 23
        # channels, _prepare the strike row) before anything reads it, and only the `count`
        # written slots are ever read. Filling eagerly touched every page of the ring up front
        # (≈ 200 MB and over a second for a 1,500-strike window); now a slot's pages are
        # touched when it is first written (≈ 0.1 ms).
        self._data = np.empty((capacity, N_CHANNELS, width))
        # slots written without their IV and Greek channels (ChainMatrix.stage_frames): the
        # job that completes each, run when the ring is read
        self.pending: dict[int, _Job] = {}
        self.strikes = np.empty((capacity, width))
        self.times = np.zeros(capacity, dtype=np.int64)
        self.head = -1
        self.count = 0
        self.step = math.nan
        self.centre = math.nan

    @property
    def data(self) -> NDArray[np.float64]:
        """The ring ``(slot, channel, strike)``; IV and Greeks of slots written lazily are
        computed first."""
        if self.pending:
            for slot, job in list(self.pending.items()):
                job.complete(self._data[slot])
            self.pending.clear()
        return self._data

    def slot_data(self, slot: int) -> NDArray[np.float64]:
        """One slot ``(channel, strike)`` of the ring, its IV and Greeks computed if pending."""
        job = self.pending.pop(slot, None)
        if job is not None:
            job.complete(self._data[slot])
        return self._data[slot]  # type: ignore[no-any-return]

    def newest_time(self) -> int | None:
        return int(self.times[self.head]) if self.count else None

    def _slot(self, age: int) -> int:
        """Slot index of the entry ``age`` places before the newest (0 = newest)."""
        return (self.head - age) % self.capacity

    def slot_at_or_before(self, ts: int) -> int:
        """The newest slot with time ≤ ``ts``, or −1 (binary search over the ring)."""
        lo, hi = 0, self.count - 1  # ages: 0 newest … count−1 oldest; times fall with age
        if self.count == 0 or self.times[self._slot(hi)] > ts:
            return -1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.times[self._slot(mid)] <= ts:
                hi = mid
            else:
                lo = mid + 1
        return self._slot(lo)

    def advance(self, ts: int) -> int:
        """The slot for a snapshot at ``ts`` (same interval bucket as the newest: reuse it)."""
        if self.count and ts // self.interval_ns == self.times[self.head] // self.interval_ns:
            return self.head
        self.head = (self.head + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)
        return self.head

    def history(self, n: int | None = None) -> ChainHistory:
        k = self.count if n is None else max(0, min(n, self.count))
        order = [(self.head - age) % self.capacity for age in range(k - 1, -1, -1)]
        return ChainHistory(
            self.times[order].copy(), self.data[order].copy(), self.strikes[order].copy()
        )


class _Job:
    """One snapshot between :meth:`ChainMatrix._prepare` and :meth:`ChainMatrix._finish`."""

    __slots__ = (
        "atm",
        "buf",
        "cfg",
        "classes",
        "diff",
        "done",
        "grid",
        "highlight",
        "raw",
        "rows",
        "slot",
        "snapshot",
        "spot",
        "status",
        "step",
        "summary",
        "t",
        "theo",
    )

    def __init__(
        self,
        snapshot: ChainSnapshot | ChainFrameLike,
        buf: ChainBuffer,
        slot: int,
        raw: np.ndarray,
        grid: np.ndarray,
        rows: np.ndarray,
        spot: float,
        t: float,
        atm: float,
        step: float,
    ) -> None:
        self.snapshot, self.buf, self.slot, self.raw = snapshot, buf, slot, raw
        self.grid, self.rows, self.spot, self.t, self.atm, self.step = (
            grid,
            rows,
            spot,
            t,
            atm,
            step,
        )
        self.status = self.theo = self.diff = self.highlight = self.classes = self.summary = (
            np.empty(0)
        )
        self.cfg: ChainMatrixConfig | None = None
        self.done = False

    def complete(self, m: NDArray[np.float64]) -> None:
        """The full kernel (IV, Greeks, theoretical prices, the IV-dependent summary) into
        ``m`` and the job's outputs — what an eager snapshot computes."""
        cfg = self.cfg
        assert cfg is not None
        self.done = True
        _k.chain_kernel(
            self.raw,
            self.rows,
            self.grid,
            self.spot,
            self.t,
            cfg.rate,
            cfg.dividend_yield,
            self.atm,
            cfg.price_source == "mid",
            cfg.diff_pos_threshold,
            cfg.diff_neg_threshold,
            m,
            self.status,
            self.theo,
            self.diff,
            self.highlight,
            self.classes,
            self.summary,
        )


class ChainMatrix:
    """Option-chain matrices of many (underlying, expiry) pairs, and their analytics.

    Parameters
    ----------
    config : ChainMatrixConfig, optional
    on_snapshot : iterable of callables, optional
        Called with each snapshot's :class:`ChainAnalytics` after it is stored (a plain list,
        ``matrix.on_snapshot``; the node publishes it on the bus). A callback's exception is
        logged and counted in ``stats["callback_errors"]``; it never stops ingestion.

    Examples
    --------
    >>> matrix = ChainMatrix(ChainMatrixConfig(strikes_each_side=10))
    >>> matrix.on_snapshot.append(lambda a: print(a.underlying, a.pcr_oi))  # doctest: +SKIP
    >>> analytics = matrix.process_option_chain("NIFTY", snapshot)  # doctest: +SKIP
    """

    def __init__(
        self,
        config: ChainMatrixConfig | None = None,
        on_snapshot: Iterable[Callable[[ChainAnalytics], object]] = (),
    ) -> None:
        self.config = config or ChainMatrixConfig()
        self.on_snapshot: list[Callable[[ChainAnalytics], object]] = list(on_snapshot)
        self.stats: dict[str, int] = {"snapshots": 0, "out_of_order": 0, "callback_errors": 0}
        self._buffers: dict[tuple[str, dt.date], ChainBuffer] = {}
        self._latest: dict[tuple[str, dt.date], ChainAnalytics] = {}
        # the columnar path (stage_frames): per chain the newest frame, its job once it is in
        # the ring, its analytics once asked for
        self._staged: dict[tuple[str, dt.date], list[Any]] = {}
        self._steps: dict[tuple[str, dt.date], float] = {}  # from the listed strikes
        offsets = np.arange(-self.config.strikes_each_side, self.config.strikes_each_side + 1)
        self._offsets = offsets.astype(np.float64)
        self._windows_ns = np.array(self.config.oi_windows_minutes, dtype=np.int64) * _NS_PER_MINUTE
        width = self.config.width
        self._is_call = np.concatenate([np.ones(width, bool), np.zeros(width, bool)])
        self._interval_ns = max(1, round(self.config.sample_interval_seconds * 1e9))

    # --- access --------------------------------------------------------------------------------
    def keys(self) -> list[tuple[str, dt.date]]:
        """(underlying, expiry) of every buffer."""
        for key in list(self._staged):
            self._write_staged(key)
        return list(self._buffers)

    def buffer(self, underlying: str, expiry: dt.date) -> ChainBuffer:
        self._write_staged((underlying, expiry))
        try:
            return self._buffers[(underlying, expiry)]
        except KeyError:
            raise KeyError(f"no chain for {underlying} {expiry}") from None

    def latest(
        self, underlying: str, expiry: dt.date
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The newest ``(23, width)`` matrix and its strikes (views into the ring: copy them to
        keep)."""
        buf = self.buffer(underlying, expiry)
        if not buf.count:
            raise KeyError(f"no snapshot yet for {underlying} {expiry}")
        return buf.slot_data(buf.head), buf.strikes[buf.head]

    def history(self, underlying: str, expiry: dt.date, n: int | None = None) -> ChainHistory:
        """The last ``n`` (default all) slots in time order, as copies."""
        self._write_staged((underlying, expiry))
        return self.buffer(underlying, expiry).history(n)

    def analytics(self, underlying: str, expiry: dt.date) -> ChainAnalytics | None:
        """The analytics of the newest snapshot of that chain, if any."""
        key = (underlying, expiry)
        held = self._staged.get(key)
        if held is not None and held[2] is None:
            self._write_staged(key)
            job = held[1]
            if job is not None:
                held[2] = self._finish(job, notify=False, lazy=True)
        return self._latest.get(key)

    def drop(self, underlying: str, expiry: dt.date) -> None:
        """Forget a chain (e.g. after its expiry) and free its buffer."""
        self._buffers.pop((underlying, expiry), None)
        self._latest.pop((underlying, expiry), None)
        self._staged.pop((underlying, expiry), None)
        self._steps.pop((underlying, expiry), None)

    # --- the columnar path ---------------------------------------------------------------------
    def stage_frames(self, frames: Iterable[ChainFrameLike]) -> None:
        """The chains of one moment, given as arrays (``mandi run``'s columnar path), lazily.

        A frame goes into its ring only when its sampling slot is over (a later frame of the
        chain starts the next slot) or when the chain is read (:meth:`analytics`,
        :meth:`latest`, :meth:`history`, :meth:`buffer`, :meth:`keys`); analytics are made
        only when asked for, and the IV and Greeks of a slot only when the ring is read or a
        field that needs them is used. As the ring keeps the last snapshot of each slot, every
        read equals that of processing each frame as it came with
        :meth:`process_option_chain` (tested) — the window centre then being the newest ATM
        strike whatever came before, which needs ``recentre_strikes == 1`` (refused otherwise).
        A frame older than the chain's newest is rejected (``stats["out_of_order"]``)."""
        if self.config.recentre_strikes != 1:
            raise ConfigError(
                "options.chain.recentre_strikes",
                self.config.recentre_strikes,
                "the lazy path needs 1 (the window follows the newest ATM)",
            )
        interval = self._interval_ns
        for f in frames:
            key = (f.underlying, f.expiry)
            held = self._staged.get(key)
            if held is not None:
                last = held[0].ts_event
                if f.ts_event < last:
                    self.stats["out_of_order"] += 1
                    continue
                if held[1] is None and f.ts_event // interval != last // interval:
                    self._write_staged(key)  # its slot is over: the last frame of it stays
            self._staged[key] = [f, None, None]

    def flush_staged(self) -> None:
        """Write every staged frame into its ring (at shutdown)."""
        for key in list(self._staged):
            self._write_staged(key)

    def _write_staged(self, key: tuple[str, dt.date]) -> None:
        held = self._staged.get(key)
        if held is None or held[1] is not None:
            return
        job = self._prepare(held[0])
        if job is None:
            del self._staged[key]
            return
        _k.base_kernel(
            job.raw,
            job.rows,
            job.grid,
            job.spot,
            job.atm,
            job.buf._data[job.slot],
            job.classes,
            job.summary,
        )
        job.buf.pending[job.slot] = job
        held[1] = job

    def set_listed_strikes(self, underlying: str, expiry: dt.date, strikes: Iterable[int]) -> None:
        """The strikes the instrument master lists for an expiry (paise): the grid's step is
        their most common spacing from now on (unless ``strike_step`` is configured). Call it
        before the first snapshot; a later call moves an existing buffer to the new step."""
        listed = np.unique(np.fromiter(strikes, dtype=np.float64)) / 100.0
        if listed.size < 2:
            return
        step = _infer_step(listed)
        key = (underlying, expiry)
        self._steps[key] = step
        buf = self._buffers.get(key)
        if buf is not None and not self.config.strike_step:
            buf.step = step

    def strike_step(self, underlying: str, expiry: dt.date) -> float | None:
        """The step (rupees) the chain's grid uses or will use, None while unknown."""
        buf = self._buffers.get((underlying, expiry))
        if buf is not None and not math.isnan(buf.step):
            return buf.step
        return self.config.strike_step or self._steps.get((underlying, expiry))

    # --- ingestion -----------------------------------------------------------------------------
    def handle_chain_snapshot(self, snapshot: ChainSnapshot) -> ChainAnalytics | None:
        """Bus entry point: :meth:`process_option_chain` keyed by ``snapshot.underlying``."""
        return self.process_option_chain(snapshot.underlying, snapshot)

    def process_option_chain(
        self, underlying: str, snapshot: ChainSnapshot, *, notify: bool = True
    ) -> ChainAnalytics | None:
        """Store one snapshot in its ring (O(strikes)) and compute its analytics.

        Parameters
        ----------
        underlying : str
            Must equal ``snapshot.underlying`` (the seed's call signature).
        snapshot : ChainSnapshot
        notify : bool, keyword-only
            Call the ``on_snapshot`` callbacks (pass False while replaying history to warm the
            OI windows after a restart).

        Returns
        -------
        ChainAnalytics or None
            None when the snapshot is older than the newest stored one (counted, not stored).

        Raises
        ------
        DataError
            A snapshot of another underlying, or a non-positive lot size.
        """
        if snapshot.underlying != underlying:
            raise DataError(
                f"process_option_chain: underlying {underlying!r} but snapshot.underlying = "
                f"{snapshot.underlying!r}"
            )
        job = self._prepare(snapshot)
        if job is None:
            return None
        cfg = self.config
        _k.chain_kernel(
            job.raw,
            job.rows,
            job.grid,
            job.spot,
            job.t,
            cfg.rate,
            cfg.dividend_yield,
            job.atm,
            cfg.price_source == "mid",
            cfg.diff_pos_threshold,
            cfg.diff_neg_threshold,
            job.buf._data[job.slot],
            job.status,
            job.theo,
            job.diff,
            job.highlight,
            job.classes,
            job.summary,
        )
        return self._finish(job, notify)

    def process_option_chains(
        self, snapshots: Iterable[ChainSnapshot], *, notify: bool = True, threads: int = 0
    ) -> list[ChainAnalytics | None]:
        """Process many snapshots (e.g. every chain of one second) at once.

        The same results as :meth:`process_option_chain` on each in turn, but the IV/Greeks
        kernel runs over all chains in one call, on up to ``threads`` cores (0 = all, 1 = the
        calling thread). Keyed by ``snapshot.underlying``.

        Returns
        -------
        list of ChainAnalytics or None
            One entry per snapshot, in order (None: rejected as out of order).
        """
        out: list[ChainAnalytics | None] = []
        batch: list[ChainSnapshot] = []
        seen: set[tuple[str, dt.date]] = set()
        for snap in snapshots:
            key = (snap.underlying, snap.expiry)
            if key in seen:  # a chain twice in one batch: its first update must land first
                out += self._process_batch(batch, notify, threads)
                batch, seen = [], set()
            batch.append(snap)
            seen.add(key)
        out += self._process_batch(batch, notify, threads)
        return out

    def process_frames(
        self, frames: Sequence[ChainFrameLike], *, notify: bool = True, threads: int = 1
    ) -> list[ChainAnalytics | None]:
        """:meth:`process_option_chains` for chains given as arrays (``ChainFrame`` of
        :mod:`mandi.pipeline.chains`: the snapshot's header attributes and ``raw``, its rows in
        paise and shares as :func:`_rows_to_array` makes them) — no quote objects read or made.
        The same results as processing each frame's snapshot (tested)."""
        out: list[ChainAnalytics | None] = []
        batch: list[ChainFrameLike] = []
        seen: set[tuple[str, dt.date]] = set()
        for f in frames:
            key = (f.underlying, f.expiry)
            if key in seen:
                out += self._process_batch(batch, notify, threads)
                batch, seen = [], set()
            batch.append(f)
            seen.add(key)
        out += self._process_batch(batch, notify, threads)
        return out

    def _process_batch(
        self, snapshots: Sequence[ChainSnapshot | ChainFrameLike], notify: bool, threads: int
    ) -> list[ChainAnalytics | None]:
        jobs = [self._prepare(s) for s in snapshots]
        live = [j for j in jobs if j is not None]
        if live:
            cfg = self.config
            width = cfg.width
            n = len(live)
            offsets = np.zeros(n + 1, dtype=np.int64)
            offsets[1:] = np.cumsum([len(j.raw) for j in live])
            raw = np.concatenate([j.raw for j in live]) if offsets[-1] else np.empty((0, 13))
            rows = np.stack([j.rows for j in live])
            grids = np.stack([j.grid for j in live])
            scalars = np.array([(j.spot, j.t, j.atm) for j in live], dtype=np.float64)
            m = np.empty((n, N_CHANNELS, width))
            status = np.empty((n, 2, width), dtype=np.int8)
            theo = np.empty((n, 2, width))
            diff = np.empty((n, 2, width))
            highlight = np.empty((n, 2, width), dtype=np.int8)
            classes = np.empty((n, 2, width), dtype=np.int8)
            summary = np.empty((n, _k.N_SUMMARY))
            args = (
                raw,
                offsets,
                rows,
                grids,
                scalars,
                cfg.rate,
                cfg.dividend_yield,
                cfg.price_source == "mid",
                cfg.diff_pos_threshold,
                cfg.diff_neg_threshold,
                m,
                status,
                theo,
                diff,
                highlight,
                classes,
                summary,
            )
            if threads != 1 and n > 1:
                with thread_scope(threads):
                    _k.chain_batch_kernel_par(*args)
            else:
                _k.chain_batch_kernel(*args)
            for i, j in enumerate(live):
                j.buf._data[j.slot] = m[i]
                j.status, j.theo, j.diff = status[i], theo[i], diff[i]
                j.highlight, j.classes, j.summary = highlight[i], classes[i], summary[i]
        return [None if j is None else self._finish(j, notify) for j in jobs]

    def _prepare(self, snapshot: ChainSnapshot | ChainFrameLike) -> _Job | None:
        """Validate, extract the rows, place the strike window and claim the ring slot."""
        underlying = snapshot.underlying
        if snapshot.lot_size <= 0:
            raise DataError(f"{underlying} {snapshot.expiry}: lot_size = {snapshot.lot_size}")
        cfg = self.config
        key = (underlying, snapshot.expiry)
        buf = self._buffers.get(key)
        if buf is None:
            buf = ChainBuffer(underlying, snapshot.expiry, cfg.slots, cfg.width, self._interval_ns)
            self._buffers[key] = buf
        ts = snapshot.ts_event
        newest = buf.newest_time()
        if newest is not None and ts < newest:
            self.stats["out_of_order"] += 1
            return None

        if isinstance(snapshot, ChainSnapshot):
            raw = _rows_to_array(snapshot)  # (n, 13): strike, CE×6, PE×6 (paise / shares)
        else:
            raw = snapshot.raw.copy()
        _k.to_rupees_and_contracts(raw, float(snapshot.lot_size))
        strikes = raw[:, _R_STRIKE]
        spot = snapshot.underlying_price / 100.0
        t = (ist_ns(snapshot.expiry, EXPIRY_TIME) - ts) / NS_PER_YEAR

        step = buf.step
        if math.isnan(step):
            listed = self._steps.get(key)
            step = cfg.strike_step or listed or _infer_step(strikes)
            if cfg.strike_step or listed or len(strikes) >= 2:  # keep it once it is known
                buf.step = step
        # no valid underlying price: no ATM, the window stays where it was (or mid-chain)
        atm = _nearest(strikes, spot) if spot > 0 else math.nan
        if math.isfinite(atm) and (
            math.isnan(buf.centre)
            or abs(atm - buf.centre) >= cfg.recentre_strikes * step * (1 - 1e-9)
        ):
            buf.centre = atm
        if math.isfinite(buf.centre):
            centre = buf.centre
        else:
            centre = float(strikes[len(strikes) // 2]) if len(strikes) else 0.0
        grid = centre + step * self._offsets
        slot = buf.advance(ts)
        buf.pending.pop(slot, None)  # the slot is written again
        buf.strikes[slot] = grid
        buf.times[slot] = ts
        job = _Job(
            snapshot, buf, slot, raw, grid, _grid_rows(strikes, grid, step), spot, t, atm, step
        )
        job.cfg = cfg
        (job.status, job.theo, job.diff, job.highlight, job.classes, job.summary) = _outputs(
            cfg.width
        )
        return job

    def _finish(self, job: _Job, notify: bool, lazy: bool = False) -> ChainAnalytics:
        """OI windows against the ring, the analytics record (``lazy``: its IV-dependent fields
        computed on first use), the callbacks."""
        cfg = self.config
        buf, slot, ts = job.buf, job.slot, job.snapshot.ts_event
        m = buf._data[slot]
        found = np.empty(len(self._windows_ns), dtype=np.int64)
        _k.slots_at_or_before(buf.times, buf.head, buf.count, ts - self._windows_ns, found)
        found[found == slot] = -1  # the slot being written is never its own reference
        pct = np.full((len(found), 2, cfg.width), np.nan)
        if (found >= 0).any():
            _k.oi_window_kernel(buf._data, buf.strikes, found, job.grid, job.step, m, pct)
        seconds = np.where(found >= 0, (ts - buf.times[found]) / 1e9, np.nan)
        snapshot = job.snapshot
        if lazy:
            analytics: ChainAnalytics = _LazyAnalytics.make(self, job, pct, seconds)
        else:
            analytics = self._analytics(
                snapshot,
                job.spot,
                job.t,
                job.step,
                job.atm,
                job.grid,
                job.status,
                job.theo,
                job.diff,
                job.highlight,
                job.classes,
                job.summary,
                pct,
                seconds,
                slot,
            )
        self._latest[(snapshot.underlying, snapshot.expiry)] = analytics
        self.stats["snapshots"] += 1
        if notify:
            for callback in self.on_snapshot:
                try:
                    callback(analytics)
                except Exception:
                    self.stats["callback_errors"] += 1
                    log.exception(
                        "on_snapshot callback %r failed for %s %s",
                        callback,
                        snapshot.underlying,
                        snapshot.expiry,
                    )
        return analytics

    # --- internals -----------------------------------------------------------------------------
    def _analytics(
        self,
        snapshot: ChainSnapshot | ChainFrameLike,
        spot: float,
        t: float,
        step: float,
        atm: float,
        grid: np.ndarray,
        status: np.ndarray,
        theo: np.ndarray,
        diff: np.ndarray,
        highlight: np.ndarray,
        classes: np.ndarray,
        summary: np.ndarray,
        pct: np.ndarray,
        seconds: np.ndarray,
        slot: int,
    ) -> ChainAnalytics:
        cfg = self.config
        sm = summary.tolist()
        with np.errstate(invalid="ignore", divide="ignore"):
            moneyness = grid / spot
        return ChainAnalytics(
            underlying=snapshot.underlying,
            exchange=snapshot.exchange,
            expiry=snapshot.expiry,
            ts_event=snapshot.ts_event,
            source=snapshot.source,
            underlying_price=spot,
            time_to_expiry=t,
            rate=cfg.rate,
            strike_step=step,
            atm_strike=atm,
            atm_iv=sm[_k.S_ATM_IV],
            strikes=grid,
            moneyness=moneyness,
            ce_class=classes[0],
            pe_class=classes[1],
            ce_status=status[0],
            pe_status=status[1],
            ce_theoretical=theo[0],
            pe_theoretical=theo[1],
            ce_price_diff=diff[0],
            pe_price_diff=diff[1],
            ce_highlight=highlight[0],
            pe_highlight=highlight[1],
            oi_windows_minutes=tuple(cfg.oi_windows_minutes),
            oi_change_pct=pct,
            oi_window_seconds=seconds,
            total_ce_oi=sm[_k.S_TOTAL_CE_OI],
            total_pe_oi=sm[_k.S_TOTAL_PE_OI],
            total_ce_volume=sm[_k.S_TOTAL_CE_VOL],
            total_pe_volume=sm[_k.S_TOTAL_PE_VOL],
            total_ce_oi_change=sm[_k.S_TOTAL_CE_CHG],
            total_pe_oi_change=sm[_k.S_TOTAL_PE_CHG],
            pcr_oi=_ratio(sm[_k.S_TOTAL_PE_OI], sm[_k.S_TOTAL_CE_OI]),
            pcr_volume=_ratio(sm[_k.S_TOTAL_PE_VOL], sm[_k.S_TOTAL_CE_VOL]),
            pcr_oi_change=_ratio(sm[_k.S_TOTAL_PE_CHG], sm[_k.S_TOTAL_CE_CHG]),
            max_pain=sm[_k.S_MAX_PAIN],
            itm_ce_oi=sm[_k.S_ITM_CE_OI],
            itm_pe_oi=sm[_k.S_ITM_PE_OI],
            otm_ce_oi=sm[_k.S_OTM_CE_OI],
            otm_pe_oi=sm[_k.S_OTM_PE_OI],
            ce_delta_oi=sm[_k.S_CE_DELTA_OI],
            pe_delta_oi=sm[_k.S_PE_DELTA_OI],
            itm_ce_delta_pct=_ratio(100.0 * sm[_k.S_ITM_CE_ABS_DOI], sm[_k.S_CE_ABS_DOI]),
            itm_pe_delta_pct=_ratio(100.0 * sm[_k.S_ITM_PE_ABS_DOI], sm[_k.S_PE_ABS_DOI]),
            diff_pos_threshold=cfg.diff_pos_threshold,
            diff_neg_threshold=cfg.diff_neg_threshold,
            slot=slot,
        )


_IV_FIELDS = frozenset(
    {
        "atm_iv",
        "ce_status",
        "pe_status",
        "ce_theoretical",
        "pe_theoretical",
        "ce_price_diff",
        "pe_price_diff",
        "ce_highlight",
        "pe_highlight",
        "ce_delta_oi",
        "pe_delta_oi",
        "itm_ce_delta_pct",
        "itm_pe_delta_pct",
    }
)


class _LazyAnalytics(ChainAnalytics):
    """:class:`ChainAnalytics` of the columnar path: the fields that need implied volatilities
    (``_IV_FIELDS``) are computed — by the same kernel, so to the same values — on first use."""

    @classmethod
    def make(
        cls, matrix: ChainMatrix, job: _Job, pct: np.ndarray, seconds: np.ndarray
    ) -> _LazyAnalytics:
        base = matrix._analytics(
            job.snapshot, job.spot, job.t, job.step, job.atm, job.grid, job.status, job.theo,
            job.diff, job.highlight, job.classes, job.summary, pct, seconds, job.slot,
        )  # fmt: skip
        obj = object.__new__(cls)
        for f in dataclasses.fields(ChainAnalytics):
            if f.name not in _IV_FIELDS:
                object.__setattr__(obj, f.name, getattr(base, f.name))
        obj.__dict__["_lazy"] = (matrix, job, pct, seconds)
        return obj

    def __getattr__(self, name: str) -> Any:
        lazy = self.__dict__.get("_lazy")
        if name in _IV_FIELDS and lazy is not None:
            self.__dict__["_lazy"] = None
            matrix, job, pct, seconds = lazy
            buf = job.buf
            if buf.pending.get(job.slot) is job:  # its ring slot is completed on the way
                del buf.pending[job.slot]
                job.complete(buf._data[job.slot])
            elif not job.done:
                job.complete(np.empty((N_CHANNELS, matrix.config.width)))
            full = matrix._analytics(
                job.snapshot, job.spot, job.t, job.step, job.atm, job.grid, job.status,
                job.theo, job.diff, job.highlight, job.classes, job.summary, pct, seconds,
                job.slot,
            )  # fmt: skip
            for field_name in _IV_FIELDS:
                object.__setattr__(self, field_name, getattr(full, field_name))
            return object.__getattribute__(self, name)
        raise AttributeError(name)


def _outputs(width: int) -> tuple[np.ndarray, ...]:
    return (
        np.empty((2, width), dtype=np.int8),
        np.empty((2, width)),
        np.empty((2, width)),
        np.empty((2, width), dtype=np.int8),
        np.empty((2, width), dtype=np.int8),
        np.empty(_k.N_SUMMARY),
    )


def _grid_rows(strikes: np.ndarray, grid: np.ndarray, step: float) -> np.ndarray:
    """Row of each grid strike in the (ascending) listed strikes, −1 where it is not listed."""
    if strikes.size == 0:
        return np.full(grid.size, -1, dtype=np.int64)
    idx = np.minimum(np.searchsorted(strikes, grid - 1e-6 * step), strikes.size - 1)
    return np.where(np.abs(strikes[idx] - grid) <= 1e-6 * step, idx, -1).astype(np.int64)


def _rows_to_array(snapshot: ChainSnapshot) -> np.ndarray:
    """(n, 13) float64: strike, then ltp, bid, ask, volume, oi, oi_change of CE and of PE, in
    the snapshot's units; NaN for a missing side. Rows are sorted by strike (duplicates: the
    first wins)."""
    columns = getattr(snapshot.rows, "columns", None)  # ChainRows: the parser's own arrays
    if isinstance(columns, np.ndarray):
        return columns.copy()  # the caller converts units in place
    values: list[float] = []
    extend = values.extend
    nan6 = _NAN6
    fields = _QUOTE_FIELDS  # attrgetter: one C call per side instead of six attribute reads
    for row in snapshot.rows:
        c = row.call
        p = row.put
        values.append(row.strike)
        extend(nan6 if c is None else fields(c))
        extend(nan6 if p is None else fields(p))
    raw = np.array(values, dtype=np.float64).reshape(-1, 13)
    if len(raw) > 1:
        k = raw[:, 0]
        if not (k[1:] > k[:-1]).all():
            order = np.argsort(k, kind="stable")
            raw = raw[order]
            keep = np.concatenate(([True], raw[1:, 0] != raw[:-1, 0]))
            raw = raw[keep]
    return raw


def _infer_step(strikes: np.ndarray) -> float:
    """The most common spacing of the listed strikes (the smaller one on a tie)."""
    diffs = np.diff(strikes)
    diffs = np.round(diffs[diffs > 0], 6)
    if diffs.size == 0:
        return 1.0
    values, counts = np.unique(diffs, return_counts=True)
    return float(values[int(np.argmax(counts))])


def _nearest_index(strikes: np.ndarray, spot: float) -> int:
    if strikes.size == 0 or not math.isfinite(spot):
        return -1
    return int(np.argmin(np.abs(strikes - spot)))  # first = lower strike on a tie


def _nearest(strikes: np.ndarray, spot: float) -> float:
    i = _nearest_index(strikes, spot)
    return float(strikes[i]) if i >= 0 else math.nan
