"""The node's in-memory one-second candles (``SecondCandles``): a read of one token's range
and limit (what the API's ``/candles?timeframe=1`` asks) equals filtering everything held."""

import numpy as np

from mandi.core.clock import NS_PER_SECOND
from mandi.model.batches import CANDLE_DTYPE, records_to_candles
from mandi.services.node import SecondCandles

T0 = 1_776_051_900 * NS_PER_SECOND  # 2026-04-13 09:15 IST


def _parts(rng: np.random.Generator, seconds: int) -> list[np.ndarray]:
    """A part a second, holding candles of some of tokens 1..4 over one to three seconds (a
    batch may close several)."""
    out = []
    for s in range(seconds):
        span = int(rng.integers(1, 4))
        tokens = np.repeat(np.flatnonzero(rng.random(4) < 0.6) + 1, span)
        rec = np.zeros(len(tokens), CANDLE_DTYPE)
        rec["token"], rec["timeframe"] = tokens, 1
        rec["bucket"] = T0 + (s + np.tile(np.arange(span), len(tokens) // span)) * NS_PER_SECOND
        rec["open"] = rec["high"] = rec["low"] = rec["close"] = rng.integers(100, 200, len(tokens))
        rec["closed"], rec["exchange"] = 1, 1
        out.append(rec)
    return out


def test_a_range_and_limit_read_equals_filtering_everything_held() -> None:
    rng = np.random.default_rng(7)
    parts = _parts(rng, 120)
    ring = SecondCandles(600)
    for p in parts:
        ring.add(p)
    held = records_to_candles(np.concatenate(parts))
    for _ in range(200):
        token = int(rng.integers(1, 6))  # 5: never held
        since = T0 + int(rng.integers(0, 130)) * NS_PER_SECOND
        before = T0 + int(rng.integers(0, 130)) * NS_PER_SECOND
        limit = int(rng.integers(1, 150))
        mine = [c for c in held if c.token == token and since <= c.bucket < before]
        assert ring.candles(token, since, before, limit) == mine[-limit:]
        assert ring.candles(token, since, before) == mine
    assert ring.candles(1) == [c for c in held if c.token == 1]  # the old call: all from 0
