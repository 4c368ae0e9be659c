"""Angel One SmartAPI payloads ↔ mandi values: pure functions, no I/O.

* **Tokens.** SmartAPI names an instrument by (exchange segment, token string); the same digits
  can name different instruments on different segments. mandi's token is therefore
  ``int(token) << 8 | exchange_type`` (the SmartStream exchange type: 1 nse_cm, 2 nse_fo,
  3 bse_cm, 4 bse_fo, 5 mcx_fo ...) — :func:`mandi_token` / :func:`angel_token`.
* **Errors.** SmartAPI answers ``{"status": false, "message", "errorcode", "data"}``; the
  documented codes map onto mandi's exceptions (:data:`ERROR_CODES`): token codes (AG8001 invalid,
  AG8002 expired, AG8003 missing, AB8050/AB8051 refresh token, AB1010 session expired, AB1011 not
  logged in) end the session; input codes (AB1008 variety, AB1009 symbol, AB1012 product, AB1018,
  AB4008 tag length ...) and order codes (AB1013 order not found, AB1017) reject; AB1004/AB2000/
  AB2001 ("something went wrong") leave an order's outcome unknown; "exceeding access rate" and
  HTTP 429 are a rate limit.
* **Orders.** mandi's client order id travels in ``ordertag`` (≤ 20 characters); the order book's
  ``orderstatus`` (``open``, ``complete``, ``rejected``, ``cancelled``, ``trigger pending``,
  ``modified``, ``open pending`` ...) and the trade book's fills (``fillid``) map onto the port.
* **Scrip master** (``OpenAPIScripMaster.json``): strikes and tick sizes in paise, expiries as
  ``17JUL2025``, ``exch_seg`` NSE/BSE/NFO/BFO/MCX/CDS; indices are ``AMXIDX``.
* **History** (``getCandleData``): ``[time, o, h, l, c, volume]`` rows, per-interval span limits.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
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
from mandi.model.instruments import AnyInstrument, Equity, Future, Index, Option
from mandi.model.market import Candle
from mandi.model.orders import OrderStatus

S = OrderStatus
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))

# --- tokens --------------------------------------------------------------------------------------
#: scrip-master ``exch_seg`` → SmartStream exchange type
EXCHANGE_TYPE = {"NSE": 1, "NFO": 2, "BSE": 3, "BFO": 4, "MCX": 5, "NCDEX": 7, "CDS": 13}
SEGMENT_OF_TYPE = {v: k for k, v in EXCHANGE_TYPE.items()}
_PARENT = {"NFO": "NSE", "BFO": "BSE", "CDS": "NSE"}


def mandi_token(exchange_type: int, token: str | int) -> int:
    return int(token) << 8 | exchange_type


def angel_token(token: int) -> tuple[int, str]:
    """(exchange type, SmartAPI token string) of a mandi token."""
    return token & 0xFF, str(token >> 8)


# --- errors --------------------------------------------------------------------------------------
_SESSION = ("AG8001", "AG8002", "AG8003", "AG8004", "AB8050", "AB8051", "AB1010", "AB1011")
_INPUT = ("AB1000", "AB1001", "AB1002", "AB1005", "AB1007", "AB1008", "AB1009", "AB1012")
_INPUT2 = ("AB1018", "AB1019", "AB4008", "AB1050")
_ORDER = ("AB1006", "AB1013", "AB1014", "AB1015", "AB1016", "AB1017", "AB2002")
ERROR_CODES: dict[str, type[BrokerError]] = {
    **dict.fromkeys(_SESSION, BrokerSessionError),
    **dict.fromkeys(_INPUT + _INPUT2, BrokerInputError),
    **dict.fromkeys(_ORDER, BrokerOrderError),
    "AB1004": BrokerNetworkError,
    "AB2000": BrokerNetworkError,
    "AB2001": BrokerNetworkError,
    "AB1021": BrokerRateLimitError,
}
LOGIN_CODES = ("AB1050", "AB1000", "AB1007")  # a refused login (TOTP, PIN, client code)


def error_for(status: int, body: Any, what: str) -> BrokerError:
    """The mandi exception for a SmartAPI error answer (HTTP ``status``, ``body`` its JSON)."""
    code = message = ""
    if isinstance(body, Mapping):
        code = str(body.get("errorcode") or body.get("errorCode") or "")
        message = str(body.get("message") or "")
    if status == 429 or "exceeding access rate" in message.lower():
        return BrokerRateLimitError(f"Angel One {what}: too many requests", code, status)
    cls = ERROR_CODES.get(code)
    if cls is None:
        cls = (
            BrokerSessionError
            if status in (401, 403)
            else BrokerInputError
            if status == 400
            else BrokerNetworkError
        )
    text = message or f"HTTP {status}"
    return cls(f"Angel One {what}: {code + ': ' if code else ''}{text}", code, status)


# --- login ---------------------------------------------------------------------------------------
def jwt_expiry_ns(jwt: str) -> int:
    """The ``exp`` claim of a JWT (seconds) as ns, read without verifying the signature (mandi
    only needs to know when to refresh); 0 when the token carries none."""
    try:
        payload = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims["exp"]) * NS_PER_SECOND
    except (IndexError, ValueError, KeyError, TypeError):
        return 0


def session_expiry_ns(jwt: str, login_ns: int) -> int:
    """When the session ends: the JWT's ``exp``, else 05:00 IST after the login (SmartAPI
    sessions do not outlive the trading day)."""
    exp = jwt_expiry_ns(jwt)
    if exp:
        return exp
    t = dt.datetime.fromtimestamp(login_ns / NS_PER_SECOND, IST)
    five = t.replace(hour=5, minute=0, second=0, microsecond=0)
    if t >= five:
        five += dt.timedelta(days=1)
    return int(five.timestamp()) * NS_PER_SECOND


# --- orders --------------------------------------------------------------------------------------
def angel_tag(client_order_id: str) -> str:
    """The ``ordertag`` (< 20 characters) that names a mandi order: "m" and 18 hex digits."""
    return "m" + client_order_id.replace("-", "")[:18]


def rupees(paise: int) -> str:
    return f"{paise // 100}.{paise % 100:02d}"


def order_params(req: OrderRequest, inst: AnyInstrument, tag: str) -> dict[str, str]:
    """The body of ``placeOrder`` for ``req`` (strings, as SmartAPI documents them)."""
    ex_type, tok = angel_token(inst.token)
    limit = req.order_type.value == "LIMIT"
    product = {"MIS": "INTRADAY", "NRML": "CARRYFORWARD", "CNC": "DELIVERY"}.get(
        str(req.product.value), "INTRADAY"
    )
    return {
        "variety": "NORMAL",
        "tradingsymbol": req.symbol,
        "symboltoken": tok,
        "transactiontype": str(req.side.value),
        "exchange": SEGMENT_OF_TYPE.get(ex_type, inst.exchange),
        "ordertype": "LIMIT" if limit else "MARKET",
        "producttype": product,
        "duration": "DAY",
        "price": rupees(req.limit_price) if limit else "0",
        "squareoff": "0",
        "stoploss": "0",
        "quantity": str(req.quantity),
        "ordertag": tag,
    }


def order_status(angel_status: str, filled: int, quantity: int) -> OrderStatus:
    """SmartAPI's ``orderstatus`` → mandi's: ``complete`` FILLED, ``rejected``, ``cancelled``;
    every other state (``open``, ``open pending``, ``trigger pending``, ``modified``,
    ``validation pending``, ``after market order req received`` ...) is a working order."""
    s = angel_status.strip().lower()
    if s == "complete":
        return S.FILLED
    if s == "rejected":
        return S.REJECTED
    if s == "cancelled":
        return S.CANCELLED
    return S.PARTIALLY_FILLED if 0 < filled < quantity else S.ACKED


def _ist_ns(text: Any) -> int:
    """SmartAPI times → ns UTC: ``"15:29:57"`` (today), ``"17-Jul-2025 15:29:57"`` or ISO."""
    if not text:
        return 0
    t = str(text).strip()
    for fmt in ("%d-%b-%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            d = dt.datetime.strptime(t, fmt)
            break
        except ValueError:
            continue
    else:
        return 0
    if d.tzinfo is None:
        d = d.replace(tzinfo=IST)
    return int(d.timestamp()) * NS_PER_SECOND


def trade_fill(client_order_id: str, trade: Mapping[str, Any]) -> BrokerFill:
    """One trade-book row → a fill; the fill id is the trade's ``fillid``."""
    return BrokerFill(
        client_order_id,
        f"angel-{trade['fillid']}",
        int(trade["fillsize"]),
        to_paise(trade["fillprice"]),
        _ist_ns(trade.get("filltime")),
    )


def order_report(
    client_order_id: str, order: Mapping[str, Any], trades: Iterable[Mapping[str, Any]] = ()
) -> BrokerOrderReport:
    qty = int(order.get("quantity") or 0)
    filled = int(order.get("filledshares") or 0)
    status = order_status(str(order.get("orderstatus") or order.get("status") or ""), filled, qty)
    return BrokerOrderReport(
        client_order_id,
        status,
        qty,
        filled,
        tuple(trade_fill(client_order_id, t) for t in trades),
        str(order.get("orderid") or ""),
        str(order.get("text") or "") if status in (S.REJECTED, S.CANCELLED) else "",
    )


# --- the scrip master ----------------------------------------------------------------------------
def _expiry(text: str) -> dt.date | None:
    return dt.datetime.strptime(text, "%d%b%Y").date() if text else None


def parse_scrip_master(text: str, exchanges: Iterable[str] | None = None) -> list[AnyInstrument]:
    """``OpenAPIScripMaster.json`` → mandi instruments (indices renamed to the symbols the
    option chains use; F&O keyed by the parent exchange, as everywhere in mandi). ``exchanges``
    keeps only those segments (NSE, NFO, BSE, BFO ...)."""
    try:
        rows = json.loads(text)
    except ValueError as e:
        raise ParseError(f"Angel One scrip master: not JSON ({e})") from None
    if not isinstance(rows, list):
        raise ParseError("Angel One scrip master: expected a JSON list of instruments")
    keep = {e.upper() for e in exchanges} if exchanges else None
    out: list[AnyInstrument] = []
    for n, r in enumerate(rows):
        try:
            seg = str(r["exch_seg"]).upper()
            if (keep is not None and seg not in keep) or seg not in EXCHANGE_TYPE:
                continue
            kind = str(r.get("instrumenttype") or "").upper()
            sym, name = str(r["symbol"]), str(r.get("name") or "")
            common: dict[str, Any] = {
                "token": mandi_token(EXCHANGE_TYPE[seg], r["token"]),
                "exchange": _PARENT.get(seg, seg),
                "symbol": sym,
                "name": name,
                "lot_size": max(int(float(r.get("lotsize") or 1)), 1),
                "tick_size": round(float(r.get("tick_size") or 0)) or 5,
            }
            if kind in ("OPTIDX", "OPTSTK", "OPTFUT", "OPTCUR"):
                out.append(
                    Option(
                        **common,
                        segment=f"{seg}-OPT",
                        underlying=name,
                        expiry=_expiry(str(r.get("expiry") or "")),
                        strike=round(float(r["strike"])),
                        option_type=sym[-2:],
                    )
                )
            elif kind in ("FUTIDX", "FUTSTK", "FUTCOM", "FUTCUR"):
                out.append(
                    Future(
                        **common,
                        segment=f"{seg}-FUT",
                        underlying=name,
                        expiry=_expiry(str(r.get("expiry") or "")),
                    )
                )
            elif kind == "AMXIDX":
                out.append(
                    Index(**{**common, "symbol": name or sym, "name": sym}, segment="INDICES")
                )
            elif seg in ("NSE", "BSE") and not kind:
                out.append(Equity(**common, segment=seg))
        except (KeyError, ValueError, TypeError) as e:
            raise ParseError(f"Angel One scrip master row {n}: {e} in {r!r}") from None
    return out


_INDICES = {"NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "NIFTYNXT50", "SENSEX", "BANKEX"}


def scrip_master(instruments: Iterable[AnyInstrument]) -> str:
    """mandi instruments → ``OpenAPIScripMaster.json`` (what the fake serves; the inverse of
    :func:`parse_scrip_master` for the fields SmartAPI has)."""
    rows = []
    for i in instruments:
        ex_type, tok = angel_token(i.token)
        seg = SEGMENT_OF_TYPE[ex_type]
        kind, expiry, strike, name, sym = "", "", "-1.000000", i.name, i.symbol
        if isinstance(i, Option):
            kind = "OPTIDX" if i.underlying in _INDICES else "OPTSTK"
            strike, name = f"{i.strike:.6f}", i.underlying
        elif isinstance(i, Future):
            kind, name = "FUTIDX" if i.underlying in _INDICES else "FUTSTK", i.underlying
        elif isinstance(i, Index):
            kind, name, sym = "AMXIDX", i.symbol, i.name or i.symbol
        if isinstance(i, Option | Future) and i.expiry:
            expiry = i.expiry.strftime("%d%b%Y").upper()
        rows.append(
            {
                "token": tok,
                "symbol": sym,
                "name": name,
                "expiry": expiry,
                "strike": strike,
                "lotsize": str(i.lot_size),
                "instrumenttype": kind,
                "exch_seg": seg,
                "tick_size": f"{i.tick_size:.6f}",
            }
        )
    return json.dumps(rows)


# --- history -------------------------------------------------------------------------------------
INTERVAL_SECONDS = {
    "ONE_MINUTE": 60,
    "THREE_MINUTE": 180,
    "FIVE_MINUTE": 300,
    "TEN_MINUTE": 600,
    "FIFTEEN_MINUTE": 900,
    "THIRTY_MINUTE": 1800,
    "ONE_HOUR": 3600,
    "ONE_DAY": 86400,
}
#: the longest span (days) one getCandleData request may cover (SmartAPI's documented limits)
INTERVAL_MAX_DAYS = {
    "ONE_MINUTE": 30,
    "THREE_MINUTE": 60,
    "FIVE_MINUTE": 100,
    "TEN_MINUTE": 100,
    "FIFTEEN_MINUTE": 200,
    "THIRTY_MINUTE": 200,
    "ONE_HOUR": 400,
    "ONE_DAY": 2000,
}


def parse_candles(rows: Iterable[Any], token: int, exchange: str, interval: str) -> list[Candle]:
    """``data`` rows ``[time, open, high, low, close, volume]`` → closed candles."""
    tf = INTERVAL_SECONDS[interval]
    out = []
    for n, r in enumerate(rows):
        try:
            ts = _ist_ns(r[0])
            if not ts:
                raise ValueError(f"time {r[0]!r}")
            o, h, lo, c = (to_paise(x) for x in r[1:5])
            out.append(Candle(token, exchange, tf, ts, o, h, lo, c, int(r[5]), 0, 0, True))
        except (ValueError, TypeError, IndexError) as e:
            raise ParseError(f"Angel One candle row {n}: {e} in {r!r}") from None
    return out
