"""mandi.backtest: the same strategies, risk rules and fill simulator on history.

* :func:`run` — backtest a strategy on CSV/Parquet files or a ``mandi.db`` store and get a
  :class:`BacktestResult` (trades, equity curve, statistics; ``trades_frame()`` for pandas).
* :func:`replay` — re-run a recorded ``mandi run`` session tick by tick through the kernel.
* :func:`sweep` — a parameter grid in parallel across cores.
* :class:`BacktestEngine` — the event-driven engine (the trading kernel on a ``TestClock``);
  :mod:`mandi.backtest.vector` — the vectorized fast path for indicator crossovers.

The engines are pure kernel code; file, store and report I/O lives in the shell,
:mod:`mandi.services.backtest` (imported only when these entry points are called).
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


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
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
    "replay",
    "run",
    "sweep",
]


def run(*args: Any, **kwargs: Any) -> BacktestResult:
    """See :func:`mandi.services.backtest.api.run`."""
    from mandi.services.backtest.api import run as _run

    return _run(*args, **kwargs)


def replay(*args: Any, **kwargs: Any) -> Any:
    """See :func:`mandi.services.backtest.replay.replay`."""
    from mandi.services.backtest.replay import replay as _replay

    return _replay(*args, **kwargs)


def sweep(*args: Any, **kwargs: Any) -> Any:
    """See :func:`mandi.services.backtest.sweep.sweep`."""
    from mandi.services.backtest.sweep import sweep as _sweep

    return _sweep(*args, **kwargs)
