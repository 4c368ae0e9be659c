"""A single-pass scanner of NSE's chain JSON bytes straight into columns (numba).

The fast path (:mod:`mandi.feeds.nse_fast`) runs it; what it reads is exactly what msgspec's
decoding (the reference parser's first step) reads, and a document it is not sure of is
declined, never guessed: the reference parser then reads it. The rule is one-sided on purpose —
it may decline a document msgspec reads, never read one msgspec refuses.

It takes: JSON whitespace, ASCII strings without escapes or control bytes, ``true``/``false``/
``null``, every known key at most once per object, nesting to 64 levels inside a skipped value,
and numbers msgspec surely reads — below 1e300 in magnitude, at most 300 digits each side of
the point, an exponent of at most three digits (msgspec refuses only what overflows a double;
NSE's numbers are far inside). Skipped values are checked as strictly as read ones. A number
it reads is computed when its double is exact by one IEEE operation (at most 15 significant
digits, a power of ten up to 1e22: Clinger's fast path, the correctly rounded value every
JSON parser gives); any other fraction is listed for ``float()`` of its text after the scan
(correctly rounded too); an integer of more than 15 digits where a number is read is a
decline. Anything else — an escape, a null where a number belongs, a key twice, trailing
text — is a decline.

Speed. Strings and keys are read eight bytes at a time (one unaligned load, the first stop
byte found by bit arithmetic, :func:`_stops`); a key's words are then compared whole with the
names'. The entry point lends its arrays to the readers without their reference counts
(:func:`_borrowed`): numba otherwise counts each array up and down atomically at every call it
does not inline. Together: 2.8 → 1.9 ms for a 3,000-contract chain.

Layout it fills: per row its strike; per side (row order, CE before PE, as the reference reads
them) the 16 numbers of ``nse_fast._FIELDS`` (NaN = absent), its row, CE or PE, and the spans
(start, end; −1 = absent or null) of its expiry (the row's when the side has none), identifier
and underlying; the fix-up list of numbers left to ``float()``.
"""

from __future__ import annotations

from typing import Any

import numba.core.cgutils
import numba.extending
import numpy as np
from llvmlite import ir
from numba.core import types

from mandi.options._special import jit

# numba's code-generation helpers are untyped; what they decorate is called only from jitted code
cgutils: Any = numba.core.cgutils
intrinsic: Any = numba.extending.intrinsic


@intrinsic
def _borrowed(typingctx, arr):  # type: ignore[no-untyped-def]
    """The same array without its reference count (a NULL meminfo), for the caller to lend to
    the readers below while it holds the array itself. Each call numba leaves to LLVM passes
    its arrays with an atomic increment and decrement of their count: on the document and the
    output columns that was most of a tenth of the scan."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        src = context.make_array(sig.args[0])(context, builder, value=args[0])
        out = context.make_array(sig.return_type)(context, builder)
        cgutils.copy_struct(out, src)
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        out.parent = cgutils.get_null_value(out.parent.type)
        return out._getvalue()

    return arr(arr), codegen


@intrinsic
def _word(typingctx, arr, pos):  # type: ignore[no-untyped-def]
    """The 8 bytes of ``arr`` (uint8) at ``pos`` as one little-endian uint64, in one load (the
    caller makes sure ``pos + 8 <= arr.size``)."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ary = context.make_array(sig.args[0])(context, builder, value=args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)

    if not (isinstance(arr, types.Array) and arr.dtype == types.uint8 and arr.layout == "C"):
        return None  # contiguous bytes only: the load assumes a stride of 1
    return types.uint64(arr, pos), codegen


@intrinsic
def _first_flag(typingctx, mask):  # type: ignore[no-untyped-def]
    """The index (0–7) of the lowest byte of a non-zero ``mask`` whose high bit is set."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        tz = builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))
        return builder.lshr(tz, ir.Constant(ir.IntType(64), 3))

    return types.int64(mask), codegen


# key ids: 0–15 the side's numbers (nse_fast._FIELDS order; 15 = strikePrice), then strings and
# the containers' keys
_NAMES = (
    "lastPrice", "bidprice", "buyPrice1", "askPrice", "sellPrice1",
    "bidQty", "buyQuantity1", "askQty", "sellQuantity1",
    "totalTradedVolume", "openInterest", "changeinOpenInterest", "impliedVolatility",
    "totalBuyQuantity", "totalSellQuantity", "strikePrice",
    "expiryDate", "identifier", "underlying", "expiryDates", "CE", "PE",
    "data", "timestamp", "underlyingValue", "records", "filtered",
)  # fmt: skip
NF = 16
K_STRIKE, K_EXP, K_IDENT, K_UND, K_EXPS, K_CE, K_PE = 15, 16, 17, 18, 19, 20, 21
K_DATA, K_TS, K_UV, K_RECORDS, K_FILTERED = 22, 23, 24, 25, 26
_NAME_LEN = np.array([len(n) for n in _NAMES], dtype=np.int64)
_NAME_W = np.zeros((len(_NAMES), 3), dtype=np.uint64)  # each name's bytes packed, little-end first
for _i, _n in enumerate(_NAMES):
    for _j, _c in enumerate(_n.encode()):
        _NAME_W[_i, _j >> 3] |= np.uint64(_c) << np.uint64(8 * (_j & 7))
# key lookup: the first name of each (length, first byte), then the next one sharing it
_FIRST = np.full((max(_NAME_LEN) + 1, 128), -1, dtype=np.int64)
_NEXT = np.full(len(_NAMES), -1, dtype=np.int64)
for _i in range(len(_NAMES) - 1, -1, -1):
    _slot = (len(_NAMES[_i]), ord(_NAMES[_i][0]))
    _NEXT[_i], _FIRST[_slot] = _FIRST[_slot], _i
# bytes inside a string: 0 plain, 1 the closing quote, 2 not ours (escape, control, non-ASCII)
_IN_STRING = np.zeros(256, dtype=np.uint8)
_IN_STRING[:32] = _IN_STRING[92] = _IN_STRING[128:] = 2
_IN_STRING[34] = 1
# SWAR: flag (high bit) the bytes of a word that end a plain string — a quote, a backslash, a
# control byte or a non-ASCII one. Each test is exact at its lowest flagged byte (a borrow
# only runs upwards from a flagged byte), so the lowest flag of the union is the first such
# byte; the flags above it are not used.
_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_QUOTES = np.uint64(0x2222222222222222)
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)
_SPACES = np.uint64(0x2020202020202020)
_POW10 = np.array([10.0**k for k in range(23)])  # each one exact in a double

OK, DECLINE, GROW = 0, 1, 2
EXACT, INEXACT, SKIP_ONLY, UNSURE = 0, 1, 2, 3  # what _number says of a number
FMT_V3, FMT_LEGACY = 1, 2
# meta slots
M_STATUS, M_FMT, M_ROWS, M_SIDES, M_TS0, M_TS1, M_REC, M_FIX = range(8)
# side string spans: expiry, identifier, underlying (start, end)
S_EXP, S_IDENT, S_UND = 0, 2, 4


@jit
def _at(b, p):  # type: ignore[no-untyped-def]
    return b[p] if p < b.size else 0  # 0 is never valid JSON: every expectation fails on it


@jit
def _ws(b, p):  # type: ignore[no-untyped-def]
    while p < b.size and (b[p] == 32 or b[p] == 10 or b[p] == 13 or b[p] == 9):
        p += 1
    return p


@jit
def _stops(w):  # type: ignore[no-untyped-def]
    """The bytes of word ``w`` that end a plain string, flagged (see _QUOTES)."""
    x = w ^ _QUOTES
    y = w ^ _BACKSLASHES
    return (((x - _ONES) & ~x) | ((y - _ONES) & ~y) | ((w - _SPACES) & ~w) | w) & _HIGH


@jit
def _string(b, p):  # type: ignore[no-untyped-def]
    """At an opening quote: the end (exclusive, at the closing quote) or −1 (an escape, a
    control or non-ASCII byte, no end). Eight bytes at a time, the document's tail byte by
    byte."""
    p += 1
    n = b.size
    while p + 8 <= n:
        stops = _stops(_word(b, p))
        if stops:
            p += _first_flag(stops)
            return p if b[p] == 34 else -1
        p += 8
    n = b.size
    while p < n:
        c = _IN_STRING[b[p]]
        if c:
            return p if c == 1 else -1
        p += 1
    return -1


@jit
def _number(b, p):  # type: ignore[no-untyped-def]
    """A JSON number at p: (end, value, kind); end −1 = not a number. ``kind``:

    * EXACT: ``value`` is its double (at most 15 significant digits and a power of ten up to
      1e22: one IEEE operation, correctly rounded, as every JSON parser reads it);
    * INEXACT: a finite fraction or exponent form the fast rule cannot compute (msgspec reads
      it as a float; ``float()`` of its text gives the same correctly rounded double);
    * SKIP_ONLY: msgspec reads it, but not as a double we may use (an integer of more than
      15 digits, which the reference keeps exact);
    * UNSURE: so long, large or small that msgspec may refuse it ("Number out of range"):
      the document is declined whatever the key.

    Sure = magnitude below 1e300 (msgspec refuses only overflow; it reads an underflow as 0.0),
    at most 300 digits each side of the point and a three-digit exponent; NSE's numbers are
    far inside."""
    neg = False
    if _at(b, p) == 45:
        neg = True
        p += 1
    c = _at(b, p)
    if c < 48 or c > 57:
        return -1, 0.0, UNSURE
    m = 0
    digits = 0  # significant digits in m
    exact = True
    scale = 0  # value = m · 10^-scale
    int_digits = 0  # digits before the point, leading zero excluded
    frac_digits = 0
    is_float = False
    if c == 48:
        p += 1
    else:
        while 48 <= c <= 57:
            int_digits += 1
            if digits < 15:
                m = m * 10 + (c - 48)
                digits += 1
            else:
                exact = False
            p += 1
            c = _at(b, p)
    c = _at(b, p)
    if c == 46:
        is_float = True
        p += 1
        c = _at(b, p)
        if not 48 <= c <= 57:
            return -1, 0.0, UNSURE
        while 48 <= c <= 57:
            frac_digits += 1
            if digits < 15:
                m = m * 10 + (c - 48)
                if m:
                    digits += 1
                scale += 1
            else:
                exact = False
            p += 1
            c = _at(b, p)
    e = 0
    exp_digits = 0
    c = _at(b, p)
    if c == 101 or c == 69:
        is_float = True
        p += 1
        eneg = False
        c = _at(b, p)
        if c == 43 or c == 45:
            eneg = c == 45
            p += 1
        if not 48 <= _at(b, p) <= 57:
            return -1, 0.0, UNSURE
        while 48 <= _at(b, p) <= 57:
            exp_digits += 1
            if exp_digits <= 4:
                e = e * 10 + (b[p] - 48)
            p += 1
        if eneg:
            e = -e
        scale -= e
    if int_digits > 300 or frac_digits > 300 or exp_digits > 3:
        return p, 0.0, UNSURE
    if is_float and int_digits + e > 300:  # ≥ 1e300 (an underflow is read as 0.0)
        return p, 0.0, UNSURE
    if neg and m == 0 and not is_float:
        return p, 0.0, EXACT  # −0 is the integer 0 to msgspec (−0.0 is −0.0, as below)
    if not is_float:
        if not exact:
            return p, 0.0, SKIP_ONLY
    elif not exact or scale > 22 or scale < -22:
        return p, 0.0, INEXACT
    v = m / _POW10[scale] if scale >= 0 else m * _POW10[-scale]
    return p, -v if neg else v, EXACT


@jit
def _number_end(b, p):  # type: ignore[no-untyped-def]
    """A skipped number at p: its end, or −1 when it is not one or :func:`_number` would call
    it UNSURE (the same rule, without computing the value)."""
    if _at(b, p) == 45:
        p += 1
    c = _at(b, p)
    if c < 48 or c > 57:
        return -1
    start = p
    if c == 48:
        p += 1
        int_digits = 0
    else:
        while 48 <= _at(b, p) <= 57:
            p += 1
        int_digits = p - start
    is_float = False
    c = _at(b, p)
    if c == 46:
        is_float = True
        p += 1
        start = p
        while 48 <= _at(b, p) <= 57:
            p += 1
        if p == start or p - start > 300:
            return -1
        c = _at(b, p)
    e = 0
    if c == 101 or c == 69:
        is_float = True
        p += 1
        c = _at(b, p)
        eneg = c == 45
        if c == 43 or c == 45:
            p += 1
        start = p
        while 48 <= _at(b, p) <= 57:
            e = e * 10 + (b[p] - 48)
            p += 1
            if p - start > 3:
                return -1
        if p == start:
            return -1
        if eneg:
            e = -e
    if int_digits > 300 or (is_float and int_digits + e > 300):
        return -1
    return p


@jit
def _literal(b, p):  # type: ignore[no-untyped-def]
    """true / false / null at p: (end, is_null); end −1 = none of them."""
    c = _at(b, p)
    if c == 110 and _at(b, p + 1) == 117 and _at(b, p + 2) == 108 and _at(b, p + 3) == 108:
        return p + 4, True
    if c == 116 and _at(b, p + 1) == 114 and _at(b, p + 2) == 117 and _at(b, p + 3) == 101:
        return p + 4, False
    if (
        c == 102 and _at(b, p + 1) == 97 and _at(b, p + 2) == 108 and _at(b, p + 3) == 115
        and _at(b, p + 4) == 101
    ):  # fmt: skip
        return p + 5, False
    return -1, False


@jit
def _key_string(b, p):  # type: ignore[no-untyped-def]
    """At a key's opening quote: (its end as :func:`_string` gives it, its id; −1: not one of
    ours). The key's first 24 bytes are read as three words, its end found in them as
    :func:`_string` finds it, and the words up to it compared with the names' of the same
    length and first byte. A key near the document's end or longer than 24 bytes:
    :func:`_key_bytes`."""
    start = p + 1
    if start + 24 > b.size:
        return _key_bytes(b, p)
    w0 = _word(b, start)
    w1 = w2 = np.uint64(0)
    stops = _stops(w0)
    if stops:
        size = _first_flag(stops)
        w0 &= (np.uint64(1) << np.uint64(8 * size)) - np.uint64(1)
    else:
        w1 = _word(b, start + 8)
        stops = _stops(w1)
        if stops:
            size = 8 + _first_flag(stops)
            w1 &= (np.uint64(1) << np.uint64(8 * (size - 8))) - np.uint64(1)
        else:
            w2 = _word(b, start + 16)
            stops = _stops(w2)
            if not stops:
                return _key_bytes(b, p)
            size = 16 + _first_flag(stops)
            w2 &= (np.uint64(1) << np.uint64(8 * (size - 16))) - np.uint64(1)
    end = start + size
    if b[end] != 34:
        return -1, -1  # an escape, a control or non-ASCII byte
    if size == 0 or size >= _FIRST.shape[0]:
        return end, -1
    k = _FIRST[size, b[start]]
    while k >= 0:
        if _NAME_W[k, 0] == w0 and _NAME_W[k, 1] == w1 and _NAME_W[k, 2] == w2:
            return end, k
        k = _NEXT[k]
    return end, -1


@jit
def _key_bytes(b, p):  # type: ignore[no-untyped-def]
    """:func:`_key_string` byte by byte: the bytes are packed into three words as they are
    read, then compared with the names' words of the same length and first byte."""
    p += 1
    start = p
    n = b.size
    w0 = w1 = w2 = np.uint64(0)
    while True:
        if p >= n:
            return -1, -1
        c = b[p]
        t = _IN_STRING[c]
        if t:
            if t == 2:
                return -1, -1
            break
        j = p - start
        if j < 8:
            w0 |= np.uint64(c) << np.uint64(8 * j)
        elif j < 16:
            w1 |= np.uint64(c) << np.uint64(8 * (j - 8))
        elif j < 24:
            w2 |= np.uint64(c) << np.uint64(8 * (j - 16))
        p += 1
    size = p - start
    if size == 0 or size >= _FIRST.shape[0]:
        return p, -1
    k = _FIRST[size, b[start]]
    while k >= 0:
        if _NAME_W[k, 0] == w0 and _NAME_W[k, 1] == w1 and _NAME_W[k, 2] == w2:
            return p, k
        k = _NEXT[k]
    return p, -1


@jit
def _skip(b, p):  # type: ignore[no-untyped-def]
    """Past one well-formed JSON value at p (after whitespace); −1 when it is not one."""
    p = _ws(b, p)
    c = _at(b, p)
    if c == 34:  # a scalar (most of what is skipped): no stack
        q = _string(b, p)
        return q + 1 if q >= 0 else -1
    if c == 45 or 48 <= c <= 57:
        return _number_end(b, p)
    if c != 123 and c != 91:
        return _literal(b, p)[0]
    stack = np.zeros(64, dtype=np.uint8)  # 1 = object, 2 = array
    depth = 0
    p = _ws(b, p)
    while True:
        # a value starts at p
        c = _at(b, p)
        if c == 123 or c == 91:
            p = _ws(b, p + 1)
            close = 125 if c == 123 else 93
            if _at(b, p) == close:
                p += 1
            else:
                if depth == 64:
                    return -1
                stack[depth] = 1 if c == 123 else 2
                depth += 1
                if c == 123:  # the first key
                    if _at(b, p) != 34:
                        return -1
                    q = _string(b, p)
                    if q < 0:
                        return -1
                    p = _ws(b, q + 1)
                    if _at(b, p) != 58:
                        return -1
                    p = _ws(b, p + 1)
                continue
        elif c == 34:
            q = _string(b, p)
            if q < 0:
                return -1
            p = q + 1
        elif c == 45 or 48 <= c <= 57:
            p = _number_end(b, p)
            if p < 0:
                return -1
        else:
            p, _ = _literal(b, p)
            if p < 0:
                return -1
        # a value ended: close containers, or move to the next member
        while True:
            if depth == 0:
                return p
            p = _ws(b, p)
            c = _at(b, p)
            top = stack[depth - 1]
            if c == 44:
                p = _ws(b, p + 1)
                if top == 1:
                    if _at(b, p) != 34:
                        return -1
                    q = _string(b, p)
                    if q < 0:
                        return -1
                    p = _ws(b, q + 1)
                    if _at(b, p) != 58:
                        return -1
                    p = _ws(b, p + 1)
                break
            if (top == 1 and c == 125) or (top == 2 and c == 93):
                p += 1
                depth -= 1
                continue
            return -1


@jit
def _side(b, p, nums, strs, fix, meta, tag):  # type: ignore[no-untyped-def]
    """One side object at p into ``nums`` (16) and ``strs`` (6): its end, or −1. A number the
    fast rule cannot compute stays NaN in ``nums`` and is listed in ``fix`` as (``tag``, key,
    start, end) for ``float()`` to read (meta[M_FIX] counts them)."""
    nums[:] = np.nan
    strs[:] = -1
    seen = 0
    p = _ws(b, p + 1)
    if _at(b, p) == 125:
        return p + 1
    while True:
        if _at(b, p) != 34:
            return -1
        q, k = _key_string(b, p)
        if q < 0:
            return -1
        p = _ws(b, q + 1)
        if _at(b, p) != 58:
            return -1
        p = _ws(b, p + 1)
        if 0 <= k <= K_UND:
            if seen & (1 << k):
                return -1  # a key twice: whose value wins is not ours to guess
            seen |= 1 << k
            if k < NF:
                a = p
                p, v, kind = _number(b, p)
                if p < 0 or kind > INEXACT:
                    return -1
                if kind == EXACT:
                    nums[k] = v
                else:  # read by float() of its text after the scan
                    f = meta[M_FIX]
                    if f >= fix.shape[0]:
                        meta[M_STATUS] = GROW
                        return -1
                    fix[f, 0] = tag
                    fix[f, 1] = k
                    fix[f, 2] = a
                    fix[f, 3] = p
                    meta[M_FIX] = f + 1
            elif _at(b, p) == 34:
                q = _string(b, p)
                if q < 0:
                    return -1
                j = 2 * (k - K_EXP)
                strs[j] = p + 1
                strs[j + 1] = q
                p = q + 1
            else:
                p, null = _literal(b, p)
                if p < 0 or not null:
                    return -1
        else:
            p = _skip(b, p)
            if p < 0:
                return -1
        p = _ws(b, p)
        c = _at(b, p)
        if c == 125:
            return p + 1
        if c != 44:
            return -1
        p = _ws(b, p + 1)


@jit
def _rows(b, p, row_strike, side_row, side_call, cols, spans, fix, meta, sides, sides_s):  # type: ignore[no-untyped-def]
    """The ``data`` array at p: its end, or −1 (meta[M_STATUS] says decline or grow).
    ``sides``, ``sides_s``: room for one row's CE and PE numbers and spans."""
    ce, pe, ce_s, pe_s = sides[0], sides[1], sides_s[0], sides_s[1]
    r = meta[M_ROWS]
    s = meta[M_SIDES]
    if _at(b, p) != 91:
        return -1
    p = _ws(b, p + 1)
    if _at(b, p) == 93:
        return p + 1
    while True:
        if _at(b, p) != 123:
            return -1
        if r >= row_strike.size:
            meta[M_STATUS] = GROW
            return -1
        strike = np.nan
        f0 = meta[M_FIX]  # this row's fix-ups: tagged −1 (CE) / −2 (PE) until its sides land
        has_ce = has_pe = False
        exp0 = exp1 = exps0 = exps1 = -1
        seen = 0
        p = _ws(b, p + 1)
        if _at(b, p) != 125:
            while True:
                if _at(b, p) != 34:
                    return -1
                q, k = _key_string(b, p)
                if q < 0:
                    return -1
                p = _ws(b, q + 1)
                if _at(b, p) != 58:
                    return -1
                p = _ws(b, p + 1)
                if k in (K_STRIKE, K_EXP, K_EXPS, K_CE, K_PE):
                    if seen & (1 << k):
                        return -1
                    seen |= 1 << k
                    c = _at(b, p)
                    if k == K_STRIKE:
                        p, v, kind = _number(b, p)
                        if p < 0 or kind != EXACT:
                            return -1
                        strike = v
                    elif c == 34 and (k in (K_EXP, K_EXPS)):
                        q = _string(b, p)
                        if q < 0:
                            return -1
                        if k == K_EXP:
                            exp0, exp1 = p + 1, q
                        else:
                            exps0, exps1 = p + 1, q
                        p = q + 1
                    elif c == 123 and k == K_CE:
                        p = _side(b, p, ce, ce_s, fix, meta, -1)
                        has_ce = True
                    elif c == 123 and k == K_PE:
                        p = _side(b, p, pe, pe_s, fix, meta, -2)
                        has_pe = True
                    else:  # null: absent; anything else is not ours to read
                        p, null = _literal(b, p)
                        if not null:
                            return -1
                    if p < 0:
                        return -1
                else:
                    p = _skip(b, p)
                    if p < 0:
                        return -1
                p = _ws(b, p)
                c = _at(b, p)
                if c == 125:
                    break
                if c != 44:
                    return -1
                p = _ws(b, p + 1)
        p += 1  # past the row's }
        row_strike[r] = strike
        if exp0 < 0:  # the row's expiry: expiryDate, else expiryDates
            exp0, exp1 = exps0, exps1
        for f in range(f0, meta[M_FIX]):
            fix[f, 0] = s if fix[f, 0] == -1 else s + has_ce
        for call in (True, False):
            if not (has_ce if call else has_pe):
                continue
            nums = ce if call else pe
            strs = ce_s if call else pe_s
            cols[s] = nums
            spans[s] = strs
            if strs[S_EXP] < 0:
                spans[s, S_EXP] = exp0
                spans[s, S_EXP + 1] = exp1
            side_row[s] = r
            side_call[s] = call
            s += 1
        r += 1
        meta[M_ROWS] = r
        meta[M_SIDES] = s
        p = _ws(b, p)
        c = _at(b, p)
        if c == 93:
            return p + 1
        if c != 44:
            return -1
        p = _ws(b, p + 1)


@jit
def _member(b, p, k, row_strike, side_row, side_call, cols, spans, fix, meta, uv, sides, sides_s):  # type: ignore[no-untyped-def]
    """The value of ``data``, ``timestamp`` or ``underlyingValue`` at p: its end, or −1."""
    if k == K_DATA:
        return _rows(b, p, row_strike, side_row, side_call, cols, spans, fix, meta, sides, sides_s)
    if k == K_TS:
        if _at(b, p) != 34:
            return -1
        q = _string(b, p)
        if q < 0:
            return -1
        meta[M_TS0] = p + 1
        meta[M_TS1] = q
        return q + 1
    p, v, kind = _number(b, p)
    if p < 0 or kind != EXACT:
        return -1
    uv[0] = v
    return p


@jit
def _object(b, p, top, row_strike, side_row, side_call, cols, spans, fix, meta, uv, sides, sides_s):  # type: ignore[no-untyped-def]
    """The document (``top``) or its ``records`` at p: (end or −1, the keys seen). A
    ``records`` inside is read by a second call (numba compiles no recursion)."""
    seen = 0
    if _at(b, p) != 123:
        return -1, seen
    p = _ws(b, p + 1)
    if _at(b, p) == 125:
        return -1, seen  # no data
    while True:
        if _at(b, p) != 34:
            return -1, seen
        q, k = _key_string(b, p)
        if q < 0:
            return -1, seen
        p = _ws(b, q + 1)
        if _at(b, p) != 58:
            return -1, seen
        p = _ws(b, p + 1)
        if k in (K_DATA, K_TS, K_UV) or (top and (k in (K_RECORDS, K_FILTERED))):
            if seen & (1 << k):
                return -1, seen
            seen |= 1 << k
            if k in (K_RECORDS, K_FILTERED):
                if k == K_RECORDS:
                    meta[M_REC] = p  # where records starts: read by the second call
                p = _skip(b, p)
            else:
                p = _member(b, p, k, row_strike, side_row, side_call, cols, spans, fix, meta, uv,
                            sides, sides_s)  # fmt: skip
        else:
            p = _skip(b, p)
        if p < 0:
            return -1, seen
        p = _ws(b, p)
        c = _at(b, p)
        if c == 125:
            return p + 1, seen
        if c != 44:
            return -1, seen
        p = _ws(b, p + 1)


@jit
def scan(b, row_strike, side_row, side_call, cols, spans, fix, meta, uv):  # type: ignore[no-untyped-def]
    """The whole document; meta[M_STATUS] = OK, DECLINE or GROW (more rows or fix-ups than
    room). ``fix[:meta[M_FIX]]`` lists the side numbers left for ``float()``: (side, key,
    start, end)."""
    sides = np.empty((2, NF))  # passed as owned: alive until _scan returns
    sides_s = np.empty((2, 6), dtype=np.int64)
    return _scan(
        _borrowed(b), _borrowed(row_strike), _borrowed(side_row), _borrowed(side_call),
        _borrowed(cols), _borrowed(spans), _borrowed(fix), _borrowed(meta), _borrowed(uv),
        sides, sides_s,
    )  # fmt: skip


@jit
def _scan(b, row_strike, side_row, side_call, cols, spans, fix, meta, uv, own_sides, own_sides_s):  # type: ignore[no-untyped-def]
    """:func:`scan` on borrowed arrays (the caller holds them)."""
    sides, sides_s = _borrowed(own_sides), _borrowed(own_sides_s)
    meta[:] = 0
    meta[M_TS0] = meta[M_TS1] = meta[M_REC] = -1
    uv[0] = np.nan
    p, seen = _object(
        b, _ws(b, 0), True, row_strike, side_row, side_call, cols, spans, fix, meta, uv, sides,
        sides_s,
    )  # fmt: skip
    if p >= 0 and _ws(b, p) != b.size:
        p = -1  # something after the document
    if p >= 0 and seen & (1 << K_RECORDS):  # legacy: records (and filtered) only at the top
        if seen & ((1 << K_DATA) | (1 << K_TS) | (1 << K_UV)):
            p = -1
        else:
            meta[M_FMT] = FMT_LEGACY
            r, inner = _object(b, meta[M_REC], False, row_strike, side_row, side_call, cols,
                               spans, fix, meta, uv, sides, sides_s)  # fmt: skip
            if not (inner & (1 << K_DATA)) or not (inner & (1 << K_TS)):
                r = -1
            p = r
    elif p >= 0:  # v3: data, timestamp and the underlying's value at the top, no filtered
        if seen & (1 << K_FILTERED) or not (seen & (1 << K_DATA)) or not (seen & (1 << K_TS)):
            p = -1
        meta[M_FMT] = FMT_V3
    if p < 0 and meta[M_STATUS] != GROW:
        meta[M_STATUS] = DECLINE
    return meta[M_STATUS]


@jit
def gather(b, spans, col, out):  # type: ignore[no-untyped-def]
    """The strings at spans[:, col:col+2] joined by NUL into out (absent = empty): its length,
    −1 when out is too small."""
    n = 0
    for i in range(spans.shape[0]):
        a, z = spans[i, col], spans[i, col + 1]
        if a >= 0:
            if n + (z - a) + 1 > out.size:
                return -1
            out[n : n + z - a] = b[a:z]
            n += z - a
        if i + 1 < spans.shape[0]:
            out[n] = 0
            n += 1
    return n


@jit
def expiry_codes(b, spans, codes, firsts):  # type: ignore[no-untyped-def]
    """Each side's expiry text as a code (the order of first appearance; −1 = none): the
    count of distinct texts, each first met at side ``firsts[code]``; −1 when there are more
    than ``firsts`` holds."""
    n_codes = 0
    for i in range(spans.shape[0]):
        a, z = spans[i, S_EXP], spans[i, S_EXP + 1]
        codes[i] = -1
        if a < 0:
            continue
        for c in range(n_codes):
            a0 = spans[firsts[c], S_EXP]
            if spans[firsts[c], S_EXP + 1] - a0 != z - a:
                continue
            same = True
            for j in range(z - a):
                if b[a + j] != b[a0 + j]:
                    same = False
                    break
            if same:
                codes[i] = c
                break
        if codes[i] < 0:
            if n_codes == firsts.size:
                return -1
            firsts[n_codes] = i
            codes[i] = n_codes
            n_codes += 1
    return n_codes


# the int columns convert() fills per side, and its odd-value columns (ODD_IV: the IV)
I_STRIKE, I_LTP, I_BID, I_ASK, I_BIDQ, I_ASKQ, I_TBQ, I_TSQ = range(8)
ODD_IV = 8
_EXACT = 2.0**53  # beyond: a double no longer holds every integer


@jit
def convert(row_strike, cols, side_row, ints, iv, lots, odd, odd_x):  # type: ignore[no-untyped-def]
    """Every side's numbers as the reference converts them: strike and prices in paise,
    quantities in shares (``ints``, columns I_*), the published IV as a decimal (NaN when
    absent or 0), lots (volume, OI, OI change). Returns how many values are left in ``odd``
    (side, column; value in ``odd_x``) for the exact rule in Python, or −1 when a value would
    make the reference skip a row (a bad strike, a side's strike not its row's, a negative or
    fractional quantity, a negative price or IV, a number too large to be exact).

    Prices: rint(x·100) when x has at most two decimals (every price NSE prints: the double
    nearest p/100 is x), else the exact rule; absent → 0. IV likewise (q/10000). Written as
    whole-column loops without early exits: a tenth of the time of a branchy per-side loop."""
    n = cols.shape[0]
    x = np.empty((9, n))  # strike, ltp, bid, ask, bid_q, ask_q, total buy, total sell, IV
    bad = False
    for i in range(n):
        c = cols[i]
        strike = row_strike[side_row[i]]
        own = c[K_STRIKE]
        bad |= not strike > 0  # NaN (absent) or not positive
        bad |= own == own and own != strike
        x[0, i] = strike
        x[1, i] = c[0]
        x[2, i] = c[1] if c[1] == c[1] else c[2]  # bidprice (legacy) else buyPrice1 (v3)
        x[3, i] = c[3] if c[3] == c[3] else c[4]
        x[4, i] = c[5] if c[5] == c[5] else c[6]
        x[5, i] = c[7] if c[7] == c[7] else c[8]
        x[6, i] = c[13]
        x[7, i] = c[14]
        x[8, i] = c[12]
        for j in range(3):  # volume, OI, OI change (lots)
            v = c[9 + j]
            v = 0.0 if v != v else v
            bad |= (j < 2 and v < 0) or abs(v) >= _EXACT
            lots[i, j] = v
    flags = np.zeros((9, n), dtype=np.bool_)  # values left for the exact rule
    for j in range(4):  # rupees → paise
        for i in range(n):
            v = x[j, i]
            v = 0.0 if v != v else v
            ok = v >= 0 and v < _EXACT / 100
            bad |= not ok
            p = np.rint(v * 100.0)
            flags[j, i] = p / 100.0 != v
            ints[i, j] = np.int64(p) if ok else 0
    for j in range(4, 8):  # share counts
        for i in range(n):
            v = x[j, i]
            v = 0.0 if v != v else v
            ok = v >= 0 and v < _EXACT and v == np.floor(v)
            bad |= not ok
            ints[i, j] = np.int64(v) if ok else 0
    for i in range(n):  # IV % → decimal
        v = x[8, i]
        bad |= v < 0
        q = np.rint(v * 100.0)
        given = v == v and v != 0
        two = q / 100.0 == v
        iv[i] = q / 10000.0 if given and two else np.nan
        flags[8, i] = given and not two
    if bad:
        return -1
    n_odd = 0
    for j in range(9):
        for i in range(n):
            if flags[j, i]:
                odd[n_odd, 0] = i
                odd[n_odd, 1] = j
                odd_x[n_odd] = x[j, i]
                n_odd += 1
    return n_odd


@jit
def has_duplicate(group, is_call, strike):  # type: ignore[no-untyped-def]
    """Whether two sides are one contract (same expiry group, CE/PE and strike in paise).
    Keyed by strike, then group, then CE before PE: in NSE's order (strikes ascending, one
    expiry, CE first) the keys already ascend strictly and one pass tells; else a sort."""
    n_groups = group.max() + 1 if group.size else 1
    key = (strike * n_groups + group) * 2 + (1 - is_call)
    for i in range(1, key.size):
        if key[i] <= key[i - 1]:
            key.sort()
            return bool((key[1:] == key[:-1]).any())
    return False


@jit
def lot_gcd(group, g, ints):  # type: ignore[no-untyped-def]
    """(GCD, count) of the non-zero share quantities (bid, ask, total buy and sell) of the
    sides in expiry group ``g``."""
    out = 0
    count = 0
    for i in range(group.size):
        if group[i] != g:
            continue
        for j in (I_BIDQ, I_ASKQ, I_TBQ, I_TSQ):
            q = ints[i, j]
            if q:
                count += 1
                if out and q % out == 0:  # the usual case, a multiple of the lot: no change
                    continue
                a, b = out, q
                while b:
                    a, b = b, a % b
                out = a
    return out, count


@jit
def is_identity(order):  # type: ignore[no-untyped-def]
    """Whether ``order`` is 0, 1, 2 …"""
    return bool((order == np.arange(order.size)).all())


@jit
def pairs_in_order(call_at, put_at):  # type: ignore[no-untyped-def]
    """Whether strike r has its call at side 2r and its put at 2r + 1, for every r."""
    r = np.arange(call_at.size)
    return bool(((call_at == 2 * r) & (put_at == 2 * r + 1)).all())


@jit
def chain_rows(group, g, strike, is_call, ints, lots, lot):  # type: ignore[no-untyped-def]
    """Expiry group ``g`` in strike order (sides without duplicates): ``order`` (its sides),
    ``nums`` (8, m) — ltp, bid, ask, volume, oi, oi_change (shares: lots × ``lot``, rounded
    half-even), bid_qty, ask_qty per side in that order —, the strikes, for each the index in
    ``order`` of its call and put (−1: none), and the chain matrix's (k, 13) columns."""
    m = 0
    for i in range(group.size):
        m += group[i] == g
    idx = np.empty(m, dtype=np.int64)
    m = 0
    for i in range(group.size):
        if group[i] == g:
            idx[m] = i
            m += 1
    ordered = True  # NSE lists strikes ascending: then the stable sort is the identity
    for t in range(1, m):
        if strike[idx[t]] < strike[idx[t - 1]]:
            ordered = False
            break
    order = idx if ordered else idx[np.argsort(strike[idx], kind="mergesort")]  # stable
    nums = np.empty((8, m), dtype=np.int64)
    k = 0
    for t in range(m):
        if t == 0 or strike[order[t]] != strike[order[t - 1]]:
            k += 1
    strikes = np.empty(k, dtype=np.int64)
    call_at = np.full(k, -1, dtype=np.int64)
    put_at = np.full(k, -1, dtype=np.int64)
    columns = np.full((k, 13), np.nan)
    r = -1
    for t in range(m):
        i = order[t]
        nums[0, t] = ints[i, I_LTP]
        nums[1, t] = ints[i, I_BID]
        nums[2, t] = ints[i, I_ASK]
        for j in range(3):
            nums[3 + j, t] = np.int64(np.rint(lots[i, j] * lot))
        nums[6, t] = ints[i, I_BIDQ]
        nums[7, t] = ints[i, I_ASKQ]
        if t == 0 or strike[i] != strike[order[t - 1]]:
            r += 1
            strikes[r] = strike[i]
            columns[r, 0] = strike[i]
        at = 1 if is_call[i] else 7
        if is_call[i]:
            call_at[r] = t
        else:
            put_at[r] = t
        for j in range(6):
            columns[r, at + j] = nums[j, t]
    return order, nums, strikes, call_at, put_at, columns
