"""Alerts: which events become one, and the outbox's batching and rate limit (a fake clock)."""

from __future__ import annotations

from mandi.model.events import SystemEvent
from mandi.model.orders import Intent, OrderFilled, Side
from mandi.model.trading import TradingHalted, TradingResumed
from mandi.notify.alerts import Alert, AlertRules, Outbox, alert_for, render_text
from mandi.notify.webhook import payload


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def fill(qty: int = 65) -> OrderFilled:
    return OrderFilled(
        1,
        "f1",
        "c1",
        7,
        "NSE",
        "NIFTY2641324200CE",
        Side.BUY,
        qty,
        12_050,
        qty,
        qty,
        2_310,
        Intent.ENTRY,
        "ema_cross",
    )


def test_events_become_alerts_by_the_rules():
    rules = AlertRules(fills=True, large_pnl=200_000, errors=True)
    halt = alert_for(
        "risk:halted", TradingHalted(1, "daily loss beyond ₹25,000", "circuit_breaker"), rules
    )
    assert halt is not None and halt.kind == "halted" and halt.urgent
    assert "CIRCUIT BREAKER" in halt.text and "daily loss" in halt.text
    assert (
        alert_for("risk:resumed", TradingResumed(2, "manual reset", "cli"), rules).kind == "resumed"
    )
    f = alert_for("order:filled", fill(), rules)
    assert f is not None and "FILL BUY 65 NIFTY2641324200CE @ ₹120.50" in f.text
    assert alert_for("order:filled", fill(), AlertRules(fills=False)) is None
    err = SystemEvent(3, "strategy_error", "strategy rsi raised in on_candle", "ERROR", "s", {})
    assert alert_for("system:strategy_error", err, rules).kind == "error"
    assert alert_for("system:strategy_error", err, AlertRules(errors=False)) is None
    feed = SystemEvent(4, "feed_unhealthy", "new entries blocked: silent 12 s", "WARNING", "n", {})
    assert alert_for("system:feed_unhealthy", feed, rules).kind == "feed"
    quiet = SystemEvent(5, "started", "mandi run started", "INFO", "node", {})
    assert alert_for("system:started", quiet, rules) is None


def test_the_outbox_batches_and_keeps_the_rate():
    clock = Clock()
    box = Outbox(batch_s=2.0, max_per_minute=2, max_queued=5, clock=clock)
    assert box.wait_s() == float("inf")
    info = Alert("fill", "INFO", "a")
    box.put(info)
    assert box.take() == ([], 0) and 1.9 < box.wait_s() <= 2.0  # waits for company
    clock.t += 1
    box.put(Alert("fill", "INFO", "b"))
    clock.t += 1
    batch, dropped = box.take()
    assert [a.text for a in batch] == ["a", "b"] and dropped == 0
    box.sent()
    box.put(Alert("halted", "CRITICAL", "stop"))  # urgent: no batching delay
    assert box.wait_s() == 0
    box.take()
    box.sent()
    box.put(Alert("halted", "CRITICAL", "again"))  # 2 messages this minute: it waits
    assert 57 < box.wait_s() <= 60
    for i in range(6):
        box.put(Alert("fill", "INFO", f"x{i}"))  # bounded: the oldest routine ones go, counted
    clock.t += 60
    batch, dropped = box.take()
    assert dropped == 2 and [a.text for a in batch] == ["again", "x2", "x3", "x4", "x5"]
    box.put_back(batch, dropped)  # a failed delivery: nothing lost
    again, dropped2 = box.take()
    assert [a.text for a in again] == [a.text for a in batch] and dropped2 == 2


def test_messages_stay_below_telegrams_limit_and_the_webhook_speaks_slack_and_discord():
    batch = [Alert("fill", "INFO", "y" * 300) for _ in range(40)]
    texts = render_text(batch, dropped=3)
    assert len(texts) > 1 and all(len(t) <= 4000 for t in texts)
    assert "3 earlier alert(s) dropped" in texts[-1]
    body = payload(batch[:2])
    assert body["text"] and body["content"] == body["text"]  # Slack and Discord
    assert len(payload(batch)["content"]) <= 2000 and len(body["alerts"]) == 2


def test_the_daily_summary_goes_out_once_when_the_session_ends():
    import datetime as dt
    from types import SimpleNamespace

    from mandi.config import load_config
    from mandi.core.calendar import ist_ns
    from mandi.services.notify import NotifyLayer

    cfg = load_config(overrides={"notify.webhook.url": "http://127.0.0.1:9/hook"}, env={})
    layer = NotifyLayer(cfg)
    pnl = {
        "day_pnl": -1234.5,
        "realized_pnl": -1000.0,
        "unrealized_pnl": -234.5,
        "fills": 4,
        "orders_sent": 4,
        "open_positions": 1,
        "charges": 80.25,
        "halted": False,
    }
    perf = {
        "date": "2026-04-13",
        "total_trades": 3,
        "winning_trades": 1,
        "losing_trades": 2,
        "max_drawdown": 2000.0,
    }
    layer.api = SimpleNamespace(pnl=lambda: pnl, daily_performance=lambda n: [perf])
    stats = SimpleNamespace(exchange_time_ns=ist_ns(dt.date(2026, 4, 13), dt.time(15, 0)))
    node = SimpleNamespace(stats=stats, feed=SimpleNamespace(wall_clock=False), clock=None)
    layer._ctx = node  # type: ignore[assignment]
    at = dt.time(15, 30)
    assert not layer.summary_due(at)  # 15:00: not yet
    # the simulator's last tick is at 15:29:59.75: the session is over, the summary goes out
    stats.exchange_time_ns = ist_ns(dt.date(2026, 4, 13), dt.time(15, 29, 59, 750_000))
    assert layer.summary_due(at) and not layer.summary_due(at)  # once
    alert = layer.outboxes[0].queue[-1]
    assert alert.kind == "summary" and "Daily summary 2026-04-13" in alert.text
    assert "-₹1,234.50" in alert.text and "3 closed trades (1 won, 2 lost)" in alert.text
