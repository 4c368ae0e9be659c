"""Configuration: one frozen msgspec ``AppConfig`` tree.

Sources, later ones winning: defaults → ``mandi.toml`` (or ``--config FILE``) → environment
variables ``MANDI_<SECTION>__<KEY>`` (e.g. ``MANDI_STORE__DB=/data/mandi.db``) → CLI flags.
An unknown key or a bad value stops start-up with one line naming the key and the value — and so
do an empty path (``store.db = ""`` would be a temporary database), an amount of rupees that is
not finite or above :data:`~mandi.core.money.MAX_CONFIG_INR`, and an environment variable that
starts with ``MANDI_`` but names no setting (``MANDI_RUN_SPEED``: the closest key is named; fail
closed — a setting the user believes applied must not silently not apply).
Secrets never live here: brokers read theirs from the environment or a file outside the repo.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from mandi.backtest.config import BacktestConfig
from mandi.core.errors import ConfigError
from mandi.execution.config import TradingConfig
from mandi.pipeline.validate import TickPolicy
from mandi.risk.config import RiskConfig
from mandi.strategy.config import StrategySpec


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class SimConfig(_Section, frozen=True):
    """Simulated exchange settings (``[sim]`` in ``mandi.toml``)."""

    seed: int = 42
    date: dt.date | None = None  # first trading date; None = the latest trading day
    underlyings: tuple[str, ...] = ("NIFTY", "BANKNIFTY", "FINNIFTY", "SENSEX")
    stocks: tuple[str, ...] = ("RELIANCE", "HDFCBANK", "INFY", "TCS", "ICICIBANK")
    strikes_each_side: int = 20
    step_ms: int = 250
    option_tick_probability: float = 0.6  # per second, at the money
    chain_interval_s: int = 1


class RunConfig(_Section, frozen=True):
    """``[run]``: what ``mandi run`` does."""

    feed: str = "sim"  # "sim", a broker feed ("kite", "angel", "groww"), "nse" or ws://...
    mode: Literal["logging", "paper", "live"] = "paper"
    speed: Annotated[float, msgspec.Meta(gt=0)] = 1.0  # exchange s per wall s; inf = flat out
    duration: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # wall seconds; 0 = until the end
    days: Annotated[int, msgspec.Meta(ge=0)] = 0  # simulated trading days; 0 = unlimited
    until: str = ""  # stop when exchange time reaches this IST time of day, "HH:MM[:SS]"
    status_interval: float = 2.0
    dashboard: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080  # 0 = any free port
    resume: bool = True  # continue a simulated day from what the database already holds
    # shifts the wall clock of a broker feed: only for demos and tests against a fake broker on
    # loopback outside market hours (`mandi fakebroker` prints it); refused with a real broker
    clock_offset_s: float = 0.0


class StoreConfig(_Section, frozen=True):
    """``[store]``: SQLite persistence, and optionally ClickHouse as well.

    ``clickhouse_url`` (empty = off) also batch-inserts confirmed candles and indicator values
    (ticks with ``clickhouse_ticks``) into ClickHouse: ``chdb:///abs/dir`` for the in-process
    chdb, ``http[s]://[user@]host:8123/database`` for a server (password from the URL or
    ``$MANDI_CLICKHOUSE_PASSWORD``; never logged). See :mod:`mandi.stores.clickhouse`.

    Ticks are stored as compressed columnar blocks (``tick_blocks``, :mod:`mandi.stores.ticks`).
    One-second candles stay in memory for ``second_candles_s`` (the seed's 1 s candle streams
    keep ten minutes) — they are a function of the stored ticks — unless ``second_candles`` is
    ``"sqlite"``, which stores them in ``candles`` as well (about one row per tick).

    Rows wait for the writer thread in a queue: a replayable feed (the simulator flat out, a
    replay) waits while more than ``backpressure_rows`` rows wait (so memory stays flat and a
    run's rate is that of its writer too); a live feed never waits, and rows beyond
    ``max_pending_rows`` are dropped and counted (the exit status says so).
    """

    db: str = "mandi.db"
    store_ticks: bool = True
    second_candles: Literal["memory", "sqlite"] = "memory"
    second_candles_s: Annotated[int, msgspec.Meta(ge=0)] = 600
    flush_interval_ms: Annotated[int, msgspec.Meta(ge=1)] = 250
    flush_items: Annotated[int, msgspec.Meta(ge=1)] = 64
    max_pending_rows: Annotated[int, msgspec.Meta(ge=1000)] = 2_000_000
    backpressure_rows: Annotated[int, msgspec.Meta(ge=1000)] = 250_000
    retention_days: Annotated[int, msgspec.Meta(ge=0)] = 30
    clickhouse_url: str = ""
    clickhouse_ticks: bool = False


class PipelineConfig(_Section, frozen=True):
    """``[pipeline]``: ticks → candles."""

    timeframes: tuple[Annotated[int, msgspec.Meta(gt=0)], ...] = (60, 120, 180, 300)
    close_delay_ms: Annotated[int, msgspec.Meta(ge=0)] = 0  # grace for feeds out of step
    emit_forming: bool = True
    # "fast": the numba kernels of mandi.pipeline.fast; "reference": the pure-Python classes
    # (the same candles, bit for bit; slower, no compilation on the first run)
    engine: Literal["fast", "reference"] = "fast"
    tick_queue: Annotated[int, msgspec.Meta(ge=1)] = 10_000  # feed → kernel, in batches
    consumer_queue: Annotated[int, msgspec.Meta(ge=1)] = 5_000  # per slow consumer (web)


class IndicatorsConfig(_Section, frozen=True):
    """``[indicators]``: which indicators ``mandi run`` computes and how it persists them."""

    enabled: bool = True
    specs: tuple[str, ...] | None = None  # None = the seed's SMA 9/20/50/200, EMA 9/21, RSI 14
    timeframes: tuple[Annotated[int, msgspec.Meta(gt=0)], ...] = (60, 120, 180, 300)
    # previews (peek on forming candles → pub:ind:...) for "underlyings" (indices, stocks,
    # futures), "all" instruments (options too: costly at high simulation speeds) or "none"
    previews: Literal["none", "underlyings", "all"] = "underlyings"
    store_values: bool = True
    snapshot_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    snapshots_kept: Annotated[int, msgspec.Meta(ge=1)] = 5


class ChainsConfig(_Section, frozen=True):
    """``[chains]``: live option chains (matrix, analytics, persistence)."""

    enabled: bool = True
    interval_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    persist_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    strikes_each_side: Annotated[int, msgspec.Meta(ge=1)] = 20
    rate: float | None = None  # None: the simulator's rate on the sim feed, NSE's 10 % otherwise
    diff_pos_threshold: Annotated[float, msgspec.Meta(ge=0)] = 3.0  # rupees (seed default)
    diff_neg_threshold: Annotated[float, msgspec.Meta(ge=0)] = 2.0


class HistoryConfig(_Section, frozen=True):
    """``[history]``: the warm-up of ``mandi run`` (see :mod:`mandi.services.history`).

    Before the first tick, ``sessions`` trading sessions of candles before the feed's start come
    from the feed's history source (the simulator's own past; a broker's historical API) into the
    candle store, never over stored candles; indicators and strategies warm up on them, so they
    are warm at 09:15. ``0`` turns the backfill off (the warm-up then uses what the store holds).
    """

    sessions: Annotated[int, msgspec.Meta(ge=0, le=250)] = 5


class BackupConfig(_Section, frozen=True):
    """``[backup]``: copies of the SQLite database (``mandi db backup``; daily in ``mandi run``).

    ``dir`` "" = ``backups/`` beside the database; the newest ``keep`` are kept. ``mandi run``
    takes one every day at ``daily_at`` (IST, wall clock) unless one of that day exists;
    ``daily_at = ""`` turns the schedule off."""

    dir: str = ""
    keep: Annotated[int, msgspec.Meta(ge=0)] = 7
    daily_at: str = "16:00"

    def __post_init__(self) -> None:
        if self.daily_at:
            try:
                dt.time.fromisoformat(self.daily_at)
            except ValueError:
                raise ConfigError(
                    "backup.daily_at", self.daily_at, 'expected an IST time HH:MM, or "" for none'
                ) from None


class TelegramConfig(_Section, frozen=True):
    """``[notify.telegram]``: alerts to Telegram chats and commands from them.

    ``bot_token`` comes from @BotFather — keep it out of committed files
    (``MANDI_NOTIFY__TELEGRAM__BOT_TOKEN``); ``chat_ids`` receive the alerts and are the only
    chats whose commands are accepted, with the scope ``commands`` (``trade``: /halt and /resume
    too; ``read``: /status /positions /pnl; ``none``: no commands, no polling); ``api_url`` is the
    Bot API server."""

    bot_token: str = ""
    chat_ids: tuple[int, ...] = ()
    api_url: str = "https://api.telegram.org"
    commands: Literal["none", "read", "trade"] = "trade"
    poll_timeout_s: Annotated[int, msgspec.Meta(ge=1, le=50)] = 25


class WebhookNotifyConfig(_Section, frozen=True):
    """``[notify.webhook]``: alerts POSTed as Slack/Discord-compatible JSON to ``url``."""

    url: str = ""
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0


class NotifyConfig(_Section, frozen=True):
    """``[notify]``: what becomes an alert and how often messages go out (per notifier)."""

    fills: bool = True  # every fill
    large_pnl_inr: Annotated[float, msgspec.Meta(ge=0)] = 2000.0  # a closed position's P&L
    errors: bool = True  # ERROR system events (strategy errors, failed backups, ...)
    daily_summary_at: str = "15:30"  # IST exchange time; "" = no daily summary
    batch_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 2.0  # alerts this close: one message
    max_per_minute: Annotated[int, msgspec.Meta(ge=1, le=60)] = 20  # messages, then they wait
    telegram: TelegramConfig = TelegramConfig()
    webhook: WebhookNotifyConfig = WebhookNotifyConfig()

    def __post_init__(self) -> None:
        if self.daily_summary_at:
            try:
                dt.time.fromisoformat(self.daily_summary_at)
            except ValueError:
                raise ConfigError(
                    "notify.daily_summary_at", self.daily_summary_at, "expected HH:MM (IST)"
                ) from None


class WebhooksConfig(_Section, frozen=True):
    """``[webhooks]``: inbound signal webhooks (``POST /api/v1/webhooks/signal``, see
    :mod:`mandi.web.inbound`). ``secret`` is the HMAC key requests are signed with — keep it in
    the environment (``MANDI_WEBHOOKS__SECRET``); empty turns the route off. A signature older
    than ``tolerance_s`` (or reused) is refused. ChartInk alerts (a list of stocks) become
    ``chartink_action`` signals."""

    secret: str = ""
    tolerance_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 300.0
    chartink_action: Literal["BUY", "SELL"] = "BUY"


class WebConfig(_Section, frozen=True):
    """``[web]``: the REST + WebSocket gateway and the dashboard of ``mandi run``.

    Where it listens is ``run.host`` / ``run.port`` (``run.dashboard = false`` turns it off).
    Tokens live in ``tokens_file`` (hashed; created with ``mandi token create``), outside the
    repository: "" means ``$XDG_CONFIG_HOME/mandi/tokens.json`` (``~/.config/mandi/``).
    """

    tokens_file: str = ""
    cors_origins: tuple[str, ...] = ()  # closed by default; exact origins, never "*"
    ws_origins: tuple[str, ...] = ()  # extra browser Origins allowed on /ws (same origin always)
    session_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 12 * 3600.0
    login_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 10  # per client address
    orders_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 60  # per token, order routes
    flush_interval_ms: Annotated[int, msgspec.Meta(ge=10)] = 100  # WebSocket fan-out cadence
    chain_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0  # chain tables per client
    metrics_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    client_queue: Annotated[int, msgspec.Meta(ge=10)] = 2000  # pending events; then dropped
    max_clients: Annotated[int, msgspec.Meta(ge=1)] = 500  # authenticated WebSocket clients
    # a WebSocket that did not authenticate on the handshake must within this time, and holds no
    # client slot meanwhile: such sockets are capped per address and in total
    ws_auth_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    ws_unauth_per_address: Annotated[int, msgspec.Meta(ge=1)] = 8
    ws_unauth_max: Annotated[int, msgspec.Meta(ge=1)] = 64
    send_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    cpu_budget: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.03  # loop share for fan-out
    access_log: bool = False
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 65_536  # request bodies; else 413
    commands_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 10  # per token: halt, resume
    # the first start creates the owner's trade token; every start prints a one-time login link
    # (used once, then refused; expires after login_link_ttl_s) to the terminal — turn it off
    # where stdout is a log (a systemd service)
    login_link: bool = True
    login_link_ttl_s: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 900.0

    def __post_init__(self) -> None:
        for key, origins in (
            ("web.cors_origins", self.cors_origins),
            ("web.ws_origins", self.ws_origins),
        ):
            for o in origins:
                if o.strip() == "*" or "*" in o:
                    raise ConfigError(
                        key,
                        o,
                        "list exact origins (https://host:port); a wildcard is never allowed",
                    )


def _default_redis_url() -> str:
    return os.environ.get("MANDI_REDIS_URL", "redis://127.0.0.1:6379/0")


class RedisConfig(_Section, frozen=True):
    """``[redis]``: the Redis bus of the distributed mode (``mandi service``, ``mandi up``).

    ``url`` defaults to ``$MANDI_REDIS_URL`` (``redis://[user:password@]host:port/db``,
    ``rediss://`` for TLS, ``unix:///path?db=0``; a Redis Cluster by one or more of its nodes,
    ``redis://host:7000,host:7001``). Streams keep ``retention_s`` of each
    timeframe (``MAXLEN ~ retention_s / tf``; the seed's ~3 h), 1 s candle streams
    ``retention_1s_s``; ``latest`` keys live ``latest_ttl_s``.
    """

    url: str = msgspec.field(default_factory=_default_redis_url)
    retention_s: Annotated[int, msgspec.Meta(ge=60)] = 10_800
    retention_1s_s: Annotated[int, msgspec.Meta(ge=60)] = 600
    latest_ttl_s: Annotated[int, msgspec.Meta(ge=1)] = 1800
    consumer: str = ""  # consumer name; "" = "{service}-{hostname}" (stable across restarts)
    read_count: Annotated[int, msgspec.Meta(ge=1)] = 500  # XREADGROUP COUNT (per stream)
    block_ms: Annotated[int, msgspec.Meta(ge=1)] = 500
    claim_idle_ms: Annotated[int, msgspec.Meta(ge=0)] = 30_000  # XAUTOCLAIM of dead consumers
    dead_letter_after: Annotated[int, msgspec.Meta(ge=1)] = 5  # deliveries, then dlq:{group}
    buffer_max: Annotated[int, msgspec.Meta(ge=100)] = 200_000  # messages held while Redis is down
    publish_batch: Annotated[int, msgspec.Meta(ge=1)] = 5_000  # messages per transaction
    connect_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    discover_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    snapshot_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0  # ind:snapshot:engine
    # forming candles (Pub/Sub pub:candle:...) and ticks (pub:tick:...) mdengine publishes
    forming: Literal["none", "underlyings", "all"] = "underlyings"
    ticks: Literal["none", "underlyings", "all"] = "underlyings"
    indicator_streams: bool = True  # confirmed values: XADD+SET+PUBLISH (False: PUBLISH only)
    # horizontal consumers (indengine): instruments in partitions by hash slot, shared by the
    # live members of a group under leases (a dead member's expire after lease_ms)
    partitions: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 16
    lease_ms: Annotated[int, msgspec.Meta(ge=300)] = 10_000
    # a write counts once this many replicas hold it (WAIT): no loss when a master fails over
    wait_replicas: Annotated[int, msgspec.Meta(ge=0, le=16)] = 0
    wait_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 1000
    sweep_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0  # cluster: read every key this often


class ServicesConfig(_Section, frozen=True):
    """``[services]``: where the services of the distributed mode listen and how ``mandi up``
    runs them. Every metrics/health port binds ``host`` (loopback by default)."""

    host: str = "127.0.0.1"
    tickserver_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 9001  # WebSocket
    tickserver_metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9095
    mdengine_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9090  # seed
    mdengine_sim_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9091  # seed
    indengine_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9092
    strategy_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9093
    gateway_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9094  # metrics; web is run.port
    state_dir: str = ".mandi"  # mandi up: PID files, logs, the local redis-server's data
    redis_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 6379  # local redis; 0 = free
    # mandi up --shards N: the cluster's failure detection (a master silent this long fails over)
    cluster_node_timeout_ms: Annotated[int, msgspec.Meta(ge=100)] = 2000
    redis_server: str = "redis-server"
    start: tuple[str, ...] = ("tickserver", "mdengine-sim", "indengine", "strategy", "gateway")
    stop_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 20.0


class BrokerAdapterConfig(_Section, frozen=True):
    """What every ``[broker.NAME]`` section has: where the broker is, the token file and the
    instrument cache, the live feed's subscriptions and health limits, order polling."""

    rest_url: str = ""
    ws_url: str = ""
    token_file: str = ""  # "" = $XDG_CONFIG_HOME/mandi/<name>-session.json (0600)
    cache_dir: str = ""  # instrument masters; "" = $XDG_CACHE_HOME/mandi/<name>
    exchanges: tuple[str, ...] = ("NSE", "NFO", "BSE", "BFO")  # kept from the master
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 7.0  # one REST request
    # live feed: the underlyings (indices, stocks) followed, and ATM +- N strikes of each index
    symbols: tuple[str, ...] = ("NIFTY", "BANKNIFTY")
    strikes_each_side: Annotated[int, msgspec.Meta(ge=0)] = 10
    expiries: Annotated[int, msgspec.Meta(ge=0)] = 1  # nearest N expiries subscribed
    mode: Literal["ltp", "quote", "full"] = "full"
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=3)] = 3
    tokens_per_connection: Annotated[int, msgspec.Meta(ge=1, le=3000)] = 3000
    # feed health: a silent socket, a reconnect storm or stale prices block new entries
    silent_after_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    storm_reconnects: Annotated[int, msgspec.Meta(ge=1)] = 5
    storm_window_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    poll_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 3.0  # order book polling
    expiry_warning_min: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    history_per_second: Annotated[float, msgspec.Meta(gt=0, le=10)] = 3.0


class KiteConfig(BrokerAdapterConfig, frozen=True):
    """``[broker.kite]``: Zerodha Kite Connect v3 (see the README, "Connect your Kite account").

    ``api_secret`` belongs in the environment (``MANDI_BROKER__KITE__API_SECRET``), never in a
    committed file; the daily access token lives in ``token_file`` (0600; "" =
    ``$XDG_CONFIG_HOME/mandi/kite-session.json``), never in the database or the logs."""

    api_key: str = ""
    api_secret: str = ""
    rest_url: str = "https://api.kite.trade"
    ws_url: str = "wss://ws.kite.trade"
    login_url: str = "https://kite.zerodha.com/connect/login"
    freeze_file: str = ""  # NSE's quantity-freeze CSV (SYMBOL, VOL_FRZ_QTY), merged at sync
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=3)] = 3  # Kite: 3 per API key
    tokens_per_connection: Annotated[int, msgspec.Meta(ge=1, le=3000)] = 3000  # Kite: 3,000
    history_per_second: Annotated[float, msgspec.Meta(gt=0, le=3)] = 3.0  # Kite: 3 req/s
    # orders are written from the node's loop over this many kept-alive connections (0: sent
    # by the broker's worker thread through the REST client, as every other request)
    order_connections: Annotated[int, msgspec.Meta(ge=0, le=4)] = 2


class AngelConfig(BrokerAdapterConfig, frozen=True):
    """``[broker.angel]``: Angel One SmartAPI (see the README, "Connect your Angel One account").

    Login takes the client code, the PIN and a TOTP computed from ``totp_secret`` (the base32
    secret shown when TOTP was enabled). ``pin`` and ``totp_secret`` belong in the environment
    (``MANDI_BROKER__ANGEL__PIN``, ``MANDI_BROKER__ANGEL__TOTP_SECRET``), never in a file. The
    JWT, refresh and feed tokens live in ``token_file`` (0600); the JWT is refreshed
    ``refresh_before_min`` before it expires."""

    api_key: str = ""
    client_code: str = ""
    pin: str = ""
    totp_secret: str = ""
    rest_url: str = "https://apiconnect.angelone.in"
    ws_url: str = "wss://smartapisocket.angelone.in/smart-stream"
    scrip_master_url: str = (
        "https://margincalculator.angelone.in/OpenAPI_File/files/OpenAPIScripMaster.json"
    )
    refresh_before_min: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=3)] = 3  # SmartStream: 3 per client
    tokens_per_connection: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000  # 1,000 a session
    heartbeat_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0  # the text "ping" SmartStream wants
    history_per_second: Annotated[float, msgspec.Meta(gt=0, le=3)] = 3.0  # candle API: 3 req/s


class GrowwConfig(BrokerAdapterConfig, frozen=True):
    """``[broker.groww]``: Groww's trading API (see the README, "Connect your Groww account").

    Login mints the daily access token from the API key and either a TOTP (computed from
    ``totp_secret``, the base32 secret behind the TOTP QR code) or the API secret (the approval
    flow, which Groww wants approved once a day on its API keys page); an ``access_token``
    generated on Groww's page can be given instead. Secrets belong in the environment
    (``MANDI_BROKER__GROWW__...``), never in a file. The token lives in ``token_file`` (0600)
    and ends at 06:00 IST; a node still running then logs in again ``refresh_before_min``
    before, when it can (TOTP or secret), else it fails closed."""

    api_key: str = ""
    api_secret: str = ""
    totp_secret: str = ""
    access_token: str = ""
    rest_url: str = "https://api.groww.in"
    ws_url: str = "wss://socket-api.groww.in"
    instruments_url: str = "https://growwapi-assets.groww.in/instruments/instrument.csv"
    refresh_before_min: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    max_connections: Annotated[int, msgspec.Meta(ge=1, le=3)] = 1
    tokens_per_connection: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000  # Groww: 1,000
    heartbeat_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0  # the client's NATS PING
    history_per_second: Annotated[float, msgspec.Meta(gt=0, le=10)] = 5.0


class BrokerConfig(_Section, frozen=True):
    """``[broker]``: the live broker (``name = "kite" | "angel" | "groww" | "paper"``;
    ``mandi run --broker NAME``) and one section per adapter."""

    name: Literal["", "kite", "angel", "groww", "paper"] = ""
    kite: KiteConfig = KiteConfig()
    angel: AngelConfig = AngelConfig()
    groww: GrowwConfig = GrowwConfig()


class NseConfig(_Section, frozen=True):
    """``[nse]``: NSE's (and BSE's) public option chains as a live source (``mandi run --feed
    nse``). NSE's site wants a browser's headers and the cookies its option-chain page sets; it
    is polled no faster than ``min_interval_s`` (a polite floor that a config value cannot go
    under), backing off exponentially up to ``backoff_max_s`` when it blocks or fails."""

    underlyings: tuple[str, ...] = ("NIFTY", "BANKNIFTY")
    bse_underlyings: tuple[str, ...] = ("SENSEX",)
    interval_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    min_interval_s: Annotated[float, msgspec.Meta(ge=3)] = 15.0
    expiries: Annotated[int, msgspec.Meta(ge=1)] = 2  # nearest N expiries of each underlying
    api: Literal["v3", "legacy"] = "v3"  # option-chain-v3 (one expiry a call) or -indices
    url: str = "https://www.nseindia.com"
    bse_url: str = "https://api.bseindia.com"
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    blocked_after: Annotated[int, msgspec.Meta(ge=1)] = 3  # failures in a row: "blocked"
    user_agent: str = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0 Safari/537.36"
    )

    def __post_init__(self) -> None:
        if self.interval_s < self.min_interval_s:
            raise ConfigError(
                "nse.interval_s",
                self.interval_s,
                f"polls NSE faster than the polite minimum of {self.min_interval_s:g} s",
            )


class LogConfig(_Section, frozen=True):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json: bool = False


class AppConfig(_Section, frozen=True):
    run: RunConfig = RunConfig()
    sim: SimConfig = SimConfig()
    store: StoreConfig = StoreConfig()
    pipeline: PipelineConfig = PipelineConfig()
    ticks: TickPolicy = TickPolicy()  # [ticks]: the tick policy (mandi.pipeline.validate)
    indicators: IndicatorsConfig = IndicatorsConfig()
    chains: ChainsConfig = ChainsConfig()
    history: HistoryConfig = HistoryConfig()  # [history]: warm-up sessions before the start
    backup: BackupConfig = BackupConfig()  # [backup]: database copies, daily in mandi run
    notify: NotifyConfig = NotifyConfig()  # [notify]: Telegram / webhook alerts and commands
    webhooks: WebhooksConfig = WebhooksConfig()  # [webhooks]: inbound signal webhooks
    web: WebConfig = WebConfig()
    log: LogConfig = LogConfig()
    trading: TradingConfig = TradingConfig()  # [trading]: signals → orders (mode is run.mode)
    risk: RiskConfig = RiskConfig()  # [risk]: limits, sizing, exits
    strategies: tuple[StrategySpec, ...] | None = None  # [[strategies]]; None = the defaults
    redis: RedisConfig = RedisConfig()  # [redis]: the distributed mode's bus
    services: ServicesConfig = ServicesConfig()  # [services]: ports, mandi up
    backtest: BacktestConfig = BacktestConfig()  # [backtest]: mandi backtest defaults
    broker: BrokerConfig = BrokerConfig()  # [broker]: the live broker and its adapter
    nse: NseConfig = NseConfig()  # [nse]: NSE/BSE option chains polled live (--feed nse)


ENV_PREFIX = "MANDI_"
#: ``MANDI_`` variables that are not settings: read by mandi itself (the Redis URL default, the
#: ClickHouse password, the gateway's command timeout, the dashboard's node_modules) or by its
#: test suite and benchmarks.
OTHER_ENV = frozenset(
    (
        "MANDI_REDIS_URL",
        "MANDI_CLICKHOUSE_PASSWORD",
        "MANDI_GATEWAY_COMMAND_TIMEOUT_S",
        "MANDI_UI_NODE_MODULES",
        "MANDI_CHROMIUM",
    )
)
OTHER_ENV_PREFIXES = ("MANDI_BENCH_", "MANDI_TEST_")
#: Settings that name a file or directory: empty is never what anybody means.
PATH_KEYS = {
    "store.db": "must name the database file (an empty path is a temporary database: orders, "
    "fills and the halt latch would vanish at exit)",
    "services.state_dir": "must name a directory",
}
_PATH_RE = re.compile(r"`\$\.?([^`]*)`")


def setting_keys(struct: Any = None, prefix: str = "") -> list[str]:
    """The dotted key of every setting (``run.speed``, ``trading.strikes.min_oi``, ...)."""
    out = []
    for f in msgspec.structs.fields(struct or AppConfig):
        if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct):
            out += setting_keys(f.type, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def env_name(key: str) -> str:
    """The environment variable of a setting: ``run.speed`` → ``MANDI_RUN__SPEED``."""
    return ENV_PREFIX + key.upper().replace(".", "__")


def _closest_env(name: str) -> str | None:
    names = [env_name(k) for k in setting_keys()] + sorted(OTHER_ENV)
    squeezed = {n.replace("_", ""): n for n in names}  # MANDI_RUN_SPEED ~ MANDI_RUN__SPEED
    hit = squeezed.get(name.replace("_", ""))
    if hit is not None:
        return hit
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return close[0] if close else None


def _check_env_name(name: str) -> None:
    """A ``MANDI_`` variable that does not start with a section is a known non-setting or a
    mistake (its value is never shown: it may be a misspelt secret)."""
    if name in OTHER_ENV or name.startswith(OTHER_ENV_PREFIXES):
        return
    hint = _closest_env(name)
    raise ConfigError(
        name,
        None,
        "names no setting; "
        + (f"did you mean {hint}?" if hint else "settings are MANDI_<SECTION>__<KEY>"),
        show_value=False,
    )


def _check_paths(cfg: AppConfig) -> None:
    for key, reason in PATH_KEYS.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not value.strip():
            raise ConfigError(key, value, reason)


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(dotted, value, f"{p} is not a section")
        node = nxt
    node[parts[-1]] = value


def _lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for p in filter(None, re.split(r"[.\[\]]", dotted)):
        if isinstance(node, Mapping) and p in node:
            node = node[p]
        elif isinstance(node, list | tuple) and p.isdigit() and int(p) < len(node):
            node = node[int(p)]
        else:
            return None
    return node


_SECRET_WORDS = ("secret", "token", "password", "api_key")
_SECRET_KEYS = ("pin", "client_code")  # whole key names (a PIN of digits stays a string)


def _is_secret(dotted: str) -> bool:
    low = dotted.lower()
    return any(w in low for w in _SECRET_WORDS) or low.rsplit(".", 1)[-1] in _SECRET_KEYS


def _parse_env_value(raw: str, dotted: str = "") -> Any:
    """Environment values are TOML scalars/arrays when they parse as such, else strings;
    credentials stay strings as given (a secret of digits is not a number)."""
    if _is_secret(dotted):
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AppConfig:
    """Build the :class:`AppConfig` from file, environment and ``overrides`` (``"run.speed"``
    style keys). Raises :class:`ConfigError` naming the key and the value."""
    tree: dict[str, Any] = {}
    if path is None and os.path.exists("mandi.toml"):
        path = "mandi.toml"
    if path is not None:
        try:
            with open(path, "rb") as f:
                tree = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError("--config", path, "file not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("--config", path, f"not valid TOML ({e})") from None
    for name, raw in (os.environ if env is None else env).items():
        if not name.startswith(ENV_PREFIX):
            continue
        dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        if "__" not in name or dotted.split(".")[0] not in AppConfig.__struct_fields__:
            _check_env_name(name)
            continue
        _set(tree, dotted, _parse_env_value(raw, dotted))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set(tree, dotted, value)
    try:
        cfg = msgspec.convert(tree, AppConfig, strict=False)
    except msgspec.ValidationError as e:
        text = str(e)
        m = _PATH_RE.search(text)
        key = m.group(1) if m else "?"
        reason = text.split(" - at ")[0]
        unknown = re.search(r"unknown field `([^`]*)`", text)
        if unknown:
            key = f"{key}.{unknown.group(1)}" if key else unknown.group(1)
            close = difflib.get_close_matches(key, setting_keys(), n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(key, _shown(tree, key), "unknown key" + hint) from None
        raise ConfigError(key, _shown(tree, key), reason) from None
    _check_paths(cfg)
    return cfg


def _shown(tree: Mapping[str, Any], key: str) -> Any:
    """The value an error message may show: never a credential."""
    return "<hidden>" if _is_secret(key) else _lookup(tree, key)
