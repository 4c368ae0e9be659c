"""The instruments ``mandi run`` trades, for commands that run beside it (``mandi instruments
search``): the simulator's contracts of the day the database's simulation is on — or, for a
database without one, of the day a new ``mandi run`` would start."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from mandi.core.calendar import calendar, ist_date
from mandi.core.errors import MandiError
from mandi.model.instruments import AnyInstrument


def sim_day(cfg: Any, today: dt.date | None = None) -> dt.date:
    """The simulated day of ``cfg.store.db`` (of its newest stored second, when it holds a
    simulation), else ``sim.date`` or the latest trading day."""
    from mandi.feeds.sim import latest_trading_day
    from mandi.stores.history import last_candle_bucket
    from mandi.stores.sqlite import connect, get_meta

    if os.path.exists(cfg.store.db):
        try:
            con = connect(cfg.store.db, readonly=True)
            try:
                last = last_candle_bucket(con, 1) if get_meta(con, "sim.identity") else None
            finally:
                con.close()
        except (MandiError, Exception):  # no tables yet, or not a mandi database
            last = None
        if last is not None:
            return ist_date(last)
    return cfg.sim.date or latest_trading_day(calendar("NSE"), today or dt.date.today())


def sim_instruments(cfg: Any, day: dt.date | None = None) -> tuple[dt.date, list[AnyInstrument]]:
    """The simulator's instruments (indices, stocks, every listed option) on ``day``."""
    from mandi.core.errors import ConfigError
    from mandi.feeds.sim import STOCKS, UNDERLYINGS, day_listing

    day = day or sim_day(cfg)
    cal = calendar("NSE")
    if not cal.is_trading_day(day):
        day = cal.previous_trading_day(day)
    for u in cfg.sim.underlyings:
        if u not in UNDERLYINGS:
            raise ConfigError("sim.underlyings", u, f"unknown; choose from {sorted(UNDERLYINGS)}")
    for st in cfg.sim.stocks:
        if st not in STOCKS:
            raise ConfigError("sim.stocks", st, f"unknown; choose from {sorted(STOCKS)}")
    indices, contracts, _ = day_listing(cfg.sim, day)
    return day, [*indices, *contracts]


KINDS = {"INDEX": "Index", "EQ": "Equity", "FUT": "Future", "CE": "Option", "PE": "Option"}


def search(
    instruments: list[AnyInstrument],
    words: list[str],
    underlying: str | None = None,
    expiry: str | None = None,
    strike: float | None = None,
    kind: str | None = None,
    exchange: str | None = None,
    today: dt.date | None = None,
) -> list[AnyInstrument]:
    """Instruments matching every criterion. Each free word is read for what it is: ``CE`` /
    ``PE`` / ``FUT`` / ``EQ`` / ``INDEX`` a type, a number a strike in rupees, ``YYYY-MM-DD`` an
    expiry, the name of an underlying that underlying exactly (``NIFTY`` is not BANKNIFTY), and
    anything else a piece of the symbol or name. ``expiry`` may also be ``nearest`` (the first
    expiry on or after ``today``) or ``next``. Sorted by underlying, expiry, strike, type."""
    names = {getattr(i, "underlying", "") or "" for i in instruments} - {""}
    text: list[str] = []
    for w in words:
        u = w.upper()
        if u in KINDS:
            kind = kind or u
        elif _number(u) is not None:
            strike = strike if strike is not None else _number(u)
        elif _date(w) is not None:
            expiry = expiry or w
        elif u in names:
            underlying = underlying or u
        else:
            text.append(u)
    out = []
    for i in instruments:
        t = type(i).__name__
        if kind is not None:
            k = kind.upper()
            if KINDS.get(k) != t or (t == "Option" and getattr(i, "option_type", "") != k):
                continue
        if exchange and i.exchange != exchange.upper():
            continue
        if underlying and (getattr(i, "underlying", "") or i.symbol) != underlying.upper():
            continue
        if strike is not None and getattr(i, "strike", None) != round(strike * 100):
            continue
        if any(w not in i.symbol.upper() and w not in i.name.upper() for w in text):
            continue
        out.append(i)
    if expiry:
        out = _by_expiry(out, expiry, today)
    out.sort(
        key=lambda i: (
            getattr(i, "underlying", "") or i.symbol,
            getattr(i, "expiry", None) or dt.date.min,
            getattr(i, "strike", 0),
            getattr(i, "option_type", ""),
            i.symbol,
        )
    )
    return out


def _by_expiry(out: list[AnyInstrument], expiry: str, today: dt.date | None) -> list[AnyInstrument]:
    key = expiry.lower()
    if key in ("nearest", "next"):
        day = today or dt.date.today()
        exps = sorted({e for i in out if (e := getattr(i, "expiry", None)) and e >= day})
        pick = exps[0 if key == "nearest" else 1] if len(exps) > (key == "next") else None
        return [i for i in out if getattr(i, "expiry", None) == pick]
    d = _date(expiry)
    if d is None:
        raise MandiError(f"--expiry {expiry!r}: use YYYY-MM-DD, nearest or next")
    return [i for i in out if getattr(i, "expiry", None) == d]


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if v > 0 else None


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def as_row(i: AnyInstrument) -> dict[str, Any]:
    """One instrument for ``--json`` (prices and strikes in rupees)."""
    exp = getattr(i, "expiry", None)
    return {
        "symbol": i.symbol,
        "exchange": i.exchange,
        "type": getattr(i, "option_type", None) or _kind_name(i),
        "underlying": getattr(i, "underlying", "") or None,
        "expiry": exp.isoformat() if exp else None,
        "strike": getattr(i, "strike", 0) / 100 if hasattr(i, "strike") else None,
        "lot_size": i.lot_size,
        "tick_size": i.tick_size / 100,
        "freeze_qty": i.freeze_qty,
        "token": i.token,
        "name": i.name,
    }


def _kind_name(i: AnyInstrument) -> str:
    return {"Index": "INDEX", "Equity": "EQ", "Future": "FUT"}.get(type(i).__name__, "?")
