"""Parameter sweeps (I/O shell): a grid of strategy parameters run in parallel across cores.

``--param fast=5..30:5 --param slow=20..60:10`` is the grid fast ∈ {5, 10, …, 30} × slow ∈
{20, 30, …, 60}; ``k=a,b,c`` lists values, ``k=v`` fixes one. Ranges include their end. Each
combination is one backtest — on the vectorized path where it applies (``engine="auto"``), else
the event-driven kernel — in a pool of worker processes that inherit the loaded data (fork), with
a progress bar. Combinations the strategy refuses (e.g. ``fast >= slow``) are reported, not run.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mandi.backtest.bars import BacktestError
from mandi.core.errors import MandiError

_RANGE = re.compile(r"^\s*(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*(?::\s*(-?[\d.]+))?\s*$")


def _number(text: str) -> int | float | str | bool:
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def parse_param(text: str) -> tuple[str, list[Any]]:
    """``"fast=5..30:5"`` → ``("fast", [5, 10, 15, 20, 25, 30])``; ``"k=1,2"`` → ``[1, 2]``."""
    if "=" not in text:
        raise BacktestError(f"--param {text!r}: expected NAME=VALUE, NAME=A..B:STEP or NAME=A,B,C")
    name, _, value = text.partition("=")
    name = name.strip()
    if not name:
        raise BacktestError(f"--param {text!r}: the parameter name is empty")
    m = _RANGE.match(value)
    if m:
        lo, hi, step = (_number(x) if x is not None else None for x in m.groups())
        if step is None:
            step = 1
        if not all(isinstance(x, int | float) for x in (lo, hi, step)):
            raise BacktestError(f"--param {text!r}: a range needs numbers")
        if step <= 0:  # type: ignore[operator]
            raise BacktestError(f"--param {text!r}: the step must be positive")
        if hi < lo:  # type: ignore[operator]
            raise BacktestError(f"--param {text!r}: the range is empty ({lo} > {hi})")
        vals: list[Any] = []
        k = 0
        while True:
            v = lo + k * step  # type: ignore[operator]
            if v > hi + 1e-12 * max(1.0, abs(hi)):  # type: ignore[operator,arg-type]
                break
            vals.append(round(v, 10) if isinstance(v, float) else v)
            k += 1
            if k > 100_000:
                raise BacktestError(f"--param {text!r}: more than 100,000 values")
        return name, vals
    if "," in value:
        return name, [_number(x) for x in value.split(",") if x.strip()]
    return name, [_number(value)]


def parse_params(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(fixed parameters, swept parameters) from ``--param`` items."""
    fixed: dict[str, Any] = {}
    swept: dict[str, list[Any]] = {}
    for it in items:
        name, vals = parse_param(it)
        if name in fixed or name in swept:
            raise BacktestError(f"--param {name} is given twice")
        if len(vals) == 1:
            fixed[name] = vals[0]
        else:
            swept[name] = vals
    return fixed, swept


def grid(fixed: Mapping[str, Any], swept: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    names = list(swept)
    return [
        {**fixed, **dict(zip(names, combo, strict=True))}
        for combo in itertools.product(*(swept[n] for n in names))
    ]


# the data and settings of the running sweep, inherited by forked workers
_JOB: dict[str, Any] = {}


def _one(params: dict[str, Any]) -> dict[str, Any]:
    from mandi.services.backtest.api import run

    job = _JOB
    try:
        res = run(job["series"], job["strategy"], params, **job["kwargs"])
    except MandiError as e:
        return {"params": params, "error": str(e)}
    keep = (
        "final_value",
        "total_return",
        "annualized_return",
        "sharpe",
        "sortino",
        "max_drawdown",
        "win_rate",
        "profit_factor",
        "expectancy",
        "exposure",
        "trades",
        "engine",
    )
    return {"params": params, **{k: res.stats.get(k) for k in keep}}


def sweep(
    data: Any,
    strategy: str,
    params: Sequence[str] | Mapping[str, Sequence[Any]],
    *,
    processes: int | None = None,
    progress: bool = True,
    sort_by: str = "sharpe",
    engine: str = "auto",
    on_result: Callable[[dict[str, Any]], None] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Run every combination of ``params`` (``--param`` strings, or a mapping of name → values)
    and return one row per combination (its parameters and headline statistics, or its
    ``error``), best ``sort_by`` first."""
    from mandi.services.backtest.api import load_data

    if isinstance(params, Mapping):
        fixed = {k: v[0] for k, v in params.items() if len(v) == 1}
        swept = {k: list(v) for k, v in params.items() if len(v) > 1}
    else:
        fixed, swept = parse_params(params)
    combos = grid(fixed, swept)
    if not combos:
        raise BacktestError("the parameter grid is empty")
    series = load_data(
        data,
        symbol=kwargs.pop("symbol", None),
        lot_size=kwargs.pop("lot_size", 1),
        tick_size=kwargs.pop("tick_size", 5),
    )
    _JOB.update(series=series, strategy=strategy, kwargs={**kwargs, "engine": engine})
    n = processes or os.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    try:
        if n <= 1 or len(combos) == 1:
            it: Any = map(_one, combos)
            pool = None
        else:
            pool = mp.get_context("fork").Pool(min(n, len(combos)))
            it = pool.imap_unordered(_one, combos)
        if progress:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            with Progress(
                TextColumn("[bold]sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            ) as bar:
                task = bar.add_task("sweep", total=len(combos))
                for row in it:
                    rows.append(row)
                    if on_result:
                        on_result(row)
                    bar.advance(task)
        else:
            for row in it:
                rows.append(row)
                if on_result:
                    on_result(row)
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        _JOB.clear()

    def key(r: dict[str, Any]) -> tuple[int, float, str]:
        v = r.get(sort_by)
        return (0 if isinstance(v, int | float) else 1, -(v or 0.0), repr(r["params"]))

    rows.sort(key=key)
    return rows
