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
import numpy as np

from mandi.core.calendar import IST_OFFSET_NS, NS_PER_DAY, ist_date
from mandi.model.batches import T_TS, TickBatch, TokenIndex
from mandi.model.instruments import AnyInstrument, InstrumentMaster, Option
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote, Tick
from mandi.pipeline import _chainkernels as K

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


def _link_underlyings(
    options: Iterable[Option], by_symbol: dict[str, int], underlying_token: dict[str, int]
) -> None:
    """Find each option's underlying token by symbol (an index by its aliases), once."""
    for opt in options:
        if opt.underlying in underlying_token:
            continue
        for name in INDEX_ALIASES.get(opt.underlying, (opt.underlying,)):
            if name in by_symbol:
                underlying_token[opt.underlying] = by_symbol[name]
                break


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
        _link_underlyings(self._options.values(), by_symbol, self._underlying_token)

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


# --- the columnar assembler ----------------------------------------------------------------------


class ChainFrame:
    """One chain at one moment as arrays: the columnar counterpart of a :class:`ChainSnapshot`
    (same header attributes), which :meth:`snapshot` builds — once — only when asked.

    ``raw`` is ``(strikes, 13)`` float64: strike, then ltp, bid, ask, volume, OI and change in
    OI of the call and of the put, in paise and shares, NaN for a side without a quote — the
    rows the chain matrix works on (``ChainMatrix.process_frames``)."""

    __slots__ = (
        "_made",
        "_quotes",
        "_spec",
        "exchange",
        "expiry",
        "lot_size",
        "raw",
        "source",
        "ts_event",
        "underlying",
        "underlying_price",
    )

    def __init__(
        self,
        spec: _ChainSpec,
        ts_ns: int,
        spot: int,
        source: str,
        raw: np.ndarray,
        quotes: np.ndarray,
    ) -> None:
        self.underlying, self.expiry = spec.key
        self.exchange, self.lot_size = spec.exchange, spec.lot
        self.ts_event, self.underlying_price, self.source = ts_ns, spot, source
        self.raw, self._quotes, self._spec = raw, quotes, spec
        self._made: ChainSnapshot | None = None

    def snapshot(self) -> ChainSnapshot:
        """The :class:`ChainSnapshot` (what :meth:`ChainAssembler.snapshots` gives)."""
        if self._made is None:
            spec, quotes = self._spec, self._quotes.tolist()
            rows = []
            for r, strike in enumerate(spec.strikes):
                sides: list[OptionQuote | None] = [None, None]
                for side in (0, 1):
                    v = quotes[r][side]
                    if v[K.Q_QUOTED]:
                        token, symbol = spec.contracts[r][side]
                        sides[side] = OptionQuote(
                            v[K.Q_PRICE],
                            v[K.Q_BID],
                            v[K.Q_ASK],
                            v[K.Q_VOLUME],
                            v[K.Q_OI],
                            v[K.Q_OI] - v[K.Q_REF],
                            token,
                            symbol,
                            bid_qty=v[K.Q_BID_QTY],
                            ask_qty=v[K.Q_ASK_QTY],
                        )
                rows.append(ChainRow(strike, sides[0], sides[1]))
            self._made = ChainSnapshot(
                self.underlying,
                self.exchange,
                self.expiry,
                self.ts_event,
                self.underlying_price,
                tuple(rows),
                self.lot_size,
                self.source,
            )
        return self._made


class _ChainSpec:
    """The contracts of one (underlying, expiry): strikes ascending, and per strike the call's
    and put's token slot (−1 when not listed), token and symbol."""

    __slots__ = ("contracts", "exchange", "key", "lot", "slots", "strikes")

    def __init__(self, key: tuple[str, dt.date], exchange: str, lot: int) -> None:
        self.key, self.exchange, self.lot = key, exchange, lot
        self.strikes: list[int] = []
        self.slots = np.full((0, 2), -1, dtype=np.int64)
        self.contracts: list[list[tuple[int, str]]] = []

    def rebuild(self, by_strike: dict[int, list[tuple[int, int, str] | None]]) -> None:
        self.strikes = sorted(by_strike)
        self.slots = np.full((len(self.strikes), 2), -1, dtype=np.int64)
        self.contracts = []
        for r, k in enumerate(self.strikes):
            pair: list[tuple[int, str]] = [(0, ""), (0, "")]
            for side, c in enumerate(by_strike[k]):
                if c is not None:
                    self.slots[r, side] = c[0]
                    pair[side] = (c[1], c[2])
            self.contracts.append(pair)


class ChainColumns:
    """The :class:`ChainAssembler` on columns: the latest quote of every contract and the latest
    price of every other token live in one array, a :class:`~mandi.model.batches.TickBatch` is
    applied by one compiled call (:meth:`handle_batch`), and a chain comes out as arrays
    (:meth:`frames`) — :class:`ChainSnapshot` objects only when somebody asks
    (:meth:`ChainFrame.snapshot`). Its snapshots equal :class:`ChainAssembler`'s for the same
    ticks (tested), with one stated difference: a chain's exchange and lot size are those of its
    first listed contract rather than of its first quoted one (they are the same in any real
    master)."""

    def __init__(self, master: Iterable[AnyInstrument], source: str = "live") -> None:
        self.source = source
        self.index = TokenIndex(2048)
        self._q = np.zeros((2048, K.NQ), dtype=np.int64)
        self._chain_of = np.full(2048, -1, dtype=np.int64)
        self._specs: list[_ChainSpec] = []
        self._spec_of: dict[tuple[str, dt.date], int] = {}
        self._by_strike: list[dict[int, list[tuple[int, int, str] | None]]] = []
        self._live = np.zeros(0, dtype=np.uint8)
        self._order: list[int] = []  # chain ids by (underlying, expiry)
        self._underlying_token: dict[str, int] = {}
        self._options: dict[int, Option] = {}
        self._day_start = -NS_PER_DAY  # the current IST day's midnight, ns UTC
        self._day: dt.date | None = None
        self.add_instruments(master)

    # --- registry -------------------------------------------------------------------------------
    def _slots(self, tokens: np.ndarray) -> np.ndarray:
        slots = self.index.index(tokens)
        if self.index.size > len(self._chain_of):
            cap = max(self.index.size, 2 * len(self._chain_of))
            q = np.zeros((cap, K.NQ), dtype=np.int64)
            q[: len(self._q)] = self._q
            chain_of = np.full(cap, -1, dtype=np.int64)
            chain_of[: len(self._chain_of)] = self._chain_of
            self._q, self._chain_of = q, chain_of
        return slots

    def add_instruments(self, instruments: Iterable[AnyInstrument]) -> None:
        """Register option contracts and resolve their underlyings' tokens
        (:meth:`ChainAssembler.add_instruments`)."""
        by_symbol: dict[str, int] = {}
        touched: set[int] = set()
        for inst in instruments:
            if isinstance(inst, Option) and inst.expiry is not None:
                if inst.token in self._options:
                    continue
                self._options[inst.token] = inst
                key = (inst.underlying, inst.expiry)
                c = self._spec_of.get(key)
                if c is None:
                    c = self._spec_of[key] = len(self._specs)
                    self._specs.append(_ChainSpec(key, inst.exchange, inst.lot_size))
                    self._by_strike.append({})
                slot = int(self._slots(np.array([inst.token], dtype=np.int64))[0])
                self._chain_of[slot] = c
                pair = self._by_strike[c].setdefault(inst.strike, [None, None])
                pair[0 if inst.is_call else 1] = (slot, inst.token, inst.symbol)
                touched.add(c)
            else:
                by_symbol.setdefault(inst.symbol, inst.token)
        for c in touched:
            self._specs[c].rebuild(self._by_strike[c])
        if len(self._live) < len(self._specs):
            live = np.zeros(len(self._specs), dtype=np.uint8)
            live[: len(self._live)] = self._live
            self._live = live
        self._order = sorted(range(len(self._specs)), key=lambda c: self._specs[c].key)
        _link_underlyings(self._options.values(), by_symbol, self._underlying_token)

    def listed_strikes(self) -> dict[tuple[str, dt.date], list[int]]:
        """:meth:`ChainAssembler.listed_strikes`: every chain with its listed strikes (paise)."""
        return {spec.key: list(spec.strikes) for spec in self._specs}

    def restore_oi_references(self, ts_ns: int, references: dict[int, int]) -> None:
        """:meth:`ChainAssembler.restore_oi_references`: after a restart on the IST day of
        ``ts_ns``, each contract's OI reference as before it."""
        self._new_day(ts_ns)
        for token, oi in references.items():
            self.set_oi_reference(token, oi)

    def set_oi_reference(self, token: int, oi: int) -> None:
        """The open interest that ``oi_change`` is measured against (e.g. yesterday's close)."""
        slot = int(self._slots(np.array([token], dtype=np.int64))[0])
        self._q[slot, K.Q_REF] = oi
        self._q[slot, K.Q_HAS_REF] = 1

    # --- ticks ----------------------------------------------------------------------------------
    def handle_tick(self, tick: Tick) -> None:
        """One tick (a batch of one)."""
        self.handle_batch(TickBatch.from_ticks([tick]))

    def handle_batch(self, batch: TickBatch) -> None:
        """Every tick of ``batch``, in order, as :meth:`ChainAssembler.handle_tick` would."""
        n = len(batch)
        if n == 0:
            return
        slots = self._slots(batch.token)
        i = 0
        while i < n:
            i = K.apply_ticks(
                slots,
                batch.data,
                i,
                n,
                self._chain_of,
                self._q,
                self._live,
                self._day_start,
                self._day_start + NS_PER_DAY,
            )
            if i < n:
                self._new_day(int(batch.data[T_TS, i]))

    def _new_day(self, ts: int) -> None:
        """A new IST day: OI changes start again from each contract's first reading, chains
        from their first quote."""
        self._day_start = (ts + IST_OFFSET_NS) // NS_PER_DAY * NS_PER_DAY - IST_OFFSET_NS
        day = ist_date(ts)
        if day != self._day:
            self._day = day
            q = self._q
            q[:, K.Q_QUOTED] = 0
            q[:, K.Q_HAS_REF] = 0
            q[:, K.Q_HAS_PRICE] = 0
            self._live[:] = 0

    # --- chains ---------------------------------------------------------------------------------
    def frames(self, ts_ns: int) -> list[ChainFrame]:
        """Every chain that has quotes and an underlying price, by (underlying, expiry)."""
        out = []
        q, index = self._q, self.index
        for c in self._order:
            if not self._live[c]:
                continue
            spec = self._specs[c]
            utoken = self._underlying_token.get(spec.key[0])
            if utoken is None:
                continue
            u = index.get(utoken)
            if u < 0 or not q[u, K.Q_HAS_PRICE]:
                continue
            n = len(spec.strikes)
            raw = np.empty((n, 13), dtype=np.float64)
            quotes = np.empty((n, 2, K.NQ), dtype=np.int64)
            K.chain_rows(np.array(spec.strikes, dtype=np.int64), spec.slots, q, raw, quotes)
            out.append(ChainFrame(spec, ts_ns, int(q[u, K.Q_PRICE]), self.source, raw, quotes))
        return out

    def snapshots(self, ts_ns: int) -> list[ChainSnapshot]:
        """:meth:`ChainAssembler.snapshots`: the frames as :class:`ChainSnapshot` objects."""
        return [f.snapshot() for f in self.frames(ts_ns)]
