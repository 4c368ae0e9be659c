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


def _first(cols: np.ndarray, legacy: int, v3: int) -> np.ndarray:
    """The legacy column where the key is present, else the v3 one (the reference's order)."""
    return np.where(np.isnan(cols[:, legacy]), cols[:, v3], cols[:, legacy])


def _paise(x: np.ndarray) -> np.ndarray | None:
    """Rupees → paise as the reference does (absent → 0); None when a price is negative."""
    x = np.where(np.isnan(x), 0.0, x)
    if (x < 0).any() or (x >= EXACT / 100).any():
        return None
    p = np.rint(x * 100.0)
    odd = np.flatnonzero(p / 100.0 != x)  # more than two decimals: the exact rule, one by one
    out = p.astype(np.int64)
    for i in odd:
        out[i] = to_paise(float(x[i]))
    return out


def _whole(x: np.ndarray) -> np.ndarray | None:
    """Share counts (absent → 0); None when one is negative, fractional or too large."""
    x = np.where(np.isnan(x), 0.0, x)
    if (x < 0).any() or (x != np.floor(x)).any() or (x >= EXACT).any():
        return None
    return x.astype(np.int64)


def _iv(x: np.ndarray) -> np.ndarray | None:
    """Published IV % → decimal, NaN when absent or 0; None when one is negative."""
    if (x < 0).any():
        return None
    out = np.full(x.shape, NAN)
    ok = ~np.isnan(x) & (x != 0)
    q = np.rint(x * 100.0)
    two = ok & (q / 100.0 == x)
    out[two] = q[two] / 10000.0
    for i in np.flatnonzero(ok & ~two):
        out[i] = float(Decimal(repr(float(x[i]))) / 100)
    return out


class _Columns(NamedTuple):
    """A document read into columns by the byte scanner."""

    fmt: str
    ts_raw: str
    uv: float
    row_strike: np.ndarray  # per row
    cols: np.ndarray  # per side (rows in order, CE before PE): _FIELDS, NaN = absent
    side_row: np.ndarray
    is_call: np.ndarray
    exp_text: list[str | None]  # the side's expiry, else its row's
    symbols: list[str]
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

    def strings(col: int) -> list[str]:
        size = int(np.clip(spans[:, col + 1] - spans[:, col], 0, None).sum()) + n
        out = np.empty(size, dtype=np.uint8)
        used = sc.gather(b, spans, col, out)  # out is its exact size: never short
        return out[:used].tobytes().decode("ascii").split("\0") if n else []

    exp_text: list[str | None] = list(strings(sc.S_EXP))
    for i in np.flatnonzero(spans[:, sc.S_EXP] < 0).tolist():
        exp_text[i] = None
    file_underlying = None
    for a, z in spans[spans[:, sc.S_UND] >= 0, sc.S_UND : sc.S_UND + 2]:  # usually the first
        if u := data[a:z].decode("ascii").strip():
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
        exp_text,
        strings(sc.S_IDENT),
        file_underlying,
    )


def parse(data: bytes | str, name: str, opts: Any) -> ChainImport | None:
    """The fast path of an NSE JSON chain (see the module docstring); None = use the
    reference parser."""
    from mandi.feeds import nse as ref  # the reference's rules: dates, lots, underlying, result

    got = _scanned(data)
    if got is None:
        return None
    fmt, ts_raw, uv, row_strike, cols, side_row, is_call, exp_text, symbols, file_underlying = got
    if not (math.isfinite(uv) and uv > 0):
        return None
    try:
        ts_event = ref._date_time_ist(ts_raw, "timestamp")
    except ref._Bad:
        return None
    if not (row_strike > 0).all():  # NaN (absent) or not positive: the reference skips the row
        return None
    n = len(cols)
    if not n:
        return None
    strike = row_strike[side_row]
    ss = cols[:, SSTRIKE]
    if (~np.isnan(ss) & (ss != strike)).any():
        return None
    strike_p = _paise(strike)
    ltp = _paise(cols[:, LTP])
    bid = _paise(_first(cols, BIDP_L, BIDP_3))
    ask = _paise(_first(cols, ASKP_L, ASKP_3))
    bid_q = _whole(_first(cols, BIDQ_L, BIDQ_3))
    ask_q = _whole(_first(cols, ASKQ_L, ASKQ_3))
    tbq, tsq = _whole(cols[:, TBQ]), _whole(cols[:, TSQ])
    iv = _iv(cols[:, IV])
    lots = cols[:, VOL : CHG + 1].copy()
    np.nan_to_num(lots, copy=False, nan=0.0)
    if (
        strike_p is None or ltp is None or bid is None or ask is None or bid_q is None
        or ask_q is None or tbq is None or tsq is None or iv is None
        or (lots[:, :2] < 0).any() or (np.abs(lots) >= EXACT).any()
    ):  # fmt: skip
        return None
    # --- expiries, duplicates, the underlying -----------------------------------------------------
    texts = list(set(exp_text))
    try:
        dates = [ref._date(t, "expiryDate") for t in texts]
    except ref._Bad:
        return None
    if len(texts) == 1:
        ordinal = np.full(n, dates[0].toordinal(), dtype=np.int64)
    else:
        code = dict(zip(texts, range(len(texts)), strict=True))
        ordinal = np.array([d.toordinal() for d in dates], dtype=np.int64)[
            np.fromiter(map(code.__getitem__, exp_text), np.int64, n)
        ]
    key = (ordinal * 2 + is_call) * 10**13 + strike_p  # one per contract
    if np.unique(key).size != key.size:
        return None  # a duplicate contract: the reference skips it
    underlying = ref._check_underlying(name, file_underlying, opts.underlying)
    as_of = ist_date(ts_event)
    if min(dates) < as_of:
        return None  # expired contracts: the reference lists them as skipped
    # --- one snapshot per expiry ------------------------------------------------------------------
    iv_list = iv.tolist()
    for i in np.flatnonzero(np.isnan(iv)).tolist():
        iv_list[i] = NAN  # math.nan itself, as the reference
    price = to_paise(uv)
    snaps = []
    for d in sorted(set(dates)):
        if opts.expiry is not None and d != opts.expiry:
            continue
        idx = np.flatnonzero(ordinal == d.toordinal())
        q = np.concatenate((bid_q[idx], ask_q[idx], tbq[idx], tsq[idx]))
        nz = q[q != 0]
        g = int(np.gcd.reduce(nz)) if nz.size else 0
        lot = ref._lot_from_gcd(name, underlying, d, as_of, g, int(nz.size), opts.lot_size)
        o = idx[np.argsort(strike_p[idx], kind="stable")]  # strike order
        sh = np.rint(lots[o] * lot).astype(np.int64)
        ol = o.tolist()
        # the quote's numbers as one int matrix: ltp, bid, ask, volume, oi, oi_change (the
        # matrix's columns), then bid_qty, ask_qty
        num = np.column_stack((ltp[o], bid[o], ask[o], sh, bid_q[o], ask_q[o]))
        c = num.T.tolist()
        quotes = list(
            map(
                OptionQuote, c[0], c[1], c[2], c[3], c[4], c[5], repeat(0, o.size),
                map(symbols.__getitem__, ol), map(iv_list.__getitem__, ol), c[6], c[7],
            )
        )  # fmt: skip
        ks, first = np.unique(strike_p[o], return_inverse=True)
        pair = np.full((2, ks.size), None, dtype=object)
        qa = np.empty(len(quotes), dtype=object)
        qa[:] = quotes
        call = is_call[o]
        side = np.where(call, 0, 1)
        pair[side, first] = qa
        columns = np.full((ks.size, 13), NAN)
        columns[:, 0] = ks
        columns[first[call], 1:7] = num[call, :6]
        columns[first[~call], 7:13] = num[~call, :6]
        rows_out = ChainRows(map(ChainRow, ks.tolist(), pair[0].tolist(), pair[1].tolist()))
        rows_out.columns = columns
        snaps.append(
            ChainSnapshot(
                underlying=underlying,
                exchange="NSE",
                expiry=d,
                ts_event=ts_event,
                underlying_price=price,
                rows=rows_out,
                lot_size=lot,
                source=fmt,
            )
        )
    if not snaps:
        return None
    return ref.ChainImport(name=name, format=fmt, snapshots=tuple(snaps), skipped=())
