"""The Kite live path: frame decoding, holding 9,000 instruments, tick → order sent.

1. **Decoding full-mode frames.** 2,000 ticker messages of 50 ``full`` packets (184 bytes,
   depth included), as the fake writes them: mandi's fast decoder
   (:func:`mandi.brokers.kite.frames.decode_ticks`) and its reference decoder
   (:func:`mandi.feeds.kite.parse_frame`) against the official SDK's parser
   (``KiteTicker._parse_binary``) on the same bytes. Goal: ≥ 10× the SDK.
2. **9,000 instruments at 20,000 ticks/s through feed → candles.** Ten seconds of market (three
   connections of 3,000 instruments, a message per connection every 250 ms) through the ticker's
   message handler (decode, health), the node's batch handling (1 s / 60 / 120 / 180 / 300 s
   candles in the fast pipeline, a bus message per tick) — as fast as it goes; the CPU time
   over the ten seconds of market is the share of one core needed to keep up. Baseline: the same
   with the reference decoder. Goal: ≤ 25 % of one core.
3. **Tick → order sent (live path, no network).** The candle-closing tick runs the kernel
   (candle → strategy → signal → risk → order, written before send) and the Kite broker sends
   ``POST /orders/regular``. p50/p99 over one trading day of orders (one a minute), split into
   the kernel's part (tick → ``place_order``) and the broker's (``place_order`` → the request on
   the wire). Two ways of sending, each twice — with the loop idle after the tick, and busy with
   the rest of its batch (200 more ticks of other instruments, as on a busy market):

   * **the order sender** (the live default): ``place_order`` on the loop's thread writes a
     pre-built request into a kept-alive connection to a loopback server that answers like Kite;
     "sent" is when ``transport.write`` returned;
   * **the worker + httpx** [baseline]: the order is handed to the broker's worker thread, which
     builds the request in httpx; "sent" is when it reaches an ``httpx`` mock transport.

   Goal: p99 < 1 ms.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import pathlib
import sys
import time
from collections.abc import Iterator

import httpx
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Flip, best_of, report
from mandi.brokers.kite import frames
from mandi.brokers.kite.broker import KiteBroker
from mandi.brokers.kite.rest import KiteRest, Pacer
from mandi.brokers.kite.ticker import KiteTicker
from mandi.bus.memory import MessageBus
from mandi.core.calendar import ist_ns
from mandi.core.clock import TestClock
from mandi.execution.config import TradingConfig
from mandi.execution.memstore import MemoryTradingStore
from mandi.execution.ports import BrokerFill
from mandi.feeds.kite import FrameStats, parse_frame
from mandi.model.instruments import Equity, InstrumentMaster
from mandi.model.market import Tick
from mandi.pipeline.candles import CandlePipeline
from mandi.pipeline.fast import FastCandlePipeline
from mandi.risk.config import RiskConfig
from mandi.system.kernel import TradingKernel

NS = 1_000_000_000
T0 = ist_ns(dt.date(2026, 4, 15), dt.time(10, 0))


def full_packet(rng: np.random.Generator, token: int, ts_s: int) -> bytes:
    p = int(rng.integers(1000, 500_000)) // 5 * 5
    bids = [
        (int(rng.integers(1, 5000)), p - 5 * (k + 1), int(rng.integers(1, 50))) for k in range(5)
    ]
    asks = [
        (int(rng.integers(1, 5000)), p + 5 * (k + 1), int(rng.integers(1, 50))) for k in range(5)
    ]
    return frames.encode_full(
        token,
        p,
        int(rng.integers(1, 500)),
        p,
        int(rng.integers(0, 10**7)),
        1000,
        1000,
        p,
        p,
        p,
        p,
        ts_s,
        int(rng.integers(0, 10**6)),
        0,
        0,
        ts_s,
        bids,
        asks,
    )


def bench_decode() -> None:
    import kiteconnect

    rng = np.random.default_rng(1)
    tokens = [(int(t) << 8) | 2 for t in rng.integers(1000, 2**23, 3000)]
    msgs = [
        frames.encode_message(
            full_packet(rng, tokens[(i * 50 + j) % 3000], T0 // NS + i // 40) for j in range(50)
        )
        for i in range(2000)
    ]
    n = 50 * len(msgs)
    sdk = kiteconnect.KiteTicker("k", "t")
    sdk_msgs = msgs[:200]  # the SDK is slow: 10,000 packets are enough to time it
    t_sdk = best_of(lambda: [sdk._parse_binary(m) for m in sdk_msgs], 3) * len(msgs) / len(sdk_msgs)
    st = FrameStats()
    t_ref = best_of(lambda: [parse_frame(m, ts_init=1, stats=st) for m in msgs], 3)
    t_fast = best_of(lambda: [frames.decode_ticks(m, 1, None, st) for m in msgs], 5)
    assert [frames.decode_ticks(m, 1, None, st) for m in msgs[:50]] == [
        parse_frame(m, ts_init=1, stats=st) for m in msgs[:50]
    ]
    report("kite: full packets, official SDK parser [baseline]", n, t_sdk, "packets")
    report("kite: full packets, reference decoder (parse_frame)", n, t_ref, "packets", "SDK", t_sdk)
    report(
        "kite: full packets, fast decoder (decode_ticks)",
        n,
        t_fast,
        "packets",
        "SDK",
        t_sdk,
        goal=">= 10x the SDK",
    )


def market(seconds: int, instruments: int, per_second: int) -> tuple[list[list[bytes]], list[int]]:
    """Per 250 ms step, one message per connection (3,000 instruments each)."""
    rng = np.random.default_rng(2)
    tokens = [(int(t) << 8) | 2 for t in rng.choice(2**22, instruments, replace=False)]
    conns = [tokens[i::3] for i in range(3)]
    price = {t: int(rng.integers(1000, 300_000)) // 5 * 5 for t in tokens}
    vol = dict.fromkeys(tokens, 0)
    steps: list[list[bytes]] = []
    per_step = per_second // 4
    for s in range(seconds * 4):
        ts = T0 // NS + s // 4
        out = []
        for c in conns:
            ps = []
            for t in rng.choice(c, per_step // 3, replace=False):
                t = int(t)
                price[t] = max(5, price[t] + 5 * int(rng.integers(-2, 3)))
                vol[t] += int(rng.integers(1, 100))
                p = price[t]
                ps.append(
                    frames.encode_full(
                        t,
                        p,
                        10,
                        p,
                        vol[t],
                        1,
                        1,
                        p,
                        p,
                        p,
                        p,
                        ts,
                        0,
                        0,
                        0,
                        ts,
                        [(10, p - 5, 1)],
                        [(10, p + 5, 1)],
                    )
                )
            out.append(frames.encode_message(ps))
        steps.append(out)
    return steps, tokens


def hold(steps: list[list[bytes]], tokens: list[int], decoder: str) -> tuple[float, int]:
    """CPU seconds to push ``steps`` through ticker → node batch handling → candles."""
    clock = TestClock(T0)
    bus = MessageBus(clock)
    known = set(tokens)
    pipe = FastCandlePipeline(
        bus,
        (60, 120, 180, 300),
        known_tokens=known,
        close_delay_ns=1500 * 1_000_000,
        emit_forming=True,
    )
    publish = bus.publish
    count = [0]

    def handle_batch(batch: list[Tick]) -> None:  # what MarketNode.handle_batch does
        pipe.handle_ticks(batch)
        for t in batch:
            publish(f"tick:{t.exchange}:{t.token}", t)
        count[0] += len(batch)

    ticker = KiteTicker("ws://unused", "k", "t", now_ns=clock.now_ns)
    ticker.set_handlers(handle_batch, lambda o: None)
    if decoder == "reference":
        st = FrameStats()

        def ref(raw: bytes) -> None:
            ticks = parse_frame(raw, ts_init=clock.now_ns(), stats=st)
            ticker.health.on_message(clock.now_ns(), len(ticks))
            handle_batch(ticks)

        on_msg = ref
    else:
        on_msg = ticker._handle  # type: ignore[assignment]
    gc.collect()
    c0 = time.process_time()
    for i, step in enumerate(steps):
        clock.set(T0 + i * 250_000_000 + 300_000_000)
        for m in step:
            on_msg(m)
        if i % 4 == 3:
            pipe.advance(clock.now_ns())  # the node's wall-clock driver
    return time.process_time() - c0, count[0]


def bench_hold() -> None:
    seconds = 10
    steps, tokens = market(seconds, 9000, 20_000)
    hold(steps[:8], tokens, "fast")  # compile the pipeline's kernels outside the timing
    cpu_ref, n = hold(steps, tokens, "reference")
    cpu_fast, n2 = hold(steps, tokens, "fast")
    assert n == n2 and n >= 19_000 * seconds, (n, n2)
    report(
        "kite: 9,000 instruments feed → candles, reference decoder [baseline]", n, cpu_ref, "ticks"
    )
    print(
        f"  CPU share of one core at 20,000 ticks/s: reference decoder {cpu_ref / seconds:.0%}, "
        f"fast path {cpu_fast / seconds:.0%}",
        flush=True,
    )
    report(
        "kite: 9,000 instruments feed → candles (ticker handler, fast pipeline)",
        n,
        cpu_fast,
        "ticks",
        "reference decoder",
        cpu_ref,
        goal=f"<= 25% of one core; measured {cpu_fast / seconds:.0%}",
    )


class KiteAnswers(asyncio.Protocol):
    """A loopback server answering ``POST /orders/regular`` like Kite, at once."""

    def __init__(self, arrivals: list[int]) -> None:
        self.arrivals = arrivals
        self.buf = b""
        self.n = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(rest) < length:
                return
            self.buf = rest[length:]
            self.arrivals.append(time.perf_counter_ns())
            self.n += 1
            body = b'{"status":"success","data":{"order_id":"%d"}}' % len(self.arrivals)
            self.transport.write(  # type: ignore[attr-defined]
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"\r\n%b" % (len(body), body)
            )


class Day:
    """One trading day of ticks through the kernel with the Flip strategy and a Kite broker."""

    def __init__(self, rest: KiteRest, connections: int, busy: int) -> None:
        self.token = 408065
        day = dt.date(2026, 4, 15)
        self.clock = TestClock(ist_ns(day, dt.time(9, 15)))
        self.bus = MessageBus(self.clock)
        others = [Equity(500_000 + i, "NSE", f"X{i}", f"X{i}", "NSE", 1, 5) for i in range(busy)]
        master = InstrumentMaster([Equity(self.token, "NSE", "INFY", "INFY", "NSE", 1, 5), *others])
        known = {i.token for i in master}
        self.pipe = CandlePipeline(self.bus, (60,), known_tokens=known, emit_forming=False)
        self.others = [i.token for i in others]
        rest._pace["orders"] = Pacer(1e9)  # pacing is real-time; here orders are a minute apart
        self.broker = broker = KiteBroker(rest, master, self.clock, poll_interval_s=3600)
        broker.order_connections = connections
        big = 10**12
        self.kernel = k = TradingKernel(
            bus=self.bus,
            clock=self.clock,
            master=master,
            mode="live",
            store=MemoryTradingStore(),
            broker=broker,
            trading=TradingConfig(broker="kite"),
            risk=RiskConfig(
                max_concurrent_positions=100_000,
                capital_inr=big,
                max_order_value_inr=big,
                max_position_value_inr=big,
                max_total_exposure_inr=big,
                orders_per_minute=10_000,
                orders_per_day=100_000,
                max_queued_orders=100_000,
            ),
        )
        k.add_strategy(Flip(strategy_id="flip", timeframe=60), ["INFY"])
        self.entered: list[int] = []  # perf_counter_ns as place_order is called
        place = broker.place_order

        def timed_place(req: object) -> object:
            self.entered.append(time.perf_counter_ns())
            return place(req)  # type: ignore[arg-type]

        broker.place_order = timed_place  # type: ignore[method-assign,assignment]
        self.rng = np.random.default_rng(3)
        self.ts = ist_ns(day, dt.time(9, 15))
        self.end = ist_ns(day, dt.time(15, 10))
        self.p, self.v = 150_000, 0

    def ticks(self) -> Iterator[tuple[list[Tick], bool]]:
        """Batches: INFY's tick first, then ``busy`` ticks of other instruments; True when
        INFY's tick closes a minute (and so places an order)."""
        while self.ts < self.end:
            self.p = max(100, self.p + 5 * int(self.rng.integers(-2, 3)))
            self.v += 10
            ts, p = self.ts, self.p
            batch = [Tick(self.token, "NSE", ts, ts, p, self.v, 10, 0, p - 5, p + 5, 100, 100)]
            batch += [Tick(t, "NSE", ts, ts, p, self.v, 10, 0, p - 5, p + 5) for t in self.others]
            yield batch, (ts // NS) % 60 == 0
            self.ts += 250_000_000

    def run_batch(self, batch: list[Tick]) -> None:
        self.clock.set(batch[0].ts_event)
        publish = self.bus.publish
        for t in batch:
            self.pipe.handle_tick(t)
            publish(f"tick:NSE:{t.token}", t)

    def fill_last(self, tag: str, price: int) -> None:
        """Kite's trade for the last order (as a postback would bring it): positions flip."""
        cid = self.broker._by_tag[tag]
        self.broker._emit(BrokerFill(cid, f"kite-{tag}", 1, price, self.ts))


def percentiles(xs: list[int]) -> tuple[float, float]:
    a = np.percentile(np.array(xs) / 1000, [50, 99])
    return float(a[0]), float(a[1])


def worker_day(busy: int) -> dict[str, list[int]]:
    """The baseline: the worker thread sends through httpx (to a mock transport)."""
    sent: list[int] = []
    tags: list[str] = []
    worker_cpu: list[int] = []

    def transport(request: httpx.Request) -> httpx.Response:
        """Kite's answers, instantly: the network is not measured."""
        if request.method == "POST":
            sent.append(time.perf_counter_ns())
            worker_cpu.append(time.thread_time_ns() - d.broker.send_marks[-1][1])
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            tags.append(form["tag"])
            data: object = {"order_id": str(len(sent))}
        else:
            data = []
        return httpx.Response(200, json={"status": "success", "data": data})

    rest = KiteRest(
        "key", "token", root="http://kite.invalid", transport=httpx.MockTransport(transport)
    )
    d = Day(rest, 0, busy)
    d.broker.connect()  # no running loop: the worker sends everything
    d.kernel.start()
    out: dict[str, list[int]] = {"wall": [], "kernel": [], "broker": [], "cpu": []}
    gc.disable()
    try:
        for batch, _closes in d.ticks():
            before = len(sent)
            entered = len(d.entered)
            c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
            d.run_batch(batch)
            c1 = time.thread_time_ns()
            if len(d.entered) > entered:  # an order: wait until the worker has sent it
                deadline = time.monotonic() + 2.0
                while len(sent) == before:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the order was not sent")
                    time.sleep(0.00005)
                out["wall"].append(sent[before] - t0)
                out["kernel"].append(d.entered[-1] - t0)
                out["broker"].append(sent[before] - d.entered[-1])
                out["cpu"].append(c1 - c0 + worker_cpu[-1])
                d.broker.drain()  # the ack
                d.fill_last(tags[-1], d.p)
            d.broker.drain()
    finally:
        gc.enable()
        d.broker.close()
    return out


async def sender_day(busy: int) -> dict[str, list[int]]:
    """The live default: the order sender writes on the loop's thread."""
    loop = asyncio.get_running_loop()
    arrivals: list[int] = []
    server = await loop.create_server(lambda: KiteAnswers(arrivals), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    d = Day(KiteRest("key", "token", root=f"http://127.0.0.1:{port}"), 2, busy)
    d.broker.connect()
    d.kernel.start()
    sender = d.broker.sender
    assert sender is not None
    while not sender.ready:
        await asyncio.sleep(0.001)
    out: dict[str, list[int]] = {"wall": [], "kernel": [], "broker": [], "cpu": [], "server": []}
    gc.disable()
    try:
        for batch, _closes in d.ticks():
            written, entered = sender.written, len(d.entered)
            c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
            d.run_batch(batch)
            c1 = time.thread_time_ns()
            if len(d.entered) > entered:
                if sender.written == written:
                    raise RuntimeError("the order was not written at once")
                out["wall"].append(sender.last_write_ns - t0)
                out["kernel"].append(d.entered[-1] - t0)
                out["broker"].append(sender.last_write_ns - d.entered[-1])
                out["cpu"].append(c1 - c0)
                n = len(arrivals)
                while len(arrivals) == n or not sender.ready:  # the answer, before the next
                    await asyncio.sleep(0)
                out["server"].append(arrivals[-1] - t0)
                tag = next(reversed(d.broker._by_tag))
                tracked = d.broker._tracked[d.broker._by_tag[tag]]
                while not tracked.order_id:  # the ack
                    await asyncio.sleep(0)
                d.broker.drain()
                d.fill_last(tag, d.p)
            d.broker.drain()
    finally:
        gc.enable()
        d.broker.close()
        server.close()
    return out


def bench_tick_to_order() -> None:
    runs = {
        "sender, loop idle": asyncio.run(sender_day(0)),
        "worker + httpx, loop idle [baseline]": worker_day(0),
        "sender, loop busy (200 more ticks)": asyncio.run(sender_day(200)),
        "worker + httpx, loop busy [baseline]": worker_day(200),
    }
    for name, r in runs.items():
        assert len(r["wall"]) > 300, (name, len(r["wall"]))
        w, kp, bp, c = (percentiles(r[k]) for k in ("wall", "kernel", "broker", "cpu"))
        extra = ""
        if "server" in r:
            sv = percentiles(r["server"])
            extra = f"; at the server p50 {sv[0]:.0f} µs, p99 {sv[1]:.0f} µs"
        print(
            f"kite: tick → order sent, {name}, {len(r['wall'])} orders: wall p50 {w[0]:.0f} µs, "
            f"p99 {w[1]:.0f} µs (kernel: tick → place_order p50 {kp[0]:.0f} / p99 {kp[1]:.0f} "
            f"µs; broker: place_order → sent p50 {bp[0]:.0f} / p99 {bp[1]:.0f} µs); CPU p50 "
            f"{c[0]:.0f} µs, p99 {c[1]:.0f} µs{extra}",
            flush=True,
        )
    base = runs["worker + httpx, loop idle [baseline]"]
    fast = runs["sender, loop idle"]
    bw, fw = percentiles(base["broker"]), percentiles(fast["broker"])
    report(
        "kite: tick → order sent, worker + httpx [baseline]",
        len(base["wall"]),
        sum(base["wall"]) / 1e9,
        "orders",
    )
    report(
        "kite: tick → order sent, order sender (live default)",
        len(fast["wall"]),
        sum(fast["wall"]) / 1e9,
        "orders",
        "worker + httpx",
        sum(base["wall"]) / 1e9,
        goal=(
            f"p99 < 1 ms; wall p99 {percentiles(fast['wall'])[1]:.0f} µs, of which the broker's "
            f"part p99 {fw[1]:.0f} µs (baseline {bw[1]:.0f} µs)"
        ),
    )


def main() -> None:
    bench_decode()
    bench_hold()
    bench_tick_to_order()


if __name__ == "__main__":
    main()
