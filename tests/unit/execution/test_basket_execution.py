"""Baskets through the trading kernel: one risk decision, hedges sent (and filled) before the
short legs, and each leg-failure policy with a leg the broker refuses."""

from __future__ import annotations

import pytest

from mandi.execution.config import MatchingConfig, TradingConfig
from mandi.execution.paper import MemoryPaperBook, PaperBroker
from mandi.execution.ports import BrokerAck
from mandi.model.baskets import Basket, BasketLeg
from mandi.model.orders import Side
from mandi.risk.config import RiskConfig

from .kit import LOT, NIFTY, Kit

B, S = Side.BUY, Side.SELL


def symbol(k: int, kind: str) -> str:
    return f"NIFTY260421{k}{kind}"


CONDOR = Basket(
    (
        BasketLeg(symbol(24050, "PE"), S, LOT),
        BasketLeg(symbol(23950, "PE"), B, LOT),
        BasketLeg(symbol(24350, "CE"), S, LOT),
        BasketLeg(symbol(24450, "CE"), B, LOT),
    ),
    template="iron_condor",
)


class RefusingBroker(PaperBroker):
    """The paper broker, refusing one contract (as a broker's RMS might: margin, ban period)."""

    refuse = ""

    def place_order(self, request):
        if request.symbol == self.refuse:
            return BrokerAck("REJECTED", reason="RMS: contract in ban period")
        return super().place_order(request)


def kit(policy: str = "unwind", refuse: str = "", **risk) -> Kit:
    trading = TradingConfig(paper=MatchingConfig(slippage_ticks=0), basket_on_failure=policy)
    probe = Kit(trading=trading)
    broker = RefusingBroker(probe.clock, MemoryPaperBook(), trading.paper, 50_000_000)
    broker.refuse = refuse
    k = Kit(trading=trading, broker=broker, risk=RiskConfig(**risk)).start()
    k.chain_ticks()
    return k


def sent(k: Kit) -> list[tuple[str, str]]:
    return [(m.order.symbol[-7:], m.order.side) for m in k.topics("order:submitted")]


def test_hedges_are_sent_and_filled_before_the_short_legs():
    k = kit()
    r = k.kernel.execution.place_basket(CONDOR, "ic-1")
    assert r.status == "ACCEPTED" and r.risk["worst_case"] > 0
    assert r.risk["hedge_benefit"] > 0
    assert sorted(sent(k)) == [("23950PE", "BUY"), ("24450CE", "BUY")]  # only the hedges
    k.chain_ticks()  # the hedges fill on the next prints; then the short legs go
    assert sorted(sent(k)[2:]) == [("24050PE", "SELL"), ("24350CE", "SELL")]
    k.chain_ticks()
    run = k.kernel.execution.baskets.runs[r.basket_id]
    assert run.status.value == "FILLED" and k.kernel.book.open_count == 4
    # placing the same request again changes nothing
    assert k.kernel.execution.place_basket(CONDOR, "ic-1").reason == "already placed"
    assert len(sent(k)) == 4


def test_unwind_policy_closes_what_filled_when_a_short_leg_is_refused():
    k = kit("unwind", refuse=symbol(24350, "CE"))
    r = k.kernel.execution.place_basket(CONDOR, "ic-2")
    run = k.kernel.execution.baskets.runs[r.basket_id]
    k.chain_ticks()  # the hedges fill; the short legs go and one is refused at once
    assert run.status.value == "UNWINDING"
    k.chain_ticks()  # the unwind exits fill
    assert run.status.value == "UNWOUND", run.summary()
    assert k.kernel.book.open_count == 0
    trades = sorted((t.symbol[-7:], t.exit_reason) for t in k.store.trades)
    assert trades == [("23950PE", "BASKET_UNWIND"), ("24450CE", "BASKET_UNWIND")]
    assert [x.status.value for x in run.legs] == ["FAILED", "UNWOUND", "FAILED", "UNWOUND"]
    assert "ban period" in run.legs[2].reason


def test_unwind_policy_cancels_the_other_hedge_when_a_hedge_is_refused():
    k = kit("unwind", refuse=symbol(24450, "CE"))
    r = k.kernel.execution.place_basket(CONDOR, "ic-2b")
    run = k.kernel.execution.baskets.runs[r.basket_id]
    assert run.status.value == "UNWOUND"  # refused at once: the working hedge was cancelled
    k.chain_ticks()
    assert k.kernel.book.open_count == 0 and k.store.trades == []
    assert not any(side == "SELL" for _, side in sent(k))


def test_complete_policy_sends_the_rest_and_reports_the_partial_basket():
    k = kit("complete", refuse=symbol(24450, "CE"))
    r = k.kernel.execution.place_basket(CONDOR, "ic-3")
    run = k.kernel.execution.baskets.runs[r.basket_id]
    k.chain_ticks()
    k.chain_ticks()
    assert run.status.value == "PARTIAL"
    assert [x.status.value for x in run.legs] == ["FILLED", "FILLED", "FILLED", "FAILED"]
    assert k.kernel.book.open_count == 3


def test_a_basket_over_the_risk_budget_is_refused_whole():
    k = kit(max_daily_loss_inr=100)  # the condor can lose ~₹130
    r = k.kernel.execution.place_basket(CONDOR, "ic-4")
    assert r.status == "DENIED" and r.rule == "basket_worst_case"
    assert sent(k) == [] and k.kernel.execution.baskets.runs == {}
    bad = Basket((BasketLeg(symbol(24050, "PE"), S, 100), BasketLeg("NOPE", B, LOT)))
    r = kit().kernel.execution.place_basket(bad, "bad-1")
    assert r.status == "DENIED" and {i.leg for i in r.issues} == {0, 1}


@pytest.mark.parametrize("policy", ["unwind", "complete"])
def test_config_policy_names(policy):
    assert TradingConfig(basket_on_failure=policy).basket_on_failure == policy
    assert NIFTY
