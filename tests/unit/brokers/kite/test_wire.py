"""Kite REST payloads ↔ mandi values (pure functions), on Zerodha's own samples where they
exist (tests/data/broker_ticks/kite, see PROVENANCE.md)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from mandi.brokers.kite import wire
from mandi.core.errors import (
    BrokerInputError,
    BrokerNetworkError,
    BrokerOrderError,
    BrokerRateLimitError,
    BrokerSessionError,
    ParseError,
)
from mandi.execution.ports import OrderRequest
from mandi.model.instruments import Equity, Index, Option
from mandi.model.orders import OrderStatus, OrderType, Product, Side

DATA = Path(__file__).resolve().parents[3] / "data" / "broker_ticks" / "kite"
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("status", "kind", "cls"),
    [
        (403, "TokenException", BrokerSessionError),
        (400, "InputException", BrokerInputError),
        (400, "OrderException", BrokerOrderError),
        (400, "MarginException", BrokerOrderError),
        (502, "NetworkException", BrokerNetworkError),
        (500, "GeneralException", BrokerNetworkError),
        (429, "NetworkException", BrokerRateLimitError),
        (403, "", BrokerSessionError),  # no body: the status decides
        (503, "", BrokerNetworkError),
    ],
)
def test_error_types_map_onto_the_exception_tree(status: int, kind: str, cls: type) -> None:
    body = {"status": "error", "error_type": kind, "message": "why"} if kind else None
    e = wire.error_for(status, body, "place order")
    assert type(e) is cls
    assert e.status == status and e.kind == kind
    assert "place order" in str(e)


def test_checksum_is_sha256_of_key_token_secret() -> None:
    want = hashlib.sha256(b"keyrequestsecret").hexdigest()
    assert wire.checksum("key", "request", "secret") == want


@pytest.mark.parametrize(
    ("login", "expires"),
    [
        ("2026-03-02 09:30", "2026-03-03 06:00"),
        ("2026-03-02 23:59", "2026-03-03 06:00"),
        ("2026-03-02 05:59", "2026-03-02 06:00"),  # before 06:00: the same morning
        ("2026-03-02 06:00", "2026-03-03 06:00"),
    ],
)
def test_tokens_expire_at_six_ist(login: str, expires: str) -> None:
    t = dt.datetime.fromisoformat(login).replace(tzinfo=IST)
    want = dt.datetime.fromisoformat(expires).replace(tzinfo=IST)
    assert wire.token_expiry_ns(int(t.timestamp()) * 10**9) == int(want.timestamp()) * 10**9


def test_tag_is_a_valid_kite_tag_and_names_the_order() -> None:
    cid = "5e8b2c1a-7f3d-5a90-b1c2-0d9e8f7a6b5c"
    tag = wire.kite_tag(cid)
    assert len(tag) <= 20 and tag.isalnum()
    assert tag == "m5e8b2c1a7f3d5a90b1c"
    assert wire.kite_tag("5e8b2c1a-7f3d-5a90-b1c2-ffffffffffff") == tag[:20]  # 76 bits kept


def test_order_params() -> None:
    opt = Option(12074498, "NSE", "BANKNIFTY18JAN23600CE", "BANKNIFTY", "NFO-OPT", 40, 5)
    req = OrderRequest(
        "cid", opt.token, "NSE", opt.symbol, Side.BUY, 80, OrderType.LIMIT, 243555, Product.NRML
    )
    p = wire.order_params(req, wire.kite_exchange(opt), "mtag")
    assert p == {
        "tradingsymbol": "BANKNIFTY18JAN23600CE",
        "exchange": "NFO",
        "transaction_type": "BUY",
        "order_type": "LIMIT",
        "quantity": "80",
        "product": "NRML",
        "validity": "DAY",
        "tag": "mtag",
        "price": "2435.55",
    }
    eq = Equity(408065, "NSE", "INFY", segment="NSE")
    assert wire.kite_exchange(eq) == "NSE"


@pytest.mark.parametrize(
    ("status", "filled", "qty", "want"),
    [
        ("COMPLETE", 10, 10, OrderStatus.FILLED),
        ("REJECTED", 0, 10, OrderStatus.REJECTED),
        ("CANCELLED", 4, 10, OrderStatus.CANCELLED),
        ("OPEN", 0, 10, OrderStatus.ACKED),
        ("OPEN", 4, 10, OrderStatus.PARTIALLY_FILLED),
        ("TRIGGER PENDING", 0, 10, OrderStatus.ACKED),
        ("PUT ORDER REQ RECEIVED", 0, 10, OrderStatus.ACKED),
        ("MODIFY VALIDATION PENDING", 5, 10, OrderStatus.PARTIALLY_FILLED),
    ],
)
def test_order_status(status: str, filled: int, qty: int, want: OrderStatus) -> None:
    assert wire.order_status(status, filled, qty) is want


def test_order_report_with_trades() -> None:
    order = {
        "order_id": "151220000000000",
        "status": "COMPLETE",
        "quantity": 75,
        "filled_quantity": 75,
        "status_message": None,
    }
    trades = [
        {
            "trade_id": "10000000",
            "quantity": 50,
            "average_price": 100.05,
            "fill_timestamp": "2021-05-31 09:16:39",
        },
        {
            "trade_id": "10000001",
            "quantity": 25,
            "average_price": 100.1,
            "fill_timestamp": "2021-05-31 09:16:40",
        },
    ]
    r = wire.order_report("cid", order, trades)
    assert r.status is OrderStatus.FILLED and r.filled_qty == 75
    assert [(f.fill_id, f.quantity, f.price) for f in r.fills] == [
        ("kite-10000000", 50, 10005),
        ("kite-10000001", 25, 10010),
    ]
    want_ts = int(dt.datetime(2021, 5, 31, 9, 16, 39, tzinfo=IST).timestamp()) * 10**9
    assert r.fills[0].ts_ns == want_ts
    rej = wire.order_report(
        "cid", {"status": "REJECTED", "quantity": 1, "status_message": "RMS: margin"}
    )
    assert rej.reason == "RMS: margin"


def test_instrument_dump_sample_maps_to_mandi_instruments() -> None:
    text = (DATA / "instruments_all.csv").read_text()
    insts = wire.parse_instruments(text, {"BANKNIFTY": 900})
    by = {i.symbol: i for i in insts}
    o = by["BANKNIFTY18JAN23500CE"]
    assert isinstance(o, Option)
    assert (o.token, o.exchange, o.segment, o.underlying) == (
        12073986,
        "NSE",
        "NFO-OPT",
        "BANKNIFTY",
    )
    assert (o.strike, o.lot_size, o.tick_size, o.freeze_qty) == (2350000, 40, 5, 900)
    assert o.expiry == dt.date(2018, 1, 25) and o.option_type == "CE"
    adani = by["ADANIPORTS17DEC490PE"]
    assert adani.underlying == "ADANIPORTS" and adani.freeze_qty == 0  # no freeze row
    assert isinstance(by["ADANIPORTS"], Equity) and by["ADANIPORTS"].exchange == "NSE"
    bse = wire.parse_instruments(text, exchanges=["BSE"])
    assert bse and all(i.exchange == "BSE" for i in bse)


def test_indices_take_mandi_names_and_the_dump_round_trips() -> None:
    nifty = Index(256265, "NSE", "NIFTY", "NIFTY 50", "INDICES")
    opt = Option(
        12074498,
        "NSE",
        "NIFTY26JAN24000CE",
        "NIFTY",
        "NFO-OPT",
        65,
        5,
        underlying="NIFTY",
        expiry=dt.date(2026, 1, 27),
        strike=2400000,
    )
    text = wire.instrument_dump([nifty, opt])
    assert "NIFTY 50" in text.splitlines()[1]
    back = {i.token: i for i in wire.parse_instruments(text)}
    assert isinstance(back[256265], Index) and back[256265].symbol == "NIFTY"
    assert back[12074498] == opt


def test_freeze_file() -> None:
    text = 'SR_NO, SYMBOL ,VOL_FRZ_QTY\n1,NIFTY,1800\n2,BANKNIFTY,"600"\n'
    assert wire.parse_freeze_csv(text) == {"NIFTY": 1800, "BANKNIFTY": 600}
    with pytest.raises(ParseError, match="VOL_FRZ_QTY"):
        wire.parse_freeze_csv("SYMBOL,QTY\nNIFTY,1\n")
    with pytest.raises(ParseError, match="line 2"):
        wire.parse_freeze_csv("SYMBOL,VOL_FRZ_QTY\nNIFTY,lots\n")
    with pytest.raises(ParseError, match="instrument_token"):
        wire.parse_instruments("a,b\n1,2\n")


def test_history_windows_respect_interval_limits() -> None:
    w = wire.history_windows(dt.date(2026, 1, 1), dt.date(2026, 3, 31), "minute")
    assert w[0] == (dt.date(2026, 1, 1), dt.date(2026, 3, 1))
    assert w[-1][1] == dt.date(2026, 3, 31)
    assert all((b - a).days + 1 <= 60 for a, b in w)
    assert all(w[i][1] + dt.timedelta(days=1) == w[i + 1][0] for i in range(len(w) - 1))
    assert len(wire.history_windows(dt.date(2026, 1, 1), dt.date(2026, 3, 31), "day")) == 1
    with pytest.raises(ValueError, match="interval"):
        wire.history_windows(dt.date(2026, 1, 1), dt.date(2026, 1, 2), "2minute")


def test_historical_candles_with_oi() -> None:
    rows = json.loads((DATA / "historical_oi.json").read_text())["data"]["candles"]
    cs = wire.parse_candles(rows, 12345, "NSE", "minute")
    assert len(cs) == len(rows) == 6
    c = cs[0]
    t = dt.datetime(2019, 12, 4, 9, 15, tzinfo=IST)
    assert (c.bucket, c.timeframe, c.open, c.high, c.low, c.close, c.volume, c.oi) == (
        int(t.timestamp()) * 10**9,
        60,
        1200990,
        1201935,
        1200125,
        1200150,
        163275,
        13667775,
    )
    with pytest.raises(ParseError, match="row 0"):
        wire.parse_candles([["not a time", 1, 1, 1, 1, 1]], 1, "NSE", "minute")
