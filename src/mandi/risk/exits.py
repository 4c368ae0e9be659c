"""Exit rules: stop-loss, target, trailing stop, expiry approaching, intraday square-off.

Levels are percentages of the entry price (seed: 2 %/5 % for equities and futures, 30 %/+60 % of
the premium for options); :func:`exit_reason` is evaluated by the position monitor on every tick of
the instrument and every ``monitor_interval_s`` of the clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mandi.core.calendar import IST_OFFSET_NS, NS_PER_DAY, calendar
from mandi.core.money import round_to_tick
from mandi.risk.config import RiskLimits, before_close_ns, session_for

STOP_LOSS = "STOP_LOSS_HIT"
TARGET = "TARGET_REACHED"
TRAILING = "TRAILING_STOP"
EXPIRY = "EXPIRY_APPROACHING"
SQUARE_OFF = "INTRADAY_SQUARE_OFF"
SIGNAL = "OPPOSITE_SIGNAL"
FLAT = "EXIT_SIGNAL"  # the strategy asked to go flat (Strategy.close, an ML neutral prediction)
MANUAL = "MANUAL"
HALT = "HALTED"


def levels(
    limits: RiskLimits, *, entry: int, direction: int, is_option: bool, tick: int
) -> tuple[int, int]:
    """(stop-loss, target) prices for an entry at ``entry`` paise, on the tick grid."""
    sl, tg = (
        (limits.option_stop_loss, limits.option_target)
        if is_option
        else (limits.equity_stop_loss, limits.equity_target)
    )
    tick = max(tick, 1)
    if direction > 0:
        stop = round_to_tick(int(entry * (1 - sl)), tick, "down") if sl > 0 else 0
        target = round_to_tick(int(entry * (1 + tg) + 0.5), tick, "up") if tg > 0 else 0
    else:
        stop = round_to_tick(int(entry * (1 + sl) + 0.5), tick, "up") if sl > 0 else 0
        target = round_to_tick(int(entry * (1 - tg)), tick, "down") if tg > 0 else 0
    return max(stop, 0), max(target, 0)


@dataclass(frozen=True, slots=True)
class ExitCheck:
    """What the monitor knows about one open position."""

    direction: int
    price: int  # the latest price of the instrument
    stop_loss: int  # 0 = none
    target: int  # 0 = none
    high_water: int  # best price since entry (highest for longs, lowest for shorts)
    intraday: bool
    expiry: dt.date | None
    exchange: str = "NSE"


def trailing_stop(limits: RiskLimits, direction: int, high_water: int) -> int:
    if limits.trailing_stop <= 0 or high_water <= 0:
        return 0
    f = 1 - limits.trailing_stop if direction > 0 else 1 + limits.trailing_stop
    return int(high_water * f)


def exit_reason(limits: RiskLimits, p: ExitCheck, now_ns: int) -> str | None:
    """The reason to close now, or None. Time rules come first (they close regardless of price),
    then the stop (a trailing stop above the initial one is reported as ``TRAILING_STOP``), then
    the target."""
    if p.intraday:
        session = session_for(p.exchange, (now_ns + IST_OFFSET_NS) // NS_PER_DAY)
        if session is not None and now_ns >= before_close_ns(session, limits.square_off):
            return SQUARE_OFF
    if p.expiry is not None and limits.expiry_exit_ns > 0:
        cal = calendar(p.exchange if p.exchange in ("NSE", "BSE") else "NSE")
        if cal.expiry_ns(p.expiry) - now_ns <= limits.expiry_exit_ns:
            return EXPIRY
    if p.price <= 0:
        return None
    trail = trailing_stop(limits, p.direction, p.high_water)
    if p.direction > 0:
        if trail and trail > p.stop_loss and p.price <= trail:
            return TRAILING
        if p.stop_loss and p.price <= p.stop_loss:
            return STOP_LOSS
        if p.target and p.price >= p.target:
            return TARGET
    else:
        if trail and (not p.stop_loss or trail < p.stop_loss) and p.price >= trail:
            return TRAILING
        if p.stop_loss and p.price >= p.stop_loss:
            return STOP_LOSS
        if p.target and p.price <= p.target:
            return TARGET
    return None
