"""A bank of close-only indicator sets for many series, updated together with NumPy.

When a timeframe closes, every instrument's candle is confirmed at once (hundreds of option
tokens at 09:18:00). :class:`CloseBank` keeps the state of :class:`~mandi.indicators.fused.
CloseKernel` for N series as arrays (one row per series) and applies one confirmed close to
each of many rows in a single call: still one O(1) incremental update per series, but the
interpreter overhead is paid per call instead of per series.

The arithmetic is the kernel's, element by element and in the same order, so values are
bit-identical to :class:`CloseKernel` and to the separate indicator classes (tested), and
``get_state``/``set_state`` speak the kernel's state format: a series can move between a bank
and an :class:`~mandi.indicators.engine.IndicatorEngine` snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mandi.indicators._base import IndicatorInputError
from mandi.indicators.engine import DEFAULT_SPECS, parse_spec
from mandi.indicators.fused import FUSABLE, fusable

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class CloseBank:
    """SMA/EMA/WMA/RSI sets of many series in NumPy arrays.

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
        self._slots: list[tuple[int, int]] = []  # output column -> (kind, index in kind)
        per: dict[int, list[int]] = {0: [], 1: [], 2: [], 3: []}
        for p in protos:
            kind = FUSABLE.index(type(p))
            self._slots.append((kind, len(per[kind])))
            per[kind].append(p.period)  # type: ignore[attr-defined]
        self._sma_p, self._ema_p, self._wma_p, self._rsi_p = per[0], per[1], per[2], per[3]
        self._cap = max([1, *per[0], *per[2]])
        self._longest = max([*per[0], *per[1], *per[2], *(q + 1 for q in per[3])])
        # periods as row vectors and the output columns of each kind, for the matrix updates
        self._sma_pa, self._ema_pa, self._wma_pa, self._rsi_pa = (
            np.array(per[k], dtype=np.float64)[None, :] for k in range(4)
        )
        self._sma_pi, self._wma_pi = (np.array(per[k], dtype=np.int64)[None, :] for k in (0, 2))
        cols: dict[int, list[int]] = {0: [], 1: [], 2: [], 3: []}
        for col, (kind, _) in enumerate(self._slots):
            cols[kind].append(col)
        self._sma_cols, self._ema_cols, self._wma_cols, self._rsi_cols = (
            np.array(cols[k], dtype=np.int64) for k in range(4)
        )
        self.size = 0
        self._alloc(max(1, capacity))

    def _alloc(self, rows: int) -> None:
        def grow(old: Any, shape: tuple[int, ...], dtype: Any = np.float64) -> Any:
            new = np.zeros(shape, dtype=dtype)
            if old is not None:
                new[: len(old)] = old
            return new

        g = getattr
        self._ring = grow(g(self, "_ring", None), (rows, self._cap))
        self._i = grow(g(self, "_i", None), (rows,), np.int64)
        self._n = grow(g(self, "_n", None), (rows,), np.int64)
        self._prev = grow(g(self, "_prev", None), (rows,))
        self._sma = grow(g(self, "_sma", None), (rows, len(self._sma_p)))
        self._wma_s = grow(g(self, "_wma_s", None), (rows, len(self._wma_p)))
        self._wma_w = grow(g(self, "_wma_w", None), (rows, len(self._wma_p)))
        self._ema_s = grow(g(self, "_ema_s", None), (rows, len(self._ema_p)))
        self._ema_v = grow(g(self, "_ema_v", None), (rows, len(self._ema_p)))
        self._rsi_g = grow(g(self, "_rsi_g", None), (rows, len(self._rsi_p)))
        self._rsi_l = grow(g(self, "_rsi_l", None), (rows, len(self._rsi_p)))
        self._stamp = np.zeros(rows, dtype=np.int64)  # scratch for the repeated-row check

    def add_series(self) -> int:
        """A new, cold series; returns its row number."""
        if self.size == len(self._n):
            self._alloc(2 * len(self._n))
        self.size += 1
        return self.size - 1

    # --- state in the CloseKernel format ---------------------------------------------------
    def get_state(self, row: int) -> list[Any]:
        """The state of one series as :meth:`CloseKernel.get_state` would give it."""
        self._check_row(row)
        n = int(self._n[row])
        ema = [
            [float(self._ema_s[row, j]), float(self._ema_v[row, j]) if n >= p else None]
            for j, p in enumerate(self._ema_p)
        ]
        return [
            self._ring[row].tolist(),
            int(self._i[row]),
            n,
            float(self._prev[row]) if n > 0 else None,
            self._sma[row].tolist(),
            [[float(a), float(b)] for a, b in zip(self._wma_s[row], self._wma_w[row], strict=True)],
            ema,
            [[float(a), float(b)] for a, b in zip(self._rsi_g[row], self._rsi_l[row], strict=True)],
        ]

    def set_state(self, row: int, state: list[Any]) -> None:
        """Load a :meth:`CloseKernel.get_state` (or :meth:`get_state`) into one row."""
        self._check_row(row)
        ring, i, n, prev, sma, wma, ema, rsi = state
        if len(ring) != self._cap or len(sma) != len(self._sma_p) or len(wma) != len(self._wma_p):
            raise ValueError("state does not fit this bank's indicator set")
        if len(ema) != len(self._ema_p) or len(rsi) != len(self._rsi_p):
            raise ValueError("state does not fit this bank's indicator set")
        self._ring[row] = ring
        self._i[row], self._n[row] = i, n
        self._prev[row] = 0.0 if prev is None else prev
        self._sma[row] = sma
        for j, (s, w) in enumerate(wma):
            self._wma_s[row, j], self._wma_w[row, j] = s, w
        for j, (s, v) in enumerate(ema):
            self._ema_s[row, j], self._ema_v[row, j] = s, (0.0 if v is None else v)
        for j, (g, lo) in enumerate(rsi):
            self._rsi_g[row, j], self._rsi_l[row, j] = g, lo

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
        return self._compute(r, x, True)

    def peek(self, rows: ArrayLike, closes: ArrayLike) -> F64:
        """The values :meth:`update` would return; changes nothing."""
        r, x = self._inputs(rows, closes)
        return self._compute(r, x, False)

    def _inputs(self, rows: ArrayLike, closes: ArrayLike) -> tuple[I64, F64]:
        r = np.asarray(rows, dtype=np.int64)
        x = np.asarray(closes, dtype=np.float64)
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
        ok = np.isfinite(x)
        if not ok.all():
            j = int(np.argmin(ok))
            raise IndicatorInputError(",".join(self.names), f"close of row {r[j]}", float(x[j]))
        return r, x

    def _compute(self, r: I64, x: F64, commit: bool) -> F64:
        # Every kind is updated for all its periods at once: (m, periods) matrices. The
        # element-wise arithmetic is CloseKernel's, so results are bit-identical to it.
        m = len(r)
        cap = self._cap
        n = np.take(self._n, r)
        n1 = n + 1
        i = np.take(self._i, r)
        out = np.empty((m, len(self.names)))
        xc = x[:, None]
        n1c = n1[:, None]
        steady = m > 0 and int(n.min()) >= self._longest  # every row past every warm-up
        ring = self._ring.reshape(-1)  # flat view: one take per window end
        base = (r * cap + i)[:, None]
        if self._sma_p:
            p = self._sma_pa
            # (i − p) mod cap without a modulo: i < cap and p ≤ cap
            old = np.take(ring, base - self._sma_pi + cap * (i[:, None] < self._sma_pi))
            s = np.take(self._sma, r, axis=0)
            s = s + (xc - old) if steady else s + np.where(n1c <= p, xc, xc - old)
            if commit:
                self._sma[r] = s
            v = s / p
            if not steady:
                v[n1c < p] = np.nan
            out[:, self._sma_cols] = v
        if self._wma_p:
            p = self._wma_pa
            old = np.take(ring, base - self._wma_pi + cap * (i[:, None] < self._wma_pi))
            s0 = np.take(self._wma_s, r, axis=0)
            if steady:
                w = np.take(self._wma_w, r, axis=0) + (p * xc - s0)
                s = s0 + (xc - old)
            else:
                warm = n1c <= p
                w = np.take(self._wma_w, r, axis=0) + np.where(warm, n1c * xc, p * xc - s0)
                s = s0 + np.where(warm, xc, xc - old)
            if commit:
                self._wma_s[r], self._wma_w[r] = s, w
            v = w / (p * (p + 1) / 2.0)
            if not steady:
                v[n1c < p] = np.nan
            out[:, self._wma_cols] = v
        if self._ema_p:
            p = self._ema_pa
            v = np.take(self._ema_v, r, axis=0)
            if steady:
                v = (xc - v) * (2.0 / (p + 1)) + v
                if commit:
                    self._ema_v[r] = v
            else:
                ready = n1c > p
                s = np.take(self._ema_s, r, axis=0)
                s = np.where(ready, s, s + xc)
                v = np.where(ready, (xc - v) * (2.0 / (p + 1)) + v, s / p)
                if commit:
                    self._ema_s[r], self._ema_v[r] = s, v
                v = np.where(n1c >= p, v, np.nan)
            out[:, self._ema_cols] = v
        if self._rsi_p:
            p = self._rsi_pa
            d = (x - np.take(self._prev, r))[:, None]
            g = np.where(d > 0.0, d, 0.0)
            lo = np.where(d < 0.0, -d, 0.0)
            gain, loss = np.take(self._rsi_g, r, axis=0), np.take(self._rsi_l, r, axis=0)
            if steady:
                gn = (gain * (p - 1) + g) / p
                ln = (loss * (p - 1) + lo) / p
            else:
                moves = n1c - 1
                wilder = moves > p
                at = moves == p
                gs, ls = gain + g, loss + lo
                gn = np.where(wilder, (gain * (p - 1) + g) / p, np.where(at, gs / p, gs))
                ln = np.where(wilder, (loss * (p - 1) + lo) / p, np.where(at, ls / p, ls))
                has_prev = n1c >= 2
                gn = np.where(has_prev, gn, gain)
                ln = np.where(has_prev, ln, loss)
            if commit:
                self._rsi_g[r], self._rsi_l[r] = gn, ln
            tot = gn + ln
            v = np.zeros_like(tot)
            np.divide(gn, tot, out=v, where=tot != 0.0)
            v *= 100.0
            if not steady:
                v[n1c - 1 < p] = np.nan
            out[:, self._rsi_cols] = v
        if commit:
            self._ring[r, i] = x
            nxt = i + 1
            nxt[nxt >= cap] = 0
            self._i[r] = nxt
            self._n[r] = n1
            self._prev[r] = x
        return out
