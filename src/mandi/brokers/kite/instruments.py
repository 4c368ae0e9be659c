"""Kite's instrument master: the daily dump (CSV), cached with its date
(:class:`~mandi.brokers.instruments.InstrumentCache`), NSE's freeze quantities merged
(``broker.kite.freeze_file``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from mandi.brokers.instruments import InstrumentCache
from mandi.brokers.kite.rest import KiteRest
from mandi.brokers.kite.wire import parse_freeze_csv, parse_instruments
from mandi.config import KiteConfig
from mandi.core.errors import ConfigError
from mandi.model.instruments import AnyInstrument


def freeze_quantities(cfg: KiteConfig) -> dict[str, int]:
    if not cfg.freeze_file:
        return {}
    try:
        return parse_freeze_csv(Path(cfg.freeze_file).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(
            "broker.kite.freeze_file", cfg.freeze_file, f"cannot read it ({e})"
        ) from None


def cache(cfg: KiteConfig) -> InstrumentCache:
    return InstrumentCache(
        "kite",
        "Kite",
        cfg,
        "csv",
        lambda text: parse_instruments(text, freeze_quantities(cfg), cfg.exchanges),
    )


def dump_path(cfg: KiteConfig, day: dt.date) -> Path:
    return cache(cfg).path(day)


def sync(cfg: KiteConfig, rest: KiteRest, day: dt.date) -> tuple[Path, list[AnyInstrument]]:
    """Download, check and store the day's dump; returns its path and the instruments."""
    return cache(cfg).sync(rest.instruments, day)


def load(cfg: KiteConfig, rest: KiteRest | None, day: dt.date) -> list[AnyInstrument]:
    """Today's instruments: from the cache, else downloaded."""
    return cache(cfg).load(rest.instruments if rest is not None else None, day)
