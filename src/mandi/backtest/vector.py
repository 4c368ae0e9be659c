"""The vectorized fast path: indicator-crossover strategies over whole arrays.

For the built-in ``sma_cross`` and ``ema_cross`` on one instrument with a fixed quantity, the
signals are computed over the whole series (averages bit-identical to the incremental indicators
the strategy uses) and the trades by one compiled pass (:func:`mandi.backtest._vkernels.simulate`)
that applies, bar for bar, the event-driven engine's rules:

* the bar fill model of :mod:`mandi.backtest.engine` (next open or this close, slippage, the
  pessimistic intrabar path for stop-loss / target / trailing stop, gaps fill at the open);
* the execution engine's signal handling (an opposite signal closes the position, a repeated one
  is ignored, no shorts unless ``allow_short``, ``max_concurrent_positions``);
* the risk manager's calendar rules (trading hours, holidays, the entry cutoff) and exit rules
  (intraday square-off at ``risk.square_off``, stops and targets from ``risk.*_pct``);
* Indian charges per fill from the same :class:`~mandi.execution.charges.ChargesModel`.

Rules that depend on money (order/position value limits, available balance, the daily-loss
breaker, order-rate caps) cannot bind inside the loop; after the run they are checked against the
trades, and if any of them *would* have refused an order the result is rejected
(:class:`VectorUnsupported`) — ``engine="auto"`` then runs the event-driven engine. The same
strategy and fill model therefore give the same trades on both paths (tested on the NIFTY year).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from mandi.backtest.bars import BacktestError, BarSeries, ist_day, session_table
from mandi.backtest.config import BacktestConfig, kernel_configs
from mandi.backtest.engine import backdated_rate_table, zero_rate_table
from mandi.backtest.result import BacktestResult, Trade, iso
from mandi.backtest.stats import compute_stats
from mandi.core.calendar import IST_OFFSET_NS, MARKET_CLOSE, NS_PER_DAY, ist_date
from mandi.core.clock import NS_PER_SECOND
from mandi.execution.charges import ChargesModel, segment_of
from mandi.execution.config import TradingConfig
from mandi.model.instruments import Future, Index, Option
from mandi.model.orders import Product, Side
from mandi.risk.config import RiskConfig, RiskLimits
from mandi.strategy.base import Strategy
from mandi.strategy.builtin import EMACross, SMACross

REASONS = (
    "OPPOSITE_SIGNAL",
    "STOP_LOSS_HIT",
    "TARGET_REACHED",
    "TRAILING_STOP",
    "INTRADAY_SQUARE_OFF",
)


class VectorUnsupported(BacktestError):
    """The vectorized path cannot reproduce this run exactly (the message says why)."""


def supports(
    strategy: Strategy,
    cfg: BacktestConfig,
    symbols: Sequence[str],
    feed: Sequence[BarSeries],
    timeframe: int,
    risk: RiskConfig | None = None,
    trading: TradingConfig | None = None,
) -> str | None:
    """None if :func:`run_vector` applies, else the reason it does not."""
    if type(strategy) not in (SMACross, EMACross):
        return f"strategy {strategy.id} is not an indicator crossover (sma_cross, ema_cross)"
    if len(symbols) != 1 or len(feed) != 1:
        return "the vectorized path takes one instrument at one timeframe"
    s = feed[0]
    if s.timeframe != timeframe:
        return "the vectorized path does not resample"
    if cfg.quantity <= 0:
        return "the vectorized path needs a fixed quantity (--qty)"
    if cfg.quantity % max(s.instrument.lot_size, 1):
        return f"quantity {cfg.quantity} is not a multiple of the lot size"
    if isinstance(s.instrument, Index | Option | Future):
        return "the vectorized path trades equity-like instruments only"
    _, t = kernel_configs(cfg, timeframe, risk, trading)
    if t.order_type != "MARKET":
        return "the vectorized path fills market orders only"
    if not t.exit_on_opposite_signal or not t.enabled:
        return "the vectorized path assumes exit_on_opposite_signal and trading enabled"
    if t.paper.price_source != "last":
        return "the vectorized path prices fills at the last price"
    vol = s.volume[s.volume > 0]
    if (
        t.paper.limit_by_volume
        and len(vol)
        and int(vol.min() * t.paper.participation) < cfg.quantity
    ):
        return "some bars' volume is below the quantity (partial fills)"
    return None


def _calendar_masks(
    s: BarSeries, limits: RiskLimits, calendar_rules: bool
) -> tuple[np.ndarray, ...]:
    """Per bar: entries allowed, exits allowed, the bar inside one session, each of its four
    walk moments at or after the square-off, its end at or after it, its last moment at or
    after it — the kernel's calendar rules (:func:`~mandi.risk.config.before_close_ns`: a time
    is its distance before its session's close; time of day where there is no session)."""
    from mandi.backtest import _vkernels as vk

    n = len(s)
    b, e = s.bucket, s.end
    close_s = MARKET_CLOSE.hour * 3600 + MARKET_CLOSE.minute * 60
    table = session_table(s.instrument.exchange)
    if n:
        table.cover(int(ist_day(b.min())), int(ist_day(e.max())))

    def rule(t: dt.time) -> tuple[int, int]:
        t_s = t.hour * 3600 + t.minute * 60 + t.second
        return (close_s - t_s) * NS_PER_SECOND, t_s * NS_PER_SECOND

    sq_before, sq_tod = rule(limits.square_off)
    cut_before, cut_tod = rule(limits.entry_cutoff)
    entry_ok, exit_ok, bar_ok = (np.empty(n, dtype=bool) for _ in range(3))
    sq_moment = np.empty((n, 4), dtype=bool)
    sq_end, late_in = np.empty(n, dtype=bool), np.empty(n, dtype=bool)
    vk.calendar_masks(
        np.ascontiguousarray(b),
        np.ascontiguousarray(e),
        table.first,
        table.open,
        table.close,
        IST_OFFSET_NS,
        NS_PER_DAY,
        sq_before,
        sq_tod,
        cut_before,
        cut_tod,
        calendar_rules,
        entry_ok,
        exit_ok,
        bar_ok,
        sq_moment,
        sq_end,
        late_in,
    )
    return entry_ok, exit_ok, bar_ok, sq_moment, sq_end, late_in


def run_vector(
    strategy: Strategy,
    feed: Sequence[BarSeries],
    cfg: BacktestConfig,
    timeframe: int,
    symbols: Sequence[str],
    start_ns: int | None,
    meta: dict[str, Any] | None = None,
    *,
    risk: RiskConfig | None = None,
    trading: TradingConfig | None = None,
) -> BacktestResult:
    """The vectorized backtest (module docstring); raises :class:`VectorUnsupported` where it
    cannot reproduce the event-driven engine."""
    from mandi.backtest import _vkernels as vk

    why = supports(strategy, cfg, symbols, feed, timeframe, risk, trading)
    if why is not None:
        raise VectorUnsupported(why)
    s = feed[0]
    r, t = kernel_configs(cfg, timeframe, risk, trading)
    limits = RiskLimits.from_config(r)
    params = strategy.config
    close = s.close
    avg = vk.sma_exact if isinstance(strategy, SMACross) else vk.ema_exact
    fast = avg(close, params.fast)  # type: ignore[attr-defined]
    slow = avg(close, params.slow)  # type: ignore[attr-defined]
    start = 0 if start_ns is None else int(np.searchsorted(s.bucket, start_ns, "left"))
    sig = vk.cross_signals(fast, slow, start)
    a = slice(start, None)
    entry_ok, exit_ok, bar_ok, sq_moment, sq_end, late_in = _calendar_masks(
        s.take(a), limits, cfg.calendar_for(timeframe)
    )
    product = Product(t.product)
    qty = cfg.quantity
    tick = max(s.instrument.tick_size, 1)
    out = vk.simulate(
        s.bucket[a],
        s.end[a],
        s.open[a],
        s.high[a],
        s.low[a],
        close[a],
        np.ascontiguousarray(sig[a]),
        entry_ok,
        exit_ok,
        bar_ok,
        np.ascontiguousarray(sq_moment),
        sq_end,
        late_in,
        qty,
        t.allow_short,
        cfg.fill == "close",
        t.paper.slippage_ticks * tick,
        tick,
        limits.equity_stop_loss,
        limits.equity_target,
        limits.trailing_stop,
        product is Product.MIS,
        limits.max_concurrent_positions,
    )
    f_bar, f_ts, f_side, f_px, f_kind, f_reason, f_pos, pos_dir, pos_cost = out
    n = len(pos_dir)
    # --- charges per fill (exact decimal arithmetic, as the kernel)
    if cfg.charges == "none":
        model = ChargesModel(t.charges, zero_rate_table())
    else:
        model = ChargesModel(t.charges, backdated_rate_table())
    seg = segment_of(s.instrument, product)
    ex = s.instrument.exchange
    free = cfg.charges == "none" and t.charges.per_order_inr == 0 and t.charges.delivery_inr == 0
    if free:  # nothing to charge: skip the per-fill decimal arithmetic
        charges = np.zeros(len(f_bar), dtype=np.int64)
    else:
        charges = np.array(
            [
                model.compute(
                    exchange=ex,
                    segment=seg,
                    side=Side.BUY if side > 0 else Side.SELL,
                    quantity=qty,
                    price=int(px),
                    day=ist_date(int(ts)),
                ).total
                for side, px, ts in zip(f_side.tolist(), f_px.tolist(), f_ts.tolist(), strict=True)
            ],
            dtype=np.int64,
        )

    # --- trades
    trades: list[Trade] = []
    gross = np.zeros(len(f_bar), dtype=np.int64)
    open_fill: dict[int, int] = {}
    for k in range(len(f_bar)):
        pos = int(f_pos[k])
        if f_kind[k] == vk.ENTRY:
            open_fill[pos] = k
            continue
        e_k = open_fill.pop(pos)
        d = int(f_side[e_k])
        g = d * qty * (int(f_px[k]) - int(f_px[e_k]))
        gross[k] = g
        ch = int(charges[e_k] + charges[k])
        trades.append(
            Trade(
                entry_time=int(f_ts[e_k]),
                exit_time=int(f_ts[k]),
                side="BUY" if d > 0 else "SELL",
                quantity=qty,
                entry_price=int(f_px[e_k]),
                exit_price=int(f_px[k]),
                charges=ch,
                pnl=g - ch,
                symbol=s.symbol,
                strategy=strategy.id,
                exit_reason=REASONS[int(f_reason[k])],
            )
        )
    # --- the equity curve: fills up to and including each bar, the open position at its close
    cash = round(cfg.cash_inr * 100)
    flow = np.zeros(n + 1, dtype=np.int64)
    np.add.at(flow, f_bar + 1, gross - charges)
    booked = np.cumsum(flow)[1:]
    c_act = close[a]
    unreal = np.where(pos_dir != 0, pos_dir * (qty * c_act - pos_cost), 0)
    equity = cash + booked + unreal
    in_market = pos_dir != 0
    times = s.end[a]
    # --- would the money rules have refused an order?
    _check_money_rules(limits, t, f_bar, f_side, f_px, f_kind, charges, gross, qty, times)
    day_pnl_floor(limits, times, booked, unreal)
    open_n = 1 if n and pos_dir[-1] != 0 else 0
    stats = compute_stats(
        times,
        equity,
        in_market,
        cash,
        [tr.pnl for tr in trades],
        open_positions=open_n,
        bars=n,
        charges=int(charges.sum()),
    )
    stats["signals"] = int(np.count_nonzero(sig[a]))
    stats["orders"] = len(f_bar)
    stats["fills"] = len(f_bar)
    stats["risk_denials"] = {}
    if stats["start"] is not None:
        stats["start"] = iso(stats["start"])
        stats["end"] = iso(stats["end"])
    if meta:
        stats.update(meta)
    return BacktestResult(
        stats=stats,
        trades=trades,
        times=times,
        equity=equity,
        in_market=in_market,
        prices={s.symbol: (s.bucket[a], s.open[a], s.high[a], s.low[a], close[a])},
    )


def _check_money_rules(
    limits: RiskLimits,
    t: TradingConfig,
    f_bar: np.ndarray,
    f_side: np.ndarray,
    f_px: np.ndarray,
    f_kind: np.ndarray,
    charges: np.ndarray,
    gross: np.ndarray,
    qty: int,
    times: np.ndarray,
) -> None:
    """Raise :class:`VectorUnsupported` if an entry would have broken a value, exposure or
    balance limit (judged conservatively at the bar's high), or the daily order caps."""
    if not len(f_bar):
        return
    worst = int(f_px.max()) + 1
    value = qty * worst
    if value > limits.max_order_value:
        raise VectorUnsupported("an order could exceed risk.max_order_value")
    # a reversal holds the closing position while the new one is ordered
    held = 2 * value if t.allow_short else value
    if held > limits.max_position_value or held > limits.max_total_exposure:
        raise VectorUnsupported("an entry could exceed the position or exposure limit")
    need = value + int(value * limits.margin_fraction) if t.allow_short else value
    # the balance rule counts today's realized P&L (net of charges) against the capital
    day = (times[f_bar] + IST_OFFSET_NS) // NS_PER_DAY
    net = gross - charges
    worst_day = 0
    if len(net):
        uniq, inv = np.unique(day, return_inverse=True)
        run = np.zeros(len(uniq), dtype=np.int64)
        for k in range(len(net)):
            run[inv[k]] += net[k]
            worst_day = min(worst_day, int(run[inv[k]]))
    if need > limits.capital + worst_day:
        raise VectorUnsupported("the available balance could refuse an entry")
    per_day = np.bincount(np.unique(day, return_inverse=True)[1])
    if per_day.max() > limits.orders_per_day:
        raise VectorUnsupported("the daily order cap could refuse an order")


def day_pnl_floor(
    limits: RiskLimits, times: np.ndarray, booked: np.ndarray, unreal: np.ndarray
) -> None:
    """Raise if the daily-loss circuit breaker could have tripped (realized today + unrealized
    reaching −max_daily_loss at some bar)."""
    if not len(times):
        return
    day = (times + IST_OFFSET_NS) // NS_PER_DAY
    first = np.r_[True, day[1:] != day[:-1]]
    start_of_day = np.maximum.accumulate(np.where(first, np.arange(len(day)), 0))
    before = np.r_[0, booked][start_of_day]  # booked before the day's first bar
    day_pnl = booked - before + unreal
    if len(day_pnl) and int(day_pnl.min()) <= -limits.max_daily_loss:
        raise VectorUnsupported("the daily-loss circuit breaker could have tripped")


def warm(n: int = 64) -> None:
    """Compile (or load from the on-disk cache) the kernels."""
    from mandi.backtest import _vkernels as vk

    x = (np.arange(n, dtype=np.int64) % 7) * 5 + 10_000
    f, s = vk.sma_exact(x, 3), vk.ema_exact(x, 5)
    sig = vk.cross_signals(f, s, 0)
    z = np.zeros(n, dtype=bool)
    vk.simulate(
        x, x + 60, x, x, x, x, sig, ~z, ~z, ~z, np.zeros((n, 4), dtype=bool), z, z,
        1, False, False, 0, 5, 0.0, 0.0, 0.0, True, 3,
    )  # fmt: skip
    tab = np.full(1, -1, dtype=np.int64)
    m = np.empty(n, dtype=bool)
    vk.calendar_masks(
        x, x + 60, 0, tab, tab, IST_OFFSET_NS, NS_PER_DAY, 0, 0, 0, 0, True,
        m, m.copy(), m.copy(), np.empty((n, 4), dtype=bool), m.copy(), m.copy(),
    )  # fmt: skip
