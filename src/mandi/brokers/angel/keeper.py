"""The Angel One session in a running node: one object the feed and the broker share, which
refreshes the JWT (and feed token) before it expires and fails closed when it cannot."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from mandi.brokers.angel import session as angel_session
from mandi.brokers.session import BrokerSession
from mandi.config import AngelConfig
from mandi.core.errors import BrokerSessionError

log = logging.getLogger(__name__)


class SessionKeeper:
    def __init__(self, cfg: AngelConfig, session: BrokerSession, offset_ns: int = 0) -> None:
        self.cfg = cfg
        self._s = session
        self.offset_ns = offset_ns  # the node's clock offset (a fake broker outside hours)
        self._lock = threading.Lock()
        self.refreshes = 0
        self.dead = ""

    @property
    def expires_ns(self) -> int:
        return self._s.expires_ns

    def get(self) -> BrokerSession:
        """The session, refreshed first when it is due (thread-safe)."""
        if self.dead:
            raise BrokerSessionError(self.dead)
        with self._lock:
            due = self._s.expires_ns - self.cfg.refresh_before_min * 60e9
            if time.time_ns() < due:
                return self._s
            try:
                self._s = angel_session.refresh(self.cfg, self._s)
            except BrokerSessionError as e:
                self.dead = str(e)
                raise
            self.refreshes += 1
            log.info("Angel One session refreshed; it now lasts until %s", self._s.expires_ns)
            return self._s

    async def maintain(self, every_s: float = 30.0) -> None:
        """Refresh in the background (a quiet node keeps its session too)."""
        while not self.dead:
            await asyncio.sleep(every_s)
            try:
                await asyncio.to_thread(self.get)
            except BrokerSessionError as e:
                log.error("%s", e)
