"""The strategy engine: routes market data to strategies, isolates their failures, and warms
them up from history.

* Confirmed candles arrive on ``candle:{tf}s:{exchange}:{token}`` and go to every strategy that
  follows that instrument at that timeframe (each candle once: a bucket not after the last one
  seen is ignored). Ticks go to strategies overriding ``on_tick``; chains (``on_chain``) are
  dispatched once per timeframe bucket from :meth:`StrategyEngine.handle_time`.
* A strategy that raises is isolated: the error is counted, logged (rate-limited) and published
  as a :class:`~mandi.model.events.SystemEvent` on ``system:strategy_error`` (the first error and
  every 100th); the other strategies carry on. After ``disable_after_errors`` errors (0 = never)
  the strategy is disabled and that is reported too.
* :meth:`StrategyEngine.warm_up` replays stored candles with signals suppressed, so indicator
  state after a restart matches an uninterrupted run.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from mandi.bus.memory import MessageBus
from mandi.core.calendar import calendar
from mandi.core.logs import RateLimitedLog
from mandi.model.events import SystemEvent
from mandi.model.instruments import AnyInstrument, Index, Option
from mandi.model.market import Candle, ChainSnapshot, IndicatorValue, Tick
from mandi.model.orders import OrderFilled
from mandi.model.trading import SignalGenerated
from mandi.pipeline.timeframes import bucket_start
from mandi.strategy.base import Strategy, StrategyContext

log = logging.getLogger(__name__)


def _overrides(s: Strategy, hook: str) -> bool:
    return getattr(type(s), hook) is not getattr(Strategy, hook)


class StrategyEngine:
    def __init__(
        self,
        bus: MessageBus,
        ctx: StrategyContext,
        emit: Callable[[SignalGenerated], bool],
        disable_after_errors: int = 0,
    ) -> None:
        self.bus = bus
        self.ctx = ctx
        self.emit = emit
        self.disable_after_errors = disable_after_errors
        self.strategies: list[Strategy] = []
        self.errors: Counter[str] = Counter()
        self.disabled: set[str] = set()
        self._by_series: dict[tuple[int, int], list[Strategy]] = {}
        self._by_tick: dict[int, list[Strategy]] = {}
        self._chain: list[tuple[Strategy, AnyInstrument]] = []
        self._chain_bucket: dict[tuple[str, str], int] = {}
        self._last_bucket: dict[tuple[int, int], int] = {}
        self._by_id: dict[str, Strategy] = {}
        self._rl = RateLimitedLog(log)
        self._subs: list[Any] = []
        self.started = False
        #: places a basket for a strategy (the kernel's BasketExecutor.place), if any
        self.place_basket: Callable[..., Any] | None = None

    def add(self, strategy: Strategy, instruments: Iterable[AnyInstrument]) -> None:
        strategy.instruments = tuple(instruments)
        strategy.ctx = self.ctx
        strategy._emit = self.emit
        strategy._engine = self
        self.strategies.append(strategy)
        self._by_id[strategy.id] = strategy
        for inst in strategy.instruments:
            self._by_series.setdefault((inst.token, strategy.timeframe), []).append(strategy)
            if _overrides(strategy, "on_tick"):
                self._by_tick.setdefault(inst.token, []).append(strategy)
            if _overrides(strategy, "on_chain"):
                self._chain.append((strategy, inst))

    def series(self) -> list[tuple[AnyInstrument, int]]:
        """Every (instrument, timeframe) some strategy follows."""
        out = []
        for token, tf in self._by_series:
            inst = self.ctx.master.get(token)
            if inst is not None:
                out.append((inst, tf))
        return out

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self, batches: bool = False) -> None:
        """Subscribe to the bus and call every ``on_start``. ``batches``: indicator values come
        as ``batch:ind`` batches (the columnar node) rather than ``ind:...`` messages."""
        for token, tf in self._by_series:
            inst = self.ctx.master.get(token)
            if inst is None:
                continue
            self._subs.append(
                self.bus.subscribe(
                    f"candle:{tf}s:{inst.exchange}:{token}",
                    self.handle_candle,
                    name="strategy.candles",
                )
            )
        if batches:
            self._subs.append(
                self.bus.subscribe(
                    "batch:ind", self._on_indicator_batch, name="strategy.indicators"
                )
            )
        else:
            self._subs.append(
                self.bus.subscribe("ind:>", self._on_indicator, name="strategy.indicators")
            )
        if self.ctx.analytics_source is None:  # else it asks for them when read
            self._subs.append(
                self.bus.subscribe("analytics:>", self._on_analytics, name="strategy.analytics")
            )
        if not self.started:  # warm_up already started them: a second on_start would reset
            for s in self.strategies:  # the state the warm-up just rebuilt
                self._call(s, "on_start")
        self.started = True

    def stop(self) -> None:
        for s in self.strategies:
            self._call(s, "on_stop")
        for sub in self._subs:
            self.bus.unsubscribe(sub)
        self._subs.clear()
        self.started = False

    def warm_up(self, candles: Iterable[Candle]) -> int:
        """Feed stored candles with signals suppressed; returns how many were used."""
        if not self.started:
            for s in self.strategies:
                self._call(s, "on_start")
            self.started = True
        self.ctx.warming_up = True
        n = 0
        try:
            for c in candles:
                if self._dispatch_candle(c):
                    n += 1
        finally:
            self.ctx.warming_up = False
        return n

    # --- dispatch ---------------------------------------------------------------------------------
    def handle_candle(self, topic: str, c: Candle) -> None:
        self._dispatch_candle(c)

    def _dispatch_candle(self, c: Candle) -> bool:
        # every confirmed candle of a followed series passes here (a backtest's every bar): kept
        # lean — the candle history append and the strategy calls inline, no getattr per call
        token, tf, bucket = c.token, c.timeframe, c.bucket
        key = (token, tf)
        if not c.closed or bucket <= self._last_bucket.get(key, -1):
            return False
        self._last_bucket[key] = bucket
        ctx = self.ctx
        history = ctx._candles.get(key)
        if history is None:
            history = ctx._candles[key] = deque(maxlen=ctx._history)
        history.append(c)  # buckets only grow here (checked above)
        disabled = self.disabled
        for s in self._by_series.get(key, ()):
            if disabled and s.id in disabled:
                continue
            s._event = (token, tf, bucket)
            try:
                s.on_candle(c)
            except Exception as e:
                self._failed(s, "on_candle", e)
            finally:
                s._event = None
        return True

    def series_dispatcher(self, token: int, timeframe: int) -> Callable[[Candle], bool]:
        """:meth:`_dispatch_candle` bound to one series (the backtester calls it once per bar of
        a one-series run): the same steps in the same order, with the series' key, candle
        history and strategy list looked up once instead of on every candle. Only for candles
        of that series, and for the strategies added before it is made."""
        key = (token, timeframe)
        ctx = self.ctx
        got = ctx._candles.get(key)
        if got is None:
            got = ctx._candles[key] = deque(maxlen=ctx._history)
        history: deque[Candle] = got
        strategies = self._by_series.get(key, ())
        last_bucket, disabled, candles = self._last_bucket, self.disabled, ctx._candles
        failed = self._failed

        def dispatch(c: Candle) -> bool:
            nonlocal history
            bucket = c.bucket
            if not c.closed or bucket <= last_bucket.get(key, -1):
                return False
            last_bucket[key] = bucket
            if candles.get(key) is not history:  # replaced (or dropped) since: follow it
                now = candles.get(key)
                if now is None:
                    now = candles[key] = deque(maxlen=ctx._history)
                history = now
            history.append(c)
            event = (token, timeframe, bucket)
            for s in strategies:
                if disabled and s.id in disabled:
                    continue
                s._event = event
                try:
                    s.on_candle(c)
                except Exception as e:
                    failed(s, "on_candle", e)
                finally:
                    s._event = None
            return True

        return dispatch

    def tick_tokens(self) -> set[int]:
        """Tokens some strategy follows tick by tick (``on_tick``)."""
        return set(self._by_tick)

    def handle_tick(self, t: Tick) -> None:
        for s in self._by_tick.get(t.token, ()):
            if s.id not in self.disabled:
                self._call(s, "on_tick", t)

    def handle_time(self, now_ns: int) -> None:
        """Dispatch chains to ``on_chain`` strategies once per timeframe bucket."""
        from mandi.core.calendar import ist_date

        for s, inst in self._chain:
            if s.id in self.disabled:
                continue
            underlying = (
                inst.symbol
                if isinstance(inst, Index)
                else getattr(inst, "underlying", "") or inst.symbol
            )
            b = bucket_start(now_ns, s.timeframe)
            key = (s.id, underlying)
            if self._chain_bucket.get(key) == b:
                continue
            cal = calendar(inst.exchange if inst.exchange in ("NSE", "BSE") else "NSE")
            if not cal.is_open(now_ns):
                continue
            self._chain_bucket[key] = b
            today = ist_date(now_ns)
            exps = [
                e
                for e in self.ctx.master.expiries(underlying)
                if e >= today and cal.expiry_ns(e) > now_ns
            ]
            if not exps:
                continue
            snap = self.ctx._market.chain(
                underlying, exps[0], now_ns, inst.token if not isinstance(inst, Option) else 0
            )
            if snap is None:
                continue
            s._event = (inst.token, s.timeframe, b)
            try:
                self._call(s, "on_chain", snap)
            finally:
                s._event = None

    def handle_chain(self, topic: str, snap: ChainSnapshot) -> None:
        self.ctx._market.update_chain(snap)

    def handle_fill(self, fill: OrderFilled) -> None:
        s = self._by_id.get(fill.strategy)
        if s is not None and s.id not in self.disabled:
            self._call(s, "on_fill", fill)

    def _on_analytics(self, topic: str, a: Any) -> None:
        underlying, expiry = getattr(a, "underlying", None), getattr(a, "expiry", None)
        if underlying is not None and expiry is not None:
            self.ctx._analytics[(underlying, expiry)] = a

    def _on_indicator_batch(self, topic: str, batch: Any) -> None:
        self.ctx._add_indicator_batch(batch)

    def _on_indicator(self, topic: str, v: IndicatorValue) -> None:
        if isinstance(v, IndicatorValue) and v.confirmed:
            self.ctx._add_indicator(v)

    # --- isolation --------------------------------------------------------------------------------
    def _call(self, s: Strategy, hook: str, *args: Any) -> None:
        try:
            getattr(s, hook)(*args)
        except Exception as e:
            self._failed(s, hook, e)

    def _failed(self, s: Strategy, hook: str, e: Exception) -> None:
        n = self.errors[s.id] = self.errors[s.id] + 1
        now = self.ctx.now_ns
        self._rl.log(
            logging.ERROR,
            s.id,
            now,
            "strategy %s failed in %s (%d errors): %s: %s",
            s.id,
            hook,
            n,
            type(e).__name__,
            e,
        )
        disable = 0 < self.disable_after_errors <= n
        if n == 1 or n % 100 == 0 or disable:
            msg = f"strategy {s.id} raised in {hook}: {type(e).__name__}: {e}"
            if disable:
                msg += f" — disabled after {n} errors"
            self.bus.publish(
                "system:strategy_error",
                SystemEvent(
                    now,
                    "strategy_error",
                    msg,
                    "ERROR",
                    f"strategy.{s.id}",
                    {"strategy": s.id, "hook": hook, "errors": n},
                ),
            )
        if disable:
            self.disabled.add(s.id)
