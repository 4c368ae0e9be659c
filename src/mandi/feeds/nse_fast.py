"""The fast path of NSE's option-chain JSON (legacy ``option-chain-indices`` and v3): typed
decoding straight into columns, then array arithmetic.

:func:`mandi.feeds.nse.parse_option_chains` tries this first for every NSE JSON document
(``mandi chain import`` and the live poller, :mod:`mandi.feeds.nse_live`, both go through it).
It gives exactly what the reference parser gives, or declines (returns None) and the reference
parser runs — so a document with anything unusual is handled, skipped rows and error messages
included, by the one parser that knows every rule. It declines when

* the document does not decode into the typed shape (a string where a number belongs, a
  null, a row that is not an object, no ``data``, no ``timestamp`` ...);
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
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from mandi.core.calendar import ist_date
from mandi.core.money import to_paise
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote

if TYPE_CHECKING:
    from mandi.feeds.nse import ChainImport

NAN = math.nan
EXACT = 2.0**53


class _Side(msgspec.Struct, gc=False):
    """One option as NSE writes it (legacy and v3 names); NaN = the key is absent."""

    lastPrice: float = NAN
    bidprice: float = NAN  # legacy
    buyPrice1: float = NAN  # v3
    askPrice: float = NAN
    sellPrice1: float = NAN
    bidQty: float = NAN
    buyQuantity1: float = NAN
    askQty: float = NAN
    sellQuantity1: float = NAN
    totalTradedVolume: float = NAN
    openInterest: float = NAN
    changeinOpenInterest: float = NAN
    impliedVolatility: float = NAN
    totalBuyQuantity: float = NAN
    totalSellQuantity: float = NAN
    strikePrice: float = NAN
    expiryDate: str | None = None
    identifier: str | None = None
    underlying: str | None = None


class _Row(msgspec.Struct, gc=False):
    strikePrice: float = NAN
    expiryDate: str | None = None
    expiryDates: str | None = None
    CE: _Side | None = None
    PE: _Side | None = None


class _Block(msgspec.Struct, gc=False):
    data: list[_Row] | None = None
    timestamp: str | None = None
    underlyingValue: float = NAN


class _Doc(msgspec.Struct, gc=False):
    data: list[_Row] | None = None
    timestamp: str | None = None
    underlyingValue: float = NAN
    records: _Block | None = None
    filtered: msgspec.Raw = msgspec.Raw(b"")


_DECODER = msgspec.json.Decoder(_Doc)
# the numeric columns of a side, in this order (price-like first)
_FIELDS = (
    "lastPrice", "bidprice", "buyPrice1", "askPrice", "sellPrice1",
    "bidQty", "buyQuantity1", "askQty", "sellQuantity1",
    "totalTradedVolume", "openInterest", "changeinOpenInterest", "impliedVolatility",
    "totalBuyQuantity", "totalSellQuantity", "strikePrice",
)  # fmt: skip
_GET = attrgetter(*_FIELDS)
_STRIKE, _CE, _PE = attrgetter("strikePrice"), attrgetter("CE"), attrgetter("PE")
_EXP, _EXPS, _IDENT = attrgetter("expiryDate"), attrgetter("expiryDates"), attrgetter("identifier")
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


def parse(data: bytes | str, name: str, opts: Any) -> ChainImport | None:
    """The fast path of an NSE JSON chain (see the module docstring); None = use the
    reference parser."""
    from mandi.feeds import nse as ref  # the reference's rules: dates, lots, underlying, result

    try:
        doc = _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    block: _Block | _Doc
    if doc.records is not None:
        block, fmt = doc.records, "nse-json"
    elif doc.data is not None and (
        doc.timestamp is not None or not math.isnan(doc.underlyingValue)
    ):
        if len(doc.filtered):  # "filtered" makes it a legacy document for the reference
            return None
        block, fmt = doc, "nse-json-v3"
    else:
        return None
    rows, ts_raw, uv = block.data, block.timestamp, block.underlyingValue
    if rows is None or ts_raw is None or not (math.isfinite(uv) and uv > 0):
        return None
    try:
        ts_event = ref._date_time_ist(ts_raw, "timestamp")
    except ref._Bad:
        return None
    # --- the sides, as columns (C-level maps over the decoded structs) ---------------------------
    n_rows = len(rows)
    row_strike = np.fromiter(map(_STRIKE, rows), np.float64, n_rows)
    if not (row_strike > 0).all():  # NaN (absent) or not positive: the reference skips the row
        return None
    ce, pe = list(map(_CE, rows)), list(map(_PE, rows))
    ce_rows = [i for i, x in enumerate(ce) if x is not None]
    pe_rows = [i for i, x in enumerate(pe) if x is not None]
    sides: list[_Side] = [ce[i] for i in ce_rows] + [pe[i] for i in pe_rows]
    if not sides:
        return None
    side_row = np.array(ce_rows + pe_rows, dtype=np.int64)
    is_call = np.zeros(len(sides), dtype=bool)
    is_call[: len(ce_rows)] = True
    cols = np.array(list(map(_GET, sides)), dtype=np.float64)
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
    row_exp = [a if a is not None else b for a, b in zip(map(_EXP, rows), map(_EXPS, rows),
                                                             strict=True)]  # fmt: skip
    srow = side_row.tolist()
    exp_text = [t if t is not None else row_exp[i]
                for t, i in zip(map(_EXP, sides), srow, strict=True)]  # fmt: skip
    texts = list(set(exp_text))
    try:
        dates = [ref._date(t, "expiryDate") for t in texts]
    except ref._Bad:
        return None
    code = dict(zip(texts, range(len(texts)), strict=True))
    ordinal = np.array([d.toordinal() for d in dates], dtype=np.int64)[
        np.fromiter(map(code.__getitem__, exp_text), np.int64, len(exp_text))
    ]
    key = (ordinal * 2 + is_call) * 10**13 + strike_p  # one per contract
    if np.unique(key).size != key.size:
        return None  # a duplicate contract: the reference skips it
    file_underlying = None
    for r in rows:  # the first side in document order that names it, as the reference reads
        for x in (r.CE, r.PE):
            if x is not None and x.underlying and x.underlying.strip():
                file_underlying = x.underlying.strip().upper()
                break
        if file_underlying is not None:
            break
    underlying = ref._check_underlying(name, file_underlying, opts.underlying)
    as_of = ist_date(ts_event)
    if min(dates) < as_of:
        return None  # expired contracts: the reference lists them as skipped
    # --- one snapshot per expiry ------------------------------------------------------------------
    symbols = np.array([x or "" for x in map(_IDENT, sides)], dtype=object)
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
        ivs = iv[o]
        quotes = list(
            map(
                OptionQuote, ltp[o].tolist(), bid[o].tolist(), ask[o].tolist(),
                sh[:, 0].tolist(), sh[:, 1].tolist(), sh[:, 2].tolist(), repeat(0, o.size),
                symbols[o].tolist(),
                [NAN if v != v else v for v in ivs.tolist()],  # math.nan itself, as the reference
                bid_q[o].tolist(), ask_q[o].tolist(),
            )
        )  # fmt: skip
        ks, first = np.unique(strike_p[o], return_inverse=True)
        pair = np.full((2, ks.size), None, dtype=object)
        qa = np.empty(len(quotes), dtype=object)
        qa[:] = quotes
        side = np.where(is_call[o], 0, 1)
        pair[side, first] = qa
        snaps.append(
            ChainSnapshot(
                underlying=underlying,
                exchange="NSE",
                expiry=d,
                ts_event=ts_event,
                underlying_price=price,
                rows=tuple(map(ChainRow, ks.tolist(), pair[0].tolist(), pair[1].tolist())),
                lot_size=lot,
                source=fmt,
            )
        )
    if not snaps:
        return None
    return ref.ChainImport(name=name, format=fmt, snapshots=tuple(snaps), skipped=())
