"""The synchronous in-process message bus.

Topics are colon-separated, the seed's Redis key style, so a topic in process and a key on Redis are
the same string: ``candle:60s:NSE:256265``, ``pub:candle:60s:NSE:256265`` (forming),
``ind:SMA_9:60s:NSE:256265``, ``tick:NSE:256265``, ``chain:NIFTY:2026-07-14``, ``system:<kind>``.

Patterns: ``*`` matches exactly one segment, a final ``>`` matches one or more remaining segments
(``candle:*:NSE:>``). Resolution of a topic to its handlers is cached until the subscriptions
change.

A handler that raises is isolated: the error is logged (rate-limited), counted, and published as a
:class:`SystemEvent` on ``system:handler_error``; the remaining handlers still run.

Batches (DESIGN §11). A columnar batch travels on its own topic (``batch:tick``, ``batch:candle``,
``batch:ind``, ``batch:chain``); a producer publishes the per-object messages of a batch only
for the topics somebody subscribed to with a handler (:meth:`MessageBus.wanted` turns the
subscriptions of a topic family into a mask over the batch's rows). A consumer that reads the
batch but needs the producer to make something for it (forming candles of a series) subscribes
to the per-object topic with ``handler=None``: an *interest*, which ``has_subscribers`` counts
and publishing skips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mandi.core.clock import Clock
from mandi.core.errors import BusError
from mandi.model.events import SystemEvent

log = logging.getLogger(__name__)

Handler = Callable[[str, Any], None]
#: One way a subscription can match the topics of a family: per variable segment the exact
#: value it needs, or None (any value).
Constraint = tuple[str | None, ...]
HANDLER_ERROR_TOPIC = "system:handler_error"


def topic_matches(pattern: str, topic: str) -> bool:
    """True if ``topic`` matches ``pattern`` (``*`` one segment, final ``>`` the rest)."""
    p, t = pattern.split(":"), topic.split(":")
    for i, seg in enumerate(p):
        if seg == ">":
            return i == len(p) - 1 and len(t) > i
        if i >= len(t) or (seg != "*" and seg != t[i]):
            return False
    return len(p) == len(t)


def family_constraints(pattern: str, family: Sequence[str], variable: int) -> Constraint | None:
    """How ``pattern`` can match topics made of the fixed segments ``family`` followed by
    ``variable`` more (``("candle",)`` and 3 for ``candle:{tf}s:{exchange}:{token}``): the value
    it needs at each variable segment (None: any), or None if it matches none of them."""
    p = pattern.split(":")
    n = len(family) + variable
    need: list[str | None] = [None] * variable
    for i, seg in enumerate(p):
        if seg == ">":
            return tuple(need) if i < n else None
        if i >= n:
            return None
        if seg == "*":
            continue
        if i < len(family):
            if seg != family[i]:
                return None
        else:
            need[i - len(family)] = seg
    return tuple(need) if len(p) == n else None


def constraint_matches(constraints: Sequence[Constraint], values: Sequence[str]) -> bool:
    """Does one of ``constraints`` (of :meth:`MessageBus.wanted` or
    :meth:`MessageBus.interested`) match a topic whose variable segments are ``values``?"""
    for c in constraints:
        for need, v in zip(c, values, strict=True):
            if need is not None and need != v:
                break
        else:
            return True
    return False


class ConstraintSet:
    """Constraints as a set of exact ones plus a list of those with a wildcard: ``values in
    c`` (a topic's variable segments) is one hash look-up when none has a wildcard."""

    __slots__ = ("exact", "loose")

    def __init__(self, constraints: Sequence[Constraint]) -> None:
        self.exact = frozenset(c for c in constraints if None not in c)
        self.loose = [c for c in constraints if None in c]

    def __contains__(self, values: tuple[str, ...]) -> bool:
        return values in self.exact or constraint_matches(self.loose, values)


class Subscription:
    __slots__ = ("handler", "head", "name", "pattern")

    def __init__(self, pattern: str, handler: Handler | None, name: str) -> None:
        self.pattern, self.handler, self.name = pattern, handler, name
        self.head = pattern.split(":", 1)[0]


class MessageBus:
    """Synchronous publish/subscribe with wildcard topics and isolated handlers."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._subs: list[Subscription] = []
        self._cache: dict[str, tuple[Subscription, ...]] = {}
        self.published = 0
        self.handler_errors = 0
        self.version = 0  # bumped on every (un)subscription, for callers caching routing
        self._wanted: dict[tuple[tuple[str, ...], int, bool], list[Constraint]] = {}
        self._error_log_counts: dict[str, int] = {}

    def subscribe(self, pattern: str, handler: Handler | None, name: str = "") -> Subscription:
        """Call ``handler(topic, message)`` for every message published on a matching topic
        (``handler`` None: an interest only, see the module docstring)."""
        segs = pattern.split(":")
        if not pattern or any(not s for s in segs) or ">" in segs[:-1]:
            raise BusError(f"invalid topic pattern {pattern!r}")
        sub = Subscription(pattern, handler, name or getattr(handler, "__qualname__", "handler"))
        self._subs.append(sub)
        self._cache.clear()
        self._wanted.clear()
        self.version += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.remove(sub)
        self._cache.clear()
        self._wanted.clear()
        self.version += 1

    def wanted(self, family: Sequence[str], variable: int) -> list[Constraint]:
        """Who wants per-object messages of a topic family: one :data:`Constraint` per
        subscription with a handler that can match it (cached until the subscriptions change).
        Empty: publish no object of that family; an all-None constraint: every one."""
        return self._constraints(tuple(family), variable, False)

    def interested(self, family: Sequence[str], variable: int) -> list[Constraint]:
        """As :meth:`wanted`, counting interests (subscriptions without a handler) too: a
        topic of the family has subscribers (:meth:`has_subscribers`) exactly when one of these
        constraints matches its variable segments (:func:`constraint_matches`) — without
        resolving each new topic against every pattern."""
        return self._constraints(tuple(family), variable, True)

    def _constraints(
        self, family: tuple[str, ...], variable: int, interests: bool
    ) -> list[Constraint]:
        key = (family, variable, interests)
        got = self._wanted.get(key)
        if got is None:
            cons = {
                c
                for s in self._subs
                if (interests or s.handler is not None)
                and (c := family_constraints(s.pattern, family, variable)) is not None
            }
            got = self._wanted[key] = sorted(cons, key=lambda c: tuple(x or "" for x in c))
        return got

    def has_subscribers(self, topic: str) -> bool:
        return bool(self._resolve(topic))

    def _resolve(self, topic: str) -> tuple[Subscription, ...]:
        subs = self._cache.get(topic)
        if subs is None:
            # only patterns whose first segment can match are tested (usually a handful)
            head = topic.split(":", 1)[0]
            subs = tuple(
                s
                for s in self._subs
                if s.head in (head, "*", ">") and topic_matches(s.pattern, topic)
            )
            if len(self._cache) > 100_000:  # unbounded topic spaces must not leak memory
                self._cache.clear()
            self._cache[topic] = subs
        return subs

    def publish(self, topic: str, message: Any) -> None:
        """Deliver ``message`` to every matching handler, in subscription order."""
        self.published += 1
        for sub in self._resolve(topic):
            handler = sub.handler
            if handler is None:  # an interest: the subscriber reads the batch
                continue
            try:
                handler(topic, message)
            except Exception as exc:
                self._handler_failed(sub, topic, exc)

    def _handler_failed(self, sub: Subscription, topic: str, exc: Exception) -> None:
        self.handler_errors += 1
        key = f"{sub.name}:{type(exc).__name__}"
        n = self._error_log_counts[key] = self._error_log_counts.get(key, 0) + 1
        if n == 1 or n % 1000 == 0:  # rate-limited, with the count kept
            log.error(
                "handler %s failed on %s (%d times): %r", sub.name, topic, n, exc, exc_info=n == 1
            )
        if topic == HANDLER_ERROR_TOPIC:
            return  # never recurse on a failing error handler
        self.publish(
            HANDLER_ERROR_TOPIC,
            SystemEvent(
                ts_event=self._clock.now_ns(),
                kind="handler_error",
                severity="ERROR",
                source=sub.name,
                message=f"{type(exc).__name__}: {exc}",
                data={"topic": topic, "count": n},
            ),
        )


def rows_wanted(
    constraints: Sequence[Constraint], columns: Sequence[tuple[np.ndarray, Callable[[str], Any]]]
) -> np.ndarray | None:
    """The rows of a batch some constraint matches, as a boolean mask (None: all of them).

    ``columns`` gives per variable segment the batch's column and how a topic segment turns into
    a column value (``int`` for a token; an exchange name into its code; ``"60s"`` into 60); a
    segment that cannot (``candle:abc:...``) matches no row."""
    n = len(columns[0][0]) if columns else 0
    mask = np.zeros(n, dtype=bool)
    for c in constraints:
        if all(v is None for v in c):
            return None
        rows = np.ones(n, dtype=bool)
        for v, (col, parse) in zip(c, columns, strict=True):
            if v is None:
                continue
            try:
                value = parse(v)
            except (ValueError, KeyError):
                rows[:] = False
                break
            rows &= col == value
        mask |= rows
    return mask
