"""``mandi.services.backtest.run(...)``: load data, build the strategy, run an engine, return a
:class:`~mandi.backtest.result.BacktestResult` — and :func:`replay` of a recorded ``mandi run``.

This is shell code (it reads files); the engines it drives are pure.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from mandi.backtest.bars import BacktestError, BarSeries
from mandi.backtest.config import BacktestConfig
from mandi.backtest.engine import BacktestEngine, StrategyRun
from mandi.backtest.result import BacktestResult, from_raw
from mandi.core.calendar import ist_ns
from mandi.core.errors import ConfigError
from mandi.execution.config import TradingConfig
from mandi.model.instruments import InstrumentMaster
from mandi.risk.config import RiskConfig
from mandi.strategy.loader import StrategySpec, build_strategy, strategy_class

log = logging.getLogger(__name__)

Data = str | os.PathLike[str] | BarSeries | Sequence[Any] | Any


def parse_day(text: str | dt.date | None, what: str) -> dt.date | None:
    if text is None or text == "":
        return None
    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(str(text)[:10])
    except ValueError:
        raise BacktestError(f"--{what}: expected a date YYYY-MM-DD, got {text!r}") from None


def load_data(
    data: Data,
    *,
    symbol: str | None = None,
    timeframe: int | None = None,
    lot_size: int = 1,
    tick_size: int = 5,
) -> list[BarSeries]:
    """Paths (CSV, Parquet, store), :class:`BarSeries` or pandas DataFrames → series, each
    instrument with its own token."""
    from mandi.services.backtest.data import _frame_to_series, load, make_instrument

    items = list(data) if isinstance(data, list | tuple) else [data]
    out: list[BarSeries] = []
    for k, item in enumerate(items):
        if isinstance(item, BarSeries):
            out.append(item)
        elif hasattr(item, "columns"):  # a pandas DataFrame
            inst = make_instrument(
                symbol or f"DATA{k + 1}", 1, lot_size=lot_size, tick_size=tick_size
            )
            out.append(_frame_to_series(item, f"DataFrame {k + 1}", inst, timeframe))
        else:
            out += load(
                item,  # type: ignore[arg-type]  # a path
                symbol=symbol if len(items) == 1 else None,
                timeframe=timeframe,
                lot_size=lot_size,
                tick_size=tick_size,
            )
    # one token per instrument (files default to token 1)
    seen: dict[int, str] = {}
    fixed: list[BarSeries] = []
    next_token = max((s.token for s in out), default=0) + 1
    for s in out:
        owner = seen.get(s.token)
        if owner is not None and owner != s.symbol:
            renamed: Any = msgspec.structs.replace(s.instrument, token=next_token)
            next_token += 1
            s = s.with_instrument(renamed)
        seen[s.token] = s.symbol
        fixed.append(s)
    symbols = [s.symbol for s in fixed]
    dup = {x for x in symbols if symbols.count(x) > 1}
    if dup and len({(s.symbol, s.timeframe) for s in fixed}) != len(fixed):
        raise BacktestError(f"two data sets for the same symbol {sorted(dup)}; pass symbol names")
    return fixed


def make_strategy(
    name: str, params: Mapping[str, Any] | None, timeframe: int, strategy_id: str = ""
) -> Any:
    """A strategy by built-in name or dotted path, its parameters checked by its config class."""
    try:
        strategy = build_strategy(
            StrategySpec(name, id=strategy_id or "", timeframe=timeframe, params=dict(params or {}))
        )
    except ValueError as e:  # a config class's own check (e.g. fast >= slow)
        raise ConfigError("params", dict(params or {}), str(e)) from None
    from mandi.ml.binding import bind_models

    bind_models([strategy])  # ML strategies: load the model their params name
    return strategy


def run(
    data: Data,
    strategy: str = "sma_cross",
    params: Mapping[str, Any] | None = None,
    *,
    symbols: Sequence[str] | None = None,
    timeframe: int | None = None,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    cash: float | None = None,
    quantity: int | None = None,
    commission: float | None = None,
    charges: str | None = None,
    slippage_ticks: int | None = None,
    fill: str | None = None,
    allow_short: bool | None = None,
    stop_loss_pct: float | None = None,
    target_pct: float | None = None,
    config: BacktestConfig | None = None,
    risk: RiskConfig | None = None,
    trading: TradingConfig | None = None,
    engine: str = "event",
    symbol: str | None = None,
    strategy_id: str = "",
    chains: Any = None,
) -> BacktestResult:
    """Backtest ``strategy`` on ``data``.

    Parameters
    ----------
    data : path, BarSeries, DataFrame or a list of them
        CSV (``datetime,open,high,low,close,volume`` or Yahoo), Parquet, or a ``mandi.db`` store.
    strategy : str
        A built-in (``sma_cross``, ``ema_cross``, ``rsi``, ``momentum``, ``oi_pcr``, and the
        option-leg strategies ``short_straddle`` and ``iron_condor``, which trade option
        contracts on recorded chain quotes: :mod:`mandi.services.backtest.options`) or
        ``module:Class``.
    params : mapping
        The strategy's parameters (checked by its config class).
    symbols : list of str, optional
        Which loaded instruments the strategy trades (default: all).
    timeframe : int, optional
        The strategy's bar length in seconds; the data is resampled up to it (default: the
        data's own).
    start, end : date or ``YYYY-MM-DD``, optional
        Trade from ``start`` through ``end`` (inclusive); earlier bars only warm the strategy up.
    cash, quantity, commission, charges, slippage_ticks, fill, allow_short, stop_loss_pct,
    target_pct
        Override the fields of ``config`` (:class:`~mandi.backtest.config.BacktestConfig`).
    risk, trading : optional
        The kernel's ``[risk]`` / ``[trading]`` settings (e.g. from ``mandi.toml``); default
        :func:`~mandi.backtest.config.default_risk`.
    chains : paths, a store, or ChainSnapshots, optional
        Option-chain snapshots for chain strategies (``oi_pcr``): NSE/BSE option-chain files or
        a ``mandi.db`` (its ``option_chain_snapshots``); an underlying's snapshots reach the
        strategy as time passes them.
    engine : ``"event"`` | ``"vector"`` | ``"auto"``
        The event-driven kernel (always right), the vectorized fast path (indicator crossovers
        only; the same trades), or the vectorized path where it applies.

    Returns
    -------
    BacktestResult
    """
    cfg = config or BacktestConfig()
    upd = {
        k: v
        for k, v in {
            "cash_inr": cash,
            "quantity": quantity,
            "commission_inr": commission,
            "charges": charges,
            "slippage_ticks": slippage_ticks,
            "fill": fill,
            "allow_short": allow_short,
            "stop_loss_pct": stop_loss_pct,
            "target_pct": target_pct,
        }.items()
        if v is not None
    }
    if upd:
        try:
            cfg = msgspec.convert(
                {**msgspec.structs.asdict(cfg), **upd}, BacktestConfig, strict=False
            )
        except msgspec.ValidationError as e:
            raise BacktestError(f"backtest settings: {e}") from None
    d0, d1 = parse_day(start, "from"), parse_day(end, "to")
    start_ns = ist_ns(d0) if d0 else None
    end_ns = ist_ns(d1 + dt.timedelta(days=1)) if d1 else None
    cls = strategy_class(strategy)
    if getattr(cls, "trades_option_legs", False):  # legs priced from recorded chains
        from mandi.services.backtest.options import run_option_legs

        if engine == "vector":
            raise BacktestError("--engine vector: option-leg strategies need the event engine")
        strat = make_strategy(strategy, params, timeframe or cls.default_timeframe, strategy_id)
        legs_meta: dict[str, Any] = {
            "strategy": strat.id,
            "strategy_class": f"{cls.__module__}:{cls.__qualname__}",
            "params": msgspec.to_builtins(strat.config),
            "quantity": cfg.quantity,
            "charges_model": cfg.charges,
            "slippage_ticks": cfg.slippage_ticks,
            "fill": "recorded bid/ask",
        }
        return run_option_legs(
            data,
            strat,
            cls,
            cfg,
            symbols=symbols,
            timeframe=timeframe,
            start_ns=start_ns,
            end_ns=end_ns,
            risk=risk,
            trading=trading,
            chains=chains,
            meta=legs_meta,
        )
    series = load_data(data, symbol=symbol, lot_size=cfg.lot_size, tick_size=cfg.tick_size_paise)
    if end_ns is not None:
        series = [s.slice(None, end_ns) for s in series]
    if symbols:
        have = {s.symbol for s in series}
        missing = [x for x in symbols if x not in have]
        if missing:
            raise BacktestError(
                f"--symbol: no data for {', '.join(missing)} (loaded: {', '.join(sorted(have))})"
            )
    base_tf = min(s.timeframe for s in series)
    tf = timeframe or base_tf
    traded = list(symbols) if symbols else sorted({s.symbol for s in series})
    feed = list(series)
    if tf != base_tf:
        feed += [s.resample(tf) for s in series if s.symbol in traded and s.timeframe < tf]
    if start_ns is not None and not any(len(s.slice(start_ns, None)) for s in feed):
        raise BacktestError(f"--from {d0}: no bars on or after it")
    strat = make_strategy(strategy, params, tf, strategy_id)
    meta: dict[str, Any] = {
        "strategy": strat.id,
        "strategy_class": f"{cls.__module__}:{cls.__qualname__}",
        "params": msgspec.to_builtins(strat.config),
        "symbols": traded,
        "timeframe": tf,
        "fill": cfg.fill,
        "quantity": cfg.quantity,
        "charges_model": cfg.charges,
        "slippage_ticks": cfg.slippage_ticks,
    }
    snaps = load_chains(chains) if chains is not None else []
    if snaps and engine == "vector":
        raise BacktestError("--engine vector: option chains need the event-driven engine")
    use_vector = engine == "vector" and not snaps
    if engine == "auto":
        from mandi.backtest.vector import supports

        use_vector = not snaps and supports(strat, cfg, traded, feed, tf, risk, trading) is None
    if use_vector:
        from mandi.backtest.vector import run_vector

        meta["engine"] = "vector"
        return run_vector(strat, feed, cfg, tf, traded, start_ns, meta, risk=risk, trading=trading)
    if engine not in ("event", "auto", "vector"):
        raise BacktestError(f"--engine: use event, vector or auto, not {engine!r}")
    meta["engine"] = "event"
    master = InstrumentMaster()
    for s in feed:
        if s.token not in master:
            master.add(s.instrument)
    for opt in chain_instruments(snaps, master):
        master.add(opt)
    eng = BacktestEngine(
        [StrategyRun(strat, tuple(traded))], master, cfg, timeframe=tf, risk=risk, trading=trading
    )
    # the run allocates millions of short-lived objects and keeps thousands of records alive:
    # the cyclic collector would re-scan those over and over (reference counting frees the rest)
    was = gc.isenabled()
    gc.disable()
    try:
        raw = eng.run_bars(feed, start_ns, snaps)
    finally:
        if was:
            gc.enable()
    return from_raw(raw, meta)


def load_chains(chains: Any) -> list[Any]:
    """Option-chain snapshots from paths (NSE/BSE files or a store) or snapshots as they are."""
    from mandi.model.market import ChainSnapshot
    from mandi.services.backtest.data import is_store, load_chain_files, load_store_chains

    items = list(chains) if isinstance(chains, list | tuple) else [chains]
    out: list[ChainSnapshot] = []
    files = []
    for it in items:
        if isinstance(it, ChainSnapshot):
            out.append(it)
        elif is_store(it):
            out += load_store_chains(it)
        else:
            files.append(it)
    if files:
        out += load_chain_files(files)
    if not out and items:
        raise BacktestError("--chains: no option-chain snapshots found")
    return out


def chain_instruments(snaps: Sequence[Any], master: InstrumentMaster) -> list[Any]:
    """Option contracts for the chains' strikes (so that the strategy engine knows their
    expiries); tokens from the snapshots, or made up where a file gives none."""
    from mandi.model.instruments import Option

    out: dict[tuple[Any, ...], Any] = {}
    next_token = 900_000_000
    used = {i.token for i in master}
    for snap in snaps:
        for row in snap.rows:
            for kind, q in (("CE", row.call), ("PE", row.put)):
                if q is None:
                    continue
                key = (snap.underlying, snap.expiry, row.strike, kind)
                if key in out:
                    continue
                token = q.token
                if not token or token in used:
                    while next_token in used:
                        next_token += 1
                    token = next_token
                used.add(token)
                sym = q.symbol or f"{snap.underlying}{snap.expiry:%y%b}{row.strike // 100}{kind}"
                out[key] = Option(
                    token,
                    snap.exchange,
                    sym.upper(),
                    snap.underlying,
                    "",
                    snap.lot_size,
                    5,
                    0,
                    underlying=snap.underlying,
                    expiry=snap.expiry,
                    strike=row.strike,
                    option_type=kind,
                )
    return list(out.values())
