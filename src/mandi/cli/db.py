"""``mandi db``: storage housekeeping."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from mandi.cli import ConfigOpt, DbOpt, app, fail, load
from mandi.core.errors import MandiError

db_app = typer.Typer(no_args_is_help=True, help="Storage housekeeping.")
app.add_typer(db_app, name="db")


@db_app.command("stats")
def db_stats(
    config: ConfigOpt = None,
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Row counts, file size and time range per table."""
    from mandi.core.calendar import ist_datetime
    from mandi.stores.sqlite import connect, table_stats

    cfg = load(config, {"store.db": db})
    try:
        con = connect(cfg.store.db)
        stats = table_stats(con, cfg.store.db)
    except MandiError as e:
        fail(e)
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
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Delete data older than ``--days`` days from every time-keyed table."""
    from mandi.stores.sqlite import checkpoint, cleanup, connect

    cfg = load(config, {"store.db": db})
    try:
        con = connect(cfg.store.db)
        deleted = cleanup(con, days, time.time_ns())
        checkpoint(con)
    except MandiError as e:
        fail(e)
    for table, n in deleted.items():
        typer.echo(f"{table}: deleted {n:,} rows older than {days} days")
