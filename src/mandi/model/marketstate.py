"""What the trading kernel knows of the market: the latest tick of every instrument and the latest
option-chain snapshot per (underlying, expiry). Strategies read it (through their context) and
execution prices and picks strikes from it; it lives in the model layer so that neither has to
import the other.

Chain snapshots come from the bus (``chain:{underlying}:{expiry}``) when the node publishes them;
otherwise :meth:`MarketState.chain` assembles one from the latest ticks of the chain's contracts
(the instrument master lists them), so strike selection and chain strategies work on any feed.
"""

from __future__ import annotations

import datetime as dt

from mandi.model.instruments import AnyInstrument, InstrumentMaster
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote, Tick


class MarketState:
    def __init__(self, master: InstrumentMaster, chain_max_age_ns: int = 5_000_000_000) -> None:
        self.master = master
        self.ticks: dict[int, Tick] = {}
        self._chains: dict[tuple[str, dt.date], ChainSnapshot] = {}
        self._chain_max_age = chain_max_age_ns

    def update(self, tick: Tick) -> None:
        self.ticks[tick.token] = tick

    def update_chain(self, snap: ChainSnapshot) -> None:
        self._chains[(snap.underlying, snap.expiry)] = snap

    def ltp(self, token: int) -> int:
        t = self.ticks.get(token)
        return t.price if t is not None else 0

    def last_ns(self, token: int) -> int:
        t = self.ticks.get(token)
        return t.ts_event if t is not None else 0

    def instrument(self, token: int) -> AnyInstrument | None:
        return self.master.get(token)

    def chain(
        self, underlying: str, expiry: dt.date, now_ns: int, underlying_token: int = 0
    ) -> ChainSnapshot | None:
        """The latest chain of ``underlying``/``expiry``: a published snapshot if recent, else
        one assembled from the latest ticks (None if nothing is known)."""
        snap = self._chains.get((underlying, expiry))
        if snap is not None and now_ns - snap.ts_event <= self._chain_max_age:
            return snap
        return self.assemble_chain(underlying, expiry, now_ns, underlying_token) or snap

    def assemble_chain(
        self, underlying: str, expiry: dt.date, now_ns: int, underlying_token: int = 0
    ) -> ChainSnapshot | None:
        options = self.master.options(underlying, expiry)
        if not options:
            return None
        if not underlying_token:
            try:
                underlying_token = self.master.by_symbol(underlying, options[0].exchange).token
            except Exception:
                underlying_token = 0
        spot = self.ltp(underlying_token)
        rows: dict[int, list[OptionQuote | None]] = {}
        for o in options:
            t = self.ticks.get(o.token)
            if t is None:
                continue
            q = OptionQuote(
                t.price,
                t.bid,
                t.ask,
                t.volume,
                t.oi,
                0,
                o.token,
                o.symbol,
                float("nan"),
                t.bid_qty,
                t.ask_qty,
            )
            slot = rows.setdefault(o.strike, [None, None])
            slot[0 if o.option_type == "CE" else 1] = q
        if not rows or spot <= 0:
            return None
        return ChainSnapshot(
            underlying,
            options[0].exchange,
            expiry,
            now_ns,
            spot,
            tuple(ChainRow(k, v[0], v[1]) for k, v in sorted(rows.items())),
            options[0].lot_size,
            "ticks",
        )
