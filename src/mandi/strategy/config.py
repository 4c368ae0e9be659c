"""``[[strategies]]``: which strategies run, on what, with which parameters (see
:mod:`mandi.strategy.loader`). Kept free of heavy imports: ``mandi.config`` loads it."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec


class StrategySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    id: str = ""
    symbols: tuple[str, ...] = ()
    timeframe: Annotated[int, msgspec.Meta(ge=0)] = 0  # 0 = the strategy's default
    enabled: bool = True
    params: dict[str, Any] = msgspec.field(default_factory=dict)


DEFAULT_STRATEGIES: tuple[StrategySpec, ...] = (
    StrategySpec(
        "ema_cross", symbols=("NIFTY", "BANKNIFTY"), timeframe=900, params={"fast": 9, "slow": 21}
    ),
    StrategySpec("rsi", symbols=("NIFTY",), timeframe=300),
    StrategySpec("momentum", symbols=("RELIANCE", "INFY", "HDFCBANK"), timeframe=300),
    StrategySpec("sma_cross", symbols=("TCS", "ICICIBANK"), timeframe=300),
    StrategySpec("oi_pcr", symbols=("NIFTY",), timeframe=300),
)
