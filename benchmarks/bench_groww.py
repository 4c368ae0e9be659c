"""Groww's live feed: NATS messages with protobuf payloads → ticks.

20,000 live-price messages (LTP, volume, OI, time; as ``mandi fakebroker groww`` writes them)
through mandi's decoder — the whole path production runs (:class:`mandi.brokers.groww.ticker
.GrowwTicker`: the NATS stream parser, the subscription check, protobuf, the value checks, the
tick) and the payload step alone (:class:`mandi.brokers.groww.frames.FrameDecoder`) — against
the official ``growwapi`` SDK's decoding of the same payloads (its ``get_data_dict``: protobuf
parse and the dict it hands to users; baseline). The messages arrive 50 to a websocket frame,
as a busy feed batches them.
"""

from __future__ import annotations

import pathlib
import random
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import best_of, report
from mandi.brokers.groww import nats
from mandi.brokers.groww.frames import encode_price
from mandi.brokers.groww.ticker import GrowwTicker
from mandi.brokers.groww.wire import FeedKey

N = 20_000
TOKENS = {(40000 + i) << 8 | 2: FeedKey("NSE", "FNO", str(40000 + i), "fo") for i in range(200)}


def main() -> None:
    rnd = random.Random(7)
    t = GrowwTicker("ws://unused", lambda key: {}, TOKENS.get)
    t._streams[0], t._sids[0] = nats.NatsStream(), {}
    for tok in TOKENS:
        t.shard_of[tok] = 0
        t._subscribe_messages([tok], "ltp")
    subs = list(t._sids[0].items())
    payloads = [
        encode_price(rnd.randrange(5, 50_000_00), rnd.randrange(10**7), rnd.randrange(10**6),
                     1_752_140_000_000 + k)
        for k in range(N)
    ]  # fmt: skip
    msgs = [nats.msg(subs[k % len(subs)][1], subs[k % len(subs)][0], p)
            for k, p in enumerate(payloads)]  # fmt: skip
    frames = [b"".join(msgs[i : i + 50]) for i in range(0, N, 50)]
    ticks: list[int] = []
    t.set_handlers(lambda ts: ticks.append(len(ts)), lambda o: None)

    def whole() -> None:
        for f in frames:
            t._handle(f, 0)

    routes = [(subs[k % len(subs)][1], p) for k, p in enumerate(payloads)]
    decode = t.decoder.decode

    def decoder_only() -> None:
        for subject, p in routes:
            decode(subject, p, 0)

    whole()
    assert sum(ticks) == N and t.health.malformed == 0
    t_whole = best_of(whole, 3)
    t_dec = best_of(decoder_only, 3)
    try:
        from growwapi.groww.proto.proto_parser import get_data_dict
    except ImportError:
        print("groww: the official growwapi SDK is not installed (make bench installs it)")
        report("groww: live-price messages → ticks, whole path", N, t_whole, "messages")
        return
    t_sdk = best_of(lambda: [get_data_dict(p, "ltp") for p in payloads], 3)
    report("groww: live-price payloads, official SDK (get_data_dict) [baseline]", N, t_sdk,
           "messages")  # fmt: skip
    report("groww: live-price payloads → ticks (FrameDecoder)", N, t_dec, "messages", "SDK",
           t_sdk)  # fmt: skip
    report("groww: NATS frames → ticks, whole path (GrowwTicker)", N, t_whole, "messages", "SDK",
           t_sdk)  # fmt: skip


if __name__ == "__main__":
    main()
