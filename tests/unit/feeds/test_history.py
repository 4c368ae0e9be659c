"""The simulator's history source: the sessions before the start, deterministic, aligned to 09:15,
ending where the simulated day opens; the backfill never overwrites a stored candle."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3

import msgspec

from mandi.config import SimConfig, load_config
from mandi.core.calendar import calendar, ist_datetime
from mandi.feeds.history import SimHistory, history_source
from mandi.feeds.sim import UNDERLYINGS, SimExchange
from mandi.model.instruments import Index
from mandi.services.history import backfill
from mandi.stores.sqlite import CANDLE_SQL, candle_row, connect

START = dt.date(2026, 4, 13)
NIFTY = Index(256265, "NSE", "NIFTY", "NIFTY", "INDICES", 1, 5)


def sessions(n: int) -> tuple[int, int]:
    cal = calendar("NSE")
    days = SimHistory(SimConfig(), START).sessions_before(START, n)
    return cal.session(days[0]).open_ns, cal.session(START).open_ns  # type: ignore[union-attr]


def test_sim_history_is_aligned_continuous_and_deterministic():
    lo, hi = sessions(2)
    h = SimHistory(SimConfig(seed=7), START)
    bars = h.candles(NIFTY, 60, lo, hi)
    assert len(bars) == 2 * 375  # two full sessions of minutes
    assert bars == SimHistory(SimConfig(seed=7), START).candles(NIFTY, 60, lo, hi)
    assert bars != SimHistory(SimConfig(seed=8), START).candles(NIFTY, 60, lo, hi)
    first = ist_datetime(bars[0].bucket)
    assert (first.date(), first.hour, first.minute) == (dt.date(2026, 4, 9), 9, 15)
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)
    assert all(b.bucket < c.bucket for b, c in itertools.pairwise(bars))
    # the last historical close is the price the simulated day opens at
    ex = SimExchange(SimConfig(seed=7), START)
    first_tick = next(t for t in ex._chunk(emit=True) if t.token == NIFTY.token)
    assert bars[-1].close == round(UNDERLYINGS["NIFTY"].spot * 100)
    assert abs(first_tick.price - bars[-1].close) <= 0.001 * bars[-1].close
    # 15-minute candles are the minutes regrouped, 25 a session
    quarter = h.candles(NIFTY, 900, lo, hi)
    assert len(quarter) == 50 and quarter[-1].close == bars[-1].close
    assert quarter[0].high == max(b.high for b in bars[:15])


def test_backfill_keeps_what_the_store_holds(tmp_path):
    db = str(tmp_path / "m.db")
    lo, hi = sessions(1)
    con = connect(db)
    real = SimHistory(SimConfig(), START).candles(NIFTY, 60, lo, hi)[10]
    mine = msgspec.structs.replace(real, open=1, high=2, low=1, close=1)
    con.execute(CANDLE_SQL, candle_row(mine))  # a candle recorded live for that bucket
    con.close()
    source = history_source(load_config(env={}), "sim", START)
    assert source is not None and history_source(None, "ws://x", START) is None
    total, inserted = backfill(source, db, [NIFTY], (60, 300), START, 1)
    assert total == 375 + 75 and inserted == total - 1
    row = (
        sqlite3.connect(db)
        .execute("SELECT open, close FROM candles WHERE timeframe=60 AND bucket=?", (mine.bucket,))
        .fetchone()
    )
    assert row == (1, 1)  # untouched
    assert backfill(source, db, [NIFTY], (60, 300), START, 1) == (total, 0)  # idempotent
