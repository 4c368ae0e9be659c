"""Backtest reports (I/O shell): a self-contained HTML page, a PNG equity curve, the JSON file,
and the store's ``backtest_runs`` / ``backtest_trades`` tables.

The HTML embeds plotly.js from the installed ``plotly`` Python package (nothing is fetched when
the page is opened, and no JavaScript lives in this repository): interactive equity, drawdown and
price-with-trades charts, the statistics and the trade list. The PNG is drawn with matplotlib.
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mandi.backtest.bars import BacktestError
from mandi.backtest.result import BacktestResult, iso
from mandi.backtest.stats import drawdown
from mandi.core.calendar import IST_OFFSET_NS
from mandi.core.ids import stable_id

MAX_POINTS = 20_000  # per chart line; longer series are thinned (every k-th point + extremes)


def _thin(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.unique(np.r_[np.linspace(0, n - 1, limit).astype(np.int64), n - 1])


def _naive_ist(ns: np.ndarray) -> np.ndarray:
    return (np.asarray(ns, dtype=np.int64) + IST_OFFSET_NS).astype("datetime64[ns]")


def write_json(result: BacktestResult, path: str | os.PathLike[str]) -> None:
    Path(path).write_bytes(result.to_json())


def write_html(result: BacktestResult, path: str | os.PathLike[str], title: str = "") -> None:
    """The interactive report (module docstring)."""
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        raise BacktestError("--report needs plotly (pip install 'mandi[backtest]')") from None
    s = result.stats
    k = _thin(len(result.times))
    t = _naive_ist(result.times[k])
    eq = result.equity[k] / 100
    dd, _ = drawdown(result.equity)
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        row_heights=[0.45, 0.2, 0.35],
        subplot_titles=("Equity (₹)", "Drawdown", "Price and trades"),
    )
    fig.add_trace(go.Scattergl(x=t, y=eq, name="equity", line={"width": 1.5}), row=1, col=1)
    fig.add_trace(
        go.Scattergl(
            x=t,
            y=dd[k] * 100,
            name="drawdown %",
            fill="tozeroy",
            line={"width": 1, "color": "#c0392b"},
        ),
        row=2,
        col=1,
    )
    for sym, (bucket, o, h, lo, c) in result.prices.items():
        kp = _thin(len(bucket))
        tp = _naive_ist(bucket[kp])
        if len(bucket) <= 5_000:
            fig.add_trace(
                go.Candlestick(
                    x=tp, open=o / 100, high=h / 100, low=lo / 100, close=c / 100, name=sym
                ),
                row=3,
                col=1,
            )
        else:
            fig.add_trace(
                go.Scattergl(x=tp, y=c[kp] / 100, name=f"{sym} close", line={"width": 1}),
                row=3,
                col=1,
            )
    trades = result.trades[:5_000]
    for side, color, symbol in (
        ("BUY", "#27ae60", "triangle-up"),
        ("SELL", "#c0392b", "triangle-down"),
    ):
        ts = [tr for tr in trades if tr.side == side]
        if not ts:
            continue
        fig.add_trace(
            go.Scattergl(
                x=_naive_ist(np.array([tr.entry_time for tr in ts])),
                y=[tr.entry_price / 100 for tr in ts],
                mode="markers",
                marker={"symbol": symbol, "size": 8, "color": color},
                name=f"{'long' if side == 'BUY' else 'short'} entry",
                text=[f"{tr.symbol} {tr.side} {tr.quantity}" for tr in ts],
            ),
            row=3,
            col=1,
        )
    if trades:
        fig.add_trace(
            go.Scattergl(
                x=_naive_ist(np.array([tr.exit_time for tr in trades])),
                y=[tr.exit_price / 100 for tr in trades],
                mode="markers",
                marker={"symbol": "x", "size": 7, "color": "#2c3e50"},
                name="exit",
                text=[f"{tr.exit_reason}: P&L ₹{tr.pnl / 100:,.2f}" for tr in trades],
            ),
            row=3,
            col=1,
        )
    fig.update_layout(
        height=900, hovermode="x unified", xaxis3_rangeslider_visible=False, margin={"t": 40}
    )
    chart = fig.to_html(full_html=False, include_plotlyjs=True)
    head = title or f"{s.get('strategy', 'backtest')} on {', '.join(s.get('symbols', []))}"
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_fmt(val))}</td></tr>"
        for key, val in s.items()
    )
    trows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(x))}</td>"
            for x in (
                iso(tr.entry_time)[:19],
                iso(tr.exit_time)[:19],
                tr.symbol,
                tr.side,
                tr.quantity,
                f"{tr.entry_price / 100:,.2f}",
                f"{tr.exit_price / 100:,.2f}",
                f"{tr.charges / 100:,.2f}",
                f"{tr.pnl / 100:,.2f}",
                tr.exit_reason,
            )
        )
        + "</tr>"
        for tr in result.trades[:1000]
    )
    more = (
        f"<p>… {len(result.trades) - 1000} more trades in the JSON output.</p>"
        if len(result.trades) > 1000
        else ""
    )
    srows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(x))}</td>"
            for x in (
                st["structure"],
                st["entry_time"][:19],
                st["exit_time"][:19],
                "; ".join(st["legs"]),
                f"{st['net_premium']:,.2f}",
                f"{st['charges']:,.2f}",
                f"{st['pnl']:,.2f}",
                st["stopped_legs"],
            )
        )
        + "</tr>"
        for st in result.structures[:1000]
    )
    structures_html = (
        "<h2>Structures</h2><table><tr><th>structure</th><th>entry</th><th>exit</th>"
        "<th>legs</th><th>net premium ₹</th><th>charges ₹</th><th>P&amp;L ₹</th>"
        f"<th>legs stopped</th></tr>{srows}</table>"
        if srows
        else ""
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    notes_html = f"<ul>{notes}</ul>" if notes else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(head)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ddd;padding:3px 8px;
text-align:right}}th{{background:#f5f5f5;text-align:left}}.grid{{display:flex;gap:2em;
flex-wrap:wrap;align-items:flex-start}}</style></head><body>
<h1>{html.escape(head)}</h1><p>{html.escape(result.summary())}</p>
{chart}
<div class="grid"><div><h2>Statistics</h2><table>{rows}</table>{notes_html}
</div><div>{structures_html}<h2>Trades</h2><table><tr><th>entry</th><th>exit</th><th>symbol</th><th>side</th>
<th>qty</th><th>entry ₹</th><th>exit ₹</th><th>charges ₹</th><th>P&amp;L ₹</th><th>exit reason</th>
</tr>{trows}</table>{more}</div></div>
</body></html>"""
    Path(path).write_text(page, encoding="utf-8")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.6g}" if abs(v) < 1 else f"{v:,.2f}"
    if isinstance(v, dict | list):
        return json.dumps(v)
    return "–" if v is None else str(v)


def write_png(result: BacktestResult, path: str | os.PathLike[str]) -> None:
    """A PNG of the equity curve with the drawdown below it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BacktestError("--png needs matplotlib (pip install 'mandi[backtest]')") from None
    k = _thin(len(result.times), 50_000)
    t = _naive_ist(result.times[k])
    dd, _ = drawdown(result.equity)
    fig, (a1, a2) = plt.subplots(
        2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    a1.plot(t, result.equity[k] / 100, lw=1.2, color="#1f77b4")
    a1.set_ylabel("equity (₹)")
    s = result.stats
    a1.set_title(
        f"{s.get('strategy', '')} {', '.join(s.get('symbols', []))}: {result.summary()}",
        fontsize=9,
    )
    a1.grid(alpha=0.3)
    a2.fill_between(t, dd[k] * 100, 0, color="#c0392b", alpha=0.5, lw=0)
    a2.set_ylabel("drawdown %")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def run_id(result: BacktestResult) -> str:
    """A deterministic id: the same run (same inputs, same results) is stored once."""
    return stable_id("backtest", result.to_json())


def save_to_store(result: BacktestResult, db: str | os.PathLike[str]) -> str:
    """Append the run to ``backtest_runs`` / ``backtest_trades`` (creating or migrating the
    database); returns its id."""
    from mandi.stores.backtests import save_run

    rid = run_id(result)
    s = result.stats
    k = _thin(len(result.times), 2_000)
    equity = json.dumps(
        [
            [int(a), int(b)]
            for a, b in zip(result.times[k].tolist(), result.equity[k].tolist(), strict=True)
        ]
    )
    run = (
        rid,
        time.time_ns(),
        str(s.get("strategy", "")),
        ",".join(s.get("symbols", [])),
        int(s.get("timeframe", 0)),
        str(s.get("engine", "")),
        json.dumps(s.get("params", {}), sort_keys=True),
        int(result.times[0]) if len(result.times) else None,
        int(result.times[-1]) if len(result.times) else None,
        round(s["initial_value"] * 100),
        round(s["final_value"] * 100),
        s.get("total_return"),
        s.get("sharpe"),
        s.get("max_drawdown"),
        int(s["trades"]),
        json.dumps(s, sort_keys=True, default=str),
        equity,
    )
    trades = [
        (
            rid,
            n,
            t.symbol,
            t.strategy,
            t.side,
            t.quantity,
            t.entry_time,
            t.exit_time,
            t.entry_price,
            t.exit_price,
            t.charges,
            t.pnl,
            t.exit_reason,
        )
        for n, t in enumerate(result.trades)
    ]
    save_run(db, run, trades)
    return rid
