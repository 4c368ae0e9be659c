"""The scored strike selector on a Black-Scholes chain."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from mandi.execution.config import StrikeConfig
from mandi.execution.strikes import NoStrike, StrikeChoice, choose_expiry, select_strike
from mandi.model.market import ChainRow, ChainSnapshot, OptionQuote
from mandi.options import bs_price, year_fraction

from .kit import EXPIRY, at, make_master, option_token

NOW = at(11, 0)
CFG = StrikeConfig()


def chain(
    spot: float = 24210.0,
    *,
    vol: float = 0.13,
    volume: int = 50_000,
    oi: int = 200_000,
    iv: bool = True,
    thin: tuple[int, ...] = (),
) -> ChainSnapshot:
    t = float(year_fraction(NOW, EXPIRY))
    rows = []
    for k in range(23800, 24650, 50):
        quotes = []
        for kind in ("CE", "PE"):
            px = float(bs_price(spot, k, t, 0.065, vol, kind == "CE"))
            p = max(5, round(px * 20) * 5)
            q = OptionQuote(
                p,
                p - 10,
                p + 10,
                0 if k in thin else volume,
                oi,
                token=option_token(k, kind),
                iv=vol if iv else math.nan,
            )
            quotes.append(q)
        rows.append(ChainRow(k * 100, *quotes))
    return ChainSnapshot("NIFTY", "NSE", EXPIRY, NOW, round(spot * 100), tuple(rows), 65)


def test_picks_a_near_the_money_call_for_a_bullish_signal():
    master = make_master()
    got = select_strike(chain(), "CE", NOW, CFG, master)
    assert isinstance(got, StrikeChoice)
    assert got.option.option_type == "CE" and got.option.expiry == EXPIRY
    assert abs(got.option.strike / 100 - 24210) <= 50  # ATM or next to it
    assert 0.35 < got.delta < 0.65
    assert set(got.scores) == {"distance", "delta", "iv_rank", "liquidity", "spread"}
    put = select_strike(chain(), "PE", NOW, CFG, master)
    assert isinstance(put, StrikeChoice) and put.option.option_type == "PE" and put.delta < 0


def test_liquidity_and_distance_filters():
    master = make_master()
    # ATM strikes illiquid: the choice moves away but never beyond 3 strikes from ATM
    got = select_strike(chain(thin=(24200, 24250)), "CE", NOW, CFG, master)
    assert isinstance(got, StrikeChoice) and got.option.strike // 100 not in (24200, 24250)
    assert abs(got.option.strike / 100 - 24200) <= 150
    none = select_strike(chain(volume=10), "CE", NOW, CFG, master)
    assert isinstance(none, NoStrike) and "volume" in none.reason
    tight = StrikeConfig(max_strikes_from_atm=0)
    only_atm = select_strike(chain(), "CE", NOW, tight, master)
    assert isinstance(only_atm, StrikeChoice) and only_atm.option.strike == 2_420_000


def test_missing_iv_is_implied_from_the_price():
    master = make_master()
    a = select_strike(chain(iv=True), "CE", NOW, CFG, master)
    b = select_strike(chain(iv=False), "CE", NOW, CFG, master)
    assert isinstance(a, StrikeChoice) and isinstance(b, StrikeChoice)
    assert a.option.token == b.option.token
    assert np.isclose(b.iv, 0.13, atol=0.01)


def test_weights_change_the_choice():
    master = make_master()
    only_delta = StrikeConfig(
        weight_distance=0, weight_iv_rank=0, weight_liquidity=0, weight_spread=0, weight_delta=1
    )
    got = select_strike(chain(spot=24225), "CE", NOW, only_delta, master)
    assert isinstance(got, StrikeChoice) and abs(abs(got.delta) - 0.5) < 0.1


def test_expiry_choice_skips_the_contract_expiring_today():
    master = make_master()
    assert choose_expiry(master, "NIFTY", NOW, CFG) == EXPIRY
    on_expiry_day = at(10, 0, day=EXPIRY)
    assert choose_expiry(master, "NIFTY", on_expiry_day, CFG) == dt.date(2026, 4, 28)
    monthly = StrikeConfig(expiry="monthly")
    assert choose_expiry(master, "NIFTY", NOW, monthly) == dt.date(2026, 4, 28)
    assert choose_expiry(master, "BANKNIFTY", NOW, CFG) is None
