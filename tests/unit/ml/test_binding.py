"""ML strategies get their model before they start; a bad model or a timeframe the model was not
trained on stops start-up with one line."""

from __future__ import annotations

import pytest

from mandi.core.errors import ConfigError
from mandi.ml.binding import bind_models
from mandi.ml.registry import ModelError
from mandi.strategy.loader import StrategySpec, build_strategies


def built(*specs):
    return [s for s, _ in build_strategies(tuple(specs))]


def test_models_are_bound_once_per_directory(tiny_model):
    path = str(tiny_model[0])
    a, b, c = built(
        StrategySpec("alpha", id="a", timeframe=180, params={"model": path}),
        StrategySpec("xgboost", id="b", timeframe=180, params={"model": path}),
        StrategySpec("rsi", id="c"),
    )
    bind_models([a, b, c])
    assert a.model is b.model and a.model.name == "test-lightgbm"


@pytest.mark.parametrize(
    "spec, error, message",
    [
        (StrategySpec("alpha", params={"model": "/no/such"}), ModelError, "strategy alpha: model"),
        (StrategySpec("alpha"), ConfigError, "strategies.alpha.params.model = ''"),
        (StrategySpec("xgboost", timeframe=300, params={"model": "MODEL"}), ConfigError,
         "strategies.xgboost.timeframe = 300: model test-lightgbm was trained on 180 s bars"),
    ],
)  # fmt: skip
def test_bad_bindings_are_one_line(tiny_model, spec, error, message):
    if spec.params.get("model") == "MODEL":
        spec = StrategySpec(
            spec.name, timeframe=spec.timeframe, params={"model": str(tiny_model[0])}
        )
    with pytest.raises(error, match=message.replace("(", r"\(")) as e:
        bind_models(built(spec))
    assert "\n" not in str(e.value)
