"""``mandi run --feed replay:PATH [--speed X]``: a recording through the whole platform.

``PATH`` is a mandi database — the ticks ``mandi run`` stored (compressed blocks or the seed's
rows, :mod:`mandi.stores.ticks`) — or a tick file: CSV with a header naming :class:`Tick` fields
(``token``, ``ts_event`` and ``price`` at least; ``exchange`` a name, NSE by default).

The ticks come back in the order they were recorded, as :class:`~mandi.model.batches.TickBatch`
es: flat out (``--speed inf``) a minute of exchange time at a time, otherwise paced in 250 ms
exchange steps at ``speed`` × real time — the chains, candles and trading decisions do not depend
on how ticks are batched (DESIGN §11), so a replay of a simulated run's database gives that run's
candles, indicator values, chain snapshots, signals, orders and fills (tested). For that:

* the instruments of a simulated recording are the simulator's of each recorded day (its
  configuration is in the database's ``meta``); other recordings get a plain equity per token
  (candles, indicators and trading work; option chains need contracts);
* its warm-up history is the simulator's, as for the run that recorded it
  (:func:`replay_history`);
* a day the recording closed (``meta`` ``session.closed.{date}``) is closed again after its last
  tick; a recording that stopped earlier (``--until``) just ends there.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import numpy as np

from mandi.config import SimConfig
from mandi.core.calendar import calendar, ist_date, ist_ns
from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import ConfigError
from mandi.feeds.pacer import ExchangePacer
from mandi.model.batches import TICK_FIELDS, TickBatch, exchange_code, exchange_name
from mandi.model.instruments import AnyInstrument, Equity

STEP_NS = 250_000_000
MINUTE_NS = 60 * NS_PER_SECOND
#: ``meta`` key prefix of a session the recording closed (``session.closed.YYYY-MM-DD``)
CLOSED_KEY = "session.closed."


def replay_path(feed: str) -> pathlib.Path:
    """The file of a ``replay:PATH`` feed name (a clear error when it is not there)."""
    path = pathlib.Path(feed.partition(":")[2]).expanduser()
    if not feed.startswith("replay:") or not str(path):
        raise ConfigError("run.feed", feed, "use replay:PATH (a mandi database or a tick CSV)")
    if not path.is_file():
        raise ConfigError("run.feed", feed, f"{path} is not a file")
    return path


class _Recording:
    """What a recording holds: per IST day its ticks, the instruments and whether it closed."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.sim: SimConfig | None = None
        self.closed: set[dt.date] = set()
        self.is_db = path.read_bytes()[:16] == b"SQLite format 3\x00"
        self._csv: TickBatch | None = None
        if self.is_db:
            from mandi.stores.sqlite import connect, get_meta, meta_keys
            from mandi.stores.ticks import tick_span

            con = connect(str(path), readonly=True)
            try:
                identity = get_meta(con, "sim.identity")
                if identity:
                    self.sim = msgspec.json.decode(identity, type=SimConfig)
                self.closed = {
                    dt.date.fromisoformat(k.removeprefix(CLOSED_KEY))
                    for k in meta_keys(con, CLOSED_KEY)
                }
                self.first_ns, self.last_ns = tick_span(con)
            finally:
                con.close()
        else:
            self._csv = read_tick_csv(path)
            ts = self._csv.ts_event
            self.first_ns = int(ts.min()) if len(ts) else 0
            self.last_ns = int(ts.max()) if len(ts) else 0
        if not self.first_ns:
            raise ConfigError("run.feed", f"replay:{path}", "the recording holds no ticks")

    @property
    def label(self) -> str:
        return "sim" if self.sim is not None else "replay"

    def days(self) -> list[dt.date]:
        cal = calendar("NSE")
        day, last = ist_date(self.first_ns), ist_date(self.last_ns)
        out = []
        while day <= last:
            if cal.is_trading_day(day):
                out.append(day)
            day += dt.timedelta(days=1)
        return out

    def ticks(self, day: dt.date) -> Iterator[TickBatch]:
        """The day's ticks (midnight to midnight IST) in recorded order."""
        start = ist_ns(day)
        end = start + 86_400 * NS_PER_SECOND
        if self._csv is not None:
            b = self._csv
            keep = (b.ts_event >= start) & (b.ts_event < end)
            if keep.any():
                yield b.take(keep)
            return
        from mandi.stores.sqlite import connect
        from mandi.stores.ticks import iter_ticks

        con = connect(str(self.path), readonly=True)
        try:
            yield from iter_ticks(con, start, end)
        finally:
            con.close()

    def instruments(self, day: dt.date, tokens: Any = ()) -> list[AnyInstrument]:
        if self.sim is not None:
            from mandi.feeds.sim import SimExchange

            return list(SimExchange(self.sim, day).instruments)
        return [Equity(int(t), exchange_name(int(x)), str(t)) for t, x in tokens]


def read_tick_csv(path: pathlib.Path) -> TickBatch:
    """A tick CSV (header of :class:`Tick` field names) as one batch; a bad value is one line
    naming the row and the field."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        missing = [c for c in ("token", "ts_event", "price") if c not in fields]
        if missing:
            raise ConfigError("run.feed", f"replay:{path}", f"the header lacks {missing}")
        cols: dict[str, list[int]] = {c: [] for c in TICK_FIELDS}
        for n, row in enumerate(reader, start=2):
            for c in TICK_FIELDS:
                v = row.get(c)
                try:
                    if c == "exchange":
                        cols[c].append(exchange_code(v or "NSE"))
                    elif c == "ts_init" and not v:
                        cols[c].append(int(row["ts_event"]))
                    else:
                        cols[c].append(int(v) if v not in (None, "") else 0)
                except ValueError:
                    raise ConfigError(
                        "run.feed", f"replay:{path}", f"line {n}: {c} = {v!r} is not an integer"
                    ) from None
    return TickBatch(np.array([cols[c] for c in TICK_FIELDS], dtype=np.int64).reshape(12, -1))


class ReplayFeed:
    """The node's feed of a recording (module docstring)."""

    name = "replay"
    live = False
    wall_clock = False

    def __init__(self, path: pathlib.Path, speed: float, ctx: Any = None) -> None:
        if not speed > 0:
            raise ConfigError("run.speed", speed, "must be > 0")
        self.recording = _Recording(path)
        self.speed = speed
        self._ctx = ctx  # the node's context: a new day's contracts are registered there
        self._days = self.recording.days()
        self._day = self._days[0]
        self.exchange_time_ns = calendar("NSE").session(self._day).open_ns  # type: ignore[union-attr]
        self._instruments = self._instruments_of(self._day)

    @property
    def label(self) -> str:
        """The recorded feed's name, for what the data is labelled with (a chain's source)."""
        return self.recording.label

    @property
    def sim_config(self) -> SimConfig | None:
        return self.recording.sim

    def _instruments_of(self, day: dt.date) -> list[AnyInstrument]:
        tokens: set[tuple[int, int]] = set()
        if self.recording.sim is None:
            for b in self.recording.ticks(day):
                tokens |= set(zip(b.token.tolist(), b.exchange.tolist(), strict=True))
        return self.recording.instruments(day, sorted(tokens))

    def instruments(self) -> list[AnyInstrument]:
        return list(self._instruments)

    async def batches(self) -> AsyncIterator[TickBatch]:
        pacer = ExchangePacer(self.speed)
        cal = calendar("NSE")
        for n, day in enumerate(self._days):
            if n:  # the next day's contracts, before its ticks
                self._day = day
                self._instruments = self._instruments_of(day)
                if self._ctx is not None:
                    self._ctx.add_instruments(self._instruments)
            pacer.restart()
            for block in self.recording.ticks(day):
                ts = block.ts_event
                grid = STEP_NS if pacer.paced else MINUTE_NS
                cuts = np.flatnonzero(np.diff(ts // grid)) + 1
                bounds = [0, *cuts.tolist(), len(block)]
                for lo, hi in itertools.pairwise(bounds):
                    part = block.slice(lo, hi)
                    self.exchange_time_ns = int(part.ts_event[-1])
                    await pacer.pace(part)
                    yield part
            if day in self.recording.closed:  # the recording closed this session: so do we
                session = cal.session(day)
                assert session is not None
                self.exchange_time_ns = session.close_ns
                yield TickBatch.empty()


def replay_history(cfg: Any, start: dt.date) -> Any:
    """The warm-up history of a replay: the simulator's, as for the run that recorded it (a
    recording of another feed has none: the store's candles are the warm-up)."""
    from mandi.feeds.history import SimHistory

    rec = _Recording(replay_path(cfg.run.feed))
    return SimHistory(rec.sim, start) if rec.sim is not None else None


def register() -> None:
    """Make ``replay`` a history source (the warm-up of a replayed simulation)."""
    from mandi.feeds.history import SOURCES

    SOURCES["replay"] = replay_history
