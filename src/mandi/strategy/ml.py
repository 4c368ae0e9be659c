"""The ML strategies: ``xgboost`` (seed 002) and ``alpha`` (seed 001's Automated Alpha).

Both compute features with :class:`~mandi.features.FeatureBuilder` — the code the model was
trained on — at each confirmed bar of their instruments, and ask a loaded model for class
probabilities (down / neutral / up). Inference is a pure call: the shell loads the model
directory named by ``params.model`` before the strategy starts
(:func:`mandi.ml.binding.bind_models`), so the strategy itself does no I/O.

.. code-block:: toml

    [[strategies]]
    name = "alpha"
    symbols = ["NIFTY", "INDIA VIX"]   # VIX bars feed the model's vix features, if it has any
    timeframe = 180                      # must be the model's
    params = { model = "models/alpha", confidence = 0.6, min_premium = 5.0 }

* ``xgboost``: BUY when P(up) ≥ ``confidence``, SELL when P(down) ≥ ``confidence`` (on a stock
  a SELL closes the long; on an index the execution engine trades its options), optionally
  flat on a neutral prediction (``exit_on_neutral``).
* ``alpha``: a confident up (down) prediction buys the at-the-money call (put) of the
  underlying through the strike selector — ``quantity`` units (0 = one lot), only when the ATM
  premium is at least ``min_premium`` rupees; the position is closed when the prediction turns
  neutral, and reversed when it flips.

Every prediction is kept as :attr:`ModelStrategy.last_prediction` (the dashboard's alpha card
shows it) and rides on the signals' metadata (probabilities, model name and date).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Protocol

import msgspec
import numpy as np
from numpy.typing import NDArray

from mandi.core.errors import ConfigError
from mandi.features import FeatureBuilder, groups_of
from mandi.model.instruments import AnyInstrument, Index
from mandi.model.market import Candle, ChainSnapshot
from mandi.strategy.base import Strategy, StrategyConfig

VIX_NAMES = frozenset({"INDIAVIX"})
_WORDS = {"down": "Bearish", "neutral": "Neutral", "up": "Bullish"}


class Predictor(Protocol):
    """What a strategy needs from a loaded model (:class:`mandi.ml.registry.Model`)."""

    name: str
    created: str
    feature_names: tuple[str, ...]
    classes: tuple[str, ...]
    timeframe: int

    def predict_proba(self, row: NDArray[np.float64]) -> NDArray[np.float64]: ...


def is_vix(symbol: str) -> bool:
    return symbol.replace(" ", "").upper() in VIX_NAMES


class ModelConfig(StrategyConfig, frozen=True):
    model: str = ""  # the model directory (mandi train --out); required
    confidence: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.6
    quantity: Annotated[int, msgspec.Meta(ge=0)] = 0  # units per entry; 0 = the engine's sizing
    exit_on_neutral: bool = False
    underlying: str = ""  # whose option chain feeds chain features (default: the model's)


class AlphaConfig(ModelConfig, frozen=True):
    quantity: Annotated[int, msgspec.Meta(ge=0)] = 0  # 0 = one lot of the options traded
    exit_on_neutral: bool = True
    min_premium: Annotated[float, msgspec.Meta(ge=0)] = 5.0  # rupees (seed ALPHA_MIN_OPTION_PRICE)


class ModelStrategy(Strategy):
    """Shared machinery of the ML strategies (see the module docstring)."""

    config_class: ClassVar[type[StrategyConfig]] = ModelConfig
    default_timeframe: ClassVar[int] = 180

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: Predictor | None = None  # bound by the shell before on_start
        self.last_prediction: dict[str, Any] | None = None
        self.predictions = 0
        self._vix: set[int] = set()
        self._builders: dict[int, FeatureBuilder] = {}  # per traded instrument (on_start)
        self._traded: dict[int, AnyInstrument] = {}
        self._chain = False

    # --- set-up ---------------------------------------------------------------------------------
    def _where(self, key: str) -> str:
        return f"strategies.{self.id}.params.{key}"

    def on_start(self) -> None:
        cfg: ModelConfig = self.config  # type: ignore[assignment]
        m = self.model
        if m is None:
            raise ConfigError(self._where("model"), cfg.model, "no model loaded")
        if m.timeframe != self.timeframe:
            raise ConfigError(
                f"strategies.{self.id}.timeframe",
                self.timeframe,
                f"model {m.name} was trained on {m.timeframe} s bars",
            )
        groups = groups_of(m.feature_names)
        self._vix = {i.token for i in self.instruments if is_vix(i.symbol)}
        traded = [i for i in self.instruments if i.token not in self._vix]
        if "vix" in groups and not self._vix:
            raise ConfigError(
                f"strategies.{self.id}.symbols",
                [i.symbol for i in self.instruments],
                f"model {m.name} uses India VIX: add 'INDIA VIX' to the symbols",
            )
        self._chain = "chain" in groups
        self._builders = {i.token: FeatureBuilder(m.feature_names, m.timeframe) for i in traded}
        self._traded = {i.token: i for i in traded}

    def underlying_of(self, inst: AnyInstrument) -> str:
        cfg: ModelConfig = self.config  # type: ignore[assignment]
        default = getattr(getattr(self.model, "manifest", None), "underlying", "")
        return cfg.underlying or default or inst.symbol

    # --- data -----------------------------------------------------------------------------------
    def on_candle(self, candle: Candle) -> None:
        if candle.token in self._vix:
            for each in self._builders.values():
                each.update_vix(candle.bucket, candle.close)
            return
        b = self._builders.get(candle.token)
        if b is None:
            return
        inst = self._traded[candle.token]
        chain = None
        if self._chain:
            chain = self.ctx.chain(self.underlying_of(inst))
            if chain is not None:
                b.offer_chain(chain)
        row = b.update_bar(candle.bucket, candle.open, candle.high, candle.low, candle.close)
        if row is None or self.ctx.warming_up:
            return
        assert self.model is not None
        proba = self.model.predict_proba(row)
        self.predictions += 1
        k = int(np.argmax(proba))
        classes = self.model.classes
        pred = {
            "time_ns": candle.bucket + self.timeframe * 1_000_000_000,
            "symbol": inst.symbol,
            "signal": _WORDS.get(classes[k], classes[k]),
            "class": classes[k],
            "confidence": float(proba[k]),
            "probabilities": {
                _WORDS.get(c, c): round(float(p), 6) for c, p in zip(classes, proba, strict=True)
            },
            "model": self.model.name,
            "model_date": self.model.created[:10],
        }
        self.last_prediction = pred
        self.decide(candle, inst, pred, chain)

    # --- decisions ------------------------------------------------------------------------------
    def held(self, source: int) -> int:
        """+1 / −1: the bias of this strategy's open position from ``source``; 0 if flat."""
        for p in self.ctx.positions(self.id):
            if p.metadata.get("source") == source:
                return int(p.metadata.get("bias", p.direction))
        return 0

    def _meta(self, pred: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "probabilities": pred["probabilities"],
            "alpha_signal": pred["signal"],
            "model": pred["model"],
            "model_date": pred["model_date"],
            **extra,
        }

    def exit(self, candle: Candle, pred: dict[str, Any], bias: int) -> None:
        """Close the position from this instrument (a signal the execution engine reads as
        "go flat": it closes and opens nothing)."""
        self.signal(
            "SELL" if bias > 0 else "BUY",
            price=candle.close,
            confidence=pred["confidence"],
            metadata=self._meta(pred, exit=True, reason="neutral"),
        )

    def decide(self, candle: Candle, inst: AnyInstrument, pred: dict[str, Any], chain: Any) -> None:
        cfg: ModelConfig = self.config  # type: ignore[assignment]
        cls, conf = pred["class"], pred["confidence"]
        if cls in ("up", "down") and conf >= cfg.confidence:
            self.signal(
                "BUY" if cls == "up" else "SELL",
                price=candle.close,
                confidence=conf,
                quantity=cfg.quantity,
                metadata=self._meta(pred),
            )
        elif cls == "neutral" and cfg.exit_on_neutral:
            bias = self.held(candle.token)
            if bias:
                self.exit(candle, pred, bias)


class XGBoostStrategy(ModelStrategy):
    """Seed 002's XGBoost strategy: a model on returns, RSI, momentum and volatility with a
    confidence gate (any model of the registry; the name is the seed's)."""

    name = "xgboost"


class AlphaStrategy(ModelStrategy):
    """Seed 001's Automated Alpha: ATM options on confident predictions, flat on neutral."""

    name = "alpha"
    config_class = AlphaConfig

    def atm_premium(self, chain: ChainSnapshot | None, side: str) -> int:
        """LTP (paise) of the at-the-money call or put, 0 if unknown."""
        if chain is None or not chain.rows or chain.underlying_price <= 0:
            return 0
        spot = chain.underlying_price
        row = min(chain.rows, key=lambda r: (abs(r.strike - spot), r.strike))
        q = row.call if side == "CE" else row.put
        return q.ltp if q is not None else 0

    def lot(self, inst: AnyInstrument, chain: ChainSnapshot | None) -> int:
        """One lot of the options an index signal will trade; 0 (the engine's sizing) when the
        signal trades the instrument itself (a backtest's stand-in for the index)."""
        if isinstance(inst, Index) and chain is not None:
            opts = self.ctx.master.options(chain.underlying, chain.expiry)
            if opts:
                return opts[0].lot_size
        return 0

    def decide(self, candle: Candle, inst: AnyInstrument, pred: dict[str, Any], chain: Any) -> None:
        cfg: AlphaConfig = self.config  # type: ignore[assignment]
        cls, conf = pred["class"], pred["confidence"]
        if cls in ("up", "down") and conf >= cfg.confidence:
            if chain is None:
                chain = self.ctx.chain(self.underlying_of(inst))
            side = "CE" if cls == "up" else "PE"
            premium = self.atm_premium(chain, side)
            if chain is not None and premium < cfg.min_premium * 100:
                return  # the seed's price floor: too cheap an option to trade
            self.signal(
                "BUY" if cls == "up" else "SELL",
                price=candle.close,
                confidence=conf,
                quantity=cfg.quantity or self.lot(inst, chain),
                metadata=self._meta(pred, option_type=side, atm_premium=premium),
            )
        elif cls == "neutral" and cfg.exit_on_neutral:
            bias = self.held(candle.token)
            if bias:
                self.exit(candle, pred, bias)
