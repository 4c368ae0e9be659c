"""The order state machine under random event sequences (hypothesis): no illegal transition,
filled ≤ quantity, duplicate fills ignored, terminal states absorbing, reconciliation consistent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mandi.core.errors import OrderError
from mandi.model.orders import TERMINAL, TRANSITIONS, Order, OrderStatus, Side

S = OrderStatus
STATUSES = list(OrderStatus)
SETTABLE = [s for s in STATUSES if s not in (S.FILLED, S.PARTIALLY_FILLED)]


def new_order(qty: int = 650) -> Order:
    return Order(
        "o1", token=1, exchange="NSE", symbol="X", side=Side.BUY, quantity=qty, created_ns=1
    )


class OrderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.o = new_order()
        self.fills: dict[str, int] = {}
        self.history = [self.o.status]
        self.t = 1

    @rule(to=st.sampled_from(SETTABLE))
    def transition(self, to: OrderStatus) -> None:
        before = self.o.status
        self.t += 1
        if to in TRANSITIONS[before]:
            assert self.o.transition(to, self.t) is before
            assert self.o.status is to
        else:
            with pytest.raises(OrderError):
                self.o.transition(to, self.t)
            assert self.o.status is before  # an illegal move changes nothing
        self.history.append(self.o.status)

    @rule(fill_no=st.integers(0, 12), qty=st.integers(-65, 400), price=st.integers(-5, 50_000))
    def fill(self, fill_no: int, qty: int, price: int) -> None:
        fid = f"f{fill_no}"
        before = (self.o.status, self.o.filled_qty, self.o.fill_value)
        self.t += 1
        if fid in self.fills:
            assert self.o.apply_fill(fid, qty, price, self.t) is False  # duplicate: ignored
            assert (self.o.status, self.o.filled_qty, self.o.fill_value) == before
            return
        legal = (
            qty > 0
            and price > 0
            and before[0] not in TERMINAL
            and before[0] is not S.NEW
            and before[1] + qty <= self.o.quantity
        )
        if legal:
            assert self.o.apply_fill(fid, qty, price, self.t) is True
            self.fills[fid] = qty
        else:
            with pytest.raises(OrderError):
                self.o.apply_fill(fid, qty, price, self.t)
            assert (self.o.status, self.o.filled_qty, self.o.fill_value) == before
        self.history.append(self.o.status)

    @precondition(lambda self: not self.o.terminal)
    @rule(status=st.sampled_from(STATUSES))
    def reconcile(self, status: OrderStatus) -> None:
        before = (self.o.status, self.o.filled_qty)
        self.t += 1
        try:
            self.o.reconcile(status, self.t)
        except OrderError:
            assert self.o.status is before[0]
        else:
            if status in (S.FILLED, S.PARTIALLY_FILLED):
                assert self.o.status is before[0]  # fills, not reconciliation, move the count
        assert self.o.filled_qty == before[1]
        self.history.append(self.o.status)

    @invariant()
    def filled_never_exceeds_quantity(self) -> None:
        assert 0 <= self.o.filled_qty <= self.o.quantity
        assert self.o.filled_qty == sum(self.fills.values())

    @invariant()
    def filled_status_matches_quantities(self) -> None:
        if self.o.status is S.FILLED:
            assert self.o.filled_qty == self.o.quantity
        if self.o.status is S.PARTIALLY_FILLED:
            assert 0 < self.o.filled_qty < self.o.quantity
        if self.o.filled_qty == self.o.quantity:
            assert self.o.status is S.FILLED

    @invariant()
    def terminal_states_are_absorbing(self) -> None:
        seen_terminal = None
        for s in self.history:
            if seen_terminal is not None:
                assert s is seen_terminal
            elif s in TERMINAL:
                seen_terminal = s


OrderMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_order_state_machine = OrderMachine.TestCase


@given(st.lists(st.tuples(st.integers(1, 5), st.integers(1, 200)), max_size=20))
def test_the_average_price_is_exact(fills: list[tuple[int, int]]) -> None:
    o = new_order(10**9)
    o.transition(S.SUBMITTED, 2)
    for i, (q, p) in enumerate(fills):
        o.apply_fill(str(i), q, p, 3)
    assert o.fill_value == sum(q * p for q, p in fills)


def test_record_round_trip() -> None:
    o = new_order()
    o.transition(S.SUBMITTED, 2)
    o.apply_fill("a", 65, 15000, 3)
    back = Order.from_record(o.to_record())
    assert back.to_record() == o.to_record()
    assert back.fill_ids == {"a"} and back.status is S.PARTIALLY_FILLED
