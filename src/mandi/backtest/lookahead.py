"""A look-ahead detector: change the future, see whether the past changes.

The engine gives a strategy no way to see a bar before it ends and fills nothing on data from
before an order (see :mod:`mandi.backtest.engine`). A strategy can still cheat outside the API —
a closure over the input arrays, a global. :func:`check_no_lookahead` catches that: it runs the
backtest on the data as given and again with every bar from ``cut`` on replaced by a different
path, and requires every signal, fill and trade decided before ``cut`` to be identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mandi.backtest.bars import BacktestError, BarSeries
from mandi.backtest.result import BacktestResult


class LookAheadError(BacktestError):
    """What a strategy did before ``cut`` depends on data after it."""


def perturb(series: BarSeries, cut_ns: int, factor: float = 1.07) -> BarSeries:
    """The series with every bar starting at or after ``cut_ns`` moved onto another path
    (prices scaled and reversed in time)."""
    k = int(np.searchsorted(series.bucket, cut_ns, "left"))
    cols = {}
    for name in ("open", "high", "low", "close"):
        a = getattr(series, name).copy()
        tail = a[k:][::-1]
        a[k:] = np.rint(tail * factor).astype(np.int64)
        cols[name] = a
    hi = np.maximum.reduce([cols["open"], cols["high"], cols["low"], cols["close"]])
    lo = np.minimum.reduce([cols["open"], cols["high"], cols["low"], cols["close"]])
    return BarSeries(
        series.instrument,
        series.timeframe,
        series.bucket,
        cols["open"],
        hi,
        lo,
        cols["close"],
        series.volume,
        series.oi,
        series.end,
    )


def _before(res: BacktestResult, cut_ns: int) -> tuple[list[Any], list[Any], list[Any]]:
    # a decision at the cut itself is made before the bar starting there is known
    sig = [
        (s.signal_id, s.action, s.ts_event, s.price) for s in res.signals if s.ts_event <= cut_ns
    ]
    fills = [(f.fill_id, f.ts_event, f.price, f.quantity) for f in res.fills if f.ts_event < cut_ns]
    trades = [t.key() for t in res.trades if t.exit_time < cut_ns]
    return sig, fills, trades


def check_no_lookahead(
    run: Callable[[Sequence[BarSeries]], BacktestResult],
    series: Sequence[BarSeries],
    cut_ns: int,
) -> tuple[BacktestResult, BacktestResult]:
    """Run ``run`` on ``series`` and on two perturbed futures (one higher, one lower); raise
    :class:`LookAheadError` if anything before ``cut_ns`` differs. Returns the original result
    and the first perturbed one."""
    a = run(series)
    first_b = None
    for factor in (1.07, 0.93):
        b = run([perturb(s, cut_ns, factor) for s in series])
        first_b = first_b or b
        _compare(a, b, cut_ns)
    assert first_b is not None
    return a, first_b


def _compare(a: BacktestResult, b: BacktestResult, cut_ns: int) -> None:
    for what, x, y in zip(
        ("signals", "fills", "trades"), _before(a, cut_ns), _before(b, cut_ns), strict=True
    ):
        if x != y:
            first = next(
                (i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q),
                min(len(x), len(y)),
            )
            p = x[first] if first < len(x) else None
            q = y[first] if first < len(y) else None
            raise LookAheadError(
                f"{what} before the cut depend on later data: #{first} differs ({p} vs {q})"
            )
