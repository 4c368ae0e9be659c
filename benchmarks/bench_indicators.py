"""Indicator throughput: incremental updates against talipp, batch against TA-Lib.

All on the real NIFTY 3-minute year (31,770 candles), measured in the same run:

* per indicator: ``update`` calls/s of mandi's class vs talipp's ``add`` (first 8,000 candles);
* the seed's default set (SMA 9/20/50/200, EMA 9/21, RSI 14) per candle, each against talipp's
  seven indicators on the same closes: ``IndicatorEngine.process`` (one candle, messages),
  ``process_many`` (a bucket close of 1,000 series, messages), ``process_arrays`` (the same
  burst as columns, no messages), the compiled ``CloseBank`` and the pure-Python
  ``CloseKernel``;
* batch: ``compute`` (numba kernels, bit-identical to the classes) vs TA-Lib's function on the
  whole year;
* numba's first-call compile time (fresh cache) and cached load time, in subprocesses.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import talib
from talipp import indicators as tp
from talipp.ohlcv import OHLCV

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import best_of, report
from mandi.core.calendar import parse_ist
from mandi.indicators import (
    ADX,
    ATR,
    DEFAULT_SPECS,
    EMA,
    MACD,
    OBV,
    RSI,
    SMA,
    VWAP,
    WMA,
    BollingerBands,
    IndicatorEngine,
    Stochastic,
    SuperTrend,
    compute,
    parse_spec,
)
from mandi.indicators.bank import CloseBank
from mandi.indicators.fused import CloseKernel
from mandi.model.market import Candle

DATA = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data"
df = pd.read_csv(DATA / "NIFTY50_3min_2025-07-23_to_2026-08-04.csv")
H, L, C = (df[k].to_numpy(np.float64) for k in ("high", "low", "close"))
V = np.random.default_rng(3).integers(1, 10_000, len(C)).astype(np.float64)  # NIFTY has none
B = np.array([parse_ist(t) for t in df["datetime"]], dtype=np.int64)
N = len(C)
NI = 8_000  # candles for the per-indicator incremental comparison


class Bar:
    __slots__ = ("bucket", "close", "high", "low", "volume")

    def __init__(self, h: float, lo: float, c: float, v: float, b: int) -> None:
        self.high, self.low, self.close, self.volume, self.bucket = h, lo, c, v, b


BARS = [Bar(*t) for t in zip(H[:NI], L[:NI], C[:NI], V[:NI], B[:NI].tolist(), strict=True)]
OHLCVS = [
    OHLCV(o, h, lo, c, v)
    for o, h, lo, c, v in zip(df["open"][:NI], H[:NI], L[:NI], C[:NI], V[:NI], strict=True)
]
CLOSES = C[:NI].tolist()


def per_indicator() -> None:
    print("-- incremental, one indicator, updates/s (talipp add() as the baseline)")
    cases = [
        ("SMA(20)", lambda: SMA(20), lambda: tp.SMA(20), False),
        ("EMA(21)", lambda: EMA(21), lambda: tp.EMA(21), False),
        ("WMA(30)", lambda: WMA(30), lambda: tp.WMA(30), False),
        ("RSI(14)", lambda: RSI(14), lambda: tp.RSI(14), False),
        ("MACD(12,26,9)", lambda: MACD(), lambda: tp.MACD(12, 26, 9), False),
        ("BollingerBands(20,2)", lambda: BollingerBands(20, 2.0), lambda: tp.BB(20, 2.0), False),
        ("ATR(14)", lambda: ATR(14), lambda: tp.ATR(14), True),
        ("Stochastic(14,3,3)", lambda: Stochastic(14, 3, 3), lambda: tp.Stoch(14, 3), True),
        ("ADX(14)", lambda: ADX(14), lambda: tp.ADX(14, 14), True),
        ("SuperTrend(10,3)", lambda: SuperTrend(10, 3.0), lambda: tp.SuperTrend(10, 3.0), True),
        ("OBV", lambda: OBV(), lambda: tp.OBV(), True),
        ("VWAP (session)", lambda: VWAP(), lambda: tp.VWAP(), True),
    ]
    for label, ours, theirs, multi in cases:

        def run_ours(make=ours, multi=multi) -> None:
            u = make().update
            for x in BARS if multi else CLOSES:
                u(x)

        def run_talipp(make=theirs, multi=multi) -> None:
            a = make().add
            for x in OHLCVS if multi else CLOSES:
                a(x)

        t_ours = best_of(run_ours, 3)
        t_talipp = best_of(run_talipp, 2)
        report(f"incremental {label}", NI, t_ours, "updates", "talipp", t_talipp)


def default_set() -> None:
    print("-- the seed's default set (7 indicators) per candle")
    closes = C.tolist()

    def talipp_set() -> None:
        inds = [tp.SMA(9), tp.SMA(20), tp.SMA(50), tp.SMA(200), tp.EMA(9), tp.EMA(21), tp.RSI(14)]
        adds = [i.add for i in inds]
        for x in CLOSES:
            for a in adds:
                a(x)

    t_talipp = best_of(talipp_set, 2) * N / NI  # scaled to the full year

    paise = np.round(C * 100).astype(np.int64).tolist()
    candles = [
        Candle(256265, "NSE", 180, b, p, p, p, p) for b, p in zip(B.tolist(), paise, strict=True)
    ]

    def engine_run() -> None:
        e = IndicatorEngine()
        process = e.process
        for c in candles:
            process(c)

    report(
        "default set: IndicatorEngine.process (one candle, messages)",
        N,
        best_of(engine_run, 3),
        "candles",
        "talipp",
        t_talipp,
    )

    def kernel_run() -> None:
        k = CloseKernel([parse_spec(s) for s in DEFAULT_SPECS])
        u = k.update
        for x in closes:
            u(x)

    report(
        "default set: CloseKernel.update (pure Python, one series)",
        N,
        best_of(kernel_run, 3),
        "candles",
        "talipp",
        t_talipp,
    )

    series, steps = 1_000, 300
    walk = np.random.default_rng(1).normal(0, 500, (steps, series)).cumsum(axis=0) + 2_500_000
    walk = np.round(walk)
    rows = np.arange(series)
    tokens = rows + 100_000
    t0 = int(B[0])
    buckets = [np.full(series, t0 + t * 180 * 10**9, dtype=np.int64) for t in range(steps)]
    t_talipp_burst = t_talipp * series * steps / N

    def arrays_run() -> None:
        e = IndicatorEngine()
        for t in range(steps):
            e.process_arrays(tokens, 180, buckets[t], walk[t])

    report(
        f"default set: IndicatorEngine.process_arrays ({series} series a bucket close)",
        series * steps,
        best_of(arrays_run, 3),
        "candles",
        "talipp",
        t_talipp_burst,
        goal=">= 2,000,000 candles/s and >= 6x talipp",
    )

    bursts = [
        [
            Candle(int(k), "NSE", 180, int(b), int(p), int(p), int(p), int(p))
            for k, b, p in zip(tokens, buckets[t], walk[t], strict=True)
        ]
        for t in range(steps)
    ]

    def many_run() -> None:
        e = IndicatorEngine()
        for burst in bursts:
            e.process_many(burst)

    report(
        f"default set: IndicatorEngine.process_many ({series} series, messages)",
        series * steps,
        best_of(many_run, 2),
        "candles",
        "talipp",
        t_talipp_burst,
    )

    def bank_run() -> None:
        bank = CloseBank(DEFAULT_SPECS, capacity=series)
        for _ in range(series):
            bank.add_series()
        upd = bank.update
        for t in range(steps):
            upd(rows, walk[t])

    report(
        f"default set: CloseBank.update ({series} series per call)",
        series * steps,
        best_of(bank_run, 3),
        "candles",
        "talipp",
        t_talipp_burst,
    )


def batch() -> None:
    print("-- batch over the whole year (TA-Lib as the baseline)")
    hlc = {"high": H, "low": L, "close": C}
    cases = [
        ("SMA(9)", lambda: compute("sma", C, period=9), lambda: talib.SMA(C, 9)),
        ("SMA(200)", lambda: compute("sma", C, period=200), lambda: talib.SMA(C, 200)),
        ("EMA(21)", lambda: compute("ema", C, period=21), lambda: talib.EMA(C, 21)),
        ("WMA(30)", lambda: compute("wma", C, period=30), lambda: talib.WMA(C, 30)),
        ("RSI(14)", lambda: compute("rsi", C, period=14), lambda: talib.RSI(C, 14)),
        ("MACD(12,26,9)", lambda: compute("macd", C), lambda: talib.MACD(C)),
        ("BBANDS(20,2)", lambda: compute("bbands", C), lambda: talib.BBANDS(C, 20, 2, 2)),
        ("ATR(14)", lambda: compute("atr", **hlc), lambda: talib.ATR(H, L, C, 14)),
        ("ADX(14)", lambda: compute("adx", **hlc), lambda: talib.ADX(H, L, C, 14)),
        ("STOCH(5,3,3)", lambda: compute("stoch", **hlc), lambda: talib.STOCH(H, L, C)),
        ("OBV", lambda: compute("obv", close=C, volume=V), lambda: talib.OBV(C, V)),
    ]
    for label, ours, theirs in cases:
        report(f"batch {label}", N, best_of(ours, 7), "values", "TA-Lib", best_of(theirs, 7))

    def ours_set() -> None:
        for p in (9, 20, 50, 200):
            compute("sma", C, period=p)
        compute("ema", C, period=9)
        compute("ema", C, period=21)
        compute("rsi", C, period=14)

    def talib_set() -> None:
        for p in (9, 20, 50, 200):
            talib.SMA(C, p)
        talib.EMA(C, 9)
        talib.EMA(C, 21)
        talib.RSI(C, 14)

    report(
        "batch default set (7 indicators)",
        N,
        best_of(ours_set, 7),
        "candles",
        "TA-Lib",
        best_of(talib_set, 7),
        goal="within 2x of TA-Lib (ratio >= 0.5)",
    )
    report(
        "batch SuperTrend(10,3) (TA-Lib has none)",
        N,
        best_of(lambda: compute("supertrend", **hlc), 7),
        "values",
    )
    report(
        "batch VWAP (session; TA-Lib has none)",
        N,
        best_of(lambda: compute("vwap", **hlc, volume=V, bucket=B), 7),
        "values",
    )


def compile_times() -> None:
    """First calls in a fresh process: with an empty numba cache (compiling), then cached."""
    code = (
        "import time; t=time.perf_counter();"
        "import numpy as np; from mandi.indicators import compute, IndicatorEngine;"
        "x=np.arange(1.0, 60.0);"
        "[compute(k, x) for k in ('sma','ema','wma','rsi','macd','bbands')];"
        "[compute(k, high=x+1, low=x-1, close=x) for k in ('atr','adx','stoch','supertrend')];"
        "compute('obv', close=x, volume=x); compute('vwap', high=x, low=x, close=x, volume=x,"
        " bucket=np.arange(59)*180*10**9);"
        "e=IndicatorEngine(); e.process_arrays([1], 180, [0], [1.0]);"
        "print(time.perf_counter()-t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        run = [sys.executable, "-c", code]
        cold = float(
            subprocess.run(run, env=env, check=True, capture_output=True, text=True).stdout
        )
        warm = float(
            subprocess.run(run, env=env, check=True, capture_output=True, text=True).stdout
        )
    print(
        f"numba first call: {cold:.1f} s compiling every kernel (empty cache), {warm:.2f} s "
        "with the cache (cache=True; both include importing mandi)"
    )


if __name__ == "__main__":
    print(f"-- load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    compile_times()
    per_indicator()
    default_set()
    batch()
