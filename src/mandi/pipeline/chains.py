"""Ticks → option-chain snapshots, once per interval of exchange time.

The :class:`ChainAssembler` keeps the latest tick of every option contract and of every
underlying, and on :meth:`ChainAssembler.snapshots` builds one :class:`ChainSnapshot` per
(underlying, expiry) from them — the same way for the simulator, the tickserver and broker feeds.
Change in OI is measured against the first OI seen for the contract on the current IST day (a
broker's previous-day OI, when a feed provides one, can be set with :meth:`set_oi_reference`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from mandi.core.calendar import ist_date
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


class ChainAssembler:
    """Latest quotes per option contract → chain snapshots per (underlying, expiry)."""

    def __init__(self, master: InstrumentMaster, source: str = "live") -> None:
        self.source = source
        self._options: dict[int, Option] = {}
        self._underlying_token: dict[str, int] = {}
        self._last: dict[int, Tick] = {}
        self._oi_ref: dict[int, int] = {}
        self._day: dt.date | None = None
        self.add_instruments(master)

    def add_instruments(self, instruments: Iterable[AnyInstrument]) -> None:
        """Register option contracts and resolve their underlyings' tokens."""
        by_symbol: dict[str, int] = {}
        for inst in instruments:
            if isinstance(inst, Option) and inst.expiry is not None:
                self._options[inst.token] = inst
            else:
                by_symbol.setdefault(inst.symbol, inst.token)
        for opt in self._options.values():
            if opt.underlying in self._underlying_token:
                continue
            for name in INDEX_ALIASES.get(opt.underlying, (opt.underlying,)):
                if name in by_symbol:
                    self._underlying_token[opt.underlying] = by_symbol[name]
                    break

    def set_oi_reference(self, token: int, oi: int) -> None:
        """The open interest that ``oi_change`` is measured against (e.g. yesterday's close)."""
        self._oi_ref[token] = oi

    def handle_tick(self, tick: Tick) -> None:
        day = ist_date(tick.ts_event)
        if day != self._day:  # a new session: OI changes start from today's first reading
            self._day = day
            self._oi_ref.clear()
            self._last.clear()
        self._last[tick.token] = tick
        if tick.token in self._options and tick.token not in self._oi_ref:
            self._oi_ref[tick.token] = tick.oi

    def snapshots(self, ts_ns: int) -> list[ChainSnapshot]:
        """One snapshot per (underlying, expiry) that has quotes and an underlying price."""
        rows: dict[tuple[str, dt.date], dict[int, list[OptionQuote | None]]] = {}
        lots: dict[tuple[str, dt.date], int] = {}
        exchanges: dict[tuple[str, dt.date], str] = {}
        for token, t in self._last.items():
            opt = self._options.get(token)
            if opt is None or opt.expiry is None:
                continue
            key = (opt.underlying, opt.expiry)
            q = OptionQuote(
                t.price,
                t.bid,
                t.ask,
                t.volume,
                t.oi,
                t.oi - self._oi_ref.get(token, t.oi),
                token,
                opt.symbol,
                bid_qty=t.bid_qty,
                ask_qty=t.ask_qty,
            )
            slot = rows.setdefault(key, {}).setdefault(opt.strike, [None, None])
            slot[0 if opt.is_call else 1] = q
            lots[key] = opt.lot_size
            exchanges[key] = opt.exchange
        out = []
        for (underlying, expiry), strikes in sorted(rows.items()):
            utoken = self._underlying_token.get(underlying)
            ut = self._last.get(utoken) if utoken is not None else None
            if ut is None:
                continue
            out.append(
                ChainSnapshot(
                    underlying,
                    exchanges[(underlying, expiry)],
                    expiry,
                    ts_ns,
                    ut.price,
                    tuple(ChainRow(k, v[0], v[1]) for k, v in sorted(strikes.items())),
                    lots[(underlying, expiry)],
                    self.source,
                )
            )
        return out
