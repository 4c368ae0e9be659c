"""The strategy API: one :class:`Strategy` class for backtest, paper and live.

A strategy reacts to market data through hooks — :meth:`~Strategy.on_start`,
:meth:`~Strategy.on_candle` (confirmed candles of its symbols and timeframe),
:meth:`~Strategy.on_tick`, :meth:`~Strategy.on_chain` (the option chain of an underlying, once per
timeframe bucket), :meth:`~Strategy.on_fill` (fills of its own orders), :meth:`~Strategy.on_stop`
— reads the world through a read-only :class:`StrategyContext` (clock, candles, indicators, chain,
positions) and emits trading signals with :meth:`~Strategy.signal`. Its parameters are a frozen
:class:`StrategyConfig` subclass named by ``config_class``.

A strategy never places orders: its signals go through the signal manager, the risk manager and
the execution engine. It must not do I/O or read the wall clock (``self.ctx.now_ns`` is the time).

Example::

    class Breakout(Strategy):
        name = "breakout"

        class Config(StrategyConfig, frozen=True):
            lookback: int = 20

        config_class = Config

        def on_candle(self, candle):
            bars = self.ctx.candles(candle.token, candle.timeframe, self.config.lookback + 1)
            if len(bars) > self.config.lookback and candle.close > max(b.high for b in bars[:-1]):
                self.signal("BUY", confidence=0.7)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import msgspec
import numpy as np
from numpy.typing import NDArray

from mandi.core.clock import Clock
from mandi.core.ids import stable_id
from mandi.model.instruments import AnyInstrument, Equity, Future, Index, InstrumentMaster, Option
from mandi.model.market import Candle, ChainSnapshot, IndicatorValue, Tick
from mandi.model.orders import OrderFilled, Side
from mandi.model.trading import SignalGenerated
from mandi.pipeline.timeframes import bucket_start

if TYPE_CHECKING:
    from mandi.model.marketstate import MarketState
    from mandi.portfolio.positions import PositionBook


class StrategyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of every strategy's parameters (frozen; unknown keys are an error)."""


def asset_type(inst: AnyInstrument) -> str:
    if isinstance(inst, Index):
        return "INDEX"
    if isinstance(inst, Option):
        return "OPTION"
    if isinstance(inst, Future):
        return "FUTURE"
    return "EQUITY" if isinstance(inst, Equity) else "OTHER"


class StrategyContext:
    """What a strategy may read (never change): time, market data, chain and positions."""

    def __init__(
        self,
        clock: Clock,
        master: InstrumentMaster,
        market: MarketState,
        positions: PositionBook,
        history: int = 500,
    ) -> None:
        self.clock = clock
        self.master = master
        self._market = market
        self._positions = positions
        self._history = history
        self._candles: dict[tuple[int, int], deque[Candle]] = {}
        self._indicators: dict[tuple[str, int, int], IndicatorValue] = {}
        self._analytics: dict[tuple[str, Any], Any] = {}
        #: where chain analytics come from when they are not delivered as ``analytics:...``
        #: messages (the columnar node makes them only when asked): (underlying, expiry or None
        #: for the nearest) -> analytics or None
        self.analytics_source: Callable[[str, Any], Any] | None = None
        # indicator values of the columnar path: per (token, timeframe) the newest row of a
        # batch (names, values); NaN while an indicator warms up, as no message would be
        self._indicator_rows: dict[tuple[int, int], tuple[tuple[str, ...], list[float]]] = {}
        self.warming_up = False

    @property
    def now_ns(self) -> int:
        return self.clock.now_ns()

    # fed by the engine
    def _add_candle(self, c: Candle) -> None:
        key = (c.token, c.timeframe)
        q = self._candles.get(key)
        if q is None:
            q = self._candles[key] = deque(maxlen=self._history)
        if q and c.bucket <= q[-1].bucket:
            return
        q.append(c)

    def _add_indicator(self, v: IndicatorValue) -> None:
        self._indicators[(v.name, v.token, v.timeframe)] = v
        self._indicator_rows.pop((v.token, v.timeframe), None)

    def _add_indicator_batch(self, batch: Any) -> None:
        """The confirmed values of an ``IndicatorValueBatch`` (``batch:ind``): each row the
        newest of its series."""
        if not batch.confirmed or not len(batch):
            return
        rows, names = self._indicator_rows, batch.names
        for tok, tf, vals in zip(
            batch.token.tolist(), batch.timeframe.tolist(), batch.values.tolist(), strict=True
        ):
            old = rows.get((tok, tf))
            if old is not None and any(v != v for v in vals):  # keep what a NaN would not move
                vals = [o if v != v else v for v, o in zip(vals, old[1], strict=True)]
            rows[(tok, tf)] = (names, vals)

    # reading
    def candles(self, token: int, timeframe: int, n: int | None = None) -> list[Candle]:
        """The last ``n`` confirmed candles (oldest first) of a series the strategy follows."""
        q = self._candles.get((token, timeframe))
        if not q:
            return []
        items = list(q)
        return items if n is None else items[-n:]

    def last_candle(self, token: int, timeframe: int) -> Candle | None:
        q = self._candles.get((token, timeframe))
        return q[-1] if q else None

    def indicator(self, name: str, token: int, timeframe: int) -> float | None:
        """The latest confirmed value of an engine indicator (``ind:{name}:...`` topics)."""
        row = self._indicator_rows.get((token, timeframe))
        if row is not None and name in row[0]:
            x = row[1][row[0].index(name)]
            if x == x:
                return x
        v = self._indicators.get((name, token, timeframe))
        return v.value if v is not None else None

    def ltp(self, token: int) -> int:
        return self._market.ltp(token)

    def tick(self, token: int) -> Tick | None:
        return self._market.ticks.get(token)

    def instrument(self, symbol: str, exchange: str | None = None) -> AnyInstrument:
        return self.master.by_symbol(symbol, exchange)

    def chain(self, underlying: str, expiry: Any = None) -> ChainSnapshot | None:
        exps = self.master.expiries(underlying)
        if expiry is None:
            from mandi.core.calendar import ist_date

            today = ist_date(self.now_ns)
            exps = [e for e in exps if e >= today]
            if not exps:
                return None
            expiry = exps[0]
        return self._market.chain(underlying, expiry, self.now_ns)

    def analytics(self, underlying: str, expiry: Any = None) -> Any:
        """The latest chain analytics (``mandi.options.chain.ChainAnalytics``: IV and Greeks per
        strike, PCR, max pain, OI change windows) of ``underlying`` (nearest expiry by
        default), when the node's chain layer publishes them on ``analytics:...``; else None."""
        if self.analytics_source is not None:
            return self.analytics_source(underlying, expiry)
        if expiry is None:
            mine = [k for k in self._analytics if k[0] == underlying]
            if not mine:
                return None
            expiry = min(e for _, e in mine)
        return self._analytics.get((underlying, expiry))

    def positions(self, strategy: str | None = None) -> list[Any]:
        """Open positions (records), optionally of one strategy."""
        return [
            p.to_record()
            for p in self._positions.open_positions()
            if strategy is None or p.strategy == strategy
        ]


class BarPlan(NamedTuple):
    """How a strategy runs over a series of bars known in advance (the backtester's compiled
    route, :meth:`Strategy.compile_bars`).

    ``act[i]`` is True where ``on_candle`` may do more than update the strategy's own state
    (emit a signal, read the context); everywhere else the backtester does not call it.
    ``seek(i)`` sets that state to what it would be after ``on_candle`` had seen bars
    ``0 … i-1``; the backtester calls it before each acting bar and, with ``len(act)``, at the
    end, so the strategy ends as if it had seen every bar."""

    act: NDArray[np.bool_]
    seek: Callable[[int], None]


class Strategy:
    """Base class of all strategies (see the module docstring)."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[StrategyConfig]] = StrategyConfig
    #: default timeframe (seconds) when the spec does not give one
    default_timeframe: ClassVar[int] = 900

    def __init__(
        self,
        config: StrategyConfig | None = None,
        *,
        strategy_id: str = "",
        instruments: tuple[AnyInstrument, ...] = (),
        timeframe: int | None = None,
    ) -> None:
        self.config = config if config is not None else self.config_class()
        self.id = strategy_id or self.name or type(self).__name__
        self.instruments = instruments
        self.timeframe = timeframe or self.default_timeframe
        self.ctx: StrategyContext = None  # type: ignore[assignment]  # set by the engine
        self._emit: Callable[[SignalGenerated], bool] | None = None
        self._engine: Any = None  # the strategy engine (its basket hook)
        self._event: tuple[int, int, int] | None = None  # (token, timeframe, bucket) in hand

    # --- hooks (override what you need) -----------------------------------------------------------
    def on_start(self) -> None:
        """Called once before the first market data (after warm-up)."""

    def on_candle(self, candle: Candle) -> None:
        """A confirmed candle of one of the strategy's instruments at its timeframe."""

    def on_tick(self, tick: Tick) -> None:
        """Every tick of the strategy's instruments (only called if overridden)."""

    def on_chain(self, chain: ChainSnapshot) -> None:
        """The option chain of an instrument's underlying, once per timeframe bucket (only
        called if overridden)."""

    def on_fill(self, fill: OrderFilled) -> None:
        """A fill of an order that came from this strategy's signals."""

    def on_stop(self) -> None:
        """Called at shutdown."""

    def compile_bars(self, token: int, close: NDArray[np.int64]) -> BarPlan | None:
        """Optional, for the backtester: the :class:`BarPlan` of this strategy over the closes
        (paise) of ``token`` at its timeframe — or None (the default) to be called on every
        bar. A plan promises that at the bars it does not mark, ``on_candle`` would only update
        the strategy's own state from the closes (no signal): the backtest is the same with or
        without it (tested for the built-in crossovers and RSI), only faster. A planned
        ``on_candle`` must not read the candle history of the context (``ctx.candles``): the
        skipped bars reach it only at the end of the run."""
        return None

    # --- acting -----------------------------------------------------------------------------------
    def signal(
        self,
        action: Side | str,
        *,
        instrument: AnyInstrument | None = None,
        price: int = 0,
        confidence: float = 1.0,
        target: int = 0,
        stop_loss: int = 0,
        quantity: int = 0,
        metadata: dict[str, Any] | None = None,
    ) -> SignalGenerated | None:
        """Emit a trading signal on ``instrument`` (default: the one whose data is being
        handled). At most one signal per (strategy, instrument, timeframe, bucket) reaches the
        execution engine. Returns the signal, or None while warming up / for a duplicate."""
        if self._emit is None:
            raise RuntimeError(f"strategy {self.id} is not attached to an engine")
        side = Side(action.upper() if isinstance(action, str) else action)
        now = self.ctx.now_ns
        if self._event is not None and (instrument is None or instrument.token == self._event[0]):
            token, tf, bucket = self._event
        else:
            inst = instrument or (self.instruments[0] if self.instruments else None)
            if inst is None:
                raise ValueError(f"strategy {self.id}: signal() needs an instrument")
            token, tf, bucket = inst.token, self.timeframe, bucket_start(now, self.timeframe)
        inst = instrument or self.ctx.master.get(token)
        if inst is None:
            raise ValueError(f"strategy {self.id}: unknown instrument token {token}")
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"strategy {self.id}: confidence must be in [0, 1], got {confidence}")
        px = price or self.ctx.ltp(token) or (self._last_close(token, tf))
        sig = SignalGenerated(
            signal_id=stable_id(self.id, token, tf, bucket),
            ts_event=now,
            strategy=self.id,
            token=token,
            exchange=inst.exchange,
            symbol=inst.symbol,
            timeframe=tf,
            bucket=bucket,
            action=side,
            price=px,
            asset_type=asset_type(inst),
            confidence=float(confidence),
            target=target,
            stop_loss=stop_loss,
            quantity=quantity,
            metadata=dict(metadata or {}),
        )
        if self.ctx.warming_up:
            return None
        return sig if self._emit(sig) else None

    def place_basket(self, basket: Any, key: str = "", policy: str | None = None) -> Any:
        """Place a multi-leg ``basket`` (:class:`mandi.model.baskets.Basket`) as one: a single
        risk decision for the structure, the hedges first, the configured leg-failure policy
        (or ``policy``). ``key`` makes it idempotent (default: once per timeframe bucket).
        Returns the :class:`~mandi.execution.baskets.BasketResult`, or None while warming up."""
        hook = getattr(self._engine, "place_basket", None)
        if hook is None:
            raise RuntimeError(f"strategy {self.id} cannot place baskets here (no trading kernel)")
        if self.ctx.warming_up:
            return None
        now = self.ctx.now_ns
        request = stable_id(self.id, key or bucket_start(now, self.timeframe), "basket")
        return hook(basket, request, policy=policy, strategy=self.id)

    def close(
        self, instrument: AnyInstrument, *, metadata: dict[str, Any] | None = None
    ) -> SignalGenerated | None:
        """Signal to close this strategy's open position in ``instrument`` (an exit-only signal:
        it never opens a position). Returns the signal, or None when nothing is open."""
        held = [
            p
            for p in self._open_positions()
            if p.token == instrument.token and p.strategy == self.id
        ]
        if not held:
            return None
        action = Side.BUY if held[0].direction < 0 else Side.SELL
        return self.signal(
            action, instrument=instrument, metadata={**(metadata or {}), "exit": True}
        )

    def _open_positions(self) -> list[Any]:
        return list(self.ctx._positions.open_positions())

    def _last_close(self, token: int, tf: int) -> int:
        c = self.ctx.last_candle(token, tf)
        return c.close if c is not None else 0
