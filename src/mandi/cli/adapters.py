"""What the broker commands need from each adapter, behind one small interface: login, the
token file, logout, the instrument master, history and the fake. ``mandi broker ... NAME`` looks
the broker up in :data:`ADAPTERS`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mandi.brokers.session import BrokerSession, session_path
from mandi.model.instruments import AnyInstrument, InstrumentMaster

Step = Callable[[int, int, int], None]


class Adapter:
    name = ""
    title = ""
    intervals: tuple[str, ...] = ()
    default_interval = ""
    login_help = ""

    def cfg(self, app: Any) -> Any:
        return getattr(app.broker, self.name)

    def token_file(self, cfg: Any) -> Path:
        return session_path(self.name, cfg.token_file)

    def login(self, cfg: Any, **opts: Any) -> BrokerSession:
        raise NotImplementedError

    def logout(self, cfg: Any) -> bool:
        raise NotImplementedError

    def sync(self, cfg: Any, day: dt.date) -> tuple[Path, list[AnyInstrument]]:
        raise NotImplementedError

    def history(
        self, cfg: Any, symbol: str, interval: str, start: dt.date, end: dt.date, db: str,
        step: Step,
    ) -> tuple[AnyInstrument, int, int]:  # fmt: skip
        raise NotImplementedError

    def fake(self, sim: Any, market_clock: bool, **opts: Any) -> Any:
        raise NotImplementedError


class KiteAdapter(Adapter):
    name, title = "kite", "Kite"
    intervals = ("minute", "3minute", "5minute", "10minute", "15minute", "30minute", "60minute",
                 "day")  # fmt: skip
    default_interval = "minute"

    def login(self, cfg: Any, **opts: Any) -> BrokerSession:
        from mandi.brokers.kite import session as ks

        return ks.login(cfg, opts["request_token"])

    def logout(self, cfg: Any) -> bool:
        from mandi.brokers.kite import session as ks

        return ks.logout(cfg)

    def sync(self, cfg: Any, day: dt.date) -> tuple[Path, list[AnyInstrument]]:
        from mandi.brokers.kite import instruments as ki
        from mandi.brokers.kite import session as ks

        rest = ks.rest_client(cfg)
        try:
            return ki.sync(cfg, rest, day)
        finally:
            rest.close()

    def history(
        self, cfg: Any, symbol: str, interval: str, start: dt.date, end: dt.date, db: str,
        step: Step,
    ) -> tuple[AnyInstrument, int, int]:  # fmt: skip
        from mandi.brokers.kite import history as kh
        from mandi.brokers.kite import instruments as ki
        from mandi.brokers.kite import session as ks

        rest = ks.rest_client(cfg)
        try:
            inst = InstrumentMaster(ki.load(cfg, rest, end)).by_symbol(symbol)
            return inst, *kh.fetch(rest, inst, interval, start, end, db, step)
        finally:
            rest.close()

    def fake(self, sim: Any, market_clock: bool, **opts: Any) -> Any:
        from mandi.brokers.kite.fake import FakeKite, FakeKiteServer

        fake = FakeKite(
            sim,
            redirect_url=opts["redirect_url"],
            clock_offset_ns=None if market_clock else 0,
        )
        return FakeKiteServer(fake, port=opts["port"])


class AngelAdapter(Adapter):
    name, title = "angel", "Angel One"
    intervals = ("ONE_MINUTE", "THREE_MINUTE", "FIVE_MINUTE", "TEN_MINUTE", "FIFTEEN_MINUTE",
                 "THIRTY_MINUTE", "ONE_HOUR", "ONE_DAY")  # fmt: skip
    default_interval = "ONE_MINUTE"

    def login(self, cfg: Any, **opts: Any) -> BrokerSession:
        from mandi.brokers.angel import session as s

        return s.login(cfg)

    def logout(self, cfg: Any) -> bool:
        from mandi.brokers.angel import session as s

        return s.logout(cfg)

    def sync(self, cfg: Any, day: dt.date) -> tuple[Path, list[AnyInstrument]]:
        from mandi.brokers.angel import instruments as ai

        return ai.sync(cfg, day)

    def history(
        self, cfg: Any, symbol: str, interval: str, start: dt.date, end: dt.date, db: str,
        step: Step,
    ) -> tuple[AnyInstrument, int, int]:  # fmt: skip
        from mandi.brokers.angel import history as ah
        from mandi.brokers.angel import instruments as ai
        from mandi.brokers.angel import session as s

        inst = InstrumentMaster(ai.load(cfg, end)).by_symbol(symbol)
        rest = s.rest_client(cfg)
        try:
            return inst, *ah.fetch(rest, inst, interval, start, end, db, step)
        finally:
            rest.close()

    def fake(self, sim: Any, market_clock: bool, **opts: Any) -> Any:
        from mandi.brokers.angel.fake import FakeAngel, FakeAngelServer

        return FakeAngelServer(
            FakeAngel(sim, clock_offset_ns=None if market_clock else 0), port=opts["port"]
        )


class GrowwAdapter(Adapter):
    name, title = "groww", "Groww"
    intervals = ("1minute", "2minute", "3minute", "5minute", "10minute", "15minute", "30minute",
                 "1hour", "4hour", "1day")  # fmt: skip
    default_interval = "1minute"

    def login(self, cfg: Any, **opts: Any) -> BrokerSession:
        from mandi.brokers.groww import session as s

        return s.login(cfg)

    def logout(self, cfg: Any) -> bool:
        from mandi.brokers.groww import session as s

        return s.logout(cfg)

    def sync(self, cfg: Any, day: dt.date) -> tuple[Path, list[AnyInstrument]]:
        from mandi.brokers.groww import instruments as gi

        return gi.sync(cfg, day)

    def history(
        self, cfg: Any, symbol: str, interval: str, start: dt.date, end: dt.date, db: str,
        step: Step,
    ) -> tuple[AnyInstrument, int, int]:  # fmt: skip
        from mandi.brokers.groww import history as gh
        from mandi.brokers.groww import instruments as gi
        from mandi.brokers.groww import session as s

        inst = InstrumentMaster(gi.load(cfg, end)).by_symbol(symbol)
        rest = s.rest_client(cfg)
        try:
            return inst, *gh.fetch(rest, inst, interval, start, end, db, step)
        finally:
            rest.close()

    def fake(self, sim: Any, market_clock: bool, **opts: Any) -> Any:
        from mandi.brokers.groww.fake import FakeGroww, FakeGrowwServer

        return FakeGrowwServer(
            FakeGroww(sim, clock_offset_ns=None if market_clock else 0), port=opts["port"]
        )


ADAPTERS: dict[str, Adapter] = {a.name: a for a in (KiteAdapter(), AngelAdapter(), GrowwAdapter())}
