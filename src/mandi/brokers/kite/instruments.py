"""Kite's instrument master: the daily dump, cached on disk with its date.

``mandi instruments sync kite`` (and every start of a Kite feed that finds no dump of the day)
downloads ``GET /instruments``, keeps the configured exchanges, merges NSE's freeze quantities
(``broker.kite.freeze_file``) and stores ``instruments-YYYY-MM-DD.csv`` (IST date) in the cache
directory. When today's dump is missing and Kite cannot be reached, start-up stops with a clear
error naming the stale cache's date — never trading on yesterday's contracts silently.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from mandi.brokers.kite.rest import KiteRest
from mandi.brokers.kite.wire import parse_freeze_csv, parse_instruments
from mandi.brokers.session import cache_dir
from mandi.config import KiteConfig
from mandi.core.errors import BrokerError, ConfigError, InstrumentError
from mandi.model.instruments import AnyInstrument

log = logging.getLogger(__name__)


def dump_dir(cfg: KiteConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else cache_dir("kite")


def dump_path(cfg: KiteConfig, day: dt.date) -> Path:
    return dump_dir(cfg) / f"instruments-{day.isoformat()}.csv"


def latest_dump(cfg: KiteConfig) -> tuple[dt.date, Path] | None:
    found = sorted(dump_dir(cfg).glob("instruments-*.csv"))
    if not found:
        return None
    p = found[-1]
    return dt.date.fromisoformat(p.stem.removeprefix("instruments-")), p


def freeze_quantities(cfg: KiteConfig) -> dict[str, int]:
    if not cfg.freeze_file:
        return {}
    try:
        return parse_freeze_csv(Path(cfg.freeze_file).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(
            "broker.kite.freeze_file", cfg.freeze_file, f"cannot read it ({e})"
        ) from None


def sync(cfg: KiteConfig, rest: KiteRest, day: dt.date) -> tuple[Path, list[AnyInstrument]]:
    """Download, check (it must parse), and store the day's dump; returns its path and the
    instruments."""
    text = rest.instruments()
    instruments = parse_instruments(text, freeze_quantities(cfg), cfg.exchanges)
    if not instruments:
        raise InstrumentError(
            "Kite's instrument dump holds no instrument of the exchanges "
            f"{', '.join(cfg.exchanges)}"
        )
    path = dump_path(cfg, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    for old in dump_dir(cfg).glob("instruments-*.csv"):
        if old != path and old.stem < f"instruments-{(day - dt.timedelta(days=7)).isoformat()}":
            old.unlink(missing_ok=True)
    log.info("Kite instruments of %s: %d stored in %s", day, len(instruments), path)
    return path, instruments


def load(cfg: KiteConfig, rest: KiteRest | None, day: dt.date) -> list[AnyInstrument]:
    """Today's instruments: from the cache, else downloaded (see the module docstring)."""
    path = dump_path(cfg, day)
    if path.exists():
        return parse_instruments(
            path.read_text(encoding="utf-8"), freeze_quantities(cfg), cfg.exchanges
        )
    held = latest_dump(cfg)
    try:
        if rest is None:
            raise BrokerError("no Kite session")
        return sync(cfg, rest, day)[1]
    except BrokerError as e:
        have = f"the cached dump is from {held[0]}" if held else "there is no cached dump"
        raise InstrumentError(
            f"Kite instruments for {day} are needed but {have} and Kite is unreachable ({e}); "
            "run `mandi instruments sync kite` once Kite can be reached"
        ) from None
