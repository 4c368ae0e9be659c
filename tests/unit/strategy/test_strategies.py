"""The strategy API: built-ins signal on the right candle, a raising strategy is isolated and
reported, warm-up suppresses signals, configuration errors name the key."""

from __future__ import annotations

import pytest

from mandi.core.errors import ConfigError
from mandi.model.market import Candle, ChainRow, ChainSnapshot, OptionQuote
from mandi.strategy.base import Strategy, StrategyConfig
from mandi.strategy.loader import StrategySpec, build_strategies, build_strategy

from ..execution.kit import EXPIRY, NIFTY, RELIANCE, Kit, at

MIN = 60_000_000_000


def candles(token: int, closes: list[float], start: int | None = None) -> list[Candle]:
    t0 = start or at(9, 15)
    out = []
    for i, c in enumerate(closes):
        p = round(c * 100)
        out.append(Candle(token, "NSE", 60, t0 + i * MIN, p, p + 50, p - 50, p, 1000, 0, 10))
    return out


def run(k: Kit, cs: list[Candle]) -> None:
    for c in cs:
        k.clock.set(c.bucket + MIN)
        k.tick(c.token, c.close / 100, ts=c.bucket + MIN, qty=100_000)
        k.bus.publish(f"candle:60s:NSE:{c.token}", c)


def kit_with(*specs: StrategySpec) -> Kit:
    k = Kit()
    for s, spec in build_strategies(specs):
        k.kernel.add_strategy(s, spec.symbols)
    return k.start()


def actions(k: Kit) -> list[tuple[str, str, str]]:
    return [(s.strategy, s.action.value, s.symbol) for s in k.store.signals.values()]


def test_sma_crossover_signals_once_per_cross():
    k = kit_with(
        StrategySpec(
            "sma_cross", symbols=("RELIANCE",), timeframe=60, params={"fast": 2, "slow": 4}
        )
    )
    run(k, candles(RELIANCE, [100, 100, 100, 100, 99, 98, 97, 99, 102, 104, 105, 106, 103, 99]))
    assert actions(k) == [("sma_cross", "BUY", "RELIANCE"), ("sma_cross", "SELL", "RELIANCE")]
    sig = next(iter(k.store.signals.values()))
    assert sig.timeframe == 60 and sig.bucket == at(9, 15) + 8 * MIN  # the crossing candle


def test_rsi_and_momentum_signal_on_entering_their_zones():
    k = kit_with(
        StrategySpec(
            "rsi",
            symbols=("RELIANCE",),
            timeframe=60,
            params={"period": 3, "overbought": 70, "oversold": 30},
        ),
        StrategySpec(
            "momentum",
            id="mom",
            symbols=("RELIANCE",),
            timeframe=60,
            params={"lookback": 3, "threshold_pct": 1.0},
        ),
    )
    run(k, candles(RELIANCE, [100, 99, 98, 97, 96, 98, 99, 100, 101, 103, 104, 103, 101]))
    got = actions(k)
    assert ("rsi", "BUY", "RELIANCE") in got and ("rsi", "SELL", "RELIANCE") in got
    assert [a for s, a, _ in got if s == "mom"][:2] == ["SELL", "BUY"]


def test_ema_cross_is_the_seed_default_on_15_minute_candles():
    s = build_strategy(StrategySpec("ema_cross"))
    assert s.timeframe == 900 and (s.config.fast, s.config.slow) == (9, 21)


def test_oi_pcr_signals_on_the_chain():
    k = kit_with(
        StrategySpec(
            "oi_pcr",
            symbols=("NIFTY",),
            timeframe=60,
            params={"bullish_pcr": 1.3, "bearish_pcr": 0.7},
        )
    )
    k.chain_ticks()  # balanced OI: PCR 1.0, no signal

    def snap(pe_oi: int) -> ChainSnapshot:
        rows = tuple(
            ChainRow(k_ * 100, OptionQuote(100, oi=1000), OptionQuote(100, oi=pe_oi))
            for k_ in range(24000, 24400, 50)
        )
        return ChainSnapshot("NIFTY", "NSE", EXPIRY, k.clock.now_ns(), 2_420_000, rows, 65)

    k.clock.advance(MIN)
    k.kernel.market.update_chain(snap(1000))
    k.kernel.handle_time()
    assert actions(k) == []
    k.clock.advance(MIN)
    k.kernel.market.update_chain(snap(1500))
    k.kernel.handle_time()
    assert actions(k) == [("oi_pcr", "BUY", "NIFTY")]
    k.clock.advance(MIN)
    k.kernel.market.update_chain(snap(1600))
    k.kernel.handle_time()
    assert len(actions(k)) == 1  # still bullish: no new signal


class Boom(Strategy):
    name = "boom"

    def on_candle(self, candle: Candle) -> None:
        raise RuntimeError("strategy bug")


class Always(Strategy):
    name = "always"

    def on_candle(self, candle: Candle) -> None:
        self.signal("BUY" if candle.close % 2 else "SELL")


def test_a_strategy_that_raises_is_isolated_and_reported():
    k = Kit()
    k.kernel.add_strategy(Boom(strategy_id="boom", timeframe=60), ["RELIANCE"])
    k.kernel.add_strategy(Always(strategy_id="ok", timeframe=60), ["RELIANCE"])
    k.start()
    run(k, candles(RELIANCE, [100.05, 100.10, 100.15]))
    assert len(k.store.signals) == 3  # the healthy strategy carried on
    errs = k.topics("system:strategy_error")
    assert len(errs) == 1 and "strategy bug" in errs[0].message  # first error reported
    assert k.kernel.strategies.errors["boom"] == 3
    assert k.bus.handler_errors == 0  # contained by the engine, not by the bus


def test_warm_up_feeds_history_without_signals_and_each_candle_counts_once():
    k = Kit()
    s = Always(strategy_id="w", timeframe=60)
    seen: list[int] = []
    s.on_candle = lambda c: (seen.append(c.bucket), Always.on_candle(s, c))  # type: ignore
    k.kernel.add_strategy(s, ["RELIANCE"])
    hist = candles(RELIANCE, [100, 101, 102])
    k.kernel.start(hist)
    assert seen == [c.bucket for c in hist] and not k.store.signals
    run(k, hist[-1:] + candles(RELIANCE, [103], start=hist[-1].bucket + MIN))
    assert seen[-1] == hist[-1].bucket + MIN and len(seen) == 4  # the re-sent one is ignored
    assert len(k.store.signals) == 1


def test_start_after_warm_up_keeps_the_warmed_state():
    """on_start runs once: a second call after the warm-up would reset what it rebuilt."""
    k = Kit()
    s = Always(strategy_id="w", timeframe=60)
    starts: list[int] = []
    s.on_start = lambda: starts.append(1)  # type: ignore[method-assign]
    k.kernel.add_strategy(s, ["RELIANCE"])
    k.kernel.start(candles(RELIANCE, [100, 101, 102]))
    assert starts == [1]


def test_configuration_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"strategies\[0\]\.name"):
        build_strategies((StrategySpec("nope"),))
    with pytest.raises(ConfigError, match=r"strategies\[0\]\.params\.fast"):
        build_strategies((StrategySpec("sma_cross", params={"fast": "x"}),))
    with pytest.raises(ConfigError, match=r"unknown parameter"):
        build_strategies((StrategySpec("sma_cross", params={"fats": 3}),))
    with pytest.raises(ConfigError, match="shorter than slow"):
        build_strategies((StrategySpec("sma_cross", params={"fast": 30, "slow": 20}),))
    with pytest.raises(ConfigError, match=r"strategies\[1\]\.id"):
        build_strategies((StrategySpec("rsi"), StrategySpec("rsi")))
    with pytest.raises(ConfigError, match="cannot import"):
        build_strategies((StrategySpec("no.such.module:Thing"),))


class Tuned(Strategy):
    class Config(StrategyConfig, frozen=True):
        level: int = 3

    config_class = Config


def test_user_strategies_load_by_dotted_path():
    s = build_strategy(StrategySpec(f"{__name__}:Tuned", id="mine", params={"level": 7}))
    assert isinstance(s, Tuned) and s.config.level == 7 and s.id == "mine"


def test_unknown_symbols_are_reported_and_skipped():
    k = Kit()
    missing = k.kernel.add_strategy(Always(strategy_id="a", timeframe=60), ["NOPE", "NIFTY"])
    assert missing == ["NOPE"]
    assert [i.token for i in k.kernel.strategies.strategies[0].instruments] == [NIFTY]


def test_the_context_exposes_indicators_and_chain_analytics_from_the_bus():
    from types import SimpleNamespace

    from mandi.model.market import IndicatorValue

    k = Kit()
    k.kernel.add_strategy(Always(strategy_id="a", timeframe=60), ["RELIANCE"])
    k.start()
    k.bus.publish(
        "ind:RSI_14:60s:NSE:738561", IndicatorValue(RELIANCE, "NSE", 60, at(10, 0), "RSI_14", 61.5)
    )
    assert k.kernel.ctx.indicator("RSI_14", RELIANCE, 60) == 61.5
    assert k.kernel.ctx.analytics("NIFTY") is None
    a = SimpleNamespace(underlying="NIFTY", expiry=EXPIRY, pcr_oi=1.2)
    k.bus.publish("analytics:NIFTY:2026-04-21", a)
    assert k.kernel.ctx.analytics("NIFTY") is a


class Seen(Strategy):
    """Records what each call saw: the candle, the event in hand, the clock and the history."""

    name = "seen"

    def on_start(self) -> None:
        self.calls: list[tuple[int, object, int, list[int]]] = []

    def on_candle(self, candle: Candle) -> None:
        hist = [c.bucket for c in self.ctx.candles(candle.token, candle.timeframe)]
        self.calls.append((candle.bucket, self._event, self.ctx.now_ns, hist))
        if candle.close % 3 == 0:
            raise RuntimeError("every third price")


def test_the_series_dispatcher_does_what_the_dispatch_does():
    """``StrategyEngine.series_dispatcher`` (the backtester's per-bar call) against the general
    ``_dispatch_candle`` on the same candles: repeated, older and forming candles ignored, a
    raising strategy counted and disabled after its errors, the candle history replaced midway
    (followed), every call seeing the same event, clock and history; the same signals."""
    from collections import deque

    def kit() -> tuple[Kit, Seen]:
        k = Kit()
        k.kernel.strategies.disable_after_errors = 3
        seen = Seen(strategy_id="seen", timeframe=60)
        k.kernel.add_strategy(seen, ["RELIANCE"])
        k.kernel.add_strategy(Always(strategy_id="ok", timeframe=60), ["RELIANCE"])
        k.kernel.add_strategy(Boom(strategy_id="boom", timeframe=60), ["RELIANCE"])
        return k.start(), seen

    cs = candles(RELIANCE, [100.05 + 0.05 * i for i in range(14)])
    forming = Candle(RELIANCE, "NSE", 60, cs[5].bucket, 10_000, 10_050, 9_950, 10_000, closed=False)
    order = [*cs[:5], cs[4], cs[2], forming, *cs[5:9], "replace", *cs[9:]]
    runs = []
    for series in (False, True):
        k, seen = kit()
        engine = k.kernel.strategies
        dispatch = engine.series_dispatcher(RELIANCE, 60) if series else engine._dispatch_candle
        out = []
        for c in order:
            if c == "replace":  # e.g. a backtest's catch-up: the context gets a new history
                engine.ctx._candles[(RELIANCE, 60)] = deque(cs[7:9], maxlen=500)
                continue
            assert isinstance(c, Candle)
            k.clock.set(c.bucket + MIN)
            out.append(dispatch(c))
        runs.append(
            (
                out,
                seen.calls,
                dict(engine.errors),
                set(engine.disabled),
                [c.bucket for c in engine.ctx._candles[(RELIANCE, 60)]],
                dict(engine._last_bucket),
                sorted(k.store.signals),
            )
        )
    assert runs[0] == runs[1]
    out, calls, errors, disabled, _, _, signals = runs[1]
    assert out.count(False) == 3 and len(signals) == len(cs)
    assert errors == {"boom": 3, "seen": 3} and disabled == {"boom", "seen"}
    assert 3 < len(calls) < len(cs)  # "seen" was called until its third error
