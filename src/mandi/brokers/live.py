"""What every live broker adapter shares behind the :class:`~mandi.execution.ports.Broker` port
(Kite, Angel One): the sending worker, tags, reconciliation by tag, fills from the
broker's trades, and failing closed on a dead session.

* **Sending never blocks the kernel.** ``place_order`` hands the order to a worker thread and
  answers ``PENDING``; the worker's outcome comes back as a broker event, delivered on the
  kernel's thread (``loop.call_soon_threadsafe``, or :meth:`LiveBroker.drain`). Accepted →
  ``ACKED`` with the broker's order id; an input or order error → ``REJECTED`` with the broker's
  message; a timeout or a 5xx → ``UNKNOWN``, which the order manager settles by reconciliation
  (never by re-sending); HTTP 429 → retried after a pause (nothing was placed).
* **Tags.** mandi's client order id travels in the broker's order tag (:meth:`LiveBroker.tag`);
  :meth:`order_status` finds an order by its tag in the broker's order book — a restart after a
  crash between send and acknowledgement finds the order there and does not send it again.
* **Updates** come from postbacks (:meth:`handle_postback`, where the broker has them) and from
  polling the order book every ``poll_interval_s`` while mandi has open orders (a lost postback
  is caught up). Fills are the broker's trades (the trade id is the fill id, so a fill seen twice
  counts once); they are delivered before the order's final status.
* **Dead session.** A session error marks the session dead: new orders are refused locally (no
  request is sent), polling stops, ``on_session_dead`` tells the node (entries blocked, system
  event, "log in again") — nothing loops on a dead token.

A subclass says how its broker spells things: :meth:`tag`, :meth:`_params`, :meth:`_send`,
:meth:`_modify`, :meth:`_cancel`, :meth:`_book`, :meth:`_trades`, :meth:`_fill`,
:meth:`_report`, the fields of its order JSON (:meth:`_tag_of`, :meth:`_oid_of`,
:meth:`_filled_of`, :meth:`_status_of`), :meth:`positions` and :meth:`balance`.
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

from mandi.core.clock import Clock
from mandi.core.errors import (
    BrokerError,
    BrokerNetworkError,
    BrokerRateLimitError,
    BrokerSessionError,
)
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
from mandi.model.instruments import AnyInstrument, InstrumentMaster
from mandi.model.market import Tick
from mandi.model.orders import OrderStatus

log = logging.getLogger(__name__)
S = OrderStatus
Json = dict[str, Any]


@dataclass
class Tracked:
    client_order_id: str
    order_id: str = ""
    fills: set[str] = field(default_factory=set)
    status: OrderStatus = S.SUBMITTED
    filled: int = 0


class LiveBroker:
    """The shared machinery of a live broker adapter (see the module docstring)."""

    name = "live"
    title = "the broker"  # for messages: "Kite", "Angel One"
    is_live = True

    def __init__(
        self,
        master: InstrumentMaster,
        clock: Clock,
        poll_interval_s: float = 3.0,
        retry_429: int = 3,
    ) -> None:
        self.master = master
        self.clock = clock
        self.poll_interval_s = poll_interval_s
        self.retry_429 = retry_429
        self._sink: Callable[[BrokerEvent], None] = lambda e: None
        self._events: queue.SimpleQueue[BrokerEvent] = queue.SimpleQueue()
        self._jobs: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._tracked: dict[str, Tracked] = {}
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

    # --- what a broker says its own way -----------------------------------------------------------
    def tag(self, client_order_id: str) -> str:
        """The broker's order tag that names a mandi order."""
        raise NotImplementedError

    def _params(self, req: OrderRequest, inst: AnyInstrument, tag: str) -> Json:
        raise NotImplementedError

    def _send(self, params: Json) -> str:
        """Place; returns the broker's order id."""
        raise NotImplementedError

    def _modify(self, order_id: str, quantity: int | None, limit_price: int | None) -> None:
        raise NotImplementedError

    def _cancel(self, order_id: str) -> None:
        raise NotImplementedError

    def _book(self) -> list[Json]:
        """Today's order book (the broker's JSON per order)."""
        raise NotImplementedError

    def _trades(self, order_id: str) -> list[Json]:
        """The trades (fills) of one order."""
        raise NotImplementedError

    def _fill(self, client_order_id: str, trade: Json) -> BrokerFill:
        raise NotImplementedError

    def _report(self, client_order_id: str, order: Json, trades: list[Json]) -> BrokerOrderReport:
        raise NotImplementedError

    def _tag_of(self, order: Json) -> str:
        raise NotImplementedError

    def _oid_of(self, order: Json) -> str:
        raise NotImplementedError

    def _filled_of(self, order: Json) -> int:
        raise NotImplementedError

    def _status_of(self, order: Json) -> tuple[OrderStatus, str]:
        """mandi's status of an order JSON and the broker's message for it."""
        raise NotImplementedError

    def positions(self) -> list[BrokerPosition]:
        raise NotImplementedError

    def balance(self) -> BrokerBalance:
        raise NotImplementedError

    # --- the port ---------------------------------------------------------------------------------
    def connect(self) -> None:
        """Start the worker; remember the running loop (events are delivered on it)."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        if self._worker is None:
            self._worker = threading.Thread(
                target=self._work, name=f"{self.name}-broker", daemon=True
            )
            self._worker.start()

    def close(self) -> None:
        self._stop.set()
        self._jobs.put(None)
        if self._worker is not None:
            self._worker.join(5)
            self._worker = None

    def subscribe(self, tokens: list[int]) -> None:
        return None  # market data comes from the broker's feed

    def set_event_sink(self, sink: Callable[[BrokerEvent], None]) -> None:
        self._sink = sink

    def on_market_data(self, tick: Tick) -> None:
        return None

    def active_tokens(self) -> set[int]:
        return set()  # fills come from the broker, never from ticks

    def on_market_batch(self, batch: TickBatch, lo: int, hi: int) -> None:
        return None

    def _track(self, cid: str) -> Tracked:
        with self._lock:
            t = self._tracked.get(cid)
            if t is None:
                t = self._tracked[cid] = Tracked(cid)
                self._by_tag[self.tag(cid)] = cid
            return t

    def place_order(self, request: OrderRequest) -> BrokerAck:
        if self.session_dead:
            return BrokerAck("REJECTED", reason=f"not sent: {self.session_dead}")
        inst = self.master.get(request.token)
        if inst is None:
            return BrokerAck("REJECTED", reason=f"unknown instrument token {request.token}")
        self._track(request.client_order_id)
        params = self._params(request, inst, self.tag(request.client_order_id))
        self._jobs.put(("place", (request.client_order_id, params)))
        return BrokerAck("PENDING")

    def modify_order(
        self, client_order_id: str, quantity: int | None = None, limit_price: int | None = None
    ) -> BrokerAck:
        oid = self._order_id(client_order_id)
        if not oid:
            return BrokerAck("REJECTED", reason=f"no such order at {self.title}")
        try:
            self._modify(oid, quantity, limit_price)
        except BrokerError as e:
            self._check_session(e)
            return BrokerAck("REJECTED", oid, str(e))
        return BrokerAck("ACCEPTED", oid)

    def cancel_order(self, client_order_id: str) -> BrokerAck:
        oid = self._order_id(client_order_id)
        if not oid:
            return BrokerAck("REJECTED", reason=f"no such order at {self.title}")
        try:
            self._cancel(oid)
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
        return self._oid_of(found) if found else ""

    def _find(self, cid: str) -> Json | None:
        tag = self.tag(cid)
        mine = [o for o in self._book() if self._tag_of(o) == tag]
        return mine[-1] if mine else None

    def order_status(self, client_order_id: str) -> BrokerOrderReport | None:
        """The broker's record of the order, found by its tag (a fresh query; None if the broker
        never received it)."""
        try:
            o = self._find(client_order_id)
            if o is None:
                return None
            t = self._track(client_order_id)
            t.order_id = self._oid_of(o)
            trades = self._trades(t.order_id) if self._filled_of(o) else []
        except BrokerError as e:
            self._check_session(e)
            raise
        # the caller (reconciliation) applies the report's fills; postbacks and polling may
        # deliver them again: the order manager counts a fill id once
        return self._report(client_order_id, o, trades)

    def orders(self) -> list[BrokerOrderReport]:
        out = []
        for o in self._book():
            cid = self._by_tag.get(self._tag_of(o))
            if cid is not None:
                out.append(self._report(cid, o, []))
        return out

    # --- postbacks and polling --------------------------------------------------------------------
    def handle_postback(self, order: Json) -> None:
        """An order update pushed by the broker (any thread): settle it on the worker."""
        cid = self._by_tag.get(self._tag_of(order))
        if cid is not None:
            self._jobs.put(("update", (cid, order)))

    def _settle(self, cid: str, order: Json) -> None:
        """Deliver what ``order`` (the broker's JSON) says that mandi has not heard yet: fills
        first (from the broker's trades), then the status."""
        t = self._track(cid)
        oid = self._oid_of(order)
        if oid and not t.order_id:
            t.order_id = oid
            self._emit(BrokerOrderUpdate(cid, S.ACKED, self.clock.now_ns(), "", oid))
        filled = self._filled_of(order)
        if filled > t.filled and t.order_id:
            for tr in self._trades(t.order_id):
                f = self._fill(cid, tr)
                if f.fill_id not in t.fills:
                    t.fills.add(f.fill_id)
                    self._emit(f)
            t.filled = filled
        st, message = self._status_of(order)
        if st in (S.REJECTED, S.CANCELLED) and t.status is not st:
            reason = message or st.value.lower()
            self._emit(BrokerOrderUpdate(cid, st, self.clock.now_ns(), reason, t.order_id))
        t.status = st

    def _poll(self) -> None:
        # every order not known to be finished, including those whose send timed out
        open_ = [c for c, t in self._tracked.items() if not t.status.terminal]
        if not open_:
            return
        book = {self._tag_of(o): o for o in self._book()}
        for cid in open_:
            o = book.get(self.tag(cid))
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
                log.warning("%s %s: %s", self.title, kind, e)
            except Exception:
                log.exception("%s broker worker: %s failed", self.title, kind)
            if kind == "poll" or time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self.poll_interval_s

    def _place(self, cid: str, params: Json) -> None:
        t = self._track(cid)
        for attempt in range(self.retry_429 + 1):
            self.send_marks.append((time.perf_counter_ns(), time.thread_time_ns()))
            self.sent += 1
            try:
                oid = self._send(params)
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
            except BrokerNetworkError as e:  # it may or may not have reached the broker
                self._emit(BrokerOrderUpdate(cid, S.UNKNOWN, self.clock.now_ns(), str(e)))
                return
            except BrokerError as e:  # an input or order error: not placed
                self._emit(BrokerOrderUpdate(cid, S.REJECTED, self.clock.now_ns(), str(e)))
                return
            if not t.order_id:
                t.order_id = oid
                self._emit(BrokerOrderUpdate(cid, S.ACKED, self.clock.now_ns(), "", oid))
            return

    def _check_session(self, e: BrokerError) -> None:
        if isinstance(e, BrokerSessionError):
            self.mark_dead(f"{self.title} session ended ({e})")

    def mark_dead(self, why: str) -> None:
        """Fail closed: no more orders or polling until a new login (and a restart)."""
        if not self.session_dead:
            self.session_dead = f"{why}; log in again: mandi broker login {self.name}"
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
