"""Replay a recorded ``mandi run`` session through the backtester, tick by tick (I/O shell).

``mandi run`` stores every tick it processed (``ticks``, in arrival order) and the signals and
fills it made (``trading_signals``, ``fills``). :func:`replay` feeds those ticks, with the same
configuration (``--config`` of the run), through :meth:`BacktestEngine.run_ticks` — the candle
pipeline, the chain assembler, the trading kernel and the paper broker on the shared fill
simulator — and compares what it produces with what the live run recorded.

Depth: the ``ticks`` table keeps price, volume, OI, bid and ask but not the quoted quantities,
which the paper broker uses to size a fill. A session recorded on the simulator is deterministic
for its seed, so the replay regenerates the simulator's ticks alongside the stored ones and takes
the quoted quantities from them — only where the regenerated tick is identical to the stored one
in every stored field (the stored tick stays the source of truth). Without them (another feed, a
mismatch) an order is assumed covered by the displayed quantity (``limit_by_volume`` off for
that run), and a live fill that was partial shows up in :meth:`ReplayResult.differences`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mandi.backtest.bars import BacktestError
from mandi.backtest.engine import BacktestEngine, StrategyRun
from mandi.backtest.result import BacktestResult, from_raw
from mandi.model.instruments import InstrumentMaster
from mandi.model.market import Tick


@dataclass
class ReplayResult:
    """The replay's result and the live run's record, side by side."""

    result: BacktestResult
    recorded_signals: list[tuple[Any, ...]]
    replayed_signals: list[tuple[Any, ...]]
    recorded_fills: list[tuple[Any, ...]]
    replayed_fills: list[tuple[Any, ...]]
    ticks: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def signals_match(self) -> bool:
        return self.recorded_signals == self.replayed_signals

    @property
    def fills_match(self) -> bool:
        return self.recorded_fills == self.replayed_fills

    def differences(self, limit: int = 5) -> list[str]:
        out = []
        for what, a, b in (
            ("signal", self.recorded_signals, self.replayed_signals),
            ("fill", self.recorded_fills, self.replayed_fills),
        ):
            sa, sb = set(a), set(b)
            out += [f"{what} only in the live run: {x}" for x in sorted(sa - sb)[:limit]]
            out += [f"{what} only in the replay: {x}" for x in sorted(sb - sa)[:limit]]
        return out


def _ticks(
    con: sqlite3.Connection,
    master: InstrumentMaster,
    depth: Iterator[Tick] | None,
    stats: dict[str, int],
) -> Iterator[Tick]:
    ex = {i.token: i.exchange for i in master}
    from mandi.stores.history import recorded_ticks

    for rows in recorded_ticks(con):
        for ts, token, price, volume, oi, bid, ask in rows:
            t = Tick(token, ex.get(token, "NSE"), ts, ts, price, volume, 0, oi, bid, ask)
            if depth is not None:
                d = next(depth, None)
                same = d is not None and (
                    (d.token, d.ts_event, d.price, d.volume, d.oi, d.bid, d.ask)
                    == (token, ts, price, volume, oi, bid, ask)
                )
                if same and d is not None:
                    t = d
                    stats["with_depth"] += 1
                else:
                    depth = None
                    stats["depth_lost_at"] = ts
            yield t


def _sim_ticks(con: sqlite3.Connection) -> Iterator[Tick] | None:
    """The simulator's ticks for the recorded session (fresh, single-day recordings)."""
    import datetime as dt

    import msgspec

    from mandi.config import SimConfig
    from mandi.feeds.sim import SimExchange
    from mandi.stores.sqlite import get_meta

    ident, start = get_meta(con, "sim.identity"), get_meta(con, "sim.start_date")
    if not ident or not start:
        return None
    cfg = msgspec.json.decode(ident.encode(), type=SimConfig)
    ex = SimExchange(cfg, dt.date.fromisoformat(start))

    def gen() -> Iterator[Tick]:
        for minute in ex.ticks():
            yield from minute

    return gen()


def replay(db: str | os.PathLike[str], config: str | None = None) -> ReplayResult:
    """Replay the session stored in ``db`` with the run's configuration file ``config``."""
    import msgspec

    from mandi.config import load_config
    from mandi.execution.charges import ChargesModel, default_rate_table
    from mandi.ml.binding import bind_models
    from mandi.services.backtest.data import open_store, store_master
    from mandi.services.trading import prepare_config, strategy_specs
    from mandi.strategy.loader import build_strategies

    cfg = prepare_config(load_config(config, env={}))
    con = open_store(db)
    try:
        master = store_master(con)
        if not len(master):
            raise BacktestError(f"{db}: not a session recorded on the simulator (no sim identity)")
        built = build_strategies(strategy_specs(cfg))
        bind_models(s for s, _ in built)  # ML strategies: their models
        runs = [StrategyRun(s, spec.symbols) for s, spec in built]
        extra = ""
        if cfg.trading.charges.rates_file:
            with open(cfg.trading.charges.rates_file, encoding="utf-8") as f:
                extra = f.read()
        depth = _sim_ticks(con)
        trading = cfg.trading
        if depth is None:  # no quoted quantities: assume the displayed quantity covered orders
            paper = msgspec.structs.replace(trading.paper, limit_by_volume=False)
            trading = msgspec.structs.replace(trading, paper=paper)
        stats = {"with_depth": 0}
        eng = BacktestEngine(
            runs,
            master,
            timeframe=min(cfg.pipeline.timeframes),
            risk=cfg.risk,
            trading=trading,
            charges=ChargesModel(cfg.trading.charges, default_rate_table(extra)),
            exact_configs=True,
            replay=True,
        )
        from mandi.stores.history import (
            first_tick_ns,
            recorded_fills,
            recorded_signals,
            warm_up_candles,
        )

        # the warm-up of the live run: the stored candles before its first tick (the history
        # backfill of the preceding sessions), signals suppressed
        first = first_tick_ns(con)
        warm = warm_up_candles(con, eng.kernel.strategies.series(), first) if first else []
        raw = eng.run_ticks(
            _ticks(con, master, depth, stats),
            cfg.pipeline.timeframes,
            chains_interval_s=cfg.chains.interval_s if cfg.chains.enabled else None,
            warm=warm,
        )

        rec_sig = recorded_signals(con)
        rec_fill = recorded_fills(con)
    finally:
        con.close()
    st = raw.store
    rep_sig = sorted(
        (s.signal_id, s.strategy, s.action.value, s.ts_event, st.signal_state[s.signal_id][0])
        for s in st.signals.values()
    )
    rep_sig.sort(key=lambda x: (x[3], x[0]))
    rep_fill = sorted(
        ((f.fill_id, f.client_order_id, f.ts_event, f.quantity, f.price, f.charges)
         for f in st.fills.values()),
        key=lambda x: (x[2], x[0]),
    )  # fmt: skip
    res = from_raw(raw, {"engine": "replay", "strategy": ",".join(r.strategy.id for r in runs)})
    notes = [f"{stats['with_depth']} of {raw.bars} ticks carried quoted quantities"]
    if "depth_lost_at" in stats:
        notes.append(f"regenerated ticks diverged from the stored ones at {stats['depth_lost_at']}")
    return ReplayResult(res, rec_sig, rep_sig, rec_fill, rep_fill, raw.bars, notes)
