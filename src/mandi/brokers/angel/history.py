"""``mandi history fetch angel``: SmartAPI's ``getCandleData`` into the candle store, through
the shared resumable loop (:func:`mandi.brokers.history.backfill`), cut into the spans SmartAPI
accepts (:data:`~mandi.brokers.angel.wire.INTERVAL_MAX_DAYS`), paced at 3 requests/s."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from mandi.brokers import history
from mandi.brokers.angel.rest import AngelRest
from mandi.brokers.angel.wire import INTERVAL_MAX_DAYS, SEGMENT_OF_TYPE, angel_token, parse_candles
from mandi.model.instruments import AnyInstrument
from mandi.model.market import Candle

INTERVALS = tuple(INTERVAL_MAX_DAYS)


def fetch(
    rest: AngelRest,
    inst: AnyInstrument,
    interval: str,
    start: dt.date,
    end: dt.date,
    db: str,
    on_window: Callable[[int, int, int], None] = lambda done, total, rows: None,
) -> tuple[int, int]:
    if interval not in INTERVAL_MAX_DAYS:
        raise ValueError(f"interval {interval!r}: use one of {', '.join(INTERVAL_MAX_DAYS)}")
    ex_type, tok = angel_token(inst.token)

    def window(a: dt.date, b: dt.date) -> list[Candle]:
        rows = rest.candles(SEGMENT_OF_TYPE[ex_type], tok, interval, f"{a} 09:15", f"{b} 15:30")
        return parse_candles(rows, inst.token, inst.exchange, interval)

    key = history.progress_key("angel", inst.token, interval)
    return history.backfill(key, window, INTERVAL_MAX_DAYS[interval], start, end, db, on_window)
