"""Numba kernels behind :mod:`mandi.model.batches`: a token → dense index hash table and in-order
scatters of batch columns into per-token state. Arrays in, arrays out; nothing allocated."""

# numba kernels: mypy cannot see through @njit
# mypy: disable-error-code="no-untyped-def,no-any-return"

from __future__ import annotations

from typing import Any

from numba import njit

# no numba runtime: every array comes from the caller (see mandi.pipeline._fastkernels)
_OPTIONS: dict[str, Any] = {"cache": True, "error_model": "numpy", "_nrt": False}
_bare: Any = njit(**_OPTIONS)

HASH_MUL = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64 (Fibonacci hashing)


@_bare
def index_tokens(tokens, table, shift, out, ids, count, limit, insert):
    """Dense index of every token in ``out``, through the open-addressing ``table`` (rows: id,
    index or −1 when empty). ``insert``: an unseen id gets the next index (``ids[index]`` = id)
    until ``limit`` indices exist — the position of the first token that did not fit is returned
    with the new count, as ``position * 2**32 + count`` (position ``len(tokens)`` when done);
    otherwise an unseen id maps to −1."""
    mask = table.shape[0] - 1
    n = len(tokens)
    for i in range(n):
        key = tokens[i]
        s = ((key * HASH_MUL) >> shift) & mask
        while True:
            if table[s, 1] < 0:
                if not insert:
                    out[i] = -1
                    break
                if count >= limit:
                    return i * 4294967296 + count
                table[s, 0] = key
                table[s, 1] = count
                ids[count] = key
                out[i] = count
                count += 1
                break
            if table[s, 0] == key:
                out[i] = table[s, 1]
                break
            s = (s + 1) & mask
    return n * 4294967296 + count


@_bare
def rehash(ids, count, table, shift):
    """Insert ``ids[:count]`` (index = position) into an empty, larger table."""
    mask = table.shape[0] - 1
    for k in range(count):
        s = ((ids[k] * HASH_MUL) >> shift) & mask
        while table[s, 1] >= 0:
            s = (s + 1) & mask
        table[s, 0] = ids[k]
        table[s, 1] = k


@_bare
def scatter_rows(dst, slots, src, lo, hi, seen):
    """``dst[:, slots[i]] = src[:, i]`` for ``lo <= i < hi`` in order (the latest row of a slot
    wins), marking ``seen[slot] = 1``."""
    m = dst.shape[0]
    for i in range(lo, hi):
        k = slots[i]
        for f in range(m):
            dst[f, k] = src[f, i]
        seen[k] = 1


@_bare
def scatter_column(dst, slots, values, lo, hi):
    """``dst[slots[i]] = values[i]`` for ``lo <= i < hi`` in order (the latest wins)."""
    for i in range(lo, hi):
        dst[slots[i]] = values[i]


@_bare
def first_flagged(flags, slots, lo, hi):
    """The first ``i`` in ``[lo, hi)`` whose slot is flagged (``flags[slots[i]] != 0``), else
    ``hi``."""
    for i in range(lo, hi):
        if flags[slots[i]] != 0:
            return i
    return hi


@_bare
def first_at_or_after(values, lo, hi, threshold):
    """The first ``i`` in ``[lo, hi)`` with ``values[i] >= threshold``, else ``hi``."""
    for i in range(lo, hi):
        if values[i] >= threshold:
            return i
    return hi


@_bare
def second_starts(ts, out):
    """Where the event second changes (the first index of each run of same-second ticks);
    returns how many starts ``out`` holds (index 0 included when ``ts`` is not empty)."""
    n = len(ts)
    if n == 0:
        return 0
    out[0] = 0
    k = 1
    prev = ts[0] // 1_000_000_000
    for i in range(1, n):
        s = ts[i] // 1_000_000_000
        if s != prev:
            out[k] = i
            k += 1
            prev = s
    return k
