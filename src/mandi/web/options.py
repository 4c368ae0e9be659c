"""The options part of the API core: payoff and Greeks of a basket or of the open book, basket
templates, and the volatility and OI views (IV smile, ATM IV term structure, IV rank and
percentile, ATM straddle premium through the day, OI and change in OI by strike, OI history per
strike, PCR and max pain through the day).

:class:`OptionsViews` wraps the node's :class:`~mandi.web.api.MandiAPI` (one per API core) and,
like it, returns plain JSON-ready dicts in the API's units (rupees, ISO times, IV as a decimal)
and raises :class:`~mandi.web.api.ApiError`. Live numbers come from the chain layer's matrix;
history from the stored ``option_chain_snapshots`` (SQL in :mod:`mandi.stores.chains`). The
computations are the kernel's (:mod:`mandi.options.payoff`, :mod:`mandi.options.structures`,
:mod:`mandi.options.history`).
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
from typing import Any

import numpy as np

from mandi.core.calendar import NS_PER_DAY, ist_date, ist_ns
from mandi.core.errors import InstrumentError
from mandi.core.money import to_paise
from mandi.model.baskets import Basket, BasketLeg, BasketRejected
from mandi.model.instruments import Option
from mandi.model.orders import Side
from mandi.options import history as hist
from mandi.options.chain import matrix as mx
from mandi.options.payoff import PayoffLeg, StructureArrays, payoff
from mandi.options.structures import (
    TEMPLATES,
    ResolvedLeg,
    build,
    payoff_legs,
    resolve,
    structure_risk,
)
from mandi.stores import chains as chain_store
from mandi.web import serialize as ser
from mandi.web.api import ApiError, MandiAPI, bad, not_found

MAX_LEGS = 20
DEFAULT_RATE = 0.065


def rejected(e: BasketRejected) -> ApiError:
    """422 with one reason per leg (the leg's index; never the input it was given)."""
    issues = [{"leg": i.leg, "reason": i.reason} for i in e.issues]
    return ApiError(
        422,
        "basket_rejected",
        "the basket is refused whole: "
        + "; ".join(
            ("structure" if i.leg < 0 else f"leg {i.leg + 1}") + f": {i.reason}" for i in e.issues
        ),
        "body.legs",
        issues=issues,
    )


class OptionsViews:
    """Payoff, templates and the volatility/OI views over one :class:`MandiAPI`."""

    def __init__(self, api: MandiAPI) -> None:
        self.api = api

    @classmethod
    def of(cls, api: MandiAPI) -> OptionsViews:
        views = api.__dict__.get("_options_views")
        if views is None:
            views = api.__dict__["_options_views"] = cls(api)
        return views

    # --- helpers -----------------------------------------------------------------------------
    @property
    def master(self) -> Any:
        return self.api.node.master

    def _matrix(self) -> Any:
        return self.api._matrix()

    def rate(self) -> float:
        m = self._matrix()
        return float(m.config.rate) if m is not None else DEFAULT_RATE

    def spot(self, underlying: str) -> int:
        u = self.api._underlying(underlying)
        price = self.api.node.stats.last_price.get(u["token"])
        if not price:
            raise ApiError(409, "no_market_data", f"no price of {u['symbol']} yet")
        return int(price)

    def _live_row(self, inst: Option) -> tuple[int, int, int, float] | None:
        """(ltp, bid, ask, iv) of a contract from the live matrix, if its strike is in the
        window (paise; IV NaN when none)."""
        m = self._matrix()
        if m is None or inst.expiry is None:
            return None
        try:
            data, strikes = m.latest(inst.underlying, inst.expiry)
        except KeyError:
            return None
        k = np.flatnonzero(np.isclose(strikes, inst.strike / 100))
        if not k.size:
            return None
        j = int(k[0])
        base = 0 if inst.is_call else 6
        iv_ch = mx.CE_IV if inst.is_call else mx.PE_IV

        def paise(x: float) -> int:
            return round(x * 100) if math.isfinite(x) else 0

        return (
            paise(data[base + 0, j]),
            paise(data[base + 1, j]),
            paise(data[base + 2, j]),
            float(data[iv_ch, j]),
        )

    def _market(self, legs: list[ResolvedLeg]) -> tuple[dict[int, int], dict[int, float]]:
        """Entry prices (the touch a marketable order meets: ask to buy, bid to sell; else the
        last price) and IVs of the legs' contracts."""
        last = self.api.node.stats.last_price
        prices: dict[int, int] = {}
        ivs: dict[int, float] = {}
        for r in legs:
            inst = r.instrument
            row = self._live_row(inst) if isinstance(inst, Option) else None
            ltp = (row[0] if row else 0) or int(last.get(inst.token, 0) or 0)
            touch = 0
            if row is not None:
                touch = row[2] if r.leg.side is Side.BUY else row[1]
                if math.isfinite(row[3]) and row[3] > 0:
                    ivs[inst.token] = row[3]
            prices[inst.token] = touch or ltp
        return prices, ivs

    # --- templates and baskets ---------------------------------------------------------------
    def templates(self) -> list[dict[str, Any]]:
        return [
            {
                "name": t.name,
                "description": t.description,
                "legs": len(t.legs),
                "default_side": t.default_side.value,
                "offset": t.offset,
                "width": t.width,
                "expiries": t.expiries,
                "flippable": t.flippable,
            }
            for t in TEMPLATES.values()
        ]

    def build(
        self,
        underlying: str,
        template: str,
        *,
        expiry: str | None = None,
        lots: int = 1,
        side: str | None = None,
        strike: float | None = None,
        offset: int | None = None,
        width: int | None = None,
        option_type: str = "CE",
        far_expiry: str | None = None,
    ) -> dict[str, Any]:
        """The legs of ``template`` on ``underlying`` around the money."""
        u = self.api._underlying(underlying)
        exp = self._expiry(u["symbol"], expiry)
        if template not in TEMPLATES:
            raise bad("path.template", template, f"one of {', '.join(TEMPLATES)}")
        try:
            basket = build(
                template,
                self.master,
                u["symbol"],
                exp,
                self.spot(u["symbol"]),
                lots=lots,
                side=Side(side) if side else None,
                strike=to_paise(strike) if strike is not None else None,
                offset=offset,
                width=width,
                option_type=option_type,
                far_expiry=_day("query.far_expiry", far_expiry) if far_expiry else None,
            )
        except InstrumentError as e:
            raise ApiError(422, "template_unavailable", str(e), "query") from None
        return {
            "underlying": u["symbol"],
            "template": template,
            "expiry": exp.isoformat(),
            "legs": [self._leg_out(leg) for leg in basket.legs],
        }

    def _leg_out(self, leg: BasketLeg) -> dict[str, Any]:
        inst = self.master.by_symbol(leg.symbol, leg.exchange or None)
        out = {
            "symbol": leg.symbol,
            "side": leg.side.value,
            "quantity": leg.quantity,
            "lots": leg.quantity // max(inst.lot_size, 1),
            "lot_size": inst.lot_size,
        }
        if isinstance(inst, Option):
            out.update(
                strike=ser.rupees(inst.strike),
                option_type=inst.option_type,
                expiry=inst.expiry.isoformat() if inst.expiry else None,
            )
        return out

    def expiry_for(self, underlying: str, expiry: str | None = None) -> dt.date:
        """The expiry a view shows: the one asked for, else the nearest live (or listed) one.
        Reads the matrix: call it on the loop."""
        u = self.api._underlying(underlying)
        return self.api.pick_expiry(u["symbol"], expiry) or self._expiry(u["symbol"], None)

    def _expiry(self, underlying: str, expiry: str | None) -> dt.date:
        if expiry:
            return _day("query.expiry", expiry)
        today = ist_date(self.api.now_ns())
        listed = [e for e in self.master.expiries(underlying) if e >= today]
        if not listed:
            raise not_found(f"no listed {underlying} options expire today or later", "query")
        first: dt.date = listed[0]
        return first

    def basket(self, body: dict[str, Any]) -> tuple[Basket, list[ResolvedLeg]]:
        """A basket from a request body (legs with ``quantity`` or ``lots``), checked whole."""
        legs_in = body.get("legs") or []
        if not 1 <= len(legs_in) <= MAX_LEGS:
            raise bad("body.legs", None, f"between 1 and {MAX_LEGS} legs")
        legs = []
        for leg in legs_in:
            qty = leg.get("quantity")
            if qty is None:
                lots = leg.get("lots") or 1
                try:
                    lot = self.master.by_symbol(leg["symbol"], leg.get("exchange")).lot_size
                except InstrumentError:
                    lot = 1  # resolve() reports the unknown contract
                qty = lots * lot
            price = leg.get("price")
            legs.append(
                BasketLeg(
                    leg["symbol"],
                    Side(leg["side"]),
                    int(qty),
                    leg.get("exchange") or "",
                    to_paise(price) if price else 0,
                )
            )
        basket = Basket(tuple(legs), template=body.get("template") or "custom")
        try:
            return basket, resolve(basket, self.master, self.api.now_ns())
        except BasketRejected as e:
            raise rejected(e) from None

    # --- payoff ------------------------------------------------------------------------------
    def payoff(self, body: dict[str, Any]) -> dict[str, Any]:
        """Payoff, Greeks and risk of a basket at the current market (module doc)."""
        _, legs = self.basket(body)
        return self._analyse(legs, body)

    def book_payoff(self, underlying: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Payoff and Greeks of the open option positions on ``underlying``."""
        u = self.api._underlying(underlying)
        trading = self.api.trading
        if trading is None:
            raise ApiError(503, "trading_unavailable", "no trading in this node")
        legs = []
        for rec in trading.open_positions():
            if getattr(rec, "underlying", "") != u["symbol"] or not rec.quantity:
                continue
            inst = self.master.get(rec.token)
            if not isinstance(inst, Option):
                continue
            side = Side.BUY if rec.direction > 0 else Side.SELL
            leg = BasketLeg(inst.symbol, side, rec.quantity, inst.exchange, rec.entry_premium)
            legs.append(ResolvedLeg(leg, inst))
        if not legs:
            raise not_found(f"no open {u['symbol']} option positions", "path.underlying")
        out = self._analyse(legs, body or {})
        out["source"] = "positions"
        return out

    def _analyse(self, legs: list[ResolvedLeg], body: dict[str, Any]) -> dict[str, Any]:
        underlyings = {getattr(r.instrument, "underlying", "") for r in legs}
        if len(underlyings) != 1:
            raise bad("body.legs", None, "a payoff is drawn for legs of one underlying")
        (underlying,) = underlyings
        now = self.api.now_ns()
        spot = to_paise(body["spot"]) if body.get("spot") else self.spot(underlying)
        rate = self.rate()
        prices, ivs = self._market(legs)
        shift = float(body.get("iv_shift") or 0.0) / 100
        try:
            pl = payoff_legs(legs, prices, spot, now, rate=rate, ivs=ivs)
        except BasketRejected as e:
            raise rejected(e) from None
        if shift:
            pl = [
                PayoffLeg(x.kind, x.quantity, x.price, x.strike, x.years, max(x.iv + shift, 1e-4))
                if x.kind != "FUT"
                else x
                for x in pl
            ]
        horizon = float(body.get("horizon_days") or 0.0) / 365
        s = StructureArrays.of(pl)
        if horizon > s.first_expiry > 0:
            horizon = s.first_expiry
        points = int(body.get("points") or 200)
        p = payoff(s, spot / 100, r=rate, points=points, horizon=horizon)
        risk = structure_risk(pl, spot / 100, r=rate)
        g = p.greeks
        return {
            "underlying": underlying,
            "time": ser.iso(now),
            "spot": ser.rupees(spot),
            "rate": rate,
            "expiry_days": ser.num(p.expiry_years * 365, 6),
            "horizon_days": ser.num(horizon * 365, 4),
            "legs": [
                {
                    **self._leg_out(r.leg),
                    "price": ser.num(x.price, 2),
                    "iv": ser.num(x.iv, 6),
                }
                for r, x in zip(legs, pl, strict=True)
            ],
            "curve": {
                "spots": [round(float(v), 2) for v in p.spots],
                "at_expiry": [round(float(v), 2) for v in p.at_expiry],
                "today": [round(float(v), 2) for v in p.today],
                "delta": [ser.num(v, 4) for v in p.grid_greeks[0]],
            },
            "breakevens": [round(b, 2) for b in p.breakevens],
            "max_profit": None if math.isinf(p.max_profit) else round(p.max_profit, 2),
            "max_loss": None if math.isinf(p.max_loss) else round(p.max_loss, 2),
            "pop": ser.num(p.pop, 4),
            "pop_iv": ser.num(p.pop_iv, 4),
            "net_premium": round(p.net_premium, 2),
            "greeks": {
                "delta": ser.num(g.delta, 4),
                "gamma": ser.num(g.gamma, 6),
                "theta": ser.num(g.theta, 2),
                "vega": ser.num(g.vega, 2),
            },
            "margin": {k: ser.rupees(v) for k, v in _fields(risk.margin).items()},
            "worst_case": ser.rupees(risk.worst_case),
            "notional": ser.rupees(risk.notional),
            "exact": p.exact,
        }

    # --- placing -----------------------------------------------------------------------------
    def place_basket(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send a basket through the node's risk manager as one structure (trade scope)."""
        import uuid

        port = self.api._need_trading()
        place = getattr(port, "place_basket", None)
        if place is None:
            raise ApiError(
                503, "baskets_unavailable", "baskets are placed by the node that owns execution"
            )
        basket, _ = self.basket(body)
        request_id = body.get("request_id") or uuid.uuid4().hex
        res = place(request_id, basket, body.get("policy"))
        out: dict[str, Any] = {
            "request_id": request_id,
            "basket_id": res.basket_id,
            "status": res.status,
            "template": basket.template,
            "legs": [self._leg_out(leg) for leg in basket.legs],
            "risk": {k: ser.rupees(v) if isinstance(v, int) else v for k, v in res.risk.items()},
        }
        if res.status == "DENIED":
            raise ApiError(
                409,
                "risk_denied",
                res.reason,
                None,
                rule=res.rule,
                reason=res.reason,
                issues=[{"leg": i.leg, "reason": i.reason} for i in res.issues],
                **{k: out[k] for k in ("request_id", "basket_id", "status", "risk")},
            )
        if res.reason:
            out["reason"] = res.reason
        return out

    def basket_status(self, basket_id: str) -> dict[str, Any]:
        port = self.api._need_trading()
        get = getattr(port, "basket", None)
        found = get(basket_id[:80]) if get is not None else None
        if found is None:
            raise not_found("no such basket", "path.basket_id")
        out: dict[str, Any] = found
        return out

    # --- volatility --------------------------------------------------------------------------
    def smile(self, underlying: str, expiry: str | None = None) -> dict[str, Any]:
        """IV per strike (calls and puts) of one expiry: live, else the newest stored chain."""
        u = self.api._underlying(underlying)
        exp = self.api.pick_expiry(u["symbol"], expiry) or self._expiry(u["symbol"], None)
        m = self._matrix()
        a = m.analytics(u["symbol"], exp) if m is not None else None
        if a is not None:
            data, strikes = m.latest(u["symbol"], exp)
            points = [
                {
                    "strike": ser.num(k, 2),
                    "ce_iv": ser.num(data[mx.CE_IV, j], 4),
                    "pe_iv": ser.num(data[mx.PE_IV, j], 4),
                }
                for j, k in enumerate(strikes)
                if math.isfinite(k)
            ]
            return {
                "underlying": u["symbol"],
                "expiry": exp.isoformat(),
                "time": ser.iso(a.ts_event),
                "live": True,
                "spot": ser.num(a.underlying_price, 2),
                "atm_strike": ser.num(a.atm_strike, 2),
                "atm_iv": ser.num(a.atm_iv, 4),
                "points": points,
            }
        snap = self._stored(u["symbol"], exp)
        points = [
            {
                "strike": ser.rupees(r.strike),
                "ce_iv": ser.num(r.call.iv, 4) if r.call else None,
                "pe_iv": ser.num(r.put.iv, 4) if r.put else None,
            }
            for r in snap.rows
        ]
        return {
            "underlying": u["symbol"],
            "expiry": snap.expiry.isoformat(),
            "time": ser.iso(snap.ts_event),
            "live": False,
            "spot": ser.rupees(snap.underlying_price),
            "points": points,
        }

    def _stored(self, underlying: str, exp: dt.date | None) -> Any:
        try:
            snap = chain_store.latest_snapshot(self.api._db(), underlying, exp)
        except sqlite3.OperationalError:
            snap = None
        if snap is None:
            raise not_found(f"no chain data yet for {underlying}", "path.underlying")
        return snap

    def term_structure(self, underlying: str) -> dict[str, Any]:
        """ATM IV of every expiry with a live chain (else the stored ones' newest)."""
        u = self.api._underlying(underlying)
        m = self._matrix()
        points = []
        for exp in self.api.chain_keys(u["symbol"]):
            a = m.analytics(u["symbol"], exp)
            points.append(
                {
                    "expiry": exp.isoformat(),
                    "days": ser.num(a.time_to_expiry * 365, 3),
                    "atm_strike": ser.num(a.atm_strike, 2),
                    "atm_iv": ser.num(a.atm_iv, 4),
                }
            )
        live = bool(points)
        if not points:  # no live chain: the newest stored snapshot time, every expiry
            now = self.api.now_ns()
            closes = chain_store.day_close_times(
                self.api._db(), u["symbol"], now - 30 * NS_PER_DAY, now + 1
            )
            rows = (
                self._history(u["symbol"], closes[-1], closes[-1] + 1, near=0.03) if closes else []
            )
            for e in sorted({str(r[1]) for r in rows}):
                day = dt.date.fromisoformat(e)
                for pt in hist.atm_series([r for r in rows if r[1] == e], expiry=day):
                    points.append(
                        {
                            "expiry": e,
                            "days": ser.num((ist_ns(day, dt.time(15, 30)) - pt.ts) / NS_PER_DAY, 3),
                            "atm_strike": ser.rupees(pt.strike),
                            "atm_iv": ser.num(pt.iv, 4),
                        }
                    )
        return {"underlying": u["symbol"], "live": live, "points": points}

    def iv_rank(
        self, underlying: str, days: int = 365, current: float | None = None
    ) -> dict[str, Any]:
        """IV rank and percentile of ``current`` (the live ATM IV, :meth:`current_atm_iv`; else
        the newest stored one) against the stored history: the daily closing ATM IV of the
        nearest expiry after each day over ``days`` days, or the day's snapshots while fewer than
        two days are stored. SQLite only: run it in a worker thread."""
        u = self.api._underlying(underlying)
        now = self.api.now_ns()
        start = now - days * NS_PER_DAY
        con = self.api._db()
        closes = chain_store.day_close_times(con, u["symbol"], start, now + 1)
        basis = "days"
        if len(closes) >= 2:
            rows = self._history(u["symbol"], start, now + 1, near=0.02, times=closes)
            series = hist.atm_series(rows, skip_expiry_day=True)
        else:
            basis = "snapshots"
            rows = self._history(u["symbol"], now - NS_PER_DAY, now + 1, near=0.02)
            series = hist.atm_series(rows)
        values = [p.iv for p in series if p.iv is not None]
        if current is None and values:
            current = values[-1]
        rank, pct = hist.iv_rank(values, current if current is not None else math.nan)
        return {
            "underlying": u["symbol"],
            "iv": ser.num(current, 4),
            "rank": ser.num(rank, 2),
            "percentile": ser.num(pct, 2),
            "basis": basis,
            "observations": len(values),
            "low": ser.num(min(values), 4) if values else None,
            "high": ser.num(max(values), 4) if values else None,
            "history": [
                {"t": p.ts // 10**9, "time": ser.iso(p.ts), "iv": ser.num(p.iv, 4)}
                for p in series
                if p.iv is not None
            ][-400:],
        }

    def current_atm_iv(self, underlying: str) -> float | None:
        """The live ATM IV of the nearest expiry (reads the matrix: on the loop)."""
        underlying = self.api._underlying(underlying)["symbol"]
        m = self._matrix()
        exp = self.api.pick_expiry(underlying)
        a = m.analytics(underlying, exp) if (m is not None and exp is not None) else None
        return float(a.atm_iv) if a is not None and math.isfinite(a.atm_iv) else None

    def _history(
        self,
        underlying: str,
        start: int,
        end: int,
        *,
        expiry: dt.date | None = None,
        strike: int | None = None,
        near: float | None = None,
        times: list[int] | None = None,
    ) -> list[Any]:
        try:
            return chain_store.chain_history(
                self.api._db(),
                underlying,
                start,
                end,
                expiry=expiry,
                strike=strike,
                near_fraction=near,
                times=times,
            )
        except sqlite3.OperationalError:
            return []

    def _day_range(self, date: str | None) -> tuple[int, int]:
        day = _day("query.date", date) if date else ist_date(self.api.now_ns())
        start = ist_ns(day)
        return start, start + NS_PER_DAY

    def straddle(
        self, underlying: str, expiry: str | None = None, date: str | None = None
    ) -> dict[str, Any]:
        """The ATM straddle premium (call + put at the strike nearest the underlying) through
        one day (today by default), from the stored snapshots (SQLite only: a worker thread)."""
        u = self.api._underlying(underlying)
        start, end = self._day_range(date)
        exp = _day("query.expiry", expiry) if expiry else None
        rows = self._history(u["symbol"], start, end, expiry=exp, near=0.02)
        series = hist.atm_series(rows, expiry=exp)
        return {
            "underlying": u["symbol"],
            "expiry": series[-1].expiry.isoformat() if series else (expiry or None),
            "points": [
                {
                    "t": p.ts // 10**9,
                    "time": ser.iso(p.ts),
                    "spot": ser.rupees(p.spot),
                    "strike": ser.rupees(p.strike),
                    "call": ser.rupees(p.call),
                    "put": ser.rupees(p.put),
                    "straddle": ser.rupees(p.straddle),
                    "iv": ser.num(p.iv, 4),
                }
                for p in series
            ],
        }

    # --- open interest -----------------------------------------------------------------------
    def oi(self, underlying: str, expiry: str | None = None) -> dict[str, Any]:
        """OI and change in OI (contracts) by strike: live, else the newest stored chain."""
        u = self.api._underlying(underlying)
        exp = self.api.pick_expiry(u["symbol"], expiry) or self._expiry(u["symbol"], None)
        m = self._matrix()
        a = m.analytics(u["symbol"], exp) if m is not None else None
        if a is not None:
            data, strikes = m.latest(u["symbol"], exp)
            rows = [
                {
                    "strike": ser.num(k, 2),
                    "ce_oi": ser.num(data[mx.CE_OI, j], 2),
                    "pe_oi": ser.num(data[mx.PE_OI, j], 2),
                    "ce_oi_change": ser.num(data[mx.CE_OI_CHANGE, j], 2),
                    "pe_oi_change": ser.num(data[mx.PE_OI_CHANGE, j], 2),
                }
                for j, k in enumerate(strikes)
                if math.isfinite(k)
            ]
            return {
                "underlying": u["symbol"],
                "expiry": exp.isoformat(),
                "time": ser.iso(a.ts_event),
                "live": True,
                "spot": ser.num(a.underlying_price, 2),
                "pcr": ser.num(a.pcr_oi, 3),
                "max_pain": ser.num(a.max_pain, 2),
                "rows": rows,
            }
        snap = self._stored(u["symbol"], exp)
        lot = max(snap.lot_size, 1)

        def contracts(q: Any, attr: str) -> float | None:
            return None if q is None else ser.num(getattr(q, attr) / lot, 2)

        return {
            "underlying": u["symbol"],
            "expiry": snap.expiry.isoformat(),
            "time": ser.iso(snap.ts_event),
            "live": False,
            "spot": ser.rupees(snap.underlying_price),
            "rows": [
                {
                    "strike": ser.rupees(r.strike),
                    "ce_oi": contracts(r.call, "oi"),
                    "pe_oi": contracts(r.put, "oi"),
                    "ce_oi_change": contracts(r.call, "oi_change"),
                    "pe_oi_change": contracts(r.put, "oi_change"),
                }
                for r in snap.rows
            ],
        }

    def oi_history(
        self, underlying: str, strike: float, exp: dt.date, date: str | None = None
    ) -> dict[str, Any]:
        """Call and put OI (contracts) of one strike of expiry ``exp`` through one day, from the
        stored snapshots (SQLite only: a worker thread)."""
        u = self.api._underlying(underlying)
        start, end = self._day_range(date)
        k = to_paise(strike)
        rows = self._history(u["symbol"], start, end, expiry=exp, strike=k)
        lot = self._lot(u["symbol"], exp)
        by: dict[int, dict[str, Any]] = {}
        for r in rows:
            pt = by.setdefault(
                int(r[0]),
                {
                    "t": int(r[0]) // 10**9,
                    "time": ser.iso(int(r[0])),
                    **dict.fromkeys(("ce_oi", "pe_oi", "ce_ltp", "pe_ltp")),
                },
            )
            side = "ce" if r[3] == "CE" else "pe"
            pt[f"{side}_oi"] = ser.num((r[7] or 0) / lot, 2)
            pt[f"{side}_ltp"] = ser.rupees(r[4])
        return {
            "underlying": u["symbol"],
            "expiry": exp.isoformat(),
            "strike": ser.rupees(k),
            "points": [by[t] for t in sorted(by)],
        }

    def atm_strike(self, underlying: str, exp: dt.date) -> float:
        """The ATM strike (rupees) of a chain: live, else the newest stored snapshot's."""
        u = self.api._underlying(underlying)
        m = self._matrix()
        a = m.analytics(u["symbol"], exp) if m is not None else None
        if a is not None and math.isfinite(a.atm_strike):
            return float(a.atm_strike)
        snap = self._stored(u["symbol"], exp)
        k: int = min(snap.rows, key=lambda r: abs(r.strike - snap.underlying_price)).strike
        return k / 100

    def _lot(self, underlying: str, exp: dt.date) -> int:
        opts = self.master.options(underlying, exp)
        return max(opts[0].lot_size, 1) if opts else 1

    def pcr_history(self, underlying: str, exp: dt.date, date: str | None = None) -> dict[str, Any]:
        """PCR of open interest and max pain of expiry ``exp`` through one day (stored
        snapshots; SQLite only: a worker thread)."""
        u = self.api._underlying(underlying)
        start, end = self._day_range(date)
        rows = self._history(u["symbol"], start, end, expiry=exp)
        return {
            "underlying": u["symbol"],
            "expiry": exp.isoformat(),
            "points": [
                {
                    "t": p.ts // 10**9,
                    "time": ser.iso(p.ts),
                    "spot": ser.rupees(p.spot),
                    "pcr": ser.num(p.pcr, 4),
                    "max_pain": ser.rupees(p.max_pain),
                }
                for p in hist.pcr_series(rows)
            ],
        }


def _fields(struct: Any) -> dict[str, Any]:
    return {f: getattr(struct, f) for f in struct.__struct_fields__}


def _day(field: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise bad(field, text, "a date YYYY-MM-DD") from None
