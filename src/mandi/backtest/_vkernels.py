"""Numba kernels of the vectorized backtester (compiled once, cached on disk).

They reproduce, bar for bar, what the event-driven engine does for a crossover strategy with a
fixed quantity — see :mod:`mandi.backtest.vector` for the rules and their sources.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# fill kinds
ENTRY, EXIT = 0, 1
# exit reasons (indices into mandi.backtest.vector.REASONS)
R_SIGNAL, R_STOP, R_TARGET, R_TRAIL, R_SQUARE = 0, 1, 2, 3, 4


@njit(cache=True)
def sma_exact(close: np.ndarray, period: int) -> np.ndarray:
    """SMA of int paise, bit-identical to the incremental ``SMA.update`` (exact window sums
    divided by the period)."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    s = 0
    for i in range(n):
        s += close[i]
        if i >= period:
            s -= close[i - period]
        if i >= period - 1:
            out[i] = float(s) / period
    return out


@njit(cache=True)
def ema_exact(close: np.ndarray, period: int) -> np.ndarray:
    """EMA bit-identical to the incremental ``EMA.update`` (SMA seed, then ``(x - v) * k + v``)."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    k = 2.0 / (period + 1)
    acc = 0.0
    v = 0.0
    for i in range(n):
        x = float(close[i])
        if i < period:
            acc += x
            if i == period - 1:
                v = acc / period
                out[i] = v
        else:
            v = (x - v) * k + v
            out[i] = v
    return out


@njit(cache=True)
def cross_signals(fast: np.ndarray, slow: np.ndarray, start: int) -> np.ndarray:
    """+1/−1 where the fast average crosses above/below the slow one (the ``_Cross`` strategy's
    state machine: a tie keeps the previous side; no signal before ``start``)."""
    n = fast.shape[0]
    sig = np.zeros(n, dtype=np.int8)
    prev = 0
    for i in range(n):
        f = fast[i]
        s = slow[i]
        if np.isnan(f) or np.isnan(s):
            prev = 0
            continue
        side = 1 if f > s else (-1 if f < s else prev)
        if prev != 0 and side != prev and i >= start:
            sig[i] = side
        prev = side
    return sig


@njit(cache=True)
def _round_down(x: int, tick: int) -> int:
    return (x // tick) * tick


@njit(cache=True)
def _round_up(x: int, tick: int) -> int:
    return -((-x) // tick) * tick


@njit(cache=True)
def simulate(
    bucket: np.ndarray,
    end: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    sig: np.ndarray,
    entry_ok: np.ndarray,
    exit_ok: np.ndarray,
    bar_ok: np.ndarray,
    sq_moment: np.ndarray,  # (n, 4) bool: moment k of bar i is at/after the square-off time
    sq_end: np.ndarray,  # bool: the bar's end is at/after the square-off time
    late_in: np.ndarray,  # bool: the bar's last moment is at/after the square-off time
    qty: int,
    allow_short: bool,
    fill_close: bool,
    slip: int,
    tick: int,
    sl: float,
    tg: float,
    trail: float,
    intraday: bool,
    max_positions: int,
) -> tuple[np.ndarray, ...]:
    """The trades of one instrument. Returns fills as parallel arrays (bar index, time, side
    +1 buy/−1 sell, price, kind, reason, position number) and, per bar, the open position
    (direction, quantity, cost) after the bar."""
    n = c.shape[0]
    cap = 2 * n + 4
    f_bar = np.empty(cap, np.int64)
    f_ts = np.empty(cap, np.int64)
    f_side = np.empty(cap, np.int8)
    f_px = np.empty(cap, np.int64)
    f_kind = np.empty(cap, np.int8)
    f_reason = np.empty(cap, np.int8)
    f_pos = np.empty(cap, np.int64)
    nf = 0
    pos_dir = np.zeros(n, np.int8)
    pos_cost = np.zeros(n, np.int64)

    # the open position
    d = 0  # direction, 0 = none
    entry = 0
    stop = 0
    target = 0
    hw = 0
    closing = False
    npos = 0
    # working orders (accepted at a bar's close, filled at the next bar's open or at once)
    pend_exit = False
    pend_exit_reason = 0
    pend_entry = 0  # bias of a working entry

    for i in range(n):
        b = bucket[i]
        e = end[i]
        span = e - b
        # --- 1. open: working orders fill at the open ------------------------------------------
        if pend_exit or pend_entry != 0:
            if pend_exit and d != 0:
                side = -d
                px = o[i] + slip if side > 0 else max(o[i] - slip, tick)
                f_bar[nf] = i
                f_ts[nf] = b
                f_side[nf] = side
                f_px[nf] = px
                f_kind[nf] = EXIT
                f_reason[nf] = pend_exit_reason
                f_pos[nf] = npos
                nf += 1
                d = 0
                closing = False
            pend_exit = False
            if pend_entry != 0:
                side = pend_entry
                px = o[i] + slip if side > 0 else max(o[i] - slip, tick)
                npos += 1
                f_bar[nf] = i
                f_ts[nf] = b
                f_side[nf] = side
                f_px[nf] = px
                f_kind[nf] = ENTRY
                f_reason[nf] = 0
                f_pos[nf] = npos
                nf += 1
                d = side
                entry = px
                hw = px
                closing = False
                if d > 0:
                    stop = _round_down(int(entry * (1 - sl)), tick) if sl > 0 else 0
                    target = _round_up(int(entry * (1 + tg) + 0.5), tick) if tg > 0 else 0
                else:
                    stop = _round_up(int(entry * (1 + sl) + 0.5), tick) if sl > 0 else 0
                    target = _round_down(int(entry * (1 - tg)), tick) if tg > 0 else 0
                if stop < 0:
                    stop = 0
                if target < 0:
                    target = 0
                pend_entry = 0
        # --- 2. intrabar exits along the pessimistic path --------------------------------------
        if d != 0 and not closing:
            may = late_in[i]
            if not may:
                if d > 0:
                    if (stop > 0 and lo[i] <= stop) or (target > 0 and h[i] >= target):
                        may = True
                    elif trail > 0:
                        hh = max(hw, h[i])
                        may = lo[i] <= int(hh * (1 - trail))
                else:
                    if (stop > 0 and h[i] >= stop) or (target > 0 and lo[i] <= target):
                        may = True
                    elif trail > 0:
                        ll = min(hw, lo[i]) if hw > 0 else lo[i]
                        may = h[i] >= int(ll * (1 + trail))
            if not may:
                if d > 0:
                    if h[i] > hw:
                        hw = h[i]
                elif lo[i] < hw:
                    hw = lo[i]
            else:
                for k in range(4):
                    if k == 0:
                        price = o[i]
                        ts = b
                    elif k == 3:
                        price = c[i]
                        ts = e - 1
                    else:
                        if (k == 1) == (d > 0):
                            price = lo[i]
                        else:
                            price = h[i]
                        ts = b + (span // 3 if k == 1 else 2 * span // 3)
                    if d > 0:
                        if price > hw:
                            hw = price
                    elif price < hw:
                        hw = price
                    reason = -1
                    level = price
                    if intraday and sq_moment[i, k]:
                        reason = R_SQUARE
                    elif price > 0:
                        tr = 0
                        if trail > 0 and hw > 0:
                            tr = int(hw * (1 - trail)) if d > 0 else int(hw * (1 + trail))
                        if d > 0:
                            if tr != 0 and tr > stop and price <= tr:
                                reason = R_TRAIL
                                level = tr
                            elif stop != 0 and price <= stop:
                                reason = R_STOP
                                level = stop
                            elif target != 0 and price >= target:
                                reason = R_TARGET
                                level = target
                        else:
                            if tr != 0 and (stop == 0 or tr < stop) and price >= tr:
                                reason = R_TRAIL
                                level = tr
                            elif stop != 0 and price >= stop:
                                reason = R_STOP
                                level = stop
                            elif target != 0 and price <= target:
                                reason = R_TARGET
                                level = target
                    if reason < 0 or not bar_ok[i]:
                        continue
                    if k == 0 or reason == R_SQUARE:
                        level = price
                    side = -d
                    px = level + slip if side > 0 else max(level - slip, tick)
                    f_bar[nf] = i
                    f_ts[nf] = ts + 1
                    f_side[nf] = side
                    f_px[nf] = px
                    f_kind[nf] = EXIT
                    f_reason[nf] = reason
                    f_pos[nf] = npos
                    nf += 1
                    d = 0
                    closing = False
                    break
        # --- 3. close: the strategy's signal, then the monitor ---------------------------------
        s = sig[i]
        if s != 0:
            if d == -s and not closing and exit_ok[i]:
                closing = True
                pend_exit = True
                pend_exit_reason = R_SIGNAL
            if d == s or pend_entry == s:
                pass  # a position (or entry) in this direction already exists
            elif s < 0 and not allow_short:
                pass  # nothing to sell
            elif (1 if d != 0 else 0) >= max_positions:
                pass
            elif entry_ok[i]:
                pend_entry = s
        if fill_close and (pend_exit or pend_entry != 0):
            if pend_exit and d != 0:
                side = -d
                px = c[i] + slip if side > 0 else max(c[i] - slip, tick)
                f_bar[nf] = i
                f_ts[nf] = e + 1
                f_side[nf] = side
                f_px[nf] = px
                f_kind[nf] = EXIT
                f_reason[nf] = pend_exit_reason
                f_pos[nf] = npos
                nf += 1
                d = 0
                closing = False
            pend_exit = False
            if pend_entry != 0:
                side = pend_entry
                px = c[i] + slip if side > 0 else max(c[i] - slip, tick)
                npos += 1
                f_bar[nf] = i
                f_ts[nf] = e + 1
                f_side[nf] = side
                f_px[nf] = px
                f_kind[nf] = ENTRY
                f_reason[nf] = 0
                f_pos[nf] = npos
                nf += 1
                d = side
                entry = px
                hw = px
                if d > 0:
                    stop = _round_down(int(entry * (1 - sl)), tick) if sl > 0 else 0
                    target = _round_up(int(entry * (1 + tg) + 0.5), tick) if tg > 0 else 0
                else:
                    stop = _round_up(int(entry * (1 + sl) + 0.5), tick) if sl > 0 else 0
                    target = _round_down(int(entry * (1 - tg)), tick) if tg > 0 else 0
                if stop < 0:
                    stop = 0
                if target < 0:
                    target = 0
                pend_entry = 0
        if d != 0:
            if d > 0:
                if c[i] > hw:
                    hw = c[i]
            elif c[i] < hw:
                hw = c[i]
            # the monitor: the intraday square-off at the bar's end
            if intraday and sq_end[i] and not closing and exit_ok[i]:
                closing = True
                pend_exit = True
                pend_exit_reason = R_SQUARE
        pos_dir[i] = d
        pos_cost[i] = entry * qty if d != 0 else 0
    return (
        f_bar[:nf],
        f_ts[:nf],
        f_side[:nf],
        f_px[:nf],
        f_kind[:nf],
        f_reason[:nf],
        f_pos[:nf],
        pos_dir,
        pos_cost,
    )


@njit(cache=True)
def _at_or_after(x, day0, close_tab, offset, day_ns, before_close_ns, tod_ns):  # type: ignore[no-untyped-def]
    # mandi.backtest.vector._calendar_masks.at_or_after for one time
    cl = close_tab[(x + offset) // day_ns - day0]
    if cl >= 0:
        return x >= cl - before_close_ns
    return (x + offset) % day_ns >= tod_ns


@njit(cache=True)
def _continuous(x, day0, open_tab, close_tab, offset, day_ns):  # type: ignore[no-untyped-def]
    k = (x + offset) // day_ns - day0
    op = open_tab[k]
    return op >= 0 and op <= x < close_tab[k]


@njit(cache=True)
def calendar_masks(  # type: ignore[no-untyped-def]
    b, e, day0, open_tab, close_tab, offset, day_ns, sq_before, sq_tod, cut_before, cut_tod,
    rules, entry_ok, exit_ok, bar_ok, sq_moment, sq_end, late_in,
):  # fmt: skip
    """Every calendar mask of :func:`mandi.backtest.vector._calendar_masks` in one pass (the
    session table indexed by IST day number from ``day0``; ``*_before`` the distance before the
    session close, ``*_tod`` the time of day where there is no session)."""
    for i in range(len(b)):
        bi, ei = b[i], e[i]
        span = ei - bi
        moments = (bi, bi + span // 3, bi + 2 * span // 3, ei - 1)
        for k in range(4):
            sq_moment[i, k] = _at_or_after(
                moments[k], day0, close_tab, offset, day_ns, sq_before, sq_tod
            )
        sq_end[i] = _at_or_after(ei, day0, close_tab, offset, day_ns, sq_before, sq_tod)
        late_in[i] = _at_or_after(ei - 1, day0, close_tab, offset, day_ns, sq_before, sq_tod)
        if rules:
            ok_exit = _continuous(ei, day0, open_tab, close_tab, offset, day_ns)
            exit_ok[i] = ok_exit
            entry_ok[i] = ok_exit and not _at_or_after(
                ei, day0, close_tab, offset, day_ns, cut_before, cut_tod
            )
            bar_ok[i] = _continuous(bi, day0, open_tab, close_tab, offset, day_ns) and _continuous(
                ei - 1, day0, open_tab, close_tab, offset, day_ns
            )
        else:
            exit_ok[i] = entry_ok[i] = bar_ok[i] = True
