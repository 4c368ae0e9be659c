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
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.core.errors import ParseError
from mandi.feeds import nse_fast
from mandi.feeds.nse import _Opts, parse_option_chains
from mandi.model.market import ChainRows, ChainSnapshot
from mandi.options.chain.matrix import _rows_to_array

DATA = Path(__file__).resolve().parents[2] / "data" / "option_chain"
FILES = sorted(p.name for p in DATA.iterdir())
NO_OPTS = _Opts(None, None, None, None, None)


def outcome(data: bytes | str, fast: bool, **kw: Any) -> bytes | str:
    try:
        imp = parse_option_chains(data, name="x.json", fast=fast, **kw)
    except ParseError as e:
        return f"ParseError: {e}"
    for snap in imp.snapshots:
        check_columns(snap)
    return msgspec.json.encode(imp)


def scanner_agrees(data: bytes | str) -> bool:
    """Whether the byte scanner took the document; when it did, it read exactly what the
    typed msgspec decoding reads (which must then have read it too)."""
    scanned = nse_fast._scanned(data)
    if scanned is None:
        return False
    decoded = nse_fast._decoded(data)
    assert decoded is not None, "the scanner read a document msgspec refuses"
    for field, a, b in zip(scanned._fields, scanned, decoded, strict=True):
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, field
            np.testing.assert_array_equal(a, b, err_msg=field)
        else:
            assert a == b, field
    return True


def check_columns(snap: ChainSnapshot) -> None:
    """The columns the fast path hands the chain matrix (ChainRows) are its rows, exactly."""
    if not isinstance(snap.rows, ChainRows):
        return
    assert isinstance(snap.rows.columns, np.ndarray)
    from_rows = _rows_to_array(msgspec.structs.replace(snap, rows=tuple(snap.rows)))
    np.testing.assert_array_equal(_rows_to_array(snap), from_rows)  # NaN == NaN here
    assert _rows_to_array(snap) is not snap.rows.columns  # the matrix scales its own copy


@pytest.mark.parametrize("fname", FILES)
def test_every_real_file_parses_the_same(fname: str) -> None:
    data = (DATA / fname).read_bytes()
    assert outcome(data, True) == outcome(data, False)
    if fname.startswith("nse_oc_") and ".json" in fname:  # NSE JSON: the fast path took it
        import gzip

        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        assert nse_fast.parse(raw, fname, NO_OPTS) is not None
        # v3 (what the live poller reads) takes the byte scanner; the legacy files' fractional
        # lots (4.333333333333333) are beyond its exact rule, so they take the typed decoding
        assert scanner_agrees(raw) == ("_v3_" in fname)


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
    scanner_agrees(clean)
    tidy = json.dumps(json.loads(clean, parse_float=lambda x: round(float(x), 2)))
    if scanner_agrees(tidy):  # numbers as NSE prints them: the byte scanner's to read
        assert outcome(tidy, True) == outcome(tidy, False)
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
    scanner_agrees(text)
    assert outcome(text, True) == outcome(text, False)


def test_clean_chains_take_the_fast_path() -> None:
    doc = copy.deepcopy(V3)
    imp = nse_fast.parse(json.dumps(doc), "x.json", NO_OPTS)
    assert imp is not None and isinstance(imp.snapshots[0].rows, ChainRows)
    doc["data"][3]["CE"]["lastPrice"] = -1  # the reference skips it: the fast path steps aside
    assert nse_fast.parse(json.dumps(doc), "x.json", NO_OPTS) is None
    doc = copy.deepcopy(V3)
    doc["data"].append(copy.deepcopy(doc["data"][3]))  # a duplicate contract
    assert nse_fast.parse(json.dumps(doc), "x.json", NO_OPTS) is None
    assert outcome(json.dumps(doc), True) == outcome(json.dumps(doc), False)


def test_the_live_poller_decodes_an_answer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The poller's answers go through the same parser, and a good one is not read again by
    the stdlib (that second decode cost more than the whole fast path)."""
    from mandi.feeds.nse_live import FormatChanged, parse_answer

    body = (DATA / "nse_oc_v3_NIFTY_2026-07-10_1530_exp2026-07-14.json").read_bytes()
    with monkeypatch.context() as m:
        m.setattr(json, "loads", lambda *a, **k: pytest.fail("decoded twice"))
        snaps = parse_answer("x.json", body, "NIFTY")
    assert snaps == list(parse_option_chains(body, name="x.json", fast=False).snapshots)
    assert isinstance(snaps[0].rows, ChainRows)
    empty = b'{"data": [], "timestamp": "10-Jul-2026 15:30:00", "underlyingValue": 24206.9}'
    assert parse_answer("x.json", empty, "NIFTY") == []
    with pytest.raises(FormatChanged, match="NIFTY: the answer is not JSON"):
        parse_answer("x.json", b"<html>blocked</html>", "NIFTY")
    with pytest.raises(FormatChanged, match=r"NIFTY: x\.json: JSON is not an NSE or BSE"):
        parse_answer("x.json", b'{"error": "busy"}', "NIFTY")


V3_TEXT = (DATA / "nse_oc_v3_NIFTY_2026-07-10_1530_exp2026-07-14.json").read_text()
ROW = V3_TEXT.index('"CE":{') + 6  # inside the first call
HOSTILE = (
    ("an escape in a string", V3_TEXT.replace('"NIFTY"', '"NIF\\u0054Y"', 1)),
    ("non-ASCII text", V3_TEXT.replace('"NIFTY"', '"NIFTŸ"', 1)),
    ("a key twice", V3_TEXT[:ROW] + '"lastPrice": 1.5, ' + V3_TEXT[ROW:]),
    ("a long mantissa", V3_TEXT[:ROW] + '"lastPrice": 1.0000000000000001, ' + V3_TEXT[ROW:]),
    ("an exponent", V3_TEXT[:ROW] + '"totalTradedVolume": 1.5e2, ' + V3_TEXT[ROW:]),
    ("a huge exponent", V3_TEXT[:ROW] + '"totalTradedVolume": 1e400, ' + V3_TEXT[ROW:]),
    ("minus zero", V3_TEXT[:ROW] + '"totalTradedVolume": -0, ' + V3_TEXT[ROW:]),
    ("null for a number", V3_TEXT[:ROW] + '"bidQty": null, ' + V3_TEXT[ROW:]),
    ("text for a number", V3_TEXT[:ROW] + '"bidQty": "5", ' + V3_TEXT[ROW:]),
    ("a number for text", V3_TEXT[:ROW] + '"identifier": 5, ' + V3_TEXT[ROW:]),
    ("a bad skipped value", V3_TEXT[:ROW] + '"x": [1, 2,], ' + V3_TEXT[ROW:]),
    ("a bad skipped number", V3_TEXT[:ROW] + '"x": 01, ' + V3_TEXT[ROW:]),
    ("a deep skipped value", V3_TEXT[:ROW] + '"x": ' + "[" * 70 + "]" * 70 + ", " + V3_TEXT[ROW:]),
    ("a row that is not an object", V3_TEXT.replace('"data":[', '"data":[5, ', 1)),
    ("trailing text", V3_TEXT + " x"),
    ("filtered without records", V3_TEXT[:-1] + ', "filtered": {}}'),
    ("a leading byte-order mark", "\ufeff" + V3_TEXT),
)  # fmt: skip


@pytest.mark.parametrize("what, text", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_the_byte_scanner_declines_what_it_cannot_read_exactly(what: str, text: str) -> None:
    """Each of these goes past the scanner (to the typed decoding or the reference), and the
    answer is still the reference's."""
    assert nse_fast._scanned(text) is None, what
    assert outcome(text, True) == outcome(text, False)


def test_the_byte_scanner_reads_what_it_can() -> None:
    """Skipped values of every kind, whitespace, nulls and exponents it can read exactly."""
    text = (V3_TEXT[:ROW] + '"x": {"a": [true, false, null, -1.5E+3, "s", {}, []]}, '
            '"y": null, "askQty": 65e1, ' + V3_TEXT[ROW:])  # fmt: skip
    assert scanner_agrees(text.replace(", ", " ,\r\n\t"))
    assert outcome(text, True) == outcome(text, False)


def test_a_truncated_document_is_never_read() -> None:
    raw = V3_TEXT.encode()
    for cut in range(1, len(raw), len(raw) // 40):
        assert nse_fast._scanned(raw[:cut]) is None, cut
        assert outcome(raw[:cut], True) == outcome(raw[:cut], False)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(V3_TEXT) - 1), st.sampled_from(
    b'0123456789.-+eE"{}[],: \\ntfu'.decode())), min_size=1, max_size=3))  # fmt: skip
def test_damaged_bytes_parse_the_same(edits: list[tuple[int, str]]) -> None:
    text = list(V3_TEXT)
    for at, ch in edits:
        text[at] = ch
    damaged = "".join(text)
    scanner_agrees(damaged)
    assert outcome(damaged, True) == outcome(damaged, False)
