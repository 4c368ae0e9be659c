"""Groww's live-feed messages → mandi ticks and order updates (and back, for the fake).

A NATS ``MSG`` carries one protobuf message (:mod:`mandi.brokers.groww.proto`) on a subject that
names the instrument (``/ld/fo/nse/price.35241``) — the message itself does not.
:class:`FrameDecoder` knows which subject is which instrument (:meth:`FrameDecoder.route`) and
keeps, per instrument, the last price and the best bid/offer: a ``price`` message (LTP,
cumulative volume, open interest, exchange time in ms) gives a tick with the last known book;
a ``book`` message (five levels each side) gives a tick with the last known price (none before
the first price); an ``index`` message gives the index's value. Order updates become dicts
shaped like the SDK's (``growwOrderId``, ``orderStatus``, ``filledQty`` ...).

Every value is checked: a payload that is not the expected message, a NaN, a negative or absurd
price or quantity raises :class:`~mandi.core.errors.ParseError` naming it (the ticker counts it
and goes on). :func:`decode_frame` runs the whole path — NATS stream, protobuf, tick — on one
websocket message, for tests, fuzzing and benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf.message import DecodeError

from mandi.brokers.groww import nats
from mandi.brokers.groww.proto import (
    DURATIONS,
    ORDER_EXCHANGES,
    ORDER_STATUS,
    ORDER_TYPES,
    PRODUCTS,
    SEGMENTS,
    SIDES,
    OrderBroadcast,
    SocketResponse,
)
from mandi.core.clock import NS_PER_MS
from mandi.core.errors import ParseError
from mandi.model.market import Tick

_MAX_PRICE = 1e9  # rupees: anything above is garbage, not a price
_MAX_QTY = 1e15


def _price(x: float, what: str) -> int:
    if not 0.0 <= x < _MAX_PRICE:  # False for NaN too
        raise ParseError(f"Groww feed: {what} {x!r} is not a price")
    return round(x * 100)


def _qty(x: float, what: str) -> int:
    if not 0.0 <= x < _MAX_QTY:
        raise ParseError(f"Groww feed: {what} {x!r} is not a quantity")
    return int(x)


def _ts_ns(x: float, fallback: int) -> int:
    """``tsInMillis`` → ns; Groww's book messages have been seen in seconds: a value too small
    to be milliseconds since 1973 is taken as seconds."""
    if not 0.0 <= x < 1e14:
        raise ParseError(f"Groww feed: tsInMillis {x!r} is not a time")
    if x == 0.0:
        return fallback
    return round(x) * NS_PER_MS if x >= 1e11 else round(x * 1000) * NS_PER_MS


def _best(book: Any, what: str) -> tuple[int, int]:
    """(price, quantity) of the best level (the lowest level key with a quantity)."""
    best = None
    for level, entry in book.items():
        if entry.qty > 0 and (best is None or level < best[0]):
            best = (level, entry.price, entry.qty)
    if best is None:
        return 0, 0
    return _price(best[1], f"{what} price"), _qty(best[2], f"{what} quantity")


class FrameDecoder:
    """Subjects → instruments, and the per-instrument state that makes ticks (see the module
    docstring)."""

    def __init__(self) -> None:
        self.routes: dict[bytes, tuple[int, str, str]] = {}  # subject → (token, exchange, what)
        # token → [price, volume, oi, ts_event, bid, ask, bid_qty, ask_qty]; price -1 = none yet
        self._state: dict[int, list[int]] = {}
        self._msg = SocketResponse()
        self.unrouted = 0

    def route(self, subject: str, token: int, exchange: str, what: str) -> None:
        self.routes[subject.encode()] = (token, exchange, what)

    def unroute(self, subject: str) -> None:
        self.routes.pop(subject.encode(), None)

    def decode(self, subject: bytes, payload: bytes, ts_init: int) -> Tick | dict[str, Any] | None:
        """One message → a tick, an order update (dict) or None (a subject not followed, or a
        book before any price)."""
        r = self.routes.get(subject)
        if r is None:
            self.unrouted += 1
            return None
        token, exchange, what = r
        if what == "order":
            return decode_order(payload)
        m = self._msg
        try:
            m.ParseFromString(payload)
        except DecodeError as e:
            raise ParseError(
                f"Groww feed: {subject[:60]!r}: not a protobuf message ({e})"
            ) from None
        kind = m.WhichOneof("livePoint")
        st = self._state.get(token)
        if st is None:
            st = self._state[token] = [-1, 0, 0, 0, 0, 0, 0, 0]
        if what == "price":
            if kind != "stockLivePrice":
                raise ParseError(f"Groww feed: {subject[:60]!r} carries {kind}, not a live price")
            p = m.stockLivePrice
            st[0] = _price(p.ltp, "ltp")
            st[1] = _qty(p.volume, "volume")
            st[2] = _qty(p.openInterest, "openInterest")
            st[3] = _ts_ns(p.tsInMillis, ts_init)
        elif what == "index":
            if kind != "stocksLiveIndices":
                raise ParseError(f"Groww feed: {subject[:60]!r} carries {kind}, not an index")
            p = m.stocksLiveIndices
            return Tick(token, exchange, _ts_ns(p.tsInMillis, ts_init), ts_init,
                        _price(p.value, "index value"))  # fmt: skip
        else:
            if kind != "stocksMarketDepth":
                raise ParseError(f"Groww feed: {subject[:60]!r} carries {kind}, not a book")
            d = m.stocksMarketDepth
            st[4], st[6] = _best(d.buyBook, "bid")
            st[5], st[7] = _best(d.sellBook, "offer")
            if st[0] < 0:
                return None
            st[3] = max(st[3], _ts_ns(d.tsInMillis, st[3]))
        return Tick(token, exchange, st[3], ts_init, st[0], st[1], 0, st[2],
                    st[4], st[5], st[6], st[7])  # fmt: skip


def _name(names: tuple[str, ...], code: int) -> str:
    return names[code] if 0 <= code < len(names) else str(code)


def decode_order(payload: bytes) -> dict[str, Any]:
    """An order update → the SDK's dict shape (prices stay in paise, as sent)."""
    try:
        m = OrderBroadcast.FromString(payload)
    except DecodeError as e:
        raise ParseError(f"Groww order update: not a protobuf message ({e})") from None
    o = m.orderDetailUpdateDto
    if not o.growwOrderId:
        raise ParseError("Groww order update without growwOrderId")
    return {
        "growwOrderId": o.growwOrderId,
        "exchangeOrderId": o.exchangeOrderId,
        "orderStatus": _name(ORDER_STATUS, o.orderStatus),
        "qty": o.qty,
        "filledQty": o.filledQty,
        "remainingQty": o.remainingQty,
        "price": o.price,
        "avgFillPrice": o.avgFillPrice,
        "duration": _name(DURATIONS, o.duration),
        "exchange": _name(ORDER_EXCHANGES, o.exchange),
        "segment": _name(SEGMENTS, o.segment),
        "product": _name(PRODUCTS, o.product),
        "orderType": _name(ORDER_TYPES, o.orderType),
        "transactionType": "BUY" if _name(SIDES, o.buySell) == "B" else "SELL",
        "remark": o.remark,
        "contractId": o.contractId,
    }


def decode_frame(
    stream: nats.NatsStream, decoder: FrameDecoder, data: bytes, ts_init: int = 0
) -> tuple[list[Tick], list[dict[str, Any]], list[nats.Op], list[str]]:
    """One websocket message through the whole path: (ticks, order updates, the other NATS
    operations, errors)."""
    ops, error = stream.feed(data)
    ticks: list[Tick] = []
    orders: list[dict[str, Any]] = []
    other: list[nats.Op] = []
    errors = [f"NATS protocol: {error}"] if error else []
    for op in ops:
        if op[0] != nats.MSG:
            other.append(op)
            continue
        try:
            r = decoder.decode(op[1], op[3], ts_init)
        except ParseError as e:
            errors.append(str(e))
            continue
        if isinstance(r, Tick):
            ticks.append(r)
        elif r is not None:
            orders.append(r)
    return ticks, orders, other, errors


# --- encoding (the fake server; tests) -----------------------------------------------------------
def encode_price(
    ltp: int, volume: int, oi: int, ts_ms: int, ohlc: tuple[int, int, int, int] = (0, 0, 0, 0),
    bid_qty: int = 0, offer_qty: int = 0, symbol: str = "", exchange: int = 1, segment: int = 1,
) -> bytes:  # fmt: skip
    """A ``stockLivePrice`` message (prices in paise → rupees)."""
    m = SocketResponse(symbol=symbol, exchange=exchange, segment=segment)
    p = m.stockLivePrice
    p.tsInMillis, p.ltp, p.volume, p.openInterest = ts_ms, ltp / 100, volume, oi
    p.open, p.high, p.low, p.close = (x / 100 for x in ohlc)
    p.bidQty, p.offerQty, p.avgPrice = bid_qty, offer_qty, ltp / 100
    return bytes(m.SerializeToString())


def encode_index(value: int, ts_ms: int, symbol: str = "", exchange: int = 1) -> bytes:
    m = SocketResponse(symbol=symbol, exchange=exchange, segment=0)
    m.stocksLiveIndices.tsInMillis, m.stocksLiveIndices.value = ts_ms, value / 100
    return bytes(m.SerializeToString())


Level = tuple[int, int]  # price (paise), quantity


def encode_book(
    bids: Iterable[Level], asks: Iterable[Level], ts_ms: int, symbol: str = "",
    exchange: int = 1, segment: int = 1,
) -> bytes:  # fmt: skip
    """A ``stocksMarketDepth`` message: levels 1.. from the best."""
    m = SocketResponse(symbol=symbol, exchange=exchange, segment=segment)
    d = m.stocksMarketDepth
    d.tsInMillis = ts_ms
    for book, levels in ((d.buyBook, bids), (d.sellBook, asks)):
        for k, (price, qty) in enumerate(levels, start=1):
            book[k].price, book[k].qty = price / 100, qty
    return bytes(m.SerializeToString())


def encode_order(order: dict[str, Any]) -> bytes:
    """An order update from a dict of the SDK's shape (enum fields by name)."""
    m = OrderBroadcast()
    o = m.orderDetailUpdateDto
    o.growwOrderId = order["growwOrderId"]
    o.exchangeOrderId = order.get("exchangeOrderId", "")
    o.orderStatus = ORDER_STATUS.index(order["orderStatus"])
    o.qty, o.filledQty = order.get("qty", 0), order.get("filledQty", 0)
    o.remainingQty = order.get("remainingQty", 0)
    o.price, o.avgFillPrice = order.get("price", 0), order.get("avgFillPrice", 0)
    o.duration = DURATIONS.index(order.get("duration", "DAY"))
    o.exchange = ORDER_EXCHANGES.index(order.get("exchange", "NSE"))
    o.segment = SEGMENTS.index(order.get("segment", "CASH"))
    o.product = PRODUCTS.index(order.get("product", "MIS"))
    o.orderType = ORDER_TYPES.index(
        {"MARKET": "MKT", "LIMIT": "L"}.get(order.get("orderType", ""), "MKT")
    )
    o.buySell = 0 if order.get("transactionType", "BUY") == "BUY" else 1
    o.remark, o.contractId = order.get("remark", ""), order.get("contractId", "")
    return bytes(m.SerializeToString())
