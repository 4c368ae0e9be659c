"""The signal manager: persisted before published, duplicates dropped; the seed's checks."""

from __future__ import annotations

from mandi.bus.memory import MessageBus
from mandi.core.clock import TestClock
from mandi.execution.memstore import MemoryTradingStore
from mandi.signals.manager import SignalManager, validate_signal

from ..execution.kit import RELIANCE, Kit

H = 3_600_000_000_000


def test_a_signal_is_stored_before_anyone_hears_of_it():
    store = MemoryTradingStore()
    clock = TestClock(1)
    bus = MessageBus(clock)
    heard: list[str | None] = []
    bus.subscribe("signal:>", lambda t, s: heard.append(store.signal_status(s.signal_id)))
    sm = SignalManager(store, bus, clock)
    k = Kit()
    k.tick(RELIANCE, 1400)
    sig = k.signal("s", RELIANCE, "BUY")
    assert sm.emit(sig) and heard == ["NEW"]  # stored when published
    assert not sm.emit(sig) and sm.duplicates == 1
    store.set_signal_status(sig.signal_id, "ORDERED", "", 2)
    sm2 = SignalManager(store, bus, clock)  # another process: the stored status decides
    assert not sm2.emit(sig)
    other = k.signal("s", RELIANCE, "BUY", bucket=42)
    assert sm2.emit(other) and len(heard) == 2


def test_a_signal_stored_but_never_acted_on_is_published_again_after_a_restart():
    store = MemoryTradingStore()
    clock = TestClock(1)
    k = Kit()
    k.tick(RELIANCE, 1400)
    sig = k.signal("s", RELIANCE, "BUY")
    store.insert_signal(sig)  # the process died right after storing it
    bus = MessageBus(clock)
    heard: list[str] = []
    bus.subscribe("signal:>", lambda t, s: heard.append(s.signal_id))
    assert SignalManager(store, bus, clock).emit(sig) and heard == [sig.signal_id]


def test_the_seed_checks():
    k = Kit()
    k.tick(RELIANCE, 1400)
    sig = k.signal("s", RELIANCE, "BUY")
    now = sig.ts_event
    ok = dict(max_age_ns=24 * H, enabled=True, symbol_known=True, open_positions=0, max_positions=3)
    assert validate_signal(sig, now, **ok) is None
    assert validate_signal(sig, now, **{**ok, "symbol_known": False}).rule == "unknown_symbol"
    assert validate_signal(sig, now + 24 * H, **ok) is None
    assert validate_signal(sig, now + 24 * H + 1, **ok).rule == "signal_age"
    assert validate_signal(sig, now - 61 * 10**9, **ok).rule == "signal_age"  # from the future
    assert validate_signal(sig, now, **{**ok, "enabled": False}).rule == "trading_disabled"
    assert (
        validate_signal(sig, now, **{**ok, "open_positions": 3}).rule == "max_concurrent_positions"
    )
    assert validate_signal(sig, now, **{**ok, "open_positions": 3}, opens_position=False) is None
