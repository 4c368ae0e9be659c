"""The trading kernel end to end on a hand-built market: signal → risk → order → fill → position
→ exit, idempotency, modes, restarts and reconciliation."""

from __future__ import annotations

import pytest

from mandi.execution.config import MatchingConfig, TradingConfig
from mandi.execution.paper import MemoryPaperBook, PaperBroker
from mandi.execution.ports import BrokerAck
from mandi.model.market import Tick
from mandi.model.orders import OrderStatus, Side
from mandi.risk.config import RiskConfig

from .kit import INFY, NIFTY, RELIANCE, Kit, at


def test_a_signal_on_an_index_buys_a_scored_option_and_the_fill_opens_a_position():
    k = Kit().start()
    k.chain_ticks(spot=24210)
    assert k.emit(k.signal("s1", NIFTY, "BUY"))
    orders = list(k.store.orders.values())
    assert len(orders) == 1
    o = orders[0]
    assert o.intent == "ENTRY" and o.side == "BUY" and o.symbol.endswith("CE")
    assert o.quantity % 65 == 0 and o.status == "ACKED"
    assert "260421" in o.symbol  # nearest expiry that is not today
    strike = int(o.symbol[11:16])
    assert abs(strike - 24210) <= 3 * 50
    k.chain_ticks(spot=24212)  # the next tick of the option fills the market order
    [fill] = k.store.fills.values()
    assert fill.quantity == o.quantity and fill.charges > 0
    [pos] = k.store.positions.values()
    assert pos.status == "OPEN" and pos.quantity == o.quantity
    # option exits at 30 % / +60 % of the entry premium
    assert pos.stop_loss_premium == pytest.approx(pos.entry_premium * 0.7, abs=5)
    assert pos.target_premium == pytest.approx(pos.entry_premium * 1.6, abs=5)
    assert k.store.signal_status(fill.signal_id) == "ORDERED"
    assert type(k.topics("position:")[0]).__name__ == "PositionOpened"


def test_the_same_signal_delivered_five_times_places_exactly_one_order():
    k = Kit().start()
    k.chain_ticks()
    sig = k.signal("dup", NIFTY, "BUY")
    assert k.emit(sig)
    for _ in range(4):
        assert not k.emit(sig)  # duplicates are not even published
    for _ in range(5):  # and delivered straight on the bus, past the signal manager
        k.bus.publish("signal:dup", sig)
    assert len(k.store.orders) == 1
    assert len(k.store.signals) == 1
    # a fresh kernel on the same store (a restart) does not act on it either
    k2 = Kit(store=k.store, book=k.book).start()
    k2.chain_ticks()
    k2.bus.publish("signal:dup", sig)
    assert not k2.emit(sig)
    assert len(k.store.orders) == 1


def test_a_repeated_signal_in_the_same_direction_is_ignored_and_an_opposite_one_exits():
    k = Kit().start()
    k.tick(RELIANCE, 1400.0, qty=1000, bid=1399.95, ask=1400.05)
    k.emit(k.signal("eq", RELIANCE, "BUY", bucket=1))
    k.tick(RELIANCE, 1400.5, qty=1000)
    k.emit(k.signal("eq", RELIANCE, "BUY", bucket=2))
    assert len(k.store.orders) == 1
    ignored = [s for s, (st, _) in k.store.signal_state.items() if st == "IGNORED"]
    assert len(ignored) == 1
    k.tick(RELIANCE, 1401.0, qty=1000)
    k.emit(k.signal("eq", RELIANCE, "SELL", bucket=3))
    k.tick(RELIANCE, 1401.5, qty=1000)
    [pos] = k.store.positions.values()
    assert pos.status == "CLOSED" and pos.exit_reason == "OPPOSITE_SIGNAL"
    # no short sale: short selling is off by default
    assert sum(1 for o in k.store.orders.values() if o.intent == "ENTRY") == 1
    assert len(k.store.trades) == 1


def test_logging_only_mode_logs_the_full_trade_and_places_nothing():
    k = Kit(mode="logging").start()
    assert k.kernel.orders is None and k.kernel.broker is None
    k.chain_ticks()
    k.emit(k.signal("log", NIFTY, "SELL"))
    [ev] = k.topics("order:logged")
    assert ev.symbol.endswith("PE") and ev.quantity > 0 and ev.stop_loss > 0 and ev.max_loss > 0
    assert not k.store.orders and not k.store.fills
    assert set(st for st, _ in k.store.signal_state.values()) == {"LOGGED"}


def test_a_live_broker_is_refused_outside_live_mode():
    class Live(PaperBroker):
        name, is_live = "fake-live", True

    k = Kit.__new__(Kit)
    with pytest.raises(ValueError, match="live broker"):
        Kit.__init__(k, broker=Live(Kit().clock))


def test_risk_denials_are_recorded_and_the_signal_is_closed():
    k = Kit(risk=RiskConfig(max_order_value_inr=100)).start()
    k.chain_ticks()
    k.emit(k.signal("small", NIFTY, "BUY"))
    assert not k.store.orders
    [d] = k.store.denials
    assert d.rule == "sizing" or d.rule == "max_order_value"
    assert k.topics("risk:denied")
    [(status, reason)] = k.store.signal_state.values()
    assert status == "DENIED" and d.rule in reason


def test_a_signal_for_an_unknown_or_stale_or_old_instrument_is_denied_and_the_kernel_goes_on():
    k = Kit().start()
    k.chain_ticks()
    bad = k.signal("x", NIFTY, "BUY")
    bad = type(bad)(
        **{
            **{f: getattr(bad, f) for f in bad.__struct_fields__},
            "token": 999,
            "signal_id": "unknown-1",
        }
    )
    k.bus.publish("signal:x", bad)
    old = k.signal("y", NIFTY, "BUY", ts=k.clock.now_ns() - 25 * 3600 * 10**9)
    k.emit(old)
    k.tick(INFY, 1500.0)
    k.clock.advance(60 * 10**9)  # INFY's price is now a minute old
    k.emit(k.signal("z", INFY, "BUY"))
    rules = [d.rule for d in k.store.denials]
    assert rules == ["unknown_symbol", "signal_age", "stale_data"]
    k.chain_ticks()
    assert k.emit(k.signal("ok", NIFTY, "BUY"))
    assert len(k.store.orders) == 1


def test_a_strategy_exception_in_the_executor_is_contained(monkeypatch):
    k = Kit().start()
    k.chain_ticks()
    monkeypatch.setattr(k.kernel.execution.entries, "plan", lambda *a: 1 / 0)
    k.emit(k.signal("boom", NIFTY, "BUY"))
    assert [d.rule for d in k.store.denials] == ["internal_error"]
    monkeypatch.undo()
    assert k.emit(k.signal("fine", NIFTY, "BUY"))
    assert len(k.store.orders) == 1


def test_stop_loss_exits_the_position_on_the_next_tick():
    k = Kit().start()
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.emit(k.signal("sl", RELIANCE, "BUY"))
    k.tick(RELIANCE, 1400.0, qty=1000)
    [pos] = k.kernel.book.open_positions()
    assert pos.stop_loss == 137200  # 2 % below 1400.00
    k.tick(RELIANCE, 1372.05, qty=1000)
    assert pos.is_open and not pos.closing
    k.tick(RELIANCE, 1372.00, qty=1000)  # touches the stop: exit order goes out
    assert pos.closing
    k.tick(RELIANCE, 1371.00, qty=1000)
    assert not pos.is_open and pos.exit_reason == "STOP_LOSS_HIT"
    [trade] = k.store.trades
    assert trade.exit_reason == "STOP_LOSS_HIT" and trade.pnl < 0


def test_intraday_positions_are_squared_off_at_1515():
    k = Kit(start=at(15, 13)).start()
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.emit(k.signal("sq", RELIANCE, "BUY"))
    k.tick(RELIANCE, 1400.0, qty=1000)
    assert k.kernel.book.open_count == 1
    k.tick(RELIANCE, 1400.5, ts=at(15, 15, 0.5), qty=1000)
    k.tick(RELIANCE, 1400.5, ts=at(15, 15, 1), qty=1000)
    assert k.kernel.book.open_count == 0
    assert k.store.trades[0].exit_reason == "INTRADAY_SQUARE_OFF"
    k.emit(k.signal("sq", RELIANCE, "BUY", bucket=99))  # and no new entry after 15:15
    assert k.store.denials[-1].rule == "entry_cutoff"


def test_daily_loss_breaker_halts_persists_and_fails_closed():
    k = Kit(risk=RiskConfig(max_daily_loss_inr=500)).start()
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.emit(k.signal("loss", RELIANCE, "BUY"))
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.tick(RELIANCE, 1380.0, qty=1000, dt_s=6)  # the monitor marks the loss and trips
    assert k.kernel.risk.halted and k.store.latch.halted
    assert k.store.latch.source == "circuit_breaker"
    k.emit(k.signal("loss2", INFY, "BUY"))
    assert k.store.denials[-1].rule == "halted"
    # restart: the latch is still set
    k2 = Kit(store=k.store, book=k.book).start()
    assert k2.kernel.risk.halted
    # a P&L that cannot be computed halts too
    k3 = Kit().start()
    k3.kernel.execution.ctx.day_pnl = lambda: 1 / 0  # type: ignore[method-assign]
    k3.tick(RELIANCE, 1400.0, dt_s=6)
    assert k3.kernel.risk.halted and k3.kernel.risk.latch.source == "fail_closed"


def test_restart_restores_positions_orders_and_reconciles_fills_made_while_down():
    k = Kit().start()
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.emit(k.signal("r", RELIANCE, "BUY"))
    [o] = k.store.orders.values()
    assert o.status == "ACKED"
    # the process dies; meanwhile the broker fills the order
    broker = PaperBroker(k.clock, k.book, MatchingConfig(slippage_ticks=0))
    k.clock.advance(10**9)
    t = Tick(RELIANCE, "NSE", k.clock.now_ns(), k.clock.now_ns(), 140100, 0, 0, 0, 0, 0, 1000, 1000)
    broker.on_market_data(t)
    assert k.book.orders[o.client_order_id].status is OrderStatus.FILLED
    # restart: reconciliation applies the fill before anything else happens
    k2 = Kit(store=k.store, book=k.book, broker=broker)
    k2.clock.set(k.clock.now_ns())
    k2.start()
    assert k2.store.orders[o.client_order_id].status == "FILLED"
    [pos] = k2.kernel.book.open_positions()
    assert pos.quantity == o.quantity and pos.entry_price == 140100
    assert len(k2.store.fills) == 1


class FlakyBroker(PaperBroker):
    """Raises on place_order after recording it (the worst case: sent, but no answer)."""

    fail = True

    def place_order(self, request):  # type: ignore[no-untyped-def]
        ack = super().place_order(request)
        if self.fail:
            raise TimeoutError("no answer from the broker")
        return ack


def test_an_unknown_outcome_is_reconciled_never_sent_twice():
    book = MemoryPaperBook()
    k0 = Kit()
    broker = FlakyBroker(k0.clock, book, MatchingConfig(slippage_ticks=0))
    k = Kit(book=book, broker=broker)
    k.clock = broker.clock = k.kernel.clock  # the kit's clock drives the broker
    k.start()
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.emit(k.signal("u", RELIANCE, "BUY"))
    [o] = k.store.orders.values()
    assert o.status == "UNKNOWN"
    assert broker.placed == 1
    broker.fail = False
    k.tick(RELIANCE, 1400.5, qty=1000, dt_s=6)  # reconcile interval passes
    assert broker.placed == 1  # reconciled from the broker's book, not re-sent
    assert k.store.orders[o.client_order_id].status in ("ACKED", "FILLED")
    k.tick(RELIANCE, 1401.0, qty=1000)
    assert k.store.orders[o.client_order_id].status == "FILLED"
    assert k.kernel.book.open_count == 1


class RecordingBroker(PaperBroker):
    """Checks the write-before-send rule: at place time the order is already stored."""

    def __init__(self, clock, store) -> None:  # type: ignore[no-untyped-def]
        super().__init__(clock)
        self.store = store
        self.seen: list[str] = []

    def place_order(self, request):  # type: ignore[no-untyped-def]
        rec = self.store.orders[request.client_order_id]
        self.seen.append(rec.status)
        return super().place_order(request)


def test_orders_are_persisted_before_they_are_sent_and_sliced_at_the_freeze_quantity():
    from .kit import make_master

    k0 = Kit()
    broker = RecordingBroker(k0.clock, k0.store)
    k = Kit(
        store=k0.store,
        broker=broker,
        master=make_master(freeze=130),
        risk=RiskConfig(
            max_order_value_inr=10**7,
            max_position_value_inr=10**7,
            max_total_exposure_inr=10**8,
            max_position_pct=100,
            risk_per_trade_pct=100,
            capital_inr=10**7,
        ),
    )
    broker.clock = k.clock
    k.start()
    k.chain_ticks()
    k.emit(k.signal("big", NIFTY, "BUY", quantity=650))  # 10 lots, freeze 2 lots → 5 slices
    children = list(k.store.orders.values())
    assert [c.quantity for c in children] == [130] * 5
    assert len({c.parent_id for c in children}) == 1
    assert broker.seen == ["SUBMITTED"] * 5  # stored as SUBMITTED before the broker saw it
    k.emit(k.signal("huge", NIFTY, "BUY", quantity=65 * 22, bucket=7))  # 11 slices: refused
    assert k.store.denials[-1].rule == "freeze_quantity"


def test_manual_orders_go_through_the_same_risk_rules():
    k = Kit().start()
    k.tick(RELIANCE, 1400.0, qty=1000)
    ok = k.kernel.execution.handle_manual("r1", "RELIANCE", Side.BUY, 10)
    assert ok.status == "ACCEPTED" and len(ok.order_ids) == 1
    too_big = k.kernel.execution.handle_manual("r2", "RELIANCE", Side.BUY, 1000)
    assert too_big.status == "DENIED" and too_big.rule == "max_order_value"
    bad = k.kernel.execution.handle_manual("r3", "NOPE", Side.BUY, 1)
    assert bad.status == "DENIED" and bad.rule == "unknown_symbol"
    lot = k.kernel.execution.handle_manual("r4", "NIFTY260421" + "24200CE", Side.BUY, 10)
    assert lot.status == "DENIED" and lot.rule in ("lot_size", "no_market_data")
    k.tick(RELIANCE, 1400.0, qty=1000)
    nothing = k.kernel.execution.handle_manual("r5", "INFY", Side.SELL, 5)
    assert nothing.status == "DENIED" and nothing.rule == "nothing_to_sell"
    part = k.kernel.execution.handle_manual("r6", "RELIANCE", Side.SELL, 4)
    assert part.status == "ACCEPTED"
    k.tick(RELIANCE, 1400.0, qty=1000)
    [pos] = k.kernel.book.open_positions()
    assert pos.quantity == 6


def test_a_retried_manual_request_gets_its_original_result():
    k = Kit(risk=RiskConfig(max_concurrent_positions=1)).start()
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.tick(INFY, 1500.0, qty=1000)
    first = k.kernel.execution.handle_manual("same", "RELIANCE", Side.BUY, 10)
    k.tick(RELIANCE, 1400.0, qty=1000)
    assert first.status == "ACCEPTED" and k.kernel.book.open_count == 1
    again = k.kernel.execution.handle_manual("same", "RELIANCE", Side.BUY, 10)
    assert again.status == "ACCEPTED" and again.order_ids == first.order_ids
    other = k.kernel.execution.handle_manual("new", "INFY", Side.BUY, 10)
    assert other.status == "DENIED" and other.rule == "max_concurrent_positions"
    close = k.kernel.execution.handle_manual("close", "RELIANCE", Side.SELL, 10)
    k.tick(RELIANCE, 1400.0, qty=1000)
    assert close.status == "ACCEPTED" and k.kernel.book.open_count == 0
    retry = k.kernel.execution.handle_manual("close", "RELIANCE", Side.SELL, 10)
    assert retry.status == "ACCEPTED" and retry.order_ids == close.order_ids
    assert len(k.store.orders) == 2


def test_entry_orders_that_do_not_fill_are_cancelled_after_the_timeout():
    k = Kit(
        trading=TradingConfig(
            order_type="LIMIT", limit_offset_ticks=0, paper=MatchingConfig(slippage_ticks=0)
        )
    ).start()
    k.tick(RELIANCE, 1400.0, qty=1000, bid=1399.0, ask=1401.0)
    k.emit(k.signal("lim", RELIANCE, "BUY"))
    [o] = k.store.orders.values()
    assert o.order_type == "LIMIT" and o.limit_price == 140100
    k.tick(RELIANCE, 1405.0, qty=1000, dt_s=30)
    k.tick(RELIANCE, 1406.0, qty=1000, dt_s=31)
    assert k.store.orders[o.client_order_id].status == "CANCELLED"
    assert k.kernel.book.open_count == 0 and not k.kernel.execution.inflight


def test_broker_reject_is_recorded_and_trading_continues():
    class Rejecting(PaperBroker):
        def place_order(self, request):  # type: ignore[no-untyped-def]
            return BrokerAck("REJECTED", reason="RMS: insufficient margin")

    k0 = Kit()
    k = Kit(broker=Rejecting(k0.clock))
    k.kernel.broker.clock = k.clock  # type: ignore[union-attr]
    k.start()
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.emit(k.signal("rej", RELIANCE, "BUY"))
    [o] = k.store.orders.values()
    assert o.status == "REJECTED" and "margin" in o.reason
    assert k.topics("order:rejected")
    assert not k.kernel.execution.inflight
    k.emit(k.signal("rej", RELIANCE, "BUY", bucket=5))  # a later signal is handled again
    assert len(k.store.orders) == 2


def test_disabled_trading_still_records_signals_but_executes_nothing():
    k = Kit(trading=TradingConfig(enabled=False)).start()
    k.tick(RELIANCE, 1400.0, qty=1000)
    k.emit(k.signal("off", RELIANCE, "BUY"))
    res = k.kernel.execution.handle_manual("m", "RELIANCE", Side.BUY, 1)
    assert res.rule == "trading_disabled" and not k.store.orders
    assert [d.rule for d in k.store.denials] == ["trading_disabled", "trading_disabled"]
    assert len(k.store.signals) == 1
