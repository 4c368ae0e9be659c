"""A broker's instrument master, cached on disk with its date (Kite's dump, Angel One's scrip
master).

``mandi instruments sync NAME`` (and every start of a broker feed that finds no master of the
day) downloads it, checks that it parses, and stores ``instruments-YYYY-MM-DD.<ext>`` (IST date)
in the cache directory (``broker.NAME.cache_dir``). When today's master is missing and the
broker cannot be reached, start-up stops with a clear error naming the stale cache's date —
never trading on yesterday's contracts silently. Masters older than a week are removed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mandi.brokers.session import cache_dir
from mandi.core.errors import BrokerError, InstrumentError
from mandi.model.instruments import AnyInstrument

log = logging.getLogger(__name__)

Parse = Callable[[str], list[AnyInstrument]]


class InstrumentCache:
    """The dated instrument masters of one broker."""

    def __init__(self, broker: str, title: str, cfg: Any, ext: str, parse: Parse) -> None:
        self.broker, self.title, self.cfg, self.ext, self.parse = broker, title, cfg, ext, parse

    @property
    def directory(self) -> Path:
        return Path(self.cfg.cache_dir) if self.cfg.cache_dir else cache_dir(self.broker)

    def path(self, day: dt.date) -> Path:
        return self.directory / f"instruments-{day.isoformat()}.{self.ext}"

    def latest(self) -> tuple[dt.date, Path] | None:
        found = sorted(self.directory.glob(f"instruments-*.{self.ext}"))
        if not found:
            return None
        p = found[-1]
        return dt.date.fromisoformat(p.stem.removeprefix("instruments-")), p

    def sync(self, download: Callable[[], str], day: dt.date) -> tuple[Path, list[AnyInstrument]]:
        """Download, check (it must parse and hold instruments), and store the day's master."""
        text = download()
        instruments = self.parse(text)
        if not instruments:
            raise InstrumentError(
                f"{self.title}'s instrument master holds no instrument of the exchanges "
                f"{', '.join(self.cfg.exchanges)}"
            )
        path = self.path(day)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        cutoff = f"instruments-{(day - dt.timedelta(days=7)).isoformat()}"
        for old in self.directory.glob(f"instruments-*.{self.ext}"):
            if old != path and old.stem < cutoff:
                old.unlink(missing_ok=True)
        log.info("%s instruments of %s: %d stored in %s", self.title, day, len(instruments), path)
        return path, instruments

    def load(self, download: Callable[[], str] | None, day: dt.date) -> list[AnyInstrument]:
        """Today's instruments: from the cache, else downloaded (see the module docstring)."""
        path = self.path(day)
        if path.exists():
            return self.parse(path.read_text(encoding="utf-8"))
        held = self.latest()
        try:
            if download is None:
                raise BrokerError(f"no {self.title} session")
            return self.sync(download, day)[1]
        except (BrokerError, OSError) as e:
            have = f"the cached dump is from {held[0]}" if held else "there is no cached dump"
            raise InstrumentError(
                f"{self.title} instruments for {day} are needed but {have} and {self.title} is "
                f"unreachable ({e}); run `mandi instruments sync {self.broker}` once it can be "
                "reached"
            ) from None
