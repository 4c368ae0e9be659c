"""ChainMatrix and chain analytics: NSE's published totals, OI windows on controlled snapshots,
ATM drift, bad-input reasons, the simulated exchange's smile."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mandi.core.calendar import ist_ns
from mandi.core.errors import ConfigError, DataError
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote
from mandi.options import bs_price, greeks, implied_vol, year_fraction
from mandi.options.chain import (
    ATM,
    CE_BID,
    CE_DELTA,
    CE_IV,
    CE_LTP,
    CE_OI,
    CE_OI_CHANGE,
    CHANNEL_NAMES,
    ITM,
    N_CHANNELS,
    OTM,
    PE_ASK,
    PE_IV,
    PE_OI,
    UNDERLYING,
    ChainMatrix,
    ChainMatrixConfig,
    StrikeStatus,
    atm_strike,
    max_pain,
    pcr,
)

nse = pytest.importorskip("mandi.feeds.nse")

CHAINS = Path(__file__).resolve().parents[2] / "data" / "option_chain"
V3 = CHAINS / "nse_oc_v3_NIFTY_2026-07-10_1530_exp2026-07-14.json"
MINUTE = 60_000_000_000
LOT = 65
EXPIRY = dt.date(2026, 7, 14)
T0 = ist_ns(dt.date(2026, 7, 10), dt.time(10, 0))


def _checks() -> dict:  # type: ignore[type-arg]
    return json.loads((CHAINS / "option_chain_derived_checks.json").read_text())


# --- snapshots built by hand --------------------------------------------------------------------
def _quote(
    price_rupees: float,
    oi_lots: float,
    *,
    bid: float | None = None,
    ask: float | None = None,
    volume_lots: float = 10,
    change_lots: float = 0,
) -> OptionQuote:
    paise = round(price_rupees * 100)
    return OptionQuote(
        ltp=paise,
        bid=round((bid if bid is not None else price_rupees - 0.05) * 100),
        ask=round((ask if ask is not None else price_rupees + 0.05) * 100),
        volume=round(volume_lots * LOT),
        oi=round(oi_lots * LOT),
        oi_change=round(change_lots * LOT),
    )


def _snapshot(
    ts: int,
    spot: float,
    oi: dict[int, tuple[float, float]] | None = None,
    strikes: range = range(23000, 25001, 50),
    vol: float = 0.12,
    **overrides: tuple[OptionQuote | None, OptionQuote | None],
) -> ChainSnapshot:
    """A NIFTY chain priced by Black-Scholes at ``vol`` (r = 10 %), OI per strike in lots."""
    t = float(year_fraction(ts, EXPIRY))
    rows = []
    for k in strikes:
        ce_oi, pe_oi = (oi or {}).get(k, (1000.0, 1000.0))
        c = float(bs_price(spot, k, t, 0.10, vol, True))
        p = float(bs_price(spot, k, t, 0.10, vol, False))
        call, put = _quote(max(c, 0.05), ce_oi), _quote(max(p, 0.05), pe_oi)
        call, put = overrides.get(f"k{k}", (call, put))
        rows.append(ChainRow(k * 100, call, put))
    return ChainSnapshot("NIFTY", "NSE", EXPIRY, ts, round(spot * 100), tuple(rows), LOT, "test")


# --- NSE files ----------------------------------------------------------------------------------
def test_pcr_and_max_pain_match_nse_published_totals() -> None:
    snap = nse.load_option_chain(V3)
    checks = _checks()["nse_v3_NIFTY_2026-07-10"]
    assert snap.expiry == EXPIRY and snap.lot_size == LOT
    assert pcr(snap) == pytest.approx(
        checks["published_sum_PE_OI_contracts"] / checks["published_sum_CE_OI_contracts"], rel=1e-12
    )
    assert pcr(snap) == pytest.approx(checks["computed_pcr_oi"], abs=5e-7)
    assert max_pain(snap) == checks["computed_max_pain_strike"]
    a = ChainMatrix(ChainMatrixConfig(strikes_each_side=10)).process_option_chain("NIFTY", snap)
    assert a is not None
    assert a.total_ce_oi == checks["published_sum_CE_OI_contracts"]
    assert a.total_pe_oi == checks["published_sum_PE_OI_contracts"]
    assert a.pcr_oi == pytest.approx(pcr(snap), rel=1e-15)
    assert a.pcr_volume == pytest.approx(pcr(snap, "volume"), rel=1e-15)
    assert a.max_pain == 24200.0
    assert a.atm_strike == 24200.0 and a.underlying_price == 24206.9
    assert a.time_to_expiry == pytest.approx(4 / 365, rel=1e-12)


def test_matrix_ivs_are_nse_ivs_near_the_money() -> None:
    snap = nse.load_option_chain(V3)
    m = ChainMatrix(ChainMatrixConfig(strikes_each_side=8))
    a = m.process_option_chain("NIFTY", snap)
    assert a is not None
    data, strikes = m.latest("NIFTY", EXPIRY)
    by_strike = {r.strike / 100: r for r in snap.rows}
    compared = 0
    for j, k in enumerate(strikes):
        for side, ch in ((0, CE_IV), (1, PE_IV)):
            q = by_strike[k].call if side == 0 else by_strike[k].put
            if q is not None and math.isfinite(q.iv) and math.isfinite(data[ch, j]):
                assert abs(data[ch, j] - q.iv) <= 0.0001, (k, side)  # 0.01 vol point
                compared += 1
    assert compared >= 20


@pytest.mark.parametrize(
    ("name", "key", "expiry"),
    [
        (
            "nse_oc_indices_NIFTY_2025-07-16_1530.json.gz",
            "nse_records_NIFTY_2025-07-16",
            dt.date(2025, 7, 17),
        ),
        (
            "nse_oc_indices_BANKNIFTY_2025-07-17_1530.json.gz",
            "nse_records_BANKNIFTY_2025-07-17",
            dt.date(2025, 7, 31),
        ),
    ],
)
def test_pcr_of_legacy_files_matches_filtered_totals(name: str, key: str, expiry: dt.date) -> None:
    snap = nse.load_option_chain(CHAINS / name, expiry=expiry)
    published = _checks()[key]
    ce, pe = published["published_filtered_CE"], published["published_filtered_PE"]
    assert pcr(snap) == pytest.approx(pe["totOI"] / ce["totOI"], rel=1e-9)
    assert pcr(snap, "volume") == pytest.approx(pe["totVol"] / ce["totVol"], rel=1e-9)


def test_oi_change_over_a_day_equals_nse_change_in_oi() -> None:
    """Two consecutive NSE snapshots one day apart through a 1-day OI window: OI(17-Jul) −
    OI(16-Jul) from the ring equals NSE's changeinOpenInterest for every strike the window holds
    both days, although the ATM (and with it the window) moved by two strikes."""
    expiry = dt.date(2025, 7, 24)
    day1 = nse.load_option_chain(
        CHAINS / "nse_oc_indices_NIFTY_2025-07-16_1530.json.gz", expiry=expiry
    )
    day2 = nse.load_option_chain(
        CHAINS / "nse_oc_indices_NIFTY_2025-07-17_1530.json.gz", expiry=expiry
    )
    cfg = ChainMatrixConfig(
        strikes_each_side=12,
        oi_windows_minutes=(1440,),
        history_minutes=1440,
        sample_interval_seconds=3600,
    )
    m = ChainMatrix(cfg)
    first = m.process_option_chain("NIFTY", day1)
    second = m.process_option_chain("NIFTY", day2)
    assert first is not None and second is not None
    assert first.atm_strike == 25200 and second.atm_strike == 25100
    assert second.oi_window_seconds[0] == 86400
    hist = m.history("NIFTY", expiry)
    checked = 0
    for side, (oi_ch, chg_ch) in enumerate(((CE_OI, CE_OI_CHANGE), (PE_OI - 0, PE_OI + 1))):
        pct = second.oi_change(1440, "CE" if side == 0 else "PE")
        for j, k in enumerate(second.strikes):
            old = np.flatnonzero(hist.strikes[0] == k)
            if not old.size:
                assert math.isnan(pct[j])  # entered the window today: no history
                continue
            then, now = hist.data[0, oi_ch, old[0]], hist.data[1, oi_ch, j]
            if not then > 0:
                continue
            assert pct[j] == pytest.approx((now - then) / then * 100, rel=1e-12)
            assert now - then == pytest.approx(hist.data[1, chg_ch, j], abs=1e-9)
            checked += 1
    assert checked >= 30


# --- OI windows on a controlled sequence --------------------------------------------------------
def test_oi_windows_from_the_ring_buffer() -> None:
    m = ChainMatrix(ChainMatrixConfig(strikes_each_side=4))
    spot = 24210.0
    results = []
    for minute in range(0, 36):
        oi = {k: (1000.0 + 10 * minute, 2000.0 + 20 * minute) for k in range(23000, 25001, 50)}
        results.append(m.process_option_chain("NIFTY", _snapshot(T0 + minute * MINUTE, spot, oi)))
    last = results[-1]
    assert last is not None
    assert last.oi_windows_minutes == (3, 5, 10, 15, 30)
    for w in (3, 5, 10, 15, 30):
        now, then = 1000.0 + 10 * 35, 1000.0 + 10 * (35 - w)
        np.testing.assert_allclose(last.oi_change(w, "CE"), (now - then) / then * 100, rtol=1e-12)
        now, then = 2000.0 + 20 * 35, 2000.0 + 20 * (35 - w)
        np.testing.assert_allclose(last.oi_change(w, "PE"), (now - then) / then * 100, rtol=1e-12)
    np.testing.assert_array_equal(last.oi_window_seconds, [180, 300, 600, 900, 1800])
    # after 4 minutes only the 3-minute window has history
    early = results[4]
    assert early is not None
    assert np.isfinite(early.oi_change(3)).all()
    for w in (5, 10, 15, 30):
        assert np.isnan(early.oi_change(w)).all()
    assert np.isnan(early.oi_window_seconds[1:]).all()


def test_same_interval_overwrites_and_out_of_order_is_rejected() -> None:
    m = ChainMatrix(ChainMatrixConfig(strikes_each_side=2, sample_interval_seconds=1))
    a = m.process_option_chain("NIFTY", _snapshot(T0, 24210.0))
    b = m.process_option_chain("NIFTY", _snapshot(T0 + 400_000_000, 24215.0))  # same second
    assert a is not None and b is not None and a.slot == b.slot
    buf = m.buffer("NIFTY", EXPIRY)
    assert buf.count == 1 and buf.times[buf.head] == T0 + 400_000_000
    assert m.latest("NIFTY", EXPIRY)[0][UNDERLYING, 0] == 24215.0
    c = m.process_option_chain("NIFTY", _snapshot(T0 + 2_000_000_000, 24220.0))
    assert c is not None and c.slot != a.slot and buf.count == 2
    assert m.process_option_chain("NIFTY", _snapshot(T0, 24200.0)) is None
    assert m.stats["out_of_order"] == 1 and m.stats["snapshots"] == 3


def test_ring_wraps_around_and_history_is_chronological() -> None:
    cfg = ChainMatrixConfig(
        strikes_each_side=1,
        capacity=5,
        history_minutes=3,
        oi_windows_minutes=(3,),
        sample_interval_seconds=60,
    )
    m = ChainMatrix(cfg)
    for minute in range(12):
        oi = {k: (100.0 + minute, 100.0) for k in range(23000, 25001, 50)}
        m.process_option_chain("NIFTY", _snapshot(T0 + minute * MINUTE, 24200.0, oi))
    hist = m.history("NIFTY", EXPIRY)
    assert hist.data.shape == (5, N_CHANNELS, 3)
    assert list(hist.times) == [T0 + k * MINUTE for k in range(7, 12)]
    assert list(hist.data[:, CE_OI, 1]) == [107.0, 108.0, 109.0, 110.0, 111.0]
    a = m.analytics("NIFTY", EXPIRY)
    assert a is not None
    np.testing.assert_allclose(a.oi_change(3), (111 - 108) / 108 * 100)


def test_window_follows_atm_drift_and_strikes_are_looked_up_by_value() -> None:
    m = ChainMatrix(ChainMatrixConfig(strikes_each_side=3))
    oi = {k: (float(k - 22000), 500.0) for k in range(23000, 25001, 50)}
    first = m.process_option_chain("NIFTY", _snapshot(T0, 24210.0, oi))
    assert first is not None
    assert list(first.strikes) == [24050, 24100, 24150, 24200, 24250, 24300, 24350]
    grown = {k: (v[0] * 1.1, v[1]) for k, v in oi.items()}
    # three minutes later the index is 110 points higher: ATM 24300 → the window shifts by 2
    moved = m.process_option_chain("NIFTY", _snapshot(T0 + 3 * MINUTE, 24310.0, grown))
    assert moved is not None
    assert moved.atm_strike == 24300
    assert list(moved.strikes) == [24150, 24200, 24250, 24300, 24350, 24400, 24450]
    pct = moved.oi_change(3, "CE")
    np.testing.assert_allclose(pct[:5], 10.0, rtol=1e-12)  # in the window 3 minutes ago
    assert np.isnan(pct[5:]).all()  # 24400 and 24450 entered with the move
    # strikes that left (24050, 24100) keep their history in the older slot
    hist = m.history("NIFTY", EXPIRY)
    assert hist.strikes[0, 0] == 24050 and hist.data[0, CE_OI, 0] == 24050 - 22000


def test_recentre_hysteresis() -> None:
    m = ChainMatrix(ChainMatrixConfig(strikes_each_side=3, recentre_strikes=3))
    m.process_option_chain("NIFTY", _snapshot(T0, 24210.0))
    a = m.process_option_chain("NIFTY", _snapshot(T0 + MINUTE, 24290.0))  # ATM 24300, 2 away
    assert a is not None and a.atm_strike == 24300 and a.strikes[3] == 24200
    assert a.ce_class[a.strikes == 24300][0] == ATM
    b = m.process_option_chain("NIFTY", _snapshot(T0 + 2 * MINUTE, 24360.0))  # ATM 24350: 3
    assert b is not None and b.strikes[3] == 24350


# --- IV, Greeks, moneyness, baskets, theoretical price ------------------------------------------
def test_matrix_channels_equal_the_vectorized_functions() -> None:
    snap = _snapshot(T0, 24206.9, vol=0.15)
    m = ChainMatrix(ChainMatrixConfig(strikes_each_side=5))
    a = m.process_option_chain("NIFTY", snap)
    assert a is not None
    data, strikes = m.latest("NIFTY", EXPIRY)
    assert len(CHANNEL_NAMES) == N_CHANNELS == data.shape[0] == 23
    t = float(year_fraction(T0, EXPIRY))
    iv = implied_vol(data[CE_LTP], 24206.9, strikes, t, 0.10, True)
    np.testing.assert_array_equal(iv, data[CE_IV])
    g = greeks(24206.9, strikes, t, 0.10, iv, True)
    np.testing.assert_allclose(data[CE_DELTA], g.delta, rtol=1e-14)
    assert (a.ce_status == StrikeStatus.OK).all() and (a.pe_status == StrikeStatus.OK).all()
    # prices were rounded to 5 paise: IVs are the generating vol to ~1e-4 near the money
    assert np.abs(data[CE_IV, 3:8] - 0.15).max() < 2e-3
    assert a.atm_strike == 24200 and a.atm_iv == pytest.approx(0.15, abs=1e-3)
    assert list(a.ce_class) == [ITM] * 5 + [ATM] + [OTM] * 5
    assert list(a.pe_class) == [OTM] * 5 + [ATM] + [ITM] * 5
    assert a.moneyness_labels("PE")[:2] == ["OTM", "OTM"]
    np.testing.assert_allclose(a.moneyness, strikes / 24206.9)
    assert a.itm_ce_oi == 5000.0 and a.otm_pe_oi == 5000.0
    ce_doi = np.nansum(data[CE_OI] * data[CE_DELTA])
    assert a.ce_delta_oi == pytest.approx(ce_doi, rel=1e-12)
    assert 50 < a.itm_ce_delta_pct < 100
    # theoretical = BS at the ATM vol, so LTP − theoretical is only the tick rounding here
    assert np.abs(a.ce_price_diff).max() < 0.5 and (a.ce_highlight == 0).all()
    assert a.to_dict()["expiry"] == "2026-07-14"


def test_price_difference_highlights_use_rupee_thresholds() -> None:
    t = float(year_fraction(T0, EXPIRY))
    rich = float(bs_price(24206.9, 24400, t, 0.10, 0.12, True)) + 3.5  # > +3.0 → +1
    cheap = float(bs_price(24206.9, 24000, t, 0.10, 0.12, False)) - 2.5  # < −2.0 → −1
    near = float(bs_price(24206.9, 24300, t, 0.10, 0.12, True)) + 2.5  # within → 0
    snap = _snapshot(
        T0,
        24206.9,
        vol=0.12,
        k24400=(_quote(rich, 10), _quote(5.0, 10)),
        k24000=(_quote(300.0, 10), _quote(cheap, 10)),
        k24300=(_quote(near, 10), _quote(150.0, 10)),
    )
    a = ChainMatrix(ChainMatrixConfig(strikes_each_side=5)).process_option_chain("NIFTY", snap)
    assert a is not None
    j = {k: i for i, k in enumerate(a.strikes)}
    assert a.ce_price_diff[j[24400]] == pytest.approx(3.5, abs=0.06)
    assert a.ce_highlight[j[24400]] == 1
    assert a.pe_highlight[j[24000]] == -1
    assert a.ce_highlight[j[24300]] == 0
    custom = ChainMatrix(ChainMatrixConfig(strikes_each_side=5, diff_pos_threshold=4.0))
    b = custom.process_option_chain("NIFTY", snap)
    assert b is not None and b.ce_highlight[j[24400]] == 0


def test_bad_input_gives_per_strike_reasons() -> None:
    t = float(year_fraction(T0, EXPIRY))
    deep_call = float(bs_price(24206.9, 23500, t, 0.10, 0.12, True))
    snap = _snapshot(
        T0,
        24206.9,
        strikes=range(23500, 25001, 50),
        k24100=(_quote(0.0, 10), _quote(60.0, 10)),  # zero LTP
        k24150=(_quote(120.0, 10), _quote(90.0, 10, bid=95.0, ask=94.0)),  # crossed put
        k24250=(None, _quote(140.0, 10)),  # no call listed
        k23500=(_quote(deep_call - 50, 10), _quote(0.05, 10)),  # below intrinsic
    )
    rows = tuple(r for r in snap.rows if r.strike != 24350 * 100)  # a hole in the strike grid
    import msgspec

    snap = msgspec.structs.replace(snap, rows=rows)
    m = ChainMatrix(ChainMatrixConfig(strikes_each_side=14))
    with np.errstate(all="raise"):
        a = m.process_option_chain("NIFTY", snap)
    assert a is not None
    data, strikes = m.latest("NIFTY", EXPIRY)
    j = {k: i for i, k in enumerate(strikes)}
    assert a.ce_status[j[24100]] == StrikeStatus.NO_PRICE and np.isnan(data[CE_IV, j[24100]])
    assert np.isnan(data[CE_LTP, j[24100]])
    assert a.pe_status[j[24150]] == StrikeStatus.CROSSED
    assert np.isnan(data[CE_BID + 6, j[24150]]) and np.isnan(data[PE_ASK, j[24150]])
    assert np.isfinite(data[PE_IV, j[24150]])  # LTP still gives an IV
    assert a.ce_status[j[24250]] == StrikeStatus.MISSING and a.pe_status[j[24250]] == 0
    assert a.ce_status[j[24350]] == StrikeStatus.MISSING == a.pe_status[j[24350]]
    assert np.isnan(data[:12, j[24350]]).all()
    assert a.ce_status[j[23500]] == StrikeStatus.BELOW_INTRINSIC
    # after expiry every IV is NaN with the reason EXPIRED
    late = msgspec.structs.replace(snap, ts_event=ist_ns(EXPIRY, dt.time(15, 31)))
    b = ChainMatrix(ChainMatrixConfig(strikes_each_side=3)).process_option_chain("NIFTY", late)
    assert b is not None
    quoted = ~np.isin(b.ce_status, [StrikeStatus.MISSING, StrikeStatus.NO_PRICE])
    assert quoted.sum() >= 4 and (b.ce_status[quoted] == StrikeStatus.EXPIRED).all()
    # snapshot-level problems are clear errors
    with pytest.raises(DataError, match="BANKNIFTY"):
        m.process_option_chain("BANKNIFTY", snap)
    with pytest.raises(DataError, match="lot_size"):
        m.process_option_chain("NIFTY", msgspec.structs.replace(snap, lot_size=0))
    empty = msgspec.structs.replace(snap, rows=(), ts_event=T0 + MINUTE)
    c = m.process_option_chain("NIFTY", empty)
    assert c is not None and (c.ce_status == StrikeStatus.MISSING).all()
    assert math.isnan(c.pcr_oi) and math.isnan(c.max_pain)


def test_callbacks_and_config_validation() -> None:
    seen: list[float] = []

    def broken(_: object) -> None:
        raise RuntimeError("boom")

    m = ChainMatrix(ChainMatrixConfig(strikes_each_side=2), on_snapshot=[broken])
    m.on_snapshot.append(lambda a: seen.append(a.pcr_oi))
    m.process_option_chain("NIFTY", _snapshot(T0, 24200.0))
    m.process_option_chain("NIFTY", _snapshot(T0 + MINUTE, 24200.0), notify=False)
    assert seen == [1.0] and m.stats["callback_errors"] == 1
    assert m.handle_chain_snapshot(_snapshot(T0 + 2 * MINUTE, 24200.0)) is not None
    for bad in (
        {"strikes_each_side": -1},
        {"oi_windows_minutes": (3, 45)},
        {"price_source": "last"},
        {"sample_interval_seconds": 0},
        {"strike_step": -50.0},
    ):
        with pytest.raises(ConfigError):
            ChainMatrixConfig(**bad)  # type: ignore[arg-type]


def test_max_pain_and_pcr_on_arrays() -> None:
    rng = np.random.default_rng(0)
    strikes = np.arange(40) * 50.0 + 23000
    ce, pe = rng.uniform(0, 1e5, 40), rng.uniform(0, 1e5, 40)
    ce[3] = np.nan
    pain = [
        np.nansum(ce * np.maximum(0, s - strikes)) + np.nansum(pe * np.maximum(0, strikes - s))
        for s in strikes
    ]
    assert max_pain(strikes, ce, pe) == strikes[int(np.argmin(pain))]
    assert max_pain(strikes[::-1], ce[::-1], pe[::-1]) == strikes[int(np.argmin(pain))]
    assert pcr([1.0, 2.0], [3.0, np.nan]) == pytest.approx(1.0)
    assert math.isnan(pcr([1.0], [0.0]))
    assert math.isnan(max_pain([1.0, 2.0], [0.0, 0.0], [0.0, 0.0]))
    assert atm_strike([100.0, 150.0, 200.0], 125.0) == 100.0
    with pytest.raises(ValueError, match="oi_change"):
        pcr(_snapshot(T0, 24200.0), "delta")


def test_simulated_exchange_smile_is_recovered() -> None:
    """IVs solved from the simulator's (tick-rounded) prices are the smile it priced them with,
    within what the 5-paise rounding allows. Uses the simulator's opening prices, where spot and
    option prices are from the same instant (later snapshots mix spot ticks with option trades
    of up to a minute earlier)."""
    sim = pytest.importorskip("mandi.feeds.sim")
    from mandi.config import SimConfig

    ex = sim.SimExchange(SimConfig(underlyings=("NIFTY",), stocks=(), date=dt.date(2026, 7, 10)))
    needed = ("contracts", "_c_price", "_c_iv", "_u_price", "open_ns", "expiries")
    if not all(hasattr(ex, name) for name in needed):
        pytest.skip("simulator internals changed")
    spot = float(ex._u_price[0])
    m = ChainMatrix(ChainMatrixConfig(strikes_each_side=20, rate=sim.RISK_FREE_RATE))
    compared = 0
    for expiry in ex.expiries["NIFTY"]:
        rows: dict[int, list[OptionQuote | None]] = {}
        smile: dict[tuple[float, int], float] = {}
        for j, c in enumerate(ex.contracts):
            if c.expiry != expiry:
                continue
            q = OptionQuote(int(ex._c_price[j]), oi=1000 * LOT)
            rows.setdefault(c.strike, [None, None])[0 if c.option_type == "CE" else 1] = q
            smile[(c.strike / 100, 0 if c.option_type == "CE" else 1)] = float(ex._c_iv[j])
        snap = ChainSnapshot(
            "NIFTY",
            "NSE",
            expiry,
            ex.open_ns,
            round(spot * 100),
            tuple(ChainRow(k, *v) for k, v in sorted(rows.items())),
            LOT,
            "sim",
        )
        a = m.process_option_chain("NIFTY", snap)
        assert a is not None
        data, strikes = m.latest("NIFTY", expiry)
        for j, k in enumerate(strikes):
            for side, ch, ltp_ch in ((0, CE_IV, CE_LTP), (1, PE_IV, CE_LTP + 6)):
                if not data[ltp_ch, j] > 1.0:  # the simulator floors prices at one tick
                    continue
                g = greeks(spot, k, a.time_to_expiry, a.rate, smile[(k, side)], side == 0)
                vega = float(g.vega) * 100
                # half a tick of price rounding, half a paisa of spot rounding
                tolerance = (0.025 + abs(float(g.delta)) * 0.005) / vega + 1e-9
                assert abs(data[ch, j] - smile[(k, side)]) <= tolerance, (expiry, k, side)
                compared += 1
    assert compared >= 40


def test_snapshot_without_underlying_price_or_rows() -> None:
    import msgspec

    snap = _snapshot(T0, 24200.0)
    m = ChainMatrix(ChainMatrixConfig(strikes_each_side=2))
    with np.errstate(all="raise"):
        first = m.process_option_chain("NIFTY", msgspec.structs.replace(snap, rows=()))
        second = m.process_option_chain(
            "NIFTY", msgspec.structs.replace(snap, ts_event=T0 + MINUTE)
        )
        broken = msgspec.structs.replace(snap, ts_event=T0 + 2 * MINUTE, underlying_price=0)
        third = m.process_option_chain("NIFTY", broken)
    assert first is not None and (first.ce_status == StrikeStatus.MISSING).all()
    # the strike step is learnt from the first snapshot that has strikes
    assert second is not None and second.strike_step == 50.0
    assert list(second.strikes) == [24100, 24150, 24200, 24250, 24300]
    # no underlying price: no ATM, the window stays, every quoted side says BAD_INPUT
    assert third is not None and math.isnan(third.atm_strike) and math.isnan(third.atm_iv)
    assert list(third.strikes) == list(second.strikes)
    assert (third.ce_status == StrikeStatus.BAD_INPUT).all()
    assert third.pcr_oi == 1.0  # whole-chain totals do not need the underlying


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_processing_equals_one_by_one(threads: int) -> None:
    """process_option_chains (one kernel call over all chains, optionally on several cores)
    gives exactly the results and ring contents of process_option_chain in turn, including a
    chain that appears twice in one batch and an out-of-order snapshot."""
    import msgspec

    def batch(minute: int) -> list[ChainSnapshot]:
        out = []
        for i, spot in enumerate((24210.0, 24480.0, 23990.0)):
            oi = {k: (1000.0 + 7 * minute + i, 900.0 + 5 * minute) for k in range(23000, 25001, 50)}
            snap = _snapshot(T0 + minute * MINUTE, spot + 3 * minute, oi, vol=0.11 + 0.01 * i)
            out.append(msgspec.structs.replace(snap, underlying=f"U{i}"))
        return out

    one, many = (
        ChainMatrix(ChainMatrixConfig(strikes_each_side=4)),
        ChainMatrix(ChainMatrixConfig(strikes_each_side=4)),
    )
    for minute in range(6):
        snaps = batch(minute)
        if minute == 5:
            snaps += [snaps[0], msgspec.structs.replace(snaps[1], ts_event=T0)]  # repeat, stale
        expected = [one.process_option_chain(s.underlying, s) for s in snaps]
        got = many.process_option_chains(snaps, threads=threads)
        assert len(got) == len(expected)
        for a, b in zip(expected, got, strict=True):
            if a is None:
                assert b is None
                continue
            assert b is not None
            for name in ("strikes", "ce_status", "pe_status", "ce_price_diff", "oi_change_pct"):
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
            assert (a.pcr_oi, a.max_pain, a.atm_iv, a.itm_ce_delta_pct) == (
                b.pcr_oi,
                b.max_pain,
                b.atm_iv,
                b.itm_ce_delta_pct,
            )
    for key in one.keys():  # noqa: SIM118 - ChainMatrix.keys() is a method, not a dict
        np.testing.assert_array_equal(one.history(*key).data, many.history(*key).data)
    assert one.stats == many.stats


def test_the_grid_step_comes_from_the_listed_strikes_not_the_first_snapshot() -> None:
    # the first snapshot of a day: six strikes have traded, 150 points apart
    sparse = _snapshot(T0, 24210.0, strikes=range(23850, 24601, 150))
    full = _snapshot(T0 + MINUTE, 24210.0)
    listed = [k * 100 for k in range(23000, 25001, 50)]  # paise, as the instrument master
    guessing = ChainMatrix(ChainMatrixConfig(strikes_each_side=3))
    guessing.process_option_chain("NIFTY", sparse)
    wrong = guessing.process_option_chain("NIFTY", full)
    assert wrong is not None and wrong.strike_step == 150.0  # what happened before the master
    m = ChainMatrix(ChainMatrixConfig(strikes_each_side=3))
    m.set_listed_strikes("NIFTY", EXPIRY, listed)
    assert m.strike_step("NIFTY", EXPIRY) == 50.0
    first = m.process_option_chain("NIFTY", sparse)
    a = m.process_option_chain("NIFTY", full)
    assert first is not None and a is not None
    assert a.strike_step == first.strike_step == 50.0
    np.testing.assert_array_equal(a.strikes, np.arange(24050.0, 24351.0, 50.0))
    assert a.atm_strike == 24200.0 and a.atm_strike in a.strikes
    # a listing arriving after the first snapshot moves the buffer; a configured step wins
    late = ChainMatrix(ChainMatrixConfig(strikes_each_side=3))
    late.process_option_chain("NIFTY", sparse)
    late.set_listed_strikes("NIFTY", EXPIRY, listed)
    b = late.process_option_chain("NIFTY", full)
    assert b is not None and b.strike_step == 50.0
    fixed = ChainMatrix(ChainMatrixConfig(strikes_each_side=3, strike_step=100.0))
    fixed.set_listed_strikes("NIFTY", EXPIRY, listed)
    c = fixed.process_option_chain("NIFTY", full)
    assert c is not None and c.strike_step == 100.0


def test_theoretical_prices_of_a_strike_are_black_price_one_bit_for_bit() -> None:
    """The chain kernel prices a strike's call and put at the ATM vol in one go
    (black_price_pair): each is exactly black_price_one's, across moneyness, expiry, vol and
    the bad or degenerate inputs (σ = 0, t = 0, NaN, ∞, non-positive)."""
    from mandi.options._kernels import black_price_one, black_price_pair

    rng = np.random.default_rng(11)
    f = np.exp(rng.uniform(np.log(1e-3), np.log(1e6), 4000))
    cases = [
        (float(f[i]), float(f[i] * math.exp(rng.normal(0, 1.5))), float(rng.uniform(0, 3)),
         float(rng.uniform(0.5, 1.0)), float(rng.uniform(0, 4)))
        for i in range(len(f))
    ]  # fmt: skip
    odd = [0.0, -1.0, math.nan, math.inf, 1e-300, 1e300]
    cases += [(a, 100.0, 0.5, 0.99, 0.2) for a in odd] + [(100.0, a, 0.5, 0.99, 0.2) for a in odd]
    cases += [(100.0, 90.0, a, 0.99, 0.2) for a in odd] + [(100.0, 90.0, 0.5, a, 0.2) for a in odd]
    cases += [(100.0, 90.0, 0.5, 0.99, a) for a in odd] + [(100.0, 100.0, 0.5, 0.99, 0.2)]
    for fwd, k, t, df, sigma in cases:
        got = black_price_pair(fwd, k, t, df, sigma)
        want = (black_price_one(fwd, k, t, df, sigma, True),
                black_price_one(fwd, k, t, df, sigma, False))  # fmt: skip
        assert np.array_equal(got, want, equal_nan=True), (fwd, k, t, df, sigma, got, want)
