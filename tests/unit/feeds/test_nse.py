"""NSE/BSE option-chain and bhavcopy import on the real files in tests/data (see PROVENANCE.md).

Published numbers (totals, per-strike values) are NSE's/BSE's own, read from the files or
from ``option_chain_derived_checks.json``; expected values below are transcribed from the raw
files, never computed with the code under test.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from mandi.core.calendar import ist_ns
from mandi.core.errors import ParseError
from mandi.feeds.nse import (
    BhavcopyRow,
    ChainImport,
    bhavcopy_chain,
    default_lot_size,
    infer_lot_sizes,
    load_bhavcopy,
    load_option_chain,
    load_option_chains,
    parity_forward,
    parse_bhavcopy,
    parse_option_chain,
    parse_option_chains,
)
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote

DATA = Path(__file__).resolve().parents[2] / "data"
OC = DATA / "option_chain"
BHAV = DATA / "bhavcopy"

V3 = OC / "nse_oc_v3_NIFTY_2026-07-10_1530_exp2026-07-14.json"
BSE = OC / "bse_oc_SENSEX_2026-07-10_exp2026-07-16.json"
CSV13 = OC / "nse_oc_csv_export_NIFTY_exp13-Apr-2026.csv"
LEGACY = {
    (u, day): OC / f"nse_oc_indices_{u}_2025-07-{day}_1530.json.gz"
    for u in ("NIFTY", "BANKNIFTY")
    for day in (16, 17)
}
BHAV_LEGACY = BHAV / "nse_fo_bhav_legacy_2019-08-01_first1000rows.csv"
BHAV_UDIFF = BHAV / "nse_fo_bhav_udiff_2026-07-10_SYNTHETIC.csv"
CHECKS = json.loads((OC / "option_chain_derived_checks.json").read_text())
CSV_AS_OF = "2026-04-01 15:30"  # the CSV downloads carry no time; most likely 01-Apr-2026


def raw_json(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    doc: dict[str, Any] = json.loads(gzip.decompress(data) if path.suffix == ".gz" else data)
    return doc


def by_strike(snap: ChainSnapshot) -> dict[int, ChainRow]:
    return {r.strike: r for r in snap.rows}


def rupees(x: float) -> int:
    return round(x * 100)


# ------------------------------------------------------------------------------------------
# every real file
# ------------------------------------------------------------------------------------------

REAL_CHAINS = {
    # file: (format, number of snapshots, nearest expiry, lot size, exchange, underlying)
    V3.name: ("nse-json-v3", 1, dt.date(2026, 7, 14), 65, "NSE", "NIFTY"),
    BSE.name: ("bse-json", 1, dt.date(2026, 7, 16), 20, "BSE", "SENSEX"),
    LEGACY["NIFTY", 16].name: ("nse-json", 18, dt.date(2025, 7, 17), 75, "NSE", "NIFTY"),
    LEGACY["NIFTY", 17].name: ("nse-json", 18, dt.date(2025, 7, 17), 75, "NSE", "NIFTY"),
    LEGACY["BANKNIFTY", 16].name: ("nse-json", 6, dt.date(2025, 7, 31), 35, "NSE", "BANKNIFTY"),
    LEGACY["BANKNIFTY", 17].name: ("nse-json", 6, dt.date(2025, 7, 31), 35, "NSE", "BANKNIFTY"),
    **{
        f"nse_oc_csv_export_NIFTY_exp{e}.csv": ("nse-csv", 1, None, 65, "NSE", "NIFTY")
        for e in ("07-Apr-2026", "13-Apr-2026", "21-Apr-2026", "28-Apr-2026", "05-May-2026")
    },
}


def test_every_real_chain_file_is_covered() -> None:
    on_disk = {p.name for p in OC.iterdir() if p.name != "option_chain_derived_checks.json"}
    assert on_disk == set(REAL_CHAINS)


@pytest.mark.parametrize("fname", sorted(REAL_CHAINS))
def test_parse_every_real_chain_file(fname: str) -> None:
    fmt, n, nearest, lot, exchange, underlying = REAL_CHAINS[fname]
    kw: dict[str, Any] = (
        {"as_of": CSV_AS_OF, "underlying_price": "parity"} if fmt == "nse-csv" else {}
    )
    imp = parse_option_chains((OC / fname).read_bytes(), name=fname, **kw)
    assert isinstance(imp, ChainImport)
    assert imp.format == fmt
    assert imp.skipped == ()
    assert len(imp.snapshots) == n
    if nearest is not None:
        assert imp.snapshots[0].expiry == nearest
    expiries = [s.expiry for s in imp.snapshots]
    assert expiries == sorted(set(expiries))
    for s in imp.snapshots:
        assert (s.exchange, s.underlying, s.lot_size, s.source) == (exchange, underlying, lot, fmt)
        strikes = [r.strike for r in s.rows]
        assert strikes == sorted(set(strikes)) and strikes[0] > 0
        assert s.underlying_price > 0
        for r in s.rows:
            assert r.call is not None or r.put is not None
            for q in (r.call, r.put):
                if q is None:
                    continue
                assert min(q.ltp, q.bid, q.ask, q.volume, q.oi, q.bid_qty, q.ask_qty) >= 0
                # OI and volume arrive in contracts: whole multiples of the lot once in shares
                assert q.volume % s.lot_size == 0
                assert math.isnan(q.iv) or 0 < q.iv < 5


# ------------------------------------------------------------------------------------------
# NSE v3 (2026)
# ------------------------------------------------------------------------------------------


def test_v3_units_timestamps_and_a_known_strike() -> None:
    snap = load_option_chain(V3)
    assert snap.ts_event == ist_ns(dt.date(2026, 7, 10), dt.time(15, 30))
    assert snap.ts_event == 1783677600 * 10**9  # 10:00 UTC
    assert snap.underlying_price == 2420690
    assert snap.expiry == dt.date(2026, 7, 14) and snap.expiry.weekday() == 1  # Tuesday
    assert len(snap.rows) == 99
    row = by_strike(snap)[rupees(23900)]
    c, p = row.call, row.put
    assert c is not None and p is not None
    # raw: CE openInterest 13729 lots, change -15366, volume 161569, buy 333.25 x 260,
    # sell 336.3 x 325, LTP 336, IV 7.49
    assert c.oi == 13729 * 65 and c.oi_change == -15366 * 65 and c.volume == 161569 * 65
    assert (c.ltp, c.bid, c.ask, c.bid_qty, c.ask_qty) == (33600, 33325, 33630, 260, 325)
    assert c.iv == 0.0749
    assert c.symbol == "OPTIDXNIFTY14-07-2026CE23900.00"
    assert p.oi == 100653 * 65 and p.oi_change == 31612 * 65 and p.iv == 0.1187
    # an IV of 0 (21400 CE) means "none computed": NaN, not 0
    deep = by_strike(snap)[rupees(21400)].call
    assert deep is not None and math.isnan(deep.iv)


def test_v3_pcr_matches_nse_totals() -> None:
    snap = load_option_chain(V3)
    ce = sum(r.call.oi for r in snap.rows if r.call)
    pe = sum(r.put.oi for r in snap.rows if r.put)
    ref = CHECKS["nse_v3_NIFTY_2026-07-10"]
    assert ce == ref["published_sum_CE_OI_contracts"] * 65
    assert pe == ref["published_sum_PE_OI_contracts"] * 65
    assert round(pe / ce, 6) == ref["computed_pcr_oi"] == 1.272612


# ------------------------------------------------------------------------------------------
# NSE legacy records (2025)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(LEGACY))
def test_legacy_filtered_totals_equal_published(key: tuple[str, int]) -> None:
    u, day = key
    snap = load_option_chain(LEGACY[key])
    raw = raw_json(LEGACY[key])
    ref = CHECKS[f"nse_records_{u}_2025-07-{day}"]
    assert snap.expiry == dt.datetime.strptime(ref["filtered_expiry"][0], "%d-%b-%Y").date()
    lot = snap.lot_size
    for side, attr in (("CE", "call"), ("PE", "put")):
        quotes = [getattr(r, attr) for r in snap.rows if getattr(r, attr) is not None]
        oi, vol = sum(q.oi for q in quotes), sum(q.volume for q in quotes)
        assert oi == ref[f"published_filtered_{side}"]["totOI"] * lot
        assert vol == ref[f"published_filtered_{side}"]["totVol"] * lot
        assert ref[f"published_filtered_{side}"] == raw["filtered"][side]
    assert snap.ts_event == ist_ns(dt.date(2025, 7, day), dt.time(15, 30))
    assert snap.underlying_price == rupees(ref["published_underlyingValue"])


def test_legacy_fractional_oi_becomes_whole_shares() -> None:
    snaps = {s.expiry: s for s in load_option_chains(LEGACY["NIFTY", 16])}
    # raw: 25-Jun-2026 12000 PE openInterest 4.333333333333333 lots (NSE divides open shares
    # by the current lot of 75): 325 shares
    put = by_strike(snaps[dt.date(2026, 6, 25)])[rupees(12000)].put
    assert put is not None and put.oi == 325
    assert (put.ltp, put.bid, put.bid_qty, put.ask, put.volume) == (2005, 205, 3600, 0, 0)
    assert math.isnan(put.iv)


def test_fractional_lots_round_to_the_nearest_share() -> None:
    # 1/49 lots x 49 is 0.9999999999999999 in floating point: it must be 1 share, not 0
    doc = json.loads(_chain_json("FOO", [49] * 3))
    doc["data"][0]["CE"]["openInterest"] = 1 / 49
    doc["data"][0]["CE"]["changeinOpenInterest"] = -1 / 49
    snap = parse_option_chain(json.dumps(doc), name="foo.json", lot_size=49)
    call = snap.rows[0].call
    assert call is not None and (call.oi, call.oi_change) == (1, -1)


@pytest.mark.parametrize(("u", "expected_common"), [("NIFTY", 1330), ("BANKNIFTY", 841)])
def test_change_in_oi_between_consecutive_days_equals_nse(u: str, expected_common: int) -> None:
    def sides(day: int) -> dict[tuple[dt.date, int, str], OptionQuote]:
        out = {}
        for s in load_option_chains(LEGACY[u, day]):
            for r in s.rows:
                for kind, q in (("CE", r.call), ("PE", r.put)):
                    if q is not None:
                        out[s.expiry, r.strike, kind] = q
        return out

    d16, d17 = sides(16), sides(17)
    common = d16.keys() & d17.keys()
    assert len(common) == expected_common
    for k in common:
        assert d17[k].oi - d16[k].oi == d17[k].oi_change, k


def test_legacy_expiry_selection() -> None:
    path = LEGACY["NIFTY", 16]
    all_ = load_option_chains(path)
    assert [s.expiry for s in all_][:3] == [
        dt.date(2025, 7, 17),
        dt.date(2025, 7, 24),
        dt.date(2025, 7, 31),
    ]
    assert all_[-1].expiry == dt.date(2030, 6, 25)
    assert load_option_chain(path, expiry="24-Jul-2025").expiry == dt.date(2025, 7, 24)
    assert load_option_chain(path, expiry=dt.date(2025, 7, 31)) == all_[2]
    with pytest.raises(ParseError, match=r"no option rows for expiry 2025-07-18.*2025-07-17"):
        load_option_chain(path, expiry=dt.date(2025, 7, 18))


def test_expired_contracts_are_dropped_and_counted() -> None:
    doc = raw_json(LEGACY["NIFTY", 17])
    doc["records"]["timestamp"] = "18-Jul-2025 15:30:00"  # the day after the weekly expiry
    imp = parse_option_chains(json.dumps(doc), name="nifty.json")
    assert imp.snapshots[0].expiry == dt.date(2025, 7, 24)
    n_17jul = sum(
        1
        for item in doc["records"]["data"]
        if item["expiryDate"] == "17-Jul-2025"
        for k in ("CE", "PE")
        if k in item
    )
    assert imp.skip_counts() == {"expired contract": n_17jul}


def test_filtered_only_file_is_read() -> None:
    doc = raw_json(LEGACY["BANKNIFTY", 16])
    del doc["records"]["data"]
    snap = parse_option_chain(json.dumps(doc), name="bn.json")
    assert snap == load_option_chain(LEGACY["BANKNIFTY", 16])


# ------------------------------------------------------------------------------------------
# NSE page CSV
# ------------------------------------------------------------------------------------------


def test_csv_monday_expiry_file() -> None:
    snap = load_option_chain(CSV13, as_of=CSV_AS_OF, underlying_price=2270000)
    assert snap.expiry == dt.date(2026, 4, 13) and snap.expiry.weekday() == 0  # Monday
    assert snap.ts_event == ist_ns(dt.date(2026, 4, 1), dt.time(15, 30))
    assert (snap.underlying, snap.exchange, snap.lot_size) == ("NIFTY", "NSE", 65)
    assert snap.underlying_price == 2270000
    assert len(snap.rows) == 117
    rows = by_strike(snap)
    # line: ,55,-10,42,28.92,864.00,148.00,390,864.20,943.80,65,"22,100.00",65,202.70,210.25,
    #       65,6.60,201.60,28.16,"3,485","1,009","1,010",
    c, p = rows[rupees(22100)].call, rows[rupees(22100)].put
    assert c is not None and p is not None
    assert (c.oi, c.oi_change, c.volume) == (55 * 65, -10 * 65, 42 * 65)
    assert (c.ltp, c.bid, c.ask, c.bid_qty, c.ask_qty, c.iv) == (
        86400,
        86420,
        94380,
        390,
        65,
        0.2892,
    )
    assert (p.oi, p.oi_change, p.volume) == (1010 * 65, 1009 * 65, 3485 * 65)
    assert (p.ltp, p.bid, p.ask, p.bid_qty, p.ask_qty, p.iv) == (
        20160,
        20270,
        21025,
        65,
        65,
        0.2816,
    )
    # first line: the call has only a book ("-" elsewhere): present, no trade, no OI, no IV
    c0 = rows[rupees(20200)].call
    assert c0 is not None
    assert (c0.ltp, c0.oi, c0.volume, c0.bid, c0.ask, c0.bid_qty) == (0, 0, 0, 226760, 276290, 1690)
    assert math.isnan(c0.iv)
    # a side that is "-" throughout is absent: 05-May-2026 file, line 3 (20,200 CE)
    may = load_option_chain(
        OC / "nse_oc_csv_export_NIFTY_exp05-May-2026.csv", as_of=CSV_AS_OF, underlying_price=2270000
    )
    r0 = may.rows[0]
    assert r0.strike == rupees(20200) and r0.call is None
    assert r0.put is not None and (r0.put.bid_qty, r0.put.bid, r0.put.ask) == (33800, 2365, 0)


def test_csv_needs_time_and_underlying_price_and_expiry() -> None:
    data = CSV13.read_bytes()
    with pytest.raises(ParseError, match=r"exp13-Apr-2026.csv: .*no timestamp; pass as_of="):
        parse_option_chain(data, name=CSV13.name, underlying_price=2270000)
    with pytest.raises(ParseError, match=r"no underlying price; pass underlying_price="):
        parse_option_chain(data, name=CSV13.name, as_of=CSV_AS_OF)
    with pytest.raises(ParseError, match=r"pass expiry="):
        parse_option_chain(
            data, name="chain.csv", as_of=CSV_AS_OF, underlying="NIFTY", underlying_price=2270000
        )
    with pytest.raises(ParseError, match=r"expiry=2026-04-14 but the file name says 2026-04-13"):
        parse_option_chain(
            data, name=CSV13.name, as_of=CSV_AS_OF, expiry="14-Apr-2026", underlying_price=2270000
        )
    with pytest.raises(ParseError, match=r"cannot tell the underlying; pass underlying="):
        parse_option_chain(
            data, name="chain.csv", as_of=CSV_AS_OF, expiry="13-Apr-2026", underlying_price=2270000
        )
    # NSE's own download name carries the underlying and the expiry
    snap = parse_option_chain(
        data,
        name="option-chain-ED-NIFTY-13-Apr-2026.csv",
        as_of=CSV_AS_OF,
        underlying_price=2270000,
    )
    assert (snap.underlying, snap.expiry) == ("NIFTY", dt.date(2026, 4, 13))


def test_parity_forward_on_the_csv_export() -> None:
    # README: ATM parity on the 07-Apr file implies a forward of about 22,756
    snap = load_option_chain(
        OC / "nse_oc_csv_export_NIFTY_exp07-Apr-2026.csv",
        as_of=CSV_AS_OF,
        underlying_price="parity",
    )
    assert abs(snap.underlying_price - 2275600) <= 500
    assert parity_forward(snap.rows) == snap.underlying_price
    assert parity_forward(()) is None


@pytest.mark.parametrize(
    "as_of",
    [
        "2026-04-01 15:30",
        "2026-04-01T15:30:00",
        dt.datetime(2026, 4, 1, 15, 30),
        dt.datetime(2026, 4, 1, 10, 0, tzinfo=dt.UTC),
        dt.date(2026, 4, 1),
        1775037600 * 10**9,
    ],
)
def test_as_of_forms_agree(as_of: object) -> None:
    snap = load_option_chain(CSV13, as_of=as_of, underlying_price=2270000)  # type: ignore[arg-type]
    assert snap.ts_event == 1775037600 * 10**9


# ------------------------------------------------------------------------------------------
# BSE SENSEX
# ------------------------------------------------------------------------------------------


def test_bse_sensex_chain() -> None:
    snap = load_option_chain(BSE)
    assert (snap.underlying, snap.exchange, snap.lot_size) == ("SENSEX", "BSE", 20)
    assert snap.expiry == dt.date(2026, 7, 16) and snap.expiry.weekday() == 3  # Thursday
    assert snap.ts_event == ist_ns(dt.date(2026, 7, 10), dt.time(19, 15))
    assert snap.underlying_price == 7756939
    rows = by_strike(snap)
    c, p = rows[rupees(75600)].call, rows[rupees(75600)].put
    assert c is not None and p is not None
    # raw: C_Open_Interest "39", C_Last_Trd_Price "2017.15", C_Vol_Traded "59", C_IV "0.000…"
    assert (c.oi, c.ltp, c.volume, c.token, c.symbol) == (
        780,
        201715,
        1180,
        826817,
        "SENSEX2671675600CE",
    )
    assert math.isnan(c.iv)
    assert (p.oi, p.ltp, p.volume, p.token) == (3476 * 20, 5505, 49732 * 20, 828524)
    assert p.iv == pytest.approx(0.14944532005295899, rel=1e-15)
    # a strike listed with every field empty has no row
    assert rupees(66600) not in rows
    raw = raw_json(BSE)
    ce = sum(r.call.oi for r in snap.rows if r.call)
    pe = sum(r.put.oi for r in snap.rows if r.put)
    assert ce == 481275 * 20 and raw["tot_C_Open_Interest"] == "4,81,275.00"
    assert pe == 646957 * 20 and raw["tot_Open_Interest"] == "6,46,957.00"
    assert sum(r.call.volume for r in snap.rows if r.call) == 8762118 * 20
    assert sum(r.put.volume for r in snap.rows if r.put) == 8261274 * 20


# ------------------------------------------------------------------------------------------
# lot sizes
# ------------------------------------------------------------------------------------------


def test_lot_size_table() -> None:
    d = dt.date
    assert default_lot_size("NIFTY", d(2025, 7, 17), d(2025, 7, 16)) == 75
    assert default_lot_size("NIFTY", d(2030, 6, 25), d(2025, 7, 16)) == 75
    assert default_lot_size("nifty", d(2026, 7, 14), d(2026, 7, 10)) == 65
    assert default_lot_size("NIFTY", d(2026, 1, 6), d(2025, 11, 15)) == 65  # Jan-2026 series
    assert default_lot_size("NIFTY", d(2026, 3, 31), d(2025, 11, 15)) == 75  # quarterly, pre-relot
    assert default_lot_size("NIFTY", d(2026, 3, 30), d(2025, 12, 31)) == 65  # after the re-lot
    assert default_lot_size("BANKNIFTY", d(2025, 7, 31), d(2025, 7, 16)) == 35
    assert default_lot_size("BANKNIFTY", d(2025, 6, 26), d(2025, 6, 1)) == 30
    assert default_lot_size("BANKNIFTY", d(2026, 5, 26), d(2026, 5, 1)) == 30
    assert default_lot_size("SENSEX", d(2026, 7, 16), d(2026, 7, 10)) == 20
    assert default_lot_size("RELIANCE", d(2026, 7, 28), d(2026, 7, 10)) is None
    assert default_lot_size("NIFTY", d(2019, 8, 29), d(2019, 8, 1)) is None


def _chain_json(underlying: str, quantities: list[int], ts: str = "10-Jul-2026 15:30:00") -> str:
    data = [
        {
            "strikePrice": 100 + 10 * i,
            "expiryDate": "28-07-2026",
            "CE": {
                "strikePrice": 100 + 10 * i,
                "expiryDate": "28-07-2026",
                "underlying": underlying,
                "openInterest": 3,
                "changeinOpenInterest": -1,
                "totalTradedVolume": 7,
                "impliedVolatility": 20.5,
                "lastPrice": 5.05,
                "buyPrice1": 5.0,
                "buyQuantity1": q,
                "sellPrice1": 5.1,
                "sellQuantity1": q,
            },
        }
        for i, q in enumerate(quantities)
    ]
    return json.dumps({"data": data, "timestamp": ts, "underlyingValue": 150.25})


def test_lot_size_inferred_from_quantities_for_unknown_underlyings() -> None:
    snap = parse_option_chain(_chain_json("FOO", [50, 100, 150, 250] * 5), name="foo.json")
    assert snap.lot_size == 50
    assert snap.rows[0].call.oi == 150 and snap.rows[0].call.volume == 350  # type: ignore[union-attr]
    with pytest.raises(ParseError, match=r"foo.json: lot size of FOO .* pass lot_size="):
        parse_option_chain(_chain_json("FOO", [50, 100]), name="foo.json")
    assert parse_option_chain(_chain_json("FOO", [50, 100]), name="f", lot_size=25).lot_size == 25


def test_quantities_contradicting_the_table_override_it(caplog: pytest.LogCaptureFixture) -> None:
    # a NIFTY chain of 2026 whose quantities are all multiples of 75, not 65
    with caplog.at_level(logging.WARNING, logger="mandi.feeds.nse"):
        snap = parse_option_chain(_chain_json("NIFTY", [75, 150, 225] * 8), name="n.json")
    assert snap.lot_size == 75
    assert "not of the table's lot size 65" in caplog.text
    # consistent with the table: the table's value even if the GCD is a multiple of it
    assert parse_option_chain(_chain_json("NIFTY", [130, 260] * 12), name="n").lot_size == 65


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------


def test_truncated_json_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "chain.json"
    data = V3.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ParseError, match=r"chain.json: not valid JSON \(.*truncated"):
        load_option_chain(bad)
    gz = tmp_path / "chain.json.gz"
    gz.write_bytes(LEGACY["NIFTY", 16].read_bytes()[:5000])
    with pytest.raises(ParseError, match=r"chain.json.gz: broken gzip data"):
        load_option_chain(gz)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["records"].pop("timestamp"), r"records.timestamp is missing"),
        (lambda d: d.pop("records"), r"records is missing"),
        (
            lambda d: d["records"].__setitem__("data", "x"),
            r"records.data is str 'x', expected list",
        ),
        (
            lambda d: d["records"].__setitem__("underlyingValue", "25k"),
            r"records.underlyingValue is str '25k', expected int or float",
        ),
        (
            lambda d: d["records"].__setitem__("underlyingValue", -1.0),
            r"underlyingValue = -1.0 is not a positive price",
        ),
        (
            lambda d: d["records"].__setitem__("timestamp", "yesterday"),
            r"records.timestamp = 'yesterday' is not",
        ),
        (lambda d: d["records"].__setitem__("data", []), r"no option rows for any expiry"),
    ],
)
def test_malformed_legacy_json(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = raw_json(LEGACY["BANKNIFTY", 16])
    mutate(doc)
    with pytest.raises(ParseError, match=rf"^bn16.json: .*{message}"):
        parse_option_chains(json.dumps(doc), name="bn16.json")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"   \n", "empty file"),
        (
            b'{"status": "ok", "count": 3}',
            r"not an NSE or BSE option chain \(top-level keys: status",
        ),
        (b"[1, 2, 3]", "JSON is a list, not an option chain"),
        (b"hello,world\n1,2\n", "not an option-chain file"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (BHAV_LEGACY.read_bytes(), "F&O bhavcopy, not an option chain; use load_bhavcopy"),
        (b'{"Table": [], "ASON": {"DT_TM": "10 Jul 2026 | 19:15"}}', "no row carries UlaValue"),
        (b'{"Table": [], "ASON": {}}', r"ASON.DT_TM is missing"),
    ],
)
def test_non_chain_inputs(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=rf"^x.dat: .*{message}"):
        parse_option_chains(data, name="x.dat")


def test_missing_file_is_a_parse_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"nope.json: cannot read"):
        load_option_chain(tmp_path / "nope.json")


def _v3_with(strike: float, kind: str, fld: str, value: object) -> str:
    doc = raw_json(V3)
    for item in doc["data"]:
        if item["strikePrice"] == strike:
            item[kind][fld] = value
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("fld", "value", "reason"),
    [
        ("lastPrice", "abc", "bad number"),
        ("lastPrice", -336.0, "negative price"),
        ("buyPrice1", "1,2x3", "bad number"),
        ("openInterest", -5, "negative quantity"),
        ("totalTradedVolume", True, "bad number"),
        ("buyQuantity1", 2.5, "not a whole number"),
        ("impliedVolatility", -1.0, "negative IV"),
        ("expiryDate", "31-02-2026", "bad date"),
        ("strikePrice", 23950, "strike differs from its row's"),
    ],
)
def test_a_bad_value_drops_only_that_option(fld: str, value: object, reason: str) -> None:
    imp = parse_option_chains(_v3_with(23900, "CE", fld, value), name="v3.json")
    assert imp.skip_counts() == {reason: 1}
    (skip,) = imp.skipped
    assert skip.where.endswith(".CE") and skip.field in (fld, "bidprice") and skip.reason == reason
    assert repr(value) in skip.value or str(value) in skip.value
    good = load_option_chain(V3)
    snap = imp.snapshots[0]
    bad_row = by_strike(snap)[rupees(23900)]
    assert bad_row.call is None and bad_row.put == by_strike(good)[rupees(23900)].put
    assert [r for r in snap.rows if r.strike != rupees(23900)] == [
        r for r in good.rows if r.strike != rupees(23900)
    ]


def test_a_bad_strike_drops_the_row() -> None:
    doc = raw_json(V3)
    doc["data"][5]["strikePrice"] = "n/a"
    doc["data"][6]["strikePrice"] = -100
    doc["data"][7] = "garbage"
    imp = parse_option_chains(json.dumps(doc), name="v3.json")
    assert imp.skip_counts() == {"bad number": 1, "bad strike": 1, "not an object": 1}
    assert len(imp.snapshots[0].rows) == 96


def test_a_duplicate_contract_is_dropped() -> None:
    doc = raw_json(V3)
    doc["data"].append(doc["data"][10])
    imp = parse_option_chains(json.dumps(doc), name="v3.json")
    assert imp.skip_counts() == {"duplicate contract": 2}
    assert imp.snapshots[0] == load_option_chain(V3)


def test_skips_are_logged_once_per_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    doc = raw_json(V3)
    for i in (3, 4, 5):
        doc["data"][i]["PE"]["lastPrice"] = "oops"
    doc["data"][8]["CE"]["openInterest"] = -1
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="mandi.feeds.nse"):
        snap = load_option_chain(path)
    assert sum(r.put is None for r in snap.rows) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert any(
        "skipped 3 row(s): bad number" in w and "data[3].PE" in w and "'oops'" in w
        for w in warnings
    )
    assert any("skipped 1 row(s): negative quantity" in w for w in warnings)


def test_every_option_bad_is_an_error() -> None:
    doc = raw_json(V3)
    for item in doc["data"]:
        for k in ("CE", "PE"):
            if k in item:
                item[k]["lastPrice"] = "x"
    with pytest.raises(ParseError, match=r"no option rows for any expiry .*'bad number': 198"):
        parse_option_chains(json.dumps(doc), name="v3.json")


def test_csv_corrupted_number_and_short_line() -> None:
    text = CSV13.read_text()
    assert text.count("864.00") == 1
    text = text.replace("864.00", "86x.00")
    lines = text.splitlines()
    lines.insert(10, ",1,2,3")
    imp = parse_option_chains(
        "\n".join(lines), name=CSV13.name, as_of=CSV_AS_OF, underlying_price=2270000
    )
    assert imp.skip_counts() == {"bad number": 1, "short row": 1}
    assert "86x.00" in imp.skipped[1].value or "86x.00" in imp.skipped[0].value
    row = by_strike(imp.snapshots[0])[rupees(22100)]
    assert row.call is None and row.put is not None


def test_bse_garbage_and_disagreeing_underlying() -> None:
    doc = raw_json(BSE)
    doc["Table"][90]["C_Open_Interest"] = "3,9x"
    doc["Table"][91]["Strike_Price"] = "abc"
    imp = parse_option_chains(json.dumps(doc), name="bse.json")
    assert imp.skip_counts() == {"bad number": 2}
    doc["Table"][92]["UlaValue"] = "77000.00"
    with pytest.raises(ParseError, match=r"bse.json: rows disagree on UlaValue"):
        parse_option_chains(json.dumps(doc), name="bse.json")


def test_underlying_argument_must_match_the_file() -> None:
    with pytest.raises(ParseError, match=r"the file is a NIFTY chain, not BANKNIFTY"):
        load_option_chain(V3, underlying="BANKNIFTY")
    with pytest.raises(ParseError, match=r"lot_size=0 is not a positive whole number"):
        load_option_chain(V3, lot_size=0)
    with pytest.raises(ParseError, match=r"underlying_price=24206.9 must be positive int paise"):
        load_option_chain(V3, underlying_price=24206.9)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# bhavcopy
# ------------------------------------------------------------------------------------------


def test_legacy_bhavcopy_rows() -> None:
    rows = load_bhavcopy(BHAV_LEGACY)
    assert len(rows) == 1000
    assert all(isinstance(r, BhavcopyRow) for r in rows)
    nifty = next(r for r in rows if r.symbol == "NIFTY" and r.expiry == dt.date(2019, 8, 29))
    # FUTIDX,NIFTY,29-Aug-2019,0.0,XX,11098.4,11098.4,10901.1,11015.35,11015.35,199881.0,
    # 1650955.24,19001400.0,1339200.0,01-AUG-2019
    assert nifty == BhavcopyRow(
        trade_date=dt.date(2019, 8, 1),
        instrument="FUTIDX",
        symbol="NIFTY",
        expiry=dt.date(2019, 8, 29),
        strike=0,
        option_type="",
        open=1109840,
        high=1109840,
        low=1090110,
        close=1101535,
        settle=1101535,
        contracts=199881,
        turnover=165095524 * 10**5,
        oi=19001400,
        oi_change=1339200,
    )
    assert nifty.lot_size is None and not nifty.is_option
    kinds = {r.instrument for r in rows}
    assert kinds == {"FUTIDX", "FUTSTK", "OPTIDX"}
    assert sum(r.is_option for r in rows) == 520


def test_legacy_bhavcopy_without_index_column_and_with_trailing_comma() -> None:
    lines = BHAV_LEGACY.read_text().splitlines()
    plain = "\n".join(line.split(",", 1)[1] + "," for line in lines)  # NSE's own layout
    imp = parse_bhavcopy(plain.encode(), name="fo01AUG2019bhav.csv")
    assert imp.format == "legacy" and imp.skipped == ()
    assert list(imp.rows) == load_bhavcopy(BHAV_LEGACY)


def test_bhavcopy_lot_size_inference_and_chain() -> None:
    rows = load_bhavcopy(BHAV_LEGACY)
    lots = infer_lot_sizes(rows)
    assert lots["BANKNIFTY"] == 20 and lots["NIFTY"] == 75
    # independent check of 20 with NSE's traded value: 27200 CE of 01-Aug-2019: 4 contracts,
    # 22.89 lakh, prices 1267.55-1490.25 -> value per contract / (strike + price) within 20
    r = next(
        r
        for r in rows
        if r.symbol == "BANKNIFTY"
        and r.strike == rupees(27200)
        and r.expiry == dt.date(2019, 8, 1)
        and r.option_type == "CE"
    )
    per_share = r.turnover / (r.contracts * 20)
    assert r.strike + r.low <= per_share <= r.strike + r.high
    snap = bhavcopy_chain(rows, "BANKNIFTY", "08-Aug-2019", underlying_price=2836755)
    assert (snap.lot_size, snap.underlying_price, snap.source) == (20, 2836755, "nse-bhavcopy")
    assert snap.ts_event == ist_ns(dt.date(2019, 8, 1), dt.time(15, 30))
    opts = [
        r
        for r in rows
        if r.symbol == "BANKNIFTY" and r.expiry == dt.date(2019, 8, 8) and r.is_option
    ]
    assert len(opts) == sum((x.call is not None) + (x.put is not None) for x in snap.rows)
    for src in opts:
        q = getattr(by_strike(snap)[src.strike], "call" if src.option_type == "CE" else "put")
        assert (q.oi, q.oi_change, q.volume, q.ltp) == (
            src.oi,
            src.oi_change,
            src.contracts * 20,
            src.close,
        )
    with pytest.raises(ParseError, match=r"no BANKNIFTY options expiring 2019-09-26"):
        bhavcopy_chain(rows, "BANKNIFTY", dt.date(2019, 9, 26), underlying_price=1)
    with pytest.raises(ParseError, match=r"carries no underlying price"):
        bhavcopy_chain(rows, "BANKNIFTY", dt.date(2019, 8, 8))


def test_udiff_bhavcopy_synthetic_fixture() -> None:
    imp = parse_bhavcopy(BHAV_UDIFF.read_bytes(), name=BHAV_UDIFF.name)
    assert imp.format == "udiff" and imp.skipped == () and len(imp.rows) == 10
    fut, ce = imp.rows[0], imp.rows[1]
    assert (fut.instrument, fut.strike, fut.option_type, fut.lot_size) == ("FUTIDX", 0, "", 65)
    # NIFTY2671424100CE row: OI 2678000 shares, 820000 contracts, value 1292807490000.00
    assert ce.instrument == "OPTIDX" and ce.token == 60101
    assert (ce.strike, ce.option_type, ce.close, ce.oi, ce.contracts) == (
        2410000,
        "CE",
        17135,
        2678000,
        820000,
    )
    assert ce.turnover == 129280749000000 and ce.underlying_price == 2420690
    assert (ce.trades, ce.trading_symbol, ce.prev_close) == (150000, "NIFTY2671424100CE", 13260)
    assert imp.rows[-1].instrument == "OPTSTK" and imp.rows[-1].lot_size == 500
    snap = bhavcopy_chain(imp.rows, "NIFTY", dt.date(2026, 7, 14))
    assert (snap.lot_size, snap.underlying_price, snap.source) == (
        65,
        2420690,
        "nse-bhavcopy-udiff",
    )
    assert [r.strike for r in snap.rows] == [rupees(k) for k in (24100, 24200, 24300, 24400)]
    c = by_strike(snap)[rupees(24100)].call
    assert c is not None and (c.oi, c.volume, c.token) == (2678000, 820000 * 65, 60101)
    assert by_strike(snap)[rupees(24400)].put is None
    assert infer_lot_sizes(imp.rows) == {"NIFTY": 65, "RELIANCE": 500}


def test_bad_bhavcopy_rows_are_skipped_and_counted() -> None:
    lines = BHAV_UDIFF.read_text().splitlines()
    good = len(lines) - 1
    edits = [
        (3, "54.10,54.10,80.25", "5x.10,54.10,80.25"),  # garbage close
        (4, ",95.00,128.00,", ",-95.00,128.00,"),  # negative open
        (5, ",2026-07-14,2026-07-14,", ",2026-02-30,2026-02-30,"),  # bad expiry
        (8, ",F1,65,", ",F1,0,"),  # lot size 0
    ]
    bad = []
    for i, old, new in edits:
        assert old in lines[i]
        bad.append(lines[i].replace(old, new))
    bad.append(lines[6].rsplit(",", 12)[0])  # cut short
    bad.append(lines[7])  # duplicate contract
    imp = parse_bhavcopy("\n".join(lines + bad), name="bhav.csv")
    assert len(imp.rows) == good
    assert imp.skip_counts() == {
        "bad number": 1,
        "negative price": 1,
        "bad date": 1,
        "wrong number of cells": 1,
        "duplicate contract": 1,
        "bad lot size": 1,
    }
    assert {s.where for s in imp.skipped} == {f"line {n}" for n in range(good + 2, good + 8)}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"a,b,c\n1,2,3\n", r"not an F&O bhavcopy: missing legacy columns \['INSTRUMENT'"),
        (V3.read_bytes()[:200], "not an F&O bhavcopy"),
    ],
)
def test_not_a_bhavcopy(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=rf"^b.csv: {message}"):
        parse_bhavcopy(data, name="b.csv")


def test_bhavcopy_with_only_bad_rows_is_an_error() -> None:
    lines = BHAV_UDIFF.read_text().splitlines()
    text = "\n".join([lines[0], lines[1].replace("24250.00", "abc")])
    with pytest.raises(ParseError, match=r"b.csv: no valid rows \(skipped: \{'bad number': 1\}"):
        parse_bhavcopy(text, name="b.csv")
