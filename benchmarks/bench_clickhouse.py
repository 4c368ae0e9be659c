"""ClickHouse writer: sustained candle rows/s through ``ClickHouseWriter`` (background thread,
one column-oriented Arrow insert per flush) into chdb, against row-by-row ``INSERT ... VALUES``
through the same chdb session, measured in the same run.

The rows are ``market_data``'s 11 candle columns (``candle_row`` order), queued in batches of
1,024 as the node queues a kernel batch's confirmed candles; the time runs from the first ``put``
to everything inserted (``wait_idle``). A second reference inserts all rows as one textual
``INSERT ... VALUES (...),(...)`` statement (no thread, no Arrow).
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import best_of, report
from mandi.stores.clickhouse import ClickHouseStore, ClickHouseWriter

ROWS = 1_000_000
NAIVE_ROWS = 1_000
BATCH = 1_024


def make_rows(n: int) -> list[tuple[object, ...]]:
    rng = np.random.default_rng(11)
    tokens = 2_000
    t0 = 1_776_051_900 * 10**9
    i = np.arange(n, dtype=np.int64)
    close = rng.integers(10_000, 3_000_000, n)
    cols = (
        256_265 + i % tokens,
        ["NFO"] * n,
        np.full(n, 60),
        t0 + (i // tokens) * 60 * 10**9,
        close - 50,
        close + 100,
        close - 100,
        close,
        rng.integers(0, 5_000_000, n),
        rng.integers(0, 5_000_000, n),
        rng.integers(1, 500, n),
    )
    return list(zip(*(c.tolist() if isinstance(c, np.ndarray) else c for c in cols), strict=True))


def values_sql(rows: list[tuple[object, ...]]) -> str:
    return ",".join(
        "(" + ",".join(f"'{v}'" if isinstance(v, str) else str(v) for v in r) + ",1)" for r in rows
    )


COLS = "token, exchange, timeframe, bucket, open, high, low, close, volume, oi, ticks, version"


def main() -> None:
    import chdb

    load = os.getloadavg()
    print(f"-- chdb {chdb.__version__}; load average {load[0]:.1f} on {os.cpu_count()} CPUs")
    rows = make_rows(ROWS)
    with tempfile.TemporaryDirectory() as d:
        url = f"chdb://{d}/ch"
        store = ClickHouseStore.open(url)
        table = "`mandi`.`market_data`"

        def naive() -> None:
            store.transport.command(f"TRUNCATE TABLE {table}")
            for r in rows[:NAIVE_ROWS]:
                store.transport.command(f"INSERT INTO {table} ({COLS}) VALUES {values_sql([r])}")

        def one_statement() -> None:
            store.transport.command(f"TRUNCATE TABLE {table}")
            store.transport.command(f"INSERT INTO {table} ({COLS}) VALUES {values_sql(rows)}")

        def batched() -> None:
            store.transport.command(f"TRUNCATE TABLE {table}")
            w = ClickHouseWriter(url).start()
            chunks = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
            t0 = time.perf_counter()
            for c in chunks:
                while not w.put("market_data", c):  # never drop: wait for room
                    time.sleep(0.001)
            if not w.wait_idle(600):
                raise RuntimeError("the writer did not finish")
            batched.seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
            w.stop()
            assert w.stats.rows["market_data"] == len(rows) and not w.stats.errors, w.stats

        t_naive = best_of(naive, 1)
        report(
            f"row-by-row INSERT ... VALUES, same chdb session ({NAIVE_ROWS:,} rows) [baseline]",
            NAIVE_ROWS,
            t_naive,
            "candles",
        )
        base = t_naive * ROWS / NAIVE_ROWS
        report(
            "one INSERT ... VALUES text statement (no writer thread)",
            ROWS,
            best_of(one_statement, 2),
            "candles",
            "row-by-row",
            base,
        )
        best = float("inf")
        for _ in range(3):
            batched()
            best = min(best, batched.seconds)  # type: ignore[attr-defined]
        report(
            f"ClickHouseWriter, {BATCH:,}-candle batches, columnar, sustained",
            ROWS,
            best,
            "candles",
            "row-by-row",
            base,
        )
        ((n,),) = store.rows(f"SELECT count() FROM {table} FINAL")
        assert n == ROWS, n
        store.close()


if __name__ == "__main__":
    main()
