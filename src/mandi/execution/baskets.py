"""Placing a basket: the legs of one structure sent hedge-first, and what happens when a leg fails.

A :class:`BasketRun` is the state machine of one accepted basket (the risk decision was taken
for the whole structure before it exists). It decides *what* to send and when; the executor that
owns it sends (each leg sliced at the freeze quantity and paced by the order router like any
order) and reports each leg's outcome back.

* **Hedge first.** The legs that buy (the hedges: long wings, bought options) go first; the legs
  that sell go once every buy leg is done — a broker then grants the hedge's margin benefit, and
  a short leg is never left naked because its hedge was not bought.
* **When a leg fails** (refused by the broker, cancelled, or unfilled when it stopped working),
  the basket's :class:`LegFailurePolicy` decides:

  - ``unwind`` (the default): nothing more is sent; every quantity already filled is closed
    (each filled leg gets an unwind action), so no partial structure stays open;
  - ``complete``: the remaining legs are still sent, to finish as much of the structure as can
    be; the failed leg is reported.

A partially filled leg counts as failed for the policy (its filled part is unwound with
``unwind``). Everything here is pure: no clock, no I/O; leg outcomes come in as calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mandi.model.baskets import BasketLeg
from mandi.model.instruments import AnyInstrument
from mandi.model.orders import Side


class LegFailurePolicy(StrEnum):
    UNWIND = "unwind"
    COMPLETE = "complete"


class LegStatus(StrEnum):
    WAITING = "WAITING"  # not sent yet (its phase has not started)
    SENT = "SENT"
    FILLED = "FILLED"
    FAILED = "FAILED"  # refused, cancelled or only partly filled
    SKIPPED = "SKIPPED"  # never sent: an earlier leg failed and the basket unwinds
    UNWOUND = "UNWOUND"  # its filled quantity was closed again


class BasketStatus(StrEnum):
    SENDING = "SENDING"
    FILLED = "FILLED"  # every leg filled
    PARTIAL = "PARTIAL"  # ``complete`` policy: done, some legs failed
    UNWINDING = "UNWINDING"
    UNWOUND = "UNWOUND"  # ``unwind`` policy: a leg failed and what filled was closed


@dataclass
class LegRun:
    """One leg's progress. ``phase`` 0 = hedges (buys), 1 = the rest (sells)."""

    index: int
    leg: BasketLeg
    instrument: AnyInstrument
    phase: int
    status: LegStatus = LegStatus.WAITING
    filled: int = 0
    reason: str = ""
    order_id: str = ""  # the parent client order id the executor used

    @property
    def open(self) -> bool:
        return self.status in (LegStatus.WAITING, LegStatus.SENT)


@dataclass(frozen=True, slots=True)
class Send:
    """Send this leg's entry order now."""

    leg: LegRun


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel this leg's working order (the basket unwinds); its outcome comes back as
    :meth:`BasketRun.failed` or :meth:`BasketRun.filled`."""

    leg: LegRun


@dataclass(frozen=True, slots=True)
class Unwind:
    """Close the ``quantity`` this leg filled."""

    leg: LegRun
    quantity: int


Action = Send | Cancel | Unwind


@dataclass
class BasketRun:
    """The state machine of one accepted basket (module doc)."""

    basket_id: str
    legs: list[LegRun]
    policy: LegFailurePolicy = LegFailurePolicy.UNWIND
    status: BasketStatus = BasketStatus.SENDING
    phase: int = -1
    log: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        basket_id: str,
        legs: list[tuple[BasketLeg, AnyInstrument]],
        policy: LegFailurePolicy | str = LegFailurePolicy.UNWIND,
    ) -> BasketRun:
        runs = [
            LegRun(i, leg, inst, 0 if leg.side is Side.BUY else 1)
            for i, (leg, inst) in enumerate(legs)
        ]
        return cls(basket_id, runs, LegFailurePolicy(policy))

    # --- reading ------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.status not in (BasketStatus.SENDING, BasketStatus.UNWINDING)

    def leg(self, order_id: str) -> LegRun | None:
        return next((x for x in self.legs if x.order_id == order_id), None)

    # --- driving ------------------------------------------------------------------------------
    def start(self) -> list[Action]:
        """The first actions: the hedge legs (or, with no buy legs, every leg)."""
        return self._next_phase()

    def _next_phase(self) -> list[Action]:
        phases = sorted({x.phase for x in self.legs if x.phase > self.phase})
        if not phases:
            return self._finish()
        self.phase = phases[0]
        out: list[Action] = []
        for x in self.legs:
            if x.phase == self.phase and x.status is LegStatus.WAITING:
                x.status = LegStatus.SENT
                out.append(Send(x))
        return out or self._next_phase()

    def filled(self, leg: LegRun, quantity: int) -> list[Action]:
        """``leg`` has now filled ``quantity`` in total (fills of all its slices)."""
        leg.filled = min(quantity, leg.leg.quantity)
        if leg.filled < leg.leg.quantity or leg.status is not LegStatus.SENT:
            return []
        leg.status = LegStatus.FILLED
        if self.status is BasketStatus.UNWINDING:  # filled while the basket unwinds
            return [Unwind(leg, leg.filled)]
        return self._phase_done()

    def failed(self, leg: LegRun, reason: str, filled: int | None = None) -> list[Action]:
        """``leg`` stopped working short of its quantity (refused, cancelled, expired), having
        filled ``filled`` (default: what :meth:`filled` last said)."""
        if filled is not None:
            leg.filled = min(filled, leg.leg.quantity)
        if leg.status is not LegStatus.SENT:
            return []
        leg.status, leg.reason = LegStatus.FAILED, reason
        self.log.append(f"leg {leg.index + 1} {leg.leg.symbol}: {reason}")
        if self.status is BasketStatus.UNWINDING:
            return [Unwind(leg, leg.filled)] if leg.filled else self._check_unwound()
        if self.policy is LegFailurePolicy.UNWIND:
            return self._unwind()
        return self._phase_done()

    def unwound(self, leg: LegRun) -> list[Action]:
        """The unwind of ``leg`` is done (its filled quantity was closed)."""
        leg.status = LegStatus.UNWOUND
        return self._check_unwound()

    def _phase_done(self) -> list[Action]:
        if self.status is not BasketStatus.SENDING:
            return []
        if any(x.phase == self.phase and x.status is LegStatus.SENT for x in self.legs):
            return []  # the phase's other legs are still working
        return self._next_phase()

    def _unwind(self) -> list[Action]:
        """Stop: skip what was not sent, cancel what still works, close what filled."""
        self.status = BasketStatus.UNWINDING
        out: list[Action] = []
        for x in self.legs:
            if x.status is LegStatus.WAITING:
                x.status = LegStatus.SKIPPED
            elif x.status is LegStatus.SENT:
                out.append(Cancel(x))
            elif x.filled and x.status in (LegStatus.FILLED, LegStatus.FAILED):
                out.append(Unwind(x, x.filled))
        return out or self._check_unwound()

    def _check_unwound(self) -> list[Action]:
        if self.status is BasketStatus.UNWINDING and not any(
            x.status is LegStatus.SENT
            or (x.filled and x.status in (LegStatus.FILLED, LegStatus.FAILED))
            for x in self.legs
        ):
            self.status = BasketStatus.UNWOUND
        return []

    def _finish(self) -> list[Action]:
        failed = any(x.status is LegStatus.FAILED for x in self.legs)
        self.status = BasketStatus.PARTIAL if failed else BasketStatus.FILLED
        return []

    def summary(self) -> dict[str, object]:
        return {
            "basket_id": self.basket_id,
            "status": self.status.value,
            "policy": self.policy.value,
            "legs": [
                {
                    "leg": x.index,
                    "symbol": x.leg.symbol,
                    "side": x.leg.side.value,
                    "quantity": x.leg.quantity,
                    "filled": x.filled,
                    "status": x.status.value,
                    "reason": x.reason,
                    "order_id": x.order_id,
                }
                for x in self.legs
            ],
        }
