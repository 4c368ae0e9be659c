"""Import of NSE/BSE option-chain files and NSE F&O bhavcopies.

Formats (auto-detected from the content, gzip-compressed files are accepted too):

``nse-json``
    The legacy response of ``nseindia.com/api/option-chain-indices`` (and ``-equities``):
    ``{"records": {"expiryDates", "data", "timestamp", "underlyingValue", ...}, "filtered": ...}``.
    Every expiry of the underlying; ``records.data`` is read (``filtered.data`` only when a file
    has no ``records.data``: it is the nearest expiry again).
``nse-json-v3``
    The newer single-expiry response (``option-chain-v3``): ``{"data", "timestamp",
    "underlyingValue"}``, expiry as ``dd-mm-yyyy``, best bid/ask as ``buyPrice1``/``sellPrice1``.
``nse-csv``
    The CSV download of the nseindia.com option-chain page: two header rows (``CALLS,,PUTS``
    then the column names mirrored around ``STRIKE``), Indian digit grouping (``"2,267.60"``)
    and ``-`` for empty. It carries no underlying price, no timestamp and no expiry: the expiry
    comes from the file name (``...13-Apr-2026.csv``) or ``expiry=``, the time from ``as_of=``
    and the underlying price from ``underlying_price=``.
``bse-json``
    BSE's SENSEX option-chain response: ``{"Table": [...], "ASON": {"DT_TM": "10 Jul 2026 |
    19:15"}, ...}`` with numbers as strings (``"4,81,275.00"``).

Units. NSE and BSE publish open interest, change in OI and traded volume in **contracts**
(lots) and order quantities (bid/ask quantity, total buy/sell quantity) in **shares**. mandi
keeps everything in shares (DESIGN §2), so contracts are multiplied by the lot size; NSE's
legacy long-dated contracts carry fractional OI (4.333… lots, NSE divides open shares by the
*current* lot) which becomes ``round(lots * lot_size)`` shares. Prices become int paise, IST
timestamps int ns UTC, published IVs decimals (12.34 % → 0.1234). NSE and BSE print an IV of 0
when they computed none: that becomes NaN. An LTP of 0 (or ``-``) means "no trade today" and is
kept as 0, as the exchange prints it.

Lot size, per expiry, first rule that applies:

1. the ``lot_size=`` argument;
2. the lot the file states (UDiFF bhavcopy ``NewBrdLotQty``);
3. :data:`LOT_SIZE_RULES`, a dated table for NIFTY, BANKNIFTY and SENSEX (see there) — used as
   long as the share quantities in the file are multiples of it;
4. inferred from the file: the greatest common divisor of the share quantities of that expiry
   (at least :data:`MIN_QUANTITIES_TO_INFER` of them) — this also overrides a table entry the
   quantities contradict (logged as a warning); for bhavcopies the GCD of OI (shares) is
   narrowed with the traded value (value = contracts x lot x price);
5. otherwise :class:`~mandi.core.errors.ParseError` asking for ``lot_size=``.

Bad input. A file that cannot be read as one of the formats (truncated or invalid JSON, missing
keys, wrong types, a JSON that is not an option chain, an unknown CSV) raises
:class:`~mandi.core.errors.ParseError` naming the file and the problem. A bad value inside one
option (a garbage number, a negative price or quantity, a bad strike or expiry, an expired or
duplicate contract) drops that option — or the whole strike when the strike itself is bad —
and is recorded as a :class:`SkippedRow` in the result of the ``parse_*`` functions; the
``load_*`` wrappers log one warning per reason with the count. Nothing becomes a silent zero.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import logging
import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from statistics import median
from typing import Any, Literal

import msgspec

from mandi.core.calendar import ist_date, ist_ns
from mandi.core.errors import ParseError
from mandi.core.money import to_paise
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote

__all__ = [
    "LOT_SIZE_RULES",
    "MIN_QUANTITIES_TO_INFER",
    "BhavcopyImport",
    "BhavcopyRow",
    "ChainImport",
    "LotSizeRule",
    "SkippedRow",
    "bhavcopy_chain",
    "default_lot_size",
    "infer_lot_sizes",
    "load_bhavcopy",
    "load_option_chain",
    "load_option_chains",
    "parity_forward",
    "parse_bhavcopy",
    "parse_option_chain",
    "parse_option_chains",
]

log = logging.getLogger(__name__)

UnderlyingPrice = int | Literal["parity"] | None
AsOf = dt.datetime | dt.date | int | str | None
Expiry = dt.date | str | None

# ------------------------------------------------------------------------------------------
# Result types
# ------------------------------------------------------------------------------------------


class SkippedRow(msgspec.Struct, frozen=True):
    """One option, strike or bhavcopy row left out of the result, and why.

    ``reason`` is the counted category (``"bad number"``, ``"negative price"`` ...); ``where``
    locates the row in the file, ``field`` and ``value`` name what was wrong.
    """

    where: str
    field: str
    value: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.field} = {self.value}: {self.reason}"


def _count(skipped: Iterable[SkippedRow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in skipped:
        out[s.reason] = out.get(s.reason, 0) + 1
    return out


class ChainImport(msgspec.Struct, frozen=True):
    """Everything read from one option-chain file.

    ``snapshots`` has one :class:`ChainSnapshot` per expiry, nearest expiry first; ``skipped``
    lists every option or strike that was left out; ``format`` is one of ``nse-json``,
    ``nse-json-v3``, ``nse-csv``, ``bse-json``.
    """

    name: str
    format: str
    snapshots: tuple[ChainSnapshot, ...]
    skipped: tuple[SkippedRow, ...] = ()

    def skip_counts(self) -> dict[str, int]:
        """Number of skipped rows per reason."""
        return _count(self.skipped)

    def expiries(self) -> list[dt.date]:
        return [s.expiry for s in self.snapshots]


class BhavcopyRow(msgspec.Struct, frozen=True):
    """One contract of an NSE F&O bhavcopy (legacy or UDiFF format).

    Prices in paise, ``oi``/``oi_change`` in shares (both formats publish shares),
    ``contracts`` = contracts traded (both formats publish contracts; shares = contracts x
    lot), ``turnover`` = traded value in paise (for options NSE computes it on strike +
    premium). Fields a format does not carry are ``None``: the legacy format has no lot size,
    last price, previous close, underlying price, trade count, token or trading symbol.
    ``instrument`` uses the legacy names: ``OPTIDX``, ``OPTSTK``, ``FUTIDX``, ``FUTSTK``
    (UDiFF ``IDO``, ``STO``, ``IDF``, ``STF`` are mapped to them; other codes kept as given).
    """

    trade_date: dt.date
    instrument: str
    symbol: str
    expiry: dt.date
    strike: int
    option_type: str
    open: int
    high: int
    low: int
    close: int
    settle: int
    contracts: int
    turnover: int
    oi: int
    oi_change: int
    lot_size: int | None = None
    last: int | None = None
    prev_close: int | None = None
    underlying_price: int | None = None
    trades: int | None = None
    token: int | None = None
    trading_symbol: str | None = None

    @property
    def is_option(self) -> bool:
        return self.option_type in ("CE", "PE")


class BhavcopyImport(msgspec.Struct, frozen=True):
    """Everything read from one bhavcopy file; ``format`` is ``legacy`` or ``udiff``."""

    name: str
    format: str
    rows: tuple[BhavcopyRow, ...]
    skipped: tuple[SkippedRow, ...] = ()

    def skip_counts(self) -> dict[str, int]:
        return _count(self.skipped)


# ------------------------------------------------------------------------------------------
# Lot sizes
# ------------------------------------------------------------------------------------------


class LotSizeRule(msgspec.Struct, frozen=True):
    """Lot size of ``underlying`` for contracts expiring in ``[expiry_from, expiry_to]`` as
    seen on days in ``[as_of_from, as_of_to]`` (``None`` = open end)."""

    underlying: str
    lot_size: int
    as_of_from: dt.date | None = None
    as_of_to: dt.date | None = None
    expiry_from: dt.date | None = None
    expiry_to: dt.date | None = None
    source: str = ""


_D = dt.date
_CIRCULAR_70616 = (
    "NSE circular NSE/FAOP/70616 (03-Oct-2025): 65/30 from the Jan-2026 series (weekly "
    "06-Jan-2026, monthly 27-Jan-2026); quarterly and half-yearly contracts re-lotted at EOD "
    "30-Dec-2025 (shared data README §8)"
)

#: Dated default lot sizes (first matching rule wins). Sources: the shared data README §8 and
#: the quantities in the real files (July-2025 NSE quantities are multiples of 75 / 35, 2026
#: ones of 65). Outside these windows the lot size comes from the file or ``lot_size=``.
#: Lot sizes are revised about twice a year: a file whose quantities contradict this table
#: overrides it (with a warning), and a contract master is the better source when available.
LOT_SIZE_RULES: tuple[LotSizeRule, ...] = (
    LotSizeRule("NIFTY", 65, as_of_from=_D(2025, 12, 31), source=_CIRCULAR_70616),
    LotSizeRule(
        "NIFTY",
        65,
        as_of_from=_D(2025, 10, 3),
        expiry_from=_D(2026, 1, 1),
        expiry_to=_D(2026, 2, 28),
        source=_CIRCULAR_70616,
    ),
    LotSizeRule(
        "NIFTY",
        75,
        as_of_from=_D(2024, 11, 20),
        as_of_to=_D(2025, 12, 30),
        source="75 from 20-Nov-2024 (SEBI minimum contract value revision; README §8)",
    ),
    LotSizeRule("BANKNIFTY", 30, as_of_from=_D(2025, 12, 31), source=_CIRCULAR_70616),
    LotSizeRule(
        "BANKNIFTY",
        30,
        as_of_from=_D(2025, 10, 3),
        expiry_from=_D(2026, 1, 1),
        expiry_to=_D(2026, 2, 28),
        source=_CIRCULAR_70616,
    ),
    LotSizeRule(
        "BANKNIFTY",
        35,
        as_of_from=_D(2025, 6, 1),
        as_of_to=_D(2025, 12, 30),
        expiry_from=_D(2025, 7, 1),
        source="35 from the Jul-2025 monthly to Dec-2025 (README §8; July-2025 files)",
    ),
    LotSizeRule(
        "BANKNIFTY",
        30,
        as_of_from=_D(2024, 11, 20),
        as_of_to=_D(2025, 6, 30),
        expiry_to=_D(2025, 6, 30),
        source="30 before the Jul-2025 series (README §8)",
    ),
    LotSizeRule(
        "SENSEX",
        20,
        as_of_from=_D(2025, 1, 1),
        source="BSE SENSEX lot 20 (project decision; the BSE sample carries no quantities)",
    ),
)

#: Share quantities needed before a lot size is inferred from their GCD alone.
MIN_QUANTITIES_TO_INFER = 20


def _within(d: dt.date, lo: dt.date | None, hi: dt.date | None) -> bool:
    return (lo is None or d >= lo) and (hi is None or d <= hi)


def default_lot_size(underlying: str, expiry: dt.date, as_of: dt.date) -> int | None:
    """The lot size :data:`LOT_SIZE_RULES` gives for a contract, or None if it has no rule."""
    u = underlying.upper()
    for r in LOT_SIZE_RULES:
        if r.underlying != u:
            continue
        if _within(as_of, r.as_of_from, r.as_of_to) and _within(expiry, r.expiry_from, r.expiry_to):
            return r.lot_size
    return None


def _gcd(values: Iterable[int]) -> tuple[int, int]:
    """GCD of the non-zero values and how many there were."""
    g = n = 0
    for v in values:
        if v:
            g = math.gcd(g, abs(v))
            n += 1
    return g, n


def _resolve_lot(
    name: str,
    underlying: str,
    expiry: dt.date,
    as_of: dt.date,
    quantities: Sequence[int],
    explicit: int | None,
) -> int:
    if explicit is not None:
        return explicit
    g, n = _gcd(quantities)
    return _lot_from_gcd(name, underlying, expiry, as_of, g, n, None)


def _lot_from_gcd(
    name: str, underlying: str, expiry: dt.date, as_of: dt.date, g: int, n: int,
    explicit: int | None,
) -> int:  # fmt: skip
    """:func:`_resolve_lot` given the GCD ``g`` of the ``n`` non-zero share quantities."""
    if explicit is not None:
        return explicit
    table = default_lot_size(underlying, expiry, as_of)
    if table is not None:
        if n == 0 or g % table == 0:
            return table
        if n >= MIN_QUANTITIES_TO_INFER:
            log.warning(
                "%s: %s %s quantities are multiples of %d, not of the table's lot size %d; "
                "using %d (pass lot_size= to override)",
                name,
                underlying,
                expiry,
                g,
                table,
                g,
            )
            return g
        log.warning(
            "%s: %s %s quantities (GCD %d) do not fit the table's lot size %d; keeping %d",
            name,
            underlying,
            expiry,
            g,
            table,
            table,
        )
        return table
    if n >= MIN_QUANTITIES_TO_INFER and g > 1:
        log.info(
            "%s: lot size of %s %s inferred from %d quantities: %d", name, underlying, expiry, n, g
        )
        return g
    raise ParseError(
        f"{name}: lot size of {underlying} (expiry {expiry}) is unknown: no table entry and "
        f"only {n} share quantities in the file; pass lot_size="
    )


# ------------------------------------------------------------------------------------------
# Small value parsers (raise _Bad; the caller turns it into a SkippedRow)
# ------------------------------------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(reason)
        self.field, self.value, self.reason = field, value, reason


_EMPTY = frozenset({"", "-", "--", "NA", "N/A", "null", "None"})
_NUM_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _clean(raw: object, fld: str) -> str | float | int | None:
    """None for "absent", else an int/float or a digits-only string (grouping removed)."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise _Bad(fld, raw, "bad number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise _Bad(fld, raw, "bad number")
        return raw
    if isinstance(raw, str):
        s = raw.strip()
        if s in _EMPTY:
            return None
        t = s.replace(",", "")
        if not _NUM_RE.match(t):
            raise _Bad(fld, raw, "bad number")
        return t
    raise _Bad(fld, raw, f"bad number ({type(raw).__name__})")


def _num(raw: object, fld: str) -> float | None:
    v = _clean(raw, fld)
    if v is None:
        return None
    f = float(v)
    if not math.isfinite(f):
        raise _Bad(fld, raw, "bad number")
    return f


def _price(raw: object, fld: str) -> int | None:
    """Rupees (number or string) → paise; negative prices are bad."""
    v = _clean(raw, fld)
    if v is None:
        return None
    try:
        p = to_paise(v)
    except ValueError:
        raise _Bad(fld, raw, "bad number") from None
    if p < 0:
        raise _Bad(fld, raw, "negative price")
    return p


def _whole(raw: object, fld: str, *, signed: bool = False) -> int | None:
    """A count (shares, contracts): must be a whole number; negative only if ``signed``."""
    f = _num(raw, fld)
    if f is None:
        return None
    if f != int(f):
        raise _Bad(fld, raw, "not a whole number")
    if f < 0 and not signed:
        raise _Bad(fld, raw, "negative quantity")
    return int(f)


def _lots(raw: object, fld: str, *, signed: bool = False) -> float | None:
    """Contracts; may be fractional (NSE's re-lotted long-dated OI)."""
    f = _num(raw, fld)
    if f is not None and f < 0 and not signed:
        raise _Bad(fld, raw, "negative quantity")
    return f


def _iv(raw: object, fld: str) -> float:
    """Published IV in percent → decimal (via Decimal, so ``12.34`` gives exactly ``0.1234``)."""
    f = _num(raw, fld)
    if f is None or f == 0:
        return math.nan  # exchanges print 0 when they computed no IV
    if f < 0:
        raise _Bad(fld, raw, "negative IV")
    v = _clean(raw, fld)
    return float(Decimal(repr(v) if isinstance(v, float) else str(v)) / 100)


_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DATE_RE = re.compile(r"^\s*(\d{1,2})[-/ ]([A-Za-z]{3}|\d{1,2})[-/ ](\d{4})\s*$")


def _date(raw: object, fld: str) -> dt.date:
    """``17-Jul-2025``, ``17-JUL-2025``, ``14-07-2026``, ``16 Jul 2026`` or ``2026-07-14``."""
    if isinstance(raw, str):
        m = _DATE_RE.match(raw)
        try:
            if m:
                d, mon, y = m.groups()
                month = int(mon) if mon.isdigit() else _MONTHS.get(mon.lower(), 0)
                return dt.date(int(y), month, int(d))
            return dt.date.fromisoformat(raw.strip())
        except ValueError:
            pass
    raise _Bad(fld, raw, "bad date")


def _date_time_ist(raw: object, fld: str) -> int:
    """``16-Jul-2025 15:30:00`` / ``10 Jul 2026 | 19:15`` (IST) → ns UTC."""
    if not isinstance(raw, str):
        raise _Bad(fld, raw, "bad timestamp")
    text = raw.replace("|", " ").split()
    if len(text) == 4:  # "10 Jul 2026 19:15"
        text = ["-".join(text[:3]), text[3]]
    if len(text) != 2:
        raise _Bad(fld, raw, "bad timestamp")
    day = _date(text[0], fld)
    try:
        parts = [int(p) for p in text[1].split(":")]
        if len(parts) not in (2, 3):
            raise ValueError
        at = dt.time(parts[0], parts[1], parts[2] if len(parts) == 3 else 0)
    except (ValueError, TypeError):
        raise _Bad(fld, raw, "bad timestamp") from None
    return ist_ns(day, at)


def _as_of_ns(as_of: AsOf, name: str) -> int | None:
    if as_of is None:
        return None
    if isinstance(as_of, bool):
        raise ParseError(f"{name}: as_of={as_of!r} is not a time")
    if isinstance(as_of, int):
        return as_of
    if isinstance(as_of, dt.datetime):
        if as_of.tzinfo is None:  # naive = IST wall clock
            return ist_ns(as_of.date(), as_of.time())
        return int(as_of.timestamp()) * 10**9 + as_of.microsecond * 1000
    if isinstance(as_of, dt.date):
        return ist_ns(as_of, dt.time(15, 30))  # a bare date means that day's close
    if isinstance(as_of, str):
        try:
            d = dt.datetime.fromisoformat(as_of.strip())
        except ValueError:
            raise ParseError(f"{name}: as_of={as_of!r} is not an ISO date-time (IST)") from None
        return _as_of_ns(d, name)
    raise ParseError(f"{name}: as_of={as_of!r} is not a time")


def _expiry_arg(expiry: Expiry, name: str) -> dt.date | None:
    if expiry is None or isinstance(expiry, dt.date):
        return expiry
    try:
        return _date(expiry, "expiry")
    except _Bad:
        raise ParseError(f"{name}: expiry={expiry!r} is not a date") from None


# ------------------------------------------------------------------------------------------
# Common chain assembly
# ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Side:
    """One option as read, before the lot size is known (OI and volume still in lots)."""

    ltp: int = 0
    bid: int = 0
    ask: int = 0
    bid_qty: int = 0
    ask_qty: int = 0
    volume_lots: float = 0.0
    oi_lots: float = 0.0
    oi_change_lots: float = 0.0
    iv: float = math.nan
    token: int = 0
    symbol: str = ""


@dataclass(slots=True)
class _Expiry:
    strikes: dict[int, list[_Side | None]] = field(default_factory=dict)
    quantities: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Collector:
    """Per-expiry, per-strike sides plus the skip list, shared by every chain format."""

    name: str
    expiries: dict[dt.date, _Expiry] = field(default_factory=dict)
    skipped: list[SkippedRow] = field(default_factory=list)

    def skip(self, where: str, bad: _Bad) -> None:
        self.skipped.append(SkippedRow(where, bad.field, repr(bad.value), bad.reason))

    def add(
        self,
        expiry: dt.date,
        strike: int,
        is_call: bool,
        side: _Side,
        where: str,
        quantities: Iterable[int],
    ) -> None:
        e = self.expiries.setdefault(expiry, _Expiry())
        pair = e.strikes.setdefault(strike, [None, None])
        i = 0 if is_call else 1
        if pair[i] is not None:
            self.skip(where, _Bad("strike", strike / 100, "duplicate contract"))
            return
        pair[i] = side
        e.quantities.extend(quantities)


def _shares(lots: float, lot: int) -> int:
    return round(lots * lot)


def _quote(s: _Side, lot: int) -> OptionQuote:
    return OptionQuote(
        ltp=s.ltp,
        bid=s.bid,
        ask=s.ask,
        volume=_shares(s.volume_lots, lot),
        oi=_shares(s.oi_lots, lot),
        oi_change=_shares(s.oi_change_lots, lot),
        token=s.token,
        symbol=s.symbol,
        iv=s.iv,
        bid_qty=s.bid_qty,
        ask_qty=s.ask_qty,
    )


def parity_forward(rows: Sequence[ChainRow], near: int = 5) -> int | None:
    """The forward implied by put-call parity, ``K + C - P`` (paise), median over the ``near``
    strikes where the call and put prices are closest; mid prices when both sides of the book
    are quoted, else last prices of contracts traded today. None when no strike has both.

    This is the *forward* to expiry (spot x e^(r-q)T), not the spot: for a week at 10 % it is
    about 0.2 % above spot.
    """

    def price(q: OptionQuote | None) -> int | None:
        if q is None:
            return None
        if q.bid > 0 and q.ask >= q.bid:
            return (q.bid + q.ask) // 2
        # a last price without volume today is a stale earlier close (NSE repeats it)
        return q.ltp if q.ltp > 0 and q.volume > 0 else None

    pairs = []
    for r in rows:
        c, p = price(r.call), price(r.put)
        if c is not None and p is not None:
            pairs.append((abs(c - p), r.strike + c - p))
    if not pairs:
        return None
    pairs.sort()
    return round(median(f for _, f in pairs[:near]))


def _no_rows(col: _Collector, expiry: dt.date | None) -> None:
    """Raise the "nothing usable" error, with what the file has and what was skipped."""
    what = f"expiry {expiry}" if expiry is not None else "any expiry"
    have = ", ".join(str(d) for d in sorted(col.expiries)) or "none"
    counts = _count(col.skipped)
    raise ParseError(
        f"{col.name}: no option rows for {what} (expiries in the file: {have}; skipped rows: "
        f"{counts or 'none'})"
    )


def _finish(
    col: _Collector,
    fmt: str,
    *,
    underlying: str,
    exchange: str,
    ts_event: int,
    underlying_price: UnderlyingPrice,
    lot_size: int | None,
    expiry: dt.date | None,
    source: str,
) -> ChainImport:
    name = col.name
    as_of = ist_date(ts_event)
    snaps = []
    for exp in sorted(col.expiries):
        if expiry is not None and exp != expiry:
            continue
        e = col.expiries[exp]
        if exp < as_of:
            for strike, pair in e.strikes.items():
                for side, kind in zip(pair, ("CE", "PE"), strict=True):
                    if side is not None:
                        col.skipped.append(
                            SkippedRow(
                                f"{exp} {strike / 100:g} {kind}",
                                "expiry",
                                str(exp),
                                "expired contract",
                            )
                        )
            continue
        lot = _resolve_lot(name, underlying, exp, as_of, e.quantities, lot_size)
        rows = tuple(
            ChainRow(
                strike=k,
                call=_quote(pair[0], lot) if pair[0] is not None else None,
                put=_quote(pair[1], lot) if pair[1] is not None else None,
            )
            for k, pair in sorted(e.strikes.items())
            if pair[0] is not None or pair[1] is not None
        )
        if not rows:
            continue
        price = underlying_price
        if price == "parity":
            price = parity_forward(rows)
            if price is None:
                raise ParseError(
                    f"{name}: no strike of {exp} has both a call and a put "
                    "price, so no put-call-parity forward; pass underlying_price="
                )
        if price is None:
            raise ParseError(
                f"{name}: the file carries no underlying price; pass "
                "underlying_price= (paise) or underlying_price='parity'"
            )
        snaps.append(
            ChainSnapshot(
                underlying=underlying,
                exchange=exchange,
                expiry=exp,
                ts_event=ts_event,
                underlying_price=int(price),
                rows=rows,
                lot_size=lot,
                source=source,
            )
        )
    if not snaps:
        _no_rows(col, expiry)
    return ChainImport(name=name, format=fmt, snapshots=tuple(snaps), skipped=tuple(col.skipped))


# ------------------------------------------------------------------------------------------
# NSE JSON (legacy records and v3)
# ------------------------------------------------------------------------------------------

_NSE_SIDE_FIELDS = {
    # ours: (legacy name, v3 name)
    "bid": ("bidprice", "buyPrice1"),
    "ask": ("askPrice", "sellPrice1"),
    "bid_qty": ("bidQty", "buyQuantity1"),
    "ask_qty": ("askQty", "sellQuantity1"),
}


def _pick(d: Mapping[str, Any], ours: str) -> tuple[object, str]:
    """The value of the first of the legacy / v3 names present, and that name."""
    names = _NSE_SIDE_FIELDS[ours]
    for n in names:
        if n in d:
            return d[n], n
    return None, names[0]


def _nse_side(d: Mapping[str, Any]) -> tuple[_Side, list[int]]:
    bid, ask = _pick(d, "bid"), _pick(d, "ask")
    bid_qty, ask_qty = _pick(d, "bid_qty"), _pick(d, "ask_qty")
    s = _Side(
        ltp=_price(d.get("lastPrice"), "lastPrice") or 0,
        bid=_price(*bid) or 0,
        ask=_price(*ask) or 0,
        bid_qty=_whole(*bid_qty) or 0,
        ask_qty=_whole(*ask_qty) or 0,
        volume_lots=_lots(d.get("totalTradedVolume"), "totalTradedVolume") or 0.0,
        oi_lots=_lots(d.get("openInterest"), "openInterest") or 0.0,
        oi_change_lots=_lots(d.get("changeinOpenInterest"), "changeinOpenInterest", signed=True)
        or 0.0,
        iv=_iv(d.get("impliedVolatility"), "impliedVolatility"),
        symbol=str(d.get("identifier") or ""),
    )
    qty = [s.bid_qty, s.ask_qty]
    for f in ("totalBuyQuantity", "totalSellQuantity"):
        qty.append(_whole(d.get(f), f) or 0)
    return s, qty


def _require(
    obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: str, name: str
) -> Any:
    if key not in obj:
        raise ParseError(f"{name}: {path}{key} is missing")
    v = obj[key]
    if not isinstance(v, kind) or isinstance(v, bool):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ParseError(f"{name}: {path}{key} is {type(v).__name__} {_short(v)}, expected {want}")
    return v


def _short(v: object) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _parse_nse_json(doc: dict[str, Any], name: str, *, v3: bool, opts: _Opts) -> ChainImport:
    if v3:
        meta, block, path = doc, doc, ""
    else:
        meta = _require(doc, "records", dict, "", name)
        if "data" in meta or "filtered" not in doc:
            block, path = meta, "records."
        else:  # some savers keep only the "filtered" block (the nearest expiry) plus metadata
            block, path = _require(doc, "filtered", dict, "", name), "filtered."
    data = _require(block, "data", list, path, name)
    mpath = "" if v3 else "records."
    ts_raw = _require(meta, "timestamp", str, mpath, name)
    try:
        ts_event = _date_time_ist(ts_raw, "timestamp")
    except _Bad:
        raise ParseError(
            f"{name}: {mpath}timestamp = {ts_raw!r} is not 'dd-Mon-yyyy HH:MM:SS'"
        ) from None
    uv = _require(meta, "underlyingValue", (int, float), mpath, name)
    if not math.isfinite(uv) or uv <= 0:
        raise ParseError(f"{name}: {mpath}underlyingValue = {uv!r} is not a positive price")
    try:
        price = to_paise(uv)
    except ValueError:
        raise ParseError(f"{name}: {mpath}underlyingValue = {uv!r} is too large a price") from None
    col = _Collector(name)
    file_underlying: str | None = None
    for i, item in enumerate(data):
        where = f"{path}data[{i}]"
        if not isinstance(item, dict):
            col.skipped.append(SkippedRow(where, "row", _short(item), "not an object"))
            continue
        try:
            strike_rupees = _num(item.get("strikePrice"), "strikePrice")
            if strike_rupees is None or strike_rupees <= 0:
                raise _Bad("strikePrice", item.get("strikePrice"), "bad strike")
            strike = _price(item.get("strikePrice"), "strikePrice") or 0
        except _Bad as b:
            col.skip(where, b)
            continue
        row_expiry = item.get("expiryDate", item.get("expiryDates"))
        for kind in ("CE", "PE"):
            d = item.get(kind)
            if d is None:
                continue
            w = f"{where}.{kind}"
            if not isinstance(d, dict):
                col.skipped.append(SkippedRow(w, kind, _short(d), "not an object"))
                continue
            u = d.get("underlying")
            if isinstance(u, str) and u.strip() and file_underlying is None:
                file_underlying = u.strip().upper()
            try:
                exp = _date(d.get("expiryDate", row_expiry), "expiryDate")
                ks = d.get("strikePrice")
                if ks is not None and _num(ks, "strikePrice") != strike_rupees:
                    raise _Bad("strikePrice", ks, "strike differs from its row's")
                side, qty = _nse_side(d)
            except _Bad as b:
                col.skip(w, b)
                continue
            col.add(exp, strike, kind == "CE", side, w, qty)
    if not col.expiries:
        _no_rows(col, opts.expiry)
    underlying = _check_underlying(name, file_underlying, opts.underlying)
    return _finish(
        col,
        "nse-json-v3" if v3 else "nse-json",
        underlying=underlying,
        exchange="NSE",
        ts_event=ts_event,
        underlying_price=price,
        lot_size=opts.lot_size,
        expiry=opts.expiry,
        source="nse-json-v3" if v3 else "nse-json",
    )


def _check_underlying(name: str, from_file: str | None, arg: str | None) -> str:
    if from_file and arg and from_file != arg.upper():
        raise ParseError(f"{name}: the file is a {from_file} chain, not {arg.upper()}")
    u = from_file or (arg.upper() if arg else None) or _underlying_from_name(name)
    if not u:
        raise ParseError(f"{name}: cannot tell the underlying; pass underlying=")
    return u


# ------------------------------------------------------------------------------------------
# BSE JSON
# ------------------------------------------------------------------------------------------

_BSE_SIDES = {
    # field: (call key, put key)
    "ltp": ("C_Last_Trd_Price", "Last_Trd_Price"),
    "bid": ("C_BidPrice", "BidPrice"),
    "ask": ("C_OfferPrice", "OfferPrice"),
    "bid_qty": ("C_BIdQty", "BIdQty"),
    "ask_qty": ("C_OfferQty", "OfferQty"),
    "volume": ("C_Vol_Traded", "Vol_Traded"),
    "oi": ("C_Open_Interest", "Open_Interest"),
    "oi_change": ("C_Absolute_Change_OI", "Absolute_Change_OI"),
    "iv": ("C_IV", "IV"),
    "token": ("C_Series_Id", "Series_Id"),
    "symbol": ("C_Series_Code", "p_Series_Code"),
}
_BSE_DATA_FIELDS = ("ltp", "bid", "ask", "bid_qty", "ask_qty", "volume", "oi", "oi_change", "iv")


def _bse_side(row: Mapping[str, Any], i: int) -> tuple[_Side, list[int]] | None:
    k = {f: keys[i] for f, keys in _BSE_SIDES.items()}
    if all(_clean(row.get(k[f]), k[f]) is None for f in _BSE_DATA_FIELDS):
        return None  # a listed strike with nothing traded, quoted or open on this side
    token = _whole(row.get(k["token"]), k["token"])
    s = _Side(
        ltp=_price(row.get(k["ltp"]), k["ltp"]) or 0,
        bid=_price(row.get(k["bid"]), k["bid"]) or 0,
        ask=_price(row.get(k["ask"]), k["ask"]) or 0,
        # BSE's sample has no quantities at all; assumed shares like NSE's (unverified)
        bid_qty=_whole(row.get(k["bid_qty"]), k["bid_qty"]) or 0,
        ask_qty=_whole(row.get(k["ask_qty"]), k["ask_qty"]) or 0,
        volume_lots=_lots(row.get(k["volume"]), k["volume"]) or 0.0,
        oi_lots=_lots(row.get(k["oi"]), k["oi"]) or 0.0,
        oi_change_lots=_lots(row.get(k["oi_change"]), k["oi_change"], signed=True) or 0.0,
        iv=_iv(row.get(k["iv"]), k["iv"]),
        token=token or 0,
        symbol=str(row.get(k["symbol"]) or "").strip(),
    )
    return s, [s.bid_qty, s.ask_qty]


def _parse_bse_json(doc: dict[str, Any], name: str, opts: _Opts) -> ChainImport:
    table = _require(doc, "Table", list, "", name)
    ason = _require(doc, "ASON", dict, "", name)
    ts_raw = _require(ason, "DT_TM", str, "ASON.", name)
    try:
        ts_event = _date_time_ist(ts_raw, "DT_TM")
    except _Bad:
        raise ParseError(f"{name}: ASON.DT_TM = {ts_raw!r} is not 'dd Mon yyyy | HH:MM'") from None
    col = _Collector(name)
    prices: set[int] = set()
    file_underlying: str | None = None
    for i, row in enumerate(table):
        where = f"Table[{i}]"
        if not isinstance(row, dict):
            col.skipped.append(SkippedRow(where, "row", _short(row), "not an object"))
            continue
        try:
            strike = _price(row.get("Strike_Price", row.get("Strike_Price1")), "Strike_Price")
            if not strike:
                raise _Bad("Strike_Price", row.get("Strike_Price"), "bad strike")
            exp = _date(row.get("End_TimeStamp"), "End_TimeStamp")
            ula = _price(row.get("UlaValue"), "UlaValue")
        except _Bad as b:
            col.skip(where, b)
            continue
        if ula:
            prices.add(ula)
        u = str(row.get("Ula_Code") or "").strip().upper()
        if u and file_underlying is None:
            file_underlying = u
        for idx, kind in ((0, "CE"), (1, "PE")):
            w = f"{where}.{kind}"
            try:
                got = _bse_side(row, idx)
            except _Bad as b:
                col.skip(w, b)
                continue
            if got is not None:
                col.add(exp, strike, kind == "CE", got[0], w, got[1])
    if not prices:
        raise ParseError(f"{name}: no row carries UlaValue (the underlying price)")
    if len(prices) > 1:
        raise ParseError(f"{name}: rows disagree on UlaValue: {sorted(p / 100 for p in prices)}")
    if not col.expiries:
        _no_rows(col, opts.expiry)
    underlying = _check_underlying(name, file_underlying, opts.underlying)
    return _finish(
        col,
        "bse-json",
        underlying=underlying,
        exchange="BSE",
        ts_event=ts_event,
        underlying_price=prices.pop(),
        lot_size=opts.lot_size,
        expiry=opts.expiry,
        source="bse-json",
    )


# ------------------------------------------------------------------------------------------
# NSE option-chain page CSV
# ------------------------------------------------------------------------------------------

_CSV_SIDE = {
    "OI": "oi",
    "CHNG IN OI": "oi_change",
    "VOLUME": "volume",
    "IV": "iv",
    "LTP": "ltp",
    "BID QTY": "bid_qty",
    "BID": "bid",
    "ASK": "ask",
    "ASK QTY": "ask_qty",
}
_NAME_DATE_RE = re.compile(r"(\d{1,2}-[A-Za-z]{3}-\d{4})")
_KNOWN_UNDERLYINGS = (
    "NIFTY",
    "BANKNIFTY",
    "FINNIFTY",
    "MIDCPNIFTY",
    "NIFTYNXT50",
    "SENSEX",
    "BANKEX",
)


def _underlying_from_name(name: str) -> str | None:
    base = Path(name).name.upper()
    m = re.search(r"OPTION-CHAIN-(?:ED|EQ)-([A-Z0-9&]+)-", base)  # NSE's own download name
    if m:
        return m.group(1)
    tokens = set(re.split(r"[^A-Z0-9&]+", base))
    found = [u for u in _KNOWN_UNDERLYINGS if u in tokens]
    return found[0] if len(found) == 1 else None


def _expiry_from_name(name: str) -> dt.date | None:
    found = _NAME_DATE_RE.findall(Path(name).name)
    if not found:
        return None
    try:
        return _date(found[-1], "file name")
    except _Bad:
        return None


def _csv_side(cells: dict[str, str]) -> tuple[_Side, list[int]] | None:
    if all(_clean(v, k) is None for k, v in cells.items()):
        return None
    s = _Side(
        ltp=_price(cells.get("ltp"), "LTP") or 0,
        bid=_price(cells.get("bid"), "BID") or 0,
        ask=_price(cells.get("ask"), "ASK") or 0,
        bid_qty=_whole(cells.get("bid_qty"), "BID QTY") or 0,
        ask_qty=_whole(cells.get("ask_qty"), "ASK QTY") or 0,
        volume_lots=_lots(cells.get("volume"), "VOLUME") or 0.0,
        oi_lots=_lots(cells.get("oi"), "OI") or 0.0,
        oi_change_lots=_lots(cells.get("oi_change"), "CHNG IN OI", signed=True) or 0.0,
        iv=_iv(cells.get("iv"), "IV"),
    )
    return s, [s.bid_qty, s.ask_qty]


def _parse_nse_csv(text: str, name: str, opts: _Opts) -> ChainImport:
    lines = list(csv.reader(io.StringIO(text)))
    if len(lines) < 3:
        raise ParseError(
            f"{name}: NSE option-chain CSV has {len(lines)} lines, expected two "
            "header rows and data"
        )
    header = [h.strip().upper() for h in lines[1]]
    if "STRIKE" not in header:
        raise ParseError(f"{name}: second header row has no STRIKE column: {lines[1][:12]}")
    k = header.index("STRIKE")
    call_cols = {_CSV_SIDE[h]: j for j, h in enumerate(header[:k]) if h in _CSV_SIDE}
    put_cols = {_CSV_SIDE[h]: j for j, h in enumerate(header) if j > k and h in _CSV_SIDE}
    missing = sorted(set(_CSV_SIDE.values()) - set(call_cols)) + sorted(
        set(_CSV_SIDE.values()) - set(put_cols)
    )
    if missing:
        raise ParseError(f"{name}: CSV header lacks columns {missing}")

    from_name = _expiry_from_name(name)
    if opts.expiry and from_name and opts.expiry != from_name:
        raise ParseError(f"{name}: expiry={opts.expiry} but the file name says {from_name}")
    expiry = opts.expiry or from_name
    if expiry is None:
        raise ParseError(
            f"{name}: the NSE CSV export has no expiry inside and none in its "
            "name (…dd-Mon-yyyy.csv); pass expiry="
        )
    if opts.as_of_ns is None:
        raise ParseError(
            f"{name}: the NSE CSV export carries no timestamp; pass as_of= "
            "(when the page was downloaded, IST)"
        )
    underlying = _check_underlying(name, None, opts.underlying)
    col = _Collector(name)
    for n, line in enumerate(lines[2:], start=3):
        if not any(c.strip() for c in line):
            continue
        where = f"line {n}"
        if len(line) <= max(put_cols.values()):
            col.skipped.append(SkippedRow(where, "row", f"{len(line)} cells", "short row"))
            continue
        try:
            strike = _price(line[k], "STRIKE")
            if not strike:
                raise _Bad("STRIKE", line[k], "bad strike")
        except _Bad as b:
            col.skip(where, b)
            continue
        for kind, cols in (("CE", call_cols), ("PE", put_cols)):
            w = f"{where} {kind}"
            try:
                got = _csv_side({f: line[j] for f, j in cols.items()})
            except _Bad as b:
                col.skip(w, b)
                continue
            if got is not None:
                col.add(expiry, strike, kind == "CE", got[0], w, got[1])
    return _finish(
        col,
        "nse-csv",
        underlying=underlying,
        exchange="NSE",
        ts_event=opts.as_of_ns,
        underlying_price=opts.underlying_price,
        lot_size=opts.lot_size,
        expiry=expiry,
        source="nse-csv",
    )


# ------------------------------------------------------------------------------------------
# Detection and public chain API
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Opts:
    underlying: str | None
    expiry: dt.date | None
    lot_size: int | None
    underlying_price: UnderlyingPrice
    as_of_ns: int | None


def _decompress(data: bytes, name: str) -> bytes:
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ParseError(f"{name}: broken gzip data ({e})") from None
    return data


def _text(data: bytes | str, name: str) -> str:
    if isinstance(data, str):
        return data
    data = _decompress(data, name)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ParseError(f"{name}: not UTF-8 text ({e})") from None


def _json(text: str, name: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as e:
        raise ParseError(f"{name}: not valid JSON ({e})") from None


def _is_bhavcopy_header(first: str) -> bool:
    h = first.upper()
    return ("INSTRUMENT" in h and "EXPIRY_DT" in h) or ("TRADDT" in h and "TCKRSYMB" in h)


def _check_opts(name: str, lot_size: int | None, underlying_price: UnderlyingPrice) -> None:
    if lot_size is not None and (
        isinstance(lot_size, bool) or not isinstance(lot_size, int) or lot_size <= 0
    ):
        raise ParseError(f"{name}: lot_size={lot_size!r} is not a positive whole number")
    if (
        underlying_price is not None
        and underlying_price != "parity"
        and (
            isinstance(underlying_price, bool)
            or not isinstance(underlying_price, int)
            or underlying_price <= 0
        )
    ):
        raise ParseError(
            f"{name}: underlying_price={underlying_price!r} must be positive int paise or 'parity'"
        )


def parse_option_chains(
    data: bytes | str,
    *,
    name: str = "<data>",
    underlying: str | None = None,
    expiry: Expiry = None,
    lot_size: int | None = None,
    underlying_price: UnderlyingPrice = None,
    as_of: AsOf = None,
    fast: bool = True,
) -> ChainImport:
    """Parse one option-chain file (any supported format) into one snapshot per expiry.

    Parameters
    ----------
    data
        The file's bytes (gzip accepted) or text.
    name
        The file name: used in error messages, and for the NSE CSV export the source of the
        expiry (``…dd-Mon-yyyy.csv``) and of the underlying (``option-chain-ED-NIFTY-…``).
    underlying
        Underlying symbol when the file does not name it (NSE CSV); if the file names a
        different one this raises.
    expiry
        Keep only this expiry (``date`` or ``"13-Apr-2026"``); for the NSE CSV export, the
        expiry of the file when its name does not carry it.
    lot_size
        Shares per contract; default: see the module docstring.
    underlying_price
        Underlying price in **paise** for formats that carry none (NSE CSV), or ``"parity"``
        to use the put-call-parity forward (:func:`parity_forward`). Ignored when the file
        has its own.
    as_of
        Observation time for formats that carry none (NSE CSV): an IST-naive or aware
        ``datetime``, a ``date`` (= 15:30 IST that day), int ns UTC or an ISO string in IST.
        Ignored when the file has its own timestamp.
    fast
        Try the fast path for NSE JSON first (:mod:`mandi.feeds.nse_fast`: the same result, or
        it steps aside for this reference parser); False runs the reference parser only.

    Returns
    -------
    ChainImport
        ``snapshots`` (nearest expiry first, expired contracts dropped), ``skipped`` rows and
        the detected ``format``.

    Raises
    ------
    ParseError
        When the file is not a readable option chain, or nothing valid is left in it.
    """
    _check_opts(name, lot_size, underlying_price)
    opts = _Opts(
        underlying=underlying,
        expiry=_expiry_arg(expiry, name),
        lot_size=lot_size,
        underlying_price=underlying_price,
        as_of_ns=_as_of_ns(as_of, name),
    )
    if fast:
        raw = _decompress(data, name) if isinstance(data, bytes) else data
        head = raw.lstrip()[:1] if isinstance(raw, str) else raw.lstrip(b" \t\r\n")[:1]
        if head in ("{", b"{"):
            from mandi.feeds import nse_fast

            imp = nse_fast.parse(raw, name, opts)
            if imp is not None:
                return imp
    text = _text(data, name)
    stripped = text.lstrip()
    if not stripped:
        raise ParseError(f"{name}: empty file")
    if stripped[0] in "{[":
        doc = _json(stripped, name)
        if not isinstance(doc, dict):
            raise ParseError(f"{name}: JSON is a {type(doc).__name__}, not an option chain object")
        if "records" in doc or "filtered" in doc:
            return _parse_nse_json(doc, name, v3=False, opts=opts)
        if "data" in doc and ("timestamp" in doc or "underlyingValue" in doc):
            return _parse_nse_json(doc, name, v3=True, opts=opts)
        if "Table" in doc:
            return _parse_bse_json(doc, name, opts)
        keys = ", ".join(list(doc)[:8]) or "none"
        raise ParseError(f"{name}: JSON is not an NSE or BSE option chain (top-level keys: {keys})")
    first = stripped.splitlines()[0]
    if "CALLS" in first.upper() and "PUTS" in first.upper():
        return _parse_nse_csv(stripped, name, opts)
    if _is_bhavcopy_header(first):
        raise ParseError(
            f"{name}: this is an F&O bhavcopy, not an option chain; use "
            "load_bhavcopy() and bhavcopy_chain()"
        )
    raise ParseError(f"{name}: not an option-chain file (starts with {first[:60]!r})")


def _log_skips(name: str, skipped: Sequence[SkippedRow]) -> None:
    first: dict[str, SkippedRow] = {}
    for s in skipped:
        first.setdefault(s.reason, s)
    counts = _count(skipped)
    for reason, n in counts.items():
        log.warning("%s: skipped %d row(s): %s (first: %s)", name, n, reason, first[reason])


def _nearest(imp: ChainImport, expiry: dt.date | None) -> ChainSnapshot:
    if expiry is not None:
        for s in imp.snapshots:
            if s.expiry == expiry:
                return s
    return imp.snapshots[0]  # _finish already filtered to `expiry` when one was asked for


def parse_option_chain(
    data: bytes | str,
    *,
    name: str = "<data>",
    underlying: str | None = None,
    expiry: Expiry = None,
    lot_size: int | None = None,
    underlying_price: UnderlyingPrice = None,
    as_of: AsOf = None,
) -> ChainSnapshot:
    """Parse one option-chain file and return the snapshot of ``expiry`` (default: the
    nearest unexpired one). Skipped rows are logged, one warning per reason. Parameters as in
    :func:`parse_option_chains`."""
    imp = parse_option_chains(
        data,
        name=name,
        underlying=underlying,
        expiry=expiry,
        lot_size=lot_size,
        underlying_price=underlying_price,
        as_of=as_of,
    )
    _log_skips(name, imp.skipped)
    return _nearest(imp, _expiry_arg(expiry, name))


def _read(path: str | Path) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except OSError as e:
        raise ParseError(f"{p}: cannot read ({e.strerror or e})") from None


def load_option_chain(
    path: str | Path,
    *,
    underlying: str | None = None,
    expiry: Expiry = None,
    lot_size: int | None = None,
    underlying_price: UnderlyingPrice = None,
    as_of: AsOf = None,
) -> ChainSnapshot:
    """Read an NSE/BSE option-chain file and return one :class:`ChainSnapshot`: the one of
    ``expiry``, else the nearest unexpired expiry in the file.

    Formats, units and the lot-size rule: see the module docstring; parameters as in
    :func:`parse_option_chains`. Raises :class:`ParseError` naming the file and the problem.

    Examples
    --------
    >>> snap = load_option_chain("nse_oc_v3_NIFTY_2026-07-10_1530_exp2026-07-14.json")
    >>> snap = load_option_chain("option-chain-ED-NIFTY-13-Apr-2026.csv",
    ...                          as_of="2026-04-01 15:30", underlying_price="parity")
    """
    return parse_option_chain(
        _read(path),
        name=str(path),
        underlying=underlying,
        expiry=expiry,
        lot_size=lot_size,
        underlying_price=underlying_price,
        as_of=as_of,
    )


def load_option_chains(
    path: str | Path,
    *,
    underlying: str | None = None,
    lot_size: int | None = None,
    underlying_price: UnderlyingPrice = None,
    as_of: AsOf = None,
) -> list[ChainSnapshot]:
    """Read an option-chain file and return a snapshot for every unexpired expiry in it,
    nearest first (the legacy NSE JSON carries all expiries; the other formats one).
    Skipped rows are logged, one warning per reason."""
    name = str(path)
    imp = parse_option_chains(
        _read(path),
        name=name,
        underlying=underlying,
        lot_size=lot_size,
        underlying_price=underlying_price,
        as_of=as_of,
    )
    _log_skips(name, imp.skipped)
    return list(imp.snapshots)


# ------------------------------------------------------------------------------------------
# F&O bhavcopy
# ------------------------------------------------------------------------------------------

_UDIFF_INSTRUMENTS = {"IDO": "OPTIDX", "STO": "OPTSTK", "IDF": "FUTIDX", "STF": "FUTSTK"}
_LEGACY_REQUIRED = (
    "INSTRUMENT",
    "SYMBOL",
    "EXPIRY_DT",
    "STRIKE_PR",
    "OPTION_TYP",
    "OPEN",
    "HIGH",
    "LOW",
    "CLOSE",
    "SETTLE_PR",
    "CONTRACTS",
    "VAL_INLAKH",
    "OPEN_INT",
    "CHG_IN_OI",
    "TIMESTAMP",
)
_UDIFF_REQUIRED = (
    "TradDt",
    "FinInstrmTp",
    "TckrSymb",
    "XpryDt",
    "StrkPric",
    "OptnTp",
    "OpnPric",
    "HghPric",
    "LwPric",
    "ClsPric",
    "SttlmPric",
    "OpnIntrst",
    "ChngInOpnIntrst",
    "TtlTradgVol",
    "TtlTrfVal",
)
_LAKH_PAISE = 100_000 * 100


def _req(v: int | None, fld: str, raw: object) -> int:
    if v is None:
        raise _Bad(fld, raw, "missing value")
    return v


def _legacy_row(r: dict[str, str]) -> BhavcopyRow:
    opt = r["OPTION_TYP"].strip().upper()
    val = _num(r["VAL_INLAKH"], "VAL_INLAKH")
    if val is not None and val < 0:
        raise _Bad("VAL_INLAKH", r["VAL_INLAKH"], "negative value")
    return BhavcopyRow(
        trade_date=_date(r["TIMESTAMP"], "TIMESTAMP"),
        instrument=r["INSTRUMENT"].strip().upper(),
        symbol=_symbol(r["SYMBOL"]),
        expiry=_date(r["EXPIRY_DT"], "EXPIRY_DT"),
        strike=_price(r["STRIKE_PR"], "STRIKE_PR") or 0,
        option_type="" if opt in ("XX", "", "FF") else opt,
        open=_req(_price(r["OPEN"], "OPEN"), "OPEN", r["OPEN"]),
        high=_req(_price(r["HIGH"], "HIGH"), "HIGH", r["HIGH"]),
        low=_req(_price(r["LOW"], "LOW"), "LOW", r["LOW"]),
        close=_req(_price(r["CLOSE"], "CLOSE"), "CLOSE", r["CLOSE"]),
        settle=_price(r["SETTLE_PR"], "SETTLE_PR") or 0,
        contracts=_whole(r["CONTRACTS"], "CONTRACTS") or 0,
        turnover=round((val or 0.0) * _LAKH_PAISE),
        oi=_whole(r["OPEN_INT"], "OPEN_INT") or 0,
        oi_change=_whole(r["CHG_IN_OI"], "CHG_IN_OI", signed=True) or 0,
    )


def _symbol(raw: str | None) -> str:
    s = (raw or "").strip().upper()
    if not s:
        raise _Bad("SYMBOL", raw, "missing symbol")
    return s


def _udiff_row(r: dict[str, str]) -> BhavcopyRow:
    tp = r["FinInstrmTp"].strip().upper()
    opt = r["OptnTp"].strip().upper()
    lot = _whole(r.get("NewBrdLotQty"), "NewBrdLotQty")
    if lot is not None and lot <= 0:
        raise _Bad("NewBrdLotQty", r.get("NewBrdLotQty"), "bad lot size")
    token = _whole(r.get("FinInstrmId"), "FinInstrmId")
    return BhavcopyRow(
        trade_date=_date(r["TradDt"], "TradDt"),
        instrument=_UDIFF_INSTRUMENTS.get(tp, tp),
        symbol=_symbol(r["TckrSymb"]),
        expiry=_date(r["XpryDt"], "XpryDt"),
        strike=_price(r["StrkPric"], "StrkPric") or 0,
        option_type=opt if opt in ("CE", "PE") else "",
        open=_req(_price(r["OpnPric"], "OpnPric"), "OpnPric", r["OpnPric"]),
        high=_req(_price(r["HghPric"], "HghPric"), "HghPric", r["HghPric"]),
        low=_req(_price(r["LwPric"], "LwPric"), "LwPric", r["LwPric"]),
        close=_req(_price(r["ClsPric"], "ClsPric"), "ClsPric", r["ClsPric"]),
        settle=_price(r["SttlmPric"], "SttlmPric") or 0,
        # verified on rows of real UDiFF files quoted publicly: TtlTrfVal = TtlTradgVol x
        # NewBrdLotQty x (strike + premium), so TtlTradgVol counts contracts, and
        # OpnIntrst is a multiple of the lot: shares (the same units as the legacy file)
        contracts=_whole(r["TtlTradgVol"], "TtlTradgVol") or 0,
        turnover=_price(r["TtlTrfVal"], "TtlTrfVal") or 0,
        oi=_whole(r["OpnIntrst"], "OpnIntrst") or 0,
        oi_change=_whole(r["ChngInOpnIntrst"], "ChngInOpnIntrst", signed=True) or 0,
        lot_size=lot,
        last=_price(r.get("LastPric"), "LastPric"),
        prev_close=_price(r.get("PrvsClsgPric"), "PrvsClsgPric"),
        underlying_price=_price(r.get("UndrlygPric"), "UndrlygPric"),
        trades=_whole(r.get("TtlNbOfTxsExctd"), "TtlNbOfTxsExctd"),
        token=token,
        trading_symbol=(r.get("FinInstrmNm") or "").strip() or None,
    )


def parse_bhavcopy(data: bytes | str, *, name: str = "<data>") -> BhavcopyImport:
    """Parse an NSE F&O bhavcopy CSV, legacy (``INSTRUMENT,SYMBOL,EXPIRY_DT,…``, with or
    without a leading index column) or UDiFF (``TradDt,BizDt,…,NewBrdLotQty,…``).

    Bad rows are skipped and listed in ``skipped``; a file that is not a bhavcopy raises
    :class:`ParseError`.
    """
    text = _text(data, name).lstrip()
    if not text:
        raise ParseError(f"{name}: empty file")
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    if set(_LEGACY_REQUIRED) <= set(header):
        fmt, parse_row = "legacy", _legacy_row
    elif set(_UDIFF_REQUIRED) <= set(header):
        fmt, parse_row = "udiff", _udiff_row
    else:
        want_l = [c for c in _LEGACY_REQUIRED if c not in header]
        want_u = [c for c in _UDIFF_REQUIRED if c not in header]
        raise ParseError(
            f"{name}: not an F&O bhavcopy: missing legacy columns {want_l[:5]} "
            f"or UDiFF columns {want_u[:5]}"
        )
    rows: list[BhavcopyRow] = []
    skipped: list[SkippedRow] = []
    seen: set[tuple[str, str, dt.date, int, str]] = set()
    for n, r in enumerate(reader, start=2):
        where = f"line {n}"
        if None in r or any(v is None for v in r.values()):
            skipped.append(SkippedRow(where, "row", str(len(r)), "wrong number of cells"))
            continue
        try:
            row = parse_row(r)
            if row.high < row.low:
                raise _Bad("HIGH", row.high / 100, "high below low")
        except _Bad as b:
            skipped.append(SkippedRow(where, b.field, repr(b.value), b.reason))
            continue
        key = (row.instrument, row.symbol, row.expiry, row.strike, row.option_type)
        if key in seen:
            skipped.append(SkippedRow(where, "contract", str(key[1:]), "duplicate contract"))
            continue
        seen.add(key)
        rows.append(row)
    if not rows:
        raise ParseError(f"{name}: no valid rows (skipped: {_count(skipped) or 'none'})")
    return BhavcopyImport(name=name, format=fmt, rows=tuple(rows), skipped=tuple(skipped))


def load_bhavcopy(path: str | Path) -> list[BhavcopyRow]:
    """Read an F&O bhavcopy CSV (legacy or UDiFF, gzip accepted) into typed rows; skipped
    rows are logged, one warning per reason (use :func:`parse_bhavcopy` to get them)."""
    imp = parse_bhavcopy(_read(path), name=str(path))
    _log_skips(str(path), imp.skipped)
    return list(imp.rows)


def _turnover_lot_range(r: BhavcopyRow) -> tuple[float, float] | None:
    """Lot sizes consistent with a traded row's value: value = contracts x lot x price with
    the average price in [low, high] (options: strike + premium). The legacy file gives the
    value in lakh with two decimals, truncated rather than rounded (seen in the 2019 file),
    hence a slack of one unit (₹1,000) either way."""
    if r.contracts <= 0 or r.turnover <= 0 or r.high <= 0:
        return None
    base = r.strike if r.is_option else 0
    slack = 1000 * 100
    lo_price, hi_price = base + r.low, base + r.high
    if lo_price <= 0:
        return None
    return (
        (r.turnover - slack) / (r.contracts * hi_price),
        (r.turnover + slack) / (r.contracts * lo_price),
    )


def infer_lot_sizes(rows: Iterable[BhavcopyRow]) -> dict[str, int]:
    """Lot size per symbol from a bhavcopy: the file's own (UDiFF) when present, else the
    divisor of the GCD of all OI and change-in-OI values (shares, so multiples of the lot)
    that fits every traded row's value; symbols where this is ambiguous are left out."""
    by_symbol: dict[str, list[BhavcopyRow]] = {}
    for r in rows:
        by_symbol.setdefault(r.symbol, []).append(r)
    out: dict[str, int] = {}
    for sym, rs in by_symbol.items():
        stated = {r.lot_size for r in rs if r.lot_size}
        if len(stated) == 1:
            out[sym] = stated.pop()
            continue
        g, n = _gcd(v for r in rs for v in (r.oi, r.oi_change))
        lo, hi = 0.0, math.inf
        for r in rs:
            rng = _turnover_lot_range(r)
            if rng:
                lo, hi = max(lo, rng[0]), min(hi, rng[1])
        if g:
            fits = [d for d in range(1, g + 1) if g % d == 0 and lo <= d <= hi]
            if hi == math.inf:  # no traded row: trust a well-sampled GCD only
                if n >= MIN_QUANTITIES_TO_INFER:
                    out[sym] = g
            elif len(fits) == 1:
                out[sym] = fits[0]
        elif hi < math.inf and math.floor(hi) == math.ceil(lo):
            out[sym] = math.floor(hi)
    return out


def bhavcopy_chain(
    rows: Iterable[BhavcopyRow],
    symbol: str,
    expiry: dt.date | str,
    *,
    lot_size: int | None = None,
    underlying_price: UnderlyingPrice = None,
    as_of: AsOf = None,
    name: str = "bhavcopy",
) -> ChainSnapshot:
    """The end-of-day option chain of one (symbol, expiry) from bhavcopy rows.

    ``ltp`` is the published close price (for an untraded contract NSE repeats its previous
    close), bid/ask are absent (0), ``volume`` = contracts x lot, OI in shares as published,
    ``iv`` NaN. ``ts_event`` is 15:30 IST of the trade date unless ``as_of`` is given. The
    underlying price is the UDiFF ``UndrlygPric``; the legacy format has none, so pass
    ``underlying_price`` (paise) or ``"parity"``. Lot size: ``lot_size``, else the file's,
    else :data:`LOT_SIZE_RULES`, else :func:`infer_lot_sizes`.
    """
    exp = _expiry_arg(expiry, name)
    if exp is None:
        raise ParseError(f"{name}: bhavcopy_chain needs an expiry")
    sym = symbol.strip().upper()
    _check_opts(name, lot_size, underlying_price)
    all_rows = list(rows)
    opts = [r for r in all_rows if r.is_option and r.symbol == sym and r.expiry == exp]
    if not opts:
        have = sorted({str(r.expiry) for r in all_rows if r.is_option and r.symbol == sym})
        raise ParseError(
            f"{name}: no {sym} options expiring {exp} (expiries: {', '.join(have) or 'none'})"
        )
    trade_dates = {r.trade_date for r in opts}
    if len(trade_dates) > 1:
        raise ParseError(f"{name}: rows of several trade dates {sorted(trade_dates)}")
    day = trade_dates.pop()
    ts_event = _as_of_ns(as_of, name) or ist_ns(day, dt.time(15, 30))
    stated = {r.lot_size for r in opts if r.lot_size}
    lot = (
        lot_size
        or (stated.pop() if len(stated) == 1 else None)
        or default_lot_size(sym, exp, day)
        or infer_lot_sizes(r for r in all_rows if r.symbol == sym).get(sym)
    )
    if not lot:
        raise ParseError(f"{name}: lot size of {sym} on {day} unknown; pass lot_size=")
    col = _Collector(name)
    for r in opts:
        side = _Side(
            ltp=r.close,
            volume_lots=float(r.contracts),
            oi_lots=r.oi / lot,
            oi_change_lots=r.oi_change / lot,
            token=r.token or 0,
            symbol=r.trading_symbol or f"{sym} {exp} {r.strike / 100:g} {r.option_type}",
        )
        col.add(exp, r.strike, r.option_type == "CE", side, f"{sym} {r.strike / 100:g}", ())
    price: UnderlyingPrice = underlying_price
    from_file = {r.underlying_price for r in opts if r.underlying_price}
    if from_file:
        if len(from_file) > 1:
            raise ParseError(
                f"{name}: {sym} rows disagree on UndrlygPric: {sorted(p / 100 for p in from_file)}"
            )
        price = from_file.pop()
    udiff = any(r.lot_size for r in opts)
    imp = _finish(
        col,
        "bhavcopy",
        underlying=sym,
        exchange="NSE",
        ts_event=ts_event,
        underlying_price=price,
        lot_size=lot,
        expiry=exp,
        source="nse-bhavcopy-udiff" if udiff else "nse-bhavcopy",
    )
    return imp.snapshots[0]
