"""Tick-to-order latency of the trading kernel, in process.

One stock ticks every 250 ms for two trading days (09:15-15:14, inside the trading hours the
risk manager allows). The tick that opens a new minute closes the 60 s candle; the chain under
test runs inside that tick's handling:

    tick → 1 s / 60 s candle close → strategy → signal (stored) → risk → order (stored, sent)
         → paper broker ack                                        = "tick → order"
    the next tick → paper fill → charges → position → daily row     = "next tick → fill"

The strategy flips (BUY when flat, SELL when long), so every minute places one order. Cases:

* 1 strategy, in-memory store (the kernel's own cost; the goal is p99 < 1 ms);
* 50 strategies on the same series: 49 that compute SMA/RSI every candle without signalling, and
  the flipping one;
* 1 strategy with the SQLite store at ``synchronous=FULL`` (durable: several fsyncs per order).

Baseline, measured in the same run on the same ticks: the candle pipeline alone (tick → candle
close published, no trading layer).
"""

from __future__ import annotations

import datetime as dt
import gc
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Flip, report
from mandi.bus.memory import MessageBus
from mandi.core.calendar import ist_ns
from mandi.core.clock import TestClock
from mandi.execution.config import MatchingConfig, TradingConfig
from mandi.execution.memstore import MemoryTradingStore
from mandi.execution.paper import MemoryPaperBook, PaperBroker
from mandi.indicators import RSI, SMA
from mandi.model.instruments import Equity, InstrumentMaster
from mandi.model.market import Candle, Tick
from mandi.pipeline.candles import CandlePipeline
from mandi.risk.config import RiskConfig
from mandi.strategy.base import Strategy
from mandi.system.kernel import TradingKernel

TOKEN = 738561
DAYS = (dt.date(2026, 4, 15), dt.date(2026, 4, 16))
STEP = 250_000_000


def make_ticks() -> tuple[list[Tick], set[int]]:
    """The ticks, and the indices of those that open a new minute (they close a candle)."""
    rng = np.random.default_rng(7)
    ticks: list[Tick] = []
    closers: set[int] = set()
    price, vol = 140_000.0, 0
    for day in DAYS:
        start, end = ist_ns(day, dt.time(9, 15)), ist_ns(day, dt.time(15, 14))
        steps = (end - start) // STEP
        walk = np.exp(np.cumsum(rng.normal(0, 0.0002, steps)))
        for i in range(steps):
            ts = start + i * STEP
            p = int(round(price * walk[i] / 5) * 5)
            vol += 10
            if i and i % 240 == 0:
                closers.add(len(ticks))
            ticks.append(Tick(TOKEN, "NSE", ts, ts, p, vol, 10, 0, p - 5, p + 5, 5000, 5000))
        price *= walk[-1]
    return ticks, closers


class Watcher(Strategy):
    """Computes indicators on every candle and never signals (the other 49)."""

    name = "watcher"

    def on_start(self) -> None:
        n = 5 + hash(self.id) % 40
        self.sma, self.rsi = SMA(n), RSI(14)

    def on_candle(self, candle: Candle) -> None:
        s = self.sma.update(candle.close)
        r = self.rsi.update(candle.close)
        if s is not None and r is not None and r > 101:  # never
            self.signal("BUY")


def build(
    strategies: int, store: object | None = None
) -> tuple[TestClock, MessageBus, CandlePipeline, TradingKernel]:
    clock = TestClock(ist_ns(DAYS[0], dt.time(9, 15)))
    bus = MessageBus(clock)
    master = InstrumentMaster([Equity(TOKEN, "NSE", "RELIANCE", "RELIANCE", "NSE", 1, 5)])
    pipe = CandlePipeline(bus, (60,), known_tokens={TOKEN}, emit_forming=False)
    trading = TradingConfig(paper=MatchingConfig(slippage_ticks=0))
    risk = RiskConfig(max_concurrent_positions=100)
    k = TradingKernel(
        bus=bus,
        clock=clock,
        master=master,
        mode="paper",
        store=store or MemoryTradingStore(),  # type: ignore[arg-type]
        broker=PaperBroker(clock, MemoryPaperBook(), trading.paper),
        trading=trading,
        risk=risk,
    )
    k.add_strategy(Flip(strategy_id="flip", timeframe=60), ["RELIANCE"])
    for i in range(strategies - 1):
        k.add_strategy(Watcher(strategy_id=f"w{i}", timeframe=60), ["RELIANCE"])
    k.start()
    return clock, bus, pipe, k


def drive(
    ticks: list[Tick], closers: set[int], clock: TestClock, bus: MessageBus, pipe: CandlePipeline
) -> dict[str, list[int]]:
    """Feed every tick; return the ns spent on candle-closing ticks and on the ticks after, as
    wall time and as this thread's CPU time (which a busy machine's preemption does not
    inflate)."""
    out: dict[str, list[int]] = {"close": [], "next": [], "close_cpu": [], "next_cpu": []}
    publish, handle, wall, cpu = (
        bus.publish,
        pipe.handle_tick,
        time.perf_counter_ns,
        time.thread_time_ns,
    )
    topic = f"tick:NSE:{TOKEN}"
    gc.collect()
    gc.disable()
    try:
        for i, t in enumerate(ticks):
            c0, w0 = cpu(), wall()
            clock.set(t.ts_event)
            handle(t)
            publish(topic, t)
            w, c = wall() - w0, cpu() - c0
            if i in closers:
                out["close"].append(w)
                out["close_cpu"].append(c)
            elif i - 1 in closers:
                out["next"].append(w)
                out["next_cpu"].append(c)
    finally:
        gc.enable()
    return out


def pct(xs: list[int], q: float) -> float:
    return float(np.percentile(np.array(xs), q)) / 1000.0  # µs


def line(name: str, xs: list[int], cpu: list[int], note: str = "") -> None:
    print(
        f"{name:<52} p50 {pct(xs, 50):8.1f} µs  p99 {pct(xs, 99):8.1f} µs   "
        f"(CPU p50 {pct(cpu, 50):7.1f}  p99 {pct(cpu, 99):7.1f}){note}",
        flush=True,
    )


def main() -> None:
    ticks, closers = make_ticks()
    print(
        f"{len(ticks):,} ticks, {len(closers)} candle closes over {len(DAYS)} days; "
        "wall time and thread CPU time per tick",
        flush=True,
    )
    # baseline: the pipeline alone
    clock = TestClock(ticks[0].ts_event)
    bus = MessageBus(clock)
    pipe = CandlePipeline(bus, (60,), known_tokens={TOKEN}, emit_forming=False)
    bus.subscribe("candle:60s:>", lambda t, c: None, name="sink")
    base = drive(ticks, closers, clock, bus, pipe)
    line("baseline: pipeline alone, tick → candle close", base["close"], base["close_cpu"])
    results = {}
    for name, n in (("1 strategy", 1), ("50 strategies", 50)):
        clock, bus, pipe, k = build(n)
        r = drive(ticks, closers, clock, bus, pipe)
        assert k.execution.fills.count >= len(closers) - 1, k.summary()
        results[name] = r
        line(
            f"tick → order ({name})",
            r["close"],
            r["close_cpu"],
            "   [goal p99 < 1 ms]" if n == 1 else "",
        )
        line(f"next tick → paper fill + position ({name})", r["next"], r["next_cpu"])
    with tempfile.TemporaryDirectory() as d:
        from mandi.stores.trading import SqliteTradingStore

        store = SqliteTradingStore(str(pathlib.Path(d) / "bench.db"))
        sub = {i for i in closers if i < sorted(closers)[120]}
        clock, bus, pipe, k = build(1, store)
        r = drive(ticks[: max(sub) + 2], sub, clock, bus, pipe)
        store.close()
        line(
            "tick → order, SQLite synchronous=FULL (1 strategy)",
            r["close"],
            r["close_cpu"],
            "   durable: fsyncs",
        )
    for name, r in results.items():
        report(
            f"trading: candle-closing ticks → orders, {name}",
            len(r["close"]),
            sum(r["close"]) / 1e9,
            "orders",
            "pipeline alone",
            sum(base["close"]) / 1e9,
            goal=f"p99 < 1 ms; wall p99 {pct(r['close'], 99):.0f} µs, CPU p99 "
            f"{pct(r['close_cpu'], 99):.0f} µs"
            if name == "1 strategy"
            else "",
        )


if __name__ == "__main__":
    main()
