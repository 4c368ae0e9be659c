"""Order-rate pacing (≤ 10 orders in any one-second window), position sizing and exit rules."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from mandi.core.calendar import ist_ns
from mandi.model.orders import Side
from mandi.risk.config import RiskConfig, RiskLimits
from mandi.risk.exits import ExitCheck, exit_reason, levels
from mandi.risk.ratelimit import OrderRateLimiter
from mandi.risk.sizing import size_entry

from ..execution.kit import RELIANCE, Kit

S = 1_000_000_000
LIMITS = RiskLimits.from_config(RiskConfig())
DAY = dt.date(2026, 4, 15)


def max_in_any_window(times: list[int], window: int = S) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


@given(st.lists(st.integers(0, 5 * S), min_size=1, max_size=200))
def test_the_limiter_never_lets_more_than_ten_through_in_any_second(arrivals: list[int]) -> None:
    lim = OrderRateLimiter(10, 10**6, 10**6)
    sent, queue = [], sorted(arrivals)
    now = 0
    while queue:  # a router: sends what it may, waits for the next slot
        now = max(now, queue[0])
        if lim.try_acquire("NSE:NFO-OPT", now):
            sent.append(now)
            queue.pop(0)
        else:
            now = lim.next_slot("NSE:NFO-OPT", now)
    assert len(sent) == len(arrivals)
    assert max_in_any_window(sent) <= 10


def test_segments_are_limited_separately_and_caps_count_all():
    lim = OrderRateLimiter(10, 15, 1000)
    for i in range(10):
        assert lim.try_acquire("NSE:NFO-OPT", i)
        assert lim.try_acquire("BSE:BFO-OPT", i) if i < 5 else True
    assert not lim.try_acquire("NSE:NFO-OPT", 10)
    assert lim.next_slot("NSE:NFO-OPT", 10) == S  # the first send leaves the window at t + 1 s
    assert lim.sent_last_minute(20) == 15
    assert lim.sent_last_minute(60 * S + 5) == 4  # only the sends after t = 5 ns remain
    assert lim.sent_today(20) == 15


def test_a_burst_of_50_orders_is_paced_at_ten_per_second():
    risk = RiskConfig(
        max_concurrent_positions=100,
        orders_per_minute=1000,
        max_order_value_inr=10**7,
        max_position_value_inr=10**7,
        max_total_exposure_inr=10**8,
    )
    k = Kit(risk=risk).start()
    k.kernel.orders.record_send_times = True
    k.tick(RELIANCE, 1400.0, qty=100_000)
    for i in range(50):
        res = k.kernel.execution.handle_manual(f"burst-{i}", "RELIANCE", Side.BUY, 1)
        assert res.status == "ACCEPTED", res
    assert len(k.kernel.orders.send_times) == 10 and len(k.kernel.orders.queue) == 40
    for _ in range(80):  # the market goes on; every tick lets the router send what it may
        k.tick(RELIANCE, 1400.0, qty=100_000, dt_s=0.1)
    times = [t for _, t in k.kernel.orders.send_times]
    assert len(times) == 50 and not k.kernel.orders.queue
    assert max_in_any_window(times) == 10
    assert len(k.store.fills) == 50  # nothing lost on the way


def test_sizing_by_risk_percent_and_fixed_amount():
    # 2 % of ₹5,00,000 = ₹10,000 at risk; a ₹150 premium with a 30 % stop risks ₹45/share
    s = size_entry(LIMITS, entry_price=15000, stop_price=10500, lot_size=65)
    assert s.quantity == 195  # 222 shares fit the risk, rounded down to 3 lots
    # the position cap (10 % of capital = ₹50,000) binds for a ₹400 premium: 125 shares → 1 lot
    assert size_entry(LIMITS, entry_price=40000, stop_price=39000, lot_size=65).quantity == 65
    # one lot that does not fit is a refusal with a reason
    none = size_entry(LIMITS, entry_price=100000, stop_price=70000, lot_size=65)
    assert none.quantity == 0 and "does not fit" in none.reason
    fixed = dataclasses.replace(LIMITS, sizing="fixed_amount")
    assert size_entry(fixed, entry_price=140000, stop_price=0, lot_size=1).quantity == 7
    assert size_entry(LIMITS, entry_price=100, stop_price=100, lot_size=1).quantity == 0


def test_exit_levels_seed_defaults():
    assert levels(LIMITS, entry=15000, direction=1, is_option=True, tick=5) == (10500, 24000)
    assert levels(LIMITS, entry=140000, direction=1, is_option=False, tick=5) == (137200, 147000)
    assert levels(LIMITS, entry=140000, direction=-1, is_option=False, tick=5) == (142800, 133000)


def t(hh: int, mm: int, day: dt.date = DAY) -> int:
    return ist_ns(day, dt.time(hh, mm))


def check(price: int, **kw) -> ExitCheck:
    base = dict(
        direction=1,
        price=price,
        stop_loss=10500,
        target=24000,
        high_water=15000,
        intraday=True,
        expiry=dt.date(2026, 4, 21),
    )
    return ExitCheck(**{**base, **kw})


def test_exit_reasons_at_their_boundaries():
    assert exit_reason(LIMITS, check(10505), t(11, 0)) is None
    assert exit_reason(LIMITS, check(10500), t(11, 0)) == "STOP_LOSS_HIT"
    assert exit_reason(LIMITS, check(23995), t(11, 0)) is None
    assert exit_reason(LIMITS, check(24000), t(11, 0)) == "TARGET_REACHED"
    assert exit_reason(LIMITS, check(15000), t(15, 14)) is None
    assert exit_reason(LIMITS, check(15000), t(15, 15)) == "INTRADAY_SQUARE_OFF"
    assert exit_reason(LIMITS, check(15000, intraday=False), t(15, 20)) is None
    # expiry approaching: within 60 minutes of 15:30 on the expiry day
    exp = dt.date(2026, 4, 21)
    assert exit_reason(LIMITS, check(15000, intraday=False), t(14, 29, exp)) is None
    assert exit_reason(LIMITS, check(15000, intraday=False), t(14, 30, exp)) == "EXPIRY_APPROACHING"
    # shorts: mirror image
    short = dict(direction=-1, stop_loss=142800, target=133000, high_water=140000, expiry=None)
    assert exit_reason(LIMITS, check(142795, **short), t(11, 0)) is None
    assert exit_reason(LIMITS, check(142800, **short), t(11, 0)) == "STOP_LOSS_HIT"
    assert exit_reason(LIMITS, check(133000, **short), t(11, 0)) == "TARGET_REACHED"


def test_trailing_stop_follows_the_best_price():
    trail = dataclasses.replace(LIMITS, trailing_stop=0.10)
    # best price 20,000 → trailing stop 18,000, above the initial 10,500
    assert exit_reason(trail, check(18005, high_water=20000), t(11, 0)) is None
    assert exit_reason(trail, check(18000, high_water=20000), t(11, 0)) == "TRAILING_STOP"
    # below the initial stop's reach the plain stop-loss is reported
    assert exit_reason(trail, check(10500, high_water=11000), t(11, 0)) == "STOP_LOSS_HIT"


def test_square_off_follows_a_special_sessions_close():
    """Muhurat 2025-10-21 closes at 14:45: intraday positions go at 14:30, not at 15:15 (which
    would be after the close); on a normal day they go at 15:15."""
    muhurat = dt.date(2025, 10, 21)
    assert exit_reason(LIMITS, check(15000), ist_ns(muhurat, dt.time(14, 29))) is None
    assert (
        exit_reason(LIMITS, check(15000), ist_ns(muhurat, dt.time(14, 30))) == "INTRADAY_SQUARE_OFF"
    )
    normal = dt.date(2025, 10, 20)
    assert exit_reason(LIMITS, check(15000), ist_ns(normal, dt.time(14, 30))) is None
