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
from typing import Any

from mandi.core.errors import InstrumentError, OrderError
from mandi.core.ids import stable_id
from mandi.execution.context import ExecutionContext, tag_for
from mandi.execution.entries import EntryStage
from mandi.execution.exits import ExitStage
from mandi.execution.plan import Plan
from mandi.model.baskets import Basket, BasketLeg, BasketRejected, LegIssue
from mandi.model.instruments import AnyInstrument, Option
from mandi.model.orders import Intent, OrderRecord, OrderType, Side, SubmitOrder
from mandi.model.trading import RiskDenied
from mandi.options.structures import MarginConfig, ResolvedLeg, payoff_legs, resolve, structure_risk
from mandi.risk.baskets import BasketDenied, StructureNumbers, check_basket
from mandi.risk.rules import slice_quantity


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
    strategy: str = "basket"
    name: str = ""  # the basket's tag (a strategy's structure id), else its id

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


# --- the executor: a BasketRun driven through the kernel --------------------------------------
@dataclass(frozen=True, slots=True)
class BasketResult:
    """The answer to a basket: ``ACCEPTED`` (its legs are on their way), ``DENIED`` (refused
    whole: ``rule``, ``reason`` and one issue per leg) or ``LOGGED`` (logging-only mode)."""

    status: str
    basket_id: str = ""
    rule: str = ""
    reason: str = ""
    issues: tuple[LegIssue, ...] = ()
    risk: dict[str, Any] = field(default_factory=dict)


class BasketExecutor:
    """Places baskets through the kernel: one risk decision for the structure
    (:func:`mandi.risk.baskets.check_basket` on :func:`mandi.options.structures.structure_risk`),
    then a :class:`BasketRun` whose legs go through the order manager like any entry (sliced at
    the freeze quantity, paced per exchange segment), and whose outcomes come back from the bus
    (``order:filled``, ``order:rejected``, ``order:cancelled``, ``position:closed``)."""

    UNWIND_REASON = "BASKET_UNWIND"

    def __init__(
        self, ctx: ExecutionContext, entries: EntryStage, exits: ExitStage, policy: str = "unwind"
    ) -> None:
        self.ctx, self.entries, self.exits = ctx, entries, exits
        self.policy = LegFailurePolicy(policy)
        self.runs: dict[str, BasketRun] = {}
        self._by_parent: dict[str, tuple[BasketRun, LegRun]] = {}
        self._by_position: dict[str, tuple[BasketRun, LegRun]] = {}
        bus = ctx.bus
        for topic in ("order:filled", "order:rejected", "order:cancelled"):
            bus.subscribe(topic, self._on_order, name="baskets.orders")
        bus.subscribe("position:closed", self._on_closed, name="baskets.positions")

    # --- placing ------------------------------------------------------------------------------
    def place(
        self,
        basket: Basket,
        request_id: str,
        *,
        policy: str | None = None,
        strategy: str = "basket",
        margin: MarginConfig | None = None,
    ) -> BasketResult:
        """Check ``basket`` whole and, when allowed, start sending its legs hedge-first."""
        ctx = self.ctx
        now = ctx.clock.now_ns()
        basket_id = stable_id("basket", request_id)
        if basket_id in self.runs:
            return BasketResult("ACCEPTED", basket_id, reason="already placed")
        if not ctx.cfg.enabled:
            return BasketResult("DENIED", basket_id, "trading_disabled", "trading is disabled")
        try:
            legs = resolve(basket, ctx.master, now)
            prices = {}
            for r in legs:
                t = ctx.market.ticks.get(r.instrument.token)
                touch = 0 if t is None else (t.ask if r.leg.side is Side.BUY else t.bid)
                prices[r.instrument.token] = touch or ctx.market.ltp(r.instrument.token)
            spot = self._spot(legs)
            pl = payoff_legs(legs, prices, spot, now, rate=ctx.cfg.strikes.risk_free_rate)
            risk = structure_risk(pl, spot / 100, margin, r=ctx.cfg.strikes.risk_free_rate)
        except BasketRejected as e:
            self._deny(now, e.rule, str(e), strategy)
            return BasketResult("DENIED", basket_id, e.rule, str(e), tuple(e.issues))
        orders = ctx.orders
        lim = orders.limiter if orders is not None else None
        queued = len(orders.queue) if orders is not None else 0
        contexts = []
        for r in legs:
            inst = r.instrument
            slices = slice_quantity(r.leg.quantity, inst.freeze_qty, inst.lot_size)
            kind = OrderType.LIMIT if r.leg.price else OrderType.MARKET
            contexts.append(
                ctx.order_context(
                    inst, r.leg.side, r.leg.quantity, Intent.ENTRY, kind, r.leg.price, len(slices)
                )
            )
        numbers = StructureNumbers(
            worst_case=risk.worst_case,
            margin=risk.margin.total,
            premium_value=risk.premium_value,
            exposure=ctx.book.exposure() + sum(f.value for f in ctx.inflight.values()),
            available_cash=ctx.available_cash(),
            day_pnl=ctx.day_pnl(),
            open_positions=ctx.book.open_count + len(ctx.inflight),
            orders_last_minute=(lim.sent_last_minute(now) if lim else 0) + queued,
            orders_today=(lim.sent_today(now) if lim else 0) + queued,
        )
        risk_doc = {
            "worst_case": risk.worst_case,
            "max_loss": risk.max_loss,
            "max_profit": risk.max_profit,
            "margin": risk.margin.total,
            "hedge_benefit": risk.margin.hedge_benefit,
            "net_premium": risk.net_premium,
        }
        decision = check_basket(contexts, numbers, ctx.limits, calendar_rules=self.calendar_rules)
        if isinstance(decision, BasketDenied):
            self._deny(now, decision.rule, decision.reason, strategy)
            return BasketResult(
                "DENIED", basket_id, decision.rule, decision.reason, decision.issues, risk_doc
            )
        if orders is None:
            return BasketResult("LOGGED", basket_id, reason="logging-only mode", risk=risk_doc)
        run = BasketRun.of(basket_id, [(r.leg, r.instrument) for r in legs], policy or self.policy)
        run.strategy = strategy
        run.name = basket.tag or basket_id
        self.runs[basket_id] = run
        self._act(run, run.start())
        return BasketResult("ACCEPTED", basket_id, risk=risk_doc)

    calendar_rules = True  # the backtester turns the calendar rules off for daily bars

    def _spot(self, legs: list[ResolvedLeg]) -> int:
        """The underlying's last price (the legs' underlying; an option leg needs it)."""
        ctx = self.ctx
        for r in legs:
            inst = r.instrument
            if isinstance(inst, Option):
                try:
                    u = ctx.master.by_symbol(inst.underlying, inst.exchange)
                except InstrumentError:
                    continue
                if ctx.market.ltp(u.token):
                    return ctx.market.ltp(u.token)
        return max((ctx.market.ltp(r.instrument.token) for r in legs), default=0)

    def _deny(self, now: int, rule: str, reason: str, strategy: str) -> None:

        self.ctx.risk.deny(RiskDenied(now, rule, reason, strategy, "", "", "basket", "", 0))

    # --- acting -------------------------------------------------------------------------------
    def _act(self, run: BasketRun, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Send):
                self._send(run, a.leg)
            elif isinstance(a, Cancel):
                self._cancel(a.leg)
            else:
                self._unwind(run, a.leg, a.quantity)

    def _send(self, run: BasketRun, leg: LegRun) -> None:

        ctx = self.ctx
        inst = leg.instrument
        parent = stable_id(run.basket_id, "leg", leg.index)
        leg.order_id = parent
        kind = OrderType.LIMIT if leg.leg.price else OrderType.MARKET
        ref = ctx.market.ltp(inst.token)
        position = stable_id(parent, "position")
        cmd = SubmitOrder(
            client_order_id=parent,
            ts_event=ctx.clock.now_ns(),
            token=inst.token,
            exchange=inst.exchange,
            symbol=inst.symbol,
            side=leg.leg.side,
            quantity=leg.leg.quantity,
            reference_price=ref,
            order_type=kind,
            limit_price=leg.leg.price,
            product=ctx.product,
            intent=Intent.ENTRY,
            strategy=run.strategy,
            signal_id=f"basket:{run.name}",  # the legs' positions name their structure
            position_id=position,
            tag=tag_for(inst.token, leg.leg.side.sign),
        )
        self._by_parent[parent] = (run, leg)
        self._by_position[position] = (run, leg)
        plan = Plan(inst, leg.leg.side, leg.leg.side.sign, leg.leg.quantity, ref, kind,
                    leg.leg.price, 0, 0, {"basket": run.basket_id})  # fmt: skip
        slices = slice_quantity(leg.leg.quantity, inst.freeze_qty, inst.lot_size)
        try:
            children = self.entries.submit(cmd, slices, plan, "")
        except OrderError as e:
            self._act(run, run.failed(leg, f"not sent: {e}"))
            return
        if children and all(o.terminal for o in children):  # refused at once by the broker
            self._settle_leg(run, leg)

    def _cancel(self, leg: LegRun) -> None:
        orders = self.ctx.orders
        if orders is None:
            return
        for o in list(orders.orders.values()):
            if o.parent_id == leg.order_id:
                orders.cancel(o.client_order_id, "the basket unwinds")

    def _unwind(self, run: BasketRun, leg: LegRun, quantity: int) -> None:

        p = self.ctx.book.get(stable_id(leg.order_id, "position"))
        if p is None or not p.is_open:
            self._act(run, run.unwound(leg))
            return
        self.exits.exit_position(p, self.UNWIND_REASON, quantity)

    # --- outcomes -----------------------------------------------------------------------------
    def _settle_leg(self, run: BasketRun, leg: LegRun) -> None:
        """Re-read the leg's child orders and tell the run what they add up to."""
        orders = self.ctx.orders
        store = self.ctx.store
        ids = store.order_ids(leg.order_id)
        recs = [
            orders.orders[i].to_record() if orders and i in orders.orders else None for i in ids
        ]
        filled = 0
        working = False
        reasons = []
        for i, rec in zip(ids, recs, strict=True):
            if rec is None:
                rec = self._stored(i)
            if rec is None:
                continue
            filled += rec.filled_qty
            if rec.status not in ("FILLED", "CANCELLED", "REJECTED"):
                working = True
            elif rec.status != "FILLED" and rec.reason:
                reasons.append(rec.reason)
        if filled >= leg.leg.quantity:
            self._act(run, run.filled(leg, filled))
        elif not working:
            self._act(run, run.failed(leg, "; ".join(reasons) or "not filled", filled))
        else:
            leg.filled = filled

    def _stored(self, client_order_id: str) -> OrderRecord | None:
        store = self.ctx.store
        kept = getattr(store, "orders", None)  # the in-memory store keeps every record
        if isinstance(kept, dict):
            rec: OrderRecord | None = kept.get(client_order_id)
            return rec
        for rec in store.open_orders():
            if rec.client_order_id == client_order_id:
                return rec
        return None

    def _on_order(self, topic: str, ev: Any) -> None:
        parent = getattr(ev, "order", None)
        pid = parent.parent_id if parent is not None else ""
        if not pid:  # OrderFilled carries the client order id
            cid = getattr(ev, "client_order_id", "")
            orders = self.ctx.orders
            o = orders.orders.get(cid) if orders is not None else None
            rec = o.to_record() if o is not None else self._stored(cid)
            pid = getattr(rec, "parent_id", "") or cid
        hit = self._by_parent.get(pid)
        if hit is None:
            return
        run, leg = hit
        if leg.status is LegStatus.SENT:
            self._settle_leg(run, leg)

    def _on_closed(self, topic: str, ev: Any) -> None:
        rec = getattr(ev, "position", None)
        hit = self._by_position.get(getattr(rec, "position_id", ""))
        if hit is None:
            return
        run, leg = hit
        if run.status is BasketStatus.UNWINDING and leg.status in (
            LegStatus.FILLED,
            LegStatus.FAILED,
        ):
            self._act(run, run.unwound(leg))
