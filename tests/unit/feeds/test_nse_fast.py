"""The fast path of NSE's chain JSON (:mod:`mandi.feeds.nse_fast`) against the reference
parser: byte-identical results (as JSON: int and float told apart, NaN as null) on every real
file in tests/data/option_chain and on generated chains — clean ones (the fast path must take
them) and ones with everything the reference skips or refuses (the fast path must step aside,
so the answer is still the reference's)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.core.errors import ParseError
from mandi.feeds import nse_fast
from mandi.feeds.nse import _Opts, parse_option_chains

DATA = Path(__file__).resolve().parents[2] / "data" / "option_chain"
FILES = sorted(p.name for p in DATA.iterdir())
NO_OPTS = _Opts(None, None, None, None, None)


def outcome(data: bytes | str, fast: bool, **kw: Any) -> bytes | str:
    try:
        return msgspec.json.encode(parse_option_chains(data, name="x.json", fast=fast, **kw))
    except ParseError as e:
        return f"ParseError: {e}"


@pytest.mark.parametrize("fname", FILES)
def test_every_real_file_parses_the_same(fname: str) -> None:
    data = (DATA / fname).read_bytes()
    assert outcome(data, True) == outcome(data, False)
    if fname.startswith("nse_oc_") and ".json" in fname:  # NSE JSON: the fast path took it
        import gzip

        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        assert nse_fast.parse(raw, fname, NO_OPTS) is not None


def test_options_are_honoured_the_same_way() -> None:
    data = (DATA / "nse_oc_indices_NIFTY_2025-07-16_1530.json.gz").read_bytes()
    for kw in ({"expiry": "24-Jul-2025"}, {"lot_size": 50}, {"underlying": "NIFTY"},
               {"underlying": "BANKNIFTY"}, {"expiry": "01-Jan-2031"}):  # fmt: skip
        assert outcome(data, True, **kw) == outcome(data, False, **kw), kw


# --- generated chains -----------------------------------------------------------------------------
V3 = json.loads((DATA / "nse_oc_v3_NIFTY_2026-07-10_1530_exp2026-07-14.json").read_bytes())

prices = st.one_of(
    st.integers(0, 50_000).map(lambda p: p / 100),  # what NSE prints: two decimals
    st.floats(0, 5000, allow_nan=False).map(lambda x: round(x, 3)),  # more decimals
    st.integers(0, 5000),
)
lots = st.one_of(st.integers(0, 10**6), st.integers(0, 10**6).map(lambda x: x / 3))
ivs = st.one_of(st.just(0), st.integers(0, 20_000).map(lambda x: x / 100),
                st.floats(0, 200, allow_nan=False))  # fmt: skip


@st.composite
def side(draw: st.DrawFn, strike: float, expiry: str, legacy: bool) -> dict[str, Any]:
    lot = 65
    d: dict[str, Any] = {
        "strikePrice": strike,
        "expiryDate": expiry,
        "underlying": "NIFTY",
        "identifier": f"OPTIDXNIFTY{expiry}X{strike}",
        "openInterest": draw(lots),
        "changeinOpenInterest": draw(st.one_of(lots, lots.map(lambda x: -x))),
        "totalTradedVolume": draw(lots),
        "impliedVolatility": draw(ivs),
        "lastPrice": draw(prices),
        "totalBuyQuantity": lot * draw(st.integers(0, 10**4)),
        "totalSellQuantity": lot * draw(st.integers(0, 10**4)),
    }
    names = (("bidprice", "askPrice", "bidQty", "askQty") if legacy
             else ("buyPrice1", "sellPrice1", "buyQuantity1", "sellQuantity1"))  # fmt: skip
    d[names[0]], d[names[1]] = draw(prices), draw(prices)
    d[names[2]], d[names[3]] = lot * draw(st.integers(0, 500)), lot * draw(st.integers(0, 500))
    for k in draw(st.lists(st.sampled_from(sorted(d)), max_size=2, unique=True)):  # left out
        d.pop(k)
    return d


@st.composite
def chain(draw: st.DrawFn) -> dict[str, Any]:
    legacy = draw(st.booleans())
    expiries = ["14-Jul-2026", "21-Jul-2026"] if legacy else ["14-07-2026"]
    rows = []
    n = draw(st.integers(1, 6))
    for i in range(n):
        for e in expiries[: draw(st.integers(1, len(expiries)))]:
            k = 24000 + 50 * i
            row: dict[str, Any] = {"strikePrice": k, ("expiryDate" if legacy else "expiryDates"): e}
            for kind in ("CE", "PE"):
                if draw(st.integers(0, 5)):
                    row[kind] = draw(side(k, e, legacy))
            rows.append(row)
    meta = {"timestamp": "10-Jul-2026 15:30:00", "underlyingValue": 24206.9}
    return {"records": {**meta, "data": rows}, "filtered": {}} if legacy else {**meta, "data": rows}


MUTATIONS = (
    ("lastPrice", -5), ("openInterest", -1), ("totalBuyQuantity", 1.5), ("lastPrice", "12.5"),
    ("lastPrice", None), ("impliedVolatility", -2), ("expiryDate", "31-Feb-2026"),
    ("expiryDate", "01-Jul-2026"), ("strikePrice", 1), ("identifier", 5),
    ("buyQuantity1", "-"), ("lastPrice", 2.0**60),
)  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(chain(), st.integers(0, len(MUTATIONS)), st.randoms(use_true_random=False))
def test_generated_chains_parse_the_same(doc: dict[str, Any], mutation: int,
                                         rnd: random.Random) -> None:  # fmt: skip
    clean = json.dumps(doc)
    ref = outcome(clean, False)
    assert outcome(clean, True) == ref
    if isinstance(ref, bytes):  # a chain the reference reads is the fast path's to parse
        assert nse_fast.parse(clean, "x.json", NO_OPTS) is not None
    if mutation == len(MUTATIONS):
        return
    bad = copy.deepcopy(doc)
    rows = bad["records"]["data"] if "records" in bad else bad["data"]
    sides = [r[k] for r in rows for k in ("CE", "PE") if k in r]
    if not sides:
        return
    key, value = MUTATIONS[mutation]
    rnd.choice(sides)[key] = value
    text = json.dumps(bad)
    assert outcome(text, True) == outcome(text, False)


def test_clean_chains_take_the_fast_path() -> None:
    doc = copy.deepcopy(V3)
    assert nse_fast.parse(json.dumps(doc), "x.json", NO_OPTS) is not None
    doc["data"][3]["CE"]["lastPrice"] = -1  # the reference skips it: the fast path steps aside
    assert nse_fast.parse(json.dumps(doc), "x.json", NO_OPTS) is None
    doc = copy.deepcopy(V3)
    doc["data"].append(copy.deepcopy(doc["data"][3]))  # a duplicate contract
    assert nse_fast.parse(json.dumps(doc), "x.json", NO_OPTS) is None
    assert outcome(json.dumps(doc), True) == outcome(json.dumps(doc), False)
