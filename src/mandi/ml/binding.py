"""Loading the models of ML strategies (shell): :func:`bind_models` gives every
:class:`~mandi.strategy.ml.ModelStrategy` the model its ``params.model`` names, before the
strategy starts — so the strategy's inference stays a pure call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mandi.core.errors import ConfigError


def bind_models(strategies: Iterable[Any]) -> None:
    """Load each ML strategy's model directory (once per directory); one clear error line for a
    missing, corrupt or mismatched model, or a strategy timeframe that is not the model's."""
    from mandi.ml.registry import ModelError, load_model
    from mandi.strategy.ml import ModelStrategy

    cache: dict[str, Any] = {}
    for s in strategies:
        if not isinstance(s, ModelStrategy) or s.model is not None:
            continue
        path = s.config.model  # type: ignore[attr-defined]
        where = f"strategies.{s.id}.params.model"
        if not path:
            raise ConfigError(where, "", "a model directory is required (mandi train --out DIR)")
        if path not in cache:
            try:
                cache[path] = load_model(path)
            except ModelError as e:
                raise ModelError(f"strategy {s.id}: {e}") from None
        model = cache[path]
        if model.timeframe != s.timeframe:
            raise ConfigError(
                f"strategies.{s.id}.timeframe",
                s.timeframe,
                f"model {model.name} was trained on {model.timeframe} s bars",
            )
        s.model = model
