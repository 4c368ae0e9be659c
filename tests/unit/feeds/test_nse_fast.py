"""The fast path of NSE's chain JSON (:mod:`mandi.feeds.nse_fast`) against the reference
parser: byte-identical results (as JSON: int and float told apart, NaN as null) on every real
file in tests/data/option_chain and on generated chains — clean ones (the fast path must take
them) and ones with everything the reference skips or refuses (the fast path must step aside,
so the answer is still the reference's)."""

from __future__ import annotations

import copy
import json
import math
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
    """Whether the byte scanner took the document; when it did, msgspec (the reference's first
    step) must read it too, and the scanner's columns must be msgspec's values exactly."""
    got = nse_fast._scanned(data)
    if got is None:
        return False
    doc = msgspec.json.decode(data)  # raises: the scanner read a document msgspec refuses
    block = doc["records"] if got.fmt == "nse-json" else doc
    assert got.fmt == ("nse-json" if "records" in doc else "nse-json-v3")
    assert got.ts_raw == block["timestamp"]
    np.testing.assert_array_equal(got.uv, float(block.get("underlyingValue", math.nan)))
    rows = block["data"]
    strikes = [float(r.get("strikePrice", math.nan)) for r in rows]
    np.testing.assert_array_equal(got.row_strike, np.array(strikes, dtype=np.float64))
    sides = [(i, k == "CE", r[k]) for i, r in enumerate(rows) for k in ("CE", "PE")
             if r.get(k) is not None]  # fmt: skip
    assert got.side_row.tolist() == [i for i, _, _ in sides]
    assert got.is_call.tolist() == [c for _, c, _ in sides]
    want = [[float(x[f]) if x.get(f) is not None else math.nan for f in nse_fast._FIELDS]
            for _, _, x in sides]  # fmt: skip
    np.testing.assert_array_equal(got.cols, np.array(want, dtype=np.float64).reshape(-1, 16))
    exp_text = [got.exp_texts[c] if c >= 0 else None for c in got.exp_code.tolist()]
    assert len(set(got.exp_texts)) == len(got.exp_texts)  # one code per text
    for (i, _, x), e in zip(sides, exp_text, strict=True):
        r = rows[i]
        row_exp = r.get("expiryDate") if r.get("expiryDate") is not None else r.get("expiryDates")
        assert e == (x.get("expiryDate") if x.get("expiryDate") is not None else row_exp)
    assert list(got.symbols) == [x.get("identifier") or "" for _, _, x in sides]
    names = [x["underlying"].strip().upper() for _, _, x in sides
             if isinstance(x.get("underlying"), str) and x["underlying"].strip()]  # fmt: skip
    assert got.file_underlying == (names[0] if names else None)
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
        # the byte scanner reads them all (the legacy files' fractional lots,
        # 4.333333333333333, beyond its exact rule, by float() of their text)
        assert scanner_agrees(raw)


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


def test_rows_out_of_strike_order_are_sorted_the_same_way() -> None:
    doc = copy.deepcopy(V3)
    doc["data"] = doc["data"][::-1]  # strikes descending, and PE before CE in each row
    for row in doc["data"]:
        row.update({k: row.pop(k) for k in ("PE", "CE") if k in row})
    text = json.dumps(doc)
    assert scanner_agrees(text)
    imp = nse_fast.parse(text, "x.json", NO_OPTS)
    assert imp is not None
    assert outcome(text, True) == outcome(text, False) == outcome(json.dumps(V3), False)


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


def _oi(value: str) -> str:
    """The v3 file with its first open interest written as ``value``."""
    return V3_TEXT.replace('"openInterest":4,', f'"openInterest":{value},', 1)


HOSTILE = (
    ("an escape in a string", V3_TEXT.replace('"NIFTY"', '"NIF\\u0054Y"', 1)),
    ("non-ASCII text", V3_TEXT.replace('"NIFTY"', '"NIFTŸ"', 1)),
    ("a key twice", V3_TEXT[:ROW] + '"lastPrice": 1.5, ' + V3_TEXT[ROW:]),
    ("a key twice, long", V3_TEXT[:ROW] + '"lastPrice": 1.0000000000000001, ' + V3_TEXT[ROW:]),
    ("a 16-digit integer read", _oi("1000000000000004")),
    ("an out-of-range skipped number", V3_TEXT[:ROW] + '"x": 1e400, ' + V3_TEXT[ROW:]),
    ("an out-of-range damaged number", V3_TEXT.replace(
        '"pChange":3.9', '"pChange":3e666666666666669', 1)),
    ("a huge skipped number", V3_TEXT[:ROW] + '"x": ' + "9" * 309 + ".5, " + V3_TEXT[ROW:]),
    ("a long skipped integer", V3_TEXT[:ROW] + '"x": ' + "9" * 301 + ", " + V3_TEXT[ROW:]),
    ("an out-of-range read number", _oi("4e308")),
    ("a four-digit exponent", V3_TEXT[:ROW] + '"x": 1e-1000, ' + V3_TEXT[ROW:]),
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


def test_numbers_beyond_the_fast_rule_are_read_by_float() -> None:
    """A read number of more than 15 digits or beyond 1e±22 (or −0) is msgspec's correctly rounded
    double (float() of its text): the scanner reads it, and the results are the reference's."""
    for old, new in (('"pchangeinOpenInterest":0,', '"pchangeinOpenInterest":1e-400,'),
                     ('"openInterest":4,', '"openInterest":-0,'),
                     ('"openInterest":4,', '"openInterest":-0.0,'),
                     ('"changeinOpenInterest":0,', '"changeinOpenInterest":-0e7,'),
                     ('"lastPrice":2820,', '"lastPrice":2820.0000000000000001,'),
                     ('"lastPrice":2820,', '"lastPrice":2.8200000000000003e3,'),
                     ('"openInterest":4,', '"openInterest":4.333333333333333,'),
                     ('"openInterest":4,', '"openInterest":40000000000000000000000e-22,'),
                     ('"openInterest":4,', '"openInterest":1e299,')):  # fmt: skip
        text = V3_TEXT.replace(old, new, 1)
        assert text != V3_TEXT
        assert scanner_agrees(text), new
        assert outcome(text, True) == outcome(text, False), new


def test_huge_numbers_are_bad_values_not_crashes() -> None:
    """Prices past what the paise conversion holds (≥ 1e26 rupees) are a skipped row or a
    ParseError naming the value in both parsers (the reference crashed on them with
    decimal.InvalidOperation; a damaged-bytes fuzz found it)."""
    head, _, tail = V3_TEXT.rpartition('"underlyingValue":24206.9')
    for text, want in (
        (V3_TEXT.replace('"lastPrice":2820,', '"lastPrice":2e30,', 1),
         '"field":"lastPrice","value":"2e+30","reason":"bad number"'),
        (V3_TEXT.replace(":21400", ":2.5e51"),
         '"field":"strikePrice","value":"2.5e+51","reason":"bad number"'),
        (head + '"underlyingValue":1e40' + tail, "is too large a price"),
    ):  # fmt: skip
        assert text != V3_TEXT
        ref = outcome(text, False)
        assert outcome(text, True) == ref
        assert want in (ref if isinstance(ref, str) else ref.decode())


number_texts = st.builds(
    lambda sign, whole, frac, exp: sign + whole + frac + exp,
    st.sampled_from(["", "-"]),
    st.one_of(st.just("0"), st.from_regex(r"[1-9][0-9]{0,20}", fullmatch=True),
              st.from_regex(r"[1-9][0-9]{290,310}", fullmatch=True)),
    st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,25}", fullmatch=True),
              st.from_regex(r"\.0{280,320}[1-9]", fullmatch=True)),
    st.one_of(st.just(""), st.from_regex(r"[eE][+-]?[0-9]{1,5}", fullmatch=True)),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(number_texts)
def test_the_scanners_numbers_are_msgspecs(text: str) -> None:
    """What the scanner says of a number holds for msgspec: one it does not call UNSURE
    msgspec reads (the skipping rule says the same), and one it computes is msgspec's double,
    bit for bit."""
    from mandi.feeds import _nse_scan as sc

    raw = np.frombuffer(text.encode() + b",", np.uint8)
    end, value, kind = sc._number(raw, 0)
    assert end == len(text)
    assert sc._number_end(raw, 0) == (-1 if kind == sc.UNSURE else end)  # the skipping rule
    try:
        ref = msgspec.json.decode(text)
    except msgspec.DecodeError:
        assert kind == sc.UNSURE, text
        return
    if kind == sc.EXACT:
        assert value == ref and math.copysign(1, value) == math.copysign(1, ref), text
    elif kind == sc.INEXACT:
        assert isinstance(ref, float) and float(text) == ref, text
    elif kind == sc.SKIP_ONLY:
        assert isinstance(ref, int) and abs(ref) >= 10**15, text


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


def _string_by_bytes(raw: bytes) -> int:
    """The string rule byte by byte: the closing quote's index, or −1 at an escape, a control
    or non-ASCII byte, or no end."""
    for i in range(1, len(raw)):
        c = raw[i]
        if c == 0x22:
            return i
        if c == 0x5C or c < 0x20 or c >= 0x80:
            return -1
    return -1


def test_strings_and_keys_read_a_word_at_a_time_as_byte_by_byte() -> None:
    """The scanner reads strings and keys eight bytes at a time (SWAR): a stop byte (quote,
    backslash, control, non-ASCII) at every offset of the first three words, before and after
    other stop bytes, and the document's end at every distance, give what the byte rule gives;
    every name, whole or with one byte changed, is known exactly when the byte reader knows it."""
    from mandi.feeds import _nse_scan as sc

    stops = [b'"', b"\\", b"\x00", b"\x1f", b"\t", b"\n", b"\x80", b"\xff", b"\x7f", b"a"]
    for size in range(0, 27):
        for at in range(size + 1):
            for stop in stops:
                for after in (b'"', b"\\", b"\x01", b"zz"):
                    body = b"k" * at + stop + b"v" * (size - at) + after
                    for tail in (b"", b"]", b"," + b" " * 10, b"}" * 30):
                        raw = b'"' + body + tail
                        arr = np.frombuffer(raw, np.uint8)
                        want = _string_by_bytes(raw)
                        assert sc._string(arr, 0) == want, raw
                        assert sc._key_string(arr, 0) == sc._key_bytes(arr, 0), raw
    for name in sc._NAMES:
        for k in range(len(name) + 1):
            for key in (name, name[:k] + "#" + name[k + 1 :], name[:k]):
                for tail in ("", ": 1}", ": " + " " * 30 + "1}"):
                    raw = np.frombuffer(f'"{key}"{tail}'.encode(), np.uint8)
                    got = sc._key_string(raw, 0)
                    assert got == sc._key_bytes(raw, 0), key
                    assert got == (len(key) + 1, sc._NAMES.index(key) if key in sc._NAMES
                                   else -1), key  # fmt: skip


def test_duplicate_contracts_are_found_in_any_order() -> None:
    """The duplicate check (one pass when the sides come in NSE's order, else a sort) says
    what a set of (expiry, CE/PE, strike) says: random sides, in NSE's order and shuffled."""
    from mandi.feeds import _nse_scan as sc

    rng = np.random.default_rng(7)
    for _ in range(400):
        n = int(rng.integers(1, 12))
        group = rng.integers(0, 3, n)
        is_call = rng.integers(0, 2, n).astype(bool)
        strike = rng.integers(1, 5, n) * 2_500_000
        want = len(set(zip(group.tolist(), is_call.tolist(), strike.tolist(), strict=True))) < n
        nse_order = np.lexsort((~is_call, group, strike))  # strike, expiry, CE first
        for order in (np.arange(n), nse_order):
            assert sc.has_duplicate(group[order], is_call[order], strike[order]) == want


def test_identifiers_of_a_chain_read_again_are_not_made_again() -> None:
    """The same identifiers (NSE's next poll of a chain) give the same strings, reused; any
    changed byte gives new ones; a few chains are remembered, no more."""
    first = parse_option_chains(V3_TEXT, name="x.json").snapshots[0]
    again = parse_option_chains(V3_TEXT, name="x.json").snapshots[0]
    a = [q.symbol for r in first.rows for q in (r.call, r.put) if q is not None]
    b = [q.symbol for r in again.rows for q in (r.call, r.put) if q is not None]
    assert a == b and all(x is y for x, y in zip(a, b, strict=True))
    changed = V3_TEXT.replace("CE21400.00", "CE21400.01", 1)
    c = parse_option_chains(changed, name="x.json").snapshots[0]
    assert c.rows[0].call is not None and c.rows[0].call.symbol.endswith("CE21400.01")
    assert c.rows[0].call.symbol != a[0]
    for i in range(20):
        nse_fast._strings(f"A{i}\0B".encode())
    assert len(nse_fast._RECENT_STRINGS) == nse_fast._RECENT_MAX
    assert nse_fast._strings(b"A19\0B") == ("A19", "B")
