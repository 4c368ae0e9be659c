"""The exit stage: closing positions — on a stop-loss, target, trailing stop, expiry or intraday
square-off (the rules are :mod:`mandi.risk.exits`; this module acts on them), on a halt with
``flatten_on_halt``, on an opposite signal, or by hand.

An exit is a market order (sliced at the freeze quantity) that passes the exit rules of the risk
engine; a denied exit is reported once per monitor interval and tried again.
"""

from __future__ import annotations

import logging

from mandi.core.errors import OrderError
from mandi.core.ids import stable_id
from mandi.execution.context import ExecutionContext, tag_for
from mandi.model.orders import Intent, Order, OrderType, Product, SubmitOrder
from mandi.model.trading import RiskDenied
from mandi.portfolio.positions import Position
from mandi.risk import exits as exit_rules
from mandi.risk.exits import ExitCheck, exit_reason
from mandi.risk.rules import Denied, slice_quantity

log = logging.getLogger(__name__)
MIS = Product.MIS.value


class ExitStage:
    def __init__(self, ctx: ExecutionContext) -> None:
        self.ctx = ctx
        # check() runs on every tick of a held instrument (every bar in a backtest)
        self._clock, self._limits, self._risk = ctx.clock, ctx.limits, ctx.risk
        self._exit_retry: dict[str, int] = {}
        self._unknown_reported: set[str] = set()
        #: position id -> the client order ids of its resting stop/target (exit_orders)
        self.protected: dict[str, tuple[str, ...]] = {}

    # --- protective orders (trading.exit_orders = "stop_orders") ------------------------------
    def protect(self, p: Position) -> list[Order]:
        """Rest ``p``'s stop-loss and target as a one-cancels-other pair of exit orders — an
        SL-M at the stop and a LIMIT at the target — for its whole open quantity, replacing
        the pair it had. Returns the orders placed."""
        ctx = self.ctx
        orders = ctx.orders
        inst = ctx.master.get(p.token)
        if orders is None or inst is None or not p.is_open or p.closing:
            return []
        self.unprotect(p, "replaced")
        now = ctx.clock.now_ns()
        side = p.entry_side.opposite
        group = stable_id(p.position_id, "protect", p.quantity, now)
        legs = []
        if p.stop_loss > 0:
            legs.append(("stop", OrderType.SL_M, p.stop_loss, 0))
        if p.target > 0:
            legs.append(("target", OrderType.LIMIT, 0, p.target))
        segment = f"{inst.exchange}:{inst.segment or 'EQ'}"
        placed: list[Order] = []
        for name, kind, trigger, limit in legs:
            cmd = SubmitOrder(
                client_order_id=stable_id(group, name),
                ts_event=now,
                token=p.token,
                exchange=p.exchange,
                symbol=p.symbol,
                side=side,
                quantity=p.quantity,
                reference_price=ctx.market.ltp(p.token),
                order_type=kind,
                limit_price=limit,
                product=Product(p.product),
                intent=Intent.EXIT,
                strategy=p.strategy,
                signal_id=p.signal_id,
                position_id=p.position_id,
                tag=tag_for(int(p.metadata.get("source", 0)), int(p.metadata.get("bias", 0))),
                trigger_price=trigger,
                oco_group=group if len(legs) > 1 else "",
            )
            try:
                placed += orders.submit(cmd, [p.quantity], segment)
            except OrderError as e:
                log.error("protective %s of %s not placed: %s", name, p.position_id, e)
        live = tuple(o.client_order_id for o in placed if not o.terminal)
        if live:
            self.protected[p.position_id] = live
        elif placed:  # refused (e.g. the stop is already behind the market): the monitor acts
            log.warning("protective orders of %s refused; the monitor watches it", p.symbol)
        return placed

    def stop_exit(
        self,
        p: Position,
        quantity: int,
        order_type: OrderType,
        trigger: int,
        limit: int,
        parent: str,
    ) -> list[Order] | Denied:
        """A stop (SL / SL-M) closing ``quantity`` of ``p`` when its trigger is reached (a
        manual stop-loss); the risk rules refuse a trigger the market has already passed."""
        ctx = self.ctx
        orders, inst = ctx.orders, ctx.master.get(p.token)
        if orders is None or inst is None or not p.is_open:
            return Denied("no_position", f"{p.symbol}: nothing to protect")
        side = p.entry_side.opposite
        qty = min(quantity, p.quantity)
        decision = ctx.risk.check(
            ctx.order_context(
                inst, side, qty, Intent.EXIT, order_type, limit, opens_position=False,
                trigger_price=trigger,
            )
        )  # fmt: skip
        if isinstance(decision, Denied):
            return decision
        cmd = SubmitOrder(
            client_order_id=parent,
            ts_event=ctx.clock.now_ns(),
            token=p.token,
            exchange=p.exchange,
            symbol=p.symbol,
            side=side,
            quantity=qty,
            reference_price=ctx.market.ltp(p.token),
            order_type=order_type,
            limit_price=limit,
            product=Product(p.product),
            intent=Intent.EXIT,
            strategy=p.strategy,
            signal_id=p.signal_id,
            position_id=p.position_id,
            tag=tag_for(int(p.metadata.get("source", 0)), int(p.metadata.get("bias", 0))),
            trigger_price=trigger,
        )
        segment = f"{inst.exchange}:{inst.segment or 'EQ'}"
        try:
            placed = orders.submit(
                cmd, slice_quantity(qty, inst.freeze_qty, inst.lot_size), segment
            )
        except OrderError as e:
            return Denied("order_error", str(e))
        ids = self.protected.get(p.position_id, ())
        self.protected[p.position_id] = (*ids, *(o.client_order_id for o in placed))
        return placed

    def unprotect(self, p: Position, reason: str) -> None:
        """Cancel ``p``'s resting stop/target pair (before another exit, or to replace it)."""
        ids = self.protected.pop(p.position_id, ())
        orders = self.ctx.orders
        if orders is None:
            return
        for cid in ids:
            orders.cancel(cid, f"protective order {reason}")

    def check(self, positions: list[Position] | tuple[Position, ...]) -> int:
        """Apply the exit rules to ``positions``; returns how many exits were started."""
        now = self._clock.now_ns()
        limits = self._limits
        n = 0
        for p in positions:
            if not p.is_open or p.closing:
                continue
            guarded = p.position_id in self.protected  # the OCO pair watches stop and target
            reason = exit_reason(
                limits,
                ExitCheck(
                    p.direction,
                    p.current_price,
                    0 if guarded else p.stop_loss,
                    0 if guarded else p.target,
                    p.high_water,
                    p.product == MIS,
                    p.expiry,
                    p.exchange,
                ),
                now,
            )
            if reason is None and self._risk.halted and limits.flatten_on_halt:
                reason = exit_rules.HALT
            if reason is not None:
                out = self.exit_position(p, reason)
                if not isinstance(out, Denied) and out:
                    n += 1
        return n

    def exit_position(
        self, p: Position, reason: str, quantity: int | None = None, parent_hint: str = ""
    ) -> list[Order] | Denied:
        """Close ``p`` (or ``quantity`` of it) with market orders, sliced at the freeze quantity.
        The position's closing state and the orders are one durable commit before they are sent
        (a unit of work of the store)."""
        with self.ctx.store.unit():
            return self._exit_position(p, reason, quantity, parent_hint)

    def _exit_position(
        self, p: Position, reason: str, quantity: int | None, parent_hint: str
    ) -> list[Order] | Denied:
        ctx = self.ctx
        orders = ctx.orders
        if orders is None or not p.is_open or (p.closing and quantity is None):
            return []
        now = ctx.clock.now_ns()
        inst = ctx.master.get(p.token)
        if inst is None:
            if p.position_id not in self._unknown_reported:
                self._unknown_reported.add(p.position_id)
                ctx.risk.deny(
                    RiskDenied(
                        now,
                        "unknown_symbol",
                        f"cannot close {p.symbol}: the "
                        "instrument master no longer lists it (expired?); "
                        "settle it by hand",
                        p.strategy,
                        p.signal_id,
                        "",
                        p.symbol,
                        p.entry_side.opposite.value,
                        p.quantity,
                    )
                )
            return Denied(
                "unknown_symbol",
                f"position {p.position_id}: instrument {p.token} is not in the master",
            )
        if p.position_id in self.protected:  # another exit takes over from the resting pair
            self.unprotect(p, f"superseded ({reason})")
        # an entry still working for this position must not add to what is being closed
        for f in [
            f
            for f in ctx.inflight.values()
            if f.token == p.token and stable_id(f.parent_id, "position") == p.position_id
        ]:
            for cid in list(f.children):
                orders.cancel(cid, f"position exiting ({reason})")
        qty = p.quantity if quantity is None else min(quantity, p.quantity)
        if qty <= 0:
            return []
        side = p.entry_side.opposite
        decision = ctx.risk.check(
            ctx.order_context(inst, side, qty, Intent.EXIT, opens_position=False)
        )
        if isinstance(decision, Denied):
            if self._exit_retry.get(p.position_id, 0) <= now:
                ctx.risk.deny(
                    RiskDenied(
                        now,
                        decision.rule,
                        decision.reason,
                        p.strategy,
                        p.signal_id,
                        "",
                        p.symbol,
                        side.value,
                        qty,
                    )
                )
                self._exit_retry[p.position_id] = now + int(ctx.cfg.monitor_interval_s * 1e9)
            return decision
        attempt = ctx.store.exit_order_count(p.position_id)
        parent = parent_hint or stable_id(p.position_id, "exit", attempt)
        cmd = SubmitOrder(
            client_order_id=parent,
            ts_event=now,
            token=p.token,
            exchange=p.exchange,
            symbol=p.symbol,
            side=side,
            quantity=qty,
            reference_price=ctx.market.ltp(p.token),
            order_type=OrderType.MARKET,
            product=Product(p.product),
            intent=Intent.EXIT,
            strategy=p.strategy,
            signal_id=p.signal_id,
            position_id=p.position_id,
            tag=tag_for(int(p.metadata.get("source", 0)), int(p.metadata.get("bias", 0))),
        )
        p.closing = True
        p.exit_reason = reason
        p.exit_attempts = attempt + 1
        ctx.store.save_position(p.to_record())
        log.info("closing %s %s %d (%s)", p.strategy, p.symbol, qty, reason)
        segment = f"{inst.exchange}:{inst.segment or 'EQ'}"
        try:
            return orders.submit(cmd, slice_quantity(qty, inst.freeze_qty, inst.lot_size), segment)
        except OrderError as e:
            p.closing = False
            log.error("exit of %s failed: %s", p.position_id, e)
            return Denied("order_error", str(e))
