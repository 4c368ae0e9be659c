"""Restart recovery of the market-data node from what SQLite already holds.

A simulated run is deterministic, so a restart re-creates the market from the last second the
database holds completely (``resume point``) and everything after it is regenerated identically;
candle writes are upserts, so re-emitting a stored second duplicates nothing. Ticks at or after
the resume point are deleted first because they will be emitted again. The timeframe builder is
warmed from the stored one-second candles of the buckets still open at the resume point, and the
cumulative volume of each token from its last stored tick, so the first candles after a restart
are the same as in an uninterrupted run.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from mandi.core.calendar import session_anchor_ns
from mandi.core.clock import NS_PER_SECOND
from mandi.model.market import Candle
from mandi.pipeline.timeframes import bucket_start
from mandi.stores.history import delete_ticks_from, last_candle_bucket, last_ticks_between
from mandi.stores.sqlite import last_tick_ns, load_candles


@dataclass(frozen=True)
class ResumePoint:
    ts_ns: int  # first second to (re-)emit
    warm_candles: list[Candle]  # stored 1 s candles of the timeframe buckets open at ts_ns
    volume_baselines: dict[int, int]  # token -> cumulative volume before ts_ns


def find_resume_point(
    con: sqlite3.Connection, timeframes: tuple[int, ...], ticks_stored: bool
) -> ResumePoint | None:
    last_candle = last_candle_bucket(con, 1)
    if last_candle is None:
        return None
    resume = int(last_candle)  # re-emit the last stored second: upserts make it harmless
    if ticks_stored:
        last_tick = last_tick_ns(con)
        if last_tick is not None:
            resume = min(resume, int(last_tick) - int(last_tick) % NS_PER_SECOND)
    earliest = min(bucket_start(resume, tf) for tf in timeframes) if timeframes else resume
    warm = load_candles(con, 1, earliest, resume)
    baselines: dict[int, int] = {}
    if ticks_stored:
        day_start = session_anchor_ns(resume) - 3600 * NS_PER_SECOND  # pre-open included
        for token, _, _, volume, *_ in last_ticks_between(con, day_start, resume):
            baselines[token] = volume
    return ResumePoint(resume, warm, baselines)


def discard_after(con: sqlite3.Connection, ts_ns: int) -> int:
    """Delete stored ticks at or after ``ts_ns`` (they will be emitted again)."""
    return delete_ticks_from(con, ts_ns)
