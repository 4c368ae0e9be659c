"""A strategy's candles go out first in a columnar step (``FastCandlePipeline.publish_batch``):
the rows of the tokens somebody follows by name lead, every series keeps its order, and nothing
else changes."""

from __future__ import annotations

from typing import Any

import numpy as np

from mandi.bus.memory import MessageBus
from mandi.core.calendar import parse_ist
from mandi.core.clock import NS_PER_SECOND, TestClock
from mandi.model.batches import CandleBatch, TickBatch
from mandi.model.market import Tick
from mandi.pipeline.fast import FastCandlePipeline

TOKENS = [11, 256265, 408065, 738561, 2885633]  # the followed one is last in token order
FOLLOWED = 2885633
START = parse_ist("2026-04-13 09:20:58")


def steps() -> list[TickBatch]:
    """Four seconds of ticks of every token, one batch per second (the third closes 09:20)."""
    out = []
    for s in range(4):
        ts = START + s * NS_PER_SECOND
        ticks = [
            Tick(tok, "NSE", ts + i, ts + i, 100_000 + 5 * (s + i), 10 * (s + 1), 1)
            for i, tok in enumerate(TOKENS)
        ]
        out.append(TickBatch.from_ticks(ticks))
    return out


def run(follow: bool) -> list[tuple[str, Any]]:
    bus = MessageBus(TestClock())
    log: list[tuple[str, Any]] = []
    bus.subscribe(
        CandleBatch.topic, lambda t, b: log.append((t, b.records.copy())), name="test.batches"
    )
    if follow:
        bus.subscribe(f"candle:60s:NSE:{FOLLOWED}", lambda t, c: log.append((t, c)), name="s")
    else:  # somebody wants candles, naming no token: nothing is reordered
        bus.subscribe("candle:60s:>", lambda t, c: None, name="test.any")
    pipeline = FastCandlePipeline(bus, (60,))
    pipeline.batches = True
    for b in steps():
        pipeline.handle_batch(b, None)
    return log


def rows(log: list[tuple[str, Any]]) -> list[tuple[Any, ...]]:
    return [r for t, m in log if t == CandleBatch.topic for r in m.tolist()]


def test_the_followed_tokens_candles_and_their_candle_go_out_before_the_rest():
    log = run(follow=True)
    closing = [i for i, (t, m) in enumerate(log) if t.startswith("candle:60s")]
    assert len(closing) == 1  # 09:20 closed once
    i = closing[0]
    before = log[i - 1][1]  # the batch that holds it: only the followed token's rows
    assert set(before["token"].tolist()) == {FOLLOWED}
    assert 60 in before["timeframe"].tolist()
    after = log[i + 1][1]  # then the rest of the market's closing rows
    assert FOLLOWED not in after["token"].tolist()
    assert {60, 1} <= set(after["timeframe"].tolist())


def test_the_same_rows_with_each_series_in_its_own_order():
    followed, plain = rows(run(follow=True)), rows(run(follow=False))
    assert sorted(followed) == sorted(plain)
    assert followed != plain  # reordered across tokens...
    for tok in TOKENS:  # ... never within a token's series
        assert [r for r in followed if r[0] == tok] == [r for r in plain if r[0] == tok]


def test_followed_tokens_are_those_named_by_a_handler_and_follow_the_subscriptions():
    bus = MessageBus(TestClock())
    p = FastCandlePipeline(bus, (60,))
    assert p.followed_tokens().tolist() == []
    bus.subscribe("candle:>", lambda t, c: None)  # names no token
    bus.subscribe("pub:candle:60s:NSE:7", None)  # an interest, not a handler
    assert p.followed_tokens().tolist() == []
    sub = bus.subscribe("candle:300s:NSE:738561", lambda t, c: None)
    bus.subscribe("tick:NSE:11", lambda t, c: None)
    assert p.followed_tokens().tolist() == [11, 738561]
    bus.unsubscribe(sub)
    assert np.array_equal(p.followed_tokens(), [11])
