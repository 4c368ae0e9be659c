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
* ``g[G_*]`` — watermark, counters, per-reason rejections and bookkeeping.
* ``out[r, O_*]`` — emitted candles, in the order ``CandlePipeline`` publishes them.
"""

# numba kernels: arrays in, arrays out; mypy cannot see through @njit
# mypy: disable-error-code="no-untyped-def,no-any-return"

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

NS = 1_000_000_000
IST_OFFSET = 19_800 * NS
DAY = 86_400 * NS
ANCHOR = (9 * 3600 + 15 * 60) * NS - IST_OFFSET  # 09:15 IST as an offset from UTC midnight
MAX_PRICE = 1 << 53  # exclusive, as SecondAggregator
MAX_TS = 1 << 62  # exclusive: the fast path's time domain (year 2116) keeps int64 sums exact
FAR = 1 << 62  # TimeframeBuilder.flush's "end of time"
BIG = (1 << 63) - 1
NO_SESSION = -1  # session-close table entry of a day without a session

# per-token columns of ``tok``
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
T_BASEVAL = 10  # a restored volume baseline, waiting for the first tick
T_HASBASE = 11
T_TOKEN = 12  # the token id
T_RANK = 13  # position in token-id order
T_OPENPOS = 14  # position in the list of open seconds, or -1
T_TFSEEN = 15  # the timeframe builder has a series for this token
T_EXCH = 16  # exchange code of the aggregator's state
T_TFEXCH = 17  # exchange code of the timeframe builder's series
T_ALLOWED = 18  # may create state (known token, or no known set)
T_WANT = 19  # bit j: forming candles of timeframe j are wanted (the forming filter)
T_WANTOK = 20  # T_WANT is up to date with the filter
NTOKCOL = 21

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
G_REJ = 20  # six counters from here, in REASONS order
NG = 32

R_BAD_PRICE = 0
R_BAD_TS = 1
R_BAD_VOL = 2
R_UNKNOWN = 3
R_VOLDEC = 4
R_LATE = 5
REASONS = ("bad_price", "bad_timestamp", "bad_volume", "unknown_token", "volume_decreased", "late")

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


def new_globals(close_delay_ns: int, emit_forming: bool) -> Any:
    g = np.zeros(NG, dtype=np.int64)
    g[G_WM] = -1
    g[G_PWM] = -1
    g[G_SWEPT] = -1
    g[G_MINEND] = BIG
    g[G_DELAY] = close_delay_ns
    g[G_FORMING] = 1 if emit_forming else 0
    g[G_LASTREJ_POS] = -1
    g[G_LASTREJ_REASON] = -1
    return g


# --- tokens -------------------------------------------------------------------------------------


@njit(cache=True)
def _hash(key: int, mask: int) -> int:
    h = key * _HASH_MUL
    h ^= h >> 29
    return h & mask


@njit(cache=True)
def map_tokens(tokens, start, hkeys, hvals, idx, tok, g, limit):
    """Token ids from ``start`` on → dense indices in ``idx``; an unseen id gets the next index
    (and its ``tok`` row the id). Stops before a new id once ``limit`` indices exist and returns
    that position (``len(tokens)`` when done); the count is ``g[G_NTOK]``."""
    mask = len(hkeys) - 1
    ntok = g[G_NTOK]
    n = len(tokens)
    for i in range(start, n):
        key = tokens[i]
        s = _hash(key, mask)
        while True:
            v = hvals[s]
            if v < 0:
                if ntok >= limit:
                    g[G_NTOK] = ntok
                    return i
                hkeys[s] = key
                hvals[s] = ntok
                tok[ntok, T_TOKEN] = key
                idx[i] = ntok
                ntok += 1
                break
            if hkeys[s] == key:
                idx[i] = v
                break
            s = (s + 1) & mask
    g[G_NTOK] = ntok
    return n


@njit(cache=True)
def bucket_start(ts: int, tf: int) -> int:
    """:func:`mandi.pipeline.timeframes.bucket_start` (Python floor semantics, as numba's)."""
    day = (ts + IST_OFFSET) // DAY
    anchor = day * DAY + ANCHOR
    if tf >= 86_400:
        return anchor
    step = tf * NS
    return anchor + ((ts - anchor) // step) * step


@njit(cache=True)
def _end(start, tf, closes, day0):
    # TimeframeBuilder._end: the bucket end, or the session close when it falls inside
    end = start + tf * NS
    d = (start + IST_OFFSET) // DAY - day0
    if 0 <= d < len(closes):
        c = closes[d]
        if c != NO_SESSION and start < c and c < end:
            return c
    return end


@njit(cache=True)
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


@njit(cache=True)
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
        b = bk[k, j]
        bs = b[B_START]
        done = b[B_DONE]
        same = False
        if done == 0:
            if bs <= ts and ts < b[B_END]:
                same = True
            elif bucket_start(ts, tf) == bs:
                same = True  # data after a session close the clock has not confirmed yet
        if same:
            if h > b[B_HIGH]:
                b[B_HIGH] = h
            if lo < b[B_LOW]:
                b[B_LOW] = lo
            b[B_VOL] += v
            b[B_N] += nt
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
                    b[B_OPEN],
                    b[B_HIGH],
                    b[B_LOW],
                    b[B_CLOSE],
                    b[B_VOL],
                    b[B_OI],
                    b[B_N],
                    1,
                    tex,
                )
                g[G_CONFIRMED] += 1
            end = _end(start, tf, closes, g[G_DAY0])
            b[B_START] = start
            b[B_END] = end
            b[B_DONE] = 0
            b[B_OPEN] = o
            b[B_HIGH] = h
            b[B_LOW] = lo
            b[B_VOL] = v
            b[B_N] = nt
            if start >= 0 and end < g[G_MINEND]:
                g[G_MINEND] = end
        b[B_CLOSE] = c
        b[B_OI] = oi
        active |= 1 << j
    if g[G_FORMING] != 0:
        active &= tok[k, T_WANT]
        for j in range(len(tfs)):
            if (active >> j) & 1:
                b = bk[k, j]
                r = _emit(
                    out,
                    r,
                    token,
                    tfs[j],
                    b[B_START],
                    b[B_OPEN],
                    b[B_HIGH],
                    b[B_LOW],
                    b[B_CLOSE],
                    b[B_VOL],
                    b[B_OI],
                    b[B_N],
                    0,
                    tex,
                )
    return r


@njit(cache=True)
def _tfb_advance(now, bk, g, tok, tfs, tfb_order, out, r):
    """TimeframeBuilder.advance: confirm every open bucket whose end is at or before ``now``."""
    if now < g[G_MINEND]:
        return r  # nothing open ends by now
    low = BIG
    for q in range(g[G_NTFB]):
        k = tfb_order[q]
        for j in range(len(tfs)):
            b = bk[k, j]
            if b[B_DONE] == 0 and b[B_START] >= 0:
                e = b[B_END]
                if e <= now:
                    r = _emit(
                        out,
                        r,
                        tok[k, T_TOKEN],
                        tfs[j],
                        b[B_START],
                        b[B_OPEN],
                        b[B_HIGH],
                        b[B_LOW],
                        b[B_CLOSE],
                        b[B_VOL],
                        b[B_OI],
                        b[B_N],
                        1,
                        tok[k, T_TFEXCH],
                    )
                    g[G_CONFIRMED] += 1
                    b[B_DONE] = 1
                elif e < low:
                    low = e
    g[G_MINEND] = low
    return r


@njit(cache=True)
def _open_add(k, tok, g, open_list):
    m = g[G_NOPEN]
    open_list[m] = k
    tok[k, T_OPENPOS] = m
    g[G_NOPEN] = m + 1


@njit(cache=True)
def _open_remove(k, tok, g, open_list):
    m = g[G_NOPEN] - 1
    pos = tok[k, T_OPENPOS]
    last = open_list[m]
    open_list[pos] = last
    tok[last, T_OPENPOS] = pos
    tok[k, T_OPENPOS] = -1
    g[G_NOPEN] = m


@njit(cache=True)
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


@njit(cache=True)
def _sweep(cutoff, tok, bk, g, tfs, closes, rank_order, open_list, tfb_order, out, r):
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
        for q in range(ntok):
            k = rank_order[q]
            s = tok[k, T_SEC]
            if s >= 0 and s <= cutoff:
                r = _close_second(k, tok, bk, g, tfs, closes, tfb_order, open_list, out, r)
        return r
    ranks = np.empty(cnt, dtype=np.int64)
    c = 0
    for q in range(nopen):
        k = open_list[q]
        if tok[k, T_SEC] <= cutoff:
            ranks[c] = tok[k, T_RANK]
            c += 1
    ranks.sort()
    for q in range(cnt):
        r = _close_second(
            rank_order[ranks[q]], tok, bk, g, tfs, closes, tfb_order, open_list, out, r
        )
    return r


@njit(cache=True)
def process(
    idx,
    ts,
    price,
    vol,
    lq,
    oi,
    exch,
    start,
    tok,
    bk,
    g,
    tfs,
    closes,
    rank_order,
    open_list,
    tfb_order,
    out,
):
    """CandlePipeline.handle_tick for ticks ``start..``; candles go to ``out`` from
    ``g[G_NOUT]``. Stops early (returning the next tick's position) when ``out`` might not
    hold the candles of the next tick; returns ``len(idx)`` when every tick is done."""
    n = len(idx)
    ntf = len(tfs)
    per_second = 1 + ntf * (1 + g[G_FORMING])  # records one 1 s candle can produce
    room = out.shape[0] - g[G_NTOK] * ntf  # keep space for a timeframe advance
    delay = g[G_DELAY]
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
        elif v < 0:
            reason = R_BAD_VOL
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
                    tok[k, T_CUM] = v
                    tok[k, T_OI] = oi[i]
                    tok[k, T_N] += 1
                    g[G_TICKS] += 1
            elif sec < cur or sec + NS + delay <= g[G_WM] or sec <= g[G_SWEPT]:
                reason = R_LATE
            elif v < tok[k, T_CUM]:
                reason = R_VOLDEC
            else:
                if cur >= 0:  # the token moves on: its previous second is complete
                    r = _close_second(k, tok, bk, g, tfs, closes, tfb_order, open_list, out, r)
                tok[k, T_SEC] = sec
                tok[k, T_OPEN] = p
                tok[k, T_HIGH] = p
                tok[k, T_LOW] = p
                tok[k, T_CLOSE] = p
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
                        cutoff, tok, bk, g, tfs, closes, rank_order, open_list, tfb_order, out, r
                    )
        if reason >= 0:
            g[G_REJ + reason] += 1
            g[G_LASTREJ_POS] = i
            g[G_LASTREJ_REASON] = reason
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


@njit(cache=True)
def advance(now, tok, bk, g, tfs, closes, rank_order, open_list, tfb_order, out):
    """CandlePipeline.advance(now): sweep the seconds by time, then the frames."""
    delay = g[G_DELAY]
    cutoff = now - delay - NS
    if cutoff > g[G_SWEPT]:
        g[G_SWEPT] = cutoff
    floor = now - now % NS
    if floor > g[G_WM]:
        g[G_WM] = floor
    r = _sweep(cutoff, tok, bk, g, tfs, closes, rank_order, open_list, tfb_order, out, g[G_NOUT])
    g[G_NOUT] = _tfb_advance(now - delay, bk, g, tok, tfs, tfb_order, out, r)


@njit(cache=True)
def flush(tok, bk, g, tfs, closes, rank_order, open_list, tfb_order, out):
    """CandlePipeline.flush: every open second, then every open bucket."""
    r = _sweep(BIG, tok, bk, g, tfs, closes, rank_order, open_list, tfb_order, out, g[G_NOUT])
    g[G_NOUT] = _tfb_advance(FAR, bk, g, tok, tfs, tfb_order, out, r)


@njit(cache=True)
def frames_candle(k, ts, o, h, lo, c, v, oi, nt, ex, tok, bk, g, tfs, closes, tfb_order, out):
    """TimeframeBuilder.handle_candle alone (warming the frames up from stored 1 s candles)."""
    g[G_NOUT] = _tfb_candle(
        k, ts, o, h, lo, c, v, oi, nt, ex, tok, bk, g, tfs, closes, tfb_order, out, g[G_NOUT]
    )


@njit(cache=True)
def frames_advance(now, tok, bk, g, tfs, tfb_order, out):
    """TimeframeBuilder.advance alone."""
    g[G_NOUT] = _tfb_advance(now, bk, g, tok, tfs, tfb_order, out, g[G_NOUT])


@njit(cache=True)
def rehash(tokens, hkeys, hvals):
    """Insert token ids (index = position) into an empty, larger table."""
    mask = len(hkeys) - 1
    for k in range(len(tokens)):
        s = _hash(tokens[k], mask)
        while hvals[s] >= 0:
            s = (s + 1) & mask
        hkeys[s] = tokens[k]
        hvals[s] = k


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
NSCOL = 10


@njit(cache=True)
def _grow2(a, need):
    if need <= a.shape[0]:
        return a
    size = max(need, 2 * a.shape[0])
    b = np.empty((size, a.shape[1]), dtype=a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True)
def _grow3(a, need):
    if need <= a.shape[1]:
        return a
    size = max(need, 2 * a.shape[1])
    b = np.empty((a.shape[0], size, a.shape[2]), dtype=a.dtype)
    b[:, : a.shape[1]] = a
    return b


@njit(cache=True)
def _in_rank_order(items, m, tok, rank_order, ntok, mark, order):
    """``order[:m]`` = ``items[:m]`` sorted by token id."""
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
        ranks = np.empty(m, dtype=np.int64)
        for q in range(m):
            ranks[q] = tok[items[q], T_RANK]
        ranks.sort()
        for q in range(m):
            order[q] = rank_order[ranks[q]]


@njit(cache=True)
def _flush_touched(j, bks, touched, tcount, tok, rank_order, ntok, mark, order, tfs, otf, ntfout):
    """Emit the buckets of timeframe ``j`` touched in its current grid bucket, by token id
    (``order`` is scratch space of its own)."""
    m = tcount[j]
    if m == 0:
        return otf
    _in_rank_order(touched[j], m, tok, rank_order, ntok, mark, order)
    otf = _grow3(otf, ntfout[j] + m)
    r = ntfout[j]
    tf = tfs[j]
    for q in range(m):
        k = order[q]
        b = bks[k, j]
        o = otf[j, r]
        o[O_TOKEN] = tok[k, T_TOKEN]
        o[O_TF] = tf
        o[O_BUCKET] = b[B_START]
        o[O_OPEN] = b[B_OPEN]
        o[O_HIGH] = b[B_HIGH]
        o[O_LOW] = b[B_LOW]
        o[O_CLOSE] = b[B_CLOSE]
        o[O_VOL] = b[B_VOL]
        o[O_OI] = b[B_OI]
        o[O_TICKS] = b[B_N]
        o[O_CLOSED] = 1
        o[O_EXCH] = tok[k, T_EXCH]
        r += 1
    ntfout[j] = r
    tcount[j] = 0
    return otf


@njit(cache=True)
def _finalize(
    sec,
    block,
    nblock,
    st,
    tok,
    bks,
    rank_order,
    mark,
    order,
    torder,
    touched,
    tcount,
    grid,
    gend,
    lo_,
    hi_,
    tfs,
    closes,
    day0,
    o1,
    n1,
    otf,
    ntfout,
    counts,
):
    """Second ``sec`` is complete: its 1 s candles by token id, each into the timeframes.
    Returns (status, o1, n1, otf)."""
    ntok = len(rank_order)
    _in_rank_order(block, nblock, tok, rank_order, ntok, mark, order)
    o1 = _grow2(o1, n1 + nblock)
    for q in range(nblock):
        k = order[q]
        s = st[k]
        vv = s[S_CUM] - s[S_BASE]
        o = o1[n1]
        o[O_TOKEN] = tok[k, T_TOKEN]
        o[O_TF] = 1
        o[O_BUCKET] = sec
        o[O_OPEN] = s[S_OPEN]
        o[O_HIGH] = s[S_HIGH]
        o[O_LOW] = s[S_LOW]
        o[O_CLOSE] = s[S_CLOSE]
        o[O_VOL] = vv
        o[O_OI] = s[S_OI]
        o[O_TICKS] = s[S_N]
        o[O_CLOSED] = 1
        o[O_EXCH] = tok[k, T_EXCH]
        n1 += 1
        for j in range(len(tfs)):
            tf = tfs[j]
            if not (lo_[j] <= sec and sec < hi_[j]):  # left the grid bucket (or the IST day)
                g0 = bucket_start(sec, tf)
                if g0 < grid[j] or g0 < 0:
                    return 1, o1, n1, otf
                if g0 != grid[j]:
                    otf = _flush_touched(
                        j,
                        bks,
                        touched,
                        tcount,
                        tok,
                        rank_order,
                        ntok,
                        mark,
                        torder,
                        tfs,
                        otf,
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
            b = bks[k, j]
            if b[B_START] == grid[j]:
                if b[B_DONE] != 0:
                    counts[6] += 1
                    continue
                if sec >= b[B_END]:  # after a session close: the clock confirmed the bucket
                    b[B_DONE] = 1
                    counts[6] += 1
                    continue
                if s[S_HIGH] > b[B_HIGH]:
                    b[B_HIGH] = s[S_HIGH]
                if s[S_LOW] < b[B_LOW]:
                    b[B_LOW] = s[S_LOW]
                b[B_VOL] += vv
                b[B_N] += s[S_N]
            else:
                b[B_START] = grid[j]
                b[B_END] = gend[j]
                b[B_DONE] = 0
                b[B_OPEN] = s[S_OPEN]
                b[B_HIGH] = s[S_HIGH]
                b[B_LOW] = s[S_LOW]
                b[B_VOL] = vv
                b[B_N] = s[S_N]
                touched[j, tcount[j]] = k
                tcount[j] += 1
            b[B_CLOSE] = s[S_CLOSE]
            b[B_OI] = s[S_OI]
    return 0, o1, n1, otf


@njit(cache=True)
def replay(idx, ts, price, vol, lq, oi, exch, tok, rank_order, tfs, closes, day0, counts):
    """One pass over a whole tick stream (close_delay 0, fresh state): the confirmed 1 s and
    timeframe candles, each in (bucket, token) order.

    ``counts`` receives the six rejection counters, the frames' late count [6], the last
    rejection's position [7] and reason [8], and the ticks [9] and 1 s candles [10]. Returns
    (status, 1 s records, timeframe records by timeframe, per-timeframe counts); status 1 means
    the stream needs the streaming kernel (a late or volume-decreasing tick, or a timeframe grid
    that goes back)."""
    n = len(idx)
    ntok = len(rank_order)
    ntf = len(tfs)
    one_exchange = len(exch) == 1
    st = np.zeros((ntok, NSCOL), dtype=np.int64)
    bks = np.zeros((ntok, ntf, NBCOL), dtype=np.int64)
    bks[:, :, B_START] = -1
    block = np.empty(ntok, dtype=np.int64)
    order = np.empty(ntok, dtype=np.int64)
    torder = np.empty(ntok, dtype=np.int64)
    mark = np.zeros(ntok, dtype=np.int64)
    touched = np.empty((ntf, ntok), dtype=np.int64)
    tcount = np.zeros(ntf, dtype=np.int64)
    grid = np.full(ntf, -1, dtype=np.int64)
    gend = np.zeros(ntf, dtype=np.int64)
    lo_ = np.zeros(ntf, dtype=np.int64)
    hi_ = np.zeros(ntf, dtype=np.int64)
    o1 = np.empty((max(1024, n // 2), NOCOL), dtype=np.int64)
    otf = np.empty((ntf, max(256, n // 32), NOCOL), dtype=np.int64)
    ntfout = np.zeros(ntf, dtype=np.int64)
    n1 = 0
    nblock = 0
    wm = -1
    ticks = 0
    status = 0
    for i in range(n):
        p = price[i]
        t = ts[i]
        v = vol[i]
        reason = -1
        k = idx[i]
        if not (p > 0 and p < MAX_PRICE):
            reason = R_BAD_PRICE
        elif t <= 0 or t >= MAX_TS:
            reason = R_BAD_TS
        elif v < 0:
            reason = R_BAD_VOL
        elif st[k, S_HAS] == 0:
            if tok[k, T_ALLOWED] == 0:
                reason = R_UNKNOWN
            else:
                st[k, S_HAS] = 1
                tok[k, T_EXCH] = exch[0] if one_exchange else exch[i]
                base = v - lq[i]
                st[k, S_CUM] = base if base > 0 else 0
                st[k, S_SEC] = -1
        if reason >= 0:
            counts[reason] += 1
            counts[7] = i
            counts[8] = reason
            continue
        sec = t - t % NS
        if sec != wm:
            if sec < wm:
                return 1, o1[:0], otf[:, :0], ntfout  # a late tick
            if nblock:
                status, o1, n1, otf = _finalize(
                    wm,
                    block,
                    nblock,
                    st,
                    tok,
                    bks,
                    rank_order,
                    mark,
                    order,
                    torder,
                    touched,
                    tcount,
                    grid,
                    gend,
                    lo_,
                    hi_,
                    tfs,
                    closes,
                    day0,
                    o1,
                    n1,
                    otf,
                    ntfout,
                    counts,
                )
                if status:
                    return 1, o1[:0], otf[:, :0], ntfout
                nblock = 0
            wm = sec
        s = st[k]
        if v < s[S_CUM]:
            return 1, o1[:0], otf[:, :0], ntfout  # the cumulative volume went down
        if s[S_SEC] == sec:
            if p > s[S_HIGH]:
                s[S_HIGH] = p
            elif p < s[S_LOW]:
                s[S_LOW] = p
            s[S_CLOSE] = p
            s[S_CUM] = v
            s[S_OI] = oi[i]
            s[S_N] += 1
        else:
            s[S_SEC] = sec
            s[S_BASE] = s[S_CUM]
            s[S_OPEN] = p
            s[S_HIGH] = p
            s[S_LOW] = p
            s[S_CLOSE] = p
            s[S_CUM] = v
            s[S_OI] = oi[i]
            s[S_N] = 1
            block[nblock] = k
            nblock += 1
        ticks += 1
    if nblock:
        status, o1, n1, otf = _finalize(
            wm,
            block,
            nblock,
            st,
            tok,
            bks,
            rank_order,
            mark,
            order,
            torder,
            touched,
            tcount,
            grid,
            gend,
            lo_,
            hi_,
            tfs,
            closes,
            day0,
            o1,
            n1,
            otf,
            ntfout,
            counts,
        )
        if status:
            return 1, o1[:0], otf[:, :0], ntfout
    for j in range(ntf):
        otf = _flush_touched(
            j, bks, touched, tcount, tok, rank_order, ntok, mark, torder, tfs, otf, ntfout
        )
    counts[9] = ticks
    counts[10] = n1
    return 0, o1[:n1], otf, ntfout
