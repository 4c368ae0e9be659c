"""What every live broker adapter shares behind the :class:`~mandi.execution.ports.Broker` port
(Kite, Angel One, Groww): the REST client and its session, the sending worker, tags,
reconciliation by tag, fills from the broker's trades, and failing closed on a dead session.

* **The session.** An adapter is built on its broker's REST client and, where the session is
  renewed while the node runs (Angel One, Groww), the shared
  :class:`~mandi.brokers.keeper.SessionKeeper`: every request then takes the REST client through
  :attr:`LiveBroker.rest`, which hands it the keeper's current token (:meth:`_authorize`) — a
  refused renewal raises a session error, which ends the session (below).

* **Sending never blocks the kernel.** ``place_order`` answers ``PENDING``; the outcome comes
  back as a broker event, delivered on the kernel's thread (``loop.call_soon_threadsafe``, or
  :meth:`LiveBroker.drain`). Called on the node's event loop (the kernel's thread) by an adapter
  that offers it (:meth:`LiveBroker._order_request`), the order is written at once over a
  kept-alive connection by the :class:`~mandi.brokers.sender.OrderSender` and its answer read by
  the loop — no thread hand-off between the tick and the wire; otherwise (no loop, a proxy, the
  sender not connected) a worker thread sends it through the adapter's REST client. Accepted →
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
* **Reconciliation** (:meth:`order_reports`) reads the order book once per pass, and the trades
  once for all the orders of the pass that filled.
* **Dead session.** A session error marks the session dead: polling stops, ``on_session_dead``
  tells the node (entries blocked, system event, "log in again") — nothing loops on a dead
  token. Risk still lets exits through, but with a dead token the broker refuses every order, an
  exit included (Kite answers ``TokenException`` to anything sent with it), so an order that
  reaches the broker now is refused here, without a request, with a reason that says so
  (``refused`` counts them; the node raises a system event for each): the position stays open
  at the broker, to be closed there or after logging in again.

A subclass says how its broker spells things: :meth:`_authorize` (with a keeper), :meth:`tag`,
:meth:`_params`, :meth:`_send` (and, for the loop's fast path, :meth:`_order_request`,
:meth:`_order_answer`, :meth:`_order_pace`), :meth:`_modify`, :meth:`_cancel`, :meth:`_book`,
:meth:`_trades`, its order JSON (:class:`OrderJson`: the fields, and the wire's status, fill
and report), :meth:`positions` and :meth:`balance`; its own state goes in :meth:`_setup`.
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
from typing import Any, Generic, TypeVar

from mandi.brokers.keeper import SessionKeeper
from mandi.brokers.sender import NotSent, OrderSender, RequestTemplate
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
R = TypeVar("R")  # the broker's REST client


@dataclass(frozen=True)
class OrderJson:
    """How a broker's order JSON reads: the fields mandi looks at, and its wire module's
    translations of a status, a trade and an order."""

    tag: str  # the field that carries mandi's tag
    order_id: str
    filled: str  # the quantity filled so far
    status: str
    message: str  # the broker's word on the status (a rejection's reason)
    to_status: Callable[[str, int, int], OrderStatus]  # (status, filled, quantity) → mandi's
    to_fill: Callable[[str, Json], BrokerFill]  # (client order id, a trade)
    to_report: Callable[[str, Json, list[Json]], BrokerOrderReport]  # (cid, order, its trades)


@dataclass
class Tracked:
    client_order_id: str
    order_id: str = ""
    fills: set[str] = field(default_factory=set)
    status: OrderStatus = S.SUBMITTED
    filled: int = 0


class LiveBroker(Generic[R]):
    """The shared machinery of a live broker adapter (see the module docstring)."""

    name = "live"
    title = "the broker"  # for messages: "Kite", "Angel One"
    is_live = True
    order_json: OrderJson  # each adapter's

    def __init__(
        self,
        rest: R,
        master: InstrumentMaster,
        clock: Clock,
        poll_interval_s: float = 3.0,
        retry_429: int = 3,
        keeper: SessionKeeper | None = None,
    ) -> None:
        self._rest = rest
        self.keeper = keeper
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
        self.refused = 0  # orders refused here because the session is dead
        self.last_refused = ""
        # per send attempt: (perf_counter_ns, this thread's CPU ns) as it starts
        self.send_marks: list[tuple[int, int]] = []
        self.order_connections = 2  # kept-alive connections of the fast path (0: none)
        self._sender: OrderSender | None = None
        self._loop_thread = 0
        self._setup()

    def _setup(self) -> None:
        """The adapter's own state, set up at the end of ``__init__`` (none by default)."""

    @property
    def rest(self) -> R:
        """The REST client, holding the session's current token (renewed by the keeper when
        due; a refused renewal raises :class:`~mandi.core.errors.BrokerSessionError`)."""
        if self.keeper is not None:
            self._authorize(self._rest, self.keeper.get().access_token)
        return self._rest

    # --- what a broker says its own way -----------------------------------------------------------
    def _authorize(self, rest: R, access_token: str) -> None:
        """Hand the REST client the session's access token (adapters built with a keeper)."""
        raise NotImplementedError

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

    # the broker's order JSON, read as its ``order_json`` says
    def _fill(self, client_order_id: str, trade: Json) -> BrokerFill:
        return self.order_json.to_fill(client_order_id, trade)

    def _report(self, client_order_id: str, order: Json, trades: list[Json]) -> BrokerOrderReport:
        return self.order_json.to_report(client_order_id, order, trades)

    def _tag_of(self, order: Json) -> str:
        return str(order.get(self.order_json.tag) or "")

    def _oid_of(self, order: Json) -> str:
        return str(order.get(self.order_json.order_id) or "")

    def _filled_of(self, order: Json) -> int:
        return int(order.get(self.order_json.filled) or 0)

    def _status_of(self, order: Json) -> tuple[OrderStatus, str]:
        """mandi's status of an order JSON and the broker's message for it."""
        j = self.order_json
        st = j.to_status(
            str(order.get(j.status) or ""), self._filled_of(order), int(order.get("quantity") or 0)
        )
        return st, str(order.get(j.message) or "")

    def positions(self) -> list[BrokerPosition]:
        raise NotImplementedError

    def balance(self) -> BrokerBalance:
        raise NotImplementedError

    # the fast path (optional): the order request as bytes, its answer, the order pacing
    def _order_url(self) -> str:
        """The URL orders are placed at ("" = no fast path: the worker sends them)."""
        return ""

    def _order_request(self, params: Json) -> tuple[RequestTemplate, bytes]:
        """The request that places ``params``: a template (cached by the adapter) and a body."""
        raise NotImplementedError

    def _order_answer(self, status: int, body: bytes) -> str:
        """The broker's order id from the answer to a place request (else its error)."""
        raise NotImplementedError

    def _order_pace(self) -> float:
        """Take an order slot of the broker's rate limit; seconds to wait for it."""
        return 0.0

    def _trades_by_order(self) -> dict[str, list[Json]] | None:
        """Today's trades of every order (by the broker's order id) from one request, where the
        broker lists them all (None: ask per order with :meth:`_trades`)."""
        return None

    # --- the port ---------------------------------------------------------------------------------
    def connect(self) -> None:
        """Start the worker; remember the running loop (events are delivered on it) and open
        the order connections on it."""
        try:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
        except RuntimeError:
            self._loop = None
        if self._worker is None:
            self._worker = threading.Thread(
                target=self._work, name=f"{self.name}-broker", daemon=True
            )
            self._worker.start()
        url = self._order_url()
        if (
            self._loop is not None
            and self._sender is None
            and self.order_connections > 0
            and url
            and OrderSender.usable(url)
        ):
            self._sender = OrderSender(
                url,
                timeout_s=self._timeout_s(),
                warm=self.order_connections,
                max_connections=max(self.order_connections, 4),
                title=self.title,
            )
            self._sender.start(self._loop)

    def _timeout_s(self) -> float:
        return 7.0

    def close(self) -> None:
        self._stop.set()
        self._jobs.put(None)
        self._close_sender()
        if self._worker is not None:
            self._worker.join(5)
            self._worker = None

    def _close_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is None:
            return
        loop = self._loop
        if self._on_loop() or loop is None or loop.is_closed():
            sender.close()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(sender.close)

    def _on_loop(self) -> bool:
        return self._loop_thread == threading.get_ident()

    @property
    def sender(self) -> OrderSender | None:
        """The fast path's connections (None: orders go through the worker)."""
        return self._sender

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
            return self._refuse(request)
        inst = self.master.get(request.token)
        if inst is None:
            return BrokerAck("REJECTED", reason=f"unknown instrument token {request.token}")
        cid = request.client_order_id
        self._track(cid)
        params = self._params(request, inst, self.tag(cid))
        if self._sender is not None and self._on_loop():
            self._fast_place(cid, params, 0)
        else:
            self._jobs.put(("place", (cid, params, 0)))
        return BrokerAck("PENDING")

    def _refuse(self, request: OrderRequest) -> BrokerAck:
        """An order while the session is dead: nothing is sent (the broker would refuse it)."""
        self.refused += 1
        self.last_refused = (
            f"{request.side.value} {request.quantity} {request.symbol} not sent: "
            f"{self.session_dead}"
        )
        log.error("%s", self.last_refused)
        return BrokerAck("REJECTED", reason=f"not sent: {self.session_dead}")

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

    def order_reports(self, client_order_ids: list[str]) -> dict[str, BrokerOrderReport | None]:
        """:meth:`order_status` of many orders from one read of the order book (and one of the
        trades where the broker lists them all): what a reconciliation pass needs."""
        try:
            book = self._book()
            found: dict[str, Json] = {}
            for row in book:  # the last of a tag wins, as in _find
                found[self._tag_of(row)] = row
            mine = {cid: found.get(self.tag(cid)) for cid in client_order_ids}
            filled = [o for o in mine.values() if o is not None and self._filled_of(o)]
            by_order = self._trades_by_order() if len(filled) > 1 else None
            out: dict[str, BrokerOrderReport | None] = {}
            for cid, o in mine.items():
                if o is None:
                    out[cid] = None
                    continue
                t = self._track(cid)
                t.order_id = self._oid_of(o)
                if not self._filled_of(o):
                    trades: list[Json] = []
                elif by_order is not None:
                    trades = by_order.get(t.order_id, [])
                else:
                    trades = self._trades(t.order_id)
                out[cid] = self._report(cid, o, trades)
        except BrokerError as e:
            self._check_session(e)
            raise
        return out

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
                    if self.session_dead:
                        self._emit(
                            BrokerOrderUpdate(
                                arg[0],
                                S.REJECTED,
                                self.clock.now_ns(),
                                f"not sent: {self.session_dead}",
                            )
                        )
                    else:
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

    def _place(self, cid: str, params: Json, first: int = 0) -> None:
        """Send an order through the REST client (the worker thread)."""
        for attempt in range(first, self.retry_429 + 1):
            self._mark_send()
            try:
                result: str | BrokerError = self._send(params)
            except BrokerError as e:
                result = e
            if not self._sent_outcome(cid, result, attempt):
                return
            time.sleep(0.5 * (attempt + 1))  # HTTP 429: nothing was placed; again after a pause

    def _mark_send(self) -> None:
        self.send_marks.append((time.perf_counter_ns(), time.thread_time_ns()))
        self.sent += 1

    def _sent_outcome(self, cid: str, result: str | BrokerError, attempt: int) -> bool:
        """Deliver what a send came to (the broker's order id, or its error); True when it
        should be sent again (HTTP 429 within ``retry_429``)."""
        now = self.clock.now_ns()
        if isinstance(result, str):
            t = self._track(cid)
            if not t.order_id:
                t.order_id = result
                self._emit(BrokerOrderUpdate(cid, S.ACKED, now, "", result))
            return False
        e = result
        if isinstance(e, BrokerRateLimitError):  # refused before anything was placed
            if attempt < self.retry_429:
                return True
            self._emit(BrokerOrderUpdate(cid, S.REJECTED, now, str(e)))
        elif isinstance(e, BrokerSessionError):
            self._check_session(e)
            self._emit(BrokerOrderUpdate(cid, S.REJECTED, now, str(e)))
        elif isinstance(e, BrokerNetworkError):  # it may or may not have reached the broker
            self._emit(BrokerOrderUpdate(cid, S.UNKNOWN, now, str(e)))
        else:  # an input or order error: not placed
            self._emit(BrokerOrderUpdate(cid, S.REJECTED, now, str(e)))
        return False

    # --- the fast path: on the loop's thread, over the sender's kept-alive connections -----------
    def _fast_place(self, cid: str, params: Json, attempt: int) -> None:
        if self.session_dead:
            self._emit(
                BrokerOrderUpdate(
                    cid, S.REJECTED, self.clock.now_ns(), f"not sent: {self.session_dead}"
                )
            )
            return
        wait = self._order_pace()
        if wait > 0 and self._loop is not None:
            self._loop.call_later(wait, self._fast_write, cid, params, attempt)
        else:
            self._fast_write(cid, params, attempt)

    def _fast_write(self, cid: str, params: Json, attempt: int) -> None:
        sender = self._sender
        if sender is None:  # closed meanwhile
            self._jobs.put(("place", (cid, params, attempt)))
            return
        template, body = self._order_request(params)
        self._mark_send()

        def done(status: int, answer: bytes, err: BrokerError | None) -> None:
            self._fast_done(cid, params, attempt, status, answer, err)

        sender.send(template, body, done)

    def _fast_done(
        self,
        cid: str,
        params: Json,
        attempt: int,
        status: int,
        body: bytes,
        err: BrokerError | None,
    ) -> None:
        if isinstance(err, NotSent):  # it never left: the worker sends it through the REST client
            self.sent -= 1
            self._jobs.put(("place", (cid, params, attempt)))
            return
        result: str | BrokerError
        if err is not None:
            result = err
        else:
            try:
                result = self._order_answer(status, body)
            except BrokerError as e:
                result = e
        if self._sent_outcome(cid, result, attempt) and self._loop is not None:
            self._loop.call_later(0.5 * (attempt + 1), self._fast_place, cid, params, attempt + 1)

    def _check_session(self, e: BrokerError) -> None:
        if isinstance(e, BrokerSessionError):
            self.mark_dead(f"{self.title} session ended ({e})")

    def mark_dead(self, why: str) -> None:
        """Fail closed: no more orders or polling until a new login (and a restart)."""
        if not self.session_dead:
            again = f"log in again: mandi broker login {self.name}"
            self.session_dead = why if again in why else f"{why}; {again}"
            log.error("%s", self.session_dead)
            self._close_sender()  # no connections kept for a dead session
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
