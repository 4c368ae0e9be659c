"""Regression tests for bugs found in the reference classes while building the fast path."""

from __future__ import annotations

from mandi.core.calendar import parse_ist
from mandi.model.market import Tick
from mandi.pipeline.fast import FastCandles, records_to_candles
from mandi.pipeline.seconds import SecondAggregator

T0 = parse_ist("2026-04-13 09:15:00")


def test_a_second_confirmed_by_a_clock_sweep_is_never_reopened() -> None:
    # close_delay 0.5 s; the clock at 09:15:01.7 confirms the second 09:15:00 (it ended 0.7 s
    # ago). A straggler for that second used to pass the watermark test (which only looks at
    # whole seconds), reopen it and produce a second candle for the same (token, second).
    agg = SecondAggregator(close_delay_ns=500_000_000)
    agg.handle_tick(Tick(1, "NSE", T0 + 200_000_000, 0, 100, 10, 10))
    (first,) = agg.advance(T0 + 1_700_000_000)
    assert first.bucket == T0
    assert agg.handle_tick(Tick(1, "NSE", T0 + 300_000_000, 0, 101, 11, 1)) == ()
    assert agg.rejected == {"late": 1}
    assert agg.flush() == []

    fast = FastCandles(close_delay_ns=500_000_000)
    fast.process([1], [T0 + 200_000_000], [100], [10], [10])
    assert [
        c.bucket for c in records_to_candles(fast.advance(T0 + 1_700_000_000)) if c.timeframe == 1
    ] == [T0]
    assert len(fast.process([1], [T0 + 300_000_000], [101], [11], [1])) == 0
    assert fast.rejected == {"late": 1}
