"""The entry stage: a signal → at most one trade plan → risk → orders (or, in logging-only mode,
a log line and :class:`~mandi.model.trading.TradeLogged` on ``order:logged``).

In order, for one signal (``signal:>``):

1. **once** — a signal already handled (in memory or by its stored status) is a duplicate;
2. **position rules** — an opposite signal from the same strategy first closes its position
   (``exit_on_opposite_signal``, through the exit stage) and cancels its working entry; a repeated
   one is ignored while the position (or its entry order) exists; one whose metadata has
   ``exit`` only closes (go flat: exit reason ``EXIT_SIGNAL``, nothing opened);
3. **checks** — :func:`~mandi.signals.manager.validate_signal` (age, enabled, symbol known,
   concurrent positions), short selling (``allow_short``), the daily-loss breaker;
4. **plan** — :func:`~mandi.execution.plan.plan_entry`: instrument (an option for an index
   signal), reference price, size, stop-loss, target, order type;
5. **risk** — the pre-trade rules on the plan (:meth:`~mandi.risk.engine.RiskEngine.check`);
6. **submit** — a :class:`~mandi.model.orders.SubmitOrder` with a client id derived from the
   signal id goes to the order manager (sliced at the freeze quantity); the entry is in flight
   until its position exists.
"""

from __future__ import annotations

import logging

from mandi.core.errors import OrderError
from mandi.core.ids import stable_id
from mandi.core.money import format_inr
from mandi.execution.context import ExecutionContext, InFlight, parse_tag, tag_for
from mandi.execution.exits import ExitStage
from mandi.execution.plan import Plan, plan_entry
from mandi.model.instruments import AnyInstrument, Equity
from mandi.model.orders import Intent, Order, Side, SubmitOrder
from mandi.model.trading import SignalGenerated, TradeLogged
from mandi.risk import exits as exit_rules
from mandi.risk.rules import Denied, slice_quantity
from mandi.signals.manager import FINAL, IGNORED, LOGGED, ORDERED, validate_signal

log = logging.getLogger(__name__)


class EntryStage:
    def __init__(self, ctx: ExecutionContext, exits: ExitStage) -> None:
        self.ctx = ctx
        self.exits = exits
        self._handled: set[str] = set()
        self.signals_seen = 0
        self.duplicates = 0
        self.logged = 0

    def handle_signal(self, topic: str, sig: SignalGenerated) -> None:
        """Bus handler for ``signal:>``: act on a signal at most once — its writes one unit of
        work of the store (the signal manager's, when it published it here)."""
        with self.ctx.store.unit():
            self._handle_signal(sig)

    def _handle_signal(self, sig: SignalGenerated) -> None:
        if sig.signal_id in self._handled:
            self.duplicates += 1
            return
        store = self.ctx.store
        status = store.signal_status(sig.signal_id)
        if status is None:
            store.insert_signal(sig)  # published by someone else: persist it first
        elif status in FINAL:
            self.duplicates += 1
            self._handled.add(sig.signal_id)
            return
        self._handled.add(sig.signal_id)
        self.signals_seen += 1
        try:
            self.decide(sig)
        except Exception as e:
            log.exception("signal %s could not be processed", sig.signal_id)
            self.ctx.deny_signal(sig, Denied("internal_error", f"{type(e).__name__}: {e}"))

    def decide(self, sig: SignalGenerated) -> None:
        """Steps 2–6 of the module doc for one new signal; its final status is stored."""
        ctx = self.ctx
        now = ctx.clock.now_ns()
        bias = sig.action.sign
        watched = ctx.master.get(sig.token)
        mine = [
            p
            for p in ctx.book.open_positions()
            if p.strategy == sig.strategy and p.metadata.get("source") == sig.token
        ]
        opposite = [p for p in mine if p.metadata.get("bias") == -bias]
        same = [p for p in mine if p.metadata.get("bias") == bias]
        same_inflight = [
            f for f in ctx.inflight.values() if f.strategy == sig.strategy and f.source == sig.token
        ]
        if sig.metadata.get("exit"):  # "go flat": Strategy.close, an ML strategy's neutral call
            for p in opposite:
                self.exits.exit_position(p, exit_rules.FLAT)
            for f in [f for f in same_inflight if f.bias == -bias]:
                for cid in list(f.children):
                    if ctx.orders is not None:
                        ctx.orders.cancel(cid, "exit signal")
            done = "closing the position" if opposite else "no position to close"
            ctx.finish_signal(sig.signal_id, ORDERED if opposite else IGNORED, done)
            return
        if opposite and ctx.cfg.exit_on_opposite_signal:
            for p in opposite:
                self.exits.exit_position(p, exit_rules.SIGNAL)
        if same or any(f.bias == bias for f in same_inflight):
            ctx.finish_signal(
                sig.signal_id, IGNORED, "a position in this direction is already open"
            )
            return
        if any(f.bias == -bias for f in same_inflight):
            for f in [f for f in same_inflight if f.bias == -bias]:
                for cid in list(f.children):
                    if ctx.orders is not None:
                        ctx.orders.cancel(cid, "opposite signal")
        d = validate_signal(
            sig,
            now,
            max_age_ns=int(ctx.cfg.signal_max_age_s * 1e9),
            enabled=ctx.cfg.enabled,
            symbol_known=watched is not None,
            open_positions=ctx.book.open_count + len(ctx.inflight),
            max_positions=ctx.limits.max_concurrent_positions,
        )
        if d is not None:
            ctx.deny_signal(sig, d)
            return
        assert watched is not None
        if isinstance(watched, Equity) and sig.action is Side.SELL and not ctx.cfg.allow_short:
            what = "closed the long position" if opposite else "nothing to sell"
            ctx.finish_signal(
                sig.signal_id,
                IGNORED,
                f"{what}; short selling is disabled (trading.allow_short)",
            )
            return
        brk = ctx.risk.check_breaker(ctx.day_pnl)
        if isinstance(brk, Denied):
            ctx.deny_signal(sig, Denied("halted", ctx.risk.latch.reason or brk.reason))
            return
        plan = self.plan(sig, watched, bias)
        if isinstance(plan, Denied):
            ctx.deny_signal(sig, plan)
            return
        slices = slice_quantity(plan.quantity, plan.instrument.freeze_qty, plan.instrument.lot_size)
        decision = ctx.risk.check(
            ctx.order_context(
                plan.instrument,
                plan.side,
                plan.quantity,
                Intent.ENTRY,
                plan.order_type,
                plan.limit_price,
                len(slices),
            )
        )
        if isinstance(decision, Denied):
            ctx.deny_signal(
                sig,
                decision,
                symbol=plan.instrument.symbol,
                side=plan.side.value,
                quantity=plan.quantity,
            )
            return
        parent = stable_id(sig.signal_id, "entry")
        explicit = plan.detail.get("explicit_levels")
        cmd = SubmitOrder(
            client_order_id=parent,
            ts_event=now,
            token=plan.instrument.token,
            exchange=plan.instrument.exchange,
            symbol=plan.instrument.symbol,
            side=plan.side,
            quantity=plan.quantity,
            reference_price=plan.reference_price,
            order_type=plan.order_type,
            limit_price=plan.limit_price,
            product=ctx.product,
            intent=Intent.ENTRY,
            strategy=sig.strategy,
            signal_id=sig.signal_id,
            position_id=stable_id(parent, "position"),
            stop_loss=plan.stop_loss if explicit else 0,
            target=plan.target if explicit else 0,
            tag=tag_for(sig.token, bias),
        )
        if ctx.orders is None:
            self.log_trade(sig, plan)
            return
        try:
            self.submit(cmd, slices, plan, sig.signal_id)
        except OrderError as e:  # e.g. the paced queue is full
            ctx.deny_signal(sig, Denied("order_queue", str(e)))

    def plan(self, sig: SignalGenerated, watched: AnyInstrument, bias: int) -> Plan | Denied:
        """The trade plan of ``sig`` (:func:`~mandi.execution.plan.plan_entry`)."""
        ctx = self.ctx
        return plan_entry(
            sig,
            watched,
            bias,
            now=ctx.clock.now_ns(),
            cfg=ctx.cfg,
            limits=ctx.limits,
            market=ctx.market,
            master=ctx.master,
        )

    def submit(
        self, cmd: SubmitOrder, slices: list[int], plan: Plan, signal_id: str
    ) -> list[Order]:
        """Hand an allowed entry to the order manager (stored NEW with the signal's ORDERED
        status in one transaction) and track it in flight until its position exists."""
        ctx = self.ctx
        assert ctx.orders is not None
        src, bias = parse_tag(cmd.tag)
        segment = f"{plan.instrument.exchange}:{plan.instrument.segment or 'EQ'}"
        children = ctx.orders.submit(
            cmd, slices, segment, signal_status=(signal_id, ORDERED, "") if signal_id else None
        )
        if children:
            f = InFlight(
                cmd.client_order_id,
                cmd.strategy,
                src,
                bias,
                cmd.token,
                plan.quantity * plan.reference_price,
            )
            f.children = {o.client_order_id for o in children if not o.terminal}
            if f.children:
                ctx.inflight[cmd.client_order_id] = f
        elif signal_id:
            ctx.finish_signal(signal_id, ORDERED, "orders already exist")
        return children

    def log_trade(self, sig: SignalGenerated, plan: Plan) -> None:
        """Logging-only mode: log and publish the full intended trade; no order exists."""
        ctx = self.ctx
        now = ctx.clock.now_ns()
        risk = abs(plan.reference_price - plan.stop_loss) * plan.quantity
        ev = TradeLogged(
            now,
            sig.signal_id,
            sig.strategy,
            plan.instrument.token,
            plan.instrument.symbol,
            plan.side,
            plan.quantity,
            plan.reference_price,
            plan.stop_loss,
            plan.target,
            risk,
            plan.quantity * plan.reference_price,
            plan.detail,
        )
        log.info(
            "LOGGING ONLY — %s %s %d %s @ %s (investment %s), stop-loss %s, target %s, "
            "max loss %s; no order placed",
            sig.strategy,
            plan.side.value,
            plan.quantity,
            plan.instrument.symbol,
            format_inr(plan.reference_price),
            format_inr(ev.investment),
            format_inr(plan.stop_loss),
            format_inr(plan.target),
            format_inr(risk),
        )
        self.logged += 1
        ctx.finish_signal(
            sig.signal_id,
            LOGGED,
            f"{plan.side.value} {plan.quantity} {plan.instrument.symbol} @ {plan.reference_price}",
        )
        ctx.bus.publish("order:logged", ev)
