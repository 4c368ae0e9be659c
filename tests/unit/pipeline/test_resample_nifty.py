"""The real NIFTY 3-minute year resampled to 15 min, 1 h and 1 day by the TimeframeBuilder,
checked against an independent pandas computation of the same 09:15-anchored buckets. The year
holds irregular sessions: the 2025-10-21 Muhurat session (bars outside its official hours), the
Sunday budget session of 2026-02-01, and 2026-08-03/04 with missing bars."""

import datetime as dt

import pandas as pd
import pytest

from mandi.core.calendar import IST_OFFSET_NS, ist_datetime
from mandi.core.money import to_paise
from mandi.model.market import Candle
from mandi.pipeline.timeframes import TimeframeBuilder


@pytest.fixture(scope="module")
def bars(data_dir):
    df = pd.read_csv(
        data_dir / "NIFTY50_3min_2025-07-23_to_2026-08-04.csv", parse_dates=["datetime"]
    )
    df["bucket"] = df["datetime"].astype("datetime64[ns]").astype("int64") - IST_OFFSET_NS
    for col in ("open", "high", "low", "close"):
        df[col] = [to_paise(x) for x in df[col]]
    return df


def expected(df, tf_seconds):
    ist = df["datetime"]
    day = ist.dt.normalize()
    anchor = day + pd.Timedelta(hours=9, minutes=15)
    if tf_seconds >= 86_400:
        start = anchor
    else:
        step = pd.Timedelta(seconds=tf_seconds)
        start = anchor + ((ist - anchor) // step) * step
    g = df.assign(start=start).groupby("start", sort=True)
    return pd.DataFrame(
        {
            "open": g["open"].first(),
            "high": g["high"].max(),
            "low": g["low"].min(),
            "close": g["close"].last(),
            "n": g.size(),
        }
    )


@pytest.mark.parametrize("tf", [900, 3600, 86_400])
def test_resample_matches_independent_buckets(bars, tf):
    tfb = TimeframeBuilder((tf,), emit_forming=False)
    out: list[Candle] = []
    for r in bars.itertuples(index=False):
        out += tfb.handle_candle(
            Candle(256265, "NSE", 180, r.bucket, r.open, r.high, r.low, r.close, 0, 0, 1, True)
        )
    out += tfb.flush()
    exp = expected(bars, tf)
    assert len(out) == len(exp)
    got = pd.DataFrame(
        {
            "open": [c.open for c in out],
            "high": [c.high for c in out],
            "low": [c.low for c in out],
            "close": [c.close for c in out],
            "n": [c.ticks for c in out],
        },
        index=pd.DatetimeIndex([ist_datetime(c.bucket) for c in out]),
    )
    pd.testing.assert_frame_equal(
        got, exp, check_names=False, check_freq=False, check_index_type=False, check_dtype=False
    )


def test_known_days(bars):
    tfb = TimeframeBuilder((86_400, 3600), emit_forming=False)
    out = []
    for r in bars.itertuples(index=False):
        out += tfb.handle_candle(
            Candle(256265, "NSE", 180, r.bucket, r.open, r.high, r.low, r.close, 0, 0, 1, True)
        )
    out += tfb.flush()
    daily = {ist_datetime(c.bucket).date(): c for c in out if c.timeframe == 86_400}
    assert len(daily) == 255
    assert daily[dt.date(2025, 10, 21)].ticks == 26  # Muhurat
    assert daily[dt.date(2026, 2, 1)].ticks == 125  # the Sunday budget session, full day
    assert daily[dt.date(2026, 8, 3)].ticks == 122  # three bars missing
    first = daily[dt.date(2025, 7, 23)]
    assert (first.open, first.close) == (to_paise("25139.35"), first.close)
    hours = [
        ist_datetime(c.bucket).time()
        for c in out
        if c.timeframe == 3600 and ist_datetime(c.bucket).date() == dt.date(2026, 4, 13)
    ]
    assert hours == [dt.time(h, 15) for h in range(9, 16)]  # 09:15 … 15:15 (45 min)
