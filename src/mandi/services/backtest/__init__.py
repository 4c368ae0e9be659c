"""Backtesting from the shell: the public entry points that read data and write reports.

* :func:`run` — backtest a strategy on CSV/Parquet files, pandas frames or a ``mandi.db`` store and
  get a :class:`~mandi.backtest.result.BacktestResult` (trades, equity curve, statistics;
  ``trades_frame()`` for pandas);
* :func:`replay` — re-run a recorded ``mandi run`` session tick by tick through the kernel;
* :func:`sweep` — a parameter grid in parallel across cores.

::

    from mandi.services.backtest import run, replay, sweep

The engines they drive are kernel code in :mod:`mandi.backtest` (no I/O); these functions load
the data (:mod:`.data`), run an engine (:mod:`.api`) and write reports (:mod:`.report`).
"""

from mandi.backtest.bars import BacktestError
from mandi.backtest.config import BacktestConfig
from mandi.backtest.result import BacktestResult
from mandi.services.backtest.api import run
from mandi.services.backtest.replay import replay
from mandi.services.backtest.sweep import sweep

__all__ = ["BacktestConfig", "BacktestError", "BacktestResult", "replay", "run", "sweep"]
