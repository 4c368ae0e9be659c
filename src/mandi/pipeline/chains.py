"""Ticks → option-chain snapshots, once per interval of exchange time.

The :class:`ChainAssembler` keeps the latest tick of every option contract and of every
underlying, and on :meth:`ChainAssembler.snapshots` builds one :class:`ChainSnapshot` per
(underlying, expiry) from them — the same way for the simulator, the tickserver and broker feeds.
Change in OI is measured against the first OI seen for the contract on the current IST day (a
broker's previous-day OI, when a feed provides one, can be set with :meth:`set_oi_reference`).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable

import msgspec

from mandi.core.calendar import IST_OFFSET_NS, NS_PER_DAY, ist_date
from mandi.model.instruments import AnyInstrument, InstrumentMaster, Option
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote, Tick

# Index names in instrument masters differ from the options' underlying names (Kite: "NIFTY 50").
INDEX_ALIASES: dict[str, tuple[str, ...]] = {
    "NIFTY": ("NIFTY", "NIFTY 50"),
    "BANKNIFTY": ("BANKNIFTY", "NIFTY BANK"),
    "FINNIFTY": ("FINNIFTY", "NIFTY FIN SERVICE"),
    "MIDCPNIFTY": ("MIDCPNIFTY", "NIFTY MID SELECT"),
    "NIFTYNXT50": ("NIFTYNXT50", "NIFTY NEXT 50"),
    "SENSEX": ("SENSEX",),
    "BANKEX": ("BANKEX",),
}


class _Chain:
    """The latest quotes of one (underlying, expiry); rows are rebuilt only where quotes changed."""

    __slots__ = ("exchange", "lot", "quoted", "quotes", "rows", "strikes")

    def __init__(self, exchange: str, lot: int, listed: Iterable[int] = ()) -> None:
        self.exchange, self.lot = exchange, lot
        self.strikes: list[int] = sorted(set(listed))  # every listed strike, quoted or not,
        # so the matrix sees the real strike spacing from the first snapshot on
        self.quotes: dict[int, list[OptionQuote | None]] = {k: [None, None] for k in self.strikes}
        self.rows: dict[int, ChainRow] = {k: ChainRow(k) for k in self.strikes}
        self.quoted = False


class ChainAssembler:
    """Latest quotes per option contract → chain snapshots per (underlying, expiry)."""

    def __init__(self, master: InstrumentMaster, source: str = "live") -> None:
        self.source = source
        self._options: dict[int, Option] = {}
        self._underlying_token: dict[str, int] = {}
        self._price: dict[int, int] = {}  # latest price of every non-option token
        self._chains: dict[tuple[str, dt.date], _Chain] = {}
        self._dirty: set[tuple[tuple[str, dt.date], int]] = set()
        self._oi_ref: dict[int, int] = {}
        self._listed: dict[tuple[str, dt.date], set[int]] = {}
        self._day: dt.date | None = None
        self._day_start = -NS_PER_DAY  # ns UTC of the current IST day's midnight
        self.add_instruments(master)

    def add_instruments(self, instruments: Iterable[AnyInstrument]) -> None:
        """Register option contracts and resolve their underlyings' tokens."""
        by_symbol: dict[str, int] = {}
        for inst in instruments:
            if isinstance(inst, Option) and inst.expiry is not None:
                self._options[inst.token] = inst
                key = (inst.underlying, inst.expiry)
                self._listed.setdefault(key, set()).add(inst.strike)
                chain = self._chains.get(key)
                if chain is not None and inst.strike not in chain.quotes:
                    chain.quotes[inst.strike] = [None, None]
                    chain.rows[inst.strike] = ChainRow(inst.strike)
                    bisect.insort(chain.strikes, inst.strike)
            else:
                by_symbol.setdefault(inst.symbol, inst.token)
        for opt in self._options.values():
            if opt.underlying in self._underlying_token:
                continue
            for name in INDEX_ALIASES.get(opt.underlying, (opt.underlying,)):
                if name in by_symbol:
                    self._underlying_token[opt.underlying] = by_symbol[name]
                    break

    def listed_strikes(self) -> dict[tuple[str, dt.date], list[int]]:
        """Every (underlying, expiry) of the instrument master with its listed strikes (paise)."""
        return {key: sorted(strikes) for key, strikes in self._listed.items()}

    def restore_oi_references(self, ts_ns: int, references: dict[int, int]) -> None:
        """After a restart on the IST day of ``ts_ns``: the OI each contract's change is measured
        against (its first reading of the day, as stored: ``oi − oi_change``), so the change in
        OI goes on as if the node had never stopped."""
        self._new_day(ts_ns)
        for token, oi in references.items():
            self.set_oi_reference(token, oi)

    def set_oi_reference(self, token: int, oi: int) -> None:
        """The open interest that ``oi_change`` is measured against (e.g. yesterday's close)."""
        self._oi_ref[token] = oi
        opt = self._options.get(token)
        if opt is not None and opt.expiry is not None:
            self._dirty.add(((opt.underlying, opt.expiry), opt.strike))

    def handle_tick(self, tick: Tick) -> None:
        ts = tick.ts_event
        if not self._day_start <= ts < self._day_start + NS_PER_DAY:
            self._new_day(ts)
        self._apply(tick)

    def _new_day(self, ts: int) -> None:
        """A new IST day: OI changes start again from each contract's first reading."""
        day = ist_date(ts)
        self._day_start = (ts + IST_OFFSET_NS) // NS_PER_DAY * NS_PER_DAY - IST_OFFSET_NS
        if day != self._day:
            self._day = day
            self._oi_ref.clear()
            self._chains.clear()
            self._dirty.clear()
            self._price.clear()

    def _apply(self, tick: Tick) -> None:
        token = tick.token
        opt = self._options.get(token)
        if opt is None:
            self._price[token] = tick.price
            return
        assert opt.expiry is not None
        key = (opt.underlying, opt.expiry)
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = _Chain(
                opt.exchange, opt.lot_size, self._listed.get(key, ())
            )
        chain.quoted = True
        ref = self._oi_ref.setdefault(token, tick.oi)
        q = OptionQuote(
            tick.price,
            tick.bid,
            tick.ask,
            tick.volume,
            tick.oi,
            tick.oi - ref,
            token,
            opt.symbol,
            bid_qty=tick.bid_qty,
            ask_qty=tick.ask_qty,
        )
        slot = chain.quotes.get(opt.strike)
        if slot is None:
            slot = chain.quotes[opt.strike] = [None, None]
            bisect.insort(chain.strikes, opt.strike)
        slot[0 if opt.is_call else 1] = q
        self._dirty.add((key, opt.strike))

    def snapshots(self, ts_ns: int) -> list[ChainSnapshot]:
        """One snapshot per (underlying, expiry) that has quotes and an underlying price."""
        for key, strike in self._dirty:
            chain = self._chains.get(key)
            if chain is None:
                continue
            call, put = chain.quotes[strike]
            for q in (call, put):  # a reference set after the quote arrived
                if q is not None and self._oi_ref.get(q.token, q.oi) != q.oi - q.oi_change:
                    fixed = msgspec.structs.replace(q, oi_change=q.oi - self._oi_ref[q.token])
                    call, put = (fixed, put) if q is call else (call, fixed)
            chain.quotes[strike] = [call, put]
            chain.rows[strike] = ChainRow(strike, call, put)
        self._dirty.clear()
        out = []
        for (underlying, expiry), chain in sorted(self._chains.items()):
            utoken = self._underlying_token.get(underlying)
            spot = self._price.get(utoken) if utoken is not None else None
            if spot is None or not chain.quoted:
                continue
            rows = tuple(chain.rows[k] for k in chain.strikes)
            out.append(
                ChainSnapshot(
                    underlying, chain.exchange, expiry, ts_ns, spot, rows, chain.lot, self.source
                )
            )
        return out
