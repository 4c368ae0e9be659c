"""The signal manager: every signal is persisted before it is published, and acted on at most
once.

* A signal's id is ``stable_id(strategy, token, timeframe, bucket)`` (see
  :class:`~mandi.model.trading.SignalGenerated`), so the same strategy on the same candle always
  produces the same id — after a restart, a replay, or a redelivery.
* :meth:`SignalManager.emit` inserts it into the ``trading_signals`` table (status ``NEW``)
  and only then publishes it on ``signal:{strategy}``, all in one unit of work of the store
  (:meth:`SignalStore.unit`): the signal, its status and the orders it leads to are one durable
  commit, made before an order goes to the broker (the order router's ``sync``) and at the
  latest when ``emit`` returns. A signal already stored with a final status
  (``ORDERED``, ``LOGGED``, ``DENIED``, ``IGNORED``) is a duplicate: counted, not published. One
  stored as ``NEW`` (the process died before acting on it) is published again — it can still lead
  to at most one order, because the order's client id derives from the signal id.
* :func:`validate_signal` is the seed's five pre-execution checks: already processed, symbol
  valid, age (default 24 h), trading enabled, max concurrent positions.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Protocol

from mandi.bus.memory import MessageBus
from mandi.core.clock import Clock
from mandi.model.trading import SignalGenerated
from mandi.risk.rules import Denied

log = logging.getLogger(__name__)

NEW, ORDERED, LOGGED, DENIED, IGNORED = "NEW", "ORDERED", "LOGGED", "DENIED", "IGNORED"
FINAL = frozenset({ORDERED, LOGGED, DENIED, IGNORED})


def signal_topic(strategy: str) -> str:
    return f"signal:{strategy.replace(':', '_') or 'unnamed'}"


class SignalStore(Protocol):
    """Where signals and their status are kept (the trading store,
    :class:`~mandi.execution.ports.TradingStore`, is one)."""

    def insert_signal(self, signal: SignalGenerated) -> str | None:
        """Store ``signal`` as ``NEW``: None when it is new, else the status already stored."""
        ...

    def signal_status(self, signal_id: str) -> str | None: ...

    def set_signal_status(self, signal_id: str, status: str, reason: str, ts_ns: int) -> None: ...

    def unit(self) -> AbstractContextManager[None]:
        """The writes made inside are one transaction, committed by :meth:`sync` or at the end
        (a store without transactions: nothing to do)."""
        ...

    def sync(self) -> None:
        """Make what was written inside the open unit durable now (before acting outside the
        process on it)."""
        ...


class SignalManager:
    def __init__(self, store: SignalStore, bus: MessageBus, clock: Clock) -> None:
        self.store, self.bus, self.clock = store, bus, clock
        self.emitted = 0
        self.duplicates = 0
        self.suppressed = 0
        self.last: SignalGenerated | None = None
        self._published: set[str] = set()

    def emit(self, signal: SignalGenerated) -> bool:
        """Persist then publish ``signal``; False for a duplicate. The signal and what its
        handlers write (its status, its orders) are one unit of work of the store."""
        with self.store.unit():
            return self._emit(signal)

    def _emit(self, signal: SignalGenerated) -> bool:
        status = self.store.insert_signal(signal)
        if status in FINAL or (status == NEW and signal.signal_id in self._published):
            self.duplicates += 1
            return False
        self._published.add(signal.signal_id)
        self.emitted += 1
        self.last = signal
        log.info(
            "signal %s %s %s @ %.2f (%s, confidence %.2f)",
            signal.strategy,
            signal.action.value,
            signal.symbol,
            signal.price / 100,
            signal.signal_id[:8],
            signal.confidence,
        )
        self.bus.publish(signal_topic(signal.strategy), signal)
        return True


def validate_signal(
    signal: SignalGenerated,
    now_ns: int,
    *,
    max_age_ns: int,
    enabled: bool,
    symbol_known: bool,
    open_positions: int,
    max_positions: int,
    opens_position: bool = True,
) -> Denied | None:
    """The seed's pre-execution checks (idempotency is the caller's: the stored status)."""
    if not symbol_known:
        return Denied(
            "unknown_symbol", f"{signal.symbol} (token {signal.token}) is not a known instrument"
        )
    age = now_ns - signal.ts_event
    if age > max_age_ns:
        return Denied(
            "signal_age", f"signal is {age / 3.6e12:.1f} h old (limit {max_age_ns / 3.6e12:g} h)"
        )
    if age < -60_000_000_000:
        return Denied("signal_age", f"signal is dated {-age / 1e9:.0f} s in the future")
    if not enabled:
        return Denied("trading_disabled", "trading is disabled (trading.enabled = false)")
    if opens_position and open_positions >= max_positions:
        return Denied(
            "max_concurrent_positions",
            f"{open_positions} positions are open (limit {max_positions})",
        )
    return None
