"""ChainAssembler: latest quotes → chain snapshots per (underlying, expiry)."""

import datetime as dt
import math

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


# --- the columnar assembler against the reference -------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mandi.model.batches import TickBatch  # noqa: E402
from mandi.pipeline.chains import ChainColumns  # noqa: E402

EXP2 = dt.date(2026, 4, 28)


def wide_master(late=False):
    """Two expiries of NIFTY with a few strikes (``late``: one more strike, added later)."""
    opts = []
    strikes = [24200, 24250, 24300] + ([24350] if late else [])
    for e, base in ((EXP, 100), (EXP2, 200)):
        for i, k in enumerate(strikes):
            for j, t in enumerate(("CE", "PE")):
                opts.append(
                    Option(
                        base + 2 * i + j,
                        "NSE",
                        f"NIFTY{e:%y%m%d}{k}{t}",
                        "NIFTY",
                        "NFO-OPT",
                        65,
                        5,
                        1800,
                        underlying="NIFTY",
                        expiry=e,
                        strike=k * 100,
                        option_type=t,
                    )
                )
    return [Index(256265, "NSE", "NIFTY 50", "NIFTY 50", "INDICES"), *opts]


TOKENS = [256265, 999, *range(100, 108), *range(200, 208)]  # 999: not in the master
DAY_NS = 86_400 * 10**9


@st.composite
def chain_streams(draw):
    ops = []
    ts = T0
    for _ in range(draw(st.integers(1, 80))):
        kind = draw(st.sampled_from(["tick"] * 8 + ["snap", "ref", "late", "day"]))
        if kind == "tick":
            ts += draw(st.sampled_from([0, 10**6, 3 * 10**8]))
            token = draw(st.sampled_from(TOKENS))
            price = draw(st.integers(1, 5000)) * 5
            oi = draw(st.integers(0, 100)) * 65
            ops.append(
                (
                    "tick",
                    Tick(token, "NSE", ts, ts, price, oi * 3, 0, oi, price - 5, price + 5, 65, 130),
                )
            )
        elif kind == "day":
            ts += draw(st.sampled_from([DAY_NS, -DAY_NS // 2, 3600 * 10**9]))
        else:
            ops.append((kind, draw(st.sampled_from(TOKENS)), draw(st.integers(0, 50)) * 65, ts))
    return ops


@settings(max_examples=60, deadline=None)
@given(chain_streams(), st.integers(1, 6))
def test_columns_give_the_reference_snapshots(ops, per_batch):
    """ChainColumns (batches of up to ``per_batch`` ticks) and ChainAssembler (tick by tick)
    give equal snapshots: quotes, OI changes against the first OI of the IST day (or a reference
    set by hand, before or after the quote), day changes, contracts listed later, tokens that
    are no contract."""
    ref, col = ChainAssembler(wide_master(), "x"), ChainColumns(wide_master(), "x")
    pending: list[Tick] = []

    def flush():
        if pending:
            col.handle_batch(TickBatch.from_ticks(pending))
            pending.clear()

    for op in ops:
        if op[0] == "tick":
            ref.handle_tick(op[1])
            pending.append(op[1])
            if len(pending) >= per_batch:
                flush()
            continue
        flush()
        if op[0] == "snap":
            assert col.snapshots(op[3]) == ref.snapshots(op[3])
        elif op[0] == "ref":
            ref.set_oi_reference(op[1], op[2])
            col.set_oi_reference(op[1], op[2])
        else:
            ref.add_instruments(wide_master(late=True))
            col.add_instruments(wide_master(late=True))
    flush()
    assert col.snapshots(T0) == ref.snapshots(T0)


def test_frames_carry_the_matrix_rows():
    col = ChainColumns(wide_master(), "x")
    col.handle_batch(
        TickBatch.from_ticks(
            [tick(256265, 2421000), tick(100, 15000, oi=6500), tick(103, 900, oi=65)]
        )
    )
    (f,) = col.frames(T0)
    assert f.raw.shape == (3, 13) and f.underlying_price == 2421000
    assert f.raw[0, :7].tolist() == [2420000, 15000, 14995, 15005, 0, 6500, 0]
    assert math.isnan(f.raw[0, 7]) and f.raw[1, 7] == 900 and math.isnan(f.raw[2, 1])
    assert f.snapshot() is f.snapshot()  # built once
