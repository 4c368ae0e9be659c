"""The compiled route of the event engine (``Strategy.compile_bars`` + the quiet-bar kernel)
against the same engine calling the strategy on every bar: the same trades, equity curve,
signals, positions, and the same strategy and context state at the end."""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mandi.backtest import BacktestConfig, BacktestEngine, BarSeries, StrategyRun
from mandi.backtest.config import default_risk
from mandi.backtest.result import from_raw
from mandi.core.calendar import ist_ns
from mandi.indicators import EMA, RSI, SMA
from mandi.model.instruments import InstrumentMaster
from mandi.services.backtest.api import load_data
from mandi.strategy.builtin import EMACross, RSIReversal, SMACross

from .kit import INST

DATA = pathlib.Path(__file__).parents[2] / "data" / "NIFTY50_3min_2025-07-23_to_2026-08-04.csv"
DAYS = [dt.date(2026, 4, 13), dt.date(2026, 4, 15), dt.date(2026, 4, 16)]


def walk(seed: int, days: int, tf: int = 60) -> BarSeries:
    """A random walk of ``days`` full sessions of ``tf``-second bars (late bars included)."""
    per_day = 22_500 // tf
    rng = np.random.default_rng(seed)
    start = np.array([ist_ns(d, dt.time(9, 15)) for d in DAYS[:days]], dtype=np.int64)
    bucket = (start[:, None] + np.arange(per_day, dtype=np.int64) * tf * 10**9).ravel()
    n = len(bucket)
    close = 100_000 + np.cumsum(rng.integers(-3, 4, n)) * 5 * rng.integers(1, 30)
    op = np.r_[close[0], close[:-1]]
    high = np.maximum(op, close) + rng.integers(0, 4, n) * 5
    low = np.minimum(op, close) - rng.integers(0, 4, n) * 5
    return BarSeries(INST, tf, bucket, op, high, low, close, rng.integers(0, 100, n))


def run(
    series: BarSeries,
    cls: type,
    params: dict[str, Any],
    start_ns: int | None = None,
    daily_loss: float | None = None,
    **cfg: Any,
) -> tuple[Any, Any, Any]:
    cfg.setdefault("quantity", 10)
    cfg.setdefault("charges", "none")
    cfg.setdefault("commission_inr", 0.0)
    bt = BacktestConfig(**cfg)
    risk = None
    if daily_loss is not None:
        risk = msgspec.structs.replace(default_risk(bt.cash_inr), max_daily_loss_inr=daily_loss)
    strat = cls(cls.config_class(**params), timeframe=series.timeframe)
    eng = BacktestEngine(
        [StrategyRun(strat, (series.symbol,))],
        InstrumentMaster([series.instrument]),
        bt,
        timeframe=series.timeframe,
        risk=risk,
    )
    return from_raw(eng.run_bars([series], start_ns)), strat, eng


def state(strat: Any, eng: Any) -> Any:
    """Everything the strategy and its context hold at the end."""
    out: dict[Any, Any] = {}
    for tok, (f, s, side) in getattr(strat, "_state", {}).items():
        out[tok] = (
            [(type(a).__name__, {k: getattr(a, k) for k in a._state}) for a in (f, s)],
            side,
        )
    for tok, (ind, last) in getattr(strat, "_rsi", {}).items():
        out[tok] = ({k: getattr(ind, k) for k in ind._state}, last)
    ctx = eng.kernel.strategies.ctx
    hist = {k: [c.bucket for c in q] for k, q in ctx._candles.items()}
    return out, hist, dict(eng.kernel.strategies._last_bucket)


def same(a: tuple[Any, Any, Any], b: tuple[Any, Any, Any]) -> None:
    (ra, sa, ea), (rb, sb, eb) = a, b
    assert [t.key() for t in ra.trades] == [t.key() for t in rb.trades]
    assert [t.exit_reason for t in ra.trades] == [t.exit_reason for t in rb.trades]
    np.testing.assert_array_equal(ra.times, rb.times)
    np.testing.assert_array_equal(ra.equity, rb.equity)
    assert [msgspec.to_builtins(x) for x in ra.signals] == [
        msgspec.to_builtins(x) for x in rb.signals
    ]
    assert [msgspec.to_builtins(x) for x in ra.fills] == [msgspec.to_builtins(x) for x in rb.fills]
    assert [p.to_record() for p in ea.kernel.book.open_positions()] == [
        p.to_record() for p in eb.kernel.book.open_positions()
    ]
    assert state(sa, ea) == state(sb, eb)


def bar_by_bar(monkeypatch: pytest.MonkeyPatch, *args: Any, **kw: Any) -> tuple[Any, Any, Any]:
    with monkeypatch.context() as m:
        m.setattr(BacktestEngine, "_plan", lambda self, s, warm: None)
        return run(*args, **kw)


@pytest.mark.parametrize("cls", [SMACross, EMACross])
@pytest.mark.parametrize("i", [0, 1, 5, 30, 1124, 1125])
def test_seek_restores_the_incremental_state(cls: type, i: int) -> None:
    close = walk(7, 3).close
    strat = cls(cls.config_class(fast=7, slow=25), timeframe=60)
    strat.on_start()
    plan = strat.compile_bars(INST.token, close)
    assert plan is not None
    plan.seek(i)
    f1, s1, side1 = strat._state[INST.token]
    ref = (cls.average(7), cls.average(25))
    side = 0
    for x in close[:i].tolist():
        fv, sv = ref[0].update(x), ref[1].update(x)
        if fv is not None and sv is not None:
            side = 1 if fv > sv else -1 if fv < sv else side
    for a, b in zip((f1, s1), ref, strict=True):
        assert {k: getattr(a, k) for k in a._state} == {k: getattr(b, k) for k in b._state}
    assert side1 == side
    assert isinstance(f1, SMA if cls is SMACross else EMA)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 3),
    st.sampled_from([SMACross, EMACross]),
    st.tuples(st.integers(2, 8), st.integers(10, 40)),
    st.sampled_from(
        [
            {},
            {"product": "CNC"},
            {"product": "CNC", "allow_short": True, "stop_loss_pct": 0.3, "target_pct": 0.5},
            {"stop_loss_pct": 0.2, "target_pct": 0.3, "allow_short": True},
            {"trailing_stop_pct": 0.2, "product": "CNC"},
            {"fill": "close", "allow_short": True, "product": "NRML"},
            {"product": "CNC", "allow_short": True, "daily_loss": 150.0},
            {"warm": True, "product": "CNC", "allow_short": True},
        ]
    ),
)
def test_compiled_route_equals_bar_by_bar(monkeypatch, seed, days, cls, periods, cfg):
    series = walk(seed, days)
    cfg = dict(cfg)
    start = None
    if cfg.pop("warm", False):
        start = int(series.bucket[len(series) // 3])
    params = {"fast": periods[0], "slow": periods[1]}
    compiled = run(series, cls, params, start, **cfg)
    plain = bar_by_bar(monkeypatch, series, cls, params, start, **cfg)
    same(compiled, plain)


@pytest.mark.parametrize("seed", [0, 2, 3])
@pytest.mark.parametrize(
    "cfg",
    [
        {"stop_loss_pct": 0.2, "target_pct": 0.3, "allow_short": True},
        {"stop_loss_pct": 0.2, "target_pct": 0.3, "allow_short": True, "product": "CNC"},
    ],
)
def test_compiled_route_with_stops_and_targets(monkeypatch, seed, cfg):
    """Stops and targets hit inside quiet stretches (every seed here has both)."""
    series = walk(seed, 3)
    compiled = run(series, SMACross, {"fast": 5, "slow": 20}, **cfg)
    assert {t.exit_reason for t in compiled[0].trades} >= {"TARGET_REACHED", "STOP_LOSS_HIT"}
    same(compiled, bar_by_bar(monkeypatch, series, SMACross, {"fast": 5, "slow": 20}, **cfg))


@pytest.mark.parametrize("i", [0, 1, 2, 14, 15, 16, 1124, 1125])
def test_rsi_seek_restores_the_incremental_state(i: int) -> None:
    close = walk(7, 3).close
    strat = RSIReversal(RSIReversal.config_class(period=14), timeframe=60)
    strat.on_start()
    plan = strat.compile_bars(INST.token, close)
    assert plan is not None
    plan.seek(i)
    ind, last = strat._rsi[INST.token]
    ref, v = RSI(14), None
    for x in close[:i].tolist():
        v = ref.update(x)
    assert {k: getattr(ind, k) for k in ind._state} == {k: getattr(ref, k) for k in ref._state}
    assert last == v


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("cfg", [{}, {"allow_short": True, "product": "CNC"}])
def test_compiled_rsi_equals_bar_by_bar(monkeypatch, seed, cfg):
    series = walk(seed, 3)
    params = {"period": 9, "oversold": 35.0, "overbought": 65.0}
    compiled = run(series, RSIReversal, params, **cfg)
    assert len(compiled[0].signals) > 10
    same(compiled, bar_by_bar(monkeypatch, series, RSIReversal, params, **cfg))


def test_compiled_route_on_the_nifty_year(monkeypatch):
    """A real year of 3-minute bars, the default (intraday, Indian charges) settings."""
    (nifty,) = load_data(DATA)
    nifty = nifty.with_instrument(INST)  # traded as a stock (an index is not tradable)
    args = (nifty, SMACross, {"fast": 10, "slow": 40})
    compiled = run(*args, charges="india", quantity=10, allow_short=True, stop_loss_pct=0.5)
    plain = bar_by_bar(
        monkeypatch, *args, charges="india", quantity=10, allow_short=True, stop_loss_pct=0.5
    )
    assert len(compiled[0].trades) > 100
    same(compiled, plain)


def test_a_subclass_is_called_on_every_bar_unless_it_plans_itself():
    class Mine(SMACross):
        def on_candle(self, candle: Any) -> None:
            super().on_candle(candle)

    strat = Mine(Mine.config_class(fast=2, slow=5), timeframe=60)
    strat.on_start()
    assert strat.compile_bars(INST.token, walk(1, 1).close) is None
    series = walk(5, 1)
    res, _, _ = run(series, Mine, {"fast": 3, "slow": 12})
    ref, _, _ = run(series, SMACross, {"fast": 3, "slow": 12})
    assert len(res.trades) > 3
    assert [t.key() for t in res.trades] == [t.key() for t in ref.trades]
    assert SMACross(timeframe=60).compile_bars(INST.token, walk(1, 1).close) is not None


class Planned(SMACross):
    """Acts on every 7th bar; records the seeks and the candles it is handed."""

    def on_start(self) -> None:
        super().on_start()
        self.seen: list[tuple[str, int]] = []

    def compile_bars(self, token: int, close: Any) -> Any:
        from mandi.strategy.base import BarPlan

        act = np.arange(len(close)) % 7 == 3
        return BarPlan(act, lambda i: self.seen.append(("seek", i)))

    def on_candle(self, candle: Any) -> None:
        self.seen.append(("candle", candle.bucket))


def test_a_plan_is_called_on_its_acting_bars_after_seek():
    series = walk(2, 1)
    warm = 10  # bars before the start only warm up, bar by bar
    _, strat, eng = run(series, Planned, {}, int(series.bucket[warm]))
    assert strat.seen[:warm] == [("candle", b) for b in series.bucket[:warm].tolist()]
    rest = strat.seen[warm:]
    acting = [i for i in range(warm, len(series)) if i % 7 == 3]
    expect = [x for i in acting for x in (("seek", i), ("candle", int(series.bucket[i])))]
    assert rest == [*expect, ("seek", len(series))]
    ctx = eng.kernel.strategies.ctx
    assert [c.bucket for c in ctx.candles(INST.token, 60)] == series.bucket.tolist()


class Peek(SMACross):
    """A plan that cheats: it acts on a bar when the *next* close is higher."""

    def compile_bars(self, token: int, close: Any) -> Any:
        from mandi.strategy.base import BarPlan

        act = np.r_[close[1:] > close[:-1], False]
        return BarPlan(act, lambda i: None)

    def on_candle(self, candle: Any) -> None:
        self.signal("BUY", price=candle.close)


def test_the_lookahead_check_catches_a_plan_that_reads_the_future():
    from mandi.backtest.lookahead import LookAheadError, check_no_lookahead

    (nifty,) = load_data(DATA)
    series = nifty.take(slice(0, 600)).with_instrument(INST)
    cut = int(series.bucket[400])

    def backtest(ss: Any) -> Any:
        return run(ss[0], Peek, {})[0]

    with pytest.raises(LookAheadError):
        check_no_lookahead(backtest, [series], cut)
    # the honest plan passes the same check
    check_no_lookahead(lambda ss: run(ss[0], SMACross, {"fast": 5, "slow": 20})[0], [series], cut)


class Broken(SMACross):
    def compile_bars(self, token: int, close: Any) -> Any:
        from mandi.strategy.base import BarPlan

        return BarPlan(np.zeros(3, dtype=bool), lambda i: None)  # the wrong length


def test_a_broken_plan_falls_back_to_every_bar_with_a_note():
    series = walk(4, 1)
    res, _, _ = run(series, Broken, {"fast": 3, "slow": 12})
    ref, _, _ = run(series, SMACross, {"fast": 3, "slow": 12})
    assert len(ref.trades) > 3
    assert [t.key() for t in res.trades] == [t.key() for t in ref.trades]
    assert any("compile_bars failed" in n and "not 375" in n for n in res.notes)
