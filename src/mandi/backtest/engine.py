"""The event-driven backtester: the trading kernel of ``mandi run``, driven by a ``TestClock``
over recorded bars or ticks.

Everything between the data and the fills is the live code — :class:`~mandi.system.kernel.
TradingKernel` with its strategies, signal manager, risk engine, execution engine, order manager,
position book and Indian charges — and the broker is the paper broker
(:class:`~mandi.backtest.broker.BacktestBroker`, a :class:`~mandi.execution.paper.PaperBroker`)
over the shared fill simulator. The backtester only
decides *when* things happen and hands the kernel the market data.

Bar fill model (stated; tested)
-------------------------------
Bars of all series are merged by the time they *end*. For each bar ``[start, end)`` of an
instrument, in this order:

1. **Open** (clock = ``start``): working orders of the instrument accepted at or before ``start``
   fill at the bar's open (``FillSimulator.on_bar``), ``slippage_ticks`` against us; resting limits
   fill when the bar trades through them.
2. **Intrabar exits**: every open position of the instrument is walked along a *pessimistic* path
   open → adverse extreme → favourable extreme → close (for a long: open, low, high, close; for a
   short: open, high, low, close), at moments ``start``, ``start + ⅓``, ``start + ⅔`` and
   ``end − 1 ns``. At each point the kernel's own exit rules run (time rules, trailing stop,
   stop-loss, target — :func:`mandi.risk.exits.exit_reason`); an exit fills at the level it
   crossed — the stop, the target or the trailing level — or at the open when the bar opened
   beyond it (a gap). When one bar touches both stop and target, the stop wins.
3. **Close** (clock = ``end``): the last price becomes the close, positions are marked, the
   confirmed candle goes to the strategies (a strategy never sees a bar before it ends), their
   signals go through risk to the broker, and the kernel's time work runs (position monitor,
   intraday square-off, the daily-loss breaker, paced sends).
4. Orders accepted at ``end`` fill at the *next* bar's open (step 1) — or, with
   ``fill = "close"``, at once at this bar's close (an explicit, optimistic choice).

With several instruments, steps 1–2 of every bar that started before a moment run before the
bars ending at that moment are handed out (opens in start order; the intrabar walks of bars that
open together advance moment by moment, so the clock never goes back).

No look-ahead: the kernel only ever receives a bar after its end, and the fill simulator refuses
to fill an order on data that started before the order was accepted.

Tick replay
-----------
:meth:`BacktestEngine.run_ticks` replays recorded ticks exactly as ``mandi run`` processes them —
the candle pipeline, the option-chain assembler, ticks to the kernel and to the paper broker,
batches of 250 ms — so a recorded paper session is reproduced signal for signal and fill for fill.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from mandi.backtest.bars import BacktestError, BarSeries, merge_order
from mandi.backtest.broker import BacktestBroker
from mandi.backtest.config import BacktestConfig, kernel_configs
from mandi.backtest.store import BacktestStore
from mandi.bus.memory import MessageBus
from mandi.core.calendar import IST_OFFSET_NS, NS_PER_DAY, ist_date
from mandi.core.clock import NS_PER_SECOND, TestClock
from mandi.execution.charges import ChargesModel, RateTable, default_rate_table, parse_rates_csv
from mandi.execution.config import TradingConfig
from mandi.execution.memstore import MemoryTradingStore
from mandi.execution.paper import MemoryPaperBook
from mandi.model.instruments import InstrumentMaster
from mandi.model.market import Candle, ChainSnapshot, Tick
from mandi.model.orders import Intent, Product
from mandi.model.trading import PositionClosed, SignalGenerated
from mandi.risk import exits
from mandi.risk.config import RiskConfig
from mandi.risk.rules import (
    ALLOWED,
    ENTRY_RULES,
    EXIT_RULES,
    Decision,
    OrderContext,
    evaluate,
    trading_hours,
)
from mandi.strategy.base import Strategy
from mandi.strategy.engine import _overrides
from mandi.system.kernel import TradingKernel

log = logging.getLogger(__name__)

NO_CALENDAR_ENTRY = tuple(r for r in ENTRY_RULES if r is not trading_hours)
NO_CALENDAR_EXIT = tuple(r for r in EXIT_RULES if r is not trading_hours)
END_OF_DATA = "END_OF_DATA"


def zero_rate_table() -> RateTable:
    """Statutory charges of zero everywhere (``charges = "none"``)."""
    head = "effective_from,exchange,segment,stt_buy,stt_sell,txn,ipft,sebi,stamp_buy,gst,source\n"
    rows = [
        f"1900-01-01,{ex},{seg},0,0,0,0,0,0,0,none"
        for ex in ("NSE", "BSE")
        for seg in ("OPT", "FUT", "EQ_INTRADAY", "EQ_DELIVERY")
    ]
    return RateTable(parse_rates_csv(head + "\n".join(rows)))


def backdated_rate_table() -> RateTable:
    """The statutory rates, with the earliest known row of each (exchange, segment) also applied
    to trades before it (backtests of old data; stated in the result's notes)."""
    table = default_rate_table()
    first: dict[tuple[str, str], Any] = {}
    for r in table:
        key = (r.exchange, r.segment)
        if key not in first or r.effective_from < first[key].effective_from:
            first[key] = r
    import datetime as dt

    extra = [msgspec.structs.replace(r, effective_from=dt.date(1900, 1, 1)) for r in first.values()]
    return RateTable([*table, *extra])


@dataclass
class StrategyRun:
    """One strategy instance and the symbols it trades."""

    strategy: Strategy
    symbols: tuple[str, ...] = ()


@dataclass
class RawResult:
    """What one engine run produced (money in paise, times in ns)."""

    cash: int
    store: MemoryTradingStore
    times: np.ndarray  # equity sample times (bar ends)
    equity: np.ndarray  # cash + realized (net) + unrealized at each time
    in_market: np.ndarray  # bool: a position was open at each time
    bars: int
    signals: list[SignalGenerated]
    open_positions: list[Any]
    notes: list[str] = field(default_factory=list)
    series: list[BarSeries] = field(default_factory=list)
    denials: dict[str, int] = field(default_factory=dict)
    strategy_errors: dict[str, int] = field(default_factory=dict)


class BacktestEngine:
    """One backtest: build with the strategies, master and settings, then :meth:`run_bars` (or
    :meth:`run_ticks`) once."""

    def __init__(
        self,
        strategies: Sequence[StrategyRun],
        master: InstrumentMaster,
        config: BacktestConfig | None = None,
        *,
        timeframe: int,
        risk: RiskConfig | None = None,
        trading: TradingConfig | None = None,
        charges: ChargesModel | None = None,
        exact_configs: bool = False,
        replay: bool = False,
    ) -> None:
        self.config = cfg = config or BacktestConfig()
        self.master = master
        if exact_configs:  # a replay: the recorded run's settings, untouched
            r, t = risk or RiskConfig(), trading or TradingConfig()
        else:
            r, t = kernel_configs(cfg, timeframe, risk, trading)
        self.risk_config, self.trading_config = r, t
        self.clock: TestClock | _FeedClock = _FeedClock() if replay else TestClock(0)
        self.bus = MessageBus(self.clock)
        self.store = BacktestStore()
        self.cash = round((r.capital_inr if exact_configs else cfg.cash_inr) * 100)
        self.broker = BacktestBroker(self.clock, MemoryPaperBook(), t.paper, self.cash)
        self.notes: list[str] = []
        if charges is None:
            if cfg.charges == "none":
                charges = ChargesModel(t.charges, zero_rate_table())
            else:
                charges = ChargesModel(t.charges, backdated_rate_table())
        self.kernel = TradingKernel(
            bus=self.bus,
            clock=self.clock,
            master=master,
            mode="paper",
            store=self.store,
            broker=self.broker,
            trading=t,
            risk=r,
            charges=charges,
        )
        self.calendar_rules = exact_configs or cfg.calendar_for(timeframe)
        if not self.calendar_rules:
            self.kernel.risk.check = _check_without_calendar  # type: ignore[method-assign]
        self.runs = list(strategies)
        qty = 0 if exact_configs else cfg.quantity
        for run in self.runs:
            missing = self.kernel.add_strategy(run.strategy, run.symbols)
            if missing:
                raise BacktestError(
                    f"strategy {run.strategy.id}: no data for {', '.join(missing)}; "
                    f"loaded: {', '.join(sorted({i.symbol for i in master}))}"
                )
            if qty:
                run.strategy._emit = _fixed_quantity(run.strategy._emit, qty)
        self._closed_pnl = 0
        self._day_no = -1
        self._fills_seen = -1
        self._realized_today = 0
        self._day: Any = None
        self.bus.subscribe("position:closed", self._on_closed, name="backtest.equity")
        self.bars = 0
        self._ran = False

    def _on_closed(self, topic: str, ev: PositionClosed) -> None:
        self._closed_pnl += ev.position.realized_pnl

    def _equity(self) -> int:
        book = self.kernel.book
        eq = self.cash + self._closed_pnl
        if book.open_count:
            for p in book.open_positions():
                eq += p.realized + p.unrealized()
        return eq

    # --- bars -------------------------------------------------------------------------------------
    def run_bars(
        self,
        series: Sequence[BarSeries],
        start_ns: int | None = None,
        chains: Sequence[ChainSnapshot] = (),
    ) -> RawResult:
        """Run over ``series`` (bars before ``start_ns`` only warm the strategies up).

        ``chains`` — option-chain snapshots (NSE files, the store) — are published on
        ``chain:{underlying}:{expiry}`` as time reaches them, before the bars ending then are
        handed out; ``on_chain`` strategies get the latest once per timeframe bucket."""
        if self._ran:
            raise BacktestError("a BacktestEngine runs once; build a new one")
        if not isinstance(self.clock, TestClock):
            raise BacktestError("this engine was built for a tick replay (replay=True)")
        self._ran = True
        series = [s for s in series if len(s)]
        if not series:
            raise BacktestError("no bars to backtest")
        kernel = self.kernel
        warm: list[Candle] = []
        active: list[BarSeries] = []
        for s in series:
            if start_ns is not None:
                k = int(np.searchsorted(s.bucket, start_ns, "left"))
                if k:
                    warm += s.take(slice(0, k)).candles()
                active.append(s.take(slice(k, None)))
            else:
                active.append(s)
        warm.sort(key=lambda c: (c.bucket + c.timeframe * NS_PER_SECOND, -c.bucket, c.token))
        first = min((int(s.bucket[0]) for s in active if len(s)), default=0)
        self.clock.set(first - 1)
        # start first, then warm up: TradingKernel.start(warm) calls every on_start again after
        # the warm-up (StrategyEngine.start), which resets strategies that set state up there
        kernel.start(())
        kernel.strategies.warm_up(warm)
        # the finest series of each instrument is the one orders fill on
        finest: dict[int, int] = {}
        for k, s in enumerate(active):
            if not len(s):
                continue
            cur = finest.get(s.token)
            if cur is None or s.timeframe < active[cur].timeframe:
                finest[s.token] = k
        sids, idxs = merge_order(active)
        n = len(sids)
        # plain lists while running (cheaper item stores than NumPy), arrays at the end
        times_l: list[int] = [0] * n
        equity_l: list[int] = [0] * n
        in_market_l: list[bool] = [False] * n
        sq = self.kernel.limits.square_off
        sq_ns = (sq.hour * 3600 + sq.minute * 60 + sq.second) * NS_PER_SECOND
        chain_strats = any(_overrides(r.strategy, "on_chain") for r in self.runs)
        lean = self._one_series_loop(active, chain_strats, len(chains))
        planned = self._plan(active[0], warm) if lean else None
        # the bar loops read plain lists (cheaper items than NumPy's); the compiled route reads
        # only the bars it does not skip, so it reads the arrays item by item instead
        column: Callable[[np.ndarray], Any] = _Items if planned is not None else np.ndarray.tolist
        cols = []
        masks = []
        for k, s in enumerate(active):
            # bars whose last moment is at or after the intraday square-off time
            tod = (s.end - 1 + IST_OFFSET_NS) % NS_PER_DAY
            late_a = tod >= sq_ns  # the bar's last moment
            late_end_a = (s.end + IST_OFFSET_NS) % NS_PER_DAY >= sq_ns  # its end
            day_a = (s.end + IST_OFFSET_NS) // NS_PER_DAY
            masks.append((late_a, late_end_a, day_a))
            cols.append(
                (
                    s.instrument.token,
                    s.instrument.exchange,
                    s.timeframe,
                    *map(column, (s.bucket, s.end, s.open, s.high, s.low, s.close, s.volume)),
                    column(s.oi) if s.oi.any() else [0] * len(s),  # no OI: one shared 0
                    finest.get(s.token) == k,
                    column(late_a),
                    column(late_end_a),
                    None if lean else column(day_a),  # the lean loop works it out when due
                )
            )
        clock_set = self.clock.set
        book = kernel.book
        ticks = _BarTicks()
        kernel.market.ticks = ticks  # last prices, built into Ticks only when read
        pending = ticks.pending
        has_orders = self.broker.sim.has_orders
        match_bar = self.broker.match_bar
        match_price = self.broker.match_price
        dispatch = kernel.strategies.handle_candle
        om = kernel.orders
        assert om is not None
        monitor_ns = int(self.trading_config.monitor_interval_s * NS_PER_SECOND)
        next_monitor = 0
        next_second = 0
        fill_close = self.config.fill == "close"
        cash = self.cash
        open_by_token = book._open_by_token
        cum_volume: dict[int, int] = {}
        monitor = self._monitor
        snaps = sorted(chains, key=lambda x: (x.ts_event, x.underlying, x.expiry))
        chain_ts = [x.ts_event for x in snaps]
        nc, ci = len(snaps), 0
        on_snapshot = self.handle_snapshot
        walk_plan, walk = self._walk_plan, self._walk
        if lean:
            if planned is not None:  # the quiet stretches write whole runs of these
                times_l = np.zeros(n, dtype=np.int64)  # type: ignore[assignment]
                equity_l = np.zeros(n, dtype=np.int64)  # type: ignore[assignment]
                in_market_l = np.zeros(n, dtype=bool)  # type: ignore[assignment]
            self._loop_one(
                active[0], cols[0], times_l, equity_l, in_market_l, monitor_ns, fill_close, cash,
                planned, masks[0], warm,
            )  # fmt: skip
            times_l = active[0].end.copy()  # type: ignore[assignment]  # a sample per bar end
        else:
            # the open phases (fills at the open, intrabar exits) in start order: every bar that
            # started before a moment is opened before the bars ending at that moment are handed
            # out
            ex_sid = [k for k, c in enumerate(cols) if c[11]]
            o_sid = np.concatenate([np.full(len(active[k]), k, dtype=np.int64) for k in ex_sid])
            o_idx = np.concatenate([np.arange(len(active[k]), dtype=np.int64) for k in ex_sid])
            o_b = np.concatenate([active[k].bucket for k in ex_sid])
            o_order = np.lexsort((o_sid, o_b))
            ob_sid, ob_idx, ob_b = (
                o_sid[o_order].tolist(),
                o_idx[o_order].tolist(),
                o_b[o_order].tolist(),
            )
            n_open, op_ptr = len(ob_b), 0
            for j, (sid, i) in enumerate(zip(sids.tolist(), idxs.tolist(), strict=True)):
                tok, ex, tf, bk, en, op, hi, lo, cl, vo, oi, exec_series, _late, late_end, day = (
                    cols[sid]
                )
                b, e, c = bk[i], en[i], cl[i]
                if op_ptr < n_open and ob_b[op_ptr] < e:
                    plans = []
                    while op_ptr < n_open and ob_b[op_ptr] < e:
                        s2, i2 = ob_sid[op_ptr], ob_idx[op_ptr]
                        op_ptr += 1
                        c2 = cols[s2]
                        t2 = c2[0]
                        orders, held = has_orders(t2), t2 in open_by_token
                        if not (orders or held):
                            continue
                        b2 = c2[3][i2]
                        bar = Candle(
                            t2, c2[1], c2[2], b2, c2[5][i2], c2[6][i2], c2[7][i2], c2[8][i2],
                            c2[9][i2], c2[10][i2], 1, True,
                        )  # fmt: skip
                        if orders:
                            clock_set(b2)
                            match_bar(t2, bar)
                        if t2 in open_by_token:
                            plan = walk_plan(t2, bar, b2, c2[4][i2], c2[12][i2])
                            if plan is not None:
                                plans.append(plan)
                    if plans:
                        walk(plans)
                candle = Candle(tok, ex, tf, b, op[i], hi[i], lo[i], c, vo[i], oi[i], 1, True)
                while ci < nc and chain_ts[ci] <= e:
                    clock_set(chain_ts[ci])  # at its own moment (the clock never goes back)
                    on_snapshot(snaps[ci])
                    ci += 1
                clock_set(e)
                if exec_series:
                    v = cum_volume[tok] = cum_volume.get(tok, 0) + vo[i]
                    pending[tok] = (ex, e, c, v, oi[i])
                    ps = open_by_token.get(tok)
                    if ps:
                        for p in ps.values():
                            p.update_price(c, e)
                dispatch("", candle)
                if fill_close and has_orders(tok):
                    match_price(tok, c, e + 1)
                # the kernel's time work (TradingKernel.handle_time), at bar cadence: paced sends,
                # chain dispatch, the position monitor (time exits, the daily-loss breaker)
                if om.queue:
                    om.pump()
                if chain_strats and e >= next_second:
                    next_second = e + NS_PER_SECOND
                    kernel.strategies.handle_time(e)
                times_l[j] = e
                if open_by_token:
                    unreal = booked = 0
                    dated = False
                    for pb in open_by_token.values():
                        for p in pb.values():
                            unreal += p.unrealized()
                            booked += p.realized
                            dated = dated or p.expiry is not None
                    if e >= next_monitor:
                        next_monitor = e + monitor_ns
                        monitor(e, day[i], late_end[i] or dated, unreal)
                        if open_by_token:
                            unreal = booked = 0
                            for pb in open_by_token.values():
                                for p in pb.values():
                                    unreal += p.unrealized()
                                    booked += p.realized
                    equity_l[j] = cash + self._closed_pnl + booked + unreal
                    in_market_l[j] = True
                else:
                    equity_l[j] = cash + self._closed_pnl
        self.bars = n
        times = np.asarray(times_l, dtype=np.int64)
        equity = np.asarray(equity_l, dtype=np.int64)
        in_market = np.asarray(in_market_l, dtype=bool)
        changed = self.before_end()
        if self.config.close_at_end and open_by_token:
            self._flatten(active)
            changed = True
        if changed and n:
            equity[-1] = self._equity()
        if om.queue:
            om.pump()
        kernel.stop()
        # one sample per moment (several series may end a bar together): keep the last
        if n > 1:
            keep = np.r_[times[1:] != times[:-1], True]
            times, equity, in_market = times[keep], equity[keep], in_market[keep]
        return self._raw(times, equity, in_market, n, active)

    @staticmethod
    def _one_series_loop(active: list[BarSeries], chain_strats: bool, chains: int) -> bool:
        """The common case the lean loop (:meth:`_loop_one`) covers: one series, no chains,
        bars one after the other (each starts at or after the previous one's end)."""
        if len(active) != 1 or chain_strats or chains:
            return False
        s = active[0]
        return bool(len(s) < 2 or (s.bucket[1:] >= s.end[:-1]).all())

    def _plan(
        self, s: BarSeries, warm: Sequence[Candle]
    ) -> tuple[np.ndarray, list[Callable[[int], None]], int] | None:
        """The compiled route of the lean loop: if every strategy on ``s`` gives a
        :class:`~mandi.strategy.base.BarPlan` (:meth:`~mandi.strategy.base.Strategy.
        compile_bars`), the bars any of them acts on, their ``seek`` functions and the number
        of warm-up bars before ``s`` (plans index warm-up and run bars together); else None."""
        key = (s.token, s.timeframe)
        strategies = self.kernel.strategies._by_series.get(key, [])
        warm_close = [c.close for c in warm if (c.token, c.timeframe) == key]
        close = np.concatenate([np.asarray(warm_close, dtype=np.int64), s.close])
        w = len(warm_close)
        act = np.zeros(len(s), dtype=bool)
        seeks = []
        for strategy in strategies:
            try:
                plan = strategy.compile_bars(s.token, close)
                if plan is not None and len(plan.act) != len(close):
                    raise ValueError(f"its plan has {len(plan.act)} bars, not {len(close)}")
            except Exception as e:  # a broken plan costs speed, not the backtest
                self.notes.append(
                    f"strategy {strategy.id}: compile_bars failed ({type(e).__name__}: {e}); "
                    "called on every bar instead"
                )
                return None
            if plan is None:
                return None
            act |= np.asarray(plan.act[w:], dtype=bool)
            seeks.append(plan.seek)
        return act, seeks, w

    def _catch_up(self, s: BarSeries, warm: Sequence[Candle]) -> None:
        """After a planned run: the context's candle history and the dispatcher's last bucket
        of ``s`` as if every bar had been handed out."""
        strategies = self.kernel.strategies
        ctx = strategies.ctx
        key = (s.token, s.timeframe)
        keep = ctx._history
        recent = s.take(slice(max(0, len(s) - keep), len(s))).candles()
        if len(recent) < keep:
            before = [c for c in warm if (c.token, c.timeframe) == key]
            recent = before[max(0, len(before) - (keep - len(recent))) :] + recent
        ctx._candles[key] = deque(recent, maxlen=keep)
        if len(s):
            strategies._last_bucket[key] = int(s.bucket[-1])

    def _loop_one(
        self,
        s: BarSeries,
        col: tuple[Any, ...],
        times_l: list[int],
        equity_l: list[int],
        in_market_l: list[bool],
        monitor_ns: int,
        fill_close: bool,
        cash: int,
        planned: tuple[np.ndarray, list[Callable[[int], None]], int] | None = None,
        masks: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        warm: Sequence[Candle] = (),
    ) -> None:
        """:meth:`run_bars`' loop for one series (the same steps in the same order — a test holds
        the two loops to the same result), lean: each bar is one :class:`Candle` handed to the
        strategies by the series' own dispatcher (:meth:`~mandi.strategy.engine.StrategyEngine.
        series_dispatcher`); the common bar of one open position that no exit rule can reach
        (no trailing stop, expiry or halt; its stop and target outside the bar's range — or,
        after the square-off time, for a position no time rule closes, outside the four prices
        the walk would visit) is marked in place without a walk; the equity sum reads the
        positions' fields; and the position monitor is entered only when it has something to
        do (at a bar ending at the square-off time, not for that one position if it is still
        alone and unfilled and its close reaches no level).

        ``planned`` (:meth:`_plan`): the strategies are called only on the bars they act on
        (after their ``seek``), and every stretch of quiet bars — no working order, no acting
        strategy, at most one open position that no exit rule or monitor check can touch — runs
        in one compiled pass (:func:`mandi.backtest._ekernels.quiet_bars`) writing the same
        equity samples and marks the bar-by-bar loop would."""
        kernel = self.kernel
        tok, ex, tf, bk, en, op, hi, lo, cl, vo, oi, _, late, late_end, _ = col
        assert isinstance(self.clock, TestClock)
        clock_set = self.clock.set
        book = kernel.book
        open_by_token = book._open_by_token
        ticks = kernel.market.ticks
        assert isinstance(ticks, _BarTicks)
        pending = ticks.pending
        working = self.broker.sim._by_token  # tok in working: has_orders(tok), without a call
        match_bar, match_price = self.broker.match_bar, self.broker.match_price
        dispatch = kernel.strategies.series_dispatcher(tok, tf)
        om = kernel.orders
        assert om is not None
        risk, fills = kernel.risk, kernel.execution.fills
        timeless_fills = -1
        day_no = day_lo = day_hi = 0  # the IST day number of [day_lo, day_hi) (ns UTC)
        mis = Product.MIS.value  # a position's product is the plain string
        max_loss = kernel.limits.max_daily_loss
        no_trailing = kernel.limits.trailing_stop <= 0
        walk_plan, walk, monitor = self._walk_plan, self._walk, self._monitor
        next_monitor = 0
        cum = 0
        n = len(s)
        act: Any = None
        seeks: list[Callable[[int], None]] = []
        w = 0
        if planned is not None:
            from mandi.backtest._ekernels import quiet_bars

            assert masks is not None
            act, seeks, w = planned
            late_a, late_end_a, day_a = masks
            end_a, high_a, low_a, close_a, volume_a = s.end, s.high, s.low, s.close, s.volume
            times_a, equity_a, in_market_a = times_l, equity_l, in_market_l
            # int64 products in the kernel: only for prices and sizes far from overflow
            big = max(int(np.abs(s.high).max()), int(np.abs(s.low).max()), 1) if n else 1
        i = 0
        while i < n:
            if act is not None and not om.queue and tok not in working and not risk.halted:
                p: Any = None
                quiet = not open_by_token
                if not quiet and no_trailing and len(open_by_token) == 1:
                    ps = open_by_token.get(tok)
                    if ps is not None and len(ps) == 1 and fills.count == self._fills_seen:
                        (p,) = ps.values()
                        quiet = (
                            not p.closing
                            and p.expiry is None
                            and p.is_open
                            and p.quantity * big < 2**62
                            and abs(p.cost) < 2**62
                        )
                if quiet:
                    held = p is not None
                    k, water, nm, vol = quiet_bars(
                        i, act, late_a, late_end_a, day_a, end_a, high_a, low_a, close_a,
                        volume_a, held, held and p.product == Product.MIS,
                        p.direction if held else 0, p.quantity if held else 0,
                        p.cost if held else 0, p.entry_price if held else 0,
                        (p.stop_loss or 0) if held else 0, (p.target or 0) if held else 0,
                        p.high_water if held else 0,
                        cash + self._closed_pnl + (p.realized if held else 0), self._day_no,
                        self._realized_today, max_loss, next_monitor, monitor_ns,
                        times_a, equity_a, in_market_a,
                    )  # fmt: skip
                    if k > i:
                        last = k - 1
                        e = en[last]
                        if held:
                            p.current_price = cl[last]
                            p.high_water = water
                            if e > p.updated_ns:
                                p.updated_ns = e
                            next_monitor = nm
                        cum += vol
                        pending[tok] = (ex, e, cl[last], cum, oi[last])
                        clock_set(e)
                        i = k
                        if i >= n:
                            break
            b = bk[i]
            e = en[i]
            c = cl[i]
            h = hi[i]
            low = lo[i]
            bar = Candle(tok, ex, tf, b, op[i], h, low, c, vo[i], oi[i], 1, True)
            matched = tok in working  # has_orders(tok)
            if matched:
                clock_set(b)
                match_bar(tok, bar)
            marked = False  # the one open position is marked at the close already
            timeless: Any = None  # ... and no exit rule can fire for it at the end (monitor)
            ps = open_by_token.get(tok)
            if ps:
                quiet = False
                if no_trailing and len(ps) == 1 and not risk.latch.halted:
                    (p,) = ps.values()
                    if p.closing:
                        quiet = True  # the walk skips it too
                    elif p.expiry is None:
                        sl, tg = p.stop_loss, p.target
                        long = p.direction > 0
                        water = p.high_water
                        if not late[i]:
                            if long:
                                quiet = not ((sl and low <= sl) or (tg and h >= tg))
                                if quiet:  # Position.update_price(high, b), then (close, e)
                                    if water == 0 or h > water:
                                        water = h
                                    if water == 0 or c > water:
                                        water = c
                            else:
                                quiet = not ((sl and h >= sl) or (tg and low <= tg))
                                if quiet:
                                    if water == 0 or low < water:
                                        water = low
                                    if water == 0 or c < water:
                                        water = c
                        elif p.product != mis:
                            # a late bar of a position no time rule closes: the walk's prices
                            # (open, adverse, favourable, close) decide, as the walk would
                            path = (op[i], low, h, c) if long else (op[i], h, low, c)
                            if long:
                                quiet = not ((sl and min(path) <= sl) or (tg and max(path) >= tg))
                            else:
                                quiet = not ((sl and max(path) >= sl) or (tg and min(path) <= tg))
                            if quiet:
                                for x in path:
                                    if water == 0 or (x > water if long else x < water):
                                        water = x
                        if quiet:
                            p.high_water = water
                            p.current_price = c
                            if e > p.updated_ns:
                                p.updated_ns = e
                            marked = True
                            if p.product != mis and not (
                                (sl and (c <= sl if long else c >= sl))
                                or (tg and (c >= tg if long else c <= tg))
                            ):
                                timeless, timeless_fills = p, fills.count
                if not quiet:
                    plan = walk_plan(tok, bar, b, e, late[i])
                    if plan is not None:
                        walk([plan])
            clock_set(e)
            cum += vo[i]
            pending[tok] = (ex, e, c, cum, oi[i])
            if not marked and (ps or matched):  # else still nothing open (nothing ran since)
                ps = open_by_token.get(tok)
                if ps:
                    for p in ps.values():
                        p.update_price(c, e)
            if act is None:
                dispatch(bar)
            elif act[i]:
                for seek in seeks:
                    seek(w + i)
                dispatch(bar)
            if fill_close and tok in working:
                match_price(tok, c, e + 1)
            if om.queue:  # (pump replaces the deque: read it through the manager)
                om.pump()
            if open_by_token:
                unreal = booked = count = 0
                dated = False
                for pb in open_by_token.values():
                    for p in pb.values():
                        q = p.quantity  # Position.unrealized() and .realized, inlined
                        if q:
                            unreal += p.direction * (
                                q * (p.current_price or p.entry_price) - p.cost
                            )
                        booked += p.realized_gross - p.charges
                        dated = dated or p.expiry is not None
                        count += 1
                if e >= next_monitor:
                    next_monitor = e + monitor_ns
                    # a late end is a time rule's moment — but not for the one position that
                    # was marked above, still alone and unfilled since: the rules found nothing
                    timed = dated or (
                        late_end[i]
                        and not (count == 1 and p is timeless and fills.count == timeless_fills)
                    )
                    if not day_lo <= e < day_hi:  # a new IST day (big-int division only then)
                        day_no = (e + IST_OFFSET_NS) // NS_PER_DAY
                        day_lo = day_no * NS_PER_DAY - IST_OFFSET_NS
                        day_hi = day_lo + NS_PER_DAY
                    if (  # else the monitor would return at once (see _monitor)
                        timed
                        or risk.latch.halted
                        or day_no != self._day_no
                        or fills.count != self._fills_seen
                        or self._realized_today + unreal <= -max_loss
                    ):
                        monitor(e, day_no, timed, unreal)
                        if open_by_token:
                            unreal = booked = 0
                            for pb in open_by_token.values():
                                for p in pb.values():
                                    unreal += p.unrealized()
                                    booked += p.realized
                equity_l[i] = cash + self._closed_pnl + booked + unreal
                in_market_l[i] = True
            else:
                equity_l[i] = cash + self._closed_pnl
            i += 1
        if act is not None:  # the strategies and the context end as if they saw every bar
            for seek in seeks:
                seek(w + n)
            self._catch_up(s, warm)

    def handle_snapshot(self, snap: ChainSnapshot) -> None:
        """A recorded chain snapshot reached by the clock: published on
        ``chain:{underlying}:{expiry}`` (the option-leg engine also trades on its quotes)."""
        self.bus.publish(f"chain:{snap.underlying}:{snap.expiry.isoformat()}", snap)

    def before_end(self) -> bool:
        """Called once after the last bar, before ``close_at_end`` (the option-leg engine
        settles contracts expiring on the data's last day); True if it changed positions."""
        return False

    def _monitor(self, now: int, day_no: int, timed: bool, unrealized: int) -> None:
        """:meth:`TradingKernel.monitor` at bar cadence, without what a backtest has no use for
        (``position:updated`` events, the intraday drawdown mark of the daily row): the exit
        rules where one can fire at this moment (``timed``: a time rule may apply; stop, target
        and trailing levels were already walked intrabar; a halt), and the daily-loss circuit
        breaker on realized + unrealized P&L (called when it would trip: it does nothing else)."""
        k = self.kernel
        if timed or k.risk.halted:
            k.execution.check_exits(k.book.open_positions())
            unrealized = k.book.unrealized()
        fills = k.execution.fills.count
        if day_no != self._day_no or fills != self._fills_seen:
            if day_no != self._day_no:
                self._day_no = day_no
                self._day = ist_date(now)
            self._fills_seen = fills
            self._realized_today = k.perf.realized(self._day)  # changes only with fills
        day = self._day
        if self._realized_today + unrealized > -k.limits.max_daily_loss:
            return
        was = k.risk.halted
        k.risk.check_breaker(lambda: k.perf.realized(day) + k.book.unrealized())
        if k.risk.halted and not was and k.orders is not None:
            k.orders.cancel_queued(Intent.ENTRY, "trading halted")

    def _walk_plan(
        self, tok: int, bar: Candle, start: int, end: int, late: bool
    ) -> tuple[int, Candle, tuple[int, int, int, int], list[Any]] | None:
        """The positions of ``tok`` to walk along the bar's pessimistic path (module doc), or
        None when no exit rule can fire within the bar (then only the best price is carried)."""
        ps = [p for p in self.kernel.book._open_by_token[tok].values() if not p.closing]
        if not ps:
            return None
        limits = self.kernel.limits
        if not late:
            may = self._may_exit
            for p in ps:
                if may(p, bar, limits):
                    break
            else:  # nothing can trigger: only carry the best price (trailing stops)
                for p in ps:
                    p.update_price(bar.high if p.direction > 0 else bar.low, start)
                return None
        span = end - start
        return tok, bar, (start, start + span // 3, start + 2 * span // 3, end - 1), ps

    def _walk(self, plans: list[tuple[int, Candle, tuple[int, int, int, int], list[Any]]]) -> None:
        """Walk every planned bar's positions moment by moment (moment k of all bars, then
        k + 1), so that the clock only moves forward when several instruments walk together."""
        check = self.kernel.execution.check_exits
        limits = self.kernel.limits
        clock = self.clock
        assert isinstance(clock, TestClock)
        for k in range(4):
            for tok, bar, moments, ps in plans:
                ts = moments[k]
                clock.set(ts)
                for p in ps:
                    if p.closing or not p.is_open:
                        continue
                    long = p.direction > 0
                    price = (
                        bar.open
                        if k == 0
                        else bar.close
                        if k == 3
                        else (bar.low if (k == 1) == long else bar.high)
                    )
                    p.update_price(price, ts)
                    if not check((p,)):
                        continue
                    level = price
                    if k:
                        r = p.exit_reason
                        if r == exits.STOP_LOSS and p.stop_loss:
                            level = p.stop_loss
                        elif r == exits.TARGET and p.target:
                            level = p.target
                        elif r == exits.TRAILING:
                            level = exits.trailing_stop(limits, p.direction, p.high_water) or price
                    self.broker.match_price(tok, level, clock.now_ns() + 1)

    def _may_exit(self, p: Any, bar: Candle, limits: Any) -> bool:
        """Whether any exit rule could fire for ``p`` within ``bar`` (a cheap pre-check; the
        kernel's rules decide)."""
        if p.expiry is not None or self.kernel.risk.halted:
            return True
        if p.direction > 0:
            if p.stop_loss and bar.low <= p.stop_loss:
                return True
            if p.target and bar.high >= p.target:
                return True
            if limits.trailing_stop > 0:
                hw = max(p.high_water, bar.high)
                return bar.low <= exits.trailing_stop(limits, 1, hw)
            return False
        if p.stop_loss and bar.high >= p.stop_loss:
            return True
        if p.target and bar.low <= p.target:
            return True
        if limits.trailing_stop > 0:
            hw = min(p.high_water, bar.low) if p.high_water else bar.low
            return bar.high >= exits.trailing_stop(limits, -1, hw)
        return False

    def _flatten(self, active: Sequence[BarSeries]) -> None:
        """Close what is still open at the last close (``close_at_end``)."""
        kernel = self.kernel
        last = {s.token: (int(s.close[-1]), int(s.end[-1])) for s in active if len(s)}
        saved = kernel.risk.check
        kernel.risk.check = lambda ctx: ALLOWED  # type: ignore[method-assign]
        try:
            for p in list(kernel.book.open_positions()):
                price, ts = last.get(p.token, (p.current_price, self.clock.now_ns()))
                p.closing = False
                kernel.execution.exit_position(p, END_OF_DATA)
                self.broker.match_price(p.token, price, max(ts, self.clock.now_ns()) + 1)
        finally:
            kernel.risk.check = saved  # type: ignore[method-assign]

    def _raw(
        self,
        times: np.ndarray,
        equity: np.ndarray,
        in_market: np.ndarray,
        bars: int,
        series: list[BarSeries],
    ) -> RawResult:
        k = self.kernel
        return RawResult(
            cash=self.cash,
            store=self.store,
            times=times,
            equity=equity,
            in_market=in_market,
            bars=bars,
            signals=list(self.store.signals.values()),
            open_positions=[p.to_record() for p in k.book.open_positions()],
            notes=list(self.notes),
            series=list(series),
            denials=dict(k.risk.denials),
            strategy_errors=dict(k.strategies.errors),
        )

    # --- ticks ------------------------------------------------------------------------------------
    def run_ticks(
        self,
        ticks: Iterable[Tick],
        timeframes: Sequence[int],
        *,
        chains_interval_s: float | None = 1.0,
        batch_ns: int = 250_000_000,
        close_ns: int | None = None,
        observer: Callable[[Tick], None] | None = None,
        warm: Iterable[Candle] = (),
    ) -> RawResult:
        """Replay ``ticks`` (in recorded order) the way ``mandi run`` processes them (module doc):
        candles from the pipeline, chain snapshots every ``chains_interval_s`` of exchange time
        (None: no chain layer), ticks to the kernel and its paper broker; batches are the feed's
        250 ms steps. ``close_ns``, if given, confirms the last buckets at the end. ``warm``: the
        candles the strategies warm up on first (signals suppressed), as ``mandi run`` does."""
        from mandi.pipeline.candles import CandlePipeline
        from mandi.pipeline.chains import ChainAssembler

        if self._ran:
            raise BacktestError("a BacktestEngine runs once; build a new one")
        feed_clock = self.clock
        if not isinstance(feed_clock, _FeedClock):
            raise BacktestError("a tick replay needs an engine built with replay=True")
        self._ran = True
        kernel, bus = self.kernel, self.bus
        pipeline = CandlePipeline(bus, timeframes, known_tokens=set(self.master_tokens()))
        feed_clock.pipeline = pipeline
        bus.subscribe("tick:>", feed_clock.observe, name="backtest.clock")
        assembler = None
        if chains_interval_s is not None:
            assembler = ChainAssembler(self.master, source="sim")
            bus.subscribe("tick:>", lambda topic, t: assembler.handle_tick(t), name="chains.ticks")
        kernel.start(warm)
        publish, handle = bus.publish, pipeline.handle_tick
        step_ns = int((chains_interval_s or 1.0) * NS_PER_SECOND)
        next_chain = 0
        times: list[int] = []
        equity: list[int] = []
        in_market: list[bool] = []
        batch: list[Tick] = []
        step = None
        n = 0

        def emit_chains(stamp: int) -> None:
            assert assembler is not None
            for snap in assembler.snapshots(stamp):
                publish(f"chain:{snap.underlying}:{snap.expiry.isoformat()}", snap)

        def run_batch(b: list[Tick]) -> None:
            nonlocal next_chain
            for t in b:
                handle(t)
                # the chain stamped t is every quote before the first tick at or after t
                # (mandi.services.chains), built before that tick reaches anybody
                if assembler is not None and t.ts_event >= next_chain:
                    stamp = t.ts_event - t.ts_event % step_ns
                    next_chain = stamp + step_ns
                    emit_chains(stamp)
                publish(f"tick:{t.exchange}:{t.token}", t)
                if observer is not None:
                    observer(t)
            now = b[-1].ts_event
            times.append(now)
            equity.append(self._equity())
            in_market.append(kernel.book.open_count > 0)

        for t in ticks:
            n += 1
            s = t.ts_event // batch_ns
            if step is not None and s != step and batch:
                run_batch(batch)
                batch = []
            step = s
            batch.append(t)
        if batch:
            run_batch(batch)
        if close_ns is not None:
            pipeline.advance(close_ns)
            if assembler is not None and next_chain and close_ns >= next_chain:
                emit_chains(close_ns - close_ns % step_ns)
        kernel.handle_time()
        kernel.stop()
        self.bars = n
        return self._raw(
            np.asarray(times, dtype=np.int64),
            np.asarray(equity, dtype=np.int64),
            np.asarray(in_market, dtype=bool),
            n,
            [],
        )

    def master_tokens(self) -> list[int]:
        return [i.token for i in self.master]


class _Items:
    """A NumPy column read item by item as Python scalars (``int``, ``bool``)."""

    __slots__ = ("_a",)

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __getitem__(self, i: int) -> Any:
        return self._a[i].item()


class _BarTicks(dict):  # type: ignore[type-arg]
    """``MarketState.ticks`` for bar data: the last price of each instrument, kept as a cheap
    tuple per bar (or, for option contracts priced by chain snapshots, the recorded quote) and
    turned into a :class:`Tick` only when somebody reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[int, tuple[str, int, int, int, int]] = {}
        self.quoted: dict[int, tuple[str, int, Any]] = {}  # token -> (exchange, ts, OptionQuote)

    def _make(self, token: int) -> None:
        if token in self.pending:
            ex, ts, price, volume, oi = self.pending.pop(token)
            dict.__setitem__(self, token, Tick(token, ex, ts, ts, price, volume, 0, oi))
            return
        ex, ts, q = self.quoted.pop(token)
        last = q.ltp or ((q.bid + q.ask) // 2 if q.bid > 0 and q.ask > 0 else 0)
        tick = Tick(token, ex, ts, ts, last, q.volume, 0, q.oi, q.bid, q.ask, q.bid_qty, q.ask_qty)
        dict.__setitem__(self, token, tick)

    def get(self, token: int, default: Any = None) -> Any:
        if token in self.pending or token in self.quoted:
            self._make(token)
        return dict.get(self, token, default)

    def __getitem__(self, token: int) -> Tick:
        if token in self.pending or token in self.quoted:
            self._make(token)
        return dict.__getitem__(self, token)  # type: ignore[no-any-return]

    def __setitem__(self, token: int, tick: Tick) -> None:
        self.pending.pop(token, None)
        self.quoted.pop(token, None)
        dict.__setitem__(self, token, tick)

    def __contains__(self, token: object) -> bool:
        return token in self.pending or token in self.quoted or dict.__contains__(self, token)


class _FeedClock:
    """``mandi run``'s exchange clock for replayable feeds: the later of the pipeline's watermark
    and the last tick seen (``mandi.services.trading.FeedClock``)."""

    def __init__(self) -> None:
        self.pipeline: Any = None
        self._last = 0

    def observe(self, topic: str, tick: Tick) -> None:
        if tick.ts_event > self._last:
            self._last = tick.ts_event

    def now_ns(self) -> int:
        if self.pipeline is None:
            return self._last
        wm = self.pipeline.seconds.watermark_ns
        return wm if wm > self._last else self._last


def _check_without_calendar(ctx: OrderContext) -> Decision:
    return evaluate(ctx, NO_CALENDAR_ENTRY if ctx.intent is Intent.ENTRY else NO_CALENDAR_EXIT)


def _fixed_quantity(
    emit: Callable[[SignalGenerated], bool] | None, qty: int
) -> Callable[[SignalGenerated], bool]:
    assert emit is not None

    def fixed(sig: SignalGenerated) -> bool:
        if sig.quantity == 0:
            sig = msgspec.structs.replace(sig, quantity=qty)
        return emit(sig)

    return fixed
