"""Numba kernels of the indicators: batch (whole arrays) and the close-set bank (many series).

Every kernel performs, step by step, the same floating-point operations in the same order as
the incremental classes (:mod:`mandi.indicators.moving`, ``momentum``, ``volatility``,
``trend``, ``volume``) and :class:`~mandi.indicators.fused.CloseKernel`, so batch results and
bank updates are bit-identical to feeding the classes one input at a time (tested; the batch
ATR alone differs, by ~1e-15, see :func:`atr`), and match TA-Lib as the classes do. Kernels
allocate nothing (outputs and work space come from the caller) and run without numba's
runtime: no reference counting, nothing to raise.
"""

# numba kernels: arrays in, arrays out; mypy cannot see through @njit
# mypy: disable-error-code="no-untyped-def,no-any-return"

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

_OPTIONS: dict[str, Any] = {"cache": True, "error_model": "numpy", "_nrt": False}
_bare: Any = njit(**_OPTIONS)
_inline: Any = njit(**_OPTIONS, inline="always")

NAN = math.nan
TA_EPSILON = 1e-14  # as mandi.indicators.trend
IST_OFFSET = 19_800 * 1_000_000_000
DAY = 86_400 * 1_000_000_000


@_bare
def first_bad(a):
    """Index of the first NaN or infinite value of ``a`` (float64), or −1."""
    bits = a.view(np.int64)
    flag = 0
    for i in range(len(bits)):  # exponent all ones <=> NaN or ±inf; vectorises (no branch)
        flag |= (((bits[i] >> 52) & 0x7FF) + 1) >> 11
    if flag == 0:
        return -1
    for i in range(len(a)):
        if not math.isfinite(a[i]):
            return i
    return -1


# --- moving averages -------------------------------------------------------------------------


@_bare
def sma(x, p, out):
    """:class:`~mandi.indicators.SMA`: a running sum, ``s += x − x[t−p]`` once full."""
    s = 0.0
    for t in range(len(x)):
        if t < p:
            s += x[t]
        else:
            s += x[t] - x[t - p]
        out[t] = s / p if t >= p - 1 else NAN


@_bare
def ema(x, p, out):
    """:class:`~mandi.indicators.EMA`: SMA seed, then ``(x − v)·k + v``."""
    k = 2.0 / (p + 1)
    s = 0.0
    v = NAN
    for t in range(len(x)):
        if t >= p:
            v = (x[t] - v) * k + v
        else:
            s += x[t]
            if t + 1 == p:
                v = s / p
        out[t] = v


@_bare
def wma(x, p, out):
    """:class:`~mandi.indicators.WMA`: ``W += p·x − S``, ``S += x − x_old``."""
    div = p * (p + 1) / 2.0
    s = 0.0
    w = 0.0
    for t in range(len(x)):
        xt = x[t]
        if t < p:
            w += (t + 1) * xt
            s += xt
        else:
            w += p * xt - s
            s += xt - x[t - p]
        out[t] = w / div if t >= p - 1 else NAN


@_bare
def rsi(x, p, out):
    """:class:`~mandi.indicators.RSI` (Wilder)."""
    n = len(x)
    if n == 0:
        return
    out[0] = NAN
    prev = x[0]
    moves = 0
    gain = 0.0
    loss = 0.0
    a = (p - 1) / p  # Wilder weights (mandi.indicators._base.wilder_weights)
    b = 1.0 / p
    for t in range(1, n):
        xt = x[t]
        d = xt - prev
        prev = xt
        g = d if d > 0.0 else 0.0
        lo = -d if d < 0.0 else 0.0
        if moves >= p:
            gain = gain * a + g * b
            loss = loss * a + lo * b
        else:
            gain = gain + g
            loss = loss + lo
            moves += 1
            if moves < p:
                out[t] = NAN
                continue
            gain /= p
            loss /= p
        s = gain + loss
        out[t] = 100.0 * (gain / s) if s != 0.0 else 0.0


@_bare
def rsi_averages(x, p, gain_out, loss_out):
    """The state of :class:`~mandi.indicators.RSI` after each input: its average gain and loss
    (the plain sums while fewer than ``p`` moves were seen), the same operations as :func:`rsi`
    (0 before the first move)."""
    n = len(x)
    if n == 0:
        return
    gain_out[0] = 0.0
    loss_out[0] = 0.0
    prev = x[0]
    moves = 0
    gain = 0.0
    loss = 0.0
    a = (p - 1) / p
    b = 1.0 / p
    for t in range(1, n):
        xt = x[t]
        d = xt - prev
        prev = xt
        g = d if d > 0.0 else 0.0
        lo = -d if d < 0.0 else 0.0
        if moves >= p:
            gain = gain * a + g * b
            loss = loss * a + lo * b
        else:
            gain = gain + g
            loss = loss + lo
            moves += 1
            if moves == p:
                gain /= p
                loss /= p
        gain_out[t] = gain
        loss_out[t] = loss


@_bare
def macd(x, fast, slow, signal, line_out, sig_out, hist_out):
    """:class:`~mandi.indicators.MACD` with TA-Lib's seeding (``fast <= slow``)."""
    kf = 2.0 / (fast + 1)
    ks = 2.0 / (slow + 1)
    kg = 2.0 / (signal + 1)
    slow_sum = 0.0
    sl = 0.0
    fa = 0.0
    m = 0
    sig_sum = 0.0
    sg = 0.0
    seeded = False
    sig_ready = False
    for t in range(len(x)):
        xt = x[t]
        line_out[t] = NAN
        sig_out[t] = NAN
        hist_out[t] = NAN
        if seeded:
            sl = (xt - sl) * ks + sl
            fa = (xt - fa) * kf + fa
        else:
            slow_sum += xt
            if t + 1 < slow:
                continue
            sl = slow_sum / slow
            total = 0.0  # sum(recent): the last `fast` inputs, oldest first
            for j in range(t + 1 - fast, t + 1):
                total = total + x[j]
            fa = total / fast
            seeded = True
        line = fa - sl
        if sig_ready:
            sg = (line - sg) * kg + sg
        elif m + 1 == signal:
            sg = (sig_sum + line) / signal
            sig_ready = True
        else:
            sig_sum = sig_sum + line
            m += 1
            continue
        line_out[t] = line
        sig_out[t] = sg
        hist_out[t] = line - sg


@_bare
def bbands(x, p, nbdev, up, mid, low):
    """:class:`~mandi.indicators.BollingerBands`: running sums relative to a recent input,
    rebuilt from the window (a plain sum, as the class) once per window."""
    ref = 0.0
    sy = 0.0
    syy = 0.0
    i = 0
    count = 0
    for t in range(len(x)):
        xt = x[t]
        if t == 0:
            ref = xt
        y = xt - ref
        if count < p:
            sy = sy + y
            syy = syy + y * y
        else:
            old = x[t - p] - ref
            sy = sy + (y - old)
            syy = syy + (y * y - old * old)
        i = i + 1 if i + 1 < p else 0
        if count < p:
            count += 1
        if count == p:
            mean = sy / p
            var = syy / p - mean * mean
            dev = nbdev * math.sqrt(var) if var > 0.0 else 0.0
            m = ref + mean
            up[t] = m + dev
            mid[t] = m
            low[t] = m - dev
        else:
            up[t] = NAN
            mid[t] = NAN
            low[t] = NAN
        if i == 0:
            # the ring (slot j = input t − p + 1 + j) re-centred on the newest input
            ref = xt
            first = t - p + 1
            sy = 0.0
            syy = 0.0
            for j in range(p):
                v = x[first + j] - ref
                sy += v
                syy += v * v


# --- ranges ------------------------------------------------------------------------------------


@_inline
def _true_range(h, lo, pc):
    return (h if h > pc else pc) - (lo if lo < pc else pc)


@_bare
def atr(h, lo, c, p, out):
    """:class:`~mandi.indicators.ATR` (Wilder). After the seed the recursion
    ``v_t = v_{t−1}·a + TR_t·b`` runs two steps at a time (``v_{t+1} = v_{t−1}·a² +
    (TR_t·b·a + TR_{t+1}·b)``), which halves the chain of dependent operations; the values are
    the class's to ~1e-15 (not bit for bit, unlike the other kernels)."""
    n = len(c)
    if n == 0:
        return
    out[0] = NAN
    wa = (p - 1) / p
    wb = 1.0 / p
    wa2 = wa * wa
    s = 0.0
    t = 1
    while t < n and t <= p:  # the seed: the mean of the first p true ranges
        s = s + _true_range(h[t], lo[t], c[t - 1])
        out[t] = s / p if t == p else NAN
        t += 1
    if t <= p:
        return
    v = out[p]
    while t + 1 < n:
        u0 = _true_range(h[t], lo[t], c[t - 1]) * wb
        u1 = _true_range(h[t + 1], lo[t + 1], c[t]) * wb
        out[t] = v * wa + u0  # off the chain
        v = v * wa2 + (u0 * wa + u1)
        out[t + 1] = v
        t += 2
    if t < n:
        out[t] = v * wa + _true_range(h[t], lo[t], c[t - 1]) * wb


@_bare
def supertrend(h, lo, c, p, mult, val, dirn):
    """:class:`~mandi.indicators.SuperTrend` on the ATR of :func:`atr` (same arithmetic)."""
    n = len(c)
    wa = (p - 1) / p
    wb = 1.0 / p
    s = 0.0
    a = NAN
    ready = False
    count = 0
    upper = 0.0
    lower = 0.0
    d = 0.0
    for t in range(n):
        val[t] = NAN
        dirn[t] = NAN
        if t == 0:
            continue
        tr = _true_range(h[t], lo[t], c[t - 1])
        if ready:
            a = a * wa + tr * wb
        else:
            s = s + tr
            if count + 1 == p:
                a = s / p
                ready = True
            count += 1
            if not ready:
                continue
        m = (h[t] + lo[t]) / 2.0
        up = m + mult * a
        dn = m - mult * a
        if d == 0.0:
            nd = -1.0
        else:
            pc = c[t - 1]
            if not (up < upper or pc > upper):
                up = upper
            if not (dn > lower or pc < lower):
                dn = lower
            if d < 0:
                nd = 1.0 if c[t] > up else -1.0
            else:
                nd = -1.0 if c[t] < dn else 1.0
        upper = up
        lower = dn
        d = nd
        val[t] = dn if d > 0 else up
        dirn[t] = d


@_bare
def adx(h, lo, c, p, adx_out, pdi_out, mdi_out):
    """:class:`~mandi.indicators.ADX` (TA-Lib's Wilder sums and ADX seeding)."""
    n = len(c)
    pdm = 0.0
    mdm = 0.0
    tr = 0.0
    dx_sum = 0.0
    ax = 0.0
    have_adx = False
    for t in range(n):
        adx_out[t] = NAN
        pdi_out[t] = NAN
        mdi_out[t] = NAN
        if t == 0:
            continue
        n1 = t  # bars after the first, this one included
        dh = h[t] - h[t - 1]
        dl = lo[t - 1] - lo[t]
        dp = 0.0
        dm = 0.0
        if dl > 0.0 and dh < dl:
            dm = dl
        elif dh > 0.0 and dh > dl:
            dp = dh
        r = _true_range(h[t], lo[t], c[t - 1])
        if n1 < p:
            pdm = pdm + dp
            mdm = mdm + dm
            tr = tr + r
            continue
        pdm = pdm - pdm / p + dp
        mdm = mdm - mdm / p + dm
        tr = tr - tr / p + r
        has_dx = False
        dx = 0.0
        pdi = 0.0
        mdi = 0.0
        if not (tr > -TA_EPSILON and tr < TA_EPSILON):
            mdi = 100.0 * (mdm / tr)
            pdi = 100.0 * (pdm / tr)
            s = mdi + pdi
            if not (s > -TA_EPSILON and s < TA_EPSILON):
                dx = 100.0 * (abs(mdi - pdi) / s)
                has_dx = True
        if not have_adx:
            if has_dx:
                dx_sum += dx
            if n1 < 2 * p - 1:
                continue
            ax = dx_sum / p
            have_adx = True
        elif has_dx:
            ax = (ax * (p - 1) + dx) / p
        adx_out[t] = ax
        pdi_out[t] = pdi
        mdi_out[t] = mdi


@_bare
def sliding_extremes(h, lo, w, hh, ll, sh, sl):
    """``hh[t]``/``ll[t]`` = max of ``h`` / min of ``lo`` over ``[t−w+1, t]`` (clipped at 0),
    exactly, O(1) per element and without data-dependent branches (van Herk / Gil-Werman:
    within blocks of ``w``, suffix extremes ``sh``/``sl`` and a running prefix; a window is one
    block, or the suffix of one and the prefix of the next). ``sh``, ``sl``: work space."""
    n = len(h)
    if n == 0:
        return
    pos = (n - 1) % w  # block position of the last element
    for t in range(n - 1, -1, -1):
        if pos == w - 1 or t == n - 1:
            sh[t] = h[t]
            sl[t] = lo[t]
        else:
            sh[t] = sh[t + 1] if sh[t + 1] > h[t] else h[t]
            sl[t] = sl[t + 1] if sl[t + 1] < lo[t] else lo[t]
        pos = pos - 1 if pos > 0 else w - 1
    pos = 0
    ph = 0.0
    pl = 0.0
    for t in range(n):
        if pos == 0:
            ph = h[t]
            pl = lo[t]
        else:
            ph = ph if ph > h[t] else h[t]
            pl = pl if pl < lo[t] else lo[t]
        if t < w - 1 or pos == w - 1:  # the window starts at bar 0 or at this block's start
            hh[t] = ph
            ll[t] = pl
        else:
            a = sh[t - w + 1]
            b = sl[t - w + 1]
            hh[t] = a if a > ph else ph
            ll[t] = b if b < pl else pl
        pos = pos + 1 if pos + 1 < w else 0


@_bare
def stoch(h, lo, c, fastk, slowk, slowd, k_out, d_out, kbuf, dbuf, hh, ll, sh, sl):
    """:class:`~mandi.indicators.Stochastic` (slow, SMA-smoothed as TA-Lib ``STOCH``).
    ``kbuf``/``dbuf``: work space of ``slowk``/``slowd`` floats; ``hh``, ``ll``, ``sh``, ``sl``:
    of ``len(c)``."""
    n = len(c)
    sliding_extremes(h, lo, fastk, hh, ll, sh, sl)
    nk = 0  # fast %K values seen (counted up to slowk)
    ki = 0  # ring positions (nk % slowk, nd % slowd without dividing)
    k_sum = 0.0
    nd = 0
    di = 0
    d_sum = 0.0
    for t in range(n):
        k_out[t] = NAN
        d_out[t] = NAN
        if t + 1 < fastk:
            continue
        diff = (hh[t] - ll[t]) / 100.0
        fk = (c[t] - ll[t]) / diff if diff != 0.0 else 0.0
        if nk < slowk:
            k_sum = k_sum + fk
            nk += 1
        else:
            k_sum = k_sum + (fk - kbuf[ki])
        kbuf[ki] = fk
        ki = ki + 1 if ki + 1 < slowk else 0
        if nk < slowk:
            continue
        k = k_sum / slowk
        if nd < slowd:
            d_sum = d_sum + k
            nd += 1
        else:
            d_sum = d_sum + (k - dbuf[di])
        dbuf[di] = k
        di = di + 1 if di + 1 < slowd else 0
        if nd < slowd:
            continue
        k_out[t] = k
        d_out[t] = d_sum / slowd


@_bare
def obv(c, v, out):
    """:class:`~mandi.indicators.OBV`."""
    n = len(c)
    if n == 0:
        return
    o = v[0]
    out[0] = o
    for t in range(1, n):
        if c[t] > c[t - 1]:
            o = o + v[t]
        elif c[t] < c[t - 1]:
            o = o - v[t]
        out[t] = o


@_bare
def vwap(h, lo, c, v, bucket, anchor_offset, out):
    """:class:`~mandi.indicators.VWAP`, session-anchored (``anchor_offset``: 09:15 IST as an
    offset from UTC midnight)."""
    anchor = -1
    pv = 0.0
    sv = 0.0
    for t in range(len(c)):
        a = ((bucket[t] + IST_OFFSET) // DAY) * DAY + anchor_offset
        if a != anchor or t == 0:
            pv = 0.0
            sv = 0.0
            anchor = a
        pv += (h[t] + lo[t] + c[t]) / 3.0 * v[t]
        sv += v[t]
        out[t] = pv / sv if sv > 0.0 else NAN


# --- the close-set bank: SMA/EMA/WMA/RSI of many series ----------------------------------------
#
# Per series (a row): float state ``fs[row]`` = ring (cap) | previous close | SMA sums |
# WMA sums | WMA weighted sums | EMA warm-up sums | EMA values | RSI gains | RSI losses, and int
# state ``ist[row]`` = ring position, inputs seen, last bucket. ``cfg`` = cap, then the counts
# (ns, nw, ne, nr), then the periods and output columns of each kind in that order. The
# arithmetic is CloseKernel's, statement for statement.

NO_BUCKET = -(1 << 63)  # ist[row, 2] of a series that has not taken a bucket yet
ST_OK = 0
ST_NOT_CONFIRMED = 1
ST_STALE = 2  # codes >= 3 are the caller's reasons (bad candles)


@_inline
def _close_step(r, x, bucket, j, out, fs, ist, cfg, commit, check):
    """One close into row ``r`` (output row ``j`` of ``out``): CloseKernel's update/peek."""
    cap = cfg[0]
    ns = cfg[1]
    nw = cfg[2]
    ne = cfg[3]
    nr = cfg[4]
    o_prev = cap
    o_sma = cap + 1
    o_ws = o_sma + ns
    o_ww = o_ws + nw
    o_es = o_ww + nw
    o_ev = o_es + ne
    o_rg = o_ev + ne
    o_rl = o_rg + nr
    c_sma = 5
    c_wma = c_sma + 2 * ns
    c_ema = c_wma + 2 * nw
    c_rsi = c_ema + 2 * ne
    i = ist[r, 0]
    n = ist[r, 1]
    n1 = n + 1
    for q in range(ns):
        p = cfg[c_sma + 2 * q]
        s = fs[r, o_sma + q]
        if n1 <= p:
            s = s + x
        else:
            s = s + (x - fs[r, (i - p) % cap])
        if commit:
            fs[r, o_sma + q] = s
        out[j, cfg[c_sma + 2 * q + 1]] = s / p if n1 >= p else NAN
    for q in range(nw):
        p = cfg[c_wma + 2 * q]
        s = fs[r, o_ws + q]
        w = fs[r, o_ww + q]
        if n1 <= p:
            w = w + n1 * x
            s = s + x
        else:
            w = w + (p * x - s)
            s = s + (x - fs[r, (i - p) % cap])
        if commit:
            fs[r, o_ws + q] = s
            fs[r, o_ww + q] = w
        out[j, cfg[c_wma + 2 * q + 1]] = w / (p * (p + 1) / 2.0) if n1 >= p else NAN
    for q in range(ne):
        p = cfg[c_ema + 2 * q]
        if n >= p:
            v = fs[r, o_ev + q]
            v = (x - v) * (2.0 / (p + 1)) + v
        else:
            s = fs[r, o_es + q] + x
            if commit:
                fs[r, o_es + q] = s
            v = s / p if n1 == p else NAN
        if commit:
            fs[r, o_ev + q] = v
        out[j, cfg[c_ema + 2 * q + 1]] = v
    if n > 0:
        d = x - fs[r, o_prev]
        g = d if d > 0.0 else 0.0
        lo = -d if d < 0.0 else 0.0
        moves = n1 - 1
        for q in range(nr):
            p = cfg[c_rsi + 2 * q]
            oc = cfg[c_rsi + 2 * q + 1]
            gain = fs[r, o_rg + q]
            loss = fs[r, o_rl + q]
            if moves > p:
                a = (p - 1) / p
                b = 1.0 / p
                gain = gain * a + g * b
                loss = loss * a + lo * b
            else:
                gain = gain + g
                loss = loss + lo
                if moves < p:
                    if commit:
                        fs[r, o_rg + q] = gain
                        fs[r, o_rl + q] = loss
                    out[j, oc] = NAN
                    continue
                gain /= p
                loss /= p
            if commit:
                fs[r, o_rg + q] = gain
                fs[r, o_rl + q] = loss
            tot = gain + loss
            out[j, oc] = 100.0 * (gain / tot) if tot != 0.0 else 0.0
    else:
        for q in range(nr):
            out[j, cfg[c_rsi + 2 * q + 1]] = NAN
    if commit:
        fs[r, i] = x
        ist[r, 0] = i + 1 if i + 1 < cap else 0
        ist[r, 1] = n1
        fs[r, o_prev] = x
        if check:
            ist[r, 2] = bucket


@_bare
def close_one(r, x, bucket, out, fs, ist, cfg, commit):
    """One confirmed close (``commit``, setting the row's last bucket) or preview, into
    ``out[0]``; the caller has checked it."""
    _close_step(r, x, bucket, 0, out, fs, ist, cfg, commit, commit)


@_bare
def close_update(rows, closes, buckets, pre, status, out, fs, ist, cfg, commit, check):
    """Apply (``commit``) or preview the closes to their rows, in order; one output row each
    (NaN while warming up). With ``check``, ``pre[j]`` is 0, 1 (not confirmed) or a bad-input
    code >= 3, a bucket not after the row's last one is stale, and ``status[j]`` tells what
    happened (ST_* or the code); nothing is applied for a non-zero status."""
    width = out.shape[1]
    for j in range(len(rows)):
        r = rows[j]
        bucket = 0
        if check:
            code = pre[j]
            bucket = buckets[j]
            if code == ST_NOT_CONFIRMED:
                status[j] = code
            elif ist[r, 2] != NO_BUCKET and bucket <= ist[r, 2]:
                status[j] = ST_STALE
            elif code != 0:
                status[j] = code
            else:
                status[j] = ST_OK
            if status[j] != ST_OK:
                for q in range(width):
                    out[j, q] = NAN
                continue
        _close_step(r, closes[j], bucket, j, out, fs, ist, cfg, commit, check)
