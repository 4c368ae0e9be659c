"""Tiny shared helpers for benchmarks: best-of-N timing and one uniform report line.

Every benchmark prints its throughput and its ratio to a named baseline measured in the same run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from mandi.model.market import Candle
from mandi.services.jitcache import prepare_numba_cache
from mandi.strategy.base import Strategy

RESULTS: list[dict[str, Any]] = []

# the shell's start-up step, before any kernel code runs (see mandi.services.jitcache)
prepare_numba_cache()


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Fastest wall time of ``repeat`` calls of ``fn`` (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def report(
    name: str,
    items: int,
    seconds: float,
    unit: str = "items",
    baseline: str | None = None,
    baseline_seconds: float | None = None,
    goal: str = "",
) -> dict[str, Any]:
    """Print ``name: N unit/s`` and, with a baseline, the speed ratio against it."""
    rate = items / seconds if seconds > 0 else float("inf")
    line = f"{name:<58} {rate:>14,.0f} {unit}/s"
    row: dict[str, Any] = {"name": name, "rate": rate, "unit": unit}
    if baseline and baseline_seconds:
        ratio = baseline_seconds / seconds
        line += f"   {ratio:6.2f}x vs {baseline} ({items / baseline_seconds:,.0f} {unit}/s)"
        row.update(baseline=baseline, baseline_rate=items / baseline_seconds, ratio=ratio)
    if goal:
        line += f"   [goal: {goal}]"
    print(line, flush=True)
    RESULTS.append(row)
    out = os.environ.get("MANDI_BENCH_JSON")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
    return row


class Flip(Strategy):
    """Buys when flat and sells when long on every candle: one order per candle, so an order
    benchmark has a latency sample every minute (the default strategies trade a few times an
    hour)."""

    name = "flip"

    def on_start(self) -> None:
        self.long = False

    def on_candle(self, candle: Candle) -> None:
        self.signal("SELL" if self.long else "BUY", quantity=1)
        self.long = not self.long
