"""One fused kernel for a set of close-only indicators of one series (SMA, EMA, WMA, RSI).

The seed's default set is seven such indicators on the same closes. Run as seven objects, each
update pays seven calls, seven input checks and seven ring buffers; the kernel checks the input
once, keeps one ring buffer (as long as the longest window) and updates every running sum with
local arithmetic. The arithmetic is the same expression, in the same order, as in the separate
classes, so the values are bit-identical to theirs (tested).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mandi.indicators._base import IndicatorInputError, finite, wilder_weights
from mandi.indicators.momentum import RSI
from mandi.indicators.moving import EMA, SMA, WMA

FUSABLE = (SMA, EMA, WMA, RSI)


def fusable(indicators: Sequence[object]) -> bool:
    """True when every indicator is one the kernel can run (SMA, EMA, WMA, RSI)."""
    return bool(indicators) and all(type(i) in FUSABLE for i in indicators)


class CloseKernel:
    """SMA/EMA/WMA/RSI of one series, updated together.

    Parameters
    ----------
    indicators : sequence of SMA, EMA, WMA or RSI
        Prototypes giving kinds and periods (their state is not used); the outputs come in
        this order.

    Notes
    -----
    ``update(x)`` returns a list with one float (or None while warming up) per indicator;
    ``peek(x)`` the same without changing anything. ``get_state``/``set_state`` give plain lists
    for snapshots.
    """

    __slots__ = (
        "_cap",
        "_ema",
        "_ema_p",
        "_i",
        "_n",
        "_order",
        "_prev",
        "_ring",
        "_rsi",
        "_rsi_p",
        "_rsi_w",
        "_sma",
        "_sma_p",
        "_wma",
        "_wma_p",
        "names",
    )

    def __init__(self, indicators: Sequence[SMA | EMA | WMA | RSI]) -> None:
        if not fusable(indicators):
            raise ValueError("CloseKernel runs only SMA, EMA, WMA and RSI")
        self.names = tuple(i.name for i in indicators)
        # per kind: list of [period, ...state]; _order maps output slot -> (kind, index)
        self._order: list[tuple[int, int]] = []
        periods: dict[int, list[int]] = {0: [], 1: [], 2: [], 3: []}
        for ind in indicators:
            kind = FUSABLE.index(type(ind))
            self._order.append((kind, len(periods[kind])))
            periods[kind].append(ind.period)
        self._cap = max([1, *periods[0], *periods[2]])
        self._sma_p, self._ema_p = periods[0], periods[1]
        self._wma_p, self._rsi_p = periods[2], periods[3]
        self._rsi_w = [wilder_weights(p) for p in self._rsi_p]
        self.reset()

    def reset(self) -> None:
        """Back to a new series."""
        self._ring = [0.0] * self._cap
        self._i = 0
        self._n = 0
        self._prev: float | None = None
        self._sma = [0.0] * len(self._sma_p)  # running sums
        self._wma = [[0.0, 0.0] for _ in self._wma_p]  # [sum, weighted sum]
        self._ema: list[list[Any]] = [[0.0, None] for _ in self._ema_p]  # [warm-up sum, value]
        self._rsi = [[0.0, 0.0] for _ in self._rsi_p]  # [avg gain, avg loss] (sums in warm-up)

    def get_state(self) -> list[Any]:
        """The state as plain lists."""
        return [
            list(self._ring),
            self._i,
            self._n,
            self._prev,
            list(self._sma),
            [list(w) for w in self._wma],
            [list(e) for e in self._ema],
            [list(r) for r in self._rsi],
        ]

    def set_state(self, state: list[Any]) -> None:
        """Load a :meth:`get_state` of a kernel with the same indicators."""
        ring, i, n, prev, sma, wma, ema, rsi = state
        if len(ring) != self._cap or len(sma) != len(self._sma_p) or len(wma) != len(self._wma_p):
            raise ValueError("kernel state does not fit this indicator set")
        if len(ema) != len(self._ema_p) or len(rsi) != len(self._rsi_p):
            raise ValueError("kernel state does not fit this indicator set")
        self._ring, self._i, self._n, self._prev = list(ring), int(i), int(n), prev
        self._sma = [float(s) for s in sma]
        self._wma = [[float(a), float(b)] for a, b in wma]
        self._ema = [[float(a), None if b is None else float(b)] for a, b in ema]
        self._rsi = [[float(a), float(b)] for a, b in rsi]

    def _check(self, value: object) -> float:
        if type(value) is float:
            if math.isfinite(value):
                return value
            raise IndicatorInputError(",".join(self.names), "close", value)
        return finite(",".join(self.names), "close", value)

    def _compute(self, x: float, commit: bool) -> list[float | None]:
        ring, cap, i = self._ring, self._cap, self._i
        n1 = self._n + 1  # inputs including x
        sma_out: list[float | None] = []
        for j, p in enumerate(self._sma_p):
            s = self._sma[j]
            s = s + x if n1 <= p else s + (x - ring[(i - p) % cap])
            if commit:
                self._sma[j] = s
            sma_out.append(s / p if n1 >= p else None)
        wma_out: list[float | None] = []
        for j, p in enumerate(self._wma_p):
            st = self._wma[j]
            s, w = st
            if n1 <= p:
                w = w + n1 * x
                s = s + x
            else:
                w = w + (p * x - s)
                s = s + (x - ring[(i - p) % cap])
            if commit:
                st[0], st[1] = s, w
            wma_out.append(w / (p * (p + 1) / 2.0) if n1 >= p else None)
        ema_out: list[float | None] = []
        for j, p in enumerate(self._ema_p):
            est = self._ema[j]
            v = est[1]
            if v is not None:
                v = (x - v) * (2.0 / (p + 1)) + v
            else:
                s = est[0] + x
                if commit:
                    est[0] = s
                if n1 == p:
                    v = s / p
            if commit:
                est[1] = v
            ema_out.append(v)
        rsi_out: list[float | None] = []
        prev = self._prev
        if prev is not None:
            d = x - prev
            g = d if d > 0.0 else 0.0
            lo = -d if d < 0.0 else 0.0
            moves = n1 - 1  # moves including this one
            for j, p in enumerate(self._rsi_p):
                rst = self._rsi[j]
                gain, loss = rst
                if moves > p:
                    a, b = self._rsi_w[j]
                    gain = gain * a + g * b
                    loss = loss * a + lo * b
                else:
                    gain, loss = gain + g, loss + lo
                    if moves < p:
                        if commit:
                            rst[0], rst[1] = gain, loss
                        rsi_out.append(None)
                        continue
                    gain /= p
                    loss /= p
                if commit:
                    rst[0], rst[1] = gain, loss
                s = gain + loss
                rsi_out.append(100.0 * (gain / s) if s != 0.0 else 0.0)
        else:
            rsi_out = [None] * len(self._rsi_p)
        if commit:
            ring[i] = x
            self._i = i + 1 if i + 1 < cap else 0
            self._n = n1
            self._prev = x
        outs = (sma_out, ema_out, wma_out, rsi_out)
        return [outs[k][j] for k, j in self._order]

    def update(self, value: float) -> list[float | None]:
        """Add a confirmed close; one value (or None while warming up) per indicator."""
        return self._compute(self._check(value), True)

    def peek(self, value: float) -> list[float | None]:
        """The values if ``value`` were confirmed now; changes nothing."""
        return self._compute(self._check(value), False)
