"""``mandi backtest``: a strategy over CSV/Parquet files or a ``mandi.db`` store, with statistics,
JSON, an HTML report, a PNG equity curve and a parameter sweep; ``mandi backtest replay`` of a
recorded ``mandi run`` session is :func:`mandi.services.backtest.replay`."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from mandi.cli import ConfigOpt, app, fail, load
from mandi.core.errors import MandiError

EPILOG = (
    "Examples:\n\n"
    "  mandi backtest --data nifty_3min.csv --strategy sma_cross --param fast=10 "
    "--param slow=30 --qty 25 --report out.html\n\n"
    "  mandi backtest --data orcl.txt --strategy sma_cross --param fast=5..30:5 "
    "--param slow=40..100:20 --qty 10 --charges none\n\n"
    "  mandi backtest --data mandi.db --strategy ema_cross --symbol RELIANCE --timeframe 300\n\n"
    "  mandi backtest --data mandi.db --strategy short_straddle --param entry=09:20 "
    "--param exit=15:10 --param stop_loss_pct=30"
)


@app.command(epilog=EPILOG)
def backtest(
    data: Annotated[
        list[str],
        typer.Option(
            "--data",
            "-d",
            help="CSV (datetime,open,high,low,close,volume or Yahoo), Parquet, or a mandi.db "
            "store; repeat for several instruments.",
        ),
    ],
    strategy: Annotated[
        str, typer.Option("--strategy", "-s", help="Built-in name or module:Class.")
    ] = "sma_cross",
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Strategy parameter k=v; a range k=a..b:step or list k=a,b,c sweeps it.",
        ),
    ] = None,
    symbol: Annotated[
        list[str] | None,
        typer.Option("--symbol", help="Instrument(s) to trade (default: all loaded)."),
    ] = None,
    chains: Annotated[
        list[str] | None,
        typer.Option(
            "--chains",
            help="Option-chain snapshots for chain strategies: NSE/BSE chain files or a mandi.db.",
        ),
    ] = None,
    timeframe: Annotated[
        int | None, typer.Option(help="Strategy bar length in seconds (resamples the data).")
    ] = None,
    date_from: Annotated[
        str | None,
        typer.Option("--from", help="First trading date YYYY-MM-DD (earlier = warm-up)."),
    ] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last date YYYY-MM-DD.")] = None,
    cash: Annotated[float | None, typer.Option(help="Starting capital in rupees.")] = None,
    qty: Annotated[
        int | None, typer.Option("--qty", help="Fixed quantity per entry (0 = risk sizing).")
    ] = None,
    commission: Annotated[
        float | None, typer.Option(help="Brokerage in rupees per executed order (flat).")
    ] = None,
    charges: Annotated[
        str | None, typer.Option(help="india (statutory STT, exchange, SEBI, stamp, GST) | none.")
    ] = None,
    slippage: Annotated[int | None, typer.Option(help="Slippage in ticks per fill.")] = None,
    fill: Annotated[
        str | None,
        typer.Option(help="open = next bar's open (default) | close = this bar's close."),
    ] = None,
    short: Annotated[bool, typer.Option("--short", help="Allow short positions.")] = False,
    stop_loss: Annotated[float | None, typer.Option(help="Stop-loss % of the entry.")] = None,
    target: Annotated[float | None, typer.Option(help="Target % of the entry.")] = None,
    engine: Annotated[
        str, typer.Option(help="event | vector | auto (vector where it gives the same trades).")
    ] = "auto",
    json_out: Annotated[str | None, typer.Option("--json", help="Write results as JSON.")] = None,
    report: Annotated[str | None, typer.Option(help="Write an HTML report.")] = None,
    png: Annotated[str | None, typer.Option(help="Write a PNG equity curve.")] = None,
    save: Annotated[
        str | None, typer.Option("--save", help="Store the run in this mandi.db (dashboard).")
    ] = None,
    processes: Annotated[int | None, typer.Option(help="Sweep worker processes.")] = None,
    sort: Annotated[str, typer.Option(help="Sweep ranking statistic.")] = "sharpe",
    config: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Backtest a strategy on history with the live kernel's risk rules, fills and charges."""
    from mandi.services.backtest.sweep import parse_params

    cfg = load(config, {})
    risk = trading = None
    if config:  # a config file: its [risk] and [trading] exactly as mandi run uses them
        risk, trading = cfg.risk, cfg.trading
    try:
        fixed, swept = parse_params(param or [])
    except MandiError as e:
        fail(e)
    kwargs: dict[str, Any] = {
        "symbols": symbol or None,
        "timeframe": timeframe,
        "start": date_from,
        "end": date_to,
        "cash": cash,
        "quantity": qty,
        "commission": commission,
        "charges": charges,
        "slippage_ticks": slippage,
        "fill": fill,
        "allow_short": True if short else None,
        "stop_loss_pct": stop_loss,
        "target_pct": target,
        "risk": risk,
        "trading": trading,
        "chains": chains or None,
        "config": cfg.backtest,  # [backtest] of the config file; the flags above override it
    }
    from rich.console import Console

    console = Console(stderr=True)
    try:
        if swept:
            _sweep(data, strategy, param or [], kwargs, engine, processes, sort, json_out, quiet)
            return
        from mandi.services.backtest.api import run

        t0 = time.perf_counter()
        res = run(data if len(data) > 1 else data[0], strategy, fixed, engine=engine, **kwargs)
        took = time.perf_counter() - t0
        _print_stats(res, took, console)
        if json_out:
            from mandi.services.backtest.report import write_json

            write_json(res, json_out)
        if report:
            from mandi.services.backtest.report import write_html

            write_html(res, report)
        if png:
            from mandi.services.backtest.report import write_png

            write_png(res, png)
        if save:
            from mandi.services.backtest.report import save_to_store

            rid = save_to_store(res, save)
            console.print(f"saved as run {rid} in {save}")
    except MandiError as e:
        fail(e)
    except OSError as e:
        fail(e)


def _print_stats(res: Any, took: float, console: Any) -> None:
    from rich.table import Table

    s = res.stats
    t = Table(title=f"{s.get('strategy')} {s.get('params')} on {', '.join(s.get('symbols', []))}")
    t.add_column("statistic")
    t.add_column("value", justify="right")

    def pct(x: Any) -> str:
        return "–" if x is None else f"{x * 100:.2f} %"

    def num(x: Any, d: int = 2) -> str:
        return "–" if x is None else f"{x:,.{d}f}"

    for name, val in (
        ("period", f"{s.get('start', '')[:10]} → {s.get('end', '')[:10]}"),
        ("bars", f"{s['bars']:,}"),
        ("initial value ₹", num(s["initial_value"])),
        ("final value ₹", num(s["final_value"])),
        ("total return", pct(s["total_return"])),
        ("annualized return", pct(s["annualized_return"])),
        ("Sharpe", num(s["sharpe"])),
        ("Sortino", num(s["sortino"])),
        ("max drawdown", pct(s["max_drawdown"])),
        ("max drawdown duration (days)", num(s["max_drawdown_duration_days"], 1)),
        ("trades", str(s["trades"])),
        ("win rate", pct(s["win_rate"])),
        ("profit factor", num(s["profit_factor"])),
        ("expectancy ₹", num(s["expectancy"])),
        ("exposure", pct(s["exposure"])),
        ("charges ₹", num(s["charges"])),
        ("open positions", str(s["open_positions"])),
        ("risk denials", json.dumps(s.get("risk_denials", {})) or "{}"),
        ("engine", f"{s.get('engine')} ({took:.2f} s)"),
    ):
        t.add_row(name, val)
    from mandi.cli.output import console as stdout

    stdout().print(t)
    if res.structures:
        _print_structures(res, stdout())


def _print_structures(res: Any, console: Any) -> None:
    """Option-leg runs: one row per structure, then one per leg."""
    from rich.table import Table

    t = Table(title="structures (net premium > 0 = credit)")
    for col in ("structure", "entry", "exit", "legs", "premium ₹", "P&L ₹", "stopped"):
        t.add_column(col, justify="left" if col == "structure" else "right", no_wrap=True)
    for s in res.structures[:50]:
        t.add_row(
            s["structure"].split(":", 1)[-1],
            s["entry_time"][11:19],
            s["exit_time"][11:19],
            str(len(s["legs"])),
            f"{s['net_premium']:,.2f}",
            f"{s['pnl']:,.2f}",
            str(s["stopped_legs"]),
        )
    console.print(t)
    legs = Table(title="legs (P&L net of charges)")
    for col in ("symbol", "side", "qty", "entry ₹", "exit ₹", "P&L ₹", "exit"):
        legs.add_column(col, justify="left" if col in ("symbol", "exit") else "right")
    legs.columns[0].no_wrap = True
    for tr in res.trades[:100]:
        legs.add_row(
            tr.symbol,
            tr.side,
            str(tr.quantity),
            f"{tr.entry_price / 100:,.2f}",
            f"{tr.exit_price / 100:,.2f}",
            f"{tr.pnl / 100:,.2f}",
            tr.exit_reason.replace("_", " ").lower(),
        )
    console.print(legs)


def _sweep(
    data: list[str],
    strategy: str,
    params: list[str],
    kwargs: dict[str, Any],
    engine: str,
    processes: int | None,
    sort: str,
    json_out: str | None,
    quiet: bool,
) -> None:
    from rich.table import Table

    from mandi.cli.output import console
    from mandi.services.backtest.sweep import sweep

    rows = sweep(
        data if len(data) > 1 else data[0],
        strategy,
        params,
        processes=processes,
        progress=not quiet,
        sort_by=sort,
        engine=engine,
        **kwargs,
    )
    ok = [r for r in rows if "error" not in r]
    bad = [r for r in rows if "error" in r]
    t = Table(title=f"{strategy} sweep: {len(ok)} runs, best {sort} first")
    names = list(ok[0]["params"]) if ok else []
    for n in names:
        t.add_column(n, justify="right")
    for col in ("final ₹", "return", "Sharpe", "max DD", "trades", "win rate"):
        t.add_column(col, justify="right")

    def pct(x: Any) -> str:
        return "–" if x is None else f"{x * 100:.2f}%"

    for r in ok[:25]:
        t.add_row(
            *(str(r["params"][n]) for n in names),
            f"{r['final_value']:,.0f}",
            pct(r["total_return"]),
            "–" if r["sharpe"] is None else f"{r['sharpe']:.2f}",
            pct(r["max_drawdown"]),
            str(r["trades"]),
            pct(r["win_rate"]),
        )
    console().print(t)
    if bad:
        console(stderr=True).print(
            f"{len(bad)} combination(s) refused, e.g. {bad[0]['params']}: {bad[0]['error']}"
        )
    if json_out:
        with open(json_out, "w", encoding="utf-8") as f:
            json.dump({"sweep": rows}, f, indent=1)
