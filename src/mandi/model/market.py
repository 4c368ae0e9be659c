"""Market data messages: ticks, candles, indicator values and option-chain snapshots.

Conventions (DESIGN §2): prices are ``int`` paise, times ``int`` ns UTC, quantities in shares
(units), analytics ``float``.
"""

from __future__ import annotations

import datetime as dt
import math

import msgspec

from mandi.model.base import Message, message


@message
class Tick(Message, frozen=True):
    """One market-data update of one instrument.

    ``volume`` is the cumulative traded quantity of the day (as brokers send it); the candle
    builder turns it into per-candle volume. ``oi`` is open interest in shares.
    """

    token: int
    exchange: str
    ts_event: int
    ts_init: int
    price: int
    volume: int = 0
    last_qty: int = 0
    oi: int = 0
    bid: int = 0
    ask: int = 0
    bid_qty: int = 0
    ask_qty: int = 0


@message
class Candle(Message, frozen=True):
    """OHLCV of one bucket. ``bucket`` is the start (ns, aligned to 09:15 IST) and
    ``timeframe`` its length in seconds; ``closed`` tells a confirmed candle from a forming one."""

    token: int
    exchange: str
    timeframe: int
    bucket: int
    open: int
    high: int
    low: int
    close: int
    volume: int = 0
    oi: int = 0
    ticks: int = 0
    closed: bool = True


@message
class IndicatorValue(Message, frozen=True):
    """One indicator output for one candle; ``confirmed`` is False for a preview on a forming
    candle. Multi-output indicators publish one value per output (``MACD_12_26_9.signal``)."""

    token: int
    exchange: str
    timeframe: int
    bucket: int
    name: str
    value: float
    confirmed: bool = True


class OptionQuote(msgspec.Struct, frozen=True, gc=False):
    """One side (CE or PE) of one strike in a chain snapshot. Prices in paise, quantities in
    shares; ``iv`` is the source's published IV as a decimal (NaN when not given).

    ``gc=False`` (also on :class:`ChainRow`): they hold only numbers, text and each other, so
    they cannot form a reference cycle, and a chain of thousands of them no longer sets off
    garbage-collector passes (a quarter of the time of parsing a 3,000-contract NSE chain)."""

    ltp: int
    bid: int = 0
    ask: int = 0
    volume: int = 0
    oi: int = 0
    oi_change: int = 0
    token: int = 0
    symbol: str = ""
    iv: float = math.nan
    bid_qty: int = 0
    ask_qty: int = 0


class ChainRow(msgspec.Struct, frozen=True, gc=False):
    """One strike: its call and put (either may be missing)."""

    strike: int
    call: OptionQuote | None = None
    put: OptionQuote | None = None


class ChainRows(tuple):  # type: ignore[type-arg]
    """``ChainSnapshot.rows`` as a parser that already holds them as arrays hands them over:
    a plain tuple of :class:`ChainRow` that also carries ``columns``, the same rows as one
    (n, 13) float64 array — strike, then ltp, bid, ask, volume, oi, oi_change of the call and
    of the put (NaN: no such side), in paise and shares, one row per strike, ascending — so the
    chain matrix need not read 3,000 quotes back into an array. It compares, hashes, encodes
    and pickles as the tuple it is; whoever builds one keeps ``columns`` equal to the rows."""

    columns: object = None


@message
class ChainSnapshot(Message, frozen=True):
    """The option chain of one underlying and one expiry at one moment.

    ``rows`` are sorted by strike. ``lot_size`` converts share quantities to contracts.
    ``source`` names where it came from (``sim``, ``nse-json``, ``kite`` ...).
    """

    underlying: str
    exchange: str
    expiry: dt.date
    ts_event: int
    underlying_price: int
    rows: tuple[ChainRow, ...]
    lot_size: int = 1
    source: str = ""
