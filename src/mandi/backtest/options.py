"""Option-leg backtests: option contracts traded on recorded chain history.

:class:`OptionLegEngine` is the bar backtester (:class:`~mandi.backtest.engine.BacktestEngine`,
the kernel of ``mandi run``) whose option contracts are priced by recorded chain snapshots — a
``mandi.db`` recorded by ``mandi run`` (its ``option_chain_snapshots``) or NSE/BSE chain files —
while the underlying comes as bars (the strategy's clock). When the clock reaches a snapshot, at
its own moment, for every contract it quotes:

1. the kernel's market state gets the quote (last price, bid, ask, volume, OI): strategies,
   strike selection and the risk rules (price bands, stale data) see it;
2. working orders of the contract fill at the quote through the shared fill simulator with
   ``price_source = "touch"``: a buy at the recorded ask, a sell at the recorded bid, the last
   price moved ``no_quote_slippage_ticks`` against us where the snapshot has no bid/ask;
3. open positions in the contract are marked at the last price and the kernel's exit rules run
   (per-leg stop-loss, target, trailing stop, time exits); an exit they start fills at this same
   quote's touch — an SL-M triggered by this print and filled at the touch it shows;
4. a position whose contract has expired (15:30 IST on its expiry date has passed) is settled at
   its intrinsic value on the last underlying price recorded before expiry — OTM at 0 — and so is
   one whose contract expires on the last day of the data. Settlement fills pay the charges of a
   trade at that price (none at 0).

An order only fills on a quote recorded after it was accepted (no look-ahead), so an entry
decided at a bar's end fills at the next snapshot's touch. Charges are computed per leg (per
order) by the kernel's :class:`~mandi.execution.charges.ChargesModel`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mandi.backtest.engine import BacktestEngine
from mandi.core.calendar import EXPIRY_TIME, ist_date, ist_ns
from mandi.execution.matching import MarketPrint
from mandi.model.instruments import Option
from mandi.model.market import ChainSnapshot, OptionQuote
from mandi.risk.rules import ALLOWED

EXPIRY_SETTLEMENT = "EXPIRY_SETTLEMENT"


class OptionLegEngine(BacktestEngine):
    """A :class:`BacktestEngine` that trades option contracts on recorded chain quotes (module
    doc). Build it like the bar engine, with the contracts in ``master``; ``run_bars`` with the
    underlying's bars and the snapshots."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (underlying, expiry) -> strike -> (CE, PE) contracts of the master
        self._contracts: dict[tuple[str, dt.date], dict[int, list[Option | None]]] = {}
        for inst in self.master:
            if isinstance(inst, Option) and inst.expiry is not None:
                chain = self._contracts.setdefault((inst.underlying, inst.expiry), {})
                chain.setdefault(inst.strike, [None, None])[inst.option_type != "CE"] = inst
        self._spot: dict[str, int] = {}  # underlying -> last recorded price
        self._expiry_ns: dict[dt.date, int] = {}
        self.quotes = 0  # contract quotes applied
        self.unknown_quotes = 0  # quotes of contracts the master does not list
        self.settlements = 0

    # --- the snapshot hook of run_bars --------------------------------------------------------
    def handle_snapshot(self, snap: ChainSnapshot) -> None:
        now = self.clock.now_ns()
        self._settle_expired(now)  # with the spot recorded before this snapshot
        if snap.underlying_price > 0:
            self._spot[snap.underlying] = snap.underlying_price
        super().handle_snapshot(snap)  # chain:{underlying}:{expiry} for the strategies
        contracts = self._contracts.get((snap.underlying, snap.expiry))
        if not contracts:
            self.unknown_quotes += sum(
                (r.call is not None) + (r.put is not None) for r in snap.rows
            )
            return
        # 1. the quotes into the market state (a Tick is made only if someone reads it)
        quoted: dict[int, Any] = self.kernel.market.ticks.quoted  # type: ignore[attr-defined]
        ex = snap.exchange
        n = unknown = 0
        for row in snap.rows:
            pair = contracts.get(row.strike)
            for side, q in ((0, row.call), (1, row.put)):
                if q is None:
                    continue
                inst = pair[side] if pair is not None else None
                if inst is None:
                    unknown += 1
                    continue
                quoted[inst.token] = (ex, now, q)
                n += 1
        self.quotes += n
        self.unknown_quotes += unknown
        # 2./3. fills and stops of the few contracts with working orders or open positions
        broker, kernel = self.broker, self.kernel
        open_by_token = kernel.book._open_by_token
        busy = set(broker.sim._by_token)
        busy.update(open_by_token)
        for tok in busy:
            entry = quoted.get(tok)
            if entry is None or entry[1] != now:
                continue  # not quoted by this snapshot
            q = entry[2]
            last = q.ltp or _mid(q)
            if last <= 0:
                continue
            if broker.sim.has_orders(tok):
                broker.match_quote(tok, _print(now, last, q))
            held = open_by_token.get(tok)
            if held:
                ps = list(held.values())
                for p in ps:
                    p.update_price(last, now)
                if kernel.execution.check_exits(ps) and broker.sim.has_orders(tok):
                    broker.match_quote(tok, _print(now + 1, last, q))

    # --- expiry -------------------------------------------------------------------------------
    def _expiry_moment(self, day: dt.date) -> int:
        ns = self._expiry_ns.get(day)
        if ns is None:
            ns = self._expiry_ns[day] = ist_ns(day, EXPIRY_TIME)
        return ns

    def _settle_expired(self, now: int, *, last_day: dt.date | None = None) -> None:
        """Settle open option positions whose contract expired by ``now`` (or, at the end of the
        data, expires on ``last_day`` or earlier) at their intrinsic value."""
        book = self.kernel.book
        if not book.open_count:
            return
        for p in list(book.open_positions()):
            inst = self.master.get(p.token)
            if not isinstance(inst, Option) or inst.expiry is None:
                continue
            due = (
                inst.expiry <= last_day
                if last_day is not None
                else now >= self._expiry_moment(inst.expiry)
            )
            spot = self._spot.get(inst.underlying, 0)
            if due and spot > 0:
                self._settle(p, inst, spot, now)

    def _settle(self, p: Any, inst: Option, spot: int, now: int) -> None:
        value = max(spot - inst.strike, 0) if inst.is_call else max(inst.strike - spot, 0)
        kernel = self.kernel
        saved = kernel.risk.check
        kernel.risk.check = lambda ctx: ALLOWED  # type: ignore[method-assign]  # the exchange settles
        try:
            if not self.broker.sim.has_orders(p.token):  # else its working exit settles
                p.closing = False
                kernel.execution.exit_position(p, EXPIRY_SETTLEMENT)
                if kernel.orders is not None and kernel.orders.queue:
                    kernel.orders.pump()
            self.settlements += self.broker.settle(p.token, value, now + 1)
        finally:
            kernel.risk.check = saved  # type: ignore[method-assign]

    def before_end(self) -> bool:
        """At the end of the data: settle what expires on its last day (no market follows)."""
        now = self.clock.now_ns()
        before = self.settlements
        self._settle_expired(now, last_day=ist_date(now))
        if self.quotes == 0:
            self.notes.append("no recorded quote matched a listed option contract")
        if self.unknown_quotes:
            self.notes.append(
                f"{self.unknown_quotes} quotes of contracts not in the instrument list were skipped"
            )
        return self.settlements != before


def _mid(q: OptionQuote) -> int:
    return (q.bid + q.ask) // 2 if q.bid > 0 and q.ask > 0 else 0


def _print(ts: int, last: int, q: OptionQuote) -> MarketPrint:
    return MarketPrint(ts, last, q.bid, q.ask, q.bid_qty, q.ask_qty)
