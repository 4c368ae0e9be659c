"""The fast path of NSE's option-chain JSON (legacy ``option-chain-indices`` and v3): the bytes
straight into columns, then array arithmetic.

Reading. A numba scanner (:mod:`mandi.feeds._nse_scan`) reads the document in one pass into
the columns below, exactly the numbers and strings msgspec reads; a document it is not sure
of (an escape, a number msgspec might refuse, a key twice, anything malformed) it declines,
and the reference parser reads it. A test holds the columns equal to msgspec's own decoding of
the document, and the results equal to the reference's. The snapshots' rows are a
:class:`~mandi.model.market.ChainRows`: they carry the chain matrix's array of them, so the
matrix need not rebuild it from the quotes.

:func:`mandi.feeds.nse.parse_option_chains` tries this first for every NSE JSON document
(``mandi chain import`` and the live poller, :mod:`mandi.feeds.nse_live`, both go through it).
It gives exactly what the reference parser gives, or declines (returns None) and the reference
parser runs — so a document with anything unusual is handled, skipped rows and error messages
included, by the one parser that knows every rule. It declines when

* the scanner declines it (a string where a number belongs, a null, a row that is not an
  object, no ``data``, no ``timestamp``, anything it is not sure msgspec reads the same ...);
* any value would make the reference parser skip a row: a negative or non-whole quantity, a
  negative price or IV, a bad strike or date, a side whose strike differs from its row's, a
  duplicate contract, an expired expiry, no rows left;
* a number is too large to be exact in a double (≥ 2**53).

Exactness. Prices are converted with the reference's rule (the shortest decimal of the double,
rounded half-even to the paisa): a price with at most two decimals — every price NSE prints —
is ``rint(x·100)``, checked by ``p/100 == x``; any other goes through
:func:`~mandi.core.money.to_paise` one by one. IVs likewise (``q/10000`` for two decimals, the
reference's Decimal division otherwise). Lots × lot size round half-even as Python's ``round``
does. A differential test holds the two parsers equal on every real file and on generated
chains (tests/unit/feeds/test_nse_fast.py).
"""

from __future__ import annotations

import math
from decimal import Decimal
from itertools import repeat
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from mandi.core.calendar import ist_date
from mandi.core.money import to_paise
from mandi.model.market import ChainRow, ChainRows, ChainSnapshot, OptionQuote

if TYPE_CHECKING:
    from mandi.feeds.nse import ChainImport

NAN = math.nan
EXACT = 2.0**53


# the numeric columns of a side, in this order (price-like first)
_FIELDS = (
    "lastPrice", "bidprice", "buyPrice1", "askPrice", "sellPrice1",
    "bidQty", "buyQuantity1", "askQty", "sellQuantity1",
    "totalTradedVolume", "openInterest", "changeinOpenInterest", "impliedVolatility",
    "totalBuyQuantity", "totalSellQuantity", "strikePrice",
)  # fmt: skip
_NF = len(_FIELDS)
(LTP, BIDP_L, BIDP_3, ASKP_L, ASKP_3, BIDQ_L, BIDQ_3, ASKQ_L, ASKQ_3, VOL, OI, CHG, IV, TBQ, TSQ,
 SSTRIKE) = range(len(_FIELDS))  # fmt: skip


# The identifiers of the last few chains read, as their NUL-joined bytes and as strings. NSE
# lists the same contracts poll after poll, so an answer's identifiers are usually the bytes of
# one of these again: then their 3,000 strings are not made again (nor the last ones freed).
_RECENT_STRINGS: list[tuple[bytes, tuple[str, ...]]] = []
_RECENT_MAX = 6


def _strings(joined: bytes) -> tuple[str, ...]:
    """The NUL-separated ASCII strings of ``joined``: the same tuple as for the same bytes
    lately, else new (and remembered)."""
    for known, strings in _RECENT_STRINGS:
        if known == joined:
            return strings
    strings = tuple(joined.decode("ascii").split("\0"))
    _RECENT_STRINGS.insert(0, (joined, strings))
    del _RECENT_STRINGS[_RECENT_MAX:]
    return strings


class _Columns(NamedTuple):
    """A document read into columns by the byte scanner."""

    fmt: str
    ts_raw: str
    uv: float
    row_strike: np.ndarray  # per row
    cols: np.ndarray  # per side (rows in order, CE before PE): _FIELDS, NaN = absent
    side_row: np.ndarray
    is_call: np.ndarray
    exp_code: np.ndarray  # per side: its expiry's text (the side's, else its row's) as a code
    exp_texts: list[str]  # the texts of the codes (−1: the side has none)
    symbols: tuple[str, ...]
    file_underlying: str | None  # the first side's, in document order, that names one


def _scanned(data: bytes | str) -> _Columns | None:
    """The byte scanner (:mod:`mandi.feeds._nse_scan`); None when it declines."""
    from mandi.feeds import _nse_scan as sc

    if isinstance(data, str):
        try:
            data = data.encode()
        except UnicodeEncodeError:
            return None
    b = np.frombuffer(data, dtype=np.uint8)
    meta = np.zeros(8, dtype=np.int64)
    uv = np.zeros(1)
    # rows (one takes ≥ 3 bytes) and fix-ups (a known key and its number take ≥ 10 bytes)
    for cap, fixes in (
        (b.size // 512 + 64, b.size // 1024 + 64),
        (b.size // 2 + 2, b.size // 8 + 2),
    ):
        row_strike = np.empty(cap)
        side_row = np.empty(2 * cap, dtype=np.int64)
        is_call = np.empty(2 * cap, dtype=np.bool_)
        cols = np.empty((2 * cap, _NF))
        spans = np.empty((2 * cap, 6), dtype=np.int64)
        fix = np.empty((fixes, 4), dtype=np.int64)
        status = sc.scan(b, row_strike, side_row, is_call, cols, spans, fix, meta, uv)
        if status != sc.GROW:
            break
    if status != sc.OK:
        return None
    n_rows, n = int(meta[sc.M_ROWS]), int(meta[sc.M_SIDES])
    spans = spans[:n]
    for i, k, a, z in fix[: meta[sc.M_FIX]].tolist():  # numbers beyond the fast rule
        cols[i, k] = float(data[a:z])

    def strings(col: int) -> tuple[str, ...]:
        size = int(np.clip(spans[:, col + 1] - spans[:, col], 0, None).sum()) + n
        out = np.empty(size, dtype=np.uint8)
        used = sc.gather(b, spans, col, out)  # out is its exact size: never short
        return _strings(out[:used].tobytes()) if n else ()

    exp_code = np.empty(n, dtype=np.int64)
    firsts = np.empty(64, dtype=np.int64)
    n_codes = sc.expiry_codes(b, spans, exp_code, firsts)
    if n_codes < 0:
        return None  # more than 64 expiries in one answer
    exp_texts = [
        data[spans[i, sc.S_EXP] : spans[i, sc.S_EXP + 1]].decode("ascii")
        for i in firsts[:n_codes].tolist()
    ]
    file_underlying = None
    for i in np.flatnonzero(spans[:, sc.S_UND] >= 0).tolist():  # usually the first
        if u := data[spans[i, sc.S_UND] : spans[i, sc.S_UND + 1]].decode("ascii").strip():
            file_underlying = u.upper()
            break
    return _Columns(
        "nse-json" if meta[sc.M_FMT] == sc.FMT_LEGACY else "nse-json-v3",
        data[meta[sc.M_TS0] : meta[sc.M_TS1]].decode("ascii"),
        float(uv[0]),
        row_strike[:n_rows],
        cols[:n],
        side_row[:n],
        is_call[:n],
        exp_code,
        exp_texts,
        strings(sc.S_IDENT),
        file_underlying,
    )


def parse(data: bytes | str, name: str, opts: Any) -> ChainImport | None:
    """The fast path of an NSE JSON chain (see the module docstring); None = use the
    reference parser."""
    from mandi.feeds import _nse_scan as sc
    from mandi.feeds import nse as ref  # the reference's rules: dates, lots, underlying, result

    got = _scanned(data)
    if got is None:
        return None
    fmt, ts_raw, uv, row_strike, cols, side_row, is_call, exp_code, exp_texts, symbols, und = got
    n = len(cols)
    if not (math.isfinite(uv) and uv > 0) or not n:
        return None
    if not (row_strike > 0).all():  # NaN (absent) or not positive: the reference skips the row
        return None
    try:
        ts_event = ref._date_time_ist(ts_raw, "timestamp")
    except ref._Bad:
        return None
    ints = np.empty((n, 8), dtype=np.int64)
    iv = np.empty(n)
    lots = np.empty((n, 3))
    odd = np.empty((5 * n, 2), dtype=np.int64)
    odd_x = np.empty(5 * n)
    n_odd = sc.convert(row_strike, cols, side_row, ints, iv, lots, odd, odd_x)
    if n_odd < 0:
        return None
    for (i, j), x in zip(odd[:n_odd].tolist(), odd_x[:n_odd].tolist(), strict=True):
        if j == sc.ODD_IV:  # more than two decimals: the reference's exact rules
            iv[i] = float(Decimal(repr(x)) / 100)
        else:
            ints[i, j] = to_paise(x)
    # --- expiries, duplicates, the underlying -----------------------------------------------------
    if (exp_code < 0).any():
        return None  # a side without an expiry: the reference skips it
    try:
        dates = [ref._date(t, "expiryDate") for t in exp_texts]
    except ref._Bad:
        return None
    days = sorted(set(dates))  # two texts may name one day: one group, as the reference
    group = np.array([days.index(d) for d in dates], dtype=np.int64)[exp_code]
    strike_p = ints[:, sc.I_STRIKE]
    if sc.has_duplicate(group, is_call, strike_p):
        return None  # a duplicate contract: the reference skips it
    underlying = ref._check_underlying(name, und, opts.underlying)
    as_of = ist_date(ts_event)
    if days[0] < as_of:
        return None  # expired contracts: the reference lists them as skipped
    # --- one snapshot per expiry ------------------------------------------------------------------
    iv_list = iv.tolist()
    for i in np.flatnonzero(np.isnan(iv)).tolist():
        iv_list[i] = NAN  # math.nan itself, as the reference
    try:
        price = to_paise(uv)
    except ValueError:
        return None  # too large: the reference says so
    snaps = []
    for g, d in enumerate(days):
        if opts.expiry is not None and d != opts.expiry:
            continue
        gcd, count = sc.lot_gcd(group, g, ints)
        lot = ref._lot_from_gcd(name, underlying, d, as_of, int(gcd), int(count), opts.lot_size)
        order, nums, strikes, call_at, put_at, columns = sc.chain_rows(
            group, g, strike_p, is_call, ints, lots, lot
        )
        c = nums.tolist()  # ltp, bid, ask, volume, oi, oi_change, bid_qty, ask_qty
        if order.size == n and sc.is_identity(order):  # NSE's order: strikes up, CE first
            sym, ivs = symbols, iv_list
        else:
            o = order.tolist()
            sym, ivs = tuple(map(symbols.__getitem__, o)), list(map(iv_list.__getitem__, o))
        quotes: list[OptionQuote | None] = list(
            map(
                OptionQuote, c[0], c[1], c[2], c[3], c[4], c[5], repeat(0, order.size), sym,
                ivs, c[6], c[7],
            )
        )  # fmt: skip
        k = strikes.size
        if sc.pairs_in_order(call_at, put_at):  # every strike CE then PE: NSE's usual chain
            calls, puts = quotes[0 : 2 * k : 2], quotes[1 : 2 * k : 2]
        else:
            quotes.append(None)  # index −1: no such side
            side = quotes.__getitem__
            calls, puts = list(map(side, call_at.tolist())), list(map(side, put_at.tolist()))
        rows = ChainRows(map(ChainRow, strikes.tolist(), calls, puts))
        rows.columns = columns
        snaps.append(
            ChainSnapshot(
                underlying=underlying,
                exchange="NSE",
                expiry=d,
                ts_event=ts_event,
                underlying_price=price,
                rows=rows,
                lot_size=lot,
                source=fmt,
            )
        )
    if not snaps:
        return None
    return ref.ChainImport(name=name, format=fmt, snapshots=tuple(snaps), skipped=())
