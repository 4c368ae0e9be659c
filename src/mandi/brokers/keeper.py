"""The broker session of a running node: one object the feed and the broker share, which renews
the session before it expires (Angel One's refresh token, Groww's TOTP login) and fails closed
when it cannot — once refused, it stays dead: no loop on a dead credential."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from mandi.brokers.session import BrokerSession
from mandi.core.errors import BrokerSessionError

log = logging.getLogger(__name__)

Renew = Callable[[Any, BrokerSession], BrokerSession]


class SessionKeeper:
    """Renews ``session`` through ``renew(cfg, session)`` once it ends within
    ``cfg.refresh_before_min`` minutes (see the module docstring)."""

    title = "the broker"

    def __init__(self, cfg: Any, session: BrokerSession, renew: Renew, offset_ns: int = 0) -> None:
        self.cfg = cfg
        self._s = session
        self._renew = renew
        self.offset_ns = offset_ns  # the node's clock offset (a fake broker outside hours)
        self._lock = threading.Lock()
        self.refreshes = 0
        self.dead = ""

    @property
    def expires_ns(self) -> int:
        return self._s.expires_ns

    def get(self) -> BrokerSession:
        """The session, renewed first when it is due (thread-safe)."""
        if self.dead:
            raise BrokerSessionError(self.dead)
        with self._lock:
            due = self._s.expires_ns - self.cfg.refresh_before_min * 60e9
            if time.time_ns() < due:
                return self._s
            try:
                self._s = self._renew(self.cfg, self._s)
            except BrokerSessionError as e:
                self.dead = str(e)
                raise
            self.refreshes += 1
            log.info("%s session renewed; it now lasts until %s", self.title, self._s.expires_ns)
            return self._s

    async def maintain(self, every_s: float = 30.0) -> None:
        """Renew in the background (a quiet node keeps its session too)."""
        while not self.dead:
            await asyncio.sleep(every_s)
            try:
                await asyncio.to_thread(self.get)
            except BrokerSessionError as e:
                log.error("%s", e)
