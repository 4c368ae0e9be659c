"""A small hand-built market for trading-kernel tests: NIFTY with options of two expiries, two
stocks, a TestClock, a MessageBus, the in-memory store and the paper broker."""

from __future__ import annotations

import datetime as dt
from typing import Any

from mandi.bus.memory import MessageBus
from mandi.core.calendar import ist_ns
from mandi.core.clock import TestClock
from mandi.core.ids import stable_id
from mandi.execution.config import MatchingConfig, TradingConfig
from mandi.execution.memstore import MemoryTradingStore
from mandi.execution.paper import MemoryPaperBook, PaperBroker
from mandi.model.instruments import Equity, Index, InstrumentMaster, Option
from mandi.model.market import Tick
from mandi.model.orders import Side
from mandi.model.trading import SignalGenerated
from mandi.risk.config import RiskConfig
from mandi.system.kernel import TradingKernel

DAY = dt.date(2026, 4, 15)  # a Wednesday; the weekly expiry is Tue 2026-04-21
EXPIRY = dt.date(2026, 4, 21)
NIFTY, RELIANCE, INFY = 256265, 738561, 408065
LOT, FREEZE = 65, 1800


def at(hh: int, mm: int, ss: float = 0.0, day: dt.date = DAY) -> int:
    return ist_ns(day, dt.time(hh, mm)) + int(ss * 1e9)


def option_token(strike: int, kind: str, expiry: dt.date = EXPIRY) -> int:
    return 0x2000000 + (strike - 23000) * 4 + (kind == "PE") + (expiry.day % 2) * 2


def make_master(freeze: int = FREEZE) -> InstrumentMaster:
    inst: list[Any] = [
        Index(NIFTY, "NSE", "NIFTY", "NIFTY", "INDICES", 1, 5),
        Equity(RELIANCE, "NSE", "RELIANCE", "RELIANCE", "NSE", 1, 5),
        Equity(INFY, "NSE", "INFY", "INFY", "NSE", 1, 5),
    ]
    for e in (EXPIRY, dt.date(2026, 4, 28)):
        for k in range(23800, 24650, 50):
            for kind in ("CE", "PE"):
                sym = f"NIFTY{e:%y%m%d}{k}{kind}"
                inst.append(
                    Option(
                        option_token(k, kind, e),
                        "NSE",
                        sym,
                        "NIFTY",
                        "NFO-OPT",
                        LOT,
                        5,
                        freeze,
                        underlying="NIFTY",
                        expiry=e,
                        strike=k * 100,
                        option_type=kind,
                    )
                )
    return InstrumentMaster(inst)


class Kit:
    def __init__(
        self,
        mode: str = "paper",
        risk: RiskConfig | None = None,
        trading: TradingConfig | None = None,
        store: MemoryTradingStore | None = None,
        book: MemoryPaperBook | None = None,
        start: int | None = None,
        master: InstrumentMaster | None = None,
        broker: Any = None,
    ) -> None:
        self.clock = TestClock(start or at(10, 0))
        self.bus = MessageBus(self.clock)
        self.master = master or make_master()
        self.store = store if store is not None else MemoryTradingStore()
        self.book = book if book is not None else MemoryPaperBook()
        trading = trading or TradingConfig(paper=MatchingConfig(slippage_ticks=0))
        if broker is None and mode != "logging":
            broker = PaperBroker(self.clock, self.book, trading.paper, 50_000_000)
        self.broker = broker
        self.kernel = TradingKernel(
            bus=self.bus,
            clock=self.clock,
            master=self.master,
            mode=mode,
            store=self.store,
            broker=broker,
            trading=trading,
            risk=risk or RiskConfig(),
        )
        self.events: list[tuple[str, Any]] = []
        self.bus.subscribe(">", lambda t, m: self.events.append((t, m)), name="test.recorder")

    def start(self) -> Kit:
        self.kernel.start()
        return self

    def topics(self, prefix: str) -> list[Any]:
        return [m for t, m in self.events if t.startswith(prefix)]

    def tick(
        self,
        token: int,
        price: float,
        *,
        dt_s: float = 0.25,
        volume: int = 0,
        bid: float = 0,
        ask: float = 0,
        qty: int = 0,
        oi: int = 0,
        ts: int | None = None,
    ) -> Tick:
        """A tick ``dt_s`` seconds after the clock (prices in rupees)."""
        now = ts if ts is not None else self.clock.now_ns() + int(dt_s * 1e9)
        self.clock.set(now)
        p = round(price * 100)
        t = Tick(
            token, "NSE", now, now, p, volume, 0, oi, round(bid * 100), round(ask * 100), qty, qty
        )
        self.bus.publish(f"tick:NSE:{token}", t)
        return t

    def chain_ticks(self, spot: float = 24210.0, ce: float = 150.0, step: float = 25.0) -> None:
        """Ticks for NIFTY and all its options near the money (liquid, with quotes)."""
        self.tick(NIFTY, spot)
        for e in (EXPIRY, dt.date(2026, 4, 28)):
            for k in range(23800, 24650, 50):
                for kind in ("CE", "PE"):
                    intrinsic = max(0.0, (spot - k) if kind == "CE" else (k - spot))
                    px = max(0.05, round(intrinsic + max(ce - abs(spot - k) / 50 * step, 5), 1))
                    self.tick(
                        option_token(k, kind, e),
                        px,
                        dt_s=0.001,
                        volume=100_000,
                        bid=px - 0.5,
                        ask=px + 0.5,
                        qty=LOT * 20,
                        oi=LOT * 1000,
                    )

    def signal(
        self,
        strategy: str,
        token: int,
        action: str,
        *,
        bucket: int | None = None,
        price: float = 0,
        ts: int | None = None,
        **kw: Any,
    ) -> SignalGenerated:
        inst = self.master.by_token(token)
        b = bucket if bucket is not None else self.clock.now_ns() // 60_000_000_000
        return SignalGenerated(
            signal_id=stable_id(strategy, token, 60, b),
            ts_event=ts if ts is not None else self.clock.now_ns(),
            strategy=strategy,
            token=token,
            exchange=inst.exchange,
            symbol=inst.symbol,
            timeframe=60,
            bucket=b,
            action=Side(action),
            price=round(price * 100) or self.kernel.market.ltp(token),
            asset_type="INDEX" if isinstance(inst, Index) else "EQUITY",
            **kw,
        )

    def emit(self, sig: SignalGenerated) -> bool:
        return self.kernel.signals.emit(sig)
