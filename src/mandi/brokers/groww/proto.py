"""The protobuf messages of Groww's live feed, described here and compiled at import by the
``protobuf`` package (its C ``upb`` parser does the decoding).

Groww's socket carries three message families (the field numbers and types are the wire
protocol; the names follow Groww's so that dumps read the same):

* ``StocksSocketResponseProtoDto`` — market data: ``symbol`` (1), ``segment`` (2), ``exchange``
  (3) and one of ``stockLivePrice`` (4: ``tsInMillis``, OHLC, ``volume``, ``value``,
  ``bidQty``, ``offerQty``, ``avgPrice``, price bands, ``ltp`` (13), ``openInterest`` (14),
  trade range — all doubles, rupees), ``stocksMarketDepth`` (5: ``tsInMillis`` and two
  ``map<int32, BookProto{price, qty}>`` books keyed by level 1..5) or ``stocksLiveIndices``
  (6: ``tsInMillis``, ``value``);
* ``OrderDetailsBroadCastDto`` — an order update: ``orderDetailUpdateDto`` (2) with quantities,
  prices in paise (int64), the Groww and exchange order ids and enum codes (status, exchange,
  segment, product, order type, side);
* ``PositionDetailProto`` is not used by mandi (positions come from the REST API).

The enums are declared as plain varints here (wire-identical); their names are the tuples below.
Building the descriptors in code keeps the official SDK (and its pandas pin) out of mandi's
dependencies; a test checks these against the SDK's generated modules byte for byte.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
_DOUBLE, _STRING, _INT32, _INT64, _MSG = (
    F.TYPE_DOUBLE, F.TYPE_STRING, F.TYPE_INT32, F.TYPE_INT64, F.TYPE_MESSAGE,
)  # fmt: skip
_REPEATED = F.LABEL_REPEATED

#: StocksLivePriceProto's fields, in field-number order (1..16)
LIVE_PRICE_FIELDS = (
    "tsInMillis", "open", "high", "low", "close", "volume", "value", "bidQty", "offerQty",
    "avgPrice", "highPriceRange", "lowPriceRange", "ltp", "openInterest", "lowTradeRange",
    "highTradeRange",
)  # fmt: skip
EXCHANGES = ("BSE", "NSE", "MCX", "MCXSX", "NCDEX", "GLOBAL", "US")  # StockExchangeProto
SEGMENTS = ("CASH", "FNO", "CURRENCY", "COMMODITY")  # StockSegmentProto
ORDER_STATUS = (
    "NEW", "ACKED", "TRIGGER_PENDING", "APPROVED", "REJECTED", "FAILED", "EXECUTED",
    "DELIVERY_AWAITED", "CANCELLED", "CANCELLATION_REQUESTED", "MODIFICATION_REQUESTED",
    "COMPLETED",
)  # fmt: skip
ORDER_EXCHANGES = ("BSE", "NSE", "MCX", "MCXSX", "NCDEX", "US")  # StockExchange.Enum
DURATIONS = ("IOC", "DAY", "GTD", "GTC", "EOS")
PRODUCTS = ("CNC", "MIS", "CO", "BO", "NRML", "ARB", "MTF")
ORDER_TYPES = ("MKT", "L", "SL", "SL_M")
SIDES = ("B", "S")


def _message(name: str, fields: list[tuple[int, str, int, str]], **kw: Any) -> Any:
    m = descriptor_pb2.DescriptorProto(name=name)
    for number, fname, ftype, type_name in fields:
        f = m.field.add(name=fname, number=number, type=ftype, label=F.LABEL_OPTIONAL)
        if type_name:
            f.type_name = type_name
    for k, v in kw.items():
        getattr(m, k).extend(v)
    return m


def _book_entry(name: str) -> Any:
    e = _message(name, [(1, "key", _INT32, ""), (2, "value", _MSG, ".mandi.groww.BookProto")])
    e.options.map_entry = True
    return e


def _file() -> Any:
    f = descriptor_pb2.FileDescriptorProto(
        name="mandi/groww_feed.proto", package="mandi.groww", syntax="proto3"
    )
    f.message_type.append(
        _message("BookProto", [(1, "price", _DOUBLE, ""), (2, "qty", _DOUBLE, "")])
    )
    f.message_type.append(
        _message(
            "StocksLivePriceProto",
            [(i + 1, n, _DOUBLE, "") for i, n in enumerate(LIVE_PRICE_FIELDS)],
        )
    )
    f.message_type.append(
        _message(
            "StocksLiveIndicesProto", [(1, "tsInMillis", _DOUBLE, ""), (2, "value", _DOUBLE, "")]
        )
    )
    depth = _message(
        "StocksMarketDepthProto",
        [
            (1, "tsInMillis", _DOUBLE, ""),
            (2, "buyBook", _MSG, ".mandi.groww.StocksMarketDepthProto.BuyBookEntry"),
            (3, "sellBook", _MSG, ".mandi.groww.StocksMarketDepthProto.SellBookEntry"),
        ],
        nested_type=[_book_entry("BuyBookEntry"), _book_entry("SellBookEntry")],
    )
    for fld in depth.field[1:]:
        fld.label = _REPEATED
    f.message_type.append(depth)
    dto = _message(
        "StocksSocketResponseProtoDto",
        [
            (1, "symbol", _STRING, ""),
            (2, "segment", _INT32, ""),
            (3, "exchange", _INT32, ""),
            (4, "stockLivePrice", _MSG, ".mandi.groww.StocksLivePriceProto"),
            (5, "stocksMarketDepth", _MSG, ".mandi.groww.StocksMarketDepthProto"),
            (6, "stocksLiveIndices", _MSG, ".mandi.groww.StocksLiveIndicesProto"),
        ],
    )
    dto.oneof_decl.add(name="livePoint")
    for fld in dto.field[3:]:
        fld.oneof_index = 0
    f.message_type.append(dto)
    f.message_type.append(
        _message(
            "StageAndTimeStamp",
            [(1, "timeStampFromMidNight", _DOUBLE, ""), (2, "stageName", _STRING, "")],
        )
    )
    f.message_type.append(
        _message(
            "OrderDetailUpdateDto",
            [
                (1, "qty", _INT32, ""), (2, "price", _INT64, ""), (3, "triggerPrice", _INT64, ""),
                (4, "filledQty", _INT32, ""), (5, "remainingQty", _INT32, ""),
                (6, "avgFillPrice", _INT64, ""), (7, "growwOrderId", _STRING, ""),
                (8, "exchangeOrderId", _STRING, ""), (9, "orderStatus", _INT32, ""),
                (10, "duration", _INT32, ""), (11, "exchange", _INT32, ""),
                (12, "segment", _INT32, ""), (13, "product", _INT32, ""),
                (14, "orderType", _INT32, ""), (15, "buySell", _INT32, ""),
                (16, "remark", _STRING, ""), (22, "contractId", _STRING, ""),
                (23, "guiOrderId", _STRING, ""),
            ],
        )
    )  # fmt: skip
    broadcast = _message(
        "OrderDetailsBroadCastDto",
        [
            (1, "stageAndTimeStamp", _MSG, ".mandi.groww.StageAndTimeStamp"),
            (2, "orderDetailUpdateDto", _MSG, ".mandi.groww.OrderDetailUpdateDto"),
        ],
    )
    broadcast.field[0].label = _REPEATED
    f.message_type.append(broadcast)
    return f


_POOL = descriptor_pool.DescriptorPool()  # private: never clashes with the SDK's own classes
_POOL.Add(_file())


def _cls(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"mandi.groww.{name}"))


SocketResponse = _cls("StocksSocketResponseProtoDto")
OrderBroadcast = _cls("OrderDetailsBroadCastDto")

__all__ = [
    "EXCHANGES",
    "LIVE_PRICE_FIELDS",
    "ORDER_STATUS",
    "SEGMENTS",
    "OrderBroadcast",
    "SocketResponse",
]
