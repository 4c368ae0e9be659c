"""The REST API's typed requests and responses (pydantic models), so ``/api/v1/openapi.json``
documents every body a client sends and every body it gets back.

Responses are validated against these models on the way out. Each model names the fields a
client can rely on; ``extra="allow"`` lets a row carry the rest of its stored columns (as it
always did) and routes use ``response_model_exclude_unset``, so a field the API core did not set
is not added as ``null``: the JSON a client sees is exactly what the API core built. Units are the
API's (see :mod:`mandi.web.serialize`): prices and money in rupees, ``time`` ISO 8601 IST, ``t``
Unix seconds.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Num = int | float  # a JSON number: int where the API core sends an int, float where a float

# --- requests -------------------------------------------------------------------------------------


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=200, description="An API token (secret).")


class OrderBody(BaseModel):
    """A manual order through the risk manager (paper or live, as ``run.mode`` says)."""

    model_config = ConfigDict(extra="forbid")
    side: Literal["BUY", "SELL"]
    symbol: str | None = Field(
        None, min_length=1, max_length=64, description="Trading symbol, e.g. NIFTY2641424200CE."
    )
    token: int | None = Field(
        None, ge=0, le=2**40, description="Instrument token (instead of symbol)."
    )
    exchange: Literal["NSE", "BSE"] | None = None
    quantity: int | None = Field(None, gt=0, le=10_000_000, description="Shares (units).")
    lots: int | None = Field(None, gt=0, le=100_000, description="Lots (instead of quantity).")
    order_type: Literal["MARKET", "LIMIT", "SL", "SL-M"] | None = Field(
        None,
        description="MARKET, LIMIT, SL (stop-limit: trigger_price and price) or SL-M (stop-market:"
        " trigger_price); default: SL/SL-M with a trigger_price, else LIMIT with a price, else "
        "MARKET.",
    )
    price: float | None = Field(
        None,
        ge=0,
        le=1e8,
        description="Limit price in rupees: a positive multiple of the instrument's tick size "
        "(never rounded; the error names the nearest valid prices). Omit it for a market order.",
    )
    trigger_price: float | None = Field(
        None,
        gt=0,
        le=1e8,
        description="Stop trigger in rupees (SL / SL-M): a BUY stop fires when the last price "
        "rises to it, a SELL stop when it falls to it; one the market already passed is refused.",
    )
    request_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Idempotency key: the same id never places a second order.",
    )


class SeedOrderBody(BaseModel):
    """The seed's ``/api/place_order`` body (``action``/``qty`` accepted as aliases)."""

    model_config = ConfigDict(extra="ignore")
    side: Literal["BUY", "SELL"] | None = None
    action: Literal["BUY", "SELL"] | None = None
    symbol: str | None = Field(None, min_length=1, max_length=64)
    token: int | None = Field(None, ge=0, le=2**40)
    exchange: Literal["NSE", "BSE"] | None = None
    quantity: int | None = Field(None, gt=0, le=10_000_000)
    qty: int | None = Field(None, gt=0, le=10_000_000)
    lots: int | None = Field(None, gt=0, le=100_000)
    order_type: Literal["MARKET", "LIMIT"] | None = None
    price: float | None = Field(None, ge=0, le=1e8)
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=200)


# --- responses ------------------------------------------------------------------------------------


class Out(BaseModel):
    """A response object: the named fields, plus any further columns of the row it shows."""

    model_config = ConfigDict(extra="allow")


class ErrorOut(Out):
    """Every error: a stable code, a sentence, and for bad input the field (never the value)."""

    error: str = Field(description="Stable code, e.g. invalid_parameter, risk_denied.")
    message: str
    field: str | None = Field(None, description="Dotted name: query.timeframe, body.price.")
    errors: list[dict[str, str]] | None = None
    retry_after_s: float | None = None


class HealthOut(Out):
    status: str
    version: str
    uptime_s: float
    feed: str | None
    mode: str
    trading: bool
    exchange_time: str | None


class PrincipalOut(Out):
    token_id: str
    name: str
    scope: Literal["read", "trade"]
    via: str


class LoginOut(PrincipalOut):
    csrf_token: str = Field(description="Send it as X-CSRF-Token on state changes.")


class LogoutOut(Out):
    logged_out: bool


class SessionOut(Out):
    authenticated: bool
    token_id: str | None = None
    name: str | None = None
    scope: str | None = None
    via: str | None = None
    csrf_token: str | None = None


class LagsOut(Out):
    tick_queue_batches: int
    writer_pending_rows: int
    writer_last_flush_ms: Num
    exchange_time_behind_wall_s: Num | None


class RiskOut(Out):
    """The risk state: the HALTED latch, denials by rule, the recent denials."""

    trading: bool = Field(description="False when trading does not run in this node.")
    mode: str | None = None
    halted: bool | None = None
    halt_reason: str | None = None
    halt_source: str | None = None
    denials: dict[str, int] | None = None
    last_denial: dict[str, Any] | None = None
    recent_denials: list[dict[str, Any]] | None = None


class LatchOut(RiskOut):
    """The risk state after a halt or resume."""

    changed: bool = Field(description="False when the latch already was in that state.")
    trading: bool | None = None  # type: ignore[assignment]


class StatusOut(Out):
    """What the status line shows, and more: counters, queues, lags, drops, rejects, risk and
    trading state, the WebSocket fan-out."""

    exchange_time: str
    ticks_in: int
    ticks_per_s: Num
    candles_confirmed: dict[str, int]
    rows_written: dict[str, int]
    tick_queue: int
    writer_pending_rows: int
    dropped_queue_ticks: int
    dropped_writer_rows: int
    rejected_ticks: dict[str, int] = Field(description="Rejected ticks per reason, all feeds.")
    rejected_by_feed: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Rejected ticks (the tick policy) and feed input that was no tick "
        "(malformed, malformed_frame), per feed and reason.",
    )
    handler_errors: int
    writer_errors: int
    writer_failing: bool = Field(
        description="True while the SQLite writer cannot write (storage failed; entries halt)."
    )
    writer_last_error: str = Field(description="Why it cannot write (empty when it can).")
    quarantined_rows: int = Field(description="Rows SQLite refused, kept in the rejects table.")
    last_flush_ms: Num
    indices: dict[str, Num | None]
    feed: str | None
    mode: str
    speed: Num | str
    lags: LagsOut
    risk: RiskOut
    trading: dict[str, Any] | None = None
    chains: dict[str, Any] | None = None
    web: dict[str, Any] | None = None


class InstrumentOut(Out):
    token: int
    exchange: str
    symbol: str
    name: str
    kind: Literal["index", "equity", "future", "option"]
    segment: str
    lot_size: int
    tick_size: Num | None = Field(description="Rupees.")
    freeze_qty: int
    tradable: bool
    underlying: str | None = None
    expiry: str | None = None
    strike: Num | None = None
    option_type: str | None = None


class InstrumentsOut(Out):
    total: int
    offset: int
    instruments: list[InstrumentOut]


class UnderlyingOut(Out):
    symbol: str
    exchange: str
    token: int
    expiries: list[str]


class OverviewOut(Out):
    """The info bar of one underlying (analytics fields when its chain is live)."""

    underlying: str
    exchange: str
    token: int
    price: Num | None
    previous_close: Num | None
    change_basis: str
    change: Num | None
    change_pct: Num | None
    vix: Num | None
    time: str | None
    expiry: str | None = None
    pcr: Num | None = None
    pcr_volume: Num | None = None
    max_pain: Num | None = None
    atm_strike: Num | None = None
    atm_iv: Num | None = None
    itm_ce_delta_pct: Num | None = None
    itm_pe_delta_pct: Num | None = None
    total_ce_oi: Num | None = None
    total_pe_oi: Num | None = None


class CandleOut(Out):
    token: int
    exchange: str
    timeframe: int
    time: str | None
    t: int
    open: Num | None
    high: Num | None
    low: Num | None
    close: Num | None
    volume: int
    oi: int
    ticks: int
    closed: bool


class CandlesOut(Out):
    instrument: InstrumentOut
    timeframe: int
    candles: list[CandleOut]


class IndicatorPoint(Out):
    t: int
    time: str | None
    value: Num | None


class IndicatorsOut(Out):
    token: int
    timeframe: int
    available: list[str]
    series: dict[str, list[IndicatorPoint]]


class ChainSideOut(Out):
    """One side (CE or PE) of a strike: prices in rupees, OI and volume in contracts."""

    ltp: Num | None = None
    bid: Num | None = None
    ask: Num | None = None
    volume: Num | None = None
    oi: Num | None = None
    oi_change: Num | None = None
    iv: Num | None = None
    delta: Num | None = None
    gamma: Num | None = None
    theta: Num | None = None
    vega: Num | None = None
    theoretical: Num | None = None
    price_diff: Num | None = None
    highlight: int | None = None
    moneyness: str | None = None
    status: str | None = None
    oi_change_pct: dict[str, Num | None] | None = None
    token: int | None = None
    symbol: str | None = None


class ChainRowOut(Out):
    strike: Num | None
    ce: ChainSideOut | None
    pe: ChainSideOut | None
    atm: bool | None = None
    max_pain: bool | None = None


class ChainOut(Out):
    """The chain table: live from the matrix (``live`` true, with analytics) or the newest
    stored snapshot (``live`` false, prices, OI and IV only)."""

    underlying: str
    exchange: str
    expiry: str
    time: str | None
    t: Num | None
    live: bool
    underlying_price: Num | None
    rows: list[ChainRowOut]
    summary: OverviewOut
    atm_strike: Num | None = None
    atm_iv: Num | None = None
    strike_step: Num | None = None
    max_pain: Num | None = None
    pcr_oi: Num | None = None
    pcr_volume: Num | None = None
    oi_windows_minutes: list[int] | None = None
    time_to_expiry_years: Num | None = None
    totals: dict[str, Num | None] | None = None
    itm_ce_delta_pct: Num | None = None
    itm_pe_delta_pct: Num | None = None
    thresholds: dict[str, Num] | None = None
    lot_size: int | None = None
    source: str | None = None


class SignalOut(Out):
    """A signal (a stored row, or the bus message before it is stored) with the alpha card."""

    signal_id: str | None = None
    strategy: str | None = None
    action: str | None = None
    symbol: str | None = None
    token: int | None = None
    price: Num | None = None
    confidence: Num | None = None
    status: str | None = None
    time: str | None = None
    timestamp: str | None = None
    alpha_signal: str | None = None
    alpha_confidence: Num | None = None
    alpha_probabilities: dict[str, Num | None] | None = None
    alpha_model: str | None = None  # an ML strategy's model (name and training date)
    alpha_model_date: str | None = None


class OrderOut(Out):
    """An order (slice): its state, fills and charges."""

    order_id: str
    client_order_id: str | None = None
    parent_id: str | None = None
    symbol: str | None = None
    side: str | None = None
    quantity: int | None = None
    order_type: str | None = None
    price: Num | None = None
    status: str | None = None
    filled_qty: int | None = None
    avg_price: Num | None = None
    charges: Num | None = None
    timestamp: str | None = None


class PositionOut(Out):
    """A position with the signed quantity, lots, P&L % and MTM spelled out."""

    position_id: str
    symbol: str | None = None
    status: str | None = None
    side: Literal["LONG", "SHORT"]
    net_quantity: int
    lots: Num
    pnl: Num | None
    pnl_pct: Num | None
    mtm: Num | None
    entry_premium: Num | None = None
    current_premium: Num | None = None
    entry_timestamp: str | None = None


class PositionsOut(Out):
    positions: list[PositionOut]


class PnlOut(Out):
    mode: str | None
    halted: bool | None
    halt_reason: str | None
    realized_pnl: Num | None
    unrealized_pnl: Num | None
    day_pnl: Num | None
    charges: Num | None
    fills: int | None
    orders_sent: int | None
    signals: int | None
    open_positions: int


class DailyOut(Out):
    date: str
    net_pnl: Num | None = None
    total_trades: int | None = None
    winning_trades: int | None = None
    losing_trades: int | None = None
    win_rate_pct: Num | None = None


class TradeOut(Out):
    symbol: str | None = None
    strategy: str | None = None
    quantity: int | None = None
    entry_time: str | None = None
    exit_time: str | None = None
    entry_price: Num | None = None
    exit_price: Num | None = None
    pnl: Num | None = None
    charges: Num | None = None
    exit_reason: str | None = None


class OrderPlacedOut(Out):
    request_id: str
    symbol: str
    exchange: str
    token: int
    side: Literal["BUY", "SELL"]
    quantity: int
    price: Num | None = Field(description="The limit price (rupees); null for a market order.")
    order_type: Literal["MARKET", "LIMIT", "SL", "SL-M"]
    trigger_price: Num | None = Field(None, description="The stop trigger (rupees): SL, SL-M.")
    status: Literal["ACCEPTED", "LOGGED"]
    reason: str
    order_ids: list[str]


class SeedOrderPlacedOut(OrderPlacedOut):
    success: bool
    message: str


class CancelOut(Out):
    order_id: str
    cancel_requested: bool


class BacktestRunOut(Out):
    """A stored backtest run (``mandi backtest --save``): money in rupees, times ISO IST."""

    run_id: str
    created_at: str | None
    strategy: str
    symbols: list[str]
    timeframe: int
    engine: str
    params: dict[str, Any]
    data_start: str | None
    data_end: str | None
    initial_value: Num | None
    final_value: Num | None
    total_return: Num | None
    sharpe: Num | None
    max_drawdown: Num | None
    trades: int


class BacktestTradeOut(Out):
    seq: int
    symbol: str
    strategy: str
    side: str
    quantity: int
    entry_time: str | None
    exit_time: str | None
    entry_price: Num | None
    exit_price: Num | None
    charges: Num | None
    pnl: Num | None
    exit_reason: str


class BacktestRunsOut(Out):
    runs: list[BacktestRunOut]


class BacktestDetailOut(BacktestRunOut):
    stats: dict[str, Any]
    equity: list[dict[str, Any]] = Field(description="[{time, t, value}] (rupees), thinned.")
    trade_list: list[BacktestTradeOut]


# --- options: baskets, payoff, volatility and OI views ---------------------------------------


class BasketLegIn(BaseModel):
    """One leg of a basket: a contract, a side, and ``quantity`` (units) or ``lots``."""

    model_config = ConfigDict(extra="forbid")
    symbol: str = Field(min_length=1, max_length=64, description="e.g. NIFTY2641424200CE")
    side: Literal["BUY", "SELL"]
    exchange: Literal["NSE", "BSE"] | None = None
    quantity: int | None = Field(None, gt=0, le=10_000_000, description="Units (a lot multiple).")
    lots: int | None = Field(None, gt=0, le=100_000, description="Lots (instead of quantity).")
    price: float | None = Field(
        None, gt=0, le=1e8, description="Entry price in rupees (default: the market's touch)."
    )


class PayoffBody(BaseModel):
    """A structure to analyse at the current market (nothing is placed)."""

    model_config = ConfigDict(extra="forbid")
    legs: list[BasketLegIn] = Field(min_length=1, max_length=20)
    template: str = Field("custom", max_length=40, description="custom, or a template name.")
    spot: float | None = Field(None, gt=0, le=1e8, description="What-if underlying (rupees).")
    horizon_days: float = Field(0.0, ge=0, le=3650, description="Days ahead for the today curve.")
    iv_shift: float = Field(0.0, ge=-50, le=200, description="What-if IV change, vol points.")
    points: int = Field(200, ge=20, le=2000, description="Grid points of the curves.")


class BookPayoffBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spot: float | None = Field(None, gt=0, le=1e8)
    horizon_days: float = Field(0.0, ge=0, le=3650)
    iv_shift: float = Field(0.0, ge=-50, le=200)
    points: int = Field(200, ge=20, le=2000)


class TemplateOut(Out):
    name: str
    description: str
    legs: int
    default_side: str
    offset: int
    width: int
    expiries: int


class BasketLegOut(Out):
    symbol: str
    side: str
    quantity: int
    lots: int
    strike: Num | None = None
    option_type: str | None = None
    expiry: str | None = None


class BasketOut(Out):
    underlying: str
    template: str
    expiry: str
    legs: list[BasketLegOut]


class PayoffCurveOut(Out):
    spots: list[Num]
    at_expiry: list[Num]
    today: list[Num]
    delta: list[Num | None]


class PayoffOut(Out):
    """Payoff at expiry and today, breakevens, extremes (``null`` = unbounded), probability of
    profit, net Greeks, the margin estimate with the hedge benefit (rupees)."""

    underlying: str
    spot: Num
    legs: list[BasketLegOut]
    curve: PayoffCurveOut
    breakevens: list[Num]
    max_profit: Num | None
    max_loss: Num | None
    pop: Num | None
    net_premium: Num
    greeks: dict[str, Num | None]
    margin: dict[str, Num | None]
    worst_case: Num | None


class SmileOut(Out):
    underlying: str
    expiry: str
    live: bool
    points: list[dict[str, Num | None]]


class TermStructureOut(Out):
    underlying: str
    live: bool
    points: list[dict[str, Any]]


class IVRankOut(Out):
    underlying: str
    iv: Num | None
    rank: Num | None
    percentile: Num | None
    basis: Literal["days", "snapshots"]
    observations: int
    history: list[dict[str, Any]]


class SeriesOut(Out):
    """A series through the day (``points`` oldest first, each with ``t`` and ``time``)."""

    underlying: str
    points: list[dict[str, Any]]


class OIOut(Out):
    underlying: str
    expiry: str
    live: bool
    rows: list[dict[str, Num | None]]


class BasketBody(BaseModel):
    """A basket to place as one structure (trade scope)."""

    model_config = ConfigDict(extra="forbid")
    legs: list[BasketLegIn] = Field(min_length=1, max_length=20)
    template: str = Field("custom", max_length=40, description="custom, or a template name.")
    policy: Literal["unwind", "complete"] | None = Field(
        None, description="When a leg fails: unwind what filled, or complete the rest."
    )
    request_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")


class BasketPlacedOut(Out):
    request_id: str
    basket_id: str
    status: Literal["ACCEPTED", "LOGGED"]
    legs: list[BasketLegOut]
    risk: dict[str, Any]


class BasketStatusOut(Out):
    basket_id: str
    status: str
    policy: str
    legs: list[dict[str, Any]]
