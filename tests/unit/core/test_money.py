import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mandi.core.money import format_inr, round_to_tick, to_paise


def test_to_paise():
    assert to_paise(1573.7) == 157370
    assert to_paise("2,267.60") == 226760
    assert to_paise(0.05) == 5
    assert to_paise(10) == 1000
    for bad in (math.nan, math.inf, "abc", "-", 10**30, 2e30, "1e26"):  # the last: too large
        with pytest.raises(ValueError, match="rupees"):
            to_paise(bad)


@given(st.integers(-(10**9), 10**9), st.sampled_from([1, 5, 10, 20]))
def test_round_to_tick(paise, tick):
    for mode in ("nearest", "down", "up"):
        r = round_to_tick(paise, tick, mode)
        assert r % tick == 0
        assert abs(r - paise) < tick
    assert round_to_tick(paise, tick, "down") <= paise <= round_to_tick(paise, tick, "up")


def test_round_to_tick_rejects_bad_args():
    with pytest.raises(ValueError):
        round_to_tick(100, 0)
    with pytest.raises(ValueError):
        round_to_tick(100, 5, "sideways")


def test_format_inr_indian_grouping():
    assert format_inr(123456789) == "₹12,34,567.89"
    assert format_inr(-500) == "-₹5.00"
    assert format_inr(99900) == "₹999.00"


def test_limit_prices_are_never_rounded_and_name_the_nearest_valid_prices():
    from mandi.core.money import LimitPriceError, check_limit_price, limit_price_paise

    assert limit_price_paise(100.05, 5) == 10005 and limit_price_paise("24,200", 5) == 2420000
    for price, nearest in (
        (0.001, (5,)),  # would round to 0 paise: a market order
        (100.03, (10000, 10005)),
        (0, (5,)),
        (-2, (5,)),
        (0.0499, (5,)),
    ):
        with pytest.raises(LimitPriceError) as e:
            limit_price_paise(price, 5)
        assert e.value.nearest == nearest, price
        assert "nearest valid prices" in str(e.value)
    with pytest.raises(LimitPriceError):
        limit_price_paise(float("nan"), 5)
    assert check_limit_price(10005, 5) == 10005
    with pytest.raises(LimitPriceError, match=r"₹10\.00 or ₹10\.05"):
        check_limit_price(1003, 5)
    with pytest.raises(LimitPriceError):
        check_limit_price(0, 5)
