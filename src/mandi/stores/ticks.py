"""Ticks in SQLite as compressed columnar blocks (``tick_blocks``), read back as
:class:`~mandi.model.batches.TickBatch` es.

Why blocks (issue 17): a tick stored as a row of the seed's ``ticks`` table is ~45 bytes on disk
and one ``INSERT`` row — the writer's ~1 M rows/s would cap ``mandi run`` near 500 k ticks/s
once 1 s candles were stored too. A block holds a run of ticks in arrival order (all twelve
fields: the replay feed needs the quoted quantities the row format never kept), one row per
writer flush: times delta-coded, bid/ask/ts_init relative to price/ts_event, every column
byte-shuffled, then Zstandard level 1 — about 13 bytes a tick, encoded at ~5 M ticks/s on the
writer thread (the blob is made when SQLite binds it, :meth:`TickBlock.__conform__`), so the
kernel never pays for it.

Every read here merges the blocks with the seed's row table (a database written by an older
mandi stays readable), so the seed's ``ticks`` table remains readable through this API
(:func:`read_ticks`, :func:`iter_ticks`).

Blocks are appended in arrival order (``seq``); ``start_ns``/``end_ns`` are the smallest and
largest event time in a block, so a time range reads only the blocks that overlap it.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from mandi.core.errors import StoreError
from mandi.model.batches import (
    N_TICK_FIELDS,
    T_ASK,
    T_BID,
    T_INIT,
    T_PRICE,
    T_TOKEN,
    T_TS,
    TickBatch,
    exchange_code,
)
from mandi.stores.sqlite import first_rowid_at

if sys.version_info >= (3, 14):  # pragma: no cover - the stdlib module from 3.14 on
    from compression import zstd
else:
    from backports import zstd

CODEC = 1  # delta + shuffle + zstd(1) of the twelve TICK_FIELDS
BLOCK_SQL = "INSERT INTO tick_blocks (start_ns, end_ns, ticks, codec, data) VALUES (?,?,?,?,?)"
ROW_SQL = "INSERT INTO ticks VALUES (?,?,?,?,?,?,?)"  # the seed's row format

# --- the codec ----------------------------------------------------------------------------------


def encode_block(data: np.ndarray) -> bytes:
    """The blob of a ``(12, n)`` tick block (see the module docstring)."""
    n = data.shape[1]
    x = np.array(data, dtype=np.int64, copy=True)
    if n:
        x[T_TS, 1:] = np.diff(data[T_TS])
    x[T_INIT] -= data[T_TS]
    x[T_BID] -= data[T_PRICE]
    x[T_ASK] -= data[T_PRICE]
    shuffled = x.view(np.uint8).reshape(N_TICK_FIELDS, n, 8).transpose(0, 2, 1)
    return bytes(zstd.compress(np.ascontiguousarray(shuffled).tobytes(), 1))


def decode_block(blob: bytes, n: int, codec: int = CODEC) -> TickBatch:
    """The ticks of a blob made by :func:`encode_block` (``n`` ticks)."""
    if codec != CODEC:
        raise StoreError(f"tick block codec {codec} is not known to this mandi (expected {CODEC})")
    raw = np.frombuffer(zstd.decompress(blob), dtype=np.uint8)
    if raw.size != N_TICK_FIELDS * n * 8:
        raise StoreError(f"tick block of {n} ticks has {raw.size} bytes, not {96 * n}")
    x = raw.reshape(N_TICK_FIELDS, 8, n).transpose(0, 2, 1).copy().view(np.int64)[:, :, 0]
    np.cumsum(x[T_TS], out=x[T_TS])
    x[T_INIT] += x[T_TS]
    x[T_BID] += x[T_PRICE]
    x[T_ASK] += x[T_PRICE]
    return TickBatch(x)


class TickBlock:
    """A tick block on its way to SQLite: encoded only when SQLite binds it (on the writer
    thread), as sqlite3's adaptation protocol allows."""

    __slots__ = ("data",)

    def __init__(self, batch: TickBatch) -> None:
        self.data = batch.data

    def __conform__(self, protocol: Any) -> bytes | None:
        if protocol is sqlite3.PrepareProtocol:
            return encode_block(self.data)
        return None

    def __repr__(self) -> str:
        return f"TickBlock({self.data.shape[1]} ticks)"


def block_row(batch: TickBatch) -> tuple[int, int, int, int, TickBlock]:
    """The ``tick_blocks`` row of a non-empty batch (:data:`BLOCK_SQL`)."""
    ts = batch.ts_event
    return (int(ts.min()), int(ts.max()), len(batch), CODEC, TickBlock(batch))


def tick_rows(batch: TickBatch) -> list[tuple[int, ...]]:
    """The seed's ``ticks`` rows of a batch (:data:`ROW_SQL`): time, token, LTP, volume, OI,
    bid, ask."""
    d = batch.data
    return list(zip(*d[[T_TS, T_TOKEN, T_PRICE, 5, 7, T_BID, T_ASK]].tolist(), strict=True))


# --- reads --------------------------------------------------------------------------------------


def _has_blocks(con: sqlite3.Connection) -> bool:
    return (
        con.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='tick_blocks'"
        ).fetchone()
        is not None
    )


def _legacy(con: sqlite3.Connection, start_ns: int | None, end_ns: int | None) -> TickBatch:
    """Ticks of the seed's row table (exchange NSE, no quoted quantities, ts_init = ts_event)."""
    lo = first_rowid_at(con, "ticks", "ts_event", start_ns) if start_ns is not None else 0
    hi = first_rowid_at(con, "ticks", "ts_event", end_ns) if end_ns is not None else 1 << 62
    rows = con.execute(
        "SELECT token, ts_event, price, volume, oi, bid, ask FROM ticks "
        "WHERE rowid >= ? AND rowid < ? ORDER BY rowid",
        (lo, hi),
    ).fetchall()
    if not rows:
        return TickBatch.empty()
    c = np.array(rows, dtype=np.int64).T
    return TickBatch.from_columns(
        c[0], c[1], c[2], exchange=exchange_code("NSE"), volume=c[3], oi=c[4], bid=c[5], ask=c[6]
    )


def iter_ticks(
    con: sqlite3.Connection,
    start_ns: int | None = None,
    end_ns: int | None = None,
    tokens: Any = None,
) -> Iterator[TickBatch]:
    """Stored ticks with ``start_ns <= ts_event < end_ns`` (either bound optional), of
    ``tokens`` only when given, in arrival order: the seed's row table first (an older mandi's
    data), then block by block — memory stays at one block."""
    want = None if tokens is None else np.unique(np.asarray(list(tokens), dtype=np.int64))

    def keep(b: TickBatch) -> TickBatch:
        ts = b.ts_event
        mask = np.ones(len(b), dtype=bool)
        if start_ns is not None:
            mask &= ts >= start_ns
        if end_ns is not None:
            mask &= ts < end_ns
        if want is not None:
            mask &= np.isin(b.token, want)
        return b if mask.all() else b.take(mask)

    old = keep(_legacy(con, start_ns, end_ns))
    if len(old):
        yield old
    if not _has_blocks(con):
        return
    lo = -(1 << 62) if start_ns is None else start_ns
    hi = 1 << 62 if end_ns is None else end_ns
    cur = con.execute(
        "SELECT ticks, codec, data FROM tick_blocks WHERE end_ns >= ? AND start_ns < ? "
        "ORDER BY seq",
        (lo, hi),
    )
    for n, codec, blob in cur:
        b = keep(decode_block(blob, int(n), int(codec)))
        if len(b):
            yield b


def read_ticks(
    con: sqlite3.Connection,
    start_ns: int | None = None,
    end_ns: int | None = None,
    tokens: Any = None,
) -> TickBatch:
    """:func:`iter_ticks` as one batch."""
    return TickBatch.concat(list(iter_ticks(con, start_ns, end_ns, tokens)))


def count_ticks(con: sqlite3.Connection) -> int:
    """How many ticks are stored (rows and blocks)."""
    n = int(con.execute("SELECT count(*) FROM ticks").fetchone()[0])
    if _has_blocks(con):
        n += int(con.execute("SELECT coalesce(sum(ticks), 0) FROM tick_blocks").fetchone()[0])
    return n


def last_tick_ns(con: sqlite3.Connection) -> int | None:
    """The event time of the last stored tick (in arrival order), or None."""
    if _has_blocks(con):
        r = con.execute(
            "SELECT ticks, codec, data FROM tick_blocks ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if r is not None:
            return int(decode_block(r[2], int(r[0]), int(r[1])).ts_event[-1])
    r = con.execute("SELECT ts_event FROM ticks ORDER BY rowid DESC LIMIT 1").fetchone()
    return None if r is None else int(r[0])


def last_ticks_between(con: sqlite3.Connection, start_ns: int, end_ns: int) -> TickBatch:
    """The last stored tick of every token with ``start_ns <= ts_event < end_ns``."""
    b = read_ticks(con, start_ns, end_ns)
    if not len(b):
        return b
    tok = b.token[::-1]
    _, first = np.unique(tok, return_index=True)  # the last occurrence of each token
    return b.take(np.sort(len(b) - 1 - first))


def delete_ticks_from(con: sqlite3.Connection, ts_ns: int) -> int:
    """Delete the stored ticks at or after ``ts_ns`` (a block that straddles it is rewritten
    with the ticks before it); returns how many were deleted."""
    start = first_rowid_at(con, "ticks", "ts_event", ts_ns)
    deleted = int(con.execute("DELETE FROM ticks WHERE rowid >= ?", (start,)).rowcount)
    if not _has_blocks(con):
        return deleted
    rows = con.execute(
        "SELECT seq, ticks, codec, data FROM tick_blocks WHERE end_ns >= ? ORDER BY seq", (ts_ns,)
    ).fetchall()
    for seq, n, codec, blob in rows:
        b = decode_block(blob, int(n), int(codec))
        keep = b.ts_event < ts_ns
        deleted += int((~keep).sum())
        if keep.any():
            kept = b.take(keep)
            con.execute(
                "UPDATE tick_blocks SET start_ns=?, end_ns=?, ticks=?, data=? WHERE seq=?",
                (
                    int(kept.ts_event.min()),
                    int(kept.ts_event.max()),
                    len(kept),
                    encode_block(kept.data),
                    seq,
                ),
            )
        else:
            con.execute("DELETE FROM tick_blocks WHERE seq=?", (seq,))
    return deleted


def cleanup_ticks(con: sqlite3.Connection, cutoff_ns: int) -> int:
    """Delete whole blocks whose ticks are all older than ``cutoff_ns``; returns their ticks."""
    if not _has_blocks(con):
        return 0
    n = con.execute(
        "SELECT coalesce(sum(ticks), 0) FROM tick_blocks WHERE end_ns < ?", (cutoff_ns,)
    ).fetchone()[0]
    con.execute("DELETE FROM tick_blocks WHERE end_ns < ?", (cutoff_ns,))
    return int(n)


def block_stats(con: sqlite3.Connection) -> dict[str, Any]:
    """Blocks, ticks, bytes and the time span of ``tick_blocks``."""
    if not _has_blocks(con):
        return {"blocks": 0, "ticks": 0, "bytes": 0, "first_ns": None, "last_ns": None}
    blocks, ticks, size, first, last = con.execute(
        "SELECT count(*), coalesce(sum(ticks), 0), coalesce(sum(length(data)), 0), "
        "min(start_ns), max(end_ns) FROM tick_blocks"
    ).fetchone()
    return {
        "blocks": int(blocks),
        "ticks": int(ticks),
        "bytes": int(size),
        "first_ns": first,
        "last_ns": last,
    }


def tick_span(con: sqlite3.Connection) -> tuple[int, int]:
    """(first, last) event time of the stored ticks, blocks and rows; (0, 0) when none."""
    s = block_stats(con)
    lo = [s["first_ns"]] if s["first_ns"] is not None else []
    hi = [s["last_ns"]] if s["last_ns"] is not None else []
    first, last = con.execute("SELECT min(ts_event), max(ts_event) FROM ticks").fetchone()
    if first is not None:
        lo.append(first)
        hi.append(last)
    return (int(min(lo)), int(max(hi))) if lo else (0, 0)
