"""The chain matrix's lazy columnar path (``stage_frames``) against the reference
(``process_option_chain`` of every snapshot): the same analytics whenever they are read — every
field, IV and Greeks included — and the same ring, on simulated chains sampled every second, with
reads at random moments and a ring that wraps around."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mandi.config import SimConfig
from mandi.core.errors import ConfigError
from mandi.feeds.sim import RISK_FREE_RATE, SimExchange
from mandi.options.chain import ChainMatrix, ChainMatrixConfig
from mandi.pipeline.chains import ChainColumns

SECONDS = 170  # the 1-minute ring (14 slots of 5 s) wraps twice
CFG = ChainMatrixConfig(
    strikes_each_side=3, history_minutes=1, oi_windows_minutes=(1,), rate=RISK_FREE_RATE
)


@cache
def frames_by_second() -> list[list]:  # type: ignore[type-arg]
    ex = SimExchange(
        SimConfig(underlyings=("NIFTY",), stocks=(), strikes_each_side=4), dt.date(2026, 4, 13)
    )
    cols = ChainColumns(ex.instruments, "sim")
    out = []
    for _ in range(SECONDS // 60 + 1):
        minute = ex._chunk_columns(True)
        starts = minute.second_starts()
        for lo, hi in itertools.pairwise(starts):
            cols.handle_batch(minute.slice(lo, hi))
            ts = int(minute.ts_event[lo]) // 10**9 * 10**9 + 10**9
            out.append(cols.frames(ts))
    return out[:SECONDS]


def same(a, b) -> None:  # type: ignore[no-untyped-def]
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == y or (x != x and y != y), f.name


@settings(max_examples=8, deadline=None)
@given(st.sets(st.integers(0, SECONDS - 1), max_size=30), st.integers(0, 2))
def test_lazy_reads_equal_eager_processing(reads, which):
    seconds = frames_by_second()
    eager, lazy = ChainMatrix(CFG), ChainMatrix(CFG)
    for k, frames in enumerate(seconds):
        expected = {
            (f.underlying, f.expiry): eager.process_option_chain(f.underlying, f.snapshot())
            for f in frames
        }
        lazy.stage_frames(frames)
        if k in reads and frames:
            f = frames[which % len(frames)]
            got = lazy.analytics(f.underlying, f.expiry)
            assert got is not None
            same(got, expected[(f.underlying, f.expiry)])
            np.testing.assert_array_equal(
                lazy.latest(f.underlying, f.expiry)[0], eager.latest(f.underlying, f.expiry)[0]
            )
    for key in eager.keys():  # noqa: SIM118 (a ChainMatrix is not a mapping)
        h1, h2 = eager.history(*key), lazy.history(*key)
        np.testing.assert_array_equal(h1.times, h2.times)
        np.testing.assert_array_equal(h1.data, h2.data)
        np.testing.assert_array_equal(h1.strikes, h2.strikes)


def test_the_lazy_path_defers_the_kernel():
    """Nothing read: one slot written per 5 s per chain, no IV solved; a read of the ring solves
    the slots it shows."""
    seconds = frames_by_second()[:40]
    lazy = ChainMatrix(CFG)
    for frames in seconds:
        lazy.stage_frames(frames)
    buckets = {f.ts_event // 5_000_000_000 for frames in seconds for f in frames}
    bufs = list(lazy._buffers.values())
    # every 5-second slot but the newest (still staged) is written, none with its IVs
    assert bufs and all(b.count == len(buckets) - 1 for b in bufs)
    assert all(len(b.pending) == len(buckets) - 1 for b in bufs)
    key = next(iter(lazy._buffers))
    assert not np.isnan(lazy.history(*key).data[:, 13]).all()  # IV solved on the read
    assert not lazy._buffers[key].pending
    with pytest.raises(ConfigError, match="recentre_strikes"):
        ChainMatrix(ChainMatrixConfig(recentre_strikes=2)).stage_frames([])
