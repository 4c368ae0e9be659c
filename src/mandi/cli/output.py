"""Terminal output of the CLI: tables that are as wide as their content when piped (rich would
cut them at 80 columns), and JSON for machines (``--json`` on every list command)."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer


def console(stderr: bool = False) -> Any:
    """A rich console: the terminal's width on a terminal, unlimited when piped or redirected
    (``mandi orders | less -S``, ``> file``)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(stderr=stderr, width=None if tty else 10_000, soft_wrap=not tty)


def table(
    title: str, columns: list[str], rows: list[list[str]], right: tuple[str, ...] = ()
) -> None:
    """Print a table (``right``: the columns aligned right, numbers)."""
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left")
    for r in rows:
        t.add_row(*r)
    console().print(t)


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))
