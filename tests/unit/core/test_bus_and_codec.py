import datetime as dt
import math

import numpy as np
import pytest

from mandi.bus.codec import codec
from mandi.bus.memory import HANDLER_ERROR_TOPIC, MessageBus, topic_matches
from mandi.core.clock import TestClock
from mandi.core.errors import BusError
from mandi.model.events import SystemEvent
from mandi.model.market import Candle, ChainRow, ChainSnapshot, IndicatorValue, OptionQuote, Tick


@pytest.mark.parametrize(
    ("pattern", "topic", "hit"),
    [
        ("candle:60s:NSE:256265", "candle:60s:NSE:256265", True),
        ("candle:*:NSE:256265", "candle:60s:NSE:256265", True),
        ("candle:*:NSE:*", "candle:60s:BSE:256265", False),
        ("candle:>", "candle:60s:NSE:256265", True),
        ("candle:>", "candle", False),
        ("candle:*", "candle:60s:NSE:1", False),
        ("pub:candle:>", "candle:60s:NSE:1", False),
    ],
)
def test_topic_matching(pattern, topic, hit):
    assert topic_matches(pattern, topic) is hit


def test_failing_handler_is_isolated_and_reported():
    bus = MessageBus(TestClock(123))
    seen, errors = [], []
    bus.subscribe("x:>", lambda t, m: 1 / 0, name="bad")
    bus.subscribe("x:>", lambda t, m: seen.append(m))
    bus.subscribe(HANDLER_ERROR_TOPIC, lambda t, m: errors.append(m))
    bus.publish("x:y", 1)
    assert seen == [1]
    assert bus.handler_errors == 1
    assert errors[0].kind == "handler_error" and errors[0].source == "bad"
    assert errors[0].ts_event == 123 and "ZeroDivisionError" in errors[0].message


def test_a_failing_error_handler_does_not_recurse():
    bus = MessageBus(TestClock())
    bus.subscribe("system:>", lambda t, m: 1 / 0)
    bus.subscribe("a", lambda t, m: 1 / 0)
    bus.publish("a", 1)
    assert bus.handler_errors == 2


def test_subscription_changes_invalidate_the_cache():
    bus = MessageBus(TestClock())
    got = []
    bus.publish("a:b", 0)
    sub = bus.subscribe("a:*", lambda t, m: got.append(m))
    bus.publish("a:b", 1)
    bus.unsubscribe(sub)
    bus.publish("a:b", 2)
    assert got == [1]


def test_invalid_patterns_are_rejected():
    bus = MessageBus(TestClock())
    for bad in ("", "a::b", "a:>:b"):
        with pytest.raises(BusError):
            bus.subscribe(bad, lambda t, m: None)


MESSAGES = [
    Tick(256265, "NSE", 1, 2, 2420010, 10, 1, 0, 2420005, 2420015, 75, 150),
    Candle(256265, "NSE", 60, 1776051900000000000, 1, 3, 1, 2, 10, 0, 4, False),
    IndicatorValue(256265, "NSE", 60, 5, "RSI_14", 55.5, True),
    SystemEvent(5, "started", "hello", data={"a": 1}),
    ChainSnapshot(
        "NIFTY",
        "NSE",
        dt.date(2026, 7, 14),
        7,
        2420690,
        (
            ChainRow(2420000, OptionQuote(5000, iv=0.12), None),
            ChainRow(2425000, None, OptionQuote(7000, oi=650)),
        ),
        65,
        "test",
    ),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_codec_round_trips(msg):
    # compare encodings: NaN fields (an absent IV) are never == themselves
    back = codec.decode(codec.encode(msg))
    assert type(back) is type(msg) and codec.encode(back) == codec.encode(msg)
    if not isinstance(msg, ChainSnapshot):  # JSON has no NaN: see the next test
        back = codec.decode_json(codec.encode_json(msg))
        assert type(back) is type(msg) and codec.encode_json(back) == codec.encode_json(msg)


def test_codec_keeps_nan_iv_and_names_bad_fields():
    snap = MESSAGES[-1]
    back = codec.decode(codec.encode(snap))
    assert math.isnan(back.rows[1].put.iv)
    assert b'"iv":null' in codec.encode_json(snap)  # browsers get null for a missing IV
    with pytest.raises(Exception, match="price"):
        codec.decode_json(
            b'{"type":"Tick","token":1,"exchange":"NSE","ts_event":1,"ts_init":1,"price":"x"}'
        )


# --- per-object interest in batches ---------------------------------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mandi.bus.memory import ConstraintSet, constraint_matches, rows_wanted  # noqa: E402

SEGMENTS = st.sampled_from(["candle", "pub", "60s", "300s", "NSE", "BSE", "7", "9", "x"])


@given(
    st.lists(
        st.lists(st.one_of(SEGMENTS, st.just("*")), min_size=1, max_size=5).map(":".join)
        | st.lists(st.one_of(SEGMENTS, st.just("*")), max_size=4).map(
            lambda s: ":".join([*s, ">"])
        ),
        max_size=3,
    ),
    st.lists(
        st.tuples(
            st.sampled_from([60, 300]), st.sampled_from(["NSE", "BSE"]), st.sampled_from([7, 9])
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_wanted_rows_are_exactly_the_rows_whose_topic_is_subscribed(patterns, rows):
    """For candle records (timeframe, exchange, token), the mask of rows some handler wants
    equals matching each row's topic ``candle:{tf}s:{exchange}:{token}`` against every pattern;
    an interest (no handler) wants no object."""
    bus = MessageBus(TestClock(0))
    for p in patterns:
        bus.subscribe(p, lambda t, m: None)
    bus.subscribe("candle:>", None, name="reads the batch")
    tf = np.array([r[0] for r in rows])
    ex = np.array([["NSE", "BSE"].index(r[1]) for r in rows])
    tok = np.array([r[2] for r in rows])
    mask = rows_wanted(
        bus.wanted(("candle",), 3),
        [(tf, lambda s: int(s.removesuffix("s"))), (ex, ["NSE", "BSE"].index), (tok, int)],
    )
    got = [True] * len(rows) if mask is None else mask.tolist()
    want = [any(topic_matches(p, f"candle:{r[0]}s:{r[1]}:{r[2]}") for p in patterns) for r in rows]
    assert got == want
    assert bus.has_subscribers("candle:60s:NSE:7")  # the interest counts for producers


@given(
    st.lists(
        st.tuples(
            st.lists(st.one_of(SEGMENTS, st.just("*")), min_size=1, max_size=6).map(":".join)
            | st.lists(st.one_of(SEGMENTS, st.just("*")), max_size=5).map(
                lambda s: ":".join([*s, ">"])
            ),
            st.booleans(),
        ),
        max_size=4,
    ),
    st.lists(
        st.tuples(
            st.sampled_from(["60s", "300s", "x"]),
            st.sampled_from(["NSE", "BSE"]),
            st.sampled_from(["7", "9"]),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_an_interested_constraint_matches_exactly_when_the_topic_has_subscribers(subs, topics):
    """``interested`` + ``constraint_matches`` or a ``ConstraintSet`` (what the candle pipeline
    asks for each token it meets) answer as ``has_subscribers`` on the topic, interests (no
    handler) included."""
    bus = MessageBus(TestClock(0))
    for pattern, with_handler in subs:
        bus.subscribe(pattern, (lambda t, m: None) if with_handler else None)
    for values in topics:
        topic = "pub:candle:" + ":".join(values)
        interested = bus.interested(("pub", "candle"), 3)
        got = constraint_matches(interested, values)
        assert got == bus.has_subscribers(topic), topic
        assert (values in ConstraintSet(interested)) == got, topic
