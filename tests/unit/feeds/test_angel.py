"""SmartAPI v2 decoder on the SYNTHETIC vectors in tests/data/broker_ticks/angel_synthetic
(packed from the documented layout by the data collector, not captured from Angel One: they
check offsets and endianness, not the layout itself)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.core.errors import ParseError
from mandi.feeds.angel import AngelDepth, parse_frame, parse_quote
from mandi.model.market import Tick

DATA = Path(__file__).resolve().parents[2] / "data" / "broker_ticks" / "angel_synthetic"
EXP = json.loads((DATA / "angel_synthetic_expected.json").read_text())
LTP = (DATA / "angel_ltp_mode1.bin").read_bytes()
QUOTE = (DATA / "angel_quote_mode2.bin").read_bytes()
SNAP = (DATA / "angel_snapquote_mode3.bin").read_bytes()
MS = 1_000_000


def test_common_header_in_every_mode() -> None:
    c = EXP["common"]
    for data, name in ((LTP, "angel_ltp_mode1.bin"), (QUOTE, "angel_quote_mode2.bin"),
                       (SNAP, "angel_snapquote_mode3.bin")):  # fmt: skip
        q = parse_quote(data)
        assert len(data) == EXP[name]["bytes"]
        assert (q.exchange_type, q.exchange, q.token) == (
            c["exchange_type"],
            "NSE",
            int(c["token"]),
        )
        assert q.sequence == EXP[name]["sequence_number"]
        assert q.exchange_time == c["exchange_timestamp_ms"] * MS
        assert (
            q.last_price
            == c["last_traded_price_paise"]
            == round(c["last_traded_price_rupees"] * 100)
        )


def test_ltp_mode() -> None:
    q = parse_quote(LTP)
    assert q.mode == "ltp" and q.volume is None and q.bids == ()
    assert parse_frame(LTP, ts_init=42) == Tick(
        token=43650, exchange="NSE", ts_event=1752744600000 * MS, ts_init=42, price=12345
    )


def test_quote_mode() -> None:
    e = EXP["angel_quote_mode2.bin"]
    q = parse_quote(QUOTE)
    assert q.mode == "quote"
    assert (q.last_quantity, q.average_price, q.volume) == (
        e["last_traded_quantity"],
        e["average_traded_price_paise"],
        e["volume_trade_for_the_day"],
    )
    assert (q.buy_quantity, q.sell_quantity) == (e["total_buy_quantity"], e["total_sell_quantity"])
    assert (q.open, q.high, q.low, q.close) == (
        e["open_paise"],
        e["high_paise"],
        e["low_paise"],
        e["close_paise"],
    )
    t = parse_frame(QUOTE)
    assert (t.volume, t.last_qty, t.oi, t.bid, t.ask) == (4567800, 75, 0, 0, 0)


def test_snap_quote_mode() -> None:
    e = EXP["angel_snapquote_mode3.bin"]
    q = parse_quote(SNAP)
    assert q.mode == "snap_quote"
    assert q.last_trade_time == e["last_traded_timestamp"] * 1_000_000_000
    assert q.oi == e["open_interest"]
    assert q.oi_change_percent == e["open_interest_change_percentage_as_double"]
    levels = e["best_five"]
    assert q.bids == tuple(
        AngelDepth(lv["quantity"], lv["price_paise"], lv["orders"])
        for lv in levels
        if lv["flag"] == 1
    )
    assert q.asks == tuple(
        AngelDepth(lv["quantity"], lv["price_paise"], lv["orders"])
        for lv in levels
        if lv["flag"] == 0
    )
    assert (q.upper_circuit, q.lower_circuit, q.high_52_week, q.low_52_week) == (
        e["upper_circuit_paise"], e["lower_circuit_paise"], e["52_week_high_paise"],
        e["52_week_low_paise"],
    )  # fmt: skip
    assert parse_frame(SNAP, ts_init=7) == Tick(
        token=43650, exchange="NSE", ts_event=1752744600000 * MS, ts_init=7, price=12345,
        volume=4567800, last_qty=75, oi=987650, bid=12340, ask=12350, bid_qty=75, ask_qty=75,
    )  # fmt: skip


@pytest.mark.parametrize(("data", "size"), [(LTP, 51), (QUOTE, 123), (SNAP, 379)])
def test_every_truncation_is_a_clear_error(data: bytes, size: int) -> None:
    for cut in range(1, size):
        with pytest.raises(
            ParseError, match=rf"truncated: mode {data[0]} .* needs {size} bytes, got {cut}"
        ):
            parse_frame(data[:cut])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x09" + LTP[1:], r"unknown mode 9 \(byte 0"),
        (b"\x04" + SNAP[1:] + bytes(64), r"mode 4 \(20-level depth\) carries no trade"),
        (b"pong", "unknown mode 112"),
        (LTP[:1] + b"\x06" + LTP[2:], r"unknown exchange type 6 \(byte 1\)"),
        (LTP[:1] + b"\x0d" + LTP[2:], "exchange type 13 = cde_fo"),
        (LTP[:2] + b"43x50".ljust(25, b"\x00") + LTP[27:], r"token b'43x50.*is not a number"),
        (LTP[:2] + b"43\x0050".ljust(25, b"\x00") + LTP[27:], "is not a number"),
        (LTP[:43] + struct.pack("<q", -5), "negative last traded price -5 at offset 43"),
        (QUOTE[:67] + struct.pack("<q", -1) + QUOTE[75:], "negative volume -1 at offset 67"),
        (SNAP[:147] + struct.pack("<h", 7) + SNAP[149:], "best-five flag 7 at offset 147"),
    ],
)
def test_bad_frames(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_frame(data)


def test_other_exchanges() -> None:
    for ex_type, exchange in ((1, "NSE"), (3, "BSE"), (4, "BSE"), (5, "MCX"), (7, "NCDEX")):
        data = LTP[:1] + bytes([ex_type]) + LTP[2:]
        assert parse_frame(data).exchange == exchange


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 2, 3, 4, 5, 112]), st.binary(max_size=420))
def test_arbitrary_bytes_never_crash(mode: int, rest: bytes) -> None:
    try:
        t = parse_frame(bytes([mode]) + rest)
    except ParseError:
        return
    assert isinstance(t, Tick) and t.price >= 0
