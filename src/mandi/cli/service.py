"""``mandi service NAME``, ``mandi up``, ``mandi down``, ``mandi ps``: the distributed mode."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from mandi.cli import ConfigOpt, DbOpt, app, fail, load
from mandi.core.errors import MandiError

RedisOpt = Annotated[
    str | None,
    typer.Option(
        "--redis",
        envvar="MANDI_REDIS_URL",
        help="Redis URL (redis://host:port/db); default $MANDI_REDIS_URL or [redis] url.",
    ),
]

NAMES = ("tickserver", "mdengine", "mdengine-sim", "indengine", "strategy", "gateway")


def _setup(cfg: Any) -> None:
    from mandi.logs import setup_logging

    setup_logging(cfg.log.level, cfg.log.json)


@app.command()
def service(
    name: Annotated[str, typer.Argument(help=" | ".join(NAMES))],
    config: ConfigOpt = None,
    redis: RedisOpt = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="Metrics/health port (default from [services]; 0 = any free)."),
    ] = None,
    feed: Annotated[
        str | None,
        typer.Option(
            help="mdengine: 'sim', a broker's feed (kite, angel, groww), 'nse' or a tickserver "
            "ws:// URL (mdengine-sim default: ws://127.0.0.1:9001)."
        ),
    ] = None,
    db: DbOpt = None,
    speed: Annotated[float | None, typer.Option(help="Simulated speed; inf = flat out.")] = None,
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    date: Annotated[str | None, typer.Option(help="Simulated trading date YYYY-MM-DD.")] = None,
    until: Annotated[
        str | None, typer.Option(help="mdengine: stop at this IST time HH:MM.")
    ] = None,
    days: Annotated[int | None, typer.Option(help="Simulated trading days (0 = no limit).")] = None,
    shard: Annotated[
        str,
        typer.Option(
            help="mdengine: feed shard K/N (the instruments of partitions p with p %% N == K); "
            "indengine shares its partitions with the other indengines by itself."
        ),
    ] = "0/1",
    consumer: Annotated[str | None, typer.Option(help="Consumer name in the group.")] = None,
    ws_port: Annotated[
        int | None,
        typer.Option(
            "--ws-port", help="tickserver: WebSocket port (default [services] tickserver_port)."
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="tickserver: open the market at the first subscription.")
    ] = True,
    client_queue: Annotated[
        int,
        typer.Option(
            help="tickserver: messages a slow client may fall behind before it is disconnected."
        ),
    ] = 1000,
    status_interval: Annotated[float | None, typer.Option(help="Status log line, seconds.")] = None,
    log_json: Annotated[bool, typer.Option("--log-json", help="JSON log lines.")] = False,
    log_level: Annotated[str | None, typer.Option(help="DEBUG | INFO | WARNING | ERROR.")] = None,
) -> None:
    """Run one service of the distributed mode, on Redis (see docs/distributed.md)."""
    if name not in NAMES:
        fail(MandiError(f"unknown service {name!r}; use one of {', '.join(NAMES)}"))
    if feed is None and name == "mdengine-sim":
        feed = "ws://127.0.0.1:9001"
    cfg = load(
        config,
        {
            "redis.url": redis,
            "run.feed": feed,
            "store.db": db,
            "run.speed": speed,
            "sim.seed": seed,
            "sim.date": date,
            "run.until": until,
            "run.days": days,
            "run.status_interval": status_interval,
            "run.dashboard": None if name == "gateway" else False,  # the gateway serves it
            "log.json": True if log_json else None,
            "log.level": log_level,
        },
    )
    _setup(cfg)
    from mandi.services.distributed import SERVICES

    if name in ("mdengine", "mdengine-sim", "strategy", "gateway"):
        from mandi.services.trading import prepare_config

        cfg = prepare_config(cfg)  # the candle timeframes the strategies follow, as mandi run

    metrics_port = int(getattr(cfg.services, SERVICES[name])) if port is None else port
    try:
        k, n = (int(x) for x in shard.split("/"))
        assert 0 <= k < n
    except (ValueError, AssertionError):
        fail(MandiError(f"--shard {shard!r}: expected K/N with 0 <= K < N"))
    if n > 1 and name == "indengine":
        from logging import getLogger

        getLogger("mandi.cli").warning(
            "indengine --shard is no longer needed: indengines share the partitions by "
            "themselves (redis.partitions); ignored"
        )
    try:
        if name == "tickserver":
            from mandi.services.distributed.mdengine import run_tickserver

            code = asyncio.run(
                run_tickserver(
                    cfg,
                    cfg.services.host,
                    ws_port or cfg.services.tickserver_port,
                    metrics_port,
                    wait_for_client=wait,
                    client_queue=client_queue,
                )
            )
        elif name in ("mdengine", "mdengine-sim"):
            from mandi.services.distributed.mdengine import run_mdengine

            code = asyncio.run(run_mdengine(cfg, name, metrics_port, (k, n)))
        elif name == "indengine":
            from mandi.services.distributed.indengine import run_indengine

            code = asyncio.run(run_indengine(cfg, metrics_port, consumer))
        elif name == "strategy":
            from mandi.services.distributed.node import run_strategy

            code = asyncio.run(run_strategy(cfg, metrics_port, consumer))
        else:
            from mandi.services.distributed.node import run_gateway

            code = asyncio.run(run_gateway(cfg, metrics_port))
    except MandiError as e:
        fail(e)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from mandi.cli.output import console

    t = Table(title="mandi deployment")
    for col in ("service", "pid", "port", "state", "ready"):
        t.add_column(col)
    for r in rows:
        state = r["state"]
        color = "green" if state.startswith("running") else "yellow" if r["alive"] else "red"
        t.add_row(
            r["service"],
            str(r["pid"]),
            str(r["port"]),
            f"[{color}]{state}[/]",
            "yes" if r.get("ready", r["service"].startswith("redis") and r["alive"]) else "no",
        )
    console().print(t)


@app.command()
def up(
    config: ConfigOpt = None,
    redis: Annotated[
        str | None,
        typer.Option("--redis", help="Use this Redis instead of starting a local redis-server."),
    ] = None,
    services: Annotated[
        str | None, typer.Option(help="Comma-separated services (default [services] start).")
    ] = None,
    state_dir: Annotated[str | None, typer.Option(help="PID files, logs, Redis data.")] = None,
    db: DbOpt = None,
    speed: Annotated[float | None, typer.Option(help="Simulated speed; inf = flat out.")] = None,
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    date: Annotated[str | None, typer.Option(help="Simulated trading date YYYY-MM-DD.")] = None,
    shards: Annotated[
        int,
        typer.Option(
            min=0,
            help="Start a local Redis Cluster of this many masters (real redis-server "
            "processes on loopback) instead of one redis-server.",
        ),
    ] = 0,
    replicas: Annotated[
        int, typer.Option(min=0, help="--shards: replicas per master (fail-over).")
    ] = 0,
    scale: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=N copies of a service: indengines share the partitions, "
            "mdengine(-sim) copies are feed shards (repeatable)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable state.")] = False,
) -> None:
    """Start a local deployment: redis-server (or a Redis Cluster with --shards; unless
    --redis) and every service, detached."""
    cfg = load(
        config,
        {
            "services.state_dir": state_dir,
            "store.db": db,
            "run.speed": speed,
            "sim.seed": seed,
            "sim.date": date,
        },
    )
    from mandi.services.distributed import supervisor

    names = services.split(",") if services else list(cfg.services.start)
    common: list[str] = []
    for flag, value in (("--db", db), ("--speed", speed), ("--seed", seed), ("--date", date)):
        if value is not None:
            common += [flag, str(value)]
    extra = {n: list(common) for n in names}
    copies: dict[str, int] = {}
    for item in scale or []:
        name, _, n = item.partition("=")
        if not n.isdigit():
            fail(MandiError(f"--scale {item!r}: expected NAME=N, e.g. indengine=2"))
        copies[name] = int(n)
    try:
        dep = supervisor.up(
            cfg, redis, names, config, extra, shards=shards, replicas=replicas, scale=copies
        )
    except MandiError as e:
        fail(e)
    rows = supervisor.status(cfg)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        if dep.cluster:
            typer.echo(f"Redis Cluster: {dep.redis_url}")
            for node in dep.cluster:
                of = f" of {cfg.services.host}:{node.replica_of}" if node.replica_of else ""
                typer.echo(f"  {cfg.services.host}:{node.port}  {node.role}{of}")
        _table(rows)


@app.command()
def down(
    config: ConfigOpt = None,
    state_dir: Annotated[str | None, typer.Option(help="The deployment's state directory.")] = None,
) -> None:
    """Stop the local deployment gracefully (services first, then its redis-server)."""
    cfg = load(config, {"services.state_dir": state_dir})
    from mandi.services.distributed import supervisor

    killed = supervisor.down(cfg)
    if killed:
        typer.echo(f"had to kill: {', '.join(killed)}", err=True)
    typer.echo("stopped")


@app.command()
def ps(
    config: ConfigOpt = None,
    state_dir: Annotated[str | None, typer.Option(help="The deployment's state directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """The state of each process of the local deployment."""
    cfg = load(config, {"services.state_dir": state_dir})
    from mandi.services.distributed import supervisor

    rows = supervisor.status(cfg)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo("no deployment (mandi up starts one)")
    else:
        _table(rows)
