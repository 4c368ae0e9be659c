"""Restart recovery of the market-data node from what SQLite already holds.

A simulated run is deterministic, so a restart re-creates the market from the last second the
database holds completely (``resume point``) and everything after it is regenerated identically;
candle writes are upserts, so re-emitting a stored second duplicates nothing. Ticks at or after
the resume point are deleted first because they will be emitted again. The timeframe builder is
warmed from the stored one-second candles of the buckets still open at the resume point, and the
cumulative volume and last price of each token from its last stored tick (the tick policy's
volume and price references), so the first candles after a restart are the same as in an
uninterrupted run.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

from mandi.core.calendar import session_anchor_ns
from mandi.core.clock import NS_PER_SECOND
from mandi.model.market import Candle
from mandi.pipeline.timeframes import bucket_start
from mandi.stores.history import delete_ticks_from, last_candle_bucket, last_ticks_between
from mandi.stores.sqlite import load_candles
from mandi.stores.ticks import last_tick_ns


@dataclass(frozen=True)
class ResumePoint:
    ts_ns: int  # first second to (re-)emit
    warm_candles: list[Candle]  # stored 1 s candles of the timeframe buckets open at ts_ns
    volume_baselines: dict[int, int]  # token -> cumulative volume before ts_ns
    last_prices: dict[int, int]  # token -> price of its last tick before ts_ns (paise)


def find_resume_point(
    con: sqlite3.Connection,
    timeframes: tuple[int, ...],
    ticks_stored: bool,
    seconds_stored: bool = True,
) -> ResumePoint | None:
    """Where a simulated run resumes (module docstring). The one-second candles that warm the
    timeframe builder come from ``candles`` when they are stored there (``seconds_stored``),
    else they are made again from the stored ticks of the open buckets — the pipeline's own
    arithmetic on the same ticks, from each token's volume before them."""
    if seconds_stored:
        last_candle = last_candle_bucket(con, 1)
        if last_candle is None:
            return None
        resume = int(last_candle)  # re-emit the last stored second: upserts make it harmless
        if ticks_stored:
            last_tick = last_tick_ns(con)
            if last_tick is not None:
                resume = min(resume, int(last_tick) - int(last_tick) % NS_PER_SECOND)
    else:
        last_tick = last_tick_ns(con) if ticks_stored else None
        if last_tick is None:
            return None
        resume = int(last_tick) - int(last_tick) % NS_PER_SECOND  # re-emit the last second
    earliest = min(bucket_start(resume, tf) for tf in timeframes) if timeframes else resume
    day_start = session_anchor_ns(resume) - 3600 * NS_PER_SECOND  # pre-open included
    if seconds_stored:
        warm = load_candles(con, 1, earliest, resume)
    else:
        warm = _seconds_from_ticks(con, day_start, earliest, resume)
    baselines: dict[int, int] = {}
    prices: dict[int, int] = {}
    if ticks_stored:
        for token, _, price, volume, *_ in last_ticks_between(con, day_start, resume):
            baselines[token] = volume
            prices[token] = price  # the tick policy's price band starts from it
    return ResumePoint(resume, warm, baselines, prices)


def _seconds_from_ticks(
    con: sqlite3.Connection, day_start: int, start: int, end: int
) -> list[Candle]:
    """The confirmed one-second candles of the stored ticks in [start, end)."""
    from mandi.pipeline.fast import FastCandles
    from mandi.pipeline.validate import MAX_FIELD, TickPolicy
    from mandi.stores.ticks import read_ticks

    # the stored ticks passed the tick policy once: no band or volume rule may drop one now
    # (a band's reference or confirmation would start afresh at the window's first tick)
    permissive = TickPolicy(
        price_band_pct=0, max_volume=MAX_FIELD - 1, max_volume_step=MAX_FIELD - 1
    )
    fc = FastCandles((60,), emit_forming=False, policy=permissive)
    for token, _, _, volume, *_ in last_ticks_between(con, day_start, start):
        fc.set_volume_baseline(token, volume)
    b = read_ticks(con, start, end)
    if not len(b):
        return []
    d = b.data
    records = np.concatenate([fc.process(d[0], d[2], d[4], d[5], d[6], d[7], d[1]), fc.flush()])
    seconds = records[(records["timeframe"] == 1) & (records["closed"] == 1)]
    return FastCandles.to_candles(seconds[np.argsort(seconds["bucket"], kind="stable")])


def discard_after(con: sqlite3.Connection, ts_ns: int) -> int:
    """Delete stored ticks at or after ``ts_ns`` (they will be emitted again)."""
    return delete_ticks_from(con, ts_ns)
