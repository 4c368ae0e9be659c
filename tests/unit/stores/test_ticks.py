"""Ticks as compressed columnar blocks: exact round trips, reads by time and token merged with the
seed's row table, deletes that cut a block, the writer thread encoding the blobs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.core.calendar import parse_ist
from mandi.model.batches import TickBatch
from mandi.stores import ticks as T
from mandi.stores.sqlite import BatchWriter, connect

T0 = parse_ist("2026-04-13 09:15:00")
NS = 10**9


def batch(n: int, start: int = T0, seed: int = 0, tokens=(256265, 738561, 26000001)) -> TickBatch:
    rng = np.random.default_rng(seed)
    ts = start + np.cumsum(rng.integers(0, NS // 2, n))
    price = rng.integers(5, 3_000_000, n) // 5 * 5
    return TickBatch.from_columns(
        rng.choice(np.array(tokens), n),
        ts,
        price,
        exchange=rng.integers(0, 2, n),
        ts_init=ts + rng.integers(0, 1000, n),
        volume=rng.integers(0, 1 << 40, n),
        last_qty=rng.integers(0, 5000, n),
        oi=rng.integers(0, 1 << 33, n),
        bid=price - 5,
        ask=price + 5,
        bid_qty=rng.integers(0, 9999, n),
        ask_qty=rng.integers(0, 9999, n),
    )


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 300), st.integers(0, 10**6), st.booleans())
def test_blocks_round_trip_every_field_exactly(n, seed, extremes):
    b = batch(n, seed=seed)
    if extremes and n:  # the whole int64 range survives the deltas (they wrap and unwrap)
        b.data[5, 0], b.data[7, -1], b.data[2, n // 2] = (1 << 63) - 1, -(1 << 63), 0
    out = T.decode_block(T.encode_block(b.data), n)
    assert np.array_equal(out.data, b.data)


def test_a_tick_costs_a_fraction_of_a_row(tmp_path):
    b = batch(20_000)
    assert len(T.encode_block(b.data)) / len(b) < 40  # random fields; a real day is ~13 B


def store(path, batches, rows=()):
    con = connect(str(path))
    with con:
        con.executemany(T.BLOCK_SQL, [T.block_row(b) for b in batches])
        con.executemany(T.ROW_SQL, list(rows))
    return con


def test_reads_by_time_and_token_merge_rows_and_blocks_in_arrival_order(tmp_path):
    old = batch(50, start=T0 - 3600 * NS, seed=1)
    a, b = batch(300, seed=2), batch(300, start=T0 + 400 * NS, seed=3)
    con = store(tmp_path / "m.db", [a, b], rows=T.tick_rows(old))
    every = T.read_ticks(con)
    assert len(every) == 650 == T.count_ticks(con)
    assert np.array_equal(every.data[:, 50:], TickBatch.concat([a, b]).data)
    # the row format keeps the seed's seven columns
    assert every.token[:50].tolist() == old.token.tolist()
    assert every.bid_qty[:50].tolist() == [0] * 50
    lo, hi = int(a.ts_event[100]), int(b.ts_event[10])
    part = T.read_ticks(con, lo, hi, tokens=[738561])
    both = TickBatch.concat([a, b])
    want = (both.ts_event >= lo) & (both.ts_event < hi) & (both.token == 738561)
    assert np.array_equal(part.data, both.data[:, want])
    assert T.last_tick_ns(con) == int(b.ts_event[-1])
    last = T.last_ticks_between(con, T0, hi)
    for tok in set(last.token.tolist()):
        before = both.data[:, (both.ts_event < hi) & (both.token == tok)]
        assert last.take(last.token == tok).data[:, 0].tolist() == before[:, -1].tolist()


def test_deleting_from_a_time_cuts_the_block_that_straddles_it(tmp_path):
    a, b = batch(200, seed=4), batch(200, start=T0 + 200 * NS, seed=5)
    con = store(tmp_path / "m.db", [a, b])
    cut = int(a.ts_event[120])
    with con:
        gone = T.delete_ticks_from(con, cut)
    assert gone == 280
    left = T.read_ticks(con)
    assert np.array_equal(left.data, a.data[:, :120])
    assert T.block_stats(con)["blocks"] == 1
    with con:
        assert T.cleanup_ticks(con, int(a.ts_event[-1]) + 1) == 120
    assert T.count_ticks(con) == 0


def test_the_writer_thread_encodes_the_blobs(tmp_path):
    path = str(tmp_path / "w.db")
    connect(path).close()
    w = BatchWriter(path)
    w.statements["tick_blocks"] = T.BLOCK_SQL
    w.start()
    parts = [batch(1000, start=T0 + k * 600 * NS, seed=k) for k in range(4)]
    for p in parts:
        w.put("tick_blocks", [T.block_row(p)])
    w.stop()
    con = connect(path)
    assert np.array_equal(T.read_ticks(con).data, TickBatch.concat(parts).data)
    stats = T.block_stats(con)
    assert stats["blocks"] == 4 and stats["ticks"] == 4000 and stats["bytes"] < 4000 * 40
