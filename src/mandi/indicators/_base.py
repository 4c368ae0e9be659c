"""Shared pieces of the incremental indicators: the base class, input checks and the error.

Every indicator is a small pure object whose whole state is a handful of numbers (plus a ring
buffer where the definition needs a window). ``update`` mutates, ``peek`` computes the same
expression without assigning anything, so a preview on a forming candle can never drift from
the confirmed value.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, ClassVar, Protocol

from mandi.core.errors import DataError


class IndicatorInputError(DataError):
    """An input to an indicator is NaN, infinite or not a number.

    The indicator's state is left exactly as it was before the call.
    """

    def __init__(
        self, indicator: str, field: str, value: object, reason: str = "must be a finite number"
    ) -> None:
        self.indicator, self.field, self.value = indicator, field, value
        super().__init__(f"{indicator}: {field} {reason}, got {value!r}")


class Bar(Protocol):
    """What multi-input indicators read from a candle (``mandi.model.market.Candle`` fits)."""

    @property
    def high(self) -> float: ...
    @property
    def low(self) -> float: ...
    @property
    def close(self) -> float: ...
    @property
    def volume(self) -> float: ...
    @property
    def bucket(self) -> int: ...


_isfinite = math.isfinite


def finite(indicator: str, field: str, value: object) -> float:
    """``value`` as a float, or :class:`IndicatorInputError` if it is not a finite number."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise IndicatorInputError(indicator, field, value) from None
    if not _isfinite(x):
        raise IndicatorInputError(indicator, field, value)
    return x


def check_period(indicator: str, name: str, value: object, minimum: int = 1) -> int:
    """A window length: an ``int`` ≥ ``minimum`` (bools are refused: ``True`` is not a period)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{indicator}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_factor(indicator: str, name: str, value: object) -> float:
    """A finite, non-negative multiplier (band width, SuperTrend factor)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{indicator}: {name} must be a number, got {value!r}")
    x = float(value)
    if not _isfinite(x) or x < 0:
        raise ValueError(f"{indicator}: {name} must be finite and >= 0, got {value!r}")
    return x


def wilder_weights(period: int) -> tuple[float, float]:
    """``(a, b) = ((period − 1)/period, 1/period)``: Wilder's smoothing
    ``(v·(period−1) + x)/period`` as ``v·a + x·b`` (what every kernel and class uses, so they
    agree bit for bit)."""
    return (period - 1) / period, 1.0 / period


def fmt_param(value: float | int) -> str:
    """Parameter text for a canonical name: ``2.0`` → ``"2"``, ``2.5`` → ``"2.5"``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


class Indicator:
    """Base of the incremental indicators.

    Subclasses set ``_state`` (the slot names that make up the state, in a fixed order) and
    ``outputs`` (empty for a single-valued indicator, else the field names of the value tuple).
    ``get_state``/``set_state`` turn the state into plain lists for snapshots.
    """

    __slots__ = ()
    kind: ClassVar[str] = ""
    #: True when the indicator needs a candle (high/low/close/volume/bucket), not one number.
    multi_input: ClassVar[bool] = False
    outputs: ClassVar[tuple[str, ...]] = ()
    _state: ClassVar[tuple[str, ...]] = ()

    @property
    def name(self) -> str:
        """Canonical name, e.g. ``SMA_20`` or ``MACD_12_26_9``."""
        return "_".join([self.kind, *(fmt_param(p) for p in self.params())])

    def params(self) -> tuple[float | int, ...]:
        """Constructor parameters in order."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything: back to the state of a new instance."""
        raise NotImplementedError

    def get_state(self) -> list[Any]:
        """The state as plain values (floats, ints, None, lists), for a snapshot."""
        out: list[Any] = []
        for field in self._state:
            v = getattr(self, field)
            if isinstance(v, list):
                v = list(v)
            elif isinstance(v, deque):
                v = [list(item) for item in v]
            out.append(v)
        return out

    def set_state(self, state: list[Any]) -> None:
        """Load a state produced by :meth:`get_state` of an indicator with the same params."""
        if len(state) != len(self._state):
            raise ValueError(f"{self.name}: state has {len(state)} fields, need {len(self._state)}")
        for field, v in zip(self._state, state, strict=True):
            cur = getattr(self, field)
            if isinstance(cur, deque):
                v = deque(tuple(item) for item in v)
            elif isinstance(cur, list):
                v = list(v)
            setattr(self, field, v)

    def __repr__(self) -> str:
        return f"<{self.name} ready={self.ready} value={self.value!r}>"

    # subclasses provide these
    @property
    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def value(self) -> Any:
        raise NotImplementedError
