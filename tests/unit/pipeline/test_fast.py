"""The columnar candle pipeline against the reference classes.

Streaming (:class:`FastCandles`): on random streams — several tokens, bad ticks of every kind
the tick policy knows (floats, strings and 2**64 in every field, prices outside the band, spikes
and real level shifts, volume jumps, ticks stamped ahead of the feed's clock), late and
out-of-order ticks, decreasing volumes, unknown tokens, session closes (normal, Muhurat, a
holiday), IST midnight, a close delay, clock-driven ``advance`` calls, restored volume baselines,
price references and circuit limits, several policies, flushes, the stream cut into random
batches — it publishes exactly the candles ``CandlePipeline`` publishes, in the same order, with
the same rejection counts and counters, and keeps the same ticks as valid.
Replay (:func:`replay_candles`): bit-identical to the confirmed candles of the streaming path.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.bus.memory import MessageBus
from mandi.core.calendar import parse_ist
from mandi.core.clock import NS_PER_SECOND, TestClock
from mandi.model.market import Candle, Tick
from mandi.pipeline.candles import CandlePipeline
from mandi.pipeline.fast import (
    CANDLE_DTYPE,
    FastCandlePipeline,
    FastCandles,
    canonical_order,
    records_to_candles,
    replay_candles,
)
from mandi.pipeline.validate import TickPolicy

NS = NS_PER_SECOND
STARTS = [
    parse_ist("2026-04-13 09:14:57"),  # the open
    parse_ist("2026-04-13 15:28:31"),  # the close, and data after it
    parse_ist("2025-10-21 14:43:55"),  # Muhurat: closes at 14:45
    parse_ist("2026-04-14 10:00:00"),  # a holiday: no session at all
    parse_ist("2026-04-13 23:58:01"),  # IST midnight
]
TOKENS = [11, 256265, 7, 260105]
GAPS = [0, 1, 1000, 300_000_000, 999_999_999, NS, NS + 1, 2 * NS + 500_000_000, 61 * NS]
BACK = [-1, -400_000_000, -NS, -2 * NS - 7]


class RecordingBus(MessageBus):
    """A bus that also logs every publication (so the subscriptions can vary freely)."""

    def __init__(self) -> None:
        super().__init__(TestClock())
        self.log: list[tuple[str, Any]] = []

    def publish(self, topic: str, message: Any) -> None:  # type: ignore[override]
        self.log.append((topic, message))
        super().publish(topic, message)


POLICIES = [
    TickPolicy(),
    TickPolicy(price_band_pct=0),
    TickPolicy(price_band_pct=1, price_band_min_paise=0, price_band_confirm=2, max_ahead_ms=0),
    TickPolicy(price_band_pct=30, price_band_confirm=4, max_volume=10**6, max_volume_step=300),
]
# values no int field may hold: the object path must reject them, never round or truncate
NOT_INTS: list[Any] = [1.5, 2.0, "100", None, 2**64, -(2**70), float("nan"), float("inf")]


def walk(rng: np.random.Generator, price: int) -> int:
    """The next price of a token: a small random step, at least 5 paise."""
    return max(5, price + int(rng.integers(-price // 50 - 5, price // 50 + 6)))


def hostile(rng: np.random.Generator, tick: Tick, price: int) -> Tick:
    """``tick`` with one field broken the way a buggy or hostile feed breaks it."""
    r = int(rng.integers(0, 12))
    field = ["price", "ts_event", "volume", "last_qty", "oi", "bid", "ask", "bid_qty", "ask_qty"][
        r % 9
    ]
    if r >= 9:  # a price far out of band: a spike, a unit error, paise sent as rupees
        return msgspec.structs.replace(tick, price=int(rng.choice([price * 10, price // 100 + 1])))
    return msgspec.structs.replace(tick, **{field: NOT_INTS[int(rng.integers(0, len(NOT_INTS)))]})


SUBSCRIPTIONS = [
    "pub:candle:>",
    "pub:candle:60s:NSE:>",
    "pub:candle:*:*:11",
    "pub:candle:120s:BSE:7",
    "candle:>",
]


@st.composite
def events(draw: Any, max_ticks: int = 160) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """A scenario: pipeline settings and a list of ("ticks", [...]) / ("advance", ns) /
    ("flush",) / ("baseline", token, volume) / ("subscribe", pattern) steps. Hypothesis draws
    the settings, the length and a seed; NumPy draws the ticks (fast, and it shrinks by length)."""
    kw: dict[str, Any] = {
        "timeframes": draw(
            st.sampled_from([(60, 120, 180, 300), (60,), (120, 3600), (1, 7, 86400)])
        ),
        "close_delay_ns": draw(st.sampled_from([0, 0, NS, 500_000_000, 2 * NS])),
        "emit_forming": draw(st.booleans()),
        "policy": draw(st.sampled_from(POLICIES)),
    }
    known = draw(st.sampled_from([None, None, {11, 256265, 7}]))
    if known is not None:
        kw["known_tokens"] = known
    n = draw(st.integers(1, max_ticks))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    t = int(rng.choice(STARTS))
    back = draw(st.sampled_from([0, 2, 8]))  # % of ticks going back in time
    tokens = [*TOKENS, 99] if known else TOKENS
    steps: list[tuple[Any, ...]] = [("subscribe", str(rng.choice(SUBSCRIPTIONS)))]
    cum: dict[int, int] = {}
    px: dict[int, int] = {}
    batch: list[Tick] = []
    clock = bool(rng.integers(0, 2))  # batches come with the feed's clock (or without one)
    for _ in range(n):
        kind = int(rng.integers(0, 100))
        token = int(rng.choice(tokens))
        t += int(rng.choice(BACK)) if kind < back else int(rng.choice(GAPS))
        q = int(rng.integers(0, 400))
        c = cum.get(token, int(rng.choice([0, 1000, 5])))
        price = px[token] = walk(rng, px.get(token, int(rng.integers(5, 10**7))))
        ts, vol, lq = t, c + q, q
        if kind in (8, 9):
            price = int(rng.choice([0, -5, 1 << 53]))
        elif kind == 10:
            ts = int(rng.choice([0, -1]))
        elif kind == 11:
            vol = -1
        elif kind in (12, 13):
            vol = max(0, c - int(rng.integers(1, 50)))  # the cumulative volume goes down
        elif kind == 14:
            lq = int(rng.integers(-5, 2000))  # odd last quantities (first tick baselines)
        elif kind == 15:
            vol = c + int(rng.choice([10**4, 10**12]))  # a jump of the cumulative volume
        elif kind == 16:
            ts = t + int(rng.choice([6 * NS, 86_400 * NS]))  # stamped ahead of the clock
        elif kind in (17, 18):  # a real move: the level shifts for good
            price = px[token] = int(px[token] * rng.choice([3, 0.3])) + 5
        else:
            cum[token] = vol
        exchange = "NSE" if token != 7 else "BSE"
        tick = Tick(token, exchange, ts, 0, price, vol, lq, int(rng.integers(0, 10**6)))
        if kind in (19, 20, 21):
            tick = hostile(rng, tick, px[token])
        batch.append(tick)
        cut = int(rng.integers(0, 100))
        if cut < 12:
            steps.append(("ticks", batch, t + int(rng.choice([0, NS, 10 * NS])) if clock else None))
            batch = []
        if cut < 3:
            steps.append(("advance", t + int(rng.choice([0, NS, 1_500_000_000, 70 * NS]))))
        elif cut == 3:
            steps.append(("baseline", int(rng.choice(TOKENS)), int(rng.integers(0, 5000))))
        elif cut == 4:
            steps.append(("subscribe", str(rng.choice(SUBSCRIPTIONS))))
        elif cut == 5:
            steps.append(("reference", int(rng.choice(TOKENS)), int(rng.integers(5, 10**7))))
        elif cut == 6:
            lo = int(rng.integers(0, 10**6))
            steps.append(("limits", int(rng.choice(TOKENS)), lo, int(rng.choice([0, lo * 20]))))
    steps.append(("ticks", batch, t if clock else None))
    if rng.integers(0, 2):
        steps.append(("flush",))
    return steps, kw


def run(steps: list[tuple[Any, ...]], kw: dict[str, Any], fast: bool) -> tuple[list[Any], Any]:
    bus = RecordingBus()
    p: Any = (FastCandlePipeline if fast else CandlePipeline)(bus, **kw)
    for step in steps:
        if step[0] == "ticks":
            # the fast path takes the whole batch at once, the reference tick by tick; both
            # say which ticks have valid values (what the node stores and publishes)
            bus.log.append(("valid", p.handle_ticks(step[1], step[2])))
        elif step[0] == "advance":
            p.advance(step[1])
        elif step[0] == "baseline":
            p.seconds.set_volume_baseline(step[1], step[2])
        elif step[0] == "reference":
            p.seconds.set_price_reference(step[1], step[2])
        elif step[0] == "limits":
            p.seconds.set_price_limits(step[1], step[2], step[3])
        elif step[0] == "subscribe":
            bus.subscribe(step[1], lambda _t, _m: None)
        else:
            p.flush()
    return bus.log, p


def assert_same_run(steps: list[tuple[Any, ...]], kw: dict[str, Any]) -> None:
    want, ref = run(steps, kw, fast=False)
    got, fast = run(steps, kw, fast=True)
    assert got == want  # same topics, same candles, same order
    assert fast.seconds.rejected == ref.seconds.rejected
    assert fast.frames.rejected == ref.frames.rejected
    assert fast.seconds.last_rejection == ref.seconds.last_rejection
    assert fast.seconds.watermark_ns == ref.seconds.watermark_ns
    assert (fast.seconds.ticks, fast.seconds.candles) == (ref.seconds.ticks, ref.seconds.candles)
    assert fast.frames.confirmed == ref.frames.confirmed
    for token in [*TOKENS, 99]:
        assert fast.frames.forming(token) == ref.frames.forming(token)


@settings(max_examples=400, deadline=None)
@given(events())
def test_streaming_equals_the_reference_pipeline(scenario: Any) -> None:
    assert_same_run(*scenario)


@settings(max_examples=60, deadline=None)
@given(events(max_ticks=600))
def test_streaming_equals_the_reference_on_longer_streams(scenario: Any) -> None:
    assert_same_run(*scenario)


def test_records_one_tick_at_a_time_equal_records_of_the_batch() -> None:
    rng = np.random.default_rng(3)
    t0 = parse_ist("2026-04-13 15:29:00")
    n = 400
    cols = (
        rng.integers(0, 9, n),
        t0 + np.cumsum(rng.integers(0, 900_000_000, n)),
        rng.integers(100, 200, n),
        np.arange(n) * 3,
        np.zeros(n, np.int64),
        rng.integers(0, 50, n),
    )
    one, many = FastCandles(close_delay_ns=NS), FastCandles(close_delay_ns=NS)
    a = np.concatenate([one.process(*(c[i : i + 1] for c in cols)) for i in range(n)])
    b = many.process(*cols)
    assert a.tobytes() == b.tobytes() and len(a) > 100
    assert one.flush().tobytes() == many.flush().tobytes()


# --- replay ---------------------------------------------------------------------------------------


@st.composite
def streams(draw: Any, clean: bool, max_ticks: int = 300) -> tuple[dict[str, np.ndarray], dict]:
    """Tick columns; ``clean``: time and cumulative volumes never go back (bad ticks of the
    stateless kinds still appear)."""
    kw: dict[str, Any] = {
        "timeframes": draw(st.sampled_from([(60, 120, 180, 300), (120, 3600), (1, 7, 86400)])),
        "close_delay_ns": 0 if clean else draw(st.sampled_from([0, NS])),
        "policy": draw(st.sampled_from(POLICIES)),
    }
    if draw(st.booleans()):
        kw["known_tokens"] = {11, 256265, 7}
    n = draw(st.integers(1, max_ticks))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    t = int(rng.choice(STARTS))
    cum: dict[int, int] = {}
    px: dict[int, int] = {}
    cols: dict[str, list[int]] = {k: [] for k in ("token", "ts", "price", "volume", "lq", "oi")}
    for _ in range(n):
        kind = int(rng.integers(0, 100))
        token = int(rng.choice([*TOKENS, 99]))
        t += int(rng.choice(GAPS if clean or kind >= 5 else BACK))
        q = int(rng.integers(0, 300))
        c = cum.get(token, int(rng.choice([0, 700])))
        price = px[token] = walk(rng, px.get(token, int(rng.integers(5, 10**6))))
        ts, vol, oi = t, c + q, int(rng.integers(0, 99))
        if kind in (6, 7):
            price = 0
        elif kind == 8:
            ts = -3
        elif kind == 9:
            vol = -1
        elif kind == 10 and not clean:
            vol = max(0, c - 1)
        elif kind == 11:
            price = price * 10  # out of the band (a real move when a few agree)
            cum[token] = vol
        elif kind == 12:
            vol = c + 10**12  # a volume jump (or beyond the largest volume)
        elif kind == 13:
            oi = -1  # a bad field
        else:
            cum[token] = vol
        for k, x in zip(cols, (token, ts, price, vol, q, oi), strict=True):
            cols[k].append(x)
    return {k: np.array(v, dtype=np.int64) for k, v in cols.items()}, kw


def streamed(cols: dict[str, np.ndarray], kw: dict[str, Any]) -> tuple[np.ndarray, FastCandles]:
    f = FastCandles(**kw, emit_forming=True)
    half = len(cols["ts"]) // 2  # in two batches: the state carries over
    parts = []
    for sl in (slice(0, half), slice(half, None)):
        parts.append(
            f.process(*(cols[k][sl] for k in ("token", "ts", "price", "volume", "lq", "oi")))
        )
    parts.append(f.flush())
    out = np.concatenate(parts)
    return canonical_order(out[out["closed"] == 1]), f


def assert_replay_identical(cols: dict[str, np.ndarray], kw: dict[str, Any]) -> str:
    want, f = streamed(cols, kw)
    args = (cols["token"], cols["ts"], cols["price"], cols["volume"], cols["lq"], cols["oi"])
    rep = replay_candles(*args, **kw)
    assert rep.candles.dtype == CANDLE_DTYPE
    assert rep.candles.tobytes() == want.tobytes()  # bit-identical, same order
    assert rep.rejected == f.rejected
    assert rep.frames_rejected == f.frames_rejected
    # without the 1 s candles: the same timeframe candles (a builder's own 1 s timeframe stays)
    one = want["timeframe"] == 1
    if 1 in kw.get("timeframes", ()):
        one[np.flatnonzero(one)[::2]] = False
    bare = replay_candles(*args, **kw, seconds=False)
    assert bare.candles.tobytes() == want[~one].tobytes()
    assert bare.path == rep.path
    return rep.path


@settings(max_examples=300, deadline=None)
@given(streams(clean=True))
def test_replay_of_clean_streams_is_single_pass_and_bit_identical(scenario: Any) -> None:
    cols, kw = scenario
    path = assert_replay_identical(cols, kw)
    if 7 not in kw["timeframes"]:  # a 7 s grid shifts at IST midnight: the streaming kernel
        assert path == "single-pass"


@settings(max_examples=200, deadline=None)
@given(streams(clean=False))
def test_replay_of_any_stream_is_bit_identical(scenario: Any) -> None:
    assert_replay_identical(*scenario)


def test_replay_confirms_post_close_data_like_the_clock() -> None:
    # 120 s buckets straddle 15:30: the bucket [15:29, 15:31) ends at the close; a second
    # candle after the close is late (the clock confirmed the bucket), a first one opens it
    t = parse_ist("2026-04-13 15:29:58")
    ts = np.array([t, t + NS, t + 2 * NS, t + 3 * NS, t + 3 * NS + 5, t + 4 * NS])
    token = np.array([1, 1, 1, 1, 2, 2])
    px = np.arange(100, 106)
    vol = np.arange(6) * 10
    rep = replay_candles(token, ts, px, vol, timeframes=(120,))
    assert rep.path == "single-pass"
    assert rep.frames_rejected["late"] == 3  # token 1 at 15:30:00 and :01, token 2 at :02
    cols = {
        "token": token,
        "ts": ts,
        "price": px,
        "volume": vol,
        "lq": np.zeros(6, np.int64),
        "oi": np.zeros(6, np.int64),
    }
    assert_replay_identical(cols, {"timeframes": (120,), "close_delay_ns": 0})


def test_replay_of_a_realistic_day_is_single_pass() -> None:
    rng = np.random.default_rng(5)
    t0 = parse_ist("2026-04-13 09:15:00")
    n = 20_000
    ts = np.sort(t0 + rng.integers(0, 23_000 * NS, n))  # runs past the 15:30 close
    token = rng.integers(0, 50, n)
    vol = np.zeros(n, dtype=np.int64)
    for k in range(50):
        m = token == k
        vol[m] = np.cumsum(rng.integers(0, 100, m.sum()))
    px = 2_000_000 + rng.integers(-500, 500, n)
    cols = {
        "token": token,
        "ts": ts,
        "price": px,
        "volume": vol,
        "lq": np.zeros(n, np.int64),
        "oi": rng.integers(0, 10**6, n),
    }
    assert assert_replay_identical(cols, {"close_delay_ns": 0}) == "single-pass"


# --- CandlePipeline's interface ---------------------------------------------------------------


def test_frames_warm_up_from_stored_one_second_candles() -> None:
    bus = MessageBus(TestClock())
    bus.subscribe("pub:candle:60s:NSE:5", lambda _t, _m: None)  # forming 60 s only
    ref = CandlePipeline(bus, (60, 300))
    fast = FastCandlePipeline(bus, (60, 300))
    t = parse_ist("2026-04-13 10:00:00")
    warm = [Candle(5, "NSE", 1, t + k * NS, 100 + k, 101 + k, 99, 100, 3, 0, 2) for k in range(90)]
    for c in warm:
        assert fast.frames.handle_candle(c) == ref.frames.handle_candle(c)
    assert fast.frames.forming(5) == ref.frames.forming(5)
    assert fast.frames.advance(t + 300 * NS) == ref.frames.advance(t + 300 * NS)
    assert fast.frames.confirmed == ref.frames.confirmed


def test_bad_ticks_counted_per_reason_with_the_last_one_kept() -> None:
    t0 = parse_ist("2026-04-13 09:15:00")
    known = {1}
    f = FastCandles(known_tokens=known)
    ticks = [
        Tick(1, "NSE", t0, 0, -5),
        Tick(1, "NSE", t0, 0, float("nan")),  # type: ignore[arg-type]
        Tick(1, "NSE", t0, 0, 100.5),  # type: ignore[arg-type]  # not paise
        Tick(1, "NSE", -1, 0, 100),
        Tick(1, "NSE", float(t0), 0, 100),  # type: ignore[arg-type]
        Tick(1, "NSE", t0, 0, 100, -1),
        Tick(99, "NSE", t0, 0, 100),
        Tick(1, "NSE", t0, 0, 100, 50, 0),
        Tick(1, "NSE", t0 + 1, 0, 100, 40),
    ]
    assert f.handle_ticks(ticks) == []
    assert f.rejected == Counter(
        {
            "bad_price": 3,
            "bad_timestamp": 2,
            "bad_volume": 1,
            "unknown_token": 1,
            "volume_decreased": 1,
        }
    )
    assert f.last_rejection == ("volume_decreased", ticks[-1])
    known.add(99)  # the known set is consulted live
    f.handle_ticks([Tick(99, "NSE", t0 + 2, 0, 100)])
    assert f.rejected["unknown_token"] == 1
    assert [
        c.token for c in f.handle_ticks([]) + records_to_candles(f.flush()) if c.timeframe == 1
    ] == [1, 99]


def test_bad_fields_in_columns_are_rejected_by_streaming_and_replay() -> None:
    """The columns path skips the per-tick field check only for a batch whose fields are all
    good: a negative or too-large last quantity or OI is still ``bad_field``, tick by tick."""
    t0 = parse_ist("2026-04-13 09:15:00")
    n = 6
    cols = {
        "token": [1] * n,
        "ts_event": [t0 + i * NS_PER_SECOND for i in range(n)],
        "price": [100 + i for i in range(n)],
        "volume": [10 * (i + 1) for i in range(n)],
        "last_qty": [1, -5, 1, 1, 1, 1],
        "oi": [0, 0, 0, 1 << 53, 0, 7],
    }
    for run in ("stream", "replay"):
        if run == "stream":
            f = FastCandles()
            out = np.concatenate([f.process(**cols), f.flush()])
            rejected = f.rejected
        else:
            r = replay_candles(*cols.values())
            out, rejected = r.candles, r.rejected
        assert rejected == Counter({"bad_field": 2}), run
        ones = out[out["timeframe"] == 1]
        assert list(ones["open"]) == [100, 102, 104, 105], run


def test_columns_in_big_batches_cross_the_output_buffer() -> None:
    rng = np.random.default_rng(1)
    t0 = parse_ist("2026-04-13 09:15:00")
    n = 60_000
    ts = t0 + np.arange(n) * 97_000_000
    token = rng.integers(0, 700, n)
    px = rng.integers(100, 200, n)
    vol = np.arange(n)
    whole_run = FastCandles()
    whole = whole_run.process(token, ts, px, vol)
    assert len(whole) > len(whole_run._out)  # more than one buffer-full in one call
    batched_run = FastCandles()
    batched = np.concatenate(
        [
            batched_run.process(
                token[i : i + 777], ts[i : i + 777], px[i : i + 777], vol[i : i + 777]
            )
            for i in range(0, n, 777)
        ]
    )
    assert whole.tobytes() == batched.tobytes()
    assert whole_run.flush().tobytes() == batched_run.flush().tobytes()


def test_timeframes_are_validated() -> None:
    with pytest.raises(ValueError, match="timeframes must be positive"):
        FastCandles(())
    with pytest.raises(ValueError, match="timeframes must be positive"):
        FastCandles((60, 0))
