"""SecondAggregator: OHLC invariants, volume conservation, the late-tick policy, bad ticks."""

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.core.calendar import parse_ist
from mandi.core.clock import NS_PER_SECOND
from mandi.model.market import Tick
from mandi.pipeline.seconds import SecondAggregator
from mandi.pipeline.validate import TickPolicy

T0 = parse_ist("2026-04-13 09:15:00")


@st.composite
def tick_streams(draw, max_tokens=4, max_ticks=300):
    """Time-ordered ticks of a few tokens with cumulative volumes that never decrease."""
    n = draw(st.integers(1, max_ticks))
    tokens = draw(st.lists(st.integers(1, 10**6), min_size=1, max_size=max_tokens, unique=True))
    gaps = draw(st.lists(st.integers(0, 3 * NS_PER_SECOND), min_size=n, max_size=n))
    who = draw(st.lists(st.sampled_from(tokens), min_size=n, max_size=n))
    prices = draw(st.lists(st.integers(5, 10**7), min_size=n, max_size=n))
    qty = draw(st.lists(st.integers(0, 500), min_size=n, max_size=n))
    cum: dict[int, int] = defaultdict(int)
    ts, out = T0, []
    for g, tok, p, q in zip(gaps, who, prices, qty, strict=True):
        ts += g
        cum[tok] += q
        out.append(Tick(tok, "NSE", ts, ts, p, cum[tok], q, 0))
    return out


NO_BAND = TickPolicy(price_band_pct=0)  # the streams' prices are random, not a market


def run(ticks, **kw):
    agg = SecondAggregator(policy=NO_BAND, **kw)
    candles = [c for t in ticks for c in agg.handle_tick(t)] + agg.flush()
    return agg, candles


@settings(max_examples=200, deadline=None)
@given(tick_streams())
def test_ohlc_invariants_and_conservation(ticks):
    agg, candles = run(ticks)
    assert not agg.rejected
    for c in candles:
        assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
        assert c.bucket % NS_PER_SECOND == 0 and c.timeframe == 1 and c.closed
    assert sum(c.ticks for c in candles) == len(ticks)
    by_token = defaultdict(list)
    for t in ticks:
        by_token[t.token].append(t)
    for token, ts in by_token.items():
        vol = sum(c.volume for c in candles if c.token == token)
        assert vol == ts[-1].volume - (ts[0].volume - ts[0].last_qty)  # nothing lost
        seconds = [c.bucket for c in candles if c.token == token]
        assert seconds == sorted(set(seconds))  # one candle per second, in order


@settings(max_examples=100, deadline=None)
@given(tick_streams())
def test_each_candle_is_exactly_its_seconds_ticks(ticks):
    _, candles = run(ticks)
    groups = defaultdict(list)
    for t in ticks:
        groups[(t.token, t.ts_event - t.ts_event % NS_PER_SECOND)].append(t)
    assert len(groups) == len(candles)
    for c in candles:
        g = groups[(c.token, c.bucket)]
        assert (c.open, c.close, c.ticks) == (g[0].price, g[-1].price, len(g))
        assert (c.high, c.low) == (max(t.price for t in g), min(t.price for t in g))


def test_out_of_order_within_the_open_second_is_accepted():
    agg = SecondAggregator()
    agg.handle_tick(Tick(1, "NSE", T0 + 900_000_000, 0, 100, 10))
    agg.handle_tick(Tick(1, "NSE", T0 + 100_000_000, 0, 90, 12))  # earlier, same second
    (c,) = agg.flush()
    assert (c.open, c.high, c.low, c.close, c.ticks) == (100, 100, 90, 90, 2)


def test_a_tick_for_a_confirmed_second_is_late_and_its_volume_carried():
    agg = SecondAggregator()
    candles = list(agg.handle_tick(Tick(1, "NSE", T0, 0, 100, 10, 10)))
    candles += agg.handle_tick(Tick(2, "NSE", T0 + NS_PER_SECOND, 0, 200, 5, 5))  # moves on
    assert [c.token for c in candles] == [1]
    assert agg.handle_tick(Tick(1, "NSE", T0 + 500_000_000, 0, 101, 12, 2)) == ()
    assert agg.rejected["late"] == 1
    candles += agg.handle_tick(Tick(1, "NSE", T0 + 2 * NS_PER_SECOND, 0, 102, 15, 3))
    candles += agg.flush()
    # the late tick's 2 shares reach the next candle through the cumulative volume
    assert [c.volume for c in candles if c.token == 1] == [10, 5]


def test_close_delay_gives_stragglers_time():
    agg = SecondAggregator(close_delay_ns=NS_PER_SECOND)
    agg.handle_tick(Tick(1, "NSE", T0, 0, 100, 0))
    assert agg.handle_tick(Tick(2, "NSE", T0 + NS_PER_SECOND, 0, 200, 0)) == ()
    agg.handle_tick(Tick(1, "NSE", T0 + 300_000_000, 0, 99, 0))  # still accepted
    assert not agg.rejected
    out = agg.handle_tick(Tick(2, "NSE", T0 + 2 * NS_PER_SECOND, 0, 201, 0))
    assert [(c.token, c.bucket, c.ticks) for c in out] == [
        (2, T0 + NS_PER_SECOND, 1),
        (1, T0, 2),
    ] or sorted((c.token, c.bucket) for c in out) == [(1, T0), (2, T0 + NS_PER_SECOND)]


def test_bad_ticks_are_counted_per_reason_and_skipped():
    agg = SecondAggregator(known_tokens={1})
    bad = [
        ("bad_price", Tick(1, "NSE", T0, 0, -5)),
        ("bad_price", Tick(1, "NSE", T0, 0, 0)),
        ("bad_price", Tick(1, "NSE", T0, 0, float("nan"))),  # type: ignore[arg-type]
        ("bad_timestamp", Tick(1, "NSE", -1, 0, 100)),
        ("bad_volume", Tick(1, "NSE", T0, 0, 100, -1)),
        ("unknown_token", Tick(99, "NSE", T0, 0, 100)),
    ]
    for _, t in bad:
        assert agg.handle_tick(t) == ()
    agg.handle_tick(Tick(1, "NSE", T0, 0, 100, 50, 0))
    assert agg.handle_tick(Tick(1, "NSE", T0 + 1, 0, 100, 40)) == ()  # volume went down
    expected = {
        "bad_price": 3,
        "bad_timestamp": 1,
        "bad_volume": 1,
        "unknown_token": 1,
        "volume_decreased": 1,
    }
    assert dict(agg.rejected) == expected
    (c,) = agg.flush()  # the good tick survived
    assert c.ticks == 1 and c.volume == 0


def test_volume_baseline_restored_after_restart():
    agg = SecondAggregator()
    agg.set_volume_baseline(1, 1000)
    agg.handle_tick(Tick(1, "NSE", T0, 0, 100, 1040, 7))
    (c,) = agg.flush()
    assert c.volume == 40
