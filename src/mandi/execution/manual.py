"""Manual orders (``mandi order``, ``POST /api/v1/orders``) through the same risk rules as
signals: a SELL against an open long closes it (through the exit stage), anything else is an
entry (through the entry stage's submit)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mandi.core.errors import InstrumentError, OrderError
from mandi.core.ids import stable_id
from mandi.core.money import format_inr
from mandi.execution.context import ExecutionContext, tag_for
from mandi.execution.entries import EntryStage
from mandi.execution.exits import ExitStage
from mandi.execution.plan import Plan
from mandi.model.orders import Intent, OrderType, Side, SubmitOrder
from mandi.model.trading import RiskDenied
from mandi.risk import exits as exit_rules
from mandi.risk.rules import Denied, slice_quantity

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ManualResult:
    status: str  # ACCEPTED | DENIED | LOGGED | ERROR
    reason: str = ""
    rule: str = ""
    order_ids: tuple[str, ...] = ()


class ManualOrders:
    def __init__(self, ctx: ExecutionContext, entries: EntryStage, exits: ExitStage) -> None:
        self.ctx = ctx
        self.entries = entries
        self.exits = exits

    def _deny(self, now: int, d: Denied, symbol: str, side: Side, quantity: int) -> ManualResult:
        self.ctx.risk.deny(
            RiskDenied(now, d.rule, d.reason, "manual", "", "", symbol, side.value, quantity)
        )
        return ManualResult("DENIED", d.reason, d.rule)

    def _already_accepted(self, parent: str) -> tuple[str, ...]:
        """The orders an earlier request with this id created (an entry, or the first exit or
        resting stop of a close), so that a retry never becomes a second order."""
        store = self.ctx.store
        for p in (parent, stable_id(parent, "exit", 0), stable_id(parent, 0)):
            ids = store.order_ids(p)
            if ids:
                return tuple(ids)
        return ()

    def handle(
        self,
        request_id: str,
        symbol: str,
        side: Side,
        quantity: int,
        limit_price: int = 0,
        exchange: str | None = None,
        trigger_price: int = 0,
        order_type: OrderType | None = None,
    ) -> ManualResult:
        """A manual order through the same risk rules as signals. A ``trigger_price`` makes it
        a stop: SL-M, or SL with a ``limit_price`` (a SELL stop against an open long rests as
        that position's stop exit)."""
        ctx = self.ctx
        now = ctx.clock.now_ns()
        if not ctx.cfg.enabled:
            reason = "trading is disabled (trading.enabled = false)"
            return self._deny(now, Denied("trading_disabled", reason), symbol, side, quantity)
        try:
            inst = ctx.master.by_symbol(symbol, exchange)
        except InstrumentError as e:
            return self._deny(now, Denied("unknown_symbol", str(e)), symbol, side, quantity)
        parent = stable_id("manual", request_id)
        done = self._already_accepted(parent)
        if done:  # a retried request gets its original result, not a second decision
            return ManualResult("ACCEPTED", "already accepted (same request id)", "", done)
        if order_type is None:
            if trigger_price > 0:
                order_type = OrderType.SL if limit_price > 0 else OrderType.SL_M
            else:
                order_type = OrderType.LIMIT if limit_price > 0 else OrderType.MARKET
        if order_type.is_stop and trigger_price <= 0:
            d = Denied("stop_trigger", f"a {order_type.value} order needs a trigger price")
            return self._deny(now, d, symbol, side, quantity)
        longs = [p for p in ctx.book.open_for_token(inst.token) if p.direction > 0]
        if side is Side.SELL and longs:
            held = sum(p.quantity for p in longs)
            if quantity > held:
                d = Denied(
                    "exceeds_position",
                    f"sell {quantity} exceeds the open long position of {held} in {inst.symbol}",
                )
                return self._deny(now, d, inst.symbol, side, quantity)
            ids: list[str] = []
            left = quantity
            for i, p in enumerate(longs):
                take = min(left, p.quantity)
                if order_type.is_stop:  # a stop exit rests; the position stays open
                    out = self.exits.stop_exit(
                        p, take, order_type, trigger_price, limit_price, stable_id(parent, i)
                    )
                else:
                    out = self.exits.exit_position(
                        p, exit_rules.MANUAL, take, parent_hint=stable_id(parent, "exit", i)
                    )
                if isinstance(out, Denied):
                    return ManualResult("DENIED", out.reason, out.rule, tuple(ids))
                ids += [o.client_order_id for o in out]
                left -= take
                if left <= 0:
                    break
            return ManualResult("ACCEPTED", "closing the open position", "", tuple(ids))
        if side is Side.SELL and not ctx.cfg.allow_short:
            d = Denied(
                "nothing_to_sell",
                f"no open long position in {inst.symbol} and short "
                "selling is disabled (trading.allow_short)",
            )
            return self._deny(now, d, inst.symbol, side, quantity)
        slices = slice_quantity(quantity, inst.freeze_qty, inst.lot_size)
        decision = ctx.risk.check(
            ctx.order_context(
                inst,
                side,
                quantity,
                Intent.ENTRY,
                order_type,
                limit_price,
                len(slices),
                trigger_price=trigger_price,
            )
        )
        if isinstance(decision, Denied):
            ctx.risk.deny(
                RiskDenied(
                    now,
                    decision.rule,
                    decision.reason,
                    "manual",
                    "",
                    parent,
                    inst.symbol,
                    side.value,
                    quantity,
                )
            )
            return ManualResult("DENIED", decision.reason, decision.rule)
        ref = ctx.market.ltp(inst.token)
        if ctx.orders is None:
            log.info(
                "LOGGING ONLY — manual %s %d %s @ %s; no order placed",
                side.value,
                quantity,
                inst.symbol,
                format_inr(limit_price or ref),
            )
            return ManualResult("LOGGED", "logging-only mode: no order placed")
        cmd = SubmitOrder(
            client_order_id=parent,
            ts_event=now,
            token=inst.token,
            exchange=inst.exchange,
            symbol=inst.symbol,
            side=side,
            quantity=quantity,
            reference_price=ref,
            order_type=order_type,
            limit_price=limit_price,
            trigger_price=trigger_price,
            product=ctx.product,
            intent=Intent.ENTRY,
            strategy="manual",
            position_id=stable_id(parent, "position"),
            tag=tag_for(inst.token, side.sign),
        )
        plan = Plan(inst, side, side.sign, quantity, ref, order_type, limit_price, 0, 0, {})
        try:
            children = self.entries.submit(cmd, slices, plan, "")
        except OrderError as e:
            return ManualResult("DENIED", str(e), "order_queue")
        return ManualResult("ACCEPTED", "", "", tuple(o.client_order_id for o in children))
