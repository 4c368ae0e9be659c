"""Kite Connect ticker frames: a fast decoder for the live path and an encoder for the fake.

:func:`decode_ticks` gives the same :class:`~mandi.model.market.Tick`\\ s as
:func:`mandi.feeds.kite.parse_frame` (the reference decoder, checked against the official SDK)
without building the intermediate quote objects: one ``struct`` call per packet reads the fields
a tick needs. A differential test pins the two together; ``benchmarks/bench_kite.py`` measures
both against the SDK's parser.

:func:`encode_full` and friends write packets byte for byte as Kite does (big-endian, layouts in
:mod:`mandi.feeds.kite`), so ``mandi fakebroker kite`` can speak the real protocol.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import ParseError
from mandi.feeds.kite import EXCHANGE_OF_SEGMENT, PRICE_SCALE_OF_SEGMENT, FrameStats, frame_stats
from mandi.model.market import Tick

_H = struct.Struct(">H")
_LTP = struct.Struct(">II")
_INDEX = struct.Struct(">IIIIIIi")
_INDEX_FULL = struct.Struct(">IIIIIIiI")
_QUOTE = struct.Struct(">11I")
# token ltp ltq avg vol buy sell o h l c | ltt oi oi_hi oi_lo ets | bid(qty price orders pad)
_FULL_HEAD = struct.Struct(">16I")
_LEVEL = struct.Struct(">IIH2x")
_TOP = struct.Struct(">II")  # quantity, price of one depth level

HEARTBEAT = b"\x00"
_NO_LEVELS: tuple[tuple[int, int, int], ...] = ((0, 0, 0),) * 5


# --- decoding ----------------------------------------------------------------------------------
def decode_ticks(
    data: bytes,
    ts_init: int = 0,
    exchanges: Mapping[int, str] | None = None,
    stats: FrameStats | None = None,
) -> list[Tick]:
    """One binary ticker message → ticks (``[]`` for a heartbeat); see the module docstring.

    Raises :class:`~mandi.core.errors.ParseError` naming the offset for an empty or truncated
    message (a half-written frame); unknown packet lengths and sub-paisa prices are skipped and
    counted in ``stats``."""
    st = frame_stats if stats is None else stats
    st.frames += 1
    n = len(data)
    if n <= 1:
        if n == 0:
            raise ParseError("Kite frame is empty (0 bytes)")
        st.heartbeats += 1
        return []
    if n < 2:
        raise ParseError("Kite frame truncated at offset 0")
    (count,) = _H.unpack_from(data, 0)
    pos = 2
    out: list[Tick] = []
    append = out.append
    ex_map = exchanges or {}
    for i in range(count):
        if pos + 2 > n:
            raise ParseError(
                f"Kite frame truncated at offset {pos}: packet {i + 1} of {count} has no "
                f"length (frame is {n} bytes)"
            )
        (length,) = _H.unpack_from(data, pos)
        start = pos + 2
        pos = start + length
        if pos > n:
            raise ParseError(
                f"Kite frame truncated at offset {start}: packet {i + 1} of {count} declares "
                f"{length} bytes, {n - start} left (frame is {n} bytes)"
            )
        if length == 184:
            (tok, ltp, ltq, _a, vol, _b, _s, _o, _h, _l, _c, _lt, oi, _oh, _ol, ets) = (
                _FULL_HEAD.unpack_from(data, start)
            )
            bq, bp = _TOP.unpack_from(data, start + 64)
            aq, ap = _TOP.unpack_from(data, start + 124)
            seg = tok & 0xFF
            if seg == 3 or seg == 6:
                t = _scaled(tok, seg, ltp, bp, ap, vol, ltq, oi, bq, aq, ets, ts_init, ex_map, st)
                if t is not None:
                    append(t)
                continue
            ts = ets * NS_PER_SECOND if ets else ts_init
            append(
                Tick(
                    tok,
                    ex_map.get(tok) or EXCHANGE_OF_SEGMENT.get(seg, ""),
                    ts,
                    ts_init,
                    ltp,
                    vol,
                    ltq,
                    oi,
                    bp,
                    ap,
                    bq,
                    aq,
                )
            )
        elif length == 8 or length == 44 or length == 28 or length == 32:
            if length == 8:
                tok, ltp = _LTP.unpack_from(data, start)
                vol = ltq = ets = 0
            elif length == 44:
                tok, ltp, ltq, _a, vol = _QUOTE.unpack_from(data, start)[:5]
                ets = 0
            else:
                tok, ltp = _LTP.unpack_from(data, start)
                vol = ltq = 0
                ets = int.from_bytes(data[start + 28 : start + 32], "big") if length == 32 else 0
            seg = tok & 0xFF
            if seg == 3 or seg == 6:
                t = _scaled(tok, seg, ltp, 0, 0, vol, ltq, 0, 0, 0, ets, ts_init, ex_map, st)
                if t is not None:
                    append(t)
                continue
            ts = ets * NS_PER_SECOND if ets else ts_init
            append(
                Tick(
                    tok,
                    ex_map.get(tok) or EXCHANGE_OF_SEGMENT.get(seg, ""),
                    ts,
                    ts_init,
                    ltp,
                    vol,
                    ltq,
                    0,
                    0,
                    0,
                    0,
                    0,
                )
            )
        else:
            tok = int.from_bytes(data[start : start + 4], "big") if length >= 4 else None
            st.skip(f"unknown packet length {length}", f"token {tok}")
            continue
        st.packets += 1
    if pos != n:
        st.skip("trailing bytes", f"{n - pos} bytes after {count} packets")
    return out


def _scaled(
    tok: int,
    seg: int,
    ltp: int,
    bp: int,
    ap: int,
    vol: int,
    ltq: int,
    oi: int,
    bq: int,
    aq: int,
    ets: int,
    ts_init: int,
    ex_map: Mapping[int, str],
    st: FrameStats,
) -> Tick | None:
    """Currency segments quote finer than a paisa: convert when exact, else skip (counted)."""
    step = PRICE_SCALE_OF_SEGMENT[seg] // 100
    if ltp % step or bp % step or ap % step:
        st.skip("price finer than a paisa", f"token {tok} price {ltp}/{step * 100}")
        return None
    st.packets += 1
    ts = ets * NS_PER_SECOND if ets else ts_init
    exchange = ex_map.get(tok) or EXCHANGE_OF_SEGMENT.get(seg, "")
    return Tick(
        tok, exchange, ts, ts_init, ltp // step, vol, ltq, oi, bp // step, ap // step, bq, aq
    )


# --- encoding (the fake server; tests) --------------------------------------------------------
Level = tuple[int, int, int]  # quantity, price, orders


def encode_ltp(token: int, ltp: int) -> bytes:
    return _LTP.pack(token, ltp)


def encode_quote(
    token: int,
    ltp: int,
    ltq: int,
    avg: int,
    volume: int,
    buy: int,
    sell: int,
    o: int,
    h: int,
    lo: int,
    c: int,
) -> bytes:
    return _QUOTE.pack(token, ltp, ltq, avg, volume, buy, sell, o, h, lo, c)


def encode_index(
    token: int, ltp: int, h: int, lo: int, o: int, c: int, ts_s: int | None = None
) -> bytes:
    """An index packet: 32 bytes (full, with the exchange time) or 28 (quote)."""
    if ts_s is None:
        return _INDEX.pack(token, ltp, h, lo, o, c, ltp - c)
    return _INDEX_FULL.pack(token, ltp, h, lo, o, c, ltp - c, ts_s)


def encode_full(
    token: int,
    ltp: int,
    ltq: int,
    avg: int,
    volume: int,
    buy: int,
    sell: int,
    o: int,
    h: int,
    lo: int,
    c: int,
    last_trade_s: int,
    oi: int,
    oi_high: int,
    oi_low: int,
    exchange_s: int,
    bids: Sequence[Level] = _NO_LEVELS,
    asks: Sequence[Level] = _NO_LEVELS,
) -> bytes:
    """A 184-byte ``full`` packet (five depth levels a side; missing levels are zero)."""
    head = _FULL_HEAD.pack(
        token,
        ltp,
        ltq,
        avg,
        volume,
        buy,
        sell,
        o,
        h,
        lo,
        c,
        last_trade_s,
        oi,
        oi_high,
        oi_low,
        exchange_s,
    )
    levels = [*bids[:5], *_NO_LEVELS[len(bids[:5]) :], *asks[:5], *_NO_LEVELS[len(asks[:5]) :]]
    return head + b"".join(_LEVEL.pack(*lv) for lv in levels)


def encode_message(packets: Iterable[bytes]) -> bytes:
    """Packets → one binary message: uint16 count, then length-prefixed packets."""
    ps = list(packets)
    return _H.pack(len(ps)) + b"".join(_H.pack(len(p)) + p for p in ps)


def split_message(data: bytes, max_packets: int) -> list[bytes]:
    """Re-frame one message into messages of at most ``max_packets`` packets."""
    (count,) = _H.unpack_from(data, 0)
    pos, packets = 2, []
    for _ in range(count):
        (length,) = _H.unpack_from(data, pos)
        packets.append(data[pos + 2 : pos + 2 + length])
        pos += 2 + length
    return [
        encode_message(packets[i : i + max_packets]) for i in range(0, len(packets), max_packets)
    ]
