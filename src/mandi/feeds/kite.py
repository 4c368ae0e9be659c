"""Zerodha Kite Connect websocket: decoding of the binary market-data messages.

Layout (Kite Connect v3 websocket; big-endian, see the shared data README §4): a message is a
uint16 packet count, then per packet a uint16 length and the packet. A 1-byte message is a
heartbeat. Packet kinds by length:

====== ============ =================================================================
length kind         fields (byte offsets)
====== ============ =================================================================
8      ``ltp``      token 0, last price 4
28     index quote  token, last price, **high 8, low 12, open 16, close 20**, net change 24
32     index full   as 28, exchange timestamp 28 (epoch seconds)
44     ``quote``    token, last price, last qty 8, average price 12, volume 16, total buy
                    qty 20, total sell qty 24, **open 28, high 32, low 36, close 40**
184    ``full``     as 44, last trade time 44, OI 48, OI day high 52, OI day low 56,
                    exchange timestamp 60, depth from 64: 5 bids then 5 asks of 12 bytes
                    (uint32 qty, uint32 price, uint16 orders, 2 padding bytes)
====== ============ =================================================================

Segment = ``token & 0xFF``: 1 NSE, 2 NFO, 3 CDS, 4 BSE, 5 BFO, 6 BCD, 7 MCX, 8 MCXSX,
9 indices. Prices are integers in 1/100 rupee (paise) except currency derivatives: CDS in
1/10,000,000 and BCD in 1/10,000 rupee. The exchange of a :class:`~mandi.model.market.Tick`
follows the segment: NSE, NFO, CDS → ``"NSE"``; BSE, BFO, BCD → ``"BSE"``; MCX → ``"MCX"``;
MCXSX → ``"MCXSX"``; indices → ``"NSE"`` unless the ``exchanges`` mapping (token → exchange,
from the instrument master) says otherwise (BSE indices such as SENSEX share segment 9).

Robustness: a packet of any other length (e.g. the 164-byte "full" packet of 2016) is
skipped and counted in :class:`FrameStats`, never decoded by guesswork; a message that ends
before its declared packets raises :class:`~mandi.core.errors.ParseError` naming the offset.
Timestamps are epoch seconds from the exchange → int ns UTC; no local time zone is involved.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import ParseError
from mandi.model.market import Tick

__all__ = [
    "EXCHANGE_OF_SEGMENT",
    "PRICE_SCALE_OF_SEGMENT",
    "FrameStats",
    "KiteDepth",
    "KiteQuote",
    "frame_stats",
    "parse_frame",
    "parse_packet",
    "parse_packets",
    "to_tick",
]

log = logging.getLogger(__name__)

SEGMENT_NAMES = {
    1: "nse", 2: "nfo", 3: "cds", 4: "bse", 5: "bfo", 6: "bcd", 7: "mcx", 8: "mcxsx",
    9: "indices",
}  # fmt: skip
EXCHANGE_OF_SEGMENT = {
    1: "NSE", 2: "NSE", 3: "NSE", 4: "BSE", 5: "BSE", 6: "BSE", 7: "MCX", 8: "MCXSX", 9: "NSE",
}  # fmt: skip
#: Raw price units per rupee, by segment (Kite's divisors).
PRICE_SCALE_OF_SEGMENT = {3: 10_000_000, 6: 10_000}
_INDICES = 9

_HDR = struct.Struct(">H")
_LTP = struct.Struct(">II")
_INDEX = struct.Struct(">IIIIIIi")  # token, ltp, high, low, open, close, net change (signed)
_QUOTE = struct.Struct(">11I")
_FULL_EXTRA = struct.Struct(">5I")  # last trade time, oi, oi high, oi low, exchange time
_DEPTH = struct.Struct(">IIH2x")


class KiteDepth(msgspec.Struct, frozen=True):
    """One level of market depth; ``price`` in the packet's price units (see ``price_scale``)."""

    quantity: int
    price: int
    orders: int


class KiteQuote(msgspec.Struct, frozen=True):
    """Everything one Kite packet says about one instrument.

    Prices are the raw integers of the packet, in 1/``price_scale`` rupee (``price_scale`` =
    100, i.e. paise, except currency derivatives). Fields the packet kind does not carry are
    ``None``. ``net_change`` is bytes 24-28 of an index packet as sent (pykiteconnect ignores
    them; in the 2026 capture they equal last price - close). Times are int ns UTC.
    """

    token: int
    segment: int
    exchange: str
    mode: str  # "ltp" | "quote" | "full" | "index_quote" | "index_full"
    tradable: bool
    last_price: int
    price_scale: int = 100
    last_quantity: int | None = None
    average_price: int | None = None
    volume: int | None = None
    buy_quantity: int | None = None
    sell_quantity: int | None = None
    open: int | None = None
    high: int | None = None
    low: int | None = None
    close: int | None = None
    net_change: int | None = None
    last_trade_time: int | None = None
    oi: int | None = None
    oi_day_high: int | None = None
    oi_day_low: int | None = None
    exchange_time: int | None = None
    bids: tuple[KiteDepth, ...] = ()
    asks: tuple[KiteDepth, ...] = ()

    @property
    def change(self) -> int | None:
        """Last price minus the previous close (price units); None without a close."""
        return None if not self.close else self.last_price - self.close

    @property
    def change_percent(self) -> float | None:
        """(last price - close) / close x 100, as pykiteconnect reports ``change``."""
        return None if not self.close else (self.last_price - self.close) * 100 / self.close


@dataclass
class FrameStats:
    """Counts of decoded packets and of skipped ones per reason (shared by all calls that
    pass the same instance; see :data:`frame_stats`)."""

    frames: int = 0
    heartbeats: int = 0
    packets: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, detail: str) -> None:
        n = self.skipped.get(reason, 0) + 1
        self.skipped[reason] = n
        if n == 1:  # the first of each kind is logged; the rest are counted here
            log.warning("Kite packet skipped (%s): %s", reason, detail)


#: Counters used when a caller passes no ``stats``: skipped packets are never lost silently.
frame_stats = FrameStats()


def _seconds_ns(s: int) -> int | None:
    return s * NS_PER_SECOND if s else None


def parse_packet(
    packet: bytes | memoryview,
    exchanges: Mapping[int, str] | None = None,
) -> KiteQuote | None:
    """Decode one packet (without its 2-byte length); None for an unknown length.

    Raises
    ------
    ParseError
        Never for a well-framed packet; only a caller that slices wrongly can get one (an
        empty packet).
    """
    n = len(packet)
    if n < 8:
        return None
    token = int.from_bytes(packet[:4], "big")
    segment = token & 0xFF
    exchange = (exchanges or {}).get(token) or EXCHANGE_OF_SEGMENT.get(segment, "")
    scale = PRICE_SCALE_OF_SEGMENT.get(segment, 100)
    tradable = segment != _INDICES
    if n == 8:
        _, ltp = _LTP.unpack(packet)
        return KiteQuote(token, segment, exchange, "ltp", tradable, ltp, scale)
    if n in (28, 32):
        _, ltp, high, low, open_, close, net = _INDEX.unpack_from(packet)
        ts = _seconds_ns(int.from_bytes(packet[28:32], "big")) if n == 32 else None
        return KiteQuote(
            token, segment, exchange, "index_full" if n == 32 else "index_quote", tradable,
            ltp, scale, open=open_, high=high, low=low, close=close, net_change=net,
            exchange_time=ts,
        )  # fmt: skip
    if n in (44, 184):
        (_, ltp, ltq, avg, vol, buy, sell, open_, high, low, close) = _QUOTE.unpack_from(packet)
        if n == 44:
            return KiteQuote(
                token, segment, exchange, "quote", tradable, ltp, scale, ltq, avg, vol, buy,
                sell, open_, high, low, close,
            )  # fmt: skip
        ltt, oi, oi_high, oi_low, ets = _FULL_EXTRA.unpack_from(packet, 44)
        depth = [KiteDepth(*_DEPTH.unpack_from(packet, 64 + 12 * i)) for i in range(10)]
        return KiteQuote(
            token, segment, exchange, "full", tradable, ltp, scale, ltq, avg, vol, buy, sell,
            open_, high, low, close, None, _seconds_ns(ltt), oi, oi_high, oi_low,
            _seconds_ns(ets), tuple(depth[:5]), tuple(depth[5:]),
        )  # fmt: skip
    return None


def _packets(data: bytes, stats: FrameStats) -> list[memoryview]:
    """Split one message into packets; [] for a heartbeat."""
    stats.frames += 1
    if len(data) == 0:
        raise ParseError("Kite frame is empty (0 bytes)")
    if len(data) == 1:
        stats.heartbeats += 1
        return []
    view = memoryview(data)
    (count,) = _HDR.unpack_from(view, 0)
    out = []
    pos = 2
    for i in range(count):
        if pos + 2 > len(view):
            raise ParseError(
                f"Kite frame truncated at offset {pos}: packet {i + 1} of {count} has no "
                f"length (frame is {len(view)} bytes)"
            )
        (length,) = _HDR.unpack_from(view, pos)
        if pos + 2 + length > len(view):
            raise ParseError(
                f"Kite frame truncated at offset {pos + 2}: packet {i + 1} of {count} declares "
                f"{length} bytes, {len(view) - pos - 2} left (frame is {len(view)} bytes)"
            )
        out.append(view[pos + 2 : pos + 2 + length])
        pos += 2 + length
    if pos != len(view):
        stats.skip("trailing bytes", f"{len(view) - pos} bytes after {count} packets")
    return out


def parse_packets(
    data: bytes,
    *,
    exchanges: Mapping[int, str] | None = None,
    stats: FrameStats | None = None,
) -> list[KiteQuote]:
    """Decode one websocket message into :class:`KiteQuote`\\ s (all fields, depth included).

    Packets of an unknown length are skipped and counted in ``stats`` (default
    :data:`frame_stats`). Raises :class:`ParseError` for an empty or truncated message.
    """
    st = frame_stats if stats is None else stats
    out = []
    for p in _packets(data, st):
        q = parse_packet(p, exchanges)
        if q is None:
            token = int.from_bytes(p[:4], "big") if len(p) >= 4 else None
            st.skip(f"unknown packet length {len(p)}", f"token {token}")
            continue
        st.packets += 1
        out.append(q)
    return out


def _paise(raw: int, scale: int) -> int | None:
    if scale == 100:
        return raw
    step = scale // 100
    return raw // step if raw % step == 0 else None


def to_tick(q: KiteQuote, ts_init: int = 0, stats: FrameStats | None = None) -> Tick | None:
    """The :class:`Tick` of a decoded packet; None (counted) when a price is finer than a
    paisa (currency derivatives), which a paise Tick cannot hold."""
    scale = q.price_scale
    best_bid = q.bids[0] if q.bids else None
    best_ask = q.asks[0] if q.asks else None
    prices = [
        _paise(q.last_price, scale),
        _paise(best_bid.price, scale) if best_bid else 0,
        _paise(best_ask.price, scale) if best_ask else 0,
    ]
    if any(p is None for p in prices):
        (frame_stats if stats is None else stats).skip(
            "price finer than a paisa", f"token {q.token} price {q.last_price}/{scale}"
        )
        return None
    ltp, bid, ask = (int(p or 0) for p in prices)
    return Tick(
        token=q.token,
        exchange=q.exchange,
        ts_event=q.exchange_time or ts_init,
        ts_init=ts_init,
        price=ltp,
        volume=q.volume or 0,
        last_qty=q.last_quantity or 0,
        oi=q.oi or 0,
        bid=bid,
        ask=ask,
        bid_qty=best_bid.quantity if best_bid else 0,
        ask_qty=best_ask.quantity if best_ask else 0,
    )


def parse_frame(
    data: bytes,
    *,
    ts_init: int = 0,
    exchanges: Mapping[int, str] | None = None,
    stats: FrameStats | None = None,
) -> list[Tick]:
    """Decode one Kite websocket binary message into ticks.

    Parameters
    ----------
    data
        The message exactly as received (a 1-byte heartbeat gives ``[]``).
    ts_init
        When the message was received (int ns UTC, from the feed's clock; 0 if unknown).
        ``ts_event`` is the packet's exchange timestamp (full and index-full packets) and
        ``ts_init`` for packets that carry none (ltp, quote, index quote).
    exchanges
        Optional token → exchange overrides (index tokens of BSE).
    stats
        Where skipped packets are counted (default :data:`frame_stats`).

    Returns
    -------
    list[Tick]
        One tick per decodable packet: price = last price (paise), volume = day volume,
        bid/ask and their quantities from the top of the depth (full packets only, else 0),
        OI (full packets only).

    Raises
    ------
    ParseError
        If the message is empty or shorter than its declared packets (names the offset).
    """
    st = frame_stats if stats is None else stats
    ticks = []
    for q in parse_packets(data, exchanges=exchanges, stats=st):
        t = to_tick(q, ts_init, st)
        if t is not None:
            ticks.append(t)
    return ticks
