"""The execution engine: signals → trade plans → risk → orders (or a log line), fills →
positions, and exits. One code path for the three modes:

* ``logging``: everything up to and including the risk check runs; the full intended trade
  (instrument, quantity, entry, stop-loss, target, max loss) is logged and published as
  :class:`~mandi.model.trading.TradeLogged` on ``order:logged``. There is no broker: no code path
  can place an order.
* ``paper`` / ``live``: allowed orders go to the :class:`~mandi.execution.orders.OrderManager`
  and its broker (the paper broker, or a live one that only ``live`` mode accepts).

A signal on an index trades an option on it (CE when bullish, PE when bearish, picked by the
strike selector); a signal on a stock trades the stock (a SELL closes a long, and opens a short
only with ``allow_short``). An opposite signal from the same strategy first closes its position
(``exit_on_opposite_signal``); a repeated one is ignored while the position (or its entry order)
exists. Sizing, stop-loss and target come from :mod:`mandi.risk`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from mandi.bus.memory import MessageBus
from mandi.core.calendar import IST_OFFSET_NS, NS_PER_DAY, ist_date
from mandi.core.clock import Clock
from mandi.core.errors import InstrumentError, OrderError
from mandi.core.ids import stable_id
from mandi.core.money import format_inr, round_to_tick
from mandi.execution.charges import ChargesModel, segment_of
from mandi.execution.config import TradingConfig
from mandi.execution.market import MarketState
from mandi.execution.orders import OrderManager
from mandi.execution.ports import BrokerFill, TradingStore
from mandi.execution.strikes import NoStrike, choose_expiry, select_strike
from mandi.model.instruments import AnyInstrument, Equity, Future, Index, InstrumentMaster, Option
from mandi.model.orders import (
    Intent,
    Order,
    OrderFilled,
    OrderType,
    Product,
    Side,
    SubmitOrder,
)
from mandi.model.trading import (
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    RiskDenied,
    SignalGenerated,
    TradeLogged,
)
from mandi.portfolio.performance import PerformanceTracker
from mandi.portfolio.positions import Position, PositionBook
from mandi.risk import exits
from mandi.risk.config import RiskLimits
from mandi.risk.engine import RiskEngine
from mandi.risk.rules import Denied, OrderContext, slice_quantity
from mandi.risk.sizing import size_entry
from mandi.signals.manager import DENIED, FINAL, IGNORED, LOGGED, ORDERED, validate_signal

log = logging.getLogger(__name__)


@dataclass(slots=True)
class InFlight:
    """An entry order whose position does not exist yet (or is still filling)."""

    parent_id: str
    strategy: str
    source: int
    bias: int
    token: int
    value: int
    children: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Plan:
    instrument: AnyInstrument
    side: Side
    direction: int
    quantity: int
    reference_price: int
    order_type: OrderType
    limit_price: int
    stop_loss: int
    target: int
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ManualResult:
    status: str  # ACCEPTED | DENIED | LOGGED | ERROR
    reason: str = ""
    rule: str = ""
    order_ids: tuple[str, ...] = ()


def tag_for(source: int, bias: int) -> str:
    return f"src:{source}:{bias}"


def parse_tag(tag: str) -> tuple[int, int]:
    parts = tag.split(":")
    if len(parts) == 3 and parts[0] == "src":
        try:
            return int(parts[1]), int(parts[2])
        except ValueError:
            pass
    return 0, 0


class ExecutionEngine:
    def __init__(
        self,
        *,
        mode: str,
        cfg: TradingConfig,
        limits: RiskLimits,
        store: TradingStore,
        bus: MessageBus,
        clock: Clock,
        master: InstrumentMaster,
        market: MarketState,
        book: PositionBook,
        perf: PerformanceTracker,
        risk: RiskEngine,
        orders: OrderManager | None,
        charges: ChargesModel,
    ) -> None:
        if mode not in ("logging", "paper", "live"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "logging" and orders is not None:
            raise ValueError("logging-only mode has no order path")
        if mode != "logging" and orders is None:
            raise ValueError(f"{mode} mode needs an order manager")
        broker = orders.broker if orders is not None else None
        if broker is not None and broker.is_live and mode != "live":
            raise ValueError(f"a live broker ({broker.name}) cannot be used in {mode} mode")
        self.mode, self.cfg, self.limits = mode, cfg, limits
        self.store, self.bus, self.clock, self.master = store, bus, clock, master
        self.market, self.book, self.perf, self.risk = market, book, perf, risk
        self.orders, self.charges = orders, charges
        self.paper = mode != "live"
        self.product = Product(cfg.product)
        self.inflight: dict[str, InFlight] = {}
        self._handled: set[str] = set()
        self._exit_retry: dict[str, int] = {}
        self._unknown_reported: set[str] = set()
        self.signals_seen = 0
        self.duplicates = 0
        self.logged = 0
        self.fills = 0
        self.on_fill_hooks: list[Any] = []
        self._day_index = -1
        self._day = dt.date(1970, 1, 1)

    # --- helpers ----------------------------------------------------------------------------------
    def today(self) -> dt.date:
        """The IST date of the clock (cached per day: it is asked on every decision)."""
        now = self.clock.now_ns()
        idx = (now + IST_OFFSET_NS) // NS_PER_DAY
        if idx != self._day_index:
            self._day_index, self._day = idx, ist_date(now)
        return self._day

    def day_pnl(self) -> int:
        """Today's realized P&L net of charges plus the unrealized P&L of open positions."""
        return self.perf.realized(self.today()) + self.book.unrealized()

    def available_cash(self) -> int:
        pending = sum(f.value for f in self.inflight.values() if f.bias > 0)
        return (
            self.limits.capital + self.perf.realized(self.today()) - self.book.invested() - pending
        )

    def _context(
        self,
        inst: AnyInstrument,
        side: Side,
        qty: int,
        intent: Intent,
        order_type: OrderType = OrderType.MARKET,
        limit_price: int = 0,
        slices: int = 1,
        opens_position: bool = True,
    ) -> OrderContext:
        now = self.clock.now_ns()
        lim = self.orders.limiter if self.orders is not None else None
        queued = len(self.orders.queue) if self.orders is not None else 0
        return OrderContext(
            now_ns=now,
            instrument=inst,
            side=side,
            quantity=qty,
            intent=intent,
            limits=self.limits,
            order_type=order_type,
            limit_price=limit_price,
            ltp=self.market.ltp(inst.token),
            ltp_ns=self.market.last_ns(inst.token),
            halted=self.risk.halted,
            halt_reason=self.risk.latch.reason,
            open_positions=self.book.open_count + len(self.inflight),
            opens_position=opens_position,
            position_value=self.book.value_in(inst.token),
            exposure=self.book.exposure() + sum(f.value for f in self.inflight.values()),
            available_cash=self.available_cash(),
            orders_last_minute=(lim.sent_last_minute(now) if lim else 0) + queued,
            orders_today=(lim.sent_today(now) if lim else 0) + queued,
            slices=slices,
            entry_block=self.risk.entry_block(),
        )

    def _finish_signal(self, sig: SignalGenerated, status: str, reason: str = "") -> None:
        self.store.set_signal_status(sig.signal_id, status, reason, self.clock.now_ns())

    def _deny_signal(self, sig: SignalGenerated, d: Denied, **about: Any) -> None:
        self.risk.deny(
            RiskDenied(
                self.clock.now_ns(),
                d.rule,
                d.reason,
                sig.strategy,
                sig.signal_id,
                about.get("order_id", ""),
                about.get("symbol", sig.symbol),
                about.get("side", ""),
                about.get("quantity", 0),
            )
        )
        self._finish_signal(sig, DENIED, f"{d.rule}: {d.reason}")

    # --- signals ----------------------------------------------------------------------------------
    def handle_signal(self, topic: str, sig: SignalGenerated) -> None:
        """Bus handler for ``signal:>``: act on a signal at most once."""
        if sig.signal_id in self._handled:
            self.duplicates += 1
            return
        status = self.store.signal_status(sig.signal_id)
        if status is None:
            self.store.insert_signal(sig)  # published by someone else: persist it first
        elif status in FINAL:
            self.duplicates += 1
            self._handled.add(sig.signal_id)
            return
        self._handled.add(sig.signal_id)
        self.signals_seen += 1
        try:
            self._process(sig)
        except Exception as e:
            log.exception("signal %s could not be processed", sig.signal_id)
            self._deny_signal(sig, Denied("internal_error", f"{type(e).__name__}: {e}"))

    def _mine(self, strategy: str, source: int) -> list[Position]:
        return [
            p
            for p in self.book.open_positions()
            if p.strategy == strategy and p.metadata.get("source") == source
        ]

    def _process(self, sig: SignalGenerated) -> None:
        now = self.clock.now_ns()
        bias = sig.action.sign
        watched = self.master.get(sig.token)
        mine = self._mine(sig.strategy, sig.token)
        opposite = [p for p in mine if p.metadata.get("bias") == -bias]
        same = [p for p in mine if p.metadata.get("bias") == bias]
        same_inflight = [
            f
            for f in self.inflight.values()
            if f.strategy == sig.strategy and f.source == sig.token
        ]
        if sig.metadata.get("exit_only"):  # Strategy.close(): closes, never opens
            for p in opposite:
                self.exit_position(p, exits.STRATEGY)
            what = "closing the position" if opposite else "no open position to close"
            self._finish_signal(sig, ORDERED if opposite else IGNORED, what)
            return
        if opposite and self.cfg.exit_on_opposite_signal:
            for p in opposite:
                self.exit_position(p, exits.SIGNAL)
        if same or any(f.bias == bias for f in same_inflight):
            self._finish_signal(sig, IGNORED, "a position in this direction is already open")
            return
        if any(f.bias == -bias for f in same_inflight):
            for f in [f for f in same_inflight if f.bias == -bias]:
                for cid in list(f.children):
                    if self.orders is not None:
                        self.orders.cancel(cid, "opposite signal")
        d = validate_signal(
            sig,
            now,
            max_age_ns=int(self.cfg.signal_max_age_s * 1e9),
            enabled=self.cfg.enabled,
            symbol_known=watched is not None,
            open_positions=self.book.open_count + len(self.inflight),
            max_positions=self.limits.max_concurrent_positions,
        )
        if d is not None:
            self._deny_signal(sig, d)
            return
        assert watched is not None
        if isinstance(watched, Equity) and sig.action is Side.SELL and not self.cfg.allow_short:
            what = "closed the long position" if opposite else "nothing to sell"
            self._finish_signal(
                sig, IGNORED, f"{what}; short selling is disabled (trading.allow_short)"
            )
            return
        brk = self.risk.check_breaker(self.day_pnl)
        if isinstance(brk, Denied):
            self._deny_signal(sig, Denied("halted", self.risk.latch.reason or brk.reason))
            return
        plan = self._plan(sig, watched, bias)
        if isinstance(plan, Denied):
            self._deny_signal(sig, plan)
            return
        slices = slice_quantity(plan.quantity, plan.instrument.freeze_qty, plan.instrument.lot_size)
        decision = self.risk.check(
            self._context(
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
            self._deny_signal(
                sig,
                decision,
                symbol=plan.instrument.symbol,
                side=plan.side.value,
                quantity=plan.quantity,
            )
            return
        parent = stable_id(sig.signal_id, "entry")
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
            product=self.product,
            intent=Intent.ENTRY,
            strategy=sig.strategy,
            signal_id=sig.signal_id,
            position_id=stable_id(parent, "position"),
            stop_loss=plan.stop_loss if plan.detail.get("explicit_levels") else 0,
            target=plan.target if plan.detail.get("explicit_levels") else 0,
            tag=tag_for(sig.token, bias),
        )
        if self.orders is None:
            self._log_trade(sig, plan)
            return
        try:
            self._submit_entry(cmd, slices, plan, sig.signal_id)
        except OrderError as e:  # e.g. the paced queue is full
            self._deny_signal(sig, Denied("order_queue", str(e)))

    def _submit_entry(
        self, cmd: SubmitOrder, slices: list[int], plan: Plan, signal_id: str
    ) -> list[Order]:
        assert self.orders is not None
        src, bias = parse_tag(cmd.tag)
        segment = f"{plan.instrument.exchange}:{plan.instrument.segment or 'EQ'}"
        children = self.orders.submit(
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
                self.inflight[cmd.client_order_id] = f
        elif signal_id:
            self._finish_signal_id(signal_id, ORDERED, "orders already exist")
        return children

    def _finish_signal_id(self, signal_id: str, status: str, reason: str) -> None:
        self.store.set_signal_status(signal_id, status, reason, self.clock.now_ns())

    def _log_trade(self, sig: SignalGenerated, plan: Plan) -> None:
        now = self.clock.now_ns()
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
        self._finish_signal(
            sig,
            LOGGED,
            f"{plan.side.value} {plan.quantity} {plan.instrument.symbol} @ {plan.reference_price}",
        )
        self.bus.publish("order:logged", ev)

    # --- planning ---------------------------------------------------------------------------------
    def _plan(self, sig: SignalGenerated, watched: AnyInstrument, bias: int) -> Plan | Denied:
        now = self.clock.now_ns()
        detail: dict[str, Any] = {"signal_price": sig.price}
        if isinstance(watched, Index) and self.cfg.options_for_indices:
            expiry = choose_expiry(
                self.master, watched.symbol, now, self.cfg.strikes, watched.exchange
            )
            if expiry is None:
                return Denied("no_expiry", f"no {watched.symbol} expiry is far enough away")
            chain = self.market.chain(watched.symbol, expiry, now, watched.token)
            if chain is None:
                return Denied("no_chain", f"no option chain of {watched.symbol} {expiry} yet")
            choice = select_strike(
                chain, "CE" if bias > 0 else "PE", now, self.cfg.strikes, self.master
            )
            if isinstance(choice, NoStrike):
                return Denied("strike_selection", choice.reason)
            inst: AnyInstrument = choice.option
            quote_ref = choice.quote.ask if choice.quote.ask > 0 else choice.quote.ltp
            ref = self.market.ltp(inst.token) or quote_ref
            t = self.market.ticks.get(inst.token)
            if t is not None and t.ask > 0:
                ref = t.ask
            direction = 1
            detail.update(
                strike_score=round(choice.score, 4),
                scores={k: round(v, 4) for k, v in choice.scores.items()},
                delta=round(choice.delta, 4),
                iv=round(choice.iv, 4),
                expiry=expiry.isoformat(),
            )
        elif isinstance(watched, Equity | Future | Option):
            inst = watched
            direction = bias
            ref = self.market.ltp(inst.token) or sig.price
            t = self.market.ticks.get(inst.token)
            touch = 0 if t is None else (t.ask if direction > 0 else t.bid)
            if touch > 0:
                ref = touch  # what a marketable order would pay
        else:
            return Denied("not_tradable", f"{watched.symbol} cannot be traded")
        if ref <= 0:
            return Denied("no_market_data", f"no price for {inst.symbol}")
        is_option = isinstance(inst, Option)
        stop, target = exits.levels(
            self.limits, entry=ref, direction=direction, is_option=is_option, tick=inst.tick_size
        )
        explicit = inst is watched and (sig.stop_loss > 0 or sig.target > 0)
        if explicit:
            stop = sig.stop_loss or stop
            target = sig.target or target
        detail["explicit_levels"] = explicit
        side = Side.BUY if direction > 0 else Side.SELL
        qty = sig.quantity
        if qty <= 0:
            size = size_entry(self.limits, entry_price=ref, stop_price=stop, lot_size=inst.lot_size)
            if size.quantity <= 0:
                return Denied("sizing", size.reason)
            qty = size.quantity
        order_type, limit = OrderType(self.cfg.order_type), 0
        if order_type is OrderType.LIMIT:
            off = self.cfg.limit_offset_ticks * inst.tick_size
            limit = round_to_tick(
                ref + off if side is Side.BUY else max(ref - off, inst.tick_size),
                inst.tick_size,
                "down" if side is Side.BUY else "up",
            )
        return Plan(inst, side, direction, qty, ref, order_type, limit, stop, target, detail)

    # --- exits ------------------------------------------------------------------------------------
    def exit_position(
        self, p: Position, reason: str, quantity: int | None = None, parent_hint: str = ""
    ) -> list[Order] | Denied:
        """Close ``p`` (or ``quantity`` of it) with market orders, sliced at the freeze quantity."""
        if self.orders is None or not p.is_open or (p.closing and quantity is None):
            return []
        now = self.clock.now_ns()
        inst = self.master.get(p.token)
        if inst is None:
            if p.position_id not in self._unknown_reported:
                self._unknown_reported.add(p.position_id)
                self.risk.deny(
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
        for f in [
            f
            for f in self.inflight.values()
            if f.token == p.token and stable_id(f.parent_id, "position") == p.position_id
        ]:
            for cid in list(f.children):
                self.orders.cancel(cid, f"position exiting ({reason})")
        qty = p.quantity if quantity is None else min(quantity, p.quantity)
        if qty <= 0:
            return []
        side = p.entry_side.opposite
        decision = self.risk.check(
            self._context(inst, side, qty, Intent.EXIT, opens_position=False)
        )
        if isinstance(decision, Denied):
            if self._exit_retry.get(p.position_id, 0) <= now:
                self.risk.deny(
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
                self._exit_retry[p.position_id] = now + int(self.cfg.monitor_interval_s * 1e9)
            return decision
        attempt = self.store.exit_order_count(p.position_id)
        parent = parent_hint or stable_id(p.position_id, "exit", attempt)
        cmd = SubmitOrder(
            client_order_id=parent,
            ts_event=now,
            token=p.token,
            exchange=p.exchange,
            symbol=p.symbol,
            side=side,
            quantity=qty,
            reference_price=self.market.ltp(p.token),
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
        self.store.save_position(p.to_record())
        log.info("closing %s %s %d (%s)", p.strategy, p.symbol, qty, reason)
        segment = f"{inst.exchange}:{inst.segment or 'EQ'}"
        try:
            return self.orders.submit(
                cmd, slice_quantity(qty, inst.freeze_qty, inst.lot_size), segment
            )
        except OrderError as e:
            p.closing = False
            log.error("exit of %s failed: %s", p.position_id, e)
            return Denied("order_error", str(e))

    def order_done(self, o: Order) -> None:
        """An order reached a terminal state: clean up in-flight entries and closing flags."""
        f = self.inflight.get(o.parent_id)
        if f is not None:
            f.children.discard(o.client_order_id)
            if not f.children:
                del self.inflight[o.parent_id]
        if o.intent is Intent.EXIT:
            p = self.book.get(o.position_id)
            if (
                p is not None
                and p.is_open
                and self.orders is not None
                and not any(
                    x.position_id == o.position_id and x.intent is Intent.EXIT and not x.terminal
                    for x in self.orders.orders.values()
                )
            ):
                p.closing = False
                if p.exit_attempts >= self.limits.max_exit_attempts:
                    self.risk.halt(
                        f"position {p.symbol} ({p.position_id[:8]}) could not be "
                        f"closed after {p.exit_attempts} attempts",
                        "fail_closed",
                    )

    # --- fills ------------------------------------------------------------------------------------
    def apply_fill(self, o: Order, f: BrokerFill) -> None:
        """A broker fill: order state, charges, position, daily row — stored in one
        transaction, then published."""
        inst = self.master.get(o.token)
        day = ist_date(f.ts_ns)
        seg = segment_of(inst, o.product) if inst is not None else "EQ_INTRADAY"
        ch = self.charges.compute(
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
        p = self.book.get(o.position_id)
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
                paper=self.paper,
                metadata={"source": src, "bias": bias},
            )
            self.book.add(p)
            opened = True
        gross = 0
        if p is not None:
            gross = p.apply_fill(o.intent, f.quantity, f.price, charges, f.ts_ns)
            if o.intent is Intent.ENTRY:
                if o.stop_loss or o.target:
                    p.stop_loss, p.target = o.stop_loss, o.target
                else:
                    p.stop_loss, p.target = exits.levels(
                        self.limits,
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
        self.perf.on_fill(day, gross, charges)
        trade = None
        closed = p is not None and not p.is_open
        if closed and p is not None:
            self.perf.on_close(day, p.realized)
            trade = p.closed_trade(o.client_order_id)
            self.book.closed(p)
        self.perf.mark(day, self.book.unrealized())
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
            self.store.record_fill(
                o.to_record(), ev, p.to_record() if p else None, trade, self.perf.row(day)
            )
        except Exception as e:
            self.risk.halt(f"a fill could not be stored ({type(e).__name__}: {e})", "fail_closed")
            raise
        self.fills += 1
        self.bus.publish("order:filled", ev)
        if p is not None:
            rec = p.to_record()
            if opened:
                self.bus.publish("position:opened", PositionOpened(f.ts_ns, rec))
            elif closed:
                log.info(
                    "position closed %s %s: P&L %s (%s)",
                    p.strategy,
                    p.symbol,
                    format_inr(p.realized),
                    p.exit_reason or "exit",
                )
                self.bus.publish(
                    "position:closed", PositionClosed(f.ts_ns, rec, p.exit_reason or "exit")
                )
            else:
                self.bus.publish("position:updated", PositionUpdated(f.ts_ns, rec))
        for hook in self.on_fill_hooks:
            hook(ev)
        self.risk.check_breaker(self.day_pnl)

    # --- manual orders ----------------------------------------------------------------------------
    def handle_manual(
        self,
        request_id: str,
        symbol: str,
        side: Side,
        quantity: int,
        limit_price: int = 0,
        exchange: str | None = None,
    ) -> ManualResult:
        """A manual order (``mandi order``) through the same risk rules as signals."""
        now = self.clock.now_ns()
        if not self.cfg.enabled:
            reason = "trading is disabled (trading.enabled = false)"
            self.risk.deny(
                RiskDenied(
                    now, "trading_disabled", reason, "manual", "", "", symbol, side.value, quantity
                )
            )
            return ManualResult("DENIED", reason, "trading_disabled")
        try:
            inst = self.master.by_symbol(symbol, exchange)
        except InstrumentError as e:
            self.risk.deny(
                RiskDenied(
                    now, "unknown_symbol", str(e), "manual", "", "", symbol, side.value, quantity
                )
            )
            return ManualResult("DENIED", str(e), "unknown_symbol")
        parent = stable_id("manual", request_id)
        order_type = OrderType.LIMIT if limit_price > 0 else OrderType.MARKET
        longs = [p for p in self.book.open_for_token(inst.token) if p.direction > 0]
        if side is Side.SELL and longs:
            held = sum(p.quantity for p in longs)
            if quantity > held:
                d = Denied(
                    "exceeds_position",
                    f"sell {quantity} exceeds the open long position of {held} in {inst.symbol}",
                )
                self.risk.deny(
                    RiskDenied(
                        now, d.rule, d.reason, "manual", "", "", inst.symbol, side.value, quantity
                    )
                )
                return ManualResult("DENIED", d.reason, d.rule)
            ids: list[str] = []
            left = quantity
            for i, p in enumerate(longs):
                take = min(left, p.quantity)
                out = self.exit_position(
                    p, exits.MANUAL, take, parent_hint=stable_id(parent, "exit", i)
                )
                if isinstance(out, Denied):
                    return ManualResult("DENIED", out.reason, out.rule, tuple(ids))
                ids += [o.client_order_id for o in out]
                left -= take
                if left <= 0:
                    break
            return ManualResult("ACCEPTED", "closing the open position", "", tuple(ids))
        if side is Side.SELL and not self.cfg.allow_short:
            d = Denied(
                "nothing_to_sell",
                f"no open long position in {inst.symbol} and short "
                "selling is disabled (trading.allow_short)",
            )
            self.risk.deny(
                RiskDenied(
                    now, d.rule, d.reason, "manual", "", "", inst.symbol, side.value, quantity
                )
            )
            return ManualResult("DENIED", d.reason, d.rule)
        slices = slice_quantity(quantity, inst.freeze_qty, inst.lot_size)
        decision = self.risk.check(
            self._context(inst, side, quantity, Intent.ENTRY, order_type, limit_price, len(slices))
        )
        if isinstance(decision, Denied):
            self.risk.deny(
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
        ref = self.market.ltp(inst.token)
        if self.orders is None:
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
            product=self.product,
            intent=Intent.ENTRY,
            strategy="manual",
            position_id=stable_id(parent, "position"),
            tag=tag_for(inst.token, side.sign),
        )
        plan = Plan(inst, side, side.sign, quantity, ref, order_type, limit_price, 0, 0, {})
        try:
            children = self._submit_entry(cmd, slices, plan, "")
        except OrderError as e:
            return ManualResult("DENIED", str(e), "order_queue")
        return ManualResult("ACCEPTED", "", "", tuple(o.client_order_id for o in children))

    # --- monitoring -------------------------------------------------------------------------------
    def check_exits(self, positions: list[Position] | tuple[Position, ...]) -> int:
        """Apply the exit rules to ``positions``; returns how many exits were started."""
        now = self.clock.now_ns()
        n = 0
        for p in positions:
            if not p.is_open or p.closing:
                continue
            reason = exits.exit_reason(
                self.limits,
                exits.ExitCheck(
                    p.direction,
                    p.current_price,
                    p.stop_loss,
                    p.target,
                    p.high_water,
                    p.product == Product.MIS.value,
                    p.expiry,
                    p.exchange,
                ),
                now,
            )
            if reason is None and self.risk.halted and self.limits.flatten_on_halt:
                reason = exits.HALT
            if reason is not None:
                out = self.exit_position(p, reason)
                if not isinstance(out, Denied) and out:
                    n += 1
        return n
