"""``[risk]``: limits, sizing and exit rules (seed defaults). Amounts are in rupees in the config
(``*_inr``) and become int paise in :class:`RiskLimits`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal

import msgspec

from mandi.core.calendar import MARKET_CLOSE, Session, calendar
from mandi.core.errors import ConfigError
from mandi.core.money import Rupees, to_paise

Pct = Annotated[float, msgspec.Meta(ge=0, le=100)]
Inr = Rupees


class RiskConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The risk manager's limits. Seed defaults: max 3 concurrent positions, 2 % of capital at risk
    per trade, ₹50,000 per order/position, ₹2,00,000 total exposure, stop-loss/target 2 %/5 % for
    equities and 30 %/60 % of the premium for options, intraday square-off at 15:15, a
    ≤ 10 orders/s per exchange segment rate limit (SEBI)."""

    capital_inr: Inr = 500_000.0
    max_daily_loss_inr: Inr = 25_000.0
    max_order_value_inr: Inr = 50_000.0
    max_position_value_inr: Inr = 50_000.0
    max_total_exposure_inr: Inr = 200_000.0
    max_concurrent_positions: Annotated[int, msgspec.Meta(ge=0)] = 3
    sizing: Literal["risk_percent", "fixed_amount"] = "risk_percent"
    risk_per_trade_pct: Pct = 2.0
    fixed_amount_inr: Inr = 10_000.0
    max_position_pct: Pct = 10.0
    margin_pct: Annotated[float, msgspec.Meta(gt=0, le=100)] = 20.0  # futures and shorts
    orders_per_second: Annotated[int, msgspec.Meta(ge=1)] = 10  # per exchange segment (SEBI)
    orders_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 120
    orders_per_day: Annotated[int, msgspec.Meta(ge=1)] = 1000
    max_queued_orders: Annotated[int, msgspec.Meta(ge=1)] = 200
    max_slices: Annotated[int, msgspec.Meta(ge=1, le=10)] = 10
    stale_after_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    limit_band_pct: Annotated[float, msgspec.Meta(gt=0, le=100)] = 20.0
    equity_stop_loss_pct: Pct = 2.0
    equity_target_pct: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    option_stop_loss_pct: Pct = 30.0
    option_target_pct: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    trailing_stop_pct: Pct = 0.0  # 0 = off
    expiry_exit_minutes: Annotated[int, msgspec.Meta(ge=0)] = 60
    square_off: str = "15:15"  # IST; intraday (MIS) positions are closed from here on
    entry_cutoff: str = "15:15"  # IST; no new entries from here on
    halt_allows_exits: bool = True
    flatten_on_halt: bool = False
    max_exit_attempts: Annotated[int, msgspec.Meta(ge=1)] = 5


def _time(key: str, text: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"risk.{key}", text, "expected an IST time of day HH:MM") from None


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """:class:`RiskConfig` in kernel units (paise, ns, fractions)."""

    capital: int
    max_daily_loss: int
    max_order_value: int
    max_position_value: int
    max_total_exposure: int
    max_concurrent_positions: int
    sizing: str
    risk_per_trade: float
    fixed_amount: int
    max_position_fraction: float
    margin_fraction: float
    orders_per_second: int
    orders_per_minute: int
    orders_per_day: int
    max_queued_orders: int
    max_slices: int
    stale_after_ns: int
    limit_band: float
    equity_stop_loss: float
    equity_target: float
    option_stop_loss: float
    option_target: float
    trailing_stop: float
    expiry_exit_ns: int
    square_off: dt.time
    entry_cutoff: dt.time
    halt_allows_exits: bool
    flatten_on_halt: bool
    max_exit_attempts: int

    @classmethod
    def from_config(cls, c: RiskConfig) -> RiskLimits:
        return cls(
            capital=to_paise(c.capital_inr),
            max_daily_loss=to_paise(c.max_daily_loss_inr),
            max_order_value=to_paise(c.max_order_value_inr),
            max_position_value=to_paise(c.max_position_value_inr),
            max_total_exposure=to_paise(c.max_total_exposure_inr),
            max_concurrent_positions=c.max_concurrent_positions,
            sizing=c.sizing,
            risk_per_trade=c.risk_per_trade_pct / 100,
            fixed_amount=to_paise(c.fixed_amount_inr),
            max_position_fraction=c.max_position_pct / 100,
            margin_fraction=c.margin_pct / 100,
            orders_per_second=c.orders_per_second,
            orders_per_minute=c.orders_per_minute,
            orders_per_day=c.orders_per_day,
            max_queued_orders=c.max_queued_orders,
            max_slices=c.max_slices,
            stale_after_ns=int(c.stale_after_s * 1e9),
            limit_band=c.limit_band_pct / 100,
            equity_stop_loss=c.equity_stop_loss_pct / 100,
            equity_target=c.equity_target_pct / 100,
            option_stop_loss=c.option_stop_loss_pct / 100,
            option_target=c.option_target_pct / 100,
            trailing_stop=c.trailing_stop_pct / 100,
            expiry_exit_ns=c.expiry_exit_minutes * 60 * 1_000_000_000,
            square_off=_time("square_off", c.square_off),
            entry_cutoff=_time("entry_cutoff", c.entry_cutoff),
            halt_allows_exits=c.halt_allows_exits,
            flatten_on_halt=c.flatten_on_halt,
            max_exit_attempts=c.max_exit_attempts,
        )


@lru_cache(maxsize=256)
def session_for(exchange: str, day_index: int) -> Session | None:
    """The session of an IST day (days since the epoch), cached: the calendar is fixed data."""
    cal = calendar(exchange if exchange in ("NSE", "BSE") else "NSE")
    return cal.session(dt.date(1970, 1, 1) + dt.timedelta(days=day_index))


def before_close_ns(session: Session, at: dt.time) -> int:
    """The moment as long before ``session``'s close as ``at`` is before the normal 15:30 close:
    15:15 on a normal day, 14:30 in a Muhurat session closing at 14:45, 18:45 in one closing at
    19:00 — so square-off and entry cut-off follow special sessions."""
    lead = (MARKET_CLOSE.hour * 3600 + MARKET_CLOSE.minute * 60) - (
        at.hour * 3600 + at.minute * 60 + at.second
    )
    return session.close_ns - lead * 1_000_000_000
