"""Stop orders through the brokers and the kernel: the same trigger semantics in paper (ticks) and
in the backtest broker (prints, bars), the position monitor's exits as a resting OCO pair, the
kernel holding stops for a broker that cannot, and a stop on the wrong side refused."""

from __future__ import annotations

import msgspec
import pytest

from mandi.backtest.broker import BacktestBroker
from mandi.core.clock import TestClock
from mandi.execution.config import MatchingConfig, TradingConfig
from mandi.execution.paper import MemoryPaperBook, PaperBroker
from mandi.execution.ports import BrokerFill, OrderRequest
from mandi.model.market import Tick
from mandi.model.orders import OrderType, Product, Side
from mandi.risk.config import RiskConfig

from .kit import RELIANCE, Kit

T0 = 10**15
PATH = [10_000, 9_900, 9_720, 9_705, 9_680, 9_800, 10_150, 10_260, 10_240, 9_600]


def request(cid: str, side: Side, kind: OrderType, trigger: int, limit: int = 0, group: str = ""):
    return OrderRequest(cid, 1, "NSE", "X", side, 10, kind, limit, Product.MIS, 10_000,
                        1, 5, trigger, group)  # fmt: skip


ORDERS = [
    ("slm-sell", Side.SELL, OrderType.SL_M, 9_700, 0, ""),
    ("slm-buy", Side.BUY, OrderType.SL_M, 10_200, 0, ""),
    ("sl-buy", Side.BUY, OrderType.SL, 10_100, 10_120, ""),
    ("oco-stop", Side.SELL, OrderType.SL_M, 9_650, 0, "g"),
    ("oco-tgt", Side.SELL, OrderType.LIMIT, 0, 10_250, "g"),
]


def fills_of(broker) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    broker.set_event_sink(
        lambda e: (
            out.append((e.client_order_id, e.price, e.ts_ns))
            if isinstance(e, BrokerFill)
            else out.append((e.client_order_id, -1, e.ts_ns))
        )
    )
    return out


@pytest.mark.parametrize("touch", [False, True])
def test_sl_and_sl_m_trigger_identically_in_paper_and_backtest(touch):
    cfg = MatchingConfig(slippage_ticks=1, price_source="touch" if touch else "last")
    paper = PaperBroker(TestClock(T0), MemoryPaperBook(), cfg)
    test = BacktestBroker(TestClock(T0), MemoryPaperBook(), cfg)
    got_paper, got_test = fills_of(paper), fills_of(test)
    for b in (paper, test):
        for o in ORDERS:
            assert b.place_order(request(*o)).status == "ACCEPTED"
    for k, p in enumerate(PATH, start=1):
        ts = T0 + k * 10**9
        bid, ask = (p - 10, p + 10) if touch else (0, 0)
        paper.on_market_data(Tick(1, "NSE", ts, ts, p, 0, 0, 0, bid, ask))  # the paper feed
        if touch:  # the backtester's recorded quotes
            from mandi.execution.matching import MarketPrint

            test.match_quote(1, MarketPrint(ts, p, bid, ask))
        else:  # the backtester's prints (intrabar levels)
            test.match_price(1, p, ts)
    assert got_paper == got_test
    fired = {cid: px for cid, px, _ in got_paper}
    # SELL SL-M 9,700 fires on the first last price at or below it (9,680 is the 5th print)
    assert fired["slm-sell"] == (9_680 - 5 if not touch else 9_670 - 5)
    assert fired["slm-buy"] == (10_260 + 5 if not touch else 10_270 + 5)
    # the OCO target filled when the price traded through 10,250; its stop was cancelled
    assert fired["oco-tgt"] == 10_250 and fired["oco-stop"] == -1


def test_a_stop_behind_the_market_is_rejected_by_the_paper_broker():
    paper = PaperBroker(TestClock(T0), MemoryPaperBook(), MatchingConfig())
    ack = paper.place_order(request("x", Side.SELL, OrderType.SL_M, 10_100))
    assert ack.status == "REJECTED" and "below the last price" in ack.reason
    assert paper.order_status("x").status.value == "REJECTED"


def kit(**trading) -> Kit:
    t = TradingConfig(paper=MatchingConfig(slippage_ticks=0), allow_short=True, **trading)
    risk = RiskConfig(equity_stop_loss_pct=2.0, equity_target_pct=3.0)
    return Kit(trading=t, risk=risk).start()


def open_long(k: Kit) -> None:
    k.tick(RELIANCE, 1400.0)
    k.emit(k.signal("s", RELIANCE, "BUY", quantity=10))
    k.tick(RELIANCE, 1400.0)  # the entry fills
    assert k.kernel.book.open_count == 1


def test_position_exits_rest_as_an_oco_pair_and_the_stop_fills_at_the_broker():
    k = kit(exit_orders="stop_orders")
    open_long(k)
    om = k.kernel.orders
    resting = [o for o in om.orders.values() if o.intent.value == "EXIT"]
    assert sorted(o.order_type.value for o in resting) == ["LIMIT", "SL-M"]
    stop = next(o for o in resting if o.order_type is OrderType.SL_M)
    target = next(o for o in resting if o.order_type is OrderType.LIMIT)
    assert (stop.trigger_price, target.limit_price) == (137_200, 144_200)  # 2 % / 3 %
    assert stop.oco_group == target.oco_group != ""
    for px in (1390.0, 1375.0, 1371.5):
        k.tick(RELIANCE, px)
    assert k.kernel.book.open_count == 0
    (trade,) = k.store.trades
    assert trade.exit_reason == "STOP_LOSS_HIT" and trade.exit_price == 137_150
    assert k.store.orders[target.client_order_id].status == "CANCELLED"


def test_a_time_exit_cancels_the_resting_pair_first():
    k = kit(exit_orders="stop_orders")
    open_long(k)
    p = next(iter(k.kernel.book.open_positions()))
    k.kernel.execution.exit_position(p, "MANUAL")
    k.tick(RELIANCE, 1401.0)
    assert k.kernel.book.open_count == 0
    statuses = sorted(o.status for o in k.store.orders.values() if o.intent == "EXIT")
    assert statuses == ["CANCELLED", "CANCELLED", "FILLED"]


class MarketOnlyBroker(PaperBroker):
    """A broker that holds MARKET and LIMIT orders only (most live APIs' GTT aside)."""

    name = "market-only"
    native_order_types = frozenset({OrderType.MARKET, OrderType.LIMIT})
    native_oco = False

    def place_order(self, request):
        assert not request.order_type.is_stop and not request.oco_group, request
        return super().place_order(request)


def test_the_kernel_holds_stops_a_broker_cannot_with_the_same_trigger():
    t = TradingConfig(paper=MatchingConfig(slippage_ticks=0), exit_orders="stop_orders")
    clock_kit = Kit(trading=t, risk=RiskConfig(equity_stop_loss_pct=2.0, equity_target_pct=3.0))
    broker = MarketOnlyBroker(clock_kit.clock, MemoryPaperBook(), t.paper, 50_000_000)
    k = Kit(trading=t, risk=RiskConfig(equity_stop_loss_pct=2.0, equity_target_pct=3.0),
            broker=broker).start()  # fmt: skip
    open_long(k)
    om = k.kernel.orders
    assert len(om.stops) == 2  # the pair waits in the kernel, not at the broker
    assert all(o.status.value == "ACKED" for o in om.orders.values() if o.intent.value == "EXIT")
    k.tick(RELIANCE, 1375.0)
    assert len(om.stops) == 2
    k.tick(RELIANCE, 1372.0)  # at the trigger: a MARKET order goes to the broker...
    assert len(om.stops) == 0
    k.tick(RELIANCE, 1371.0)  # ...and fills on the next print
    assert k.kernel.book.open_count == 0
    (trade,) = k.store.trades
    assert trade.exit_reason == "STOP_LOSS_HIT" and trade.exit_price == 137_100


def test_a_manual_stop_on_the_wrong_side_is_denied_by_risk():
    k = kit()
    k.tick(RELIANCE, 1400.0)
    r = k.kernel.execution.handle_manual(
        "m1", "RELIANCE", Side.BUY, 10, trigger_price=139_000, order_type=OrderType.SL_M
    )
    assert r.status == "DENIED" and r.rule == "stop_trigger" and "fire at once" in r.reason
    r = k.kernel.execution.handle_manual(
        "m2", "RELIANCE", Side.BUY, 10, trigger_price=141_000, order_type=OrderType.SL_M
    )
    assert r.status == "ACCEPTED"
    k.tick(RELIANCE, 1405.0)
    assert k.kernel.book.open_count == 0
    k.tick(RELIANCE, 1410.5)  # the breakout: the stop entry fills
    (p,) = k.kernel.book.open_positions()
    assert p.entry_price == 141_050


def test_config_accepts_stop_orders_mode():
    assert msgspec.convert({"exit_orders": "stop_orders"}, TradingConfig).exit_orders == (
        "stop_orders"
    )
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"exit_orders": "gtt"}, TradingConfig)
