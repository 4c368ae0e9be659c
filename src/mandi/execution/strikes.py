"""Strike selection for option trades (the seed's scored ``StrikeSelector``).

Given a signal on an underlying, the side (CE for a bullish signal, PE for a bearish one) and the
latest chain snapshot:

1. keep the contracts of that side with a price, volume ≥ ``min_volume`` and OI ≥ ``min_oi``;
2. keep those within ``max_strikes_from_atm`` strike steps of the at-the-money strike (the
   strike nearest the underlying price);
3. score each in [0, 1] on five criteria and combine with the weights (seed: distance from ATM
   30 %, delta near 0.5 20 %, IV rank 15 %, liquidity 25 %, bid-ask spread 10 %):

   * distance: 1 at the money, falling linearly to 0 one step beyond the allowed distance;
   * delta: 1 − |(|Δ| − 0.5)| / 0.5 (Black-Scholes Δ at the quote's IV, or the IV implied by
     its price when the chain has none);
   * IV rank: where the contract's IV sits between the lowest and highest IV of the candidates
     (a buyer prefers cheaper volatility: the lowest scores 1), over a range of at least
     ``iv_rank_span`` (2 vol points) so that rounding noise does not decide;
   * liquidity: log(volume) + log(OI) relative to the best candidate;
   * spread: 1 − (ask − bid) / mid ÷ ``max_spread_pct`` (0 beyond it; 0.5 without a quote);
4. return the best (ties: nearer the money, then the lower strike).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Annotated

import msgspec
import numpy as np

from mandi.core.calendar import calendar, ist_date
from mandi.execution.config import StrikeConfig
from mandi.model.instruments import InstrumentMaster, Option
from mandi.model.market import ChainSnapshot, OptionQuote
from mandi.options import greeks, implied_vol, year_fraction

W = Annotated[float, msgspec.Meta(ge=0)]


@dataclass(frozen=True, slots=True)
class StrikeChoice:
    option: Option
    quote: OptionQuote
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    delta: float = math.nan
    iv: float = math.nan


@dataclass(frozen=True, slots=True)
class NoStrike:
    reason: str


def choose_expiry(
    master: InstrumentMaster, underlying: str, now_ns: int, cfg: StrikeConfig, exchange: str = "NSE"
) -> dt.date | None:
    """The expiry to trade: the nearest (or the nearest monthly) at least
    ``min_days_to_expiry`` calendar days away (default 1: never the contract expiring today)."""
    cal = calendar(exchange if exchange in ("NSE", "BSE") else "NSE")
    today = ist_date(now_ns)
    for e in master.expiries(underlying):
        if (e - today).days < cfg.min_days_to_expiry or cal.expiry_ns(e) <= now_ns:
            continue
        if cfg.expiry == "monthly" and e != cal.monthly_expiry(e.year, e.month):
            continue
        return e
    return None


def select_strike(
    chain: ChainSnapshot, option_type: str, now_ns: int, cfg: StrikeConfig, master: InstrumentMaster
) -> StrikeChoice | NoStrike:
    """Score the chain's contracts of ``option_type`` (CE/PE) and return the best."""
    spot = chain.underlying_price
    if spot <= 0 or not chain.rows:
        return NoStrike(f"no underlying price or no strikes in the {chain.underlying} chain")
    strikes = [r.strike for r in chain.rows]
    atm_i = min(range(len(strikes)), key=lambda i: (abs(strikes[i] - spot), strikes[i]))
    cands: list[tuple[int, Option, OptionQuote]] = []
    dropped = {"liquidity": 0, "distance": 0, "unknown": 0}
    for i, row in enumerate(chain.rows):
        q = row.call if option_type == "CE" else row.put
        if q is None or q.ltp <= 0:
            continue
        if q.volume < cfg.min_volume or q.oi < cfg.min_oi:
            dropped["liquidity"] += 1
            continue
        if abs(i - atm_i) > cfg.max_strikes_from_atm:
            dropped["distance"] += 1
            continue
        inst = master.get(q.token) if q.token else None
        if not isinstance(inst, Option):
            opts = [
                o
                for o in master.options(chain.underlying, chain.expiry)
                if o.strike == row.strike and o.option_type == option_type
            ]
            inst = opts[0] if opts else None
        if inst is None:
            dropped["unknown"] += 1
            continue
        cands.append((abs(i - atm_i), inst, q))
    if not cands:
        return NoStrike(
            f"no {option_type} of {chain.underlying} {chain.expiry} passes the "
            f"filters (volume ≥ {cfg.min_volume}, OI ≥ {cfg.min_oi}, ≤ "
            f"{cfg.max_strikes_from_atm} strikes from ATM; dropped {dropped})"
        )
    n = len(cands)
    k = np.array([c[1].strike / 100 for c in cands])
    px = np.array([c[2].ltp / 100 for c in cands])
    t = max(float(year_fraction(now_ns, chain.expiry)), 1e-6)
    is_call = np.full(n, option_type == "CE")
    iv = np.array([c[2].iv for c in cands], dtype=float)
    missing = ~np.isfinite(iv) | (iv <= 0)
    if missing.any():
        solved = implied_vol(px, spot / 100, k, t, cfg.risk_free_rate, is_call)
        iv = np.where(missing, solved, iv)
    delta = greeks(
        spot / 100, k, t, cfg.risk_free_rate, np.where(np.isfinite(iv), iv, 0.2), is_call
    ).delta
    finite_iv = iv[np.isfinite(iv)]
    lo, hi = (float(finite_iv.min()), float(finite_iv.max())) if finite_iv.size else (0.0, 0.0)
    liq = np.array([math.log1p(c[2].volume) + math.log1p(c[2].oi) for c in cands])
    best_liq = float(liq.max()) or 1.0
    wsum = (
        cfg.weight_distance
        + cfg.weight_delta
        + cfg.weight_iv_rank
        + cfg.weight_liquidity
        + cfg.weight_spread
    ) or 1.0
    scored: list[StrikeChoice] = []
    for j, (dist, inst, q) in enumerate(cands):
        s_dist = 1 - dist / (cfg.max_strikes_from_atm + 1)
        d = float(delta[j])
        s_delta = max(0.0, 1 - abs(abs(d) - 0.5) / 0.5) if math.isfinite(d) else 0.0
        v = float(iv[j])
        s_iv = 1 - (v - lo) / max(hi - lo, cfg.iv_rank_span) if math.isfinite(v) else 0.0
        s_liq = float(liq[j]) / best_liq
        if q.bid > 0 and q.ask >= q.bid:
            mid = (q.bid + q.ask) / 2
            s_spread = max(0.0, 1 - 100 * (q.ask - q.bid) / mid / cfg.max_spread_pct)
        else:
            s_spread = 0.5
        scores = {
            "distance": s_dist,
            "delta": s_delta,
            "iv_rank": s_iv,
            "liquidity": s_liq,
            "spread": s_spread,
        }
        total = (
            cfg.weight_distance * s_dist
            + cfg.weight_delta * s_delta
            + cfg.weight_iv_rank * s_iv
            + cfg.weight_liquidity * s_liq
            + cfg.weight_spread * s_spread
        ) / wsum
        scored.append(StrikeChoice(inst, q, total, scores, d, v))
    scored.sort(key=lambda c: (-round(c.score, 12), abs(c.option.strike - spot), c.option.strike))
    return scored[0]
