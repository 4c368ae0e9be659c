import datetime as dt

import pytest

from mandi.core.calendar import (
    ExchangeCalendar,
    Phase,
    calendar,
    ist_date,
    ist_datetime,
    parse_calendar_csv,
    parse_ist,
    session_anchor_ns,
)
from mandi.core.errors import CalendarError

D = dt.date
NSE = calendar("NSE")
BSE = calendar("BSE")


@pytest.mark.parametrize(
    "day",
    [
        "2025-08-15",
        "2026-01-26",
        "2026-03-03",
        "2026-04-14",
        "2026-11-24",
        "2026-12-25",
        "2026-03-31",
    ],
)
def test_listed_holidays_are_closed(day):
    d = D.fromisoformat(day)
    assert not NSE.is_trading_day(d)
    assert NSE.session(d) is None
    assert NSE.holiday(d)


def test_weekends_closed_and_weekdays_open():
    assert not NSE.is_trading_day(D(2026, 4, 11))  # Saturday
    assert NSE.is_trading_day(D(2026, 4, 13))
    assert NSE.holiday(D(2026, 4, 13)) is None


def test_special_sessions():
    budget = NSE.session(D(2026, 2, 1))  # a Sunday
    assert budget is not None and "Budget" in budget.special
    assert ist_datetime(budget.open_ns).time() == dt.time(9, 15)
    muhurat = NSE.session(D(2025, 10, 21))
    assert muhurat is not None
    assert ist_datetime(muhurat.open_ns).time() == dt.time(13, 45)
    assert ist_datetime(muhurat.close_ns).time() == dt.time(14, 45)


def test_phases_of_a_normal_day():
    assert NSE.phase(parse_ist("2026-04-13 08:59:59")) is Phase.CLOSED
    assert NSE.phase(parse_ist("2026-04-13 09:00:00")) is Phase.PRE_OPEN
    assert NSE.phase(parse_ist("2026-04-13 09:15:00")) is Phase.CONTINUOUS
    assert NSE.phase(parse_ist("2026-04-13 15:29:59")) is Phase.CONTINUOUS
    assert NSE.phase(parse_ist("2026-04-13 15:30:00")) is Phase.CLOSED
    assert not NSE.is_open(parse_ist("2026-04-14 10:00:00"))  # holiday


def test_the_holiday_file_matches_real_nifty_sessions(data_dir):
    """Every day with bars in the real NIFTY 3-min year is a trading day, and every weekday
    without bars is a listed holiday."""
    days = set()
    with open(data_dir / "NIFTY50_3min_2025-07-23_to_2026-08-04.csv") as f:
        next(f)
        for line in f:
            days.add(D.fromisoformat(line[:10]))
    assert all(NSE.is_trading_day(d) for d in days)
    first, last = min(days), max(days)
    for d in NSE.trading_days(first, last):
        assert d in days, d


def test_nifty_weekly_expiries_tuesday_with_holiday_roll():
    assert NSE.expiries("NIFTY", D(2026, 4, 1), 5) == [
        D(2026, 4, 7),
        D(2026, 4, 13),
        D(2026, 4, 21),
        D(2026, 4, 28),
        D(2026, 5, 5),
    ]
    assert D(2026, 4, 13).weekday() == 0  # the Monday expiry caused by the 14-Apr holiday


def test_monthly_expiry_last_tuesday_rolled_back():
    assert NSE.monthly_expiry(2026, 3) == D(2026, 3, 30)  # 31-Mar holiday
    assert NSE.monthly_expiry(2026, 5) == D(2026, 5, 26)
    assert NSE.expiries("BANKNIFTY", D(2026, 5, 1), 3) == [
        D(2026, 5, 26),
        D(2026, 6, 30),
        D(2026, 7, 28),
    ]


def test_thursday_regime_before_september_2025():
    assert NSE.expiries("NIFTY", D(2025, 7, 16), 2) == [D(2025, 7, 17), D(2025, 7, 24)]
    assert NSE.expiries("NIFTY", D(2025, 8, 29), 2) == [D(2025, 9, 2), D(2025, 9, 9)]


def test_bse_sensex_thursday():
    assert BSE.expiries("SENSEX", D(2026, 7, 10), 2) == [D(2026, 7, 16), D(2026, 7, 23)]


def test_expiry_moment_is_1530_ist():
    assert ist_datetime(NSE.expiry_ns(D(2026, 7, 14))) == dt.datetime(2026, 7, 14, 15, 30)


def test_ist_conversions_and_anchor():
    ts = parse_ist("2026-04-13 00:30:00")
    assert ist_date(ts) == D(2026, 4, 13)
    assert ist_datetime(session_anchor_ns(ts)) == dt.datetime(2026, 4, 13, 9, 15)


def test_bad_calendar_file_and_exchange():
    with pytest.raises(CalendarError, match="line 2"):
        parse_calendar_csv("date,kind,open,close,occasion\n2026-01-01,maybe,,,x\n")
    with pytest.raises(CalendarError, match="MCX"):
        ExchangeCalendar("MCX")
