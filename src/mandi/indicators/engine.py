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
from typing import Any

import msgspec

from mandi.core.errors import ConfigError, DataError
from mandi.indicators._base import Indicator
from mandi.indicators.fused import CloseKernel, fusable
from mandi.indicators.momentum import MACD, RSI, Stochastic
from mandi.indicators.moving import EMA, SMA, WMA
from mandi.indicators.trend import ADX
from mandi.indicators.volatility import ATR, BollingerBands, SuperTrend
from mandi.indicators.volume import OBV, VWAP
from mandi.model.market import Candle, IndicatorValue

#: The seed's indicator set, used when the engine is not configured otherwise.
DEFAULT_SPECS: tuple[str, ...] = (
    "SMA_9",
    "SMA_20",
    "SMA_50",
    "SMA_200",
    "EMA_9",
    "EMA_21",
    "RSI_14",
)

SeriesKey = tuple[int, str, int]  # (token, exchange, timeframe seconds)

# kind -> (class, parameter types in constructor order); omitted trailing params take defaults
_KINDS: dict[str, tuple[type[Indicator], tuple[type, ...]]] = {
    "SMA": (SMA, (int,)),
    "EMA": (EMA, (int,)),
    "WMA": (WMA, (int,)),
    "RSI": (RSI, (int,)),
    "MACD": (MACD, (int, int, int)),
    "BBANDS": (BollingerBands, (int, float)),
    "ATR": (ATR, (int,)),
    "SUPERTREND": (SuperTrend, (int, float)),
    "STOCH": (Stochastic, (int, int, int)),
    "ADX": (ADX, (int,)),
    "VWAP": (VWAP, ()),
    "OBV": (OBV, ()),
}


class IndicatorSpecError(ConfigError):
    """An indicator spec (``"RSI_14"``, ``"MACD_12_26_9"`` ...) cannot be understood."""

    def __init__(self, spec: object, reason: str) -> None:
        super().__init__("indicator spec", spec, reason)


class SnapshotError(DataError):
    """A snapshot cannot be restored into this engine (corrupt, other version or other set)."""


def parse_spec(spec: str) -> Indicator:
    """A new indicator from a spec: ``KIND`` or ``KIND_p1_p2...`` (kind case-insensitive).

    Kinds: ``SMA_n``, ``EMA_n``, ``WMA_n``, ``RSI_n``, ``MACD_fast_slow_signal``,
    ``BBANDS_period_nbdev``, ``ATR_n``, ``SUPERTREND_period_multiplier``,
    ``STOCH_fastk_slowk_slowd``, ``ADX_n``, ``VWAP``, ``OBV``. Trailing parameters may be left
    out (``"MACD"`` is ``MACD_12_26_9``); the indicator's ``name`` is the canonical spec.

    Raises
    ------
    IndicatorSpecError
        Unknown kind, too many parameters, or a parameter that is not valid for the kind.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise IndicatorSpecError(spec, "must be a non-empty string like 'RSI_14'")
    kind, *raw = spec.strip().split("_")
    entry = _KINDS.get(kind.upper())
    if entry is None:
        raise IndicatorSpecError(spec, f"unknown indicator {kind!r}; known: {', '.join(_KINDS)}")
    cls, types = entry
    if len(raw) > len(types):
        raise IndicatorSpecError(spec, f"{kind.upper()} takes at most {len(types)} parameter(s)")
    args: list[int | float] = []
    for text, typ in zip(raw, types, strict=False):
        try:
            args.append(typ(text))
        except ValueError:
            raise IndicatorSpecError(
                spec, f"parameter {text!r} is not a valid {typ.__name__}"
            ) from None
    try:
        return cls(*args)
    except ValueError as e:
        raise IndicatorSpecError(spec, str(e)) from None


def output_names(ind: Indicator) -> tuple[str, ...]:
    """Names of the values an indicator publishes: ``RSI_14`` or ``MACD_12_26_9.signal`` ..."""
    if not ind.outputs:
        return (ind.name,)
    return tuple(f"{ind.name}.{field}" for field in ind.outputs)


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
    """State of one series: a fused kernel (close-only sets) or one object per indicator."""

    __slots__ = ("indicators", "kernel", "last_bucket", "steps")

    def __init__(self, indicators: list[Indicator], fused: bool) -> None:
        self.last_bucket: int | None = None
        self.kernel = CloseKernel(indicators) if fused else None  # type: ignore[arg-type]
        self.indicators = [] if fused else indicators
        self.steps: list[_Step] = []
        for ind in self.indicators:
            fn = ind.update_candle if ind.multi_input else ind.update  # type: ignore[attr-defined]
            self.steps.append((fn, ind.multi_input, output_names(ind), not ind.outputs))

    def get_state(self) -> list[Any]:
        if self.kernel is not None:
            return [self.kernel.get_state()]
        return [i.get_state() for i in self.indicators]

    def set_state(self, states: list[Any]) -> None:
        if self.kernel is not None:
            if len(states) != 1:
                raise ValueError(f"expected one fused state, got {len(states)}")
            self.kernel.set_state(states[0])
            return
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
        # close-only sets (the default one among them) run as one fused kernel per series
        self.fused = fusable(protos)
        self._series: dict[SeriesKey, _Series] = {}
        self.rejected: Counter[str] = Counter()

    # --- series ---------------------------------------------------------------------------
    def _new_indicators(self) -> list[Indicator]:
        return [parse_spec(s) for s in self.specs]

    def position(self) -> dict[SeriesKey, int]:
        """``{(token, exchange, timeframe): last processed bucket}`` of every series."""
        return {k: s.last_bucket for k, s in self._series.items() if s.last_bucket is not None}

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
        s = self._series.get(key)
        bucket = candle.bucket
        if s is not None and s.last_bucket is not None and bucket <= s.last_bucket:
            self.rejected["stale_bucket"] += 1
            return []
        bad = _bad_candle(candle)
        if bad is not None:
            self.rejected[bad] += 1
            return []
        if s is None:
            s = self._series[key] = _Series(self._new_indicators(), self.fused)
        s.last_bucket = bucket
        token, exchange, tf = key
        close = candle.close
        out: list[IndicatorValue] = []
        append = out.append
        if s.kernel is not None:
            for name, v in zip(self.names, s.kernel.update(close), strict=True):
                if v is not None:
                    append(IndicatorValue(token, exchange, tf, bucket, name, v, True))
            return out
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
        """:meth:`process` for each candle in order (e.g. a replay); the values concatenated."""
        out: list[IndicatorValue] = []
        for c in candles:
            out += self.process(c)
        return out

    def peek(self, candle: Candle) -> list[IndicatorValue]:
        """Preview values (``confirmed=False``) for a forming candle; changes no state.

        The values are what :meth:`process` would emit if this candle were confirmed now.
        """
        key = (candle.token, candle.exchange, candle.timeframe)
        s = self._series.get(key)
        bucket = candle.bucket
        if s is not None and s.last_bucket is not None and bucket <= s.last_bucket:
            self.rejected["peek_stale"] += 1
            return []
        bad = _bad_candle(candle)
        if bad is not None:
            self.rejected["peek_" + bad] += 1
            return []
        if s is None:
            s = _Series(self._new_indicators(), self.fused)  # a throw-away cold series
        token, exchange, tf = key
        close = candle.close
        out: list[IndicatorValue] = []
        if s.kernel is not None:
            for name, v in zip(self.names, s.kernel.peek(close), strict=True):
                if v is not None:
                    out.append(IndicatorValue(token, exchange, tf, bucket, name, v, False))
            return out
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
    def snapshot(self) -> bytes:
        """The whole state and its position as versioned msgpack bytes.

        Series are written in key order, so equal states give equal bytes.
        """
        series = [
            _SeriesSnapshot(k[0], k[1], k[2], s.last_bucket, s.get_state())
            for k, s in sorted(self._series.items())
            if s.last_bucket is not None
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
        rebuilt: dict[SeriesKey, _Series] = {}
        for ss in snap.series:
            key = (ss.token, ss.exchange, ss.timeframe)
            s = _Series(self._new_indicators(), self.fused)
            try:
                s.set_state(ss.states)
            except (ValueError, TypeError) as e:
                raise SnapshotError(f"indicator snapshot of series {key}: {e}") from None
            s.last_bucket = ss.last_bucket
            rebuilt[key] = s
        self._series = rebuilt
