"""Option-leg backtests from recorded data (shell: it reads the files).

``mandi backtest --data mandi.db --strategy short_straddle`` — and any strategy whose class sets
``trades_option_legs`` — comes here from :func:`mandi.services.backtest.api.run`:

* the underlying (the strategy's ``underlying`` parameter, else ``--symbol``, else the one
  underlying the chains hold) comes as bars: the store's candles of the strategy's timeframe, or,
  for chain files without candles, one bar per recorded chain time at its underlying price;
* option contracts are priced by the recorded chain snapshots — the store's
  ``option_chain_snapshots`` (every 30 s in ``mandi run``) and/or NSE/BSE option-chain files
  (``--chains``, or given as ``--data``);
* the contracts come from the simulation's instrument master when the store was recorded on the
  simulator (their real tokens and lot sizes), else from the snapshots themselves;
* :class:`~mandi.backtest.options.OptionLegEngine` runs the kernel over them: fills at the
  recorded bid/ask, per-leg stops, expiry settled at intrinsic value, charges per leg.

Without ``--config`` the risk manager's default option stop-loss and target are off: the
strategy's own per-leg stop and exit time decide (a config file's ``[risk]`` applies as is).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from mandi.backtest.bars import BacktestError, BarSeries
from mandi.backtest.config import BacktestConfig, default_risk
from mandi.backtest.engine import StrategyRun
from mandi.backtest.options import OptionLegEngine
from mandi.backtest.result import BacktestResult, from_raw
from mandi.core.clock import NS_PER_SECOND
from mandi.execution.config import TradingConfig
from mandi.model.instruments import Equity, InstrumentMaster, Option
from mandi.model.market import ChainSnapshot
from mandi.risk.config import RiskConfig

Path = str | os.PathLike[str]


def split_sources(data: Any, chains: Any) -> tuple[list[Path], list[Any]]:
    """(stores, chain sources): a store gives candles and chains; other paths are chain files."""
    from mandi.services.backtest.data import is_store

    items = list(data) if isinstance(data, list | tuple) else [data]
    stores: list[Path] = []
    sources: list[Any] = []
    for it in items:
        if isinstance(it, str | os.PathLike) and is_store(it):
            stores.append(it)
            sources.append(it)
        elif isinstance(it, str | os.PathLike | ChainSnapshot):
            sources.append(it)
        else:
            raise BacktestError(
                "option-leg backtests read a mandi.db store or NSE/BSE chain files, "
                f"not {type(it).__name__}"
            )
    if chains is not None:
        sources += list(chains) if isinstance(chains, list | tuple) else [chains]
    return stores, sources


def pick_underlying(wanted: str, snaps: Sequence[ChainSnapshot]) -> str:
    have = sorted({s.underlying for s in snaps})
    if not have:
        raise BacktestError("no option-chain snapshots recorded: nothing to price the legs with")
    if wanted:
        if wanted not in have:
            raise BacktestError(
                f"underlying {wanted!r}: no recorded chains (recorded: {', '.join(have)})"
            )
        return wanted
    if len(have) > 1:
        raise BacktestError(
            f"the chains hold {', '.join(have)}: choose one with --param underlying=NAME"
        )
    return have[0]


def bars_from_snapshots(
    snaps: Sequence[ChainSnapshot], underlying: str, timeframe: int
) -> BarSeries:
    """One bar per recorded chain time at its underlying price (chain files without candles):
    the bar ends at the snapshot's time, so the strategy sees it with the chain."""
    times = sorted(
        {s.ts_event: s.underlying_price for s in snaps if s.underlying == underlying}.items()
    )
    ts = np.array([t for t, _ in times], dtype=np.int64)
    px = np.array([p for _, p in times], dtype=np.int64)
    tf = timeframe
    if len(ts) > 1:
        gap = int(np.median(np.diff(ts)) // NS_PER_SECOND)
        tf = max(gap, 1)
    inst = Equity(1, snaps[0].exchange, underlying, underlying, "", 1, 5)
    return BarSeries(inst, tf, ts - tf * NS_PER_SECOND, px, px, px, px, np.zeros_like(ts))


def option_master(
    underlying_bars: BarSeries, stores: Sequence[Path], snaps: Sequence[ChainSnapshot]
) -> InstrumentMaster:
    """The underlying's stand-in, the simulation's contracts (stores recorded on the simulator)
    and, for contracts the snapshots quote that neither lists, contracts made from the snapshots."""
    from mandi.services.backtest.api import chain_instruments
    from mandi.services.backtest.data import open_store, store_master

    master = InstrumentMaster([underlying_bars.instrument])
    keys: set[tuple[Any, ...]] = set()
    for path in stores:
        con = open_store(path)
        try:
            recorded = store_master(con)
        finally:
            con.close()
        for inst in recorded:
            if isinstance(inst, Option) and inst.token not in master:
                key = (inst.underlying, inst.expiry, inst.strike, inst.option_type)
                if key not in keys:
                    keys.add(key)
                    master.add(inst)
    for opt in chain_instruments(snaps, master):
        key = (opt.underlying, opt.expiry, opt.strike, opt.option_type)
        if key not in keys:
            keys.add(key)
            master.add(opt)
    return master


def option_configs(
    cfg: BacktestConfig, risk: RiskConfig | None, trading: TradingConfig | None
) -> tuple[RiskConfig, TradingConfig]:
    """Fills at the recorded touch; without a config file the strategy owns its exits."""
    r = risk
    if r is None:
        r = msgspec.structs.replace(
            default_risk(cfg.cash_inr), option_stop_loss_pct=0.0, option_target_pct=0.0
        )
    t = trading or TradingConfig()
    t = msgspec.structs.replace(t, paper=msgspec.structs.replace(t.paper, price_source="touch"))
    return r, t


def run_option_legs(
    data: Any,
    strategy: Any,
    cls: type,
    cfg: BacktestConfig,
    *,
    symbols: Sequence[str] | None,
    timeframe: int | None,
    start_ns: int | None,
    end_ns: int | None,
    risk: RiskConfig | None,
    trading: TradingConfig | None,
    chains: Any,
    meta: Mapping[str, Any],
) -> BacktestResult:
    """Run an option-leg strategy (already built: ``strategy``) on recorded data (module doc)."""
    from mandi.services.backtest.api import load_chains
    from mandi.services.backtest.data import load_store_candles

    stores, sources = split_sources(data, chains)
    snaps = load_chains(sources)
    if end_ns is not None:
        snaps = [s for s in snaps if s.ts_event < end_ns]
    wanted = getattr(strategy.config, "underlying", "") or (symbols[0] if symbols else "")
    underlying = pick_underlying(wanted, snaps)
    snaps = [s for s in snaps if s.underlying == underlying]
    tf = timeframe or strategy.timeframe
    series: BarSeries | None = None
    for path in stores:
        try:
            found = load_store_candles(path, tf, (underlying,), 0, end_ns or 1 << 62)
        except BacktestError:
            continue  # no candles of that timeframe: fall back to the chains' prices
        series = found[0]
        break
    if series is None:
        series = bars_from_snapshots(snaps, underlying, tf)
    if start_ns is not None and not len(series.slice(start_ns, None)):
        raise BacktestError("--from: no data on or after it")
    master = option_master(series, stores, snaps)
    r, t = option_configs(cfg, risk, trading)
    eng = OptionLegEngine(
        [StrategyRun(strategy, (underlying,))],
        master,
        cfg,
        timeframe=series.timeframe,
        risk=r,
        trading=t,
    )
    was = gc.isenabled()
    gc.disable()
    try:
        raw = eng.run_bars([series], start_ns, snaps)
    finally:
        if was:
            gc.enable()
    info = {
        **meta,
        "engine": "option-legs",
        "symbols": [underlying],
        "underlying": underlying,
        "timeframe": series.timeframe,
        "chain_snapshots": len(snaps),
        "quotes": eng.quotes,
        "settlements": eng.settlements,
    }
    return from_raw(raw, info)
