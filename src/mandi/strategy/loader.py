"""Strategies from configuration: ``[[strategies]]`` tables naming a built-in (``ema_cross``,
``sma_cross``, ``rsi``, ``momentum``, ``oi_pcr``, ``xgboost``, ``alpha``) or a user class by
dotted path (``mypkg.mystrategies:Breakout``).

.. code-block:: toml

    [[strategies]]
    name = "ema_cross"
    id = "ema_nifty"            # unique; part of every signal id (default: the name)
    symbols = ["NIFTY", "BANKNIFTY"]
    timeframe = 900             # seconds
    params = { fast = 9, slow = 21 }

Without a ``strategies`` key, ``mandi run`` runs :data:`DEFAULT_STRATEGIES`; ``strategies = []``
runs none.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import msgspec

from mandi.core.errors import ConfigError
from mandi.strategy.base import Strategy
from mandi.strategy.builtin import BUILTIN
from mandi.strategy.config import DEFAULT_STRATEGIES, StrategySpec

__all__ = [
    "DEFAULT_STRATEGIES",
    "StrategySpec",
    "build_strategies",
    "build_strategy",
    "required_timeframes",
    "strategy_class",
]


_PATH = re.compile(r"`\$\.?([^`]*)`")


def strategy_class(name: str, where: str = "strategies") -> type[Strategy]:
    """A built-in by name, or a :class:`Strategy` subclass by dotted path."""
    if name in BUILTIN:
        return BUILTIN[name]
    if "." not in name and ":" not in name:
        raise ConfigError(
            f"{where}.name",
            name,
            f"unknown strategy; built-ins are {', '.join(sorted(BUILTIN))}, or give "
            "a dotted path module:Class",
        )
    mod_name, _, attr = name.replace(":", ".").rpartition(".")
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{where}.name", name, f"cannot import it ({e})") from None
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise ConfigError(f"{where}.name", name, "is not a mandi.strategy.Strategy subclass")
    return obj


def build_strategy(spec: StrategySpec, index: int = 0) -> Strategy:
    """Instantiate ``spec`` (instruments are bound later by the engine)."""
    where = f"strategies[{index}]"
    cls = strategy_class(spec.name, where)
    try:
        config = msgspec.convert(spec.params, cls.config_class, strict=False)
    except msgspec.ValidationError as e:
        text = str(e)
        m = _PATH.search(text)
        key = f"{where}.params{('.' + m.group(1)) if m and m.group(1) else ''}"
        unknown = re.search(r"unknown field `([^`]*)`", text)
        if unknown:
            key = f"{where}.params.{unknown.group(1)}"
            raise ConfigError(key, spec.params.get(unknown.group(1)), "unknown parameter") from None
        value: Any = spec.params
        if m and m.group(1) in spec.params:
            value = spec.params[m.group(1)]
        raise ConfigError(key, value, text.split(" - at ")[0]) from None
    return cls(
        config, strategy_id=spec.id or spec.name, timeframe=spec.timeframe or cls.default_timeframe
    )


def build_strategies(specs: tuple[StrategySpec, ...]) -> list[tuple[Strategy, StrategySpec]]:
    out: list[tuple[Strategy, StrategySpec]] = []
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if not spec.enabled:
            continue
        s = build_strategy(spec, i)
        if s.id in seen:
            raise ConfigError(
                f"strategies[{i}].id",
                s.id,
                f"already used by strategies[{seen[s.id]}]; give each an id",
            )
        if ":" in s.id or not s.id:
            raise ConfigError(f"strategies[{i}].id", s.id, "must be non-empty without ':'")
        seen[s.id] = i
        out.append((s, spec))
    return out


def required_timeframes(specs: tuple[StrategySpec, ...]) -> set[int]:
    """Candle timeframes the configured strategies need from the pipeline."""
    tfs = set()
    for i, spec in enumerate(specs):
        if spec.enabled:
            tfs.add(
                spec.timeframe or strategy_class(spec.name, f"strategies[{i}]").default_timeframe
            )
    return tfs
