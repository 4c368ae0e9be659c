"""SQLite writer: sustained tick rows/s through ``BatchWriter`` (WAL, batched transactions on its
own thread) against naive one-row-per-commit inserts, measured in the same run.

The rows are the ``ticks`` table's 7 columns, queued in batches of 4,096 as ``MarketNode`` queues
a feed batch; the time runs from the first ``put`` to everything committed (``wait_idle``), on
a fresh database file in a temporary directory.
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import best_of, report
from mandi.stores.sqlite import TICK_SQL, BatchWriter, connect

ROWS = 2_000_000
NAIVE_ROWS = 20_000
BATCH = 4_096
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


if __name__ == "__main__":
    main()
