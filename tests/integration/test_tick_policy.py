"""The market-data reproductions of the hardening issue (#13), end to end: a tickserver on
loopback (speaking the real protocol, with a hostile script) → ``TickserverFeed`` →
``MarketNode`` (the fast pipeline, the SQLite writer) → the database, the status and /metrics.

Each hostile input must end in a rejection that is counted per feed and reason, visible, logged
once, and must lose nothing else: every valid row is stored, no invalid value reaches a candle
or the ``ticks`` table, and no later tick is harmed (no ``late``, no ``volume_decreased``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from typing import Any

import pytest
import websockets

from mandi.config import load_config
from mandi.core.calendar import parse_ist
from mandi.feeds.tickserver import master_csv
from mandi.model.batches import T_PRICE, T_TOKEN, T_TS, T_VOLUME
from mandi.model.instruments import Index, Option
from mandi.services.node import MarketNode
from mandi.services.status import one_line, status_snapshot
from mandi.stores.ticks import read_ticks
from mandi.web.api import MandiAPI
from ports import free_port

NS = 10**9
T0 = parse_ist("2026-04-13 09:15:00")
NIFTY, OPT = 256265, 1001
INSTRUMENTS = [
    Index(NIFTY, "NSE", "NIFTY 50", segment="INDICES"),
    Option(OPT, "NFO", "NIFTY26APR24200CE", underlying="NIFTY", strike=2_420_000, lot_size=65),
]
SECONDS = 12


def row(token: int, ts: int, price: Any, volume: Any, **kw: Any) -> list[Any]:
    r = {"last_qty": 1, "oi": 0, "bid": 0, "ask": 0, "bid_qty": 0, "ask_qty": 0, **kw}
    return [token, "NSE", ts, price, volume, *r.values()]


def script() -> tuple[list[Any], int]:
    """The frames the hostile server sends, and how many rows are valid ticks."""
    frames: list[Any] = []
    good = 0
    for k in range(SECONDS):
        ts = T0 + k * NS
        rows = [
            row(NIFTY, ts + 1000, 2_420_000 + 5 * k, 1000 + k),
            row(OPT, ts + 2000, 12_000 + 5 * k, 500 + 10 * k, oi=65 * k),
        ]
        good += 2
        if k == 2:  # was: counted bad_price, queued for the ticks table, the writer died
            rows.append(row(NIFTY, ts + 3000, 2**64, 1000 + k))
        if k == 3:  # was: moved the watermark a day ahead; later ticks late
            rows.append(row(OPT, ts + 86_400 * NS, 12_010, 500 + 10 * k))
        if k == 4:  # was: the baseline of the token's cumulative volume; later ticks refused
            rows.append(row(NIFTY, ts + 3000, 2_420_020, 10**15))
        if k == 5:  # was: truncated to 1 paisa (a NIFTY candle with a low of ₹0.01)
            rows.append(row(OPT, ts + 3000, 1.5, 500 + 10 * k))
            rows.append(row(NIFTY, ts + 4000, "2420025", 1000 + k))
        if k == 6:  # was: one bad row dropped the whole message
            rows += [None, [NIFTY, "NSE"], [NIFTY, 5, ts, 2_420_030, 1000 + k, 1, 0, 0, 0, 0, 0]]
        frames.append({"type": "ticks", "ts": ts, "data": rows})
        if k == 6:  # was: not counted anywhere
            frames += ["not json", b"\x00\xff\xfe", "[1, 2, 3]", {"type": "zzz"}]
            frames.append({"type": "ticks", "ts": ts, "data": 5})
    return frames, good


async def serve(port: int, frames: list[Any]) -> Any:
    sent = False

    async def handle(ws: Any) -> None:
        nonlocal sent
        await ws.send(json.dumps({"type": "hello", "version": 1, "date": "2026-04-13"}))
        try:
            async for raw in ws:
                cmd = json.loads(raw)
                if cmd["action"] == "instruments":
                    csv = master_csv(INSTRUMENTS)
                    await ws.send(json.dumps({"type": "instruments", "csv": csv}))
                elif cmd["action"] == "subscribe" and not sent:
                    sent = True
                    await ws.send(json.dumps({"type": "subscribed", "count": 2}))
                    for f in frames:
                        await ws.send(f if isinstance(f, str | bytes) else json.dumps(f))
        except websockets.ConnectionClosed:
            pass  # the node stopped

    return await websockets.serve(handle, "127.0.0.1", port)


async def run_node(db: str) -> dict[str, Any]:
    port = free_port()
    frames, good = script()
    server = await serve(port, frames)
    url = f"ws://127.0.0.1:{port}"
    cfg = load_config(
        env={},
        overrides={
            "run.feed": url,
            "store.db": db,
            "run.status_interval": 0.0,
            "store.second_candles": "sqlite",  # the 1 s candles are checked below
        },
    )
    node = MarketNode(cfg)
    task = asyncio.create_task(node.run())
    try:
        # everything sent has gone through (generous: a loaded 2-core machine); a node that
        # loses rows never gets there, and the tests then say what is missing
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                while node.stats.ticks_in < good + 5:  # + the rows the tick policy rejects
                    assert not task.done(), task
                    await asyncio.sleep(0.02)
                while getattr(node.feed, "rejected", {}).get("malformed_frame", 0) < 5:
                    await asyncio.sleep(0.02)
        snap = status_snapshot(node.ctx)
        out = {
            "snapshot": snap,
            "line": one_line(snap),
            "metrics": MandiAPI(node.ctx).metrics_text(),
            "rejected": node.pipeline.seconds.rejected,
            "url": url,
            "good": good,
        }
    finally:
        node.request_stop("test over")
        out_code = await task
        server.close()
    out["code"] = out_code
    return out


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: Any) -> dict[str, Any]:
    db = str(tmp_path_factory.mktemp("policy") / "m.db")
    handler = _Collect()
    for name in ("mandi.services.node", "mandi.feeds.ws"):
        logging.getLogger(name).addHandler(handler)
    try:
        out = asyncio.run(run_node(db))
    finally:
        for name in ("mandi.services.node", "mandi.feeds.ws"):
            logging.getLogger(name).removeHandler(handler)
    con = sqlite3.connect(db)
    b = read_ticks(con)  # tick blocks (and the seed's rows)
    out["ticks"] = list(zip(*b.data[[T_TS, T_TOKEN, T_PRICE, T_VOLUME]].tolist(), strict=True))
    out["candles"] = con.execute(
        "SELECT token, bucket, open, high, low, close, volume FROM candles WHERE timeframe = 1"
    ).fetchall()
    con.close()
    out["logs"] = handler.lines
    return out


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def by_feed(run: dict[str, Any]) -> dict[str, int]:
    return run["snapshot"].get("rejected_by_feed", {}).get(run["url"], {})


def test_every_valid_row_is_stored_and_nothing_else(hostile_run: dict[str, Any]) -> None:
    ticks = hostile_run["ticks"]
    assert len(ticks) == hostile_run["good"]  # the writer never died; nothing invalid queued
    assert {t for _, t, _, _ in ticks} == {NIFTY, OPT}
    assert all(0 < p < 2**53 and type(p) is int for _, _, p, _ in ticks)
    assert hostile_run["code"] == 0


def test_a_price_of_2_to_the_64_is_rejected_before_the_ticks_table(hostile_run: Any) -> None:
    assert by_feed(hostile_run)["bad_price"] == 3  # 2**64, 1.5 and "2420025"
    assert max(p for _, _, p, _ in hostile_run["ticks"]) < 2_500_000


def test_a_tick_a_day_ahead_never_moves_the_watermark(hostile_run: Any) -> None:
    assert by_feed(hostile_run)["future_timestamp"] == 1
    assert "late" not in hostile_run["rejected"]
    buckets = [b for _, b, *_ in hostile_run["candles"]]
    assert max(buckets) < T0 + SECONDS * NS  # no bogus next-day candle
    assert len(buckets) >= 2 * (SECONDS - 1)  # every second of both tokens (the last may be open)


def test_a_volume_of_10_to_the_15_does_not_kill_the_token(hostile_run: Any) -> None:
    assert by_feed(hostile_run)["bad_volume"] == 1
    assert "volume_decreased" not in hostile_run["rejected"]
    nifty = sorted(c for c in hostile_run["candles"] if c[0] == NIFTY)
    assert all(c[-1] <= 1 for c in nifty[1:])  # one share a second, as sent


def test_a_float_or_string_price_is_rejected_never_truncated(hostile_run: Any) -> None:
    lows = {t: min(c[4] for c in hostile_run["candles"] if c[0] == t) for t in (NIFTY, OPT)}
    assert lows == {NIFTY: 2_420_000, OPT: 12_000}  # not ₹0.01


def test_malformed_rows_are_skipped_alone_and_garbage_frames_counted(hostile_run: Any) -> None:
    counts = by_feed(hostile_run)
    assert counts["malformed"] == 3 and counts["malformed_frame"] == 5
    ts6 = T0 + 6 * NS
    kept = [t for ts, t, _, _ in hostile_run["ticks"] if ts6 <= ts < ts6 + NS]
    assert kept == [NIFTY, OPT]  # the message with three bad rows kept its two good ones


def test_rejects_are_visible_per_feed_and_reason_and_logged_once(hostile_run: Any) -> None:
    url = hostile_run["url"]
    want = {
        "malformed_frame": 5,
        "bad_price": 3,
        "bad_volume": 1,
        "future_timestamp": 1,
        "malformed": 3,
    }
    assert hostile_run["snapshot"]["rejected_by_feed"] == {url: want}
    assert hostile_run["snapshot"]["rejected_ticks"] == want
    assert "rejected=13 (" in hostile_run["line"] and "bad_price 3" in hostile_run["line"]
    metrics = hostile_run["metrics"]
    assert f'mandi_rejected_ticks_total{{feed="{url}",reason="bad_price"}} 3' in metrics
    assert f'mandi_rejected_ticks_total{{feed="{url}",reason="malformed"}} 3' in metrics
    logs = hostile_run["logs"]
    for reason in ("bad_price", "future_timestamp", "bad_volume"):
        assert sum(f": {reason} (" in line for line in logs) == 1, logs  # once a minute
    assert sum("malformed tick row" in line for line in logs) == 1, logs
    assert sum("not a message" in line for line in logs) == 1, logs
