"""The risk engine: runs the pre-trade rules, records every denial, and owns the HALTED latch
(daily-loss circuit breaker and kill switch).

* Every denial becomes a :class:`~mandi.model.trading.RiskDenied`, persisted (as a
  ``system_events`` row) *and* published on ``risk:denied``.
* The latch is persisted (:meth:`RiskStore.save_latch`, ``synchronous=FULL``) as it is set and
  survives restarts; only a manual reset (``mandi resume``) clears it.
* The circuit breaker trips when the day's P&L (realized net of charges + unrealized) falls to
  ``-max_daily_loss``. It **fails closed**: if computing the P&L raises, trading halts.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from mandi.bus.memory import MessageBus
from mandi.core.clock import Clock
from mandi.core.money import format_inr
from mandi.model.events import SystemEvent
from mandi.model.trading import Latch, RiskDenied, TradingHalted, TradingResumed
from mandi.risk.config import RiskLimits
from mandi.risk.rules import ALLOWED, Decision, Denied, OrderContext, evaluate

log = logging.getLogger(__name__)


class RiskStore(Protocol):
    """What the risk engine keeps durable: the latch, system events and denials (the trading
    store, :class:`~mandi.execution.ports.TradingStore`, is one)."""

    def load_latch(self) -> Latch: ...

    def save_latch(self, latch: Latch) -> Latch:
        """Store ``latch`` unless a newer version is stored; return what is stored now."""
        ...

    def record_event(self, event: SystemEvent) -> None: ...

    def record_denial(self, denial: RiskDenied) -> None: ...


class RiskEngine:
    def __init__(self, limits: RiskLimits, store: RiskStore, bus: MessageBus, clock: Clock) -> None:
        self.limits = limits
        self.store = store
        self.bus = bus
        self.clock = clock
        self.latch: Latch = store.load_latch()
        self.denials: Counter[str] = Counter()
        self.last_denial: RiskDenied | None = None
        # live inputs that block new entries (exits stay possible): source -> (rule, reason),
        # e.g. "feed" -> ("feed_health", "no data for 12 s"); set by the shell, never latched
        self.entry_blocks: dict[str, tuple[str, str]] = {}

    def block_entries(self, source: str, rule: str, reason: str) -> bool:
        """Block new entries while ``source`` is unhealthy (``reason`` "" clears it); True when
        the state changed."""
        held = self.entry_blocks.get(source)
        if not reason:
            return self.entry_blocks.pop(source, None) is not None
        self.entry_blocks[source] = (rule, reason)
        return held is None or held != (rule, reason)

    def entry_block(self) -> tuple[str, str]:
        """The first active entry block as (rule, reason), or ("", "")."""
        for v in self.entry_blocks.values():
            return v
        return ("", "")

    @property
    def halted(self) -> bool:
        return self.latch.halted

    def check(self, ctx: OrderContext) -> Decision:
        """The rules' verdict on one order (denials are *not* recorded here; see :meth:`deny`)."""
        return evaluate(ctx)

    def deny(self, ev: RiskDenied) -> RiskDenied:
        """Record (as a ``system_events`` row) and publish (``risk:denied``) a denial."""
        self.denials[ev.rule] += 1
        self.last_denial = ev
        log.info(
            "risk denied %s %s %s: %s (%s)",
            ev.strategy or "-",
            ev.side,
            ev.symbol,
            ev.reason,
            ev.rule,
        )
        self.store.record_denial(ev)
        self.bus.publish("risk:denied", ev)
        return ev

    # --- the latch --------------------------------------------------------------------------------
    def halt(self, reason: str, source: str) -> bool:
        """Set the HALTED latch. False if it was already set. It takes effect in this process at
        once and is persisted (a failure to persist is logged; the process stays halted)."""
        if self.latch.halted:
            return False
        now = self.clock.now_ns()
        want = Latch(True, reason, source, now, self.latch.version + 1)
        self.latch = want
        log.error("trading HALTED (%s): %s", source, reason)
        try:
            stored = self.store.save_latch(want)
            if not stored.halted:  # another process wrote a newer value meanwhile: halt on top
                stored = self.store.save_latch(Latch(True, reason, source, now, stored.version + 1))
            if stored.halted:
                self.latch = stored
            self.store.record_event(SystemEvent(now, "trading_halted", reason, "ERROR", source))
        except Exception:
            log.exception("the HALTED latch could not be stored; halted in this process only")
        self.bus.publish("risk:halted", TradingHalted(now, reason, source))
        return True

    def resume(self, reason: str, source: str) -> bool:
        if not self.latch.halted:
            return False
        now = self.clock.now_ns()
        self.latch = self.store.save_latch(
            Latch(False, reason, source, now, self.latch.version + 1)
        )
        self.store.record_event(SystemEvent(now, "trading_resumed", reason, "WARNING", source))
        self.bus.publish("risk:resumed", TradingResumed(now, reason, source))
        return True

    def sync_latch(self, stored: Latch) -> bool:
        """Adopt a newer latch written by another process (``mandi halt`` / ``resume``)."""
        if stored.version <= self.latch.version:
            return False
        was = self.latch.halted
        self.latch = stored
        now = self.clock.now_ns()
        if stored.halted and not was:
            log.error("trading HALTED by %s: %s", stored.source, stored.reason)
            self.bus.publish("risk:halted", TradingHalted(now, stored.reason, stored.source))
        elif was and not stored.halted:
            log.warning("trading resumed by %s: %s", stored.source, stored.reason)
            self.bus.publish("risk:resumed", TradingResumed(now, stored.reason, stored.source))
        return True

    def check_breaker(self, day_pnl: Callable[[], int]) -> Decision:
        """Trip the daily-loss circuit breaker if the day's P&L breaches the limit; fail closed
        if it cannot be computed."""
        try:
            pnl = day_pnl()
        except Exception as e:
            self.halt(
                f"P&L could not be computed ({type(e).__name__}: {e}); failing closed",
                "fail_closed",
            )
            return Denied("halted", "P&L could not be computed")
        if pnl <= -self.limits.max_daily_loss:
            self.halt(
                f"daily loss {format_inr(-pnl)} reached the limit "
                f"{format_inr(self.limits.max_daily_loss)}",
                "circuit_breaker",
            )
            return Denied("halted", "daily loss limit")
        return ALLOWED
