"""Layers plug into a node through a narrow context (issue 12.2): a layer runs on a
``NodeContext`` built from plain parts, no node needed; feeds and stores never import the
services that host them (the import loop feeds/ws ↔ services/node ↔ services/status ↔
stores/clickhouse is gone); storage failures reach layers as system events."""

import ast
import pathlib
import sqlite3
import time

import mandi
from mandi.bus.memory import MessageBus
from mandi.config import load_config
from mandi.core.calendar import parse_ist
from mandi.core.clock import TestClock
from mandi.model.instruments import Index, InstrumentMaster
from mandi.model.market import Candle
from mandi.services.context import NodeContext, NodeStats
from mandi.services.indicators import IndicatorLayer
from mandi.services.storage import StorageWatch
from mandi.stores.sqlite import BatchWriter, connect

SRC = pathlib.Path(mandi.__file__).parent
T0 = parse_ist("2026-04-13 09:15:00")
NIFTY = Index(256265, "NSE", "NIFTY 50", "NIFTY")
# the modules that build a node; everybody else sees a NodeContext
NODE_BUILDERS = {"cli/__init__.py", "web/embed.py", "services/distributed/mdengine.py"}


def imported(path):
    """Every mandi module ``path`` imports: top level, lazy or under TYPE_CHECKING."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("mandi.")}


def test_feeds_and_stores_import_no_service():
    for package in ("feeds", "stores"):
        for path in sorted((SRC / package).rglob("*.py")):
            bad = {m for m in imported(path) if m.startswith("mandi.services")}
            assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_only_the_node_builders_import_the_node():
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        if rel == "services/node.py" or rel in NODE_BUILDERS:
            continue
        if "services.node" in path.read_text():  # parse only the suspects (quick)
            assert "mandi.services.node" not in imported(path), f"{rel} reaches into the node"


def make_context(db, clock):
    cfg = load_config(
        env={},
        overrides={"store.db": db, "indicators.specs": ["SMA_2"], "indicators.timeframes": [60]},
    )
    bus = MessageBus(clock)
    writer = BatchWriter(db, flush_interval=0.01).start()
    ctx = NodeContext(cfg, clock, bus, InstrumentMaster(), writer, NodeStats())
    return cfg, ctx, writer


def test_a_layer_runs_on_a_context_without_a_node(tmp_path):
    db = str(tmp_path / "ctx.db")
    clock = TestClock(T0)
    cfg, ctx, writer = make_context(db, clock)
    assert ctx.add_instruments([NIFTY, NIFTY]) == 1 and NIFTY.token in ctx.known_tokens
    layer = IndicatorLayer(cfg.indicators)
    layer.attach(ctx)
    events = []
    ctx.bus.subscribe("system:>", lambda topic, e: events.append((topic, e)), name="test")
    ctx.event("hello", "a layer may raise events", "WARNING", where="test")
    for i, close in enumerate((100, 110, 120)):
        c = Candle(
            NIFTY.token, "NSE", 60, T0 + i * 60 * 10**9, close, close, close, close, 1, 0, 1, True
        )
        ctx.bus.publish(f"candle:60s:NSE:{NIFTY.token}", c)
        layer.after_batch()
    layer.close()
    writer.stop()
    values = (
        connect(db)
        .execute("SELECT bucket, name, value FROM indicator_values ORDER BY bucket")
        .fetchall()
    )
    assert [(b - T0, n, v) for b, n, v in values] == [
        (60 * 10**9, "SMA_2", 105.0),
        (120 * 10**9, "SMA_2", 115.0),
    ]
    ((topic, e),) = events
    assert topic == "system:hello" and e.source == "node" and e.data == {"where": "test"}


def test_storage_failure_and_recovery_become_system_events(tmp_path):
    db = str(tmp_path / "watch.db")
    clock = TestClock(T0)
    bus = MessageBus(clock)
    writer = BatchWriter(db, flush_interval=0.01, busy_timeout_ms=50).start()
    cfg = load_config(env={}, overrides={"store.db": db})
    ctx = NodeContext(cfg, clock, bus, InstrumentMaster(), writer, NodeStats())
    seen = []
    bus.subscribe("system:>", lambda topic, e: seen.append((e.kind, e.severity)), name="test")
    watch = StorageWatch(writer, ctx.event, "SQLite test")
    blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    writer.put("ticks", [(T0, 1, 100, 0, 0, 0, 0)])
    deadline = time.monotonic() + 20
    while not writer.stats.failing:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    watch.check()
    watch.check()  # said once per failure, not on every check
    assert seen == [("storage_failed", "CRITICAL")]
    blocker.execute("ROLLBACK")
    assert writer.wait_idle(20)
    watch.check()
    assert seen == [("storage_failed", "CRITICAL"), ("storage_recovered", "WARNING")]
    writer.stop()
    assert writer.not_stored() == 0


def test_the_trading_layer_blocks_entries_while_storage_fails(tmp_path):
    from mandi.services.trading import TradingLayer

    db = str(tmp_path / "trading.db")
    cfg, ctx, writer = make_context(db, TestClock(T0))
    layer = TradingLayer(cfg)
    layer.attach(ctx)  # no feed: exchange time from the data, as in a Redis service
    try:
        risk = layer.kernel.risk
        ctx.event("storage_failed", "SQLite x.db cannot write: disk I/O error", "CRITICAL")
        assert risk.entry_block() == (
            "storage_failed",
            "storage failed: SQLite x.db cannot write: disk I/O error",
        )
        assert not risk.halted  # a block, not the latch: it lifts when storage writes again
        ctx.event("storage_recovered", "SQLite x.db writes again", "WARNING")
        assert risk.entry_block() == ("", "")
    finally:
        layer.close()
        writer.stop()
