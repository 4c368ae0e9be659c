"""The candle pipeline: ticks → 1 s candles → timeframe candles, published on the bus.

Topics (seed key style): confirmed ``candle:{tf}s:{exchange}:{token}`` (1 s candles included, as
``candle:1s:...``), forming ``pub:candle:{tf}s:{exchange}:{token}``. Forming candles are built only
for series somebody subscribes to (hundreds of option series nobody charts cost nothing).
Nothing here does I/O; the shell feeds ticks in and drives :meth:`CandlePipeline.advance` from its
clock.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from mandi.bus.memory import MessageBus
from mandi.core.calendar import ExchangeCalendar
from mandi.model.market import Candle, Tick
from mandi.pipeline.seconds import SecondAggregator
from mandi.pipeline.timeframes import DEFAULT_TIMEFRAMES, TimeframeBuilder
from mandi.pipeline.validate import INVALID, TickPolicy


def candle_topic(c: Candle) -> str:
    """The bus topic of a candle: confirmed ``candle:...``, forming ``pub:candle:...``."""
    prefix = "candle" if c.closed else "pub:candle"
    return f"{prefix}:{c.timeframe}s:{c.exchange}:{c.token}"


class CandlePipeline:
    """:class:`SecondAggregator` + :class:`TimeframeBuilder`, wired to a :class:`MessageBus`;
    ticks are checked against the tick policy ``policy`` (:mod:`mandi.pipeline.validate`)."""

    def __init__(
        self,
        bus: MessageBus,
        timeframes: Iterable[int] = DEFAULT_TIMEFRAMES,
        cal: ExchangeCalendar | None = None,
        known_tokens: Container[int] | None = None,
        close_delay_ns: int = 0,
        emit_forming: bool = True,
        policy: TickPolicy | None = None,
    ) -> None:
        self.bus = bus
        self.seconds = SecondAggregator(known_tokens, close_delay_ns, policy)
        self.frames = TimeframeBuilder(timeframes, cal, emit_forming, self._has_forming_subscriber)
        self._delay = close_delay_ns
        self._wm = -1
        self._bus_version = bus.version

    def _has_forming_subscriber(self, token: int, exchange: str, tf: int) -> bool:
        return self.bus.has_subscribers(f"pub:candle:{tf}s:{exchange}:{token}")

    def _check_subscriptions(self) -> None:
        if self.bus.version != self._bus_version:  # subscriptions changed: re-ask the filter
            self._bus_version = self.bus.version
            self.frames.refresh_forming_filter()

    def set_price_limits(self, token: int, lower: int, upper: int) -> None:
        """``token``'s circuit limits in paise (0 = that side unknown), for the price band."""
        self.seconds.set_price_limits(token, lower, upper)

    def handle_tick(self, tick: Tick, now_ns: int | None = None) -> None:
        """One tick (``now_ns``: the feed's clock, for the policy's future-timestamp rule)."""
        self._check_subscriptions()
        for c in self.seconds.handle_tick(tick, now_ns):
            self._publish_base(c)
        wm = self.seconds.watermark_ns
        if wm != self._wm:
            self._wm = wm
            self._publish(self.frames.advance(wm - self._delay))

    def handle_ticks(self, ticks: Iterable[Tick], now_ns: int | None = None) -> list[Tick]:
        """Ticks in order; returns those with valid values (the ones the policy did not reject
        as :data:`~mandi.pipeline.validate.INVALID`: accepted, ``late`` or ``volume_decreased``)
        — what the node stores and publishes."""
        seconds = self.seconds
        valid = []
        for t in ticks:
            last = seconds.last_rejection
            self.handle_tick(t, now_ns)
            rej = seconds.last_rejection
            if rej is last or rej is None or rej[0] not in INVALID:
                valid.append(t)
        return valid

    def _publish_base(self, c: Candle) -> None:
        publish = self.bus.publish
        publish(f"candle:1s:{c.exchange}:{c.token}", c)
        for out in self.frames.handle_candle(c):
            publish(candle_topic(out), out)

    def _publish(self, candles: Iterable[Candle]) -> None:
        publish = self.bus.publish
        for c in candles:
            publish(candle_topic(c), c)

    def advance(self, now_ns: int) -> None:
        """Time moved to ``now_ns`` (clock or feed time): confirm what has ended."""
        self._check_subscriptions()  # closing seconds build forming candles too
        for c in self.seconds.advance(now_ns):
            self._publish_base(c)
        self._publish(self.frames.advance(now_ns - self._delay))

    def flush(self) -> None:
        """Confirm everything still open (end of feed, shutdown)."""
        self._check_subscriptions()
        for c in self.seconds.flush():
            self._publish_base(c)
        self._publish(self.frames.flush())
