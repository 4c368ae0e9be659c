"""Stop orders (SL-M, SL) and one-cancels-other groups in the shared fill simulator, and the risk
rule that refuses a stop on the wrong side of the market."""

from __future__ import annotations

import pytest

from mandi.core.errors import OrderError
from mandi.execution.config import MatchingConfig
from mandi.execution.matching import FillSimulator, MarketPrint, StopRejected
from mandi.model.market import Candle
from mandi.model.orders import Order, OrderType, Side

T0 = 1_000_000_000_000
SEC = 1_000_000_000
B, S = Side.BUY, Side.SELL


def sim(**cfg) -> FillSimulator:
    cfg.setdefault("slippage_ticks", 0)
    return FillSimulator(MatchingConfig(**cfg))


def prints(fs: FillSimulator, prices, token: int = 1, start: int = T0 + SEC):
    out = []
    for k, p in enumerate(prices):
        out += fs.on_print(token, MarketPrint(start + k * SEC, p))
    return out


def bar(o, h, lo, c, start=T0 + 60 * SEC) -> Candle:
    return Candle(1, "NSE", 60, start, o, h, lo, c, 0, 0, 1, True)


def test_sl_m_buy_triggers_at_the_first_last_price_at_or_above_and_fills_there():
    fs = sim()
    fs.add("a", 1, B, 10, accepted_ns=T0, order_type=OrderType.SL_M, trigger_price=10_500,
           reference_price=10_000)  # fmt: skip
    assert prints(fs, [10_000, 10_495]) == []
    (f,) = prints(fs, [10_520], start=T0 + 5 * SEC)
    assert (f.price, f.quantity, f.ts) == (10_520, 10, T0 + 5 * SEC)
    assert "a" not in fs


def test_sl_m_sell_with_slippage_and_the_touch():
    fs = sim(slippage_ticks=1, price_source="touch")
    fs.add("a", 1, S, 10, accepted_ns=T0, order_type=OrderType.SL_M, trigger_price=9_500,
           reference_price=10_000)  # fmt: skip
    assert fs.on_print(1, MarketPrint(T0 + SEC, 9_505, 9_500, 9_510)) == []
    (f,) = fs.on_print(1, MarketPrint(T0 + 2 * SEC, 9_500, 9_490, 9_505))
    assert f.price == 9_490 - 5  # the bid, one tick against a sell


def test_no_look_ahead_a_print_at_the_acceptance_moment_does_not_trigger():
    fs = sim()
    fs.add("a", 1, B, 10, accepted_ns=T0, order_type=OrderType.SL_M, trigger_price=10_500)
    assert fs.on_print(1, MarketPrint(T0, 11_000)) == []
    assert len(fs.on_print(1, MarketPrint(T0 + 1, 11_000))) == 1


@pytest.mark.parametrize(("side", "trigger"), [(B, 10_000), (B, 9_900), (S, 10_000), (S, 10_100)])
def test_a_stop_on_the_wrong_side_is_rejected_never_filled(side, trigger):
    fs = sim()
    with pytest.raises(StopRejected, match="trigger must be"):
        fs.add("a", 1, side, 10, accepted_ns=T0, order_type=OrderType.SL_M,
               trigger_price=trigger, reference_price=10_000)  # fmt: skip
    assert "a" not in fs and not fs.has_orders(1)


def test_sl_triggered_beyond_its_limit_rests_as_a_limit():
    fs = sim()
    fs.add("a", 1, B, 10, accepted_ns=T0, order_type=OrderType.SL, trigger_price=10_500,
           limit_price=10_550, reference_price=10_000)  # fmt: skip
    assert prints(fs, [10_600]) == []  # triggered, but above the limit
    assert fs.get("a").trigger == 0 and not fs.get("a").marketable
    (f,) = prints(fs, [10_540], start=T0 + 3 * SEC)  # trades through the limit
    assert f.price == 10_550
    fs.add("b", 1, B, 10, accepted_ns=T0, order_type=OrderType.SL, trigger_price=10_500,
           limit_price=10_550, reference_price=10_000)  # fmt: skip
    (g,) = prints(fs, [10_510], start=T0 + 9 * SEC)  # triggered within the limit: fills now
    assert g.price == 10_510


def test_stops_on_bars_fill_at_the_trigger_or_at_a_gap_open():
    fs = sim()
    fs.add("up", 1, B, 10, accepted_ns=T0, order_type=OrderType.SL_M, trigger_price=10_500)
    fs.add("dn", 1, S, 10, accepted_ns=T0, order_type=OrderType.SL_M, trigger_price=9_500)
    (f,) = fs.on_bar(1, bar(10_000, 10_600, 9_800, 10_100))
    assert (f.order_id, f.price) == ("up", 10_500)
    (g,) = fs.on_bar(1, bar(9_300, 9_400, 9_200, 9_350, start=T0 + 120 * SEC))
    assert (g.order_id, g.price) == ("dn", 9_300)  # gapped through: the open
    fs.add("late", 1, B, 10, accepted_ns=T0 + 200 * SEC, order_type=OrderType.SL_M,
           trigger_price=10_500)  # fmt: skip
    assert fs.on_bar(1, bar(10_000, 10_600, 9_900, 10_000, start=T0 + 180 * SEC)) == []


def test_oco_target_fill_cancels_the_stop_and_a_bar_touching_both_stops_out():
    fs = sim()
    # a long's exits: stop 9,500 (SL-M SELL) and target 10,500 (LIMIT SELL), one group
    fs.add("stop", 1, S, 10, accepted_ns=T0, order_type=OrderType.SL_M, trigger_price=9_500,
           reference_price=10_000, oco_group="g")  # fmt: skip
    fs.add("tgt", 1, S, 10, accepted_ns=T0, order_type=OrderType.LIMIT, limit_price=10_500,
           reference_price=10_000, oco_group="g")  # fmt: skip
    (f,) = prints(fs, [10_200, 10_510])
    assert f.order_id == "tgt" and f.price == 10_500
    assert fs.take_cancelled() == [("stop", "OCO: tgt filled")] and len(fs) == 0
    # the same pair on a bar whose range holds both levels: the stop wins (pessimistic)
    fs.add("stop", 1, S, 10, accepted_ns=T0, order_type=OrderType.SL_M, trigger_price=9_500,
           oco_group="h")  # fmt: skip
    fs.add("tgt", 1, S, 10, accepted_ns=T0, order_type=OrderType.LIMIT, limit_price=10_500,
           oco_group="h")  # fmt: skip
    (g,) = fs.on_bar(1, bar(10_000, 10_600, 9_400, 10_000))
    assert (g.order_id, g.price) == ("stop", 9_500)
    assert fs.take_cancelled() == [("tgt", "OCO: stop filled")]


def test_order_validation_of_stops():
    with pytest.raises(OrderError, match="trigger price"):
        Order("x", token=1, exchange="NSE", symbol="X", side=B, quantity=1, created_ns=0,
              order_type=OrderType.SL_M)  # fmt: skip
    with pytest.raises(OrderError, match="limit price"):
        Order("x", token=1, exchange="NSE", symbol="X", side=B, quantity=1, created_ns=0,
              order_type=OrderType.SL, trigger_price=100)  # fmt: skip
    o = Order("x", token=1, exchange="NSE", symbol="X", side=B, quantity=1, created_ns=0,
              order_type=OrderType.SL_M, trigger_price=100, oco_group="g")  # fmt: skip
    assert Order.from_record(o.to_record()).trigger_price == 100
    assert OrderType("SL-M") is OrderType.SL_M and OrderType.SL_M.is_stop


def test_the_risk_rule_refuses_a_stop_that_would_fire_at_once():
    from mandi.model.instruments import Equity
    from mandi.risk.config import RiskConfig, RiskLimits
    from mandi.risk.rules import OrderContext, price_sanity

    inst = Equity(1, "NSE", "X", "X", "", 1, 5)
    lim = RiskLimits.from_config(RiskConfig())

    def ctx(side, trigger, limit=0, kind=OrderType.SL_M):
        from mandi.model.orders import Intent

        return OrderContext(0, inst, side, 1, Intent.EXIT, lim, kind, limit, ltp=10_000,
                            ltp_ns=1, trigger_price=trigger)  # fmt: skip

    assert price_sanity(ctx(S, 9_500)) is None
    d = price_sanity(ctx(S, 10_000))
    assert d.rule == "stop_trigger" and "would fire at once" in d.reason
    assert price_sanity(ctx(B, 9_995)).rule == "stop_trigger"
    assert price_sanity(ctx(B, 10_003)).rule == "stop_trigger"  # off the tick
    assert price_sanity(ctx(B, 10_500, 10_400, OrderType.SL)).rule == "stop_trigger"
    assert price_sanity(ctx(B, 10_500, 10_600, OrderType.SL)) is None
