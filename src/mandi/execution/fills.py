"""The fill stage: a broker fill becomes order state, charges, a position change and today's
performance row — stored in one transaction, then published; and an order that reached a
terminal state is finished (its entry no longer in flight, its position no longer closing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mandi.core.calendar import ist_date
from mandi.core.money import format_inr
from mandi.execution.charges import segment_of
from mandi.execution.context import ExecutionContext, parse_tag
from mandi.execution.ports import BrokerFill
from mandi.model.orders import Intent, Order, OrderFilled
from mandi.model.trading import PositionClosed, PositionOpened, PositionUpdated
from mandi.portfolio.positions import Position
from mandi.risk import exits

log = logging.getLogger(__name__)


class FillStage:
    def __init__(self, ctx: ExecutionContext) -> None:
        self.ctx = ctx
        #: fills applied since start
        self.count = 0
        #: called with every :class:`~mandi.model.orders.OrderFilled` after it is stored and
        #: published (the strategies' ``on_fill``)
        self.on_fill_hooks: list[Callable[[OrderFilled], object]] = []
        #: ``trading.exit_orders = "stop_orders"``: rest a position's stop and target once its
        #: entry fills (the exit stage's ``protect``)
        self.protect: Callable[[Position], object] | None = None

    def apply(self, o: Order, f: BrokerFill) -> None:
        """A broker fill: order state, charges, position, daily row — stored in one
        transaction, then published."""
        ctx = self.ctx
        inst = ctx.master.get(o.token)
        day = ist_date(f.ts_ns)
        seg = segment_of(inst, o.product) if inst is not None else "EQ_INTRADAY"
        ch = ctx.charges.compute(
            exchange=o.exchange,
            segment=seg,
            side=o.side,
            quantity=f.quantity,
            price=f.price,
            day=day,
            order_turnover_before=o.fill_value,
        )
        if not o.apply_fill(f.fill_id, f.quantity, f.price, f.ts_ns):
            return
        charges = ch.total
        o.charges += charges
        book, perf = ctx.book, ctx.perf
        p = book.get(o.position_id)
        opened = False
        src, bias = parse_tag(o.tag)
        if o.intent is Intent.ENTRY and (p is None or not p.is_open) and inst is not None:
            p = Position(
                o.position_id,
                signal_id=o.signal_id,
                strategy=o.strategy,
                instrument=inst,
                product=o.product.value,
                direction=o.side.sign,
                ts_ns=f.ts_ns,
                paper=ctx.paper,
                metadata={"source": src, "bias": bias},
            )
            book.add(p)
            opened = True
        gross = 0
        if p is not None and o.intent is Intent.EXIT and not p.exit_reason and o.oco_group:
            # a resting protective order filled: which one says why the position closed
            p.exit_reason = exits.STOP_LOSS if o.order_type.is_stop else exits.TARGET
        elif p is not None and o.intent is Intent.EXIT and not p.exit_reason and o.trigger_price:
            p.exit_reason = exits.STOP_LOSS
        if p is not None:
            gross = p.apply_fill(o.intent, f.quantity, f.price, charges, f.ts_ns)
            if o.intent is Intent.ENTRY:
                if o.stop_loss or o.target:
                    p.stop_loss, p.target = o.stop_loss, o.target
                else:
                    p.stop_loss, p.target = exits.levels(
                        ctx.limits,
                        entry=p.entry_price,
                        direction=p.direction,
                        is_option=p.is_option,
                        tick=p.tick_size,
                    )
        else:
            log.error(
                "fill %s of order %s has no position %s",
                f.fill_id,
                o.client_order_id,
                o.position_id,
            )
        perf.on_fill(day, gross, charges)
        trade = None
        closed = p is not None and not p.is_open
        if closed and p is not None:
            perf.on_close(day, p.realized)
            trade = p.closed_trade(o.client_order_id)
            book.closed(p)
        perf.mark(day, book.unrealized())
        ev = OrderFilled(
            ts_event=f.ts_ns,
            fill_id=f.fill_id,
            client_order_id=o.client_order_id,
            token=o.token,
            exchange=o.exchange,
            symbol=o.symbol,
            side=o.side,
            quantity=f.quantity,
            price=f.price,
            filled_qty=o.filled_qty,
            order_quantity=o.quantity,
            charges=charges,
            intent=o.intent,
            strategy=o.strategy,
            position_id=o.position_id,
            signal_id=o.signal_id,
            charges_detail={k: str(v) for k, v in ch.as_rupees().items()},
        )
        try:
            ctx.store.record_fill(
                o.to_record(), ev, p.to_record() if p else None, trade, perf.row(day)
            )
        except Exception as e:
            ctx.risk.halt(f"a fill could not be stored ({type(e).__name__}: {e})", "fail_closed")
            raise
        self.count += 1
        bus = ctx.bus
        bus.publish("order:filled", ev)
        if p is not None:
            rec = p.to_record()
            if opened:
                bus.publish("position:opened", PositionOpened(f.ts_ns, rec))
            elif closed:
                log.info(
                    "position closed %s %s: P&L %s (%s)",
                    p.strategy,
                    p.symbol,
                    format_inr(p.realized),
                    p.exit_reason or "exit",
                )
                bus.publish(
                    "position:closed", PositionClosed(f.ts_ns, rec, p.exit_reason or "exit")
                )
            else:
                bus.publish("position:updated", PositionUpdated(f.ts_ns, rec))
        for hook in self.on_fill_hooks:
            hook(ev)
        if (
            self.protect is not None
            and p is not None
            and p.is_open
            and o.intent is Intent.ENTRY
            and (p.stop_loss or p.target)
        ):
            self.protect(p)
        ctx.risk.check_breaker(ctx.day_pnl)

    def order_done(self, o: Order) -> None:
        """An order reached a terminal state: clean up in-flight entries and closing flags; an
        exit that failed ``max_exit_attempts`` times halts trading (fail closed)."""
        ctx = self.ctx
        f = ctx.inflight.get(o.parent_id)
        if f is not None:
            f.children.discard(o.client_order_id)
            if not f.children:
                del ctx.inflight[o.parent_id]
        if o.intent is Intent.EXIT:
            p = ctx.book.get(o.position_id)
            orders = ctx.orders
            if (
                p is not None
                and p.is_open
                and orders is not None
                and not any(
                    x.position_id == o.position_id and x.intent is Intent.EXIT and not x.terminal
                    for x in orders.orders.values()
                )
            ):
                p.closing = False
                if p.exit_attempts >= ctx.limits.max_exit_attempts:
                    ctx.risk.halt(
                        f"position {p.symbol} ({p.position_id[:8]}) could not be "
                        f"closed after {p.exit_attempts} attempts",
                        "fail_closed",
                    )
