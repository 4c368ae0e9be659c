"""SmartStream v2 frames: a fast decoder for the live path and an encoder for the fake.

:func:`decode_tick` gives the same :class:`~mandi.model.market.Tick` as
:func:`mandi.feeds.angel.parse_frame` (the reference decoder, tested against the official
``smartapi-python`` parser) with mandi's token (:func:`~mandi.brokers.angel.wire.mandi_token`),
reading each frame with **one** ``struct`` call; a differential test pins the two together and
``benchmarks/bench_angel.py`` measures both against the SDK's parser.

The encoders write frames byte for byte in the documented layout (little-endian, see
:mod:`mandi.feeds.angel`), so ``mandi fakebroker angel`` speaks the real protocol.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from mandi.core.clock import NS_PER_MS
from mandi.core.errors import ParseError
from mandi.feeds.angel import EXCHANGE_OF_TYPE, FRAME_SIZES
from mandi.model.market import Tick

_LTP = struct.Struct("<BB25sqqq")
_QUOTE = struct.Struct("<BB25sqqq qqqddqqqq")
_SNAP_HEAD = "<BB25sqqq qqqddqqqq qqd" + "hqqh" * 10
_SNAP = struct.Struct(_SNAP_HEAD + "qqqq")
_CURRENCY = 13  # cde_fo: price scaling undocumented, refused (as the reference decoder does)

Level = tuple[int, int, int]  # quantity, price (paise), orders


def _token(raw: bytes, ex_type: int) -> int:
    text = raw.split(b"\x00", 1)[0]
    if not text.isdigit():
        raise ParseError(f"SmartAPI frame: token {raw!r} (bytes 2-26) is not a number")
    return int(text) << 8 | ex_type


def decode_tick(data: bytes, ts_init: int = 0) -> Tick:
    """One SmartStream binary frame (LTP, QUOTE or SNAP_QUOTE) → a tick with mandi's token.

    Raises :class:`ParseError` naming what is wrong: an empty or short frame, a mode or exchange
    type it does not know (or currency, whose scaling is undocumented), a token that is not
    digits, a negative price or quantity."""
    n = len(data)
    if n == 0:
        raise ParseError("SmartAPI frame is empty")
    mode = data[0]
    need = FRAME_SIZES.get(mode)
    if need is None or n < need:
        if need is None:
            raise ParseError(f"SmartAPI frame: mode {mode} (byte 0) is not a tick mode (1, 2, 3)")
        raise ParseError(f"SmartAPI frame truncated: mode {mode} needs {need} bytes, got {n}")
    ex_type = data[1]
    exchange = EXCHANGE_OF_TYPE.get(ex_type)
    if exchange is None or ex_type == _CURRENCY:
        raise ParseError(f"SmartAPI frame: exchange type {ex_type} (byte 1) is not supported")
    if mode == 3:
        v = _SNAP.unpack_from(data, 0)
        ltp, ltq, vol, oi = v[5], v[6], v[8], v[16]
        bid = ask = bq = aq = 0
        got_b = got_a = False
        for k in range(18, 58, 4):  # the ten best-five entries: flag, qty, price, orders
            flag = v[k]
            if flag == 1 and not got_b:
                bq, bid, got_b = v[k + 1], v[k + 2], True
            elif flag == 0 and not got_a:
                aq, ask, got_a = v[k + 1], v[k + 2], True
            elif flag != 0 and flag != 1:
                raise ParseError(f"SmartAPI frame: best-five flag {flag} (0 or 1)")
        if ltp < 0 or vol < 0 or ltq < 0 or oi < 0 or bid < 0 or ask < 0 or bq < 0 or aq < 0:
            raise ParseError(f"SmartAPI frame: a negative price or quantity in {v[5:17]}")
        return Tick(
            _token(v[2], ex_type), exchange, v[4] * NS_PER_MS, ts_init, ltp, vol, ltq, oi,
            bid, ask, bq, aq,
        )  # fmt: skip
    if mode == 2:
        v = _QUOTE.unpack_from(data, 0)
        ltp, ltq, vol = v[5], v[6], v[8]
        if ltp < 0 or vol < 0 or ltq < 0:
            raise ParseError(f"SmartAPI frame: a negative price or quantity in {v[5:9]}")
        return Tick(_token(v[2], ex_type), exchange, v[4] * NS_PER_MS, ts_init, ltp, vol, ltq)
    v = _LTP.unpack_from(data, 0)
    if v[5] < 0 or v[4] < 0:
        raise ParseError(f"SmartAPI frame: negative price {v[5]} or time {v[4]}")
    return Tick(_token(v[2], ex_type), exchange, v[4] * NS_PER_MS, ts_init, v[5])


_CIRCUIT = struct.Struct("<qq")  # upper, lower circuit (paise) at byte 347 of a SNAP_QUOTE


def circuit_limits(data: bytes) -> tuple[int, int] | None:
    """The (lower, upper) circuit limits in paise a SNAP_QUOTE frame carries, or None for other
    modes and for limits that cannot be right (negative, or lower above upper); 0 = not given.
    Call it on a frame :func:`decode_tick` accepted."""
    if data[0] != 3:
        return None
    upper, lower = _CIRCUIT.unpack_from(data, 347)
    if lower < 0 or upper < 0 or (upper and lower > upper) or not (lower or upper):
        return None
    return lower, upper


# --- encoding (the fake server; tests) -----------------------------------------------------------
def _head(mode: int, ex_type: int, token: str, seq: int, ts_ms: int, ltp: int) -> bytes:
    return _LTP.pack(mode, ex_type, token.encode(), seq, ts_ms, ltp)


def encode_ltp(ex_type: int, token: str, seq: int, ts_ms: int, ltp: int) -> bytes:
    return _head(1, ex_type, token, seq, ts_ms, ltp)


def encode_quote(
    ex_type: int, token: str, seq: int, ts_ms: int, ltp: int, ltq: int, avg: int, volume: int,
    buy: float, sell: float, o: int, h: int, lo: int, c: int,
) -> bytes:  # fmt: skip
    return _QUOTE.pack(
        2, ex_type, token.encode(), seq, ts_ms, ltp, ltq, avg, volume, buy, sell, o, h, lo, c
    )


def encode_snap(
    ex_type: int, token: str, seq: int, ts_ms: int, ltp: int, ltq: int, avg: int, volume: int,
    buy: float, sell: float, o: int, h: int, lo: int, c: int, last_trade_s: int, oi: int,
    oi_change_pct: float, bids: Sequence[Level] = (), asks: Sequence[Level] = (),
    upper: int = 0, lower: int = 0, high52: int = 0, low52: int = 0,
) -> bytes:  # fmt: skip
    """A 379-byte SNAP_QUOTE frame: five buy entries (flag 1) then five sell entries (flag 0);
    missing levels are zero."""
    levels: list[int | float] = []
    for flag, side in ((1, bids), (0, asks)):
        padded = [*side[:5], *[(0, 0, 0)] * (5 - len(side[:5]))]
        for q, p, orders in padded:
            levels += [flag, q, p, orders]
    return _SNAP.pack(
        3, ex_type, token.encode(), seq, ts_ms, ltp, ltq, avg, volume, buy, sell, o, h, lo, c,
        last_trade_s, oi, oi_change_pct, *levels, upper, lower, high52, low52,
    )  # fmt: skip
