"""Option-selling strategies that trade structures leg by leg: ``short_straddle`` and
``iron_condor``.

Both follow one underlying (``underlying``, by default the strategy's first symbol) and, once a
day, at the first candle ending at or after ``entry`` (IST), open their structure on the nearest
expiry (``expiry_index`` 1 = the next one): the ATM strike is the listed strike nearest the
underlying price of the chain. Every leg is its own signal (the hedges first: buys before sells)
with ``lots`` lots and, for short legs, a stop-loss ``stop_loss_pct`` % above the premium
(0 = none); the position monitor closes a leg whose price reaches it. At the first candle ending
at or after ``exit`` the legs still open are closed (:meth:`Strategy.close`). The legs of one
entry share a ``structure`` id in their signals' metadata, so results can be read per structure.

They run in ``mandi run`` (paper or live) and, on recorded chains, in option-leg backtests
(:mod:`mandi.backtest.options`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar

import msgspec

from mandi.core.calendar import ist_datetime
from mandi.core.money import round_to_tick
from mandi.model.baskets import Basket, BasketLeg
from mandi.model.instruments import Option
from mandi.model.market import Candle, ChainSnapshot, OptionQuote
from mandi.model.orders import Side
from mandi.strategy.base import Strategy, StrategyConfig

Strikes = Annotated[int, msgspec.Meta(ge=0, le=100)]


def _time(text: str, what: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} must be an IST time HH:MM, got {text!r}") from None


class OptionLegConfig(StrategyConfig, frozen=True):
    underlying: str = ""  # default: the strategy's first symbol
    entry: str = "09:20"
    exit: str = "15:10"
    lots: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    stop_loss_pct: Annotated[float, msgspec.Meta(ge=0, le=1000)] = 30.0
    expiry_index: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0
    # True: the legs go as one basket (one risk decision, hedges first, the leg-failure
    # policy); per-leg stops then come from the risk config's option stop-loss
    as_basket: bool = False

    def __post_init__(self) -> None:
        if _time(self.entry, "entry") >= _time(self.exit, "exit"):
            raise ValueError(f"entry ({self.entry}) must be before exit ({self.exit})")


class OptionLegStrategy(Strategy):
    """Base of strategies that open an option structure at a time and close it at another.

    Subclasses implement :meth:`legs`: ``(option_type, strike steps from ATM, side)`` tuples."""

    config_class: ClassVar[type[StrategyConfig]] = OptionLegConfig
    default_timeframe = 60
    #: the backtester prices these strategies' legs from recorded chain quotes
    trades_option_legs: ClassVar[bool] = True

    def legs(self) -> list[tuple[str, int, Side]]:
        raise NotImplementedError

    def on_start(self) -> None:
        cfg: OptionLegConfig = self.config  # type: ignore[assignment]
        self._entry, self._exit = _time(cfg.entry, "entry"), _time(cfg.exit, "exit")
        self._entered: dt.date | None = None
        self._open: list[Option] = []
        self._count = 0

    @property
    def underlying(self) -> str:
        cfg: OptionLegConfig = self.config  # type: ignore[assignment]
        if cfg.underlying:
            return cfg.underlying
        return self.instruments[0].symbol if self.instruments else ""

    def on_candle(self, candle: Candle) -> None:
        self.step(self.ctx.now_ns)

    def step(self, now: int) -> None:
        """Enter or exit when the time has come (called on every candle of the underlying)."""
        at = ist_datetime(now)
        if self._open and at.time() >= self._exit:
            self._close_all()
        elif self._entered != at.date() and self._entry <= at.time() < self._exit:
            chain = self._chain()
            if chain is not None:
                self._entered = at.date()
                self._enter(chain)

    def _chain(self) -> ChainSnapshot | None:
        cfg: OptionLegConfig = self.config  # type: ignore[assignment]
        today = ist_datetime(self.ctx.now_ns).date()
        expiries = [e for e in self.ctx.master.expiries(self.underlying) if e >= today]
        if len(expiries) <= cfg.expiry_index:
            return None
        return self.ctx.chain(self.underlying, expiries[cfg.expiry_index])

    def _enter(self, chain: ChainSnapshot) -> None:
        cfg: OptionLegConfig = self.config  # type: ignore[assignment]
        strikes = [r.strike for r in chain.rows]
        if not strikes or chain.underlying_price <= 0:
            return
        atm = min(range(len(strikes)), key=lambda i: (abs(strikes[i] - chain.underlying_price), i))
        self._count += 1
        structure = f"{self.id}:{ist_datetime(self.ctx.now_ns).date().isoformat()}:{self._count}"
        plan = []
        for kind, steps, side in self.legs():
            i = atm + steps
            if not 0 <= i < len(strikes):
                return  # the chain does not reach the structure's strikes: skip the day
            row = chain.rows[i]
            q = row.call if kind == "CE" else row.put
            inst = self._contract(chain, row.strike, kind)
            if q is None or inst is None or not (q.ltp or q.bid or q.ask):
                return  # a leg without a market: never open half a structure
            plan.append((inst, side, q))
        plan.sort(key=lambda x: x[1] is Side.SELL)  # hedges first: buys before sells
        if cfg.as_basket:
            legs = tuple(
                BasketLeg(inst.symbol, side, cfg.lots * inst.lot_size, inst.exchange)
                for inst, side, _ in plan
            )
            res = self.place_basket(Basket(legs, tag=structure), key=structure)
            if res is not None and res.status == "ACCEPTED":
                self._open += [inst for inst, _, _ in plan]
            return
        for inst, side, q in plan:
            price = _reference(q, side)
            stop = 0
            if side is Side.SELL and cfg.stop_loss_pct > 0:
                stop = round_to_tick(
                    int(price * (1 + cfg.stop_loss_pct / 100) + 0.5), inst.tick_size, "up"
                )
            sig = self.signal(
                side,
                instrument=inst,
                price=price,
                stop_loss=stop,
                quantity=cfg.lots * inst.lot_size,
                metadata={"structure": structure, "leg": f"{side.value} {inst.symbol}"},
            )
            if sig is not None:
                self._open.append(inst)

    def _contract(self, chain: ChainSnapshot, strike: int, kind: str) -> Option | None:
        for o in self.ctx.master.options(chain.underlying, chain.expiry):
            if o.strike == strike and o.option_type == kind:
                return o
        return None

    def _close_all(self) -> None:
        for inst in self._open:
            self.close(inst, metadata={"reason": "exit time"})
        self._open = []


def _reference(q: OptionQuote, side: Side) -> int:
    """What a marketable order would pay or get: the touch, else the last price."""
    touch = q.ask if side is Side.BUY else q.bid
    return touch if touch > 0 else q.ltp


class ShortStraddle(OptionLegStrategy):
    """Sell the ATM call and put at ``entry``; a per-leg stop-loss; buy back at ``exit``."""

    name = "short_straddle"

    def legs(self) -> list[tuple[str, int, Side]]:
        return [("CE", 0, Side.SELL), ("PE", 0, Side.SELL)]


class IronCondorConfig(OptionLegConfig, frozen=True):
    offset: Annotated[int, msgspec.Meta(ge=1, le=50)] = 2  # short strikes from ATM
    width: Annotated[int, msgspec.Meta(ge=1, le=50)] = 2  # wings beyond the short strikes


class IronCondor(OptionLegStrategy):
    """Sell the call ``offset`` strikes above and the put ``offset`` below ATM, buy the wings
    ``width`` strikes further out (bought first); per-leg stop-loss on the short legs; close at
    ``exit``."""

    name = "iron_condor"
    config_class = IronCondorConfig

    def legs(self) -> list[tuple[str, int, Side]]:
        cfg: IronCondorConfig = self.config  # type: ignore[assignment]
        o, w = cfg.offset, cfg.width
        return [
            ("PE", -o - w, Side.BUY),
            ("CE", o + w, Side.BUY),
            ("PE", -o, Side.SELL),
            ("CE", o, Side.SELL),
        ]


def structure_of(signal: Any) -> str:
    """The ``structure`` id an option-leg strategy put in a signal's metadata ("" if none)."""
    meta = getattr(signal, "metadata", None) or {}
    return str(meta.get("structure", ""))
