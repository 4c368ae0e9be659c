"""The dashboard's alpha card (``MandiAPI.alpha``, ``/api/v1/alpha``) shows a running ML
strategy's latest prediction — the model's own probabilities, its name and date — and falls
back to the latest signal, whose metadata carries the same fields."""

from __future__ import annotations

import datetime as dt

from mandi.core.calendar import ist_ns
from mandi.model.orders import Side
from mandi.model.trading import SignalGenerated
from mandi.strategy.ml import AlphaStrategy
from mandi.web.api import MandiAPI

T = ist_ns(dt.date(2026, 4, 13), dt.time(9, 30))
PROBS = {"Bearish": 0.12, "Neutral": 0.2, "Bullish": 0.68}


class Node:
    """The attributes of a MarketNode that the alpha card reads."""

    def __init__(self, strategies):
        engine = type("Engine", (), {"strategies": strategies})()
        kernel = type("Kernel", (), {"strategies": engine})()
        self.layers = [type("Layer", (), {"name": "trading", "kernel": kernel})()]


def signal(ts, action="BUY", **meta):
    return SignalGenerated(
        "s1", ts, "alpha", 256265, "NSE", "NIFTY", 180, ts - 180 * 10**9, Side(action), 2_400_000,
        "INDEX", 0.68, metadata=meta,
    )  # fmt: skip


def test_card_shows_the_latest_prediction_with_model_name_and_date():
    s = AlphaStrategy(strategy_id="alpha")
    s.last_prediction = {
        "time_ns": T, "symbol": "NIFTY", "signal": "Bullish", "class": "up", "confidence": 0.68,
        "probabilities": PROBS, "model": "nifty-lgb", "model_date": "2026-04-10",
    }  # fmt: skip
    api = MandiAPI(Node([s]))
    api._on_signal("signal:alpha", signal(T - 600 * 10**9, "SELL"))  # an older signal
    card = api.alpha()
    assert card["alpha_signal"] == "Bullish" and card["alpha_probabilities"] == PROBS
    assert (card["alpha_model"], card["alpha_model_date"]) == ("nifty-lgb", "2026-04-10")
    assert card["strategy"] == "alpha" and card["time"].startswith("2026-04-13T09:30")


def test_card_falls_back_to_the_signal_and_its_model_metadata():
    api = MandiAPI(Node([AlphaStrategy(strategy_id="alpha")]))  # no prediction yet
    meta = {"probabilities": PROBS, "alpha_signal": "Neutral", "model": "m", "model_date": "d"}
    api._on_signal("signal:alpha", signal(T, "SELL", exit=True, **meta))
    card = api.alpha()
    # an exit ("go flat") signal on a neutral prediction reads Neutral, not Bearish
    assert card["alpha_signal"] == "Neutral" and card["alpha_model"] == "m"
    assert card["alpha_probabilities"] == PROBS
