"""Option-chain snapshots in SQLite: the seed's ``option_chain_snapshots`` and
``exchange_metadata`` tables and helpers (``get_previous_close_price``, ``cleanup_old_data``,
``get_database_stats``)."""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from mandi.core.calendar import session_anchor_ns
from mandi.core.clock import NS_PER_SECOND
from mandi.model.batches import TickBatch
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote
from mandi.stores.sqlite import cleanup, rollback, table_stats
from mandi.stores.ticks import iter_ticks

SNAPSHOT_SQL = (
    "INSERT INTO option_chain_snapshots (timestamp, exchange, underlying, expiry, strike, "
    "option_type, symbol, oi, ltp, token, underlying_price, moneyness, pct_change_3m, "
    "pct_change_5m, pct_change_10m, pct_change_15m, pct_change_30m, volume, oi_change, bid, ask, "
    "iv, lot_size, source, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (timestamp, underlying, expiry, strike, option_type) DO NOTHING"
)
METADATA_SQL = (
    "INSERT INTO exchange_metadata VALUES (?,?,?,?,?) ON CONFLICT (exchange) DO UPDATE SET "
    "last_update_time=excluded.last_update_time, last_atm_strike=excluded.last_atm_strike, "
    "last_underlying_price=excluded.last_underlying_price, updated_at=excluded.updated_at"
)
WINDOWS = (3, 5, 10, 15, 30)
# The strikes the instrument master lists per (underlying, expiry), kept in ``meta`` so that a
# reader without the master (``mandi chain show``) grids the chain at its real spacing.
STRIKES_SQL = "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value"


def _strikes_key(underlying: str, expiry: dt.date) -> str:
    return f"chain.strikes:{underlying}:{expiry.isoformat()}"


def listed_strikes_rows(
    listings: Mapping[tuple[str, dt.date], Iterable[int]],
) -> list[tuple[str, str]]:
    """``meta`` rows (``STRIKES_SQL``) of the listed strikes (paise) of each chain."""
    return [
        (_strikes_key(u, e), json.dumps(sorted(strikes))) for (u, e), strikes in listings.items()
    ]


def day_ticks(
    con: sqlite3.Connection, start_ns: int, end_ns: int
) -> tuple[dict[int, int], TickBatch]:
    """Of the ticks stored from ``start_ns`` to ``end_ns`` (arrival order): each token's first OI
    (what its change in OI is measured against) and its last tick, in arrival order. Read block
    by block (:func:`mandi.stores.ticks.iter_ticks`): memory stays at one block and a tick per
    token, however late in the day."""
    first: dict[int, int] = {}
    last: dict[int, tuple[int, int, int]] = {}  # token -> (arrival position, part, row)
    parts: list[TickBatch] = []
    seen = 0
    for b in iter_ticks(con, start_ns, end_ns):
        tok = b.token
        uniq, at = np.unique(tok, return_index=True)  # each token's first tick in the block
        oi = b.oi
        for t, i in zip(uniq.tolist(), at.tolist(), strict=True):
            first.setdefault(t, int(oi[i]))
        _, back = np.unique(tok[::-1], return_index=True)
        rows = np.sort(len(b) - 1 - back)  # each token's last tick in the block, in order
        part = b.take(rows)
        parts.append(part)
        for j, (t, i) in enumerate(zip(part.token.tolist(), rows.tolist(), strict=True)):
            last[t] = (seen + i, len(parts) - 1, j)
        seen += len(b)
        if len(parts) > 64:  # keep only the rows still somebody's last
            parts, last = _compact(parts, last)
    parts, last = _compact(parts, last)
    return first, parts[0] if parts else TickBatch.empty()


def _compact(
    parts: list[TickBatch], last: dict[int, tuple[int, int, int]]
) -> tuple[list[TickBatch], dict[int, tuple[int, int, int]]]:
    """The last ticks as one batch in arrival order (``day_ticks``)."""
    if not last:
        return [], {}
    order = sorted(last.items(), key=lambda kv: kv[1][0])
    offsets = np.cumsum([0] + [len(p) for p in parts])
    rows = [int(offsets[p]) + j for _, (_, p, j) in order]
    b = TickBatch.concat(parts).take(np.array(rows, dtype=np.int64))
    return [b], {t: (pos, 0, k) for k, (t, (pos, _, _)) in enumerate(order)}


def load_listed_strikes(
    con: sqlite3.Connection, underlying: str, expiry: dt.date
) -> list[int] | None:
    """The listed strikes (paise) a ``mandi run`` stored for a chain, None if none."""
    row = con.execute(
        "SELECT value FROM meta WHERE key = ?", (_strikes_key(underlying, expiry),)
    ).fetchone()
    return None if row is None else [int(k) for k in json.loads(row[0])]


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def snapshot_rows(
    snap: ChainSnapshot,
    analytics: Any | None,
    created_ns: int,
    ivs: dict[tuple[int, str], float] | None = None,
) -> list[tuple[Any, ...]]:
    """Rows of ``option_chain_snapshots`` for one snapshot; ``analytics`` (a
    :class:`~mandi.options.chain.ChainAnalytics` of the same snapshot) supplies moneyness and
    the OI % windows for the strikes of its window, ``ivs`` ((strike paise, side) → IV, the
    matrix's) the IV where the quote carries none."""
    per_strike: dict[tuple[int, str], tuple[str, list[float | None]]] = {}
    if analytics is not None:
        windows = list(analytics.oi_windows_minutes)
        at = [windows.index(w) if w in windows else -1 for w in WINDOWS]
        oi_pct = analytics.oi_change_pct.tolist()  # (window, side, strike) as Python floats
        strikes = analytics.strikes.tolist()
        for side_i, side in enumerate(("CE", "PE")):
            labels = analytics.moneyness_labels(side)
            for j, k in enumerate(strikes):
                if not math.isfinite(k):
                    continue
                pct = [_num(oi_pct[w][side_i][j]) if w >= 0 else None for w in at]
                per_strike[(round(k * 100), side)] = (labels[j], pct)
    out = []
    spot = snap.underlying_price
    for row in snap.rows:
        for side, q in (("CE", row.call), ("PE", row.put)):
            if q is None:
                continue
            empty: list[float | None] = [None] * len(WINDOWS)
            label, pct = per_strike.get((row.strike, side), (None, empty))
            if label is None:  # outside the analytics window: classify directly
                itm = row.strike < spot if side == "CE" else row.strike > spot
                label = "ITM" if itm else "OTM"
            out.append(
                (
                    snap.ts_event,
                    snap.exchange,
                    snap.underlying,
                    snap.expiry.isoformat(),
                    row.strike,
                    side,
                    q.symbol,
                    q.oi,
                    q.ltp,
                    q.token,
                    spot,
                    label,
                    *pct,
                    q.volume,
                    q.oi_change,
                    q.bid,
                    q.ask,
                    _num(q.iv)
                    if math.isfinite(q.iv)
                    else _num((ivs or {}).get((row.strike, side))),
                    snap.lot_size,
                    snap.source,
                    created_ns,
                )
            )
    return out


def metadata_row(snap: ChainSnapshot, atm_strike_paise: int, now_ns: int) -> tuple[Any, ...]:
    return (snap.exchange, snap.ts_event, atm_strike_paise, snap.underlying_price, now_ns)


def load_snapshots(
    con: sqlite3.Connection,
    start_ns: int,
    end_ns: int = 1 << 62,
    underlying: str | None = None,
    expiry: dt.date | None = None,
) -> list[ChainSnapshot]:
    """Stored snapshots in time order (bid/ask, volume and OI as stored)."""
    sql = (
        "SELECT timestamp, exchange, underlying, expiry, strike, option_type, symbol, oi, ltp, "
        "token, underlying_price, volume, oi_change, bid, ask, iv, lot_size, source "
        "FROM option_chain_snapshots WHERE timestamp >= ? AND timestamp < ?"
    )
    args: list[Any] = [start_ns, end_ns]
    if underlying is not None:
        sql += " AND underlying = ?"
        args.append(underlying)
    if expiry is not None:
        sql += " AND expiry = ?"
        args.append(expiry.isoformat())
    sql += " ORDER BY timestamp, underlying, expiry, strike, option_type"
    groups: dict[tuple[int, str, str], dict[str, Any]] = {}
    for (
        ts,
        ex,
        und,
        exp,
        strike,
        side,
        sym,
        oi,
        ltp,
        token,
        spot,
        vol,
        doi,
        bid,
        ask,
        iv,
        lot,
        src,
    ) in con.execute(sql, args):
        g = groups.setdefault(
            (ts, und, exp), {"exchange": ex, "spot": spot, "lot": lot, "source": src, "rows": {}}
        )
        q = OptionQuote(ltp, bid, ask, vol, oi, doi, token, sym, math.nan if iv is None else iv)
        g["rows"].setdefault(strike, [None, None])[0 if side == "CE" else 1] = q
    return [
        ChainSnapshot(
            und,
            g["exchange"],
            dt.date.fromisoformat(exp),
            ts,
            g["spot"],
            tuple(ChainRow(k, *v) for k, v in sorted(g["rows"].items())),
            g["lot"],
            g["source"],
        )
        for (ts, und, exp), g in groups.items()
    ]


def latest_snapshot(
    con: sqlite3.Connection, underlying: str, expiry: dt.date | None = None
) -> ChainSnapshot | None:
    """The newest stored snapshot of ``underlying`` (nearest stored expiry unless given)."""
    args: list[Any] = [underlying]
    where = "underlying = ?"
    if expiry is not None:
        where += " AND expiry = ?"
        args.append(expiry.isoformat())
    row = con.execute(
        f"SELECT max(timestamp) FROM option_chain_snapshots WHERE {where}", args
    ).fetchone()
    if row is None or row[0] is None:
        return None
    ts = int(row[0])
    snaps = load_snapshots(con, ts, ts + 1, underlying, expiry)
    return min(snaps, key=lambda s: s.expiry) if snaps else None


def expiries(con: sqlite3.Connection, underlying: str) -> list[dt.date]:
    return [
        dt.date.fromisoformat(r[0])
        for r in con.execute(
            "SELECT DISTINCT expiry FROM option_chain_snapshots WHERE underlying = ? ORDER BY 1",
            (underlying,),
        )
    ]


def get_previous_close_price(
    con: sqlite3.Connection, exchange: str, now_ns: int, underlying: str | None = None
) -> int | None:
    """The underlying price (paise) of the last snapshot before today's session (IST)."""
    today_start = session_anchor_ns(now_ns) - 9 * 3600 * NS_PER_SECOND - 15 * 60 * NS_PER_SECOND
    sql = "SELECT underlying_price FROM option_chain_snapshots WHERE exchange = ? AND timestamp < ?"
    args: list[Any] = [exchange, today_start]
    if underlying is not None:
        sql += " AND underlying = ?"
        args.append(underlying)
    row = con.execute(sql + " ORDER BY timestamp DESC LIMIT 1", args).fetchone()
    return None if row is None else int(row[0])


def cleanup_old_data(con: sqlite3.Connection, days: int, now_ns: int) -> dict[str, int]:
    """The seed helper: delete data older than ``days`` days (every time-keyed table)."""
    return cleanup(con, days, now_ns)


def get_database_stats(con: sqlite3.Connection, path: str) -> dict[str, Any]:
    """The seed helper: record counts, file size, and the exchange metadata."""
    stats = table_stats(con, path)
    stats["exchange_metadata"] = [
        {
            "exchange": ex,
            "last_update_time": ts,
            "last_atm_strike": atm,
            "last_underlying_price": px,
        }
        for ex, ts, atm, px, _ in con.execute("SELECT * FROM exchange_metadata ORDER BY 1")
    ]
    return stats


def today_start_ns(now_ns: int) -> int:
    """Midnight IST of the day of ``now_ns``, in ns UTC."""
    return session_anchor_ns(now_ns) - (9 * 3600 + 15 * 60) * NS_PER_SECOND


def store_snapshots(
    con: sqlite3.Connection,
    snaps: Iterable[ChainSnapshot],
    analytics: Iterable[Any | None],
    now_ns: int,
) -> int:
    """Write snapshots (and the exchange metadata) in one transaction; returns rows written."""
    n = 0
    con.execute("BEGIN")
    try:
        for snap, a in zip(snaps, analytics, strict=True):
            rows = snapshot_rows(snap, a, now_ns)
            con.executemany(SNAPSHOT_SQL, rows)
            n += len(rows)
            con.execute(METADATA_SQL, metadata_row(snap, atm_paise(a), now_ns))
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    return n


def atm_paise(analytics: Any | None) -> int:
    if analytics is None:
        return 0
    atm: float = analytics.atm_strike
    return round(atm * 100) if math.isfinite(atm) else 0


# --- history for the volatility and OI views ------------------------------------------------
HISTORY_COLUMNS = (
    "timestamp",
    "expiry",
    "strike",
    "option_type",
    "ltp",
    "bid",
    "ask",
    "oi",
    "oi_change",
    "volume",
    "iv",
    "underlying_price",
)


def chain_history(
    con: sqlite3.Connection,
    underlying: str,
    start_ns: int,
    end_ns: int,
    *,
    expiry: dt.date | None = None,
    strike: int | None = None,
    near_fraction: float | None = None,
    times: Iterable[int] | None = None,
    limit: int = 2_000_000,
) -> list[tuple[Any, ...]]:
    """Stored chain rows of ``underlying`` in ``[start_ns, end_ns)`` (columns
    :data:`HISTORY_COLUMNS`, time order): of one ``expiry`` and/or ``strike`` (paise) if given,
    only strikes within ``near_fraction`` of the underlying price (the rows an ATM series needs)
    or only at the given snapshot ``times``."""
    sql = (
        f"SELECT {', '.join(HISTORY_COLUMNS)} FROM option_chain_snapshots "
        "WHERE underlying = ? AND timestamp >= ? AND timestamp < ?"
    )
    args: list[Any] = [underlying, start_ns, end_ns]
    if expiry is not None:
        sql += " AND expiry = ?"
        args.append(expiry.isoformat())
    if strike is not None:
        sql += " AND strike = ?"
        args.append(strike)
    if near_fraction is not None:
        sql += " AND abs(strike - underlying_price) <= underlying_price * ?"
        args.append(near_fraction)
    if times is not None:
        stamps = sorted(set(times))
        if not stamps:
            return []
        sql += f" AND timestamp IN ({','.join('?' * len(stamps))})"
        args += stamps
    sql += " ORDER BY timestamp, expiry, strike, option_type LIMIT ?"
    args.append(limit)
    return con.execute(sql, args).fetchall()


def day_close_times(
    con: sqlite3.Connection, underlying: str, start_ns: int, end_ns: int
) -> list[int]:
    """The last stored snapshot time of each IST day with snapshots of ``underlying``."""
    day = NS_PER_SECOND * 86_400
    offset = (5 * 3600 + 30 * 60) * NS_PER_SECOND
    rows = con.execute(
        "SELECT max(timestamp) FROM option_chain_snapshots WHERE underlying = ? "
        "AND timestamp >= ? AND timestamp < ? GROUP BY (timestamp + ?) / ? ORDER BY 1",
        (underlying, start_ns, end_ns, offset, day),
    ).fetchall()
    return [int(r[0]) for r in rows]
