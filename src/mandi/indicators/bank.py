"""A bank of close-only indicator sets for many series, updated in one compiled call.

When a timeframe closes, every instrument's candle is confirmed at once (hundreds of option
tokens at 09:18:00). :class:`CloseBank` keeps the state of :class:`~mandi.indicators.fused.
CloseKernel` for N series as arrays (one row per series) and applies confirmed closes to many
rows in a single call of a numba kernel (:func:`mandi.indicators._kernels.close_update`): still
one O(1) incremental update per series, in order, with no interpreter in between.

The arithmetic is the kernel's, statement for statement, so values are bit-identical to
:class:`CloseKernel` and to the separate indicator classes (tested), and ``get_state``/
``set_state`` speak the kernel's state format: a series moves freely between a bank and an
:class:`~mandi.indicators.engine.IndicatorEngine` snapshot (the engine keeps its close-only
sets in a bank).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mandi.indicators import _kernels as K
from mandi.indicators._base import IndicatorInputError
from mandi.indicators.fused import FUSABLE, fusable
from mandi.indicators.specs import DEFAULT_SPECS, parse_spec

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class CloseBank:
    """SMA/EMA/WMA/RSI sets of many series in NumPy arrays, updated by a numba kernel.

    Parameters
    ----------
    specs : sequence of str
        Close-only specs (``SMA_n``, ``EMA_n``, ``WMA_n``, ``RSI_n``); the seed's default set
        when omitted.
    capacity : int
        Rows allocated up front; the bank grows (doubling) when more series are added.

    Examples
    --------
    >>> bank = CloseBank(["SMA_2"])
    >>> rows = np.array([bank.add_series(), bank.add_series()])
    >>> bank.update(rows, np.array([1.0, 10.0])).tolist()
    [[nan], [nan]]
    >>> bank.update(rows, np.array([3.0, 20.0])).tolist()
    [[2.0], [15.0]]
    """

    def __init__(self, specs: Sequence[str] = DEFAULT_SPECS, capacity: int = 64) -> None:
        protos = [parse_spec(s) for s in specs]
        if not fusable(protos):
            raise ValueError("CloseBank runs only SMA, EMA, WMA and RSI specs")
        self.names: tuple[str, ...] = tuple(p.name for p in protos)
        per: dict[int, list[tuple[int, int]]] = {0: [], 1: [], 2: [], 3: []}  # (period, column)
        for col, p in enumerate(protos):
            per[FUSABLE.index(type(p))].append((p.period, col))  # type: ignore[attr-defined]
        self._sma, self._ema, self._wma, self._rsi = ([q for q, _ in per[k]] for k in range(4))
        self._cap = max([1, *self._sma, *self._wma])
        ns, nw, ne, nr = len(self._sma), len(self._wma), len(self._ema), len(self._rsi)
        # kernel order: SMA, WMA, EMA, RSI (see _kernels.close_update)
        pairs = [x for k in (0, 2, 1, 3) for pc in per[k] for x in pc]
        self._cfg = np.array([self._cap, ns, nw, ne, nr, *pairs], dtype=np.int64)
        self._width = self._cap + 1 + ns + 2 * nw + 2 * ne + 2 * nr
        self._o_sma = self._cap + 1
        self._o_ws = self._o_sma + ns
        self._o_ww = self._o_ws + nw
        self._o_es = self._o_ww + nw
        self._o_ev = self._o_es + ne
        self._o_rg = self._o_ev + ne
        self._o_rl = self._o_rg + nr
        self.size = 0
        self._fs = np.zeros((0, self._width))
        self._ist = np.zeros((0, 3), dtype=np.int64)
        self._alloc(max(1, capacity))
        self._pre = np.zeros(0, dtype=np.int64)

    def _alloc(self, rows: int) -> None:
        fs = np.zeros((rows, self._width))
        ist = np.zeros((rows, 3), dtype=np.int64)
        ist[:, 2] = K.NO_BUCKET
        old = len(self._fs)
        fs[:old] = self._fs
        ist[:old] = self._ist
        self._fs, self._ist = fs, ist
        self._stamp = np.zeros(rows, dtype=np.int64)  # scratch for the repeated-row check

    def add_series(self) -> int:
        """A new, cold series; returns its row number."""
        if self.size == len(self._fs):
            self._alloc(2 * len(self._fs))
        self.size += 1
        return self.size - 1

    def reset_row(self, row: int) -> None:
        """Back to a cold series."""
        self._check_row(row)
        self._fs[row] = 0.0
        self._ist[row] = (0, 0, K.NO_BUCKET)

    # --- state in the CloseKernel format ---------------------------------------------------
    def get_state(self, row: int) -> list[Any]:
        """The state of one series as :meth:`CloseKernel.get_state` would give it."""
        self._check_row(row)
        f = self._fs[row].tolist()
        i, n = int(self._ist[row, 0]), int(self._ist[row, 1])
        ema = [
            [f[self._o_es + j], f[self._o_ev + j] if n >= p else None]
            for j, p in enumerate(self._ema)
        ]
        return [
            f[: self._cap],
            i,
            n,
            f[self._cap] if n > 0 else None,
            f[self._o_sma : self._o_ws],
            [[f[self._o_ws + j], f[self._o_ww + j]] for j in range(len(self._wma))],
            ema,
            [[f[self._o_rg + j], f[self._o_rl + j]] for j in range(len(self._rsi))],
        ]

    def set_state(self, row: int, state: list[Any]) -> None:
        """Load a :meth:`CloseKernel.get_state` (or :meth:`get_state`) into one row.

        Raises
        ------
        ValueError
            The state does not fit this bank's indicator set (nothing is changed).
        """
        self._check_row(row)
        ring, i, n, prev, sma, wma, ema, rsi = state
        if len(ring) != self._cap or len(sma) != len(self._sma) or len(wma) != len(self._wma):
            raise ValueError("state does not fit this bank's indicator set")
        if len(ema) != len(self._ema) or len(rsi) != len(self._rsi):
            raise ValueError("state does not fit this bank's indicator set")
        f = np.zeros(self._width)
        f[: self._cap] = ring
        f[self._cap] = 0.0 if prev is None else prev
        f[self._o_sma : self._o_ws] = sma
        for j, (s, w) in enumerate(wma):
            f[self._o_ws + j], f[self._o_ww + j] = s, w
        for j, (s, v) in enumerate(ema):
            f[self._o_es + j], f[self._o_ev + j] = s, (0.0 if v is None else v)
        for j, (g, lo) in enumerate(rsi):
            f[self._o_rg + j], f[self._o_rl + j] = g, lo
        ii, nn = int(i), int(n)
        if not 0 <= ii < self._cap or nn < 0:
            raise ValueError(f"state position {ii}/{nn} does not fit a ring of {self._cap}")
        self._fs[row] = f
        self._ist[row, 0], self._ist[row, 1] = ii, nn

    def last_bucket(self, row: int) -> int | None:
        """The last bucket applied with :meth:`apply` (None before any)."""
        b = int(self._ist[row, 2])
        return None if b == K.NO_BUCKET else b

    def set_last_bucket(self, row: int, bucket: int | None) -> None:
        self._ist[row, 2] = K.NO_BUCKET if bucket is None else bucket

    def _check_row(self, row: int) -> None:
        if not 0 <= row < self.size:
            raise IndexError(f"CloseBank has {self.size} series, no row {row}")

    # --- updates ----------------------------------------------------------------------------
    def update(self, rows: ArrayLike, closes: ArrayLike) -> F64:
        """Apply one confirmed close to each of ``rows`` (each row at most once per call).

        Returns
        -------
        ndarray, shape (len(rows), len(names))
            The values, NaN where an indicator is still warming up.

        Raises
        ------
        IndicatorInputError
            A close is NaN or infinite (nothing is applied).
        ValueError
            A row repeats or does not exist (nothing is applied).
        """
        r, x = self._inputs(rows, closes)
        return self._run(r, x, True)

    def peek(self, rows: ArrayLike, closes: ArrayLike) -> F64:
        """The values :meth:`update` would return; changes nothing."""
        r, x = self._inputs(rows, closes)
        return self._run(r, x, False)

    def _run(self, r: I64, x: F64, commit: bool) -> F64:
        out = np.empty((len(r), len(self.names)))
        empty = self._pre[:0]
        K.close_update(
            r, x, empty, empty, empty, out, self._fs, self._ist, self._cfg, commit, False
        )
        return out

    def apply(
        self, rows: I64, closes: F64, buckets: I64, pre: I64, commit: bool = True
    ) -> tuple[F64, I64]:
        """Closes of confirmed candles, in order, rows may repeat: the engine's burst path.

        ``pre[j]`` is 0, 1 (not confirmed) or a rejection code >= 3 found by the caller; a
        bucket not after the row's last one is stale (2). Returns the values (NaN rows where
        not applied) and the status per candle. Inputs must be checked (finite, in range).
        """
        m = len(rows)
        out = np.empty((m, len(self.names)))
        status = np.empty(m, dtype=np.int64)
        K.close_update(
            rows, closes, buckets, pre, status, out, self._fs, self._ist, self._cfg, commit, True
        )
        return out, status

    def _inputs(self, rows: ArrayLike, closes: ArrayLike) -> tuple[I64, F64]:
        r = np.ascontiguousarray(rows, dtype=np.int64)
        x = np.ascontiguousarray(closes, dtype=np.float64)
        if r.ndim != 1 or r.shape != x.shape:
            raise ValueError(f"rows {r.shape} and closes {x.shape} must be equal 1-d shapes")
        m = len(r)
        if m and (r.min() < 0 or r.max() >= self.size):
            raise ValueError(f"rows must be in [0, {self.size}); got {r.min()}..{r.max()}")
        if m > 1:
            # a repeated row: a later write of its position number wins over the earlier one
            seq = np.arange(m)
            self._stamp[r] = seq
            if (self._stamp[r] != seq).any():
                raise ValueError("a row appears twice in one update; split it into two calls")
        j = K.first_bad(x)
        if j >= 0:
            raise IndicatorInputError(",".join(self.names), f"close of row {r[j]}", float(x[j]))
        return r, x
