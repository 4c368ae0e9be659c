"""Broker commands: ``mandi broker login|status|logout NAME``, ``mandi fakebroker NAME``,
``mandi instruments sync NAME`` and ``mandi history fetch NAME``. Kite is the broker today;
Angel One and Groww plug into the same commands."""

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

BROKERS = ("kite",)


def _broker(name: str) -> None:
    if name not in BROKERS:
        fail(ConfigError("broker", name, f"unknown broker; available: {', '.join(BROKERS)}"))


def _when(ns: int) -> str:
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    return dt.datetime.fromtimestamp(ns / 1e9, ist).strftime("%Y-%m-%d %H:%M IST")


@broker_app.command("login")
def broker_login(
    name: Annotated[str, typer.Argument(help="kite")],
    request_token: Annotated[
        str | None, typer.Option(help="The request_token from the redirect after logging in.")
    ] = None,
    callback_port: Annotated[
        int | None,
        typer.Option(help="Catch the redirect on http://127.0.0.1:PORT/kite/callback instead."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the redirect.")] = 300.0,
    config: ConfigOpt = None,
) -> None:
    """Print the login URL and complete the session (the token goes to a 0600 file)."""
    _broker(name)
    from mandi.brokers.kite import session as ks

    cfg = load(config, {}).broker.kite
    try:
        url = ks.login_url(cfg)
        if request_token is None:
            typer.echo(f"Log in at: {url}", err=True)
            if callback_port is None:
                typer.echo(
                    "then run: mandi broker login kite --request-token <request_token from the "
                    "redirect URL>  (or use --callback-port PORT with that redirect URL)",
                    err=True,
                )
                raise typer.Exit(0)
            request_token = _catch_redirect(callback_port, timeout)
        s = ks.login(cfg, request_token)
    except MandiError as e:
        fail(e)
    typer.echo(
        f"logged in to Kite as {s.user_id} ({s.user_name}); the token expires "
        f"{_when(s.expires_ns)}; stored in {ks.token_file(cfg)} (mode 0600)"
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
    name: Annotated[str, typer.Argument(help="kite")], config: ConfigOpt = None
) -> None:
    """Who is logged in and when the token expires (exit 1 when there is no valid session)."""
    _broker(name)
    from mandi.brokers.kite import session as ks
    from mandi.brokers.session import load_session

    cfg = load(config, {}).broker.kite
    try:
        s = load_session(ks.token_file(cfg), "kite")
    except MandiError as e:
        fail(e)
    if s is None:
        typer.echo("kite: not logged in (mandi broker login kite)")
        raise typer.Exit(1)
    now = time.time_ns()
    if s.expired(now):
        typer.echo(f"kite: {s.user_id} — token EXPIRED at {_when(s.expires_ns)}; log in again")
        raise typer.Exit(1)
    left = (s.expires_ns - now) / 3.6e12
    typer.echo(
        f"kite: logged in as {s.user_id} ({s.user_name}) since {_when(s.login_ns)}; token "
        f"expires {_when(s.expires_ns)} (in {left:.1f} h)"
    )


@broker_app.command("logout")
def broker_logout(
    name: Annotated[str, typer.Argument(help="kite")], config: ConfigOpt = None
) -> None:
    """Invalidate the token at the broker and delete the token file."""
    _broker(name)
    from mandi.brokers.kite import session as ks

    cfg = load(config, {}).broker.kite
    try:
        had = ks.logout(cfg)
    except MandiError as e:
        fail(MandiError(f"token file deleted; the broker could not be told: {e}"))
    typer.echo("kite: logged out" if had else "kite: no session to log out of")


@app.command()
def fakebroker(
    name: Annotated[str, typer.Argument(help="kite")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 = any free port).")] = 0,
    redirect_url: Annotated[
        str, typer.Option(help="Where the login page redirects with the request token.")
    ] = "http://127.0.0.1:8765/kite/callback",
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    market_clock: Annotated[
        bool, typer.Option(help="Shift into the latest session when the market is closed.")
    ] = True,
    config: ConfigOpt = None,
) -> None:
    """A local broker speaking the real protocol (REST + ticker) on loopback; prints the
    ``export MANDI_BROKER__...`` lines that point mandi at it, then serves until Ctrl-C."""
    _broker(name)
    import msgspec

    from mandi.brokers.kite.fake import FakeKite, FakeKiteServer
    from mandi.logs import setup_logging

    cfg = load(config, {"sim.seed": seed})
    setup_logging(cfg.log.level, cfg.log.json)
    sim = msgspec.structs.replace(cfg.sim, strikes_each_side=min(cfg.sim.strikes_each_side, 15))
    srv = FakeKiteServer(
        FakeKite(sim, redirect_url=redirect_url, clock_offset_ns=None if market_clock else 0),
        port=port,
    )
    for k, v in srv.env().items():
        typer.echo(f"export {k}={v}")
    typer.echo(  # a shell comment: `eval "$(mandi fakebroker kite)"`-friendly, ends the block
        f"# fake Kite on {srv.rest_url} (ticker {srv.ws_url}); log in with: "
        "mandi broker login kite --request-token any"
    )
    import sys

    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        srv.serve()


@instruments_app.command("sync")
def instruments_sync(
    name: Annotated[str, typer.Argument(help="kite")], config: ConfigOpt = None
) -> None:
    """Download today's instrument dump (cached with its date) and merge freeze quantities."""
    _broker(name)
    from mandi.brokers.kite import instruments as ki
    from mandi.brokers.kite import session as ks
    from mandi.core.calendar import ist_date

    cfg = load(config, {}).broker.kite
    try:
        rest = ks.rest_client(cfg)
        try:
            path, insts = ki.sync(cfg, rest, ist_date(time.time_ns()))
        finally:
            rest.close()
    except MandiError as e:
        fail(e)
    kinds: dict[str, int] = {}
    for i in insts:
        kinds[type(i).__name__] = kinds.get(type(i).__name__, 0) + 1
    with_freeze = sum(1 for i in insts if i.freeze_qty)
    by_kind = ", ".join(f"{v:,} {k}" for k, v in sorted(kinds.items()))
    typer.echo(
        f"kite: {len(insts):,} instruments ({by_kind}; {with_freeze:,} with a freeze quantity) "
        f"saved to {path}"
    )


@history_app.command("fetch")
def history_fetch(
    name: Annotated[str, typer.Argument(help="kite")],
    symbol: Annotated[str, typer.Option(help="Trading symbol (NIFTY, INFY, NIFTY25JANFUT...).")],
    interval: Annotated[str, typer.Option(help="minute, 3minute, 5minute, ..., day.")] = "minute",
    days: Annotated[int, typer.Option(help="Calendar days back from today.", min=1)] = 90,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Backfill candles (with OI for F&O) into the store; resumable, rate-limited."""
    _broker(name)
    from rich.progress import Progress

    from mandi.brokers.kite import history as kh
    from mandi.brokers.kite import instruments as ki
    from mandi.brokers.kite import session as ks
    from mandi.brokers.kite.wire import INTERVAL_MAX_DAYS
    from mandi.core.calendar import ist_date
    from mandi.model.instruments import InstrumentMaster

    app_cfg = load(config, {"store.db": db})
    cfg = app_cfg.broker.kite
    if interval not in INTERVAL_MAX_DAYS:
        fail(ConfigError("--interval", interval, f"use one of {', '.join(INTERVAL_MAX_DAYS)}"))
    try:
        rest = ks.rest_client(cfg)
        try:
            today = ist_date(time.time_ns())
            master = InstrumentMaster(ki.load(cfg, rest, today))
            inst = master.by_symbol(symbol)
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

                windows, rows = kh.fetch(rest, inst, interval, start, today, app_cfg.store.db, step)
        finally:
            rest.close()
    except MandiError as e:
        fail(e)
    typer.echo(
        f"kite: {rows:,} {interval} candles of {inst.symbol} in {windows} request(s) stored in "
        f"{app_cfg.store.db}" + ("" if windows else " (already up to date)")
    )
