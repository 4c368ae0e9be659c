"""``mandi basket``: multi-leg option baskets.

* ``mandi basket templates`` — the structures a basket can be built from;
* ``mandi basket show NIFTY iron_condor [--offset 4 --width 2 --lots 1]`` (or legs by hand with
  ``--leg SELL:NIFTY2641424200CE:1``) — the legs, payoff numbers (max profit/loss, breakevens,
  probability of profit), net Greeks and the margin estimate with the hedge benefit, at the
  newest chain stored in the database;
* ``mandi basket place …`` — the same basket sent through the running node's risk manager.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Annotated, Any

import typer

from mandi.cli import ConfigOpt, DbOpt, app, fail, load
from mandi.core.errors import MandiError

basket_app = typer.Typer(no_args_is_help=True, help="Multi-leg option baskets.")
app.add_typer(basket_app, name="basket")

# the options `show` and `place` share: what the basket is made of
UnderlyingArg = Annotated[str, typer.Argument(help="e.g. NIFTY")]
TemplateArg = Annotated[str | None, typer.Argument(help="A template (or use --leg).")]
LegOpt = Annotated[
    list[str] | None,
    typer.Option("--leg", help="SIDE:SYMBOL:LOTS[:PRICE], repeat for each leg (by hand)."),
]
ExpiryOpt = Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: nearest).")]
LotsOpt = Annotated[int, typer.Option(min=1)]
SideOpt = Annotated[str | None, typer.Option(help="BUY (long form) or SELL (short form).")]
OffsetOpt = Annotated[int | None, typer.Option(min=0, help="Strikes from ATM.")]
WidthOpt = Annotated[int | None, typer.Option(min=0, help="Strikes between legs.")]
StrikeOpt = Annotated[float | None, typer.Option(help="Anchor strike (default: ATM).")]
OptionTypeOpt = Annotated[str, typer.Option("--option-type", help="CE or PE.")]


@basket_app.command("templates")
def templates(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The templates a basket can be built from."""
    from mandi.options.structures import TEMPLATES

    rows = [
        {
            "name": t.name,
            "legs": len(t.legs),
            "form": "short" if t.default_side.value == "SELL" else "long",
            "offset": t.offset,
            "width": t.width,
            "description": t.description,
        }
        for t in TEMPLATES.values()
    ]
    if json_out:
        typer.echo(json.dumps(rows, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="basket templates (offset/width in strikes)")
    for col in ("name", "legs", "form", "offset", "width", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(*(str(r[c]) for c in ("name", "legs", "form", "offset", "width", "description")))
    Console().print(t)


def parse_legs(specs: list[str]) -> list[dict[str, Any]]:
    """``SIDE:SYMBOL:LOTS[:PRICE]`` → leg dicts; an error names the spec."""
    out = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in (3, 4) or parts[0].upper() not in ("BUY", "SELL"):
            raise typer.BadParameter(f"--leg {spec!r}: expected SIDE:SYMBOL:LOTS[:PRICE]")
        try:
            lots = int(parts[2])
            price = float(parts[3]) if len(parts) == 4 else None
        except ValueError:
            raise typer.BadParameter(f"--leg {spec!r}: lots and price are numbers") from None
        if lots < 1 or (price is not None and not price > 0):
            raise typer.BadParameter(f"--leg {spec!r}: lots ≥ 1 and a positive price")
        out.append({"side": parts[0].upper(), "symbol": parts[1], "lots": lots, "price": price})
    return out


def _basket(market: Any, underlying: str, template: str | None, legs: list[str], **kw: Any) -> Any:
    from mandi.core.money import to_paise
    from mandi.model.baskets import Basket, BasketLeg
    from mandi.model.orders import Side
    from mandi.options.structures import build

    if legs:
        out = []
        for leg in parse_legs(legs):
            inst_lot = 1
            with contextlib.suppress(MandiError):  # resolve() names an unknown contract
                inst_lot = market.master.by_symbol(leg["symbol"]).lot_size
            out.append(
                BasketLeg(
                    leg["symbol"],
                    Side(leg["side"]),
                    leg["lots"] * inst_lot,
                    price=to_paise(leg["price"]) if leg["price"] else 0,
                )
            )
        return Basket(tuple(out), template=template or "custom")
    if not template:
        raise typer.BadParameter("give a TEMPLATE or --leg ... (see `mandi basket templates`)")
    expiry = kw.pop("expiry")
    if expiry is None:
        from mandi.core.calendar import ist_date

        today = ist_date(market.now_ns)
        later = [e for e in market.master.expiries(underlying) if e >= today]
        if not later:
            raise typer.BadParameter(f"no listed {underlying} expiry on or after {today}")
        expiry = later[0]
    return build(template, market.master, underlying, expiry, market.spot, **kw)


def _stored_basket(
    db: str,
    underlying: str,
    template: str | None,
    leg: list[str] | None,
    expiry: str | None,
    lots: int,
    side: str | None,
    offset: int | None,
    width: int | None,
    strike: float | None,
    option_type: str,
) -> tuple[Any, Any]:
    """The newest stored market of ``underlying`` and the basket the command's options make
    there (raises MandiError / ValueError naming what is wrong)."""
    import datetime as dt

    from mandi.core.money import to_paise
    from mandi.model.orders import Side
    from mandi.services.baskets import stored_market

    market = stored_market(db, underlying.upper())
    basket = _basket(
        market,
        underlying.upper(),
        template,
        leg or [],
        expiry=dt.date.fromisoformat(expiry) if expiry else None,
        lots=lots,
        side=Side(side.upper()) if side else None,
        strike=to_paise(strike) if strike is not None else None,
        offset=offset,
        width=width,
        option_type=option_type.upper(),
    )
    return market, basket


@basket_app.command("show")
def show(
    underlying: UnderlyingArg,
    template: TemplateArg = None,
    leg: LegOpt = None,
    expiry: ExpiryOpt = None,
    lots: LotsOpt = 1,
    side: SideOpt = None,
    offset: OffsetOpt = None,
    width: WidthOpt = None,
    strike: StrikeOpt = None,
    option_type: OptionTypeOpt = "CE",
    db: DbOpt = None,
    config: ConfigOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Legs, payoff, Greeks and margin of a basket at the newest stored chain."""
    from mandi.options.payoff import payoff
    from mandi.options.structures import payoff_legs, resolve, structure_risk

    cfg = load(config, {"store.db": db} if db else {})
    try:
        market, basket = _stored_basket(cfg.store.db, underlying, template, leg, expiry, lots,
                                        side, offset, width, strike, option_type)  # fmt: skip
        legs = resolve(basket, market.master, market.now_ns)
        prices = market.entry_prices({r.instrument.token: r.leg.side.value for r in legs})
        pl = payoff_legs(legs, prices, market.spot, market.now_ns, rate=market.rate, ivs=market.iv)
        spot = market.spot / 100
        p = payoff(pl, spot, r=market.rate)
        risk = structure_risk(pl, spot, r=market.rate)
    except (MandiError, ValueError) as e:
        fail(e)
    doc = _document(market, basket, legs, pl, p, risk)
    if json_out:
        typer.echo(json.dumps(doc, indent=1))
        return
    _print(doc)


def _money(x: float | None) -> str:
    return "unlimited" if x is None else f"{'−' if x < 0 else ''}₹{abs(x):,.2f}"


def _document(market: Any, basket: Any, legs: Any, pl: Any, p: Any, risk: Any) -> dict[str, Any]:
    from mandi.backtest.result import iso

    return {
        "underlying": market.underlying,
        "time": iso(market.now_ns),
        "spot": market.spot / 100,
        "template": basket.template,
        "legs": [
            {
                "side": r.leg.side.value,
                "symbol": r.leg.symbol,
                "quantity": r.leg.quantity,
                "lots": r.leg.quantity // max(r.instrument.lot_size, 1),
                "price": round(x.price, 2),
                "iv": round(x.iv, 4) if math.isfinite(x.iv) else None,
            }
            for r, x in zip(legs, pl, strict=True)
        ],
        "net_premium": round(p.net_premium, 2),
        "max_profit": None if math.isinf(p.max_profit) else round(p.max_profit, 2),
        "max_loss": None if math.isinf(p.max_loss) else round(p.max_loss, 2),
        "breakevens": [round(b, 2) for b in p.breakevens],
        "pop": round(p.pop, 4),
        "greeks": {
            "delta": round(p.greeks.delta, 4),
            "gamma": round(p.greeks.gamma, 6),
            "theta": round(p.greeks.theta, 2),
            "vega": round(p.greeks.vega, 2),
        },
        "margin": {k: getattr(risk.margin, k) / 100 for k in risk.margin.__struct_fields__},
        "worst_case": risk.worst_case / 100,
    }


def _print(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    t = Table(
        title=f"{doc['template']} on {doc['underlying']} at {doc['spot']:,.2f} ({doc['time']})"
    )
    for col in ("side", "symbol", "lots", "qty", "price ₹", "IV"):
        t.add_column(col, justify="left" if col in ("side", "symbol") else "right")
    for leg in doc["legs"]:
        iv = f"{leg['iv'] * 100:.1f}%" if leg["iv"] else "–"
        t.add_row(
            leg["side"], leg["symbol"], str(leg["lots"]), str(leg["quantity"]),
            f"{leg['price']:,.2f}", iv,
        )  # fmt: skip
    c.print(t)
    g, m = doc["greeks"], doc["margin"]
    s = Table(show_header=False, title="payoff and risk")
    s.add_column("", justify="left")
    s.add_column("", justify="right")
    credit = doc["net_premium"]
    for k, v in (
        ("net premium", f"{'credit' if credit >= 0 else 'debit'} ₹{abs(credit):,.2f}"),
        ("max profit", _money(doc["max_profit"])),
        ("max loss", _money(doc["max_loss"])),
        ("breakevens", " / ".join(f"{b:,.2f}" for b in doc["breakevens"]) or "none"),
        ("probability of profit", f"{doc['pop'] * 100:.1f}%"),
        ("delta / gamma", f"{g['delta']:,.2f} / {g['gamma']:.4f}"),
        ("theta / day, vega / vol pt", f"{_money(g['theta'])} / {_money(g['vega'])}"),
        ("margin (estimate)", f"₹{m['total']:,.2f}"),
        ("hedge benefit", f"₹{m['hedge_benefit']:,.2f}"),
        ("worst case", f"₹{doc['worst_case']:,.2f}"),
    ):
        s.add_row(k, v)
    c.print(s)


@basket_app.command("place")
def place(
    underlying: UnderlyingArg,
    template: TemplateArg = None,
    leg: LegOpt = None,
    expiry: ExpiryOpt = None,
    lots: LotsOpt = 1,
    side: SideOpt = None,
    offset: OffsetOpt = None,
    width: WidthOpt = None,
    strike: StrikeOpt = None,
    option_type: OptionTypeOpt = "CE",
    policy: Annotated[
        str | None,
        typer.Option(help="When a leg fails: unwind (close what filled) or complete."),
    ] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the node's answer.")] = 10.0,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Place a basket through the running node: one risk decision for the whole structure,
    the hedges (buys) first, the leg-failure policy of ``trading.basket_on_failure`` (or
    ``--policy``). The legs are picked at the newest stored chain."""
    import time
    import uuid

    import msgspec

    from mandi.stores import queries
    from mandi.stores.trading import add_order_request, read_heartbeat

    if policy is not None and policy not in ("unwind", "complete"):
        fail(MandiError(f"--policy must be unwind or complete, got {policy!r}"))
    cfg = load(config, {"store.db": db} if db else {})
    path = cfg.store.db
    beat = read_heartbeat(path)
    if beat is None or time.time_ns() - int(beat.get("wall_ns", 0)) > 5_000_000_000:
        fail(MandiError(f"no running mandi node on {path}: start `mandi run` first"))
    try:
        _, basket = _stored_basket(path, underlying, template, leg, expiry, lots, side, offset,
                                   width, strike, option_type)  # fmt: skip
        request_id = str(uuid.uuid4())
        payload = msgspec.json.encode({"basket": basket, "policy": policy}).decode()
        add_order_request(path, request_id, "BASKET", "BUY", 1, basket=payload)
    except (MandiError, ValueError) as e:
        fail(e)
    deadline = time.monotonic() + wait
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        row = queries.order_request(path, request_id) or {}
        if row.get("status") not in (None, "PENDING"):
            break
        time.sleep(0.1)
    status = row.get("status", "PENDING")
    legs = ", ".join(f"{x.side.value} {x.quantity} {x.symbol}" for x in basket.legs)
    if status == "PENDING":
        typer.echo(f"basket request {request_id} queued; no answer within {wait:g} s")
        raise typer.Exit(1)
    if status in ("ACCEPTED", "LOGGED"):
        typer.echo(f"basket {status.lower()}: {legs} — {row.get('result', '')}")
        return
    fail(MandiError(f"basket {status.lower()} ({row.get('rule')}): {row.get('result', '')}"))
