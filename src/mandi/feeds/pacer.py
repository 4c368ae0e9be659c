"""Pacing a generated or recorded feed: exchange time played at ``speed`` times real time.

The simulator and the replay both hand out batches of ticks in exchange-time order; each
batch is held back until its last tick is due, measured on the event loop's clock from the
start of the session (:meth:`ExchangePacer.restart`) and the first batch's first tick. At
infinite speed nothing waits, but every batch still yields to the loop once so the consumers
run between batches.
"""

from __future__ import annotations

import asyncio
import math

from mandi.model.batches import TickBatch


class ExchangePacer:
    """Holds each batch back until its exchange time is due at ``speed`` (see the module)."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.paced = math.isfinite(speed)  # False: flat out
        self._loop = asyncio.get_running_loop()
        self._wall0 = self._loop.time()
        self._sim0: int | None = None

    def restart(self) -> None:
        """Pace afresh from now and the next batch (a new session: the night is skipped)."""
        self._wall0, self._sim0 = self._loop.time(), None

    async def pace(self, batch: TickBatch) -> None:
        """Wait until ``batch`` (not empty) is due."""
        last = int(batch.ts_event[-1])
        if self._sim0 is None:
            self._sim0 = int(batch.ts_event[0])
        if self.paced:
            delay = self._wall0 + (last - self._sim0) / 1e9 / self.speed - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
