"""The columnar node against the readable per-object one, and a replay of its recording.

A short simulated market (NIFTY with its chains, one stock; the default strategies, paper mode)
goes through ``mandi run``'s whole node three times: with ``pipeline.engine = "reference"`` (a
``Tick`` and a ``Candle`` per message), with the columnar engine, and as
``--feed replay:DB`` of the columnar run's database. The three publish the same messages on every
per-object topic (ticks, candles, forming candles, indicator values and previews, chains and
their analytics, signals, orders, positions) and store the same rows (ticks, candles, indicator
values, chain snapshots, signals, orders, fills, positions). A fourth, columnar run with a tiny
``store.backpressure_rows`` stores the same rows while its kernel waits for the writer."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sqlite3
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from mandi.cli import build_layers
from mandi.config import load_config
from mandi.services.node import MarketNode
from mandi.services.trading import prepare_config
from mandi.stores.ticks import read_ticks

TABLES = (
    "candles",
    "indicator_values",
    "option_chain_snapshots",
    "trading_signals",
    "orders",
    "fills",
    "positions",
)
SETTINGS = {
    "sim.date": "2026-04-13",
    "sim.underlyings": ["NIFTY"],
    "sim.stocks": ["RELIANCE"],
    "sim.strikes_each_side": 3,
    "chains.strikes_each_side": 3,
    "run.until": "09:19",
    "run.speed": "inf",
    "run.dashboard": False,
    "run.status_interval": 0,
    "run.resume": False,
    "history.sessions": 2,
}


#: the kernel waits while more than 1,000 rows wait for the writer (a minute makes several
#: thousand: the warm-up's indicator values, chain snapshots, candles)
BACKPRESSURE = {"store.backpressure_rows": 1000}


class Recorder:
    """A layer that keeps every per-object message (``>``: it wants them all), by topic."""

    name = "recorder"

    def __init__(self) -> None:
        self.topics: dict[str, list[Any]] = defaultdict(list)
        self.pending_before: list[int] = []  # the writer's queue as each feed batch came in
        self.pending_after: list[int] = []  # ... and once the batch had queued its rows

    def attach(self, node: Any) -> None:
        node.bus.subscribe(">", self._on, name="test.recorder")

    def _on(self, topic: str, msg: Any) -> None:
        if not topic.startswith(("batch:", "system:")):
            self.topics[topic].append(msg)

    def tasks(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def run(db: str, **extra: Any) -> Recorder:
    cfg = load_config(None, overrides={**SETTINGS, "store.db": db, **extra})
    cfg = prepare_config(cfg)
    rec = Recorder()
    node = MarketNode(cfg, layers=[*build_layers(cfg), rec])
    handle = node.handle_batch

    def handle_batch(batch: Any) -> None:
        rec.pending_before.append(node.writer.pending_rows)
        handle(batch)
        rec.pending_after.append(node.writer.pending_rows)

    node.handle_batch = handle_batch  # type: ignore[method-assign]
    assert asyncio.run(node.run()) == 0
    assert node.writer.not_stored() == 0
    return rec


def plain(x: Any) -> Any:
    """A message as comparable values (analytics: every field; NaN equal to NaN)."""
    if dataclasses.is_dataclass(x):
        return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, np.ndarray):
        return [plain(v) for v in x.tolist()]
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if isinstance(x, list | tuple):
        return [plain(v) for v in x]
    return x


def rows(db: str, table: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        cols = [
            r[1]
            for r in con.execute(f"PRAGMA table_info({table})")
            if r[1] not in ("id", "created_at", "updated_at")
        ]
        return con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY 1, 2, 3, 4").fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Recorder]]:
    d = tmp_path_factory.mktemp("columnar")
    out = {}
    for name, extra in (("reference", {"pipeline.engine": "reference"}), ("columnar", {})):
        db = str(d / f"{name}.db")
        out[name] = (db, run(db, **extra))
    db = str(d / "replay.db")
    out["replay"] = (db, run(db, **{"run.feed": f"replay:{out['columnar'][0]}"}))
    db = str(d / "backpressure.db")
    out["backpressure"] = (db, run(db, **BACKPRESSURE))
    return out


def test_the_columnar_node_publishes_what_the_reference_publishes(runs):
    ref, col = runs["reference"][1].topics, runs["columnar"][1].topics
    assert set(col) == set(ref)
    for family in ("tick:", "candle:", "pub:candle:", "ind:", "pub:ind:", "chain:", "analytics:"):
        assert any(t.startswith(family) for t in ref), family  # the comparison is not empty
    assert any(t.startswith(("order:", "position:")) for t in ref)  # and the strategies trade
    for topic in ref:
        assert [plain(m) for m in col[topic]] == [plain(m) for m in ref[topic]], topic


@pytest.mark.parametrize("name", ["columnar", "replay", "backpressure"])
def test_the_same_rows_are_stored(runs, name):
    ref_db, db = runs["reference"][0], runs[name][0]
    for table in TABLES:
        assert rows(db, table) == rows(ref_db, table), table
    con_a, con_b = sqlite3.connect(ref_db), sqlite3.connect(db)
    try:
        a, b = read_ticks(con_a), read_ticks(con_b)
    finally:
        con_a.close()
        con_b.close()
    assert len(a) > 5_000 and np.array_equal(a.data, b.data)


def test_a_replay_publishes_what_the_recorded_run_published(runs):
    col, rep = runs["columnar"][1].topics, runs["replay"][1].topics
    assert set(rep) == set(col)
    for topic in col:  # chains included: a replayed snapshot names the recorded feed ("sim")
        assert [plain(m) for m in rep[topic]] == [plain(m) for m in col[topic]], topic


def test_the_kernel_waits_for_the_writer_and_nothing_is_dropped(runs):
    """Backpressure: every feed batch starts with at most ``store.backpressure_rows`` rows
    waiting, though batches queue more than that, and nothing was dropped (``run`` checks
    ``not_stored() == 0``; the rows are the reference's: test_the_same_rows_are_stored)."""
    bound = BACKPRESSURE["store.backpressure_rows"]
    rec, free = runs["backpressure"][1], runs["columnar"][1]
    assert max(rec.pending_after) > bound  # it had to wait
    assert max(rec.pending_before) <= bound
    assert sum(rec.pending_after) - sum(rec.pending_before) > 10 * bound  # rows went through
    assert max(free.pending_before) > bound  # without it (250,000 rows), the queue grew
