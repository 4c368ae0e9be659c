"""Built-in strategies from the seeds: SMA crossover, EMA crossover (9/21 on 15 min), RSI
overbought/oversold, momentum, an OI/PCR strategy on the option chain, the ML strategies
``xgboost`` and ``alpha`` (:mod:`mandi.strategy.ml`), and the option-selling structures
``short_straddle`` and ``iron_condor`` (:mod:`mandi.strategy.options`).

Each signals on a *change* of state (a crossover, a threshold crossing), never on every candle,
and keeps its own incremental indicators per instrument (``mandi.indicators``), so it runs the same
in the backtester. Indicator state warms up from stored candles after a restart.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated

import msgspec
import numpy as np
from numpy.typing import NDArray

from mandi.core.calendar import calendar, ist_date
from mandi.indicators import EMA, RSI, SMA, batch
from mandi.model.market import Candle, ChainSnapshot, Tick
from mandi.pipeline.timeframes import bucket_start
from mandi.strategy.base import BarPlan, Strategy, StrategyConfig

Period = Annotated[int, msgspec.Meta(ge=1, le=10_000)]


class CrossConfig(StrategyConfig, frozen=True):
    fast: Period = 9
    slow: Period = 21
    #: a trend follower from the open: once per session, ``open_delay_s`` after the open and
    #: within the strategy's first bucket of the day, signal the side the (warm) averages stand
    #: on, unless the strategy already holds a position on the instrument
    enter_at_open: bool = False
    open_delay_s: Annotated[int, msgspec.Meta(ge=0, le=3600)] = 10

    def __post_init__(self) -> None:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")


class _Cross(Strategy):
    """Moving-average crossover: BUY when the fast average crosses above the slow one, SELL when
    it crosses below. Confidence grows with the gap between the averages."""

    config_class = CrossConfig
    average: type = SMA

    def on_start(self) -> None:
        self._state: dict[int, tuple[object, object, int]] = {}
        self._opened: dict[int, dt.date] = {}  # token -> the session of the open entry

    def on_tick(self, tick: Tick) -> None:
        cfg: CrossConfig = self.config  # type: ignore[assignment]
        if not cfg.enter_at_open:
            return
        day = ist_date(tick.ts_event)
        if self._opened.get(tick.token) == day:
            return
        st = self._state.get(tick.token)
        side = st[2] if st is not None else 0
        inst = self.ctx.master.get(tick.token)
        session = calendar("BSE" if inst is not None and inst.exchange == "BSE" else "NSE").session(
            day
        )
        if inst is None or session is None or tick.ts_event < session.open_ns:
            return
        first_bucket_end = bucket_start(session.open_ns, self.timeframe) + self.timeframe * 10**9
        if tick.ts_event >= first_bucket_end:
            self._opened[tick.token] = day  # too late today: wait for a crossover
            return
        if not side or tick.ts_event < session.open_ns + cfg.open_delay_s * 10**9:
            return  # cold (no history), or the open's first quotes are not settled yet
        self._opened[tick.token] = day
        held = any(
            p.token == tick.token or p.underlying == inst.symbol
            for p in self.ctx.positions(self.id)
        )
        if not held:
            self.signal(
                "BUY" if side > 0 else "SELL",
                instrument=inst,
                price=tick.price,
                confidence=0.6,
                metadata={"entry": "open", "trend": "up" if side > 0 else "down"},
            )

    def on_candle(self, candle: Candle) -> None:
        cfg: CrossConfig = self.config  # type: ignore[assignment]
        st = self._state.get(candle.token)
        if st is None:
            st = (self.average(cfg.fast), self.average(cfg.slow), 0)
        fast_ind, slow_ind, prev = st
        f = fast_ind.update(candle.close)  # type: ignore[attr-defined]
        s = slow_ind.update(candle.close)  # type: ignore[attr-defined]
        if f is None or s is None:
            self._state[candle.token] = (fast_ind, slow_ind, 0)
            return
        side = 1 if f > s else -1 if f < s else prev
        self._state[candle.token] = (fast_ind, slow_ind, side)
        if prev and side != prev:
            gap = abs(f - s) / s if s else 0.0
            self.signal(
                "BUY" if side > 0 else "SELL",
                price=candle.close,
                confidence=min(1.0, 0.5 + 100 * gap),
                metadata={"fast": round(f, 2), "slow": round(s, 2)},
            )

    def compile_bars(self, token: int, close: NDArray[np.int64]) -> BarPlan | None:
        """The crossover over whole arrays: the averages by the batch kernels (bit-identical to
        the incremental ones), the bars where the side flips as the acting bars, and ``seek``
        restoring both averages and the side (:meth:`Strategy.compile_bars`)."""
        cfg: CrossConfig = self.config  # type: ignore[assignment]
        kinds: dict[type, str] = {SMA: "sma", EMA: "ema"}
        kind = kinds.get(self.average)
        if kind is None or type(self) not in (SMACross, EMACross):
            return None  # a subclass may change the rule anywhere: it opts in by its own plan
        if len(close) and int(np.abs(close).max()) * cfg.slow >= 2**53:
            return None  # the running sums would round: seek could not restore them exactly
        x = close.astype(np.float64)
        fast_v = getattr(batch, kind)(x, cfg.fast)
        slow_v = getattr(batch, kind)(x, cfg.slow)
        side = np.zeros(len(close), dtype=np.int8)
        ready = ~(np.isnan(fast_v) | np.isnan(slow_v))
        # a tie keeps the previous side: carry the last decided side forward
        raw = np.where(fast_v > slow_v, 1, np.where(fast_v < slow_v, -1, 0)).astype(np.int8)
        raw[~ready] = 0
        decided = np.flatnonzero(raw != 0)
        if len(decided):
            carry = np.zeros(len(close), dtype=np.int64)
            carry[decided] = decided
            np.maximum.accumulate(carry, out=carry)
            side = np.where(carry >= decided[0], raw[carry], 0).astype(np.int8)
            side[~ready] = 0
        prev = np.r_[np.int8(0), side[:-1]]
        act = (prev != 0) & (side != 0) & (side != prev)
        average = self.average

        def seek(i: int) -> None:
            f, s = average(cfg.fast), average(cfg.slow)
            f.seek(close, i, fast_v)
            s.seek(close, i, slow_v)
            self._state[token] = (f, s, int(side[i - 1]) if i else 0)

        return BarPlan(act, seek)


class SMACross(_Cross):
    name = "sma_cross"
    default_timeframe = 300
    average = SMA


class EMACross(_Cross):
    """The seed's default: EMA 9/21 on 15-minute candles."""

    name = "ema_cross"
    default_timeframe = 900
    average = EMA


class RSIConfig(StrategyConfig, frozen=True):
    period: Period = 14
    overbought: Annotated[float, msgspec.Meta(gt=0, lt=100)] = 70.0
    oversold: Annotated[float, msgspec.Meta(gt=0, lt=100)] = 30.0

    def __post_init__(self) -> None:
        if self.oversold >= self.overbought:
            raise ValueError("oversold must be below overbought")


class RSIReversal(Strategy):
    """RSI mean reversion: BUY when RSI rises back above ``oversold``, SELL when it falls back
    below ``overbought``."""

    name = "rsi"
    default_timeframe = 300
    config_class = RSIConfig

    def on_start(self) -> None:
        self._rsi: dict[int, tuple[RSI, float | None]] = {}

    def on_candle(self, candle: Candle) -> None:
        cfg: RSIConfig = self.config  # type: ignore[assignment]
        ind, prev = self._rsi.get(candle.token) or (RSI(cfg.period), None)
        v = ind.update(candle.close)
        self._rsi[candle.token] = (ind, v)
        if v is None or prev is None:
            return
        if prev < cfg.oversold <= v:
            self.signal(
                "BUY",
                price=candle.close,
                confidence=min(1.0, 0.5 + (cfg.oversold - min(prev, v)) / 40),
                metadata={"rsi": round(v, 2)},
            )
        elif prev > cfg.overbought >= v:
            self.signal(
                "SELL",
                price=candle.close,
                confidence=min(1.0, 0.5 + (max(prev, v) - cfg.overbought) / 40),
                metadata={"rsi": round(v, 2)},
            )

    def compile_bars(self, token: int, close: NDArray[np.int64]) -> BarPlan | None:
        """RSI over whole arrays (the batch kernels, bit-identical to the incremental RSI): the
        bars where it crosses back over a threshold act; ``seek`` restores the RSI and the
        previous value (:meth:`Strategy.compile_bars`)."""
        if type(self) is not RSIReversal:
            return None  # a subclass may change the rule anywhere: it opts in by its own plan
        cfg: RSIConfig = self.config  # type: ignore[assignment]
        x = close.astype(np.float64)
        values = batch.rsi(x, cfg.period)
        gain, loss = batch.rsi_averages(x, cfg.period)
        prev = np.r_[np.nan, values[:-1]]
        lo, hi = cfg.oversold, cfg.overbought
        with np.errstate(invalid="ignore"):  # NaN (warming up) compares False: no signal
            act = ((prev < lo) & (lo <= values)) | ((prev > hi) & (hi >= values))

        def seek(i: int) -> None:
            ind = RSI(cfg.period)
            ind.seek(x, i, values, gain, loss)
            last = float(values[i - 1]) if i else math.nan
            self._rsi[token] = (ind, None if math.isnan(last) else last)

        return BarPlan(act, seek)


class MomentumConfig(StrategyConfig, frozen=True):
    lookback: Period = 10
    threshold_pct: Annotated[float, msgspec.Meta(gt=0)] = 0.5


class Momentum(Strategy):
    """Rate of change over ``lookback`` candles: BUY when it rises above +threshold, SELL when it
    falls below −threshold (signals on entering the zone, not while in it)."""

    name = "momentum"
    default_timeframe = 300
    config_class = MomentumConfig

    def on_start(self) -> None:
        self._zone: dict[int, int] = {}

    def on_candle(self, candle: Candle) -> None:
        cfg: MomentumConfig = self.config  # type: ignore[assignment]
        bars = self.ctx.candles(candle.token, candle.timeframe, cfg.lookback + 1)
        if len(bars) <= cfg.lookback or bars[-1].bucket != candle.bucket:
            return
        base = bars[0].close
        roc = 100.0 * (candle.close - base) / base if base else 0.0
        zone = 1 if roc >= cfg.threshold_pct else -1 if roc <= -cfg.threshold_pct else 0
        prev = self._zone.get(candle.token, 0)
        self._zone[candle.token] = zone
        if zone and zone != prev:
            self.signal(
                "BUY" if zone > 0 else "SELL",
                price=candle.close,
                confidence=min(1.0, 0.5 + abs(roc) / (4 * cfg.threshold_pct)),
                metadata={"roc_pct": round(roc, 3)},
            )


class PCRConfig(StrategyConfig, frozen=True):
    bullish_pcr: Annotated[float, msgspec.Meta(gt=0)] = 1.3
    bearish_pcr: Annotated[float, msgspec.Meta(gt=0)] = 0.7
    min_total_oi: Annotated[int, msgspec.Meta(ge=0)] = 0

    def __post_init__(self) -> None:
        if self.bearish_pcr >= self.bullish_pcr:
            raise ValueError("bearish_pcr must be below bullish_pcr")


class OIPCR(Strategy):
    """Put-call ratio of open interest on the option chain: a PCR rising above ``bullish_pcr``
    (put writers confident) signals BUY, one falling below ``bearish_pcr`` signals SELL."""

    name = "oi_pcr"
    default_timeframe = 300
    config_class = PCRConfig

    def on_start(self) -> None:
        self._zone: dict[str, int] = {}

    def on_chain(self, chain: ChainSnapshot) -> None:
        cfg: PCRConfig = self.config  # type: ignore[assignment]
        ce = sum(r.call.oi for r in chain.rows if r.call is not None)
        pe = sum(r.put.oi for r in chain.rows if r.put is not None)
        if ce <= 0 or ce + pe < cfg.min_total_oi:
            return
        pcr = pe / ce
        zone = 1 if pcr >= cfg.bullish_pcr else -1 if pcr <= cfg.bearish_pcr else 0
        prev = self._zone.get(chain.underlying, 0)
        self._zone[chain.underlying] = zone
        if zone and zone != prev and math.isfinite(pcr):
            inst = next((i for i in self.instruments if i.symbol == chain.underlying), None)
            self.signal(
                "BUY" if zone > 0 else "SELL",
                instrument=inst,
                price=chain.underlying_price,
                confidence=0.6,
                metadata={"pcr": round(pcr, 4), "expiry": chain.expiry.isoformat()},
            )


from mandi.strategy.ml import AlphaStrategy, XGBoostStrategy  # noqa: E402 - the ML strategies
from mandi.strategy.options import IronCondor, ShortStraddle  # noqa: E402

BUILTIN: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        SMACross,
        EMACross,
        RSIReversal,
        Momentum,
        OIPCR,
        XGBoostStrategy,
        AlphaStrategy,
        ShortStraddle,
        IronCondor,
    )
}
