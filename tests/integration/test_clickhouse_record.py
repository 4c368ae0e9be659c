"""ClickHouse as the system of record, against chdb (ClickHouse in-process; no mocks): the
trading record a run publishes (signals, orders, positions, chain snapshots, the day's row)
lands in its tables with the newest state winning, indengine's values are in ClickHouse before
their candles are acknowledged, and the API's history reads ClickHouse first, then Redis.

chdb holds one data directory per process, so every test closes what it opens."""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("chdb")

from redis_server import redis_server  # noqa: F401 - fixtures
from test_redis_bridge import (
    caught_up,
    cfg_for,
    make_candles,
    publish,
    reference,
    run_until,
)

from mandi.bus.memory import MessageBus
from mandi.config import load_config
from mandi.core.clock import TestClock
from mandi.model.instruments import InstrumentMaster
from mandi.model.market import Candle, ChainRow, ChainSnapshot, OptionQuote
from mandi.model.orders import (
    OrderAccepted,
    OrderFilled,
    OrderRecord,
    OrderSubmitted,
)
from mandi.model.trading import (
    DailyRow,
    PositionClosed,
    PositionOpened,
    PositionRecord,
    PositionUpdated,
    SignalGenerated,
)
from mandi.services.context import NodeContext, NodeStats
from mandi.services.distributed.indengine import IndEngineService
from mandi.services.record import (
    ClickHouseHistory,
    ClickHouseRecordLayer,
    LayeredHistory,
)
from mandi.stores.clickhouse import ClickHouseStore
from mandi.stores.sqlite import BatchWriter

T0 = 1_776_052_500 * 10**9  # 2026-04-13 09:15 IST
S = 10**9


def _order(status: str, updated: int, **kw) -> OrderRecord:
    base = dict(
        client_order_id="o-1", parent_id="", token=256265, exchange="NSE", symbol="NIFTY",
        side="BUY", quantity=75, order_type="MARKET", limit_price=0, product="MIS",
        intent="ENTRY", strategy="ema_cross", signal_id="s-1", position_id="p-1", slice_no=1,
        slice_count=1, segment="NFO", tag="t", status=status, filled_qty=0, fill_value=0,
        fill_ids=(), broker_order_id="", reason="", charges=0, created_ns=T0 + S,
        updated_ns=updated,
    )  # fmt: skip
    return OrderRecord(**{**base, **kw})


def _position(status: str, updated: int, **kw) -> PositionRecord:
    base = dict(
        position_id="p-1", signal_id="s-1", strategy="ema_cross", token=256265, exchange="NSE",
        symbol="NIFTY", underlying="NIFTY", strike=0, option_type="", expiry=None,
        product="MIS", direction=1, lot_size=75, status=status, quantity=75,
        entry_timestamp=T0 + 2 * S, entry_premium=2_400_000, cost=180_000_000,
        total_investment=180_000_000, stop_loss_premium=2_350_000, target_premium=2_500_000,
        current_premium=2_400_000, unrealized_pnl=0, realized_pnl=0, charges=4_000,
        entry_qty=75, exit_qty=0, high_water=2_400_000, updated_ns=updated,
    )  # fmt: skip
    return PositionRecord(**{**base, **kw})


class _Kernel:
    """The two things the record reads of the trading kernel: its clock and its day's row."""

    def __init__(self, clock: TestClock) -> None:
        self.clock = clock
        self.day = DailyRow("2026-04-13")
        self.perf = SimpleNamespace(row=lambda d: self.day)


def _events(bus: MessageBus, clock: TestClock, kernel: _Kernel, record: ClickHouseRecordLayer):
    sig = SignalGenerated(
        "s-1", T0 + S, "ema_cross", 256265, "NSE", "NIFTY", 60, T0, "BUY", 2_400_000,
        confidence=0.8, target=2_500_000, stop_loss=2_350_000, metadata={"fast": 9},
    )  # fmt: skip
    bus.publish("signal:generated", sig)
    bus.publish("order:submitted", OrderSubmitted(T0 + S, _order("SUBMITTED", T0 + S)))
    bus.publish("order:accepted", OrderAccepted(T0 + S, _order("ACKED", T0 + S)))  # same ns
    bus.publish(
        "order:filled",
        OrderFilled(T0 + 2 * S, "f-1", "o-1", 256265, "NSE", "NIFTY", "BUY", 75, 2_400_000, 75,
                    75, 4_000, "ENTRY", "ema_cross", "p-1", "s-1"),
    )  # fmt: skip
    bus.publish("position:opened", PositionOpened(T0 + 2 * S, _position("OPEN", T0 + 2 * S)))
    record.after_batch()
    clock.set(T0 + 3 * S)
    bus.publish(
        "position:updated",
        PositionUpdated(T0 + 3 * S, _position("OPEN", T0 + 3 * S, current_premium=2_450_000,
                                              unrealized_pnl=3_750_000)),
    )  # fmt: skip
    snap = ChainSnapshot(
        "NIFTY", "NFO", dt.date(2026, 4, 28), T0 + 3 * S, 2_400_000,
        (ChainRow(2_400_000, OptionQuote(10_000, oi=500), OptionQuote(9_000, oi=700)),
         ChainRow(2_410_000, OptionQuote(6_000, oi=300), OptionQuote(14_000, oi=200))),
        lot_size=75, source="sim",
    )  # fmt: skip
    bus.publish("chain:NIFTY:2026-04-28", snap)
    record.after_batch()
    clock.set(T0 + 4 * S)
    closed = _position(
        "CLOSED", T0 + 4 * S, exit_timestamp=T0 + 4 * S, exit_premium=2_500_000,
        exit_reason="target", realized_pnl=7_496_000, exit_qty=75, quantity=0,
    )  # fmt: skip
    bus.publish("position:closed", PositionClosed(T0 + 4 * S, closed, "target"))
    kernel.day = DailyRow("2026-04-13", 1, 1, 0, 7_496_000, 0, 7_492_000, 8_000, 0, 7_492_000)
    record.after_batch()


def test_the_trading_record_lands_in_clickhouse_with_the_newest_state(tmp_path):
    url = f"chdb://{tmp_path}/ch"
    cfg = load_config(env={}, overrides={"store.clickhouse_url": url})
    clock = TestClock(T0)
    bus = MessageBus(clock)
    kernel = _Kernel(clock)
    trading = SimpleNamespace(name="trading", kernel=kernel)
    layers: list[Any] = [trading]
    ctx = NodeContext(
        cfg, clock, bus, InstrumentMaster(), BatchWriter(str(tmp_path / "m.db")), NodeStats(),
        layers=layers,
    )  # fmt: skip
    record = ClickHouseRecordLayer(cfg)
    record.attach(ctx)
    layers.append(record)
    _events(bus, clock, kernel, record)
    _events(bus, clock, kernel, record)  # a restart re-emitting everything: nothing twice
    record.close()
    assert record.writer is not None and record.writer.stats.errors == 0
    assert record.writer.stats.rows["positions"] == 6  # every change a row; FINAL: the newest

    s = ClickHouseStore.open(url, create=False)
    try:
        (sig,) = s.rows("SELECT signal_id, symbol, strategy, action, price, confidence, "
                        "metadata FROM mandi.trading_signals FINAL")  # fmt: skip
        assert sig[:6] == ("s-1", "NIFTY", "ema_cross", "BUY", 2_400_000, 0.8)
        assert '"fast":9' in sig[6] and '"bucket":' in sig[6]
        (order,) = s.rows("SELECT status, filled_qty, fill_value, charges FROM mandi.orders FINAL")
        assert order == ("FILLED", 75, 75 * 2_400_000, 4_000)
        (pos,) = s.rows(
            "SELECT status, exit_premium, exit_reason, realized_pnl, current_premium "
            "FROM mandi.positions FINAL"
        )
        assert pos == ("CLOSED", 2_500_000, "target", 7_496_000, 2_400_000)
        (day,) = s.rows(
            "SELECT date, total_trades, winning_trades, net_pnl, charges FROM "
            "mandi.daily_performance FINAL"
        )
        assert day == ("2026-04-13", 1, 1, 7_492_000, 8_000)
        chain = s.rows(
            "SELECT strike, option_type, ltp, oi FROM mandi.options_data FINAL ORDER BY strike, "
            "option_type"
        )
        assert chain == [
            (2_400_000, "CE", 10_000, 500),
            (2_400_000, "PE", 9_000, 700),
            (2_410_000, "CE", 6_000, 300),
            (2_410_000, "PE", 14_000, 200),
        ]
    finally:
        s.close()


def test_indengine_puts_values_in_clickhouse_before_acknowledging(redis_server, tmp_path):  # noqa: F811
    r = redis_server.client()
    cs = make_candles([1, 2, 3], 40)
    asyncio.run(publish(redis_server.url, cs))
    url = f"chdb://{tmp_path}/ch"
    cfg = cfg_for(redis_server.url, tmp_path, **{"store.clickhouse_url": url})
    svc = IndEngineService(cfg, port=0)
    asyncio.run(
        run_until(
            svc,
            lambda: (
                caught_up(svc, cs)
                and sum(
                    r.xpending(f"candle:60s:NSE:{t}", "indengine")["pending"] for t in (1, 2, 3)
                )
                == 0
            ),
        )
    )
    s = ClickHouseStore.open(url, create=False)
    try:
        got = s.load_indicator_values(60)
    finally:
        s.close()
    assert sorted(got, key=lambda v: (v.bucket, v.token, v.name)) == sorted(
        reference(cs), key=lambda v: (v.bucket, v.token, v.name)
    )


class _Redis:
    """A stand-in for the Redis streams' history (what the gateway reads after ClickHouse)."""

    def candles(self, *args):
        return ["from-redis"]

    def indicator_names(self, *args):
        return ["RSI_14"]

    def indicator_values(self, *args):
        return [(1, 2.0)]

    def close(self):
        pass


def test_the_api_history_reads_clickhouse_first_then_redis(tmp_path):
    url = f"chdb://{tmp_path}/ch"
    s = ClickHouseStore.open(url)
    c = [Candle(7, "NSE", 60, T0 + i * 60 * S, 100, 110, 90, 105, 10, 0, 3) for i in range(5)]
    s.insert_candles(c)
    s.insert_rows("indicator_values", [(7, "NSE", 60, T0 + i * 60 * S, "SMA_9", i + 0.5)
                                       for i in range(5)])  # fmt: skip
    s.close()
    h = LayeredHistory(ClickHouseHistory(url), _Redis())
    try:
        assert h.candles(7, "NSE", 60, T0 + 3 * 60 * S, 2) == c[1:3]  # newest 2 before the end
        assert h.candles(8, "NSE", 60, 1 << 62, 10) == ["from-redis"]  # not in ClickHouse
        assert h.indicator_names(7, "NSE", 60) == ["SMA_9"]
        assert h.indicator_names(8, "NSE", 60) == ["RSI_14"]
        assert h.indicator_values(7, "NSE", 60, "SMA_9", 1 << 62, 2) == [
            (T0 + 3 * 60 * S, 3.5),
            (T0 + 4 * 60 * S, 4.5),
        ]
    finally:
        h.close()
