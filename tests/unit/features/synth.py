"""Synthetic market data for the feature and ML tests: 3-minute bars of an index, India VIX bars
and option chains of two expiries (Black-Scholes prices on a smile, drifting OI)."""

from __future__ import annotations

import datetime as dt

import numpy as np

from mandi.backtest.bars import BarSeries
from mandi.core.calendar import ist_ns
from mandi.model.instruments import Equity
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote
from mandi.options import bs_price, year_fraction

TF = 180
DAYS = (dt.date(2026, 4, 13), dt.date(2026, 4, 14), dt.date(2026, 4, 15))  # Tue 14th: expiry
EXPIRIES = (dt.date(2026, 4, 14), dt.date(2026, 4, 21))
BARS_PER_DAY = 125
INDEX = Equity(1, "NSE", "NIFTY", "NIFTY", "", 1, 5)
VIX = Equity(2, "NSE", "INDIA VIX", "INDIA VIX", "", 1, 1)


def day_buckets(days=DAYS, n: int = BARS_PER_DAY, tf: int = TF) -> np.ndarray:
    return np.concatenate(
        [ist_ns(d, dt.time(9, 15)) + np.arange(n, dtype=np.int64) * tf * 10**9 for d in days]
    )


def random_bars(
    returns: np.ndarray, bucket: np.ndarray, inst=INDEX, start: float = 24_000.0, seed: int = 0
) -> BarSeries:
    """Bars whose closes follow ``returns`` (log, per bar), with a little intrabar range."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(returns))
    open_ = np.r_[start, close[:-1]]
    wick = np.abs(rng.normal(0, 0.0004, len(close))) * close
    high = np.maximum(open_, close) + wick
    low = np.minimum(open_, close) - wick
    p = lambda x: np.rint(x * 100).astype(np.int64)  # noqa: E731
    zero = np.zeros(len(close), np.int64)
    return BarSeries(inst, TF, bucket, p(open_), p(high), p(low), p(close), zero)


def market(seed: int = 0, days=DAYS, per_day: int = BARS_PER_DAY) -> tuple[BarSeries, BarSeries]:
    """A NIFTY-like index and a VIX-like series, ``per_day`` 3-minute bars a day from 09:15."""
    rng = np.random.default_rng(seed)
    b = day_buckets(days, per_day)
    nifty = random_bars(rng.normal(0, 0.0006, len(b)), b, seed=seed)
    vix = random_bars(rng.normal(0, 0.002, len(b)), b, VIX, start=14.0, seed=seed + 1)
    return nifty, vix


def chains(
    nifty: BarSeries, every_s: int = 60, seed: int = 0, strikes_each_side: int = 12
) -> list[ChainSnapshot]:
    """Snapshots every ``every_s`` seconds through each bar, for every unexpired expiry; the
    underlying moves linearly from the bar's open to its close."""
    rng = np.random.default_rng(seed)
    out: list[ChainSnapshot] = []
    oi: dict[tuple[dt.date, int], np.ndarray] = {}  # (expiry, strike) → [CE, PE] OI in shares
    per_bar = TF // every_s
    offsets = 50 * np.arange(-strikes_each_side, strikes_each_side + 1)
    for i in range(len(nifty)):
        for k in range(per_bar):
            ts = int(nifty.bucket[i]) + (k + 1) * every_s * 10**9 - 10**9  # :59, 1:59, 2:59
            w = (k + 1) / per_bar
            spot = ((1 - w) * nifty.open[i] + w * nifty.close[i]) / 100.0
            strikes = (round(spot / 50) * 50 + offsets).astype(float)
            iv = 0.13 + 10.0 * ((strikes - spot) / spot) ** 2
            for e in EXPIRIES:
                t = float(year_fraction(ts, e))
                if t <= 0:
                    continue
                ltp = [
                    np.maximum(5, np.rint(bs_price(spot, strikes, t, 0.10, iv, c) * 20) * 5)
                    for c in (True, False)
                ]
                drift = 1 + rng.normal(0, 0.01, (len(strikes), 2))
                rows = []
                for j, kk in enumerate(strikes.astype(int).tolist()):
                    o = oi.setdefault((e, kk), np.full(2, 65 * 2000.0))
                    o *= drift[j]
                    ce, pe = (
                        OptionQuote(int(ltp[s][j]), int(ltp[s][j]) - 5, int(ltp[s][j]) + 5,
                                    6500 * (i + 1), int(o[s]) // 65 * 65)
                        for s in (0, 1)
                    )  # fmt: skip
                    rows.append(ChainRow(kk * 100, ce, pe))
                out.append(
                    ChainSnapshot("NIFTY", "NSE", e, ts, round(spot * 100), tuple(rows), 65, "test")
                )
    return out
