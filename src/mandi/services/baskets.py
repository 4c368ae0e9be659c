"""Baskets outside a running node (shell): the market a basket is analysed at, read from a
``mandi.db`` — the newest stored chain snapshots of an underlying (prices, bid/ask and the
matrix's IVs) and its instruments (the simulation's master for a store recorded on the
simulator, else contracts made from the snapshots)."""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass, field
from typing import Any

from mandi.core.errors import StoreError
from mandi.model.instruments import Index, InstrumentMaster, Option
from mandi.model.market import ChainSnapshot

NSE_RATE = 0.10  # the rate NSE uses for its published IVs (real chains)


@dataclass
class StoredMarket:
    """What a basket is analysed at: prices (paise), bid/ask and IVs by token, the underlying's
    price, the time of the snapshots and the rate their IVs were computed with."""

    underlying: str
    master: InstrumentMaster
    spot: int
    now_ns: int
    rate: float
    ltp: dict[int, int] = field(default_factory=dict)
    bid: dict[int, int] = field(default_factory=dict)
    ask: dict[int, int] = field(default_factory=dict)
    iv: dict[int, float] = field(default_factory=dict)
    snapshots: list[ChainSnapshot] = field(default_factory=list)

    def entry_prices(self, sides: dict[int, str]) -> dict[int, int]:
        """The touch a marketable order meets (ask to buy, bid to sell), else the last price."""
        out = {}
        for token, side in sides.items():
            touch = (self.ask if side == "BUY" else self.bid).get(token, 0)
            out[token] = touch or self.ltp.get(token, 0)
        return out


def stored_market(db: str | os.PathLike[str], underlying: str) -> StoredMarket:
    """The newest stored snapshot of every expiry of ``underlying`` in ``db``."""
    from mandi.feeds.sim import RISK_FREE_RATE
    from mandi.services.backtest.api import chain_instruments
    from mandi.services.backtest.data import open_store, store_master
    from mandi.stores.chains import expiries, latest_snapshot

    con = open_store(db)
    try:
        recorded = store_master(con)
        snaps = [s for e in expiries(con, underlying) if (s := latest_snapshot(con, underlying, e))]
    finally:
        con.close()
    if not snaps:
        raise StoreError(f"{db}: no stored option chain of {underlying}")
    newest = max(s.ts_event for s in snaps)
    snaps = [s for s in snaps if newest - s.ts_event <= 5 * 60 * 10**9]  # one moment's chains
    master = InstrumentMaster()
    keys: set[tuple[Any, ...]] = set()
    for inst in recorded:
        if isinstance(inst, Option | Index):
            master.add(inst)
            if isinstance(inst, Option):
                keys.add((inst.underlying, inst.expiry, inst.strike, inst.option_type))
    for opt in chain_instruments(snaps, master):
        if (opt.underlying, opt.expiry, opt.strike, opt.option_type) not in keys:
            master.add(opt)
    market = StoredMarket(
        underlying,
        master,
        snaps[0].underlying_price,
        newest,
        RISK_FREE_RATE if len(recorded) else NSE_RATE,
        snapshots=snaps,
    )
    for s in snaps:
        for row in s.rows:
            for kind, q in (("CE", row.call), ("PE", row.put)):
                if q is None:
                    continue
                contract = _contract(master, s.underlying, s.expiry, row.strike, kind)
                if contract is None:
                    continue
                market.ltp[contract.token] = q.ltp
                market.bid[contract.token] = q.bid
                market.ask[contract.token] = q.ask
                if math.isfinite(q.iv) and q.iv > 0:
                    market.iv[contract.token] = q.iv
    return market


def _contract(
    master: InstrumentMaster, underlying: str, expiry: dt.date, strike: int, kind: str
) -> Option | None:
    for o in master.options(underlying, expiry):
        if o.strike == strike and o.option_type == kind:
            return o
    return None
