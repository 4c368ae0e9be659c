"""Kite behind the :class:`~mandi.execution.ports.Broker` port.

* **Sending never blocks the kernel.** ``place_order`` hands the order to a worker thread and
  answers ``PENDING``; the worker's outcome comes back as a broker event, delivered on the
  kernel's thread (``loop.call_soon_threadsafe``, or :meth:`KiteBroker.drain`). Accepted →
  ``ACKED`` with Kite's order id; Kite's ``InputException``/``OrderException`` → ``REJECTED``
  with Kite's message; a timeout or a 5xx → ``UNKNOWN``, which the order manager settles by
  reconciliation (never by re-sending); HTTP 429 → retried after a pause (nothing was placed).
* **Tags.** mandi's client order id travels in Kite's ``tag`` (:func:`wire.kite_tag`);
  :meth:`order_status` finds an order by its tag in Kite's order book — a restart after a crash
  between send and acknowledgement finds the order there and does not send it again.
* **Updates** come from ticker postbacks (:meth:`handle_postback`) and from polling the order
  book every ``poll_interval_s`` while mandi has open orders (a lost postback is caught up).
  Fills are Kite's trades (``/orders/{id}/trades``; the trade id is the fill id, so a fill seen
  twice counts once); they are delivered before the order's final status.
* **Dead session.** A ``TokenException`` marks the session dead: new orders are refused locally
  (no request is sent), polling stops, ``on_session_dead`` tells the node (entries blocked,
  system event, "log in again") — nothing loops on a dead token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mandi.brokers.kite.rest import KiteRest
from mandi.brokers.kite.wire import kite_exchange, kite_tag, order_params, order_report, rupees
from mandi.core.clock import Clock
from mandi.core.errors import (
    BrokerError,
    BrokerNetworkError,
    BrokerRateLimitError,
    BrokerSessionError,
)
from mandi.core.money import to_paise
from mandi.execution.ports import (
    BrokerAck,
    BrokerBalance,
    BrokerEvent,
    BrokerFill,
    BrokerOrderReport,
    BrokerOrderUpdate,
    BrokerPosition,
    OrderRequest,
)
from mandi.model.batches import TickBatch
from mandi.model.instruments import InstrumentMaster
from mandi.model.market import Tick
from mandi.model.orders import OrderStatus

log = logging.getLogger(__name__)
S = OrderStatus


@dataclass
class _Tracked:
    client_order_id: str
    order_id: str = ""
    fills: set[str] = field(default_factory=set)
    status: OrderStatus = S.SUBMITTED
    filled: int = 0


class KiteBroker:
    name = "kite"
    is_live = True

    def __init__(
        self,
        rest: KiteRest,
        master: InstrumentMaster,
        clock: Clock,
        poll_interval_s: float = 3.0,
        retry_429: int = 3,
    ) -> None:
        self.rest = rest
        self.master = master
        self.clock = clock
        self.poll_interval_s = poll_interval_s
        self.retry_429 = retry_429
        self._sink: Callable[[BrokerEvent], None] = lambda e: None
        self._events: queue.SimpleQueue[BrokerEvent] = queue.SimpleQueue()
        self._jobs: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._tracked: dict[str, _Tracked] = {}
        self._by_tag: dict[str, str] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self.session_dead = ""
        self.on_session_dead: Callable[[str], None] = lambda reason: None
        self.reconcile_requested = False
        self.sent = 0
        # per send attempt: (perf_counter_ns, this thread's CPU ns) as the worker starts it
        self.send_marks: list[tuple[int, int]] = []

    # --- the port ---------------------------------------------------------------------------------
    def connect(self) -> None:
        """Start the worker; remember the running loop (events are delivered on it)."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="kite-broker", daemon=True)
            self._worker.start()

    def close(self) -> None:
        self._stop.set()
        self._jobs.put(None)
        if self._worker is not None:
            self._worker.join(5)
            self._worker = None

    def subscribe(self, tokens: list[int]) -> None:
        return None  # market data comes from the Kite feed

    def set_event_sink(self, sink: Callable[[BrokerEvent], None]) -> None:
        self._sink = sink

    def on_market_data(self, tick: Tick) -> None:
        return None

    def active_tokens(self) -> set[int]:
        return set()  # fills come from Kite, never from ticks

    def on_market_batch(self, batch: TickBatch, lo: int, hi: int) -> None:
        return None

    def _track(self, cid: str) -> _Tracked:
        with self._lock:
            t = self._tracked.get(cid)
            if t is None:
                t = self._tracked[cid] = _Tracked(cid)
                self._by_tag[kite_tag(cid)] = cid
            return t

    def place_order(self, request: OrderRequest) -> BrokerAck:
        if self.session_dead:
            return BrokerAck("REJECTED", reason=f"not sent: {self.session_dead}")
        inst = self.master.get(request.token)
        if inst is None:
            return BrokerAck("REJECTED", reason=f"unknown instrument token {request.token}")
        self._track(request.client_order_id)
        tag = kite_tag(request.client_order_id)
        params = order_params(request, kite_exchange(inst), tag)
        self._jobs.put(("place", (request.client_order_id, params)))
        return BrokerAck("PENDING")

    def modify_order(
        self, client_order_id: str, quantity: int | None = None, limit_price: int | None = None
    ) -> BrokerAck:
        oid = self._order_id(client_order_id)
        if not oid:
            return BrokerAck("REJECTED", reason="no such order at Kite")
        p: dict[str, str] = {}
        if quantity is not None:
            p["quantity"] = str(quantity)
        if limit_price is not None:
            p["price"] = rupees(limit_price)
        try:
            self.rest.modify_order(oid, p)
        except BrokerError as e:
            self._check_session(e)
            return BrokerAck("REJECTED", oid, str(e))
        return BrokerAck("ACCEPTED", oid)

    def cancel_order(self, client_order_id: str) -> BrokerAck:
        oid = self._order_id(client_order_id)
        if not oid:
            return BrokerAck("REJECTED", reason="no such order at Kite")
        try:
            self.rest.cancel_order(oid)
        except BrokerError as e:
            self._check_session(e)
            return BrokerAck("REJECTED", oid, str(e))
        self._jobs.put(("sync", client_order_id))  # fills before the cancel, then the status
        return BrokerAck("PENDING", oid)

    def _order_id(self, cid: str) -> str:
        t = self._tracked.get(cid)
        if t is not None and t.order_id:
            return t.order_id
        found = self._find(cid)
        return str(found.get("order_id") or "") if found else ""

    def _find(self, cid: str) -> dict[str, Any] | None:
        tag = kite_tag(cid)
        mine = [o for o in self.rest.orders() if o.get("tag") == tag]
        return mine[-1] if mine else None

    def order_status(self, client_order_id: str) -> BrokerOrderReport | None:
        """Kite's record of the order, found by its tag (a fresh query; None if Kite never
        received it)."""
        try:
            o = self._find(client_order_id)
        except BrokerError as e:
            self._check_session(e)
            raise
        if o is None:
            return None
        t = self._track(client_order_id)
        t.order_id = str(o.get("order_id") or "")
        trades = self.rest.order_trades(t.order_id) if int(o.get("filled_quantity") or 0) else []
        # the caller (reconciliation) applies the report's fills; postbacks and polling may
        # deliver them again: the order manager counts a fill id once
        return order_report(client_order_id, o, trades)

    def orders(self) -> list[BrokerOrderReport]:
        out = []
        for o in self.rest.orders():
            cid = self._by_tag.get(str(o.get("tag") or ""))
            if cid is not None:
                out.append(order_report(cid, o))
        return out

    def positions(self) -> list[BrokerPosition]:
        net = self.rest.positions().get("net") or []
        return [
            BrokerPosition(
                int(p["instrument_token"]),
                str(p["tradingsymbol"]),
                int(p["quantity"]),
                float(to_paise(p.get("average_price") or 0)),
            )
            for p in net
            if int(p.get("quantity") or 0)
        ]

    def balance(self) -> BrokerBalance:
        m = self.rest.margins()
        eq = m.get("equity") or {}
        cash = to_paise((eq.get("available") or {}).get("live_balance") or eq.get("net") or 0)
        used = to_paise((eq.get("utilised") or {}).get("debits") or 0)
        return BrokerBalance(cash, used, {"net": eq.get("net")})

    # --- postbacks and polling --------------------------------------------------------------------
    def handle_postback(self, order: dict[str, Any]) -> None:
        """An order update from the ticker (any thread): settle it on the worker."""
        cid = self._by_tag.get(str(order.get("tag") or ""))
        if cid is not None:
            self._jobs.put(("update", (cid, order)))

    def _settle(self, cid: str, order: dict[str, Any]) -> None:
        """Deliver what ``order`` (Kite's JSON) says that mandi has not heard yet: fills first
        (from Kite's trades), then the status."""
        t = self._track(cid)
        oid = str(order.get("order_id") or "")
        if oid and not t.order_id:
            t.order_id = oid
            self._emit(BrokerOrderUpdate(cid, S.ACKED, self.clock.now_ns(), "", oid))
        filled = int(order.get("filled_quantity") or 0)
        if filled > t.filled and t.order_id:
            for tr in self.rest.order_trades(t.order_id):
                rep = order_report(cid, order, [tr])
                f = rep.fills[0]
                if f.fill_id not in t.fills:
                    t.fills.add(f.fill_id)
                    self._emit(f)
            t.filled = filled
        st = order_report(cid, order).status
        if st in (S.REJECTED, S.CANCELLED) and t.status is not st:
            reason = str(order.get("status_message") or st.value.lower())
            self._emit(BrokerOrderUpdate(cid, st, self.clock.now_ns(), reason, t.order_id))
        t.status = st

    def _poll(self) -> None:
        # every order not known to be finished, including those whose send timed out
        open_ = [c for c, t in self._tracked.items() if not t.status.terminal]
        if not open_:
            return
        book = {str(o.get("tag") or ""): o for o in self.rest.orders()}
        for cid in open_:
            o = book.get(kite_tag(cid))
            if o is not None:
                self._settle(cid, o)

    # --- the worker -------------------------------------------------------------------------------
    def _work(self) -> None:
        next_poll = time.monotonic() + self.poll_interval_s
        while not self._stop.is_set():
            try:
                job = self._jobs.get(timeout=max(next_poll - time.monotonic(), 0.01))
            except queue.Empty:
                job = ("poll", None)
            if job is None:
                return
            kind, arg = job
            try:
                if kind == "place":
                    self._place(*arg)
                elif kind == "update":
                    self._settle(*arg)
                elif kind == "sync":
                    o = self._find(arg)
                    if o is not None:
                        self._settle(arg, o)
                elif kind == "poll" and not self.session_dead:
                    self._poll()
            except BrokerError as e:
                self._check_session(e)
                log.warning("Kite %s: %s", kind, e)
            except Exception:
                log.exception("Kite broker worker: %s failed", kind)
            if kind == "poll" or time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self.poll_interval_s

    def _place(self, cid: str, params: dict[str, str]) -> None:
        t = self._track(cid)
        for attempt in range(self.retry_429 + 1):
            self.send_marks.append((time.perf_counter_ns(), time.thread_time_ns()))
            self.sent += 1
            try:
                oid = self.rest.place_order(params)
            except BrokerRateLimitError as e:  # refused before anything was placed
                if attempt < self.retry_429:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                self._emit(BrokerOrderUpdate(cid, S.REJECTED, self.clock.now_ns(), str(e)))
                return
            except BrokerSessionError as e:
                self._check_session(e)
                self._emit(BrokerOrderUpdate(cid, S.REJECTED, self.clock.now_ns(), str(e)))
                return
            except BrokerNetworkError as e:  # it may or may not have reached Kite
                self._emit(BrokerOrderUpdate(cid, S.UNKNOWN, self.clock.now_ns(), str(e)))
                return
            except BrokerError as e:  # InputException, OrderException: not placed
                self._emit(BrokerOrderUpdate(cid, S.REJECTED, self.clock.now_ns(), str(e)))
                return
            if not t.order_id:
                t.order_id = oid
                self._emit(BrokerOrderUpdate(cid, S.ACKED, self.clock.now_ns(), "", oid))
            return

    def _check_session(self, e: BrokerError) -> None:
        if isinstance(e, BrokerSessionError) and not self.session_dead:
            self.session_dead = f"Kite session ended ({e}); log in again: mandi broker login kite"
            log.error("%s", self.session_dead)
            self.on_session_dead(self.session_dead)

    # --- delivery ---------------------------------------------------------------------------------
    def _emit(self, ev: BrokerEvent) -> None:
        self._events.put(ev)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.drain)

    def drain(self) -> int:
        """Deliver pending events to the sink on this thread; returns how many."""
        n = 0
        while True:
            try:
                ev = self._events.get_nowait()
            except queue.Empty:
                return n
            n += 1
            try:
                self._sink(ev)
            except Exception:
                log.exception("broker event %r failed", ev)


__all__ = ["BrokerFill", "KiteBroker"]
