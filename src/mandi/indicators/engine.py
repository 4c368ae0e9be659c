"""The indicator engine: a configured set of incremental indicators per (token, exchange,
timeframe) series.

``process`` takes confirmed candles (mutates, emits confirmed values), ``peek`` forming candles
(read-only previews). A confirmed candle whose bucket is not after the series' last one, or one
with a non-finite field, is rejected and counted in ``rejected`` — never applied, never applied
twice. ``snapshot``/``restore`` carry the whole state together with the position it reflects, so
a warm start is: ``restore(blob)``, replay stored candles with ``bucket > position()[series]``,
then go live — and the results equal an uninterrupted run.

Units: indicators see the candle's numbers as they are — prices in paise, volume in shares — so
price-like outputs (SMA, EMA, bands, ATR, VWAP, SuperTrend, MACD) are float paise and compare
directly with candle prices; RSI, ADX and the stochastic are unit-free.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray

from mandi.core.errors import DataError
from mandi.indicators import _kernels as K
from mandi.indicators._base import Indicator
from mandi.indicators.bank import CloseBank
from mandi.indicators.fused import fusable
from mandi.indicators.specs import (
    DEFAULT_SPECS,
    IndicatorSpecError,
    SeriesKey,
    output_names,
    parse_spec,
)
from mandi.model.market import Candle, IndicatorValue

__all__ = [
    "DEFAULT_SPECS",
    "STATUS_REASONS",
    "IndicatorBatch",
    "IndicatorEngine",
    "IndicatorSpecError",
    "SeriesKey",
    "SnapshotError",
    "output_names",
    "parse_spec",
]


class SnapshotError(DataError):
    """A snapshot cannot be restored into this engine (corrupt, other version or other set)."""


class _SeriesSnapshot(msgspec.Struct, array_like=True):
    token: int
    exchange: str
    timeframe: int
    last_bucket: int
    states: list[list[Any]]


class _EngineSnapshot(msgspec.Struct):
    version: int
    specs: list[str]
    series: list[_SeriesSnapshot]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_EngineSnapshot)

# a step: (update-or-peek, takes the whole candle?, output names, single-valued?)
_Step = tuple[Callable[[Any], Any], bool, tuple[str, ...], bool]


class _Series:
    """State of one series of a set that is not close-only: one object per indicator."""

    __slots__ = ("indicators", "last_bucket", "steps")

    def __init__(self, indicators: list[Indicator]) -> None:
        self.last_bucket: int | None = None
        self.indicators = indicators
        self.steps: list[_Step] = []
        for ind in self.indicators:
            fn = ind.update_candle if ind.multi_input else ind.update  # type: ignore[attr-defined]
            self.steps.append((fn, ind.multi_input, output_names(ind), not ind.outputs))

    def get_state(self) -> list[Any]:
        return [i.get_state() for i in self.indicators]

    def set_state(self, states: list[Any]) -> None:
        if len(states) != len(self.indicators):
            raise ValueError(f"expected {len(self.indicators)} states, got {len(states)}")
        for ind, state in zip(self.indicators, states, strict=True):
            ind.set_state(state)


def _bad_candle(candle: Any) -> str | None:
    """The rejection reason of a candle no indicator can take, else None."""
    c = candle
    if (
        type(c.close) is int
        and type(c.high) is int
        and type(c.low) is int
        and type(c.open) is int
        and type(c.volume) is int
        and type(c.bucket) is int
    ):
        return "negative_volume" if c.volume < 0 else None  # paise: the usual, fast case
    for field in ("close", "high", "low", "open", "volume"):
        v = getattr(candle, field)
        if type(v) is int:
            continue
        try:
            if not math.isfinite(v):
                return "non_finite"
        except TypeError:
            return "non_finite"
    if candle.volume < 0:
        return "negative_volume"
    if type(candle.bucket) is not int:
        return "bad_bucket"
    return None


#: Status codes of :class:`IndicatorBatch` and their rejection reasons (``peek_`` for previews).
STATUS_REASONS: dict[int, str] = {
    1: "not_confirmed",
    2: "stale_bucket",
    3: "non_finite",
    4: "negative_volume",
    5: "bad_bucket",
}
_CODES = {reason: code for code, reason in STATUS_REASONS.items()}


class IndicatorBatch(NamedTuple):
    """The result of :meth:`IndicatorEngine.process_arrays` / :meth:`~IndicatorEngine.
    peek_arrays`: ``values[j, k]`` is output ``names[k]`` for candle ``j`` (NaN while warming up
    or when the candle was not applied); ``status[j]`` is 0 (applied) or a code of
    :data:`STATUS_REASONS`."""

    values: NDArray[np.float64]
    status: NDArray[np.int64]


class IndicatorEngine:
    """A set of incremental indicators for every (token, exchange, timeframe) series.

    Parameters
    ----------
    specs : iterable of str, optional
        Indicator specs (see :func:`parse_spec`); the seed's set :data:`DEFAULT_SPECS`
        (SMA 9/20/50/200, EMA 9/21, RSI 14) when omitted.

    Attributes
    ----------
    specs : tuple of str
        The canonical specs, in output order.
    names : tuple of str
        Every output name, in the order values are emitted for one candle.
    rejected : collections.Counter
        Rejected inputs by reason: ``stale_bucket`` (a confirmed candle not after the last
        processed bucket), ``non_finite`` (a NaN/inf/non-number price or volume),
        ``negative_volume``, ``bad_bucket`` (not an int), ``not_confirmed`` (``process`` given a
        forming candle); ``peek_``-prefixed reasons count rejected previews.

    Notes
    -----
    A close-only set (SMA, EMA, WMA, RSI — the default set among them) keeps every series as a
    row of a :class:`~mandi.indicators.bank.CloseBank`: one compiled update per candle, and
    bursts — :meth:`process_many`, :meth:`process_arrays` (columns, no messages) — update many
    series in one call, in order, with exactly the values, rejections and snapshots of
    candle-by-candle :meth:`process`.
    """

    SNAPSHOT_VERSION = 1

    def __init__(self, specs: Iterable[str] | None = None) -> None:
        given = DEFAULT_SPECS if specs is None else tuple(specs)
        if isinstance(specs, str):
            raise IndicatorSpecError(specs, "specs must be a list of strings, not one string")
        protos = [parse_spec(s) for s in given]
        canon = [p.name for p in protos]
        dupes = sorted({c for c in canon if canon.count(c) > 1})
        if dupes:
            raise IndicatorSpecError(list(given), f"duplicate indicator(s) {', '.join(dupes)}")
        self.specs: tuple[str, ...] = tuple(canon)
        self.names: tuple[str, ...] = tuple(n for p in protos for n in output_names(p))
        # close-only sets (the default one among them) live in a compiled bank, a row a series
        self.fused = fusable(protos)
        self._series: dict[SeriesKey, _Series] = {}
        self._bank: CloseBank | None = None
        self._rows: dict[SeriesKey, int] = {}
        # per exchange: sorted (token << 22 | timeframe) keys and their rows (columnar lookups)
        self._lut: dict[str, tuple[NDArray[np.int64], NDArray[np.int64]]] = {}
        if self.fused:
            self._bank = CloseBank(self.specs)
            self._cold = self._bank.add_series()  # never written: previews of unknown series
            self._one = _OneCall(self._bank)
        self.rejected: Counter[str] = Counter()

    # --- series ---------------------------------------------------------------------------
    def _new_indicators(self) -> list[Indicator]:
        return [parse_spec(s) for s in self.specs]

    def position(self) -> dict[SeriesKey, int]:
        """``{(token, exchange, timeframe): last processed bucket}`` of every series."""
        if self._bank is not None:
            ist = self._bank._ist
            out = {}
            for k, r in self._rows.items():
                b = int(ist[r, 2])
                if b != _NO_BUCKET:
                    out[k] = b
            return out
        return {k: s.last_bucket for k, s in self._series.items() if s.last_bucket is not None}

    def _row(self, key: SeriesKey) -> int:
        row = self._rows.get(key)
        if row is None:
            assert self._bank is not None
            row = self._rows[key] = self._bank.add_series()
        return row

    # --- confirmed and forming candles ----------------------------------------------------
    def process(self, candle: Candle) -> list[IndicatorValue]:
        """Apply a confirmed candle; return its confirmed values (only outputs that are ready).

        A forming candle, a bucket not after the series' last one, or a non-finite field is
        rejected (counted in :attr:`rejected`) and yields ``[]`` with the state untouched.
        """
        if not candle.closed:
            self.rejected["not_confirmed"] += 1
            return []
        key = (candle.token, candle.exchange, candle.timeframe)
        bucket = candle.bucket
        if self._bank is not None:
            row = self._rows.get(key)
            if row is not None:
                last = self._bank._ist[row, 2]
                if last != _NO_BUCKET and bucket <= last:
                    self.rejected["stale_bucket"] += 1
                    return []
            bad = _bad_candle(candle)
            if bad is not None:
                self.rejected[bad] += 1
                return []
            if row is None:
                row = self._row(key)
            values = self._one.run(row, candle.close, bucket, True)
            token, exchange, tf = key
            return [
                IndicatorValue(token, exchange, tf, bucket, name, v, True)
                for name, v in zip(self.names, values, strict=True)
                if v == v  # NaN: still warming up
            ]
        s = self._series.get(key)
        if s is not None and s.last_bucket is not None and bucket <= s.last_bucket:
            self.rejected["stale_bucket"] += 1
            return []
        bad = _bad_candle(candle)
        if bad is not None:
            self.rejected[bad] += 1
            return []
        if s is None:
            s = self._series[key] = _Series(self._new_indicators())
        s.last_bucket = bucket
        token, exchange, tf = key
        close = candle.close
        out: list[IndicatorValue] = []
        append = out.append
        for fn, whole, names, single in s.steps:
            v = fn(candle if whole else close)
            if v is None:
                continue
            if single:
                append(IndicatorValue(token, exchange, tf, bucket, names[0], v, True))
            else:
                for name, x in zip(names, v, strict=True):
                    append(IndicatorValue(token, exchange, tf, bucket, name, x, True))
        return out

    def process_many(self, candles: Iterable[Candle]) -> list[IndicatorValue]:
        """:meth:`process` for each candle in order (a replay, a bucket close's burst); the
        values concatenated. A close-only set applies the whole list in one compiled call."""
        candles = list(candles)
        if self._bank is None or not candles:
            out: list[IndicatorValue] = []
            for c in candles:
                out += self.process(c)
            return out
        rows_l: list[int] = []
        closes_l: list[Any] = []
        buckets_l: list[int] = []
        pre_l: list[int] = []
        rows_get, new_row = self._rows.get, self._row
        for c in candles:
            key = (c.token, c.exchange, c.timeframe)
            r = rows_get(key)
            rows_l.append(r if r is not None else new_row(key))
            b = c.bucket
            if type(b) is not int:  # a float bucket compares as Python compares: go one by one
                return self._process_each(candles)
            buckets_l.append(b)
            if not c.closed:
                pre_l.append(1)
                closes_l.append(0.0)
                continue
            bad = _bad_candle(c)
            if bad is not None:
                pre_l.append(_CODES[bad])
                closes_l.append(0.0)
                continue
            pre_l.append(0)
            closes_l.append(c.close)
        rows = np.array(rows_l, dtype=np.int64)
        closes = np.array(closes_l, dtype=np.float64)
        buckets = np.array(buckets_l, dtype=np.int64)
        pre = np.array(pre_l, dtype=np.int64)
        values, status = self._bank.apply(rows, closes, buckets, pre)
        self._count(status, "")
        names = self.names
        vals = values.tolist()
        out = []
        for j in np.flatnonzero(status == 0).tolist():
            c = candles[j]
            token, exchange, tf, bucket = c.token, c.exchange, c.timeframe, c.bucket
            for name, v in zip(names, vals[j], strict=True):
                if v == v:
                    out.append(IndicatorValue(token, exchange, tf, bucket, name, v, True))
        return out

    def _process_each(self, candles: list[Candle]) -> list[IndicatorValue]:
        out: list[IndicatorValue] = []
        for c in candles:
            out += self.process(c)
        return out

    def _count(self, status: NDArray[np.int64], prefix: str) -> None:
        if len(status) == 0:
            return
        counts = np.bincount(status, minlength=6)
        for code in np.flatnonzero(counts[1:]) + 1:
            reason = STATUS_REASONS[int(code)]
            if prefix and reason == "stale_bucket":
                reason = "stale"  # peek's own name for it
            self.rejected[prefix + reason] += int(counts[code])

    def _arrays(
        self,
        token: ArrayLike,
        timeframe: ArrayLike,
        bucket: ArrayLike,
        close: ArrayLike,
        exchange: str,
        high: ArrayLike | None,
        low: ArrayLike | None,
        open_: ArrayLike | None,
        volume: ArrayLike | None,
        closed: ArrayLike | None,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
        if self._bank is None:
            raise ValueError(
                f"the columnar path runs close-only sets (SMA, EMA, WMA, RSI); this engine has "
                f"{list(self.specs)}: use process/process_many"
            )
        tok = np.ascontiguousarray(token, dtype=np.int64)
        m = len(tok)
        tf = np.broadcast_to(np.asarray(timeframe, dtype=np.int64), (m,))
        bk = np.ascontiguousarray(bucket, dtype=np.int64)
        cl = np.ascontiguousarray(close, dtype=np.float64)
        if bk.shape != (m,) or cl.shape != (m,):
            raise ValueError(f"token, bucket and close must have one value per candle ({m})")
        rows = self._rows_of(tok, tf, exchange)
        pre = np.zeros(m, dtype=np.int64)
        finite = np.isfinite(cl)
        for field in (high, low, open_, volume):
            if field is not None:
                finite &= np.isfinite(np.asarray(field, dtype=np.float64))
        pre[~finite] = _CODES["non_finite"]
        if volume is not None:
            neg = finite & (np.asarray(volume, dtype=np.float64) < 0)
            pre[neg] = _CODES["negative_volume"]
        if closed is not None:
            pre[~np.asarray(closed, dtype=bool)] = _CODES["not_confirmed"]
        return rows, np.where(finite, cl, 0.0), bk, pre

    def _rows_of(
        self, tok: NDArray[np.int64], tf: NDArray[np.int64], exchange: str
    ) -> NDArray[np.int64]:
        """Bank rows of (token, timeframe) pairs: a sorted-key search, Python only for series
        seen for the first time."""
        m = len(tok)
        if m == 0:
            return np.zeros(0, dtype=np.int64)
        if tok.min() < 0 or tok.max() >= 1 << 40 or tf.min() < 0 or tf.max() >= 1 << 22:
            return np.array(
                [
                    self._row((t, exchange, f))
                    for t, f in zip(tok.tolist(), tf.tolist(), strict=True)
                ],
                dtype=np.int64,
            )
        q = (tok << 22) | tf
        keys, rows = self._lut.get(exchange, (_EMPTY, _EMPTY))
        pos = np.searchsorted(keys, q)
        np.minimum(pos, len(keys) - 1, out=pos)
        hit = keys[pos] == q if len(keys) else np.zeros(m, dtype=bool)
        if not hit.all():
            new = np.unique(q[~hit])
            made = np.array(
                [self._row((int(k) >> 22, exchange, int(k) & ((1 << 22) - 1))) for k in new],
                dtype=np.int64,
            )
            keys = np.concatenate([keys, new])
            rows = np.concatenate([rows, made])
            order = np.argsort(keys, kind="stable")
            keys, rows = keys[order], rows[order]
            self._lut[exchange] = (keys, rows)
            pos = np.searchsorted(keys, q)
        return rows[pos]

    def process_arrays(
        self,
        token: ArrayLike,
        timeframe: ArrayLike,
        bucket: ArrayLike,
        close: ArrayLike,
        *,
        exchange: str = "NSE",
        high: ArrayLike | None = None,
        low: ArrayLike | None = None,
        open: ArrayLike | None = None,
        volume: ArrayLike | None = None,
        closed: ArrayLike | None = None,
    ) -> IndicatorBatch:
        """Confirmed candles as columns, in order (close-only sets): :meth:`process` for each,
        without building messages.

        Parameters
        ----------
        token, timeframe, bucket, close : array_like
            One value per candle (``timeframe`` may be one number for all).
        exchange : str
            The exchange of every candle.
        high, low, open, volume : array_like, optional
            Checked like :meth:`process` checks them (non-finite, negative volume).
        closed : array_like of bool, optional
            False marks a forming candle (rejected as ``not_confirmed``).

        Returns
        -------
        IndicatorBatch
            ``values`` (candles × :attr:`names`) and ``status`` per candle; rejections are
            counted in :attr:`rejected` as :meth:`process` counts them. :meth:`to_messages`
            turns the result into :class:`~mandi.model.market.IndicatorValue` messages.
        """
        rows, cl, bk, pre = self._arrays(
            token, timeframe, bucket, close, exchange, high, low, open, volume, closed
        )
        assert self._bank is not None
        values, status = self._bank.apply(rows, cl, bk, pre)
        self._count(status, "")
        return IndicatorBatch(values, status)

    def process_records(self, records: NDArray[Any]) -> IndicatorBatch:
        """Confirmed candle records of :mod:`mandi.pipeline.fast` (``CANDLE_DTYPE``: token,
        timeframe, bucket, OHLC, volume, closed, exchange code ...) through
        :meth:`process_arrays` — the columnar pipeline feeding the columnar engine. Pass the
        timeframes you want (``records[records["timeframe"] == 60]``); a forming record
        (``closed == 0``) is rejected as ``not_confirmed``, as :meth:`process` would."""
        from mandi.model.batches import exchange_name

        m = len(records)
        values = np.full((m, len(self.names)), np.nan)
        status = np.zeros(m, dtype=np.int64)
        codes = records["exchange"]
        for code in np.unique(codes).tolist() if m else []:
            sel = np.flatnonzero(codes == code)
            r = records[sel]
            res = self.process_arrays(
                r["token"],
                r["timeframe"],
                r["bucket"],
                r["close"],
                exchange=exchange_name(code),
                high=r["high"],
                low=r["low"],
                open=r["open"],
                volume=r["volume"],
                closed=r["closed"] == 1,
            )
            values[sel] = res.values
            status[sel] = res.status
        return IndicatorBatch(values, status)

    def peek_arrays(
        self,
        token: ArrayLike,
        timeframe: ArrayLike,
        bucket: ArrayLike,
        close: ArrayLike,
        *,
        exchange: str = "NSE",
        high: ArrayLike | None = None,
        low: ArrayLike | None = None,
        open: ArrayLike | None = None,
        volume: ArrayLike | None = None,
    ) -> IndicatorBatch:
        """Previews of forming candles as columns (:meth:`peek` for each; changes nothing)."""
        rows, cl, bk, pre = self._arrays(
            token, timeframe, bucket, close, exchange, high, low, open, volume, None
        )
        assert self._bank is not None
        values, status = self._bank.apply(rows, cl, bk, pre, commit=False)
        self._count(status, "peek_")
        return IndicatorBatch(values, status)

    def to_messages(
        self,
        batch: IndicatorBatch,
        token: ArrayLike,
        timeframe: ArrayLike,
        bucket: ArrayLike,
        exchange: str = "NSE",
        confirmed: bool = True,
    ) -> list[IndicatorValue]:
        """The :class:`IndicatorValue` messages of a columnar result (what :meth:`process` or
        :meth:`peek` would have returned for each candle, concatenated)."""
        m = len(batch.status)
        tok = np.asarray(token, dtype=np.int64).tolist()
        tfs = np.broadcast_to(np.asarray(timeframe, dtype=np.int64), (m,)).tolist()
        bks = np.asarray(bucket, dtype=np.int64).tolist()
        vals = batch.values.tolist()
        names = self.names
        out = []
        for j in np.flatnonzero(batch.status == 0).tolist():
            for name, v in zip(names, vals[j], strict=True):
                if v == v:
                    out.append(IndicatorValue(tok[j], exchange, tfs[j], bks[j], name, v, confirmed))
        return out

    def peek(self, candle: Candle) -> list[IndicatorValue]:
        """Preview values (``confirmed=False``) for a forming candle; changes no state.

        The values are what :meth:`process` would emit if this candle were confirmed now.
        """
        key = (candle.token, candle.exchange, candle.timeframe)
        bucket = candle.bucket
        if self._bank is not None:
            row = self._rows.get(key)
            if row is not None:
                last = self._bank._ist[row, 2]
                if last != _NO_BUCKET and bucket <= last:
                    self.rejected["peek_stale"] += 1
                    return []
            bad = _bad_candle(candle)
            if bad is not None:
                self.rejected["peek_" + bad] += 1
                return []
            values = self._one.run(self._cold if row is None else row, candle.close, 0, False)
            token, exchange, tf = key
            return [
                IndicatorValue(token, exchange, tf, bucket, name, v, False)
                for name, v in zip(self.names, values, strict=True)
                if v == v
            ]
        s = self._series.get(key)
        if s is not None and s.last_bucket is not None and bucket <= s.last_bucket:
            self.rejected["peek_stale"] += 1
            return []
        bad = _bad_candle(candle)
        if bad is not None:
            self.rejected["peek_" + bad] += 1
            return []
        if s is None:
            s = _Series(self._new_indicators())  # a throw-away cold series
        token, exchange, tf = key
        close = candle.close
        out: list[IndicatorValue] = []
        for ind in s.indicators:
            v = ind.peek_candle(candle) if ind.multi_input else ind.peek(close)  # type: ignore[attr-defined]
            if v is None:
                continue
            names = output_names(ind)
            if not ind.outputs:
                out.append(IndicatorValue(token, exchange, tf, bucket, names[0], v, False))
            else:
                for name, x in zip(names, v, strict=True):
                    out.append(IndicatorValue(token, exchange, tf, bucket, name, x, False))
        return out

    # --- snapshot ---------------------------------------------------------------------------
    def _states(self) -> list[tuple[SeriesKey, int, list[Any]]]:
        if self._bank is not None:
            bank = self._bank
            out = []
            for key, row in self._rows.items():
                last = bank.last_bucket(row)
                if last is not None:
                    out.append((key, last, [bank.get_state(row)]))
            return out
        return [
            (k, s.last_bucket, s.get_state())
            for k, s in self._series.items()
            if s.last_bucket is not None
        ]

    def snapshot(self) -> bytes:
        """The whole state and its position as versioned msgpack bytes.

        Series are written in key order, so equal states give equal bytes. The format is the
        same whether a series lives in objects or in the bank (one fused state per series).
        """
        series = [
            _SeriesSnapshot(k[0], k[1], k[2], last, states)
            for k, last, states in sorted(self._states(), key=lambda e: e[0])
        ]
        return _ENCODER.encode(_EngineSnapshot(self.SNAPSHOT_VERSION, list(self.specs), series))

    def restore(self, blob: bytes) -> None:
        """Replace the whole state with a :meth:`snapshot` (the ``rejected`` counts are kept).

        Raises
        ------
        SnapshotError
            Corrupt bytes, another snapshot version, or a snapshot of a different indicator
            set; the engine is then left unchanged.
        """
        try:
            snap = _DECODER.decode(blob)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise SnapshotError(f"indicator snapshot cannot be decoded: {e}") from None
        if snap.version != self.SNAPSHOT_VERSION:
            raise SnapshotError(
                f"indicator snapshot version {snap.version}, engine reads {self.SNAPSHOT_VERSION}"
            )
        if tuple(snap.specs) != self.specs:
            raise SnapshotError(
                f"indicator snapshot holds {snap.specs}, engine is configured with "
                f"{list(self.specs)}; replay from the start instead"
            )
        if self._bank is not None:
            bank = CloseBank(self.specs, capacity=len(snap.series) + 1)
            cold = bank.add_series()
            rows: dict[SeriesKey, int] = {}
            for ss in snap.series:
                key = (ss.token, ss.exchange, ss.timeframe)
                row = rows[key] = bank.add_series()
                try:
                    if len(ss.states) != 1:
                        raise ValueError(f"expected one fused state, got {len(ss.states)}")
                    bank.set_state(row, ss.states[0])
                except (ValueError, TypeError) as e:
                    raise SnapshotError(f"indicator snapshot of series {key}: {e}") from None
                bank.set_last_bucket(row, ss.last_bucket)
            self._bank, self._cold, self._rows = bank, cold, rows
            self._lut = {}
            self._one = _OneCall(bank)
            return
        rebuilt: dict[SeriesKey, _Series] = {}
        for ss in snap.series:
            key = (ss.token, ss.exchange, ss.timeframe)
            s = _Series(self._new_indicators())
            try:
                s.set_state(ss.states)
            except (ValueError, TypeError) as e:
                raise SnapshotError(f"indicator snapshot of series {key}: {e}") from None
            s.last_bucket = ss.last_bucket
            rebuilt[key] = s
        self._series = rebuilt


_NO_BUCKET = K.NO_BUCKET
_EMPTY = np.zeros(0, dtype=np.int64)


class _OneCall:
    """One candle through the bank's kernel (``process``, ``peek``): scalar arguments and a
    preallocated output row."""

    __slots__ = ("_bank", "_out")

    def __init__(self, bank: CloseBank) -> None:
        self._bank = bank
        self._out = np.zeros((1, len(bank.names)))

    def run(self, row: int, close: Any, bucket: int, commit: bool) -> list[float]:
        b = self._bank
        K.close_one(row, float(close), bucket, self._out, b._fs, b._ist, b._cfg, commit)
        return self._out[0].tolist()  # type: ignore[no-any-return]
