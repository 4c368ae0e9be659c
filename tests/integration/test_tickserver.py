"""``mandi tickserver`` and the ws:// feed: the protocol, bad messages, and parity with the
in-process simulator."""

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
import websockets

from mandi.config import load_config
from mandi.feeds.tickserver import TickServer
from ports import free_port


async def _protocol(port):
    cfg = load_config(overrides={"sim.date": "2026-04-13", "run.speed": 50.0})
    server = TickServer(cfg)
    async with websockets.serve(server.handle, "127.0.0.1", port):
        runner = asyncio.create_task(server.run())
        async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
            hello = json.loads(await ws.recv())
            assert hello == {"type": "hello", "version": 1, "date": "2026-04-13", "seed": 42}
            await ws.send("{not json")
            err = json.loads(await ws.recv())
            assert err["type"] == "error" and "bad message" in err["error"]
            await ws.send('{"action": "dance"}')
            assert "unknown action" in json.loads(await ws.recv())["error"]
            await ws.send('{"action": "instruments"}')
            inst = json.loads(await ws.recv())
            assert inst["csv"].startswith("instrument_token,") and "NIFTY" in inst["csv"]
            await ws.send('{"action": "subscribe", "tokens": [256265, 265]}')
            assert json.loads(await ws.recv()) == {"type": "subscribed", "count": 2}
            seen = set()
            for _ in range(20):
                msg = json.loads(await ws.recv())
                assert msg["type"] == "ticks"
                seen |= {row[0] for row in msg["data"]}
                assert all(len(row) == 11 for row in msg["data"])
            assert seen == {256265, 265}
        runner.cancel()
    assert server.bad_commands == 2


def test_protocol_and_bad_messages():
    asyncio.run(_protocol(free_port()))


def candles(db, until_sql):
    con = sqlite3.connect(db)
    return con.execute(
        f"SELECT * FROM candles WHERE {until_sql} ORDER BY timeframe, bucket, token"
    ).fetchall()


@pytest.mark.slow
def test_ws_feed_gives_the_same_candles_as_the_in_process_simulator(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mandi",
            "tickserver",
            "--port",
            str(port),
            "--speed",
            "30",
            "--date",
            "2026-04-13",
            "--seed",
            "5",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        ws_db, sim_db = str(tmp_path / "ws.db"), str(tmp_path / "sim.db")
        common = [
            "--date",
            "2026-04-13",
            "--seed",
            "5",
            "--until",
            "09:16:30",
            "--status-interval",
            "0",
        ]
        # the 1 s candles are compared too: stored in SQLite (by default they stay in memory)
        seconds_in_sqlite = {**os.environ, "MANDI_STORE__SECOND_CANDLES": "sqlite"}
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "mandi",
                "run",
                "--feed",
                f"ws://127.0.0.1:{port}",
                "--db",
                ws_db,
                *common,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=seconds_in_sqlite,
        )
        assert p.returncode == 0, p.stderr
        p = subprocess.run(
            [sys.executable, "-m", "mandi", "run", "--db", sim_db, "--speed", "inf", *common],
            capture_output=True,
            text=True,
            timeout=120,
            env=seconds_in_sqlite,
        )
        assert p.returncode == 0, p.stderr
    finally:
        server.kill()
    # the day's candles from 09:15 (the in-process simulator also stores the preceding
    # sessions' history for the warm-up, which a tickserver feed does not carry)
    upto = "bucket >= 1776051900000000000 AND bucket < 1776052500000000000 AND timeframe IN (1, 60)"
    a, b = candles(ws_db, upto), candles(sim_db, upto)
    assert len(a) > 1000
    assert a == b
