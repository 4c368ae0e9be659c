"""The paper broker behind the Broker port, and mode isolation: logging-only and paper modes never
reach a live broker; live mode refuses to start without one."""

from __future__ import annotations

from typing import ClassVar

import pytest

import mandi.brokers as brokers
from mandi.brokers import make_broker
from mandi.core.clock import TestClock
from mandi.core.errors import ConfigError
from mandi.execution.config import MatchingConfig, TradingConfig
from mandi.execution.paper import MemoryPaperBook, PaperBroker
from mandi.execution.ports import BrokerFill, OrderRequest
from mandi.model.market import Tick
from mandi.model.orders import OrderStatus, OrderType, Product, Side

from ..execution.kit import NIFTY, RELIANCE, Kit


def req(cid: str = "c1", qty: int = 65, **kw) -> OrderRequest:
    base = dict(
        client_order_id=cid,
        token=1,
        exchange="NSE",
        symbol="X",
        side=Side.BUY,
        quantity=qty,
        order_type=OrderType.MARKET,
        limit_price=0,
        product=Product.MIS,
        lot_size=65,
        tick_size=5,
    )
    return OrderRequest(**{**base, **kw})


def tick(ts: int, price: int, qty: int = 10_000) -> Tick:
    return Tick(1, "NSE", ts, ts, price, 0, 0, 0, price - 5, price + 5, qty, qty)


def test_placing_is_idempotent_and_the_book_survives_a_restart():
    clock, book = TestClock(100), MemoryPaperBook()
    b = PaperBroker(clock, book, MatchingConfig(slippage_ticks=0))
    got: list[BrokerFill] = []
    b.set_event_sink(got.append)
    assert b.place_order(req()).status == "ACCEPTED"
    assert b.place_order(req()).status == "ACCEPTED"  # same client id: same order
    assert b.placed == 1 and len(book.orders) == 1
    b2 = PaperBroker(clock, book, MatchingConfig(slippage_ticks=0))  # a restarted broker
    fills: list[BrokerFill] = []
    b2.set_event_sink(fills.append)
    b2.on_market_data(tick(50, 15000))  # older than the order: ignored
    b2.on_market_data(tick(150, 15000))
    assert [f.fill_id for f in fills] == ["c1:1"]
    rep = b2.order_status("c1")
    assert rep.status is OrderStatus.FILLED and rep.filled_qty == 65
    assert b2.order_status("nope") is None
    assert b2.positions()[0].quantity == 65
    assert b2.balance().cash == -65 * 15000


def test_the_rms_rejects_bad_lots_and_ticks_and_cancels_work():
    b = PaperBroker(TestClock(1))
    assert b.place_order(req("a", qty=64)).status == "REJECTED"
    assert b.place_order(req("b", order_type=OrderType.LIMIT, limit_price=15001)).reason
    assert (
        b.place_order(
            req("c", order_type=OrderType.LIMIT, limit_price=14000, reference_price=15000)
        ).status
        == "ACCEPTED"
    )
    assert b.modify_order("c", limit_price=14500).status == "ACCEPTED"
    assert b.cancel_order("c").status == "ACCEPTED"
    assert b.cancel_order("c").status == "REJECTED"
    assert b.order_status("c").status is OrderStatus.CANCELLED


class SpyLive:
    """A 'live' broker that records that anything touched it."""

    name, is_live = "spy", True
    constructed = 0
    calls: ClassVar[list[str]] = []

    def __init__(self, cfg, clock) -> None:  # type: ignore[no-untyped-def]
        SpyLive.constructed += 1

    def __getattr__(self, item):  # type: ignore[no-untyped-def]
        SpyLive.calls.append(item)
        raise AssertionError(f"live broker touched: {item}")


@pytest.fixture
def spy(monkeypatch):
    SpyLive.constructed, SpyLive.calls = 0, []
    monkeypatch.setitem(brokers.LIVE_BROKERS, "spy", SpyLive)
    return SpyLive


@pytest.mark.parametrize("mode", ["logging", "paper"])
def test_logging_and_paper_modes_never_reach_a_live_broker(spy, mode):
    cfg = TradingConfig(broker="spy")  # even with a live broker configured
    broker = make_broker(mode, cfg, TestClock(1))
    assert broker is None if mode == "logging" else isinstance(broker, PaperBroker)
    k = Kit(mode=mode, broker=broker, trading=cfg).start()
    k.chain_ticks()
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.emit(k.signal("a", NIFTY, "BUY"))
    k.emit(k.signal("b", RELIANCE, "BUY"))
    for _ in range(3):
        k.chain_ticks()
    assert spy.constructed == 0 and spy.calls == []
    assert (len(k.store.orders) > 0) == (mode == "paper")


def test_live_mode_refuses_without_a_live_broker(spy):
    with pytest.raises(ConfigError, match=r"trading\.broker"):
        make_broker("live", TradingConfig(), TestClock(1))
    with pytest.raises(ConfigError, match="no such live broker"):
        make_broker("live", TradingConfig(broker="upstox"), TestClock(1))
    for name in ("kite", "angel", "groww"):
        with pytest.raises(ConfigError, match=f"mandi run --mode live --broker {name}"):
            make_broker("live", TradingConfig(broker=name), TestClock(1))
    live = make_broker("live", TradingConfig(broker="spy"), TestClock(1))
    assert spy.constructed == 1 and live is not None
