"""The candle pipeline, columnar and compiled: ticks → 1 s → 60/120/180/300 s candles at millions
of ticks per second.

Two entry points share one numba kernel module (:mod:`mandi.pipeline._fastkernels`):

* :class:`FastCandles` — the **streaming** path. Incremental and stateful across calls, exactly
  the observable behaviour of :class:`~mandi.pipeline.seconds.SecondAggregator` feeding
  :class:`~mandi.pipeline.timeframes.TimeframeBuilder` as :class:`~mandi.pipeline.candles.
  CandlePipeline` composes them: the same candles (1 s, confirmed and forming timeframe candles)
  in the same order, the same per-reason rejections, the same watermark, late and volume rules
  and session-close bucket ends. It takes columns (NumPy arrays) and returns a structured array
  of records (:data:`CANDLE_DTYPE`); :class:`~mandi.model.market.Candle` messages are built only
  when asked (:meth:`FastCandles.to_candles`, :meth:`FastCandles.handle_ticks`).
  :class:`FastCandlePipeline` wraps it with ``CandlePipeline``'s own interface and bus topics.
* :func:`replay_candles` — the **replay** path for backfills and backtests: whole arrays at once,
  only confirmed candles, bit-identical to what the streaming path confirms for the same ticks
  (followed by a flush), in canonical ``(timeframe, bucket, token)`` order.

State lives in NumPy arrays indexed by a dense token index (a hash table in the kernel maps token
ids to it); the session-close table the builder needs is precomputed per day from the calendar,
which the kernel cannot call.

Forming filter: as ``TimeframeBuilder``'s, the answers are kept until
:meth:`FastCandles.refresh_forming_filter`; a token's answers (all its timeframes at once) are
asked at the first step after it gets state — the reference asks each (token, timeframe) when it
first needs it, which gives the same answers unless the subscriptions change in between without
a refresh. :class:`FastCandlePipeline` publishes a batch's candles after computing them (the same
messages in the same order as ``CandlePipeline``, which publishes as it goes).

Both apply the tick policy of :mod:`mandi.pipeline.validate` exactly as the reference does (the
same reasons, in the same order, for the same ticks). On the object path a value that is not an
integer (a float, even an integral one, a string, None) is rejected under its field's reason; the
columns path takes integer arrays only (a float array is a ``TypeError``, never truncated).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Container, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mandi.bus.memory import ConstraintSet, rows_wanted
from mandi.core.calendar import IST_OFFSET_NS, NS_PER_DAY, ExchangeCalendar, calendar
from mandi.model.batches import (
    _EXCHANGE_CODES,
    CANDLE_DTYPE,
    CANDLE_FIELDS,
    CandleBatch,
    TickBatch,
    exchange_code,
    exchange_name,
    records_to_candles,
)
from mandi.model.market import Candle, Tick
from mandi.pipeline import _fastkernels as K
from mandi.pipeline.timeframes import DEFAULT_TIMEFRAMES
from mandi.pipeline.validate import (
    DEFAULT_POLICY,
    INVALID,
    MAX_FIELD,
    TickPolicy,
    is_int,
    other_fields_ok,
)

I64 = NDArray[np.int64]

# candle records, exchange codes and their conversion live with the batch messages (model)
assert len(CANDLE_FIELDS) == K.NOCOL

REASONS: tuple[str, ...] = K.REASONS  # the aggregator's rejection reasons, in counter order
_INVALID_CODES = np.array([r in INVALID for r in REASONS], dtype=bool)

_BAD_TOKEN = -(1 << 63)  # stands for a token id that is not an int (never allowed)
_LO, _HI = -(1 << 63), 1 << 63


def _i64(name: str, values: ArrayLike, n: int | None = None) -> I64:
    a = np.asarray(values)
    if a.dtype != np.int64:
        if a.dtype.kind not in "iub" and not (a.size == 0 and a.dtype.kind == "f"):
            raise TypeError(f"{name} must be integers (paise, ns, shares), got {a.dtype} values")
        a = a.astype(np.int64)
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise ValueError(f"{name} has {len(a)} values, expected {n}")
    return a


def _new_table(size: int) -> I64:
    """An empty token hash table (rows: token id, index; index −1 = empty)."""
    table = np.zeros((size, 2), dtype=np.int64)
    table[:, 1] = -1
    return table


def _shift(table: I64) -> int:
    return 64 - (len(table).bit_length() - 1)


def _as_records(block: I64) -> NDArray[Any]:
    return block.view(CANDLE_DTYPE).reshape(len(block))


class _Columns(NamedTuple):
    token: I64
    ts: I64
    price: I64
    volume: I64
    last_qty: I64
    oi: I64
    fields: I64  # bitwise OR of the other numeric fields, -1 if one is not an int; or empty when
    # every tick's are good (the kernels then skip the per-tick check: see _fields_to_check)
    exchange: I64


def _int_or(x: Any, bad: int) -> int:
    """``x`` if it is an integer that fits int64, else ``bad``."""
    return int(x) if is_int(x) and _LO <= x < _HI else bad


def _column(values: list[Any], bad: int) -> I64:
    """An int64 column; a value that is not an integer (or does not fit) becomes ``bad``."""
    try:
        a = np.array(values)
    except (OverflowError, ValueError, TypeError):
        a = np.zeros(0, dtype=object)
    if a.dtype == np.int64 and len(a) == len(values):
        return a
    return np.array([_int_or(x, bad) for x in values], dtype=np.int64)


def _quotes_of(t: Tick) -> int:
    """Bid, ask and their quantities OR-ed (−1 unless all are ints in [0, 2**53))."""
    q = (t.bid, t.ask, t.bid_qty, t.ask_qty)
    return int(q[0] | q[1] | q[2] | q[3]) if other_fields_ok(*q) else -1


def _quotes_column(ticks: Sequence[Tick]) -> I64:
    """:func:`_quotes_of` of every tick; one expression per tick when they are all ints (an OR
    of non-negative ints below 2**53 stays below it, a negative one makes it negative)."""
    try:
        a = np.array([t.bid | t.ask | t.bid_qty | t.ask_qty for t in ticks])
        if a.dtype == np.int64 and len(a) == len(ticks):
            return a
    except (TypeError, ValueError, OverflowError):
        pass
    return np.array([_quotes_of(t) for t in ticks], dtype=np.int64)


_NO_FIELDS = np.zeros(0, dtype=np.int64)


def _fields_to_check(*cols: I64) -> I64:
    """The per-tick bitwise OR of the other numeric fields, for the kernels' ``bad_field`` check
    — or an empty array when every value is an int in [0, 2**53) (the usual batch), which spares
    the kernels a column and a test per tick (an OR of such ints stays in range; a negative
    value, −1 for a non-int, makes it negative)."""
    acc = 0
    for c in cols:
        if len(c):
            acc |= int(np.bitwise_or.reduce(c))
    if 0 <= acc < MAX_FIELD:
        return _NO_FIELDS
    out = cols[0]
    for c in cols[1:]:
        out = out | c
    return out


def tick_columns(ticks: Sequence[Tick]) -> _Columns:
    """The columns of a list of :class:`Tick` (see the module doc for non-int fields)."""
    codes = _EXCHANGE_CODES
    ex = [codes.get(t.exchange, -1) for t in ticks]
    if -1 in ex:
        ex = [exchange_code(t.exchange) for t in ticks]
    last_qty = _column([t.last_qty for t in ticks], -1)  # -1: a bad field (below)
    oi = _column([t.oi for t in ticks], -1)
    return _Columns(
        _column([t.token for t in ticks], _BAD_TOKEN),
        _column([t.ts_event for t in ticks], 0),
        _column([t.price for t in ticks], 0),
        _column([t.volume for t in ticks], -1),
        last_qty,
        oi,
        _fields_to_check(last_qty, oi, _quotes_column(ticks)),
        np.array(ex, dtype=np.int64),
    )


def tick_batch(ticks: Sequence[Tick]) -> TickBatch:
    """A :class:`~mandi.model.batches.TickBatch` of :class:`Tick` objects from any feed: a field
    that is not an integer becomes the value the tick policy rejects (see the module doc: a bad
    token, timestamp, price or volume; −1 for a bad quoted field, a ``bad_field``) — never a
    silently truncated float."""
    if not ticks:
        return TickBatch.empty()
    c = tick_columns(ticks)
    return TickBatch.from_columns(
        c.token,
        c.ts,
        c.price,
        exchange=c.exchange,
        ts_init=_column([t.ts_init for t in ticks], 0),
        volume=c.volume,
        last_qty=c.last_qty,
        oi=c.oi,
        bid=_column([t.bid for t in ticks], -1),
        ask=_column([t.ask for t in ticks], -1),
        bid_qty=_column([t.bid_qty for t in ticks], -1),
        ask_qty=_column([t.ask_qty for t in ticks], -1),
    )


def _tf_segment(seg: str) -> int:
    """``"60s"`` → 60 (a topic's timeframe segment); anything else is no timeframe."""
    if not seg.endswith("s"):
        raise ValueError(seg)
    return int(seg[:-1])


class FastCandles:
    """Streaming ticks → 1 s + timeframe candles, columnar and compiled.

    Same constructor arguments and the same observable behaviour as
    ``CandlePipeline(bus, timeframes, cal, known_tokens, close_delay_ns, emit_forming)`` minus
    the bus: every call returns the candles ``CandlePipeline`` would publish for the same
    calls, in the same order, as records of :data:`CANDLE_DTYPE` (a 1 s candle, then what the
    timeframe builder makes of it — confirmed candles, then forming ones —, and the
    timeframe candles confirmed when the watermark moves).

    Parameters
    ----------
    timeframes : iterable of int
        Timeframes in seconds (60, 120, 180, 300 by default).
    cal : ExchangeCalendar, optional
        Session closes (NSE's calendar by default).
    known_tokens : container of int, optional
        When given, a token's first tick must be in it (``unknown_token`` otherwise); it is
        consulted live, as ``SecondAggregator`` does.
    close_delay_ns : int
        Grace before a second is confirmed by the watermark.
    emit_forming : bool
        Emit a forming candle per timeframe for every 1 s candle.
    forming_filter : callable, optional
        ``filter(token, exchange, timeframe) -> bool``: forming candles only for the series it
        wants (``TimeframeBuilder``'s filter); answers are kept until
        :meth:`refresh_forming_filter`.
    policy : TickPolicy, optional
        The tick policy (:mod:`mandi.pipeline.validate`; its defaults when None).

    Attributes
    ----------
    last_rejection : tuple of (str, Tick) or None
        The latest rejected tick and its reason.

    Examples
    --------
    >>> from mandi.core.calendar import parse_ist
    >>> fc = FastCandles((60,), emit_forming=False)
    >>> t0 = parse_ist("2026-04-13 09:15:00")
    >>> recs = fc.process([1, 1, 1], [t0, t0 + 10**8, t0 + 10**9], [100, 105, 101], [5, 9, 12])
    >>> [(int(r["timeframe"]), int(r["high"]), int(r["volume"])) for r in recs]
    [(1, 105, 9)]
    >>> [(int(r["timeframe"]), int(r["close"])) for r in fc.flush()]
    [(1, 101), (60, 101)]
    """

    def __init__(
        self,
        timeframes: Iterable[int] = DEFAULT_TIMEFRAMES,
        cal: ExchangeCalendar | None = None,
        known_tokens: Container[int] | None = None,
        close_delay_ns: int = 0,
        emit_forming: bool = True,
        forming_filter: Callable[[int, str, int], bool] | None = None,
        policy: TickPolicy | None = None,
    ) -> None:
        tfs = tuple(sorted(set(timeframes)))
        if not tfs or any(type(tf) is not int or tf <= 0 for tf in tfs):
            raise ValueError(f"timeframes must be positive seconds, got {tfs}")
        if len(tfs) > 62:
            raise ValueError(f"at most 62 timeframes, got {len(tfs)}")
        if type(close_delay_ns) is not int or not 0 <= close_delay_ns < 86_400 * K.NS:
            raise ValueError(f"close_delay_ns must be an int in [0, 1 day), got {close_delay_ns!r}")
        self.timeframes: tuple[int, ...] = tfs
        self.emit_forming = emit_forming
        self.close_delay_ns = close_delay_ns
        self.policy = p = policy or DEFAULT_POLICY
        self._policy = K.policy_array(
            p.band_bp, p.price_band_min_paise, p.price_band_confirm, p.max_volume, p.max_volume_step
        )
        self._ahead_ns = p.max_ahead_ms * 1_000_000
        self._cal = cal or calendar("NSE")
        self._known = known_tokens
        self._filter = forming_filter
        self._tfs = np.array(tfs, dtype=np.int64)
        self._g = K.new_globals(close_delay_ns, emit_forming, self._policy)
        self._cap = 0
        self._tok = np.zeros((0, K.NTOKCOL), dtype=np.int64)
        self._bk = np.zeros((0, len(tfs), K.NBCOL), dtype=np.int64)
        self._rank = np.zeros(0, dtype=np.int64)
        self._open = np.zeros(0, dtype=np.int64)
        self._tfb = np.zeros(0, dtype=np.int64)
        self._scratch = np.zeros(0, dtype=np.int64)
        self._grow_tokens(64)
        self._table = _new_table(256)
        self._closes = np.zeros(0, dtype=np.int64)
        self._out = np.zeros((1 << 14, K.NOCOL), dtype=np.int64)
        self._stateless: set[int] = set()  # token indices without aggregator state
        # the last kernel call stopped after a token got state in its last tick: that token's
        # filter answer is asked at the start of the next call (only then is the scan needed)
        self._ask_next = False
        self.last_rejection: tuple[str, Tick] | None = None
        # of the last batch, per tick: the reason code of a rejected tick, -1 for an accepted one
        # (None: nothing was rejected); the kernel writes into a reused buffer kept at -1
        self.why: NDArray[np.int64] | None = None
        self._why = np.full(4096, -1, dtype=np.int64)
        self._batch = 0

    # --- counters ---------------------------------------------------------------------------
    @property
    def rejected(self) -> Counter[str]:
        """Rejected ticks per reason (``SecondAggregator.rejected``)."""
        g = self._g
        return Counter({r: int(g[K.G_REJ + i]) for i, r in enumerate(REASONS) if g[K.G_REJ + i]})

    @property
    def frames_rejected(self) -> Counter[str]:
        """Rejected base candles of the timeframe builder (``TimeframeBuilder.rejected``)."""
        n = int(self._g[K.G_TFLATE])
        return Counter({"late": n}) if n else Counter()

    @property
    def watermark_ns(self) -> int:
        return int(self._g[K.G_WM])

    @property
    def ticks(self) -> int:
        """Ticks accepted (``SecondAggregator.ticks``)."""
        return int(self._g[K.G_TICKS])

    @property
    def candles(self) -> int:
        """1 s candles confirmed (``SecondAggregator.candles``)."""
        return int(self._g[K.G_CANDLES])

    @property
    def confirmed(self) -> int:
        """Timeframe candles confirmed (``TimeframeBuilder.confirmed``)."""
        return int(self._g[K.G_CONFIRMED])

    # --- tokens -------------------------------------------------------------------------------
    def _grow_tokens(self, cap: int) -> None:
        old = self._cap
        tok = np.zeros((cap, K.NTOKCOL), dtype=np.int64)
        tok[:, K.T_SEC] = -1
        tok[:, K.T_OPENPOS] = -1
        tok[:, K.T_ALLOWED] = 1 if self._known is None else 0
        tok[:, K.T_WANT] = (1 << len(self.timeframes)) - 1
        tok[:, K.T_WANTOK] = 1 if self._filter is None else 0
        tok[:old] = self._tok
        bk = np.zeros((cap, len(self.timeframes), K.NBCOL), dtype=np.int64)
        bk[:, :, K.B_START] = -1
        bk[:, :, K.B_END] = -1
        bk[:old] = self._bk
        self._tok, self._bk = tok, bk
        for name in ("_rank", "_open", "_tfb", "_scratch"):
            a = np.zeros(cap, dtype=np.int64)
            a[:old] = getattr(self, name)
            setattr(self, name, a)
        self._cap = cap

    def _grow_hash(self) -> None:
        self._table = _new_table(2 * len(self._table))
        n = int(self._g[K.G_NTOK])
        K.rehash(self._tok[:n, K.T_TOKEN].copy(), self._table, _shift(self._table))

    def _map(self, tokens: I64) -> I64:
        idx = np.empty(len(tokens), dtype=np.int64)
        pos, n = 0, len(tokens)
        while True:
            old = int(self._g[K.G_NTOK])
            limit = min(self._cap, len(self._table) // 2)
            table = self._table
            pos = K.map_tokens(tokens, pos, table, _shift(table), idx, self._tok, self._g, limit)
            new = int(self._g[K.G_NTOK])
            if new > old:
                self._registered(old, new)
            if pos == n:
                return idx
            if new >= self._cap:
                self._grow_tokens(2 * self._cap)
            if new >= len(self._table) // 2:
                self._grow_hash()

    def _registered(self, old: int, new: int) -> None:
        tok = self._tok
        if self._known is not None:
            for k in range(old, new):
                t = int(tok[k, K.T_TOKEN])
                tok[k, K.T_ALLOWED] = t != _BAD_TOKEN and t in self._known
                self._stateless.add(k)
        else:
            bad = np.flatnonzero(tok[old:new, K.T_TOKEN] == _BAD_TOKEN)
            tok[old + bad, K.T_ALLOWED] = 0
        order = np.argsort(tok[:new, K.T_TOKEN], kind="stable")
        self._rank[:new] = order
        tok[order, K.T_RANK] = np.arange(new, dtype=np.int64)

    def _index(self, token: int) -> int:
        return int(self._map(np.array([token], dtype=np.int64))[0])

    def _recheck_known(self) -> None:
        """A token without state is checked against the known set at each tick (as the
        reference does): refresh the verdicts, the set may have changed since the last call."""
        if self._known is None or not self._stateless:
            return
        tok, known = self._tok, self._known
        for k in list(self._stateless):
            if tok[k, K.T_HAS]:
                self._stateless.discard(k)
            else:
                t = int(tok[k, K.T_TOKEN])
                tok[k, K.T_ALLOWED] = t != _BAD_TOKEN and t in known

    def set_volume_baseline(self, token: int, cumulative_volume: int) -> None:
        """Restore the last cumulative volume seen for ``token`` (after a restart)."""
        k = self._index(int(token))
        if self._tok[k, K.T_HAS]:
            self._tok[k, K.T_BASE] = self._tok[k, K.T_CUM] = cumulative_volume
        else:
            self._tok[k, K.T_BASEVAL] = cumulative_volume
            self._tok[k, K.T_HASBASE] = 1

    def set_price_reference(self, token: int, price: int) -> None:
        """``SecondAggregator.set_price_reference``: the last good price known from elsewhere."""
        k = self._index(int(token))
        self._tok[k, K.T_REF] = int(price)
        self._tok[k, K.T_PENDN] = 0

    def set_price_limits(self, token: int, lower: int, upper: int) -> None:
        """``SecondAggregator.set_price_limits``: circuit limits in paise (0 = unknown)."""
        k = self._index(int(token))
        self._tok[k, K.T_LIMLO] = int(lower)
        self._tok[k, K.T_LIMHI] = int(upper)
        self._g[K.G_LIMITS] = 1

    # --- the forming filter ---------------------------------------------------------------------
    def refresh_forming_filter(self) -> None:
        """Forget the filter's answers (the set of interested consumers changed)."""
        if self._filter is None:
            return
        n = int(self._g[K.G_NTOK])
        self._tok[:n, K.T_WANTOK] = 0
        self._ask_filter()

    def _ask_filter(self, exchange: str | None = None, k: int | None = None) -> None:
        """Filter answers for every token with state or a series and none yet (``exchange``
        for token index ``k`` whose series is about to start from a stored candle)."""
        if self._filter is None:
            return
        n = int(self._g[K.G_NTOK])
        tok = self._tok
        todo = np.flatnonzero(
            (tok[:n, K.T_WANTOK] == 0) & ((tok[:n, K.T_HAS] != 0) | (tok[:n, K.T_TFSEEN] != 0))
        ).tolist()
        if k is not None and not tok[k, K.T_WANTOK] and k not in todo:
            todo.append(k)
        for i in todo:
            if tok[i, K.T_TFSEEN]:
                ex = exchange_name(int(tok[i, K.T_TFEXCH]))
            elif i == k and exchange is not None:
                ex = exchange
            else:
                ex = exchange_name(int(tok[i, K.T_EXCH]))
            token = int(tok[i, K.T_TOKEN])
            bits = 0
            for j, tf in enumerate(self.timeframes):
                if self._filter(token, ex, tf):
                    bits |= 1 << j
            tok[i, K.T_WANT] = bits
            tok[i, K.T_WANTOK] = 1

    # --- the session-close table --------------------------------------------------------------
    def _cover(self, ts: I64) -> tuple[int, int] | None:
        span = _span(ts)
        if span is not None:
            lo, hi = span
            self._cover_days(
                (lo + IST_OFFSET_NS) // NS_PER_DAY - 1, (hi + IST_OFFSET_NS) // NS_PER_DAY
            )
        return span

    def _cover_days(self, first: int, last: int) -> None:
        day0, have = int(self._g[K.G_DAY0]), len(self._closes)
        if have and day0 <= first and last < day0 + have:
            return
        lo, hi = (first, last) if not have else (min(first, day0), max(last, day0 + have - 1))
        table = np.empty(hi - lo + 1, dtype=np.int64)
        epoch = dt.date(1970, 1, 1)
        for d in range(lo, hi + 1):
            if have and day0 <= d < day0 + have:
                table[d - lo] = self._closes[d - day0]
            else:
                s = self._cal.session(epoch + dt.timedelta(days=d))
                table[d - lo] = K.NO_SESSION if s is None else s.close_ns
        self._closes = table
        self._g[K.G_DAY0] = lo

    # --- output -------------------------------------------------------------------------------
    def _need(self, extra_seconds: int) -> int:
        """Records the next kernel step may write: ``extra_seconds`` 1 s candles plus every open
        one, each with its timeframe candles, and a full timeframe advance."""
        ntf = len(self.timeframes)
        per = 1 + ntf * (2 if self.emit_forming else 1)
        ntok = int(self._g[K.G_NTOK])
        return (extra_seconds + int(self._g[K.G_NOPEN])) * per + ntok * ntf + 16

    def _room(self, records: int) -> None:
        if len(self._out) < records:
            size = len(self._out)
            while size < records:
                size *= 2
            self._out = np.zeros((size, K.NOCOL), dtype=np.int64)

    def _state(self) -> tuple[Any, ...]:
        return (
            self._tok,
            self._bk,
            self._g,
            self._tfs,
            self._closes,
            self._rank,
            self._open,
            self._tfb,
            self._scratch,
            self._out,
        )

    def _take_raw(self) -> I64:
        n = int(self._g[K.G_NOUT])
        self._g[K.G_NOUT] = 0
        return self._out[:n]

    def _take(self, copy: bool) -> NDArray[Any]:
        block = self._take_raw()
        return _as_records(block.copy() if copy else block)

    # --- ticks --------------------------------------------------------------------------------
    def process(
        self,
        token: ArrayLike,
        ts_event: ArrayLike,
        price: ArrayLike,
        volume: ArrayLike,
        last_qty: ArrayLike | None = None,
        oi: ArrayLike | None = None,
        exchange: str | ArrayLike = "NSE",
        *,
        copy: bool = True,
        now_ns: int | None = None,
    ) -> NDArray[Any]:
        """Apply a batch of ticks given as columns; return the candles they produce.

        Parameters
        ----------
        token, ts_event, price, volume, last_qty, oi : array_like of int
            One value per tick, as the fields of :class:`~mandi.model.market.Tick` (``volume``
            cumulative for the day; ``last_qty`` and ``oi`` default to 0).
        exchange : str or array_like of int
            The exchange of every tick, or one :func:`exchange_code` per tick.
        copy : bool
            ``False`` returns a view of an internal buffer, valid until the next call.
        now_ns : int, optional
            The feed's clock: a tick stamped more than ``policy.max_ahead_ms`` after it is
            ``future_timestamp``.

        Returns
        -------
        ndarray of CANDLE_DTYPE
            1 s candles, confirmed and (``emit_forming``) forming timeframe candles, in the
            order ``CandlePipeline`` publishes them.
        """
        tokens = _i64("token", token)
        n = len(tokens)
        ts = _i64("ts_event", ts_event, n)
        px = _i64("price", price, n)
        vol = _i64("volume", volume, n)
        lq = np.zeros(n, dtype=np.int64) if last_qty is None else _i64("last_qty", last_qty, n)
        oi_ = np.zeros(n, dtype=np.int64) if oi is None else _i64("oi", oi, n)
        if isinstance(exchange, str):
            ex = np.array([exchange_code(exchange)], dtype=np.int64)
        else:
            ex = _i64("exchange", exchange, n)
        cols = _Columns(tokens, ts, px, vol, lq, oi_, _fields_to_check(lq, oi_), ex)
        return self._run(cols, None, copy, now_ns)

    def _run(
        self,
        cols: _Columns,
        ticks: Sequence[Tick] | None,
        copy: bool,
        now_ns: int | None = None,
    ) -> NDArray[Any]:
        n = len(cols.token)
        idx = self._map(cols.token)
        self._recheck_known()
        if self._ask_next:
            self._ask_filter()
            self._ask_next = False
        self._cover(cols.ts)
        g = self._g
        g[K.G_TSLIMIT] = K.BIG if now_ns is None else min(int(now_ns) + self._ahead_ns, K.BIG)
        rejected = int(g[K.G_REJ : K.G_REJ + K.NREASONS].sum())
        if len(self._why) < n:
            self._why = np.full(max(n, 2 * len(self._why)), -1, dtype=np.int64)
        why = self._why[:n]
        self._g[K.G_NOUT] = 0
        self._room(max(1 << 14, 2 * self._need(1)))
        chunks: list[I64] = []
        pos = 0
        while True:
            pos = K.process(
                idx,
                cols.ts,
                cols.price,
                cols.volume,
                cols.last_qty,
                cols.oi,
                cols.fields,
                cols.exchange,
                why,
                pos,
                *self._state(),
            )
            if pos >= n:
                break
            if self._g[K.G_STOP] == 2:  # a token got state: ask the forming filter
                self._ask_filter()
                continue
            # the buffer is full: keep what it holds, and make it bigger for the next batches
            chunks.append(self._take_raw().copy())
            self._room(min(2 * len(self._out), 1 << 22))
            self._room(2 * self._need(1))
        if self._stateless and self._known is not None:
            self._recheck_known()
        # a token that got state in the last tick is asked at the next step, as the reference
        # asks lazily when it first needs the answer
        self._ask_next = self._filter is not None and int(g[K.G_STOP]) == 2
        self.why, self._batch = None, n
        if int(g[K.G_REJ : K.G_REJ + K.NREASONS].sum()) != rejected:
            self._note_rejection(cols, ticks)
            self.why = why.copy()
            why.fill(-1)
        if chunks:
            chunks.append(self._take_raw())
            return _as_records(np.concatenate(chunks))
        return self._take(copy)

    def _note_rejection(self, cols: _Columns, ticks: Sequence[Tick] | None) -> None:
        i = int(self._g[K.G_LASTREJ_POS])
        reason = REASONS[int(self._g[K.G_LASTREJ_REASON])]
        if ticks is not None:
            self.last_rejection = (reason, ticks[i])
            return
        ex = cols.exchange[0] if len(cols.exchange) == 1 else cols.exchange[i]
        tick = Tick(
            int(cols.token[i]),
            exchange_name(int(ex)),
            int(cols.ts[i]),
            0,
            int(cols.price[i]),
            int(cols.volume[i]),
            int(cols.last_qty[i]),
            int(cols.oi[i]),
        )
        self.last_rejection = (reason, tick)

    def process_ticks(
        self, ticks: Sequence[Tick], *, copy: bool = True, now_ns: int | None = None
    ) -> NDArray[Any]:
        """:meth:`process` for :class:`Tick` objects; returns records."""
        ticks = list(ticks)
        return self._run(tick_columns(ticks), ticks, copy, now_ns)

    def handle_ticks(self, ticks: Iterable[Tick], now_ns: int | None = None) -> list[Candle]:
        """:meth:`process` for :class:`Tick` objects, returning :class:`Candle` messages."""
        ticks = list(ticks)
        if not ticks:
            return []
        return records_to_candles(self._run(tick_columns(ticks), ticks, False, now_ns))

    def handle_tick(self, tick: Tick, now_ns: int | None = None) -> list[Candle]:
        """One tick (``CandlePipeline.handle_tick``); returns the candles it publishes."""
        return self.handle_ticks((tick,), now_ns)

    def valid_mask(self) -> NDArray[np.bool_]:
        """Of the last batch, the ticks whose values are valid (not rejected as one of
        :data:`~mandi.pipeline.validate.INVALID`): what the node stores and publishes."""
        why = self.why
        if why is None:
            return np.ones(self._batch, dtype=bool)
        valid: NDArray[np.bool_] = (why < 0) | ~_INVALID_CODES[np.maximum(why, 0)]
        return valid

    # --- time ---------------------------------------------------------------------------------
    def advance(self, now_ns: int, *, copy: bool = True) -> NDArray[Any]:
        """Time moved to ``now_ns``: confirm what has ended (``CandlePipeline.advance``)."""
        self._ask_filter()
        self._g[K.G_NOUT] = 0
        self._room(self._need(0))
        K.advance(int(now_ns), *self._state())
        return self._take(copy)

    def flush(self, *, copy: bool = True) -> NDArray[Any]:
        """Confirm everything still open (``CandlePipeline.flush``)."""
        self._ask_filter()
        self._g[K.G_NOUT] = 0
        self._room(self._need(0))
        K.flush(*self._state())
        return self._take(copy)

    # --- the timeframe builder alone ---------------------------------------------------------
    def frames_handle_candle(self, c: Candle) -> list[Candle]:
        """``TimeframeBuilder.handle_candle``: feed a base candle straight into the builder (to
        warm it up from stored 1 s candles after a restart)."""
        k = self._index(int(c.token))
        self._ask_filter(c.exchange, k)
        self._cover(np.array([c.bucket], dtype=np.int64))
        self._g[K.G_NOUT] = 0
        self._room(self._need(1))
        K.frames_candle(
            k,
            int(c.bucket),
            int(c.open),
            int(c.high),
            int(c.low),
            int(c.close),
            int(c.volume),
            int(c.oi),
            int(c.ticks),
            exchange_code(c.exchange),
            self._tok,
            self._bk,
            self._g,
            self._tfs,
            self._closes,
            self._tfb,
            self._out,
        )
        return records_to_candles(self._take(False))

    def frames_advance(self, now_ns: int) -> list[Candle]:
        """``TimeframeBuilder.advance``: confirm every bucket ending at or before ``now_ns``."""
        self._g[K.G_NOUT] = 0
        self._room(self._need(0))
        K.frames_advance(int(now_ns), self._tok, self._bk, self._g, self._tfs, self._tfb, self._out)
        return records_to_candles(self._take(False))

    def forming(self, token: int) -> list[Candle]:
        """The current forming candle of every timeframe of ``token``."""
        pos = self._lookup(int(token))
        if pos is None or not self._tok[pos, K.T_TFSEEN]:
            return []
        ex = exchange_name(int(self._tok[pos, K.T_TFEXCH]))
        out = []
        for j, tf in enumerate(self.timeframes):
            b = self._bk[pos, j].tolist()
            if b[K.B_START] >= 0 and not b[K.B_DONE]:
                out.append(
                    Candle(
                        int(token),
                        ex,
                        tf,
                        b[K.B_START],
                        b[K.B_OPEN],
                        b[K.B_HIGH],
                        b[K.B_LOW],
                        b[K.B_CLOSE],
                        b[K.B_VOL],
                        b[K.B_OI],
                        b[K.B_N],
                        False,
                    )
                )
        return out

    def _lookup(self, token: int) -> int | None:
        n = int(self._g[K.G_NTOK])
        hit = np.flatnonzero(self._tok[:n, K.T_TOKEN] == token)
        return int(hit[0]) if len(hit) else None

    # --- messages -----------------------------------------------------------------------------
    @staticmethod
    def to_candles(records: NDArray[Any]) -> list[Candle]:
        """Records as :class:`Candle` messages."""
        return records_to_candles(records)


# --- the replay path ----------------------------------------------------------------------------


class Replay(NamedTuple):
    """What :func:`replay_candles` returns."""

    candles: NDArray[Any]
    """Confirmed candles (:data:`CANDLE_DTYPE`): the 1 s candles, then each timeframe in
    ascending order, each by (bucket, token)."""
    rejected: Counter[str]
    """Rejected ticks per reason, as :attr:`FastCandles.rejected`."""
    frames_rejected: Counter[str]
    """Base candles the timeframe builder refused as late."""
    path: str
    """``"single-pass"`` or ``"streaming"`` (a stream with late or volume-decreasing ticks, a
    close delay, or a timeframe grid that is not monotonic, is replayed exactly through the
    streaming kernel)."""


def _replay_work(ntok: int, ntf: int) -> tuple[I64, ...]:
    """Work space of the replay kernel (it runs without numba's runtime, so allocates none)."""
    bks = np.zeros((ntok, ntf, K.NBCOL), dtype=np.int64)
    bks[:, :, K.B_START] = -1
    gridst = np.zeros((5, ntf), dtype=np.int64)
    gridst[1] = -1
    return (
        np.zeros((ntok, K.NSCOL), dtype=np.int64),
        bks,
        np.zeros((5, ntok), dtype=np.int64),
        np.zeros((ntf, ntok), dtype=np.int64),
        gridst,
    )


def _span(ts: I64) -> tuple[int, int] | None:
    """The first and last valid event time (the fast path's domain), or None."""
    if len(ts) == 0:
        return None
    lo, hi = int(ts.min()), int(ts.max())
    if lo <= 0 or hi >= K.MAX_TS:
        ok = ts[(ts > 0) & (ts < K.MAX_TS)]
        if len(ok) == 0:
            return None
        lo, hi = int(ok.min()), int(ok.max())
    return lo, hi


def _timeframe_rows(span: tuple[int, int] | None, n: int, ntok: int, tfs: tuple[int, ...]) -> int:
    """An upper bound of the (token, bucket) pairs of any timeframe over ``span``."""
    if span is None:
        return 1
    lo, hi = span
    days = (hi - lo) // NS_PER_DAY + 2
    most = 0
    for tf in tfs:
        per_token = days + 1 if tf >= 86_400 else (hi - lo) // (tf * K.NS) + 3 + 2 * days
        most = max(most, per_token)
    return max(1, min(n, ntok * most))


def canonical_order(records: NDArray[Any]) -> NDArray[Any]:
    """Records sorted by (timeframe, bucket, token) — :func:`replay_candles`' order."""
    if len(records) == 0:
        return records
    order = np.lexsort((records["token"], records["bucket"], records["timeframe"]))
    return records[order]


def replay_candles(
    token: ArrayLike,
    ts_event: ArrayLike,
    price: ArrayLike,
    volume: ArrayLike,
    last_qty: ArrayLike | None = None,
    oi: ArrayLike | None = None,
    exchange: str | ArrayLike = "NSE",
    *,
    timeframes: Iterable[int] = DEFAULT_TIMEFRAMES,
    cal: ExchangeCalendar | None = None,
    known_tokens: Container[int] | None = None,
    close_delay_ns: int = 0,
    seconds: bool = True,
    policy: TickPolicy | None = None,
) -> Replay:
    """Every confirmed candle of a whole tick stream at once (backfills, backtests).

    The result is bit-identical to the confirmed candles (``closed == 1``) a fresh
    :class:`FastCandles` with the same settings emits for :meth:`FastCandles.process` of the
    same arrays followed by :meth:`FastCandles.flush` — hence to what ``CandlePipeline``
    publishes — sorted by :func:`canonical_order`. Arguments as :meth:`FastCandles.process` and
    the constructor.

    A clean stream (no late tick, no decreasing cumulative volume; bad ticks are fine) with no
    close delay runs in one compiled pass that emits candles already in order; anything else
    is replayed through the streaming kernel, exactly, more slowly (see :attr:`Replay.path`).
    ``seconds=False`` leaves the 1 s candles out (the timeframes only, for 1-minute-and-up
    backtests); everything else is unchanged.
    """
    fc = FastCandles(timeframes, cal, known_tokens, close_delay_ns, False, policy=policy)
    tokens = _i64("token", token)
    n = len(tokens)
    ts = _i64("ts_event", ts_event, n)
    px = _i64("price", price, n)
    vol = _i64("volume", volume, n)
    lq = np.zeros(n, dtype=np.int64) if last_qty is None else _i64("last_qty", last_qty, n)
    oi_ = np.zeros(n, dtype=np.int64) if oi is None else _i64("oi", oi, n)
    if isinstance(exchange, str):
        ex = np.array([exchange_code(exchange)], dtype=np.int64)
    else:
        ex = _i64("exchange", exchange, n)
    fields = _fields_to_check(lq, oi_)
    if close_delay_ns == 0 and n:
        idx = fc._map(tokens)
        span = fc._cover(ts)
        ntok = int(fc._g[K.G_NTOK])
        counts = np.zeros(K.NCOUNTS, dtype=np.int64)
        counts[K.C_LASTPOS] = -1
        ntf = len(fc.timeframes)
        room = _timeframe_rows(span, n, ntok, fc.timeframes)
        first = n if seconds else 0  # rows for the 1 s candles
        bases = first + room * np.arange(ntf, dtype=np.int64)
        # one buffer for everything; pages are touched only where rows are written
        buf = np.empty((first + room * ntf, K.NOCOL), dtype=np.int64)
        ntf_out = np.zeros(ntf, dtype=np.int64)
        status = K.replay(
            idx,
            ts,
            px,
            vol,
            lq,
            oi_,
            fields,
            ex,
            fc._policy,
            fc._tok[:ntok],
            fc._rank[:ntok].copy(),
            fc._tfs,
            fc._closes,
            int(fc._g[K.G_DAY0]),
            counts,
            buf,
            bases,
            ntf_out,
            *_replay_work(ntok, ntf),
            seconds,
        )
        if status == 0:
            end = int(counts[K.C_N1])
            for j in range(ntf):  # close the gaps: timeframe rows follow the 1 s rows
                m = int(ntf_out[j])
                buf[end : end + m] = buf[bases[j] : bases[j] + m]
                end += m
            out = _as_records(buf[:end])
            if 1 in fc.timeframes:  # the builder's 1 s candles equal the base ones: interleave
                out = canonical_order(out)
            rejected = Counter({r: int(counts[i]) for i, r in enumerate(REASONS) if counts[i]})
            late = int(counts[K.C_TFLATE])
            return Replay(
                out, rejected, Counter({"late": late}) if late else Counter(), "single-pass"
            )
        fc = FastCandles(timeframes, cal, known_tokens, close_delay_ns, False, policy=policy)
    cols = _Columns(tokens, ts, px, vol, lq, oi_, fields, ex)
    out = canonical_order(np.concatenate([fc._run(cols, None, True), fc.flush()]))
    if not seconds:
        one = out["timeframe"] == 1
        if 1 in fc.timeframes:  # the builder's 1 s candles: each is there twice, identical
            one[np.flatnonzero(one)[::2]] = False
        out = out[~one]
    return Replay(out, fc.rejected, fc.frames_rejected, "streaming")


# --- CandlePipeline's interface -----------------------------------------------------------------


class _SecondsView:
    """What ``CandlePipeline.seconds`` offers, over a :class:`FastCandles`."""

    def __init__(self, core: FastCandles) -> None:
        self._core = core

    @property
    def rejected(self) -> Counter[str]:
        return self._core.rejected

    @property
    def last_rejection(self) -> tuple[str, Tick] | None:
        return self._core.last_rejection

    @property
    def watermark_ns(self) -> int:
        return self._core.watermark_ns

    @property
    def ticks(self) -> int:
        return self._core.ticks

    @property
    def candles(self) -> int:
        return self._core.candles

    def set_volume_baseline(self, token: int, cumulative_volume: int) -> None:
        self._core.set_volume_baseline(token, cumulative_volume)

    def set_price_reference(self, token: int, price: int) -> None:
        self._core.set_price_reference(token, price)

    def set_price_limits(self, token: int, lower: int, upper: int) -> None:
        self._core.set_price_limits(token, lower, upper)


class _FramesView:
    """What ``CandlePipeline.frames`` offers, over a :class:`FastCandles`."""

    def __init__(self, core: FastCandles) -> None:
        self._core = core
        self.timeframes = core.timeframes
        self.emit_forming = core.emit_forming

    @property
    def rejected(self) -> Counter[str]:
        return self._core.frames_rejected

    @property
    def confirmed(self) -> int:
        return self._core.confirmed

    def handle_candle(self, c: Candle) -> list[Candle]:
        return self._core.frames_handle_candle(c)

    def advance(self, now_ns: int) -> list[Candle]:
        return self._core.frames_advance(now_ns)

    def flush(self) -> list[Candle]:
        return self._core.frames_advance(K.FAR)

    def forming(self, token: int) -> list[Candle]:
        return self._core.forming(token)


class FastCandlePipeline:
    """A drop-in for :class:`~mandi.pipeline.candles.CandlePipeline` on :class:`FastCandles`.

    Same constructor, methods (``handle_tick``, ``handle_ticks``, ``advance``, ``flush``),
    topics and publication order; ``seconds`` and ``frames`` expose what the node reads
    (``rejected``, ``last_rejection``, ``set_volume_baseline``, ``handle_candle`` ...).
    ``handle_ticks`` converts a whole batch to columns at once — give it batches, not single
    ticks, for speed. :meth:`handle_columns` takes columns directly.
    """

    def __init__(
        self,
        bus: Any,
        timeframes: Iterable[int] = DEFAULT_TIMEFRAMES,
        cal: ExchangeCalendar | None = None,
        known_tokens: Container[int] | None = None,
        close_delay_ns: int = 0,
        emit_forming: bool = True,
        policy: TickPolicy | None = None,
    ) -> None:
        self.bus = bus
        self.core = FastCandles(
            timeframes,
            cal,
            known_tokens,
            close_delay_ns,
            emit_forming,
            self._has_forming_subscriber,
            policy,
        )
        self.seconds = _SecondsView(self.core)
        self.frames = _FramesView(self.core)
        self._bus_version = bus.version
        #: candles of advance/flush go out as batches (the columnar node) or as objects
        self.batches = False
        self._followed_version = -1
        self._followed = np.zeros(0, dtype=np.int64)
        self._forming_version = -1
        self._forming = ConstraintSet([])

    def _has_forming_subscriber(self, token: int, exchange: str, tf: int) -> bool:
        # = has_subscribers(f"pub:candle:{tf}s:{exchange}:{token}") without resolving a new
        # topic against every pattern (~50 µs): tokens first seen are asked in the step that
        # closes a minute, before any strategy gets its candle
        if self._forming_version != self.bus.version:
            self._forming_version = self.bus.version
            self._forming = ConstraintSet(self.bus.interested(("pub", "candle"), 3))
        return (f"{tf}s", exchange, str(token)) in self._forming

    def _check_subscriptions(self) -> None:
        if self.bus.version != self._bus_version:  # subscriptions changed: re-ask the filter
            self._bus_version = self.bus.version
            self.core.refresh_forming_filter()

    def _publish(self, records: NDArray[Any]) -> None:
        publish = self.bus.publish
        for c in records_to_candles(records):
            publish(
                f"{'candle' if c.closed else 'pub:candle'}:{c.timeframe}s:{c.exchange}:{c.token}", c
            )

    def set_price_limits(self, token: int, lower: int, upper: int) -> None:
        """``CandlePipeline.set_price_limits``: circuit limits in paise (0 = unknown)."""
        self.core.set_price_limits(token, lower, upper)

    def handle_tick(self, tick: Tick, now_ns: int | None = None) -> None:
        self._check_subscriptions()
        self._publish(self.core.process_ticks((tick,), copy=False, now_ns=now_ns))

    def handle_ticks(self, ticks: Iterable[Tick], now_ns: int | None = None) -> list[Tick]:
        """``CandlePipeline.handle_ticks``: returns the ticks with valid values."""
        ticks = list(ticks)
        if not ticks:
            return ticks
        self._check_subscriptions()
        self._publish(self.core.process_ticks(ticks, copy=False, now_ns=now_ns))
        if self.core.why is None:  # nothing rejected: the usual case
            return ticks
        return [t for t, ok in zip(ticks, self.core.valid_mask().tolist(), strict=True) if ok]

    def handle_columns(
        self,
        token: ArrayLike,
        ts_event: ArrayLike,
        price: ArrayLike,
        volume: ArrayLike,
        last_qty: ArrayLike | None = None,
        oi: ArrayLike | None = None,
        exchange: str | ArrayLike = "NSE",
        now_ns: int | None = None,
    ) -> None:
        """:meth:`FastCandles.process` on columns, the candles published."""
        self._check_subscriptions()
        self._publish(
            self.core.process(
                token, ts_event, price, volume, last_qty, oi, exchange, copy=False, now_ns=now_ns
            )
        )

    def handle_batch(self, batch: TickBatch, now_ns: int | None = None) -> NDArray[np.bool_] | None:
        """A :class:`~mandi.model.batches.TickBatch` (one call of the kernels, the tick policy
        applied against the feed's clock ``now_ns``): its candles go out as
        :class:`~mandi.model.batches.CandleBatch` es on ``batch:candle``, a :class:`Candle` only
        for a topic somebody subscribed to with a handler (:meth:`publish_batch`). Returns None
        when the policy kept every tick (the usual batch), else the mask of the ticks whose
        values are valid (:meth:`FastCandles.valid_mask`): what the node stores and publishes."""
        if not len(batch):
            return None
        self._check_subscriptions()
        b = batch
        lq, oi = b.last_qty, b.oi
        fields = _fields_to_check(lq, oi, b.bid, b.ask, b.bid_qty, b.ask_qty)
        cols = _Columns(b.token, b.ts_event, b.price, b.volume, lq, oi, fields, b.exchange)
        core = self.core
        self.publish_batch(core._run(cols, None, False, now_ns))
        return None if core.why is None else core.valid_mask()

    def publish_batch(self, records: NDArray[Any]) -> None:
        """Candle records out as batches and, for the topics with a handler, as objects: each
        wanted candle is published after the batch that holds it (so batch readers — the
        indicators, the store — have seen it first) and before the candles after it. The batch's
        records are a view, valid during the call: a reader that keeps them copies them."""
        n = len(records)
        if not n:
            return
        bus = self.bus
        confirmed = bus.wanted(("candle",), 3)
        forming = bus.wanted(("pub", "candle"), 3)
        if not confirmed and not forming:
            bus.publish(CandleBatch.topic, CandleBatch(records))
            return
        cols: list[tuple[np.ndarray, Callable[[str], Any]]] = [
            (records["timeframe"], _tf_segment),
            (records["exchange"], _EXCHANGE_CODES.__getitem__),
            (records["token"], int),
        ]
        closed = records["closed"] == 1
        want = np.zeros(n, dtype=bool)
        for cons, which in ((confirmed, closed), (forming, ~closed)):
            if cons:
                m = rows_wanted(cons, cols)
                want |= which if m is None else (m & which)
        if want.any():  # somebody waits for a candle of this step: what is followed goes first
            records, want = self._followed_first(records, want)
        lo = 0
        for w in np.flatnonzero(want).tolist():
            bus.publish(CandleBatch.topic, CandleBatch(records[lo : w + 1]))
            (c,) = records_to_candles(records[w : w + 1])
            bus.publish(
                f"{'candle' if c.closed else 'pub:candle'}:{c.timeframe}s:{c.exchange}:{c.token}", c
            )
            lo = w + 1
        if lo < n:
            bus.publish(CandleBatch.topic, CandleBatch(records[lo:]))

    def followed_tokens(self) -> NDArray[np.int64]:
        """The tokens somebody follows by name: a handler on ``candle:…:{token}``,
        ``pub:candle:…:{token}`` or ``tick:{exchange}:{token}`` (a strategy's instruments;
        ``candle:>`` names none). Sorted; cached until the subscriptions change."""
        bus = self.bus
        if self._followed_version != bus.version:
            named: set[int] = set()
            for family, variable in ((("candle",), 3), (("pub", "candle"), 3), (("tick",), 2)):
                for c in bus.wanted(family, variable):
                    token = c[-1]
                    if token is not None and token.isdigit():
                        named.add(int(token))
            self._followed = np.array(sorted(named), dtype=np.int64)
            self._followed_version = bus.version
        return self._followed

    def _followed_first(
        self, records: NDArray[Any], want: NDArray[np.bool_]
    ) -> tuple[NDArray[Any], NDArray[np.bool_]]:
        """``records`` (and the mask ``want`` over them) with the rows of the followed tokens
        (:meth:`followed_tokens`) first, each part in its own order: a strategy's candles, and
        with them its indicator values, go out before the rest of the market's in the same
        step, so its order leaves before the market-wide work. Every series keeps its own order
        (a series is one token), which is all a reader of a series sees; the rows of different
        tokens carry nothing between them."""
        followed = self.followed_tokens()
        if not len(followed):
            return records, want
        first = np.isin(records["token"], followed)
        lead = np.flatnonzero(first)
        k = len(lead)
        if k == 0 or k == len(records) or lead[-1] == k - 1:  # none, all, or already leading
            return records, want
        order = np.concatenate((lead, np.flatnonzero(~first)))
        return records.take(order), want[order]

    def advance(self, now_ns: int) -> None:
        self._check_subscriptions()  # closing seconds build forming candles too
        records = self.core.advance(now_ns, copy=False)
        if self.batches:
            self.publish_batch(records)
        else:
            self._publish(records)

    def flush(self) -> None:
        self._check_subscriptions()
        records = self.core.flush(copy=False)
        if self.batches:
            self.publish_batch(records)
        else:
            self._publish(records)
