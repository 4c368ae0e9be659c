"""The API core: one set of plain Python methods behind the REST routes, the WebSocket hub and
the CLI (DESIGN §6, the Freqtrade ``rpc.py`` pattern). No web framework here: methods take plain
arguments, return JSON-ready values (units in :mod:`mandi.web.serialize`) and raise
:class:`ApiError` — whose ``status`` the REST layer maps to HTTP — for bad input, missing things
and refusals.

Threading: methods that read the running kernel (chains, positions, orders through the trading
kernel, status) must run on the node's event-loop thread — the REST layer's handlers are ``async``
for that reason. Methods listed in :data:`DB_METHODS` only read SQLite through a per-thread
read-only connection and may run in a worker thread.

Trading: the trading layer (``mandi.services.trading.TradingLayer``, named ``"trading"`` in the
node's layers) is looked up when needed; without it (``mandi run`` with trading off, or a node
built without it) the trading routes answer 503 ``trading_unavailable``. What the API needs from it
is the small :class:`TradingPort` protocol, implemented over its ``TradingKernel`` by
:class:`KernelTrading`.

The node: the :class:`~mandi.services.context.NodeContext` of ``mandi run``'s node, or the
distributed gateway's (:class:`~mandi.services.distributed.node.GatewayContext`: the same, fed from
Redis, plus ``trading_service`` (execution lives in that service; positions are read from its
SQLite rows), ``trading_relay`` (the :class:`TradingPort` the command routes use there: it relays
each call to that service over Redis) and ``history`` (candles and indicator values from the Redis
streams when the SQLite file holds none)).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import sqlite3
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from mandi.core.calendar import ist_date, ist_ns
from mandi.core.clock import NS_PER_SECOND
from mandi.core.errors import InstrumentError, MandiError, StoreError
from mandi.core.ids import stable_id
from mandi.core.money import LimitPriceError, limit_price_paise
from mandi.model.instruments import AnyInstrument, Equity, Future, Index, Option
from mandi.stores import queries
from mandi.web import serialize as ser

if TYPE_CHECKING:
    from mandi.services.context import NodeContext

log = logging.getLogger(__name__)
T = TypeVar("T")

VERSION = "1"
VIX_SYMBOL = "INDIA VIX"
#: the seed's per-exchange dashboard underlying (``data_update_NSE`` / ``data_update_BSE``)
EXCHANGE_DEFAULT_UNDERLYING = {"NSE": "NIFTY", "BSE": "SENSEX"}
DB_METHODS = frozenset(
    {"candles", "indicators", "indicator_names", "trades", "backtests", "backtest"}
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_KINDS = {"index": Index, "equity": Equity, "future": Future, "option": Option}


class ApiError(MandiError):
    """A refusal with an HTTP-like ``status``, a stable ``code``, a sentence, and for bad input
    the ``field`` (a dotted name: ``query.timeframe``, ``body.quantity``)."""

    def __init__(
        self, http_status: int, code: str, message: str, field: str | None = None, /, **extra: Any
    ) -> None:
        self.status, self.code, self.field, self.extra = http_status, code, field, extra
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": str(self)}
        if self.field is not None:
            out["field"] = self.field
        out.update(self.extra)
        return out


def bad(field: str, value: Any, reason: str) -> ApiError:
    """A 422 naming ``field`` and what is expected. ``value`` is never shown: an error body
    (and whatever logs it) carries no user input back."""
    del value
    return ApiError(422, "invalid_parameter", f"{field}: {reason}", field)


def not_found(what: str, field: str | None = None) -> ApiError:
    return ApiError(404, "not_found", what, field)


# --- the trading port ---------------------------------------------------------------------------


class TradingPort(Protocol):
    """What the API needs from the trading side (implemented by :class:`KernelTrading`)."""

    mode: str

    def status(self) -> dict[str, Any]: ...

    def open_positions(self) -> list[Any]: ...

    def positions(self) -> list[Any]: ...

    def open_orders(self) -> list[Any]: ...

    def place(
        self,
        request_id: str,
        symbol: str,
        side: str,
        quantity: int,
        limit_price: int,
        exchange: str | None,
        trigger_price: int = 0,
    ) -> tuple[str, str, str, tuple[str, ...]]:
        """(status ACCEPTED | DENIED | LOGGED | ERROR, reason, rule, order ids); a
        ``trigger_price`` makes it a stop (SL with a limit price, else SL-M)."""
        ...

    def cancel(self, client_order_id: str, reason: str) -> bool | None:
        """True cancelled (or requested), False refused, None unknown order."""
        ...

    def halt(self, reason: str) -> bool: ...

    def resume(self, reason: str) -> bool: ...

    def risk_state(self) -> dict[str, Any]: ...

    def today(self) -> Any: ...


class KernelTrading:
    """:class:`TradingPort` over a :class:`~mandi.system.kernel.TradingKernel`."""

    def __init__(self, kernel: Any) -> None:
        self.k = kernel
        self.mode = kernel.mode

    def status(self) -> dict[str, Any]:
        return dict(self.k.status())

    def open_positions(self) -> list[Any]:
        return [p.to_record() for p in self.k.book.open_positions()]

    def positions(self) -> list[Any]:
        return [p.to_record() for p in self.k.book]

    def open_orders(self) -> list[Any]:
        om = self.k.orders
        return [] if om is None else [o.to_record() for o in om.orders.values()]

    def place(
        self,
        request_id: str,
        symbol: str,
        side: str,
        quantity: int,
        limit_price: int,
        exchange: str | None,
        trigger_price: int = 0,
    ) -> tuple[str, str, str, tuple[str, ...]]:
        from mandi.model.orders import Side

        r = self.k.execution.handle_manual(
            request_id, symbol, Side(side), quantity, limit_price, exchange, trigger_price
        )
        return r.status, r.reason, r.rule, tuple(r.order_ids)

    def place_basket(self, request_id: str, basket: Any, policy: str | None) -> Any:
        """A basket through the kernel's one risk decision (BasketExecutor.place)."""
        return self.k.execution.place_basket(basket, request_id, policy=policy)

    def basket(self, basket_id: str) -> dict[str, Any] | None:
        run = self.k.execution.baskets.runs.get(basket_id)
        return None if run is None else run.summary()

    def cancel(self, client_order_id: str, reason: str) -> bool | None:
        om = self.k.orders
        if om is None:
            return None
        ids = (
            [client_order_id]
            if client_order_id in om.orders
            else [o.client_order_id for o in om.orders.values() if o.parent_id == client_order_id]
        )
        if not ids:
            return None
        return any([om.cancel(cid, reason) for cid in ids])

    def halt(self, reason: str) -> bool:
        return bool(self.k.halt(reason, "api"))

    def resume(self, reason: str) -> bool:
        return bool(self.k.resume(reason, "api"))

    def risk_state(self) -> dict[str, Any]:
        r = self.k.risk
        last = r.last_denial
        return {
            "halted": r.halted,
            "halt_reason": r.latch.reason or "",
            "halt_source": getattr(r.latch, "source", ""),
            "denials": dict(r.denials),
            "last_denial": None if last is None else {"rule": last.rule, "reason": last.reason},
        }

    def today(self) -> Any:
        now = self.k.clock.now_ns()
        return self.k.perf.row(ist_date(now)) if now > 0 else None


# --- the API core -------------------------------------------------------------------------------


class MandiAPI:
    """The platform as plain methods (see the module docstring)."""

    def __init__(self, node: NodeContext, hub: Any = None) -> None:
        self.node = node
        self.hub = hub
        self.started = time.monotonic()
        self._reads: queries.ReadOnlyConnections | None = None
        self._signals: deque[Any] = deque(maxlen=500)
        self._denials: deque[Any] = deque(maxlen=200)
        self._orders: OrderedDict[str, Any] = OrderedDict()
        self._prev_close: dict[tuple[int, dt.date], tuple[int | None, str]] = {}
        self._prev_retry: dict[int, int] = {}
        self._underlyings: tuple[int, list[dict[str, Any]]] | None = None
        self._trading: tuple[Any, KernelTrading] | None = None
        self._subs: list[Any] = []

    # --- wiring -------------------------------------------------------------------------------
    def attach(self) -> None:
        """Keep the recent signals, orders and denials (all rare events) for the dashboard."""
        bus = self.node.bus
        self._subs += [
            bus.subscribe("signal:>", self._on_signal, name="web.signals"),
            bus.subscribe("order:>", self._on_order, name="web.orders"),
            bus.subscribe("risk:denied", self._on_denial, name="web.denials"),
        ]

    def detach(self) -> None:
        for s in self._subs:
            self.node.bus.unsubscribe(s)
        self._subs.clear()

    def _on_signal(self, topic: str, sig: Any) -> None:
        self._signals.append(sig)

    def _on_denial(self, topic: str, d: Any) -> None:
        self._denials.append(d)

    def _on_order(self, topic: str, ev: Any) -> None:
        rec = getattr(ev, "order", None)
        if rec is not None:
            self._orders[rec.client_order_id] = rec
            self._orders.move_to_end(rec.client_order_id)
            while len(self._orders) > 1000:
                self._orders.popitem(last=False)

    def layer(self, name: str) -> Any:
        for layer in self.node.layers:
            if getattr(layer, "name", "") == name:
                return layer
        return None

    @property
    def trading(self) -> TradingPort | None:
        layer = self.layer("trading")
        kernel = getattr(layer, "kernel", None) if layer is not None else None
        if kernel is None:
            return None
        if self._trading is None or self._trading[0] is not kernel:
            self._trading = (kernel, KernelTrading(kernel))
        return self._trading[1]

    @property
    def relayed(self) -> bool:
        """True on the distributed gateway: trading calls are relayed to the strategy service
        (they block until it answers, so the web layer runs them off its event loop)."""
        return self.trading is None and getattr(self.node, "trading_relay", None) is not None

    def _need_trading(self) -> TradingPort:
        t = self.trading
        if t is None:
            relay = getattr(self.node, "trading_relay", None)
            if relay is not None:  # the gateway: commands go to the trading service
                return relay  # type: ignore[no-any-return]
            owner = self.trading_service
            if owner:
                raise ApiError(
                    503,
                    "trading_unavailable",
                    f"trading runs in the {owner} service, not in this gateway: orders, "
                    "cancels, halt/resume and the live P&L are not available here (nothing "
                    "was sent); positions, orders and signals are readable",
                    service=owner,
                )
            raise ApiError(
                503,
                "trading_unavailable",
                "trading is not running in this node (run mandi run with trading on)",
            )
        return t

    @property
    def trading_service(self) -> str | None:
        """The service that owns execution when it is not in this node (the distributed
        gateway: ``strategy``), else None."""
        return getattr(self.node, "trading_service", None)

    def _remote_history(self) -> Any:
        """The node's fallback for candles and indicator values its SQLite does not hold (the
        gateway: the Redis streams), or None."""
        return getattr(self.node, "history", None)

    def _db(self) -> sqlite3.Connection:
        """This thread's read-only connection to the node's SQLite file."""
        if self._reads is None:
            self._reads = queries.ReadOnlyConnections(self.node.cfg.store.db)
        try:
            return self._reads.get()
        except StoreError as e:
            raise ApiError(503, "store_unavailable", str(e)) from None

    def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)``: one of the :mod:`mandi.stores.queries` reads, a failure
        answered as 503 ``store_unavailable``."""
        try:
            return fn(self._db(), *args)
        except StoreError as e:
            raise ApiError(503, "store_unavailable", str(e)) from None

    def now_ns(self) -> int:
        """Exchange time (the feed's), or the node clock before the first tick."""
        return self.node.stats.exchange_time_ns or self.node.clock.now_ns()

    # --- health, instruments ------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        node = self.node
        return {
            "status": "ok",
            "version": VERSION,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "feed": node.feed.name if node.feed else None,
            "mode": node.cfg.run.mode,
            "trading": self.trading is not None,
            "exchange_time": ser.iso(node.stats.exchange_time_ns),
        }

    def instrument(
        self,
        token: int | None = None,
        symbol: str | None = None,
        exchange: str | None = None,
        field: str = "query",
    ) -> AnyInstrument:
        """Resolve an instrument by token or symbol (404 when unknown)."""
        master = self.node.master
        if token is not None:
            inst = master.get(token)
            if inst is None:
                raise not_found("no instrument with this token", f"{field}.token")
            return inst
        if symbol:
            try:
                return master.by_symbol(symbol, exchange or None)
            except InstrumentError:
                raise not_found(
                    "no instrument with this symbol" + (" on this exchange" if exchange else ""),
                    f"{field}.symbol",
                ) from None
        raise bad(f"{field}.token", None, "give a token or a symbol")

    def instruments(
        self,
        exchange: str | None = None,
        kind: str | None = None,
        underlying: str | None = None,
        expiry: str | None = None,
        q: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> dict[str, Any]:
        if kind is not None and kind not in _KINDS:
            raise bad("query.kind", kind, f"use one of {', '.join(_KINDS)}")
        exp = _date("query.expiry", expiry) if expiry else None
        want = _KINDS.get(kind) if kind else None
        qq = q.upper() if q else None
        out = []
        for i in self.node.master:
            if exchange and i.exchange != exchange.upper():
                continue
            if want is not None and type(i) is not want:
                continue
            if underlying and getattr(i, "underlying", None) != underlying.upper():
                continue
            if exp is not None and getattr(i, "expiry", None) != exp:
                continue
            if qq and qq not in i.symbol.upper():
                continue
            out.append(i)
        out.sort(key=lambda i: (i.exchange, i.symbol))
        page = out[offset : offset + limit]
        return {
            "total": len(out),
            "offset": offset,
            "instruments": [ser.instrument(i) for i in page],
        }

    def underlyings(self) -> list[dict[str, Any]]:
        """Indices with option chains (NIFTY, BANKNIFTY, FINNIFTY on NSE; SENSEX on BSE)."""
        master = self.node.master
        if self._underlyings is None or self._underlyings[0] != len(master):
            found: dict[str, set[dt.date]] = {}
            for i in master:
                if isinstance(i, Option) and i.expiry is not None:
                    found.setdefault(i.underlying, set()).add(i.expiry)
            out = []
            for i in master:
                if isinstance(i, Index) and i.symbol in found:
                    out.append(
                        {
                            "symbol": i.symbol,
                            "exchange": i.exchange,
                            "token": i.token,
                            "expiries": [e.isoformat() for e in sorted(found[i.symbol])],
                        }
                    )
            out.sort(key=lambda u: (u["exchange"] != "NSE", u["symbol"] != "NIFTY", u["symbol"]))
            self._underlyings = (len(master), out)
        return self._underlyings[1]

    def _underlying(self, name: str, field: str = "path.underlying") -> dict[str, Any]:
        for u in self.underlyings():
            if u["symbol"] == name.upper():
                return u
        names = ", ".join(u["symbol"] for u in self.underlyings()) or "none yet"
        raise not_found(f"no option chains for this underlying (known: {names})", field)

    # --- candles and indicators (SQLite; may run in a worker thread) --------------------------
    def candles(
        self, token: int, timeframe: int = 60, limit: int = 300, before: str | None = None
    ) -> dict[str, Any]:
        inst = self.instrument(token)
        tfs = (1, *self.node.cfg.pipeline.timeframes)
        if timeframe not in tfs:
            raise bad("query.timeframe", timeframe, f"use one of {list(tfs)} (seconds)")
        end = _time_ns("query.before", before) if before else 1 << 62
        rows = self._read(queries.candles, token, timeframe, limit, end)
        from mandi.model.market import Candle

        held = getattr(self.node, "second_candles", None)
        if rows:
            cs = [ser.candle(Candle(**r)) for r in rows]
        elif timeframe == 1 and held is not None:  # one-second candles kept in memory
            cs = [ser.candle(c) for c in held(token, 0, end, limit)]
        else:
            cs = [
                ser.candle(c)
                for c in self._from_history("candles", token, inst.exchange, timeframe, end, limit)
            ]
        return {"instrument": ser.instrument(inst), "timeframe": timeframe, "candles": cs}

    def _from_history(self, method: str, *args: Any) -> Any:
        h = self._remote_history()
        if h is None:
            return []
        try:
            return getattr(h, method)(*args)
        except MandiError as e:
            raise ApiError(503, "store_unavailable", f"history read failed: {e}") from None

    def indicator_names(self, token: int, timeframe: int) -> list[str]:
        names = self._read(queries.indicator_names, token, timeframe)
        if names or self._remote_history() is None:
            return names
        return list(
            self._from_history("indicator_names", token, self.instrument(token).exchange, timeframe)
        )

    def indicators(
        self,
        token: int,
        timeframe: int = 60,
        names: list[str] | None = None,
        limit: int = 300,
        before: str | None = None,
    ) -> dict[str, Any]:
        inst = self.instrument(token)
        tfs = self.node.cfg.pipeline.timeframes
        if timeframe not in tfs:
            raise bad("query.timeframe", timeframe, f"use one of {list(tfs)} (seconds)")
        for n in names or ():
            if not re.fullmatch(r"[A-Za-z0-9_.]{1,40}", n):
                raise bad("query.names", n, "names look like SMA_9 or MACD_12_26_9.signal")
        end = _time_ns("query.before", before) if before else 1 << 62
        available = self.indicator_names(token, timeframe)
        series: dict[str, list[dict[str, Any]]] = {}
        for name in names or available:
            scale = ser.indicator_scale(name)  # paise → rupees for price-like indicators
            points = self._read(
                queries.indicator_points, token, timeframe, name, limit, end
            ) or self._from_history(
                "indicator_values", token, inst.exchange, timeframe, name, end, limit
            )
            series[name] = [
                {"t": b // NS_PER_SECOND, "time": ser.iso(b), "value": ser.num(v * scale)}
                for b, v in points
            ]
        return {"token": token, "timeframe": timeframe, "available": available, "series": series}

    # --- option chains ------------------------------------------------------------------------
    def _matrix(self) -> Any:
        layer = self.layer("chains")
        return getattr(layer, "matrix", None) if layer is not None else None

    def chain_keys(self, underlying: str) -> list[dt.date]:
        m = self._matrix()
        if m is None:
            return []
        return sorted(e for (u, e) in m.keys() if u == underlying and m.analytics(u, e))  # noqa: SIM118

    def pick_expiry(self, underlying: str, expiry: str | None = None) -> dt.date | None:
        if expiry:
            return _date("query.expiry", expiry)
        live = self.chain_keys(underlying)
        today = ist_date(self.now_ns())
        later = [e for e in live if e >= today]
        chosen = later or live
        return chosen[0] if chosen else None

    def chain(self, underlying: str, expiry: str | None = None) -> dict[str, Any]:
        """The chain table (calls | strike | puts) with OI, change in OI, OI % change over the
        windows, IV, Greeks, theoretical price and its highlight, plus the summary (PCR, max
        pain, ATM, ITM delta %)."""
        u = self._underlying(underlying)
        exp = self.pick_expiry(u["symbol"], expiry)
        m = self._matrix()
        a = m.analytics(u["symbol"], exp) if (m is not None and exp is not None) else None
        if a is None:
            return self._stored_chain(u, exp)
        data, strikes = m.latest(u["symbol"], exp)
        return chain_table(a, data, strikes, self.overview(u["symbol"], analytics=a))

    def _stored_chain(self, u: dict[str, Any], exp: dt.date | None) -> dict[str, Any]:
        from mandi.stores.chains import latest_snapshot

        try:
            snap = latest_snapshot(self._db(), u["symbol"], exp)
        except sqlite3.OperationalError:
            snap = None
        if snap is None:
            raise not_found(
                f"no chain data yet for {u['symbol']}" + (f" {exp.isoformat()}" if exp else ""),
                "path.underlying",
            )
        out = ser.chain_snapshot(snap)
        out["live"] = False
        out["summary"] = self.overview(u["symbol"])
        return out

    def overview(self, underlying: str, analytics: Any = None) -> dict[str, Any]:
        """The info bar: underlying price and change vs the previous close, PCR, India VIX,
        ITM delta %, max pain and ATM of the nearest expiry."""
        u = self._underlying(underlying)
        last = self.node.stats.last_price
        price = last.get(u["token"])
        prev, basis = self.previous_close(u["token"])
        if analytics is None:
            m = self._matrix()
            exp = self.pick_expiry(u["symbol"])
            analytics = m.analytics(u["symbol"], exp) if (m is not None and exp) else None
        vix = self._vix_token()
        out: dict[str, Any] = {
            "underlying": u["symbol"],
            "exchange": u["exchange"],
            "token": u["token"],
            "price": ser.rupees(price),
            "previous_close": ser.rupees(prev),
            "change_basis": basis,
            "change": ser.rupees(price - prev) if price is not None and prev else None,
            "change_pct": ser.num(100 * (price - prev) / prev, 2)
            if price is not None and prev
            else None,
            "vix": ser.rupees(last.get(vix)) if vix is not None else None,
            "time": ser.iso(self.node.stats.exchange_time_ns),
        }
        if analytics is not None:
            a = analytics
            out.update(
                {
                    "expiry": a.expiry.isoformat(),
                    "pcr": ser.num(a.pcr_oi, 3),
                    "pcr_volume": ser.num(a.pcr_volume, 3),
                    "max_pain": ser.num(a.max_pain, 2),
                    "atm_strike": ser.num(a.atm_strike, 2),
                    "atm_iv": ser.num(a.atm_iv, 4),
                    "itm_ce_delta_pct": ser.num(a.itm_ce_delta_pct, 2),
                    "itm_pe_delta_pct": ser.num(a.itm_pe_delta_pct, 2),
                    "total_ce_oi": ser.num(a.total_ce_oi, 1),
                    "total_pe_oi": ser.num(a.total_pe_oi, 1),
                }
            )
        return out

    def _vix_token(self) -> int | None:
        v = getattr(self, "_vix", 0)
        if v == 0:
            try:
                v = self.node.master.by_symbol(VIX_SYMBOL, "NSE").token
            except InstrumentError:
                v = None
            if v is not None or len(self.node.master):
                self._vix = v
        return v

    def previous_close(self, token: int) -> tuple[int | None, str]:
        """The last price before today's session (stored candles, then stored chain snapshots);
        else today's first price, with basis ``open``."""
        now = self.now_ns()
        if now <= 0:
            return None, ""
        day = ist_date(now)
        hit = self._prev_close.get((token, day))
        if hit is not None and (hit[0] is not None or self._prev_retry.get(token, 0) > now):
            return hit  # found (neither the previous close nor today's open changes), or
            # nothing yet: asked again after 10 s of exchange time
        start = ist_ns(day)
        close = self._read(queries.last_close_before, token, 60, start)
        if close is not None:
            res: tuple[int | None, str] = (close, "previous_close")
        else:
            inst = self.node.master.get(token)
            res = (None, "")
            if inst is not None:
                from mandi.stores.chains import get_previous_close_price

                try:
                    p = get_previous_close_price(self._db(), inst.exchange, now, inst.symbol)
                except sqlite3.Error:
                    p = None
                if p:
                    res = (p, "previous_close")
            if res[0] is None:
                first = self._read(queries.first_open_since, token, 1, start)
                if first is not None:
                    res = (first, "open")
        self._prev_close[(token, day)] = res
        self._prev_retry[token] = now + 10 * NS_PER_SECOND
        return res

    # --- signals, orders, positions, P&L ------------------------------------------------------
    def signals(self, limit: int = 50, strategy: str | None = None) -> list[dict[str, Any]]:
        rows = self._read(queries.signals, limit, strategy)
        if rows:
            out = []
            for r in rows:
                r["metadata"] = _json(r.get("metadata"))
                d = ser.record(r)
                d.update(ser.alpha(r))
                out.append(d)
            return out
        sigs = [s for s in reversed(self._signals) if not strategy or s.strategy == strategy]
        return [ser.message("signal", s) for s in sigs[:limit]]

    def alpha(self) -> dict[str, Any] | None:
        """The seed's alpha card (signal, confidence, probabilities): the latest prediction of a
        running ML strategy (``xgboost``/``alpha``: the model's own probabilities, name and
        date, every bar), else the latest signal."""
        out: dict[str, Any] | None = None
        if self._signals:
            out = ser.message("signal", self._signals[-1])
        else:
            rows = self.signals(limit=1)
            out = rows[0] if rows else None
        layer = self.layer("trading")
        engine = getattr(getattr(layer, "kernel", None), "strategies", None)
        preds = [
            (s.id, s.last_prediction)
            for s in getattr(engine, "strategies", ())
            if getattr(s, "last_prediction", None)
        ]
        if preds:
            sid, p = max(preds, key=lambda kv: kv[1]["time_ns"])
            if out is None or (out.get("t") or 0) * 1e9 <= p["time_ns"]:
                out = ser.prediction(sid, p)
        return out

    def orders(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if status is not None:
            status = status.upper()
            allowed = (
                "OPEN",
                "NEW",
                "SUBMITTED",
                "ACKED",
                "PARTIALLY_FILLED",
                "FILLED",
                "CANCELLED",
                "REJECTED",
                "UNKNOWN",
            )
            if status not in allowed:
                raise bad("query.status", status, f"use one of {', '.join(allowed)}")
        t = self.trading
        # the trading store commits every change before its event; the kernel's open orders are
        # the newest view of those still working; the bus cache serves a node without a store
        live = {o.client_order_id: o for o in (t.open_orders() if t is not None else [])}
        rows = self._read(queries.orders, status, limit)
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            r["fill_ids"] = _json(r.get("fill_ids")) or []
            out[r["order_id"]] = _order_row(r)
        recent = live if out or not self._orders else {**self._orders, **live}
        for cid, rec in recent.items():
            d = ser.record(rec)
            d["order_id"] = cid
            if _status_ok(d.get("status", ""), status):
                out[cid] = d
            else:
                out.pop(cid, None)
        res = sorted(
            out.values(),
            key=lambda d: d.get("created_ns") or d.get("timestamp") or "",
            reverse=True,
        )
        return res[:limit]

    def positions(self, status: str = "open", limit: int = 100) -> list[dict[str, Any]]:
        status = status.lower()
        if status not in ("open", "closed", "all"):
            raise bad("query.status", status, "use open, closed or all")
        t = self.trading
        live = t.positions() if t is not None else []
        by_id = {p.position_id: p for p in live}
        out = [
            ser.position(p)
            for p in live
            if status == "all" or (status == "open") == (p.status == "OPEN")
        ]
        # the kernel's book holds every open position; the store adds the closed ones (and on
        # the gateway, whose trading runs elsewhere, the store is the only truth)
        stored = "closed" if status != "open" else None
        if t is None and self.trading_service:
            stored = status
        if stored is not None:
            for r in self._read(queries.positions, stored, limit):
                if r["position_id"] not in by_id:
                    r["metadata"] = _json(r.get("metadata"))
                    out.append(ser.position(r))
        out.sort(key=lambda p: p.get("entry_timestamp") or "", reverse=True)
        return out[:limit]

    def pnl(self) -> dict[str, Any]:
        t = self._need_trading()
        s = t.status()
        keys = (
            "mode",
            "halted",
            "halt_reason",
            "realized_pnl",
            "unrealized_pnl",
            "day_pnl",
            "charges",
            "fills",
            "orders_sent",
            "signals",
        )
        d = ser.record({k: s.get(k) for k in keys})
        d["open_positions"] = len(s.get("open_positions", []))
        return d

    def daily_performance(self, days: int = 30) -> list[dict[str, Any]]:
        rows = {r["date"]: ser.record(r) for r in self._read(queries.daily_performance, days)}
        t = self.trading
        today = t.today() if t is not None else None
        if today is not None:
            rows[today.date] = ser.record(today)
        for r in rows.values():
            n = r.get("total_trades") or 0
            r["win_rate_pct"] = ser.num(100 * (r.get("winning_trades") or 0) / n, 2) if n else None
        return sorted(rows.values(), key=lambda r: r["date"], reverse=True)[:days]

    def trades(self, limit: int = 100) -> list[dict[str, Any]]:
        return [ser.record(r) for r in self._read(queries.trades, limit)]

    def risk(self) -> dict[str, Any]:
        t = self.trading
        if t is None:
            return {"trading": False}
        d = t.risk_state()
        d["trading"] = True
        d["mode"] = t.mode
        d["recent_denials"] = [ser.record(x) for x in list(self._denials)[-20:]][::-1]
        return d

    # --- backtests (SQLite; may run in a worker thread) ---------------------------------------
    def backtests(self, limit: int = 50, strategy: str | None = None) -> dict[str, Any]:
        """Stored backtest runs (``mandi backtest --save``), newest first."""
        return {
            "runs": [_backtest_run(r) for r in self._read(queries.backtest_runs, limit, strategy)]
        }

    def backtest(self, run_id: str) -> dict[str, Any]:
        """One stored backtest run: its stats, equity curve and trades."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", run_id):
            raise bad("path.run_id", run_id, "not a backtest run id")
        row = self._read(queries.backtest_run, run_id)
        if row is None:
            raise not_found("no backtest run with this id", "path.run_id")
        out = _backtest_run(row)
        out["stats"] = _json(row.get("stats")) or {}
        out["equity"] = [
            {"time": ser.iso(t), "t": ser.epoch_s(t), "value": ser.rupees(v)}
            for t, v in (_json(row.get("equity")) or [])
        ]
        out["trade_list"] = [
            {k: v for k, v in ser.record(r).items() if k != "run_id"}
            for r in self._read(queries.backtest_trades, run_id)
        ]
        return out

    # --- commands -----------------------------------------------------------------------------
    def place_order(
        self,
        *,
        side: str,
        symbol: str | None = None,
        token: int | None = None,
        exchange: str | None = None,
        quantity: int | None = None,
        lots: int | None = None,
        price: float | None = None,
        request_id: str | None = None,
        order_type: str | None = None,
        trigger_price: float | None = None,
    ) -> dict[str, Any]:
        """A paper/live order through the risk manager. Returns ``status`` ACCEPTED (with the
        client order ids) or LOGGED (logging-only mode); a denial raises :class:`ApiError` 409
        ``risk_denied`` with the rule and the reason.

        A MARKET order is placed only when the request says so: ``order_type`` MARKET, or no
        ``price`` at all. A price is a limit price in rupees that must be a positive multiple of
        the instrument's tick exactly (422 naming the nearest valid prices otherwise): it is never
        rounded, so a mistyped ``0.001`` cannot become a market order."""
        t = self._need_trading()
        s = (side or "").upper()
        if s not in ("BUY", "SELL"):
            raise bad("body.side", side, "use BUY or SELL")
        inst = self.instrument(token, symbol, exchange, field="body")
        if quantity is None and lots is None:
            raise bad("body.quantity", None, "give quantity (shares) or lots")
        if quantity is not None and lots is not None:
            raise bad("body.lots", lots, "give quantity or lots, not both")
        if lots is not None:
            if lots <= 0:
                raise bad("body.lots", lots, "must be a positive number of lots")
            quantity = lots * inst.lot_size
        assert quantity is not None
        if quantity <= 0:
            raise bad("body.quantity", quantity, "must be a positive number of shares")
        default = "MARKET" if price is None else "LIMIT"
        if trigger_price is not None:
            default = "SL-M" if price is None else "SL"
        kind = (order_type or default).upper()
        if kind not in ("MARKET", "LIMIT", "SL", "SL-M"):
            raise bad("body.order_type", order_type, "use MARKET, LIMIT, SL or SL-M")
        trigger_paise = 0
        if kind in ("SL", "SL-M"):
            if trigger_price is None:
                raise bad("body.trigger_price", None, f"an {kind} order needs a trigger price")
            try:
                trigger_paise = limit_price_paise(trigger_price, inst.tick_size)
            except LimitPriceError as e:
                raise bad("body.trigger_price", trigger_price, str(e)) from None
        elif trigger_price is not None:
            raise bad("body.trigger_price", trigger_price, f"a {kind} order takes no trigger")
        limit_paise = 0
        if kind in ("MARKET", "SL-M"):
            if price:
                raise bad("body.price", price, f"a {kind} order takes no price (omit it)")
        elif price is None:
            raise bad("body.price", None, f"a {kind} order needs a price in rupees")
        else:
            try:
                limit_paise = limit_price_paise(price, inst.tick_size)
            except LimitPriceError as e:
                raise bad("body.price", price, str(e)) from None
        if request_id is None:
            request_id = uuid.uuid4().hex
        elif not _REQUEST_ID.match(request_id):
            raise bad("body.request_id", request_id, "1-64 characters of A-Z a-z 0-9 _ . : -")
        try:
            if trigger_paise:
                status, reason, rule, ids = t.place(
                    request_id, inst.symbol, s, quantity, limit_paise, inst.exchange, trigger_paise
                )
            else:
                status, reason, rule, ids = t.place(
                    request_id, inst.symbol, s, quantity, limit_paise, inst.exchange
                )
        except ApiError:
            raise
        except MandiError as e:
            raise ApiError(409, "order_refused", str(e)) from None
        base = {
            "request_id": request_id,
            "symbol": inst.symbol,
            "exchange": inst.exchange,
            "token": inst.token,
            "side": s,
            "quantity": quantity,
            "price": ser.rupees(limit_paise) if limit_paise else None,
            "order_type": kind,
            **({"trigger_price": ser.rupees(trigger_paise)} if trigger_paise else {}),
        }
        if status == "DENIED":
            raise ApiError(
                409, "risk_denied", reason, None, status="DENIED", rule=rule, reason=reason, **base
            )
        if status == "ERROR":
            raise ApiError(
                409,
                "order_refused",
                reason or "the order could not be placed",
                None,
                status="ERROR",
                rule=rule,
                **base,
            )
        return {**base, "status": status, "reason": reason, "order_ids": list(ids)}

    def cancel_order(
        self, client_order_id: str, reason: str = "cancelled via the API"
    ) -> dict[str, Any]:
        t = self._need_trading()
        if not _REQUEST_ID.match(client_order_id):
            raise bad("path.order_id", client_order_id, "not an order id")
        r = t.cancel(client_order_id, reason[:200])
        if r is None:
            found = self._read(queries.order_statuses, client_order_id)
            if found:
                raise ApiError(
                    409,
                    "order_not_open",
                    f"the order is {found[0]}; nothing to cancel",
                    "path.order_id",
                )
            raise not_found("no order with this id", "path.order_id")
        if not r:
            raise ApiError(
                409,
                "cancel_refused",
                "the order cannot be cancelled "
                "now (unknown outcome being reconciled, or the broker refused)",
                "path.order_id",
            )
        return {"order_id": client_order_id, "cancel_requested": True}

    def halt(self, reason: str = "") -> dict[str, Any]:
        t = self._need_trading()
        changed = t.halt(reason or "halted via the API")
        return {"changed": changed, **t.risk_state()}

    def resume(self, reason: str = "") -> dict[str, Any]:
        t = self._need_trading()
        changed = t.resume(reason or "resumed via the API")
        return {"changed": changed, **t.risk_state()}

    def inbound_signals(self, source: str, items: list[Any]) -> dict[str, Any]:
        """Signals from an inbound webhook (:mod:`mandi.web.inbound`): each goes through the
        signal manager (persisted, idempotent by the alert's key), the risk manager and
        execution, as a strategy's would; returns what became of each."""
        from mandi.model.orders import Side
        from mandi.model.trading import SignalGenerated
        from mandi.strategy.base import asset_type

        layer = self.layer("trading")
        kernel = getattr(layer, "kernel", None) if layer is not None else None
        if kernel is None:
            raise ApiError(
                503,
                "trading_unavailable",
                "inbound signals need trading in this node (mandi run), not the gateway",
            )
        out = []
        for i, it in enumerate(items):
            inst = self.instrument(None, it.symbol, it.exchange, field=f"body[{i}]")
            now = kernel.clock.now_ns()
            sid = stable_id(source, inst.token, "webhook", it.key)
            sig = SignalGenerated(
                signal_id=sid,
                ts_event=now,
                strategy=source,
                token=inst.token,
                exchange=inst.exchange,
                symbol=inst.symbol,
                timeframe=0,
                bucket=now,
                action=Side(it.action),
                price=it.price or kernel.market.ltp(inst.token),
                asset_type=asset_type(inst),
                confidence=it.confidence,
                quantity=it.quantity,
                metadata={"source": "webhook"},
            )
            fresh = kernel.signals.emit(sig)
            row = self._read(queries.signal, sid) or {}
            out.append(
                {
                    "signal_id": sid,
                    "symbol": inst.symbol,
                    "action": it.action,
                    "status": row.get("status") or kernel.store.signal_status(sid) or "NEW",
                    "reason": row.get("reason") or "",
                    "duplicate": not fresh,
                }
            )
        return {"strategy": source, "signals": out}

    # --- status and metrics -------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        from mandi.services.status import status_snapshot

        node = self.node
        snap = status_snapshot(node)
        snap["indices"] = {k: ser.rupees(v) for k, v in snap["indices"].items()}
        snap["candles_confirmed"] = {str(k): v for k, v in snap["candles_confirmed"].items()}
        if self.hub is not None and self.hub.ticks_per_s is not None:
            snap["ticks_per_s"] = round(self.hub.ticks_per_s, 1)
        snap["ticks_per_s"] = round(snap["ticks_per_s"], 1)
        snap["last_flush_ms"] = round(snap["last_flush_ms"], 2)
        feed = node.feed
        ex = node.stats.exchange_time_ns
        snap["feed"] = feed.name if feed else None
        snap["mode"] = node.cfg.run.mode
        # which broker trades and how its feed is: the dashboard's "broker" and "feed" cells
        broker = node.cfg.trading.broker or node.cfg.broker.name
        snap["broker"] = broker if node.cfg.run.mode == "live" and broker else "paper"
        fh = snap.get("feed_health") or {}
        why = ""
        health = getattr(feed, "health", None)
        if health is not None and hasattr(health, "problem"):
            why = health.problem(node.clock.now_ns(), True)[1]
        snap["feed_state"] = fh.get("state") or why or "ok"
        snap["speed"] = node.cfg.run.speed if math.isfinite(node.cfg.run.speed) else "inf"
        snap["lags"] = {
            "tick_queue_batches": snap["tick_queue"],
            "writer_pending_rows": snap["writer_pending_rows"],
            "writer_last_flush_ms": snap["last_flush_ms"],
            "exchange_time_behind_wall_s": round((time.time_ns() - ex) / 1e9, 3)
            if (ex and feed is not None and feed.wall_clock)
            else None,
        }
        chains = self.layer("chains")
        if chains is not None:
            snap["chains"] = {"snapshots": chains.snapshots, "errors": chains.errors}
        snap["risk"] = self.risk()
        t = self.trading
        if t is not None:
            s = t.status()
            snap["trading"] = ser.record({k: v for k, v in s.items() if k != "open_positions"})
        if self.hub is not None:
            snap["web"] = self.hub.stats()
        return snap

    def metrics_text(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        s = self.status()
        m = _Metrics()
        m.add("mandi_ticks_total", "counter", "Ticks received by the kernel.", s["ticks_in"])
        m.add("mandi_ticks_per_second", "gauge", "Ticks per second (recent).", s["ticks_per_s"])
        m.add(
            "mandi_tick_queue_batches",
            "gauge",
            "Tick batches waiting for the kernel.",
            s["tick_queue"],
        )
        m.add(
            "mandi_writer_pending_rows",
            "gauge",
            "Rows waiting for the SQLite writer.",
            s["writer_pending_rows"],
        )
        m.add(
            "mandi_dropped_ticks_total",
            "counter",
            "Ticks dropped at the feed queue.",
            s["dropped_queue_ticks"],
        )
        m.add(
            "mandi_dropped_rows_total",
            "counter",
            "Rows dropped at the SQLite writer.",
            s["dropped_writer_rows"],
        )
        m.add(
            "mandi_writer_failing",
            "gauge",
            "1 while the SQLite writer cannot write (storage failed).",
            int(bool(s.get("writer_failing"))),
        )
        m.add(
            "mandi_quarantined_rows_total",
            "counter",
            "Rows SQLite refused, kept in the rejects table.",
            s.get("quarantined_rows", 0),
        )
        m.add(
            "mandi_rejected_ticks_total",
            "counter",
            "Ticks rejected by the tick policy (and feed input that was no tick), by feed and "
            "reason.",
            [
                ({"feed": feed, "reason": k}, v)
                for feed, reasons in s["rejected_by_feed"].items()
                for k, v in reasons.items()
            ]
            or 0,
        )
        m.add(
            "mandi_handler_errors_total", "counter", "Bus handler exceptions.", s["handler_errors"]
        )
        fh = s.get("feed_health")
        if fh:  # a broker feed (mandi.execution.live.FeedHealth)
            m.add(
                "mandi_feed_connections_up",
                "gauge",
                "Broker feed connections up.",
                fh["connections_up"],
            )
            m.add(
                "mandi_feed_reconnects_total",
                "counter",
                "Broker feed reconnects.",
                fh["reconnects"],
            )
            m.add(
                "mandi_feed_silent_timeouts_total",
                "counter",
                "Broker feed connections dropped for silence.",
                fh["silent_timeouts"],
            )
            m.add(
                "mandi_feed_malformed_frames_total",
                "counter",
                "Broker feed frames that could not be decoded.",
                fh["malformed_frames"],
            )
            if fh["data_age_s"] is not None:
                m.add(
                    "mandi_feed_data_age_seconds",
                    "gauge",
                    "Seconds since the last tick.",
                    fh["data_age_s"],
                )
            m.add(
                "mandi_feed_session_ok",
                "gauge",
                "1 while the broker session is valid.",
                1 if fh["session"] == "ok" else 0,
            )
        m.add(
            "mandi_candles_confirmed_total",
            "counter",
            "Confirmed candles, by timeframe.",
            [({"timeframe": k}, v) for k, v in s["candles_confirmed"].items()] or 0,
        )
        m.add(
            "mandi_index_price_rupees",
            "gauge",
            "Last index level.",
            [({"symbol": k}, v) for k, v in s["indices"].items()] or None,
        )
        r = s["risk"]
        if r.get("trading"):
            m.add(
                "mandi_trading_halted",
                "gauge",
                "1 while the HALTED latch is set.",
                int(bool(r["halted"])),
            )
            m.add(
                "mandi_risk_denials_total",
                "counter",
                "Orders and signals denied, by rule.",
                [({"rule": k}, v) for k, v in r["denials"].items()] or 0,
            )
            tr = s.get("trading", {})
            m.add(
                "mandi_day_pnl_rupees",
                "gauge",
                "Today's P&L (realized net + unrealized).",
                tr.get("day_pnl"),
            )
            m.add(
                "mandi_orders_sent_total",
                "counter",
                "Orders sent to the broker.",
                tr.get("orders_sent"),
            )
            m.add("mandi_fills_total", "counter", "Fills.", tr.get("fills"))
        w = s.get("web")
        if w:
            m.add("mandi_ws_clients", "gauge", "Connected WebSocket clients.", w["clients"])
            m.add(
                "mandi_ws_unauthenticated",
                "gauge",
                "WebSockets still authenticating (no client slot).",
                w.get("unauthenticated"),
            )
            m.add(
                "mandi_ws_unauthenticated_refused_total",
                "counter",
                "WebSockets refused: too many unauthenticated from one address or in all.",
                w.get("unauthenticated_refused"),
            )
            m.add(
                "mandi_ws_messages_total", "counter", "WebSocket messages sent.", w["messages_sent"]
            )
            m.add("mandi_ws_frames_total", "counter", "WebSocket frames sent.", w["frames_sent"])
            m.add(
                "mandi_ws_skipped_updates_total",
                "counter",
                "Stale updates replaced before a slow client read them.",
                w["skipped"],
            )
            m.add(
                "mandi_ws_clients_dropped_total",
                "counter",
                "Clients dropped as too slow.",
                w["dropped_clients"],
            )
            m.add(
                "mandi_ws_fanout_busy_ratio",
                "gauge",
                "Share of the loop used by fan-out.",
                w["busy_ratio"],
            )
        return m.text()


# --- helpers ------------------------------------------------------------------------------------


def chain_table(a: Any, data: Any, strikes: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's chain table from a :class:`ChainAnalytics` and the matrix's newest slot."""
    from mandi.options import chain as ch
    from mandi.options.chain import MONEYNESS_LABELS, StrikeStatus

    col = {float(k): j for j, k in enumerate(strikes.tolist()) if math.isfinite(k)}
    rows_data = data.tolist()
    wins = list(a.oi_windows_minutes)
    oi_pct = a.oi_change_pct.tolist()
    names = {int(s): s.name for s in StrikeStatus}
    fields = {
        "ltp": (ch.CE_LTP, ch.PE_LTP),
        "bid": (ch.CE_BID, ch.PE_BID),
        "ask": (ch.CE_ASK, ch.PE_ASK),
        "volume": (ch.CE_VOLUME, ch.PE_VOLUME),
        "oi": (ch.CE_OI, ch.PE_OI),
        "oi_change": (ch.CE_OI_CHANGE, ch.PE_OI_CHANGE),
        "iv": (ch.CE_IV, ch.PE_IV),
        "delta": (ch.CE_DELTA, ch.PE_DELTA),
        "gamma": (ch.CE_GAMMA, ch.PE_GAMMA),
        "theta": (ch.CE_THETA, ch.PE_THETA),
        "vega": (ch.CE_VEGA, ch.PE_VEGA),
    }
    digits = {
        "ltp": 2,
        "bid": 2,
        "ask": 2,
        "volume": 1,
        "oi": 1,
        "oi_change": 1,
        "iv": 4,
        "delta": 4,
        "gamma": 6,
        "theta": 3,
        "vega": 3,
    }
    per_side = {
        0: (
            a.ce_theoretical.tolist(),
            a.ce_price_diff.tolist(),
            a.ce_highlight.tolist(),
            a.ce_class.tolist(),
            a.ce_status.tolist(),
        ),
        1: (
            a.pe_theoretical.tolist(),
            a.pe_price_diff.tolist(),
            a.pe_highlight.tolist(),
            a.pe_class.tolist(),
            a.pe_status.tolist(),
        ),
    }
    rows = []
    for i, k in enumerate(a.strikes.tolist()):
        if not math.isfinite(k):
            continue
        j = col.get(float(k))
        row: dict[str, Any] = {"strike": round(k, 2)}
        for side, key in ((0, "ce"), (1, "pe")):
            d: dict[str, Any] = {}
            for f, chans in fields.items():
                d[f] = ser.num(rows_data[chans[side]][j], digits[f]) if j is not None else None
            theo, diff, hl, cls, st = per_side[side]
            d["theoretical"] = ser.num(theo[i], 2)
            d["price_diff"] = ser.num(diff[i], 2)
            d["highlight"] = int(hl[i])
            d["moneyness"] = MONEYNESS_LABELS.get(int(cls[i]), "")
            d["status"] = names.get(int(st[i]), str(st[i]))
            d["oi_change_pct"] = {
                str(m): ser.num(oi_pct[w][side][i], 2) for w, m in enumerate(wins)
            }
            row[key] = d
        row["atm"] = bool(math.isfinite(a.atm_strike) and abs(k - a.atm_strike) < 1e-6)
        row["max_pain"] = bool(math.isfinite(a.max_pain) and abs(k - a.max_pain) < 1e-6)
        rows.append(row)
    return {
        "underlying": a.underlying,
        "exchange": a.exchange,
        "expiry": a.expiry.isoformat(),
        "time": ser.iso(a.ts_event),
        "t": ser.epoch_s(a.ts_event),
        "live": True,
        "underlying_price": ser.num(a.underlying_price, 2),
        "atm_strike": ser.num(a.atm_strike, 2),
        "atm_iv": ser.num(a.atm_iv, 4),
        "strike_step": ser.num(a.strike_step, 2),
        "max_pain": ser.num(a.max_pain, 2),
        "pcr_oi": ser.num(a.pcr_oi, 3),
        "pcr_volume": ser.num(a.pcr_volume, 3),
        "oi_windows_minutes": wins,
        "time_to_expiry_years": ser.num(a.time_to_expiry, 6),
        "totals": {
            "ce_oi": ser.num(a.total_ce_oi, 1),
            "pe_oi": ser.num(a.total_pe_oi, 1),
            "ce_volume": ser.num(a.total_ce_volume, 1),
            "pe_volume": ser.num(a.total_pe_volume, 1),
            "ce_oi_change": ser.num(a.total_ce_oi_change, 1),
            "pe_oi_change": ser.num(a.total_pe_oi_change, 1),
        },
        "itm_ce_delta_pct": ser.num(a.itm_ce_delta_pct, 2),
        "itm_pe_delta_pct": ser.num(a.itm_pe_delta_pct, 2),
        "thresholds": {"diff_pos": a.diff_pos_threshold, "diff_neg": a.diff_neg_threshold},
        "summary": summary,
        "rows": rows,
    }


def _json(text: Any) -> Any:
    import json

    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _backtest_run(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": r["run_id"],
        "created_at": ser.iso(r["created_at"]),
        "strategy": r["strategy"],
        "symbols": [x for x in str(r["symbols"]).split(",") if x],
        "timeframe": r["timeframe"],
        "engine": r["engine"],
        "params": _json(r["params"]) or {},
        "data_start": ser.iso(r["data_start"]),
        "data_end": ser.iso(r["data_end"]),
        "initial_value": ser.rupees(r["initial_value"]),
        "final_value": ser.rupees(r["final_value"]),
        "total_return": ser.num(r["total_return"]),
        "sharpe": ser.num(r["sharpe"]),
        "max_drawdown": ser.num(r["max_drawdown"]),
        "trades": r["trades"],
    }


def _order_row(r: dict[str, Any]) -> dict[str, Any]:
    d = ser.record(r)
    if r.get("filled_qty"):
        d["avg_price"] = (
            round(r["fill_value"] / r["filled_qty"] / 100, 2)
            if r.get("fill_value")
            else d.get("filled_price")
        )
    d["client_order_id"] = r["order_id"]
    return d


def _status_ok(status: str, wanted: str | None) -> bool:
    if wanted is None:
        return True
    if wanted == "OPEN":
        return status not in ("FILLED", "CANCELLED", "REJECTED")
    return status == wanted


def _date(field: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise bad(field, text, "expected a date YYYY-MM-DD") from None


def _time_ns(field: str, text: str) -> int:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise bad(
            field, text, "expected an ISO 8601 time, e.g. 2026-04-13T10:00:00+05:30"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=ser.IST)
    return int(t.timestamp() * 1e9)


class _Metrics:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, name: str, kind: str, help_: str, value: Any) -> None:
        if value is None:
            return
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        if isinstance(value, list):
            for labels, v in value:
                if v is None:
                    continue
                lab = ",".join(f'{k}="{_esc(str(x))}"' for k, x in labels.items())
                self.lines.append(f"{name}{{{lab}}} {_val(v)}")
        else:
            self.lines.append(f"{name} {_val(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _val(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    f = float(v)
    return repr(f) if math.isfinite(f) else "NaN"
