"""The live-market port and feed health (kernel: no I/O; times are given, never read).

:class:`LiveFeed` is what a broker adapter's market-data side offers (Kite and Angel
One): connect, subscribe tokens in a mode, ticks and order updates as
messages, health. The :class:`~mandi.execution.ports.Broker` port is the order side.

:class:`FeedHealth` turns what the adapter observes (connections up and down, messages, ticks)
into one verdict the risk manager uses to block new entries
(:meth:`mandi.risk.engine.RiskEngine.block_entries`): a connection down, a *silent* socket
(connected, no data for ``silent_after`` during market hours — a known failure of the official
Kite client), a *reconnect storm* (``storm_reconnects`` within ``storm_window``) or a dead broker
session. Stale prices per instrument are the risk rule ``stale_data``'s business.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from mandi.core.clock import NS_PER_SECOND
from mandi.model.market import Tick

FEED_RULE = "feed_health"
SESSION_RULE = "broker_session"


class LiveFeed(Protocol):
    """A broker's market-data stream (the shell implements it with asyncio)."""

    name: str

    async def connect(self) -> None:
        """Open the connections (and keep them open: reconnect, resubscribe)."""
        ...

    async def close(self) -> None: ...

    def subscribe(self, tokens: Iterable[int], mode: str = "full") -> None:
        """Follow ``tokens`` in ``mode`` (``ltp``, ``quote``, ``full``); idempotent."""
        ...

    def unsubscribe(self, tokens: Iterable[int]) -> None: ...

    def set_handlers(
        self,
        on_ticks: Callable[[list[Tick]], None],
        on_order: Callable[[dict[str, Any]], None],
    ) -> None:
        """Where ticks (batches) and order updates (the broker's JSON) go."""
        ...

    @property
    def health(self) -> FeedHealth: ...


class FeedHealth:
    """What is known about a live feed's health (see the module docstring)."""

    def __init__(
        self,
        silent_after_s: float = 10.0,
        storm_reconnects: int = 5,
        storm_window_s: float = 60.0,
    ) -> None:
        self.silent_after_ns = int(silent_after_s * NS_PER_SECOND)
        self.storm_reconnects = storm_reconnects
        self.storm_window_ns = int(storm_window_s * NS_PER_SECOND)
        self.expected = 0  # connections that should be up
        self.up = 0
        self.connected_ns = 0  # when the last connection came up
        self.last_message_ns = 0
        self.last_tick_ns = 0
        self.reconnects = 0
        self.silent_timeouts = 0
        self.malformed = 0
        self.ticks = 0
        self.dead = ""  # the broker session ended: no reconnecting
        self._recent: deque[int] = deque()

    # --- observations -----------------------------------------------------------------------------
    def on_connected(self, now: int) -> None:
        self.up += 1
        self.connected_ns = now
        self.last_message_ns = max(self.last_message_ns, now)

    def on_disconnected(self, now: int, silent: bool = False) -> None:
        self.up = max(self.up - 1, 0)
        self.reconnects += 1
        self.silent_timeouts += silent
        self._recent.append(now)

    def on_message(self, now: int, ticks: int = 0) -> None:
        self.last_message_ns = now
        if ticks:
            self.last_tick_ns = now
            self.ticks += ticks

    def on_session_dead(self, reason: str) -> None:
        self.dead = reason

    # --- the verdict ------------------------------------------------------------------------------
    def problem(self, now: int, market_open: bool) -> tuple[str, str]:
        """(rule, reason) that should block new entries, or ("", "") when healthy."""
        if self.dead:
            return SESSION_RULE, self.dead
        if self.up < self.expected:
            return FEED_RULE, f"{self.expected - self.up} of {self.expected} feed connections down"
        while self._recent and now - self._recent[0] > self.storm_window_ns:
            self._recent.popleft()
        if len(self._recent) >= self.storm_reconnects:
            return FEED_RULE, (
                f"reconnect storm: {len(self._recent)} reconnects in "
                f"{self.storm_window_ns / NS_PER_SECOND:g} s"
            )
        if market_open and self.expected:
            since = max(self.last_tick_ns, self.connected_ns)
            if since and now - since > self.silent_after_ns:
                return FEED_RULE, f"no market data for {(now - since) / NS_PER_SECOND:.0f} s"
        return "", ""

    def snapshot(self, now: int) -> dict[str, Any]:
        age = (now - self.last_tick_ns) / NS_PER_SECOND if self.last_tick_ns else None
        return {
            "connections_up": self.up,
            "connections_expected": self.expected,
            "reconnects": self.reconnects,
            "silent_timeouts": self.silent_timeouts,
            "malformed_frames": self.malformed,
            "ticks": self.ticks,
            "data_age_s": None if age is None else round(age, 3),
            "session": self.dead or "ok",
        }


def strike_window(options: Iterable[Any], spot: int, each_side: int) -> set[int]:
    """Tokens of the calls and puts within ``each_side`` strikes of the one nearest ``spot``
    (paise), per expiry: the ATM +- N subscription that follows the underlying."""
    by_expiry: dict[Any, dict[int, list[int]]] = {}
    for o in options:
        by_expiry.setdefault(o.expiry, {}).setdefault(o.strike, []).append(o.token)
    out: set[int] = set()
    for strikes in by_expiry.values():
        ks = sorted(strikes)
        if not ks:
            continue
        i = min(range(len(ks)), key=lambda j: (abs(ks[j] - spot), ks[j]))
        for k in ks[max(i - each_side, 0) : i + each_side + 1]:
            out.update(strikes[k])
    return out
