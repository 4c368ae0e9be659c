"""Client of ``mandi tickserver``: ``mandi run --feed ws://127.0.0.1:9001``.

Reconnects with jittered exponential backoff and resubscribes; a socket silent for longer than
``stale_after`` seconds is treated as dead (watchdog). Malformed messages are counted and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import websockets
from websockets.asyncio.client import connect

from mandi.model.instruments import AnyInstrument, parse_instrument_csv
from mandi.model.market import Tick

if TYPE_CHECKING:
    from mandi.core.clock import Clock

log = logging.getLogger(__name__)


class _Msg(msgspec.Struct):
    type: str
    data: list[list[Any]] | None = None
    csv: str | None = None
    date: str | None = None
    ts: int | None = None
    error: str | None = None


_decode = msgspec.json.Decoder(_Msg).decode


def parse_tick_row(row: list[Any], ts_init: int) -> Tick:
    token, exchange, ts, price, volume, last_qty, oi, bid, ask, bid_qty, ask_qty = row
    return Tick(
        int(token),
        str(exchange),
        int(ts),
        ts_init,
        int(price),
        int(volume),
        int(last_qty),
        int(oi),
        int(bid),
        int(ask),
        int(bid_qty),
        int(ask_qty),
    )


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
        self.malformed: Counter[str] = Counter()
        self.reconnects = 0
        self._instruments: list[AnyInstrument] = []

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

    def _parse(self, raw: str | bytes) -> list[Tick] | None:
        try:
            msg = _decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.malformed["undecodable"] += 1
            return None
        if msg.type == "ticks" and msg.data is not None:
            ts_init = self.node.clock.now_ns() if self.node is not None else 0
            out = []
            for row in msg.data:
                try:
                    out.append(parse_tick_row(row, ts_init))
                except (ValueError, TypeError):
                    self.malformed["bad_tick_row"] += 1
            if out:
                self.exchange_time_ns = out[-1].ts_event
            return out
        if msg.type == "session_end":
            self.exchange_time_ns = msg.ts or self.exchange_time_ns
            return []
        if msg.type == "error":
            log.warning("tickserver says: %s", msg.error)
        return None
