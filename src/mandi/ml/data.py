"""Data into the ML pipeline (shell): bars from CSV / Parquet / a ``mandi.db`` store, India VIX,
recorded option chains — and feature frames to and from Parquet (``mandi features``).

A feature Parquet file carries its definition in the schema metadata (``mandi.features``:
names, timeframe, symbol, feature-code hash), so ``mandi train`` can read it back instead of
raw data, and refuses one written by different feature code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mandi.backtest.bars import BarSeries
from mandi.core.errors import DataError
from mandi.features import FeatureFrame, build_features, features_of
from mandi.features.catalog import check_names
from mandi.model.market import ChainSnapshot

VIX_SYMBOLS = ("INDIA VIX", "INDIAVIX")
STORE_TIMEFRAME = 180
META_KEY = b"mandi.features"


@dataclass
class TrainingData:
    """Bars of the traded series, optional VIX bars and chains, and where they came from."""

    series: BarSeries
    vix: BarSeries | None = None
    chains: list[ChainSnapshot] | None = None
    underlying: str = ""
    sources: tuple[str, ...] = ()
    frame: FeatureFrame | None = None  # features read from a Parquet file instead

    @property
    def symbol(self) -> str:
        return self.series.symbol if self.frame is None else self.frame.symbol

    @property
    def timeframe(self) -> int:
        return self.series.timeframe if self.frame is None else self.frame.timeframe


def is_vix(symbol: str) -> bool:
    return symbol.replace(" ", "").upper() in {s.replace(" ", "") for s in VIX_SYMBOLS}


def _pick(series: list[BarSeries], symbol: str | None, path: str) -> BarSeries:
    if symbol:
        hit = [s for s in series if s.symbol == symbol]
        if not hit:
            have = ", ".join(sorted(s.symbol for s in series))
            raise DataError(f"{path}: no series {symbol!r} (have: {have})")
        return hit[0]
    tradable = [s for s in series if not is_vix(s.symbol)]
    if len(tradable) != 1:
        have = ", ".join(sorted(s.symbol for s in tradable))
        raise DataError(f"{path}: {len(tradable)} series ({have}); pick one with --symbol")
    return tradable[0]


def load_training_data(
    data: str | os.PathLike[str],
    *,
    symbol: str | None = None,
    timeframe: int | None = None,
    vix: str | os.PathLike[str] | None = None,
    chains: Sequence[str | os.PathLike[str]] | None = None,
    underlying: str | None = None,
    with_vix: bool | None = None,
    with_chains: bool | None = None,
) -> TrainingData:
    """Load what the features need.

    ``data`` is a CSV / Parquet OHLCV file, a feature Parquet file written by ``mandi features``,
    or a ``mandi.db`` store (then ``symbol``'s candles of ``timeframe``, default 180 s; its India
    VIX and option chains are used when present, unless ``with_vix`` / ``with_chains`` is
    False). ``vix`` and ``chains`` name other sources.
    """
    from mandi.backtest.bars import BacktestError
    from mandi.services.backtest.data import (
        is_store,
        load,
        load_store_candles,
        load_store_chains,
        store_timeframes,
    )

    p = str(data)
    sources = [p]
    if not Path(p).exists():
        raise DataError(f"{p}: no such file")
    try:
        if p.lower().endswith((".parquet", ".pq")):
            frame = read_feature_parquet(p)
            if frame is not None:
                return TrainingData(_frame_series(frame), sources=(p,), frame=frame)
        store = is_store(p)
        if store:
            tf = timeframe or STORE_TIMEFRAME
            if tf not in store_timeframes(p):
                raise DataError(f"{p}: no {tf} s candles stored (have {store_timeframes(p)})")
            series = load_store_candles(p, tf, (symbol,) if symbol else ())
            main = _pick(series, symbol, p)
        else:
            main = _pick(load(p, symbol=symbol), None, p)
            if timeframe and timeframe != main.timeframe:
                main = main.resample(timeframe)
        vix_series = None
        if vix is not None:
            vs = str(vix)
            sources.append(vs)
            vix_series = _load_vix(vs, main.timeframe)
        elif store and with_vix is not False:
            found = [
                s for s in load_store_candles(p, main.timeframe) if is_vix(s.symbol)
            ]  # the simulator records INDIA VIX
            vix_series = found[0] if found else None
        snaps: list[ChainSnapshot] | None = None
        und = underlying or main.symbol
        if chains:
            from mandi.services.backtest.api import load_chains

            sources += [str(c) for c in chains]
            snaps = load_chains(list(chains))
        elif store and with_chains is not False:
            snaps = load_store_chains(p) or None
        if snaps is not None:
            unds = sorted({s.underlying for s in snaps})
            if und not in unds:
                if underlying or len(unds) != 1:
                    raise DataError(
                        f"no option chains of {und!r} (chains of: {', '.join(unds)}); "
                        "name one with --underlying"
                    )
                und = unds[0]
            snaps = [s for s in snaps if s.underlying == und]
    except BacktestError as e:
        raise DataError(str(e)) from None
    return TrainingData(main, vix_series, snaps, und, tuple(sources))


def _load_vix(path: str, timeframe: int) -> BarSeries:
    from mandi.services.backtest.data import is_store, load, load_store_candles

    if is_store(path):
        found = [s for s in load_store_candles(path, timeframe) if is_vix(s.symbol)]
        if not found:
            raise DataError(f"{path}: no INDIA VIX candles of {timeframe} s")
        return found[0]
    s = load(path)[0]
    if s.timeframe != timeframe:
        s = s.resample(timeframe)
    return s


def available_groups(td: TrainingData) -> tuple[str, ...]:
    groups = ["bars", "time"]
    if td.vix is not None:
        groups.append("vix")
    if td.chains:
        groups.append("chain")
    return tuple(groups)


def resolve_names(td: TrainingData, features: Sequence[str] | None) -> tuple[str, ...]:
    """Feature names from ``--features`` (groups and/or names; default: every group the data
    allows)."""
    if td.frame is not None:
        if features:
            wanted = expand_features(features)
            missing = [n for n in wanted if n not in td.frame.names]
            if missing:
                raise DataError(f"the feature file has no {', '.join(missing)}")
            return wanted
        return td.frame.names
    return expand_features(features or available_groups(td))


def expand_features(items: Sequence[str]) -> tuple[str, ...]:
    """Groups and names (comma-separated or not) → feature names, checked."""
    from mandi.features.catalog import GROUPS

    names: list[str] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            add = features_of([part]) if part in GROUPS else (part,)
            names += [n for n in add if n not in names]
    return check_names(names, "--features")


def feature_frame(td: TrainingData, names: Sequence[str]) -> FeatureFrame:
    """The features ``names`` of the training data (batch)."""
    if td.frame is not None:
        idx = [td.frame.names.index(n) for n in names]
        f = td.frame
        return FeatureFrame(tuple(names), f.timeframe, f.bucket, f.close, f.X[:, idx], f.symbol)
    s = td.series
    vix = (td.vix.bucket, td.vix.close) if td.vix is not None else None
    return build_features(
        names,
        s.timeframe,
        s.bucket,
        s.open,
        s.high,
        s.low,
        s.close,
        vix=vix,
        chains=td.chains,
        underlying=td.underlying,
        symbol=s.symbol,
    )


def _frame_series(frame: FeatureFrame) -> BarSeries:
    from mandi.services.backtest.data import make_instrument

    c = frame.close
    z = np.zeros(len(c), dtype=np.int64)
    return BarSeries(
        make_instrument(frame.symbol or "DATA", 1), frame.timeframe, frame.bucket, c, c, c, c, z
    )


# --- Parquet -------------------------------------------------------------------------------------


def write_feature_parquet(
    frame: FeatureFrame,
    path: str | os.PathLike[str],
    extra: dict[str, Any] | None = None,
    columns: dict[str, np.ndarray] | None = None,
) -> None:
    """Write a feature frame: ``time`` (UTC), ``bucket_ns``, ``close`` (rupees), the features,
    then ``columns`` (e.g. labels); the definition goes into the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mandi.ml.registry import feature_code_hash

    cols: dict[str, Any] = {
        "time": pa.array(frame.bucket.astype("datetime64[ns]"), type=pa.timestamp("ns", "UTC")),
        "bucket_ns": pa.array(frame.bucket),
        "close": pa.array(frame.close / 100.0),
    }
    for j, n in enumerate(frame.names):
        cols[n] = pa.array(frame.X[:, j])
    for n, a in (columns or {}).items():
        cols[n] = pa.array(a)
    meta = {
        "names": list(frame.names),
        "timeframe": frame.timeframe,
        "symbol": frame.symbol,
        "feature_hash": feature_code_hash(),
        **(extra or {}),
    }
    table = pa.table(cols).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    pq.write_table(table, str(path))


def read_feature_parquet(path: str | os.PathLike[str]) -> FeatureFrame | None:
    """A feature frame written by :func:`write_feature_parquet`, or None for other Parquet."""
    import pyarrow.parquet as pq

    from mandi.ml.registry import feature_code_hash

    try:
        table = pq.read_table(str(path))
    except Exception as e:  # pyarrow's own error types
        raise DataError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        return None
    meta = json.loads(raw)
    if meta.get("feature_hash") != feature_code_hash():
        raise DataError(
            f"{path}: written by other feature code ({meta.get('feature_hash')}, this mandi "
            f"has {feature_code_hash()}); run mandi features again"
        )
    names = tuple(meta["names"])
    X = np.column_stack([table.column(n).to_numpy() for n in names]).astype(np.float64)
    close = np.rint(table.column("close").to_numpy() * 100).astype(np.int64)
    return FeatureFrame(
        names,
        int(meta["timeframe"]),
        table.column("bucket_ns").to_numpy().astype(np.int64),
        close,
        np.ascontiguousarray(X),
        str(meta.get("symbol", "")),
    )
