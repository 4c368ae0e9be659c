"""The trading layer of ``mandi run``: the trading kernel on the node's bus, with SQLite, the paper
(or live) broker, warm-up, CLI requests and the heartbeat.

* **Clock.** With the simulator (or any replayable feed) time is *exchange* time: the later of the
  pipeline's watermark and the last tick seen (:class:`FeedClock`), so ``--speed inf`` trades the
  simulated day with the rules of that day. Broker feeds (wall-clock time) use the node's clock.
* **Start-up** (in :meth:`TradingLayer.attach`, before the first tick): open the trading store
  (``synchronous=FULL``) and the paper broker's book, restore positions/orders/the HALTED latch,
  reconcile open orders with the broker, and — when the node resumed a simulated day — restore the
  last price of every instrument and warm the strategies on the stored candles before the resume
  point (signals suppressed). Only then does the kernel subscribe to the bus.
* **Manual orders.** ``mandi order`` writes a row into ``order_requests``; this layer polls the
  table every ``trading.request_poll_s`` and runs each request through the same risk manager as
  signals (``ExecutionEngine.handle_manual``), writing the outcome back for the CLI to print.
  Requests older than ``trading.request_ttl_s`` expire unexecuted. The CLI refuses when no node
  heartbeat is fresh: orders need live prices and the running node's broker session, and a second
  writer would race the node's in-memory state.
* **Kill switch.** ``mandi halt`` / ``mandi resume`` write the latch row directly (compare-and-set
  on its version); the layer picks the change up at its next poll.
* **Storage.** While the node's SQLite writer cannot write (``system:storage_failed``: disk full,
  read-only, locked too long) new entries are blocked (the risk engine's entry block ``storage``,
  rule ``storage_failed``; exits stay possible) — fail closed; ``system:storage_recovered`` lifts
  the block.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from mandi.brokers import make_broker
from mandi.core.clock import NS_PER_SECOND, Clock
from mandi.core.errors import ConfigError, MandiError
from mandi.core.money import to_paise
from mandi.execution.charges import ChargesModel, default_rate_table
from mandi.model.market import Candle, Tick
from mandi.model.orders import Side
from mandi.stores.trading import (
    SqlitePaperBook,
    SqliteTradingStore,
    finish_request,
    load_latch,
    pending_requests,
)
from mandi.strategy.loader import DEFAULT_STRATEGIES, StrategySpec, build_strategies
from mandi.system.kernel import TradingKernel

if TYPE_CHECKING:
    from mandi.config import AppConfig
    from mandi.model.events import SystemEvent
    from mandi.services.context import NodeContext

log = logging.getLogger(__name__)


def strategy_specs(cfg: AppConfig) -> tuple[StrategySpec, ...]:
    return DEFAULT_STRATEGIES if cfg.strategies is None else cfg.strategies


def prepare_config(cfg: AppConfig) -> AppConfig:
    """Add the candle timeframes the configured strategies need to the pipeline's."""
    from mandi.strategy.loader import required_timeframes

    need = required_timeframes(strategy_specs(cfg)) - set(cfg.pipeline.timeframes)
    if not need:
        return cfg
    tfs = tuple(sorted({*cfg.pipeline.timeframes, *need}))
    log.info("pipeline timeframes %s (added %s for the strategies)", tfs, sorted(need))
    return msgspec.structs.replace(
        cfg, pipeline=msgspec.structs.replace(cfg.pipeline, timeframes=tfs)
    )


class FeedClock:
    """Exchange time of a replayable feed (see the module docstring): the later of the node's
    watermark and the last tick seen, starting at ``start_ns``."""

    def __init__(self, ctx: NodeContext, start_ns: int = 0) -> None:
        self._watermark_ns = ctx.watermark_ns
        self._last = start_ns

    def observe(self, topic: str, tick: Tick) -> None:
        if tick.ts_event > self._last:
            self._last = tick.ts_event

    def observe_ns(self, ts_ns: int) -> None:
        """A tick of this exchange time went by (the columnar path tells it tick batches' times,
        see ``TradingKernel.handle_ticks``)."""
        if ts_ns > self._last:
            self._last = ts_ns

    def now_ns(self) -> int:
        wm = self._watermark_ns()
        return wm if wm > self._last else self._last


class TradingLayer:
    """Plugs the :class:`~mandi.system.kernel.TradingKernel` into a node (through its
    :class:`~mandi.services.context.NodeContext`). While the node cannot store
    (``system:storage_failed`` until ``system:storage_recovered``) new entries are blocked."""

    name = "trading"

    def __init__(self, cfg: AppConfig) -> None:
        self.cfg = cfg
        self.mode = cfg.run.mode
        self.specs = strategy_specs(cfg)
        self._built = build_strategies(self.specs)  # bad strategy config stops start-up here
        from mandi.ml.binding import bind_models

        bind_models(s for s, _ in self._built)  # ML strategies: their models, or stop here
        if self.mode == "live" and not cfg.trading.broker and cfg.broker.name not in ("", "paper"):
            cfg = self.cfg = msgspec.structs.replace(
                cfg, trading=msgspec.structs.replace(cfg.trading, broker=cfg.broker.name)
            )
        if self.mode == "live" and not cfg.trading.broker:
            raise ConfigError(
                "trading.broker",
                "",
                "live mode needs a live broker (--broker kite|angel|groww or broker.name); "
                "refusing to start",
            )
        self.kernel: TradingKernel | None = None
        self.live: LiveInputs | None = None
        self.store: SqliteTradingStore | None = None
        self.clock: Clock | None = None
        self._ctx: NodeContext | None = None
        self.requests_done = 0

    # --- start-up ---------------------------------------------------------------------------------
    def attach(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        cfg = self.cfg
        feed = ctx.feed
        wall = feed is not None and feed.wall_clock
        columnar = ctx.columnar
        if wall:
            self.clock = ctx.clock
        else:
            # before the first tick: where the feed starts (or resumes), never 1970
            start = ctx.stats.resumed_from_ns or (feed.exchange_time_ns if feed is not None else 0)
            fc = FeedClock(ctx, start)
            if not columnar:  # the columnar kernel tells it each run's times itself
                ctx.bus.subscribe("tick:>", fc.observe, name="trading.clock")
            self.clock = fc
        self.store = store = SqliteTradingStore(cfg.store.db)
        extra = ""
        if cfg.trading.charges.rates_file:
            try:
                with open(cfg.trading.charges.rates_file, encoding="utf-8") as f:
                    extra = f.read()
            except OSError as e:
                raise ConfigError(
                    "trading.charges.rates_file",
                    cfg.trading.charges.rates_file,
                    f"cannot read it ({e})",
                ) from None
        charges = ChargesModel(cfg.trading.charges, default_rate_table(extra))
        broker = make_broker(
            self.mode,
            cfg.trading,
            self.clock,
            paper_book=SqlitePaperBook(cfg.store.db, store=store),
            cash=to_paise(cfg.risk.capital_inr),
            app=cfg,
            master=ctx.master,
            feed=ctx.feed,
        )
        if broker is not None and broker.is_live:
            broker.connect()  # live brokers start their worker before reconciliation
        self.live = LiveInputs(ctx, broker)
        self.kernel = kernel = TradingKernel(
            bus=ctx.bus,
            clock=self.clock,
            master=ctx.master,
            mode=self.mode,
            store=store,
            broker=broker,
            trading=cfg.trading,
            risk=cfg.risk,
            charges=charges,
        )
        for strategy, spec in self._built:
            missing = kernel.add_strategy(strategy, spec.symbols)
            for sym in missing:
                ctx.event(
                    "strategy_error",
                    f"strategy {strategy.id}: unknown symbol {sym!r} (skipped)",
                    "ERROR",
                    strategy=strategy.id,
                    symbol=sym,
                )
        resumed = ctx.stats.resumed_from_ns
        if resumed is not None:
            self._restore_prices(resumed)
        # the stored candles before the start: the history layer's backfill of the preceding
        # sessions, what a resumed day already recorded, or a broker's history fetched ahead
        # (mandi history fetch kite ...); signals suppressed
        if resumed is not None:
            start = resumed
        elif wall:
            start = self.clock.now_ns()
        else:
            start = ctx.feed.exchange_time_ns if ctx.feed is not None else 0
        warm = self._warm_candles(start) if start else []
        _warm_numerics()
        if columnar:
            chains: Any = ctx.layer("chains")
            if chains is not None and getattr(chains, "columns", None) is not None:
                # the chain layer makes a chain's objects only when asked: the kernel asks
                kernel.market.chain_source = chains.latest_snapshot
                kernel.ctx.analytics_source = chains.latest_analytics
        kernel.start(warm, tick_objects=not columnar)
        if columnar:
            observe = self.clock.observe_ns if isinstance(self.clock, FeedClock) else None
            ctx.bus.subscribe(
                "batch:tick",
                lambda topic, batch: kernel.handle_ticks(batch, observe),
                name="trading.ticks",
            )
        ctx.bus.subscribe("system:storage_failed", self._on_storage, name="trading.storage")
        ctx.bus.subscribe("system:storage_recovered", self._on_storage, name="trading.storage")
        store.heartbeat(self.mode)
        r = kernel.restored
        log.info(
            "trading layer started in %s mode with %d strategies; restored %d open positions, "
            "%d open orders; latch %s",
            self.mode,
            len(kernel.strategies.strategies),
            r["positions"],
            r["orders"],
            f"HALTED ({kernel.risk.latch.reason})" if r["halted"] else "clear",
        )

    def _on_storage(self, topic: str, e: SystemEvent) -> None:
        """No new entries while the node cannot store what happens (exits stay possible)."""
        if self.kernel is None:
            return
        why = f"storage failed: {e.message}" if e.kind == "storage_failed" else ""
        if self.kernel.risk.block_entries("storage", "storage_failed", why):
            if why:
                log.error("new entries blocked: %s", why)
            else:
                log.warning("storage writes again: new entries allowed")

    def _restore_prices(self, resume_ns: int) -> None:
        """The last price of every instrument before the resume point (from stored ticks)."""
        assert self.store is not None and self.kernel is not None and self._ctx is not None
        con = self.store.con
        from mandi.core.calendar import session_anchor_ns
        from mandi.stores.history import last_ticks_between

        day_start = session_anchor_ns(resume_ns) - 3600 * NS_PER_SECOND
        master = self._ctx.master
        n = 0
        for token, ts, price, volume, oi, bid, ask in last_ticks_between(con, day_start, resume_ns):
            inst = master.get(int(token))
            if inst is not None:
                self.kernel.market.update(
                    Tick(
                        int(token),
                        inst.exchange,
                        int(ts),
                        int(ts),
                        int(price),
                        int(volume),
                        0,
                        int(oi),
                        int(bid),
                        int(ask),
                    )
                )
                n += 1
        log.info("trading: restored the last price of %d instruments", n)

    def _warm_candles(self, start_ns: int) -> list[Candle]:
        """Stored candles of the strategies' series that closed before ``start_ns``."""
        assert self.store is not None and self.kernel is not None
        from mandi.stores.history import warm_up_candles

        return warm_up_candles(self.store.con, self.kernel.strategies.series(), start_ns)

    # --- running ----------------------------------------------------------------------------------
    def tasks(self) -> list[Coroutine[Any, Any, Any]]:
        return [self._timer(), self._poll()]

    async def _timer(self) -> None:
        """Time-driven kernel work when no tick arrives (broker feeds, quiet markets), and the
        live inputs (feed health, broker session, reconciliation after reconnects)."""
        while True:
            await asyncio.sleep(0.25)
            if self.kernel is not None:
                self.kernel.handle_time()
                if self.live is not None:
                    self.live.check(self.kernel)

    async def _poll(self) -> None:
        """Heartbeat, latch changes from the CLI, manual order requests."""
        interval = self.cfg.trading.request_poll_s
        last_beat = 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                self.poll_once()
                if time.monotonic() - last_beat >= 1.0 and self.store is not None:
                    self.store.heartbeat(self.mode)
                    last_beat = time.monotonic()
            except MandiError as e:
                log.error("trading poll failed: %s", e)
            except Exception:
                log.exception("trading poll failed")

    def poll_once(self) -> int:
        """Adopt a latch changed by the CLI and run pending order requests; returns how many
        requests were handled."""
        kernel, store = self.kernel, self.store
        if kernel is None or store is None:
            return 0
        if (
            kernel.risk.sync_latch(load_latch(store.con))
            and kernel.risk.halted
            and kernel.orders is not None
        ):
            from mandi.model.orders import Intent

            kernel.orders.cancel_queued(Intent.ENTRY, "trading halted")
        n = 0
        ttl_ns = int(self.cfg.trading.request_ttl_s * NS_PER_SECOND)
        for req in pending_requests(store.con):
            n += 1
            if time.time_ns() - req["created_at"] > ttl_ns:
                finish_request(
                    store.con,
                    req["id"],
                    "EXPIRED",
                    "request_ttl",
                    "no node picked the request up in time; nothing was placed",
                    [],
                )
                continue
            if req.get("basket"):
                _basket_request(kernel, store, req)
                continue
            off_tick = _off_tick(kernel.master, req)
            if off_tick:  # never rounded: a mistyped limit must not become another order
                finish_request(store.con, req["id"], "DENIED", "price_not_on_tick", off_tick, [])
                continue
            try:
                res = kernel.execution.handle_manual(
                    req["request_id"],
                    req["symbol"],
                    Side(req["side"]),
                    int(req["quantity"]),
                    int(req["limit_price"]),
                    req["exchange"] or None,
                    int(req.get("trigger_price") or 0),
                )
                finish_request(
                    store.con, req["id"], res.status, res.rule, res.reason, list(res.order_ids)
                )
            except Exception as e:
                log.exception("manual order request %s failed", req["request_id"])
                finish_request(
                    store.con, req["id"], "ERROR", "internal_error", f"{type(e).__name__}: {e}", []
                )
        self.requests_done += n
        return n

    def status(self) -> dict[str, Any] | None:
        if self.kernel is None:
            return None
        st = self.kernel.status()
        if self.kernel.risk.entry_blocks:
            st["entries_blocked"] = {
                k: f"{r}: {why}" for k, (r, why) in self.kernel.risk.entry_blocks.items()
            }
        return st

    def close(self) -> None:
        try:
            if self.kernel is not None:
                self.kernel.handle_time()
                log.info("trading: %s", self.kernel.summary())
                self.kernel.stop()
                close = getattr(self.kernel.broker, "close", None)
                if callable(close):
                    close()
        finally:  # a kernel that cannot persist (a full disk) still lets go of the database
            if self.store is not None:
                store, self.store = self.store, None
                try:
                    store.clear_heartbeat()
                finally:
                    store.close()


class LiveInputs:
    """The live broker's and feed's state as inputs of the trading kernel (checked every
    0.25 s): feed health and a dead broker session block new entries (exits stay possible) and
    raise system events when they change; a reconnect of the feed reconciles every open order
    with the broker; the session's expiry is warned about before it comes."""

    def __init__(self, ctx: NodeContext, broker: Any) -> None:
        self.ctx = ctx
        self.broker = broker
        self.feed = ctx.feed
        self.health = getattr(self.feed, "health", None)
        self.reconcile_due = False
        self.positions_checked = False  # once at start-up, then after every reconnect
        self.warned_expiry = False
        self.reconciles = 0
        # the session's expiry is wall-clock time (the node's clock may be shifted for a fake)
        self.wall_ns: Callable[[], int] = time.time_ns
        if self.feed is not None and hasattr(self.feed, "on_reconnect"):
            self.feed.on_reconnect = self._on_reconnect

    def _on_reconnect(self) -> None:
        self.reconcile_due = True

    def _market_open(self, now: int) -> bool:
        from mandi.core.calendar import calendar, ist_date

        s = calendar("NSE").session(ist_date(now))
        return s is not None and s.open_ns <= now < s.close_ns

    def check(self, kernel: TradingKernel) -> None:
        now = self.ctx.clock.now_ns()
        risk = kernel.risk
        if self.health is not None:
            rule, why = self.health.problem(now, self._market_open(now))
            if risk.block_entries("feed", rule, why):
                if why:
                    self.ctx.event(
                        "feed_unhealthy", f"new entries blocked: {why}", "WARNING", rule=rule
                    )
                else:
                    self.ctx.event(
                        "feed_healthy", "market data is flowing again; entries allowed", "INFO"
                    )
        dead = getattr(self.broker, "session_dead", "")
        if dead and risk.block_entries("session", "broker_session", dead):
            self.ctx.event("broker_session_ended", dead, "ERROR")
        if not self.positions_checked and not dead:
            self.positions_checked = True
            self._check_positions(kernel)
        if self.reconcile_due and kernel.orders is not None and not dead:
            self.reconcile_due = False
            self.reconciles += 1
            log.info("feed reconnected: reconciling open orders with the broker")
            kernel.orders.reconcile_all()
            self._check_positions(kernel)
        expires = getattr(getattr(self.feed, "session", None), "expires_ns", 0)
        name = getattr(self.feed, "name", "")
        adapter = getattr(self.ctx.cfg.broker, name, None)
        warn_min = getattr(adapter, "expiry_warning_min", 30.0)
        real_now = self.wall_ns()
        if expires and not self.warned_expiry and expires - real_now <= warn_min * 60e9:
            self.warned_expiry = True
            self.ctx.event(
                "broker_session_expiring",
                f"the {name} session expires in {(expires - real_now) / 60e9:.0f} min; "
                f"log in again: mandi broker login {name}",
                "WARNING",
            )

    def _check_positions(self, kernel: TradingKernel) -> None:
        """Compare the broker's net positions with mandi's open ones; report differences."""
        if self.broker is None or not getattr(self.broker, "is_live", False):
            return
        try:
            theirs = {p.token: p.quantity for p in self.broker.positions()}
        except MandiError as e:
            log.warning("position reconciliation skipped: %s", e)
            return
        ours: dict[int, int] = {}
        for p in kernel.book.open_positions():
            ours[p.token] = ours.get(p.token, 0) + p.direction * p.quantity
        diff = {
            t: (ours.get(t, 0), theirs.get(t, 0))
            for t in set(ours) | set(theirs)
            if ours.get(t, 0) != theirs.get(t, 0)
        }
        if diff:
            self.ctx.event(
                "position_mismatch",
                f"positions differ from the broker's for {len(diff)} instrument(s)",
                "WARNING",
                tokens={str(t): {"mandi": a, "broker": b} for t, (a, b) in diff.items()},
            )


def _basket_request(kernel: Any, store: Any, req: dict[str, Any]) -> None:
    """A basket queued by ``mandi basket place``: one risk decision, then its legs."""
    import msgspec

    from mandi.model.baskets import Basket

    try:
        payload = msgspec.json.decode(req["basket"])
        basket = msgspec.convert(payload["basket"], Basket)
        res = kernel.execution.place_basket(basket, req["request_id"], policy=payload.get("policy"))
    except Exception as e:  # a malformed request is answered, never crashes the node
        log.warning("basket request %s refused: %s", req["request_id"], e)
        finish_request(store.con, req["id"], "DENIED", "bad_request", str(e)[:300], [])
        return
    detail = res.reason or "; ".join(str(i) for i in res.issues)
    result = f"basket {res.basket_id[:8]}" + (f": {detail}" if detail else "")
    finish_request(store.con, req["id"], res.status, res.rule, result, [res.basket_id])


def _off_tick(master: Any, req: dict[str, Any]) -> str:
    """Why a manual request's limit price is not a valid price of its instrument ("" when it
    is, or is a market order, or names an unknown symbol — the kernel answers that)."""
    from mandi.core.errors import InstrumentError
    from mandi.core.money import LimitPriceError, check_limit_price

    limit = int(req["limit_price"])
    if limit == 0:
        return ""
    try:
        inst = master.by_symbol(req["symbol"], req["exchange"] or None)
        check_limit_price(limit, inst.tick_size)
    except InstrumentError:
        return ""
    except LimitPriceError as e:
        return str(e)
    return ""


def _warm_numerics() -> None:
    """Compile (or load from the on-disk cache) the option kernels the strike selector uses, so
    the first signal does not wait for it."""
    import numpy as np

    from mandi.options import greeks, implied_vol

    for n in (1, 2):  # one option, and several (another kernel: one underlying, vectorized)
        implied_vol(np.full(n, 1.5), 100.0, np.full(n, 100.0), 0.02, 0.065, np.full(n, True))
        greeks(100.0, np.full(n, 100.0), 0.02, 0.065, np.full(n, 0.2), np.full(n, True))
