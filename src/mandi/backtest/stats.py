"""Backtest statistics, defined once (money in rupees in the output, ratios as fractions).

Definitions (``equity`` is cash + realized P&L net of charges + unrealized P&L, sampled at every
bar end; a *day* is an IST calendar day with at least one sample, valued at its last sample):

* ``total_return`` = final / initial − 1.
* ``annualized_return`` = (final / initial) ^ (365.25 / calendar days spanned) − 1 (CAGR).
* ``sharpe`` = mean / standard deviation (ddof 1) of the daily returns × √252; risk-free rate 0.
* ``sortino`` = mean daily return / downside deviation × √252, the downside deviation being
  √(mean(min(r, 0)²)) over all days.
* ``max_drawdown`` = the largest fall from a running peak of the equity, as a fraction of that
  peak (``max_drawdown_inr`` in rupees); ``max_drawdown_duration_days`` = the longest time from a
  peak until the equity was back at it (or the end), in calendar days (``..._bars`` in samples).
* ``win_rate`` = winners / closed trades (P&L net of charges > 0).
* ``profit_factor`` = gross profit / |gross loss| of closed trades (None when there is no loss).
* ``expectancy`` = mean net P&L per closed trade (rupees).
* ``exposure`` = the fraction of samples with a position open.
* ``trades`` = closed trades; ``open_positions`` those still open at the end.

Undefined numbers (no trades, a flat curve) are ``None``, never a silent 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mandi.core.calendar import IST_OFFSET_NS, NS_PER_DAY

TRADING_DAYS = 252


def _f(x: float | np.floating) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def daily_values(times: np.ndarray, equity: np.ndarray) -> np.ndarray:
    """Equity at the last sample of each IST day (paise, float)."""
    if len(times) == 0:
        return np.zeros(0)
    day = (times + IST_OFFSET_NS) // NS_PER_DAY
    last = np.r_[day[1:] != day[:-1], True]
    return equity[last].astype(np.float64)


def drawdown(equity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(drawdown fraction ≤ 0, running peak) at each sample."""
    eq = equity.astype(np.float64)
    peak = np.maximum.accumulate(eq) if len(eq) else eq
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, eq / peak - 1.0, 0.0)
    return dd, peak


def compute_stats(
    times: np.ndarray,
    equity: np.ndarray,
    in_market: np.ndarray,
    initial: int,
    trade_pnls: Sequence[int],
    open_positions: int = 0,
    bars: int | None = None,
    charges: int = 0,
) -> dict[str, Any]:
    """The statistics of the module docstring; money arguments in paise."""
    n = len(equity)
    final = int(equity[-1]) if n else initial
    out: dict[str, Any] = {
        "initial_value": initial / 100,
        "final_value": final / 100,
        "pnl": (final - initial) / 100,
        "total_return": _f(final / initial - 1.0) if initial else None,
    }
    days = (int(times[-1]) - int(times[0])) / NS_PER_DAY if n > 1 else 0.0
    if days > 0 and initial > 0 and final > 0:
        out["annualized_return"] = _f((final / initial) ** (365.25 / days) - 1.0)
    else:
        out["annualized_return"] = None
    dv = daily_values(times, equity)
    prev = np.r_[float(initial), dv[:-1]] if len(dv) else dv
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev > 0, dv / prev - 1.0, 0.0) if len(dv) else dv
    if len(r) > 1 and np.std(r, ddof=1) > 0:
        out["sharpe"] = _f(np.mean(r) / np.std(r, ddof=1) * math.sqrt(TRADING_DAYS))
    else:
        out["sharpe"] = None
    down = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) if len(r) else 0.0
    out["sortino"] = _f(np.mean(r) / down * math.sqrt(TRADING_DAYS)) if down > 0 else None
    dd, peak = drawdown(equity)
    if n:
        k = int(np.argmin(dd))
        out["max_drawdown"] = _f(-dd[k])
        out["max_drawdown_inr"] = float(peak[k] - equity[k]) / 100
        dur_bars, dur_ns = _longest_underwater(times, equity.astype(np.float64), peak)
        out["max_drawdown_duration_bars"] = dur_bars
        out["max_drawdown_duration_days"] = round(dur_ns / NS_PER_DAY, 4)
    else:
        out.update(
            max_drawdown=None,
            max_drawdown_inr=0.0,
            max_drawdown_duration_bars=0,
            max_drawdown_duration_days=0.0,
        )
    pnl = np.asarray(trade_pnls, dtype=np.float64)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    out["trades"] = len(pnl)
    out["winning_trades"] = len(wins)
    out["losing_trades"] = len(losses)
    out["win_rate"] = _f(len(wins) / len(pnl)) if len(pnl) else None
    out["gross_profit"] = float(wins.sum()) / 100
    out["gross_loss"] = float(losses.sum()) / 100
    out["profit_factor"] = _f(wins.sum() / -losses.sum()) if len(losses) else None
    out["expectancy"] = _f(pnl.mean() / 100) if len(pnl) else None
    out["best_trade"] = float(pnl.max()) / 100 if len(pnl) else None
    out["worst_trade"] = float(pnl.min()) / 100 if len(pnl) else None
    out["exposure"] = _f(np.count_nonzero(in_market) / len(in_market)) if len(in_market) else None
    out["charges"] = charges / 100
    out["open_positions"] = open_positions
    out["bars"] = int(bars if bars is not None else n)
    out["start"] = int(times[0]) if n else None
    out["end"] = int(times[-1]) if n else None
    return out


def _longest_underwater(times: np.ndarray, eq: np.ndarray, peak: np.ndarray) -> tuple[int, int]:
    under = eq < peak
    if not under.any():
        return 0, 0
    # runs of consecutive underwater samples; a run starts right after its peak sample
    edges = np.diff(np.r_[0, under.astype(np.int8), 0])
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # exclusive
    best_bars, best_ns = 0, 0
    last = len(eq) - 1
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        t0 = int(times[s - 1]) if s > 0 else int(times[s])
        t1 = int(times[e]) if e <= last else int(times[last])
        bars = e - s + (1 if e <= last else 0)
        if t1 - t0 > best_ns or (t1 - t0 == best_ns and bars > best_bars):
            best_bars, best_ns = bars, t1 - t0
    return best_bars, best_ns
