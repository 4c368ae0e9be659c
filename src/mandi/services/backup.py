"""The daily backup of ``mandi run``: a copy of the SQLite database every day at
``backup.daily_at`` (IST, wall clock), taken in a worker thread while the node keeps writing
(see :mod:`mandi.stores.backup`); a day that already has a backup is skipped, so restarts do not
multiply them. Success and failure are system events (``system:backup``,
``system:backup_failed``), which the notifiers pass on."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from mandi.core.calendar import IST_OFFSET_NS, ist_date
from mandi.core.errors import MandiError
from mandi.stores.backup import backup, list_backups

if TYPE_CHECKING:
    from mandi.services.context import NodeContext

log = logging.getLogger(__name__)
IST = dt.timezone(dt.timedelta(seconds=IST_OFFSET_NS // 1_000_000_000))


def next_run(now: dt.datetime, at: dt.time) -> dt.datetime:
    """The next ``at`` (IST) strictly after ``now``."""
    local = now.astimezone(IST)
    due = local.replace(hour=at.hour, minute=at.minute, second=at.second, microsecond=0)
    if due <= local:
        due += dt.timedelta(days=1)
    return due


class BackupLayer:
    """Schedules the daily backup inside ``mandi run``."""

    name = "backup"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.taken = 0
        self._ctx: NodeContext | None = None

    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx

    def tasks(self) -> list[Coroutine[Any, Any, Any]]:
        return [self._daily()] if self.cfg.backup.daily_at else []

    def _has_today(self) -> bool:
        today = ist_date(time.time_ns())
        b = self.cfg.backup
        return any(
            ist_date(int(x.created.timestamp() * 1e9)) == today
            for x in list_backups(self.cfg.store.db, b.dir)
        )

    async def _daily(self) -> None:
        at = dt.time.fromisoformat(self.cfg.backup.daily_at)
        while True:
            due = next_run(dt.datetime.now(dt.UTC), at)
            await asyncio.sleep(max(1.0, (due - dt.datetime.now(dt.UTC)).total_seconds()))
            if not self._has_today():
                await self.run_once()

    async def run_once(self) -> Any:
        """Take a backup now (in a worker thread); returns its info, or None on failure."""
        b, ctx = self.cfg.backup, self._ctx
        try:
            info = await asyncio.to_thread(backup, self.cfg.store.db, b.dir, b.keep)
        except MandiError as e:
            log.error("daily backup failed: %s", e)
            if ctx is not None:
                ctx.event("backup_failed", f"the daily database backup failed: {e}", "ERROR")
            return None
        self.taken += 1
        log.info(
            "backup: %s (%.1f MB in %.1f s; %d older removed)",
            info.path,
            info.size_bytes / 1e6,
            info.seconds,
            len(info.deleted),
        )
        if ctx is not None:
            ctx.event(
                "backup",
                f"database backed up to {info.path} ({info.size_bytes / 1e6:.1f} MB)",
                path=info.path,
                size_bytes=info.size_bytes,
            )
        return info

    def close(self) -> None:
        pass
