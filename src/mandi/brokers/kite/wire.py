"""Kite Connect v3 REST payloads ↔ mandi values: pure functions, no I/O.

* errors: Kite's ``error_type`` → mandi's exception tree (:mod:`mandi.core.errors`);
* orders: an :class:`~mandi.execution.ports.OrderRequest` → the form of ``POST /orders/regular``
  (mandi's client order id travels in Kite's ``tag``), Kite's order/trade JSON → the port's
  :class:`~mandi.execution.ports.BrokerOrderReport` / :class:`BrokerFill`;
* instruments: the instrument dump CSV → mandi instruments (indices renamed to the symbols the
  option chains use, F&O keyed by the parent exchange as everywhere in mandi, NSE freeze
  quantities merged);
* history: ``/instruments/historical`` candles → :class:`~mandi.model.market.Candle`\\ s, and
  the per-request span limits of each interval.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Iterable, Mapping
from typing import Any

from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import (
    BrokerError,
    BrokerInputError,
    BrokerNetworkError,
    BrokerOrderError,
    BrokerRateLimitError,
    BrokerSessionError,
    ParseError,
)
from mandi.core.money import to_paise
from mandi.execution.ports import BrokerFill, BrokerOrderReport, OrderRequest
from mandi.model.instruments import AnyInstrument, Future, Index, Instrument, Option
from mandi.model.market import Candle
from mandi.model.orders import OrderStatus

S = OrderStatus
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))

# --- errors ------------------------------------------------------------------------------------
ERROR_TYPES: dict[str, type[BrokerError]] = {
    "TokenException": BrokerSessionError,
    "PermissionException": BrokerSessionError,
    "UserException": BrokerSessionError,
    "TwoFAException": BrokerSessionError,
    "InputException": BrokerInputError,
    "OrderException": BrokerOrderError,
    "MarginException": BrokerOrderError,
    "HoldingException": BrokerOrderError,
    "NetworkException": BrokerNetworkError,
    "DataException": BrokerNetworkError,
    "GeneralException": BrokerNetworkError,
}


def error_for(status: int, body: Any, what: str) -> BrokerError:
    """The mandi exception for a Kite error answer (``status`` HTTP code, ``body`` its JSON)."""
    kind = message = ""
    if isinstance(body, Mapping):
        kind = str(body.get("error_type") or "")
        message = str(body.get("message") or "")
    if status == 429:
        return BrokerRateLimitError(f"Kite {what}: too many requests (HTTP 429)", kind, status)
    cls = ERROR_TYPES.get(kind)
    if cls is None:
        cls = (
            BrokerSessionError
            if status == 403
            else BrokerInputError
            if status == 400
            else BrokerNetworkError
        )
    text = message or f"HTTP {status}"
    return cls(f"Kite {what}: {kind + ': ' if kind else ''}{text}", kind, status)


# --- login -------------------------------------------------------------------------------------
def checksum(api_key: str, request_token: str, api_secret: str) -> str:
    """SHA-256 hex of api_key + request_token + api_secret (``POST /session/token``)."""
    return hashlib.sha256((api_key + request_token + api_secret).encode()).hexdigest()


def token_expiry_ns(login_ns: int) -> int:
    """Kite access tokens expire at 06:00 IST the day after the login (a login before 06:00
    lasts until 06:00 the same day)."""
    t = dt.datetime.fromtimestamp(login_ns / NS_PER_SECOND, IST)
    six = t.replace(hour=6, minute=0, second=0, microsecond=0)
    if t >= six:
        six += dt.timedelta(days=1)
    return int(six.timestamp()) * NS_PER_SECOND


# --- orders ------------------------------------------------------------------------------------
def kite_tag(client_order_id: str) -> str:
    """The 20-character alphanumeric Kite ``tag`` that names a mandi order: "m" and the first 19
    hex digits of its id (76 bits; ids are UUIDs)."""
    return "m" + client_order_id.replace("-", "")[:19]


def kite_exchange(inst: Instrument) -> str:
    """The exchange Kite orders name: the segment's prefix (NFO, BFO, NSE, BSE, MCX...)."""
    seg = inst.segment.split("-")[0] if inst.segment else ""
    return seg if seg and seg != "INDICES" else inst.exchange


def rupees(paise: int) -> str:
    return f"{paise // 100}.{paise % 100:02d}"


def order_params(req: OrderRequest, exchange: str, tag: str) -> dict[str, str]:
    """The form of ``POST /orders/regular`` for ``req``."""
    p = {
        "tradingsymbol": req.symbol,
        "exchange": exchange,
        "transaction_type": str(req.side.value),
        "order_type": str(req.order_type.value),
        "quantity": str(req.quantity),
        "product": str(req.product.value),
        "validity": "DAY",
        "tag": tag,
    }
    if req.order_type.value == "LIMIT":
        p["price"] = rupees(req.limit_price)
    return p


def order_status(kite_status: str, filled: int, quantity: int) -> OrderStatus:
    """Kite's order status → mandi's. Kite's transient states (``PUT ORDER REQ RECEIVED``,
    ``VALIDATION PENDING``, ``OPEN PENDING``, ``MODIFY ...``, ``TRIGGER PENDING``) are working
    orders: ACKED, or PARTIALLY_FILLED once something filled."""
    s = kite_status.upper()
    if s == "COMPLETE":
        return S.FILLED
    if s == "REJECTED":
        return S.REJECTED
    if s == "CANCELLED":
        return S.CANCELLED
    return S.PARTIALLY_FILLED if 0 < filled < quantity else S.ACKED


def _ts_ns(text: Any) -> int:
    """Kite's "YYYY-MM-DD HH:MM:SS" (IST) → ns UTC; 0 when absent."""
    if not text:
        return 0
    try:
        d = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return 0
    if d.tzinfo is None:
        d = d.replace(tzinfo=IST)
    return int(d.timestamp()) * NS_PER_SECOND


def trade_fill(client_order_id: str, trade: Mapping[str, Any]) -> BrokerFill:
    """One Kite trade (``/orders/{id}/trades``) → a fill; the trade id is the fill id."""
    ts = _ts_ns(trade.get("fill_timestamp") or trade.get("exchange_timestamp"))
    return BrokerFill(
        client_order_id,
        f"kite-{trade['trade_id']}",
        int(trade["quantity"]),
        to_paise(trade["average_price"]),
        ts,
    )


def order_report(
    client_order_id: str, order: Mapping[str, Any], trades: Iterable[Mapping[str, Any]] = ()
) -> BrokerOrderReport:
    """Kite's order JSON (and its trades) → the port's report."""
    qty = int(order.get("quantity") or 0)
    filled = int(order.get("filled_quantity") or 0)
    fills = tuple(trade_fill(client_order_id, t) for t in trades)
    status = order_status(str(order.get("status") or ""), filled, qty)
    return BrokerOrderReport(
        client_order_id,
        status,
        qty,
        filled,
        fills,
        str(order.get("order_id") or ""),
        str(order.get("status_message") or "") if status in (S.REJECTED, S.CANCELLED) else "",
    )


# --- instruments -------------------------------------------------------------------------------
#: Kite's index trading symbols → the names mandi (and Kite's option contracts) use
INDEX_SYMBOLS = {
    "NIFTY 50": "NIFTY",
    "NIFTY BANK": "BANKNIFTY",
    "NIFTY FIN SERVICE": "FINNIFTY",
    "NIFTY MID SELECT": "MIDCPNIFTY",
    "NIFTY NEXT 50": "NIFTYNXT50",
    "SENSEX": "SENSEX",
    "BANKEX": "BANKEX",
}
KITE_INDEX_SYMBOLS = {v: k for k, v in INDEX_SYMBOLS.items()}
_UNDERLYING = re.compile(r"^([A-Z&\-]+?)\d")
_PARENT = {"NFO": "NSE", "BFO": "BSE", "CDS": "NSE", "BCD": "BSE"}


def parse_freeze_csv(text: str) -> dict[str, int]:
    """NSE's quantity-freeze file (columns ``SYMBOL`` and ``VOL_FRZ_QTY``, any case and
    spacing) → {underlying: freeze quantity in shares}."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return {}
    head = [h.strip().upper() for h in rows[0]]
    try:
        i_sym, i_qty = head.index("SYMBOL"), head.index("VOL_FRZ_QTY")
    except ValueError:
        raise ParseError(
            f"freeze file: expected the columns SYMBOL and VOL_FRZ_QTY, found {head}"
        ) from None
    out: dict[str, int] = {}
    for n, r in enumerate(rows[1:], start=2):
        if len(r) <= max(i_sym, i_qty) or not r[i_sym].strip():
            continue
        try:
            out[r[i_sym].strip().upper()] = int(float(r[i_qty].strip().replace(",", "")))
        except ValueError:
            raise ParseError(f"freeze file line {n}: bad VOL_FRZ_QTY {r[i_qty]!r}") from None
    return out


def parse_instruments(
    text: str, freeze: Mapping[str, int] | None = None, exchanges: Iterable[str] | None = None
) -> list[AnyInstrument]:
    """Kite's instrument dump → mandi instruments (see the module docstring). ``exchanges``
    keeps only those Kite exchanges (e.g. NSE, NFO, BSE, BFO)."""
    from mandi.model.instruments import _row_to_instrument

    keep = {e.upper() for e in exchanges} if exchanges else None
    fz = dict(freeze or {})
    out: list[AnyInstrument] = []
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "instrument_token" not in reader.fieldnames:
        raise ParseError("Kite instrument dump: no instrument_token column (not a dump?)")
    for n, row in enumerate(reader, start=2):
        kite_ex = (row.get("exchange") or "").strip().upper()
        if keep is not None and kite_ex not in keep:
            continue
        row = dict(row)
        row["exchange"] = _PARENT.get(kite_ex, kite_ex)
        kind = (row.get("instrument_type") or "").strip().upper()
        if kind in ("CE", "PE", "FUT") and not (row.get("name") or "").strip():
            # older dumps leave the name of F&O contracts empty: the symbol starts with it
            m = _UNDERLYING.match((row.get("tradingsymbol") or "").strip())
            row["name"] = m.group(1) if m else ""
        if (row.get("segment") or "").strip() == "INDICES":
            row["instrument_type"] = "INDEX"
            sym = (row.get("tradingsymbol") or "").strip()
            row["name"] = sym
            row["tradingsymbol"] = INDEX_SYMBOLS.get(sym, sym)
        inst = _row_to_instrument(row, n)
        if isinstance(inst, Option | Future) and not inst.freeze_qty:
            q = fz.get(inst.underlying.upper())
            if q:
                import msgspec

                inst = msgspec.structs.replace(inst, freeze_qty=q)
        out.append(inst)
    return out


def instrument_dump(instruments: Iterable[AnyInstrument]) -> str:
    """mandi instruments → a Kite-format dump (what the fake serves; the inverse of
    :func:`parse_instruments` for the fields Kite has)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "instrument_token",
            "exchange_token",
            "tradingsymbol",
            "name",
            "last_price",
            "expiry",
            "strike",
            "tick_size",
            "lot_size",
            "instrument_type",
            "segment",
            "exchange",
        ]
    )
    for i in instruments:
        kind, expiry, strike, name = "EQ", "", "0.0", i.name
        exchange = i.exchange
        sym = i.symbol
        if isinstance(i, Option):
            kind, strike, name = i.option_type, f"{i.strike / 100:g}", i.underlying
        elif isinstance(i, Future):
            kind, name = "FUT", i.underlying
        if isinstance(i, Option | Future):
            expiry = i.expiry.isoformat() if i.expiry else ""
            exchange = i.segment.split("-")[0] if i.segment else exchange
        if isinstance(i, Index):
            sym = KITE_INDEX_SYMBOLS.get(i.symbol, i.symbol)
            name = sym
        w.writerow(
            [
                i.token,
                i.token >> 8,
                sym,
                name,
                "0.0",
                expiry,
                strike,
                f"{i.tick_size / 100:g}",
                i.lot_size,
                kind,
                i.segment,
                exchange,
            ]
        )
    return buf.getvalue()


# --- history -----------------------------------------------------------------------------------
#: the longest span (days) one historical request may cover, per interval (Kite's limits)
INTERVAL_MAX_DAYS = {
    "minute": 60,
    "3minute": 100,
    "5minute": 100,
    "10minute": 100,
    "15minute": 200,
    "30minute": 200,
    "60minute": 400,
    "day": 2000,
}
INTERVAL_SECONDS = {
    "minute": 60,
    "3minute": 180,
    "5minute": 300,
    "10minute": 600,
    "15minute": 900,
    "30minute": 1800,
    "60minute": 3600,
    "day": 86400,
}


def history_windows(start: dt.date, end: dt.date, interval: str) -> list[tuple[dt.date, dt.date]]:
    """[start, end] cut into spans a single request may ask for (inclusive day ranges)."""
    if interval not in INTERVAL_MAX_DAYS:
        raise ValueError(f"interval {interval!r}: use one of {', '.join(INTERVAL_MAX_DAYS)}")
    from mandi.brokers.history import windows

    return windows(start, end, INTERVAL_MAX_DAYS[interval])


def parse_candles(rows: Iterable[Any], token: int, exchange: str, interval: str) -> list[Candle]:
    """``data.candles`` rows ``[time, open, high, low, close, volume(, oi)]`` → closed
    candles (prices in paise, bucket = the row's time in ns UTC)."""
    tf = INTERVAL_SECONDS[interval]
    out = []
    for n, r in enumerate(rows):
        try:
            ts = _ts_ns(r[0])
            if not ts:
                raise ValueError(f"time {r[0]!r}")
            out.append(
                Candle(
                    token,
                    exchange,
                    tf,
                    ts,
                    to_paise(r[1]),
                    to_paise(r[2]),
                    to_paise(r[3]),
                    to_paise(r[4]),
                    int(r[5]),
                    int(r[6]) if len(r) > 6 else 0,
                    0,
                    True,
                )
            )
        except (ValueError, TypeError, IndexError) as e:
            raise ParseError(f"Kite candle row {n}: {e} in {r!r}") from None
    return out
