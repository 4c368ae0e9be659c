"""``mandi history fetch kite``: Kite's historical candles (with OI) into the candle store.

The span is cut into requests Kite accepts (60 days of minutes, 100 of 3/5/10-minute candles,
...: :data:`~mandi.brokers.kite.wire.INTERVAL_MAX_DAYS`), paced at ``history_per_second``
(Kite: 3 requests/s). Each window is stored with its completion mark in one transaction
(``meta`` key ``kite.history.<token>.<interval>`` = the last day done), so an interrupted fetch
resumes where it stopped and a daily re-run only asks for the new days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from mandi.brokers.kite.rest import KiteRest
from mandi.brokers.kite.wire import history_windows, parse_candles
from mandi.model.instruments import AnyInstrument, Future, Option
from mandi.stores.sqlite import connect, get_meta, save_candles


def progress_key(token: int, interval: str) -> str:
    return f"kite.history.{token}.{interval}"


def fetch(
    rest: KiteRest,
    inst: AnyInstrument,
    interval: str,
    start: dt.date,
    end: dt.date,
    db: str,
    on_window: Callable[[int, int, int], None] = lambda done, total, rows: None,
) -> tuple[int, int]:
    """Fetch [start, end] (resuming after the stored mark); returns (windows, candles)."""
    con = connect(db)
    try:
        key = progress_key(inst.token, interval)
        done = get_meta(con, key)
        if done:
            start = max(start, dt.date.fromisoformat(done) + dt.timedelta(days=1))
        windows = history_windows(start, end, interval) if start <= end else []
        oi = isinstance(inst, Option | Future)
        total = 0
        for i, (a, b) in enumerate(windows, start=1):
            rows = rest.historical(inst.token, interval, f"{a} 00:00:00", f"{b} 23:59:59", oi=oi)
            candles = parse_candles(rows, inst.token, inst.exchange, interval)
            # the last day stays open to a re-run while it is still today
            mark = b if b < end or end < dt.date.today() else b - dt.timedelta(days=1)
            total += save_candles(con, candles, {key: mark.isoformat()})
            on_window(i, len(windows), total)
        return len(windows), total
    finally:
        con.close()
