"""Instruments (index, equity, future, option) and the instrument master.

The master file format is Kite's instrument dump (``instrument_token, exchange_token,
tradingsymbol, name, last_price, expiry, strike, tick_size, lot_size, instrument_type, segment,
exchange``) plus an optional ``freeze_qty`` column; the simulator writes the same format. Lot sizes,
tick sizes and freeze quantities are data from the file, never constants in code.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from mandi.core.errors import InstrumentError
from mandi.core.money import to_paise


class Instrument(msgspec.Struct, frozen=True, tag=True):
    """Common fields. ``tick_size`` is in paise; ``lot_size`` and ``freeze_qty`` in shares
    (``freeze_qty`` 0 = no freeze limit known)."""

    token: int
    exchange: str
    symbol: str
    name: str = ""
    segment: str = ""
    lot_size: int = 1
    tick_size: int = 5
    freeze_qty: int = 0

    @property
    def tradable(self) -> bool:
        return True


class Index(Instrument, frozen=True):
    @property
    def tradable(self) -> bool:
        return False


class Equity(Instrument, frozen=True):
    pass


class Future(Instrument, frozen=True):
    underlying: str = ""
    expiry: dt.date | None = None


class Option(Instrument, frozen=True):
    underlying: str = ""
    expiry: dt.date | None = None
    strike: int = 0  # paise
    option_type: str = "CE"  # "CE" | "PE"

    @property
    def is_call(self) -> bool:
        return self.option_type == "CE"


AnyInstrument = Index | Equity | Future | Option

MASTER_COLUMNS = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
    "freeze_qty",
)


def _row_to_instrument(row: dict[str, str], line: int) -> AnyInstrument:
    try:
        token = int(row["instrument_token"])
        exchange = row["exchange"].strip()
        symbol = row["tradingsymbol"].strip()
        name = (row.get("name") or "").strip().strip('"')
        segment = (row.get("segment") or "").strip()
        kind = row["instrument_type"].strip().upper()
        tick = to_paise(row.get("tick_size") or "0.05")
        lot = int(float(row.get("lot_size") or 1))
        freeze = int(float(row.get("freeze_qty") or 0))
        exp_text = (row.get("expiry") or "").strip()
        expiry = dt.date.fromisoformat(exp_text) if exp_text else None
        common: dict[str, Any] = dict(
            token=token,
            exchange=exchange,
            symbol=symbol,
            name=name,
            segment=segment,
            lot_size=max(lot, 1),
            tick_size=tick,
            freeze_qty=freeze,
        )
        if kind in ("CE", "PE"):
            return Option(
                **common,
                underlying=name,
                expiry=expiry,
                strike=to_paise(row.get("strike") or "0"),
                option_type=kind,
            )
        if kind == "FUT":
            return Future(**common, underlying=name, expiry=expiry)
        if kind == "INDEX" or segment == "INDICES":
            return Index(**common)
        return Equity(**common)
    except (KeyError, ValueError) as e:
        raise InstrumentError(f"instrument master line {line}: bad value ({e})") from None


def parse_instrument_csv(text: str) -> list[AnyInstrument]:
    """Parse a Kite-format instrument master CSV."""
    reader = csv.DictReader(text.splitlines())
    return [_row_to_instrument(r, n) for n, r in enumerate(reader, start=2)]


def instrument_csv_rows(instruments: Iterable[AnyInstrument]) -> Iterator[list[str]]:
    """Rows (header first) of the master CSV for ``instruments``."""
    yield list(MASTER_COLUMNS)
    for i in instruments:
        kind = {"Index": "INDEX", "Equity": "EQ", "Future": "FUT"}.get(type(i).__name__, "")
        expiry = strike = ""
        if isinstance(i, Option):
            kind, strike = i.option_type, f"{i.strike / 100:g}"
        if isinstance(i, Option | Future) and i.expiry:
            expiry = i.expiry.isoformat()
        name = i.underlying if isinstance(i, Option | Future) else i.name
        yield [
            str(i.token),
            str(i.token >> 8),
            i.symbol,
            name,
            "0",
            expiry,
            strike or "0",
            f"{i.tick_size / 100:g}",
            str(i.lot_size),
            kind,
            i.segment,
            i.exchange,
            str(i.freeze_qty),
        ]


class InstrumentMaster:
    """Lookup of instruments by token and by trading symbol, and option chains by
    (underlying, expiry)."""

    def __init__(self, instruments: Iterable[AnyInstrument] = ()) -> None:
        self._by_token: dict[int, AnyInstrument] = {}
        self._by_symbol: dict[tuple[str, str], AnyInstrument] = {}
        self._options: dict[tuple[str, dt.date], list[Option]] = {}
        for i in instruments:
            self.add(i)

    def add(self, inst: AnyInstrument) -> None:
        if inst.token in self._by_token:
            raise InstrumentError(f"duplicate instrument token {inst.token} ({inst.symbol})")
        self._by_token[inst.token] = inst
        self._by_symbol[(inst.exchange, inst.symbol)] = inst
        if isinstance(inst, Option) and inst.expiry is not None:
            self._options.setdefault((inst.underlying, inst.expiry), []).append(inst)

    def __len__(self) -> int:
        return len(self._by_token)

    def __iter__(self) -> Iterator[AnyInstrument]:
        return iter(self._by_token.values())

    def __contains__(self, token: object) -> bool:
        return token in self._by_token

    def get(self, token: int) -> AnyInstrument | None:
        return self._by_token.get(token)

    def by_token(self, token: int) -> AnyInstrument:
        try:
            return self._by_token[token]
        except KeyError:
            raise InstrumentError(f"unknown instrument token {token}") from None

    def by_symbol(self, symbol: str, exchange: str | None = None) -> AnyInstrument:
        """Find by trading symbol; without ``exchange`` the symbol must be unambiguous."""
        if exchange is not None:
            inst = self._by_symbol.get((exchange, symbol))
            if inst is None:
                raise InstrumentError(f"unknown instrument {exchange}:{symbol}")
            return inst
        hits = [i for (ex, s), i in self._by_symbol.items() if s == symbol]
        if len(hits) != 1:
            what = "unknown" if not hits else "ambiguous (give the exchange)"
            raise InstrumentError(f"{what} instrument symbol {symbol!r}")
        return hits[0]

    def options(self, underlying: str, expiry: dt.date) -> list[Option]:
        """Options of one underlying and expiry, sorted by (strike, CE before PE)."""
        return sorted(
            self._options.get((underlying, expiry), []), key=lambda o: (o.strike, o.option_type)
        )

    def expiries(self, underlying: str) -> list[dt.date]:
        return sorted(e for (u, e) in self._options if u == underlying)
