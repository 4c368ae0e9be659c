"""``mandi history fetch NAME``: a broker's historical candles into the candle store
(Kite and Angel One share this loop).

The span is cut into requests the broker accepts (its per-interval limits), each window is
stored with its completion mark in one transaction (``meta`` key
``<broker>.history.<token>.<interval>`` = the last day done), so an interrupted fetch resumes
where it stopped and a daily re-run only asks for the new days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from mandi.model.market import Candle
from mandi.stores.sqlite import connect, get_meta, save_candles

#: one request: (token, first day, last day) -> candles
FetchWindow = Callable[[dt.date, dt.date], list[Candle]]


def progress_key(broker: str, token: int, interval: str) -> str:
    return f"{broker}.history.{token}.{interval}"


def windows(start: dt.date, end: dt.date, max_days: int) -> list[tuple[dt.date, dt.date]]:
    """[start, end] cut into spans of at most ``max_days`` days (inclusive day ranges)."""
    step = dt.timedelta(days=max_days)
    out = []
    d = start
    while d <= end:
        e = min(end, d + step - dt.timedelta(days=1))
        out.append((d, e))
        d = e + dt.timedelta(days=1)
    return out


def backfill(
    key: str,
    fetch_window: FetchWindow,
    max_days: int,
    start: dt.date,
    end: dt.date,
    db: str,
    on_window: Callable[[int, int, int], None] = lambda done, total, rows: None,
) -> tuple[int, int]:
    """Fetch [start, end] (resuming after the stored mark ``key``); returns (windows,
    candles)."""
    con = connect(db)
    try:
        done = get_meta(con, key)
        if done:
            start = max(start, dt.date.fromisoformat(done) + dt.timedelta(days=1))
        spans = windows(start, end, max_days) if start <= end else []
        total = 0
        for i, (a, b) in enumerate(spans, start=1):
            candles = fetch_window(a, b)
            # the last day stays open to a re-run while it is still today
            mark = b if b < end or end < dt.date.today() else b - dt.timedelta(days=1)
            total += save_candles(con, candles, {key: mark.isoformat()})
            on_window(i, len(spans), total)
        return len(spans), total
    finally:
        con.close()
