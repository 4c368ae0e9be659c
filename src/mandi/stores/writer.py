"""One batching writer loop for every store (SQLite's ``BatchWriter``, ``ClickHouseWriter``).

Rows are queued from the event loop (:meth:`BatchLoop.put` never blocks and never waits for
storage) and written on a background thread. A flush happens when ``flush_items`` items are
pending or ``flush_interval`` seconds after the first one, and takes everything queued at that
moment, so batches grow with the load. At most ``max_pending_rows`` rows wait; rows beyond that
are dropped and counted, never silently. A producer that can wait (a replayable feed: the
simulator flat out, a replay) asks :meth:`BatchLoop.backlogged` and waits while more than
``high_water_rows`` rows are pending, so the queue, and the memory it holds, stays small and
nothing is dropped in normal operation.

What reaches storage, and how, is a small :class:`Backend` (SQLite: one transaction per flush;
ClickHouse: one columnar insert per table). The loop owns the rest, the same for both:

* **A bad row never stops the writer.** When a write fails because of its rows (a value the store
  cannot hold, such as an integer beyond 64 bits; a wrong type or width; a constraint), the flush
  is written again with each statement's rows bisected until the bad rows are isolated. They are
  *quarantined* (handed to the backend with the reason: SQLite's ``rejects`` table), counted in
  ``stats.quarantined`` and logged at most once a minute per statement; every good row is stored.
* **A store that cannot write is loud.** When the store itself fails (disk full, read-only, locked
  beyond the busy timeout, a server down) the flush is retried with backoff (50 ms doubling to
  5 s), keeping its rows. From the first failure until a flush succeeds again the writer is
  *failing* (``stats.failing``; ``stats.failures`` counts the episodes); the writer's owner turns
  that into a system event (:class:`mandi.services.storage.StorageWatch`).
* **Stopping never hangs on a dead store.** :meth:`BatchLoop.stop` flushes what is queued. A
  store that fails while stopping gets ``stop_retry_s`` to recover; one already failing when the
  stop is asked for gets one more try. Then its rows are given up and counted
  (``stats.given_up``). :meth:`BatchLoop.not_stored` is everything that never reached storage.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from mandi.core.logs import RateLimitedLog

Rows = list[tuple[Any, ...]]


class Reject(NamedTuple):
    """A row its store refused: the statement (or table) it was for, the row, and why."""

    target: str
    row: tuple[Any, ...]
    reason: str

    def as_row(self, store: str, now_ns: int) -> tuple[Any, ...]:
        """A ``rejects`` table row: (timestamp, store, target, reason, row as JSON)."""
        return (now_ns, store, self.target, self.reason, _json(self.row))


def _json(row: tuple[Any, ...]) -> str:
    def plain(v: Any) -> Any:
        if isinstance(v, bytes | bytearray | memoryview):
            return {"base64": base64.b64encode(bytes(v)).decode()}
        return repr(v)

    # stdlib json: integers of any size stay exact (the point: 2**64 must survive quarantine)
    return json.dumps(list(row), default=plain, ensure_ascii=False)


class Backend(Protocol):
    """How one flush reaches a store: the backend half of a :class:`BatchLoop`.

    ``atomic`` backends write a whole flush between :meth:`begin` and :meth:`commit` (all or
    nothing); the others write each statement's rows as their own unit (``begin``/``commit`` do
    nothing), so a retry repeats only the statement that failed. Every method but :meth:`check`
    runs on the writer thread.
    """

    kind: str  # "sqlite", "clickhouse": the ``store`` column of quarantined rows
    label: str  # for logs (never a password)
    atomic: bool

    def check(self, key: str) -> None:
        """Raise :class:`~mandi.core.errors.StoreError` for a statement/table it cannot write."""
        ...

    def open(self) -> None:
        """Connect (raise to be retried with backoff)."""
        ...

    def begin(self) -> None: ...

    def write(self, key: str, rows: Rows, isolated: bool = False) -> None:
        """Write ``rows`` for ``key``. ``isolated``: a failure must leave none of them written
        (the loop then bisects them)."""
        ...

    def commit(self) -> None: ...

    def yield_wanted(self) -> bool:
        """Should an atomic flush end its transaction early (another writer of the same store
        waits for it)? Only atomic backends are asked."""
        ...

    def rollback(self) -> None:
        """Undo what the current flush wrote (must not raise)."""
        ...

    def is_bad_row(self, e: BaseException) -> bool:
        """True when ``e`` is caused by the rows written, not by the store."""
        ...

    def quarantine(self, rejects: list[Reject]) -> None:
        """Keep refused rows aside (in the flush's transaction when atomic)."""
        ...

    def close(self) -> None: ...


@dataclass
class WriterStats:
    """What a writer did; read from any thread (plain counters, updated by the writer thread)."""

    rows: Counter[str] = field(default_factory=Counter)  # stored, per statement/table
    flushes: int = 0
    items: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # refused by put: the queue was full
    quarantined: Counter[str] = field(default_factory=Counter)  # refused by the store: rejects
    given_up: Counter[str] = field(default_factory=Counter)  # the store still failed at stop
    errors: int = 0  # failed attempts to write (each retry counts)
    failures: int = 0  # times the writer became failing
    failing: bool = False  # the store cannot write now
    connected: bool = False
    last_flush_ms: float = 0.0
    last_error: str = ""


_STOP = object()
#: rows per piece of a flush that may end its transaction early (``BatchLoop._write_yielding``)
YIELD_ROWS = 256


def _unit(pieces: list[tuple[str, Rows]]) -> dict[str, Rows]:
    unit: dict[str, Rows] = {}
    for key, rows in pieces:
        unit.setdefault(key, []).extend(rows)
    return unit


class BatchLoop:
    """The writer thread shared by every store (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        *,
        flush_interval: float = 0.25,
        flush_items: int = 64,
        max_pending_rows: int = 2_000_000,
        high_water_rows: int = 250_000,
        stop_retry_s: float = 10.0,
        thread_name: str = "mandi-writer",
        logger: logging.Logger | None = None,
    ) -> None:
        self.backend = backend
        self.flush_interval = flush_interval
        self.flush_items = flush_items
        self.max_pending_rows = max_pending_rows
        # never above half the hard bound: a producer waits well before rows are dropped
        self.high_water_rows = max(1, min(high_water_rows, max_pending_rows // 2))
        self.stop_retry_s = stop_retry_s
        self.stats = WriterStats()
        self._thread_name = thread_name
        self._log = logger or logging.getLogger(__name__)
        self._rejects_log = RateLimitedLog(self._log)
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._stopping = threading.Event()
        self._give_up_at = 0.0
        self._failing_since = 0.0

    # --- the caller's side ------------------------------------------------------------------------
    @property
    def pending_rows(self) -> int:
        """Rows queued or being written (after :meth:`stop`: rows that never got written)."""
        return self._pending_rows

    def backlogged(self) -> bool:
        """More than ``high_water_rows`` rows wait: a producer that can wait should, until
        this is False again (backpressure; :meth:`put` itself never blocks)."""
        return self._pending_rows > self.high_water_rows

    def start(self) -> BatchLoop:
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()
        return self

    def put(self, key: str, rows: Rows) -> bool:
        """Queue ``rows`` for ``key``; False (and counted) if the queue is full. Thread-safe."""
        if not rows:
            return True
        self.backend.check(key)
        with self._lock:
            if self._pending_rows + len(rows) > self.max_pending_rows:
                self.stats.dropped[key] += len(rows)
                return False
            self._pending_rows += len(rows)
            self._idle.clear()
        self._q.put((key, rows))
        return True

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far is written (or quarantined, or given up)."""
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything queued and stop the thread (see the module docstring)."""
        if self._thread is None:
            return
        # a store already failing gets one more try; a healthy one stop_retry_s to recover
        grace = 0.0 if self.stats.failing else self.stop_retry_s
        self._give_up_at = time.monotonic() + grace
        self._stopping.set()
        self._q.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._log.error(
                "%s: the writer did not stop within %.0f s; %d rows not written",
                self.backend.label,
                timeout,
                self._pending_rows,
            )
        self._thread = None

    def not_stored(self) -> int:
        """Rows that never reached storage: dropped at a full queue, given up at stop, or still
        pending (a writer that did not stop in time). Quarantined rows are kept, not lost."""
        s = self.stats
        return sum(s.dropped.values()) + sum(s.given_up.values()) + self._pending_rows

    # --- the writer thread ------------------------------------------------------------------------
    def _run(self) -> None:
        opened = self._open()
        buf: list[tuple[str, Rows]] = []
        first = 0.0
        stopping = False
        while not stopping:
            timeout = None if not buf else max(0.0, first + self.flush_interval - time.monotonic())
            try:
                item = self._q.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                stopping = True
            elif item is not None:
                if not buf:
                    first = time.monotonic()
                buf.append(item)
            due = buf and (
                len(buf) >= self.flush_items or time.monotonic() - first >= self.flush_interval
            )
            if due or (stopping and buf):
                while True:  # take everything already queued: bigger batches under load
                    try:
                        more = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stopping = True
                    else:
                        buf.append(more)
                self._flush(buf, opened)
                buf = []
            if not buf and self._q.empty():
                self._idle.set()
        if opened:
            with contextlib.suppress(Exception):
                self.backend.close()

    def _open(self) -> bool:
        """Connect, retrying with backoff; False when stopping gave up on the store."""
        delay = 0.1
        while True:
            try:
                self.backend.open()
            except Exception as e:
                giving_up = self._giving_up()
                self._failed("connecting", e, None if giving_up else delay)
                if giving_up:
                    return False
            else:
                self.stats.connected = True
                self._recovered()
                return True
            self._pause(delay)
            delay = min(delay * 2, 5.0)

    def _flush(self, buf: list[tuple[str, Rows]], opened: bool) -> None:
        by_key: dict[str, Rows] = {}
        for key, rows in buf:
            by_key.setdefault(key, []).extend(rows)
        n = sum(len(r) for r in by_key.values())
        if not opened:  # never connected and stopping: nothing can be written
            self.stats.given_up.update({k: len(r) for k, r in by_key.items()})
        else:
            t0 = time.perf_counter()
            if self.backend.atomic:
                self._write_yielding(by_key)
            else:
                for key, rows in by_key.items():
                    self._write({key: rows})
            self.stats.last_flush_ms = (time.perf_counter() - t0) * 1000
            self.stats.flushes += 1
            self.stats.items += len(buf)
        with self._lock:
            self._pending_rows -= n

    def _write(self, unit: dict[str, Rows]) -> None:
        """Write one unit (a whole flush, or one statement's rows); bad rows quarantined, store
        failures retried until they pass or stopping gives up."""
        backend = self.backend
        salvage = False
        delay = 0.05
        while True:
            rejects: list[Reject] = []
            try:
                backend.begin()
                for key, rows in unit.items():
                    if salvage:
                        rejects += self._salvage(key, rows)
                    else:
                        backend.write(key, rows)
                if rejects:
                    backend.quarantine(rejects)
                backend.commit()
            except Exception as e:
                with contextlib.suppress(Exception):
                    backend.rollback()
                if not salvage and backend.is_bad_row(e):
                    salvage = True  # again, bisecting to find the rows the store refuses
                    continue
                n = sum(len(r) for r in unit.values())
                giving_up = self._giving_up()
                self._failed(
                    f"writing {n} rows ({', '.join(unit)})", e, None if giving_up else delay
                )
                if giving_up:
                    self.stats.given_up.update({k: len(r) for k, r in unit.items()})
                    self._log.error(
                        "%s: gave up on %d rows (%s) at shutdown: the store still fails",
                        backend.label,
                        n,
                        ", ".join(unit),
                    )
                    return
                self._pause(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._stored(unit, rejects)
            return

    def _write_yielding(self, by_key: dict[str, Rows]) -> None:
        """An atomic flush written in pieces of ``YIELD_ROWS`` rows, in one transaction unless
        another writer of the same store waits (``backend.yield_wanted()``, SQLite's
        :class:`~mandi.stores.sqlite.WriteTurn`): then the transaction ends after the current
        piece and the rest follows in the next one, so that writer waits for a piece, not for
        the whole flush. When a transaction fails, what it held and the rest of the flush go to
        :meth:`_write` as one unit (retries, quarantine), as a flush does without yielding."""
        backend = self.backend
        step = YIELD_ROWS
        pieces = [
            (key, rows[i : i + step])
            for key, rows in by_key.items()
            for i in range(0, len(rows), step)
        ]
        i = 0
        while i < len(pieces):
            j = i
            try:
                backend.begin()
                while j < len(pieces):
                    backend.write(*pieces[j])
                    j += 1
                    if j < len(pieces) and backend.yield_wanted():
                        break
                backend.commit()
            except Exception:
                with contextlib.suppress(Exception):
                    backend.rollback()
                j = len(pieces)  # the rest of the flush, as one unit: retried, salvaged
                self._write(_unit(pieces[i:j]))
            else:
                self._stored(_unit(pieces[i:j]), [])
            i = j

    def _salvage(self, key: str, rows: Rows) -> list[Reject]:
        """Write ``rows``, halving them around the ones the store refuses; return those."""
        try:
            self.backend.write(key, rows, isolated=True)
            return []
        except Exception as e:
            if not self.backend.is_bad_row(e):
                raise
            if len(rows) == 1:
                return [Reject(key, rows[0], f"{type(e).__name__}: {e}")]
        mid = len(rows) // 2
        return self._salvage(key, rows[:mid]) + self._salvage(key, rows[mid:])

    def _stored(self, unit: dict[str, Rows], rejects: list[Reject]) -> None:
        bad = Counter(r.target for r in rejects)
        for key, rows in unit.items():
            self.stats.rows[key] += len(rows) - bad[key]
        if rejects:
            self.stats.quarantined.update(bad)
            for key, k in bad.items():
                example = next(r for r in rejects if r.target == key)
                self._rejects_log.log(
                    logging.ERROR,
                    f"quarantine:{key}",
                    time.time_ns(),
                    "%s: quarantined %d %s row(s) the store cannot hold (total %d; kept in "
                    "rejects): %s",
                    self.backend.label,
                    k,
                    key,
                    self.stats.quarantined[key],
                    example.reason,
                )
        self._recovered()

    def _failed(self, what: str, e: BaseException, delay: float | None) -> None:
        s = self.stats
        s.errors += 1
        s.last_error = str(e) or type(e).__name__
        if not s.failing:
            s.failing = True
            s.failures += 1
            self._failing_since = time.monotonic()
        retry = "" if delay is None else f"; retrying in {delay:.2f} s"
        self._log.error("%s: %s failed (%s)%s", self.backend.label, what, s.last_error, retry)

    def _recovered(self) -> None:
        if self.stats.failing:
            self.stats.failing = False
            self._log.warning(
                "%s: writing again after %.1f s of failures",
                self.backend.label,
                time.monotonic() - self._failing_since,
            )

    def _giving_up(self) -> bool:
        """Stopping began ``stop_retry_s`` ago and the store still fails: give up on it."""
        return self._stopping.is_set() and time.monotonic() >= self._give_up_at

    def _pause(self, delay: float) -> None:
        """Back off before a retry; a stop cuts it short (one more try, then the deadline)."""
        if self._stopping.is_set():
            time.sleep(max(0.0, min(delay, self._give_up_at - time.monotonic())))
        else:
            self._stopping.wait(delay)
