"""Turn user inputs (scalars, lists, arrays of any broadcastable shapes) into kernel arguments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numba
import numpy as np
from numpy.typing import ArrayLike

_CALL_WORDS = frozenset({"c", "call", "ce", "calls"})
_PUT_WORDS = frozenset({"p", "put", "pe", "puts"})


def call_flags(is_call: ArrayLike) -> np.ndarray:
    """``is_call`` as a ``uint8`` array (1 call, 0 put).

    Accepts booleans/integers, or strings ``"c"/"call"/"CE"`` and ``"p"/"put"/"PE"`` (any case);
    anything else raises ``ValueError`` naming the value.
    """
    a = np.asarray(is_call)
    if a.dtype.kind in "US" or a.dtype == object:
        lowered = np.char.lower(np.char.strip(a.astype(str)))
        calls = np.isin(lowered, list(_CALL_WORDS))
        puts = np.isin(lowered, list(_PUT_WORDS))
        bad = ~(calls | puts)
        if bad.any():
            raise ValueError(f"is_call: unknown option type {a[bad].flat[0]!r}; use CE/PE or c/p")
        return calls.astype(np.uint8)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) if not a.flags.c_contiguous else np.asarray(a.view(np.uint8))
    if a.dtype.kind in "iuf":
        flags: np.ndarray = (a != 0).astype(np.uint8)
        return flags
    raise ValueError(f"is_call: expected booleans or CE/PE strings, got dtype {a.dtype}")


def kernel_args(
    floats: Sequence[ArrayLike], flags: ArrayLike
) -> tuple[tuple[int, ...], list[np.ndarray], np.ndarray]:
    """Broadcast ``floats`` (as float64) and the call ``flags`` to one shape.

    Returns the shape and 1-D C-contiguous arrays of length ``n`` or 1 (length-1 arrays are
    broadcast inside the kernels without copying).
    """
    try:
        arrays: list[np.ndarray] = [np.asarray(v, dtype=np.float64) for v in floats]
    except (TypeError, ValueError) as e:
        raise ValueError(f"option inputs must be numbers or numeric arrays: {e}") from None
    flag_array = call_flags(flags)
    shapes = [a.shape for a in arrays] + [flag_array.shape]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"option inputs do not broadcast together: shapes {shapes}") from None
    return shape, [_flat(a, shape) for a in arrays], _flat(flag_array, shape)


def _flat(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if a.size == 1:
        return np.ascontiguousarray(a.reshape(1))
    if a.shape == shape:
        return np.ascontiguousarray(a).reshape(-1)
    return np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1)


def size_of(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _max_threads() -> int:
    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


class _ThreadScope:
    """Run a parallel kernel on ``threads`` numba threads, restoring the previous setting."""

    def __init__(self, threads: int) -> None:
        available = _max_threads()
        self.threads = available if threads <= 0 else max(1, min(int(threads), available))
        self.previous = 1

    def __enter__(self) -> _ThreadScope:
        self.previous = numba.get_num_threads()
        numba.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc: Any) -> None:
        numba.set_num_threads(self.previous)


def thread_scope(threads: int) -> _ThreadScope:
    return _ThreadScope(threads)


def use_parallel(threads: int, n: int) -> bool:
    """Parallel kernels only pay off for several threads (``threads`` > 1, or 0 = all cores) and
    a few thousand options; below that the thread start-up costs more than it saves."""
    return threads != 1 and _max_threads() > 1 and n >= 4096
