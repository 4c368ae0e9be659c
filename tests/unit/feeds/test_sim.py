"""The simulated exchange: deterministic, seekable, calendar-correct, Black-Scholes-consistent."""

import datetime as dt
import itertools

import numpy as np
import pytest

from mandi.core.calendar import calendar, ist_datetime
from mandi.core.errors import ConfigError
from mandi.feeds.sim import RISK_FREE_RATE, SimConfig, SimExchange, smile
from mandi.model.instruments import InstrumentMaster, Option
from mandi.options import bs_price

DAY = dt.date(2026, 4, 13)


def minutes(ex, n):
    out = []
    for _ in range(n):
        out += ex._chunk(emit=True)
    return out


def test_same_seed_same_market_and_other_seed_differs():
    a = minutes(SimExchange(SimConfig(seed=7), DAY), 2)
    b = minutes(SimExchange(SimConfig(seed=7), DAY), 2)
    c = minutes(SimExchange(SimConfig(seed=8), DAY), 2)
    assert a == b
    assert a != c
    assert [t.ts_event for t in a] == sorted(t.ts_event for t in a)


def test_seek_equals_emitting_and_discarding():
    direct = SimExchange(SimConfig(), DAY)
    minutes(direct, 5)
    seeked = SimExchange(SimConfig(), DAY)
    seeked.seek(seeked.open_ns + 5 * 60 * 10**9 + 7)
    assert minutes(direct, 1) == minutes(seeked, 1)


def test_chain_layout_follows_the_calendar():
    ex = SimExchange(SimConfig(strikes_each_side=20), DAY)
    assert ex.expiries["NIFTY"] == [
        dt.date(2026, 4, 13),
        dt.date(2026, 4, 21),
        dt.date(2026, 4, 28),
    ]
    assert ex.expiries["SENSEX"][0].weekday() == 3  # BSE: Thursday
    assert ex.expiries["BANKNIFTY"] == [dt.date(2026, 4, 28), dt.date(2026, 5, 26)]
    master = InstrumentMaster(ex.instruments)
    opts = master.options("NIFTY", dt.date(2026, 4, 21))
    strikes = sorted({o.strike for o in opts})
    assert len(strikes) == 41 and len(opts) == 82
    assert {b - a for a, b in itertools.pairwise(strikes)} == {5000}  # 50 points
    assert all(o.lot_size == 65 and o.tick_size == 5 for o in opts)
    assert master.by_symbol("NIFTY26APR24200CE").strike == 2_420_000  # monthly symbol


def test_option_ticks_are_black_scholes_prices_at_the_smile():
    ex = SimExchange(SimConfig(), DAY)
    ticks = minutes(ex, 1)
    by_token = {c.token: (j, c) for j, c in enumerate(ex.contracts)}
    checked = 0
    for t in ticks:
        if t.token not in by_token:
            continue
        _, c = by_token[t.token]
        assert isinstance(c, Option) and t.price % 5 == 0 and t.price >= 5
        assert t.bid <= t.price <= t.ask and t.oi >= 0 and t.oi % c.lot_size == 0
        checked += 1
    assert checked > 1000
    # the last priced state reproduces from the public pricer and smile
    spot = ex._u_price[ex._c_under]
    t_years = (ex._c_expiry_ns - (ex.open_ns + 60 * 10**9)) / (365 * 86400 * 1e9)
    iv = smile(ex._atm_vol[ex._c_under], spot, ex._c_strike)
    px = bs_price(spot, ex._c_strike, t_years, RISK_FREE_RATE, iv, ex._c_call)
    expect = np.maximum(np.round(px * 100 / 5) * 5, 5)
    assert np.array_equal(expect.astype(np.int64), ex._c_price)


def test_volumes_are_cumulative_and_indices_flat():
    ex = SimExchange(SimConfig(), DAY)
    last: dict[int, int] = {}
    for t in minutes(ex, 3):
        assert t.volume >= last.get(t.token, 0)
        last[t.token] = t.volume
        if t.token == 256265:
            assert t.volume == 0
    assert ist_datetime(ex.open_ns).time() == dt.time(9, 15)


def test_session_ends_at_the_close_and_rolls_to_the_next_day():
    ex = SimExchange(SimConfig(), dt.date(2025, 10, 21))  # Muhurat: 13:45-14:45
    assert ex.minutes_in_session == 60
    ticks = [t for m in ex.ticks() for t in m]
    assert max(t.ts_event for t in ticks) < ex.close_ns
    assert ex.next_day() == calendar("NSE").next_trading_day(dt.date(2025, 10, 21))


@pytest.mark.parametrize(
    ("field", "value"), [("underlyings", ("NOPE",)), ("step_ms", 300), ("stocks", ("ACME",))]
)
def test_bad_config_names_the_key(field, value):
    with pytest.raises(ConfigError, match=field):
        SimExchange(SimConfig(**{field: value}), DAY)


def test_a_holiday_is_not_a_sim_date():
    with pytest.raises(ConfigError, match="trading day"):
        SimExchange(SimConfig(), dt.date(2026, 4, 14))


def _collect(feed, columnar):
    import asyncio

    async def go():
        out = []
        source = feed.column_batches() if columnar else feed.batches()
        async for b in source:
            out.append(b)
        return out

    return asyncio.run(go())


def _short_day():
    # a Muhurat session (one hour) keeps the whole-session runs quick
    return SimExchange(
        SimConfig(strikes_each_side=3, underlyings=("NIFTY",)), dt.date(2025, 10, 21)
    )


def test_column_batches_flat_out_are_whole_minutes_of_the_same_ticks():
    """Flat out, a batch is a generated minute (the next one made on a worker thread); its
    ticks are exactly those of the per-object step batches, in the same order."""
    from mandi.feeds.sim import SimFeed

    steps = _collect(SimFeed(_short_day(), float("inf"), days=1), columnar=False)
    minutes_ = _collect(SimFeed(_short_day(), float("inf"), days=1), columnar=True)
    assert len(minutes_) == 61 and len(minutes_[-1]) == 0  # 60 minutes, then the session end
    assert steps[-1] == []
    assert [t for b in minutes_ for t in b.to_ticks()] == [t for b in steps for t in b]
    # a step batch holds one exchange step, as before
    assert all(len({t.ts_event // 250_000_000 for t in b}) == 1 for b in steps[:-1])


def test_column_batches_paced_and_resumed_are_steps_from_the_resume_point():
    from mandi.feeds.sim import SimFeed

    ex = _short_day()
    resume = ex.open_ns + 30 * 60 * 10**9 + 500_000_000
    feed = SimFeed(ex, 1e9, days=1, resume_from_ns=resume)  # paced (finite speed): steps
    batches = _collect(feed, columnar=True)
    ticks = [t for b in batches for t in b.to_ticks()]
    assert ticks[0].ts_event == resume and len(batches) > 60
    assert all(len(set((b.ts_event // 250_000_000).tolist())) == 1 for b in batches[:-1])
    whole = _short_day()
    expected = [t for m in whole.ticks() for t in m if t.ts_event >= resume]
    assert ticks == expected
