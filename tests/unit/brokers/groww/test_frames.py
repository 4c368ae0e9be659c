"""Groww's feed frames: the NATS stream parser, the protobuf messages (against the official
SDK's generated modules, both ways) and the decoder's checks; hypothesis: a stream split
anywhere parses the same, and any bytes either decode or are reported — never an exception."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.brokers.groww import nats, proto
from mandi.brokers.groww.frames import (
    FrameDecoder,
    decode_frame,
    decode_order,
    encode_book,
    encode_index,
    encode_order,
    encode_price,
)
from mandi.core.errors import ParseError
from mandi.model.market import Tick

PRICE, BOOK, INDEX = (
    b"/ld/fo/nse/price.35241",
    b"/ld/fo/nse/book.35241",
    b"/ld/indices/nse/price.NIFTY",
)
TOKEN = 35241 << 8 | 2


def decoder() -> FrameDecoder:
    d = FrameDecoder()
    d.route(PRICE.decode(), TOKEN, "NSE", "price")
    d.route(BOOK.decode(), TOKEN, "NSE", "book")
    d.route(INDEX.decode(), 99, "NSE", "index")
    return d


@pytest.fixture(scope="module")
def sdk() -> Any:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from growwapi_sdk import require_sdk

    require_sdk()
    from growwapi.groww.proto import stock_orders_socket_response_pb2 as orders
    from growwapi.groww.proto import stocks_socket_response_pb2 as stocks

    return stocks, orders


# --- the NATS stream ------------------------------------------------------------------------------
STREAM = (
    nats.info({"nonce": "abc", "max_payload": 1024}) + b"PING\r\n"
    + nats.msg(PRICE, b"7", encode_price(12345, 10, 5, 1_700_000_000_000))
    + b"+OK\r\nPONG\r\n-ERR 'Stale Connection'\r\n"
    + b"HMSG " + BOOK + b" 8 12 15\r\nNATS/1.0\r\n\r\nabc\r\n"
)  # fmt: skip


def ops_of(chunks: list[bytes]) -> list[nats.Op]:
    s = nats.NatsStream()
    out: list[nats.Op] = []
    for c in chunks:
        ops, err = s.feed(c)
        assert err == ""
        out += ops
    return out


def test_stream_operations() -> None:
    ops = ops_of([STREAM])
    assert [o[0] for o in ops] == ["INFO", "PING", "MSG", "+OK", "PONG", "-ERR", "MSG"]
    assert ops[0][1]["nonce"] == "abc" and ops[5][1] == "Stale Connection"
    assert ops[2][1:3] == (PRICE, b"7") and ops[6][3] == b"abc"  # HMSG: headers skipped


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=8))
def test_a_stream_cut_anywhere_parses_the_same(cuts: list[int]) -> None:
    points = sorted({0, *cuts, len(STREAM)})
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert ops_of(chunks) == ops_of([STREAM])


def test_protocol_errors_are_reported_and_parsing_resumes() -> None:
    s = nats.NatsStream()
    good = nats.msg(PRICE, b"1", b"xyz")
    for bad, why in [
        (b"MSG " + PRICE + b" 1 5\r\nabcdefgh\r\n", "not followed by CRLF"),
        (b"MSG " + PRICE + b" 1 x\r\n", "not a number"),
        (b"MSG " + PRICE + b" 1 99999999\r\n", "out of range"),
        (b"WHAT is this\r\n", "unknown operation"),
        (b"INFO {not json\r\n", "not followed by JSON"),
        (b"A" * 5000, "control line"),
    ]:
        ops, err = s.feed(good + bad)
        assert len(ops) == 1 and why in err  # the good message before the bad one is kept
        assert s.feed(b"garbage that does not start with an op")[0] == []  # resynchronizing
        assert s.feed(good)[0][0][3] == b"xyz"  # back on track at the next operation


def test_client_commands_parse_on_the_server_side() -> None:
    s = nats.NatsStream(server=False)
    ops, err = s.feed(nats.connect("jwt", "sig") + nats.PING_CMD + nats.sub("a.b", 3)
                      + nats.unsub(3) + b"PUB x 2\r\nhi\r\n")  # fmt: skip
    assert err == "" and [o[0] for o in ops] == ["CONNECT", "PING", "SUB", "UNSUB", "PUB"]
    assert ops[0][1]["jwt"] == "jwt" and ops[2][1:] == (b"a.b", b"3") and ops[4][3] == b"hi"
    assert "unexpected MSG" in nats.NatsStream(server=False).feed(nats.msg(b"a", b"1", b""))[1]


# --- the protobuf messages: mandi's descriptors = the SDK's generated ones ------------------------
def _repeated(f: Any, FD: Any) -> bool:
    # protobuf 6 dropped FieldDescriptor.label for is_repeated
    return bool(f.is_repeated) if hasattr(f, "is_repeated") else f.label == FD.LABEL_REPEATED


def _fields(desc: Any) -> dict[str, tuple[int, str, bool]]:
    """name → (number, wire type class, repeated) — enums are varints like int32."""
    from google.protobuf.descriptor import FieldDescriptor as FD

    kind = {FD.TYPE_ENUM: "varint", FD.TYPE_INT32: "varint", FD.TYPE_INT64: "varint64"}
    return {
        f.name: (f.number, kind.get(f.type, str(f.type)), _repeated(f, FD)) for f in desc.fields
    }


def test_descriptors_match_the_sdk(sdk: Any) -> None:
    stocks, orders = sdk
    pairs = [
        (proto.SocketResponse.DESCRIPTOR, stocks.StocksSocketResponseProtoDto.DESCRIPTOR),
        (proto.OrderBroadcast.DESCRIPTOR, orders.OrderDetailsBroadCastDto.DESCRIPTOR),
    ]
    seen = 0
    while pairs:
        mine, theirs = pairs.pop()
        assert _fields(mine) == _fields(theirs), mine.name
        seen += 1
        for f in theirs.fields:
            if f.message_type is not None:
                pairs.append((mine.fields_by_name[f.name].message_type, f.message_type))
    assert seen >= 8
    assert [v.name for v in orders.StocksOrderStatus.DESCRIPTOR.enum_types[0].values] == list(
        proto.ORDER_STATUS
    )


finite = st.floats(0, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(ltp=finite, volume=st.integers(0, 10**12), oi=st.integers(0, 10**9),
       ts=st.integers(10**12, 2 * 10**12))  # fmt: skip
def test_prices_the_sdk_writes_decode_exactly(sdk: Any, ltp: float, volume: int, oi: int,
                                             ts: int) -> None:  # fmt: skip
    stocks, _ = sdk
    m = stocks.StocksSocketResponseProtoDto(symbol="X", exchange=1, segment=1)
    m.stockLivePrice.ltp, m.stockLivePrice.volume = ltp, volume
    m.stockLivePrice.openInterest, m.stockLivePrice.tsInMillis = oi, ts
    t = decoder().decode(PRICE, m.SerializeToString(), 1)
    assert isinstance(t, Tick)
    assert (t.price, t.volume, t.oi, t.ts_event) == (round(ltp * 100), volume, oi, ts * 10**6)


def test_mandi_encodes_what_the_sdk_reads(sdk: Any) -> None:
    from google.protobuf.json_format import MessageToDict

    stocks, orders = sdk
    m = stocks.StocksSocketResponseProtoDto.FromString(
        encode_price(24_650_35, 1500, 300, 1_746_174_479_582, (1, 2, 3, 4), 7, 8)
    )
    p = MessageToDict(m.stockLivePrice)
    assert (p["ltp"], p["volume"], p["openInterest"], p["bidQty"]) == (24650.35, 1500, 300, 7)
    b = stocks.StocksSocketResponseProtoDto.FromString(
        encode_book([(100_05, 10), (100_00, 20)], [(100_10, 5)], 1)
    )
    assert dict(b.stocksMarketDepth.buyBook)[2].qty == 20
    i = stocks.StocksSocketResponseProtoDto.FromString(encode_index(24_386_70, 1))
    assert i.WhichOneof("livePoint") == "stocksLiveIndices" and i.stocksLiveIndices.value == 24386.7
    o = orders.OrderDetailsBroadCastDto.FromString(
        encode_order(
            {
                "growwOrderId": "G1",
                "orderStatus": "EXECUTED",
                "qty": 75,
                "filledQty": 75,
                "exchange": "NSE",
                "segment": "FNO",
                "product": "NRML",
                "transactionType": "SELL",
            }
        )
    )
    u = o.orderDetailUpdateDto
    assert (u.growwOrderId, u.filledQty, u.buySell) == ("G1", 75, 1)
    assert decode_order(o.SerializeToString())["orderStatus"] == "EXECUTED"


# --- the decoder's state and checks ---------------------------------------------------------------
def test_book_and_price_make_ticks_together() -> None:
    d = decoder()
    assert d.decode(BOOK, encode_book([(100_00, 3)], [(100_10, 4)], 1_700_000_000_000), 5) is None
    t = d.decode(PRICE, encode_price(100_05, 9, 2, 1_700_000_000_500), 6)
    assert isinstance(t, Tick) and (t.bid, t.ask, t.bid_qty, t.ask_qty) == (100_00, 100_10, 3, 4)
    t2 = d.decode(BOOK, encode_book([(100_05, 1)], [(100_15, 2)], 1_700_000_001), 7)  # seconds
    assert isinstance(t2, Tick) and t2.price == 100_05 and t2.bid == 100_05
    assert t2.ts_event == 1_700_000_001_000 * 10**6
    idx = d.decode(INDEX, encode_index(24_000_00, 1_700_000_000_000), 8)
    assert isinstance(idx, Tick) and idx.token == 99 and idx.price == 24_000_00
    assert d.decode(b"/ld/fo/nse/price.1", encode_price(1, 1, 1, 1), 9) is None and d.unrouted == 1


@pytest.mark.parametrize(
    ("subject", "payload", "why"),
    [
        (PRICE, encode_price(0, 0, 0, 0).replace(b"\x00", b"\xff", 3)[:7], "not a protobuf"),
        (PRICE, encode_index(5, 1), "not a live price"),
        (INDEX, encode_price(5, 1, 1, 1), "not an index"),
        (BOOK, encode_price(5, 1, 1, 1), "not a book"),
    ],
)
def test_wrong_messages_are_refused(subject: bytes, payload: bytes, why: str) -> None:
    with pytest.raises(ParseError, match=why):
        decoder().decode(subject, payload, 1)


@pytest.mark.parametrize("bad", [math.nan, -1.0, math.inf, 5e16])
def test_bad_values_are_refused(bad: float) -> None:
    m = proto.SocketResponse()
    m.stockLivePrice.ltp, m.stockLivePrice.tsInMillis = 10.0, 1e12
    m.stockLivePrice.volume = bad
    with pytest.raises(ParseError, match="volume"):
        decoder().decode(PRICE, m.SerializeToString(), 1)
    m.stockLivePrice.volume, m.stockLivePrice.ltp = 1, bad
    with pytest.raises(ParseError, match="ltp"):
        decoder().decode(PRICE, m.SerializeToString(), 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([PRICE, BOOK, INDEX]))
def test_any_bytes_decode_or_are_reported(data: bytes, subject: bytes) -> None:
    d = decoder()
    ticks, _, _, errors = decode_frame(nats.NatsStream(), d, nats.msg(subject, b"1", data), 1)
    assert len(ticks) + len(errors) <= 1
    ticks, _, _, errors = decode_frame(nats.NatsStream(), d, data, 1)
    assert all(isinstance(t, Tick) for t in ticks)
