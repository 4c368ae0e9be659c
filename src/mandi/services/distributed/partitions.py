"""Instruments partitioned among the live members of a consumer group (shell code).

The instruments are split into ``redis.partitions`` partitions by their hash slot
(:func:`mandi.bus.redis.token_partition`: on a cluster a partition lives on one master). Every
member of a group (e.g. each ``mandi service indengine``):

* says it is alive: ``SET member:{group}:{member} 1 PX lease_ms`` and ``SADD members:{group}``
  (Redis's own expiry: the members' clocks need not agree);
* computes the same assignment as every other member from the live list — rendezvous hashing
  (:func:`assign`): each partition goes to the member with the highest hash of
  ``(member, partition)``, so a member joining or leaving moves only its share;
* holds each partition it processes under a lease ``lease:{group}:{partition}`` (``SET NX PX``,
  renewed with a compare-and-extend script, released with compare-and-delete). A partition
  changes hands only when its old owner released it (after committing and writing its
  snapshot) or its lease expired (the owner died, or stalled for longer than a lease);
* every acquisition gets the partition's next **epoch** (``INCR epoch:{group}:{partition}``,
  atomically with the lease): the fencing token the service writes into the partition's
  fence keys and checks in every read and write (:mod:`mandi.bus.redis`, ``fenced_*``), so a
  member that stalled past its lease can no longer touch a partition another member took.

The service decides what taking over or handing over a partition means (indengine: restore
the partition's snapshot, claim its pending entries, replay; commit and snapshot).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ALL_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from mandi.bus.redis import RedisLink, pack
from mandi.core.errors import MandiError

log = logging.getLogger(__name__)

_ACQUIRE = (  # free, or already ours (the same member restarted): take it, with a new epoch
    "local v = redis.call('GET', KEYS[1]) "
    "if v == false or v == ARGV[1] then "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return redis.call('INCR', KEYS[2]) "
    "else return 0 end"
)
_RENEW = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) "
    "else return 0 end"
)
# the member's alive marker: renewed when it is free or ours; on a first beat (``ARGV[3]`` 1)
# taken whatever it holds (a crashed predecessor's, or a live process that is about to find
# out it has a twin). Returns what it held before: another process's value is never
# overwritten by a later beat, so the process that finds a twin stops and the other goes on.
_BEAT = (
    "local v = redis.call('GET', KEYS[1]) "
    "if v == false or v == ARGV[1] or ARGV[3] == '1' then "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end return v"
)


def _score(member: str, partition: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{member}|{partition}".encode(), digest_size=8).digest())


def assign(members: Iterable[str], partitions: int) -> dict[int, str]:
    """Rendezvous hashing: ``{partition: member}`` for the live ``members`` (the same on every
    member; a change of membership moves only the partitions of the member that came or went).
    """
    ms = sorted(set(members))
    if not ms:
        return {}
    return {p: max(ms, key=lambda m: _score(m, p)) for p in range(partitions)}


class DuplicateMember(MandiError):
    """Another live process uses this member's name."""


class Membership:
    """One member's view of its group: alive marker, live members, its partitions' leases.

    A member's name is its consumer name, stable across restarts (``{service}-{hostname}``
    by default), so a restarted member takes back its own leases at once; two live processes
    with one name would share partitions — the alive marker holds a per-process value, and a
    member that finds another's value there stops with :class:`DuplicateMember`. A new
    process's first beat takes the marker (its crashed predecessor's, or a twin's): the older
    twin is the one that stops, at its next beat, leaving the marker to the newer one."""

    def __init__(
        self, link: RedisLink, group: str, member: str, partitions: int, lease_ms: int
    ) -> None:
        self.link = link
        self.group = group
        self.member = member
        self.partitions = partitions
        self.lease_ms = lease_ms
        self.members_key = f"members:{group}"
        self.live: list[str] = []
        self.nonce = f"{os.getpid()}:{time.time_ns()}"
        self._beats = 0
        self.epochs: dict[int, int] = {}  # partition -> epoch of this member's lease

    def member_key(self, member: str) -> str:
        return f"member:{self.group}:{member}"

    def lease_key(self, partition: int) -> str:
        return f"lease:{self.group}:{partition}"

    def epoch_key(self, partition: int) -> str:
        """``epoch:{lease:{group}:{partition}}``: incremented at every acquisition of the lease
        (the lease's name as its hash tag: one slot, so one script takes both on a cluster)."""
        return f"epoch:{{{self.lease_key(partition)}}}"

    async def heartbeat(self) -> list[str]:
        """Renew this member's marker; return the live members (sorted), forgetting dead
        ones. Raises :class:`DuplicateMember` when another process renewed it meanwhile."""
        mk = self.member_key(self.member)
        first = self._beats == 0
        before = await self.link.call("EVAL", _BEAT, 1, mk, self.nonce, self.lease_ms, int(first))
        self._beats += 1
        self.check_twin(before, first)
        await self.link.call("SADD", self.members_key, self.member)
        names = sorted(m.decode() for m in await self.link.call("SMEMBERS", self.members_key) or ())
        alive = await self.link.pipeline(
            [(self.member_key(m), pack("EXISTS", self.member_key(m))) for m in names]
        )
        dead = [m for m, a in zip(names, alive, strict=True) if a != 1]
        if dead:
            await self.link.call("SREM", self.members_key, *dead)
            log.info("%s: members gone: %s", self.group, ", ".join(dead))
        self.live = [m for m, a in zip(names, alive, strict=True) if a == 1]
        if self.member not in self.live:
            self.live = sorted([*self.live, self.member])
        return self.live

    def check_twin(self, before: bytes | None, first: bool) -> None:
        """Raise :class:`DuplicateMember` when a later beat found another process's marker
        (the first beat may find this member's previous, crashed, incarnation's)."""
        if not first and before is not None and before != self.nonce.encode():
            raise DuplicateMember(
                f"another live process is {self.group} member {self.member!r} (pid:time "
                f"{before.decode()!r}); give each one its own --consumer name"
            )

    def wanted(self) -> set[int]:
        """The partitions this member should own, given the live members."""
        return {p for p, m in assign(self.live, self.partitions).items() if m == self.member}

    async def acquire(self, partitions: Iterable[int]) -> set[int]:
        """Try to take the leases of ``partitions``; return those now held (their epochs in
        :attr:`epochs`)."""
        ps = list(partitions)
        cmds = [
            (self.lease_key(p), pack("EVAL", _ACQUIRE, 2, self.lease_key(p), self.epoch_key(p),
                                     self.member, self.lease_ms))
            for p in ps
        ]  # fmt: skip
        replies = await self.link.pipeline(cmds)
        got = {p: r for p, r in zip(ps, replies, strict=True) if isinstance(r, int) and r > 0}
        self.epochs.update(got)
        return set(got)

    async def renew(self, partitions: Iterable[int]) -> set[int]:
        """Extend the leases of ``partitions``; return those *lost* (expired, or another
        member's now)."""
        ps = list(partitions)
        replies = await self.link.pipeline(
            [
                (
                    self.lease_key(p),
                    pack("EVAL", _RENEW, 1, self.lease_key(p), self.member, self.lease_ms),
                )
                for p in ps
            ]
        )
        return {p for p, r in zip(ps, replies, strict=True) if r != 1}

    async def release(self, partitions: Iterable[int]) -> None:
        ps = list(partitions)
        if ps:
            await self.link.pipeline(
                [
                    (self.lease_key(p), pack("EVAL", _RELEASE, 1, self.lease_key(p), self.member))
                    for p in ps
                ]
            )

    async def leave(self) -> None:
        """Stop being a member (graceful stop: the others take over at their next beat). A
        twin that stopped leaves the marker and the name to the process that holds them."""
        mk = self.member_key(self.member)
        if await self.link.call("EVAL", _RELEASE, 1, mk, self.nonce) == 1:
            await self.link.call("SREM", self.members_key, self.member)


class LeaseKeeper:
    """Heartbeats and lease renewals on threads of their own, with a blocking client: a
    member whose event loop is busy for longer than a lease (a long batch on a loaded machine)
    keeps its partitions — it is alive, only slow. Every ``lease_ms``/3 it renews the member's
    marker and the leases of ``leased()``, and hands ``(live members or None, leases lost)``
    to ``report`` (called on the event loop). A second live process with the member's name
    stops it with :class:`DuplicateMember` (reported as ``error``).

    Each lease is renewed on its own (a task per lease, none waiting for another, each reply
    given at most a third of a lease): on a cluster a master that fails — or stalls — costs only the
    leases whose keys it holds; the others, and the member's marker when it lives elsewhere,
    are renewed as usual. A renewal that fails is tried again at the next round. A lease is
    lost when Redis says it is not ours (``0``), or when no renewal succeeded for a whole
    lease since the start of the last one that did: by then it may have expired and been
    taken by another member, so it is given up rather than trusted (fail closed)."""

    def __init__(
        self,
        url: str,
        membership: Membership,
        leased: Any,
        report: Any,
        error: Any,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        from mandi.bus.redis import BlockingRedis

        self.m = membership
        self.every = membership.lease_ms / 3000
        # a reply slower than a round is as good as lost: the next round tries again
        wait = min(membership.link.connect_timeout, self.every)
        self.redis = BlockingRedis(url, wait, read_timeout=wait)
        self.leased = leased
        self.report = report
        self.error = error
        self.loop = loop
        self.failures = 0  # renewals (and beats) that failed and were tried again
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(membership.partitions + 1, "mandi-lease")
        self._beat: Future[list[str]] | None = None
        self._renewals: dict[int, tuple[float, Future[bool]]] = {}  # in flight: (sent, reply)
        self._held: dict[int, float] = {}  # lease -> when the last good renewal was sent
        self._thread = threading.Thread(target=self._run, name="mandi-leases", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.redis.close()

    def call(self, *args: bytes | str | int) -> Any:
        """One command on the shared client, from any of the keeper's threads. Unlike
        :meth:`BlockingRedis.call` a failure does not close the client: the renewals in flight
        to healthy masters go on (redis-py reconnects to, or re-maps, the failed one)."""
        import redis

        from mandi.bus.redis import RedisCommandError, RedisUnavailable

        try:
            return self.redis.client().execute_command(*args)
        except redis.ResponseError as e:
            raise RedisCommandError(str(e)) from None
        except (redis.ConnectionError, redis.TimeoutError, redis.RedisClusterException) as e:
            raise RedisUnavailable(f"Redis: {e}") from None

    def beat(self) -> list[str]:
        """Renew this member's marker: the live members."""
        m, call = self.m, self.call
        mk = m.member_key(m.member)
        m.check_twin(call("EVAL", _BEAT, 1, mk, m.nonce, m.lease_ms, 0), first=False)
        call("SADD", m.members_key, m.member)
        names = sorted(x.decode() for x in call("SMEMBERS", m.members_key) or ())
        live = [n for n in names if n == m.member or call("EXISTS", m.member_key(n)) == 1]
        dead = [n for n in names if n not in live]
        if dead:
            call("SREM", m.members_key, *dead)
            log.info("%s: members gone: %s", m.group, ", ".join(dead))
        return live

    def renew(self, partition: int) -> bool:
        """Extend one lease: False when it is not ours (expired, or another member's)."""
        m = self.m
        key = m.lease_key(partition)
        return bool(self.call("EVAL", _RENEW, 1, key, m.member, m.lease_ms) == 1)

    def round(self) -> tuple[list[str] | None, set[int]]:
        """Start what is not in flight, wait up to a round for the replies: (live members,
        or None when the beat has not answered; leases lost)."""
        now = time.monotonic()
        leased = set(self.leased())
        for p in set(self._held) - leased:  # released, or lost and handed over
            del self._held[p]
        for p in leased - set(self._held):  # just acquired: held from about a round ago
            self._held[p] = now - self.every
        if self._beat is None:
            self._beat = self._pool.submit(self.beat)
        for p in sorted(leased - set(self._renewals)):
            self._renewals[p] = (now, self._pool.submit(self.renew, p))
        futures: list[Future[Any]] = [self._beat, *(f for _, f in self._renewals.values())]
        wait(futures, timeout=self.every, return_when=ALL_COMPLETED)
        live, lost = None, set()
        if self._beat.done():
            beat, self._beat = self._beat, None
            try:
                live = beat.result()
            except DuplicateMember:
                raise
            except Exception as e:  # tried again next round; the leases need not wait
                self._failed("beat", e)
        for p, (sent, f) in list(self._renewals.items()):
            if not f.done():
                continue
            del self._renewals[p]
            try:
                if f.result():
                    self._held[p] = max(self._held.get(p, sent), sent)
                else:
                    lost.add(p)
            except Exception as e:
                self._failed(f"lease of partition {p}", e)
        end = time.monotonic()
        lost |= {p for p in leased if end - self._held.get(p, end) > self.m.lease_ms / 1000}
        for p in lost:
            self._held.pop(p, None)
        return live, lost & leased

    def _failed(self, what: str, e: BaseException) -> None:
        from mandi.bus.redis import RedisCommandError, RedisUnavailable

        self.failures += 1
        if isinstance(e, (RedisUnavailable, RedisCommandError)):
            log.debug("%s: %s: %s", self.m.group, what, e)
        else:  # a bug must not end the renewals: the leases would expire
            log.error("%s: %s failed", self.m.group, what, exc_info=e)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                live, lost = self.round()
            except DuplicateMember as e:
                self.loop.call_soon_threadsafe(self.error, e)
                return
            except Exception:  # a bug must not end the beats: the leases would expire
                log.exception("%s: membership round failed", self.m.group)
                live, lost = None, set()
            if live is not None or lost:
                self.loop.call_soon_threadsafe(self.report, live, lost)
            self._stop.wait(max(0.0, t0 + self.every - time.monotonic()))
