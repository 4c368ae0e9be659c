"""IST trading calendar for NSE and BSE: sessions, holidays, special sessions and expiries.

Times are int nanoseconds UTC; IST is UTC+05:30 with no daylight saving, so conversions use a
fixed offset. Holidays and special sessions are data (``mandi/data/nse_fo_holidays.csv``), not code;
BSE follows the same list. Outside the years the file covers every weekday is a trading day.

Expiry rules (NSE circulars of 2025; see the README's market-conventions table):

* contracts expiring on or after 2025-09-01: NSE index and stock derivatives expire on **Tuesday**
  (NIFTY weekly + monthly on the last Tuesday; BANKNIFTY, FINNIFTY, MIDCPNIFTY, NIFTYNXT50 and
  stocks monthly only); BSE SENSEX/BANKEX on **Thursday**;
* before that NSE expired on Thursday and BSE on Tuesday;
* an expiry that falls on a non-trading day moves to the previous trading day (Tue 2026-04-14 →
  Mon 2026-04-13).
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from importlib import resources

from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import CalendarError

IST_OFFSET_NS = (5 * 3600 + 30 * 60) * NS_PER_SECOND
NS_PER_DAY = 86_400 * NS_PER_SECOND
_EPOCH = dt.date(1970, 1, 1)

PRE_OPEN_START = dt.time(9, 0)
PRE_OPEN_END = dt.time(9, 8)  # order entry closes; 09:08-09:15 is matching and buffer
MARKET_OPEN = dt.time(9, 15)
MARKET_CLOSE = dt.time(15, 30)
EXPIRY_TIME = MARKET_CLOSE  # options expire at the close, 15:30 IST
TUESDAY_REGIME_START = dt.date(2025, 9, 1)

TUESDAY, THURSDAY = 1, 3  # date.weekday()


class Phase(StrEnum):
    """Where a moment falls in the trading day."""

    CLOSED = "closed"
    PRE_OPEN = "pre_open"
    CONTINUOUS = "continuous"


def ist_date(ts_ns: int) -> dt.date:
    """The IST calendar date of a UTC-ns timestamp."""
    return _EPOCH + dt.timedelta(days=(ts_ns + IST_OFFSET_NS) // NS_PER_DAY)


def ist_datetime(ts_ns: int) -> dt.datetime:
    """A naive IST datetime for display and session rules."""
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=(ts_ns + IST_OFFSET_NS) // 1000)


def ist_ns(day: dt.date, at: dt.time = dt.time(0, 0)) -> int:
    """UTC nanoseconds of an IST wall-clock moment on ``day``."""
    days = (day - _EPOCH).days
    secs = at.hour * 3600 + at.minute * 60 + at.second
    return days * NS_PER_DAY + secs * NS_PER_SECOND + at.microsecond * 1000 - IST_OFFSET_NS


def parse_ist(text: str) -> int:
    """``"2026-04-13 09:15:00"`` (naive IST) → UTC ns."""
    d = dt.datetime.fromisoformat(text)
    return ist_ns(d.date(), d.time())


def session_anchor_ns(ts_ns: int) -> int:
    """09:15 IST on the IST date of ``ts_ns``: the anchor every candle bucket aligns to."""
    day = (ts_ns + IST_OFFSET_NS) // NS_PER_DAY
    return day * NS_PER_DAY + (9 * 3600 + 15 * 60) * NS_PER_SECOND - IST_OFFSET_NS


@dataclass(frozen=True, slots=True)
class Session:
    """One trading session (normal or special) in UTC ns."""

    date: dt.date
    open_ns: int
    close_ns: int
    pre_open_ns: int | None
    special: str = ""  # occasion, for special sessions


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    date: dt.date
    kind: str  # "closed" | "special"
    open: dt.time | None
    close: dt.time | None
    occasion: str


@lru_cache(maxsize=1)
def _default_entries() -> tuple[CalendarEntry, ...]:
    text = resources.files("mandi.data").joinpath("nse_fo_holidays.csv").read_text("utf-8")
    return tuple(parse_calendar_csv(text))


def parse_calendar_csv(text: str) -> list[CalendarEntry]:
    """Parse the holiday file (``date,kind,open,close,occasion``; ``#`` lines are comments)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    out = []
    for n, row in enumerate(csv.DictReader(lines), start=2):
        try:
            day = dt.date.fromisoformat(row["date"])
            kind = row["kind"].strip()
            if kind not in ("closed", "special"):
                raise ValueError(f"kind must be closed or special, got {kind!r}")
            o = dt.time.fromisoformat(row["open"]) if row.get("open") else None
            c = dt.time.fromisoformat(row["close"]) if row.get("close") else None
        except (KeyError, ValueError) as e:
            raise CalendarError(f"holiday file line {n}: {e}") from None
        out.append(CalendarEntry(day, kind, o, c, row.get("occasion", "")))
    return out


class ExchangeCalendar:
    """Sessions, holidays and expiries of one exchange (``"NSE"`` or ``"BSE"``)."""

    def __init__(self, exchange: str = "NSE", entries: tuple[CalendarEntry, ...] | None = None):
        if exchange not in ("NSE", "BSE"):
            raise CalendarError(f"unknown exchange {exchange!r}; use NSE or BSE")
        self.exchange = exchange
        self._entries = {
            e.date: e for e in (entries if entries is not None else _default_entries())
        }

    # --- days -------------------------------------------------------------------------------
    def is_trading_day(self, day: dt.date) -> bool:
        e = self._entries.get(day)
        if e is not None:
            return e.kind == "special"
        return day.weekday() < 5

    def holiday(self, day: dt.date) -> str | None:
        """The occasion if ``day`` is a listed holiday, else None."""
        e = self._entries.get(day)
        return e.occasion if e is not None and e.kind == "closed" else None

    def previous_trading_day(self, day: dt.date) -> dt.date:
        d = day - dt.timedelta(days=1)
        for _ in range(30):
            if self.is_trading_day(d):
                return d
            d -= dt.timedelta(days=1)
        raise CalendarError(f"no trading day within 30 days before {day}")

    def next_trading_day(self, day: dt.date) -> dt.date:
        d = day + dt.timedelta(days=1)
        for _ in range(30):
            if self.is_trading_day(d):
                return d
            d += dt.timedelta(days=1)
        raise CalendarError(f"no trading day within 30 days after {day}")

    def trading_days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        """Trading days in ``[start, end]``."""
        n = (end - start).days + 1
        days = (start + dt.timedelta(days=i) for i in range(max(n, 0)))
        return [d for d in days if self.is_trading_day(d)]

    # --- sessions -----------------------------------------------------------------------------
    def session(self, day: dt.date) -> Session | None:
        """The session on ``day`` or None if the market is closed."""
        if not self.is_trading_day(day):
            return None
        e = self._entries.get(day)
        if e is not None and e.kind == "special":
            o, c = e.open or MARKET_OPEN, e.close or MARKET_CLOSE
            pre = ist_ns(day, PRE_OPEN_START) if o == MARKET_OPEN else None
            return Session(day, ist_ns(day, o), ist_ns(day, c), pre, e.occasion)
        return Session(
            day, ist_ns(day, MARKET_OPEN), ist_ns(day, MARKET_CLOSE), ist_ns(day, PRE_OPEN_START)
        )

    def session_at(self, ts_ns: int) -> Session | None:
        return self.session(ist_date(ts_ns))

    def phase(self, ts_ns: int) -> Phase:
        s = self.session_at(ts_ns)
        if s is None:
            return Phase.CLOSED
        if s.open_ns <= ts_ns < s.close_ns:
            return Phase.CONTINUOUS
        if s.pre_open_ns is not None and s.pre_open_ns <= ts_ns < s.open_ns:
            return Phase.PRE_OPEN
        return Phase.CLOSED

    def is_open(self, ts_ns: int) -> bool:
        """True during the continuous session."""
        return self.phase(ts_ns) is Phase.CONTINUOUS

    # --- expiries -----------------------------------------------------------------------------
    def expiry_weekday(self, on: dt.date) -> int:
        """Weekday of derivative expiries for contracts expiring around ``on``."""
        tuesday_regime = on >= TUESDAY_REGIME_START
        if self.exchange == "NSE":
            return TUESDAY if tuesday_regime else THURSDAY
        return THURSDAY if tuesday_regime else TUESDAY

    def _roll_back(self, day: dt.date) -> dt.date:
        return day if self.is_trading_day(day) else self.previous_trading_day(day)

    def monthly_expiry(self, year: int, month: int) -> dt.date:
        """Last expiry-weekday of the month, moved back to a trading day if needed."""
        nxt = dt.date(year + month // 12, month % 12 + 1, 1)
        last = nxt - dt.timedelta(days=1)
        wd = self.expiry_weekday(last)
        day = last - dt.timedelta(days=(last.weekday() - wd) % 7)
        return self._roll_back(day)

    def weekly_expiries(self, start: dt.date, end: dt.date) -> list[dt.date]:
        """Every weekly expiry in ``[start, end]`` (after the holiday roll)."""
        out: list[dt.date] = []
        d = start - dt.timedelta(days=7)
        while d <= end + dt.timedelta(days=7):
            # the first day from d that is an expiry weekday under its own date's regime
            nominal = next(
                c
                for c in (d + dt.timedelta(days=i) for i in range(7))
                if c.weekday() == self.expiry_weekday(c)
            )
            e = self._roll_back(nominal)
            if start <= e <= end and (not out or out[-1] != e):
                out.append(e)
            d = nominal + dt.timedelta(days=1)
        return out

    def expiries(self, underlying: str, on: dt.date, count: int = 4) -> list[dt.date]:
        """The next ``count`` expiries of ``underlying``'s options on or after ``on``."""
        weekly = underlying.upper() in WEEKLY_UNDERLYINGS[self.exchange]
        out: list[dt.date] = []
        if weekly:
            span = on
            while len(out) < count:
                out += [
                    e
                    for e in self.weekly_expiries(span, span + dt.timedelta(days=62))
                    if e not in out
                ]
                span += dt.timedelta(days=63)
            return sorted(out)[:count]
        y, m = on.year, on.month
        while len(out) < count:
            e = self.monthly_expiry(y, m)
            if e >= on:
                out.append(e)
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out

    def expiry_ns(self, day: dt.date) -> int:
        """The exact expiry moment (15:30 IST) of contracts expiring on ``day``."""
        return ist_ns(day, EXPIRY_TIME)


# Since Nov 2024 SEBI allows one weekly index expiry per exchange.
WEEKLY_UNDERLYINGS: dict[str, frozenset[str]] = {
    "NSE": frozenset({"NIFTY"}),
    "BSE": frozenset({"SENSEX"}),
}


@lru_cache(maxsize=4)
def calendar(exchange: str = "NSE") -> ExchangeCalendar:
    """The shared calendar of ``exchange`` built from the packaged holiday file."""
    return ExchangeCalendar(exchange)
