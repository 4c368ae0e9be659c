"""``mandi run`` end to end, flat out, with every default layer (candles, indicators, option
chains, paper trading, SQLite) — beside the pipeline alone, measured in the same run.

* ``mandi run --date 2026-04-13 --until 10:15 --speed inf --no-dashboard`` (the issue's case, an
  hour of the default simulated market: 1.38 M ticks) in a fresh process, columnar engine; the
  node reports the kernel's own rate (first tick to stop, start-up excluded) and the process its
  peak RSS, sampled through the run (flat memory: the last quarter's peak against the first's).
* the same with ``pipeline.engine = reference`` (the per-object path) on the first 10 minutes;
* ``mandi run --feed replay:DB`` of the recorded hour, through the whole platform;
* the pipeline alone (``FastCandles.process``) on the same ticks, in this process.

* tick → order inside ``mandi run`` at that throughput (:func:`latency_lines`): the feed's batches
  cut into 250 ms slices, an extra strategy flipping RELIANCE every minute, each order timed
  from its slice's arrival at the kernel (wall, without the trading store's SQLite writes, and
  as the kernel thread's CPU time), beside the per-object path's, to 09:45
  (``MANDI_BENCH_RUN_LATENCY_UNTIL``).

``MANDI_BENCH_RUN_UNTIL`` changes the window (``15:30`` for a full simulated day; the goal is
under 10 s). Every run is one simulated day (``--days 1``): the session's close ends it. The
machine is shared: figures are wall time of a loaded box, each beside its baseline measured in
the same run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pathlib
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import msgspec
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import best_of, report
from mandi.model.batches import TickBatch
from mandi.services.node import MarketNode

DAY = "2026-04-13"
UNTIL = os.environ.get("MANDI_BENCH_RUN_UNTIL", "10:15")
REF_UNTIL = os.environ.get("MANDI_BENCH_RUN_REF_UNTIL", "09:25")
LAT_UNTIL = os.environ.get("MANDI_BENCH_RUN_LATENCY_UNTIL", "09:45")
GOAL = ">= 1,000,000 ticks/s"
RATE = re.compile(r"kernel: (\d+) ticks in ([\d.]+) s")


def _rss_kb(pid: int) -> int:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def mandi_run(db: str, *args: str, env: dict[str, str] | None = None) -> dict[str, float]:
    """One ``mandi run`` in a fresh process: its kernel rate and RSS samples."""
    cmd = [
        sys.executable, "-m", "mandi", "run", "--db", db, "--speed", "inf", "--no-dashboard",
        "--status-interval", "0", "--no-resume", "--days", "1", *args,
    ]  # fmt: skip
    t0 = time.perf_counter()
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    samples: list[int] = []

    def sample() -> None:
        while p.poll() is None:
            samples.append(_rss_kb(p.pid))
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = p.communicate()
    th.join()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"mandi run failed ({p.returncode}): {err.strip().splitlines()[-1:]}")
    m = RATE.search(err)
    if m is None:
        raise SystemExit(f"no kernel rate in the log: {err[-500:]}")
    ticks, secs = int(m.group(1)), float(m.group(2))
    q = max(1, len(samples) // 4)
    return {
        "ticks": ticks,
        "seconds": secs,
        "wall": wall,
        "rss_first": max(samples[:q] or [0]) / 1024,
        "rss_last": max(samples[-q:] or [0]) / 1024,
        "rss_peak": max(samples or [0]) / 1024,
    }


def pipeline_alone(until: str) -> tuple[int, float]:
    """The same simulated ticks through the candle pipeline alone (columns, one call per
    generated minute)."""
    from mandi.config import SimConfig
    from mandi.core.calendar import ist_ns
    from mandi.feeds.sim import SimExchange
    from mandi.pipeline.fast import FastCandles

    day = dt.date.fromisoformat(DAY)
    limit = ist_ns(day, dt.time.fromisoformat(until))
    ex = SimExchange(SimConfig(date=day), day)
    minutes = []
    for b in ex.tick_batches():
        b = b.take(b.ts_event < limit)
        if not len(b):
            break
        minutes.append(b)
    n = sum(len(b) for b in minutes)

    def run() -> None:
        fc = FastCandles((60, 120, 180, 300, 900))
        for b in minutes:
            d = b.data
            fc.process(d[0], d[2], d[4], d[5], d[6], d[7], d[1], copy=False)

    run()
    return n, best_of(run, repeat=3)


def storage_line(db: str) -> str:
    """Bytes a stored tick costs: in its block, and of the whole database (all tables)."""
    from mandi.stores.ticks import block_stats

    con = sqlite3.connect(db)
    try:
        s = block_stats(con)
    finally:
        con.close()
    n = max(1, s["ticks"])
    return (
        f"  storage: {s['ticks']:,} ticks in {s['blocks']} blocks, {s['bytes'] / n:.1f} B/tick; "
        f"the database {os.path.getsize(db) / n:.1f} B/tick (candles, indicator values, chains)"
    )


class OrderProbe:
    """A layer that times tick → order inside a ``mandi run``: the node's feed batches are cut
    into slices of ``slice_ms`` of exchange time (what a live feed delivers at a time), and every
    order submitted is timed from the moment its slice reached the kernel — the latency of the
    slice's first tick, the longest in the slice.

    What it means: from the arrival of the tick that completes the strategy's trigger to the
    order leaving. Flip's trigger is the close of a minute candle, which the first tick of the
    next minute completes; minutes are whole slices, so that tick is its slice's first and the
    slice's arrival is its arrival. The order leaves at ``order:submitted``, which the order
    router publishes after the durable commit of the signal and the order (write-before-send)
    and immediately before ``Broker.place_order``. So the figure holds everything the node does
    for that tick before the order goes: the candle pipeline's step, the strategy's candle and
    indicators (first in the step), risk, and the commit — not the rest of the market's work,
    which now follows the order."""

    name = "order-probe"

    def __init__(self, node: MarketNode, slice_ms: int) -> None:
        self.latencies: list[int] = []
        self.in_store: list[int] = []  # of each latency: ns inside the trading store (SQLite)
        self.cpu: list[int] = []  # this thread's CPU time (no preemption, no waits)
        self.cpu_in_store: list[int] = []  # ... of it inside the trading store
        self._store_ns = self._cpu0 = self._store_cpu = 0
        self.ticks = 0
        self.seconds = 0.0
        self._t0 = 0
        self._slice_ns = slice_ms * 1_000_000
        self._handle = node.handle_batch
        node.handle_batch = self._handle_batch  # type: ignore[method-assign]

    def _handle_batch(self, batch: Any) -> None:
        if not len(batch):
            self._t0, self._cpu0 = time.perf_counter_ns(), time.thread_time_ns()
            self._store_ns = self._store_cpu = 0
            self._handle(batch)
            return
        columns = isinstance(batch, TickBatch)
        ts = batch.ts_event if columns else np.array([t.ts_event for t in batch])
        cuts = np.flatnonzero(np.diff(ts // self._slice_ns)) + 1
        for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(batch)], strict=True):
            piece = batch.slice(lo, hi) if columns else batch[lo:hi]
            self._t0 = t0 = time.perf_counter_ns()
            self._store_ns = self._store_cpu = 0
            self._cpu0 = time.thread_time_ns()
            self._handle(piece)
            self.seconds += (time.perf_counter_ns() - t0) / 1e9
            self.ticks += len(piece)

    def _on_order(self, topic: str, msg: Any) -> None:
        self.latencies.append(time.perf_counter_ns() - self._t0)
        self.in_store.append(self._store_ns)
        self.cpu.append(time.thread_time_ns() - self._cpu0)
        self.cpu_in_store.append(self._store_cpu)

    def _timed(self, f: Any) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            try:
                return f(*args, **kw)
            finally:
                self._store_ns += time.perf_counter_ns() - t0
                self._store_cpu += time.thread_time_ns() - c0

        return call

    def attach(self, ctx: Any) -> None:
        ctx.bus.subscribe("order:submitted", self._on_order, name="bench.order-probe")
        # the time spent in the trading store's durable writes (orders, signals, the paper book)
        for layer in ctx.layers:
            store = getattr(layer, "store", None)
            if layer.name == "trading" and store is not None:
                for name in (
                    "insert_signal",
                    "set_signal_status",
                    "save_new_orders",
                    "save_order",
                    "save_position",
                    "sync",  # the commit of a unit of work (one signal and its orders)
                ):
                    setattr(store, name, self._timed(getattr(store, name)))
                book = layer.kernel.broker.book
                book.save = self._timed(book.save)

    def tasks(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def order_latency(db: str, until: str, slice_ms: int, **extra: Any) -> OrderProbe:
    """``mandi run`` in this process, flat out, all default layers and strategies plus
    :class:`harness.Flip` on RELIANCE (60 s), paper mode, SQLite: tick → order of every order."""
    from mandi.cli import build_layers
    from mandi.config import load_config
    from mandi.services.trading import prepare_config
    from mandi.strategy.config import DEFAULT_STRATEGIES

    strategies = [msgspec.to_builtins(s) for s in DEFAULT_STRATEGIES]
    strategies.append(
        {"name": "harness:Flip", "id": "flip", "symbols": ["RELIANCE"], "timeframe": 60}
    )
    settings = {
        "sim.date": DAY,
        "run.until": until,
        "run.speed": "inf",
        "run.days": 1,
        "run.dashboard": False,
        "run.status_interval": 0,
        "run.resume": False,
        "store.db": db,
        "strategies": strategies,
        **extra,
    }
    cfg = prepare_config(load_config(None, overrides=settings))
    node = MarketNode(cfg, layers=build_layers(cfg))
    probe = OrderProbe(node, slice_ms)
    node.layers.append(probe)
    if asyncio.run(node.run()) != 0:
        raise SystemExit("mandi run (order latency) failed")
    return probe


def fsync_floor(directory: str, n: int = 300) -> np.ndarray:
    """µs of one ``fsync`` after a 4 KiB write, ``n`` times, on the disk of ``directory``: the
    floor under any durable commit, so under an order written before it is sent (DESIGN §4:
    ``synchronous=FULL`` for orders)."""
    path = os.path.join(directory, "fsync.probe")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    out = np.empty(n)
    try:
        for i in range(n):
            os.pwrite(fd, os.urandom(4096), (i % 16) * 4096)
            t0 = time.perf_counter_ns()
            os.fsync(fd)
            out[i] = (time.perf_counter_ns() - t0) / 1000.0
    finally:
        os.close(fd)
        os.unlink(path)
    return out


def latency_lines(slice_ms: int = 250) -> None:
    """Tick → order at the columnar throughput, beside the per-object path's, one run each,
    and the disk's fsync: the floor of the durable commit that precedes every order."""
    tmp = tempfile.mkdtemp(prefix="mandi-bench-latency-")
    try:
        col = order_latency(os.path.join(tmp, "col.db"), LAT_UNTIL, slice_ms)
        ref = order_latency(
            os.path.join(tmp, "ref.db"), LAT_UNTIL, slice_ms, **{"pipeline.engine": "reference"}
        )
        floor = fsync_floor(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"fsync on this disk (4 KiB, {len(floor)} times; every order is committed durably "
        f"before it is sent, so no order can leave sooner): p50 {np.percentile(floor, 50):,.0f} µs "
        f"p99 {np.percentile(floor, 99):,.0f} µs",
        flush=True,
    )
    for name, p in (("columnar", col), ("per-object (reference engine)", ref)):
        xs = np.array(p.latencies) / 1000.0
        own = (np.array(p.latencies) - np.array(p.in_store)) / 1000.0
        cpu = np.array(p.cpu) / 1000.0
        cpu_own = (np.array(p.cpu) - np.array(p.cpu_in_store)) / 1000.0
        print(
            f"tick → order in mandi run, {name}, {slice_ms} ms feed slices, kernel at "
            f"{p.ticks / p.seconds:,.0f} ticks/s: {len(xs)} orders, "
            f"p50 {np.percentile(xs, 50):,.0f} µs p99 {np.percentile(xs, 99):,.0f} µs; "
            "without the trading store's SQLite writes "
            f"p50 {np.percentile(own, 50):,.0f} µs p99 {np.percentile(own, 99):,.0f} µs; "
            f"CPU p50 {np.percentile(cpu, 50):,.0f} µs p99 {np.percentile(cpu, 99):,.0f} µs, "
            f"without the store's p50 {np.percentile(cpu_own, 50):,.0f} µs "
            f"p99 {np.percentile(cpu_own, 99):,.0f} µs"
            + ("   [goal p99 < 1 ms]" if p is col else ""),
            flush=True,
        )


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="mandi-bench-run-")
    try:
        run_all(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    latency_lines()


def run_all(tmp: str) -> None:
    db = os.path.join(tmp, "run.db")
    col = mandi_run(db, "--date", DAY, "--until", UNTIL)
    n_pipe, t_pipe = pipeline_alone(UNTIL)
    report(
        f"mandi run end to end, {UNTIL} ({col['ticks']:,} ticks), all default layers",
        int(col["ticks"]),
        col["seconds"],
        "ticks",
        "the candle pipeline alone",
        t_pipe * col["ticks"] / n_pipe,
        goal=GOAL,
    )
    print(
        f"  wall {col['wall']:.1f} s with start-up; RSS first quarter {col['rss_first']:.0f} MB, "
        f"last quarter {col['rss_last']:.0f} MB, peak {col['rss_peak']:.0f} MB",
        flush=True,
    )
    print(storage_line(db), flush=True)
    ref = mandi_run(
        os.path.join(tmp, "ref.db"),
        "--date",
        DAY,
        "--until",
        REF_UNTIL,
        env={"MANDI_PIPELINE__ENGINE": "reference"},
    )
    report(
        f"mandi run columnar vs the per-object path (reference engine, {REF_UNTIL})",
        int(col["ticks"]),
        col["seconds"],
        "ticks",
        "reference engine",
        ref["seconds"] * col["ticks"] / ref["ticks"],
    )
    rep = mandi_run(os.path.join(tmp, "replay.db"), "--feed", f"replay:{db}")
    report(
        f"mandi run --feed replay:DB of that recording ({rep['ticks']:,} ticks)",
        int(rep["ticks"]),
        rep["seconds"],
        "ticks",
        "the live (simulated) run",
        col["seconds"] * rep["ticks"] / col["ticks"],
        goal=GOAL,
    )


if __name__ == "__main__":
    main()
