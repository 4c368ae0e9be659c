"""Incremental technical indicators, their batch twins and the per-series engine.

Every indicator is an O(1)-per-update object: ``update(x)`` (a confirmed input; returns the value
or None while warming up), ``peek(x)`` (the value if ``x`` were confirmed, no mutation),
``value``, ``ready`` and ``reset()``. Definitions match TA-Lib wherever TA-Lib has the indicator;
``compute(name, values, **params)`` gives the same numbers for whole arrays.

>>> from mandi.indicators import RSI, compute
>>> rsi = RSI(14)
>>> [rsi.update(x) for x in range(1, 17)][-1]
100.0
"""

from mandi.indicators._base import Indicator, IndicatorInputError
from mandi.indicators.batch import (
    ADXArrays,
    BollingerArrays,
    MACDArrays,
    StochasticArrays,
    SuperTrendArrays,
    compute,
)
from mandi.indicators.engine import IndicatorBatch, IndicatorEngine, SnapshotError
from mandi.indicators.momentum import MACD, RSI, MACDValue, Stochastic, StochasticValue
from mandi.indicators.moving import EMA, SMA, WMA
from mandi.indicators.specs import DEFAULT_SPECS, IndicatorSpecError, parse_spec
from mandi.indicators.trend import ADX, ADXValue
from mandi.indicators.volatility import (
    ATR,
    BollingerBands,
    BollingerValue,
    SuperTrend,
    SuperTrendValue,
)
from mandi.indicators.volume import OBV, VWAP

__all__ = [
    "ADX",
    "ATR",
    "DEFAULT_SPECS",
    "EMA",
    "MACD",
    "OBV",
    "RSI",
    "SMA",
    "VWAP",
    "WMA",
    "ADXArrays",
    "ADXValue",
    "BollingerArrays",
    "BollingerBands",
    "BollingerValue",
    "Indicator",
    "IndicatorBatch",
    "IndicatorEngine",
    "IndicatorInputError",
    "IndicatorSpecError",
    "MACDArrays",
    "MACDValue",
    "SnapshotError",
    "Stochastic",
    "StochasticArrays",
    "StochasticValue",
    "SuperTrend",
    "SuperTrendArrays",
    "SuperTrendValue",
    "compute",
    "parse_spec",
]
