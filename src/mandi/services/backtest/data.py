"""Data into the backtester (I/O shell): OHLCV files, the SQLite store, NSE option chains.

* **CSV** in the common ``datetime,open,high,low,close,volume`` layout (header names are matched
  case-insensitively; ``date``/``time``/``timestamp`` work too, an ``oi`` column is kept) and
  **Yahoo**'s ``Date,Open,High,Low,Close,Adj Close,Volume`` (prices as traded; ``Adj Close`` is
  ignored). Naive times are IST; a date without a time is a daily bar. Prices in rupees.
* **Parquet** with the same columns (needs ``pyarrow``), a datetime column or index.
* **The store** (``mandi.db`` written by ``mandi run``): its ``candles`` of one timeframe, or its
  ``ticks`` for an exact replay (see :func:`mandi.services.backtest.api.replay`).
* **Option chains**: NSE/BSE option-chain files (``mandi.feeds.nse``) or the store's
  ``option_chain_snapshots``, as :class:`~mandi.model.market.ChainSnapshot` messages in time order.

Every loader returns :class:`~mandi.backtest.bars.BarSeries` (int paise, ns UTC) and names the
file, row and value on bad input.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mandi.backtest.bars import BacktestError, BarSeries, infer_timeframe
from mandi.core.calendar import IST_OFFSET_NS
from mandi.core.clock import NS_PER_SECOND
from mandi.model.instruments import AnyInstrument, Equity, Index, InstrumentMaster
from mandi.model.market import ChainSnapshot

_NAMES = {
    "datetime": "time",
    "date": "time",
    "time": "time",
    "timestamp": "time",
    "date_time": "time",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
    "vol": "volume",
    "oi": "oi",
    "open_interest": "oi",
    "openinterest": "oi",
}


def symbol_from_path(path: str | os.PathLike[str]) -> str:
    """``NIFTY50_3min_2025-07-23_to_2026-08-04.csv`` → ``NIFTY50``; ``orcl-1995-2014.txt`` →
    ``ORCL``."""
    stem = Path(path).name.split(".")[0]
    for sep in ("_", "-", " "):
        stem = stem.split(sep)[0] or stem
    return (stem or "DATA").upper()


def make_instrument(
    symbol: str, token: int, *, exchange: str = "NSE", lot_size: int = 1, tick_size: int = 5
) -> Equity:
    """A tradable stand-in for a series read from a plain file."""
    return Equity(token, exchange, symbol, symbol, "", lot_size, tick_size)


def _to_paise(col: np.ndarray, name: str, path: str) -> np.ndarray:
    x = np.asarray(col, dtype=np.float64)
    bad = ~np.isfinite(x) | (x < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise BacktestError(f"{path}: row {i + 2}: column {name} has a bad value {col[i]!r}")
    return np.rint(x * 100).astype(np.int64)


def _frame_to_series(df, path: str, instrument: AnyInstrument, timeframe: int | None) -> BarSeries:  # type: ignore[no-untyped-def]
    import pandas as pd

    cols = {}
    for c in df.columns:
        key = _NAMES.get(str(c).strip().lower().replace(" ", "_"))
        if key and key not in cols:
            cols[key] = c
    if "time" not in cols and isinstance(df.index, pd.DatetimeIndex):
        df = df.reset_index()
        cols["time"] = df.columns[0]
    missing = [k for k in ("time", "open", "high", "low", "close") if k not in cols]
    if missing:
        have = ", ".join(map(str, df.columns))
        raise BacktestError(f"{path}: no column for {', '.join(missing)} (columns: {have})")
    raw_t = df[cols["time"]]
    try:
        t = pd.to_datetime(raw_t, errors="coerce")
    except (ValueError, TypeError) as e:
        raise BacktestError(f"{path}: column {cols['time']!r}: cannot read times ({e})") from None
    if t.isna().any():
        i = int(np.argmax(t.isna().to_numpy()))
        raise BacktestError(f"{path}: row {i + 2}: bad time {raw_t.iloc[i]!r}")
    if getattr(t.dt, "tz", None) is not None:
        ns = t.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]").astype(np.int64)
    else:
        ns = t.to_numpy("datetime64[ns]").astype(np.int64) - IST_OFFSET_NS
    daily = bool((t.dt.hour == 0).all() and (t.dt.minute == 0).all() and (t.dt.second == 0).all())
    if daily:  # a date is a daily bar starting at the session open (09:15 IST)
        ns = ns + (9 * 3600 + 15 * 60) * NS_PER_SECOND
    o = _to_paise(df[cols["open"]].to_numpy(), "open", path)
    h = _to_paise(df[cols["high"]].to_numpy(), "high", path)
    lo = _to_paise(df[cols["low"]].to_numpy(), "low", path)
    c = _to_paise(df[cols["close"]].to_numpy(), "close", path)
    if "volume" in cols:
        v = np.nan_to_num(df[cols["volume"]].to_numpy(dtype=np.float64)).astype(np.int64)
    else:
        v = np.zeros(len(df), dtype=np.int64)
    oi = (
        np.nan_to_num(df[cols["oi"]].to_numpy(dtype=np.float64)).astype(np.int64)
        if "oi" in cols
        else np.zeros(len(df), dtype=np.int64)
    )
    bad = (h < lo) | (h < np.maximum(o, c)) | (lo > np.minimum(o, c))
    if bad.any():
        # some vendors' highs/lows exclude the open/close: widen rather than refuse
        h = np.maximum(h, np.maximum(o, c))
        lo = np.minimum(lo, np.minimum(o, c))
    order = np.argsort(ns, kind="stable")
    ns, o, h, lo, c, v, oi = (a[order] for a in (ns, o, h, lo, c, v, oi))
    dup = np.r_[False, ns[1:] == ns[:-1]]
    if dup.any():
        i = int(np.argmax(dup))
        raise BacktestError(f"{path}: two bars at {raw_t.iloc[order[i]]!r}")
    tf = timeframe or (86_400 if daily else infer_timeframe(ns))
    return BarSeries(instrument, tf, ns, o, h, lo, c, v, oi)


def load_csv(
    path: str | os.PathLike[str],
    *,
    symbol: str | None = None,
    token: int = 1,
    timeframe: int | None = None,
    lot_size: int = 1,
    tick_size: int = 5,
    exchange: str = "NSE",
) -> BarSeries:
    """An OHLCV CSV (common or Yahoo layout) as a :class:`BarSeries` (see the module doc)."""
    import pandas as pd

    p = str(path)
    try:
        df = pd.read_csv(p)
    except FileNotFoundError:
        raise BacktestError(f"{p}: no such file") from None
    except (ValueError, pd.errors.ParserError) as e:
        raise BacktestError(f"{p}: not a readable CSV ({e})") from None
    if df.empty:
        raise BacktestError(f"{p}: no rows")
    inst = make_instrument(
        symbol or symbol_from_path(p),
        token,
        exchange=exchange,
        lot_size=lot_size,
        tick_size=tick_size,
    )
    return _frame_to_series(df, p, inst, timeframe)


def load_parquet(
    path: str | os.PathLike[str],
    *,
    symbol: str | None = None,
    token: int = 1,
    timeframe: int | None = None,
    lot_size: int = 1,
    tick_size: int = 5,
    exchange: str = "NSE",
) -> BarSeries:
    """An OHLCV Parquet file (needs pyarrow) as a :class:`BarSeries`."""
    import pandas as pd

    p = str(path)
    try:
        df = pd.read_parquet(p)
    except ImportError as e:
        raise BacktestError(f"{p}: reading Parquet needs pyarrow ({e})") from None
    except FileNotFoundError:
        raise BacktestError(f"{p}: no such file") from None
    inst = make_instrument(
        symbol or symbol_from_path(p),
        token,
        exchange=exchange,
        lot_size=lot_size,
        tick_size=tick_size,
    )
    return _frame_to_series(df, p, inst, timeframe)


def write_parquet(series: BarSeries, path: str | os.PathLike[str]) -> None:
    """Write a series as Parquet (``datetime`` naive IST, prices in rupees)."""
    import pandas as pd

    t = pd.to_datetime(series.bucket + IST_OFFSET_NS)
    pd.DataFrame(
        {
            "datetime": t,
            "open": series.open / 100,
            "high": series.high / 100,
            "low": series.low / 100,
            "close": series.close / 100,
            "volume": series.volume,
        }
    ).to_parquet(str(path), index=False)


def is_store(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def open_store(path: str | os.PathLike[str]) -> sqlite3.Connection:
    p = str(path)
    if not Path(p).is_file():
        raise BacktestError(f"{p}: no such database")
    return sqlite3.connect(f"file:{p}?mode=ro", uri=True)


def store_master(con: sqlite3.Connection) -> InstrumentMaster:
    """The instruments of a store written by ``mandi run`` on the simulator (rebuilt from the
    simulation's identity); empty for other stores."""
    from mandi.stores.sqlite import get_meta

    master = InstrumentMaster()
    try:
        ident = get_meta(con, "sim.identity")
    except sqlite3.Error:
        ident = None
    if not ident:
        return master
    import msgspec

    from mandi.config import SimConfig
    from mandi.feeds.sim import SimExchange

    cfg = msgspec.json.decode(ident.encode(), type=SimConfig)
    start = get_meta(con, "sim.start_date")
    day = dt.date.fromisoformat(start) if start else cfg.date
    ex = SimExchange(cfg, day)
    for inst in ex.instruments:
        master.add(inst)
    return master


def load_store_candles(
    path: str | os.PathLike[str],
    timeframe: int,
    symbols: Sequence[str] = (),
    start_ns: int = 0,
    end_ns: int = 1 << 62,
) -> list[BarSeries]:
    """The store's confirmed candles of ``timeframe`` (of ``symbols``, or every instrument that
    has some), one series per instrument. Indices become tradable stand-ins (an index traded at
    its own price)."""
    from mandi.stores.sqlite import load_candles

    con = open_store(path)
    try:
        master = store_master(con)
        tokens: list[int] | None = None
        if symbols:
            tokens = []
            for sym in symbols:
                hit = [i for i in master if i.symbol == sym]
                if hit:
                    tokens.append(hit[0].token)
                else:
                    from mandi.stores.history import candle_tokens

                    known = candle_tokens(con, timeframe, 20)
                    raise BacktestError(
                        f"{path}: no instrument {sym!r} (tokens with {timeframe} s candles: "
                        f"{', '.join(str(t) for t in known)})"
                    )
        rows = load_candles(con, timeframe, start_ns, end_ns, tokens)
    finally:
        con.close()
    if not rows:
        raise BacktestError(f"{path}: no {timeframe} s candles stored")
    by: dict[int, list] = {}  # type: ignore[type-arg]
    for c in rows:
        by.setdefault(c.token, []).append(c)
    out = []
    for token, cs in by.items():
        inst = master.get(token)
        if inst is None:
            inst = make_instrument(f"T{token}", token, exchange=cs[0].exchange)
        elif isinstance(inst, Index):
            inst = Equity(inst.token, inst.exchange, inst.symbol, inst.name, "", 1, inst.tick_size)
        out.append(BarSeries.from_candles(inst, cs))
    return out


def store_timeframes(path: str | os.PathLike[str]) -> list[int]:
    con = open_store(path)
    try:
        from mandi.stores.history import candle_timeframes

        return candle_timeframes(con)
    finally:
        con.close()


def load_store_chains(
    path: str | os.PathLike[str],
    start_ns: int = 0,
    end_ns: int = 1 << 62,
    underlying: str | None = None,
) -> list[ChainSnapshot]:
    from mandi.stores.chains import load_snapshots

    con = open_store(path)
    try:
        return load_snapshots(con, start_ns, end_ns, underlying)
    finally:
        con.close()


def load_chain_files(paths: Sequence[str | os.PathLike[str]]) -> list[ChainSnapshot]:
    """NSE/BSE option-chain files (every unexpired expiry of each), in time order."""
    from mandi.feeds.nse import load_option_chains

    out: list[ChainSnapshot] = []
    for p in paths:
        out += load_option_chains(str(p))
    out.sort(key=lambda s: (s.ts_event, s.underlying, s.expiry))
    return out


def load(
    path: str | os.PathLike[str],
    *,
    symbol: str | None = None,
    token: int = 1,
    timeframe: int | None = None,
    lot_size: int = 1,
    tick_size: int = 5,
) -> list[BarSeries]:
    """Any supported file by its content/extension: a store, Parquet, or CSV."""
    p = str(path)
    if is_store(p):
        tfs = store_timeframes(p)
        if not tfs:
            raise BacktestError(f"{p}: the store has no candles")
        tf = timeframe if timeframe else (60 if 60 in tfs else tfs[0])
        return load_store_candles(p, tf, (symbol,) if symbol else ())
    if p.lower().endswith((".parquet", ".pq")):
        return [
            load_parquet(
                p,
                symbol=symbol,
                token=token,
                timeframe=timeframe,
                lot_size=lot_size,
                tick_size=tick_size,
            )
        ]
    return [
        load_csv(
            p,
            symbol=symbol,
            token=token,
            timeframe=timeframe,
            lot_size=lot_size,
            tick_size=tick_size,
        )
    ]


def load_chains(chains: Any) -> list[Any]:
    """Option-chain snapshots from paths (NSE/BSE files or a store) or snapshots as they are."""
    from mandi.model.market import ChainSnapshot

    items = list(chains) if isinstance(chains, list | tuple) else [chains]
    out: list[ChainSnapshot] = []
    files = []
    for it in items:
        if isinstance(it, ChainSnapshot):
            out.append(it)
        elif is_store(it):
            out += load_store_chains(it)
        else:
            files.append(it)
    if files:
        out += load_chain_files(files)
    if not out and items:
        raise BacktestError("--chains: no option-chain snapshots found")
    return out


def chain_instruments(snaps: Sequence[Any], master: InstrumentMaster) -> list[Any]:
    """Option contracts for the chains' strikes (so that the strategy engine knows their
    expiries); tokens from the snapshots, or made up where a file gives none."""
    from mandi.model.instruments import Option

    out: dict[tuple[Any, ...], Any] = {}
    next_token = 900_000_000
    used = {i.token for i in master}
    for snap in snaps:
        for row in snap.rows:
            for kind, q in (("CE", row.call), ("PE", row.put)):
                if q is None:
                    continue
                key = (snap.underlying, snap.expiry, row.strike, kind)
                if key in out:
                    continue
                token = q.token
                if not token or token in used:
                    while next_token in used:
                        next_token += 1
                    token = next_token
                used.add(token)
                sym = q.symbol or f"{snap.underlying}{snap.expiry:%y%b}{row.strike // 100}{kind}"
                out[key] = Option(
                    token,
                    snap.exchange,
                    sym.upper(),
                    snap.underlying,
                    "",
                    snap.lot_size,
                    5,
                    0,
                    underlying=snap.underlying,
                    expiry=snap.expiry,
                    strike=row.strike,
                    option_type=kind,
                )
    return list(out.values())
