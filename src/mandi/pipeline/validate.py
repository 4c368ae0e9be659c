"""The tick policy: which ticks may reach a candle, the ``ticks`` table and the bus (pure kernel).

Every feed — the simulator, the tickserver client, the broker feeds — hands its ticks to the node,
which runs them through the candle pipeline; both engines (:class:`~mandi.pipeline.seconds.
SecondAggregator`, the reference, and :mod:`mandi.pipeline.fast`, the default) apply these rules
in this order, and the first rule a tick breaks is the one reason it is counted under:

==================== ==============================================================================
reason               the tick is rejected when
==================== ==============================================================================
``bad_price``        the price is not an ``int`` of paise (a float or a string is never rounded or
                     truncated), or is ≤ 0, or ≥ 2**53
``bad_timestamp``    ``ts_event`` is not an ``int`` of ns, or ≤ 0, or ≥ 2**62 (year 2116)
``future_timestamp`` ``ts_event`` is more than ``max_ahead_ms`` ahead of the feed's clock (when
                     the caller passes one): it never moves the watermark
``bad_volume``       the cumulative volume is not an ``int``, < 0, or > ``max_volume``
``bad_field``        last quantity, OI, bid, ask, bid or ask quantity is not an ``int`` in
                     [0, 2**53)
``unknown_token``    the token is not an ``int`` of the instrument master (when a set of known
                     tokens is given)
``price_band``       the price is outside the token's circuit limits (when known), or moved from
                     the token's last accepted price by more than ``price_band_pct`` % of the
                     lower of the two (the same factor up or down: 100 % = ×2 or ÷2) and by
                     more than ``price_band_min_paise``; ``price_band_confirm`` consecutive
                     such ticks that agree with each other are a real move: the last of them is
                     accepted and becomes the reference
``volume_jump``      the cumulative volume rose by more than ``max_volume_step`` since the token's
                     last accepted tick
``volume_decreased`` the cumulative volume went down (stored, not aggregated)
``late``             the tick's second is already confirmed (stored, not aggregated; its quantity
                     reaches the next candle through the cumulative volume)
==================== ==============================================================================

A rejected tick never becomes a baseline: the last accepted price and cumulative volume of its
token are unchanged. The first eight reasons mean the tick's values are not to be trusted: the node
neither stores nor publishes it (:data:`INVALID`). ``late`` and ``volume_decreased`` ticks carry
valid values that arrive out of sequence: they are stored and published, only not aggregated.
Feeds count what cannot even become a tick: a row or packet of the wrong shape as ``malformed``
(:data:`MALFORMED`), a frame that is not a message of their protocol as ``malformed_frame``. The
node counts every reason per feed and shows it in the status line, ``/api/v1/status`` and
``/metrics``.
"""

from __future__ import annotations

from numbers import Integral
from typing import Annotated, Any

import msgspec

MAX_PRICE = 1 << 53  # paise, exclusive: far above any real price, exact as a float
MAX_TS = 1 << 62  # ns, exclusive (year 2116): sums of times stay exact in int64
MAX_FIELD = 1 << 53  # exclusive bound of the other numeric fields (quantities, OI, bid, ask)

#: Rejection reasons of the pipeline, in the order of the fast kernel's counters.
REASONS: tuple[str, ...] = (
    "bad_price",
    "bad_timestamp",
    "bad_volume",
    "unknown_token",
    "volume_decreased",
    "late",
    "future_timestamp",
    "bad_field",
    "price_band",
    "volume_jump",
)
#: Reasons whose tick is neither stored nor published.
INVALID: frozenset[str] = frozenset(REASONS) - {"volume_decreased", "late"}
#: The feed-level reason: a message or row that is not a tick at all.
MALFORMED = "malformed"

_BP = 10_000  # basis points per 1


class TickPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[ticks]``: the parameters of the tick policy (module doc), with defaults that no real
    instrument's ticks break and that stop every hostile value the hardening issue found.

    Parameters
    ----------
    price_band_pct : float
        Largest move from the token's last accepted price, in % of the lower of the two prices
        (0 = no band). 100 % lets a price double or halve between two ticks: the simulator's
        expiry afternoons stay inside it, a ×10 spike, a unit error or a 1-paisa NIFTY do not.
    price_band_min_paise : int
        The band is never narrower than this many paise: near expiry a ₹3 option can trade at
        ₹9 a second later.
    price_band_confirm : int
        Consecutive out-of-band ticks, each within the band of the one before, that make a real
        move (after a gap in the feed): the last of them is accepted and becomes the reference.
    max_volume : int
        Largest plausible cumulative day volume of one instrument, shares.
    max_volume_step : int
        Largest plausible rise of the cumulative volume between two ticks, shares.
    max_ahead_ms : int
        How far ahead of the feed's clock a tick may be stamped (exchange and local clocks
        differ by a little); earlier is governed by the watermark (``late``).
    """

    price_band_pct: Annotated[float, msgspec.Meta(ge=0, le=10_000)] = 100.0
    price_band_min_paise: Annotated[int, msgspec.Meta(ge=0, lt=MAX_PRICE)] = 1_000
    price_band_confirm: Annotated[int, msgspec.Meta(ge=2, le=1_000_000)] = 3
    max_volume: Annotated[int, msgspec.Meta(ge=1, lt=MAX_FIELD)] = 10**11
    max_volume_step: Annotated[int, msgspec.Meta(ge=1, lt=MAX_FIELD)] = 10**10
    max_ahead_ms: Annotated[int, msgspec.Meta(ge=0, le=366 * 86_400_000)] = 5_000

    @property
    def band_bp(self) -> int:
        """``price_band_pct`` in basis points (the kernels compute in integers)."""
        return round(self.price_band_pct * 100)


DEFAULT_POLICY = TickPolicy()


def is_int(x: Any) -> bool:
    """An integer value: ``int`` (``bool`` included) or a NumPy integer, as the fast path's
    integer columns take it."""
    return type(x) is int or isinstance(x, Integral)  # NumPy registers its integers as Integral


def band_allows(ref: int, price: int, band_bp: int, min_paise: int) -> bool:
    """``price`` within the band around ``ref``: ``|price − ref| ≤ max(band·min(price, ref),
    min_paise)`` — a rise to at most ``(1 + band)·ref`` or a fall to at least ``ref / (1 +
    band)``, the same factor both ways — in exact integer arithmetic (the fast kernel computes
    the same expression in int64)."""
    move, low = (price - ref, ref) if price >= ref else (ref - price, price)
    width = (low // _BP) * band_bp + (low % _BP) * band_bp // _BP
    return move <= (width if width > min_paise else min_paise)


def other_fields_ok(*values: Any) -> bool:
    """Last quantity, OI, bid, ask and their quantities: ints in [0, 2**53)."""
    return all(is_int(x) and 0 <= x < MAX_FIELD for x in values)
