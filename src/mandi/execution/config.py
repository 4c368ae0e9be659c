"""``[trading]``: the execution side of the trading kernel (the mode itself is ``run.mode``).

Kept free of heavy imports: ``mandi.config`` loads it for every command."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from mandi.core.money import Rupees

Seconds = Annotated[float, msgspec.Meta(gt=0)]
W = Annotated[float, msgspec.Meta(ge=0)]


class StrikeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[trading.strikes]``: the strike selector (seed defaults)."""

    max_strikes_from_atm: Annotated[int, msgspec.Meta(ge=0)] = 3
    min_volume: Annotated[int, msgspec.Meta(ge=0)] = 100
    min_oi: Annotated[int, msgspec.Meta(ge=0)] = 1000
    weight_distance: W = 0.30
    weight_delta: W = 0.20
    weight_iv_rank: W = 0.15
    weight_liquidity: W = 0.25
    weight_spread: W = 0.10
    max_spread_pct: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    iv_rank_span: Annotated[float, msgspec.Meta(gt=0)] = 0.02
    expiry: Literal["nearest", "monthly"] = "nearest"
    min_days_to_expiry: Annotated[int, msgspec.Meta(ge=0)] = 1  # 1 = never trade expiry day
    risk_free_rate: float = 0.065


class MatchingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[trading.paper]``: how simulated fills happen."""

    price_source: Literal["last", "touch"] = "last"
    slippage_ticks: Annotated[int, msgspec.Meta(ge=0)] = 1
    # with price_source "touch": extra ticks against us when a print has no bid/ask and the
    # order fills at the last price instead
    no_quote_slippage_ticks: Annotated[int, msgspec.Meta(ge=0)] = 1
    participation: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    limit_by_volume: bool = True
    bar_fill: Literal["open", "close"] = "open"


class BrokerageConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[trading.charges]``: brokerage (Zerodha's schedule by default; amounts in rupees) and an
    optional CSV of extra/corrected statutory rate rows."""

    per_order_inr: Rupees = 20.0
    percent: Annotated[float, msgspec.Meta(ge=0, le=5)] = 0.03  # of turnover, futures/intraday
    delivery_inr: Rupees = 0.0
    rates_file: str = ""


class TradingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How signals become orders.

    ``enabled = false`` keeps strategies and signals running but executes nothing (every signal
    is denied with rule ``trading_disabled``). Signals on an index trade its options
    (``options_for_indices``), signals on a stock trade the stock. ``broker`` names the live
    broker and is required by ``run.mode = "live"`` only."""

    enabled: bool = True
    broker: str = ""
    product: Literal["MIS", "NRML", "CNC"] = "MIS"
    order_type: Literal["MARKET", "LIMIT"] = "MARKET"
    limit_offset_ticks: Annotated[int, msgspec.Meta(ge=0)] = 2
    options_for_indices: bool = True
    allow_short: bool = False
    exit_on_opposite_signal: bool = True
    # "stop_orders": once an entry fills, its stop-loss and target rest as a GTT-style OCO pair
    # (SL-M at the stop, LIMIT at the target) at the broker — or in the kernel where the broker
    # cannot hold them — and the position monitor keeps only the time rules (square-off, expiry)
    # and the trailing stop; "monitor": the monitor watches every price and sends a market exit
    exit_orders: Literal["monitor", "stop_orders"] = "monitor"
    # a basket leg that fails (refused, cancelled, unfilled): "unwind" closes what the basket
    # filled and sends nothing more; "complete" still sends the remaining legs
    basket_on_failure: Literal["unwind", "complete"] = "unwind"
    signal_max_age_s: Seconds = 86_400.0
    monitor_interval_s: Seconds = 5.0
    entry_timeout_s: Seconds = 60.0
    resend_max_age_s: Seconds = 60.0
    reconcile_interval_s: Seconds = 5.0
    request_poll_s: Seconds = 0.5
    request_ttl_s: Seconds = 30.0
    strikes: StrikeConfig = StrikeConfig()
    paper: MatchingConfig = MatchingConfig()
    charges: BrokerageConfig = BrokerageConfig()
