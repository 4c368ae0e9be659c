"""Synthetic bars and scripted strategies for the backtester's tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
import pytest

from mandi.backtest import BacktestConfig, BacktestEngine, BarSeries, StrategyRun
from mandi.backtest.result import from_raw
from mandi.core.calendar import ist_ns
from mandi.model.instruments import Equity, InstrumentMaster
from mandi.model.market import Candle
from mandi.strategy.base import Strategy, StrategyConfig

DAY = dt.date(2026, 4, 15)  # a Wednesday, an NSE trading day
INST = Equity(7, "NSE", "TEST", "TEST", "", 1, 5)


def bars(rows: Sequence[tuple[int, int, int, int]], day: dt.date = DAY, tf: int = 60) -> BarSeries:
    """1-minute (``tf``) bars from 09:15 IST of ``day``; rows are (open, high, low, close) in
    rupees."""
    n = len(rows)
    start = ist_ns(day, dt.time(9, 15))
    bucket = start + np.arange(n, dtype=np.int64) * tf * 10**9
    a = np.array(rows, dtype=np.int64) * 100
    return BarSeries(INST, tf, bucket, a[:, 0], a[:, 1], a[:, 2], a[:, 3], np.zeros(n, np.int64))


class ScriptConfig(StrategyConfig, frozen=True):
    actions: dict[int, str] = msgspec.field(default_factory=dict)  # bar index -> BUY | SELL


class Script(Strategy):
    """Signals the scripted action at the close of the given bar (counted from 0); records what
    it saw."""

    name = "script"
    config_class = ScriptConfig

    def on_start(self) -> None:
        self.i = -1
        self.log: list[tuple[int, int, int, int]] = []

    def on_candle(self, candle: Candle) -> None:
        self.i += 1
        hist = self.ctx.candles(candle.token, candle.timeframe)
        self.log.append(
            (self.ctx.now_ns, candle.bucket, self.ctx.ltp(candle.token), hist[-1].bucket)
        )
        act = self.config.actions.get(self.i)  # type: ignore[attr-defined]
        if act:
            self.signal(act)


def run_script(series: BarSeries, actions: dict[int, str], **cfg: Any) -> tuple[Any, Script]:
    raw, strat = run_script_raw(series, actions, **cfg)
    return from_raw(raw), strat


def run_script_raw(
    series: BarSeries, actions: dict[int, str], risk: Any = None, **cfg: Any
) -> tuple[Any, Script]:
    """:func:`run_script`'s engine output as it is (its store holds every order, fill and
    position record); ``risk``: a :class:`~mandi.risk.config.RiskConfig` instead of the
    backtest's default limits."""
    cfg.setdefault("quantity", 10)
    cfg.setdefault("charges", "none")
    cfg.setdefault("commission_inr", 0.0)
    strat = Script(ScriptConfig(actions=actions), timeframe=series.timeframe)
    master = InstrumentMaster([series.instrument])
    eng = BacktestEngine(
        [StrategyRun(strat, (series.symbol,))],
        master,
        BacktestConfig(**cfg),
        timeframe=series.timeframe,
        risk=risk,
    )
    return eng.run_bars([series]), strat


@pytest.fixture
def flat_day() -> BarSeries:
    return bars([(100, 101, 99, 100)] * 30)
