"""No look-ahead: a strategy sees a bar only after it ends, through the API it cannot see more,
orders fill no earlier than the next bar — and a strategy that cheats around the API is caught
by changing the future and watching the past."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from mandi.backtest import BacktestConfig, BacktestEngine, StrategyRun
from mandi.backtest.lookahead import LookAheadError, check_no_lookahead
from mandi.backtest.result import from_raw
from mandi.model.instruments import InstrumentMaster
from mandi.services.backtest.api import load_data, run
from mandi.strategy.base import Strategy

from .kit import ScriptConfig, bars, run_script

DATA = pathlib.Path(__file__).parents[2] / "data" / "NIFTY50_3min_2025-07-23_to_2026-08-04.csv"


@pytest.fixture(scope="module")
def nifty():
    (s,) = load_data(DATA)
    return s.take(slice(0, 4000))


def test_a_strategy_sees_each_bar_only_after_it_ends():
    s = bars([(100 + i, 101 + i, 99 + i, 100 + i) for i in range(50)])
    _, strat = run_script(s, {3: "BUY", 9: "SELL"})
    assert len(strat.log) == 50
    for (now, bucket, ltp, newest), i in zip(strat.log, range(50), strict=True):
        assert now == int(s.end[i]) and bucket == int(s.bucket[i])
        assert newest == bucket  # the history ends with this bar, never a later one
        assert ltp == int(s.close[i])  # the last price is this bar's close, not the next open


def test_fills_come_from_bars_that_start_after_the_order(nifty):
    res = run(nifty, "ema_cross", {"fast": 5, "slow": 13}, quantity=15, engine="event")
    sig_at = {s.signal_id: s.ts_event for s in res.signals}
    assert len(res.fills) > 50
    for f in res.fills:
        if f.intent.value == "ENTRY":
            decided = sig_at[f.signal_id]
            assert f.ts_event >= decided  # the next bar's open starts at or after the signal
            k = int(np.searchsorted(nifty.bucket, f.ts_event))
            assert f.price == int(nifty.open[k])  # and it is that bar's open


@pytest.mark.parametrize("engine", ["event", "vector"])
def test_changing_the_future_does_not_change_the_past(nifty, engine):
    cut = int(nifty.bucket[2500])
    a, b = check_no_lookahead(
        lambda ss: run(ss, "sma_cross", {"fast": 8, "slow": 21}, quantity=15, engine=engine),
        [nifty],
        cut,
    )
    assert len([t for t in a.trades if t.exit_time < cut]) > 20
    assert a.final_value != b.final_value  # the future did change


class Peeker(Strategy):
    """Cheats around the API: reads the next bar's close from the input arrays."""

    name = "peeker"
    config_class = ScriptConfig
    future: np.ndarray = np.zeros(0)

    def on_start(self) -> None:
        self.i = -1

    def on_candle(self, candle) -> None:  # type: ignore[no-untyped-def]
        self.i += 1
        if self.i + 1 < len(self.future):
            nxt = self.future[self.i + 1]
            self.signal("BUY" if nxt > candle.close else "SELL")


def test_a_strategy_that_peeks_is_caught(nifty):
    def backtest(ss):  # type: ignore[no-untyped-def]
        (s,) = ss
        strat = Peeker(timeframe=s.timeframe)
        strat.future = s.close
        eng = BacktestEngine(
            [StrategyRun(strat, (s.symbol,))],
            InstrumentMaster([s.instrument]),
            BacktestConfig(quantity=15),
            timeframe=s.timeframe,
        )
        return from_raw(eng.run_bars([s]))

    with pytest.raises(LookAheadError, match="depend on later data"):
        check_no_lookahead(backtest, [nifty], int(nifty.bucket[2000]))
