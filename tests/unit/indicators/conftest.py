"""Shared real data for the indicator tests (see tests/data/PROVENANCE.md)."""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from mandi.core.calendar import parse_ist

DATA = pathlib.Path(__file__).resolve().parents[2] / "data"


class OHLCV(NamedTuple):
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    bucket: np.ndarray  # ns UTC (IST wall time for intraday data)
    dates: list[str]


def _frame(df: pd.DataFrame, dates: list[str], bucket: np.ndarray) -> OHLCV:
    cols = {c.lower(): df[c].to_numpy(np.float64) for c in df.columns}
    return OHLCV(
        cols["open"], cols["high"], cols["low"], cols["close"], cols["volume"], bucket, dates
    )


@pytest.fixture(scope="session")
def nifty() -> OHLCV:
    """The real NIFTY 50 3-minute year (31,770 candles, rupees, volume 0)."""
    df = pd.read_csv(DATA / "NIFTY50_3min_2025-07-23_to_2026-08-04.csv")
    dates = df["datetime"].tolist()
    bucket = np.array([parse_ist(t) for t in dates], dtype=np.int64)
    return _frame(df.drop(columns=["datetime"]), dates, bucket)


@pytest.fixture(scope="session")
def bt2006() -> OHLCV:
    """backtrader's 2006 daily test series (255 bars)."""
    df = pd.read_csv(DATA / "backtrader_2006-day-001.txt")
    dates = df["Date"].tolist()
    bucket = np.array([parse_ist(d + " 09:15:00") for d in dates], dtype=np.int64)
    return _frame(df.drop(columns=["Date", "OpenInterest"]), dates, bucket)


@pytest.fixture(scope="session")
def orcl() -> OHLCV:
    """Oracle daily 1995-2014 with real volume (5,036 bars)."""
    df = pd.read_csv(DATA / "backtrader_orcl-1995-2014.txt")
    dates = df["Date"].tolist()
    bucket = np.array([parse_ist(d + " 09:15:00") for d in dates], dtype=np.int64)
    return _frame(df.drop(columns=["Date", "Adj Close"]), dates, bucket)
