"""The trading kernel: strategies → signals → risk → execution → portfolio, assembled on one bus.

This is the one place the trading stages are put together (as NautilusTrader's
``system/kernel``): none of them imports another stage above it, and none imports this module.
The same object runs behind ``mandi run`` (paper, live or logging-only), the benchmark and the
backtester; the shell hands it a clock, a bus, the instrument master, a
:class:`~mandi.execution.ports.TradingStore` and (except in logging-only mode) a
:class:`~mandi.execution.ports.Broker`.

A signal's route: ``StrategyEngine`` (strategy) → ``SignalManager.emit`` (signals: stored, then
published on ``signal:{strategy}``) → ``ExecutionEngine.handle_signal`` (execution's entry stage:
checks, plan, ``RiskEngine.check``, submit) → ``OrderManager`` (stored, paced, sent) → broker →
``FillStage.apply`` (execution) → ``PositionBook`` / ``PerformanceTracker`` (portfolio) →
``order:filled`` / ``position:*`` on the bus, and the strategies' ``on_fill``.

Start-up order (:meth:`TradingKernel.start`) — nothing acts on a new signal before it is done:

1. restore open positions, open orders, the HALTED latch, today's performance row and the
   order-rate history from the store;
2. reconcile every open order with the broker (fills applied, statuses adopted, orders the broker
   never received re-sent only if still fresh);
3. warm the strategies up on stored candles (signals suppressed);
4. subscribe: ``tick:>``, ``chain:>``, the strategies' candle topics, ``signal:>``.

Time-driven work (:meth:`TradingKernel.handle_time`, called on every tick and by the shell's
timer): paced order sends, the position monitor every ``monitor_interval_s`` (exit rules,
position MTM events, the circuit breaker), reconciliation of UNKNOWN orders, entry timeouts, and
chain dispatch to ``on_chain`` strategies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from mandi.bus.memory import MessageBus
from mandi.core.calendar import ist_date
from mandi.core.clock import NS_PER_SECOND, Clock
from mandi.core.money import format_inr
from mandi.execution.charges import ChargesModel
from mandi.execution.config import TradingConfig
from mandi.execution.context import InFlight, parse_tag
from mandi.execution.engine import ExecutionEngine
from mandi.execution.orders import OrderManager
from mandi.execution.ports import Broker, TradingStore
from mandi.model import _columns as columns
from mandi.model.batches import TickBatch
from mandi.model.instruments import AnyInstrument, Equity, InstrumentMaster, Option
from mandi.model.market import Candle, ChainSnapshot, Tick
from mandi.model.marketstate import LatestTicks, MarketState
from mandi.model.orders import Intent, Order, OrderStatus
from mandi.model.trading import PositionUpdated
from mandi.portfolio.performance import PerformanceTracker
from mandi.portfolio.positions import Position, PositionBook
from mandi.risk.config import RiskConfig, RiskLimits
from mandi.risk.engine import RiskEngine
from mandi.risk.ratelimit import OrderRateLimiter
from mandi.signals.manager import SignalManager
from mandi.strategy.base import Strategy, StrategyContext
from mandi.strategy.engine import StrategyEngine

log = logging.getLogger(__name__)
DAY_NS = 86_400 * NS_PER_SECOND


class TradingKernel:
    def __init__(
        self,
        *,
        bus: MessageBus,
        clock: Clock,
        master: InstrumentMaster,
        mode: str,
        store: TradingStore,
        broker: Broker | None,
        trading: TradingConfig | None = None,
        risk: RiskConfig | None = None,
        charges: ChargesModel | None = None,
        disable_after_errors: int = 0,
    ) -> None:
        self.bus, self.clock, self.master, self.mode = bus, clock, master, mode
        self.cfg = trading or TradingConfig()
        self.limits = RiskLimits.from_config(risk or RiskConfig())
        self.store = store
        self.broker = broker if mode != "logging" else None
        if mode == "logging" and broker is not None:
            raise ValueError("logging-only mode takes no broker")
        self.market = MarketState(master)
        self.book = PositionBook()
        self.perf = PerformanceTracker(store.load_daily)
        self.risk = RiskEngine(self.limits, store, bus, clock)
        self.limiter = OrderRateLimiter(
            self.limits.orders_per_second, self.limits.orders_per_minute, self.limits.orders_per_day
        )
        # a rates file (trading.charges.rates_file) is read by the shell, which passes ``charges``
        self.charges = charges or ChargesModel(self.cfg.charges)
        self.orders: OrderManager | None = None
        if self.broker is not None:
            self.orders = OrderManager(
                store=store,
                broker=self.broker,
                clock=clock,
                bus=bus,
                limiter=self.limiter,
                master=master,
                fill_handler=lambda o, f: self.execution.apply_fill(o, f),
                on_done=lambda o: self.execution.order_done(o),
                reference_price=self._reference_price,
                resend_max_age_ns=int(self.cfg.resend_max_age_s * 1e9),
                max_queued=self.limits.max_queued_orders,
            )
        self.execution = ExecutionEngine(
            mode=mode,
            cfg=self.cfg,
            limits=self.limits,
            store=store,
            bus=bus,
            clock=clock,
            master=master,
            market=self.market,
            book=self.book,
            perf=self.perf,
            risk=self.risk,
            orders=self.orders,
            charges=self.charges,
        )
        self.signals = SignalManager(store, bus, clock)
        self.ctx = StrategyContext(clock, master, self.market, self.book)
        self.strategies = StrategyEngine(bus, self.ctx, self.signals.emit, disable_after_errors)
        self.strategies.place_basket = self.execution.place_basket
        self.execution.fills.on_fill_hooks.append(self.strategies.handle_fill)
        self._monitor_ns = int(self.cfg.monitor_interval_s * NS_PER_SECOND)
        self._reconcile_ns = int(self.cfg.reconcile_interval_s * NS_PER_SECOND)
        self._entry_timeout_ns = int(self.cfg.entry_timeout_s * NS_PER_SECOND)
        self._next_monitor = self._next_reconcile = self._next_second = self._next_persist = 0
        self._next_due = 0
        self._interest: set[int] = set()  # tokens whose ticks need handle_tick (handle_ticks)
        self._flags = np.zeros(0, dtype=np.uint8)  # ... as flags over the market's token slots
        self._subs: list[Any] = []
        self.started = False
        self.restored = {"positions": 0, "orders": 0, "halted": False}

    def _reference_price(self, o: Order) -> int:
        t = self.market.ticks.get(o.token)
        if t is None:
            return 0
        touch = t.ask if o.side.sign > 0 else t.bid
        return touch if touch > 0 else t.price

    def add_strategy(self, strategy: Strategy, symbols: Iterable[str] = ()) -> list[str]:
        """Attach ``strategy`` to the instruments named by ``symbols`` (or its own); returns the
        symbols that could not be found (reported, skipped)."""
        insts: list[AnyInstrument] = list(strategy.instruments)
        missing = []
        for sym in symbols:
            try:
                insts.append(self.master.by_symbol(sym))
            except Exception:
                missing.append(sym)
        for sym in missing:
            log.error("strategy %s: unknown symbol %r (skipped)", strategy.id, sym)
        self.strategies.add(strategy, insts)
        return missing

    # --- start-up ---------------------------------------------------------------------------------
    def restore(self) -> None:
        """Positions, orders, the latch and the order-rate history from the store."""
        self.risk.latch = self.store.load_latch()
        for rec in self.store.open_positions():
            inst = self.master.get(rec.token) or _stand_in(rec)
            self.book.add(Position.from_record(rec, inst))
        orders = [Order.from_record(r) for r in self.store.open_orders()]
        if self.orders is not None:
            self.orders.restore(orders)
        for o in orders:
            if o.intent is Intent.ENTRY:
                src, bias = parse_tag(o.tag)
                f = self.execution.inflight.get(o.parent_id)
                if f is None:
                    f = self.execution.inflight[o.parent_id] = InFlight(
                        o.parent_id, o.strategy, src, bias, o.token, 0
                    )
                f.children.add(o.client_order_id)
                f.value += o.remaining * max(o.limit_price, self.market.ltp(o.token), 0)
            else:
                p = self.book.get(o.position_id)
                if p is not None and (o.oco_group or o.order_type.is_stop):
                    # a resting protective stop/target: the exit stage knows it again
                    ids = self.execution.exits.protected.get(p.position_id, ())
                    self.execution.exits.protected[p.position_id] = (*ids, o.client_order_id)
                elif p is not None:
                    p.closing = True
        now = self.clock.now_ns()
        for segment, ts in self.store.sends_since(now - DAY_NS):
            self.limiter.record(segment, ts)
        self.restored = {
            "positions": self.book.open_count,
            "orders": len(orders),
            "halted": self.risk.halted,
        }
        if orders or self.book.open_count or self.risk.halted:
            log.info(
                "restored %d open positions, %d open orders; latch %s",
                self.book.open_count,
                len(orders),
                f"HALTED ({self.risk.latch.reason})" if self.risk.halted else "clear",
            )

    def start(self, warm_candles: Iterable[Candle] = (), *, tick_objects: bool = True) -> None:
        """Restore, reconcile, warm up, subscribe (see the module docstring). ``tick_objects``
        False: the shell hands over tick batches itself (:meth:`handle_ticks`) instead of the
        kernel subscribing to ``tick:>``, and indicator values come as ``batch:ind``."""
        self.restore()
        if self.orders is not None:
            self.orders.reconcile_all()
        n = self.strategies.warm_up(warm_candles)
        if n:
            log.info("strategies warmed up on %d stored candles", n)
        if tick_objects:
            self._subs.append(self.bus.subscribe("tick:>", self._on_tick, name="trading.ticks"))
        if self.market.chain_source is None:  # else it asks for the newest chain when it needs it
            self._subs.append(self.bus.subscribe("chain:>", self._on_chain, name="trading.chains"))
        self._subs.append(
            self.bus.subscribe("signal:>", self.execution.handle_signal, name="execution.signals")
        )
        self.strategies.start(batches=not tick_objects)
        self.started = True

    def stop(self) -> None:
        if not self.started:
            return
        self.strategies.stop()
        for s in self._subs:
            self.bus.unsubscribe(s)
        self._subs.clear()
        self.persist_marks()
        self.started = False

    # --- market data ------------------------------------------------------------------------------
    def _on_tick(self, topic: str, t: Tick) -> None:
        self.handle_tick(t)

    def _on_chain(self, topic: str, snap: ChainSnapshot) -> None:
        if isinstance(snap, ChainSnapshot):
            self.market.update_chain(snap)

    def handle_tick(self, t: Tick) -> None:
        self.market.update(t)
        if self.broker is not None:
            self.broker.on_market_data(t)
        om = self.orders
        if om is not None and om.stops.watches(t.token):  # stops the broker cannot hold
            om.on_price(t.token, t.price, t.ts_event)
        if self.book.has_open(t.token):
            # a replayed tick older than what a position has seen (a restarted simulation
            # re-emits its last second) must not move or close it
            ps = tuple(p for p in self.book.open_for_token(t.token) if t.ts_event >= p.updated_ns)
            for p in ps:
                p.update_price(t.price, t.ts_event)
            if ps:
                self.execution.check_exits(ps)
        self.strategies.handle_tick(t)
        now = self.clock.now_ns()
        if now >= self._next_due:
            self.handle_time(now)

    def handle_ticks(self, batch: TickBatch, observe: Callable[[int], None] | None = None) -> None:
        """The ticks of ``batch``, in order: exactly :meth:`handle_tick` for each (a hypothesis
        test holds the two to the same orders, fills, positions, events and clock readings),
        with per-tick work only where it can matter.

        A tick of an instrument with working orders at the broker, an open position or a
        strategy's ``on_tick`` goes through :meth:`handle_tick` as a :class:`Tick`; every other
        tick only moves the last prices and volumes, so a run of them is one array scatter into
        the market state and the broker. Time work (:meth:`handle_time`) runs after the tick at
        which it falls due, as it would tick by tick.

        ``observe(ts)`` advances a feed clock to the latest tick (``now`` = the later of what it
        showed and the latest tick's time), as ``mandi run`` and the backtester drive theirs;
        without it the clock is read as it is.
        """
        n = len(batch)
        if n == 0:
            return
        ticks = self.market.ticks
        broker = self.broker
        if not isinstance(ticks, LatestTicks) or not (
            broker is None
            or (hasattr(broker, "on_market_batch") and hasattr(broker, "active_tokens"))
        ):  # a substituted market state, a broker without batches: tick by tick
            for i in range(n):
                t = batch.tick(i)
                if observe is not None:
                    observe(t.ts_event)
                self.handle_tick(t)
            return
        batch_broker = broker.on_market_batch if broker is not None else None
        slots = ticks.slots(batch.token)
        reach = np.maximum.accumulate(batch.ts_event)  # the latest tick time, tick by tick
        now0 = self.clock.now_ns()
        flags = self._flags
        if len(flags) < len(ticks.index.ids) or self._interest_changed():
            flags = self._refresh_interest(ticks)
        i = 0
        while i < n:
            j = columns.first_flagged(flags, slots, i, n) if self._interest else n
            due = self._next_due
            if now0 >= due:
                k = i  # time work falls due at the first tick
            elif observe is not None:
                k = columns.first_at_or_after(reach, i, j, due)
            else:
                k = j
            end = k + 1 if k < j else j  # the plain ticks handled in bulk: [i, end)
            ticks.put_batch(batch, slots, i, end)
            if batch_broker is not None:
                batch_broker(batch, i, end)
            if k < j:  # a plain tick at which time work falls due
                if observe is not None:
                    observe(int(reach[k]))
                now0 = self.clock.now_ns()
                self.handle_time(now0)
            elif j < n:  # a tick that needs the whole treatment
                if observe is not None:
                    observe(int(reach[j]))
                self.handle_tick(batch.tick(j))
                now0 = self.clock.now_ns()
                end = j + 1
            i = end
            if self._interest_changed():
                flags = self._refresh_interest(ticks)
        if observe is not None:
            observe(int(reach[-1]))

    def _interesting(self) -> set[int]:
        out = self.book.open_tokens() | self.strategies.tick_tokens()
        if self.broker is not None:
            out |= self.broker.active_tokens()
        return out

    def _interest_changed(self) -> bool:
        return self._interesting() != self._interest

    def _refresh_interest(self, ticks: LatestTicks) -> np.ndarray:
        """Flags over the market's token slots: 1 for a token in :meth:`_interesting`."""
        want = self._interesting()
        size = len(ticks.index.ids)
        flags = self._flags
        if len(flags) < size:
            flags = self._flags = np.zeros(size, dtype=np.uint8)
        else:
            flags[:] = 0
        if want:
            flags[ticks.slots(np.fromiter(want, dtype=np.int64, count=len(want)))] = 1
            if len(flags) < len(ticks.index.ids):  # new tokens grew the index
                return self._refresh_interest(ticks)
        self._interest = want
        return flags

    # --- time -------------------------------------------------------------------------------------
    def handle_time(self, now: int | None = None) -> None:
        now = self.clock.now_ns() if now is None else now
        om = self.orders
        if om is not None and om.queue:
            om.pump()
        if now >= self._next_second:
            self._next_second = now + NS_PER_SECOND
            self.strategies.handle_time(now)
        if now >= self._next_monitor:
            self._next_monitor = now + self._monitor_ns
            self.monitor(now)
        if om is not None and now >= self._next_reconcile:
            self._next_reconcile = now + self._reconcile_ns
            om.reconcile_all((OrderStatus.UNKNOWN,))
            for o in list(om.orders.values()):
                if (
                    o.intent is Intent.ENTRY
                    and o.status.working
                    and o.status is not OrderStatus.UNKNOWN
                    and now - o.created_ns > self._entry_timeout_ns
                ):
                    om.cancel(
                        o.client_order_id, f"entry not filled within {self.cfg.entry_timeout_s:g} s"
                    )
        if now >= self._next_persist:
            self._next_persist = now + 60 * NS_PER_SECOND
            self.persist_marks()
        due = min(self._next_second, self._next_monitor, self._next_persist)
        if om is not None:
            due = min(due, self._next_reconcile)
            nxt = om.next_send_ns()
            if nxt is not None:
                due = min(due, nxt)
        self._next_due = due

    def monitor(self, now: int) -> None:
        """Exit rules on every open position, MTM events, the circuit breaker."""
        open_ps = self.book.open_positions()
        if open_ps:
            self.execution.check_exits(open_ps)
            if self.bus.has_subscribers("position:updated"):
                for p in self.book.open_positions():
                    self.bus.publish("position:updated", PositionUpdated(now, p.to_record()))
        self.perf.mark(ist_date(now), self.book.unrealized())
        was = self.risk.halted
        self.risk.check_breaker(self.execution.day_pnl)
        if self.risk.halted and not was and self.orders is not None:
            self.orders.cancel_queued(Intent.ENTRY, "trading halted")

    def persist_marks(self) -> None:
        """Store the MTM of open positions and today's row (informational; fills are stored as
        they happen)."""
        marks = [p.to_record() for p in self.book.open_positions()]
        self.book.forget_closed()  # closed positions live on in the store
        now = self.clock.now_ns()
        self.store.save_marks(marks, self.perf.row(ist_date(now)) if now > 0 else None)

    # --- control ----------------------------------------------------------------------------------
    def halt(self, reason: str, source: str = "kill_switch") -> bool:
        done = self.risk.halt(reason, source)
        if done and self.orders is not None:
            self.orders.cancel_queued(Intent.ENTRY, "trading halted")
        return done

    def resume(self, reason: str, source: str = "cli") -> bool:
        return self.risk.resume(reason, source)

    # --- status -----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = self.clock.now_ns()
        day = ist_date(now) if now > 0 else None
        realized = self.perf.realized(day) if day else 0
        unrealized = self.book.unrealized()
        last = self.signals.last
        return {
            "mode": self.mode,
            "halted": self.risk.halted,
            "halt_reason": self.risk.latch.reason,
            "strategies": len(self.strategies.strategies),
            "signals": self.signals.emitted,
            "signal_duplicates": self.signals.duplicates + self.execution.entries.duplicates,
            "last_signal": (
                f"{last.strategy} {last.action.value} {last.symbol}" if last is not None else ""
            ),
            "logged_trades": self.execution.entries.logged,
            "orders_sent": self.orders.sent if self.orders is not None else 0,
            "orders_queued": len(self.orders.queue) if self.orders is not None else 0,
            "fills": self.execution.fills.count,
            "open_positions": [
                {
                    "strategy": p.strategy,
                    "symbol": p.symbol,
                    "quantity": p.quantity * p.direction,
                    "entry": p.entry_price,
                    "ltp": p.current_price,
                    "pnl": p.unrealized(),
                    "stop_loss": p.stop_loss,
                    "target": p.target,
                }
                for p in self.book.open_positions()
            ],
            "realized_pnl": realized,
            "unrealized_pnl": unrealized,
            "day_pnl": realized + unrealized,
            "charges": self.perf.row(day).charges if day else 0,
            "denials": dict(self.risk.denials),
            "last_denial": (
                f"{self.risk.last_denial.rule}: {self.risk.last_denial.reason}"
                if self.risk.last_denial
                else ""
            ),
            "strategy_errors": dict(self.strategies.errors),
        }

    def summary(self) -> str:
        s = self.status()
        return (
            f"{s['mode']}: {s['signals']} signals, {s['orders_sent']} orders, {s['fills']} "
            f"fills, {len(s['open_positions'])} open, day P&L {format_inr(s['day_pnl'])}"
            f"{' HALTED' if s['halted'] else ''}"
        )


def _stand_in(rec: Any) -> AnyInstrument:
    """An instrument for a stored position whose contract the master no longer lists."""
    if rec.option_type:
        return Option(
            rec.token,
            rec.exchange,
            rec.symbol,
            rec.underlying,
            "",
            rec.lot_size,
            int(rec.metadata.get("tick_size", 5)),
            0,
            underlying=rec.underlying,
            expiry=rec.expiry,
            strike=rec.strike,
            option_type=rec.option_type,
        )
    return Equity(
        rec.token,
        rec.exchange,
        rec.symbol,
        rec.symbol,
        "",
        rec.lot_size,
        int(rec.metadata.get("tick_size", 5)),
    )
