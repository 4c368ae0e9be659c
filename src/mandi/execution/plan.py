"""Turning a signal into a trade plan: what to trade, at what reference price, how many, with
which stop-loss and target, and with which order type.

A signal on an index trades an option on it (CE when bullish, PE when bearish, picked by the
strike selector, :mod:`mandi.execution.strikes`); a signal on a stock, future or option trades
that instrument. Sizing, stop-loss and target come from :mod:`mandi.risk`. Pure: it reads the
market and the master, and decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mandi.core.money import round_to_tick
from mandi.execution.config import TradingConfig
from mandi.execution.strikes import NoStrike, choose_expiry, select_strike
from mandi.model.instruments import AnyInstrument, Equity, Future, Index, InstrumentMaster, Option
from mandi.model.marketstate import MarketState
from mandi.model.orders import OrderType, Side
from mandi.model.trading import SignalGenerated
from mandi.risk import exits
from mandi.risk.config import RiskLimits
from mandi.risk.rules import Denied
from mandi.risk.sizing import size_entry


@dataclass(frozen=True, slots=True)
class Plan:
    """An entry, decided: the instrument, side and quantity, the reference price (what a
    marketable order would pay), the order type and limit, and the exit levels."""

    instrument: AnyInstrument
    side: Side
    direction: int
    quantity: int
    reference_price: int
    order_type: OrderType
    limit_price: int
    stop_loss: int
    target: int
    detail: dict[str, Any]


def plan_entry(
    sig: SignalGenerated,
    watched: AnyInstrument,
    bias: int,
    *,
    now: int,
    cfg: TradingConfig,
    limits: RiskLimits,
    market: MarketState,
    master: InstrumentMaster,
) -> Plan | Denied:
    """The trade that ``sig`` (on ``watched``, bullish for ``bias`` > 0) asks for, or why none."""
    detail: dict[str, Any] = {"signal_price": sig.price}
    if isinstance(watched, Index) and cfg.options_for_indices:
        expiry = choose_expiry(master, watched.symbol, now, cfg.strikes, watched.exchange)
        if expiry is None:
            return Denied("no_expiry", f"no {watched.symbol} expiry is far enough away")
        chain = market.chain(watched.symbol, expiry, now, watched.token)
        if chain is None:
            return Denied("no_chain", f"no option chain of {watched.symbol} {expiry} yet")
        choice = select_strike(chain, "CE" if bias > 0 else "PE", now, cfg.strikes, master)
        if isinstance(choice, NoStrike):
            return Denied("strike_selection", choice.reason)
        inst: AnyInstrument = choice.option
        quote_ref = choice.quote.ask if choice.quote.ask > 0 else choice.quote.ltp
        ref = market.ltp(inst.token) or quote_ref
        t = market.ticks.get(inst.token)
        if t is not None and t.ask > 0:
            ref = t.ask
        direction = 1
        detail.update(
            strike_score=round(choice.score, 4),
            scores={k: round(v, 4) for k, v in choice.scores.items()},
            delta=round(choice.delta, 4),
            iv=round(choice.iv, 4),
            expiry=expiry.isoformat(),
        )
    elif isinstance(watched, Equity | Future | Option):
        inst = watched
        direction = bias
        ref = market.ltp(inst.token) or sig.price
        t = market.ticks.get(inst.token)
        touch = 0 if t is None else (t.ask if direction > 0 else t.bid)
        if touch > 0:
            ref = touch  # what a marketable order would pay
    else:
        return Denied("not_tradable", f"{watched.symbol} cannot be traded")
    if ref <= 0:
        return Denied("no_market_data", f"no price for {inst.symbol}")
    is_option = isinstance(inst, Option)
    stop, target = exits.levels(
        limits, entry=ref, direction=direction, is_option=is_option, tick=inst.tick_size
    )
    explicit = inst is watched and (sig.stop_loss > 0 or sig.target > 0)
    if explicit:
        stop = sig.stop_loss or stop
        target = sig.target or target
    detail["explicit_levels"] = explicit
    side = Side.BUY if direction > 0 else Side.SELL
    qty = sig.quantity
    if qty <= 0:
        size = size_entry(limits, entry_price=ref, stop_price=stop, lot_size=inst.lot_size)
        if size.quantity <= 0:
            return Denied("sizing", size.reason)
        qty = size.quantity
    order_type, limit = OrderType(cfg.order_type), 0
    if order_type is OrderType.LIMIT:
        off = cfg.limit_offset_ticks * inst.tick_size
        limit = round_to_tick(
            ref + off if side is Side.BUY else max(ref - off, inst.tick_size),
            inst.tick_size,
            "down" if side is Side.BUY else "up",
        )
    return Plan(inst, side, direction, qty, ref, order_type, limit, stop, target, detail)
