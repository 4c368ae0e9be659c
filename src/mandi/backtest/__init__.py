"""mandi.backtest: the same strategies, risk rules and fill simulator on history — the engines.

* :class:`BacktestEngine` — the event-driven engine (the trading kernel on a ``TestClock``);
* :mod:`mandi.backtest.vector` — the vectorized fast path for indicator crossovers;
* :class:`BarSeries`, :class:`BacktestResult`, :class:`BacktestConfig` — their inputs and outputs.

This package is pure kernel code (no files, no store, no reports). The entry points that load
data and write reports are shell code: ``from mandi.services.backtest import run, replay, sweep``
(:mod:`mandi.services.backtest`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mandi.backtest.config import BacktestConfig

if TYPE_CHECKING:
    from mandi.backtest.bars import BacktestError, BarSeries
    from mandi.backtest.engine import BacktestEngine, StrategyRun
    from mandi.backtest.result import BacktestResult, Trade

# the engine pulls in the whole trading kernel: load it on first use (``mandi.config`` imports
# ``mandi.backtest.config`` for every command)
_LAZY = {
    "BacktestError": "mandi.backtest.bars",
    "BarSeries": "mandi.backtest.bars",
    "BacktestEngine": "mandi.backtest.engine",
    "StrategyRun": "mandi.backtest.engine",
    "BacktestResult": "mandi.backtest.result",
    "Trade": "mandi.backtest.result",
}
# the shell's entry points, once reachable here: a clear pointer instead of a bare AttributeError
_MOVED = ("run", "replay", "sweep")


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        if name in _MOVED:
            raise AttributeError(
                f"mandi.backtest.{name} moved to mandi.services.backtest.{name} (the backtest "
                f"engines are kernel code without I/O; loading data is the shell's job): "
                f"use `from mandi.services.backtest import {name}`"
            )
        raise AttributeError(f"module 'mandi.backtest' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(mod), name)


__all__ = [
    "BacktestConfig",
    "BacktestEngine",
    "BacktestError",
    "BacktestResult",
    "BarSeries",
    "StrategyRun",
    "Trade",
]
