"""Option-chain strategies on recorded chain snapshots: the OI/PCR strategy reacts to the chains
as time passes them, and trades the underlying."""

from __future__ import annotations

import datetime as dt

import msgspec

from mandi.core.calendar import ist_ns
from mandi.model.instruments import Equity
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote
from mandi.services.backtest import run

from .kit import DAY, bars

EXPIRY = dt.date(2026, 4, 21)


def snapshot(ts: int, pcr: float) -> ChainSnapshot:
    rows = tuple(
        ChainRow(
            k * 100,
            OptionQuote(10_000, oi=100_000),
            OptionQuote(10_000, oi=int(100_000 * pcr)),
        )
        for k in range(24_000, 24_500, 50)
    )
    return ChainSnapshot("NIFTY", "NSE", EXPIRY, ts, 2_410_000, rows, 65, "test")


def test_pcr_strategy_trades_on_chain_snapshots():
    s = bars([(24100, 24110, 24090, 24100)] * 120)  # 09:15 - 11:15
    s = s.with_instrument(Equity(7, "NSE", "NIFTY", "NIFTY", "", 1, 5))
    t0 = ist_ns(DAY, dt.time(9, 15))
    path = [1.0, 1.0, 1.5, 1.5, 1.0, 0.6, 0.6, 1.0]  # bullish at 09:25, bearish at 09:40
    snaps = [snapshot(t0 + (k + 1) * 300 * 10**9 - 10**9, pcr) for k, pcr in enumerate(path)]
    res = run(s, "oi_pcr", {}, quantity=10, timeframe=60, chains=snaps, engine="auto")
    assert res.stats["engine"] == "event"
    sig = [(x.action.value, x.ts_event) for x in res.signals]
    assert [a for a, _ in sig] == ["BUY", "SELL"]
    # a signal comes at the first bar end after the snapshot that crossed the threshold
    assert sig[0][1] == snaps[2].ts_event + 10**9
    (t,) = res.trades
    assert (t.side, t.exit_reason) == ("BUY", "OPPOSITE_SIGNAL")
    assert t.entry_time == sig[0][1] and t.exit_time == sig[1][1]  # next bar opens


def test_nse_chain_file_is_read(tmp_path):
    import pathlib

    from mandi.model.instruments import InstrumentMaster
    from mandi.services.backtest.data import chain_instruments, load_chains

    data = pathlib.Path(__file__).parents[2] / "data" / "option_chain"
    f = data / "nse_oc_v3_NIFTY_2026-07-10_1530_exp2026-07-14.json"
    snaps = load_chains([f])
    assert snaps and snaps[0].underlying == "NIFTY"
    opts = chain_instruments(snaps, InstrumentMaster())
    assert len(opts) == sum((r.call is not None) + (r.put is not None) for r in snaps[0].rows)
    assert all(o.expiry == dt.date(2026, 7, 14) for o in opts)
    assert msgspec.json.encode(snaps[0])
