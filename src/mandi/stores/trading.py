"""SQLite persistence of the trading kernel (``synchronous=FULL``): the
:class:`~mandi.execution.ports.TradingStore` port, the paper broker's book, CLI order requests,
the node heartbeat, and the reads behind ``mandi positions | orders | signals``.

Every write is its own committed transaction before the call returns — with ``synchronous=FULL``
a commit survives a power cut, not only a process crash. Multi-row changes that must stay
consistent (the slices of an order and their signal's status; a fill with its order, position,
closed trade and daily row) are one transaction, so a crash leaves all or nothing.

Inside :meth:`SqliteTradingStore.unit` (the handling of one signal) the writes are instead
savepoints of one transaction, committed — one fsync — at :meth:`SqliteTradingStore.sync` (the
order router calls it right before anything goes to the broker) or at the unit's end: a signal
that becomes an order costs one durable commit before the order leaves, not four. A crash before
that commit loses only what nothing outside the process has acted on yet.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import msgspec

from mandi.brokers.paper import PaperOrder
from mandi.core.errors import StoreError
from mandi.execution.ports import BrokerFill, ClosedTrade, DailyRow, Latch
from mandi.model.events import SystemEvent
from mandi.model.orders import (
    OrderFilled,
    OrderRecord,
    OrderStatus,
    OrderType,
    Product,
    Side,
)
from mandi.model.trading import PositionRecord, RiskDenied, SignalGenerated
from mandi.stores.sqlite import connect, get_meta, rollback, set_meta, write_turn

_TERMINAL = ("FILLED", "CANCELLED", "REJECTED")
_json = msgspec.json.Encoder()
HEARTBEAT_KEY = "trading.heartbeat"


def _dumps(obj: Any) -> str:
    return _json.encode(obj).decode()


class SqliteTradingStore:
    """The trading store on one SQLite connection (used from the kernel's thread only)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.con = connect(path, synchronous="FULL")
        # this process's batch writer of the same file lets our writes go first
        self.turn = write_turn(path)
        self._units = 0  # depth of open units of work (:meth:`unit`)
        self._held: ExitStack | None = None  # the write turn of a unit's open transaction
        self._lost = False  # SQLite rolled back the unit's transaction: sync() must say so

    def close(self) -> None:
        self.con.close()

    # --- units of work ----------------------------------------------------------------------------
    @contextmanager
    def unit(self) -> Iterator[None]:
        """Group the writes made inside into one transaction (each write a savepoint of it),
        committed by :meth:`sync` or when the outermost unit ends — also when it ends by an
        exception: each write that returned is complete, as it would have been committed on
        its own. Nothing is committed before :meth:`sync`, so whoever acts outside the process
        on what was written (sends an order) calls :meth:`sync` first."""
        self._units += 1
        try:
            yield
        finally:
            self._units -= 1
            if not self._units:
                self.sync()

    def sync(self) -> None:
        """Commit the open unit's transaction (a no-op outside a unit or with nothing written):
        what was written so far survives a crash or a power cut when this returns."""
        if self._held is None:
            return
        con = self.con
        try:
            if con.in_transaction:
                con.execute("COMMIT")
            else:  # SQLite rolled it back after a failed write: fail closed
                self._lost = True
        except BaseException:
            rollback(con)
            raise
        finally:
            held, self._held = self._held, None
            held.close()
        if self._lost:
            self._lost = False
            raise StoreError(
                f"trading store {self.path}: SQLite rolled back a transaction after a failed "
                "write; its earlier writes are lost"
            )

    def _open(self) -> None:
        """Begin the unit's transaction at its first write (holding the write turn until the
        commit)."""
        if self._held is not None and self.con.in_transaction:
            return
        if self._held is not None:  # SQLite ended it (a failed statement rolled it back)
            self._held.close()
            self._held = None
            self._lost = True  # said at the next sync, before anything acts on it
        held = ExitStack()
        held.enter_context(self.turn.urgent(self.con))
        try:
            self.con.execute("BEGIN IMMEDIATE")
        except BaseException:
            held.close()
            raise
        self._held = held

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        con = self.con
        if self._units:  # a savepoint of the unit's transaction
            self._open()
            con.execute("SAVEPOINT write")
            try:
                yield con
                con.execute("RELEASE write")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK TO write")
                    con.execute("RELEASE write")
                raise
            return
        with self.turn.urgent(self.con):
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                rollback(con)
                raise

    @contextmanager
    def _one(self) -> Iterator[None]:
        """One statement: in the unit's transaction inside a unit, else committed by itself."""
        if self._units:
            self._open()
            yield
            return
        with self.turn.urgent(self.con):
            yield

    # --- signals ----------------------------------------------------------------------------------
    def insert_signal(self, s: SignalGenerated) -> str | None:
        with self._tx() as con:
            row = con.execute(
                "SELECT status FROM trading_signals WHERE signal_id=?", (s.signal_id,)
            ).fetchone()
            if row is not None:
                return str(row[0])
            con.execute(
                "INSERT INTO trading_signals (signal_id, timestamp, symbol, asset_type, strategy, "
                "action, price, quantity, confidence, target, stop_loss, metadata, token, "
                "exchange, timeframe, bucket, status) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    s.signal_id,
                    s.ts_event,
                    s.symbol,
                    s.asset_type,
                    s.strategy,
                    s.action.value,
                    s.price,
                    s.quantity,
                    s.confidence,
                    s.target,
                    s.stop_loss,
                    _dumps(s.metadata),
                    s.token,
                    s.exchange,
                    s.timeframe,
                    s.bucket,
                    "NEW",
                ),
            )
        return None

    def signal_status(self, signal_id: str) -> str | None:
        row = self.con.execute(
            "SELECT status FROM trading_signals WHERE signal_id=?", (signal_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_signal_status(self, signal_id: str, status: str, reason: str, ts_ns: int) -> None:
        with self._one():
            self.con.execute(
                "UPDATE trading_signals SET status=?, reason=?, processed_at=? WHERE signal_id=?",
                (status, reason, ts_ns, signal_id),
            )

    # --- orders -----------------------------------------------------------------------------------
    _ORDER_COLS = (
        "order_id, symbol, side, quantity, price, status, filled_price, filled_qty, "
        "timestamp, strategy_name, parent_id, token, exchange, order_type, product, "
        "intent, signal_id, position_id, slice_no, slice_count, segment, tag, "
        "broker_order_id, reason, charges, fill_value, fill_ids, stop_loss, target, "
        "updated_at, trigger_price, oco_group"
    )

    @staticmethod
    def _order_row(o: OrderRecord) -> tuple[Any, ...]:
        avg = round(o.fill_value / o.filled_qty) if o.filled_qty else 0
        return (
            o.client_order_id,
            o.symbol,
            o.side,
            o.quantity,
            o.limit_price,
            o.status,
            avg,
            o.filled_qty,
            o.created_ns,
            o.strategy,
            o.parent_id,
            o.token,
            o.exchange,
            o.order_type,
            o.product,
            o.intent,
            o.signal_id,
            o.position_id,
            o.slice_no,
            o.slice_count,
            o.segment,
            o.tag,
            o.broker_order_id,
            o.reason,
            o.charges,
            o.fill_value,
            _dumps(list(o.fill_ids)),
            o.stop_loss,
            o.target,
            o.updated_ns,
            o.trigger_price,
            o.oco_group,
        )

    def _upsert_order(self, con: sqlite3.Connection, o: OrderRecord, event: str) -> None:
        con.execute(
            f"INSERT OR REPLACE INTO orders ({self._ORDER_COLS}) VALUES ({','.join('?' * 32)})",
            self._order_row(o),
        )
        con.execute(
            "INSERT INTO order_events (order_id, timestamp, status, event, segment, "
            "reason) VALUES (?,?,?,?,?,?)",
            (
                o.client_order_id,
                o.updated_ns,
                o.status,
                event or o.status.lower(),
                o.segment,
                o.reason,
            ),
        )

    def save_new_orders(
        self, orders: list[OrderRecord], signal_status: tuple[str, str, str] | None = None
    ) -> None:
        with self._tx() as con:
            for o in orders:
                if (
                    con.execute(
                        "SELECT 1 FROM orders WHERE order_id=?", (o.client_order_id,)
                    ).fetchone()
                    is None
                ):
                    self._upsert_order(con, o, "new")
            if signal_status is not None:
                sid, status, reason = signal_status
                con.execute(
                    "UPDATE trading_signals SET status=?, reason=?, processed_at=? "
                    "WHERE signal_id=?",
                    (status, reason, orders[0].created_ns if orders else 0, sid),
                )

    def save_order(self, order: OrderRecord, event: str = "") -> None:
        with self._tx() as con:
            self._upsert_order(con, order, event)

    def record_fill(
        self,
        order: OrderRecord,
        fill: OrderFilled,
        position: PositionRecord | None,
        trade: ClosedTrade | None,
        daily: DailyRow | None,
    ) -> bool:
        with self._tx() as con:
            if (
                con.execute("SELECT 1 FROM fills WHERE fill_id=?", (fill.fill_id,)).fetchone()
                is not None
            ):
                return False
            con.execute(
                "INSERT INTO fills (fill_id, order_id, timestamp, token, symbol, side, quantity, "
                "price, charges, charges_detail, intent, strategy, position_id, signal_id) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    fill.fill_id,
                    fill.client_order_id,
                    fill.ts_event,
                    fill.token,
                    fill.symbol,
                    fill.side.value,
                    fill.quantity,
                    fill.price,
                    fill.charges,
                    _dumps(fill.charges_detail),
                    fill.intent.value,
                    fill.strategy,
                    fill.position_id,
                    fill.signal_id,
                ),
            )
            self._upsert_order(con, order, "fill")
            if position is not None:
                self._upsert_position(con, position)
            if trade is not None:
                con.execute(
                    "INSERT OR REPLACE INTO trades (order_id, symbol, side, quantity, "
                    "entry_price, exit_price, pnl, pnl_pct, entry_time, exit_time, position_id, "
                    "strategy, charges, exit_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        trade.order_id,
                        trade.symbol,
                        trade.side,
                        trade.quantity,
                        trade.entry_price,
                        trade.exit_price,
                        trade.pnl,
                        trade.pnl_pct,
                        trade.entry_time,
                        trade.exit_time,
                        trade.position_id,
                        trade.strategy,
                        trade.charges,
                        trade.exit_reason,
                    ),
                )
            if daily is not None:
                self._upsert_daily(con, daily)
        return True

    def open_orders(self) -> list[OrderRecord]:
        rows = self.con.execute(
            f"SELECT {self._ORDER_COLS} FROM orders WHERE status "
            f"NOT IN {_TERMINAL} ORDER BY timestamp, order_id"
        ).fetchall()
        return [_order_record(r) for r in rows]

    def order_ids(self, parent_id: str) -> list[str]:
        return [
            r[0]
            for r in self.con.execute("SELECT order_id FROM orders WHERE parent_id=?", (parent_id,))
        ]

    def sends_since(self, ts_ns: int) -> list[tuple[str, int]]:
        return [
            (str(s), int(t))
            for s, t in self.con.execute(
                "SELECT segment, timestamp FROM order_events WHERE timestamp >= ? AND "
                "event='submitted' ORDER BY timestamp",
                (ts_ns,),
            )
        ]

    # --- positions --------------------------------------------------------------------------------
    _POS_COLS = (
        "position_id, signal_id, symbol, underlying, strike, option_type, expiry, "
        "entry_timestamp, entry_premium, quantity, lot_size, total_investment, "
        "stop_loss_premium, target_premium, current_premium, unrealized_pnl, "
        "exit_timestamp, exit_premium, exit_reason, realized_pnl, status, paper_trade, "
        "metadata, updated_at, strategy, token, exchange, product, direction, cost, "
        "charges, entry_qty, exit_qty, high_water"
    )

    def _upsert_position(self, con: sqlite3.Connection, p: PositionRecord) -> None:
        con.execute(
            f"INSERT OR REPLACE INTO positions ({self._POS_COLS}) VALUES ({','.join('?' * 34)})",
            (
                p.position_id,
                p.signal_id,
                p.symbol,
                p.underlying,
                p.strike,
                p.option_type,
                p.expiry.isoformat() if p.expiry else None,
                p.entry_timestamp,
                p.entry_premium,
                p.quantity,
                p.lot_size,
                p.total_investment,
                p.stop_loss_premium,
                p.target_premium,
                p.current_premium,
                p.unrealized_pnl,
                p.exit_timestamp,
                p.exit_premium,
                p.exit_reason,
                p.realized_pnl,
                p.status,
                int(p.paper_trade),
                _dumps(p.metadata),
                p.updated_ns,
                p.strategy,
                p.token,
                p.exchange,
                p.product,
                p.direction,
                p.cost,
                p.charges,
                p.entry_qty,
                p.exit_qty,
                p.high_water,
            ),
        )

    def save_position(self, position: PositionRecord) -> None:
        with self._tx() as con:
            self._upsert_position(con, position)

    def open_positions(self) -> list[PositionRecord]:
        rows = self.con.execute(
            f"SELECT {self._POS_COLS} FROM positions WHERE status='OPEN' ORDER BY entry_timestamp"
        ).fetchall()
        return [_position_record(r) for r in rows]

    def exit_order_count(self, position_id: str) -> int:
        row = self.con.execute(
            "SELECT count(DISTINCT parent_id) FROM orders WHERE position_id=? AND intent='EXIT'",
            (position_id,),
        ).fetchone()
        return int(row[0])

    # --- performance ------------------------------------------------------------------------------
    def load_daily(self, date: str) -> DailyRow | None:
        r = self.con.execute(
            "SELECT date, total_trades, winning_trades, losing_trades, "
            "gross_profit, gross_loss, net_pnl, charges, max_drawdown, peak "
            "FROM daily_performance WHERE date=?",
            (date,),
        ).fetchone()
        return None if r is None else DailyRow(*r)

    def _upsert_daily(self, con: sqlite3.Connection, d: DailyRow) -> None:
        con.execute(
            "INSERT OR REPLACE INTO daily_performance (date, total_trades, "
            "winning_trades, losing_trades, gross_profit, gross_loss, net_pnl, "
            "max_drawdown, charges, peak) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                d.date,
                d.total_trades,
                d.winning_trades,
                d.losing_trades,
                d.gross_profit,
                d.gross_loss,
                d.net_pnl,
                d.max_drawdown,
                d.charges,
                d.peak,
            ),
        )

    def save_daily(self, row: DailyRow) -> None:
        with self._tx() as con:
            self._upsert_daily(con, row)

    def save_marks(self, positions: list[PositionRecord], daily: DailyRow | None) -> None:
        """The minute's marks in one transaction committed without an fsync.

        Marks are informational (a fill's rows are stored durably as it happens and a restart
        marks again), so they do not pay a power-cut-proof commit: at ``synchronous=NORMAL`` in
        WAL mode the database stays consistent, the next durable write or checkpoint syncs them
        too, and a power cut can only lose the latest marks — not a fill. (One fsync a minute
        was ~20 % of a flat-out ``mandi run``.)
        """
        con = self.con
        if self._units:  # part of the unit's (durable) transaction
            with self._tx():
                for p in positions:
                    self._upsert_position(con, p)
                if daily is not None:
                    self._upsert_daily(con, daily)
            return
        con.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._tx():
                for p in positions:
                    self._upsert_position(con, p)
                if daily is not None:
                    self._upsert_daily(con, daily)
        finally:
            con.execute("PRAGMA synchronous=FULL")

    # --- latch and events -------------------------------------------------------------------------
    def load_latch(self) -> Latch:
        return load_latch(self.con)

    def save_latch(self, latch: Latch) -> Latch:
        self.sync()  # the latch is its own transaction (it checks the stored version)
        with self.turn.urgent(self.con):
            return save_latch(self.con, latch)

    def record_event(self, e: SystemEvent) -> None:
        with self._one():
            self.con.execute(
                "INSERT INTO system_events (timestamp, event_type, message, severity, "
                "source, data) VALUES (?,?,?,?,?,?)",
                (e.ts_event, e.kind, e.message, e.severity, e.source, _dumps(e.data)),
            )

    def record_denial(self, d: RiskDenied) -> None:
        self.record_event(
            SystemEvent(
                d.ts_event,
                "risk_denied",
                f"{d.rule}: {d.reason}",
                "WARNING",
                "risk",
                {
                    "rule": d.rule,
                    "strategy": d.strategy,
                    "signal_id": d.signal_id,
                    "order_id": d.client_order_id,
                    "symbol": d.symbol,
                    "side": d.side,
                    "quantity": d.quantity,
                },
            )
        )

    # --- shell extras -----------------------------------------------------------------------------
    def heartbeat(self, mode: str) -> None:
        beat = json.dumps({"pid": os.getpid(), "mode": mode, "wall_ns": time.time_ns()})
        with self.turn.urgent(self.con):
            set_meta(self.con, HEARTBEAT_KEY, beat)

    def clear_heartbeat(self) -> None:
        with self.turn.urgent(self.con):
            self.con.execute("DELETE FROM meta WHERE key=?", (HEARTBEAT_KEY,))


# --- the latch (shared by the store and the CLI) --------------------------------------------------


def load_latch(con: sqlite3.Connection) -> Latch:
    r = con.execute(
        "SELECT halted, reason, source, timestamp, version FROM risk_latch WHERE id=1"
    ).fetchone()
    return Latch() if r is None else Latch(bool(r[0]), r[1], r[2], int(r[3]), int(r[4]))


def save_latch(con: sqlite3.Connection, latch: Latch) -> Latch:
    """Compare-and-set: store ``latch`` if it is the next version; return what is stored."""
    con.execute("BEGIN IMMEDIATE")
    try:
        cur = load_latch(con)
        if latch.version == cur.version + 1:
            con.execute(
                "INSERT OR REPLACE INTO risk_latch VALUES (1,?,?,?,?,?)",
                (int(latch.halted), latch.reason, latch.source, latch.ts_ns, latch.version),
            )
            cur = latch
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
    return cur


def set_latch(path: str, halted: bool, reason: str, source: str) -> tuple[Latch, bool]:
    """Set or clear the latch from outside the node (``mandi halt`` / ``mandi resume``);
    returns the stored latch and whether it changed. Recorded as a system event."""
    con = connect(path, synchronous="FULL")
    try:
        cur = load_latch(con)
        if cur.halted == halted:
            return cur, False
        now = time.time_ns()
        stored = save_latch(con, Latch(halted, reason, source, now, cur.version + 1))
        kind = "trading_halted" if halted else "trading_resumed"
        con.execute(
            "INSERT INTO system_events (timestamp, event_type, message, severity, source,"
            " data) VALUES (?,?,?,?,?,?)",
            (now, kind, reason, "ERROR" if halted else "WARNING", source, "{}"),
        )
        return stored, stored.halted == halted
    finally:
        con.close()


# --- the paper broker's book ----------------------------------------------------------------------


class SqlitePaperBook:
    """:class:`~mandi.brokers.paper.PaperBook` in the ``paper_orders`` table."""

    def __init__(
        self,
        path: str,
        con: sqlite3.Connection | None = None,
        store: SqliteTradingStore | None = None,
    ) -> None:
        """``store``: the trading store whose connection the book shares — its writes then
        join the store's units of work (:meth:`SqliteTradingStore.unit`)."""
        if con is None:
            con = store.con if store is not None else connect(path, synchronous="FULL")
        self.con = con
        self.turn = write_turn(path)
        self._store = store

    def load(self) -> list[PaperOrder]:
        return [_paper(r) for r in self.con.execute(f"SELECT {_PAPER_COLS} FROM paper_orders")]

    def get(self, client_order_id: str) -> PaperOrder | None:
        r = self.con.execute(
            f"SELECT {_PAPER_COLS} FROM paper_orders WHERE client_order_id=?", (client_order_id,)
        ).fetchone()
        return None if r is None else _paper(r)

    def save(self, o: PaperOrder, new_fill: BrokerFill | None = None) -> None:
        fills = [[f.fill_id, f.quantity, f.price, f.ts_ns] for f in o.fills]
        with self.turn.urgent(self.con) if self._store is None else self._store._one():
            self.con.execute(
                f"INSERT OR REPLACE INTO paper_orders ({_PAPER_COLS}) VALUES ({_PAPER_MARKS})",
                (
                    o.client_order_id,
                    o.broker_order_id,
                    o.token,
                    o.exchange,
                    o.symbol,
                    o.side.value,
                    o.quantity,
                    o.order_type.value,
                    o.limit_price,
                    o.product.value,
                    o.reference_price,
                    o.lot_size,
                    o.tick_size,
                    o.accepted_ns,
                    o.status.value,
                    o.filled_qty,
                    o.reason,
                    json.dumps(fills),
                    o.trigger_price,
                    o.oco_group,
                ),
            )


_PAPER_MARKS = ",".join("?" * 20)
_PAPER_COLS = (
    "client_order_id, broker_order_id, token, exchange, symbol, side, quantity, "
    "order_type, limit_price, product, reference_price, lot_size, tick_size, "
    "accepted_ns, status, filled_qty, reason, fills, trigger_price, oco_group"
)


def _paper(r: tuple[Any, ...]) -> PaperOrder:
    fills = tuple(
        BrokerFill(r[0], f[0], int(f[1]), int(f[2]), int(f[3])) for f in json.loads(r[17])
    )
    return PaperOrder(
        r[0],
        r[1],
        int(r[2]),
        r[3],
        r[4],
        Side(r[5]),
        int(r[6]),
        OrderType(r[7]),
        int(r[8]),
        Product(r[9]),
        int(r[10]),
        int(r[11]),
        int(r[12]),
        int(r[13]),
        OrderStatus(r[14]),
        int(r[15]),
        r[16],
        fills,
        trigger_price=int(r[18]),
        oco_group=r[19],
    )


def _order_record(r: tuple[Any, ...]) -> OrderRecord:
    (
        oid,
        symbol,
        side,
        qty,
        price,
        status,
        _avg,
        filled,
        ts,
        strategy,
        parent,
        token,
        exchange,
        otype,
        product,
        intent,
        signal_id,
        position_id,
        slice_no,
        slice_count,
        segment,
        tag,
        broker_id,
        reason,
        charges,
        fill_value,
        fill_ids,
        stop_loss,
        target,
        updated,
        trigger_price,
        oco_group,
    ) = r
    return OrderRecord(
        client_order_id=oid,
        parent_id=parent,
        token=int(token),
        exchange=exchange,
        symbol=symbol,
        side=side,
        quantity=int(qty),
        order_type=otype,
        limit_price=int(price),
        product=product,
        intent=intent,
        strategy=strategy,
        signal_id=signal_id,
        position_id=position_id,
        slice_no=int(slice_no),
        slice_count=int(slice_count),
        segment=segment,
        tag=tag,
        status=status,
        filled_qty=int(filled),
        fill_value=int(fill_value),
        fill_ids=tuple(json.loads(fill_ids)),
        broker_order_id=broker_id,
        reason=reason,
        charges=int(charges),
        created_ns=int(ts),
        updated_ns=int(updated),
        stop_loss=int(stop_loss),
        target=int(target),
        trigger_price=int(trigger_price),
        oco_group=oco_group,
    )


def _position_record(r: tuple[Any, ...]) -> PositionRecord:
    (
        pid,
        sid,
        symbol,
        underlying,
        strike,
        otype,
        expiry,
        entry_ts,
        entry_premium,
        qty,
        lot,
        invest,
        sl,
        tgt,
        cur,
        unreal,
        exit_ts,
        exit_premium,
        exit_reason,
        realized,
        status,
        paper,
        meta,
        updated,
        strategy,
        token,
        exchange,
        product,
        direction,
        cost,
        charges,
        entry_qty,
        exit_qty,
        high_water,
    ) = r
    return PositionRecord(
        position_id=pid,
        signal_id=sid,
        strategy=strategy,
        token=int(token),
        exchange=exchange,
        symbol=symbol,
        underlying=underlying,
        strike=int(strike),
        option_type=otype,
        expiry=dt.date.fromisoformat(expiry) if expiry else None,
        product=product,
        direction=int(direction),
        lot_size=int(lot),
        status=status,
        quantity=int(qty),
        entry_timestamp=int(entry_ts),
        entry_premium=int(entry_premium),
        cost=int(cost),
        total_investment=int(invest),
        stop_loss_premium=int(sl),
        target_premium=int(tgt),
        current_premium=int(cur),
        unrealized_pnl=int(unreal),
        realized_pnl=int(realized),
        charges=int(charges),
        entry_qty=int(entry_qty),
        exit_qty=int(exit_qty),
        high_water=int(high_water),
        exit_timestamp=exit_ts,
        exit_premium=exit_premium,
        exit_reason=exit_reason or "",
        paper_trade=bool(paper),
        updated_ns=int(updated),
        metadata=json.loads(meta),
    )


# --- reads for the CLI and the API ----------------------------------------------------------------


def query(path: str, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a read-only query as dicts (the database must exist)."""
    if not os.path.exists(path):
        return []
    con = connect(path, readonly=True)
    try:
        cur = con.execute(sql, args)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise
    finally:
        con.close()


def read_heartbeat(path: str) -> dict[str, Any] | None:
    """The running node's last heartbeat ({pid, mode, wall_ns}), if any."""
    if not os.path.exists(path):
        return None
    con = connect(path, readonly=True)
    try:
        raw = get_meta(con, HEARTBEAT_KEY)
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()
    return json.loads(raw) if raw else None


def add_order_request(
    path: str,
    request_id: str,
    symbol: str,
    side: str,
    quantity: int,
    limit_price: int = 0,
    exchange: str = "",
    trigger_price: int = 0,
    basket: str = "",
) -> None:
    """Queue a manual order (or, with ``basket``, a basket as JSON) for the running node."""
    con = connect(path, synchronous="FULL")
    try:
        con.execute(
            "INSERT INTO order_requests (request_id, created_at, symbol, exchange, side, "
            "quantity, limit_price, trigger_price, basket) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                request_id,
                time.time_ns(),
                symbol,
                exchange,
                side,
                quantity,
                limit_price,
                trigger_price,
                basket,
            ),
        )
    finally:
        con.close()


def pending_requests(con: sqlite3.Connection) -> list[dict[str, Any]]:
    cur = con.execute(
        "SELECT id, request_id, created_at, symbol, exchange, side, quantity, "
        "limit_price, trigger_price, basket FROM order_requests WHERE status='PENDING' "
        "ORDER BY id"
    )
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def finish_request(
    con: sqlite3.Connection, row_id: int, status: str, rule: str, result: str, order_ids: list[str]
) -> None:
    con.execute(
        "UPDATE order_requests SET status=?, rule=?, result=?, order_ids=?, "
        "processed_at=? WHERE id=?",
        (status, rule, result, json.dumps(order_ids), time.time_ns(), row_id),
    )
