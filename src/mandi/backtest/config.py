"""``[backtest]``: how a backtest runs — cash, quantity, costs, the bar fill model — and how it
maps onto the kernel's own ``[risk]`` and ``[trading]`` settings.

A backtest runs the very kernel ``mandi run`` runs, so its behaviour is set by the same
:class:`~mandi.risk.config.RiskConfig` and :class:`~mandi.execution.config.TradingConfig`:

* given a config file (``mandi backtest --config mandi.toml``), its ``[risk]`` and ``[trading]``
  sections are used as they are — the live risk limits, stops, sizing and charges — with only the
  fields named below overridden by the backtest's own settings;
* without one, :func:`default_risk` gives limits that scale with ``cash`` and do not get in the way
  of a plain signal backtest (no stop-loss/target on equities unless asked for, positions sized
  by ``quantity`` or as a fixed amount of the cash).

Kept free of heavy imports (``mandi.config`` may load it).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from mandi.core.money import MAX_CONFIG_INR, Rupees
from mandi.execution.config import BrokerageConfig, MatchingConfig, TradingConfig
from mandi.risk.config import RiskConfig

Pct = Annotated[float, msgspec.Meta(ge=0, le=100)]
DAY_S = 86_400


class BacktestConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The backtest's own settings.

    Fill model (bar data) — see :mod:`mandi.backtest.engine`: ``fill = "open"`` fills market
    orders at the next bar's open (the default; no look-ahead), ``"close"`` at the close of the
    bar whose completion produced the signal (the optimistic "market on close" model).
    ``slippage_ticks`` moves every simulated fill against us by whole ticks.
    ``calendar_rules`` applies the exchange-hours, holiday and entry-cutoff rules of the risk
    manager (``auto``: on for intraday bars, off for daily and longer bars, whose decisions are
    made after the close). ``product`` ``auto`` is ``MIS`` (intraday, squared off at
    ``risk.square_off``) for intraday bars and ``CNC`` (delivery) for daily bars.
    """

    cash_inr: Annotated[float, msgspec.Meta(gt=0, le=MAX_CONFIG_INR)] = 1_000_000.0
    quantity: Annotated[int, msgspec.Meta(ge=0)] = 0  # 0 = the risk manager's sizing
    commission_inr: Rupees | None = None  # brokerage per order
    charges: Literal["india", "none"] = "india"
    slippage_ticks: Annotated[int, msgspec.Meta(ge=0)] = 0
    fill: Literal["open", "close"] = "open"
    product: Literal["auto", "MIS", "NRML", "CNC"] = "auto"
    allow_short: bool = False
    stop_loss_pct: Pct | None = None
    target_pct: Annotated[float, msgspec.Meta(ge=0)] | None = None
    trailing_stop_pct: Pct | None = None
    calendar_rules: Literal["auto", "on", "off"] = "auto"
    max_positions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    close_at_end: bool = False  # close what is still open at the last bar's close
    lot_size: Annotated[int, msgspec.Meta(ge=1)] = 1  # for instruments built from plain files
    tick_size_paise: Annotated[int, msgspec.Meta(ge=1)] = 5

    def product_for(self, timeframe: int) -> str:
        if self.product != "auto":
            return self.product
        return "CNC" if timeframe >= DAY_S else "MIS"

    def calendar_for(self, timeframe: int) -> bool:
        if self.calendar_rules != "auto":
            return self.calendar_rules == "on"
        return timeframe < DAY_S


def default_risk(cash_inr: float) -> RiskConfig:
    """Limits for a backtest without a config file: everything scales with ``cash``; no equity
    stop-loss/target (exits come from the strategy's signals) unless asked for."""
    return RiskConfig(
        capital_inr=cash_inr,
        max_daily_loss_inr=cash_inr,
        max_order_value_inr=cash_inr,
        max_position_value_inr=cash_inr,
        max_total_exposure_inr=cash_inr * 10,
        max_concurrent_positions=10,
        sizing="fixed_amount",
        fixed_amount_inr=cash_inr,
        max_position_pct=100.0,
        equity_stop_loss_pct=0.0,
        equity_target_pct=0.0,
        orders_per_day=100_000,
        orders_per_minute=10_000,
        stale_after_s=10 * DAY_S,
    )


def kernel_configs(
    bt: BacktestConfig,
    timeframe: int,
    risk: RiskConfig | None = None,
    trading: TradingConfig | None = None,
) -> tuple[RiskConfig, TradingConfig]:
    """The kernel's (risk, trading) settings for a backtest on ``timeframe``-second bars."""
    r = risk if risk is not None else default_risk(bt.cash_inr)
    upd: dict[str, object] = {"capital_inr": bt.cash_inr}
    if bt.stop_loss_pct is not None:
        upd["equity_stop_loss_pct"] = bt.stop_loss_pct
    if bt.target_pct is not None:
        upd["equity_target_pct"] = bt.target_pct
    if bt.trailing_stop_pct is not None:
        upd["trailing_stop_pct"] = bt.trailing_stop_pct
    if bt.max_positions is not None:
        upd["max_concurrent_positions"] = bt.max_positions
    if timeframe >= 60:  # bar data: the last price is as old as the bar
        upd["stale_after_s"] = max(r.stale_after_s, 2.0 * timeframe)
    r = msgspec.structs.replace(r, **upd)
    t = trading or TradingConfig()
    charges = t.charges
    if bt.commission_inr is not None:
        # a flat amount per executed order, in every segment
        charges = msgspec.structs.replace(
            charges, per_order_inr=bt.commission_inr, percent=0.0, delivery_inr=bt.commission_inr
        )
    t = msgspec.structs.replace(
        t,
        product=bt.product_for(timeframe),
        allow_short=bt.allow_short,
        options_for_indices=False,
        # a bar's market order waits for the next bar, which may be the next day
        entry_timeout_s=max(t.entry_timeout_s, 10.0 * DAY_S),
        resend_max_age_s=max(t.resend_max_age_s, 10.0 * DAY_S),
        paper=MatchingConfig(
            price_source=t.paper.price_source,
            slippage_ticks=bt.slippage_ticks,
            no_quote_slippage_ticks=t.paper.no_quote_slippage_ticks,
            participation=t.paper.participation,
            limit_by_volume=t.paper.limit_by_volume,
            bar_fill="open",
        ),
        charges=BrokerageConfig(
            per_order_inr=charges.per_order_inr,
            percent=charges.percent,
            delivery_inr=charges.delivery_inr,
            rates_file=charges.rates_file,
        ),
    )
    return r, t
