"""The shared fill simulator on prints and on bars."""

from __future__ import annotations

import pytest

from mandi.core.errors import OrderError
from mandi.execution.config import MatchingConfig
from mandi.execution.matching import FillSimulator, MarketPrint
from mandi.model.market import Candle
from mandi.model.orders import OrderType, Side

T = 1_000_000_000


def sim(**kw) -> FillSimulator:
    return FillSimulator(MatchingConfig(**{"slippage_ticks": 0, **kw}))


def test_a_market_order_fills_on_the_next_print_never_the_same_moment():
    s = sim()
    s.add("a", 1, Side.BUY, 65, accepted_ns=10 * T, lot_size=65)
    assert s.on_print(1, MarketPrint(10 * T, 15000)) == []  # same instant: no look-ahead
    [f] = s.on_print(1, MarketPrint(10 * T + 1, 15005))
    assert (f.quantity, f.price, f.fill_id) == (65, 15005, "a:1")
    assert "a" not in s


def test_slippage_and_touch_prices():
    s = sim(slippage_ticks=2, price_source="touch")
    s.add("b", 1, Side.BUY, 10, accepted_ns=0, tick_size=5)
    s.add("s", 1, Side.SELL, 10, accepted_ns=0, tick_size=5)
    fills = {f.order_id: f for f in s.on_print(1, MarketPrint(1, 15000, 14990, 15010))}
    assert fills["b"].price == 15020 and fills["s"].price == 14980


def test_resting_limits_fill_only_when_the_market_trades_through():
    s = sim()
    s.add(
        "l",
        1,
        Side.BUY,
        65,
        accepted_ns=0,
        order_type=OrderType.LIMIT,
        limit_price=14900,
        reference_price=15000,
        lot_size=65,
    )
    assert s.on_print(1, MarketPrint(1, 14900, traded_qty=650)) == []  # touching is not enough
    [f] = s.on_print(1, MarketPrint(2, 14895, traded_qty=650))
    assert f.price == 14900  # at the limit


def test_a_marketable_limit_waits_when_the_market_runs_away():
    s = sim()
    s.add(
        "m",
        1,
        Side.BUY,
        65,
        accepted_ns=0,
        order_type=OrderType.LIMIT,
        limit_price=15010,
        reference_price=15000,
        lot_size=65,
    )
    assert s.on_print(1, MarketPrint(1, 15050)) == []
    [f] = s.on_print(1, MarketPrint(2, 15005))
    assert f.price == 15005  # at the market, inside the limit


def test_partial_fills_by_available_volume_in_whole_lots():
    s = sim()
    s.add("p", 1, Side.BUY, 650, accepted_ns=0, lot_size=65)
    [f1] = s.on_print(1, MarketPrint(1, 15000, ask_qty=200))  # 200 shown → 3 lots
    assert f1.quantity == 195
    assert s.on_print(1, MarketPrint(2, 15000, ask_qty=64)) == []  # less than a lot
    [f2] = s.on_print(1, MarketPrint(3, 15000, ask_qty=10_000))
    assert f2.quantity == 455 and f2.fill_id == "p:2" and "p" not in s
    half = sim(participation=0.5)
    half.add("h", 1, Side.SELL, 100, accepted_ns=0)
    [h] = half.on_print(1, MarketPrint(1, 100, bid_qty=60))
    assert h.quantity == 30


def test_no_volume_information_means_no_volume_limit():
    s = sim()
    s.add("n", 1, Side.BUY, 6500, accepted_ns=0, lot_size=65)
    [f] = s.on_print(1, MarketPrint(1, 15000))
    assert f.quantity == 6500


def test_bars_fill_at_the_next_open_and_stops_on_high_low():
    s = sim()
    bar = Candle(1, "NSE", 60, 60 * T, 15000, 15200, 14800, 15100, 1000)
    s.add("mk", 1, Side.BUY, 10, accepted_ns=60 * T)  # placed as the bar opened
    s.add("late", 1, Side.BUY, 10, accepted_ns=61 * T)  # inside the bar: waits for the next
    s.add(
        "lim",
        1,
        Side.SELL,
        10,
        accepted_ns=0,
        order_type=OrderType.LIMIT,
        limit_price=15150,
        reference_price=15000,
    )
    fills = {f.order_id: f for f in s.on_bar(1, bar)}
    assert fills["mk"].price == 15000 and "late" not in fills
    assert fills["lim"].price == 15150
    close = sim(bar_fill="close")
    close.add("c", 1, Side.BUY, 10, accepted_ns=61 * T)
    [c] = close.on_bar(1, bar)
    assert c.price == 15100


def test_bad_orders_are_refused():
    s = sim()
    s.add("x", 1, Side.BUY, 1, accepted_ns=0)
    with pytest.raises(OrderError):
        s.add("x", 1, Side.BUY, 1, accepted_ns=0)
    with pytest.raises(OrderError):
        s.add("y", 1, Side.BUY, 0, accepted_ns=0)
    with pytest.raises(OrderError):
        s.add("z", 1, Side.BUY, 1, accepted_ns=0, order_type=OrderType.LIMIT)
    assert s.cancel("x") == 1 and s.cancel("x") == 0
