"""Client of ``mandi tickserver``: ``mandi run --feed ws://127.0.0.1:9001``.

Reconnects with jittered exponential backoff and resubscribes; a socket silent for longer than
``stale_after`` seconds is treated as dead (watchdog).

Bad input is counted in :attr:`TickserverFeed.rejected` (shown per feed in the node's status,
``/api/v1/status`` and ``/metrics``) and logged once a minute per reason: a frame that is not a
protocol message (not JSON, not an object, an unknown type) is ``malformed_frame``; a row of a
``ticks`` message that cannot be a tick (not a list of 11 values, the exchange not a string) is
``malformed`` and skipped alone — the other rows of the message go on. Values are passed on as
sent: the tick policy (:mod:`mandi.pipeline.validate`) rejects a float or string price and every
other bad value, never truncating one. The feed's clock is the server's step time (``ts`` of a
``ticks`` message; without one, the median time of the message's rows), so one row stamped a
day ahead cannot move it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import websockets
from websockets.asyncio.client import connect

from mandi.core.logs import RateLimitedLog
from mandi.model.instruments import AnyInstrument, parse_instrument_csv
from mandi.model.market import Tick
from mandi.pipeline.validate import MALFORMED

if TYPE_CHECKING:
    from mandi.core.clock import Clock

log = logging.getLogger(__name__)


class _Msg(msgspec.Struct):
    type: str
    data: Any = None  # rows of a ticks message, each checked on its own
    csv: str | None = None
    date: str | None = None
    ts: Any = None
    error: str | None = None


_decode = msgspec.json.Decoder(_Msg).decode
KNOWN_TYPES = frozenset(
    ("hello", "instruments", "subscribed", "ticks", "session_end", "day", "error")
)
MALFORMED_FRAME = "malformed_frame"  # a frame that is not a protocol message


def parse_tick_row(row: Any, ts_init: int) -> Tick:
    """One row of a ``ticks`` message as a :class:`Tick`, values as sent (the tick policy
    judges them). Raises ``ValueError`` when the row cannot be a tick at all: not a list of
    11 values, or an exchange that is not a string."""
    if type(row) is not list or len(row) != 11:
        raise ValueError(f"a tick row is a list of 11 values, got {type(row).__name__}")
    if type(row[1]) is not str:
        raise ValueError(f"exchange must be a string, got {type(row[1]).__name__}")
    return Tick(row[0], row[1], row[2], ts_init, *row[3:])


def _median_time(ticks: list[Tick]) -> int | None:
    times = sorted(t.ts_event for t in ticks if type(t.ts_event) is int)
    return times[len(times) // 2] if times else None


class FeedHost(Protocol):
    """What a feed needs of the node hosting it (the node context offers it)."""

    clock: Clock

    def add_instruments(self, instruments: Iterable[AnyInstrument]) -> int: ...


class TickserverFeed:
    """A live node feed (:class:`~mandi.services.context.Feed`) reading a tickserver; ``node``
    (the node's context) learns the instruments at every (re)connection."""

    live = True
    wall_clock = False  # the tickserver's exchange time is simulated

    def __init__(
        self,
        url: str,
        node: FeedHost | None = None,
        stale_after: float = 10.0,
        tokens: list[int] | None = None,
    ) -> None:
        self.name = url
        self.url = url
        self.node = node
        self.stale_after = stale_after
        self.tokens = tokens  # None = all
        self.exchange_time_ns = 0
        self.rejected: Counter[str] = Counter()  # what never became a tick, per reason
        self.reconnects = 0
        self._instruments: list[AnyInstrument] = []
        self._log = RateLimitedLog(log)

    def instruments(self) -> list[AnyInstrument]:
        return self._instruments

    async def connect_once(self) -> None:
        """Fetch the instrument master (before the node starts)."""
        async with connect(self.url, open_timeout=10) as ws:
            await self._load_instruments(ws)

    async def _load_instruments(self, ws: Any) -> None:
        await ws.send('{"action": "instruments"}')
        while True:
            async with asyncio.timeout(self.stale_after):  # not wait_for: see batches()
                msg = _decode(await ws.recv())
            if msg.type == "instruments" and msg.csv is not None:
                self._instruments = parse_instrument_csv(msg.csv)
                return

    async def batches(self) -> AsyncIterator[list[Tick]]:
        delay = 0.5
        while True:
            try:
                # close_timeout: at shutdown the unread ticks fill the client's queue and the
                # server's close frame waits behind them; do not wait websockets' 10 s for it
                async with connect(
                    self.url, open_timeout=10, max_size=2**22, close_timeout=1.0
                ) as ws:
                    await self._load_instruments(ws)
                    if self.node is not None:
                        self.node.add_instruments(self._instruments)
                    sub = "all" if self.tokens is None else self.tokens
                    await ws.send(
                        msgspec.json.encode({"action": "subscribe", "tokens": sub}).decode()
                    )
                    delay = 0.5
                    while True:
                        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a
                        # cancellation that races a completed recv (the node's shutdown hung)
                        async with asyncio.timeout(self.stale_after):
                            raw = await ws.recv()
                        batch = self._parse(raw)
                        if batch is not None:
                            yield batch
            except (OSError, TimeoutError, websockets.WebSocketException) as e:
                self.reconnects += 1
                wait = delay * (0.5 + random.random())
                log.warning(
                    "tickserver %s: %s; reconnecting in %.1f s",
                    self.url,
                    e.__class__.__name__,
                    wait,
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, 30.0)

    def _reject(self, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        self._log.warning(
            reason,
            time.monotonic_ns(),
            "tickserver %s: skipped a %s (%s; %d so far)",
            self.url,
            "frame that is not a message" if reason == MALFORMED_FRAME else "malformed tick row",
            detail,
            self.rejected[reason],
        )

    def _parse(self, raw: str | bytes) -> list[Tick] | None:
        try:
            msg = _decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self._reject(MALFORMED_FRAME, str(e)[:80])
            return None
        if msg.type not in KNOWN_TYPES:
            self._reject(MALFORMED_FRAME, f"unknown type {msg.type[:40]!r}")
            return None
        if msg.type == "ticks":
            if type(msg.data) is not list:
                self._reject(MALFORMED_FRAME, "a ticks message without a list of rows")
                return None
            ts_init = self.node.clock.now_ns() if self.node is not None else 0
            out = []
            for row in msg.data:
                try:
                    out.append(parse_tick_row(row, ts_init))
                except ValueError as e:
                    self._reject(MALFORMED, str(e))
            clock = msg.ts if type(msg.ts) is int and msg.ts > 0 else _median_time(out)
            if clock is not None:
                self.exchange_time_ns = clock
            return out or None  # (an empty batch would mean the session is over)
        if msg.type == "session_end":
            if type(msg.ts) is int and msg.ts > 0:
                self.exchange_time_ns = msg.ts
            return []
        if msg.type == "error":
            self._log.warning("error", time.monotonic_ns(), "tickserver says: %r", msg.error)
        return None
