"""Broker commands: ``mandi broker login|status|logout NAME``, ``mandi fakebroker NAME``,
``mandi instruments sync NAME`` and ``mandi history fetch NAME`` for Kite and Angel One.
What differs between brokers lives in :mod:`mandi.cli.adapters` (one small object each)."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from typing import Annotated, Any

import typer

from mandi.cli import ConfigOpt, DbOpt, app, fail, load
from mandi.core.errors import ConfigError, MandiError

broker_app = typer.Typer(
    no_args_is_help=True, help="Log in to a live broker and manage the session."
)
app.add_typer(broker_app, name="broker")
instruments_app = typer.Typer(no_args_is_help=True, help="A broker's instrument master.")
app.add_typer(instruments_app, name="instruments")
history_app = typer.Typer(no_args_is_help=True, help="Historical candles from a broker.")
app.add_typer(history_app, name="history")


def _broker(name: str) -> Any:
    from mandi.cli.adapters import ADAPTERS

    if name not in ADAPTERS:
        have = ", ".join(ADAPTERS)
        fail(ConfigError("broker", name, f"unknown broker; available: {have}"))
    return ADAPTERS[name]


def _when(ns: int) -> str:
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    return dt.datetime.fromtimestamp(ns / 1e9, ist).strftime("%Y-%m-%d %H:%M IST")


@broker_app.command("login")
def broker_login(
    name: Annotated[str, typer.Argument(help="kite | angel | groww")],
    request_token: Annotated[
        str | None, typer.Option(help="Kite: the request_token from the redirect after login.")
    ] = None,
    callback_port: Annotated[
        int | None,
        typer.Option(help="Kite: catch the redirect on http://127.0.0.1:PORT/kite/callback."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the redirect.")] = 300.0,
    config: ConfigOpt = None,
) -> None:
    """Log in and store the session in a 0600 token file. Kite: print the login URL, then
    complete with the request token. Angel One: client code + PIN + TOTP from the environment.
    """
    adapter = _broker(name)
    cfg = adapter.cfg(load(config, {}))
    try:
        if name == "kite" and request_token is None:
            from mandi.brokers.kite import session as ks

            typer.echo(f"Log in at: {ks.login_url(cfg)}", err=True)
            if callback_port is None:
                typer.echo(
                    "then run: mandi broker login kite --request-token <request_token from the "
                    "redirect URL>  (or use --callback-port PORT with that redirect URL)",
                    err=True,
                )
                raise typer.Exit(0)
            request_token = _catch_redirect(callback_port, timeout)
        s = adapter.login(cfg, request_token=request_token)
    except MandiError as e:
        fail(e)
    typer.echo(
        f"logged in to {adapter.title} as {s.user_id} ({s.user_name}); the session expires "
        f"{_when(s.expires_ns)}; stored in {adapter.token_file(cfg)} (mode 0600)"
    )


def _catch_redirect(port: int, timeout: float) -> str:
    """Serve one GET /kite/callback?request_token=... on loopback; return the token."""
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from urllib.parse import parse_qs, urlparse

    got: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            q = parse_qs(urlparse(self.path).query)
            tok = (q.get("request_token") or [""])[0]
            ok = bool(tok) and (q.get("status") or ["success"])[0] == "success"
            if ok:
                got["token"] = tok
            self.send_response(200 if ok else 400)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(
                b"mandi: logged in, you can close this tab" if ok else b"mandi: login failed"
            )

        def log_message(self, *args: Any) -> None:  # the URL holds the request token
            return None

    srv = HTTPServer(("127.0.0.1", port), Handler)
    srv.timeout = 0.5
    typer.echo(
        f"waiting for the redirect on http://127.0.0.1:{srv.server_port}/kite/callback", err=True
    )
    deadline = time.monotonic() + timeout
    try:
        while "token" not in got:
            if time.monotonic() > deadline:
                raise MandiError(f"no login redirect within {timeout:g} s")
            srv.handle_request()
    finally:
        srv.server_close()
    return got["token"]


@broker_app.command("status")
def broker_status(
    name: Annotated[str, typer.Argument(help="kite | angel | groww")], config: ConfigOpt = None
) -> None:
    """Who is logged in and when the session expires (exit 1 when there is no valid one)."""
    adapter = _broker(name)
    from mandi.brokers.session import load_session

    cfg = adapter.cfg(load(config, {}))
    try:
        s = load_session(adapter.token_file(cfg), name)
    except MandiError as e:
        fail(e)
    if s is None:
        typer.echo(f"{name}: not logged in (mandi broker login {name})")
        raise typer.Exit(1)
    now = time.time_ns()
    if s.expired(now):
        typer.echo(f"{name}: {s.user_id} — session EXPIRED at {_when(s.expires_ns)}; log in again")
        raise typer.Exit(1)
    left = (s.expires_ns - now) / 3.6e12
    typer.echo(
        f"{name}: logged in as {s.user_id} ({s.user_name}) since {_when(s.login_ns)}; session "
        f"expires {_when(s.expires_ns)} (in {left:.1f} h)"
    )


@broker_app.command("logout")
def broker_logout(
    name: Annotated[str, typer.Argument(help="kite | angel | groww")], config: ConfigOpt = None
) -> None:
    """End the session at the broker and delete the token file."""
    adapter = _broker(name)
    cfg = adapter.cfg(load(config, {}))
    try:
        had = adapter.logout(cfg)
    except MandiError as e:
        fail(MandiError(f"token file deleted; the broker could not be told: {e}"))
    typer.echo(f"{name}: logged out" if had else f"{name}: no session to log out of")


@app.command()
def fakebroker(
    name: Annotated[str, typer.Argument(help="kite | angel | groww")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 = any free port).")] = 0,
    redirect_url: Annotated[
        str, typer.Option(help="Kite: where the login page redirects with the request token.")
    ] = "http://127.0.0.1:8765/kite/callback",
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    market_clock: Annotated[
        bool, typer.Option(help="Shift into the latest session when the market is closed.")
    ] = True,
    config: ConfigOpt = None,
) -> None:
    """A local broker speaking the real protocol (REST + websocket) on loopback; prints the
    ``export MANDI_BROKER__...`` lines that point mandi at it, then serves until Ctrl-C."""
    adapter = _broker(name)
    import msgspec

    from mandi.logs import setup_logging

    cfg = load(config, {"sim.seed": seed})
    setup_logging(cfg.log.level, cfg.log.json)
    sim = msgspec.structs.replace(cfg.sim, strikes_each_side=min(cfg.sim.strikes_each_side, 15))
    srv = adapter.fake(sim, market_clock, redirect_url=redirect_url, port=port)
    for k, v in srv.env().items():
        typer.echo(f"export {k}={v}")
    hint = " --request-token any" if name == "kite" else ""
    typer.echo(  # a shell comment: `eval "$(mandi fakebroker NAME)"`-friendly, ends the block
        f"# fake {adapter.title} on {srv.rest_url} (websocket {srv.ws_url}); log in with: "
        f"mandi broker login {name}{hint}"
    )
    import sys

    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        srv.serve()


@instruments_app.command("sync")
def instruments_sync(
    name: Annotated[str, typer.Argument(help="kite | angel | groww")], config: ConfigOpt = None
) -> None:
    """Download today's instrument master (cached with its date)."""
    adapter = _broker(name)
    from mandi.core.calendar import ist_date

    cfg = adapter.cfg(load(config, {}))
    try:
        path, insts = adapter.sync(cfg, ist_date(time.time_ns()))
    except MandiError as e:
        fail(e)
    kinds: dict[str, int] = {}
    for i in insts:
        kinds[type(i).__name__] = kinds.get(type(i).__name__, 0) + 1
    with_freeze = sum(1 for i in insts if i.freeze_qty)
    by_kind = ", ".join(f"{v:,} {k}" for k, v in sorted(kinds.items()))
    typer.echo(
        f"{name}: {len(insts):,} instruments ({by_kind}; {with_freeze:,} with a freeze quantity) "
        f"saved to {path}"
    )


@history_app.command("fetch")
def history_fetch(
    name: Annotated[str, typer.Argument(help="kite | angel | groww")],
    symbol: Annotated[str, typer.Option(help="Trading symbol (NIFTY, INFY, NIFTY25JANFUT...).")],
    interval: Annotated[
        str | None,
        typer.Option(help="Kite: minute ... day; Angel One: ONE_MINUTE ... ONE_DAY."),
    ] = None,
    days: Annotated[int, typer.Option(help="Calendar days back from today.", min=1)] = 90,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Backfill candles into the store; resumable, rate-limited."""
    adapter = _broker(name)
    from rich.progress import Progress

    from mandi.core.calendar import ist_date

    app_cfg = load(config, {"store.db": db})
    cfg = adapter.cfg(app_cfg)
    interval = interval or adapter.default_interval
    if interval not in adapter.intervals:
        fail(ConfigError("--interval", interval, f"use one of {', '.join(adapter.intervals)}"))
    try:
        today = ist_date(time.time_ns())
        start = today - dt.timedelta(days=days)
        with Progress(transient=True) as bar:
            task = bar.add_task(f"{symbol} {interval}", total=None)

            def step(done: int, total: int, rows: int) -> None:
                bar.update(
                    task,
                    total=total,
                    completed=done,
                    description=f"{symbol} {interval}: {rows:,} candles",
                )

            inst, windows, rows = adapter.history(
                cfg, symbol, interval, start, today, app_cfg.store.db, step
            )
    except MandiError as e:
        fail(e)
    typer.echo(
        f"{name}: {rows:,} {interval} candles of {inst.symbol} in {windows} request(s) stored in "
        f"{app_cfg.store.db}" + ("" if windows else " (already up to date)")
    )
