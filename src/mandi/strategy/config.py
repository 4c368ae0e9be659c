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


#: ``mandi run``'s strategies when ``mandi.toml`` has no ``[[strategies]]``. The index EMA crossover
#: enters the standing trend at the open (``enter_at_open``): warmed up on the preceding sessions
#: (see ``[history]``), it trades an option on NIFTY and one on BANKNIFTY within the first minute
#: instead of waiting for the next crossing (two of the three positions ``risk`` allows at once).
DEFAULT_STRATEGIES: tuple[StrategySpec, ...] = (
    StrategySpec(
        "ema_cross",
        symbols=("NIFTY", "BANKNIFTY"),
        timeframe=900,
        params={"fast": 9, "slow": 21, "enter_at_open": True},
    ),
    StrategySpec("rsi", symbols=("NIFTY",), timeframe=300),
    StrategySpec("momentum", symbols=("RELIANCE", "INFY", "HDFCBANK"), timeframe=300),
    StrategySpec("sma_cross", symbols=("TCS", "ICICIBANK"), timeframe=300),
    StrategySpec("oi_pcr", symbols=("NIFTY",), timeframe=300),
)
