"""Columnar batches: many ticks, candles or indicator values in one bus message (DESIGN §11).

A feed batch travels the bus as one :class:`TickBatch` on ``batch:tick``; the candles a batch
produces as one :class:`CandleBatch` on ``batch:candle``; the indicator values they produce as one
:class:`IndicatorValueBatch` on ``batch:ind``. Stages that work per instrument (the chain
assembler, mark-to-market, paper matching, exits, stores) take the batch and use array
operations; single :class:`~mandi.model.market.Tick` / :class:`~mandi.model.market.Candle`
objects are made only for subscribers of the per-object topics (``tick:{exchange}:{token}`` ...),
so their cost scales with what is subscribed, not with the market.

A batch is a thin wrapper around NumPy arrays: cheap to slice (views), never copied on the bus,
and read-only by convention — a consumer that needs to keep rows beyond the call copies them.
The per-object classes stay the reference: ``TickBatch.from_ticks(ts).to_ticks() == ts``.

Exchanges are small integer codes in columns (:func:`exchange_code`, :func:`exchange_name`; new
names get the next code, process-wide).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mandi.model import _columns as K
from mandi.model.market import Candle, IndicatorValue, Tick

I64 = NDArray[np.int64]

# --- exchange codes -----------------------------------------------------------------------------

EXCHANGES: list[str] = ["NSE", "BSE", "NFO", "BFO", "MCX", "CDS"]
_EXCHANGE_CODES: dict[str, int] = {name: i for i, name in enumerate(EXCHANGES)}


def exchange_code(name: str) -> int:
    """The code of an exchange name in columns (new names get the next code)."""
    code = _EXCHANGE_CODES.get(name)
    if code is None:
        code = _EXCHANGE_CODES[name] = len(EXCHANGES)
        EXCHANGES.append(name)
    return code


def exchange_name(code: int) -> str:
    """The exchange name of a code in columns."""
    return EXCHANGES[code]


# --- ticks --------------------------------------------------------------------------------------

#: The fields of a tick, in row order of :attr:`TickBatch.data` (``exchange`` is a code).
TICK_FIELDS: tuple[str, ...] = (
    "token",
    "exchange",
    "ts_event",
    "ts_init",
    "price",
    "volume",
    "last_qty",
    "oi",
    "bid",
    "ask",
    "bid_qty",
    "ask_qty",
)
(
    T_TOKEN,
    T_EXCHANGE,
    T_TS,
    T_INIT,
    T_PRICE,
    T_VOLUME,
    T_LAST_QTY,
    T_OI,
    T_BID,
    T_ASK,
    T_BID_QTY,
    T_ASK_QTY,
) = range(len(TICK_FIELDS))
N_TICK_FIELDS = len(TICK_FIELDS)


def _field(row: int, doc: str) -> Any:
    def get(self: TickBatch) -> I64:
        values: I64 = self.data[row]
        return values

    return property(get, doc=doc)


class TickBatch:
    """Ticks as columns: ``data`` is an ``int64`` array of shape ``(12, n)``, one row per field
    of :data:`TICK_FIELDS` (each row contiguous), one column per tick, in arrival order.

    Examples
    --------
    >>> t = Tick(256265, "NSE", 10, 10, 2_420_000)
    >>> b = TickBatch.from_ticks([t, t])
    >>> len(b), b.price.tolist(), b.to_ticks() == [t, t]
    (2, [2420000, 2420000], True)
    """

    __slots__ = ("data",)
    topic: ClassVar[str] = "batch:tick"

    def __init__(self, data: I64) -> None:
        if data.ndim != 2 or data.shape[0] != N_TICK_FIELDS or data.dtype != np.int64:
            raise ValueError(
                f"a TickBatch is int64 of shape (12, n), got {data.dtype} {data.shape}"
            )
        self.data = data

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def empty(cls) -> TickBatch:
        return cls(np.zeros((N_TICK_FIELDS, 0), dtype=np.int64))

    @classmethod
    def from_ticks(cls, ticks: Sequence[Tick]) -> TickBatch:
        """The columns of :class:`Tick` objects (their fields must be ints, as validated ticks
        are)."""
        if not ticks:
            return cls.empty()
        code = _EXCHANGE_CODES.get
        rows = [
            (
                t.token,
                code(t.exchange, -1),
                t.ts_event,
                t.ts_init,
                t.price,
                t.volume,
                t.last_qty,
                t.oi,
                t.bid,
                t.ask,
                t.bid_qty,
                t.ask_qty,
            )
            for t in ticks
        ]
        data = np.array(rows, dtype=np.int64).T.copy()
        unknown = np.flatnonzero(data[T_EXCHANGE] < 0)
        for i in unknown.tolist():
            data[T_EXCHANGE, i] = exchange_code(ticks[i].exchange)
        return cls(data)

    @classmethod
    def from_columns(
        cls,
        token: ArrayLike,
        ts_event: ArrayLike,
        price: ArrayLike,
        *,
        exchange: str | ArrayLike = "NSE",
        ts_init: ArrayLike | None = None,
        volume: ArrayLike = 0,
        last_qty: ArrayLike = 0,
        oi: ArrayLike = 0,
        bid: ArrayLike = 0,
        ask: ArrayLike = 0,
        bid_qty: ArrayLike = 0,
        ask_qty: ArrayLike = 0,
    ) -> TickBatch:
        """A batch from columns (scalars broadcast; ``ts_init`` defaults to ``ts_event``;
        ``exchange`` a name for all or one code per tick)."""
        tok = np.asarray(token, dtype=np.int64)
        n = tok.shape[0]
        data = np.empty((N_TICK_FIELDS, n), dtype=np.int64)
        data[T_TOKEN] = tok
        data[T_EXCHANGE] = exchange_code(exchange) if isinstance(exchange, str) else exchange
        data[T_TS] = ts_event
        data[T_INIT] = ts_event if ts_init is None else ts_init
        data[T_PRICE] = price
        data[T_VOLUME] = volume
        data[T_LAST_QTY] = last_qty
        data[T_OI] = oi
        data[T_BID] = bid
        data[T_ASK] = ask
        data[T_BID_QTY] = bid_qty
        data[T_ASK_QTY] = ask_qty
        return cls(data)

    @staticmethod
    def concat(batches: Sequence[TickBatch]) -> TickBatch:
        """One batch of several, in order."""
        if len(batches) == 1:
            return batches[0]
        if not batches:
            return TickBatch.empty()
        return TickBatch(np.concatenate([b.data for b in batches], axis=1))

    # --- columns --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.data.shape[1])

    token = _field(T_TOKEN, "Token ids.")
    exchange = _field(T_EXCHANGE, "Exchange codes (:func:`exchange_name`).")
    ts_event = _field(T_TS, "Exchange times, ns UTC.")
    ts_init = _field(T_INIT, "When mandi made each tick, ns UTC.")
    price = _field(T_PRICE, "Last traded prices, paise.")
    volume = _field(T_VOLUME, "Cumulative traded quantities of the day, shares.")
    last_qty = _field(T_LAST_QTY, "Last traded quantities, shares.")
    oi = _field(T_OI, "Open interest, shares.")
    bid = _field(T_BID, "Best bids, paise.")
    ask = _field(T_ASK, "Best asks, paise.")
    bid_qty = _field(T_BID_QTY, "Quantities at the best bid.")
    ask_qty = _field(T_ASK_QTY, "Quantities at the best ask.")

    # --- parts ------------------------------------------------------------------------------------
    def slice(self, lo: int, hi: int) -> TickBatch:
        """Ticks ``lo`` to ``hi`` (a view)."""
        return TickBatch(self.data[:, lo:hi])

    def take(self, index: ArrayLike) -> TickBatch:
        """The ticks at ``index`` (positions or a boolean mask), in that order (a copy)."""
        return TickBatch(np.ascontiguousarray(self.data[:, np.asarray(index)]))

    def second_starts(self) -> list[int]:
        """The first index of every run of ticks in the same event second, and ``len(self)``:
        run ``k`` is ``starts[k]:starts[k + 1]``."""
        n = len(self)
        if n == 0:
            return [0]
        ts = self.data[T_TS]
        if ts[0] // 1_000_000_000 == ts[n - 1] // 1_000_000_000:
            return [0, n]
        out = np.empty(n, dtype=np.int64)
        k = K.second_starts(np.ascontiguousarray(ts), out)
        return [*out[:k].tolist(), n]

    # --- objects ----------------------------------------------------------------------------------
    def tick(self, i: int) -> Tick:
        """Tick ``i`` as a :class:`Tick`."""
        r = self.data[:, i].tolist()
        return Tick(r[0], EXCHANGES[r[1]], *r[2:])

    def to_ticks(self) -> list[Tick]:
        """Every tick as a :class:`Tick`, in order."""
        names = EXCHANGES
        return [
            Tick(tok, names[x], ts, ti, p, v, lq, oi, b, a, bq, aq)
            for tok, x, ts, ti, p, v, lq, oi, b, a, bq, aq in zip(*self.data.tolist(), strict=True)
        ]

    def __repr__(self) -> str:
        return f"TickBatch({len(self)} ticks)"


# --- candles ------------------------------------------------------------------------------------

#: Field names of a candle record, in column order; every field is ``int64``. ``closed`` is 1
#: for a confirmed candle and 0 for a forming one; ``exchange`` is a code (:func:`exchange_name`).
CANDLE_FIELDS: tuple[str, ...] = (
    "token",
    "timeframe",
    "bucket",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "oi",
    "ticks",
    "closed",
    "exchange",
)
CANDLE_DTYPE = np.dtype([(f, np.int64) for f in CANDLE_FIELDS])


def records_to_candles(records: NDArray[Any]) -> list[Candle]:
    """Candle records (:data:`CANDLE_DTYPE`) as :class:`~mandi.model.market.Candle` messages."""
    names = EXCHANGES
    return [
        Candle(t, names[x], tf, b, o, h, lo, c, v, oi, n, cl == 1)
        for t, tf, b, o, h, lo, c, v, oi, n, cl, x in records.tolist()
    ]


class CandleBatch:
    """Candles as a structured array of :data:`CANDLE_DTYPE` records, in publication order (1 s
    candles, confirmed and forming timeframe candles as the pipeline emits them)."""

    __slots__ = ("records",)
    topic: ClassVar[str] = "batch:candle"

    def __init__(self, records: NDArray[Any]) -> None:
        if records.dtype != CANDLE_DTYPE:
            raise ValueError(f"a CandleBatch holds CANDLE_DTYPE records, got {records.dtype}")
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def to_candles(self) -> list[Candle]:
        """Every record as a :class:`Candle`, in order."""
        return records_to_candles(self.records)

    def __repr__(self) -> str:
        return f"CandleBatch({len(self)} candles)"


# --- indicator values ---------------------------------------------------------------------------


class IndicatorValueBatch:
    """The indicator outputs of many candles: ``values[j, k]`` is output ``names[k]`` of candle
    ``j`` (series ``token[j]``, ``exchange[j]`` (a code), ``timeframe[j]``, ``bucket[j]``); NaN
    where the indicator is still warming up (no message would be published for it).
    ``confirmed`` tells values of confirmed candles from previews of forming ones."""

    __slots__ = ("bucket", "confirmed", "exchange", "names", "timeframe", "token", "values")
    topic: ClassVar[str] = "batch:ind"

    def __init__(
        self,
        token: I64,
        exchange: I64,
        timeframe: I64,
        bucket: I64,
        names: tuple[str, ...],
        values: NDArray[np.float64],
        confirmed: bool,
    ) -> None:
        self.token, self.exchange, self.timeframe, self.bucket = token, exchange, timeframe, bucket
        self.names, self.values, self.confirmed = names, values, confirmed

    def __len__(self) -> int:
        return len(self.token)

    def to_values(self) -> list[IndicatorValue]:
        """The :class:`IndicatorValue` messages, in order (candle by candle, names in order,
        NaN left out)."""
        names, ex, confirmed = self.names, EXCHANGES, self.confirmed
        out = []
        for tok, x, tf, b, row in zip(
            self.token.tolist(),
            self.exchange.tolist(),
            self.timeframe.tolist(),
            self.bucket.tolist(),
            self.values.tolist(),
            strict=True,
        ):
            exchange = ex[x]
            for name, v in zip(names, row, strict=True):
                if v == v:
                    out.append(IndicatorValue(tok, exchange, tf, b, name, v, confirmed))
        return out

    def __repr__(self) -> str:
        return f"IndicatorValueBatch({len(self)} candles x {len(self.names)})"


# --- per-token state ----------------------------------------------------------------------------


class TokenIndex:
    """Token id → dense index (0, 1, 2 … in order of first sight), for per-token state kept in
    arrays. A hash table in a compiled kernel: mapping a batch's tokens is one call.

    Examples
    --------
    >>> ix = TokenIndex()
    >>> ix.index(np.array([7, 9, 7])).tolist(), ix.lookup(np.array([9, 5])).tolist()
    ([0, 1, 0], [1, -1])
    """

    def __init__(self, capacity: int = 256) -> None:
        size = 16
        while size < 2 * capacity:
            size *= 2
        self._table = _new_table(size)
        self.ids = np.zeros(max(capacity, 8), dtype=np.int64)  # index → token id
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def index(self, tokens: I64) -> I64:
        """The index of every token (unseen ones get new indices)."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        out = np.empty(len(tokens), dtype=np.int64)
        pos = 0
        while True:
            limit = min(len(self.ids), len(self._table) // 2)
            table = self._table
            r = K.index_tokens(
                tokens[pos:], table, _shift(table), out[pos:], self.ids, self.size, limit, True
            )
            done, self.size = pos + (r >> 32), r & 0xFFFFFFFF
            if done >= len(tokens):
                return out
            pos = done
            self._grow()

    def lookup(self, tokens: I64) -> I64:
        """The index of every token, −1 for one never indexed."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        out = np.empty(len(tokens), dtype=np.int64)
        table = self._table
        K.index_tokens(tokens, table, _shift(table), out, self.ids, self.size, 0, False)
        return out

    def get(self, token: int) -> int:
        """The index of one token, −1 if never indexed."""
        return int(self.lookup(np.array([token], dtype=np.int64))[0])

    def _grow(self) -> None:
        if self.size >= len(self.ids):
            ids = np.zeros(2 * len(self.ids), dtype=np.int64)
            ids[: self.size] = self.ids[: self.size]
            self.ids = ids
        if self.size >= len(self._table) // 2:
            self._table = _new_table(2 * len(self._table))
            K.rehash(self.ids, self.size, self._table, _shift(self._table))


class TokenValues:
    """One ``int64`` value per token (a last cumulative volume, a first OI of the day …) that a
    batch updates in one compiled scatter, the latest value of a token winning.

    Examples
    --------
    >>> v = TokenValues()
    >>> v.set_batch(np.array([5, 6, 5]), np.array([1, 2, 3]), 0, 3)
    >>> v.get(5), v.get(6), v.get(7)
    (3, 2, None)
    """

    def __init__(self, capacity: int = 1024) -> None:
        self.index = TokenIndex(capacity)
        self._slots: dict[int, int] = {}
        self._values = np.zeros(capacity, dtype=np.int64)
        self._seen = np.zeros(capacity, dtype=np.uint8)

    def slots(self, tokens: I64) -> I64:
        before = self.index.size
        slots = self.index.index(tokens)
        size = self.index.size
        if size != before:
            for k, token in enumerate(self.index.ids[before:size].tolist(), before):
                self._slots[token] = k
            if size > len(self._values):
                cap = max(size, 2 * len(self._values))
                self._values = np.concatenate(
                    [self._values, np.zeros(cap - len(self._values), np.int64)]
                )
                self._seen = np.concatenate([self._seen, np.zeros(cap - len(self._seen), np.uint8)])
        return slots

    def get(self, token: int) -> int | None:
        k = self._slots.get(token)
        return int(self._values[k]) if k is not None and self._seen[k] else None

    def set(self, token: int, value: int) -> None:
        k = self._slots.get(token)
        if k is None:
            k = int(self.slots(np.array([token], dtype=np.int64))[0])
        self._values[k] = value
        self._seen[k] = 1

    def set_batch(self, tokens: I64, values: I64, lo: int, hi: int) -> None:
        """``set(tokens[i], values[i])`` for ``lo <= i < hi``, in order."""
        if hi > lo:
            slots = self.slots(tokens[lo:hi])
            K.scatter_column(self._values, slots, values[lo:hi], 0, hi - lo)
            self._seen[slots] = 1

    def clear(self) -> None:
        self._seen[:] = 0


def _new_table(size: int) -> I64:
    table = np.zeros((size, 2), dtype=np.int64)
    table[:, 1] = -1
    return table


def _shift(table: I64) -> int:
    return 64 - (len(table).bit_length() - 1)


__all__ = [
    "CANDLE_DTYPE",
    "CANDLE_FIELDS",
    "EXCHANGES",
    "TICK_FIELDS",
    "CandleBatch",
    "IndicatorValueBatch",
    "TickBatch",
    "TokenIndex",
    "TokenValues",
    "exchange_code",
    "exchange_name",
    "records_to_candles",
]
