"""SQLite writer: sustained tick rows/s through ``BatchWriter`` (WAL, batched transactions on its
own thread) against naive one-row-per-commit inserts, measured in the same run.

The rows are the ``ticks`` table's 7 columns, queued in batches of 4,096 as ``MarketNode`` queues
a feed batch; the time runs from the first ``put`` to everything committed (``wait_idle``), on
a fresh database file in a temporary directory.

Then the writer as ``mandi run`` uses it: ``indicator_values`` upserts (the most rows a run
stores) while another thread runs Python flat out, as the kernel does. Python's sqlite3 releases
the GIL around every statement step, and getting it back from a busy thread costs up to the
switch interval (5 ms), so the writer's statements of many rows (``_insert_rows``) are measured
against one step per row (``executemany``, how upserts were written before), with the busy
thread's own progress beside each.
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import mandi.stores.sqlite as sqlite_store
from harness import best_of, report
from mandi.stores.indicators import VALUE_SQL
from mandi.stores.sqlite import TICK_SQL, BatchWriter, connect

ROWS = 2_000_000
NAIVE_ROWS = 20_000
BATCH = 4_096
VALUES = 200_000  # indicator value rows beside a busy thread
ROW_BY_ROW = 5_000  # ... of them the baseline writes (it is that slow)
GOAL = ">= 500,000 tick rows/s sustained"


def make_rows(n: int) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(11)
    t0 = 1_776_051_900 * 10**9
    cols = (
        t0 + np.arange(n, dtype=np.int64) * 1_800_000,
        rng.integers(100_000, 101_000, n),
        rng.integers(10_000, 3_000_000, n),
        np.arange(n) * 7,
        rng.integers(0, 5_000_000, n),
        rng.integers(10_000, 3_000_000, n),
        rng.integers(10_000, 3_000_000, n),
    )
    return list(zip(*(c.tolist() for c in cols), strict=True))


def batched(rows: list[tuple[int, ...]]) -> float:
    with tempfile.TemporaryDirectory() as d:
        w = BatchWriter(os.path.join(d, "bench.db")).start()
        chunks = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
        t0 = time.perf_counter()
        for c in chunks:
            while not w.put("ticks", c):  # never drop: wait for room, as a replayable feed
                time.sleep(0.001)
        if not w.wait_idle(600):
            raise RuntimeError("the writer did not finish")
        seconds = time.perf_counter() - t0
        w.stop()
        assert w.stats.rows["ticks"] == len(rows), w.stats
        return seconds


def naive(rows: list[tuple[int, ...]]) -> float:
    with tempfile.TemporaryDirectory() as d:
        con = connect(os.path.join(d, "naive.db"))  # WAL, synchronous=NORMAL, autocommit
        t0 = time.perf_counter()
        for r in rows:
            con.execute(TICK_SQL, r)  # one implicit transaction (one commit) per row
        seconds = time.perf_counter() - t0
        con.close()
        return seconds


def one_transaction(rows: list[tuple[int, ...]]) -> float:
    with tempfile.TemporaryDirectory() as d:
        con = connect(os.path.join(d, "one.db"))
        t0 = time.perf_counter()
        con.execute("BEGIN")
        con.executemany(TICK_SQL, rows)
        con.execute("COMMIT")
        seconds = time.perf_counter() - t0
        con.close()
        return seconds


def value_rows(n: int) -> list[tuple[object, ...]]:
    """``indicator_values`` rows as a run makes them: per candle bucket, tokens × names."""
    names = ["ema_9", "ema_21", "rsi_14", "sma_9", "sma_20", "sma_50", "sma_200"]
    t0 = 1_776_051_900 * 10**9
    out: list[tuple[object, ...]] = []
    bucket = 0
    while len(out) < n:
        for token in range(100_000, 100_200):
            out += [(token, "NSE", 60, t0 + bucket * 60 * 10**9, x, token / 7) for x in names]
        bucket += 1
    return out[:n]


def beside_busy_thread(rows: list[tuple[object, ...]], row_by_row: bool) -> tuple[float, float]:
    """Seconds to store ``rows`` (upserts) with a thread busy in Python meanwhile, and that
    thread's loops per second."""
    stop = threading.Event()
    loops = [0]

    def busy() -> None:
        while not stop.is_set():
            sum(range(1000))
            loops[0] += 1

    saved = sqlite_store._insert_rows
    if row_by_row:
        sqlite_store._insert_rows = lambda con, sql, rs: con.executemany(sql, rs)  # type: ignore[assignment]
    th = threading.Thread(target=busy, daemon=True)
    try:
        with tempfile.TemporaryDirectory() as d:
            w = BatchWriter(os.path.join(d, "values.db"))
            w.register("indicator_values", VALUE_SQL)
            w.start()
            th.start()
            t0 = time.perf_counter()
            for i in range(0, len(rows), BATCH):
                w.put("indicator_values", rows[i : i + BATCH])
            if not w.wait_idle(600):
                raise RuntimeError("the writer did not finish")
            seconds = time.perf_counter() - t0
            stop.set()
            w.stop()
            assert w.stats.rows["indicator_values"] == len(rows), w.stats
    finally:
        stop.set()
        sqlite_store._insert_rows = saved
    return seconds, loops[0] / seconds


def main() -> None:
    load = os.getloadavg()
    cpus = os.cpu_count()
    print(f"-- SQLite {sqlite3.sqlite_version}; load average {load[0]:.1f} on {cpus} CPUs")
    rows = make_rows(ROWS)
    t_naive = best_of(lambda: naive(rows[:NAIVE_ROWS]), 1)
    report(
        f"naive: one row per commit (WAL, NORMAL; {NAIVE_ROWS:,} rows) [baseline]",
        NAIVE_ROWS,
        t_naive,
        "rows",
    )
    base = t_naive * ROWS / NAIVE_ROWS
    report(
        "one executemany, one transaction (no writer thread)",
        ROWS,
        best_of(lambda: one_transaction(rows), 2),
        "rows",
        "naive",
        base,
    )
    report(
        f"BatchWriter, {BATCH:,}-row batches, sustained",
        ROWS,
        best_of(lambda: batched(rows), 3),
        "rows",
        "naive",
        base,
        goal=GOAL,
    )
    values = value_rows(VALUES)
    t_row, busy_row = beside_busy_thread(values[:ROW_BY_ROW], row_by_row=True)
    report(
        f"indicator_values upserts beside a busy thread, one step per row [baseline; "
        f"{ROW_BY_ROW:,} rows; busy thread {busy_row:,.0f} loops/s]",
        ROW_BY_ROW,
        t_row,
        "rows",
    )
    t_wide, busy_wide = beside_busy_thread(values, row_by_row=False)
    report(
        f"indicator_values upserts beside a busy thread, multi-row statements "
        f"[busy thread {busy_wide:,.0f} loops/s]",
        VALUES,
        t_wide,
        "rows",
        "one step per row",
        t_row * VALUES / ROW_BY_ROW,
    )


if __name__ == "__main__":
    main()
