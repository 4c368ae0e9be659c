"""Indicator specs: ``"RSI_14"``, ``"MACD_12_26_9"`` ... → indicator objects and output names."""

from __future__ import annotations

from mandi.core.errors import ConfigError
from mandi.indicators._base import Indicator
from mandi.indicators.momentum import MACD, RSI, Stochastic
from mandi.indicators.moving import EMA, SMA, WMA
from mandi.indicators.trend import ADX
from mandi.indicators.volatility import ATR, BollingerBands, SuperTrend
from mandi.indicators.volume import OBV, VWAP

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
