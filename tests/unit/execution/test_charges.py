"""Indian charges: Zerodha's contract-note arithmetic (2023 rates) reproduced, and current-rate
examples worked by hand."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D

import pytest

from mandi.core.errors import ConfigError
from mandi.execution.charges import (
    ChargeRates,
    ChargesModel,
    RateTable,
    default_rate_table,
    parse_rates_csv,
    segment_of,
)
from mandi.execution.config import BrokerageConfig
from mandi.model.instruments import Equity, Future, Option
from mandi.model.orders import Product, Side

JULY_2023 = dt.date(2023, 7, 12)


@pytest.fixture(scope="module")
def note(data_dir):
    return {
        row["tradingsymbol"]: row
        for row in json.loads((data_dir / "kite_virtual_contract_note.json").read_text())["data"]
    }


def close(a: D, b: float) -> bool:
    return abs(a - D(repr(b))) < D("1e-9")


def check(ch, expected: dict, stamp_in_note: bool = False) -> None:
    r = ch.as_rupees()
    assert close(r["stt"], expected["transaction_tax"])
    assert close(r["exchange"], expected["exchange_turnover_charge"])
    assert close(r["sebi"], expected["sebi_turnover_charge"])
    assert close(r["brokerage"], expected["brokerage"])
    assert close(r["gst"], expected["gst"]["total"])
    # the mock leaves stamp duty out (0 where 0.003 %/0.015 % applies): compare without it
    assert close(r["total"] - (0 if stamp_in_note else r["stamp"]), expected["total"])


def test_kite_contract_note_nse_equity_delivery(note):
    row = note["SBIN"]
    ch = ChargesModel().compute(
        exchange="NSE",
        segment="EQ_DELIVERY",
        side=Side.BUY,
        quantity=row["quantity"],
        price=row["price"] * 100,
        day=JULY_2023,
    )
    check(ch, row["charges"])
    assert ch.as_rupees()["stamp"] == D("0.084")  # 0.015 % of ₹560, which the mock omits


def test_kite_contract_note_nfo_option_buy(note):
    row = note["NIFTY2371317900PE"]
    ch = ChargesModel().compute(
        exchange="NSE",
        segment="OPT",
        side=Side.BUY,
        quantity=row["quantity"],
        price=round(row["price"] * 100),
        day=JULY_2023,
    )
    check(ch, row["charges"])
    # GST is 18 % of brokerage + transaction charge *without* IPFT + SEBI fee
    assert ch.as_rupees()["gst"] == D("0.18") * (D(20) + D("0.075") + D("0.00015"))


def test_kite_contract_note_mcx_future_with_rates_given_as_data(note):
    row = note["GOLDPETAL23JULFUT"]
    mcx = ChargeRates(
        dt.date(2023, 1, 1),
        "MCX",
        "FUT",
        stt_buy=D(0),
        stt_sell=D("0.0001"),
        txn=D("0.000026"),
        ipft=D(0),
        sebi=D("0.000001"),
        stamp_buy=D("0.00002"),
        gst=D("0.18"),
        source="CTT 0.01 % sell; MCX 0.0026 %",
    )
    model = ChargesModel(BrokerageConfig(), RateTable([*default_rate_table(), mcx]))
    ch = model.compute(
        exchange="MCX",
        segment="FUT",
        side=Side.SELL,
        quantity=row["quantity"],
        price=row["price"] * 100,
        day=JULY_2023,
    )
    check(ch, row["charges"], stamp_in_note=True)  # a sale pays no stamp duty
    assert ch.as_rupees()["brokerage"] == D("1.7586")  # 0.03 %, below the ₹20 cap


# --- current rates, worked by hand ---------------------------------------------------------
#
# BUY 130 NIFTY options @ ₹150.00 on 15-Apr-2026: turnover ₹19,500
#   brokerage ₹20 (flat per order)             20.00
#   STT (buy side: none)                        0
#   exchange 0.03552 % + IPFT 0.00001 %         6.9264 + 0.00195 = 6.92835
#   SEBI ₹10/crore                              0.0195
#   stamp 0.003 % (buy)                         0.585
#   GST 18 % × (20 + 6.9264 + 0.0195)           4.850262
#   total                                      32.383112  → 3238 paise
# SELL 130 @ ₹180.00: turnover ₹23,400
#   brokerage 20, STT 0.15 % = 35.10 (from 1-Apr-2026; 0.1 % = 23.40 before)
#   exchange 8.31168 + 0.00234 = 8.31402, SEBI 0.0234, stamp 0
#   GST 18 % × (20 + 8.31168 + 0.0234) = 5.1003144
#   total 68.5377344 → 6854 paise (56.8377344 → 5684 paise in March 2026)


def test_nse_option_round_trip_at_2026_rates():
    m = ChargesModel()
    buy = m.compute(
        exchange="NSE",
        segment="OPT",
        side=Side.BUY,
        quantity=130,
        price=15000,
        day=dt.date(2026, 4, 15),
    )
    assert buy.as_rupees() == {
        "brokerage": D(20),
        "stt": D(0),
        "exchange": D("6.92835"),
        "ipft": D("0.00195"),
        "sebi": D("0.0195"),
        "stamp": D("0.585"),
        "gst": D("4.850262"),
        "total": D("32.383112"),
    }
    assert buy.total == 3238
    sell = m.compute(
        exchange="NSE",
        segment="OPT",
        side=Side.SELL,
        quantity=130,
        price=18000,
        day=dt.date(2026, 4, 15),
    )
    assert sell.as_rupees()["stt"] == D("35.10")
    assert sell.as_rupees()["total"] == D("68.5377344") and sell.total == 6854
    march = m.compute(
        exchange="NSE",
        segment="OPT",
        side=Side.SELL,
        quantity=130,
        price=18000,
        day=dt.date(2026, 3, 20),
    )
    assert march.as_rupees()["stt"] == D("23.40") and march.total == 5684


# SELL 65 NIFTY futures @ ₹24,200 on 15-Apr-2026: turnover ₹15,73,000
#   brokerage min(₹20, 0.03 % = 471.90) = 20; STT 0.05 % = 786.50
#   exchange 0.0018299 % = 28.784327 + IPFT 0.0000001 % = 0.001573 → 28.7859
#   SEBI 1.573; GST 18 % × (20 + 28.784327 + 1.573) = 9.06431886; total 845.92321886
# BUY 35 RELIANCE intraday @ ₹1,400: turnover ₹49,000
#   brokerage min(20, 14.70) = 14.70; exchange 0.00307 % = 1.5043; SEBI 0.049;
#   stamp 0.003 % = 1.47; GST 18 % × (14.70 + 1.5043 + 0.049) = 2.925594; total 20.648894


def test_futures_and_intraday_equity_at_2026_rates():
    m = ChargesModel()
    fut = m.compute(
        exchange="NSE",
        segment="FUT",
        side=Side.SELL,
        quantity=65,
        price=2_420_000,
        day=dt.date(2026, 4, 15),
    )
    r = fut.as_rupees()
    assert (r["brokerage"], r["stt"], r["exchange"], r["sebi"], r["gst"], r["total"]) == (
        D(20),
        D("786.50"),
        D("28.7859"),
        D("1.573"),
        D("9.06431886"),
        D("845.92321886"),
    )
    eq = m.compute(
        exchange="NSE",
        segment="EQ_INTRADAY",
        side=Side.BUY,
        quantity=35,
        price=140_000,
        day=dt.date(2026, 4, 15),
    )
    assert eq.as_rupees()["total"] == D("20.648894")
    assert eq.as_rupees()["brokerage"] == D("14.70")


def test_brokerage_is_charged_once_per_order_across_partial_fills():
    m = ChargesModel()
    day = dt.date(2026, 4, 15)
    first = m.compute(
        exchange="NSE", segment="OPT", side=Side.BUY, quantity=65, price=15000, day=day
    )
    second = m.compute(
        exchange="NSE",
        segment="OPT",
        side=Side.BUY,
        quantity=65,
        price=15000,
        day=day,
        order_turnover_before=65 * 15000,
    )
    assert first.brokerage == 2000 and second.brokerage == 0
    # capped brokerage (futures): the cap applies to the whole order
    a = m.compute(
        exchange="NSE", segment="FUT", side=Side.BUY, quantity=1, price=3_000_000, day=day
    )
    b = m.compute(
        exchange="NSE",
        segment="FUT",
        side=Side.BUY,
        quantity=1,
        price=3_000_000,
        day=day,
        order_turnover_before=3_000_000,
    )
    c = m.compute(
        exchange="NSE",
        segment="FUT",
        side=Side.BUY,
        quantity=1,
        price=3_000_000,
        day=day,
        order_turnover_before=6_000_000,
    )
    # 0.03 % of ₹30,000 = ₹9, again ₹9, then only ₹2 more: ₹20 for the whole order
    assert (a.brokerage, b.brokerage, c.brokerage) == (900, 900, 200)


def test_rates_are_dated_data():
    t = default_rate_table()
    assert t.rates_for("NSE", "OPT", dt.date(2026, 3, 31)).stt_sell == D("0.001")
    assert t.rates_for("NSE", "OPT", dt.date(2026, 4, 1)).stt_sell == D("0.0015")
    assert t.rates_for("NSE", "OPT", dt.date(2024, 9, 30)).txn == D("0.0005")
    with pytest.raises(ConfigError, match="no rates in force"):
        t.rates_for("NSE", "OPT", dt.date(2020, 1, 1))
    with pytest.raises(ConfigError, match="no statutory rates"):
        t.rates_for("MCX", "OPT", dt.date(2026, 1, 1))
    # a user file adds or corrects rows
    extra = (
        "effective_from,exchange,segment,stt_buy,stt_sell,txn,ipft,sebi,stamp_buy,gst\n"
        "2027-04-01,NSE,OPT,0,0.002,0.0003552,0.0000001,0.000001,0.00003,0.18\n"
    )
    t2 = default_rate_table(extra)
    assert t2.rates_for("NSE", "OPT", dt.date(2027, 5, 1)).stt_sell == D("0.002")
    with pytest.raises(ConfigError, match="line 2"):
        parse_rates_csv(extra.replace("0.002", "banana"))
    with pytest.raises(ConfigError, match="segment"):
        parse_rates_csv(extra.replace(",OPT,", ",SWAP,"))


def test_segment_of_instruments():
    opt = Option(1, "NSE", "X", underlying="NIFTY", strike=1, option_type="CE")
    assert segment_of(opt, Product.MIS) == "OPT"
    assert segment_of(Future(2, "NSE", "F"), Product.NRML) == "FUT"
    assert segment_of(Equity(3, "NSE", "E"), Product.CNC) == "EQ_DELIVERY"
    assert segment_of(Equity(3, "NSE", "E"), Product.MIS) == "EQ_INTRADAY"
