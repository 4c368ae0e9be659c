"""Numba kernel of the event-driven engine's quiet stretches (compiled once, cached on disk).

When every strategy on the one series of a backtest has a :class:`~mandi.strategy.base.BarPlan`,
most bars change nothing but the marks: no order is working, the strategies do not act, and
the one open position (if any) can reach no exit rule within the bar. :func:`quiet_bars` runs
such bars in one compiled pass — the same steps :meth:`mandi.backtest.engine.BacktestEngine.
_loop_one` takes for them, in integers — and stops at the first bar where anything else could
happen, which the engine then runs itself.
"""

# numba kernels: arrays in, arrays out; mypy cannot see through @njit
# mypy: disable-error-code="no-untyped-def,no-any-return"

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def quiet_bars(
    i,
    act,
    late,
    late_end,
    day,
    end,
    high,
    low,
    close,
    volume,
    held,
    intraday,
    direction,
    quantity,
    cost,
    entry_price,
    stop,
    target,
    water,
    base,
    day_no,
    realized_today,
    max_loss,
    next_monitor,
    monitor_ns,
    times,
    equity,
    in_market,
):
    """Run the quiet bars from ``i`` on; return ``(k, water, next_monitor, volume)``: the first
    bar that is not quiet (``len(close)`` at the end), the position's high-water mark, the next
    monitor time and the volume of the bars run.

    A bar is quiet when no strategy acts on it (``act``) and, with a position ``held``
    (direction, quantity, cost, stop-loss and target levels, 0 = none): its range reaches
    neither the stop nor the target, the position monitor, when due, would do nothing (the same
    day as it last saw, the daily-loss limit not reached) and, for an ``intraday`` position
    (the only kind a time rule closes here: positions with an expiry are never quiet), neither
    the bar's last moment (``late``) nor its end (``late_end``) is at or after the square-off
    time. (For any other position the engine's walk along a late bar and the monitor's exit
    check find what the range check finds.)
    A quiet bar's equity is ``base`` (cash + closed P&L + the position's realized P&L) plus the
    position's unrealized P&L at the close."""
    n = close.shape[0]
    vol = 0
    k = i
    while k < n:
        if act[k]:
            break
        e = end[k]
        c = close[k]
        if held:
            if late[k] and intraday:  # the square-off may fire within the bar
                break
            h = high[k]
            lo = low[k]
            if direction > 0:
                if (stop != 0 and lo <= stop) or (target != 0 and h >= target):
                    break
                best = h
            else:
                if (stop != 0 and h >= stop) or (target != 0 and lo <= target):
                    break
                best = lo
            mark = c if c != 0 else entry_price
            unreal = direction * (quantity * mark - cost) if quantity != 0 else 0
            due = e >= next_monitor
            if due and (
                (late_end[k] and intraday)
                or day[k] != day_no
                or realized_today + unreal <= -max_loss
            ):
                break
            # Position.update_price(best, start), then (close, end): the high-water mark
            for price in (best, c):
                if water == 0 or (price > water if direction > 0 else price < water):
                    water = price
            if due:
                next_monitor = e + monitor_ns
            equity[k] = base + unreal
            in_market[k] = True
        else:
            equity[k] = base
            in_market[k] = False
        times[k] = e
        vol += volume[k]
        k += 1
    return k, water, next_monitor, vol


def warm() -> None:
    """Compile (or load from the on-disk cache) the kernel."""
    z = np.zeros(4, dtype=np.int64)
    b = np.zeros(4, dtype=np.bool_)
    quiet_bars(
        0, b, b, b, z, z, z, z, z, z, True, True, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1,
        z.copy(), z.copy(), b.copy(),
    )  # fmt: skip
