"""Angel One SmartAPI WebSocket 2.0: decoding of the binary market-data frames.

One binary frame = one instrument, **little-endian**, the mode in byte 0 (shared data README
§5, from the official Python and Java SDKs):

======= ======================================================================================
offset  field
======= ======================================================================================
0       mode (uint8): 1 LTP (51 bytes), 2 QUOTE (123), 3 SNAP_QUOTE (379), 4 DEPTH (443)
1       exchange type (uint8): 1 nse_cm, 2 nse_fo, 3 bse_cm, 4 bse_fo, 5 mcx_fo, 7 ncx_fo,
        13 cde_fo
2-26    token, ASCII, NUL-padded
27      sequence number (int64)
35      exchange timestamp (int64, epoch milliseconds)
43      last traded price (int64 paise)
51      QUOTE: last traded qty, 59 average price, 67 day volume (int64), 75 total buy qty and
        83 total sell qty (float64), 91 open, 99 high, 107 low, 115 close (int64 paise)
123     SNAP_QUOTE: last trade time (int64 s), 131 OI (int64), 139 OI change % (float64, as
        the Java SDK reads it), 147 ten 20-byte best-five entries (int16 flag 1 = buy /
        0 = sell, int64 qty, int64 price, int16 orders), 347 upper circuit, 355 lower
        circuit, 363 52-week high, 371 52-week low (int64 paise)
======= ======================================================================================

No real captured frame exists in the project's data: the tests use synthetic vectors packed
from this layout, so they check the offsets, not the layout itself. Currency (``cde_fo``)
price scaling is not documented by either SDK, so those frames are refused rather than
guessed. Mode 4 (20-level depth) carries no trade and is not a tick.
"""

from __future__ import annotations

import math
import struct

import msgspec

from mandi.core.clock import NS_PER_MS, NS_PER_SECOND
from mandi.core.errors import ParseError
from mandi.model.market import Tick

__all__ = ["EXCHANGE_OF_TYPE", "AngelDepth", "AngelQuote", "parse_frame", "parse_quote"]

#: SmartAPI exchange type → mandi exchange.
EXCHANGE_OF_TYPE = {1: "NSE", 2: "NSE", 3: "BSE", 4: "BSE", 5: "MCX", 7: "NCDEX", 13: "NSE"}
_UNSCALED_TYPES = {13: "cde_fo (currency: price scaling undocumented)"}
MODE_NAMES = {1: "ltp", 2: "quote", 3: "snap_quote", 4: "depth"}
FRAME_SIZES = {1: 51, 2: 123, 3: 379}

_HEAD = struct.Struct("<BB25sqqq")  # mode, exchange type, token, sequence, ts ms, ltp
_QUOTE = struct.Struct("<qqqddqqqq")  # from 51
_SNAP = struct.Struct("<qqd")  # from 123: last trade time, OI, OI change %
_LEVEL = struct.Struct("<hqqh")  # from 147, 10 entries
_LIMITS = struct.Struct("<qqqq")  # from 347


class AngelDepth(msgspec.Struct, frozen=True):
    """One best-five level: price in paise."""

    quantity: int
    price: int
    orders: int


class AngelQuote(msgspec.Struct, frozen=True):
    """Everything one SmartAPI frame says; prices in paise, times int ns UTC, fields the
    mode does not carry ``None``."""

    mode: str
    exchange_type: int
    exchange: str
    token: int
    sequence: int
    exchange_time: int
    last_price: int
    last_quantity: int | None = None
    average_price: int | None = None
    volume: int | None = None
    buy_quantity: float | None = None
    sell_quantity: float | None = None
    open: int | None = None
    high: int | None = None
    low: int | None = None
    close: int | None = None
    last_trade_time: int | None = None
    oi: int | None = None
    oi_change_percent: float | None = None
    bids: tuple[AngelDepth, ...] = ()
    asks: tuple[AngelDepth, ...] = ()
    upper_circuit: int | None = None
    lower_circuit: int | None = None
    high_52_week: int | None = None
    low_52_week: int | None = None


def _nonneg(value: int, what: str, offset: int) -> int:  # also used for float quantities
    if value < 0:
        raise ParseError(f"SmartAPI frame: negative {what} {value} at offset {offset}")
    return value


def parse_quote(data: bytes) -> AngelQuote:
    """Decode one SmartAPI v2 binary frame (modes 1-3) with all its fields.

    Raises
    ------
    ParseError
        For an empty or short frame, an unknown or non-tick mode, an unknown exchange type,
        a token that is not digits, or a negative price/quantity — naming the field.
    """
    if not data:
        raise ParseError("SmartAPI frame is empty")
    mode = data[0]
    need = FRAME_SIZES.get(mode)
    if need is None:
        what = "mode 4 (20-level depth) carries no trade" if mode == 4 else "unknown mode"
        raise ParseError(f"SmartAPI frame: {what} {mode} (byte 0; ticks are modes 1, 2, 3)")
    if len(data) < need:
        raise ParseError(
            f"SmartAPI frame truncated: mode {mode} ({MODE_NAMES[mode]}) needs {need} bytes, "
            f"got {len(data)}"
        )
    _, ex_type, raw_token, seq, ts_ms, ltp = _HEAD.unpack_from(data, 0)
    if ex_type in _UNSCALED_TYPES:
        raise ParseError(f"SmartAPI frame: exchange type {ex_type} = {_UNSCALED_TYPES[ex_type]}")
    exchange = EXCHANGE_OF_TYPE.get(ex_type)
    if exchange is None:
        raise ParseError(f"SmartAPI frame: unknown exchange type {ex_type} (byte 1)")
    text = raw_token.split(b"\x00", 1)[0]
    if not text.isdigit() or raw_token[len(text) :].strip(b"\x00"):
        raise ParseError(f"SmartAPI frame: token {raw_token!r} (bytes 2-26) is not a number")
    common = {
        "mode": MODE_NAMES[mode],
        "exchange_type": ex_type,
        "exchange": exchange,
        "token": int(text),
        "sequence": seq,
        "exchange_time": _nonneg(ts_ms, "exchange timestamp", 35) * NS_PER_MS,
        "last_price": _nonneg(ltp, "last traded price", 43),
    }
    if mode == 1:
        return AngelQuote(**common)
    ltq, avg, vol, buy, sell, o, h, lo, c = _QUOTE.unpack_from(data, 51)
    for off, (name, v) in zip(
        range(51, 123, 8),
        [("last traded qty", ltq), ("average price", avg), ("volume", vol),
         ("total buy qty", buy), ("total sell qty", sell), ("open", o), ("high", h),
         ("low", lo), ("close", c)],
        strict=True,
    ):  # fmt: skip
        if isinstance(v, float) and not math.isfinite(v):
            raise ParseError(f"SmartAPI frame: {name} {v} at offset {off} is not a number")
        _nonneg(v, name, off)
    quote = {
        "last_quantity": ltq, "average_price": avg, "volume": vol, "buy_quantity": buy,
        "sell_quantity": sell, "open": o, "high": h, "low": lo, "close": c,
    }  # fmt: skip
    if mode == 2:
        return AngelQuote(**common, **quote)
    ltt, oi, oi_pct = _SNAP.unpack_from(data, 123)
    bids: list[AngelDepth] = []
    asks: list[AngelDepth] = []
    for i in range(10):
        off = 147 + 20 * i
        flag, qty, price, orders = _LEVEL.unpack_from(data, off)
        if flag not in (0, 1):
            raise ParseError(f"SmartAPI frame: best-five flag {flag} at offset {off} (0 or 1)")
        level = AngelDepth(
            _nonneg(qty, "depth quantity", off + 2), _nonneg(price, "depth price", off + 10),
            orders,
        )  # fmt: skip
        (bids if flag == 1 else asks).append(level)
    upper, lower, hi52, lo52 = _LIMITS.unpack_from(data, 347)
    return AngelQuote(
        **common,
        **quote,
        last_trade_time=_nonneg(ltt, "last trade time", 123) * NS_PER_SECOND,
        oi=_nonneg(oi, "open interest", 131),
        oi_change_percent=oi_pct if math.isfinite(oi_pct) else None,
        bids=tuple(bids),
        asks=tuple(asks),
        upper_circuit=upper,
        lower_circuit=lower,
        high_52_week=hi52,
        low_52_week=lo52,
    )


def parse_frame(data: bytes, *, ts_init: int = 0) -> Tick:
    """Decode one SmartAPI v2 binary frame into a :class:`Tick`.

    ``ts_event`` is the frame's exchange timestamp (ms → ns UTC); ``ts_init`` the receive
    time passed by the feed (0 if unknown). Volume, last quantity (QUOTE and SNAP_QUOTE),
    OI and best bid/ask (SNAP_QUOTE) are 0 when the mode does not carry them. Raises
    :class:`ParseError` as :func:`parse_quote`.
    """
    q = parse_quote(data)
    bid = q.bids[0] if q.bids else None
    ask = q.asks[0] if q.asks else None
    return Tick(
        token=q.token,
        exchange=q.exchange,
        ts_event=q.exchange_time,
        ts_init=ts_init,
        price=q.last_price,
        volume=q.volume or 0,
        last_qty=q.last_quantity or 0,
        oi=q.oi or 0,
        bid=bid.price if bid else 0,
        ask=ask.price if ask else 0,
        bid_qty=bid.quantity if bid else 0,
        ask_qty=ask.quantity if ask else 0,
    )
