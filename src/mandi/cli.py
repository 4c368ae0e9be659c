"""The ``mandi`` command line (``python -m mandi`` works too)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time
from typing import Annotated, Any

import typer

from mandi.core.errors import MandiError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="mandi: event-driven trading and options analytics for NSE and BSE.")
db_app = typer.Typer(no_args_is_help=True, help="Storage housekeeping.")
app.add_typer(db_app, name="db")

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="mandi.toml to read.")]
DbOpt = Annotated[str | None, typer.Option("--db", help="SQLite database file.")]


def _fail(e: Exception) -> None:
    typer.echo(f"mandi: {e}", err=True)
    raise typer.Exit(2)


def _load(config: str | None, overrides: dict[str, Any]) -> Any:
    from mandi.config import load_config

    try:
        return load_config(config, overrides=overrides)
    except MandiError as e:
        _fail(e)


@app.command()
def run(
    config: ConfigOpt = None,
    feed: Annotated[str | None, typer.Option(help="'sim' or a tickserver ws:// URL.")] = None,
    mode: Annotated[str | None, typer.Option(help="logging | paper | live.")] = None,
    speed: Annotated[float | None, typer.Option(help="Simulated speed; inf = flat out.")] = None,
    duration: Annotated[float | None, typer.Option(help="Wall seconds to run (0 = no limit).")]
    = None,
    until: Annotated[str | None, typer.Option(help="Stop at this IST exchange time HH:MM.")]
    = None,
    days: Annotated[int | None, typer.Option(help="Simulated trading days (0 = no limit).")]
    = None,
    db: DbOpt = None,
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    date: Annotated[str | None, typer.Option(help="Simulated trading date YYYY-MM-DD.")] = None,
    resume: Annotated[bool | None, typer.Option(help="Continue what the database holds.")]
    = None,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Do not serve the web "
                                               "dashboard.")] = False,
    port: Annotated[int | None, typer.Option(help="Dashboard/API port.")] = None,
    status_interval: Annotated[float | None, typer.Option(help="Status refresh, seconds.")]
    = None,
    log_json: Annotated[bool, typer.Option("--log-json", help="JSON log lines.")] = False,
    log_level: Annotated[str | None, typer.Option(help="DEBUG | INFO | WARNING | ERROR.")]
    = None,
) -> None:
    """Run the whole platform in one process: feed → candles → SQLite (+ status)."""
    cfg = _load(config, {
        "run.feed": feed, "run.mode": mode, "run.speed": speed, "run.duration": duration,
        "run.until": until, "run.days": days, "store.db": db, "sim.seed": seed,
        "sim.date": date, "run.resume": resume, "run.dashboard": False if no_dashboard else None,
        "run.port": port, "run.status_interval": status_interval,
        "log.json": True if log_json else None, "log.level": log_level,
    })
    from mandi.logs import setup_logging
    from mandi.services.node import MarketNode

    setup_logging(cfg.log.level, cfg.log.json)
    try:
        node = MarketNode(cfg)
        code = asyncio.run(node.run())
    except MandiError as e:
        _fail(e)
    raise typer.Exit(code)


@app.command()
def tickserver(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 9001,
    speed: Annotated[float | None, typer.Option(help="Simulated speed; inf = flat out.")] = None,
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    date: Annotated[str | None, typer.Option(help="Simulated trading date YYYY-MM-DD.")] = None,
    days: Annotated[int | None, typer.Option(help="Simulated trading days (0 = no limit).")]
    = None,
) -> None:
    """Serve the simulated exchange over WebSocket (JSON; see docs/tickserver.md)."""
    cfg = _load(config, {"run.speed": speed, "sim.seed": seed, "sim.date": date,
                         "run.days": days})
    from mandi.feeds.tickserver import serve
    from mandi.logs import setup_logging

    setup_logging(cfg.log.level, cfg.log.json)
    try:
        asyncio.run(serve(cfg, host, port))
    except MandiError as e:
        _fail(e)
    except KeyboardInterrupt:
        pass


@db_app.command("stats")
def db_stats(config: ConfigOpt = None, db: DbOpt = None,
             as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False
             ) -> None:
    """Row counts, file size and time range per table."""
    from mandi.core.calendar import ist_datetime
    from mandi.stores.sqlite import connect, table_stats

    cfg = _load(config, {"store.db": db})
    try:
        con = connect(cfg.store.db)
        stats = table_stats(con, cfg.store.db)
    except MandiError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    def when(ns: int | None) -> str:
        return ist_datetime(ns).strftime("%Y-%m-%d %H:%M:%S") if ns else "-"

    t = Table(title=f"{stats['path']} · {stats['file_size_bytes'] / 1e6:,.1f} MB")
    for col in ("table", "rows", "first (IST)", "last (IST)"):
        t.add_column(col, justify="right" if col == "rows" else "left")
    for name, row in stats["tables"].items():
        t.add_row(name, f"{row['rows']:,}", when(row.get("first_ns")), when(row.get("last_ns")))
    Console().print(t)


@db_app.command("cleanup")
def db_cleanup(
    days: Annotated[int, typer.Option(help="Keep this many days of data.")],
    config: ConfigOpt = None, db: DbOpt = None,
) -> None:
    """Delete data older than ``--days`` days from every time-keyed table."""
    from mandi.stores.sqlite import cleanup, connect

    cfg = _load(config, {"store.db": db})
    try:
        con = connect(cfg.store.db)
        deleted = cleanup(con, days, time.time_ns())
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except MandiError as e:
        _fail(e)
    for table, n in deleted.items():
        typer.echo(f"{table}: deleted {n:,} rows older than {days} days")


def main() -> None:
    try:
        app()
    except MandiError as e:  # pragma: no cover - safety net
        typer.echo(f"mandi: {e}", err=True)
        sys.exit(2)


_ = dt  # dates are parsed by the config layer
