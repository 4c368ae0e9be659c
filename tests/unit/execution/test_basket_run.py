"""The basket state machine: hedges first, and each leg-failure policy path."""

from __future__ import annotations

from mandi.execution.baskets import (
    BasketRun,
    BasketStatus,
    Cancel,
    LegFailurePolicy,
    LegStatus,
    Send,
    Unwind,
)
from mandi.model.baskets import BasketLeg
from mandi.model.instruments import Option
from mandi.model.orders import Side

B, S = Side.BUY, Side.SELL


def condor(policy: str = "unwind") -> BasketRun:
    legs = []
    for i, (side, sym) in enumerate(
        [(B, "PE23800"), (S, "PE23900"), (S, "CE24100"), (B, "CE24200")]
    ):
        inst = Option(100 + i, "NSE", sym, "NIFTY", "NFO-OPT", 65, underlying="NIFTY")
        legs.append((BasketLeg(sym, side, 130), inst))
    return BasketRun.of("b1", legs, policy)


def syms(actions) -> list[tuple[str, str]]:
    return [(type(a).__name__, a.leg.leg.symbol) for a in actions]


def test_hedges_go_first_then_the_short_legs():
    run = condor()
    first = run.start()
    assert syms(first) == [("Send", "PE23800"), ("Send", "CE24200")]
    wing_pe, wing_ce = (a.leg for a in first)
    assert run.filled(wing_pe, 65) == []  # half filled: still working
    assert run.filled(wing_pe, 130) == []  # the other hedge is still working
    second = run.filled(wing_ce, 130)
    assert syms(second) == [("Send", "PE23900"), ("Send", "CE24100")]
    for a in second:
        run.filled(a.leg, 130)
    assert run.status is BasketStatus.FILLED and run.done


def test_unwind_policy_closes_what_filled_and_sends_nothing_more():
    run = condor("unwind")
    wing_pe, wing_ce = (a.leg for a in run.start())
    run.filled(wing_pe, 130)
    out = run.failed(wing_ce, "rejected by the broker: margin")
    assert syms(out) == [("Unwind", "PE23800")] and out[0].quantity == 130
    assert run.status is BasketStatus.UNWINDING
    assert [x.status for x in run.legs] == [
        LegStatus.FILLED,
        LegStatus.SKIPPED,
        LegStatus.SKIPPED,
        LegStatus.FAILED,
    ]
    run.unwound(wing_pe)
    assert run.status is BasketStatus.UNWOUND and run.done
    assert run.log == ["leg 4 CE24200: rejected by the broker: margin"]


def test_unwind_cancels_a_leg_still_working_and_closes_its_partial_fill():
    run = condor("unwind")
    wing_pe, wing_ce = (a.leg for a in run.start())
    out = run.failed(wing_pe, "rejected")
    assert syms(out) == [("Cancel", "CE24200")]
    assert isinstance(out[0], Cancel)
    out = run.failed(wing_ce, "cancelled: the basket unwinds", filled=65)
    assert syms(out) == [("Unwind", "CE24200")] and out[0].quantity == 65
    assert run.status is BasketStatus.UNWINDING
    run.unwound(wing_ce)
    assert run.status is BasketStatus.UNWOUND


def test_a_short_leg_failing_unwinds_the_hedges_too():
    run = condor("unwind")
    sends = [x for a in run.start() for x in run.filled(a.leg, 130)]
    shorts = [a.leg for a in sends]
    assert [x.leg.side for x in shorts] == [S, S]
    run.filled(shorts[0], 130)
    out = run.failed(shorts[1], "rejected")
    assert sorted(syms(out)) == [
        ("Unwind", "CE24200"),
        ("Unwind", "PE23800"),
        ("Unwind", "PE23900"),
    ]


def test_complete_policy_sends_the_rest_and_reports_a_partial_basket():
    run = condor("complete")
    wing_pe, wing_ce = (a.leg for a in run.start())
    run.filled(wing_pe, 130)
    out = run.failed(wing_ce, "rejected", filled=0)
    assert syms(out) == [("Send", "PE23900"), ("Send", "CE24100")]
    for a in out:
        assert isinstance(a, Send)
        run.filled(a.leg, 130)
    assert run.status is BasketStatus.PARTIAL
    summary = run.summary()
    assert summary["policy"] == "complete"
    assert [x["status"] for x in summary["legs"]] == ["FILLED", "FILLED", "FILLED", "FAILED"]


def test_a_basket_without_buys_sends_every_leg_at_once_and_a_late_fill_unwinds():
    ce = Option(1, "NSE", "CE", "NIFTY", "NFO-OPT", 65, underlying="NIFTY")
    pe = Option(2, "NSE", "PE", "NIFTY", "NFO-OPT", 65, underlying="NIFTY")
    run = BasketRun.of(
        "s", [(BasketLeg("CE", S, 65), ce), (BasketLeg("PE", S, 65), pe)], LegFailurePolicy.UNWIND
    )
    call, put = (a.leg for a in run.start())
    assert run.failed(call, "rejected") == [Cancel(put)]
    out = run.filled(put, 65)  # the cancel came too late: it filled
    assert out == [Unwind(put, 65)]
    run.unwound(put)
    assert run.status is BasketStatus.UNWOUND
