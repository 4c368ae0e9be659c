"""The trading kernel on tick batches (``TradingKernel.handle_ticks``) against the reference, one
``handle_tick`` per tick: the same bus messages in the same order, orders, fills, positions,
broker book, market state and clock — on random streams where strategies trade on ticks, index
signals buy options chosen from the chain, fills open positions mid-batch (their later ticks must
then be handled one by one), stops and targets exit them, and the monitor's time work falls due
between ticks."""

from __future__ import annotations

import dataclasses
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mandi.execution.config import MatchingConfig, TradingConfig
from mandi.model.batches import TickBatch
from mandi.model.market import Tick
from mandi.risk.config import RiskConfig
from mandi.strategy.base import Strategy

from .kit import EXPIRY, INFY, LOT, NIFTY, RELIANCE, Kit, at, option_token

OPTIONS = [option_token(k, kind) for k in (24150, 24200, 24250) for kind in ("CE", "PE")]
TOKENS = [NIFTY, RELIANCE, INFY, *OPTIONS]
START = at(10, 0)


class Pinger(Strategy):
    """Trades on ticks: a BUY or SELL when the price hits a multiple of 35 paise (at most one
    signal per instrument and minute, as signal ids go)."""

    name = "pinger"
    default_timeframe = 60

    def on_tick(self, tick: Tick) -> None:
        if tick.price % 35 == 0:
            inst = self.ctx.master.get(tick.token)
            self.signal("BUY" if tick.price % 70 else "SELL", instrument=inst)


def _kit() -> Kit:
    k = Kit(
        risk=RiskConfig(
            max_concurrent_positions=20, capital_inr=5_000_000, max_order_value_inr=2e6
        ),
        trading=TradingConfig(paper=MatchingConfig(slippage_ticks=0), monitor_interval_s=1.0),
        start=START,
    )
    k.kernel.add_strategy(Pinger(strategy_id="p1"), ["RELIANCE", "INFY", "NIFTY"])
    k.kernel.start(tick_objects=False)
    return k


def _observe(k: Kit):
    def observe(ts: int) -> None:
        if ts > k.clock.now_ns():
            k.clock.set(ts)

    return observe


@st.composite
def streams(draw):
    n = draw(st.integers(20, 160))
    prices = {NIFTY: 2_420_000, RELIANCE: 140_000, INFY: 155_000}
    prices.update({t: 15_000 for t in OPTIONS})
    volume = dict.fromkeys(TOKENS, 1000)
    ts = START
    ticks = []
    for _ in range(n):
        token = draw(st.sampled_from(TOKENS))
        ts += draw(st.sampled_from([0, 1_000_000, 250_000_000, 1_100_000_000, 9_000_000_000]))
        if draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans()):
            ts -= 300_000_000  # now and then out of order
        step = draw(st.integers(-40, 40)) * 5
        if draw(st.integers(0, 9)) == 0:  # a jump: stops and targets
            step = draw(st.sampled_from([-1, 1])) * (prices[token] // 100 * 5 // 5 * 5)
        prices[token] = max(500, prices[token] + step)
        p = prices[token]
        volume[token] += draw(st.integers(0, 5)) * (LOT if token in OPTIONS else 10)
        ticks.append(
            Tick(
                token,
                "NSE",
                ts,
                ts,
                p,
                volume[token],
                0,
                LOT * 50,
                p - 5,
                p + 5,
                LOT * 40,
                LOT * 40,
            )
        )
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=6)))
    return ticks, cuts


def _state(k: Kit) -> dict[str, object]:
    return {
        "events": k.events,
        "orders": dict(k.store.orders),
        "fills": dict(k.store.fills),
        "positions": dict(k.store.positions),
        "book": dict(k.book.orders),
        "market": {t: k.kernel.market.ticks.get(t) for t in TOKENS},
        "clock": k.clock.now_ns(),
        "status": k.kernel.status(),
    }


def _seed_chain(k: Kit) -> None:
    """Every option of the chain quoted once (so index signals find strikes), by the reference
    path in both kits."""
    for e in (EXPIRY,):
        for strike in range(23800, 24650, 50):
            for kind in ("CE", "PE"):
                p = 15_000
                t = Tick(
                    option_token(strike, kind, e),
                    "NSE",
                    START,
                    START,
                    p,
                    1000,
                    0,
                    LOT * 50,
                    p - 5,
                    p + 5,
                    LOT * 40,
                    LOT * 40,
                )
                k.kernel.handle_tick(t)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_batches_do_exactly_what_ticks_do(stream):
    ticks, cuts = stream
    ref, fast = _kit(), _kit()
    for k in (ref, fast):
        _seed_chain(k)
    observe = _observe(ref)
    for t in ticks:
        observe(t.ts_event)
        ref.kernel.handle_tick(t)
    batch = TickBatch.from_ticks(ticks)
    bounds = [0, *cuts, len(ticks)]
    for lo, hi in itertools.pairwise(bounds):
        fast.kernel.handle_ticks(batch.slice(lo, hi), _observe(fast))
    a, b = _state(ref), _state(fast)
    for key in a:
        assert a[key] == b[key], key


def test_the_stream_trades_and_most_ticks_skip_the_object_path():
    """The property above is not vacuous: a typical stream places orders, fills them, opens and
    closes positions; and in a batch only the ticks of instruments with orders, positions or an
    ``on_tick`` strategy become objects."""
    k = _kit()
    _seed_chain(k)
    made = []
    handle = k.kernel.handle_tick
    k.kernel.handle_tick = lambda t: (made.append(t), handle(t))[1]  # type: ignore[method-assign]
    ts, ticks = START, []
    for i in range(400):
        ts += 250_000_000
        token = TOKENS[i % len(TOKENS)]
        p = (
            2_420_000 if token == NIFTY else 140_000 if token in (RELIANCE, INFY) else 15_000
        ) + 35 * (i % 9)
        ticks.append(
            Tick(token, "NSE", ts, ts, p, 1000 + i * LOT, 0, 0, p - 5, p + 5, LOT * 40, LOT * 40)
        )
    k.kernel.handle_ticks(TickBatch.from_ticks(ticks), _observe(k))
    assert k.store.fills and k.store.positions
    assert 0 < len(made) < len(ticks)
    assert {t.token for t in made} >= {RELIANCE, INFY, NIFTY}
    assert dataclasses.is_dataclass(k.kernel.status()) is False  # a plain dict
