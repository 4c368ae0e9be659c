"""Option structures: templates, validation and whole-structure risk numbers of a basket.

* **Templates** (:data:`TEMPLATES`, :func:`build`) pick listed contracts around the money:

  ============================  ==========================================================
  ``straddle``                  CE and PE at the strike (short by default)
  ``strangle``                  CE ``offset`` strikes above, PE ``offset`` below (short)
  ``bull_call_spread``          buy CE at the strike, sell CE ``width`` strikes higher
  ``bear_call_spread``          sell CE at the strike, buy CE ``width`` strikes higher
  ``bull_put_spread``           sell PE at the strike, buy PE ``width`` strikes lower
  ``bear_put_spread``           buy PE at the strike, sell PE ``width`` strikes lower
  ``iron_condor``               short strangle at ``offset`` + wings ``width`` beyond (short)
  ``iron_fly``                  short straddle + wings ``width`` strikes away (short)
  ``butterfly``                 buy K−w, sell 2× K, buy K+w, calls or puts (long)
  ``calendar``                  sell the near expiry, buy the far one, same strike (long)
  ============================  ==========================================================

  The strike defaults to the ATM strike (the listed strike nearest the underlying price);
  ``offset`` and ``width`` count listed strikes. ``side="BUY"`` turns a short straddle,
  strangle, iron condor or iron fly long (and a long butterfly or calendar short).
* **Validation** (:func:`resolve`): every leg must name a known, tradable, unexpired contract and
  a positive lot-multiple quantity; a template's legs share one underlying (and one expiry,
  except the calendar's two). Everything found is reported at once, one reason per leg
  (:class:`~mandi.model.baskets.BasketRejected`).
* **Risk numbers** (:func:`structure_risk`): max profit/loss from the payoff, a margin estimate
  with the hedge benefit, and the exposure — in int paise.

The margin is a SPAN-style estimate, not the exchange's number: the structure is revalued at the
current time under price moves of 0, ±⅓, ±⅔ and ±1 × ``price_scan_pct`` of the underlying, each
with the IVs up and down ``vol_scan_pct`` points, and at ±2 × the scan range counted at
``extreme_weight``; the scan charge is the worst loss beyond what the long options (paid in full)
can lose. Add the exposure margin (``exposure_pct`` of the short options' and futures' notional)
and the premium of the options bought. The hedge benefit is what the legs would need one by one
minus what the structure needs. A broker's margin API remains the authority.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from mandi.core.calendar import EXPIRY_TIME, ist_ns
from mandi.core.errors import InstrumentError
from mandi.model.baskets import Basket, BasketLeg, BasketRejected, LegIssue
from mandi.model.instruments import AnyInstrument, Future, InstrumentMaster, Option
from mandi.model.orders import Product, Side
from mandi.options.iv import implied_vol
from mandi.options.payoff import Model, PayoffLeg, StructureArrays, evaluate, payoff
from mandi.options.pricing import year_fraction

__all__ = [
    "TEMPLATES",
    "MarginConfig",
    "MarginEstimate",
    "ResolvedLeg",
    "StructureRisk",
    "Template",
    "build",
    "margin_estimate",
    "payoff_legs",
    "resolve",
    "structure_risk",
]

CUSTOM = "custom"


# --- templates -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _LegSpec:
    """A template leg: option type, strike position (in listed strikes from the anchor, as a
    function of offset and width), side of the long form, ratio, and whether it is the far
    expiry."""

    option_type: str  # "CE" | "PE" | "" (the template's option_type parameter)
    position: Callable[[int, int], int]
    side: Side
    ratio: int = 1
    far: bool = False


@dataclass(frozen=True, slots=True)
class Template:
    """A named structure: its legs in the *long* form, the form used by default
    (``default_side``: ``SELL`` = the legs' sides flipped), the default ``offset``/``width`` in
    listed strikes, and how many expiries it spans."""

    name: str
    legs: tuple[_LegSpec, ...]
    default_side: Side = Side.BUY
    offset: int = 0
    width: int = 0
    expiries: int = 1
    flippable: bool = True
    description: str = ""


B, S = Side.BUY, Side.SELL


def _at(k: int) -> Callable[[int, int], int]:
    return lambda o, w: k


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "straddle",
            (_LegSpec("CE", _at(0), B), _LegSpec("PE", _at(0), B)),
            default_side=S,
            description="CE and PE at the same strike",
        ),
        Template(
            "strangle",
            (_LegSpec("CE", lambda o, w: o, B), _LegSpec("PE", lambda o, w: -o, B)),
            default_side=S,
            offset=2,
            description="CE `offset` strikes above, PE `offset` strikes below",
        ),
        Template(
            "bull_call_spread",
            (_LegSpec("CE", _at(0), B), _LegSpec("CE", lambda o, w: w, S)),
            width=2,
            flippable=False,
            description="buy CE at the strike, sell CE `width` strikes higher",
        ),
        Template(
            "bear_call_spread",
            (_LegSpec("CE", _at(0), S), _LegSpec("CE", lambda o, w: w, B)),
            width=2,
            flippable=False,
            description="sell CE at the strike, buy CE `width` strikes higher",
        ),
        Template(
            "bull_put_spread",
            (_LegSpec("PE", _at(0), S), _LegSpec("PE", lambda o, w: -w, B)),
            width=2,
            flippable=False,
            description="sell PE at the strike, buy PE `width` strikes lower",
        ),
        Template(
            "bear_put_spread",
            (_LegSpec("PE", _at(0), B), _LegSpec("PE", lambda o, w: -w, S)),
            width=2,
            flippable=False,
            description="buy PE at the strike, sell PE `width` strikes lower",
        ),
        Template(
            "iron_condor",
            (
                _LegSpec("PE", lambda o, w: -o - w, S),
                _LegSpec("PE", lambda o, w: -o, B),
                _LegSpec("CE", lambda o, w: o, B),
                _LegSpec("CE", lambda o, w: o + w, S),
            ),
            default_side=S,
            offset=2,
            width=2,
            description="short strangle `offset` strikes out, wings `width` strikes beyond",
        ),
        Template(
            "iron_fly",
            (
                _LegSpec("PE", lambda o, w: -w, S),
                _LegSpec("PE", _at(0), B),
                _LegSpec("CE", _at(0), B),
                _LegSpec("CE", lambda o, w: w, S),
            ),
            default_side=S,
            width=2,
            description="short straddle with wings `width` strikes away",
        ),
        Template(
            "butterfly",
            (
                _LegSpec("", lambda o, w: -w, B),
                _LegSpec("", _at(0), S, ratio=2),
                _LegSpec("", lambda o, w: w, B),
            ),
            width=2,
            description="buy K-w, sell 2x K, buy K+w (calls by default)",
        ),
        Template(
            "calendar",
            (_LegSpec("", _at(0), S), _LegSpec("", _at(0), B, far=True)),
            expiries=2,
            description="sell the near expiry, buy the far expiry at the same strike",
        ),
    )
}


def _pick(strikes: list[int], anchor: int, steps: int, what: str) -> int:
    i = strikes.index(anchor) + steps
    if not 0 <= i < len(strikes):
        raise InstrumentError(
            f"{what}: no listed strike {abs(steps)} strikes {'above' if steps > 0 else 'below'} "
            f"{anchor / 100:g}"
        )
    return strikes[i]


def build(
    template: str,
    master: InstrumentMaster,
    underlying: str,
    expiry: dt.date,
    spot: int,
    *,
    lots: int = 1,
    side: Side | None = None,
    strike: int | None = None,
    offset: int | None = None,
    width: int | None = None,
    option_type: str = "CE",
    far_expiry: dt.date | None = None,
    product: Product = Product.MIS,
    tag: str = "",
) -> Basket:
    """A :class:`Basket` of ``template`` on ``underlying``'s ``expiry`` chain in ``master``.

    ``spot`` (paise) locates the ATM strike unless ``strike`` (paise, a listed strike) is given;
    ``offset``/``width`` (listed strikes) default to the template's; ``lots`` per leg (times the
    leg's ratio); ``side`` the form (``None`` = the template's usual one); ``option_type`` for
    the butterfly and calendar; ``far_expiry`` for the calendar (default: the next expiry).
    Raises :class:`~mandi.core.errors.InstrumentError` naming what is missing."""
    t = TEMPLATES.get(template)
    if t is None:
        raise InstrumentError(
            f"unknown template {template!r}; one of {', '.join(sorted(TEMPLATES))}"
        )
    if lots < 1:
        raise InstrumentError(f"lots must be at least 1, got {lots}")
    if option_type not in ("CE", "PE"):
        raise InstrumentError(f"option_type must be CE or PE, got {option_type!r}")
    form = t.default_side if side is None else Side(side)
    if not t.flippable and side is not None and form is not t.default_side:
        raise InstrumentError(f"{template} has one direction; use the opposite spread template")
    chain = master.options(underlying, expiry)
    if not chain:
        raise InstrumentError(f"no {underlying} options expiring {expiry}")
    strikes = sorted({o.strike for o in chain})
    anchor = strike if strike is not None else min(strikes, key=lambda k: (abs(k - spot), k))
    if anchor not in strikes:
        raise InstrumentError(f"strike {anchor / 100:g} is not listed for {underlying} {expiry}")
    far_chain: list[Option] = []
    if t.expiries == 2:
        later = [e for e in master.expiries(underlying) if e > expiry]
        far = far_expiry or (later[0] if later else None)
        if far is None or far <= expiry:
            raise InstrumentError(f"calendar: no {underlying} expiry after {expiry}")
        far_chain = master.options(underlying, far)
        if not far_chain:
            raise InstrumentError(f"calendar: no {underlying} options expiring {far}")
    o = t.offset if offset is None else offset
    w = t.width if width is None else width
    if o < 0 or w < 0:
        raise InstrumentError(f"offset and width count strikes and cannot be negative ({o}, {w})")
    legs = []
    for spec in t.legs:
        k = _pick(strikes, anchor, spec.position(o, w), template)
        kind = spec.option_type or option_type
        pool = far_chain if spec.far else chain
        hits = [c for c in pool if c.strike == k and c.option_type == kind]
        if not hits:
            raise InstrumentError(f"{template}: no {underlying} {k / 100:g} {kind} listed")
        c = hits[0]
        leg_side = spec.side if form is Side.BUY or not t.flippable else spec.side.opposite
        legs.append(BasketLeg(c.symbol, leg_side, lots * spec.ratio * c.lot_size, c.exchange))
    # hedge-first order is the executor's business; here legs keep the template's order
    return Basket(tuple(legs), template=template, product=product, tag=tag)


# --- validation ------------------------------------------------------------------------------
class ResolvedLeg(msgspec.Struct, frozen=True):
    """A checked leg with its instrument."""

    leg: BasketLeg
    instrument: AnyInstrument

    @property
    def signed_quantity(self) -> int:
        return self.leg.quantity * self.leg.side.sign


def _expiry_of(inst: AnyInstrument) -> dt.date | None:
    return inst.expiry if isinstance(inst, Option | Future) else None


def _underlying_of(inst: AnyInstrument) -> str:
    return inst.underlying if isinstance(inst, Option | Future) else inst.symbol


def resolve(basket: Basket, master: InstrumentMaster, now_ns: int) -> list[ResolvedLeg]:
    """Check every leg of ``basket`` and return them with their instruments, or raise
    :class:`BasketRejected` with every reason found (nothing is partially accepted)."""
    issues: list[LegIssue] = []
    out: list[ResolvedLeg] = []
    index: list[int] = []  # the basket position of each resolved leg
    if not basket.legs:
        raise BasketRejected([LegIssue(-1, "", "a basket needs at least one leg")])
    template = TEMPLATES.get(basket.template)
    if template is None and basket.template != CUSTOM:
        issues.append(LegIssue(-1, "", f"unknown template; one of {', '.join(TEMPLATES)}"))
    for i, leg in enumerate(basket.legs):
        try:
            inst = master.by_symbol(leg.symbol, leg.exchange or None)
        except InstrumentError:  # its message would repeat the symbol; the issue carries it
            issues.append(LegIssue(i, leg.symbol, "unknown contract"))
            continue
        reasons = []
        if not inst.tradable:
            reasons.append("not tradable (an index)")
        expiry = _expiry_of(inst)
        if expiry is not None and now_ns >= ist_ns(expiry, EXPIRY_TIME):
            reasons.append(f"expired on {expiry.isoformat()}")
        if leg.quantity <= 0:
            reasons.append("quantity must be positive")
        elif leg.quantity % inst.lot_size:
            reasons.append(f"quantity is not a multiple of the lot size {inst.lot_size}")
        if leg.price < 0:
            reasons.append("limit price must not be negative")
        elif leg.price and leg.price % inst.tick_size:
            reasons.append(f"limit price is off the tick {inst.tick_size / 100:g}")
        issues.extend(LegIssue(i, leg.symbol, r) for r in reasons)
        out.append(ResolvedLeg(leg, inst))
        index.append(i)
    if template is not None and out:
        issues.extend(_shape_issues(template, out, index, len(basket.legs)))
    if issues:
        raise BasketRejected(issues)
    return out


def _shape_issues(
    t: Template, legs: list[ResolvedLeg], index: list[int], count: int
) -> list[LegIssue]:
    """A template's legs share one underlying and span exactly its number of expiries."""
    issues = []
    first = _underlying_of(legs[0].instrument)
    for i, r in zip(index, legs, strict=True):
        u = _underlying_of(r.instrument)
        if u != first:
            issues.append(
                LegIssue(
                    i, r.leg.symbol, f"underlying {u} differs from {first}: {t.name} needs one"
                )
            )
        if not isinstance(r.instrument, Option):
            issues.append(LegIssue(i, r.leg.symbol, f"{t.name} legs are options"))
    expiries = {_expiry_of(r.instrument) for r in legs}
    if len(expiries) != t.expiries:
        issues.append(
            LegIssue(-1, "", f"{t.name} spans {t.expiries} expiries, the legs {len(expiries)}")
        )
    if count != len(t.legs):
        issues.append(LegIssue(-1, "", f"{t.name} has {len(t.legs)} legs, the basket {count}"))
    return issues


# --- payoff legs from the market -------------------------------------------------------------
def payoff_legs(
    legs: Sequence[ResolvedLeg],
    prices: Mapping[int, int],
    spot: int,
    now_ns: int,
    *,
    rate: float = 0.0,
    ivs: Mapping[int, float] | None = None,
) -> list[PayoffLeg]:
    """:class:`PayoffLeg` s in rupees: entry at ``prices[token]`` (paise; a limit price on the
    leg wins), years to expiry from ``now_ns``, and IVs from ``ivs`` or implied from the price
    at ``spot``; a leg whose IV cannot be found (a price outside the no-arbitrage bounds) takes
    the IV of the nearest strike that has one. Raises :class:`BasketRejected` when a leg has no
    price or no IV can be found at all."""
    issues = []
    out: list[PayoffLeg] = []
    for i, r in enumerate(legs):
        inst = r.instrument
        price = r.leg.price or prices.get(inst.token, 0)
        if price <= 0:
            issues.append(LegIssue(i, r.leg.symbol, "no price to value the leg at"))
            continue
        q = r.signed_quantity
        if isinstance(inst, Option) and inst.expiry is not None:
            years = float(year_fraction(now_ns, inst.expiry))
            iv = (ivs or {}).get(inst.token, math.nan)
            if not (iv > 0) and years > 0:
                iv = float(
                    implied_vol(
                        price / 100, spot / 100, inst.strike / 100, years, rate, inst.is_call
                    )
                )
            out.append(PayoffLeg(inst.option_type, q, price / 100, inst.strike / 100, years, iv))
        else:
            out.append(PayoffLeg("FUT", q, price / 100))
    if issues:
        raise BasketRejected(issues)
    return _fill_ivs(out, spot / 100, legs)


def _fill_ivs(
    legs: list[PayoffLeg], spot: float, resolved: Sequence[ResolvedLeg]
) -> list[PayoffLeg]:
    known = [(abs(p.strike - spot), p.strike, p.iv) for p in legs if p.kind != "FUT" and p.iv > 0]
    out = []
    for i, p in enumerate(legs):
        if p.kind == "FUT" or p.iv > 0 or p.years <= 0:
            out.append(p)
            continue
        if not known:
            raise BasketRejected(
                [LegIssue(i, resolved[i].leg.symbol, "no implied volatility fits its price")]
            )
        nearest = min(known, key=lambda x: abs(x[1] - p.strike))[2]
        out.append(msgspec.structs.replace(p, iv=nearest))
    return out


# --- margin and risk -------------------------------------------------------------------------
class MarginConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Parameters of the SPAN-style margin estimate (percentages of the underlying price, IV
    points). Defaults sized for index options."""

    price_scan_pct: float = 7.5
    vol_scan_pct: float = 4.0
    extreme_multiple: float = 2.0
    extreme_weight: float = 0.35
    exposure_pct: float = 2.0


class MarginEstimate(msgspec.Struct, frozen=True):
    """Margin in int paise: ``scan`` (SPAN-style worst loss beyond the longs' value),
    ``exposure``, ``premium`` (paid for the options bought), ``total``; ``standalone`` what the
    legs need one by one and ``hedge_benefit`` = standalone − total."""

    scan: int
    exposure: int
    premium: int
    total: int
    standalone: int
    hedge_benefit: int


class StructureRisk(msgspec.Struct, frozen=True):
    """A structure's risk in int paise. ``max_loss`` is a positive amount, ``None`` when
    unbounded; ``worst_case`` is ``max_loss`` when bounded, else the worst scenario loss of the
    margin's scan (what the risk limits are checked against). ``notional`` = Σ |quantity| ×
    underlying; ``premium_value`` = Σ |quantity| × price; ``delta_notional`` = |net delta| ×
    underlying; ``net_premium`` > 0 a credit, < 0 a debit."""

    max_profit: int | None
    max_loss: int | None
    worst_case: int
    breakevens: tuple[int, ...]
    pop: float
    margin: MarginEstimate
    notional: int
    premium_value: int
    delta_notional: int
    net_premium: int


def _paise(rupees: float) -> int:
    return round(rupees * 100)


def _scan_losses(
    s: StructureArrays, spot: float, cfg: MarginConfig, r: float, q: float, model: Model
) -> tuple[float, float]:
    """(weighted worst loss, unweighted worst loss) against the value now, in rupees."""
    scan = cfg.price_scan_pct / 100
    moves = np.array([0.0, 1 / 3, -1 / 3, 2 / 3, -2 / 3, 1.0, -1.0]) * scan
    base = float(evaluate(s, np.array([spot]), 0.0, r, q, model)[0, 0])
    worst = 0.0
    dv = cfg.vol_scan_pct / 100
    for shift in (dv, -dv):
        bumped = dataclasses.replace(s, iv=np.maximum(s.iv + shift, 1e-4))
        pl = evaluate(bumped, spot * (1 + moves), 0.0, r, q, model)[0]
        worst = max(worst, float((base - pl).max()))
    extreme = spot * (1 + np.array([1.0, -1.0]) * scan * cfg.extreme_multiple)
    extreme_loss = float((base - evaluate(s, extreme, 0.0, r, q, model)[0]).max())
    return max(worst, extreme_loss * cfg.extreme_weight), max(worst, extreme_loss)


def margin_estimate(
    legs: Sequence[PayoffLeg],
    spot: float,
    cfg: MarginConfig | None = None,
    *,
    r: float = 0.0,
    q: float = 0.0,
    model: Model = "bs",
) -> MarginEstimate:
    """The SPAN-style margin estimate of ``legs`` at ``spot`` (rupees in, paise out); see the
    module docstring for the method."""
    cfg = cfg or MarginConfig()
    total, scan, exposure, premium = _margin(legs, spot, cfg, r, q, model)
    standalone = sum(_margin([leg], spot, cfg, r, q, model)[0] for leg in legs)
    return MarginEstimate(
        scan=_paise(scan),
        exposure=_paise(exposure),
        premium=_paise(premium),
        total=_paise(total),
        standalone=_paise(standalone),
        hedge_benefit=max(_paise(standalone) - _paise(total), 0),
    )


def _margin(
    legs: Sequence[PayoffLeg], spot: float, cfg: MarginConfig, r: float, q: float, model: Model
) -> tuple[float, float, float, float]:
    s = StructureArrays.of(legs)
    weighted, _ = _scan_losses(s, spot, cfg, r, q, model)
    long_options = s.is_option & (s.quantity > 0)
    if long_options.any():
        now = dataclasses.replace(
            s, quantity=np.where(long_options, s.quantity, 0.0), price=np.zeros_like(s.price)
        )
        long_value = float(evaluate(now, np.array([spot]), 0.0, r, q, model)[0, 0])
    else:
        long_value = 0.0
    scan = max(weighted - long_value, 0.0)
    short_or_linear = ~s.is_option | (s.quantity < 0)
    exposure = cfg.exposure_pct / 100 * spot * float(np.abs(s.quantity[short_or_linear]).sum())
    premium = float((s.quantity * s.price)[long_options].sum())
    return scan + exposure + premium, scan, exposure, premium


def structure_risk(
    legs: Sequence[PayoffLeg],
    spot: float,
    cfg: MarginConfig | None = None,
    *,
    r: float = 0.0,
    q: float = 0.0,
    model: Model = "bs",
) -> StructureRisk:
    """Max profit/loss, breakevens, probability of profit, margin and exposure of ``legs`` at the
    underlying price ``spot`` (rupees), as int paise."""
    cfg = cfg or MarginConfig()
    s = StructureArrays.of(legs)
    p = payoff(s, spot, r=r, q=q, model=model)
    _, worst_scan = _scan_losses(s, spot, cfg, r, q, model)
    max_loss = None if math.isinf(p.max_loss) else _paise(max(-p.max_loss, 0.0))
    return StructureRisk(
        max_profit=None if math.isinf(p.max_profit) else _paise(p.max_profit),
        max_loss=max_loss,
        worst_case=max_loss if max_loss is not None else _paise(worst_scan),
        breakevens=tuple(_paise(b) for b in p.breakevens),
        pop=p.pop,
        margin=margin_estimate(legs, spot, cfg, r=r, q=q, model=model),
        notional=_paise(spot * float(np.abs(s.quantity).sum())),
        premium_value=_paise(float(np.abs(s.quantity * s.price)[s.is_option].sum())),
        delta_notional=_paise(abs(p.greeks.delta) * spot),
        net_premium=_paise(p.net_premium),
    )
