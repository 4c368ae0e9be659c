"""Reads (and the one trim) of stored market and trading history that the shell's start-up,
warm-up and replay need: the resume point of ``mandi run``, the last price of each instrument,
the candles a strategy warms up on, the chain snapshots of the day, the recorded ticks, signals
and fills a replay compares with. SQL lives here; the services call these functions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from mandi.model.batches import T_ASK, T_BID, T_OI, T_PRICE, T_TOKEN, T_TS, T_VOLUME
from mandi.stores import ticks
from mandi.stores.sqlite import rollback


def last_candle_bucket(con: sqlite3.Connection, timeframe: int) -> int | None:
    """The newest stored bucket (ns) of ``timeframe`` candles, or None."""
    v = con.execute("SELECT max(bucket) FROM candles WHERE timeframe=?", (timeframe,)).fetchone()
    return None if v is None or v[0] is None else int(v[0])


def last_ticks_between(
    con: sqlite3.Connection, start_ns: int, end_ns: int
) -> list[tuple[int, int, int, int, int, int, int]]:
    """The last stored tick of every token in [start_ns, end_ns): (token, ts_event, price,
    volume, oi, bid, ask)."""
    b = ticks.last_ticks_between(con, start_ns, end_ns)
    d = b.data[[T_TOKEN, T_TS, T_PRICE, T_VOLUME, T_OI, T_BID, T_ASK]]
    return list(zip(*d.tolist(), strict=True)) if len(b) else []


def delete_ticks_from(con: sqlite3.Connection, ts_ns: int) -> int:
    """Delete the stored ticks at or after ``ts_ns``; returns how many."""
    return ticks.delete_ticks_from(con, ts_ns)


def candles_until(
    con: sqlite3.Connection, token: int, timeframe: int, until_ns: int, limit: int
) -> list[tuple[Any, ...]]:
    """The newest ``limit`` candle rows of (token, timeframe) with bucket <= ``until_ns``, oldest
    first (rows for :func:`mandi.stores.sqlite.row_candle`)."""
    rows = con.execute(
        "SELECT token, exchange, timeframe, bucket, open, high, low, close, volume, oi, "
        "ticks FROM candles WHERE timeframe=? AND token=? AND bucket <= ? "
        "ORDER BY bucket DESC LIMIT ?",
        (timeframe, token, until_ns, limit),
    ).fetchall()
    rows.reverse()
    return rows


def candle_tokens(con: sqlite3.Connection, timeframe: int, limit: int = 1000) -> list[int]:
    """Tokens with stored ``timeframe`` candles."""
    return [
        int(r[0])
        for r in con.execute(
            "SELECT DISTINCT token FROM candles WHERE timeframe=? LIMIT ?", (timeframe, limit)
        )
    ]


def candle_timeframes(con: sqlite3.Connection) -> list[int]:
    """The timeframes (seconds) with stored candles, ascending."""
    return [int(r[0]) for r in con.execute("SELECT DISTINCT timeframe FROM candles ORDER BY 1")]


def last_chain_timestamp(con: sqlite3.Connection) -> int | None:
    """The time (ns) of the newest stored option-chain snapshot, or None."""
    v = con.execute("SELECT max(timestamp) FROM option_chain_snapshots").fetchone()
    return None if v is None or v[0] is None else int(v[0])


def recorded_ticks(
    con: sqlite3.Connection, batch: int = 50_000
) -> Iterator[list[tuple[int, int, int, int, int, int, int]]]:
    """Every stored tick in arrival order, in batches: (ts_event, token, price, volume, oi, bid,
    ask)."""
    for b in ticks.iter_ticks(con):
        d = b.data[[T_TS, T_TOKEN, T_PRICE, T_VOLUME, T_OI, T_BID, T_ASK]]
        for lo in range(0, len(b), batch):
            yield list(zip(*d[:, lo : lo + batch].tolist(), strict=True))


def recorded_signals(con: sqlite3.Connection) -> list[tuple[str, str, str, int, str]]:
    """(signal_id, strategy, action, timestamp, status) of every stored signal, in time order."""
    return [
        (r[0], r[1], r[2], int(r[3]), r[4])
        for r in con.execute(
            "SELECT signal_id, strategy, action, timestamp, status FROM trading_signals "
            "ORDER BY timestamp, signal_id"
        )
    ]


def recorded_fills(con: sqlite3.Connection) -> list[tuple[str, str, int, int, int, int]]:
    """(fill_id, order_id, timestamp, quantity, price, charges) of every stored fill, in time
    order."""
    return [
        (r[0], r[1], int(r[2]), int(r[3]), int(r[4]), int(r[5]))
        for r in con.execute(
            "SELECT fill_id, order_id, timestamp, quantity, price, charges FROM fills "
            "ORDER BY timestamp, fill_id"
        )
    ]


def insert_missing_candles(con: sqlite3.Connection, candles: list[Any]) -> int:
    """Store confirmed candles (e.g. a history backfill) where no candle of the same (token,
    timeframe, bucket) is stored yet — a candle the live pipeline wrote is never overwritten;
    returns how many were inserted. One transaction."""
    from mandi.stores.sqlite import candle_row

    before = con.total_changes
    con.execute("BEGIN")
    try:
        con.executemany(
            "INSERT OR IGNORE INTO candles VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [candle_row(c) for c in candles],
        )
        con.execute("COMMIT")
    except sqlite3.Error:
        rollback(con)
        raise
    return con.total_changes - before


def warm_up_candles(
    con: sqlite3.Connection, series: list[tuple[Any, int]], start_ns: int, limit: int = 500
) -> list[Any]:
    """The stored confirmed candles of ``series`` ((instrument, timeframe) pairs) that closed
    by ``start_ns``, the newest ``limit`` of each, in the order they closed: what a strategy
    warms up on — in ``mandi run`` and in a replay of its session alike."""
    from mandi.core.clock import NS_PER_SECOND
    from mandi.stores.sqlite import row_candle

    out = []
    for inst, tf in series:
        rows = candles_until(con, inst.token, tf, start_ns - tf * NS_PER_SECOND, limit)
        out += [row_candle(r) for r in rows]
    out.sort(key=lambda c: (c.bucket + c.timeframe * NS_PER_SECOND, c.token, c.timeframe))
    return out


def first_tick_ns(con: sqlite3.Connection) -> int | None:
    """The time of the first stored tick (where a recorded session starts), or None."""
    from mandi.stores.ticks import tick_span  # rows and the columnar tick blocks

    first, _ = tick_span(con)
    return first or None
