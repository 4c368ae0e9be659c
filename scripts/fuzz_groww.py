"""Fuzz Groww's live-feed parser: generated websocket messages through the path production runs
(:class:`mandi.brokers.groww.ticker.GrowwTicker` — the NATS stream parser, the subscription
check, protobuf decoding, the value checks), counting what becomes a tick, an order update, a
counted bad frame — and any exception, which is a crash.

Messages (seeded, reproducible): well-formed MSG frames of every kind (price, book, index,
order update) with random values; the same with their bytes flipped, cut, duplicated or spliced;
several messages in one frame, one message across several; server PINGs, ``-ERR``s and INFOs;
random bytes. Every tick that comes out is checked (prices and quantities non-negative, its
token one that was subscribed). ``python scripts/fuzz_groww.py --frames 1000000``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mandi.brokers.groww import nats
from mandi.brokers.groww.frames import (
    encode_book,
    encode_index,
    encode_order,
    encode_price,
)
from mandi.brokers.groww.ticker import GrowwTicker
from mandi.brokers.groww.wire import FeedKey
from mandi.model.market import Tick

TOKENS = {35241 << 8 | 2: FeedKey("NSE", "FNO", "35241", "fo"),
          2885 << 8 | 1: FeedKey("NSE", "CASH", "2885", "eq"),
          99: FeedKey("NSE", "CASH", "NIFTY", "index")}  # fmt: skip


def ticker() -> GrowwTicker:
    t = GrowwTicker("ws://unused", lambda key: {}, TOKENS.get)
    t._streams[0] = nats.NatsStream()
    t._sids[0] = {}
    t._send = lambda shard, msg: None  # type: ignore[method-assign]  # no socket: PONGs dropped
    for tok in TOKENS:
        t.shard_of[tok] = 0
        for m in t._subscribe_messages([tok], "full"):
            assert m
    for subject in ("stocks_fo/order/updates.apex.sub", "stocks/order/updates.apex.sub"):
        t.decoder.route(subject, 0, "", "order")
        t._sub(0, subject)
    return t


def subjects(t: GrowwTicker) -> list[tuple[bytes, bytes, str]]:
    out = []
    for sid, subject in t._sids[0].items():
        route = t.decoder.routes.get(subject)
        out.append((subject, sid, route[2] if route else "order"))
    return out


def payload(rnd: random.Random, what: str) -> bytes:
    big = rnd.random() < 0.05
    price = rnd.randrange(0, 10**12 if big else 10**7)
    if what == "price":
        return encode_price(price, rnd.randrange(10**9), rnd.randrange(10**8),
                            rnd.choice((0, rnd.randrange(10**9, 2 * 10**12))),
                            tuple(rnd.randrange(10**7) for _ in range(4)),  # type: ignore[arg-type]
                            rnd.randrange(10**6), rnd.randrange(10**6))  # fmt: skip
    if what == "book":
        levels = [(rnd.randrange(10**7), rnd.randrange(10**5)) for _ in range(rnd.randrange(6))]
        return encode_book(levels, levels[::-1], rnd.randrange(2 * 10**12))
    if what == "index":
        return encode_index(price, rnd.randrange(2 * 10**12))
    order = {"growwOrderId": f"G{rnd.randrange(10**9)}", "orderStatus": "EXECUTED",
             "qty": rnd.randrange(10**4), "filledQty": rnd.randrange(10**4)}  # fmt: skip
    return encode_order(order)


def mutate(rnd: random.Random, b: bytes) -> bytes:
    b = bytearray(b)
    for _ in range(rnd.randrange(1, 4)):
        k = rnd.randrange(6)
        if not b:
            break
        i = rnd.randrange(len(b))
        if k == 0:
            b[i] ^= 1 << rnd.randrange(8)
        elif k == 1:
            del b[i:]
        elif k == 2:
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 8)))
        elif k == 3:
            b[i] = rnd.randrange(256)
        elif k == 4:
            b[i:i] = b[i : i + rnd.randrange(1, 30)]
        else:
            b = b[i:]
    return bytes(b)


def frames(rnd: random.Random, subs: list[tuple[bytes, bytes, str]]) -> list[bytes]:
    """One to a few websocket messages."""
    r = rnd.random()
    if r < 0.05:
        return [bytes(rnd.randrange(256) for _ in range(rnd.randrange(64)))]
    if r < 0.1:
        return [rnd.choice((nats.PING_CMD, b"PONG\r\n", b"+OK\r\n", nats.err("Stale Connection"),
                            nats.info({"nonce": "x"})))]  # fmt: skip
    msgs = []
    for _ in range(rnd.choice((1, 1, 1, 2, 3))):
        subject, sid, what = rnd.choice(subs)
        if rnd.random() < 0.03:
            subject = subject + b"X"  # a subject this connection does not hold
        m = nats.msg(subject, sid, payload(rnd, what))
        if rnd.random() < 0.3:
            m = mutate(rnd, m)
        msgs.append(m)
    data = b"".join(msgs)
    if rnd.random() < 0.2 and len(data) > 2:  # one stream cut across messages
        cut = rnd.randrange(1, len(data))
        return [data[:cut], data[cut:]]
    return [data]


def main() -> int:
    import logging

    logging.basicConfig(level=logging.ERROR)  # bad frames are counted, not printed
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20260710)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    t = ticker()
    subs = subjects(t)
    got: dict[str, int] = {"ticks": 0, "orders": 0}
    bad_ticks = 0

    def on_ticks(ticks: list[Tick]) -> None:
        nonlocal bad_ticks
        got["ticks"] += len(ticks)
        for x in ticks:
            if x.token not in TOKENS or min(x.price, x.volume, x.oi, x.bid, x.ask, x.bid_qty,
                                             x.ask_qty) < 0:  # fmt: skip
                bad_ticks += 1

    t.set_handlers(on_ticks, lambda o: got.__setitem__("orders", got["orders"] + 1))
    crashes = 0
    n = 0
    t0 = time.perf_counter()
    while n < args.frames:
        for f in frames(rnd, subs):
            n += 1
            try:
                t._handle(f, 0)
            except Exception:
                crashes += 1
                if crashes <= 5:
                    print(f"CRASH on {f[:120]!r}", file=sys.stderr)
                    traceback.print_exc()
        if n % 200_000 < 3:
            t._streams[0] = nats.NatsStream()  # a reconnect now and then
    dt = time.perf_counter() - t0
    h = t.health
    print(
        f"groww fuzz: {n:,} frames in {dt:.1f} s ({n / dt:,.0f} frames/s), seed {args.seed}: "
        f"{got['ticks']:,} ticks, {got['orders']:,} order updates, {h.malformed:,} bad frames "
        f"counted, {t.decoder.unrouted:,} unrouted, {crashes} crashes, {bad_ticks} bad ticks"
    )
    return 1 if crashes or bad_ticks else 0


if __name__ == "__main__":
    sys.exit(main())
