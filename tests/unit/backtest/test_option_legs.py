"""Option-leg backtests on hand-made chain snapshots: fills at the recorded touch, LTP with
slippage where there is no quote, per-leg stops, expiry settled at intrinsic value, per-structure
results."""

from __future__ import annotations

import datetime as dt

import msgspec
import numpy as np

from mandi.backtest import BacktestConfig, BarSeries, StrategyRun
from mandi.backtest.options import EXPIRY_SETTLEMENT, OptionLegEngine
from mandi.backtest.result import from_raw
from mandi.core.calendar import ist_ns
from mandi.model.instruments import Equity, InstrumentMaster, Option
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote
from mandi.services.backtest.options import option_configs
from mandi.strategy.options import IronCondor, IronCondorConfig, OptionLegConfig, ShortStraddle

from .kit import DAY

UNDER = Equity(256265, "NSE", "NIFTY", "NIFTY", "", 1, 5)
STRIKES = [23_800, 23_900, 24_000, 24_100, 24_200]
T0 = ist_ns(DAY, dt.time(9, 15))
MIN = 60 * 10**9


def contracts() -> list[Option]:
    out, tok = [], 5000
    for k in STRIKES:
        for kind in ("CE", "PE"):
            tok += 1
            out.append(
                Option(
                    tok, "NSE", f"NIFTY26415{k}{kind}", "NIFTY", "NFO-OPT", 65, 5, 1800,
                    underlying="NIFTY", expiry=DAY, strike=k * 100, option_type=kind,
                )
            )  # fmt: skip
    return out


def spot_at(i: int, path: list[float]) -> int:
    return round(path[min(i, len(path) - 1)] * 100)


def premium(k: int, kind: str, spot: int, minute: int) -> int:
    """A made-up premium (paise): intrinsic + time value that decays through the day."""
    intrinsic = max(spot - k * 100, 0) if kind == "CE" else max(k * 100 - spot, 0)
    return intrinsic + 5 * round((6000 - 15 * minute) / 5) if minute < 400 else intrinsic


def snapshots(path: list[float], *, quoted: bool = True) -> list[ChainSnapshot]:
    out = []
    toks = {(o.strike // 100, o.option_type): o for o in contracts()}
    for i in range(len(path)):
        spot = spot_at(i, path)
        rows = []
        for k in STRIKES:
            qs = []
            for kind in ("CE", "PE"):
                p = max(premium(k, kind, spot, i), 5)
                o = toks[(k, kind)]
                bid, ask = (p - 10, p + 10) if quoted else (0, 0)
                qs.append(OptionQuote(p, bid, ask, 1000, 50_000, 0, o.token, o.symbol))
            rows.append(ChainRow(k * 100, qs[0], qs[1]))
        out.append(ChainSnapshot("NIFTY", "NSE", DAY, T0 + i * MIN, spot, tuple(rows), 65, "t"))
    return out


def underlying_bars(path: list[float]) -> BarSeries:
    n = len(path)
    bucket = T0 + np.arange(n, dtype=np.int64) * MIN
    px = np.array([spot_at(i, path) for i in range(n)], dtype=np.int64)
    return BarSeries(UNDER, 60, bucket, px, px, px, px, np.zeros(n, np.int64))


def run(strategy, path, *, quoted=True, **cfg):
    cfg.setdefault("charges", "none")
    cfg.setdefault("commission_inr", 0.0)
    bt = BacktestConfig(**cfg)
    risk, trading = option_configs(bt, None, None)
    risk = msgspec.structs.replace(risk, expiry_exit_minutes=0)
    master = InstrumentMaster([UNDER, *contracts()])
    eng = OptionLegEngine(
        [StrategyRun(strategy, ("NIFTY",))], master, bt, timeframe=60, risk=risk, trading=trading
    )
    snaps = snapshots(path, quoted=quoted)
    res = from_raw(eng.run_bars([underlying_bars(path)], None, snaps))
    return res, snaps, eng


def quote(snaps, ts, symbol) -> OptionQuote:
    for s in snaps:
        if s.ts_event == ts:
            for r in s.rows:
                for q in (r.call, r.put):
                    if q is not None and q.symbol == symbol:
                        return q
    raise AssertionError(f"no quote of {symbol} at {ts}")


def test_short_straddle_fills_at_the_recorded_touch_and_stops_a_leg():
    # flat at 24,000 until 10:00, then a rally to 24,150: the CE's stop is hit, the PE is not
    path = [24_000.0] * 45 + [24_000.0 + 5 * i for i in range(1, 31)] + [24_150.0] * 40
    strat = ShortStraddle(OptionLegConfig(entry="09:20", exit="11:00", stop_loss_pct=40))
    res, snaps, eng = run(strat, path)
    assert len(res.trades) == 2 and eng.quotes == 10 * len(path)
    by = {t.symbol: t for t in res.trades}
    ce, pe = by["NIFTY2641524000CE"], by["NIFTY2641524000PE"]
    entry = T0 + 6 * MIN  # decided at the 09:20 bar end, filled at the next snapshot (09:21)
    assert ce.entry_time == pe.entry_time == entry
    assert ce.entry_price == quote(snaps, entry, ce.symbol).bid  # a sell at the bid
    assert ce.exit_reason == "STOP_LOSS_HIT" and pe.exit_reason == "EXIT_SIGNAL"
    # the stop fills at the ask of the very quote that crossed it (1 ns after it was accepted)
    hit = ce.exit_time - 1
    assert ce.exit_price == quote(snaps, hit, ce.symbol).ask
    # 40 % above the bid the strategy saw when it decided (09:20), on the tick grid
    seen = quote(snaps, T0 + 5 * MIN, ce.symbol).bid
    stop = -(-int(seen * 1.4 + 0.5) // 5) * 5
    before = quote(snaps, hit - MIN, ce.symbol).ltp
    assert before < stop <= quote(snaps, hit, ce.symbol).ltp
    assert pe.exit_time == T0 + 106 * MIN  # 11:00 bar end -> the 11:01 snapshot
    assert pe.exit_price == quote(snaps, pe.exit_time, pe.symbol).ask
    (s,) = res.structures
    assert s["stopped_legs"] == 1 and len(s["legs"]) == 2
    assert s["pnl"] == (ce.pnl + pe.pnl) / 100
    assert s["net_premium"] == (ce.entry_price + pe.entry_price) * 65 / 100
    doc = res.to_dict()
    assert {t["symbol"] for t in doc["trades"]} == {ce.symbol, pe.symbol}
    assert doc["structures"][0]["structure"] == s["structure"]


def test_without_a_quote_the_last_price_fills_with_slippage():
    path = [24_000.0] * 40
    strat = ShortStraddle(OptionLegConfig(entry="09:20", exit="09:40", stop_loss_pct=0))
    res, snaps, _ = run(strat, path + [24_000.0] * 5, quoted=False)
    for t in res.trades:
        q_in = quote(snaps, t.entry_time, t.symbol)
        q_out = quote(snaps, t.exit_time, t.symbol)
        assert t.entry_price == q_in.ltp - 5  # one tick against a sell
        assert t.exit_price == q_out.ltp + 5  # and against a buy


def test_expiry_settles_at_intrinsic_value():
    # held to the end of the expiry day (NRML, no exit time in the data): the CE ends 100 in
    # the money, the PE worthless
    path = [24_000.0] * 300 + [24_100.0] * 75  # 09:15 - 15:30
    strat = ShortStraddle(OptionLegConfig(entry="09:20", exit="23:59", stop_loss_pct=0))
    res, _, eng = run(strat, path, product="NRML")
    by = {t.symbol: t for t in res.trades}
    ce, pe = by["NIFTY2641524000CE"], by["NIFTY2641524000PE"]
    assert ce.exit_reason == pe.exit_reason == EXPIRY_SETTLEMENT
    assert (ce.exit_price, pe.exit_price) == (10_000, 0)
    assert ce.pnl == (ce.entry_price - 10_000) * 65 and pe.pnl == pe.entry_price * 65
    assert eng.settlements == 2 and res.stats["open_positions"] == 0
    assert res.equity[-1] == 1_000_000_00 + ce.pnl + pe.pnl


def test_iron_condor_buys_its_wings_first():
    path = [24_000.0] * 40
    cfg = IronCondorConfig(entry="09:20", exit="09:40", stop_loss_pct=0, offset=1, width=1)
    res, snaps, _ = run(IronCondor(cfg), path + [24_000.0] * 5)
    legs = sorted(res.trades, key=lambda t: t.symbol)
    assert [(t.symbol[-7:], t.side) for t in legs] == [
        ("23800PE", "BUY"),
        ("23900PE", "SELL"),
        ("24100CE", "SELL"),
        ("24200CE", "BUY"),
    ]
    # the entry signals (hence orders) go hedge first: the wings before the short legs
    entries = [x for x in res.signals if not x.metadata.get("exit")]
    assert [x.action.value for x in entries] == ["BUY", "BUY", "SELL", "SELL"]
    for t in legs:
        q = quote(snaps, t.entry_time, t.symbol)
        assert t.entry_price == (q.ask if t.side == "BUY" else q.bid)
    (s,) = res.structures
    assert (
        s["net_premium"]
        == sum((1 if t.side == "SELL" else -1) * t.entry_price * t.quantity for t in legs) / 100
    )


def test_iron_condor_as_one_basket_in_a_backtest():
    path = [24_000.0] * 45
    cfg = IronCondorConfig(
        entry="09:20", exit="09:40", stop_loss_pct=0, offset=1, width=1, as_basket=True
    )
    res, snaps, _ = run(IronCondor(cfg), path)
    legs = sorted(res.trades, key=lambda t: t.symbol)
    assert [(t.symbol[-7:], t.side) for t in legs] == [
        ("23800PE", "BUY"),
        ("23900PE", "SELL"),
        ("24100CE", "SELL"),
        ("24200CE", "BUY"),
    ]
    buys = [t for t in legs if t.side == "BUY"]
    sells = [t for t in legs if t.side == "SELL"]
    # the hedges fill first; the short legs go once they have, on the next quote
    assert max(t.entry_time for t in buys) < min(t.entry_time for t in sells)
    for t in legs:
        q = quote(snaps, t.entry_time, t.symbol)
        assert t.entry_price == (q.ask if t.side == "BUY" else q.bid)
    (s,) = res.structures
    assert len(s["legs"]) == 4 and s["structure"].startswith("iron_condor:")
