"""Special functions callable from numba-compiled kernels.

* ``erfcx`` (scaled complementary error function exp(y²)·erfc(y)) is our own: piecewise
  Chebyshev polynomials generated with 40-digit arithmetic (``_erfcx_table``) for y < 50 and a
  converged Laplace continued fraction above; a few ulp everywhere and 3–5× faster than calling
  the C library's ``erfc``. The normal CDF is built on it: Φ(z) = ½·exp(−z²/2)·erfcx(−z/√2).
* ``ndtri`` (inverse standard normal CDF) comes from SciPy's compiled special-function
  library: looked up once in ``scipy.special.cython_special`` and registered with LLVM under a
  fixed symbol name, called through :class:`numba.types.ExternalFunction`. Binding by *name*
  (not by a raw address baked into the machine code) keeps the kernels cacheable on disk
  (``cache=True``): a cached kernel is re-linked against the symbol registered by this module.

numba does not notice when a kernel cached in one file calls one from another file that changed;
the shell drops such stale caches before any kernel runs (:mod:`mandi.services.jitcache`) — this
module does no file I/O.
"""

from __future__ import annotations

import ctypes
import math
import re

import llvmlite.binding as llvm
import numba as nb
import numpy as np
import scipy.special.cython_special as _cython_special
from numba import types
from numba.extending import get_cython_function_address

from mandi.options import _erfcx_table

__all__ = [
    "DBL_EPSILON",
    "DBL_MAX",
    "DBL_MIN",
    "ONE_OVER_SQRT_TWO",
    "ONE_OVER_SQRT_TWO_PI",
    "SQRT_PI_OVER_TWO",
    "SQRT_TWO_PI",
    "erfcx",
    "erfcx_fast",
    "jit",
    "jit_parallel",
    "ndtri",
    "norm_cdf",
    "norm_cdf_given_pdf",
    "norm_pdf",
]

DBL_EPSILON = 2.220446049250313e-16
DBL_MIN = 2.2250738585072014e-308
DBL_MAX = 1.7976931348623157e308
ONE_OVER_SQRT_TWO = 0.7071067811865476
ONE_OVER_SQRT_TWO_PI = 0.3989422804014327
SQRT_TWO_PI = 2.5066282746310002
SQRT_PI_OVER_TWO = 1.2533141373155003

# Options shared by every kernel: IEEE semantics for x/0 (inf/NaN instead of ZeroDivisionError,
# so bad input becomes NaN that we classify, never an exception), cached machine code, GIL
# released. No fastmath: it would let LLVM reassociate the carefully ordered arithmetic.
jit = nb.njit(cache=True, nogil=True, error_model="numpy")
jit_parallel = nb.njit(cache=True, nogil=True, error_model="numpy", parallel=True)

_CAPSULE_SIGNATURE = "double (double, int __pyx_skip_dispatch)"


def _capsule_signature(capsule: object) -> str:
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    raw = get_name(capsule)
    return raw.decode() if raw else ""


def _register(function: str, symbol: str) -> None:
    """Find the double-precision ``function`` in cython_special and expose it as ``symbol``."""
    capi = _cython_special.__pyx_capi__
    pattern = re.compile(rf"(__pyx_fuse_\d+)?{function}")
    for key, capsule in capi.items():
        if pattern.fullmatch(key) and _capsule_signature(capsule) == _CAPSULE_SIGNATURE:
            address = get_cython_function_address("scipy.special.cython_special", key)
            llvm.add_symbol(symbol, address)
            return
    raise ImportError(  # pragma: no cover - only with an unexpected SciPy build
        f"scipy.special.cython_special has no double-precision {function!r}; "
        "mandi.options needs SciPy >= 1.11"
    )


_register("ndtri", "mandi_scipy_ndtri")
_ndtri = types.ExternalFunction("mandi_scipy_ndtri", types.float64(types.float64, types.intc))

_SMALL = np.array(_erfcx_table.SMALL, dtype=np.float64)
_LARGE = np.array(_erfcx_table.LARGE, dtype=np.float64)
_SMALL_SCALE = float(_erfcx_table.SMALL_PIECES_PER_UNIT)
_SMALL_LIMIT = float(_erfcx_table.SMALL_LIMIT)
_LARGE_PIECES = float(_erfcx_table.LARGE_PIECES)
_LARGE_FIRST = _erfcx_table.LARGE_FIRST
_LARGE_LAST = _LARGE_FIRST + len(_erfcx_table.LARGE) - 1
_CONTINUED_FRACTION_LIMIT = 50.0
_ONE_OVER_SQRT_PI = 0.5641895835477563


@jit
def _erfcx_nonnegative(y: float) -> float:
    if y < _SMALL_LIMIT:
        scaled = y * _SMALL_SCALE
        j = int(scaled)
        v = 2.0 * scaled - (2.0 * j + 1.0)  # exact: scaling by a power of two
        acc: float = _SMALL[j, 8]  # 2-D indexing: a row view would cost more than the polynomial
        for m in range(7, -1, -1):
            acc = acc * v + _SMALL[j, m]
        return acc
    if y < _CONTINUED_FRACTION_LIMIT:
        u = 4.0 / (4.0 + y) * _LARGE_PIECES
        j = int(u)
        v = 2.0 * (u - j) - 1.0
        j -= _LARGE_FIRST
        acc = _LARGE[j, 6]
        for m in range(5, -1, -1):
            acc = acc * v + _LARGE[j, m]
        return acc
    # Laplace continued fraction 1/√π · 1/(y + ½/(y + 1/(y + (3/2)/(y + …)))); six levels
    # are exact to double precision for y ≥ 50.
    acc = 0.0
    for k in range(6, 0, -1):
        acc = (0.5 * k) / (y + acc)
    return _ONE_OVER_SQRT_PI / (y + acc)


@jit
def erfcx(y: float) -> float:
    """exp(y²)·erfc(y), accurate to a few ulp for every y (no overflow for y ≥ 0)."""
    if y >= 0.0:
        return _erfcx_nonnegative(y)
    if y < 0.0:
        # erfc(−y) = 2 − erfc(y): both terms positive, exp(y²) overflows only for y < −26.6
        return 2.0 * math.exp(y * y) - _erfcx_nonnegative(-y)
    return y  # NaN


@jit
def ndtri(p: float) -> float:
    """Inverse of the standard normal CDF."""
    return _ndtri(p, 0)  # type: ignore[no-any-return,call-overload]


@jit
def norm_cdf(z: float) -> float:
    """Standard normal CDF, full relative accuracy in the lower tail."""
    if z <= 0.0:
        return 0.5 * math.exp(-0.5 * z * z) * erfcx(-ONE_OVER_SQRT_TWO * z)
    if z > 0.0:
        return 1.0 - 0.5 * math.exp(-0.5 * z * z) * erfcx(ONE_OVER_SQRT_TWO * z)
    return z  # NaN


@jit
def erfcx_fast(y: float) -> float:
    """erfcx(y) for y ≥ 0 within ~4 ulp, one table path for y < 50 and no data-dependent
    branches (the Greeks kernels call it twice per option on random arguments, where branch
    mispredictions would cost more than the arithmetic)."""
    if y < _CONTINUED_FRACTION_LIMIT:
        u = 4.0 / (4.0 + y) * _LARGE_PIECES
        j = min(int(u), _LARGE_LAST)
        v = 2.0 * (u - j) - 1.0
        j -= _LARGE_FIRST
        fit: float = _LARGE[j, 6]
        for m in range(5, -1, -1):
            fit = fit * v + _LARGE[j, m]
        return fit
    acc = 0.0
    for k in range(6, 0, -1):
        acc = (0.5 * k) / (y + acc)
    return _ONE_OVER_SQRT_PI / (y + acc)


@jit
def norm_cdf_given_pdf(z: float, pdf: float) -> float:
    """Φ(z) when φ(z) is already known (saves the exponential); branch-free in the sign."""
    tail = pdf * SQRT_PI_OVER_TWO * erfcx_fast(ONE_OVER_SQRT_TWO * abs(z))  # Φ(−|z|)
    return tail if z <= 0.0 else 1.0 - tail


@jit
def norm_pdf(z: float) -> float:
    return ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * z * z)
