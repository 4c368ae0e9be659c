"""Groww's payloads ↔ mandi values: tokens, the instrument CSV, errors, orders, candles."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from mandi.brokers.groww.wire import (
    SYMBOLIC,
    checksum,
    error_for,
    feed_key,
    groww_symbol,
    groww_tag,
    instrument_csv,
    mandi_token,
    next_six_ist,
    order_report,
    order_status,
    parse_candles,
    parse_instruments,
    token_expiry_ns,
    topics,
)
from mandi.core.errors import (
    BrokerInputError,
    BrokerNetworkError,
    BrokerOrderError,
    BrokerRateLimitError,
    BrokerSessionError,
    ParseError,
)
from mandi.model.instruments import Equity, Future, Index, Option
from mandi.model.orders import OrderStatus as S

HEAD = (
    "exchange,exchange_token,trading_symbol,groww_symbol,name,instrument_type,segment,series,isin,"
    "underlying_symbol,underlying_exchange_token,expiry_date,strike_price,lot_size,tick_size,"
    "freeze_quantity,is_reserved,buy_allowed,sell_allowed,internal_trading_symbol,is_intraday\n"
)
ROWS = [  # the shapes of Groww's instrument.csv rows (indices, stock, F&O, BSE, MCX)
    "NSE,NIFTY,NIFTY,NSE-NIFTY,NIFTY 50,IDX,CASH,,NIFTY,,,,,,,,,0,0,,0",
    "NSE,NIFTYJR,NIFTYJR,NSE-NIFTYJR,Nifty Next 50,IDX,CASH,,,,,,,,,,,0,0,,0",
    "BSE,1,SENSEX,BSE-SENSEX,SENSEX,IDX,CASH,,,,,,,,,,,0,0,,0",
    "NSE,2885,RELIANCE,NSE-RELIANCE,Reliance Industries,EQ,CASH,EQ,INE002A01018,,,,,1,0.1,,,1,1,"
    "RELIANCE-EQ,1",
    "NSE,49445,BANKNIFTY25DEC27000PE,NSE-BANKNIFTY-24Dec25-27000-PE,,PE,FNO,,,BANKNIFTY,26009,2025-12-24,27000,35,0.05,601,1,1,1,BANKNIFTY25DEC27000PE,0",
    "NSE,58074,360ONE26AUGFUT,NSE-360ONE-25Aug26-FUT,,FUT,FNO,,,360ONE,13061,2026-08-25,-0.01,500,0.1,20001,0,1,1,360ONE26AUGFUT,0",
    "BSE,1140001,SENSEX25DEC80000CE,BSE-SENSEX-24Dec25-80000-CE,,CE,FNO,,,SENSEX,1,2025-12-24,80000,20,0.05,1001,0,1,1,SENSEX25DEC80000CE,0",
    "MCX,440001,GOLD25DECFUT,MCX-GOLD-05Dec25-FUT,,FUT,COMMODITY,,,GOLD,1,2025-12-05,,100,1,,0,1,1,GOLD25DECFUT,0",
]  # fmt: skip


def test_instrument_csv_parses_into_mandi_instruments() -> None:
    insts = {i.symbol: i for i in parse_instruments(HEAD + "\n".join(ROWS))}
    assert set(insts) == {
        "NIFTY",
        "NIFTYNXT50",
        "SENSEX",
        "RELIANCE",
        "BANKNIFTY25DEC27000PE",
        "360ONE26AUGFUT",
        "SENSEX25DEC80000CE",
    }  # fmt: skip  (MCX left out)
    nifty, nxt, sensex = insts["NIFTY"], insts["NIFTYNXT50"], insts["SENSEX"]
    assert isinstance(nifty, Index) and nifty.token & SYMBOLIC and nifty.exchange == "NSE"
    assert isinstance(nxt, Index) and feed_key(nxt).exchange_token == "NIFTYJR"  # renamed
    assert isinstance(sensex, Index) and sensex.token == 1 << 8 | 3
    rel = insts["RELIANCE"]
    assert isinstance(rel, Equity) and rel.token == 2885 << 8 | 1 and rel.tick_size == 10
    opt = insts["BANKNIFTY25DEC27000PE"]
    assert isinstance(opt, Option) and opt.token == 49445 << 8 | 2 and opt.segment == "NFO-OPT"
    assert (opt.underlying, opt.strike, opt.option_type, opt.lot_size, opt.freeze_qty) == (
        "BANKNIFTY", 27000_00, "PE", 35, 600,
    )  # fmt: skip
    assert opt.expiry == dt.date(2025, 12, 24) and opt.exchange == "NSE"
    fut = insts["360ONE26AUGFUT"]
    assert isinstance(fut, Future) and fut.underlying == "360ONE" and fut.tick_size == 10
    bse_opt = insts["SENSEX25DEC80000CE"]
    assert bse_opt.token == 1140001 << 8 | 4 and bse_opt.segment == "BFO-OPT"
    # Groww's own names come back from the instruments (the candle API's groww_symbol)
    assert groww_symbol(opt) == "NSE-BANKNIFTY-24Dec25-27000-PE"
    assert groww_symbol(fut) == "NSE-360ONE-25Aug26-FUT"
    assert groww_symbol(nxt) == "NSE-NIFTYJR" and groww_symbol(rel) == "NSE-RELIANCE"
    # the exchanges filter, and the fake's rendering parses back to the same instruments
    only_nfo = parse_instruments(HEAD + "\n".join(ROWS), ["NFO"])
    assert {i.symbol for i in only_nfo} == {"BANKNIFTY25DEC27000PE", "360ONE26AUGFUT"}
    again = parse_instruments(instrument_csv(insts.values()))
    assert {i.token: i for i in again} == {i.token: i for i in insts.values()}


def test_bad_instrument_csv_names_the_problem() -> None:
    with pytest.raises(ParseError, match="no column"):
        parse_instruments("a,b\n1,2\n")
    with pytest.raises(ParseError, match="line 2"):
        parse_instruments(HEAD + ROWS[4].replace(",35,", ",lots,"))


def test_tokens_and_subjects() -> None:
    assert mandi_token("NSE", "FNO", "35241") == 35241 << 8 | 2
    assert mandi_token("NSE", "CASH", "NIFTY") != mandi_token("NSE", "CASH", "BANKNIFTY")
    with pytest.raises(ParseError):
        mandi_token("MCX", "COMMODITY", "1")
    insts = {i.symbol: i for i in parse_instruments(HEAD + "\n".join(ROWS))}
    assert topics(feed_key(insts["NIFTY"]), "full") == [("/ld/indices/nse/price.NIFTY", "index")]
    assert topics(feed_key(insts["BANKNIFTY25DEC27000PE"]), "full") == [
        ("/ld/fo/nse/price.49445", "price"),
        ("/ld/fo/nse/book.49445", "book"),
    ]
    assert topics(feed_key(insts["RELIANCE"]), "ltp") == [("/ld/eq/nse/price.2885", "price")]
    assert topics(feed_key(insts["SENSEX"]), "quote") == [("/ld/indices/bse/price.1", "index")]


def test_tags_are_groww_order_reference_ids() -> None:
    for _ in range(50):
        cid = str(uuid.uuid4())
        tag = groww_tag(cid)
        assert 8 <= len(tag) <= 20 and tag.isalnum() and tag == groww_tag(cid)
        assert tag[1:] == cid.replace("-", "")[:19]
    assert groww_tag("a-1") != groww_tag("a-2") and len(groww_tag("a-1")) == 20


def test_errors_map_onto_mandi_exceptions() -> None:
    def body(code: str) -> dict[str, object]:
        return {"status": "FAILURE", "error": {"code": code, "message": "m"}}

    assert isinstance(error_for(401, body("GA005"), "x"), BrokerSessionError)
    assert isinstance(error_for(403, None, "x"), BrokerSessionError)
    assert isinstance(error_for(400, body("GA001"), "x"), BrokerInputError)
    assert isinstance(error_for(404, body("GA004"), "x"), BrokerOrderError)
    # a reused reference: the order exists; its outcome is settled by reconciliation
    assert isinstance(error_for(400, body("GA007"), "x"), BrokerNetworkError)
    assert isinstance(error_for(500, body("GA000"), "x"), BrokerNetworkError)
    assert isinstance(error_for(429, body("GA003"), "x"), BrokerRateLimitError)
    assert isinstance(error_for(502, "<html>", "x"), BrokerNetworkError)
    assert "GA001: m" in str(error_for(400, body("GA001"), "place order"))


@pytest.mark.parametrize(
    ("status", "filled", "qty", "want"),
    [
        ("EXECUTED", 10, 10, S.FILLED), ("COMPLETED", 10, 10, S.FILLED),
        ("DELIVERY_AWAITED", 10, 10, S.FILLED), ("EXECUTED", 5, 10, S.PARTIALLY_FILLED),
        ("REJECTED", 0, 10, S.REJECTED), ("FAILED", 0, 10, S.REJECTED),
        ("CANCELLED", 3, 10, S.CANCELLED), ("OPEN", 0, 10, S.ACKED), ("ACKED", 0, 10, S.ACKED),
        ("NEW", 0, 10, S.ACKED), ("TRIGGER_PENDING", 0, 10, S.ACKED),
        ("CANCELLATION_REQUESTED", 4, 10, S.PARTIALLY_FILLED),
    ],
)  # fmt: skip
def test_order_status(status: str, filled: int, qty: int, want: S) -> None:
    assert order_status(status, filled, qty) is want


def test_order_report_with_trades() -> None:
    order = {"groww_order_id": "GMK1", "order_status": "EXECUTED", "quantity": 2,
             "filled_quantity": 2, "remark": "", "order_reference_id": "m1"}  # fmt: skip
    trades = [{"groww_trade_id": "T1", "quantity": 2, "price": 101.25,
               "trade_date_time": "2025-09-24T10:30:00"}]  # fmt: skip
    rep = order_report("cid", order, trades)
    assert rep.status is S.FILLED and rep.broker_order_id == "GMK1"
    (f,) = rep.fills
    assert (f.fill_id, f.quantity, f.price) == ("groww-T1", 2, 10125)
    assert f.ts_ns == int(dt.datetime(2025, 9, 24, 5, 0, tzinfo=dt.UTC).timestamp()) * 10**9


def test_login_values() -> None:
    import hashlib

    assert checksum("s3cret", 1719830400) == hashlib.sha256(b"s3cret1719830400").hexdigest()
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    at = int(dt.datetime(2025, 9, 24, 10, 0, tzinfo=ist).timestamp()) * 10**9
    six = int(dt.datetime(2025, 9, 25, 6, 0, tzinfo=ist).timestamp()) * 10**9
    assert next_six_ist(at) == six
    assert token_expiry_ns({"expiry": "2025-09-25T06:00:00"}, at) == six
    assert token_expiry_ns({"expiry": "garbage"}, at) == six


def test_candles_accept_both_time_forms_and_refuse_bad_rows() -> None:
    rows = [["2025-09-24T10:30:00", 245.95, 246.15, 245.05, 245.6, 735060, None],
            ["2025-09-24 10:31:00", 245.6, 245.7, 245.5, 245.55, 1000, 12]]  # fmt: skip
    a, b = parse_candles(rows, 7, "NSE", "1minute")
    assert (a.open, a.close, a.volume, a.oi, a.timeframe) == (24595, 24560, 735060, 0, 60)
    assert b.bucket - a.bucket == 60 * 10**9 and b.oi == 12
    with pytest.raises(ParseError, match="row 0"):
        parse_candles([["2025-09-24T10:30:00", "x", 1, 1, 1, 1]], 7, "NSE", "1minute")
    with pytest.raises(ParseError):
        parse_candles([["2025-09-24T10:30:00", 1, 1, 1, 1, -5]], 7, "NSE", "1minute")
