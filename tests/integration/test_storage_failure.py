"""The writer never dies (issue 13.2), end to end.

* A tick of price 2**64 from a tickserver used to kill the SQLite writer thread (``OverflowError:
  Python int too large to convert to SQLite INTEGER``): the node went on storing nothing and
  exited 0. Now the good ticks are all stored, the run exits 0 and the bad row is never in
  ``ticks`` (quarantined in ``rejects``, or refused before the writer by tick validation).
* A full disk used to end in ``writer did not stop within 30 s; ... rows pending`` and exit 0.
  Now the node says so (``STORAGE FAILED``), blocks new entries, and exits 1 with the count of
  what was not stored; everything committed before is intact. The disk is made full for real:
  ``mandi run`` runs with ``RLIMIT_FSIZE``, so the kernel refuses to grow its files (a tmpfs
  of a few MB would need root).
"""

import ast
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import msgspec
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from mandi.config import load_config
from mandi.core.calendar import ist_ns
from mandi.core.clock import NS_PER_SECOND
from mandi.feeds.tickserver import master_csv
from mandi.model.instruments import Index
from mandi.services.node import MarketNode
from mandi.stores.ticks import read_ticks

NIFTY = Index(256265, "NSE", "NIFTY 50", "NIFTY")
T0 = ist_ns(dt.date(2026, 4, 13)) + (9 * 3600 + 15 * 60) * NS_PER_SECOND  # 09:15 IST
HUGE = 2**64
FULL_AT = 3_000_000  # bytes: no file of the run may grow beyond it


def tick(i, price):
    return [NIFTY.token, "NSE", T0 + i * NS_PER_SECOND // 2, price, 1000 + i, 1, 0, 0, 0, 0, 0]


class FakeTickserver:
    """Speaks the tickserver protocol (docs/tickserver.md) on loopback: the instrument master,
    then ``batches`` of tick rows once a client subscribes."""

    def __init__(self, batches):
        self.batches = batches
        self.port = 0
        self.ready = threading.Event()
        self.loop = None
        self._stop = None

    async def _handle(self, ws):
        with contextlib.suppress(ConnectionClosed):  # the node hangs up when it stops
            async for raw in ws:
                cmd = json.loads(raw)
                if cmd["action"] == "instruments":
                    csv = master_csv([NIFTY])
                    await ws.send(json.dumps({"type": "instruments", "csv": csv}))
                elif cmd["action"] == "subscribe":
                    for rows in self.batches:
                        # ts: the step's exchange time, the client's clock (docs/tickserver.md)
                        ts = max(r[2] for r in rows)
                        msg = {"type": "ticks", "ts": ts, "data": rows}
                        data = msgspec.json.encode(msg).decode()
                        await ws.send(data)

    async def _main(self):
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()
            await self._stop.wait()

    def __enter__(self):
        def run():
            self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(self._main())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)


def test_a_tick_of_price_2_pow_64_loses_nothing_else_and_the_run_exits_0(tmp_path):
    good = [tick(i, 2_400_000 + i) for i in range(100)]
    bad = tick(50, HUGE)
    bad[2] += 1  # its own timestamp, between two good ticks
    batches = [[*good[:50], bad, *good[50:]], [tick(120, 2_400_000)]]  # 09:16:00 ends the run
    db = str(tmp_path / "run.db")
    with FakeTickserver(batches) as server:
        cfg = load_config(
            env={},
            overrides={
                "run.feed": f"ws://127.0.0.1:{server.port}",
                "run.until": "09:16",
                "run.status_interval": 0,
                "store.db": db,
                "store.second_candles": "sqlite",  # 1 s candles in SQLite, checked below
            },
        )
        code = asyncio.run(asyncio.wait_for(MarketNode(cfg, layers=[]).run(), 60))
    assert code == 0
    con = sqlite3.connect(db)
    b = read_ticks(con)  # tick blocks (and the seed's rows)
    stored = list(zip(b.ts_event.tolist(), b.price.tolist(), strict=True))
    assert stored == [(r[2], r[3]) for r in good]  # all the good ticks, nothing else
    rejects = con.execute("SELECT target, row FROM rejects").fetchall()
    assert all(t == "ticks" and json.loads(r)[2] == HUGE for t, r in rejects)
    # and the pipeline went on: 1 s candles of the 50 seconds the good ticks span (the last
    # one may still be forming when the run stops at 09:16)
    assert con.execute("SELECT count(*) FROM candles WHERE timeframe = 1").fetchone()[0] >= 49


def test_a_disk_full_at_start_up_is_one_line_and_exit_2(tmp_path):
    db = str(tmp_path / "full.db")
    args = ["run", "--db", db, "--date", "2026-04-13", "--until", "09:20", "--no-dashboard"]
    p = subprocess.run(
        [sys.executable, "-m", "mandi", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "MANDI_HISTORY__SESSIONS": "5"},  # its backfill needs more than FULL_AT
        preexec_fn=_full_disk(FULL_AT),
    )
    assert p.returncode == 2, p.stderr[-3000:]
    last = p.stderr.strip().splitlines()[-1]
    assert (
        last.startswith(f"mandi: the database {db} failed at start-up: ")
        and "Traceback" not in p.stderr
    )


def _full_disk(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write fails, not kills
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_blocks_entries_and_the_run_exits_1_with_what_was_not_stored(tmp_path):
    db = str(tmp_path / "full.db")
    args = ["run", "--db", db, "--date", "2026-04-13", "--seed", "11", "--speed", "inf"]
    args += ["--until", "10:30", "--no-dashboard", "--status-interval", "0"]
    # no chains, no history backfill: the disk fills while the market runs, not at start-up
    env = {**os.environ, "MANDI_CHAINS__ENABLED": "false", "MANDI_HISTORY__SESSIONS": "0"}
    p = subprocess.Popen(
        [sys.executable, "-m", "mandi", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_full_disk(FULL_AT),
    )
    lines: list[str] = []

    def read():
        for line in p.stderr:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def wait_for_line(text, timeout):
        deadline = time.monotonic() + timeout
        while not any(text in x for x in lines):
            assert p.poll() is None, f"exited {p.returncode} first: " + "".join(lines[-30:])
            assert time.monotonic() < deadline, "".join(lines[-30:])
            time.sleep(0.05)

    try:
        wait_for_line("STORAGE FAILED", 180)
        wait_for_line("new entries blocked: storage failed", 60)  # the trading layer heard it
        p.send_signal(signal.SIGTERM)
        code = p.wait(120)
    finally:
        if p.poll() is None:
            p.kill()
    reader.join(10)
    text = "".join(lines)
    assert code == 1, text[-3000:]
    (lost,) = re.findall(r"(\d+) rows were NOT stored", text)
    assert int(lost) > 0
    (stored,) = re.findall(r"stored (\{.*?\}) rows;", text)
    counts = ast.literal_eval(stored)  # the node's own account: {"ticks": n, ...}
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for table in ("tick_blocks", "candles"):  # every committed row is there, intact
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == counts[table] > 0
