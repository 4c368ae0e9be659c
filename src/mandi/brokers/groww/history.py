"""``mandi history fetch groww``: ``/v1/historical/candles`` into the candle store, through the
shared resumable loop (:func:`mandi.brokers.history.backfill`), cut into the spans Groww accepts
(:data:`~mandi.brokers.groww.wire.INTERVAL_MAX_DAYS`), paced at ``history_per_second``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from mandi.brokers import history
from mandi.brokers.groww.rest import GrowwRest
from mandi.brokers.groww.wire import INTERVAL_MAX_DAYS, feed_key, groww_symbol, parse_candles
from mandi.model.instruments import AnyInstrument
from mandi.model.market import Candle

INTERVALS = tuple(INTERVAL_MAX_DAYS)


def fetch(
    rest: GrowwRest,
    inst: AnyInstrument,
    interval: str,
    start: dt.date,
    end: dt.date,
    db: str,
    on_window: Callable[[int, int, int], None] = lambda done, total, rows: None,
) -> tuple[int, int]:
    if interval not in INTERVAL_MAX_DAYS:
        raise ValueError(f"interval {interval!r}: use one of {', '.join(INTERVAL_MAX_DAYS)}")
    key, symbol = feed_key(inst), groww_symbol(inst)

    def window(a: dt.date, b: dt.date) -> list[Candle]:
        rows = rest.candles(
            key.exchange, key.segment, symbol, f"{a} 09:15:00", f"{b} 15:30:00", interval
        )
        return parse_candles(rows, inst.token, inst.exchange, interval)

    k = history.progress_key("groww", inst.token, interval)
    return history.backfill(k, window, INTERVAL_MAX_DAYS[interval], start, end, db, on_window)
