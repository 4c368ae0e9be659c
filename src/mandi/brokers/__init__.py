"""Brokers behind the :class:`~mandi.execution.ports.Broker` port, and mode isolation.

:func:`make_broker` is the only place a broker is chosen:

* ``logging`` → no broker at all (the execution engine has no order path);
* ``paper``   → :class:`~mandi.execution.paper.PaperBroker` (kernel code; never a live one);
* ``live``    → the broker named by ``trading.broker``, looked up in :data:`LIVE_BROKERS`; live
  mode refuses to start without one. Each adapter package registers its factory here
  (:mod:`mandi.brokers.kite`, :mod:`mandi.brokers.angel`, :mod:`mandi.brokers.groww`);
  factories get the trading config, the clock and the node's context (``app`` config,
  instrument ``master``, live ``feed``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mandi.core.clock import Clock
from mandi.core.errors import ConfigError
from mandi.execution.config import TradingConfig
from mandi.execution.ports import Broker

#: name -> factory(trading config, clock) of live brokers
LIVE_BROKERS: dict[str, Callable[..., Broker]] = {}


def register_live_broker(name: str, factory: Callable[..., Broker]) -> None:
    LIVE_BROKERS[name] = factory


def _adapter(package: str) -> Callable[..., Broker]:
    """The factory of an adapter package, imported only when that broker is used."""

    def make(cfg: TradingConfig, clock: Clock, **context: Any) -> Broker:
        import importlib

        broker: Broker = importlib.import_module(package).make_live_broker(cfg, clock, **context)
        return broker

    return make


for _name in ("kite", "angel", "groww"):
    register_live_broker(_name, _adapter(f"mandi.brokers.{_name}"))


def make_broker(
    mode: str,
    cfg: TradingConfig,
    clock: Clock,
    *,
    paper_book: Any = None,
    cash: int = 0,
    **context: Any,
) -> Broker | None:
    if mode == "logging":
        return None
    if mode == "paper":
        from mandi.execution.paper import PaperBroker

        return PaperBroker(clock, paper_book, cfg.paper, cash)
    if mode != "live":
        raise ConfigError("run.mode", mode, "use logging, paper or live")
    if not cfg.broker:
        raise ConfigError(
            "trading.broker",
            cfg.broker,
            "live mode needs a live broker (set trading.broker); refusing to start",
        )
    factory = LIVE_BROKERS.get(cfg.broker)
    if factory is None:
        have = ", ".join(sorted(LIVE_BROKERS)) or "none in this version"
        raise ConfigError(
            "trading.broker",
            cfg.broker,
            f"no such live broker (available: {have}); refusing to start",
        )
    broker = factory(cfg, clock, **context)
    if not broker.is_live:
        raise ConfigError("trading.broker", cfg.broker, "is not a live broker")
    return broker
