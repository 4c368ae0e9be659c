"""Stored backtest runs: ``backtest_runs`` (one row per run, stats and a thinned equity curve as
JSON) and ``backtest_trades``. Reads for the API and the CLI are in :mod:`mandi.stores.queries`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from mandi.stores.sqlite import connect, rollback


def save_run(
    db: str | os.PathLike[str], run: Sequence[Any], trades: Sequence[Sequence[Any]]
) -> None:
    """Store one run (a ``backtest_runs`` row, its ``run_id`` first) and its trades
    (``backtest_trades`` rows), replacing a run stored before with the same id, in one
    transaction (creating or migrating the database)."""
    con = connect(str(db))
    try:
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM backtest_trades WHERE run_id=?", (run[0],))
            con.execute(
                f"INSERT OR REPLACE INTO backtest_runs VALUES ({','.join('?' * len(run))})",
                tuple(run),
            )
            if trades:
                con.executemany(
                    f"INSERT INTO backtest_trades VALUES ({','.join('?' * len(trades[0]))})",
                    [tuple(t) for t in trades],
                )
            con.execute("COMMIT")
        except BaseException:
            rollback(con)
            raise
    finally:
        con.close()
