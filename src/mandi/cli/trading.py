"""Trading commands against the database: ``mandi positions``, ``mandi orders``, ``mandi signals``,
``mandi halt`` / ``mandi resume`` (the persisted HALTED latch — the kill switch) and
``mandi order buy|sell SYMBOL --qty N [--limit PRICE] [--trigger PRICE]`` (a trigger makes it a
stop: SL-M, or SL with a limit).

A manual order is queued in ``order_requests`` for the running ``mandi run`` node, which puts it
through the same risk manager as strategy signals and writes the outcome back; this command waits
for it (``--wait`` seconds) and prints it. With no node running (no fresh heartbeat) it refuses:
an order needs live prices and the node's broker session.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any

import typer

from mandi.cli import ConfigOpt, DbOpt, app, fail, load
from mandi.core.errors import MandiError

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
LimitOpt = Annotated[int, typer.Option("--limit", "-n", help="How many rows.")]


def _when(ns: int | None) -> str:
    from mandi.core.calendar import ist_datetime

    return ist_datetime(int(ns)).strftime("%Y-%m-%d %H:%M:%S") if ns else "-"


def _inr(paise: Any) -> str:
    from mandi.core.money import format_inr

    return format_inr(int(paise)) if paise is not None else "-"


def _table(title: str, cols: list[str], rows: list[list[str]]) -> None:
    from mandi.cli.output import table

    table(title, cols, rows)


def _db(config: str | None, db: str | None) -> str:
    return str(load(config, {"store.db": db}).store.db)


@app.command()
def positions(
    config: ConfigOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
    all_: Annotated[bool, typer.Option("--all", help="Closed ones too.")] = False,
    limit: LimitOpt = 50,
) -> None:
    """Open positions (``--all``: closed too) with entry, mark, stop-loss, target and P&L."""
    from mandi.stores import queries

    path = _db(config, db)
    rows = queries.positions(path, "all" if all_ else "open", limit)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _table(
        f"positions · {path}",
        [
            "strategy",
            "symbol",
            "qty",
            "entry",
            "mark",
            "stop",
            "target",
            "unrealized",
            "realized",
            "status",
            "opened (IST)",
        ],
        [
            [
                r["strategy"],
                r["symbol"],
                str(r["quantity"] * r["direction"]),
                _inr(r["entry_premium"]),
                _inr(r["current_premium"]),
                _inr(r["stop_loss_premium"]),
                _inr(r["target_premium"]),
                _inr(r["unrealized_pnl"]),
                _inr(r["realized_pnl"]),
                r["status"] + (f" ({r['exit_reason']})" if r["exit_reason"] else ""),
                _when(r["entry_timestamp"]),
            ]
            for r in rows
        ],
    )
    day = queries.daily_performance(path, 1)
    if day:
        d = day[0]
        typer.echo(
            f"{d['date']}: net P&L {_inr(d['net_pnl'])} after charges "
            f"{_inr(d['charges'])}; {d['total_trades']} closed trades "
            f"({d['winning_trades']} won, {d['losing_trades']} lost); max drawdown "
            f"{_inr(d['max_drawdown'])}"
        )


@app.command()
def orders(
    config: ConfigOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = 50,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
) -> None:
    """Recent orders with their state, fills and charges."""
    from mandi.stores import queries

    path = _db(config, db)
    rows = queries.orders(path, status.upper() if status else None, limit)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _table(
        f"orders · {path}",
        [
            "time (IST)",
            "order id",
            "strategy",
            "intent",
            "side",
            "qty",
            "symbol",
            "type",
            "status",
            "filled",
            "avg",
            "charges",
        ],
        [
            [
                _when(r["timestamp"]),
                r["order_id"][:8],
                r["strategy_name"],
                r["intent"],
                r["side"],
                str(r["quantity"]),
                r["symbol"],
                r["order_type"] + (f" {_inr(r['price'])}" if r["price"] else ""),
                r["status"] + (f" ({r['reason']})" if r["reason"] else ""),
                str(r["filled_qty"]),
                _inr(r["filled_price"]) if r["filled_qty"] else "-",
                _inr(r["charges"]),
            ]
            for r in rows
        ],
    )


@app.command()
def signals(
    config: ConfigOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = 50,
    strategy: Annotated[str | None, typer.Option(help="Only this strategy.")] = None,
) -> None:
    """Recent trading signals and what became of them."""
    from mandi.stores import queries

    path = _db(config, db)
    rows = queries.signals(path, limit, strategy)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _table(
        f"signals · {path}",
        ["time (IST)", "strategy", "action", "symbol", "price", "confidence", "status", "reason"],
        [
            [
                _when(r["timestamp"]),
                r["strategy"],
                r["action"],
                r["symbol"],
                _inr(r["price"]),
                f"{r['confidence']:.2f}",
                r["status"],
                r["reason"][:60],
            ]
            for r in rows
        ],
    )


@app.command()
def halt(
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "manual kill switch",
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Set the HALTED latch: no new entries until `mandi resume` (exits stay possible). A running
    node picks it up within a second; it persists across restarts."""
    from mandi.stores.trading import set_latch

    path = _db(config, db)
    try:
        latch, changed = set_latch(path, True, reason, "cli")
    except MandiError as e:
        fail(e)
    typer.echo(("trading HALTED: " if changed else "already HALTED: ") + latch.reason)


@app.command()
def resume(
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "manual reset",
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Clear the HALTED latch (manual reset of the circuit breaker / kill switch)."""
    from mandi.stores import queries
    from mandi.stores.trading import set_latch

    cfg = load(config, {"store.db": db})
    try:
        _, changed = set_latch(cfg.store.db, False, reason, "cli")
    except MandiError as e:
        fail(e)
    typer.echo("trading resumed" if changed else "trading was not halted")
    day = queries.daily_performance(cfg.store.db, 1)
    limit = round(cfg.risk.max_daily_loss_inr * 100)
    if changed and day and day[0]["net_pnl"] <= -limit:
        typer.echo(
            f"warning: the realized loss of {day[0]['date']} ({_inr(day[0]['net_pnl'])}) "
            "is still beyond risk.max_daily_loss_inr; the circuit breaker will trip again "
            "that day",
            err=True,
        )


@app.command()
def order(
    side: Annotated[str, typer.Argument(help="buy or sell.")],
    symbol: Annotated[str, typer.Argument(help="Trading symbol, e.g. NIFTY26APR24200CE.")],
    qty: Annotated[int, typer.Option("--qty", help="Quantity in shares (a lot multiple).")],
    limit_price: Annotated[
        float | None, typer.Option("--limit", help="Limit price in rupees (default: market).")
    ] = None,
    trigger: Annotated[
        float | None,
        typer.Option(
            "--trigger",
            help="Stop trigger in rupees: an SL-M order (an SL with --limit); a SELL stop "
            "against an open long rests as its stop-loss.",
        ),
    ] = None,
    exchange: Annotated[str | None, typer.Option(help="NSE or BSE, if ambiguous.")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the node's answer.")] = 10.0,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Place a manual order through the running node's risk manager: a market order, or with
    ``--limit`` a limit order whose price must be a multiple of the instrument's tick (never
    rounded; the node refuses it naming the nearest valid prices)."""
    from mandi.core.money import LimitPriceError, limit_price_paise
    from mandi.stores import queries
    from mandi.stores.trading import add_order_request, read_heartbeat

    side_u = side.upper()
    if side_u not in ("BUY", "SELL"):
        fail(MandiError(f"side must be buy or sell, got {side!r}"))
    if qty <= 0:
        fail(MandiError(f"--qty must be positive, got {qty}"))
    try:  # whole paise here; the node checks the instrument's tick
        price = limit_price_paise(limit_price, 1) if limit_price is not None else 0
    except LimitPriceError as e:
        near = " or ".join(f"{p / 100:.2f}" for p in e.nearest)
        fail(
            MandiError(
                "--limit: a limit price must be a positive number of rupees in whole paise"
                + (f" (nearest: {near})" if near else "")
                + "; omit --limit for a market order"
            )
        )
    trigger_paise = 0
    if trigger is not None:
        try:
            trigger_paise = limit_price_paise(trigger, 1)
        except LimitPriceError:
            fail(MandiError("--trigger: a positive number of rupees in whole paise"))
    cfg = load(config, {"store.db": db})
    path = cfg.store.db
    beat = read_heartbeat(path)
    stale_ns = 5_000_000_000
    if beat is None or time.time_ns() - int(beat.get("wall_ns", 0)) > stale_ns:
        fail(
            MandiError(
                f"no running mandi node on {path} (no heartbeat in the last 5 s); start "
                "`mandi run` first — orders are placed by the node's broker session"
            )
        )
    request_id = str(uuid.uuid4())
    try:
        add_order_request(
            path, request_id, symbol, side_u, qty, price, exchange or "", trigger_paise
        )
    except MandiError as e:
        fail(e)
    deadline = time.monotonic() + wait
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        row = queries.order_request(path, request_id) or {}
        if row.get("status") not in (None, "PENDING"):
            break
        time.sleep(0.1)
    status = row.get("status", "PENDING")
    if status == "PENDING":
        typer.echo(
            f"request {request_id} queued; the node has not answered within {wait:g} s "
            "(it expires unexecuted after trading.request_ttl_s)"
        )
        raise typer.Exit(1)
    ids = json.loads(row.get("order_ids") or "[]")
    if status == "ACCEPTED":
        typer.echo(
            f"order accepted ({mode_of(beat)} mode): {side_u} {qty} {symbol}"
            + (f" limit {limit_price:g}" if limit_price else " at market")
            + (f"; order ids {', '.join(i[:8] for i in ids)}" if ids else "")
            + (f" — {row['result']}" if row.get("result") else "")
        )
        return
    if status == "LOGGED":
        typer.echo(f"logged only (logging mode): {row.get('result', '')}")
        return
    typer.echo(
        f"order {status.lower()}: {row.get('result', '')}"
        + (f" [{row['rule']}]" if row.get("rule") else ""),
        err=True,
    )
    raise typer.Exit(3)


def mode_of(beat: dict[str, Any] | None) -> str:
    return str((beat or {}).get("mode", "?"))
