"""Angel One's SmartStream decoding and NSE chain snapshots.

1. **SnapQuote frames decoded per second**: 20,000 SNAP_QUOTE frames (379 bytes, best five both
   sides) as the fake writes them, through mandi's fast decoder
   (:func:`mandi.brokers.angel.frames.decode_tick`) and its reference decoder
   (:func:`mandi.feeds.angel.parse_frame`), against the official ``smartapi-python`` parser
   (``SmartWebSocketV2._parse_binary_data``) on the same bytes. Goal: ≥ 10× the SDK.
2. **NSE chain JSON → chain matrix + analytics per snapshot**: a 3,000-contract chain (1,500
   strikes, NSE's v3 JSON built from the real 2026 NIFTY file's rows) parsed by the importer —
   its fast path (:mod:`mandi.feeds.nse_fast`) beside the reference parser it falls back to —
   and analysed by the chain matrix (IV, Greeks, OI windows, PCR, max pain), timed whole
   through the live poller's own entry (:func:`mandi.feeds.nse_live.parse_answer`, then
   ``process_option_chain``), wall and CPU time (best of 9; CPU is what a loaded machine does
   not inflate). Baseline: the reference parser alone. Goal: ≤ 5 ms per 3,000-contract
   snapshot, JSON to analytics.
3. **The first snapshot into a fresh 1,500-strike matrix** (the ring's setup), against filling
   the same ring with NaN up front as it used to.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable

import msgspec
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
from harness import best_of, report
from mandi.brokers.angel import frames
from mandi.feeds.angel import parse_frame
from mandi.feeds.nse import parse_option_chains
from mandi.feeds.nse_live import parse_answer
from mandi.options.chain import ChainMatrix, ChainMatrixConfig

DATA = pathlib.Path(__file__).parents[1] / "tests" / "data" / "option_chain"


def snap_frames(n: int) -> list[bytes]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        p = int(rng.integers(1000, 500_000)) // 5 * 5
        bids = [
            (int(rng.integers(1, 5000)), p - 5 * (k + 1), int(rng.integers(1, 50)))
            for k in range(5)
        ]
        asks = [
            (int(rng.integers(1, 5000)), p + 5 * (k + 1), int(rng.integers(1, 50)))
            for k in range(5)
        ]
        out.append(
            frames.encode_snap(
                2,
                str(40000 + i % 3000),
                i,
                1752744600000 + i,
                p,
                75,
                p,
                1_000_000 + i,
                1.5e5,
                9.9e4,
                p,
                p + 100,
                p - 100,
                p,
                1752744540,
                987650,
                2.5,
                bids,
                asks,
                p * 2,
                p // 2,
                p * 3,
                p // 3,
            )
        )
    return out


def bench_snapquote() -> None:
    from smartapi_sdk import import_smartapi

    import_smartapi()
    from SmartApi.smartWebSocketV2 import SmartWebSocketV2

    cwd = os.getcwd()
    os.chdir(tempfile.mkdtemp())  # the SDK writes logs/ into the working directory
    try:
        sdk = SmartWebSocketV2("jwt", "key", "client", "feed")
    finally:
        os.chdir(cwd)
    import logging

    logging.getLogger("SmartApi").setLevel(logging.CRITICAL)
    fs = snap_frames(20_000)
    some = fs[:2000]
    t_sdk = best_of(lambda: [sdk._parse_binary_data(f) for f in some], 3) * len(fs) / len(some)
    t_ref = best_of(lambda: [parse_frame(f, ts_init=1) for f in fs], 3)
    t_fast = best_of(lambda: [frames.decode_tick(f, 1) for f in fs], 5)
    for f in fs[:100]:
        a, b = frames.decode_tick(f, 1), parse_frame(f, ts_init=1)
        assert (a.token >> 8, a.price, a.bid, a.ask, a.oi) == (b.token, b.price, b.bid, b.ask, b.oi)
    n = len(fs)
    report("angel: SNAP_QUOTE frames, official SDK parser [baseline]", n, t_sdk, "frames")
    report("angel: SNAP_QUOTE frames, reference decoder", n, t_ref, "frames", "SDK", t_sdk)
    report("angel: SNAP_QUOTE frames, fast decoder (decode_tick)", n, t_fast, "frames", "SDK",
           t_sdk, goal=">= 10x the SDK")  # fmt: skip


def big_chain(strikes: int) -> bytes:
    """NSE's v3 JSON with ``strikes`` strikes (both sides), cloned from the real file's rows at
    25-point spacing around its spot (all strikes positive)."""
    doc = json.loads((DATA / "nse_oc_v3_NIFTY_2026-07-10_1530_exp2026-07-14.json").read_bytes())
    rows = doc["data"]
    mid = rows[len(rows) // 2]["strikePrice"]
    out = []
    for k in range(strikes):
        src = rows[k % len(rows)]
        strike = mid + 25 * (k - strikes // 2)
        row = json.loads(json.dumps(src))
        row["strikePrice"] = strike
        for side in ("CE", "PE"):
            if side in row:
                row[side]["strikePrice"] = strike
        out.append(row)
    doc["data"] = out
    return json.dumps(doc).encode()


def bench_chain() -> None:
    """Steady state, as in a running node: the matrix lives across polls (its first snapshot
    allocates the ring and compiles the kernels before the timing). Each path is timed whole
    (parse, analysis, and dropping the previous snapshot's objects), in wall time and in this
    thread's CPU time (what a busy machine hides); the baseline is the reference path — the
    reference parser, then the matrix reading the quotes back into an array."""
    big = big_chain(1500)
    ref = parse_option_chains(big, name="x.json", fast=False)
    fast = parse_option_chains(big, name="x.json")
    assert msgspec.json.encode(ref) == msgspec.json.encode(fast)  # the same snapshot
    assert not fast.skipped and len(fast.snapshots[0].rows) == 1500
    (snap,) = fast.snapshots
    m = ChainMatrix(ChainMatrixConfig(strikes_each_side=len(snap.rows), rate=0.10))
    m.process_option_chain(snap.underlying, snap)  # allocate, compile
    m_ref = ChainMatrix(ChainMatrixConfig(strikes_each_side=len(snap.rows), rate=0.10))
    m_ref.process_option_chain(snap.underlying, ref.snapshots[0])

    def whole() -> None:  # what the live poller does with one answer, then the matrix
        (s,) = parse_answer("NIFTY-14-07-2026.json", big, "NIFTY")
        m.process_option_chain(s.underlying, s)

    def whole_ref() -> None:
        (s,) = parse_option_chains(big, name="x.json", fast=False).snapshots
        m_ref.process_option_chain(s.underlying, s)

    t_ref = best_of(lambda: parse_option_chains(big, name="x.json", fast=False), 3)
    t_fast = best_of(lambda: parse_option_chains(big, name="x.json"), 9)
    t_an = best_of(lambda: m.process_option_chain(snap.underlying, snap), 9)
    t_whole_ref = best_of(whole_ref, 3)
    t_whole = best_of(whole, 15)
    cpu_ref = min(_cpu(whole_ref) for _ in range(3))
    cpu = min(_cpu(whole) for _ in range(15))
    report("nse: 3,000-contract JSON → snapshot, reference parser [baseline]", 1, t_ref,
           "snapshots")  # fmt: skip
    report("nse: 3,000-contract JSON → snapshot, fast path", 1, t_fast, "snapshots",
           "the reference parser", t_ref)  # fmt: skip
    report("nse: 3,000-contract snapshot → matrix + analytics", 1, t_an, "snapshots")
    report("nse: JSON → matrix + analytics, reference path [baseline]", 1, t_whole_ref,
           "snapshots")  # fmt: skip
    report("nse: JSON → matrix + analytics, fast path (whole)", 1, t_whole, "snapshots",
           "the reference path", t_whole_ref,
           goal=f"<= 5 ms a snapshot (got {t_whole * 1e3:.2f} ms: {t_fast * 1e3:.2f} ms parse, "
           f"{t_an * 1e3:.2f} ms analysis)")  # fmt: skip
    report("nse: JSON → matrix + analytics, fast path, CPU time", 1, cpu, "snapshots",
           "the reference path's CPU time", cpu_ref,
           goal=f"<= 5 ms a snapshot (got {cpu * 1e3:.2f} ms of CPU; the reference path "
           f"{cpu_ref * 1e3:.2f} ms)")  # fmt: skip


def _cpu(fn: Callable[[], object]) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def bench_first_snapshot() -> None:
    """A fresh matrix's first 1,500-strike snapshot (kernels already compiled): the ring is
    reserved, not filled; baseline: filling the same ring with NaN, as it used to be."""
    (snap,) = parse_option_chains(big_chain(1500), name="x.json").snapshots
    cfg = ChainMatrixConfig(strikes_each_side=len(snap.rows), rate=0.10)
    ChainMatrix(cfg).process_option_chain(snap.underlying, snap)  # compile
    t_first = best_of(lambda: ChainMatrix(cfg).process_option_chain(snap.underlying, snap), 3)
    shape = (cfg.slots, 23, cfg.width)
    t_fill = best_of(lambda: (np.full(shape, np.nan), np.full(shape[::2], np.nan)), 3)
    report("nse: NaN-filled 1,500-strike ring (the old setup) [baseline]", 1, t_fill,
           "matrices")  # fmt: skip
    report("nse: first snapshot into a fresh 1,500-strike matrix", 1, t_first, "matrices",
           "the NaN-filled ring", t_fill)  # fmt: skip


def main() -> None:
    bench_snapquote()
    bench_chain()
    bench_first_snapshot()


if __name__ == "__main__":
    main()
