"""The market-data pipeline: ticks → 1 s candles → timeframe candles (pure kernel)."""

from mandi.pipeline.candles import CandlePipeline
from mandi.pipeline.seconds import SecondAggregator
from mandi.pipeline.timeframes import DEFAULT_TIMEFRAMES, TimeframeBuilder

__all__ = ["DEFAULT_TIMEFRAMES", "CandlePipeline", "SecondAggregator", "TimeframeBuilder"]
