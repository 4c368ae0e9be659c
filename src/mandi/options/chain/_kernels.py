"""Fused numba kernels of the chain matrix: one call per snapshot does the quote checks, IV,
Greeks, theoretical prices, baskets, whole-chain totals and max pain (a few dozen NumPy calls on
~100-element arrays would cost more in dispatch than the arithmetic)."""

from __future__ import annotations

import math

import numba as nb

from mandi.options._kernels import (
    black_price_pair,
    bsm_greeks_one,
    forward_and_discount,
    implied_vol_one,
)
from mandi.options._special import jit, jit_parallel

# StrikeStatus codes not produced by the IV solver
MISSING = 10
NO_PRICE = 11
CROSSED = 12

# summary vector layout
S_ATM_IV = 0
S_TOTAL_CE_OI, S_TOTAL_PE_OI, S_TOTAL_CE_VOL, S_TOTAL_PE_VOL = 1, 2, 3, 4
S_TOTAL_CE_CHG, S_TOTAL_PE_CHG, S_MAX_PAIN = 5, 6, 7
S_ITM_CE_OI, S_ITM_PE_OI, S_OTM_CE_OI, S_OTM_PE_OI = 8, 9, 10, 11
S_CE_DELTA_OI, S_PE_DELTA_OI, S_CE_ABS_DOI, S_PE_ABS_DOI = 12, 13, 14, 15
S_ITM_CE_ABS_DOI, S_ITM_PE_ABS_DOI = 16, 17
N_SUMMARY = 18
# (summary slot, raw column) of the whole-chain totals
_TOTALS = (
    (S_TOTAL_CE_OI, 5),
    (S_TOTAL_PE_OI, 11),
    (S_TOTAL_CE_VOL, 4),
    (S_TOTAL_PE_VOL, 10),
    (S_TOTAL_CE_CHG, 6),
    (S_TOTAL_PE_CHG, 12),
)

# raw row layout: strike, then ltp, bid, ask, volume, oi, oi_change for CE (1-6) and PE (7-12)
# matrix channels: CE base 0-5, PE base 6-11, underlying 12, CE IV+Greeks 13-17, PE 18-22


@jit
def to_rupees_and_contracts(raw, lot):  # type: ignore[no-untyped-def]
    """In place: strikes and prices paise → rupees, quantities shares → contracts."""
    inv_lot = 1.0 / lot
    for i in range(raw.shape[0]):
        raw[i, 0] *= 0.01
        for side in range(2):
            c = 1 + 6 * side
            raw[i, c] *= 0.01
            raw[i, c + 1] *= 0.01
            raw[i, c + 2] *= 0.01
            raw[i, c + 3] *= inv_lot
            raw[i, c + 4] *= inv_lot
            raw[i, c + 5] *= inv_lot


@jit
def slots_at_or_before(times, head, count, targets, out):  # type: ignore[no-untyped-def]
    """For each target time the ring slot of the newest entry at or before it (−1: none).
    Entries are in time order from slot ``head`` backwards over ``count`` slots."""
    capacity = times.size
    for w in range(targets.size):
        target = targets[w]
        out[w] = -1
        if count == 0 or times[(head - count + 1) % capacity] > target:
            continue
        lo = 0  # ages: 0 newest … count − 1 oldest; times fall with age
        hi = count - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if times[(head - mid) % capacity] <= target:
                hi = mid
            else:
                lo = mid + 1
        out[w] = (head - lo) % capacity


@jit
def _positive_or_nan(v: float) -> float:
    return v if v > 0.0 else math.nan


@jit
def chain_kernel(  # type: ignore[no-untyped-def]
    raw,
    rows,
    grid,
    spot,
    t,
    r,
    q,
    atm,
    use_mid,
    diff_pos,
    diff_neg,
    m,
    status,
    theo,
    diff,
    highlight,
    classes,
    summary,
):
    """Fill the (23, W) matrix ``m`` and the per-strike outputs for one snapshot.

    ``raw`` (n, 13) is the whole chain in rupees/contracts sorted by strike; ``rows`` (W,) maps
    each grid strike to its raw row (−1: not listed). ``classes`` (2, W): ITM 1 / ATM 0 /
    OTM −1 for CE and PE. ``summary`` receives the scalars (layout above)."""
    width = grid.size
    nan = math.nan
    forward, df = forward_and_discount(spot, r, q, t)
    # ATM IV from the listed strike nearest the underlying (the lower one on a tie)
    n = raw.shape[0]
    atm_row = -1
    best = math.inf
    for i in range(n):
        d = abs(raw[i, 0] - spot)
        if d < best:
            best = d
            atm_row = i
    atm_sum = 0.0
    atm_count = 0
    if atm_row >= 0:
        for side in range(2):
            price = _positive_or_nan(raw[atm_row, 1 + 6 * side])
            v, st = implied_vol_one(price, forward, raw[atm_row, 0], t, df, side == 0)
            if st == 0:
                atm_sum += v
                atm_count += 1
    atm_iv = atm_sum / atm_count if atm_count > 0 else nan
    summary[:] = 0.0
    summary[S_ATM_IV] = atm_iv

    for j in range(width):
        k = grid[j]
        i = rows[j]
        m[12, j] = spot
        theo_call, theo_put = black_price_pair(forward, k, t, df, atm_iv)
        for side in range(2):
            base = 6 * side
            col = 1 + 6 * side
            greeks_ch = 13 + 5 * side
            call = side == 0
            tp = theo_call if call else theo_put
            if i < 0 or (math.isnan(raw[i, col]) and math.isnan(raw[i, col + 4])):
                for c in range(6):
                    m[base + c, j] = nan
                for c in range(5):
                    m[greeks_ch + c, j] = nan
                status[side, j] = MISSING
                theo[side, j] = tp
                diff[side, j] = nan
                highlight[side, j] = 0
                continue
            ltp = _positive_or_nan(raw[i, col])
            bid = _positive_or_nan(raw[i, col + 1])
            ask = _positive_or_nan(raw[i, col + 2])
            crossed = bid > ask
            if crossed:
                bid = nan
                ask = nan
            m[base, j] = ltp
            m[base + 1, j] = bid
            m[base + 2, j] = ask
            m[base + 3, j] = raw[i, col + 3]
            m[base + 4, j] = raw[i, col + 4]
            m[base + 5, j] = raw[i, col + 5]
            price = ltp
            if use_mid and bid > 0.0 and ask > 0.0:
                price = 0.5 * (bid + ask)
            v, st = implied_vol_one(price, forward, k, t, df, call)
            if not price > 0.0:
                code = NO_PRICE
            elif st != 0:
                code = st
            elif crossed:
                code = CROSSED
            else:
                code = 0
            status[side, j] = code
            m[greeks_ch, j] = v
            g = bsm_greeks_one(spot, k, t, r, q, v, call)
            m[greeks_ch + 1, j] = g[0]
            m[greeks_ch + 2, j] = g[1]
            m[greeks_ch + 3, j] = g[2]
            m[greeks_ch + 4, j] = g[3]
            theo[side, j] = tp
            d = ltp - tp
            diff[side, j] = d
            highlight[side, j] = 1 if d > diff_pos else (-1 if d < -diff_neg else 0)
        # moneyness classes and window baskets (OI in contracts, NaN counts as 0)
        if k == atm:
            ce_class = 0
            pe_class = 0
        else:
            ce_class = 1 if k < spot else -1
            pe_class = 1 if k > spot else -1
        classes[0, j] = ce_class
        classes[1, j] = pe_class
        ce_oi = m[4, j] if m[4, j] == m[4, j] else 0.0
        pe_oi = m[10, j] if m[10, j] == m[10, j] else 0.0
        ce_d = m[14, j] if m[14, j] == m[14, j] else 0.0
        pe_d = m[19, j] if m[19, j] == m[19, j] else 0.0
        summary[S_CE_DELTA_OI] += ce_oi * ce_d
        summary[S_PE_DELTA_OI] += pe_oi * pe_d
        summary[S_CE_ABS_DOI] += abs(ce_oi * ce_d)
        summary[S_PE_ABS_DOI] += abs(pe_oi * pe_d)
        if ce_class == 1:
            summary[S_ITM_CE_OI] += ce_oi
            summary[S_ITM_CE_ABS_DOI] += abs(ce_oi * ce_d)
        elif ce_class == -1:
            summary[S_OTM_CE_OI] += ce_oi
        if pe_class == 1:
            summary[S_ITM_PE_OI] += pe_oi
            summary[S_ITM_PE_ABS_DOI] += abs(pe_oi * pe_d)
        elif pe_class == -1:
            summary[S_OTM_PE_OI] += pe_oi

    # whole-chain totals and max pain (strikes ascending)
    for i in range(n):
        for s_idx, c in _TOTALS:
            v = raw[i, c]
            if v == v:
                summary[s_idx] += v
    summary[S_MAX_PAIN] = max_pain_sorted(raw)


@jit
def base_kernel(raw, rows, grid, spot, atm, m, classes, summary):  # type: ignore[no-untyped-def]
    """What :func:`chain_kernel` computes without an implied volatility, statement for statement
    the same: the base channels 0-12 of ``m`` (its IV and Greek channels NaN until the full
    kernel runs), the moneyness classes, and the summary's whole-chain totals, max pain and
    ITM/OTM OI baskets (the IV-dependent entries stay 0, the ATM IV NaN)."""
    width = grid.size
    nan = math.nan
    n = raw.shape[0]
    summary[:] = 0.0
    summary[S_ATM_IV] = nan
    for j in range(width):
        k = grid[j]
        i = rows[j]
        m[12, j] = spot
        for side in range(2):
            base = 6 * side
            col = 1 + 6 * side
            greeks_ch = 13 + 5 * side
            for c in range(5):
                m[greeks_ch + c, j] = nan
            if i < 0 or (math.isnan(raw[i, col]) and math.isnan(raw[i, col + 4])):
                for c in range(6):
                    m[base + c, j] = nan
                continue
            ltp = _positive_or_nan(raw[i, col])
            bid = _positive_or_nan(raw[i, col + 1])
            ask = _positive_or_nan(raw[i, col + 2])
            if bid > ask:
                bid = nan
                ask = nan
            m[base, j] = ltp
            m[base + 1, j] = bid
            m[base + 2, j] = ask
            m[base + 3, j] = raw[i, col + 3]
            m[base + 4, j] = raw[i, col + 4]
            m[base + 5, j] = raw[i, col + 5]
        if k == atm:
            ce_class = 0
            pe_class = 0
        else:
            ce_class = 1 if k < spot else -1
            pe_class = 1 if k > spot else -1
        classes[0, j] = ce_class
        classes[1, j] = pe_class
        ce_oi = m[4, j] if m[4, j] == m[4, j] else 0.0
        pe_oi = m[10, j] if m[10, j] == m[10, j] else 0.0
        if ce_class == 1:
            summary[S_ITM_CE_OI] += ce_oi
        elif ce_class == -1:
            summary[S_OTM_CE_OI] += ce_oi
        if pe_class == 1:
            summary[S_ITM_PE_OI] += pe_oi
        elif pe_class == -1:
            summary[S_OTM_PE_OI] += pe_oi
    for i in range(n):
        for s_idx, c in _TOTALS:
            v = raw[i, c]
            if v == v:
                summary[s_idx] += v
    summary[S_MAX_PAIN] = max_pain_sorted(raw)


@jit
def max_pain_sorted(raw):  # type: ignore[no-untyped-def]
    """Max-pain strike of a chain sorted by strike: prefix sums, O(n). NaN OI counts as 0."""
    n = raw.shape[0]
    if n == 0:
        return math.nan
    put_total = 0.0
    put_k_total = 0.0
    any_oi = False
    for i in range(n):
        p = raw[i, 11] if raw[i, 11] == raw[i, 11] else 0.0
        put_total += p
        put_k_total += p * raw[i, 0]
        if p > 0.0 or raw[i, 5] > 0.0:
            any_oi = True
    if not any_oi:
        return math.nan
    call_cum = 0.0  # Σ CE over strikes below s
    call_k_cum = 0.0
    put_tail = put_total  # Σ PE over strikes ≥ s
    put_k_tail = put_k_total
    best = math.inf
    best_k = math.nan
    for i in range(n):
        k = raw[i, 0]
        p = raw[i, 11] if raw[i, 11] == raw[i, 11] else 0.0
        put_tail -= p  # strikes strictly above s
        put_k_tail -= p * k
        pain = (k * call_cum - call_k_cum) + (put_k_tail - k * put_tail)
        if pain < best:
            best = pain
            best_k = k
        c = raw[i, 5] if raw[i, 5] == raw[i, 5] else 0.0
        call_cum += c
        call_k_cum += c * k
    return best_k


@jit
def oi_window_kernel(data, ring_strikes, found, grid, step, m, pct):  # type: ignore[no-untyped-def]
    """OI % change per window, side and strike against the slots ``found`` (−1: none), each
    strike looked up by value in that slot's own grid."""
    width = grid.size
    for w in range(found.size):
        s = found[w]
        if s < 0:
            continue
        k0 = ring_strikes[s, 0]
        for j in range(width):
            c = round((grid[j] - k0) / step)
            if c < 0 or c >= width or abs(ring_strikes[s, c] - grid[j]) > 1e-6 * step:
                continue
            for side in range(2):
                ch = 4 + 6 * side
                then = data[s, ch, c]
                if then > 0.0:
                    pct[w, side, j] = (m[ch, j] - then) / then * 100.0


@jit
def _batch_one(  # type: ignore[no-untyped-def]
    i,
    raw,
    offsets,
    rows,
    grids,
    scalars,
    r,
    q,
    use_mid,
    diff_pos,
    diff_neg,
    m,
    status,
    theo,
    diff,
    highlight,
    classes,
    summary,
):
    chain_kernel(
        raw[offsets[i] : offsets[i + 1]],
        rows[i],
        grids[i],
        scalars[i, 0],
        scalars[i, 1],
        r,
        q,
        scalars[i, 2],
        use_mid,
        diff_pos,
        diff_neg,
        m[i],
        status[i],
        theo[i],
        diff[i],
        highlight[i],
        classes[i],
        summary[i],
    )


@jit
def chain_batch_kernel(  # type: ignore[no-untyped-def]
    raw,
    offsets,
    rows,
    grids,
    scalars,
    r,
    q,
    use_mid,
    diff_pos,
    diff_neg,
    m,
    status,
    theo,
    diff,
    highlight,
    classes,
    summary,
):
    """:func:`chain_kernel` over many chains: chain ``i`` is ``raw[offsets[i]:offsets[i+1]]``
    with window ``rows[i]``/``grids[i]`` and (spot, t, atm) = ``scalars[i]``."""
    for i in range(rows.shape[0]):
        _batch_one(
            i,
            raw,
            offsets,
            rows,
            grids,
            scalars,
            r,
            q,
            use_mid,
            diff_pos,
            diff_neg,
            m,
            status,
            theo,
            diff,
            highlight,
            classes,
            summary,
        )


@jit_parallel
def chain_batch_kernel_par(  # type: ignore[no-untyped-def]
    raw,
    offsets,
    rows,
    grids,
    scalars,
    r,
    q,
    use_mid,
    diff_pos,
    diff_neg,
    m,
    status,
    theo,
    diff,
    highlight,
    classes,
    summary,
):
    for i in nb.prange(rows.shape[0]):
        _batch_one(
            i,
            raw,
            offsets,
            rows,
            grids,
            scalars,
            r,
            q,
            use_mid,
            diff_pos,
            diff_neg,
            m,
            status,
            theo,
            diff,
            highlight,
            classes,
            summary,
        )
