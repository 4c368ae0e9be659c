"""Angel One's instrument master: the scrip master JSON, cached with its date
(:class:`~mandi.brokers.instruments.InstrumentCache`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx

from mandi.brokers.angel.wire import parse_scrip_master
from mandi.brokers.http import send
from mandi.brokers.instruments import InstrumentCache
from mandi.config import AngelConfig
from mandi.core.errors import BrokerNetworkError
from mandi.model.instruments import AnyInstrument


def cache(cfg: AngelConfig) -> InstrumentCache:
    return InstrumentCache(
        "angel", "Angel One", cfg, "json", lambda t: parse_scrip_master(t, cfg.exchanges)
    )


def download(cfg: AngelConfig) -> str:
    """The scrip master (a public file: no session needed)."""
    with httpx.Client(timeout=max(cfg.timeout_s, 60.0)) as http:
        r = send(
            http, "Angel One", "scrip master", cfg.scrip_master_url, "GET", cfg.scrip_master_url
        )
    if r.status_code != 200:
        raise BrokerNetworkError(f"Angel One scrip master: HTTP {r.status_code}", "", r.status_code)
    return r.text


def sync(cfg: AngelConfig, day: dt.date) -> tuple[Path, list[AnyInstrument]]:
    return cache(cfg).sync(lambda: download(cfg), day)


def load(cfg: AngelConfig, day: dt.date, reachable: bool = True) -> list[AnyInstrument]:
    return cache(cfg).load((lambda: download(cfg)) if reachable else None, day)
