"""``mandi chain``: import NSE/BSE option-chain files and show a chain with its analytics."""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Annotated, Any

import typer

from mandi.cli import ConfigOpt, DbOpt, app, fail, load
from mandi.core.errors import MandiError

chain_app = typer.Typer(no_args_is_help=True, help="Option chains: import and show.")
app.add_typer(chain_app, name="chain")


def _analyse(snap: Any, rate: float) -> Any:
    from mandi.options.chain import ChainMatrix, ChainMatrixConfig

    matrix = ChainMatrix(ChainMatrixConfig(strikes_each_side=max(len(snap.rows), 1), rate=rate))
    return matrix.process_option_chain(snap.underlying, snap)


@chain_app.command("import")
def chain_import(
    path: Annotated[str, typer.Argument(help="NSE JSON/CSV, BSE JSON option chain file.")],
    config: ConfigOpt = None,
    db: DbOpt = None,
    underlying: Annotated[str | None, typer.Option(help="For files that do not say.")] = None,
    lot_size: Annotated[int | None, typer.Option(help="Override the lot-size rule.")] = None,
    spot: Annotated[float | None, typer.Option(help="Underlying price (CSV downloads).")] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Snapshot time, IST 'YYYY-MM-DD HH:MM'.")
    ] = None,
    rate: Annotated[
        float, typer.Option(help="Rate for IV/Greeks (NSE's convention: 0.10).")
    ] = 0.10,
) -> None:
    """Parse a chain file and store every expiry in ``option_chain_snapshots``."""
    from mandi.core.money import to_paise
    from mandi.feeds.nse import load_option_chains
    from mandi.stores.chains import store_snapshots
    from mandi.stores.sqlite import connect

    cfg = load(config, {"store.db": db})
    try:
        snaps = load_option_chains(
            path,
            underlying=underlying,
            lot_size=lot_size,
            underlying_price=None if spot is None else to_paise(spot),
            as_of=as_of,
        )
        analytics = [_analyse(s, rate) for s in snaps]
        con = connect(cfg.store.db)
        rows = store_snapshots(con, snaps, analytics, time.time_ns())
    except MandiError as e:
        fail(e)
    for s, a in zip(snaps, analytics, strict=True):
        typer.echo(
            f"{s.underlying} {s.expiry}: {len(s.rows)} strikes, PCR(OI) "
            f"{a.pcr_oi:.4f}, max pain {a.max_pain:g}"
            if a
            else f"{s.underlying} {s.expiry}: {len(s.rows)} strikes"
        )
    typer.echo(f"stored {rows} rows in {cfg.store.db}")


def _fmt(x: float, spec: str = ".2f") -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, spec)


@chain_app.command("show")
def chain_show(
    underlying: Annotated[str, typer.Argument(help="NIFTY, BANKNIFTY, SENSEX ...")],
    expiry: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default the nearest.")] = None,
    file: Annotated[str | None, typer.Option("--file", help="Read this file, not the DB.")] = None,
    strikes: Annotated[int, typer.Option(help="Strikes each side of ATM.")] = 10,
    window: Annotated[int, typer.Option(help="OI % change window, minutes.")] = 5,
    rate: Annotated[float | None, typer.Option(help="Rate for IV/Greeks.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Print a chain: calls | strike | puts with OI, change in OI, OI % change, IV and Greeks,
    LTP against theoretical, and PCR, max pain and ATM."""
    from rich.table import Table

    from mandi.cli.output import console
    from mandi.core.calendar import ist_datetime
    from mandi.options.chain import ChainMatrix, ChainMatrixConfig
    from mandi.stores.chains import latest_snapshot, load_listed_strikes, load_snapshots
    from mandi.stores.sqlite import connect

    cfg = load(config, {"store.db": db})
    exp = dt.date.fromisoformat(expiry) if expiry else None
    listed: list[int] | None = None
    try:
        if file:
            from mandi.feeds.nse import load_option_chain

            loaded = load_option_chain(file, underlying=underlying, expiry=exp)
            history = [loaded]
        else:
            con = connect(cfg.store.db)
            newest = latest_snapshot(con, underlying.upper(), exp)
            if newest is None:
                fail(
                    MandiError(
                        f"no stored chain for {underlying} in {cfg.store.db}; "
                        "run mandi run or mandi chain import first"
                    )
                )
            assert newest is not None
            history = load_snapshots(
                con,
                newest.ts_event - 31 * 60 * 10**9,
                newest.ts_event + 1,
                newest.underlying,
                newest.expiry,
            )
            # the grid's spacing: the strikes the instrument master listed (stored by mandi
            # run), else every strike the history shows — never the sparse first snapshot's
            listed = load_listed_strikes(con, newest.underlying, newest.expiry) or sorted(
                {row.strike for s in history for row in s.rows}
            )
        snap = history[-1]
        r = rate if rate is not None else (0.065 if snap.source == "sim" else 0.10)
        matrix = ChainMatrix(ChainMatrixConfig(strikes_each_side=strikes, rate=r))
        if listed:
            matrix.set_listed_strikes(snap.underlying, snap.expiry, listed)
        a = None
        for s in history:
            a = matrix.process_option_chain(s.underlying, s, notify=False)
    except MandiError as e:
        fail(e)
    if a is None:
        fail(MandiError("the chain has no usable strikes"))
    assert a is not None
    data, ks = matrix.latest(snap.underlying, snap.expiry)
    from mandi.options.chain import matrix as ch

    w = a.oi_windows_minutes.index(window) if window in a.oi_windows_minutes else 0
    if as_json:
        _chain_json(snap, a, data, ks, w)
        return
    when = ist_datetime(snap.ts_event).strftime("%Y-%m-%d %H:%M:%S")
    t = Table(
        title=f"{snap.underlying} {snap.expiry} · {when} IST · spot "
        f"{snap.underlying_price / 100:,.2f} · ATM {a.atm_strike:g} · max pain "
        f"{a.max_pain:g}"
    )
    cols = [
        "OI",
        "ΔOI",
        f"OI%{a.oi_windows_minutes[w]}m",
        "IV%",
        "Δ",
        "Γ",
        "Θ/day",
        "vega",
        "LTP",
        "LTP−theo",
    ]
    for c in cols:
        t.add_column(f"C {c}", justify="right", style="green")
    t.add_column("strike", justify="center", style="bold")
    for c in reversed(cols):
        t.add_column(f"P {c}", justify="right", style="red")
    for j, k in enumerate(ks):
        if not math.isfinite(k):
            continue
        ce = [
            _fmt(data[ch.CE_OI, j], ",.0f"),
            _fmt(data[ch.CE_OI_CHANGE, j], ",.0f"),
            _fmt(a.oi_change_pct[w, 0, j], ".1f"),
            _fmt(100 * data[ch.CE_IV, j]),
            _fmt(data[ch.CE_DELTA, j], ".3f"),
            _fmt(data[ch.CE_GAMMA, j], ".5f"),
            _fmt(data[ch.CE_THETA, j]),
            _fmt(data[ch.CE_VEGA, j]),
            _fmt(data[ch.CE_LTP, j]),
            _hl(a.ce_price_diff[j], a.ce_highlight[j]),
        ]
        pe = [
            _fmt(data[ch.PE_OI, j], ",.0f"),
            _fmt(data[ch.PE_OI_CHANGE, j], ",.0f"),
            _fmt(a.oi_change_pct[w, 1, j], ".1f"),
            _fmt(100 * data[ch.PE_IV, j]),
            _fmt(data[ch.PE_DELTA, j], ".3f"),
            _fmt(data[ch.PE_GAMMA, j], ".5f"),
            _fmt(data[ch.PE_THETA, j]),
            _fmt(data[ch.PE_VEGA, j]),
            _fmt(data[ch.PE_LTP, j]),
            _hl(a.pe_price_diff[j], a.pe_highlight[j]),
        ]
        mark = f"[reverse]{k:g}[/]" if k == a.atm_strike else f"{k:g}"
        if k == a.max_pain:
            mark += " ◆"
        t.add_row(*ce, mark, *reversed(pe))
    console().print(t)
    typer.echo(
        f"PCR  OI {a.pcr_oi:.4f}  volume {_fmt(a.pcr_volume, '.4f')}  change in OI "
        f"{_fmt(a.pcr_oi_change, '.4f')}   ITM delta % CE {_fmt(a.itm_ce_delta_pct, '.1f')}"
        f" PE {_fmt(a.itm_pe_delta_pct, '.1f')}   (◆ max pain; OI in contracts)"
    )


def _hl(diff: float, highlight: int) -> str:
    text = _fmt(diff, "+.2f")
    return f"[bold]{text}↑[/]" if highlight > 0 else f"[bold]{text}↓[/]" if highlight < 0 else text


def _num(x: float, digits: int = 4) -> float | None:
    return round(float(x), digits) if math.isfinite(x) else None


def _chain_json(snap: Any, a: Any, data: Any, ks: Any, w: int) -> None:
    """The chain as JSON: the summary and per strike both sides (rupees, OI in contracts)."""
    from mandi.cli.output import emit_json
    from mandi.core.calendar import ist_datetime
    from mandi.options.chain import matrix as ch

    def side(prefix: str, col: int, j: int) -> dict[str, float | None]:
        def g(name: str) -> float | None:
            return _num(data[getattr(ch, f"{prefix}_{name}"), j])

        return {
            "oi": g("OI"),
            "oi_change": g("OI_CHANGE"),
            "oi_change_pct": _num(a.oi_change_pct[w, col, j], 2),
            "iv": g("IV"),
            "delta": g("DELTA"),
            "gamma": _num(data[getattr(ch, f"{prefix}_GAMMA"), j], 6),
            "theta": g("THETA"),
            "vega": g("VEGA"),
            "ltp": g("LTP"),
            "ltp_minus_theo": _num((a.ce_price_diff if col == 0 else a.pe_price_diff)[j]),
        }

    emit_json(
        {
            "underlying": snap.underlying,
            "expiry": snap.expiry.isoformat(),
            "time": ist_datetime(snap.ts_event).isoformat(timespec="seconds") + "+05:30",
            "spot": snap.underlying_price / 100,
            "atm_strike": _num(a.atm_strike),
            "max_pain": _num(a.max_pain),
            "pcr_oi": _num(a.pcr_oi),
            "pcr_volume": _num(a.pcr_volume),
            "oi_window_minutes": a.oi_windows_minutes[w],
            "rows": [
                {"strike": float(k), "ce": side("CE", 0, j), "pe": side("PE", 1, j)}
                for j, k in enumerate(ks)
                if math.isfinite(k)
            ],
        }
    )
