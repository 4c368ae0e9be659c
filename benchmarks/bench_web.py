"""WebSocket fan-out and its cost to the engine.

The whole ``mandi run`` node (sim at full speed, pipeline, indicators, chains, paper trading) runs
in this process; 100 WebSocket clients run in a separate process (so they do not share the
engine's interpreter), each subscribed like a dashboard to one underlying's chain table, index
ticks, 1-minute candles (confirmed and forming), indicators (confirmed and previews), signals,
positions and the risk channel, plus the 2 s metrics every client gets.

Reported, each over the same steady-state window of wall time after the same warm-up:

* engine throughput (ticks/s into the kernel) without the web layer — the baseline;
* with the web layer and no client;
* with the web layer and 100 clients, and the messages/s delivered to them.

Goal: the dashboard slows ingestion by at most 5 % (the hub's fan-out stays within
``web.cpu_budget`` of the event loop). Runs alternate (baseline, clients, baseline, clients ...)
and the best of each is kept, so a noisy neighbour hurts both sides alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

CLIENTS = int(os.environ.get("MANDI_BENCH_WEB_CLIENTS", "100"))
WARMUP_S = float(os.environ.get("MANDI_BENCH_WEB_WARMUP", "12"))
WINDOW_S = float(os.environ.get("MANDI_BENCH_WEB_WINDOW", "15"))
ROUNDS = int(os.environ.get("MANDI_BENCH_WEB_ROUNDS", "2"))
UNDERLYINGS = [
    ("NIFTY", "NSE", 256265),
    ("BANKNIFTY", "NSE", 260105),
    ("FINNIFTY", "NSE", 257801),
    ("SENSEX", "BSE", 265),
]


def dashboard_channels(i: int) -> list[str]:
    u, ex, tok = UNDERLYINGS[i % len(UNDERLYINGS)]
    key = f"60s:{ex}:{tok}"
    return [
        f"chain:{u}",
        f"tick:{ex}:{tok}",
        "tick:NSE:264969",
        f"candle:{key}",
        f"pub:candle:{key}",
        f"ind:*:{key}",
        f"pub:ind:*:{key}",
        "signal:>",
        "position:>",
        "position_closed",
        "risk:>",
    ]


# --- the client process --------------------------------------------------------------------------


async def _client(
    url: str,
    token: str,
    i: int,
    counts: list[int],
    ready: asyncio.Event,
    subscribed: list[int],
    stop: asyncio.Event,
) -> None:
    from websockets.asyncio.client import connect

    async with connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=1 << 24
    ) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": dashboard_channels(i)}))
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            n = raw.count("\n") + 1
            if ready.is_set():
                counts[0] += n
                counts[1] += 1
            elif '"subscribed"' in raw:
                subscribed[0] += 1


async def _clients_main(url: str, token: str, n: int, seconds: float) -> None:
    counts, subscribed = [0, 0], [0]
    ready, stop = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.create_task(_client(url, token, i, counts, ready, subscribed, stop))
        for i in range(n)
    ]
    deadline = time.monotonic() + 60
    while subscribed[0] < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        for t in tasks:
            if t.done() and t.exception():
                raise t.exception()  # type: ignore[misc]
    await asyncio.sleep(1.0)  # the initial snapshots are not counted
    ready.set()
    print("ready", flush=True)
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    stop.set()
    elapsed = time.monotonic() - t0
    print(
        json.dumps(
            {
                "messages": counts[0],
                "frames": counts[1],
                "seconds": elapsed,
                "clients": subscribed[0],
            }
        ),
        flush=True,
    )
    await asyncio.gather(*tasks, return_exceptions=True)


# --- the engine ---------------------------------------------------------------------------------


def _node(db: str, tokens: str, web: bool) -> object:
    from mandi.web.embed import start_node

    return start_node(
        {
            "store.db": db,
            "sim.date": "2026-04-13",
            "sim.seed": 3,
            "run.speed": float("inf"),
            "run.port": 0,
            "run.status_interval": 0,
            "run.dashboard": web,
            "web.tokens_file": tokens,
            "web.max_clients": CLIENTS + 10,
        }
    )


def _ticks(node: object) -> int:
    return int(node.node.stats.ticks_in)  # type: ignore[attr-defined]


def run_once(
    tmp: str, tokens: str, secret: str, label: str, web: bool, clients: int
) -> tuple[float, dict | None]:
    db = os.path.join(tmp, f"{label}-{time.monotonic_ns()}.db")
    node = _node(db, tokens, web)
    proc = None
    try:
        if clients:
            proc = subprocess.Popen(
                # the clients count over a window a little longer than the engine's sample
                [
                    sys.executable,
                    __file__,
                    "--clients",
                    node.ws_url,  # type: ignore[attr-defined]
                    str(clients),
                    str(WINDOW_S + 2),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "MANDI_BENCH_TOKEN": secret},
            )
        time.sleep(WARMUP_S)
        if proc is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"clients failed to start: {line!r}")
        n0, t0 = _ticks(node), time.perf_counter()
        time.sleep(WINDOW_S)
        n1, t1 = _ticks(node), time.perf_counter()
        hub = node.web.hub.stats() if web else None  # type: ignore[attr-defined]
        result = None
        if proc is not None:
            out, _ = proc.communicate(timeout=60)
            result = json.loads(out.strip().splitlines()[-1])
            result["hub"] = hub
        return (n1 - n0) / (t1 - t0), result
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        node.stop()  # type: ignore[attr-defined]


def main() -> None:
    from harness import report
    from mandi.web.security import TokenStore

    with tempfile.TemporaryDirectory(prefix="mandi-bench-web-") as tmp:
        tokens = str(pathlib.Path(tmp, "tokens.json"))
        _, secret = TokenStore(tokens).create("read", "bench")
        base, idle, loaded, fan = [], [], [], []
        for r in range(ROUNDS):
            base.append(run_once(tmp, tokens, secret, "base", False, 0)[0])
            rate, res = run_once(tmp, tokens, secret, "clients", True, CLIENTS)
            loaded.append(rate)
            fan.append(res)
            if r == 0:
                idle.append(run_once(tmp, tokens, secret, "idle", True, 0)[0])
            print(
                f"  round {r + 1}: baseline {base[-1]:,.0f} ticks/s, {CLIENTS} clients "
                f"{rate:,.0f} ticks/s, {res['messages'] / res['seconds']:,.0f} msgs/s "
                f"(hub {res['hub']})",
                flush=True,
            )
        b, l_, i_ = max(base), max(loaded), max(idle)
        best = max(fan, key=lambda x: x["messages"] / x["seconds"])
        report("engine, no web layer (baseline)", int(b * WINDOW_S), WINDOW_S, "ticks")
        report(
            "engine, web layer, no client",
            int(i_ * WINDOW_S),
            WINDOW_S,
            "ticks",
            "no web layer",
            WINDOW_S * i_ / b if b else None,
        )
        report(
            f"engine, web layer, {CLIENTS} WebSocket clients",
            int(l_ * WINDOW_S),
            WINDOW_S,
            "ticks",
            "no web layer",
            WINDOW_S * l_ / b if b else None,
            goal="≥ 0.95x (the dashboard slows ingestion ≤ 5 %)",
        )
        report(
            f"WebSocket fan-out to {best['clients']} clients",
            best["messages"],
            best["seconds"],
            "msgs",
        )
        print(
            f"  slowdown with {CLIENTS} clients: {100 * (1 - l_ / b):.1f} % "
            f"(best of {ROUNDS}); frames/s {best['frames'] / best['seconds']:,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--clients":
        asyncio.run(
            _clients_main(
                sys.argv[2], os.environ["MANDI_BENCH_TOKEN"], int(sys.argv[3]), float(sys.argv[4])
            )
        )
    else:
        sys.path.insert(0, str(pathlib.Path(__file__).parent))
        main()
