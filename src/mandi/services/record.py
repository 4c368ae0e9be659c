"""The trading record in ClickHouse: signals, orders, positions, chain snapshots and daily
performance as the run produces them (``store.clickhouse_url``; shell code).

A node layer beside the trading layer (``mandi run``, the ``strategy`` service): it follows
the bus —

* ``signal:>`` (:class:`~mandi.model.trading.SignalGenerated`) → ``trading_signals``;
* ``order:>`` (submitted, accepted, rejected, cancelled, unknown — each with the order's
  record — and fills, applied to the last record) → ``orders``;
* ``position:>`` (opened, updated, closed) → ``positions``;
* ``chain:>`` (:class:`~mandi.model.market.ChainSnapshot`) → ``options_data``;
* the trading kernel's row of the day (``daily_performance``), whenever it changed —

one queued item per table per kernel batch into the node's :class:`ClickHouseWriter` (the
market-data sink's, so one chdb directory is opened once). ``orders``, ``positions`` and
``daily_performance`` are ``ReplacingMergeTree(version)`` keyed by the order, the position and
the day, with the record's update time as the version (seed 003's ``positions`` ENGINE): every
change is a new row, reads with ``FINAL`` see the newest, a replayed event collapses into the
same row. SQLite stays the trading kernel's own store (its idempotency and restart state);
ClickHouse is the system of record the API reads history from.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from mandi.core.calendar import ist_date, ist_ns
from mandi.core.errors import StoreError
from mandi.model.market import ChainSnapshot
from mandi.model.orders import (
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRecord,
    OrderRejected,
    OrderSubmitted,
    OrderUnknown,
)
from mandi.model.trading import (
    PositionClosed,
    PositionOpened,
    PositionRecord,
    PositionUpdated,
    SignalGenerated,
)
from mandi.stores.chains import snapshot_rows
from mandi.stores.clickhouse import ClickHouseWriter, parse_url

if TYPE_CHECKING:
    from mandi.services.context import NodeContext

log = logging.getLogger(__name__)

_json = msgspec.json.Encoder()


def signal_row(s: SignalGenerated) -> tuple[Any, ...]:
    """A ``trading_signals`` row (seed 003 §7.1, in paise and ns)."""
    return (
        s.ts_event, s.signal_id, s.symbol, s.asset_type, s.strategy, str(s.action), s.price,
        s.quantity, s.confidence, s.target, s.stop_loss,
        _json.encode({"token": s.token, "exchange": s.exchange, "timeframe": s.timeframe,
                      "bucket": s.bucket, **s.metadata}).decode(),
    )  # fmt: skip


def order_row(o: OrderRecord) -> tuple[Any, ...]:
    """An ``orders`` row: the order as it is now."""
    return (
        o.client_order_id, o.parent_id, o.token, o.exchange, o.symbol, o.side, o.quantity,
        o.order_type, o.limit_price, o.product, o.intent, o.strategy, o.signal_id,
        o.position_id, o.status, o.filled_qty, o.fill_value, o.broker_order_id, o.reason,
        o.charges, o.created_ns, o.updated_ns,
    )  # fmt: skip


def position_row(p: PositionRecord) -> tuple[Any, ...]:
    """A ``positions`` row (seed 003 §7.2, in paise and ns)."""
    return (
        p.position_id, p.signal_id, p.symbol, p.underlying, p.strike, p.option_type,
        p.expiry.isoformat() if p.expiry else "", p.entry_timestamp, p.entry_premium,
        p.quantity, p.lot_size, p.total_investment, p.stop_loss_premium, p.target_premium,
        p.current_premium, p.unrealized_pnl, p.exit_timestamp, p.exit_premium,
        p.exit_reason or None, p.realized_pnl, p.status, int(p.paper_trade),
        _json.encode({"strategy": p.strategy, "token": p.token, "exchange": p.exchange,
                      "charges": p.charges, **p.metadata}).decode(),
        p.updated_ns,
    )  # fmt: skip


def daily_row(row: Any, updated_ns: int) -> tuple[Any, ...]:
    """A ``daily_performance`` row from the kernel's :class:`~mandi.model.trading.DailyRow`."""
    day = dt.date.fromisoformat(row.date)
    return (
        row.date, ist_ns(day), row.total_trades, row.winning_trades, row.losing_trades,
        row.gross_profit, row.gross_loss, row.net_pnl, row.charges, row.max_drawdown, row.peak,
        updated_ns,
    )  # fmt: skip


class ClickHouseRecordLayer:
    """A :class:`~mandi.services.node.Layer` writing the trading record into ClickHouse (see
    the module documentation)."""

    name = "clickhouse-record"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.writer: ClickHouseWriter | None = None
        self._own = False
        self._ctx: NodeContext | None = None
        self._rows: dict[str, list[tuple[Any, ...]]] = {}
        self._orders: dict[str, OrderRecord] = {}
        self._versions: dict[str, int] = {}  # key -> last version written (strictly rising)
        self._daily: tuple[Any, ...] | None = None

    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        sink = ctx.layer("clickhouse")  # mandi run: the market-data sink's writer
        if sink is not None:
            self.writer = sink.writer
        else:
            st = self.cfg.store
            self.writer = ClickHouseWriter(
                parse_url(st.clickhouse_url),
                flush_interval=st.flush_interval_ms / 1000,
                flush_items=st.flush_items,
                max_pending_rows=st.max_pending_rows,
            ).start()
            self._own = True
        bus = ctx.bus
        bus.subscribe("signal:>", self._on_signal, name="clickhouse.signals")
        bus.subscribe("order:>", self._on_order, name="clickhouse.orders")
        bus.subscribe("position:>", self._on_position, name="clickhouse.positions")
        bus.subscribe("chain:>", self._on_chain, name="clickhouse.chains")

    def _version(self, key: str, ts: int) -> int:
        """A version above the last one written for ``key`` (two changes in one ns)."""
        v = max(ts, self._versions.get(key, -1) + 1)
        self._versions[key] = v
        return v

    def _add(self, table: str, row: tuple[Any, ...]) -> None:
        self._rows.setdefault(table, []).append(row)

    def _on_signal(self, topic: str, s: Any) -> None:
        if type(s) is SignalGenerated:
            self._add("trading_signals", signal_row(s))

    def _on_order(self, topic: str, ev: Any) -> None:
        t = type(ev)
        if t in (OrderSubmitted, OrderAccepted, OrderRejected, OrderCancelled, OrderUnknown):
            rec: OrderRecord = ev.order
        elif t is OrderFilled:
            last = self._orders.get(ev.client_order_id)
            if last is None:
                return  # an order this run never saw submitted: its record comes from SQLite
            rec = msgspec.structs.replace(
                last,
                filled_qty=ev.filled_qty,
                fill_value=last.fill_value + ev.price * ev.quantity,
                charges=last.charges + ev.charges,
                status="FILLED" if ev.complete else "PARTIALLY_FILLED",
                updated_ns=ev.ts_event,
            )
        else:
            return
        self._orders[rec.client_order_id] = rec
        key = "o:" + rec.client_order_id
        self._add("orders", (*order_row(rec), self._version(key, rec.updated_ns)))

    def _on_position(self, topic: str, ev: Any) -> None:
        if type(ev) in (PositionOpened, PositionUpdated, PositionClosed):
            p: PositionRecord = ev.position
            ts = p.updated_ns or ev.ts_event
            self._add("positions", (*position_row(p), self._version("p:" + p.position_id, ts)))

    def _on_chain(self, topic: str, snap: Any) -> None:
        if type(snap) is ChainSnapshot:
            for row in snapshot_rows(snap, None, snap.ts_event):
                self._add("options_data", row)

    def _today(self) -> tuple[Any, ...] | None:
        trading = self._ctx.layer("trading") if self._ctx is not None else None
        kernel = getattr(trading, "kernel", None)
        if kernel is None:
            return None
        now = kernel.clock.now_ns()
        return daily_row(kernel.perf.row(ist_date(now)), now) if now > 0 else None

    def after_batch(self) -> None:
        if self.writer is None:
            return
        today = self._today()
        if today is not None and (self._daily is None or today[:-1] != self._daily[:-1]):
            self._daily = today
            self._add("daily_performance", (*today, self._version("d:" + today[0], today[-1])))
        rows, self._rows = self._rows, {}
        for table, batch in rows.items():
            self.writer.put(table, batch)

    def tasks(self) -> list[Coroutine[Any, Any, Any]]:
        return []

    def close(self) -> None:
        self.after_batch()
        if self._own and self.writer is not None:
            self.writer.stop()


class ClickHouseHistory:
    """Candles and indicator values read back from ClickHouse for the API (the gateway's history
    when ``store.clickhouse_url`` is set): the interface of
    :class:`~mandi.services.distributed.node.RedisHistory`, blocking, one store shared by the
    API's worker threads (a lock)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._store: Any = None
        self._lock = threading.Lock()

    def _call(self, method: str, *args: Any) -> Any:
        from mandi.stores.clickhouse import ClickHouseStore

        with self._lock:
            if self._store is None:
                self._store = ClickHouseStore.open(self.url, create=False)
            try:
                return getattr(self._store, method)(*args)
            except StoreError:
                self._store.close()
                self._store = None  # reopened at the next read
                raise

    def candles(self, token: int, exchange: str, timeframe: int, end_ns: int, limit: int) -> Any:
        return self._call("recent_candles", token, exchange, timeframe, end_ns, limit)

    def indicator_names(self, token: int, exchange: str, timeframe: int) -> list[str]:
        return list(self._call("indicator_names", token, exchange, timeframe))

    def indicator_values(
        self, token: int, exchange: str, timeframe: int, name: str, end_ns: int, limit: int
    ) -> list[tuple[int, float]]:
        return list(
            self._call("recent_indicator_values", token, exchange, timeframe, name, end_ns, limit)
        )

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


class LayeredHistory:
    """History from ``first`` (ClickHouse, the system of record), else from ``then`` (the Redis
    streams' few hours) — per read, whichever holds the series."""

    def __init__(self, first: Any, then: Any) -> None:
        self.first, self.then = first, then

    def _read(self, method: str, *args: Any) -> Any:
        try:
            got = getattr(self.first, method)(*args)
        except StoreError as e:
            log.warning("ClickHouse history read failed (%s); reading Redis", e)
            got = []
        return got or getattr(self.then, method)(*args)

    def candles(self, *args: Any) -> Any:
        return self._read("candles", *args)

    def indicator_names(self, *args: Any) -> Any:
        return self._read("indicator_names", *args)

    def indicator_values(self, *args: Any) -> Any:
        return self._read("indicator_values", *args)

    def close(self) -> None:
        self.first.close()
        self.then.close()
