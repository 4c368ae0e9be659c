"""The training report as one self-contained HTML page: windows and metrics per fold beside the
baselines, and plots (AUC per fold, cumulative out-of-sample P&L, feature importance) as inline
PNGs drawn with matplotlib."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import os
from typing import Any

MODELS = ("model", "majority", "momentum", "logistic", "shuffled")
METRICS = ("auc", "log_loss", "accuracy", "hit_rate", "confident", "trades", "pnl_inr")


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plots(report: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out = []
    folds = report["folds"]
    names = [m for m in MODELS if m == "model" or m in report["baselines"]]
    fig, ax = plt.subplots(figsize=(7, 3))
    width = 0.8 / len(names)
    x = np.arange(len(folds))
    for k, m in enumerate(names):
        rows = folds if m == "model" else report["baselines"][m]["folds"]
        vals = [r["auc"] if r["auc"] is not None else np.nan for r in rows]
        ax.bar(x + k * width, vals, width, label=report["model"] if m == "model" else m)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x + width * (len(names) - 1) / 2, [f"fold {r['fold']}" for r in folds])
    ax.set_ylabel("AUC (one-vs-rest)")
    ax.set_ylim(0.3, max(0.7, ax.get_ylim()[1]))
    ax.legend(fontsize=7, ncol=len(names))
    out.append(("Out-of-sample AUC per fold", _png(fig)))

    fig, ax = plt.subplots(figsize=(7, 3))
    for m in names:
        pts = report["curves"].get(m, [])
        if pts:
            ax.step(
                np.array(  # IST wall times
                    [dt.datetime.fromisoformat(t).replace(tzinfo=None) for t, _ in pts],
                    dtype="datetime64[s]",
                ),
                [v for _, v in pts],
                where="post",
                label=report["model"] if m == "model" else m,
                lw=1,
            )
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    fig.autofmt_xdate()
    ax.set_ylabel("cumulative P&L ₹ (net)")
    ax.legend(fontsize=7)
    out.append(("Cumulative out-of-sample P&L, net of charges", _png(fig)))

    imp = sorted(report["importance"].items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(imp) + 1))
    ax.barh([k for k, _ in imp], [v for _, v in imp])
    ax.set_xlabel("share of total gain (final model)")
    out.append(("Feature importance", _png(fig)))
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.2f}"
    return html.escape(str(v))


def write_html(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(report['name'])} — mandi train</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:24px;max-width:1100px}"
        "table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;"
        "padding:3px 7px;text-align:right}th{background:#f4f4f4}td:first-child,"
        "th:first-child{text-align:left}.muted{color:#666}</style></head><body>",
        f"<h1>{esc(report['name'])}</h1>",
        f"<p>{esc(report['model'])} · {esc(report['symbol'])} · {report['timeframe']} s bars · "
        f"horizon {report['horizon']} bars · threshold {report['threshold']:.6f} (log return) · "
        f"{report['rows']['used']:,} rows · trained {esc(report['created'])} in "
        f"{report['seconds']} s</p>",
        f"<p class='muted'>features ({len(report['features'])}): "
        f"{esc(', '.join(report['features']))} · feature code {esc(report['feature_hash'])}</p>",
        "<h2>Summary (out of sample)</h2><table><tr><th>model</th><th>AUC mean</th>"
        "<th>AUC pooled</th><th>log loss</th><th>accuracy</th><th>hit rate</th><th>trades</th>"
        "<th>P&amp;L ₹ net</th><th>charges ₹</th></tr>",
    ]
    for m, s in report["summary"].items():
        label = report["model"] if m == "model" else m
        parts.append(
            f"<tr><td>{esc(label)}</td>"
            + "".join(
                f"<td>{_fmt(s.get(k))}</td>"
                for k in (
                    "auc_mean",
                    "auc_pooled",
                    "log_loss_mean",
                    "accuracy_mean",
                    "hit_rate_mean",
                    "trades",
                    "pnl_inr",
                    "charges_inr",
                )
            )
            + "</tr>"
        )
    parts.append("</table><h2>Folds</h2><table><tr><th>fold</th><th>train</th><th>test</th>")
    parts += [f"<th>{esc(k)}</th>" for k in METRICS]
    parts.append("</tr>")
    for r in report["folds"]:
        parts.append(
            f"<tr><td>{r['fold']}</td><td>{esc(r['train_start'][:10])} → "
            f"{esc(r['train_end'][:10])} ({r['train_rows']:,})</td><td>"
            f"{esc(r['test_start'][:10])} → {esc(r['test_end'][:10])} ({r['test_rows']:,})</td>"
            + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in METRICS)
            + "</tr>"
        )
        for b, data in report["baselines"].items():
            br = next(x for x in data["folds"] if x["fold"] == r["fold"])
            parts.append(
                f"<tr class='muted'><td></td><td colspan=2>{esc(b)}</td>"
                + "".join(f"<td>{_fmt(br.get(k))}</td>" for k in METRICS)
                + "</tr>"
            )
    parts.append("</table>")
    for title, src in _plots(report):
        parts.append(f"<h2>{esc(title)}</h2><img src='{src}' alt='{esc(title)}'>")
    parts.append("<h2>Notes</h2><ul>")
    parts += [f"<li>{esc(n)}</li>" for n in report["notes"]]
    parts.append("</ul></body></html>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
