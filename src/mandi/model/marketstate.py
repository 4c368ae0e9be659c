"""What the trading kernel knows of the market: the latest tick of every instrument (as columns,
:class:`LatestTicks`) and the latest option-chain snapshot per (underlying, expiry). Strategies
read it (through their context) and execution prices and picks strikes from it; it lives in the
model layer so that neither has to import the other.

Chain snapshots come from the bus (``chain:{underlying}:{expiry}``) when the node publishes them;
otherwise :meth:`MarketState.chain` assembles one from the latest ticks of the chain's contracts
(the instrument master lists them), so strike selection and chain strategies work on any feed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from mandi.model import _columns as K
from mandi.model.batches import EXCHANGES, N_TICK_FIELDS, T_PRICE, T_TS, TickBatch, TokenIndex
from mandi.model.batches import exchange_code as _exchange_code
from mandi.model.instruments import AnyInstrument, InstrumentMaster
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote, Tick


class LatestTicks(Mapping[int, Tick]):
    """The latest tick of every instrument, kept as columns (one array column per token): a
    batch of ticks lands in one compiled scatter, and a :class:`Tick` is built only when one is
    read. A read-only mapping ``token -> Tick`` for everybody else."""

    def __init__(self, capacity: int = 1024) -> None:
        self.index = TokenIndex(capacity)
        self._slots: dict[int, int] = {}  # the index as a dict, for lookups of one token
        self._data = np.zeros((N_TICK_FIELDS, capacity), dtype=np.int64)
        self._seen = np.zeros(capacity, dtype=np.uint8)

    def slots(self, tokens: np.ndarray) -> np.ndarray:
        """The slot of every token (new tokens get one)."""
        before = self.index.size
        slots = self.index.index(tokens)
        if self.index.size != before:
            self._grew(before)
        return slots

    def _grew(self, before: int) -> None:
        size = self.index.size
        for k, token in enumerate(self.index.ids[before:size].tolist(), before):
            self._slots[token] = k
        if size > self._data.shape[1]:
            cap = max(size, 2 * self._data.shape[1])
            data = np.zeros((N_TICK_FIELDS, cap), dtype=np.int64)
            data[:, : self._data.shape[1]] = self._data
            seen = np.zeros(cap, dtype=np.uint8)
            seen[: len(self._seen)] = self._seen
            self._data, self._seen = data, seen

    def put(self, tick: Tick) -> None:
        """``tick`` is now the latest of its instrument."""
        k = self._slots.get(tick.token)
        if k is None:
            k = int(self.slots(np.array([tick.token], dtype=np.int64))[0])
        self._data[:, k] = (
            tick.token,
            _exchange_code(tick.exchange),
            tick.ts_event,
            tick.ts_init,
            tick.price,
            tick.volume,
            tick.last_qty,
            tick.oi,
            tick.bid,
            tick.ask,
            tick.bid_qty,
            tick.ask_qty,
        )
        self._seen[k] = 1

    def put_batch(self, batch: TickBatch, slots: np.ndarray, lo: int, hi: int) -> None:
        """Ticks ``lo`` to ``hi`` of ``batch`` (``slots`` from :meth:`slots`), in order."""
        if hi > lo:
            K.scatter_rows(self._data, slots, batch.data, lo, hi, self._seen)

    def price(self, token: int) -> int:
        """The latest price of ``token`` (0 if none)."""
        k = self._slots.get(token)
        return int(self._data[T_PRICE, k]) if k is not None and self._seen[k] else 0

    def ts(self, token: int) -> int:
        """The exchange time of the latest tick of ``token`` (0 if none)."""
        k = self._slots.get(token)
        return int(self._data[T_TS, k]) if k is not None and self._seen[k] else 0

    def get(self, token: int, default: Any = None) -> Any:
        k = self._slots.get(token)
        if k is None or not self._seen[k]:
            return default
        r = self._data[:, k].tolist()
        return Tick(r[0], EXCHANGES[r[1]], *r[2:])

    def __getitem__(self, token: int) -> Tick:
        t = self.get(token)
        if t is None:
            raise KeyError(token)
        return t  # type: ignore[no-any-return]

    def __contains__(self, token: object) -> bool:
        k = self._slots.get(token)  # type: ignore[call-overload]
        return k is not None and bool(self._seen[k])

    def __iter__(self) -> Iterator[int]:
        seen = self._seen
        return iter([t for t, k in self._slots.items() if seen[k]])

    def __len__(self) -> int:
        return int(self._seen[: self.index.size].sum())


class MarketState:
    def __init__(self, master: InstrumentMaster, chain_max_age_ns: int = 5_000_000_000) -> None:
        self.master = master
        # the latest tick per token; a backtest may substitute any mapping token -> Tick
        self.ticks: Mapping[int, Tick] = LatestTicks()
        self._chains: dict[tuple[str, dt.date], ChainSnapshot] = {}
        self._chain_max_age = chain_max_age_ns
        #: where the newest published chains come from when they are not delivered as
        #: ``chain:...`` messages (the columnar node makes a chain's snapshot only when asked)
        self.chain_source: Callable[[str, dt.date], ChainSnapshot | None] | None = None

    def update(self, tick: Tick) -> None:
        ticks = self.ticks
        if isinstance(ticks, LatestTicks):
            ticks.put(tick)
        else:
            ticks[tick.token] = tick  # type: ignore[index]

    def update_chain(self, snap: ChainSnapshot) -> None:
        self._chains[(snap.underlying, snap.expiry)] = snap

    def ltp(self, token: int) -> int:
        ticks = self.ticks
        if isinstance(ticks, LatestTicks):
            return ticks.price(token)
        t = ticks.get(token)
        return t.price if t is not None else 0

    def last_ns(self, token: int) -> int:
        ticks = self.ticks
        if isinstance(ticks, LatestTicks):
            return ticks.ts(token)
        t = ticks.get(token)
        return t.ts_event if t is not None else 0

    def instrument(self, token: int) -> AnyInstrument | None:
        return self.master.get(token)

    def chain(
        self, underlying: str, expiry: dt.date, now_ns: int, underlying_token: int = 0
    ) -> ChainSnapshot | None:
        """The latest chain of ``underlying``/``expiry``: a published snapshot if recent, else
        one assembled from the latest ticks (None if nothing is known)."""
        source = self.chain_source
        snap = (
            self._chains.get((underlying, expiry)) if source is None else source(underlying, expiry)
        )
        if snap is not None and now_ns - snap.ts_event <= self._chain_max_age:
            return snap
        return self.assemble_chain(underlying, expiry, now_ns, underlying_token) or snap

    def assemble_chain(
        self, underlying: str, expiry: dt.date, now_ns: int, underlying_token: int = 0
    ) -> ChainSnapshot | None:
        options = self.master.options(underlying, expiry)
        if not options:
            return None
        if not underlying_token:
            try:
                underlying_token = self.master.by_symbol(underlying, options[0].exchange).token
            except Exception:
                underlying_token = 0
        spot = self.ltp(underlying_token)
        rows: dict[int, list[OptionQuote | None]] = {}
        for o in options:
            t = self.ticks.get(o.token)
            if t is None:
                continue
            q = OptionQuote(
                t.price,
                t.bid,
                t.ask,
                t.volume,
                t.oi,
                0,
                o.token,
                o.symbol,
                float("nan"),
                t.bid_qty,
                t.ask_qty,
            )
            slot = rows.setdefault(o.strike, [None, None])
            slot[0 if o.option_type == "CE" else 1] = q
        if not rows or spot <= 0:
            return None
        return ChainSnapshot(
            underlying,
            options[0].exchange,
            expiry,
            now_ns,
            spot,
            tuple(ChainRow(k, v[0], v[1]) for k, v in sorted(rows.items())),
            options[0].lot_size,
            "ticks",
        )
