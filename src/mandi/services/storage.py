"""Storage health for the node: a writer that cannot write is loud, and a run that lost rows
never exits 0.

:class:`StorageWatch` turns a writer's state (:class:`~mandi.stores.writer.WriterStats`) into
system events on the node's bus:

* ``system:storage_failed`` (``CRITICAL``) when the SQLite writer starts failing (disk full,
  read-only, locked beyond its busy timeout): logged as critical, shown by the status and the
  API; the trading layer blocks new entries on it (fail closed; exits stay possible);
* ``system:storage_recovered`` when a flush succeeds again (the block is lifted).

The ClickHouse copy uses the same watch with ``clickhouse_failed`` / ``clickhouse_recovered``:
SQLite still holds everything, so trading goes on.

:func:`storage_summary` is the shutdown line and the exit code: 0 only when every row reached
storage (quarantined rows are kept in ``rejects`` and are not lost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from mandi.stores.writer import WriterStats

log = logging.getLogger(__name__)

#: ``mandi run`` exit status when the run finished but some rows were never stored
EXIT_NOT_STORED = 1


class _Watched(Protocol):
    stats: WriterStats

    @property
    def pending_rows(self) -> int: ...


class StorageWatch:
    """Publishes a writer's failures and recoveries as system events (call :meth:`check`
    periodically on the event loop: the bus is not thread-safe)."""

    def __init__(
        self,
        writer: _Watched,
        event: Callable[..., None],
        store: str,
        kinds: tuple[str, str] = ("storage_failed", "storage_recovered"),
        consequence: str = "new entries are blocked",
    ) -> None:
        self.writer = writer
        self.event = event
        self.store = store
        self.kinds = kinds
        self.consequence = consequence
        self._failures = 0
        self._failing = False

    def check(self) -> None:
        s = self.writer.stats
        if s.failures == self._failures and s.failing == self._failing:
            return
        failed, recovered = self.kinds
        if s.failures != self._failures:  # a new failure (even if it has recovered since)
            log.critical(
                "STORAGE FAILED: %s cannot write (%s); %s; %d rows waiting",
                self.store,
                s.last_error,
                self.consequence,
                self.writer.pending_rows,
            )
            self.event(
                failed,
                f"{self.store} cannot write: {s.last_error}",
                "CRITICAL",
                store=self.store,
                error=s.last_error,
                pending_rows=self.writer.pending_rows,
            )
        if (self._failing or s.failures != self._failures) and not s.failing:
            log.warning("%s writes again", self.store)
            self.event(recovered, f"{self.store} writes again", "WARNING", store=self.store)
        self._failures, self._failing = s.failures, s.failing


class _Summarized(Protocol):
    stats: WriterStats

    def not_stored(self) -> int: ...


def storage_summary(writer: _Summarized, store: str) -> tuple[int, dict[str, Any]]:
    """How many rows ``writer`` did not store, and the counts that say why (after its stop)."""
    s = writer.stats
    lost = writer.not_stored()
    detail = {
        "dropped": dict(s.dropped),
        "given_up": dict(s.given_up),
        "pending": lost - sum(s.dropped.values()) - sum(s.given_up.values()),
        "quarantined": dict(s.quarantined),
    }
    if lost:
        log.error(
            "%s: %d rows were NOT stored (dropped at the full queue %s, given up on a failing "
            "store %s, still pending %d)",
            store,
            lost,
            detail["dropped"] or 0,
            detail["given_up"] or 0,
            detail["pending"],
        )
    if s.quarantined:
        log.warning(
            "%s: %d rows the store refused are kept in the rejects table: %s",
            store,
            sum(s.quarantined.values()),
            detail["quarantined"],
        )
    return lost, detail
