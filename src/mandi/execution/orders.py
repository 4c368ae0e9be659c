"""The order router: order state machines, write-before-send, pacing, broker events and
reconciliation.

Life of an order here:

1. :meth:`OrderManager.submit` turns an allowed :class:`~mandi.model.orders.SubmitOrder` into
   child orders (freeze-quantity slices) with deterministic ids, persists them all as ``NEW`` in
   one transaction (``TradingStore.save_new_orders``), and queues them.
2. :meth:`OrderManager.pump` sends queued orders as the rate limiter allows (≤ N per second per
   exchange segment): each is persisted ``SUBMITTED`` *before* ``Broker.place_order`` is called,
   then ``ACKED``/``REJECTED`` from the answer. An exception while sending makes it ``UNKNOWN``.
3. Broker events (fills, cancels, rejects) move it on; fills go to the kernel's fill handler.
4. :meth:`OrderManager.reconcile` settles ``SUBMITTED``/``UNKNOWN`` (and, after a restart, every
   open) order against the broker's book *before anything is re-sent*: the broker's fills are
   applied (duplicates ignored), its status adopted; an order the broker never received is sent
   again with the same client id if still fresh (``resend_max_age_s``), else cancelled.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from mandi.bus.memory import MessageBus
from mandi.core.clock import Clock
from mandi.core.errors import OrderError
from mandi.core.ids import stable_id
from mandi.execution.ports import (
    Broker,
    BrokerAck,
    BrokerEvent,
    BrokerFill,
    BrokerOrderReport,
    BrokerOrderUpdate,
    OrderRequest,
    TradingStore,
    native_oco,
    native_order_types,
)
from mandi.execution.stops import PendingStop, StopEmulator
from mandi.model.instruments import InstrumentMaster
from mandi.model.orders import (
    Intent,
    Order,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    OrderUnknown,
    Side,
    SubmitOrder,
)
from mandi.risk.ratelimit import OrderRateLimiter

log = logging.getLogger(__name__)
S = OrderStatus


class OrderManager:
    def __init__(
        self,
        *,
        store: TradingStore,
        broker: Broker | None,
        clock: Clock,
        bus: MessageBus,
        limiter: OrderRateLimiter,
        master: InstrumentMaster,
        fill_handler: Callable[[Order, BrokerFill], None],
        on_done: Callable[[Order], None] | None = None,
        reference_price: Callable[[Order], int] | None = None,
        resend_max_age_ns: int = 60_000_000_000,
        max_queued: int = 200,
    ) -> None:
        self.store, self.broker, self.clock, self.bus = store, broker, clock, bus
        self.limiter, self.master = limiter, master
        self.fill_handler = fill_handler
        self.on_done = on_done or (lambda o: None)
        self.reference_price = reference_price or (lambda o: 0)
        self.resend_max_age_ns = resend_max_age_ns
        self.max_queued = max_queued
        self.orders: dict[str, Order] = {}
        self.queue: deque[Order] = deque()
        self.sent = 0
        self.send_times: list[tuple[str, int]] = []  # (segment, ts) of sends, for tests/status
        self.record_send_times = False
        self.stops = StopEmulator()  # stops and OCO groups the broker cannot hold itself
        if broker is not None:
            broker.set_event_sink(self.handle_broker_event)

    # --- creating ---------------------------------------------------------------------------------
    def submit(
        self,
        cmd: SubmitOrder,
        slices: list[int],
        segment: str,
        signal_status: tuple[str, str, str] | None = None,
    ) -> list[Order]:
        """Persist the child orders of ``cmd`` as NEW and queue them; returns them. Ids already
        stored (a replayed command) are not created or sent again."""
        if self.broker is None:
            raise OrderError("no broker: orders cannot be placed in logging-only mode")
        if len(self.queue) + len(slices) > self.max_queued:
            raise OrderError(f"order queue full ({len(self.queue)} waiting)")
        known = set(self.store.order_ids(cmd.client_order_id))
        children = []
        n = len(slices)
        for i, qty in enumerate(slices):
            cid = cmd.client_order_id if n == 1 else stable_id(cmd.client_order_id, "slice", i)
            if cid in known or cid in self.orders:
                continue
            children.append(
                Order(
                    cid,
                    token=cmd.token,
                    exchange=cmd.exchange,
                    symbol=cmd.symbol,
                    side=cmd.side,
                    quantity=qty,
                    created_ns=cmd.ts_event,
                    order_type=cmd.order_type,
                    limit_price=cmd.limit_price,
                    product=cmd.product,
                    intent=cmd.intent,
                    strategy=cmd.strategy,
                    signal_id=cmd.signal_id,
                    position_id=cmd.position_id,
                    parent_id=cmd.client_order_id,
                    slice_no=i,
                    slice_count=n,
                    segment=segment,
                    tag=cmd.tag,
                    stop_loss=cmd.stop_loss,
                    target=cmd.target,
                    trigger_price=cmd.trigger_price,
                    oco_group=cmd.oco_group,
                )
            )
        self.store.save_new_orders([o.to_record() for o in children], signal_status)
        for o in children:
            self.orders[o.client_order_id] = o
            self.queue.append(o)
        self.pump()
        return children

    # --- sending ----------------------------------------------------------------------------------
    def pump(self) -> int:
        """Send what the rate limiter allows now; returns how many were sent."""
        if not self.queue:
            return 0
        now = self.clock.now_ns()
        sent = 0
        blocked: set[str] = set()
        keep: deque[Order] = deque()
        while self.queue:
            o = self.queue.popleft()
            if o.status is not S.NEW and o.status is not S.UNKNOWN:
                continue  # cancelled while waiting
            if o.segment in blocked or not self.limiter.try_acquire(o.segment, now):
                blocked.add(o.segment)
                keep.append(o)
                continue
            self._send(o, now)
            sent += 1
        self.queue = keep
        return sent

    def next_send_ns(self) -> int | None:
        """When the next queued order may go (None if nothing waits)."""
        now = self.clock.now_ns()
        slots = [self.limiter.next_slot(o.segment, now) for o in self.queue]
        return min(slots) if slots else None

    def _request(self, o: Order, order_type: OrderType | None = None) -> OrderRequest:
        inst = self.master.get(o.token)
        kind = order_type or o.order_type
        return OrderRequest(
            o.client_order_id,
            o.token,
            o.exchange,
            o.symbol,
            o.side,
            o.quantity - o.filled_qty,
            kind,
            o.limit_price if kind.has_limit else 0,
            o.product,
            reference_price=self.reference_price(o),
            lot_size=inst.lot_size if inst else 1,
            tick_size=inst.tick_size if inst else 5,
            trigger_price=o.trigger_price if kind.is_stop else 0,
            oco_group=o.oco_group if order_type is None else "",
        )

    def held_by_kernel(self, o: Order) -> bool:
        """Whether ``o`` waits in the kernel's stop book: a type the broker does not hold, or an
        OCO group it cannot link (then both legs wait here, as a GTT does at the broker)."""
        if self.broker is None:
            return False
        if o.order_type not in native_order_types(self.broker):
            return True
        return bool(o.oco_group) and not native_oco(self.broker)

    def _hold(self, o: Order, now: int) -> None:
        """Keep a stop (or an OCO leg) here until a price triggers it (:meth:`on_price`)."""
        stop = PendingStop(
            o.client_order_id,
            o.token,
            o.side,
            o.order_type,
            o.trigger_price,
            o.limit_price,
            now,
            o.oco_group,
        )
        try:
            self.stops.add(stop, self.reference_price(o))
        except ValueError:
            where = "above" if o.side is Side.BUY else "below"
            self._finish(
                o, S.REJECTED, f"a {o.side.value} stop's trigger must be {where} the last price"
            )
            return
        self._apply_ack(o, BrokerAck("ACCEPTED", ""))

    def on_price(self, token: int, last: int, ts: int) -> int:
        """A last price of ``token``: send the held stops it triggers (an SL-M as a MARKET
        order, an SL or a target as a LIMIT) and drop their OCO partners; returns how many
        were sent."""
        if not self.stops.watches(token):
            return 0
        fired, dropped = self.stops.on_price(token, last, ts)
        for cid in dropped:
            o = self.orders.get(cid)
            if o is not None:
                self._finish(o, S.CANCELLED, "OCO: its partner triggered")
        for stop in fired:
            o = self.orders.get(stop.order_id)
            if o is None or o.terminal or self.broker is None:
                continue
            kind = OrderType.MARKET if stop.order_type is OrderType.SL_M else OrderType.LIMIT
            log.info(
                "order %s: %s triggered at %s", o.client_order_id[:8], o.order_type.value, last
            )
            self.store.sync()  # what led to it is durable before it is sent
            try:
                ack = self.broker.place_order(self._request(o, kind))
            except Exception as e:
                self._unknown(o, f"error while sending a triggered stop: {type(e).__name__}: {e}")
                continue
            if ack.status == "REJECTED":
                self._finish(o, S.REJECTED, ack.reason or "rejected by the broker")
        return len(fired)

    def _send(self, o: Order, now: int) -> None:
        assert self.broker is not None
        o.transition(S.SUBMITTED, now)
        rec = o.to_record()
        self.store.save_order(rec, "submitted")  # write before send
        self.store.sync()  # ... durably: with the signal and the NEW order in one commit
        self.sent += 1
        if self.record_send_times:
            self.send_times.append((o.segment, now))
        if self.bus.has_subscribers("order:submitted"):
            self.bus.publish("order:submitted", OrderSubmitted(now, rec))
        if self.held_by_kernel(o):
            self._hold(o, now)
            return
        try:
            ack = self.broker.place_order(self._request(o))
        except Exception as e:
            self._unknown(o, f"error while sending: {type(e).__name__}: {e}")
            return
        self._apply_ack(o, ack)

    def _apply_ack(self, o: Order, ack: BrokerAck) -> None:
        now = self.clock.now_ns()
        if ack.broker_order_id:
            o.broker_order_id = ack.broker_order_id
        if ack.status == "ACCEPTED":
            if o.status in (S.SUBMITTED, S.UNKNOWN):
                o.transition(S.ACKED, now)
                rec = o.to_record()
                self.store.save_order(rec, "accepted")
                if self.bus.has_subscribers("order:accepted"):
                    self.bus.publish("order:accepted", OrderAccepted(now, rec))
        elif ack.status == "REJECTED":
            self._finish(o, S.REJECTED, ack.reason or "rejected by the broker")
        elif ack.status != "PENDING":
            self._unknown(o, f"broker answered {ack.status!r}")

    def _unknown(self, o: Order, reason: str) -> None:
        now = self.clock.now_ns()
        if o.can(S.UNKNOWN):
            o.transition(S.UNKNOWN, now, reason)
        log.error(
            "order %s outcome UNKNOWN: %s (will reconcile, not re-send)", o.client_order_id, reason
        )
        rec = o.to_record()
        self.store.save_order(rec, "unknown")
        self.bus.publish("order:unknown", OrderUnknown(now, rec, reason))

    def _finish(self, o: Order, status: OrderStatus, reason: str) -> None:
        now = self.clock.now_ns()
        if not o.can(status):
            return
        o.transition(status, now, reason)
        rec = o.to_record()
        self.store.save_order(rec, status.value.lower())
        if status is S.REJECTED:
            log.warning(
                "order %s %s %d %s rejected: %s",
                o.client_order_id[:8],
                o.side.value,
                o.quantity,
                o.symbol,
                reason,
            )
            self.bus.publish("order:rejected", OrderRejected(now, rec, reason))
        else:
            self.bus.publish("order:cancelled", OrderCancelled(now, rec, reason))
        self._done(o)

    def _done(self, o: Order) -> None:
        self.orders.pop(o.client_order_id, None)
        self.on_done(o)

    # --- cancelling -------------------------------------------------------------------------------
    def cancel(self, client_order_id: str, reason: str) -> bool:
        o = self.orders.get(client_order_id)
        if o is None or o.terminal:
            return False
        if self.stops.cancel(client_order_id) is not None:  # held here: never reached the broker
            self._finish(o, S.CANCELLED, reason)
            return True
        if o.status is S.NEW:
            self._finish(o, S.CANCELLED, reason)
            return True
        if self.broker is None or o.status is S.UNKNOWN:
            return False  # an UNKNOWN order is reconciled first
        self.store.sync()  # what led to the cancel is durable before it is sent
        try:
            ack = self.broker.cancel_order(o.client_order_id)
        except Exception as e:
            log.error("cancel of %s failed: %s", o.client_order_id, e)
            return False
        if ack.status == "ACCEPTED" and not o.terminal:
            self._finish(o, S.CANCELLED, reason)
        return ack.status in ("ACCEPTED", "PENDING")

    def cancel_queued(self, intent: Intent, reason: str) -> int:
        """Cancel every order of ``intent`` still waiting for a send slot."""
        n = 0
        for o in list(self.queue):
            if o.intent is intent and o.status is S.NEW:
                self._finish(o, S.CANCELLED, reason)
                n += 1
        return n

    # --- broker events ----------------------------------------------------------------------------
    def handle_broker_event(self, ev: BrokerEvent) -> None:
        o = self.orders.get(ev.client_order_id)
        if o is None:
            log.warning("broker event for an order this process does not track: %r", ev)
            return
        if isinstance(ev, BrokerFill):
            self._fill(o, ev)
        elif isinstance(ev, BrokerOrderUpdate):
            if ev.broker_order_id:
                o.broker_order_id = ev.broker_order_id
            if ev.status is S.ACKED:
                self._apply_ack(o, BrokerAck("ACCEPTED", ev.broker_order_id))
            elif ev.status in (S.CANCELLED, S.REJECTED):
                self._finish(o, ev.status, ev.reason)
            elif ev.status is S.UNKNOWN and o.status in (S.SUBMITTED, S.NEW):
                self._unknown(o, ev.reason)  # an asynchronous send whose outcome is unknown

    def _fill(self, o: Order, f: BrokerFill) -> None:
        if f.fill_id in o.fill_ids:
            return
        self.fill_handler(o, f)  # a fill before the ack (or while UNKNOWN) is still a fill
        if o.terminal:
            self._done(o)

    # --- reconciliation ---------------------------------------------------------------------------
    def _reconcilable(self, o: Order) -> bool:
        # a held stop is ours alone until it triggers
        return not (self.broker is None or o.terminal or o.client_order_id in self.stops.pending)

    def reconcile(self, o: Order) -> None:
        """Settle ``o`` with the broker's book (see the module docstring)."""
        if not self._reconcilable(o):
            return
        assert self.broker is not None
        try:
            report = self.broker.order_status(o.client_order_id)
        except Exception as e:
            log.error("reconciliation of %s failed: %s", o.client_order_id, e)
            return
        self._settle(o, report)

    def _settle(self, o: Order, report: BrokerOrderReport | None) -> None:
        """Adopt the broker's record of ``o`` (None: the broker never received it)."""
        if o.terminal:
            return
        now = self.clock.now_ns()
        if report is None:
            if o.status in (S.NEW, S.SUBMITTED, S.UNKNOWN):
                if now - o.created_ns <= self.resend_max_age_ns:
                    if o.status is S.SUBMITTED:
                        o.transition(S.UNKNOWN, now, "not found at the broker")
                    log.warning(
                        "order %s never reached the broker; sending it again", o.client_order_id
                    )
                    if o not in self.queue:
                        self.queue.append(o)
                else:
                    if o.status is S.SUBMITTED:
                        o.transition(S.UNKNOWN, now, "not found at the broker")
                    self._finish(
                        o, S.CANCELLED, "never reached the broker and is too old to send again"
                    )
            else:
                self._unknown(o, "the broker has no record of an acknowledged order")
            return
        if report.broker_order_id:
            o.broker_order_id = report.broker_order_id
        if o.status is S.NEW:
            o.transition(S.SUBMITTED, now)  # it did reach the broker
        for f in sorted(report.fills, key=lambda f: (f.ts_ns, f.fill_id)):
            if f.fill_id not in o.fill_ids:
                self.fill_handler(o, f)
        before = o.status
        try:
            o.reconcile(report.status, now, report.reason)
        except OrderError as e:
            self._unknown(o, str(e))
            return
        if o.status is not before:
            self.store.save_order(o.to_record(), "reconciled")
            if o.status is S.ACKED:
                self.bus.publish("order:accepted", OrderAccepted(now, o.to_record()))
            elif o.status is S.REJECTED:
                self.bus.publish("order:rejected", OrderRejected(now, o.to_record(), report.reason))
            elif o.status is S.CANCELLED:
                self.bus.publish(
                    "order:cancelled", OrderCancelled(now, o.to_record(), report.reason)
                )
        if o.terminal:
            self._done(o)

    def reconcile_all(
        self,
        statuses: tuple[OrderStatus, ...] = (
            S.NEW,
            S.SUBMITTED,
            S.UNKNOWN,
            S.ACKED,
            S.PARTIALLY_FILLED,
        ),
    ) -> None:
        todo = [o for o in self.orders.values() if o.status in statuses and self._reconcilable(o)]
        many = getattr(self.broker, "order_reports", None)
        if len(todo) > 1 and callable(many):  # one read of the broker's book for the pass
            try:
                reports = many([o.client_order_id for o in todo])
            except Exception as e:
                log.error("reconciliation of %d orders failed: %s", len(todo), e)
                todo = []
            for o in todo:
                self._settle(o, reports.get(o.client_order_id))
        else:
            for o in todo:
                self.reconcile(o)
        self.pump()

    def restore(self, orders: list[Order]) -> None:
        """Adopt the open orders of the store (after a restart), before reconciliation."""
        for o in orders:
            self.orders[o.client_order_id] = o
            if o.status is S.ACKED and not o.filled_qty and self.held_by_kernel(o):
                # a stop held here before the restart: held again (its broker never saw it)
                self.stops.add(
                    PendingStop(
                        o.client_order_id,
                        o.token,
                        o.side,
                        o.order_type,
                        o.trigger_price,
                        o.limit_price,
                        o.updated_ns,
                        o.oco_group,
                    )
                )
