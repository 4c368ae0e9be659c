"""Kite binary decoder on Zerodha's official mocks, a real 2026 capture and two forum messages
(tests/data/broker_ticks, see PROVENANCE.md), plus a differential test against the official
``kiteconnect`` package's own parser."""

from __future__ import annotations

import base64
import datetime as dt
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.core.errors import ParseError
from mandi.feeds import kite
from mandi.feeds.kite import FrameStats, KiteDepth, KiteQuote, parse_frame, parse_packets
from mandi.model.market import Tick

DATA = Path(__file__).resolve().parents[2] / "data" / "broker_ticks"
MOCKS = DATA / "kite"
CAPTURE = DATA / "kite_capture_2026-01-21"
FORUM = DATA / "kite_forum"
NS = 10**9


def frame(*packets: bytes) -> bytes:
    """A websocket message around raw packets: count, then length + packet."""
    out = struct.pack(">H", len(packets))
    for p in packets:
        out += struct.pack(">H", len(p)) + p
    return out


def mock_packet(name: str) -> bytes:
    return base64.b64decode((MOCKS / name).read_text())


def rupees(x: float) -> int:
    return round(x * 100)


def ist_iso_ns(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp()) * NS


REAL_MESSAGES = {
    "mock full": frame(mock_packet("ticker_full.packet")),
    "mock quote": frame(mock_packet("ticker_quote.packet")),
    "capture multi": (CAPTURE / "multi_packet.bin").read_bytes(),
    "capture full": (CAPTURE / "single_full.bin").read_bytes(),
    "capture index full": (CAPTURE / "single_index_full.bin").read_bytes(),
    "forum index quote 2017": (FORUM / "kite_msg_index_NIFTY50_quote_2017.bin").read_bytes(),
    "forum legacy 164 2016": (FORUM / "kite_msg_mcx_full_legacy164_2016.bin").read_bytes(),
}


# ------------------------------------------------------------------------------------------
# official mocks
# ------------------------------------------------------------------------------------------


def test_official_full_packet() -> None:
    exp = json.loads((MOCKS / "ticker_full.json").read_text())
    indep = json.loads((MOCKS / "ticker_packets_decoded_expected.json").read_text())
    raw = mock_packet("ticker_full.packet")
    assert len(raw) == 184
    (q,) = parse_packets(frame(raw), stats=FrameStats())
    assert q == kite.parse_packet(raw)
    assert (q.mode, q.tradable, q.token, q.segment, q.exchange) == (
        "full",
        True,
        exp["instrument_token"],
        1,
        "NSE",
    )
    assert q.last_price == rupees(exp["last_price"]) == 157370
    assert (q.last_quantity, q.average_price, q.volume) == (
        exp["last_quantity"],
        rupees(exp["average_price"]),
        exp["volume"],
    )
    assert (q.buy_quantity, q.sell_quantity) == (exp["buy_quantity"], exp["sell_quantity"])
    assert (q.open, q.high, q.low, q.close) == tuple(
        rupees(exp["ohlc"][k]) for k in ("open", "high", "low", "close")
    )
    assert (q.oi, q.oi_day_high, q.oi_day_low) == (0, 0, 0)
    assert q.last_trade_time == ist_iso_ns(exp["last_trade_time"]) == 1625461887 * NS
    assert q.exchange_time == ist_iso_ns(exp["timestamp"])
    assert q.bids == tuple(
        KiteDepth(d["quantity"], rupees(d["price"]), d["orders"]) for d in exp["depth"]["buy"]
    )
    assert q.asks == tuple(
        KiteDepth(d["quantity"], rupees(d["price"]), d["orders"]) for d in exp["depth"]["sell"]
    )
    assert q.change == rupees(exp["change"]) == 590  # gokiteconnect: absolute change
    assert q.change_percent == pytest.approx(
        indep["ticker_full.packet"]["change_percent_pykiteconnect"], rel=1e-12
    )
    (t,) = parse_frame(frame(raw), ts_init=123, stats=FrameStats())
    assert t == Tick(
        token=408065, exchange="NSE", ts_event=1625461887 * NS, ts_init=123, price=157370,
        volume=1192471, last_qty=7, oi=0, bid=157340, ask=157370, bid_qty=5, ask_qty=172,
    )  # fmt: skip


def test_official_quote_packet() -> None:
    exp = json.loads((MOCKS / "ticker_quote.json").read_text())
    indep = json.loads((MOCKS / "ticker_packets_decoded_expected.json").read_text())
    (q,) = parse_packets(frame(mock_packet("ticker_quote.packet")), stats=FrameStats())
    assert (q.mode, q.token, q.last_price, q.last_quantity, q.average_price, q.volume) == (
        "quote", 408065, rupees(exp["last_price"]), exp["last_quantity"],
        rupees(exp["average_price"]), exp["volume"],
    )  # fmt: skip
    assert (q.buy_quantity, q.sell_quantity) == (exp["buy_quantity"], exp["sell_quantity"])
    assert q.close == rupees(exp["ohlc"]["close"])
    # the mock's "change" 5.9 is copied from the full tick; the packet gives 1573.15 - 1567.80
    assert q.change == rupees(indep["ticker_quote.packet"]["change_absolute_gokiteconnect_json"])
    assert q.exchange_time is None and q.oi is None and q.bids == ()
    (t,) = parse_frame(frame(mock_packet("ticker_quote.packet")), ts_init=99, stats=FrameStats())
    assert (t.ts_event, t.ts_init, t.price, t.volume, t.bid, t.ask) == (
        99,
        99,
        157315,
        1175986,
        0,
        0,
    )


def test_ltp_packet_from_the_mock_values() -> None:
    exp = json.loads((MOCKS / "ticker_ltp.json").read_text())
    packet = struct.pack(">II", exp["instrument_token"], rupees(exp["last_price"]))
    (q,) = parse_packets(frame(packet), stats=FrameStats())
    assert (q.mode, q.token, q.last_price, q.tradable) == ("ltp", 408065, 157315, True)
    assert q.volume is None and q.change is None


# ------------------------------------------------------------------------------------------
# the real 2026 capture and the forum messages
# ------------------------------------------------------------------------------------------


def test_real_capture_full_and_index_full() -> None:
    full = json.loads((CAPTURE / "single_full.json").read_text())["packet"]
    index = json.loads((CAPTURE / "single_index_full.json").read_text())["packet"]
    multi = parse_packets(REAL_MESSAGES["capture multi"], stats=FrameStats())
    assert multi == [
        *parse_packets(REAL_MESSAGES["capture full"], stats=FrameStats()),
        *parse_packets(REAL_MESSAGES["capture index full"], stats=FrameStats()),
    ]
    q, i = multi
    assert (q.token, q.last_price, q.last_quantity, q.average_price, q.volume) == (
        full["instrument_token"], full["last_traded_price"], full["last_traded_quantity"],
        full["average_traded_price"], full["volume_traded_for_day"],
    )  # fmt: skip
    assert (q.buy_quantity, q.sell_quantity, q.open, q.high, q.low, q.close) == (
        full["total_buy_quantity"], full["total_sell_quantity"], full["open_price"],
        full["high_price"], full["low_price"], full["close_price"],
    )  # fmt: skip
    assert q.last_trade_time == full["last_traded_timestamp"] * NS
    assert q.exchange_time == full["exchange_timestamp"] * NS
    assert q.bids == tuple(KiteDepth(**d) for d in full["bid_depth"])
    assert q.asks == tuple(KiteDepth(**d) for d in full["ask_depth"])
    assert (i.mode, i.tradable, i.segment, i.token) == ("index_full", False, 9, 282633)
    assert (i.last_price, i.high, i.low, i.open, i.close) == (
        index["last_traded_price"], index["high_price"], index["low_price"],
        index["open_price"], index["close_price"],
    )  # fmt: skip
    assert i.close is not None and i.net_change == index["change"] == i.last_price - i.close
    assert i.exchange_time == index["exchange_timestamp"] * NS
    ticks = parse_frame(REAL_MESSAGES["capture multi"], ts_init=5, stats=FrameStats())
    assert [(t.token, t.ts_event, t.price, t.ask, t.ask_qty, t.bid) for t in ticks] == [
        (4419329, 1769006805 * NS, 157610, 157610, 358, 0),
        (282633, 1768996800 * NS, 928139, 0, 0, 0),
    ]


def test_forum_index_quote_packet() -> None:
    exp = json.loads((FORUM / "kite_forum_vectors_expected.json").read_text())
    d = exp["kite_msg_index_NIFTY50_quote_2017.bin"]["decoded"]
    (q,) = parse_packets(REAL_MESSAGES["forum index quote 2017"], stats=FrameStats())
    assert (q.mode, q.token, q.segment, q.tradable) == ("index_quote", 256265, 9, False)
    # index packets are LTP, HIGH, LOW, OPEN, CLOSE
    assert (q.last_price, q.high, q.low, q.open, q.close, q.net_change) == (
        rupees(d["last_price"]), rupees(d["high"]), rupees(d["low"]), rupees(d["open"]),
        rupees(d["close"]), d["bytes24_28_signed_int"],
    )  # fmt: skip
    (t,) = parse_frame(REAL_MESSAGES["forum index quote 2017"], ts_init=77, stats=FrameStats())
    assert (t.exchange, t.ts_event, t.price, t.volume) == ("NSE", 77, 912685, 0)


def test_legacy_164_byte_packet_is_skipped_and_counted() -> None:
    stats = FrameStats()
    assert parse_frame(REAL_MESSAGES["forum legacy 164 2016"], stats=stats) == []
    assert stats.skipped == {"unknown packet length 164": 1} and stats.packets == 0
    # in one message with a good packet: the good one survives
    legacy = REAL_MESSAGES["forum legacy 164 2016"][4:]
    good = REAL_MESSAGES["capture full"][4:]
    ticks = parse_frame(frame(legacy, good, legacy), stats=stats)
    assert [t.token for t in ticks] == [4419329]
    assert stats.skipped == {"unknown packet length 164": 3} and stats.packets == 1


def test_default_stats_count_skips(caplog: pytest.LogCaptureFixture) -> None:
    before = kite.frame_stats.skipped.get("unknown packet length 164", 0)
    parse_frame(REAL_MESSAGES["forum legacy 164 2016"])
    assert kite.frame_stats.skipped["unknown packet length 164"] == before + 1


def test_heartbeat_and_trailing_bytes() -> None:
    stats = FrameStats()
    assert parse_frame(b"\x00", stats=stats) == [] and stats.heartbeats == 1
    assert parse_frame(struct.pack(">H", 0), stats=stats) == []
    ticks = parse_frame(REAL_MESSAGES["capture full"] + b"\x01\x02", stats=stats)
    assert len(ticks) == 1 and stats.skipped == {"trailing bytes": 1}


@pytest.mark.parametrize("cut", range(0, 222))
def test_truncated_message_names_the_offset(cut: int) -> None:
    data = REAL_MESSAGES["capture multi"][:cut]
    if cut == 1:
        assert parse_frame(data, stats=FrameStats()) == []  # a 1-byte message is a heartbeat
        return
    if cut == 2:  # count only: "2 packets" but no length
        with pytest.raises(ParseError, match=r"truncated at offset 2: packet 1 of 2 has no len"):
            parse_frame(data, stats=FrameStats())
        return
    with pytest.raises(ParseError, match=r"Kite frame (is empty|truncated at offset \d+)"):
        parse_frame(data, stats=FrameStats())


def test_truncation_message_detail() -> None:
    data = REAL_MESSAGES["capture multi"][:150]
    with pytest.raises(ParseError, match=r"offset 4: packet 1 of 2 declares 184 bytes, 146 left"):
        parse_frame(data, stats=FrameStats())
    data = REAL_MESSAGES["capture multi"][:200]
    with pytest.raises(ParseError, match=r"offset 190: packet 2 of 2 declares 32 bytes, 10 left"):
        parse_frame(data, stats=FrameStats())


# ------------------------------------------------------------------------------------------
# segments, exchanges, price units
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "exchange"),
    [(1, "NSE"), (2, "NSE"), (3, "NSE"), (4, "BSE"), (5, "BSE"), (6, "BSE"), (7, "MCX"),
     (8, "MCXSX"), (9, "NSE")],
)  # fmt: skip
def test_exchange_of_segment(segment: int, exchange: str) -> None:
    token = (1234 << 8) | segment
    (t,) = parse_frame(frame(struct.pack(">II", token, 10_000_000)), stats=FrameStats())
    assert t.exchange == exchange and t.token == token


def test_bse_index_by_token_override() -> None:
    sensex = (1 << 8) | 9  # token 265
    packet = struct.pack(">IIIIIIiI", sensex, 7756939, 1, 1, 1, 1, 0, 1783677600)
    (t,) = parse_frame(frame(packet), exchanges={265: "BSE"}, stats=FrameStats())
    assert (t.exchange, t.ts_event) == ("BSE", 1783677600 * NS)


def test_currency_prices_in_paise_or_skipped() -> None:
    stats = FrameStats()
    cds = (5000 << 8) | 3  # price unit 1/10,000,000 rupee
    bcd = (6000 << 8) | 6  # 1/10,000 rupee
    ticks = parse_frame(
        frame(
            struct.pack(">II", cds, 832_500_000),  # 83.25 -> 8325 paise
            struct.pack(">II", cds, 832_525_000),  # 83.2525: finer than a paisa
            struct.pack(">II", bcd, 832_500),  # 83.25
        ),
        stats=stats,
    )
    assert [(t.token, t.price) for t in ticks] == [(cds, 8325), (bcd, 8325)]
    assert stats.skipped == {"price finer than a paisa": 1}
    (q,) = parse_packets(frame(struct.pack(">II", cds, 832_525_000)), stats=stats)
    assert (q.price_scale, q.last_price) == (10_000_000, 832_525_000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        ticks = parse_frame(data, stats=FrameStats())
    except ParseError:
        return
    assert all(isinstance(t, Tick) for t in ticks)


# ------------------------------------------------------------------------------------------
# differential: the official kiteconnect parser on the same bytes
# ------------------------------------------------------------------------------------------

kiteconnect = pytest.importorskip("kiteconnect")


def _theirs(data: bytes) -> list[dict]:  # type: ignore[type-arg]
    # KiteTicker needs no connection to decode; its timestamps are naive *local* datetimes
    # (datetime.fromtimestamp), so they are compared through .timestamp()
    return kiteconnect.KiteTicker("api-key", "access-token")._parse_binary(data)  # type: ignore[no-any-return]


def _compare(ours: KiteQuote, theirs: dict) -> None:  # type: ignore[type-arg]
    scale = ours.price_scale
    assert theirs["instrument_token"] == ours.token
    assert theirs["tradable"] == ours.tradable
    assert theirs["last_price"] == pytest.approx(ours.last_price / scale, abs=1e-12)
    if ours.mode == "ltp":
        return
    ohlc = theirs["ohlc"]
    for k in ("open", "high", "low", "close"):
        assert ohlc[k] == pytest.approx(getattr(ours, k) / scale, abs=1e-12), k
    if ours.change_percent is not None:
        assert theirs["change"] == pytest.approx(ours.change_percent, rel=1e-12, abs=1e-12)
    if ours.mode.startswith("index"):
        if ours.exchange_time is not None:
            assert int(theirs["exchange_timestamp"].timestamp()) * NS == ours.exchange_time
        return
    assert (theirs["last_traded_quantity"], theirs["volume_traded"]) == (
        ours.last_quantity,
        ours.volume,
    )
    assert theirs["average_traded_price"] == pytest.approx(ours.average_price / scale)  # type: ignore[operator]
    assert (theirs["total_buy_quantity"], theirs["total_sell_quantity"]) == (
        ours.buy_quantity,
        ours.sell_quantity,
    )
    if ours.mode == "full":
        assert (theirs["oi"], theirs["oi_day_high"], theirs["oi_day_low"]) == (
            ours.oi,
            ours.oi_day_high,
            ours.oi_day_low,
        )
        for key, ns in (("last_trade_time", ours.last_trade_time),
                        ("exchange_timestamp", ours.exchange_time)):  # fmt: skip
            t = theirs[key]
            assert (int(t.timestamp()) * NS if t else None) == ns, key
        for side, levels in (("buy", ours.bids), ("sell", ours.asks)):
            assert [(d["quantity"], d["orders"]) for d in theirs["depth"][side]] == [
                (lv.quantity, lv.orders) for lv in levels
            ]
            for d, lv in zip(theirs["depth"][side], levels, strict=True):
                assert d["price"] == pytest.approx(lv.price / scale, abs=1e-12)


@pytest.mark.parametrize("name", sorted(REAL_MESSAGES))
def test_same_as_kiteconnect_on_real_messages(name: str) -> None:
    data = REAL_MESSAGES[name]
    ours = parse_packets(data, stats=FrameStats())
    theirs = _theirs(data)
    assert len(ours) == len(theirs)
    for o, t in zip(ours, theirs, strict=True):
        _compare(o, t)


_SEGMENTS = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9])


@st.composite
def _packets(draw: st.DrawFn) -> bytes:
    length = draw(st.sampled_from([8, 28, 32, 44, 184]))
    token = (draw(st.integers(1, 2**24 - 1)) << 8) | draw(_SEGMENTS)
    # timestamps inside the datetime range, non-zero (kiteconnect turns 0 into None)
    body = bytearray(draw(st.binary(min_size=length - 4, max_size=length - 4)))
    if length == 32:
        body[24:28] = draw(st.integers(1, 2**31)).to_bytes(4, "big")
    if length == 184:
        body[40:44] = draw(st.integers(1, 2**31)).to_bytes(4, "big")
        body[56:60] = draw(st.integers(1, 2**31)).to_bytes(4, "big")
    return token.to_bytes(4, "big") + bytes(body)


@settings(max_examples=200, deadline=None)
@given(st.lists(_packets(), min_size=1, max_size=4))
def test_same_as_kiteconnect_on_random_packets(packets: list[bytes]) -> None:
    data = frame(*packets)
    ours = parse_packets(data, stats=FrameStats())
    theirs = _theirs(data)
    assert len(ours) == len(theirs) == len(packets)
    for o, t in zip(ours, theirs, strict=True):
        _compare(o, t)
