"""ChainAssembler: latest quotes → chain snapshots per (underlying, expiry)."""

import datetime as dt

from mandi.core.calendar import parse_ist
from mandi.model.instruments import Index, InstrumentMaster, Option
from mandi.model.market import Tick
from mandi.pipeline.chains import ChainAssembler

EXP = dt.date(2026, 4, 21)
T0 = parse_ist("2026-04-13 10:00:00")


def master():
    opts = [
        Option(
            100 + i,
            "NSE",
            f"NIFTY{k}{t}",
            "NIFTY",
            "NFO-OPT",
            65,
            5,
            1800,
            underlying="NIFTY",
            expiry=EXP,
            strike=k * 100,
            option_type=t,
        )
        for i, (k, t) in enumerate([(24200, "CE"), (24200, "PE"), (24250, "CE")])
    ]
    return InstrumentMaster([Index(256265, "NSE", "NIFTY 50", "NIFTY 50", "INDICES"), *opts])


def tick(token, price, oi=0, ts=T0, volume=0):
    return Tick(token, "NSE", ts, ts, price, volume, 0, oi, price - 5, price + 5, 65, 130)


def test_snapshot_rows_quotes_and_underlying_alias():
    a = ChainAssembler(master(), source="test")
    assert a.snapshots(T0) == []  # nothing seen yet
    a.handle_tick(tick(100, 15000, oi=6500))
    assert a.snapshots(T0) == []  # no underlying price yet
    a.handle_tick(tick(256265, 2421000))  # "NIFTY 50" resolves as NIFTY's index
    a.handle_tick(tick(101, 12000, oi=1300))
    a.handle_tick(tick(102, 11000, oi=650, volume=650))
    (s,) = a.snapshots(T0 + 10**9)
    assert (s.underlying, s.expiry, s.underlying_price, s.lot_size, s.source) == (
        "NIFTY",
        EXP,
        2421000,
        65,
        "test",
    )
    assert [r.strike for r in s.rows] == [2420000, 2425000]
    assert (s.rows[0].call.ltp, s.rows[0].put.ltp, s.rows[1].put) == (15000, 12000, None)
    assert s.rows[1].call.volume == 650 and s.rows[0].call.bid == 14995


def test_every_listed_strike_is_a_row_from_the_first_snapshot():
    a = ChainAssembler(master())
    a.handle_tick(tick(256265, 2421000))
    a.handle_tick(tick(101, 12000, oi=1300))  # only the 24200 put has traded
    (s,) = a.snapshots(T0)
    assert [r.strike for r in s.rows] == [2420000, 2425000]  # 24250 listed, not yet quoted
    assert s.rows[1].call is None and s.rows[1].put is None


def test_oi_change_from_the_first_reading_of_the_day_and_reset_next_day():
    a = ChainAssembler(master())
    a.handle_tick(tick(256265, 2421000))
    a.handle_tick(tick(100, 15000, oi=6500))
    a.handle_tick(tick(100, 15100, oi=7800, ts=T0 + 5))
    (s,) = a.snapshots(T0 + 10)
    assert s.rows[0].call.oi_change == 1300
    a.set_oi_reference(100, 5200)  # e.g. yesterday's close from a broker
    (s,) = a.snapshots(T0 + 11)
    assert s.rows[0].call.oi_change == 2600
    nxt = T0 + 86_400 * 10**9
    a.handle_tick(tick(256265, 2430000, ts=nxt))
    a.handle_tick(tick(100, 16000, oi=9100, ts=nxt))
    (s,) = a.snapshots(nxt)
    assert s.rows[0].call.oi_change == 0  # measured from today's first reading
    assert s.rows[1].call is None  # yesterday's quotes are gone
