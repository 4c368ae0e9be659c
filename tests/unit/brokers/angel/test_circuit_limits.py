"""Circuit limits reach the tick policy: an Angel One SNAP_QUOTE frame carries the instrument's
upper and lower circuit; the ticker reports them, the node hands them to the pipeline's price
band, and a later tick outside them is rejected as ``price_band`` (inside the percentage band,
so only the circuit can reject it)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mandi.brokers.angel import frames
from mandi.brokers.angel.ticker import AngelTicker
from mandi.brokers.angel.wire import mandi_token
from mandi.brokers.feed import BrokerFeed
from mandi.config import load_config
from mandi.core.clock import TestClock
from mandi.model.instruments import Equity
from mandi.services.node import MarketNode

NSE_CM = 1  # SmartAPI exchange type of NSE equities
TS_MS = 1752744600000  # 2025-07-17 09:30 UTC


def snap(seq: int, ltp: int, volume: int, *, upper: int = 0, lower: int = 0) -> bytes:
    return frames.encode_snap(
        NSE_CM, "2885", seq, TS_MS + seq, ltp, 1, ltp, volume, 0.0, 0.0,
        ltp, ltp, ltp, ltp, TS_MS // 1000, 0, 0.0, upper=upper, lower=lower,
    )  # fmt: skip


def test_circuit_limits_of_a_snap_quote_frame() -> None:
    assert frames.circuit_limits(snap(1, 150_000, 10, upper=165_000, lower=135_000)) == (
        135_000,
        165_000,
    )
    assert frames.circuit_limits(snap(1, 150_000, 10)) is None  # none given
    assert frames.circuit_limits(snap(1, 150_000, 10, upper=100, lower=200)) is None  # absurd
    ltp = frames.encode_ltp(NSE_CM, "2885", 1, TS_MS, 150_000)
    assert frames.circuit_limits(ltp) is None


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_a_tick_outside_the_circuit_is_rejected_by_the_node(tmp_path, engine) -> None:
    token = mandi_token(NSE_CM, "2885")
    overrides = {"store.db": str(tmp_path / "c.db"), "pipeline.engine": engine}
    cfg = load_config(env={}, overrides=overrides)
    node = MarketNode(cfg, clock=TestClock((TS_MS + 60_000) * 1_000_000))
    ticker = AngelTicker("ws://127.0.0.1:9/", "key", "client", lambda: None)  # type: ignore[arg-type,return-value]
    angel = SimpleNamespace(symbols=[], mode="full", strikes_each_side=0, expiries=0)
    feed = BrokerFeed(
        "angel", angel, None, [Equity(token, "NSE", "RELIANCE")], ticker, node.clock.now_ns
    )
    node.ctx.feed = feed  # type: ignore[assignment]
    node.ctx.add_instruments(feed.instruments())
    node.writer.start()
    try:
        # ₹1,500 with circuits at ₹1,350 / ₹1,650, then ₹1,660: 0.7 % up, inside the 100 % band
        for seq, (ltp, limits) in enumerate(
            [(150_000, {"upper": 165_000, "lower": 135_000}), (166_000, {}), (164_000, {})], 1
        ):
            ticker._handle(snap(seq, ltp, 10 * seq, **limits))
            node.handle_batch(feed._queue.get_nowait())
    finally:
        node.writer.stop()
    assert node.rejections() == {"angel": {"price_band": 1}}
    assert node.stats.last_price[token] == 164_000
    assert ticker.take_price_limits() == {}  # handed over once
