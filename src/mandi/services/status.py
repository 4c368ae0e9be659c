"""The live terminal status of ``mandi run``, refreshed every ``run.status_interval`` seconds:
ticks/s, candles written, queue depths, drops, rejects and the last index prices. A rich table on
a terminal, one log line otherwise."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from mandi.core.calendar import ist_datetime
from mandi.core.money import format_inr
from mandi.model.instruments import Index

if TYPE_CHECKING:
    from mandi.services.context import NodeContext

log = logging.getLogger("mandi.status")


def status_snapshot(ctx: NodeContext) -> dict[str, Any]:
    """Everything the status shows, as plain data (also served by the API)."""
    s, w = ctx.stats, ctx.writer.stats
    indices = {i.symbol: s.last_price.get(i.token) for i in ctx.master if isinstance(i, Index)}
    by_feed = ctx.rejections()  # a gateway validates no ticks: {}
    return {
        "exchange_time": ist_datetime(s.exchange_time_ns).strftime("%Y-%m-%d %H:%M:%S")
        if s.exchange_time_ns
        else "-",
        "ticks_in": s.ticks_in,
        "ticks_per_s": s.ticks_per_s,
        "candles_confirmed": dict(sorted(s.candles_confirmed.items())),
        "rows_written": dict(w.rows),
        "tick_queue": ctx.queue_depth(),
        "writer_pending_rows": ctx.writer.pending_rows,
        "dropped_queue_ticks": s.queue_dropped_ticks,
        "dropped_writer_rows": sum(w.dropped.values()),
        "rejected_ticks": dict(sorted(ctx.rejected_ticks().items())),  # per reason, all feeds
        "rejected_by_feed": by_feed,  # per feed, per reason
        "handler_errors": ctx.bus.handler_errors,
        "writer_errors": w.errors,
        "writer_failing": w.failing,
        "writer_last_error": w.last_error if w.failing else "",
        "quarantined_rows": sum(w.quarantined.values()),
        "last_flush_ms": w.last_flush_ms,
        "indices": {k: v for k, v in indices.items() if v is not None},
        "trading": _trading_status(ctx),
        "feed_health": _feed_health(ctx),
    }


def _feed_health(ctx: NodeContext) -> dict[str, Any] | None:
    """A broker feed's health (connections, reconnects, data age, session); None otherwise."""
    status = getattr(ctx.feed, "status", None)
    return status() if callable(status) else None


def _trading_status(ctx: NodeContext) -> dict[str, Any] | None:
    """The trading layer's signals, positions, P&L and risk denials (None without one)."""
    status = getattr(ctx.layer("trading"), "status", None)
    return status() if callable(status) else None


def render(snap: dict[str, Any]) -> Table:
    t = Table(
        title=f"mandi · exchange time {snap['exchange_time']} IST", show_header=False, expand=False
    )
    t.add_column("what", style="bold")
    t.add_column("value")
    t.add_row("ticks", f"{snap['ticks_in']:,}  ({snap['ticks_per_s']:,.0f}/s)")
    t.add_row(
        "candles confirmed",
        "  ".join(f"{tf}s: {n:,}" for tf, n in snap["candles_confirmed"].items()) or "-",
    )
    t.add_row(
        "rows written", "  ".join(f"{k}: {v:,}" for k, v in snap["rows_written"].items()) or "-"
    )
    t.add_row(
        "queues",
        f"ticks {snap['tick_queue']}  writer {snap['writer_pending_rows']} rows"
        f"  (last flush {snap['last_flush_ms']:.1f} ms)",
    )
    drops = snap["dropped_queue_ticks"] + snap["dropped_writer_rows"]
    t.add_row(
        "drops",
        f"[{'red' if drops else 'green'}]{drops}[/] "
        f"(queue {snap['dropped_queue_ticks']}, writer {snap['dropped_writer_rows']})",
    )
    by_feed = snap.get("rejected_by_feed", {})
    if not by_feed:
        t.add_row("rejected ticks", "[green]0[/]")
    for feed, reasons in by_feed.items():
        t.add_row(f"rejected ticks ({feed})", f"[yellow]{_reasons(reasons)}[/]")
    if snap.get("writer_failing"):
        t.add_row("storage", f"[red bold]FAILING[/] ({snap['writer_last_error']})")
    if snap.get("quarantined_rows"):
        t.add_row("quarantined rows", f"[red]{snap['quarantined_rows']}[/] (table rejects)")
    if snap["handler_errors"] or snap["writer_errors"]:
        t.add_row(
            "errors", f"[red]handlers {snap['handler_errors']}, writer {snap['writer_errors']}[/]"
        )
    for sym, p in snap["indices"].items():
        t.add_row(sym, format_inr(p).replace("₹", "") if sym == "INDIA VIX" else format_inr(p))
    fh = snap.get("feed_health")
    if fh:
        t.add_row("broker feed", _feed_text(fh))
    tr = snap.get("trading")
    if tr:
        _render_trading(t, tr)
    return t


def _feed_text(fh: dict[str, Any]) -> str:
    age = "-" if fh["data_age_s"] is None else f"{fh['data_age_s']:.1f} s"
    return (
        f"{fh['connections_up']}/{fh['connections_expected']} up, {fh['subscribed']} instruments, "
        f"data age {age}, reconnects {fh['reconnects']}, bad frames {fh['malformed_frames']}, "
        f"session {fh['session']}"
    )


def _render_trading(t: Table, tr: dict[str, Any]) -> None:
    halted = f"  [red bold]HALTED[/] ({tr['halt_reason']})" if tr["halted"] else ""
    t.add_row("trading", f"{tr['mode']} mode, {tr['strategies']} strategies{halted}")
    t.add_row(
        "signals",
        f"{tr['signals']:,}  (duplicates {tr['signal_duplicates']})"
        + (f"  last: {tr['last_signal']}" if tr["last_signal"] else ""),
    )
    t.add_row(
        "orders",
        f"sent {tr['orders_sent']:,}  fills {tr['fills']:,}  queued "
        f"{tr['orders_queued']}"
        + (f"  logged-only {tr['logged_trades']}" if tr["logged_trades"] else ""),
    )
    pnl = tr["day_pnl"]
    t.add_row(
        "P&L today",
        f"[{'green' if pnl >= 0 else 'red'}]{format_inr(pnl)}[/]  (realized "
        f"{format_inr(tr['realized_pnl'])}, unrealized "
        f"{format_inr(tr['unrealized_pnl'])}, charges "
        f"{format_inr(tr['charges'])})",
    )
    ps = tr["open_positions"]
    t.add_row("open positions", str(len(ps)) if ps else "0")
    for p in ps:
        t.add_row(
            f"  {p['symbol']}",
            f"{p['quantity']:+,} @ {format_inr(p['entry'])} → "
            f"{format_inr(p['ltp'])}  P&L {format_inr(p['pnl'])}  "
            f"({p['strategy']})",
        )
    den = tr["denials"]
    t.add_row(
        "risk denials",
        (", ".join(f"{k} {v}" for k, v in sorted(den.items())) or "0")
        + (f"  last: {tr['last_denial'][:70]}" if tr["last_denial"] else ""),
    )
    if tr["strategy_errors"]:
        t.add_row(
            "strategy errors",
            "[red]" + ", ".join(f"{k} {v}" for k, v in tr["strategy_errors"].items()) + "[/]",
        )


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in reasons.items())


def one_line(snap: dict[str, Any]) -> str:
    idx = " ".join(f"{k}={v / 100:.2f}" for k, v in snap["indices"].items())
    rejected = str(sum(snap["rejected_ticks"].values()))
    if snap.get("rejected_by_feed"):  # which feed sent what
        rejected += (
            " ("
            + "; ".join(f"{feed}: {_reasons(r)}" for feed, r in snap["rejected_by_feed"].items())
            + ")"
        )
    return (
        f"{snap['exchange_time']} ticks={snap['ticks_in']} ({snap['ticks_per_s']:.0f}/s) "
        f"candles={sum(snap['candles_confirmed'].values())} queue={snap['tick_queue']} "
        f"writer={snap['writer_pending_rows']} drops="
        f"{snap['dropped_queue_ticks'] + snap['dropped_writer_rows']} "
        f"rejected={rejected}"
        f"{' STORAGE FAILING' if snap.get('writer_failing') else ''}"
        f"{' quarantined=' + str(snap['quarantined_rows']) if snap.get('quarantined_rows') else ''}"
        f" {idx}{_trading_line(snap)}"
        + (f" | feed: {_feed_text(snap['feed_health'])}" if snap.get("feed_health") else "")
    )


def _trading_line(snap: dict[str, Any]) -> str:
    tr = snap.get("trading")
    if not tr:
        return ""
    return (
        f" | {tr['mode']}{' HALTED' if tr['halted'] else ''} signals={tr['signals']} "
        f"orders={tr['orders_sent']} fills={tr['fills']} "
        f"positions={len(tr['open_positions'])} pnl={tr['day_pnl'] / 100:.2f} "
        f"denials={sum(tr['denials'].values())}"
    )


class StatusReporter:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self._live: Live | None = None
        if sys.stdout.isatty():
            self._live = Live(console=Console(), refresh_per_second=1, transient=False)
            self._live.start()

    def update(self) -> None:
        snap = status_snapshot(self.ctx)
        if self._live is not None:
            self._live.update(render(snap))
        else:
            log.info("%s", one_line(snap))

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
