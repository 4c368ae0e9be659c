"""``mandi history fetch kite``: Kite's historical candles (with OI) into the candle store,
through the shared resumable loop (:func:`mandi.brokers.history.backfill`), cut into the spans
Kite accepts (:data:`~mandi.brokers.kite.wire.INTERVAL_MAX_DAYS`) and paced at
``history_per_second`` (Kite: 3 requests/s)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from mandi.brokers import history
from mandi.brokers.kite.rest import KiteRest
from mandi.brokers.kite.wire import INTERVAL_MAX_DAYS, parse_candles
from mandi.model.instruments import AnyInstrument, Future, Option
from mandi.model.market import Candle


def progress_key(token: int, interval: str) -> str:
    return history.progress_key("kite", token, interval)


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
    if interval not in INTERVAL_MAX_DAYS:
        raise ValueError(f"interval {interval!r}: use one of {', '.join(INTERVAL_MAX_DAYS)}")
    oi = isinstance(inst, Option | Future)

    def window(a: dt.date, b: dt.date) -> list[Candle]:
        rows = rest.historical(inst.token, interval, f"{a} 00:00:00", f"{b} 23:59:59", oi=oi)
        return parse_candles(rows, inst.token, inst.exchange, interval)

    key = progress_key(inst.token, interval)
    return history.backfill(key, window, INTERVAL_MAX_DAYS[interval], start, end, db, on_window)
