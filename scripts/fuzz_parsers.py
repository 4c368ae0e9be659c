"""Fuzz the wire parsers of the tick path with a million generated inputs (not part of the suite).

    python scripts/fuzz_parsers.py [--inputs 1000000] [--seed 1] [--json out.json]

Each parser gets an equal share of the inputs:

* Kite Connect binary messages: the reference decoder :func:`mandi.feeds.kite.parse_frame` and
  the live path's :func:`mandi.brokers.kite.frames.decode_ticks`;
* Angel One SmartAPI v2 binary frames: :func:`mandi.feeds.angel.parse_frame` and the live path's
  ``AngelTicker._decode`` (:func:`mandi.brokers.angel.frames.decode_tick` and the circuit limits);
* tickserver JSON messages, :class:`mandi.feeds.ws.TickserverFeed` (``_parse``, what its read
  loop calls for every frame).

Inputs are random bytes, real frames mutated (bit flips, interesting bytes and integers written
over fields, bytes inserted, deleted, duplicated, two frames spliced), real frames truncated, and
frames built to the protocol's structure with random values (Kite packet counts and lengths that
lie, Angel modes and exchange types, tickserver messages whose every value may be of any JSON
type). The seeds are the real captures of ``tests/data/broker_ticks`` and messages of the
simulated exchange as ``mandi tickserver`` sends them.

A crash is any exception other than the parser's documented error (:class:`~mandi.core.errors.
ParseError` for Kite and Angel; the tickserver client raises nothing: it counts). The ticks the
parsers produce are also pushed, in batches, through the fast candle pipeline with the tick
policy (:class:`~mandi.pipeline.fast.FastCandles`), which must not raise either. The script
prints per parser the inputs, the time, how many parsed, were refused and crashed, and exits 1
on any crash (the first few are shown with the input in hex).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import pathlib
import random
import struct
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from mandi.brokers.angel.ticker import AngelTicker
from mandi.brokers.kite.frames import decode_ticks as kite_live
from mandi.config import AppConfig
from mandi.core.errors import ParseError
from mandi.feeds import angel, kite
from mandi.feeds.sim import SimExchange
from mandi.feeds.ws import TickserverFeed
from mandi.model.market import Tick
from mandi.pipeline.fast import FastCandles

DATA = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "broker_ticks"
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF]
INTERESTING_INTS = [0, 1, -1, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, -(2**63), 2**53, 184, 44]


# --- seeds -------------------------------------------------------------------------------------


def kite_seeds() -> list[bytes]:
    seeds = [p.read_bytes() for p in sorted(DATA.glob("kite*/*.bin"))]
    for p in sorted((DATA / "kite").glob("*.packet")):  # one packet, Base64: frame it
        packet = base64.b64decode(p.read_text())
        seeds.append(struct.pack(">HH", 1, len(packet)) + packet)
    seeds.append(b"\x00")  # a heartbeat
    return seeds


def angel_seeds() -> list[bytes]:
    return [p.read_bytes() for p in sorted((DATA / "angel_synthetic").glob("*.bin"))]


def tickserver_seeds() -> list[bytes]:
    """Messages of the simulated exchange as ``mandi tickserver`` sends them."""
    ex = SimExchange(AppConfig().sim, dt.date(2026, 4, 13))
    minute = next(iter(ex.ticks()))
    encode = msgspec.json.Encoder().encode
    seeds = []
    for i in range(0, min(len(minute), 2000), 200):
        step = minute[i : i + 12]
        rows = [list(msgspec.structs.astuple(t)) for t in step]
        for r in rows:
            del r[3]  # ts_init: the wire row has none
        seeds.append(encode({"type": "ticks", "ts": step[0].ts_event, "data": rows}))
    seeds.append(encode({"type": "session_end", "ts": minute[-1].ts_event}))
    seeds.append(b'{"type": "hello", "version": 1, "date": "2026-04-13", "seed": 42}')
    seeds.append(b'{"type": "error", "error": "bad message"}')
    return seeds


# --- mutations ---------------------------------------------------------------------------------


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """1-8 random edits of ``data``."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(8)
        n = len(b)
        if op == 0 and n:  # flip a bit
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # an interesting byte
            b[rng.randrange(n)] = rng.choice(INTERESTING)
        elif op == 2 and n >= 8:  # an interesting integer over a field
            i = rng.randrange(n - 7)
            width, fmt = rng.choice([(2, ">H"), (4, ">I"), (8, "<q"), (8, ">q"), (4, "<i")])
            v = rng.choice(INTERESTING_INTS)
            try:
                b[i : i + width] = struct.pack(fmt, v)
            except struct.error:
                b[i : i + width] = bytes(width)
        elif op == 3:  # insert random bytes
            i = rng.randrange(n + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 4 and n:  # delete a range
            i = rng.randrange(n)
            del b[i : i + rng.randint(1, 16)]
        elif op == 5 and n:  # duplicate a range
            i = rng.randrange(n)
            b[i:i] = b[i : i + rng.randint(1, 32)]
        elif op == 6:  # splice with another seed
            other = rng.choice(seeds)
            i, j = rng.randrange(n + 1), rng.randrange(len(other) + 1)
            b = b[:i] + bytearray(other[j:])
        elif n:  # an ASCII digit or JSON punctuation (text protocols)
            b[rng.randrange(n)] = ord(rng.choice('0123456789-.e,:[]{}"nulltrue'))
    return bytes(b)


def kite_structured(rng: random.Random) -> bytes:
    """A Kite message whose header and packet lengths may lie."""
    count = rng.choice([0, 1, 2, 3, rng.randrange(65536)])
    out = bytearray(struct.pack(">H", count))
    for _ in range(min(count, 4)):
        length = rng.choice([8, 28, 32, 44, 184, 164, 0, 1, 7, rng.randrange(300)])
        declared = length if rng.random() < 0.8 else rng.randrange(65536)
        out += struct.pack(">H", declared) + rng.randbytes(length)
    return bytes(out)


def angel_structured(rng: random.Random) -> bytes:
    """An Angel frame with a real or wrong mode, exchange type and size, random fields."""
    mode = rng.choice([1, 2, 3, 4, 0, 5, 255])
    size = rng.choice([51, 123, 379, 443, rng.randrange(500)])
    body = bytearray(rng.randbytes(size))
    if size >= 2:
        body[0] = mode
        body[1] = rng.choice([1, 2, 3, 4, 5, 7, 13, 0, 99])
    if size >= 27 and rng.random() < 0.7:  # a plausible token
        body[2:27] = str(rng.randrange(10**7)).encode().ljust(25, b"\x00")
    return bytes(body)


JSON_VALUES: list[Callable[[random.Random], Any]] = [
    lambda r: r.randrange(-(2**70), 2**70),
    lambda r: r.choice(INTERESTING_INTS),
    lambda r: r.uniform(-1e20, 1e20),
    lambda r: r.choice(["", "NSE", "1.5", "abc", "\u20b9"]),
    lambda r: None,
    lambda r: r.random() < 0.5,
    lambda r: [r.randrange(10)],
    lambda r: {"k": r.randrange(10)},
]


def tickserver_structured(rng: random.Random) -> bytes:
    """A tickserver message with any type and rows whose every value may be of any JSON type."""
    rows: list[Any] = []
    for _ in range(rng.randrange(6)):
        if rng.random() < 0.1:
            rows.append(rng.choice(JSON_VALUES)(rng))
            continue
        row = [
            rng.choice([256265, 265, 1001, rng.randrange(10**9)]),
            "NSE",
            1_776_051_900_000_000_000 + rng.randrange(10**12),
            rng.randrange(1, 10**7),
            rng.randrange(10**6),
            *(rng.randrange(10**4) for _ in range(6)),
        ]
        for _ in range(rng.randrange(4)):
            row[rng.randrange(len(row))] = rng.choice(JSON_VALUES)(rng)
        if rng.random() < 0.1:
            del row[rng.randrange(len(row)) :]
        rows.append(row)
    msg: dict[str, Any] = {
        "type": rng.choice(["ticks", "ticks", "session_end", "day", "hello", "error", "zzz"])
    }
    if rng.random() < 0.9:
        msg["data"] = rows if rng.random() < 0.9 else rng.choice(JSON_VALUES)(rng)
    if rng.random() < 0.8:
        msg["ts"] = rng.choice(JSON_VALUES)(rng) if rng.random() < 0.3 else 1_776_051_900 * 10**9
    if rng.random() < 0.1:
        msg["error"] = rng.choice(JSON_VALUES)(rng)
    return json.dumps(msg).encode()


# --- the run -----------------------------------------------------------------------------------


class Target:
    """One parser: how to call it, what it may raise, and its inputs' generators."""

    def __init__(
        self,
        name: str,
        parse: Callable[[bytes], list[Tick] | Tick | None],
        allowed: tuple[type[BaseException], ...],
        seeds: list[bytes],
        structured: Callable[[random.Random], bytes],
    ) -> None:
        self.name, self.parse, self.allowed = name, parse, allowed
        self.seeds, self.structured = seeds, structured
        self.kinds: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.crashes: list[tuple[str, bytes]] = []
        self.pipeline = FastCandles(emit_forming=False)
        self.pending: list[Tick] = []
        self.seconds = 0.0

    def generate(self, rng: random.Random) -> bytes:
        kind = rng.choice(["random", "mutated", "mutated", "truncated", "structured"])
        self.kinds[kind] += 1
        if kind == "random":
            return rng.randbytes(rng.choice([0, 1, 2, 8, 51, 123, 184, rng.randrange(600)]))
        seed = rng.choice(self.seeds)
        if kind == "mutated":
            return mutate(rng, seed, self.seeds)
        if kind == "truncated":
            return seed[: rng.randrange(len(seed) + 1)]
        return self.structured(rng)

    def feed(self, data: bytes) -> None:
        try:
            out = self.parse(data)
        except self.allowed:
            self.outcomes["refused"] += 1
            return
        except Exception:
            self.outcomes["crashed"] += 1
            if len(self.crashes) < 5:
                self.crashes.append((traceback.format_exc(limit=3), data))
            return
        ticks = [out] if isinstance(out, Tick) else (out or [])
        self.outcomes["parsed" if out is not None else "skipped"] += 1
        self.pending += ticks
        if len(self.pending) >= 2000:
            self.flush()

    def flush(self) -> None:
        """The produced ticks through the pipeline and the tick policy (must never raise)."""
        if self.pending:
            times = sorted(t.ts_event for t in self.pending if type(t.ts_event) is int)
            clock = times[len(times) // 2] if times else None  # the batch's own clock
            try:
                self.pipeline.process_ticks(self.pending, now_ns=clock)
            except Exception:
                self.outcomes["pipeline_crashed"] += 1
                if len(self.crashes) < 5:
                    self.crashes.append((traceback.format_exc(limit=3), b"<pipeline batch>"))
            self.pending = []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=1_000_000, help="inputs in all (split evenly)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    quiet = kite.FrameStats()
    quiet.skip = lambda reason, detail: quiet.skipped.__setitem__(  # type: ignore[method-assign]
        reason, quiet.skipped.get(reason, 0) + 1
    )  # counted, not logged: a million skips would flood the terminal
    feed = TickserverFeed("ws://fuzz")
    feed._log.warning = lambda *a, **k: None  # type: ignore[method-assign]
    angel_ticker = AngelTicker("ws://fuzz", "key", "client", lambda: None)  # type: ignore[arg-type,return-value]
    targets = [
        Target(
            "kite",
            lambda d: kite.parse_frame(d, stats=quiet),
            (ParseError,),
            kite_seeds(),
            kite_structured,
        ),
        Target(
            "kite-live",
            lambda d: kite_live(d, stats=quiet),
            (ParseError,),
            kite_seeds(),
            kite_structured,
        ),
        Target("angel", angel.parse_frame, (ParseError,), angel_seeds(), angel_structured),
        Target(
            "angel-live",  # what the ticker does with each frame: the tick and circuit limits
            lambda d: angel_ticker._decode(d, 0),
            (ParseError,),
            angel_seeds(),
            angel_structured,
        ),
        Target("tickserver", feed._parse, (), tickserver_seeds(), tickserver_structured),
    ]
    per = -(-args.inputs // len(targets))
    rng = random.Random(args.seed)
    report: dict[str, Any] = {"inputs": 0, "seconds": 0.0, "crashes": 0, "parsers": {}}
    for t in targets:
        t0 = time.perf_counter()
        for _ in range(per):
            t.feed(t.generate(rng))
        t.flush()
        t.seconds = time.perf_counter() - t0
        crashes = t.outcomes["crashed"] + t.outcomes["pipeline_crashed"]
        print(
            f"{t.name:<10} {per:>9,} inputs in {t.seconds:6.1f} s ({per / t.seconds:>9,.0f}/s): "
            f"{t.outcomes['parsed']:,} parsed, {t.outcomes['refused']:,} refused as documented, "
            f"{t.outcomes['skipped']:,} skipped and counted, {crashes} crashes; "
            f"ticks through the pipeline {t.pipeline.ticks:,} accepted, "
            f"{sum(t.pipeline.rejected.values()):,} rejected by the tick policy",
            flush=True,
        )
        report["parsers"][t.name] = {
            "inputs": per,
            "seconds": round(t.seconds, 2),
            "kinds": dict(t.kinds),
            "outcomes": dict(t.outcomes),
            "pipeline_ticks": t.pipeline.ticks,
            "pipeline_rejected": dict(t.pipeline.rejected),
        }
        report["inputs"] += per
        report["seconds"] += t.seconds
        report["crashes"] += crashes
        for tb, data in t.crashes:
            print(f"--- {t.name} crash on {data[:120].hex()}\n{tb}", file=sys.stderr)
    print(
        f"total: {report['inputs']:,} inputs in {report['seconds']:.1f} s, "
        f"{report['crashes']} crashes (seed {args.seed})"
    )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if report["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
