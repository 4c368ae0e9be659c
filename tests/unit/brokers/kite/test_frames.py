"""The fast ticker decoder against the reference decoder (checked against the SDK) and the
official SDK's parser, on real captured frames and on frames the fake's encoder writes."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import kiteconnect
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.brokers.kite import frames
from mandi.core.errors import ParseError
from mandi.feeds.kite import FrameStats, parse_frame

DATA = Path(__file__).resolve().parents[3] / "data" / "broker_ticks"


def _frame(*packets: bytes) -> bytes:
    return frames.encode_message(packets)


REAL = {
    "mock full": _frame(base64.b64decode((DATA / "kite/ticker_full.packet").read_text())),
    "mock quote": _frame(base64.b64decode((DATA / "kite/ticker_quote.packet").read_text())),
    "capture multi": (DATA / "kite_capture_2026-01-21/multi_packet.bin").read_bytes(),
    "capture full": (DATA / "kite_capture_2026-01-21/single_full.bin").read_bytes(),
    "capture index": (DATA / "kite_capture_2026-01-21/single_index_full.bin").read_bytes(),
    "forum index quote": (DATA / "kite_forum/kite_msg_index_NIFTY50_quote_2017.bin").read_bytes(),
    "forum legacy 164": (DATA / "kite_forum/kite_msg_mcx_full_legacy164_2016.bin").read_bytes(),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_fast_decoder_equals_the_reference_on_real_frames(name: str) -> None:
    a, b = FrameStats(), FrameStats()
    fast = frames.decode_ticks(REAL[name], 7, {256265: "NSE"}, a)
    ref = parse_frame(REAL[name], ts_init=7, exchanges={256265: "NSE"}, stats=b)
    assert fast == ref
    assert (a.packets, a.skipped) == (b.packets, b.skipped)


def sdk_parse(data: bytes) -> list[dict]:
    return kiteconnect.KiteTicker("k", "t")._parse_binary(data)  # type: ignore[no-any-return]


levels = st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(0, 10**7), st.integers(0, 999)),
    min_size=5,
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(
    token=st.integers(1, 2**24 - 1).map(lambda t: (t << 8) | 2),
    nums=st.lists(st.integers(0, 2**31), min_size=14, max_size=14),
    bids=levels,
    asks=levels,
)
def test_encoded_full_packets_read_back_by_the_sdk_and_by_mandi(
    token: int, nums: list[int], bids: list, asks: list
) -> None:
    ltp, ltq, avg, vol, buy, sell, o, h, lo, c, oi, oih, oil, ts = nums
    ts = 1_600_000_000 + ts % 10**8
    msg = _frame(
        frames.encode_full(
            token, ltp, ltq, avg, vol, buy, sell, o, h, lo, c, ts, oi, oih, oil, ts, bids, asks
        )
    )
    (sdk,) = sdk_parse(msg)
    assert sdk["instrument_token"] == token
    assert round(sdk["last_price"] * 100) == ltp
    assert (sdk["volume_traded"], sdk["oi"], sdk["last_traded_quantity"]) == (vol, oi, ltq)
    assert round(sdk["depth"]["buy"][0]["price"] * 100) == bids[0][1]
    assert sdk["depth"]["sell"][4]["quantity"] == asks[4][0]
    (t,) = frames.decode_ticks(msg, 0, None, FrameStats())
    assert (t.token, t.price, t.volume, t.oi, t.bid, t.ask, t.bid_qty, t.ask_qty) == (
        token,
        ltp,
        vol,
        oi,
        bids[0][1],
        asks[0][1],
        bids[0][0],
        asks[0][0],
    )
    assert t.ts_event == ts * 10**9
    assert [t] == parse_frame(msg, stats=FrameStats())


def test_index_ltp_and_quote_packets() -> None:
    msg = _frame(
        frames.encode_index(256265, 2417125, 2420000, 2410000, 2415000, 2400000, 1_700_000_000),
        frames.encode_index(260105, 5500000, 5510000, 5490000, 5495000, 5480000),
        frames.encode_ltp(408065, 153370),
        frames.encode_quote(
            408065, 153370, 7, 153037, 1192471, 256443, 363009, 156915, 157500, 156105, 156780
        ),
    )
    sdk = sdk_parse(msg)
    assert [p["mode"] for p in sdk] == ["full", "quote", "ltp", "quote"]
    assert round(sdk[0]["ohlc"]["close"] * 100) == 2400000
    ticks = frames.decode_ticks(msg, 5, None, FrameStats())
    assert ticks == parse_frame(msg, ts_init=5, stats=FrameStats())
    assert [t.price for t in ticks] == [2417125, 5500000, 153370, 153370]
    assert ticks[0].ts_event == 1_700_000_000 * 10**9 and ticks[1].ts_event == 5


def test_half_written_frames_raise_and_unknown_packets_are_counted() -> None:
    msg = REAL["capture multi"]
    for cut in (3, len(msg) // 2, len(msg) - 1):
        with pytest.raises(ParseError, match="truncated at offset"):
            frames.decode_ticks(msg[:cut], 0, None, FrameStats())
    with pytest.raises(ParseError, match="empty"):
        frames.decode_ticks(b"", 0, None, FrameStats())
    st_ = FrameStats()
    assert frames.decode_ticks(frames.HEARTBEAT, 0, None, st_) == [] and st_.heartbeats == 1
    odd = _frame(b"\x00\x00\x01\x01" + b"\x00" * 16, frames.encode_ltp(408065, 100))
    ticks = frames.decode_ticks(odd, 0, None, st_)
    assert [t.price for t in ticks] == [100]
    assert st_.skipped == {"unknown packet length 20": 1}
    assert len(frames.split_message(msg, 1)) == struct.unpack(">H", msg[:2])[0]
