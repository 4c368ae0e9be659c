"""Numba kernels of the columnar candle pipeline (used by :mod:`mandi.pipeline.fast`).

Pure functions over preallocated NumPy arrays: no I/O, no clock, no threads. Each kernel applies,
statement for statement, the rules of :class:`~mandi.pipeline.seconds.SecondAggregator` and
:class:`~mandi.pipeline.timeframes.TimeframeBuilder` as :class:`~mandi.pipeline.candles.
CandlePipeline` composes them; the Python classes are the specification, and the differential
tests in ``tests/unit/pipeline/test_fast.py`` hold the two to the same output.

State layout (all ``int64``):

* ``tok[k, T_*]`` — one row per token index ``k``: the open second (OHLC, cumulative volumes, OI,
  tick count), whether the aggregator has state for it, a restored volume baseline, the token id,
  its rank in token-id order, its place in the list of open seconds, and its exchange codes.
* ``bk[k, j, B_*]`` — the forming bucket of token ``k`` in timeframe ``j``.
* ``g[G_*]`` — watermark, counters, per-reason rejections, bookkeeping and the tick policy's
  parameters (:mod:`mandi.pipeline.validate`: the kernels apply its rules in its order).
* ``out[r, O_*]`` — emitted candles, in the order ``CandlePipeline`` publishes them.
"""

# numba kernels: arrays in, arrays out; mypy cannot see through @njit
# mypy: disable-error-code="no-untyped-def,no-any-return"

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

# The kernels allocate nothing — every array, work space included, comes from the caller — so
# they are compiled without numba's runtime (``_nrt=False``): no reference counting, whose
# atomic increments around every array argument and view otherwise cost more than the work
# (measured: 5x slower). ``error_model="numpy"``: nothing here can raise (no division by a
# variable that can be 0). The small helpers are inlined into their callers.
_OPTIONS: dict[str, Any] = {"cache": True, "error_model": "numpy", "_nrt": False}
_bare: Any = njit(**_OPTIONS)
_inline: Any = njit(**_OPTIONS, inline="always")

NS = 1_000_000_000
IST_OFFSET = 19_800 * NS
DAY = 86_400 * NS
ANCHOR = (9 * 3600 + 15 * 60) * NS - IST_OFFSET  # 09:15 IST as an offset from UTC midnight
MAX_PRICE = 1 << 53  # exclusive, as the tick policy (mandi.pipeline.validate)
MAX_TS = 1 << 62  # exclusive: the time domain (year 2116) keeps int64 sums exact
MAX_FIELD = 1 << 53  # exclusive bound of the other numeric fields
FAR = 1 << 62  # TimeframeBuilder.flush's "end of time"
BIG = (1 << 63) - 1
NO_SESSION = -1  # session-close table entry of a day without a session

# per-token columns of ``tok`` (what every tick reads and writes first, in as few cache lines)
T_SEC = 0  # open second (ns) or -1
T_OPEN = 1
T_HIGH = 2
T_LOW = 3
T_CLOSE = 4
T_BASE = 5  # cumulative volume before the open second
T_CUM = 6  # latest cumulative volume
T_OI = 7
T_N = 8
T_HAS = 9  # the aggregator has state for this token
T_REF = 10  # last accepted price (0 = none): the centre of the price band
T_PENDN = 11  # how many out-of-band ticks in a row agreed with each other ...
T_LIMLO = 12  # circuit limits, paise (0 = unknown)
T_LIMHI = 13
T_PENDP = 14  # ... and the latest of them
T_BASEVAL = 15  # a restored volume baseline, waiting for the first tick
T_HASBASE = 16
T_TOKEN = 17  # the token id
T_RANK = 18  # position in token-id order
T_OPENPOS = 19  # position in the list of open seconds, or -1
T_TFSEEN = 20  # the timeframe builder has a series for this token
T_EXCH = 21  # exchange code of the aggregator's state
T_TFEXCH = 22  # exchange code of the timeframe builder's series
T_ALLOWED = 23  # may create state (known token, or no known set)
T_WANT = 24  # bit j: forming candles of timeframe j are wanted (the forming filter)
T_WANTOK = 25  # T_WANT is up to date with the filter
NTOKCOL = 26

# per (token, timeframe) columns of ``bk``
B_START = 0
B_END = 1
B_DONE = 2
B_OPEN = 3
B_HIGH = 4
B_LOW = 5
B_CLOSE = 6
B_VOL = 7
B_OI = 8
B_N = 9
NBCOL = 10

# globals ``g``
G_WM = 0  # SecondAggregator watermark
G_PWM = 1  # CandlePipeline's copy of it
G_SWEPT = 2  # latest sweep cutoff
G_TICKS = 3
G_CANDLES = 4  # 1 s candles confirmed
G_CONFIRMED = 5  # timeframe candles confirmed
G_NOPEN = 6
G_NTFB = 7
G_MINEND = 8  # lower bound of the end of every open timeframe bucket
G_NTOK = 9
G_NOUT = 10
G_DELAY = 11
G_FORMING = 12
G_DAY0 = 13  # first day of the session-close table
G_TFLATE = 14
G_LASTREJ_POS = 15
G_LASTREJ_REASON = 16
G_STOP = 17  # why process() stopped early: 1 output full, 2 a new token needs its filter answer
G_REJ = 20  # NREASONS counters from here, in REASONS order
G_TSLIMIT = 30  # a tick stamped after this is future_timestamp (the clock + max_ahead)
G_BAND_BP = 31  # the tick policy: price band (basis points), its floor (paise), confirmation
G_BAND_MIN = 32
G_CONFIRM = 33
G_VMAX = 34  # largest cumulative volume
G_VSTEP = 35  # largest rise of the cumulative volume
G_LIMITS = 36  # some token has circuit limits (else the kernels skip reading them)
NG = 40

R_BAD_PRICE = 0
R_BAD_TS = 1
R_BAD_VOL = 2
R_UNKNOWN = 3
R_VOLDEC = 4
R_LATE = 5
R_FUTURE = 6
R_BAD_FIELD = 7
R_BAND = 8
R_VJUMP = 9
REASONS = (
    "bad_price",
    "bad_timestamp",
    "bad_volume",
    "unknown_token",
    "volume_decreased",
    "late",
    "future_timestamp",
    "bad_field",
    "price_band",
    "volume_jump",
)
NREASONS = len(REASONS)

# output record columns
O_TOKEN = 0
O_TF = 1
O_BUCKET = 2
O_OPEN = 3
O_HIGH = 4
O_LOW = 5
O_CLOSE = 6
O_VOL = 7
O_OI = 8
O_TICKS = 9
O_CLOSED = 10
O_EXCH = 11
NOCOL = 12

_HASH_MUL = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64 (Fibonacci hashing)


def policy_array(band_bp: int, band_min: int, confirm: int, vmax: int, vstep: int) -> Any:
    """The tick policy's parameters as the kernels take them."""
    return np.array([band_bp, band_min, confirm, vmax, vstep], dtype=np.int64)


def new_globals(close_delay_ns: int, emit_forming: bool, policy: Any) -> Any:
    """The globals of a fresh streaming state; ``policy`` from :func:`policy_array`."""
    g = np.zeros(NG, dtype=np.int64)
    g[G_WM] = -1
    g[G_PWM] = -1
    g[G_SWEPT] = -1
    g[G_MINEND] = BIG
    g[G_DELAY] = close_delay_ns
    g[G_FORMING] = 1 if emit_forming else 0
    g[G_LASTREJ_POS] = -1
    g[G_LASTREJ_REASON] = -1
    g[G_TSLIMIT] = BIG
    g[G_BAND_BP : G_VSTEP + 1] = policy
    return g


# --- the tick policy ------------------------------------------------------------------------------


@_inline
def band_ok(ref, p, bp, floor):
    """:func:`mandi.pipeline.validate.band_allows` (the same integer arithmetic)."""
    if p >= ref:
        move = p - ref
        low = ref
    else:
        move = ref - p
        low = p
    width = (low // 10_000) * bp + (low % 10_000) * bp // 10_000
    if width < floor:
        width = floor
    return move <= width


@_inline
def out_of_band(p, limlo, limhi, ref, st, k, cp, cn, bp, floor, confirm):
    """SecondAggregator._out_of_band for token row ``k`` of ``st``, whose columns ``cp`` and
    ``cn`` hold the latest out-of-band price and how many agreed in a row; True = reject. A move
    within the floor needs no division (the usual tick)."""
    if (limlo != 0 and p < limlo) or (limhi != 0 and p > limhi):
        return True
    move = p - ref if p >= ref else ref - p
    if move <= floor or ref <= 0 or bp <= 0 or band_ok(ref, p, bp, floor):
        if st[k, cn] != 0:
            st[k, cn] = 0
        return False
    if st[k, cn] != 0 and band_ok(st[k, cp], p, bp, floor):
        st[k, cn] += 1
    else:
        st[k, cn] = 1
    st[k, cp] = p
    if st[k, cn] < confirm:
        return True
    st[k, cn] = 0  # confirmed: the market really moved there
    return False


# --- tokens -------------------------------------------------------------------------------------


@_bare
def map_tokens(tokens, start, table, shift, idx, tok, g, limit):
    """Token ids from ``start`` on → dense indices in ``idx``, through the open-addressing
    ``table`` (rows: id, index or −1; Fibonacci hashing on its top ``64 − shift`` bits). An
    unseen id gets the next index (and its ``tok`` row the id). Stops before a new id once
    ``limit`` indices exist and returns that position (``len(tokens)`` when done); the count
    is ``g[G_NTOK]``."""
    mask = table.shape[0] - 1
    ntok = g[G_NTOK]
    n = len(tokens)
    for i in range(start, n):
        key = tokens[i]
        s = ((key * _HASH_MUL) >> shift) & mask
        while True:
            if table[s, 1] < 0:
                if ntok >= limit:
                    g[G_NTOK] = ntok
                    return i
                table[s, 0] = key
                table[s, 1] = ntok
                tok[ntok, T_TOKEN] = key
                idx[i] = ntok
                ntok += 1
                break
            if table[s, 0] == key:
                idx[i] = table[s, 1]
                break
            s = (s + 1) & mask
    g[G_NTOK] = ntok
    return n


@_inline
def bucket_start(ts, tf):
    """:func:`mandi.pipeline.timeframes.bucket_start` (Python floor semantics, as numba's)."""
    day = (ts + IST_OFFSET) // DAY
    anchor = day * DAY + ANCHOR
    if tf >= 86_400:
        return anchor
    step = tf * NS
    return anchor + ((ts - anchor) // step) * step


@_inline
def _end(start, tf, closes, day0):
    # TimeframeBuilder._end: the bucket end, or the session close when it falls inside
    end = start + tf * NS
    d = (start + IST_OFFSET) // DAY - day0
    if 0 <= d < len(closes):
        c = closes[d]
        if c != NO_SESSION and start < c and c < end:
            return c
    return end


@_inline
def _emit(out, r, token, tf, bucket, o, h, lo, c, v, oi, n, closed, ex):
    out[r, O_TOKEN] = token
    out[r, O_TF] = tf
    out[r, O_BUCKET] = bucket
    out[r, O_OPEN] = o
    out[r, O_HIGH] = h
    out[r, O_LOW] = lo
    out[r, O_CLOSE] = c
    out[r, O_VOL] = v
    out[r, O_OI] = oi
    out[r, O_TICKS] = n
    out[r, O_CLOSED] = closed
    out[r, O_EXCH] = ex
    return r + 1


@_inline
def _tfb_candle(k, ts, o, h, lo, c, v, oi, nt, ex, tok, bk, g, tfs, closes, tfb_order, out, r):
    """TimeframeBuilder.handle_candle for a base candle of token index ``k``."""
    if tok[k, T_TFSEEN] == 0:
        tok[k, T_TFSEEN] = 1
        tok[k, T_TFEXCH] = ex
        m = g[G_NTFB]
        tfb_order[m] = k
        g[G_NTFB] = m + 1
    token = tok[k, T_TOKEN]
    tex = tok[k, T_TFEXCH]
    active = 0
    for j in range(len(tfs)):
        tf = tfs[j]
        bs = bk[k, j, B_START]
        done = bk[k, j, B_DONE]
        same = False
        if done == 0:
            if bs <= ts and ts < bk[k, j, B_END]:
                same = True
            elif bucket_start(ts, tf) == bs:
                same = True  # data after a session close the clock has not confirmed yet
        if same:
            if h > bk[k, j, B_HIGH]:
                bk[k, j, B_HIGH] = h
            if lo < bk[k, j, B_LOW]:
                bk[k, j, B_LOW] = lo
            bk[k, j, B_VOL] += v
            bk[k, j, B_N] += nt
        else:
            start = bucket_start(ts, tf)
            if start < bs or (start == bs and done != 0):
                g[G_TFLATE] += 1
                continue
            if bs >= 0 and done == 0:
                r = _emit(
                    out,
                    r,
                    token,
                    tf,
                    bs,
                    bk[k, j, B_OPEN],
                    bk[k, j, B_HIGH],
                    bk[k, j, B_LOW],
                    bk[k, j, B_CLOSE],
                    bk[k, j, B_VOL],
                    bk[k, j, B_OI],
                    bk[k, j, B_N],
                    1,
                    tex,
                )
                g[G_CONFIRMED] += 1
            end = _end(start, tf, closes, g[G_DAY0])
            bk[k, j, B_START] = start
            bk[k, j, B_END] = end
            bk[k, j, B_DONE] = 0
            bk[k, j, B_OPEN] = o
            bk[k, j, B_HIGH] = h
            bk[k, j, B_LOW] = lo
            bk[k, j, B_VOL] = v
            bk[k, j, B_N] = nt
            if start >= 0 and end < g[G_MINEND]:
                g[G_MINEND] = end
        bk[k, j, B_CLOSE] = c
        bk[k, j, B_OI] = oi
        active |= 1 << j
    if g[G_FORMING] != 0:
        active &= tok[k, T_WANT]
        for j in range(len(tfs)):
            if (active >> j) & 1:
                r = _emit(
                    out,
                    r,
                    token,
                    tfs[j],
                    bk[k, j, B_START],
                    bk[k, j, B_OPEN],
                    bk[k, j, B_HIGH],
                    bk[k, j, B_LOW],
                    bk[k, j, B_CLOSE],
                    bk[k, j, B_VOL],
                    bk[k, j, B_OI],
                    bk[k, j, B_N],
                    0,
                    tex,
                )
    return r


@_bare
def _tfb_advance(now, bk, g, tok, tfs, tfb_order, out, r):
    """TimeframeBuilder.advance: confirm every open bucket whose end is at or before ``now``."""
    if now < g[G_MINEND]:
        return r  # nothing open ends by now
    low = BIG
    for q in range(g[G_NTFB]):
        k = tfb_order[q]
        for j in range(len(tfs)):
            if bk[k, j, B_DONE] == 0 and bk[k, j, B_START] >= 0:
                e = bk[k, j, B_END]
                if e <= now:
                    r = _emit(
                        out,
                        r,
                        tok[k, T_TOKEN],
                        tfs[j],
                        bk[k, j, B_START],
                        bk[k, j, B_OPEN],
                        bk[k, j, B_HIGH],
                        bk[k, j, B_LOW],
                        bk[k, j, B_CLOSE],
                        bk[k, j, B_VOL],
                        bk[k, j, B_OI],
                        bk[k, j, B_N],
                        1,
                        tok[k, T_TFEXCH],
                    )
                    g[G_CONFIRMED] += 1
                    bk[k, j, B_DONE] = 1
                elif e < low:
                    low = e
    g[G_MINEND] = low
    return r


@_inline
def _open_add(k, tok, g, open_list):
    m = g[G_NOPEN]
    open_list[m] = k
    tok[k, T_OPENPOS] = m
    g[G_NOPEN] = m + 1


@_inline
def _open_remove(k, tok, g, open_list):
    m = g[G_NOPEN] - 1
    pos = tok[k, T_OPENPOS]
    last = open_list[m]
    open_list[pos] = last
    tok[last, T_OPENPOS] = pos
    tok[k, T_OPENPOS] = -1
    g[G_NOPEN] = m


@_inline
def _close_second(k, tok, bk, g, tfs, closes, tfb_order, open_list, out, r):
    """SecondAggregator._close, then the candle into the timeframe builder."""
    sec = tok[k, T_SEC]
    o = tok[k, T_OPEN]
    h = tok[k, T_HIGH]
    lo = tok[k, T_LOW]
    c = tok[k, T_CLOSE]
    v = tok[k, T_CUM] - tok[k, T_BASE]
    oi = tok[k, T_OI]
    n = tok[k, T_N]
    ex = tok[k, T_EXCH]
    r = _emit(out, r, tok[k, T_TOKEN], 1, sec, o, h, lo, c, v, oi, n, 1, ex)
    tok[k, T_BASE] = tok[k, T_CUM]
    tok[k, T_SEC] = -1
    g[G_CANDLES] += 1
    _open_remove(k, tok, g, open_list)
    return _tfb_candle(
        k, sec, o, h, lo, c, v, oi, n, ex, tok, bk, g, tfs, closes, tfb_order, out, r
    )


@_bare
def _close_second_call(k, tok, bk, g, tfs, closes, tfb_order, open_list, out, r):
    """:func:`_close_second` as a call (rare paths: keeps the big kernels small to compile)."""
    return _close_second(k, tok, bk, g, tfs, closes, tfb_order, open_list, out, r)


@_bare
def _tfb_candle_call(k, ts, o, h, lo, c, v, oi, nt, ex, tok, bk, g, tfs, closes, tfb_order, out, r):
    """:func:`_tfb_candle` as a call."""
    return _tfb_candle(
        k, ts, o, h, lo, c, v, oi, nt, ex, tok, bk, g, tfs, closes, tfb_order, out, r
    )


@_inline
def _heapsort(a, n):
    """Sort ``a[:n]`` in place without allocating (the runtime-free kernels cannot)."""
    for start in range(n // 2 - 1, -1, -1):
        _sift(a, start, n)
    for end in range(n - 1, 0, -1):
        x = a[0]
        a[0] = a[end]
        a[end] = x
        _sift(a, 0, end)


@_inline
def _sift(a, root, n):
    while True:
        child = 2 * root + 1
        if child >= n:
            return
        if child + 1 < n and a[child + 1] > a[child]:
            child += 1
        if a[root] >= a[child]:
            return
        x = a[root]
        a[root] = a[child]
        a[child] = x
        root = child


@_bare
def _sweep(cutoff, tok, bk, g, tfs, closes, rank_order, open_list, tfb_order, scratch, out, r):
    """Close every open second at or before ``cutoff``, in token-id order."""
    nopen = g[G_NOPEN]
    if nopen == 0:
        return r
    cnt = 0
    for q in range(nopen):
        if tok[open_list[q], T_SEC] <= cutoff:
            cnt += 1
    if cnt == 0:
        return r
    ntok = g[G_NTOK]
    if cnt * 8 >= ntok:  # dense: walk every token in id order
        c = 0
        for q in range(ntok):
            k = rank_order[q]
            s = tok[k, T_SEC]
            if s >= 0 and s <= cutoff:
                scratch[c] = k
                c += 1
    else:  # sparse: sort the few ranks
        c = 0
        for q in range(nopen):
            k = open_list[q]
            if tok[k, T_SEC] <= cutoff:
                scratch[c] = tok[k, T_RANK]
                c += 1
        _heapsort(scratch, cnt)
        for q in range(cnt):
            scratch[q] = rank_order[scratch[q]]
    for q in range(cnt):  # one call site: the closing code is inlined once
        r = _close_second(scratch[q], tok, bk, g, tfs, closes, tfb_order, open_list, out, r)
    return r


@_bare
def process(
    idx,
    ts,
    price,
    vol,
    lq,
    oi,
    fields,
    exch,
    why,
    start,
    tok,
    bk,
    g,
    tfs,
    closes,
    rank_order,
    open_list,
    tfb_order,
    scratch,
    out,
):
    """CandlePipeline.handle_tick for ticks ``start..``; candles go to ``out`` from
    ``g[G_NOUT]``. Stops early (returning the next tick's position) when ``out`` might not
    hold the candles of the next tick; returns ``len(idx)`` when every tick is done.
    ``fields`` is the bitwise OR of each tick's other numeric fields (or −1 when one is not an
    int); a rejected tick's reason goes to ``why[i]``."""
    n = len(idx)
    ntf = len(tfs)
    per_second = 1 + ntf * (1 + g[G_FORMING])  # records one 1 s candle can produce
    room = out.shape[0] - g[G_NTOK] * ntf  # keep space for a timeframe advance
    delay = g[G_DELAY]
    tslimit = g[G_TSLIMIT]
    vmax = g[G_VMAX]
    vstep = g[G_VSTEP]
    bp = g[G_BAND_BP]
    floor = g[G_BAND_MIN]
    confirm = g[G_CONFIRM]
    limits = g[G_LIMITS] != 0
    check_fields = len(fields) != 0  # empty: every tick's other fields are known to be good
    one_exchange = len(exch) == 1
    r = g[G_NOUT]
    for i in range(start, n):
        if r + (1 + g[G_NOPEN]) * per_second > room:
            g[G_NOUT] = r
            g[G_STOP] = 1
            return i
        reason = -1
        ask = False
        p = price[i]
        t = ts[i]
        v = vol[i]
        k = idx[i]
        if not (p > 0 and p < MAX_PRICE):
            reason = R_BAD_PRICE
        elif t <= 0 or t >= MAX_TS:
            reason = R_BAD_TS
        elif t > tslimit:
            reason = R_FUTURE
        elif v < 0 or v > vmax:
            reason = R_BAD_VOL
        elif check_fields and (fields[i] < 0 or fields[i] >= MAX_FIELD):
            reason = R_BAD_FIELD
        elif tok[k, T_HAS] == 0:
            if tok[k, T_ALLOWED] == 0:
                reason = R_UNKNOWN
            else:  # the token's first tick: new state (even if the tick is rejected below)
                tok[k, T_HAS] = 1
                tok[k, T_EXCH] = exch[0] if one_exchange else exch[i]
                if tok[k, T_HASBASE] != 0:
                    base = tok[k, T_BASEVAL]
                    tok[k, T_HASBASE] = 0
                else:
                    base = v - lq[i]
                if base < 0:
                    base = 0
                tok[k, T_BASE] = base
                tok[k, T_CUM] = base
                tok[k, T_SEC] = -1
                tok[k, T_OPEN] = 0
                tok[k, T_HIGH] = 0
                tok[k, T_LOW] = 0
                tok[k, T_CLOSE] = 0
                tok[k, T_OI] = 0
                tok[k, T_N] = 0
                ask = tok[k, T_WANTOK] == 0
        if reason < 0:
            lo = tok[k, T_LIMLO] if limits else 0
            hi = tok[k, T_LIMHI] if limits else 0
            if out_of_band(p, lo, hi, tok[k, T_REF], tok, k, T_PENDP, T_PENDN, bp, floor, confirm):
                reason = R_BAND
            elif v - tok[k, T_CUM] > vstep:
                reason = R_VJUMP
        if reason < 0:
            sec = t - t % NS
            cur = tok[k, T_SEC]
            if sec == cur:  # hot path: the open second
                if v < tok[k, T_CUM]:
                    reason = R_VOLDEC
                else:
                    if p > tok[k, T_HIGH]:
                        tok[k, T_HIGH] = p
                    elif p < tok[k, T_LOW]:
                        tok[k, T_LOW] = p
                    tok[k, T_CLOSE] = p
                    tok[k, T_REF] = p
                    tok[k, T_CUM] = v
                    tok[k, T_OI] = oi[i]
                    tok[k, T_N] += 1
                    g[G_TICKS] += 1
            elif sec < cur or sec + NS + delay <= g[G_WM] or sec <= g[G_SWEPT]:
                reason = R_LATE
            elif v < tok[k, T_CUM]:
                reason = R_VOLDEC
            else:
                if cur >= 0:  # the token moves on (the first to tick in a new second)
                    r = _close_second_call(k, tok, bk, g, tfs, closes, tfb_order, open_list, out, r)
                tok[k, T_SEC] = sec
                tok[k, T_OPEN] = p
                tok[k, T_HIGH] = p
                tok[k, T_LOW] = p
                tok[k, T_CLOSE] = p
                tok[k, T_REF] = p
                tok[k, T_CUM] = v
                tok[k, T_OI] = oi[i]
                tok[k, T_N] = 1
                _open_add(k, tok, g, open_list)
                g[G_TICKS] += 1
                if sec > g[G_WM]:
                    g[G_WM] = sec
                    cutoff = sec - delay - NS
                    if cutoff > g[G_SWEPT]:
                        g[G_SWEPT] = cutoff
                    r = _sweep(
                        cutoff,
                        tok,
                        bk,
                        g,
                        tfs,
                        closes,
                        rank_order,
                        open_list,
                        tfb_order,
                        scratch,
                        out,
                        r,
                    )
        if reason >= 0:
            g[G_REJ + reason] += 1
            g[G_LASTREJ_POS] = i
            g[G_LASTREJ_REASON] = reason
            why[i] = reason
        if g[G_WM] != g[G_PWM]:  # CandlePipeline: the watermark moved, advance the frames
            g[G_PWM] = g[G_WM]
            r = _tfb_advance(g[G_WM] - delay, bk, g, tok, tfs, tfb_order, out, r)
        if ask:  # a new token: ask the forming filter before it can emit anything
            g[G_NOUT] = r
            g[G_STOP] = 2
            return i + 1
    g[G_NOUT] = r
    g[G_STOP] = 0
    return n


@_bare
def advance(now, tok, bk, g, tfs, closes, rank_order, open_list, tfb_order, scratch, out):
    """CandlePipeline.advance(now): sweep the seconds by time, then the frames."""
    delay = g[G_DELAY]
    cutoff = now - delay - NS
    if cutoff > g[G_SWEPT]:
        g[G_SWEPT] = cutoff
    floor = now - now % NS
    if floor > g[G_WM]:
        g[G_WM] = floor
    r = _sweep(
        cutoff, tok, bk, g, tfs, closes, rank_order, open_list, tfb_order, scratch, out, g[G_NOUT]
    )
    g[G_NOUT] = _tfb_advance(now - delay, bk, g, tok, tfs, tfb_order, out, r)


@_bare
def flush(tok, bk, g, tfs, closes, rank_order, open_list, tfb_order, scratch, out):
    """CandlePipeline.flush: every open second, then every open bucket."""
    zero = g[G_NOUT] - g[G_NOUT]  # an int64 variable: literal arguments would compile anew
    r = _sweep(
        zero + BIG,
        tok,
        bk,
        g,
        tfs,
        closes,
        rank_order,
        open_list,
        tfb_order,
        scratch,
        out,
        g[G_NOUT],
    )
    g[G_NOUT] = _tfb_advance(zero + FAR, bk, g, tok, tfs, tfb_order, out, r)


@_bare
def frames_candle(k, ts, o, h, lo, c, v, oi, nt, ex, tok, bk, g, tfs, closes, tfb_order, out):
    """TimeframeBuilder.handle_candle alone (warming the frames up from stored 1 s candles)."""
    g[G_NOUT] = _tfb_candle_call(
        k, ts, o, h, lo, c, v, oi, nt, ex, tok, bk, g, tfs, closes, tfb_order, out, g[G_NOUT]
    )


@_bare
def frames_advance(now, tok, bk, g, tfs, tfb_order, out):
    """TimeframeBuilder.advance alone."""
    g[G_NOUT] = _tfb_advance(now, bk, g, tok, tfs, tfb_order, out, g[G_NOUT])


@_bare
def rehash(tokens, table, shift):
    """Insert token ids (index = position) into an empty, larger table."""
    mask = table.shape[0] - 1
    for k in range(len(tokens)):
        s = ((tokens[k] * _HASH_MUL) >> shift) & mask
        while table[s, 1] >= 0:
            s = (s + 1) & mask
        table[s, 0] = tokens[k]
        table[s, 1] = k


# --- replay ---------------------------------------------------------------------------------------
#
# With close_delay 0 a stream without late or volume-decreasing ticks has a simple structure:
# accepted ticks never go back in seconds, so the open seconds of all tokens are confirmed
# together when the first tick of a later second arrives, followed by one timeframe advance
# to that second. A timeframe bucket is then done before a base candle of the same bucket
# arrives exactly when the candle's second is at or after the bucket's end (data after a
# session close inside the bucket) and an earlier candle opened the bucket. That makes the
# whole replay a single pass that emits candles in canonical order; a stream outside these
# conditions is reported (status 1) and replayed through the streaming kernel instead.

S_SEC = 0
S_OPEN = 1
S_HIGH = 2
S_LOW = 3
S_CLOSE = 4
S_BASE = 5
S_CUM = 6
S_OI = 7
S_N = 8
S_HAS = 9
S_REF = 10  # the price band's state, as T_REF, T_PENDP, T_PENDN
S_PENDP = 11
S_PENDN = 12
NSCOL = 13

# ``counts`` of the replay kernel
C_TFLATE = NREASONS  # the rejection counters come first, in REASONS order
C_LASTPOS = NREASONS + 1
C_LASTREASON = NREASONS + 2
C_TICKS = NREASONS + 3
C_N1 = NREASONS + 4
NCOUNTS = NREASONS + 5


@_bare
def _in_rank_order(items, m, tok, rank_order, ntok, mark, order, scratch):
    """``order[:m]`` = ``items[:m]`` sorted by token id (``mark`` all zero, ``scratch`` room
    for ``m``; neither allocates)."""
    if m <= 16:
        for q in range(m):
            order[q] = items[q]
        for q in range(1, m):  # insertion sort, by rank
            x = order[q]
            rx = tok[x, T_RANK]
            p = q - 1
            while p >= 0 and tok[order[p], T_RANK] > rx:
                order[p + 1] = order[p]
                p -= 1
            order[p + 1] = x
    elif m * 16 >= ntok:
        for q in range(m):
            mark[tok[items[q], T_RANK]] = 1
        c = 0
        for rr in range(ntok):
            if mark[rr]:
                mark[rr] = 0
                order[c] = rank_order[rr]
                c += 1
    else:
        for q in range(m):
            scratch[q] = tok[items[q], T_RANK]
        _heapsort(scratch, m)
        for q in range(m):
            order[q] = rank_order[scratch[q]]


@_bare
def _flush_touched(
    j, bks, touched, tcount, tok, rank_order, mark, order, scratch, tfs, out, bases, ntfout
):
    """Emit the buckets of timeframe ``j`` touched in its current grid bucket, by token id, to
    ``out`` from row ``bases[j] + ntfout[j]``."""
    m = tcount[j]
    if m == 0:
        return
    ntok = len(rank_order)
    _in_rank_order(touched[j], m, tok, rank_order, ntok, mark, order, scratch)
    r = bases[j] + ntfout[j]
    tf = tfs[j]
    for q in range(m):
        k = order[q]
        out[r, O_TOKEN] = tok[k, T_TOKEN]
        out[r, O_TF] = tf
        out[r, O_BUCKET] = bks[k, j, B_START]
        out[r, O_OPEN] = bks[k, j, B_OPEN]
        out[r, O_HIGH] = bks[k, j, B_HIGH]
        out[r, O_LOW] = bks[k, j, B_LOW]
        out[r, O_CLOSE] = bks[k, j, B_CLOSE]
        out[r, O_VOL] = bks[k, j, B_VOL]
        out[r, O_OI] = bks[k, j, B_OI]
        out[r, O_TICKS] = bks[k, j, B_N]
        out[r, O_CLOSED] = 1
        out[r, O_EXCH] = tok[k, T_EXCH]
        r += 1
    ntfout[j] += m
    tcount[j] = 0


@_bare
def _finalize(
    sec,
    block,
    nblock,
    st,
    tok,
    bks,
    rank_order,
    tfs,
    closes,
    day0,
    order,
    torder,
    mark,
    scratch,
    touched,
    tcount,
    grid,
    gend,
    lo_,
    hi_,
    o1,
    n1,
    bases,
    ntfout,
    counts,
    seconds,
):
    """Second ``sec`` is complete: its 1 s candles by token id, each into the timeframes.
    Returns the new count of 1 s records, or -1 if the stream needs the streaming kernel."""
    ntok = len(rank_order)
    ntf = len(tfs)
    for j in range(ntf):  # one grid bucket per timeframe for the whole second
        tf = tfs[j]
        if not (lo_[j] <= sec and sec < hi_[j]):  # left the grid bucket (or the IST day)
            g0 = bucket_start(sec, tf)
            if g0 < grid[j] or g0 < 0:
                return -1
            if g0 != grid[j]:
                _flush_touched(
                    j,
                    bks,
                    touched,
                    tcount,
                    tok,
                    rank_order,
                    mark,
                    torder,
                    scratch,
                    tfs,
                    o1,
                    bases,
                    ntfout,
                )
                grid[j] = g0
                gend[j] = _end(g0, tf, closes, day0)
            day_lo = ((sec + IST_OFFSET) // DAY) * DAY - IST_OFFSET
            if tf >= 86_400:
                lo_[j] = day_lo
                hi_[j] = day_lo + DAY
            else:
                lo_[j] = max(g0, day_lo)
                hi_[j] = min(g0 + tf * NS, day_lo + DAY)
    _in_rank_order(block, nblock, tok, rank_order, ntok, mark, order, scratch)
    for q in range(nblock):
        k = order[q]
        # locals: the stores below may not alias them, so they stay in registers
        o = st[k, S_OPEN]
        h = st[k, S_HIGH]
        lo = st[k, S_LOW]
        c = st[k, S_CLOSE]
        vv = st[k, S_CUM] - st[k, S_BASE]
        oi = st[k, S_OI]
        nt = st[k, S_N]
        if seconds:
            o1[n1, O_TOKEN] = tok[k, T_TOKEN]
            o1[n1, O_TF] = 1
            o1[n1, O_BUCKET] = sec
            o1[n1, O_OPEN] = o
            o1[n1, O_HIGH] = h
            o1[n1, O_LOW] = lo
            o1[n1, O_CLOSE] = c
            o1[n1, O_VOL] = vv
            o1[n1, O_OI] = oi
            o1[n1, O_TICKS] = nt
            o1[n1, O_CLOSED] = 1
            o1[n1, O_EXCH] = tok[k, T_EXCH]
            n1 += 1
        for j in range(ntf):
            if bks[k, j, B_START] == grid[j]:
                if bks[k, j, B_DONE] != 0 or sec >= bks[k, j, B_END]:
                    # done, or data after a session close: the clock confirmed the bucket
                    bks[k, j, B_DONE] = 1
                    counts[C_TFLATE] += 1
                    continue
                if h > bks[k, j, B_HIGH]:
                    bks[k, j, B_HIGH] = h
                if lo < bks[k, j, B_LOW]:
                    bks[k, j, B_LOW] = lo
                bks[k, j, B_VOL] += vv
                bks[k, j, B_N] += nt
            else:
                bks[k, j, B_START] = grid[j]
                bks[k, j, B_END] = gend[j]
                bks[k, j, B_DONE] = 0
                bks[k, j, B_OPEN] = o
                bks[k, j, B_HIGH] = h
                bks[k, j, B_LOW] = lo
                bks[k, j, B_VOL] = vv
                bks[k, j, B_N] = nt
                touched[j, tcount[j]] = k
                tcount[j] += 1
            bks[k, j, B_CLOSE] = c
            bks[k, j, B_OI] = oi
    return n1


@_bare
def replay(
    idx,
    ts,
    price,
    vol,
    lq,
    oi,
    fields,
    exch,
    policy,
    tok,
    rank_order,
    tfs,
    closes,
    day0,
    counts,
    out,
    bases,
    ntfout,
    st,
    bks,
    work,
    touched,
    gridst,
    seconds,
):
    """One pass over a whole tick stream (close_delay 0, fresh state): the confirmed candles,
    each timeframe in (bucket, token) order — the 1 s ones from row 0 of ``out`` (room for a
    row per tick), timeframe ``j``'s from row ``bases[j]`` (room for every (token, bucket) the
    stream can touch).

    ``counts`` receives the rejection counters, the frames' late count [C_TFLATE], the last
    rejection's position and reason, the ticks and the 1 s candles (``C_*``); ``ntfout``
    the timeframe candle counts. Work space, zeroed by the caller: ``st`` (tokens × NSCOL),
    ``bks`` (tokens × timeframes × NBCOL, starts −1), ``work`` (5 × tokens), ``touched``
    (timeframes × tokens), ``gridst`` (5 × timeframes, row 1 −1). Returns 0, or 1 when the
    stream needs the streaming kernel (a late or volume-decreasing tick, or a timeframe grid
    that goes back). ``seconds`` false: no 1 s records (the timeframes only)."""
    n = len(idx)
    ntf = len(tfs)
    one_exchange = len(exch) == 1
    block = work[0]
    order = work[1]
    torder = work[2]
    scratch = work[3]
    mark = work[4]
    tcount = gridst[0]
    grid = gridst[1]
    gend = gridst[2]
    lo_ = gridst[3]
    hi_ = gridst[4]
    bp = policy[0]
    floor = policy[1]
    confirm = policy[2]
    vmax = policy[3]
    vstep = policy[4]
    check_fields = len(fields) != 0  # empty: every tick's other fields are known to be good
    n1 = 0
    nblock = 0
    wm = -1
    ticks = 0
    for i in range(n):
        p = price[i]
        t = ts[i]
        v = vol[i]
        k = idx[i]
        reason = -1
        if not (p > 0 and p < MAX_PRICE):
            reason = R_BAD_PRICE
        elif t <= 0 or t >= MAX_TS:
            reason = R_BAD_TS
        elif v < 0 or v > vmax:
            reason = R_BAD_VOL
        elif check_fields and (fields[i] < 0 or fields[i] >= MAX_FIELD):
            reason = R_BAD_FIELD
        elif st[k, S_HAS] == 0:
            if tok[k, T_ALLOWED] == 0:
                reason = R_UNKNOWN
            else:
                st[k, S_HAS] = 1
                tok[k, T_EXCH] = exch[0] if one_exchange else exch[i]
                base = v - lq[i]
                st[k, S_CUM] = base if base > 0 else 0
                st[k, S_SEC] = -1
                st[k, S_REF] = tok[k, T_REF]
        if reason < 0:
            lo = tok[k, T_LIMLO]
            hi = tok[k, T_LIMHI]
            if out_of_band(p, lo, hi, st[k, S_REF], st, k, S_PENDP, S_PENDN, bp, floor, confirm):
                reason = R_BAND
            elif v - st[k, S_CUM] > vstep:
                reason = R_VJUMP
        if reason >= 0:
            counts[reason] += 1
            counts[C_LASTPOS] = i
            counts[C_LASTREASON] = reason
            continue
        sec = t - t % NS
        if sec != wm:
            if sec < wm:
                return 1  # a late tick
            if nblock:
                n1 = _finalize(
                    wm,
                    block,
                    nblock,
                    st,
                    tok,
                    bks,
                    rank_order,
                    tfs,
                    closes,
                    day0,
                    order,
                    torder,
                    mark,
                    scratch,
                    touched,
                    tcount,
                    grid,
                    gend,
                    lo_,
                    hi_,
                    out,
                    n1,
                    bases,
                    ntfout,
                    counts,
                    seconds,
                )
                if n1 < 0:
                    return 1
                nblock = 0
            wm = sec
        if v < st[k, S_CUM]:
            return 1  # the cumulative volume went down
        if st[k, S_SEC] == sec:
            if p > st[k, S_HIGH]:
                st[k, S_HIGH] = p
            elif p < st[k, S_LOW]:
                st[k, S_LOW] = p
            st[k, S_CLOSE] = p
            st[k, S_REF] = p
            st[k, S_CUM] = v
            st[k, S_OI] = oi[i]
            st[k, S_N] += 1
        else:
            st[k, S_SEC] = sec
            st[k, S_BASE] = st[k, S_CUM]
            st[k, S_OPEN] = p
            st[k, S_HIGH] = p
            st[k, S_LOW] = p
            st[k, S_CLOSE] = p
            st[k, S_REF] = p
            st[k, S_CUM] = v
            st[k, S_OI] = oi[i]
            st[k, S_N] = 1
            block[nblock] = k
            nblock += 1
        ticks += 1
    if nblock:
        n1 = _finalize(
            wm,
            block,
            nblock,
            st,
            tok,
            bks,
            rank_order,
            tfs,
            closes,
            day0,
            order,
            torder,
            mark,
            scratch,
            touched,
            tcount,
            grid,
            gend,
            lo_,
            hi_,
            out,
            n1,
            bases,
            ntfout,
            counts,
            seconds,
        )
        if n1 < 0:
            return 1
    for j in range(ntf):
        _flush_touched(
            j, bks, touched, tcount, tok, rank_order, mark, torder, scratch, tfs, out, bases, ntfout
        )
    counts[C_TICKS] = ticks
    counts[C_N1] = n1
    return 0
