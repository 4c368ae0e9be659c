"""The kernel's stop emulation (brokers without native stops) follows the fill simulator's rule."""

from __future__ import annotations

import pytest

from mandi.execution.config import MatchingConfig
from mandi.execution.matching import FillSimulator, MarketPrint
from mandi.execution.stops import PendingStop, StopEmulator
from mandi.model.orders import OrderType, Side

T0 = 10**12


def test_emulated_stops_fire_on_the_same_prices_as_the_simulator():
    prices = [10_000, 9_800, 9_650, 9_500, 9_700, 10_400, 10_520, 10_100]
    for side, trigger in ((Side.SELL, 9_650), (Side.BUY, 10_500), (Side.SELL, 9_400)):
        em = StopEmulator()
        em.add(PendingStop("s", 1, side, OrderType.SL_M, trigger, 0, T0), last=10_000)
        fs = FillSimulator(MatchingConfig(slippage_ticks=0))
        fs.add("s", 1, side, 1, accepted_ns=T0, order_type=OrderType.SL_M,
               trigger_price=trigger, reference_price=10_000)  # fmt: skip
        fired_at = filled_at = None
        for k, p in enumerate(prices, start=1):
            fired, _ = em.on_price(1, p, T0 + k)
            if fired and fired_at is None:
                fired_at = k
            if fs.on_print(1, MarketPrint(T0 + k, p)) and filled_at is None:
                filled_at = k
        assert fired_at == filled_at, (side, trigger)


def test_oco_partner_is_dropped_and_wrong_side_refused():
    em = StopEmulator()
    em.add(PendingStop("stop", 1, Side.SELL, OrderType.SL_M, 9_500, 0, T0, "g"), last=10_000)
    em.add(PendingStop("tgt", 1, Side.SELL, OrderType.LIMIT, 0, 10_500, T0, "g"), last=10_000)
    assert em.on_price(1, 10_400, T0) == ([], [])  # not after acceptance
    fired, dropped = em.on_price(1, 10_510, T0 + 1)
    assert [f.order_id for f in fired] == ["tgt"] and dropped == ["stop"] and len(em) == 0
    with pytest.raises(ValueError, match="wrong side"):
        em.add(PendingStop("x", 1, Side.BUY, OrderType.SL, 9_900, 9_950, T0), last=10_000)
