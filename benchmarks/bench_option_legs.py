"""Option-leg backtest over a day of the full simulated NIFTY chain, beside the underlying-only one.

Setup (not timed): the simulated exchange generates one trading day of NIFTY — the index and its
full chain (±20 strikes, every listed expiry) — and keeps what ``mandi run`` records: a chain
snapshot every 30 s (the store's ``option_chain_snapshots`` cadence) and the index's 1-minute
bars. Timed, best of 3:

* the option-leg backtest: ``short_straddle`` (ATM CE + PE sold at 09:20, 30 % per-leg stops,
  bought back at 15:10) through :class:`mandi.backtest.options.OptionLegEngine` — every quote of
  every snapshot goes into the kernel's market state, working orders fill at the recorded
  touch, open legs are marked and their stops checked;
* the baseline: the underlying-only backtest of the same bars (``sma_cross`` 9/21 on the index,
  the bar engine without chains).

Both rates are bars (minutes of market) per second; the option-leg line also gives quotes/s.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import best_of, report
from mandi.backtest import BacktestConfig, BacktestEngine, BarSeries, StrategyRun
from mandi.backtest.options import OptionLegEngine
from mandi.config import SimConfig
from mandi.core.clock import NS_PER_SECOND
from mandi.feeds.sim import UNDERLYINGS, SimExchange
from mandi.model.instruments import Equity, InstrumentMaster, Option
from mandi.services.backtest.options import option_configs
from mandi.strategy.builtin import SMACross
from mandi.strategy.options import OptionLegConfig, ShortStraddle

DAY = dt.date(2026, 4, 15)
SNAP_NS = 30 * NS_PER_SECOND


def record_day() -> tuple[BarSeries, list, list[Option]]:
    """One simulated day: NIFTY 1-minute bars, chain snapshots every 30 s, the contracts."""
    ex = SimExchange(SimConfig(underlyings=("NIFTY",), stocks=(), seed=7), DAY)
    spec = UNDERLYINGS["NIFTY"]
    last: dict = {}
    snaps: list = []
    minutes: list[tuple[int, int, int, int, int]] = []
    next_snap = ex.open_ns
    for batch in ex.ticks():
        px = []
        for t in batch:
            while t.ts_event >= next_snap + SNAP_NS and last:
                next_snap += SNAP_NS
                snaps += ex.chain_snapshots(next_snap, last)
            last[t.token] = t
            if t.token == spec.token:
                px.append(t.price)
        if px:
            start = batch[0].ts_event - (batch[0].ts_event - ex.open_ns) % (60 * NS_PER_SECOND)
            minutes.append((start, px[0], max(px), min(px), px[-1]))
    a = np.array(minutes, dtype=np.int64)
    inst = Equity(spec.token, "NSE", "NIFTY", "NIFTY", "", 1, 5)
    bars = BarSeries(
        inst, 60, a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], np.zeros(len(a), np.int64)
    )
    return bars, snaps, list(ex.contracts)


def main() -> None:
    bars, snaps, contracts = record_day()
    quotes = sum(len(s.rows) * 2 for s in snaps)
    print(
        f"  one simulated day: {len(bars)} NIFTY 1-minute bars, {len(snaps)} chain snapshots "
        f"({len({s.expiry for s in snaps})} expiries every 30 s), {quotes:,} quotes"
    )
    cfg = BacktestConfig(charges="india")
    trades: list[int] = []

    def option_legs() -> None:
        risk, trading = option_configs(cfg, None, None)
        strat = ShortStraddle(OptionLegConfig(entry="09:20", exit="15:10", stop_loss_pct=30))
        eng = OptionLegEngine(
            [StrategyRun(strat, ("NIFTY",))],
            InstrumentMaster([bars.instrument, *contracts]),
            cfg,
            timeframe=60,
            risk=risk,
            trading=trading,
        )
        raw = eng.run_bars([bars], None, snaps)
        trades.append(len(raw.store.trades))

    def underlying_only() -> None:
        eng = BacktestEngine(
            [StrategyRun(SMACross(timeframe=60), ("NIFTY",))],
            InstrumentMaster([bars.instrument]),
            BacktestConfig(quantity=65),
            timeframe=60,
        )
        eng.run_bars([bars])

    base = best_of(underlying_only, 3)
    ours = best_of(option_legs, 3)
    report(
        f"option-leg backtest, full chain day ({ours:.2f} s, {trades[-1]} legs traded)",
        len(bars),
        ours,
        "bars",
        "underlying-only bar backtest",
        base,
    )
    print(f"  {quotes / ours:,.0f} chain quotes/s through the kernel's market, fills and stops")


if __name__ == "__main__":
    main()
