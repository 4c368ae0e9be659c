"""Feed health and the broker session as risk inputs of the trading kernel: while the feed is
silent or the session is dead, new entries are denied (rule named), exits are not; events are
raised once per change; a reconnect reconciles the open orders."""

from __future__ import annotations

import datetime as dt
from typing import Any

from mandi.brokers.paper import MemoryPaperBook, PaperBroker
from mandi.bus.memory import MessageBus
from mandi.config import AppConfig
from mandi.core.calendar import ist_ns
from mandi.core.clock import TestClock
from mandi.execution.config import TradingConfig
from mandi.execution.live import FeedHealth
from mandi.execution.memstore import MemoryTradingStore
from mandi.model.instruments import Equity, InstrumentMaster
from mandi.model.market import Tick
from mandi.model.orders import Side
from mandi.services.trading import LiveInputs
from mandi.system.kernel import TradingKernel

S = 10**9
INFY = 408065


class Node:
    """What LiveInputs reads of the node."""

    def __init__(self, clock: TestClock, feed: Any) -> None:
        self.clock, self.feed, self.cfg = clock, feed, AppConfig()
        self.events: list[tuple[str, str]] = []

    def event(self, kind: str, message: str, severity: str = "INFO", **data: Any) -> None:
        self.events.append((kind, message))


class Feed:
    def __init__(self) -> None:
        self.health = FeedHealth(silent_after_s=10)
        self.on_reconnect = lambda: None


def test_unhealthy_feed_and_dead_session_block_entries_only() -> None:
    t0 = ist_ns(dt.date(2026, 4, 15), dt.time(10, 0))
    clock = TestClock(t0)
    bus = MessageBus(clock)
    master = InstrumentMaster([Equity(INFY, "NSE", "INFY", "INFY", "NSE", 1, 5)])
    broker = PaperBroker(clock, MemoryPaperBook())
    k = TradingKernel(
        bus=bus,
        clock=clock,
        master=master,
        mode="paper",
        store=MemoryTradingStore(),
        broker=broker,
        trading=TradingConfig(),
    )
    k.start()
    feed = Feed()
    node = Node(clock, feed)
    live = LiveInputs(node, broker)  # type: ignore[arg-type]
    h = feed.health
    h.expected = 1
    h.on_connected(t0)

    def tick(ts: int) -> None:
        clock.set(ts)
        h.on_message(ts, 1)
        k.handle_tick(Tick(INFY, "NSE", ts, ts, 150_000, 100, 1, 0, 149_995, 150_005, 50, 50))

    tick(t0 + S)
    live.check(k)
    assert k.risk.entry_blocks == {} and node.events == []
    assert k.execution.handle_manual("r1", "INFY", Side.BUY, 2).status == "ACCEPTED"
    tick(t0 + 2 * S)  # the paper fill
    clock.set(t0 + 20 * S)  # the socket went silent
    live.check(k)
    live.check(k)
    assert node.events == [("feed_unhealthy", "new entries blocked: no market data for 18 s")]
    d = k.execution.handle_manual("r2", "INFY", Side.BUY, 1)
    assert (d.status, d.rule) == ("DENIED", "feed_health")
    tick(t0 + 21 * S)  # data again
    live.check(k)
    assert node.events[-1][0] == "feed_healthy" and k.risk.entry_blocks == {}
    # a dead session: entries denied, exits allowed
    broker.session_dead = "Kite session ended; log in again"  # type: ignore[attr-defined]
    live.check(k)
    assert node.events[-1] == ("broker_session_ended", "Kite session ended; log in again")
    d = k.execution.handle_manual("r3", "INFY", Side.BUY, 1)
    assert (d.status, d.rule) == ("DENIED", "broker_session")
    assert k.execution.handle_manual("r4", "INFY", Side.SELL, 2).status == "ACCEPTED"


def test_a_reconnect_reconciles_open_orders() -> None:
    t0 = ist_ns(dt.date(2026, 4, 15), dt.time(10, 0))
    clock = TestClock(t0)
    k = TradingKernel(
        bus=MessageBus(clock),
        clock=clock,
        master=InstrumentMaster([Equity(INFY, "NSE", "INFY")]),
        mode="paper",
        store=MemoryTradingStore(),
        broker=PaperBroker(clock, MemoryPaperBook()),
        trading=TradingConfig(),
    )
    k.start()
    feed = Feed()
    live = LiveInputs(Node(clock, feed), None)  # type: ignore[arg-type]
    calls: list[int] = []
    assert k.orders is not None
    k.orders.reconcile_all = lambda *a: calls.append(1)  # type: ignore[method-assign]
    live.check(k)
    assert calls == []
    feed.on_reconnect()
    live.check(k)
    live.check(k)
    assert calls == [1] and live.reconciles == 1


def test_the_session_expiry_is_warned_about_before_06_00_ist() -> None:
    """A Kite token from a 10:00 IST login dies at 06:00 IST the next day; the node warns
    ``expiry_warning_min`` (30) minutes before — once, and not earlier."""
    from mandi.brokers.kite.wire import token_expiry_ns
    from mandi.brokers.session import BrokerSession

    login = ist_ns(dt.date(2026, 4, 15), dt.time(10, 0))
    expires = token_expiry_ns(login)
    assert expires == ist_ns(dt.date(2026, 4, 16), dt.time(6, 0))
    feed = Feed()
    feed.session = BrokerSession("kite", "key", "DM1234", "Demo", "tok", login, expires)  # type: ignore[attr-defined]
    feed.name = "kite"  # type: ignore[attr-defined]
    node = Node(TestClock(login), feed)
    live = LiveInputs(node, None)  # type: ignore[arg-type]
    k: Any = type("K", (), {"risk": None, "orders": None})()
    wall = [login]
    live.wall_ns = lambda: wall[0]
    live.health = None
    for minutes_left in (20 * 60, 31):  # the evening, then just outside the warning window
        wall[0] = expires - minutes_left * 60 * S
        live.check(k)
    assert node.events == []
    wall[0] = expires - 29 * 60 * S
    live.check(k)
    wall[0] += 60 * S
    live.check(k)
    assert node.events == [
        (
            "broker_session_expiring",
            "the kite session expires in 29 min; log in again: mandi broker login kite",
        )
    ]
