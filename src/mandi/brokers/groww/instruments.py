"""Groww's instrument master: the public ``instrument.csv``, cached with its date
(:class:`~mandi.brokers.instruments.InstrumentCache`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx

from mandi.brokers.groww.wire import parse_instruments
from mandi.brokers.http import send
from mandi.brokers.instruments import InstrumentCache
from mandi.config import GrowwConfig
from mandi.core.errors import BrokerNetworkError
from mandi.model.instruments import AnyInstrument


def cache(cfg: GrowwConfig) -> InstrumentCache:
    return InstrumentCache(
        "groww", "Groww", cfg, "csv", lambda t: parse_instruments(t, cfg.exchanges)
    )


def download(cfg: GrowwConfig) -> str:
    """The instrument CSV (a public file: no session needed)."""
    url = cfg.instruments_url
    with httpx.Client(timeout=max(cfg.timeout_s, 60.0)) as http:
        r = send(http, "Groww", "instrument list", url, "GET", url)
    if r.status_code != 200:
        raise BrokerNetworkError(f"Groww instrument list: HTTP {r.status_code}", "", r.status_code)
    return r.text


def sync(cfg: GrowwConfig, day: dt.date) -> tuple[Path, list[AnyInstrument]]:
    return cache(cfg).sync(lambda: download(cfg), day)


def load(cfg: GrowwConfig, day: dt.date, reachable: bool = True) -> list[AnyInstrument]:
    return cache(cfg).load((lambda: download(cfg)) if reachable else None, day)
