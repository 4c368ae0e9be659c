"""TimeframeBuilder: 1 s → N s equals direct aggregation, alignment to 09:15 IST, forming ==
confirmed at the close, session-end confirmation, and the late policy."""

import datetime as dt
from collections import defaultdict

from hypothesis import given, settings

from mandi.core.calendar import ist_datetime, parse_ist
from mandi.core.clock import NS_PER_SECOND
from mandi.model.market import Candle, Tick
from mandi.pipeline.seconds import SecondAggregator
from mandi.pipeline.timeframes import TimeframeBuilder, bucket_start

from .test_seconds import NO_BAND, tick_streams

T0 = parse_ist("2026-04-13 09:15:00")


def build(ticks, timeframes=(60, 120, 180, 300)):
    agg, tfb = SecondAggregator(policy=NO_BAND), TimeframeBuilder(timeframes)
    seconds, out = [], []
    for t in ticks:
        for c in agg.handle_tick(t):
            seconds.append(c)
            out += tfb.handle_candle(c)
    for c in agg.flush():
        seconds.append(c)
        out += tfb.handle_candle(c)
    out += tfb.flush()
    return seconds, out


def direct(ticks, tf):
    """Aggregate ticks straight into tf buckets (the independent expectation)."""
    groups = defaultdict(list)
    for t in ticks:
        groups[(t.token, bucket_start(t.ts_event, tf))].append(t)
    first_cum = {}
    for t in ticks:
        first_cum.setdefault(t.token, t.volume - t.last_qty)
    out, prev = {}, dict(first_cum)
    for key in sorted(groups, key=lambda k: (k[1], k[0])):
        g = groups[key]
        vol = g[-1].volume - prev[key[0]]
        prev[key[0]] = g[-1].volume
        out[key] = (
            g[0].price,
            max(t.price for t in g),
            min(t.price for t in g),
            g[-1].price,
            vol,
            len(g),
        )
    return out


@settings(max_examples=150, deadline=None)
@given(tick_streams(max_ticks=400))
def test_one_second_to_n_seconds_equals_direct_aggregation(ticks):
    _, out = build(ticks)
    for tf in (60, 120, 180, 300):
        got = {
            (c.token, c.bucket): (c.open, c.high, c.low, c.close, c.volume, c.ticks)
            for c in out
            if c.closed and c.timeframe == tf
        }
        assert got == direct(ticks, tf)


@settings(max_examples=100, deadline=None)
@given(tick_streams(max_ticks=300))
def test_buckets_align_to_0915_ist_and_forming_equals_confirmed(ticks):
    _, out = build(ticks)
    last_forming: dict[tuple[int, int, int], Candle] = {}
    for c in out:
        anchor = parse_ist(ist_datetime(c.bucket).strftime("%Y-%m-%d") + " 09:15:00")
        assert (c.bucket - anchor) % (c.timeframe * NS_PER_SECOND) == 0
        key = (c.token, c.timeframe, c.bucket)
        if c.closed:
            f = last_forming.pop(key)
            assert f.closed is False
            assert (f.open, f.high, f.low, f.close, f.volume, f.ticks) == (
                c.open,
                c.high,
                c.low,
                c.close,
                c.volume,
                c.ticks,
            )
        else:
            last_forming[key] = c
    assert not last_forming  # every forming bucket was confirmed


def test_120s_buckets_start_at_odd_minutes_from_0915():
    assert ist_datetime(bucket_start(parse_ist("2026-04-13 09:16:30"), 120)).time() == dt.time(
        9, 15
    )
    assert ist_datetime(bucket_start(parse_ist("2026-04-13 09:17:00"), 120)).time() == dt.time(
        9, 17
    )
    assert ist_datetime(bucket_start(parse_ist("2026-04-13 15:29:59"), 3600)).time() == dt.time(
        15, 15
    )
    assert ist_datetime(bucket_start(parse_ist("2026-04-13 09:05:00"), 86400)).time() == dt.time(
        9, 15
    )


def one_second(ts, price=100, token=1):
    return Candle(token, "NSE", 1, ts, price, price, price, price, 1, 0, 1, True)


def test_last_bucket_confirmed_at_the_session_close():
    tfb = TimeframeBuilder((300, 3600))
    tfb.handle_candle(one_second(parse_ist("2026-04-13 15:29:59")))
    assert tfb.advance(parse_ist("2026-04-13 15:29:59")) == []
    out = tfb.advance(parse_ist("2026-04-13 15:30:00"))
    assert sorted(c.timeframe for c in out) == [300, 3600]
    assert all(c.closed for c in out)
    # a straggler for the confirmed hour is late, never a second copy
    assert tfb.handle_candle(one_second(parse_ist("2026-04-13 15:29:59"))) == []
    assert tfb.rejected["late"] == 2


def test_special_session_close_confirms_early():
    tfb = TimeframeBuilder((3600,))
    tfb.handle_candle(one_second(parse_ist("2025-10-21 14:40:00")))  # Muhurat closes 14:45
    assert [c.bucket for c in tfb.advance(parse_ist("2025-10-21 14:45:00"))] == [
        parse_ist("2025-10-21 14:15:00")
    ]


def test_late_base_candle_for_an_older_bucket_is_rejected():
    tfb = TimeframeBuilder((60,))
    tfb.handle_candle(one_second(T0 + 61 * NS_PER_SECOND))
    assert tfb.handle_candle(one_second(T0)) == []
    assert tfb.rejected["late"] == 1


def test_forming_emission_can_be_switched_off():
    tfb = TimeframeBuilder((60,), emit_forming=False)
    assert tfb.handle_candle(one_second(T0)) == []
    assert tfb.forming(1)[0].closed is False


def test_volume_and_ticks_through_a_tick_stream():
    ticks = [
        Tick(1, "NSE", T0 + i * 250_000_000, 0, 100 + i, (i + 1) * 10, 10) for i in range(1000)
    ]
    _, out = build(ticks, (60,))
    assert sum(c.volume for c in out if c.closed) == 10_000
    assert sum(c.ticks for c in out if c.closed) == 1000
