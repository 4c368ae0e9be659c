"""Differential test against backtrader: an SMA crossover with a fixed quantity, no commission and
market orders at the next open, on Oracle's daily series (1995-2014) — the same trades and the
same final value.

mandi keeps prices in whole paise, so both engines get the series rounded to 2 decimals (the
file's 6-decimal split-adjusted prices are not representable); the rounded copy is what both see.
"""

from __future__ import annotations

import datetime as dt
import pathlib

import pytest

from mandi.services.backtest import run

bt = pytest.importorskip("backtrader")
pd = pytest.importorskip("pandas")

DATA = pathlib.Path(__file__).parents[1] / "data" / "backtrader_orcl-1995-2014.txt"


@pytest.fixture(scope="module")
def orcl(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    df = pd.read_csv(DATA)
    for c in ("Open", "High", "Low", "Close"):
        df[c] = (df[c] * 100).round().astype(int) / 100
    path = tmp_path_factory.mktemp("orcl") / "orcl-2dp.csv"
    df.to_csv(path, index=False)
    return path


def backtrader_run(path: pathlib.Path, fast: int, slow: int, qty: int) -> tuple[list, float]:
    class Cross(bt.Strategy):
        params = (("fast", fast), ("slow", slow))

        def __init__(self) -> None:
            sma = bt.ind.SMA
            self.x = bt.ind.CrossOver(sma(period=self.p.fast), sma(period=self.p.slow))
            self.closed: list[tuple] = []

        def next(self) -> None:
            if not self.position and self.x > 0:
                self.buy(size=qty)
            elif self.position and self.x < 0:
                self.close()

        def notify_trade(self, trade) -> None:  # type: ignore[no-untyped-def]
            if trade.isclosed:
                self.closed.append(
                    (
                        bt.num2date(trade.dtopen).date(),
                        bt.num2date(trade.dtclose).date(),
                        round(trade.price, 2),
                        round(trade.pnl, 2),
                    )
                )

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.YahooFinanceCSVData(dataname=str(path), adjclose=False, round=False))
    cerebro.addstrategy(Cross)
    cerebro.broker.setcash(1_000_000.0)
    strat = cerebro.run()[0]
    return strat.closed, round(cerebro.broker.getvalue(), 2)


def ist_day(ns: int) -> dt.date:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ns // 1000 + 19_800_000_000)).date()


@pytest.mark.parametrize(("fast", "slow", "qty"), [(10, 30, 100)])
def test_sma_crossover_matches_backtrader(orcl: pathlib.Path, fast: int, slow: int, qty: int):
    theirs, their_value = backtrader_run(orcl, fast, slow, qty)
    res = run(
        orcl,
        "sma_cross",
        {"fast": fast, "slow": slow},
        quantity=qty,
        commission=0,
        charges="none",
        cash=1_000_000,
        engine="event",
    )
    ours = [
        (ist_day(t.entry_time), ist_day(t.exit_time), t.entry_price / 100, t.pnl / 100)
        for t in res.trades
    ]
    assert len(theirs) > 40
    assert ours == theirs
    assert res.final_value == their_value
    # the vectorized path agrees with both
    vec = run(
        orcl,
        "sma_cross",
        {"fast": fast, "slow": slow},
        quantity=qty,
        commission=0,
        charges="none",
        cash=1_000_000,
        engine="vector",
    )
    assert [t.key() for t in vec.trades] == [t.key() for t in res.trades]
    assert vec.final_value == their_value
