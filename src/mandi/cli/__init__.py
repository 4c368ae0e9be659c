"""The ``mandi`` command line (``python -m mandi`` works too).

Each command group lives in its own module of this package and registers itself on :data:`app`
when imported at the bottom of this file; options map onto the config tree (``mandi.config``).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import typer

from mandi.core.errors import MandiError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="mandi: event-driven trading and options analytics for NSE and BSE.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mandi {version()} (Python {sys.version.split()[0]})")
        raise typer.Exit()


def version() -> str:
    """The installed distribution's version (the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("mandi")
    except PackageNotFoundError:
        from mandi import __version__

        return __version__


@app.callback()
def _main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """mandi: event-driven trading and options analytics for NSE and BSE."""


ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="mandi.toml to read.")]
DbOpt = Annotated[str | None, typer.Option("--db", help="SQLite database file.")]


def fail(e: Exception) -> None:
    """Print one clear line and exit with status 2."""
    typer.echo(f"mandi: {e}", err=True)
    raise typer.Exit(2)


def load(config: str | None, overrides: dict[str, Any]) -> Any:
    from mandi.config import load_config

    try:
        return load_config(config, overrides=overrides)
    except MandiError as e:
        fail(e)


def build_layers(cfg: Any) -> list[Any]:
    """The layers ``mandi run`` plugs into the node, in order."""
    from mandi.services.history import HistoryLayer  # the preceding sessions, before any warm-up

    layers: list[Any] = [HistoryLayer(cfg)]
    if cfg.indicators.enabled:
        from mandi.services.indicators import IndicatorLayer

        layers.append(IndicatorLayer(cfg.indicators))
    if cfg.chains.enabled:
        from mandi.services.chains import ChainLayer

        layers.append(ChainLayer(cfg.chains))
    from mandi.services.trading import TradingLayer  # strategies → risk → orders (run.mode)

    layers.append(TradingLayer(cfg))
    from mandi.services.backup import BackupLayer  # the daily database backup (backup.daily_at)

    layers.append(BackupLayer(cfg))
    if cfg.store.clickhouse_url.strip():  # signals, orders, positions, chains, daily rows
        from mandi.services.record import ClickHouseRecordLayer

        layers.append(ClickHouseRecordLayer(cfg))
    if cfg.run.dashboard:  # REST + WebSocket gateway and the dashboard (run.host:run.port)
        from mandi.web.layer import WebLayer

        layers.append(WebLayer(cfg))
    if cfg.notify.telegram.bot_token or cfg.notify.webhook.url:
        from mandi.services.notify import NotifyLayer  # alerts and chat commands ([notify])

        layers.append(NotifyLayer(cfg))
    return layers


def broker_run_config(cfg: Any, feed_given: bool) -> tuple[Any, Any]:
    """Live mode with a broker reads that broker's feed (unless another feed was asked for);
    ``run.clock_offset_s`` is only for a fake broker on loopback."""
    import msgspec

    from mandi.core.clock import LiveClock, OffsetClock
    from mandi.core.errors import ConfigError

    name = cfg.broker.name or cfg.trading.broker
    if cfg.run.mode == "live":
        from mandi.brokers import LIVE_BROKERS

        if not name:
            raise ConfigError(
                "trading.broker",
                "",
                "live mode needs a live broker (--broker kite|angel|groww); refusing to start",
            )
        if name not in LIVE_BROKERS:
            have = ", ".join(sorted(LIVE_BROKERS))
            raise ConfigError(
                "trading.broker",
                name,
                f"no such live broker (available: {have}); refusing to start",
            )
        if cfg.run.feed == "sim" and not feed_given:
            cfg = msgspec.structs.replace(cfg, run=msgspec.structs.replace(cfg.run, feed=name))
    from mandi.feeds.registry import BROKER_FEEDS

    if cfg.run.mode == "live" and cfg.run.feed == "sim":
        raise ConfigError("run.feed", "sim", f"live trading needs a broker's feed (--feed {name})")
    if cfg.run.feed in BROKER_FEEDS and cfg.pipeline.close_delay_ms < 1500:
        # broker ticks travel (Kite stamps whole seconds): a second closes 1.5 s late
        cfg = msgspec.structs.replace(
            cfg, pipeline=msgspec.structs.replace(cfg.pipeline, close_delay_ms=1500)
        )
    if not cfg.run.clock_offset_s:
        return cfg, LiveClock()
    from urllib.parse import urlparse

    adapter = getattr(cfg.broker, cfg.run.feed, None) if cfg.run.feed in BROKER_FEEDS else None
    host = urlparse(adapter.rest_url).hostname if adapter is not None else None
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            "run.clock_offset_s",
            cfg.run.clock_offset_s,
            "only for a broker feed from a fake broker on loopback (mandi fakebroker)",
        )
    return cfg, OffsetClock(int(cfg.run.clock_offset_s * 1_000_000_000))


@app.command()
def run(
    config: ConfigOpt = None,
    feed: Annotated[
        str | None,
        typer.Option(
            help="'sim', a broker's feed (kite, angel, groww), 'nse', a ws:// URL or "
            "replay:PATH (a recorded mandi database or a tick CSV)."
        ),
    ] = None,
    mode: Annotated[str | None, typer.Option(help="logging | paper | live.")] = None,
    broker: Annotated[
        str | None, typer.Option(help="The live broker (kite, angel, groww); its feed too.")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Simulated/replay speed; inf = flat out.")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Wall seconds to run (0 = no limit).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Stop at this IST exchange time HH:MM.")] = None,
    days: Annotated[int | None, typer.Option(help="Simulated trading days (0 = no limit).")] = None,
    db: DbOpt = None,
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    date: Annotated[str | None, typer.Option(help="Simulated trading date YYYY-MM-DD.")] = None,
    resume: Annotated[bool | None, typer.Option(help="Continue what the database holds.")] = None,
    no_dashboard: Annotated[
        bool, typer.Option("--no-dashboard", help="Do not serve the web dashboard.")
    ] = False,
    port: Annotated[int | None, typer.Option(help="Dashboard/API port.")] = None,
    status_interval: Annotated[float | None, typer.Option(help="Status refresh, seconds.")] = None,
    log_json: Annotated[bool, typer.Option("--log-json", help="JSON log lines.")] = False,
    log_level: Annotated[str | None, typer.Option(help="DEBUG | INFO | WARNING | ERROR.")] = None,
) -> None:
    """Run the whole platform in one process: feed → candles → SQLite (+ status)."""
    cfg = load(
        config,
        {
            "run.feed": feed,
            "run.mode": mode,
            "run.speed": speed,
            "run.duration": duration,
            "run.until": until,
            "run.days": days,
            "store.db": db,
            "sim.seed": seed,
            "sim.date": date,
            "run.resume": resume,
            "run.dashboard": False if no_dashboard else None,
            "run.port": port,
            "run.status_interval": status_interval,
            "log.json": True if log_json else None,
            "log.level": log_level,
            "broker.name": broker,
        },
    )
    from mandi.logs import setup_logging
    from mandi.services.node import MarketNode

    setup_logging(cfg.log.level, cfg.log.json)
    try:
        from mandi.services.trading import prepare_config

        cfg = prepare_config(cfg)  # the candle timeframes the strategies need
        cfg, clock = broker_run_config(cfg, feed_given=feed is not None)
        node = MarketNode(cfg, clock=clock, layers=build_layers(cfg))
        code = asyncio.run(node.run())
    except MandiError as e:
        fail(e)
    raise typer.Exit(code)


@app.command()
def tickserver(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 9001,
    speed: Annotated[float | None, typer.Option(help="Simulated speed; inf = flat out.")] = None,
    seed: Annotated[int | None, typer.Option(help="Simulator seed.")] = None,
    date: Annotated[str | None, typer.Option(help="Simulated trading date YYYY-MM-DD.")] = None,
    days: Annotated[int | None, typer.Option(help="Simulated trading days (0 = no limit).")] = None,
    wait: Annotated[bool, typer.Option(help="Open the market at the first subscription.")] = True,
) -> None:
    """Serve the simulated exchange over WebSocket (JSON; see docs/tickserver.md)."""
    cfg = load(config, {"run.speed": speed, "sim.seed": seed, "sim.date": date, "run.days": days})
    from mandi.feeds.tickserver import serve
    from mandi.logs import setup_logging

    setup_logging(cfg.log.level, cfg.log.json)
    try:
        asyncio.run(serve(cfg, host, port, wait_for_client=wait))
    except MandiError as e:
        fail(e)
    except KeyboardInterrupt:
        pass


from mandi.cli import backtest as _backtest  # noqa: E402,F401 - registers `mandi backtest`
from mandi.cli import basket as _basket  # noqa: E402,F401 - registers `mandi basket`
from mandi.cli import broker as _broker  # noqa: E402,F401 - broker, fakebroker, instruments, history
from mandi.cli import chain as _chain  # noqa: E402,F401 - registers `mandi chain`
from mandi.cli import db as _db  # noqa: E402,F401 - registers `mandi db`
from mandi.cli import instruments as _instruments  # noqa: E402,F401 - `mandi instruments search`
from mandi.cli import ml as _ml  # noqa: E402,F401 - features, train, serve-model
from mandi.cli import service as _service  # noqa: E402,F401 - service, up, down, ps
from mandi.cli import trading as _trading  # noqa: E402,F401 - positions, orders, signals, ...
from mandi.cli import web as _web  # noqa: E402,F401 - registers `mandi token`


def main() -> None:
    from mandi.services.jitcache import prepare_numba_cache

    prepare_numba_cache()  # before any kernel code runs: numba misses cross-file edits
    try:
        app()
    except MandiError as e:  # pragma: no cover - safety net
        typer.echo(f"mandi: {e}", err=True)
        sys.exit(2)
