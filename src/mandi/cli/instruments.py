"""``mandi instruments search``: find the instruments ``mandi run`` trades — by name, underlying,
expiry, strike and type — e.g. the option to pass to ``mandi order``.

The ``instruments`` group is shared: a broker's commands (``mandi instruments sync kite``) may
register it first, and ``search`` joins whichever group exists.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mandi.cli import ConfigOpt, DbOpt, app, fail, load
from mandi.core.errors import MandiError


def _group(name: str, help_text: str) -> typer.Typer:
    for g in app.registered_groups:
        if g.name == name and g.typer_instance is not None:
            return g.typer_instance
    group = typer.Typer(no_args_is_help=True, help=help_text)
    app.add_typer(group, name=name)
    return group


instruments_app = _group("instruments", "The instrument master: search it (and sync a broker's).")


@instruments_app.command("search")
def instruments_search(
    words: Annotated[
        list[str] | None,
        typer.Argument(
            help="Words to match: a name or symbol piece, an underlying (NIFTY), CE/PE/FUT/EQ/"
            "INDEX, a strike in rupees, an expiry YYYY-MM-DD."
        ),
    ] = None,
    underlying: Annotated[str | None, typer.Option(help="Exactly this underlying.")] = None,
    expiry: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD, nearest (first open expiry) or next.")
    ] = None,
    strike: Annotated[float | None, typer.Option(help="Strike in rupees.")] = None,
    kind: Annotated[str | None, typer.Option("--type", help="CE, PE, FUT, EQ or INDEX.")] = None,
    exchange: Annotated[str | None, typer.Option(help="NSE or BSE.")] = None,
    date: Annotated[
        str | None, typer.Option(help="The simulated day (default: the database's, or today's).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many rows.")] = 50,
    symbols_only: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only the symbols, one per line.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Search the instruments of the simulated exchange (the day the database's simulation is
    on): ``mandi instruments search NIFTY CE 24200 --expiry nearest``."""
    import datetime as dt

    from mandi.cli.output import emit_json, table
    from mandi.services.instruments import as_row, search, sim_instruments

    cfg = load(config, {"store.db": db})
    try:
        day_wanted = dt.date.fromisoformat(date) if date else None
    except ValueError:
        fail(MandiError(f"--date {date!r}: use YYYY-MM-DD"))
    try:
        day, insts = sim_instruments(cfg, day_wanted)
        found = search(insts, words or [], underlying, expiry, strike, kind, exchange, today=day)
    except MandiError as e:
        fail(e)
    shown = found[:limit] if limit > 0 else found
    if as_json:
        emit_json([as_row(i) for i in shown])
        return
    if symbols_only:
        for i in shown:
            typer.echo(i.symbol)
        return
    rows = [as_row(i) for i in shown]
    table(
        f"instruments · sim {day} · {len(found)} found"
        + (f", first {len(shown)}" if len(shown) < len(found) else ""),
        ["symbol", "exchange", "type", "underlying", "expiry", "strike", "lot", "tick", "token"],
        [
            [
                r["symbol"],
                r["exchange"],
                r["type"],
                r["underlying"] or "",
                r["expiry"] or "",
                f"{r['strike']:g}" if r["strike"] else "",
                str(r["lot_size"]),
                f"{r['tick_size']:g}",
                str(r["token"]),
            ]
            for r in rows
        ],
        right=("strike", "lot", "tick", "token"),
    )
    if not found:
        raise typer.Exit(1)
