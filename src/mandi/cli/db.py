"""``mandi db``: storage housekeeping."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

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
    from rich.table import Table

    from mandi.cli.output import console

    def when(ns: int | None) -> str:
        return ist_datetime(ns).strftime("%Y-%m-%d %H:%M:%S") if ns else "-"

    t = Table(
        title=f"{stats['path']} · {stats['file_size_bytes'] / 1e6:,.1f} MB",
        caption="clock: exchange = market time (simulated with the sim feed); "
        "wall = this machine's time",
    )
    for col in ("table", "rows", "first (IST)", "last (IST)", "clock"):
        t.add_column(col, justify="right" if col == "rows" else "left")
    for name, row in stats["tables"].items():
        t.add_row(
            name,
            f"{row['rows']:,}",
            when(row.get("first_ns")),
            when(row.get("last_ns")),
            row.get("clock", ""),
        )
    console().print(t)


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


@db_app.command("backup")
def db_backup(
    directory: Annotated[
        str | None, typer.Option("--dir", help="Where (backup.dir; default backups/ beside it).")
    ] = None,
    keep: Annotated[int | None, typer.Option(help="Keep the newest N backups (0 = all).")] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Copy the database now, consistently even while `mandi run` writes it (SQLite's online
    backup API), and keep the newest ``backup.keep`` copies."""
    from mandi.stores.backup import backup

    cfg = load(config, {"store.db": db, "backup.dir": directory, "backup.keep": keep})
    try:
        info = backup(cfg.store.db, cfg.backup.dir, cfg.backup.keep)
    except MandiError as e:
        fail(e)
    typer.echo(
        f"{info.path}  {info.size_bytes / 1e6:,.1f} MB in {info.seconds:.1f} s (integrity ok)"
        + (f"; removed {len(info.deleted)} older" if info.deleted else "")
    )


@db_app.command("backups")
def db_backups(
    directory: Annotated[str | None, typer.Option("--dir", help="Where the backups are.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """List the backups of the database, newest first."""
    from mandi.cli.output import emit_json, table
    from mandi.stores.backup import list_backups

    cfg = load(config, {"store.db": db, "backup.dir": directory})
    rows: list[dict[str, Any]] = [
        {"path": b.path, "size_bytes": b.size_bytes, "created": b.created.isoformat()}
        for b in list_backups(cfg.store.db, cfg.backup.dir)
    ]
    if as_json:
        emit_json(rows)
        return
    table(
        f"backups of {cfg.store.db}",
        ["created (UTC)", "size", "path"],
        [[r["created"][:19], f"{r['size_bytes'] / 1e6:,.1f} MB", r["path"]] for r in rows],
        right=("size",),
    )


@db_app.command("restore")
def db_restore(
    backup_file: Annotated[str, typer.Argument(help="A file from `mandi db backups`.")],
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Replace the database by a backup (refused while a node is running on it)."""
    from mandi.stores.backup import restore
    from mandi.stores.trading import read_heartbeat

    cfg = load(config, {"store.db": db})
    try:
        import os

        beat = read_heartbeat(cfg.store.db) if os.path.exists(cfg.store.db) else None
        if beat is not None and time.time_ns() - int(beat.get("wall_ns", 0)) < 10_000_000_000:
            fail(MandiError(f"a mandi node is running on {cfg.store.db}: stop it first"))
        restore(backup_file, cfg.store.db)
    except MandiError as e:
        fail(e)
    typer.echo(f"restored {cfg.store.db} from {backup_file}")
