"""WebSocket fan-out and its cost to the engine.

The whole ``mandi run`` node (sim at full speed, pipeline, indicators, chains, paper trading) runs
in this process; 100 WebSocket clients run in a separate process (so they do not share the
engine's interpreter), each subscribed like a dashboard to one underlying's chain table, index
ticks, 1-minute candles (confirmed and forming), indicators (confirmed and previews), signals,
positions and the risk channel, plus the 2 s metrics every client gets.

Reported, each over the same steady-state window after the same warm-up (median of interleaved
rounds: baseline, clients, idle, baseline ...):

* engine throughput (ticks into the kernel) without the web layer — the baseline —, with the web
  layer and no client, and with 100 clients: per wall-clock second (what a user sees, but moved by
  anything else the machine runs, including the client process itself on a 2-core box) and per
  CPU second of the engine's own thread (the kernel and the web layer share that thread, so this
  ratio is the web layer's cost to ingestion);
* the messages/s delivered to the clients, and the hub's own measured share of the loop.

Goal: the dashboard slows ingestion by at most 5 % (the hub's fan-out stays within
``web.cpu_budget`` = 3 % of the event loop).
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
WARMUP_S = float(os.environ.get("MANDI_BENCH_WEB_WARMUP", "10"))
WINDOW_S = float(os.environ.get("MANDI_BENCH_WEB_WINDOW", "12"))
ROUNDS = int(os.environ.get("MANDI_BENCH_WEB_ROUNDS", "3"))
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
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    ready.set()
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
) -> tuple[dict[str, float], dict | None]:
    db = os.path.join(tmp, f"{label}-{time.monotonic_ns()}.db")
    node = _node(db, tokens, web)
    proc = None
    try:
        if clients:
            proc = subprocess.Popen(
                # the clients count over the engine's sample window, started by "go"
                [
                    sys.executable,
                    __file__,
                    "--clients",
                    node.ws_url,  # type: ignore[attr-defined]
                    str(clients),
                    str(WINDOW_S),
                ],
                stdin=subprocess.PIPE,
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
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        clock = time.pthread_getcpuclockid(node.thread.ident)  # type: ignore[attr-defined]
        n0, t0, c0 = _ticks(node), time.perf_counter(), time.clock_gettime(clock)
        time.sleep(WINDOW_S)
        n1, t1, c1 = _ticks(node), time.perf_counter(), time.clock_gettime(clock)
        hub = node.web.hub.stats() if web else None  # type: ignore[attr-defined]  # clients on
        result = None
        if proc is not None:
            out, _ = proc.communicate(timeout=60)
            result = json.loads(out.strip().splitlines()[-1])
            result["hub"] = hub
        return {"wall": (n1 - n0) / (t1 - t0), "cpu": (n1 - n0) / max(c1 - c0, 1e-9)}, result
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        node.stop()  # type: ignore[attr-defined]


def main() -> None:
    import statistics

    from harness import report
    from mandi.web.security import TokenStore

    med = statistics.median
    with tempfile.TemporaryDirectory(prefix="mandi-bench-web-") as tmp:
        tokens = str(pathlib.Path(tmp, "tokens.json"))
        _, secret = TokenStore(tokens).create("read", "bench")
        runs: dict[str, list[dict[str, float]]] = {"base": [], "idle": [], "clients": []}
        fan: list[dict] = []
        for r in range(ROUNDS):  # interleaved, so a noisy neighbour hurts every variant alike
            runs["base"].append(run_once(tmp, tokens, secret, "base", False, 0)[0])
            m, res = run_once(tmp, tokens, secret, "clients", True, CLIENTS)
            assert res is not None
            runs["clients"].append(m)
            fan.append(res)
            runs["idle"].append(run_once(tmp, tokens, secret, "idle", True, 0)[0])
            print(
                f"  round {r + 1}: ticks/s (per engine-thread CPU s) baseline "
                f"{runs['base'][-1]['wall']:,.0f} ({runs['base'][-1]['cpu']:,.0f}), web idle "
                f"{runs['idle'][-1]['wall']:,.0f} ({runs['idle'][-1]['cpu']:,.0f}), {CLIENTS} "
                f"clients {m['wall']:,.0f} ({m['cpu']:,.0f}); "
                f"{res['messages'] / res['seconds']:,.0f} msgs/s; hub {res['hub']}",
                flush=True,
            )
        b = {k: med(x[k] for x in runs["base"]) for k in ("wall", "cpu")}
        i_ = {k: med(x[k] for x in runs["idle"]) for k in ("wall", "cpu")}
        c_ = {k: med(x[k] for x in runs["clients"]) for k in ("wall", "cpu")}
        w = WINDOW_S
        # wall-clock throughput: what a user sees, but other processes on the machine move it
        report("engine ticks/s, no web layer (baseline)", int(b["wall"] * w), w, "ticks")
        report(
            "engine ticks/s, web layer, no client",
            int(i_["wall"] * w),
            w,
            "ticks",
            "no web layer",
            w * i_["wall"] / b["wall"],
        )
        report(
            f"engine ticks/s, web layer, {CLIENTS} clients",
            int(c_["wall"] * w),
            w,
            "ticks",
            "no web layer",
            w * c_["wall"] / b["wall"],
        )
        # per CPU second of the engine's own thread (kernel + web share it): the web layer's
        # cost to ingestion, free of what other processes do to the wall clock
        report("engine ticks per engine-CPU-s, no web layer", int(b["cpu"] * w), w, "ticks")
        report(
            "engine ticks per engine-CPU-s, web, no client",
            int(i_["cpu"] * w),
            w,
            "ticks",
            "no web layer",
            w * i_["cpu"] / b["cpu"],
        )
        report(
            f"engine ticks per engine-CPU-s, web, {CLIENTS} clients",
            int(c_["cpu"] * w),
            w,
            "ticks",
            "no web layer",
            w * c_["cpu"] / b["cpu"],
            goal="≥ 0.95x (the dashboard slows ingestion ≤ 5 %)",
        )
        rates = sorted(x["messages"] / x["seconds"] for x in fan)
        best = max(fan, key=lambda x: x["messages"] / x["seconds"])
        report(
            f"WebSocket fan-out to {best['clients']} clients (median)",
            int(med(rates) * w),
            w,
            "msgs",
        )
        busy = med(x["hub"]["busy_ratio"] for x in fan)
        print(
            f"  the hub's own measured share of the engine loop: {100 * busy:.1f} % "
            f"(budget {100 * 0.03:.0f} %); median of {ROUNDS} rounds",
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
