"""Groww's trading API payloads ↔ mandi values: pure functions, no I/O.

* **Tokens.** Groww names an instrument by (exchange, segment, ``exchange_token``); the same
  digits name different instruments on NSE and BSE, in CASH and FNO. mandi's token is
  ``int(exchange_token) << 8 | code`` with the segment code of :data:`SEGMENT_CODE` (1 NSE cash,
  2 NSE F&O, 3 BSE cash, 4 BSE F&O). NSE's indices have symbolic exchange tokens (``NIFTY``,
  ``BANKNIFTY``): their token is a CRC-32 of the text with bit 7 of the code set
  (:func:`mandi_token`); :func:`feed_key` gives the exchange token back from the instrument.
* **Errors.** Groww answers ``{"status": "FAILURE", "error": {"code": "GA001", "message"}}``
  (:func:`error_for`): HTTP 401/403 end the session; GA001 (bad request) and GA005 (not
  authorised for this operation) reject; GA004/GA006 are order errors; GA000/GA003 and 5xx
  leave an order's outcome unknown, as does GA007 (a duplicate order reference: an order with
  this tag exists — reconciliation finds it, nothing is re-sent); 429 is a rate limit.
* **Orders.** mandi's client order id travels in ``order_reference_id`` (8-20 alphanumerics);
  ``order_status`` (NEW, ACKED, OPEN, TRIGGER_PENDING, APPROVED, EXECUTED, DELIVERY_AWAITED,
  COMPLETED, REJECTED, FAILED, CANCELLED, ...) maps onto the port; fills are the order's trades
  (``groww_trade_id``).
* **Instruments** (``instrument.csv``): prices in rupees, expiries ``YYYY-MM-DD``; indices are
  ``IDX`` rows whose exchange token is their symbol on NSE. Two NSE indices carry another name
  than their options' underlying (:data:`INDEX_NAMES`); mandi uses the options' name.
* **History** (``/v1/historical/candles``): ``[time, o, h, l, c, volume, oi]`` rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import math
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

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
from mandi.model.instruments import AnyInstrument, Equity, Future, Index, Option
from mandi.model.market import Candle
from mandi.model.orders import OrderStatus

S = OrderStatus
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))

# --- tokens --------------------------------------------------------------------------------------
#: (exchange, segment) → the low byte of mandi's token
SEGMENT_CODE = {("NSE", "CASH"): 1, ("NSE", "FNO"): 2, ("BSE", "CASH"): 3, ("BSE", "FNO"): 4}
SEGMENT_OF_CODE = {v: k for k, v in SEGMENT_CODE.items()}
SYMBOLIC = 0x80  # the code's bit for an exchange token that is not a number
#: mandi's segment names (config ``exchanges``) of Groww's (exchange, segment)
MANDI_SEGMENT = {("NSE", "CASH"): "NSE", ("NSE", "FNO"): "NFO", ("BSE", "CASH"): "BSE",
                 ("BSE", "FNO"): "BFO"}  # fmt: skip
#: Groww's symbol of an NSE index → the underlying name its options (and mandi's chains) use
INDEX_NAMES = {"NIFTYJR": "NIFTYNXT50", "NIFTYMIDSELECT": "MIDCPNIFTY"}
_INDEX_TOKEN_OF = {v: k for k, v in INDEX_NAMES.items()}


def mandi_token(exchange: str, segment: str, exchange_token: str) -> int:
    code = SEGMENT_CODE.get((exchange, segment))
    if code is None:
        raise ParseError(f"Groww: exchange {exchange!r} segment {segment!r} is not supported")
    t = exchange_token.strip()
    if t.isdigit():
        return int(t) << 8 | code
    if not t:
        raise ParseError("Groww: empty exchange token")
    return zlib.crc32(t.encode()) << 8 | code | SYMBOLIC


class FeedKey(NamedTuple):
    """Where an instrument's live data comes from: Groww's (exchange, segment, exchange token)
    and the kind of its topics (``index``, ``eq`` or ``fo``)."""

    exchange: str
    segment: str
    exchange_token: str
    kind: str


def feed_key(inst: AnyInstrument) -> FeedKey:
    code = inst.token & 0x7F
    exchange, segment = SEGMENT_OF_CODE[code]
    if inst.token & SYMBOLIC:
        tok = _INDEX_TOKEN_OF.get(inst.symbol, inst.symbol)
    else:
        tok = str(inst.token >> 8)
    kind = "index" if isinstance(inst, Index) else "fo" if segment == "FNO" else "eq"
    return FeedKey(exchange, segment, tok, kind)


def topics(key: FeedKey, mode: str) -> list[tuple[str, str]]:
    """(subject, what) pairs of an instrument in ``mode``: ``price`` always (an index's value
    for an index), ``book`` (the five best bids and offers) in ``full`` mode."""
    ex = key.exchange.lower()
    if key.kind == "index":
        return [(f"/ld/indices/{ex}/price.{key.exchange_token}", "index")]
    out = [(f"/ld/{key.kind}/{ex}/price.{key.exchange_token}", "price")]
    if mode == "full":
        out.append((f"/ld/{key.kind}/{ex}/book.{key.exchange_token}", "book"))
    return out


def order_topics(subscription_id: str) -> list[str]:
    """The order-update subjects of a socket subscription (F&O, then equity)."""
    return [
        f"stocks_fo/order/updates.apex.{subscription_id}",
        f"stocks/order/updates.apex.{subscription_id}",
    ]


# --- errors --------------------------------------------------------------------------------------
_CODES: dict[str, type[BrokerError]] = {
    "GA000": BrokerNetworkError,
    "GA001": BrokerInputError,
    "GA003": BrokerNetworkError,
    "GA004": BrokerOrderError,
    "GA005": BrokerInputError,
    "GA006": BrokerOrderError,
    "GA007": BrokerNetworkError,  # duplicate reference: the order exists; reconcile, never resend
}


def error_for(status: int, body: Any, what: str) -> BrokerError:
    """The mandi exception for a Groww error answer (HTTP ``status``, ``body`` its JSON)."""
    code = message = ""
    if isinstance(body, Mapping):
        e = body.get("error")
        if isinstance(e, Mapping):
            code = str(e.get("code") or "")
            message = str(e.get("message") or e.get("displayMessage") or "")
    if status == 429:
        return BrokerRateLimitError(f"Groww {what}: too many requests", code or "429", status)
    if status in (401, 403):
        cls: type[BrokerError] = BrokerSessionError
    else:
        cls = _CODES.get(code) or (BrokerInputError if 400 <= status < 500 else BrokerNetworkError)
    text = message or f"HTTP {status}"
    return cls(f"Groww {what}: {code + ': ' if code else ''}{text}", code, status)


# --- login ---------------------------------------------------------------------------------------
def checksum(secret: str, timestamp: int) -> str:
    """The approval flow's checksum: SHA-256 of the API secret and the epoch seconds."""
    return hashlib.sha256(f"{secret}{timestamp}".encode()).hexdigest()


def next_six_ist(now_ns: int) -> int:
    """06:00 IST after ``now_ns``: when Groww's access tokens end."""
    t = dt.datetime.fromtimestamp(now_ns / NS_PER_SECOND, IST)
    six = t.replace(hour=6, minute=0, second=0, microsecond=0)
    if t >= six:
        six += dt.timedelta(days=1)
    return int(six.timestamp()) * NS_PER_SECOND


def token_expiry_ns(doc: Mapping[str, Any], now_ns: int) -> int:
    """When a minted token ends: its ``expiry`` (ISO, IST when naive), else 06:00 IST next."""
    text = str(doc.get("expiry") or "").strip()
    if text:
        try:
            d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if d.tzinfo is None:
                d = d.replace(tzinfo=IST)
            return int(d.timestamp()) * NS_PER_SECOND
        except ValueError:
            pass
    return next_six_ist(now_ns)


# --- orders --------------------------------------------------------------------------------------
def groww_tag(client_order_id: str) -> str:
    """The ``order_reference_id`` (8-20 alphanumerics) that names a mandi order: "m" and the
    first 19 hex digits of its id (76 bits; ids are UUIDs) — of a hash of it for any other id."""
    h = client_order_id.replace("-", "")
    if len(h) < 19 or not h.isalnum() or not h.isascii():
        h = hashlib.sha256(client_order_id.encode()).hexdigest()
    return "m" + h[:19]


def order_params(req: OrderRequest, inst: AnyInstrument, tag: str) -> dict[str, Any]:
    """The body of ``/v1/order/create`` for ``req`` (prices in rupees)."""
    exchange, segment = SEGMENT_OF_CODE[inst.token & 0x7F]
    limit = req.order_type.value == "LIMIT"
    return {
        "trading_symbol": inst.symbol,
        "quantity": req.quantity,
        "price": req.limit_price / 100 if limit else 0,
        "trigger_price": None,
        "validity": "DAY",
        "exchange": exchange,
        "segment": segment,
        "product": str(req.product.value),
        "order_type": "LIMIT" if limit else "MARKET",
        "transaction_type": str(req.side.value),
        "order_reference_id": tag,
    }


_DONE = ("EXECUTED", "DELIVERY_AWAITED", "COMPLETED", "COMPLETE")


def order_status(groww_status: str, filled: int, quantity: int) -> OrderStatus:
    """Groww's ``order_status`` → mandi's: executed (or delivery awaited, completed) with
    everything filled → FILLED; REJECTED/FAILED; CANCELLED; every other state (NEW, ACKED, OPEN,
    APPROVED, TRIGGER_PENDING, MODIFICATION_REQUESTED, CANCELLATION_REQUESTED ...) is a working
    order."""
    s = groww_status.strip().upper()
    if s in _DONE and filled >= quantity > 0:
        return S.FILLED
    if s in ("REJECTED", "FAILED"):
        return S.REJECTED
    if s == "CANCELLED":
        return S.CANCELLED
    return S.PARTIALLY_FILLED if 0 < filled < quantity else S.ACKED


def _ist_ns(text: Any) -> int:
    """Groww times → ns UTC: ISO ``2025-09-24T10:30:00`` or ``2025-09-24 10:30:00`` (IST when
    naive), or epoch seconds."""
    if text is None or text == "":
        return 0
    if isinstance(text, int | float):
        return int(text) * NS_PER_SECOND
    t = str(text).strip()
    if t.isdigit():
        return int(t) * NS_PER_SECOND
    try:
        d = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        return 0
    if d.tzinfo is None:
        d = d.replace(tzinfo=IST)
    return int(d.timestamp() * NS_PER_SECOND)


def trade_fill(client_order_id: str, trade: Mapping[str, Any]) -> BrokerFill:
    """One trade of an order → a fill; the fill id is the trade's ``groww_trade_id``."""
    return BrokerFill(
        client_order_id,
        f"groww-{trade['groww_trade_id']}",
        int(trade["quantity"]),
        to_paise(trade["price"]),
        _ist_ns(trade.get("trade_date_time") or trade.get("created_at")),
    )


def order_report(
    client_order_id: str, order: Mapping[str, Any], trades: Iterable[Mapping[str, Any]] = ()
) -> BrokerOrderReport:
    qty = int(order.get("quantity") or 0)
    filled = int(order.get("filled_quantity") or 0)
    status = order_status(str(order.get("order_status") or ""), filled, qty)
    return BrokerOrderReport(
        client_order_id,
        status,
        qty,
        filled,
        tuple(trade_fill(client_order_id, t) for t in trades),
        str(order.get("groww_order_id") or ""),
        str(order.get("remark") or "") if status in (S.REJECTED, S.CANCELLED) else "",
    )


# --- the instrument master ------------------------------------------------------------------------
CSV_COLUMNS = (
    "exchange", "exchange_token", "trading_symbol", "groww_symbol", "name", "instrument_type",
    "segment", "series", "isin", "underlying_symbol", "underlying_exchange_token", "expiry_date",
    "strike_price", "lot_size", "tick_size", "freeze_quantity", "is_reserved", "buy_allowed",
    "sell_allowed", "internal_trading_symbol", "is_intraday",
)  # fmt: skip


def _paise(text: str) -> int:
    return round(float(text) * 100) if text else 0


def parse_instruments(text: str, exchanges: Iterable[str] | None = None) -> list[AnyInstrument]:
    """``instrument.csv`` → mandi instruments. ``exchanges`` keeps only those of mandi's
    segments (NSE, NFO, BSE, BFO). Groww's ``freeze_quantity`` is the first quantity refused
    (NSE's limit + 1); mandi's ``freeze_qty`` is the largest allowed."""
    keep = {e.upper() for e in exchanges} if exchanges else None
    reader = csv.DictReader(io.StringIO(text))
    missing = {"exchange", "exchange_token", "trading_symbol", "instrument_type", "segment"} - set(
        reader.fieldnames or ()
    )
    if missing:
        raise ParseError(f"Groww instrument CSV: no column {', '.join(sorted(missing))}")
    out: list[AnyInstrument] = []
    seen: dict[int, str] = {}
    for n, r in enumerate(reader, start=2):
        try:
            ex, seg = (r["exchange"] or "").upper(), (r["segment"] or "").upper()
            mseg = MANDI_SEGMENT.get((ex, seg))
            kind = (r["instrument_type"] or "").upper()
            if mseg is None or (keep is not None and mseg not in keep):
                continue
            token = mandi_token(ex, seg, r["exchange_token"] or "")
            sym = r["trading_symbol"] or ""
            if kind == "IDX":  # an index named by its token is subscribed by that name
                sym = (r["exchange_token"] or "").strip() if token & SYMBOLIC else sym
                sym = INDEX_NAMES.get(sym, sym)
            if token in seen and seen[token] != sym:
                raise ParseError(f"token {token} of {sym} is also {seen[token]}'s")
            seen[token] = sym
            freeze = int(float(r.get("freeze_quantity") or 0))
            common: dict[str, Any] = {
                "token": token,
                "exchange": ex,
                "symbol": sym,
                "name": r.get("name") or "",
                "lot_size": max(int(float(r.get("lot_size") or 1)), 1),
                "tick_size": _paise(r.get("tick_size") or "") or 5,
                "freeze_qty": max(freeze - 1, 0),
            }
            expiry = r.get("expiry_date") or ""
            if kind in ("CE", "PE"):
                out.append(
                    Option(
                        **common,
                        segment=f"{mseg}-OPT",
                        underlying=r.get("underlying_symbol") or "",
                        expiry=dt.date.fromisoformat(expiry) if expiry else None,
                        strike=_paise(r.get("strike_price") or ""),
                        option_type=kind,
                    )
                )
            elif kind == "FUT":
                out.append(
                    Future(
                        **common,
                        segment=f"{mseg}-FUT",
                        underlying=r.get("underlying_symbol") or "",
                        expiry=dt.date.fromisoformat(expiry) if expiry else None,
                    )
                )
            elif kind == "IDX":
                out.append(Index(**{**common, "lot_size": 1, "freeze_qty": 0}, segment="INDICES"))
            elif kind == "EQ":
                out.append(Equity(**common, segment=mseg))
        except (KeyError, ValueError, TypeError) as e:
            raise ParseError(f"Groww instrument CSV line {n}: {e} in {dict(r)!r}") from None
    return out


def groww_symbol(inst: AnyInstrument) -> str:
    """Groww's own name of an instrument (``NSE-NIFTY``, ``NSE-NIFTY-30Sep25-24650-CE``,
    ``NSE-NIFTY-30Sep25-FUT``): what the candle API asks for."""
    ex = SEGMENT_OF_CODE[inst.token & 0x7F][0]
    if isinstance(inst, Option | Future) and inst.expiry is not None:
        day = inst.expiry.strftime("%d%b%y")
        if isinstance(inst, Option):
            return f"{ex}-{inst.underlying}-{day}-{inst.strike / 100:g}-{inst.option_type}"
        return f"{ex}-{inst.underlying}-{day}-FUT"
    return f"{ex}-{_INDEX_TOKEN_OF.get(inst.symbol, inst.symbol)}"


def instrument_csv(instruments: Iterable[AnyInstrument]) -> str:
    """mandi instruments → ``instrument.csv`` (what the fake serves; the inverse of
    :func:`parse_instruments` for the fields Groww has)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for i in instruments:
        key = feed_key(i)
        kind, underlying, expiry, strike, series = "EQ", "", "", "", "EQ"
        if isinstance(i, Option):
            kind, underlying, strike = i.option_type, i.underlying, f"{i.strike / 100:g}"
        elif isinstance(i, Future):
            kind, underlying, strike = "FUT", i.underlying, "-0.01"
        elif isinstance(i, Index):
            kind, series = "IDX", ""
        if isinstance(i, Option | Future) and i.expiry:
            expiry, series = i.expiry.isoformat(), ""
        sym = _INDEX_TOKEN_OF.get(i.symbol, i.symbol) if isinstance(i, Index) else i.symbol
        w.writerow(
            [
                key.exchange, key.exchange_token, sym, groww_symbol(i), i.name, kind, key.segment,
                series, "", underlying, "", expiry, strike,
                i.lot_size, f"{i.tick_size / 100:g}", i.freeze_qty + 1 if i.freeze_qty else "",
                0, int(i.tradable), int(i.tradable), sym, 1,
            ]
        )  # fmt: skip
    return buf.getvalue()


# --- history -------------------------------------------------------------------------------------
INTERVAL_SECONDS = {
    "1minute": 60, "2minute": 120, "3minute": 180, "5minute": 300, "10minute": 600,
    "15minute": 900, "30minute": 1800, "1hour": 3600, "4hour": 14400, "1day": 86400,
}  # fmt: skip
#: the longest span (days) one candle request may cover (Groww's documented limits)
INTERVAL_MAX_DAYS = {
    "1minute": 30, "2minute": 30, "3minute": 30, "5minute": 30, "10minute": 90, "15minute": 90,
    "30minute": 90, "1hour": 180, "4hour": 180, "1day": 180,
}  # fmt: skip


def parse_candles(rows: Iterable[Any], token: int, exchange: str, interval: str) -> list[Candle]:
    """``candles`` rows ``[time, open, high, low, close, volume, oi]`` → closed candles."""
    tf = INTERVAL_SECONDS[interval]
    out = []
    for n, r in enumerate(rows):
        try:
            ts = _ist_ns(r[0])
            if not ts:
                raise ValueError(f"time {r[0]!r}")
            o, h, lo, c = (to_paise(x) for x in r[1:5])
            vol = int(r[5] or 0)
            oi = int(r[6] or 0) if len(r) > 6 else 0
            if min(o, h, lo, c, vol, oi) < 0 or not math.isfinite(float(r[4])):
                raise ValueError("a negative or non-finite value")
            out.append(Candle(token, exchange, tf, ts, o, h, lo, c, vol, oi, 0, True))
        except (ValueError, TypeError, IndexError) as e:
            raise ParseError(f"Groww candle row {n}: {e} in {r!r}") from None
    return out
