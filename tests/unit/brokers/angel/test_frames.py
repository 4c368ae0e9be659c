"""SmartStream v2 frames: mandi's decoders (the reference :func:`mandi.feeds.angel.parse_frame`
and the fast :func:`mandi.brokers.angel.frames.decode_tick`) against the official
``smartapi-python`` parser, on the documented synthetic vectors and on frames mandi's encoder
writes; and a hypothesis fuzz: any bytes either decode equally or raise ``ParseError``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.brokers.angel import frames
from mandi.brokers.angel.wire import mandi_token
from mandi.core.errors import ParseError
from mandi.feeds.angel import parse_frame, parse_quote

DATA = Path(__file__).resolve().parents[3] / "data" / "broker_ticks" / "angel_synthetic"


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from smartapi_sdk import import_smartapi

    import_smartapi()
    from SmartApi.smartWebSocketV2 import SmartWebSocketV2

    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("sdk"))  # the SDK writes logs/ into the working directory
    try:
        return SmartWebSocketV2("jwt", "key", "client", "feed")
    finally:
        os.chdir(cwd)


def _frames() -> list[bytes]:
    out = [(DATA / n).read_bytes() for n in sorted(os.listdir(DATA)) if n.endswith(".bin")]
    for k in range(20):
        bids = [(75 * (i + 1), 12340 - 5 * i, i + 1) for i in range(k % 6)]
        asks = [(65 * (i + 1), 12350 + 5 * i, i + 2) for i in range(5 - k % 6)]
        out.append(frames.encode_ltp(1 + k % 4, str(2885 + k), k, 1752744600000 + k, 100 + k))
        out.append(
            frames.encode_quote(
                2,
                str(43650 + k),
                k,
                1752744600000,
                12345 + k,
                75,
                12010,
                4567800 + k,
                123450.0,
                98760.0,
                11800,
                12900,
                11500,
                11905,
            )
        )
        out.append(
            frames.encode_snap(
                4 if k % 2 else 2,
                str(800000 + k),
                k,
                1752744600000 + k,
                12345,
                75,
                12010,
                4567800,
                1.5e5,
                9.9e4,
                11800,
                12900,
                11500,
                11905,
                1752744540,
                987650 + k,
                2.5,
                bids,
                asks,
                15000,
                9000,
                13000,
                9500,
            )
        )
    return out


def test_the_documented_vectors_decode_as_their_expectations() -> None:
    want = json.loads((DATA / "angel_synthetic_expected.json").read_text())
    q = parse_quote((DATA / "angel_snapquote_mode3.bin").read_bytes())
    snap = want["angel_snapquote_mode3.bin"]
    assert q.sequence == snap["sequence_number"] and q.oi == snap["open_interest"]
    assert q.oi_change_percent == snap["open_interest_change_percentage_as_double"]
    assert [b.price for b in q.bids] == [x["price_paise"] for x in snap["best_five"][:5]]
    t = frames.decode_tick((DATA / "angel_snapquote_mode3.bin").read_bytes(), 7)
    assert (
        t.token == mandi_token(2, "43650") and t.price == want["common"]["last_traded_price_paise"]
    )


def test_mandi_decodes_every_frame_as_the_official_sdk(sdk: Any) -> None:
    fs = _frames()
    for raw in fs:
        theirs = sdk._parse_binary_data(raw)
        ours = parse_quote(raw)
        fast = frames.decode_tick(raw, 1)
        assert ours.token == int(theirs["token"]) and fast.token >> 8 == ours.token
        assert ours.exchange_type == theirs["exchange_type"] == fast.token & 0xFF
        assert ours.sequence == theirs["sequence_number"]
        assert ours.exchange_time == theirs["exchange_timestamp"] * 10**6 == fast.ts_event
        assert ours.last_price == theirs["last_traded_price"] == fast.price
        if theirs["subscription_mode"] >= 2:
            assert ours.volume == theirs["volume_trade_for_the_day"] == fast.volume
            assert ours.last_quantity == theirs["last_traded_quantity"] == fast.last_qty
            assert ours.buy_quantity == theirs["total_buy_quantity"]
            assert (ours.open, ours.high, ours.low, ours.close) == (
                theirs["open_price_of_the_day"],
                theirs["high_price_of_the_day"],
                theirs["low_price_of_the_day"],
                theirs["closed_price"],
            )
        if theirs["subscription_mode"] == 3:
            assert ours.oi == theirs["open_interest"] == fast.oi
            assert ours.upper_circuit == theirs["upper_circuit_limit"]
            assert ours.low_52_week == theirs["52_week_low_price"]
            # the SDK's public keys map flag 1 to "best_5_buy_data" (its internal names are
            # swapped twice, README §5)
            buys = [(d["quantity"], d["price"]) for d in theirs["best_5_buy_data"]]
            assert [(b.quantity, b.price) for b in ours.bids] == buys
            sells = [(d["quantity"], d["price"]) for d in theirs["best_5_sell_data"]]
            assert [(a.quantity, a.price) for a in ours.asks] == sells
            assert (fast.bid, fast.bid_qty) == ((buys[0][1], buys[0][0]) if buys else (0, 0))
            assert (fast.ask, fast.ask_qty) == ((sells[0][1], sells[0][0]) if sells else (0, 0))
    assert len(fs) == 63


def _same(raw: bytes) -> None:
    try:
        ref = parse_frame(raw, ts_init=5)
    except ParseError:
        ref = None
    try:
        fast = frames.decode_tick(raw, 5)
    except ParseError:
        fast = None
    if ref is None or fast is None:
        return  # either may refuse a frame the other reads (the reference checks more fields)
    assert (fast.token >> 8, fast.price, fast.volume, fast.oi, fast.bid, fast.ask) == (
        ref.token,
        ref.price,
        ref.volume,
        ref.oi,
        ref.bid,
        ref.ask,
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes_never_crash(raw: bytes) -> None:
    _same(raw)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(_frames()),
    st.lists(st.tuples(st.integers(0, 378), st.integers(0, 255)), max_size=6),
    st.integers(0, 379),
)
def test_fuzz_mutated_real_layout_frames(
    raw: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    b = bytearray(raw)
    for i, v in flips:
        if i < len(b):
            b[i] = v
    _same(bytes(b[: max(cut, 1)]))
    _same(bytes(b))
