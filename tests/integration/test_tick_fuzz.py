"""Fuzzing the tick path (#13.9): hypothesis drives random and hostile tickserver messages through
the real feed parser (``TickserverFeed``) → the node (``MarketNode.handle_batch``: the fast
pipeline, the tick policy) → the SQLite writer, and checks that

* the node stays up: nothing raises, the writer commits everything without an error;
* every valid tick is stored (exactly those, in order), and none of the hostile ones;
* no invalid value reaches a candle: every stored candle's prices are prices of valid ticks of
  its token and second, its volume their cumulative volume's increase;
* the rejects counted per feed and reason equal what was sent: each hostile row or frame is
  built to break exactly one rule of the policy.

Valid rows follow a small price walk and a rising volume per token, one second per message, so
that the policy has no reason to refuse them; hostile ones are placed so that the price band's
confirmation rule can never take them for a real move (an in-band tick of the token comes
before them, and out-of-band ones alternate up and down). ``FUZZ_EXAMPLES=600`` runs longer.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter, defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mandi.config import load_config
from mandi.core.calendar import parse_ist
from mandi.feeds.ws import TickserverFeed
from mandi.model.batches import T_PRICE, T_TOKEN, T_TS, T_VOLUME
from mandi.model.instruments import Index, Option
from mandi.services.node import MarketNode
from mandi.stores.ticks import read_ticks

NS = 10**9
T0 = parse_ist("2026-04-13 09:15:00")
TOKENS = (256265, 1001, 1002)
INSTRUMENTS = [
    Index(256265, "NSE", "NIFTY 50", segment="INDICES"),
    Option(1001, "NFO", "NIFTY26APR24200CE", underlying="NIFTY", strike=2_420_000, lot_size=65),
    Option(1002, "NFO", "NIFTY26APR24200PE", underlying="NIFTY", strike=2_420_000, lot_size=65),
]
START = {256265: 2_420_000, 1001: 12_000, 1002: 9_000}
FIELDS = ("token", "exchange", "ts", "price", "volume", "last_qty", "oi", "bid", "ask", "bq", "aq")

# a value that is not an int of the right range, per kind of field (JSON can carry all of them)
NOT_INT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=6),
    st.none(),
    st.just([1]),
    st.just({"p": 1}),
    st.integers(2**63, 2**70),
    st.integers(-(2**70), -1),
)

GARBAGE = st.one_of(
    st.binary(max_size=40).filter(lambda b: b"{" not in b),
    st.text(max_size=40).filter(lambda s: not s.strip().startswith("{")),
    st.just("[1, 2, 3]"),
    st.just('{"type": "ticks", "data": 7}'),
    st.just('{"type": "ticks", "data": [1, 2], "ts": 5, "extra": '),
    st.sampled_from(['{"type": "zzz"}', '{"type": 5}', '{"data": []}', "null", "7"]),
)


@st.composite
def hostile_row(draw: Any, row: list[Any], ts: int, up: bool) -> tuple[Any, str]:
    """One bad row derived from a valid one, and the reason the policy must give (``up``: an
    out-of-band price goes up, else down — two in a row never agree, so never confirm)."""
    kind = draw(
        st.sampled_from(
            [
                "malformed",
                "bad_price",
                "bad_timestamp",
                "future_timestamp",
                "bad_volume",
                "bad_field",
                "unknown_token",
                "price_band",
                "volume_jump",
            ]
        )
    )
    r = list(row)
    if kind == "malformed":
        return draw(
            st.one_of(
                st.none(),
                st.integers(),
                st.lists(st.integers(), max_size=10),
                st.just(r[:5]),
                st.just([r[0], 7, *r[2:]]),  # the exchange is no string
            )
        ), kind
    if kind == "bad_price":
        r[3] = draw(st.one_of(NOT_INT, st.integers(-(2**40), 0), st.just(2**53)))
    elif kind == "bad_timestamp":
        r[2] = draw(st.one_of(NOT_INT, st.just(0), st.just(2**62)))
    elif kind == "future_timestamp":
        r[2] = ts + draw(st.integers(6 * NS, 400 * 86_400 * NS))
    elif kind == "bad_volume":
        r[4] = draw(st.one_of(NOT_INT, st.integers(10**11 + 1, 2**62)))
    elif kind == "bad_field":
        r[draw(st.integers(5, 10))] = draw(st.one_of(NOT_INT, st.just(2**53)))
    elif kind == "unknown_token":
        r[0] = draw(st.one_of(st.integers(2000, 200_000), st.text(max_size=4), st.none()))
    elif kind == "price_band":
        r[3] = draw(st.sampled_from([r[3] * 1000, 2**52])) if up else r[3] // 1000 + 1
    else:  # volume_jump: below the largest volume, far above the largest step
        r[4] = r[4] + draw(st.integers(10**10 + 1, 5 * 10**10))
    return r, kind


@st.composite
def sessions(draw: Any) -> tuple[list[Any], list[list[Any]], Counter[str]]:
    """Frames to send, the valid rows among them (in order), and the expected rejects."""
    frames: list[Any] = []
    valid: list[list[Any]] = []
    expected: Counter[str] = Counter()
    price, volume = dict(START), dict.fromkeys(TOKENS, 1000)
    for k in range(draw(st.integers(1, 8))):
        clock = T0 + k * NS
        rows: list[Any] = []
        mine: dict[int, list[Any]] = {}
        for token in TOKENS:  # every token ticks each second: an in-band reference
            price[token] += draw(st.integers(-200, 200)) * 5
            volume[token] += draw(st.integers(0, 5000))
            ts = clock + draw(st.integers(0, 900_000_000))
            r = [token, "NSE", ts, price[token], volume[token], 1, 650, 0, 0, 0, 0]
            rows.append(r)
            valid.append(r)
            mine[token] = r
        bad = draw(st.lists(st.tuples(st.sampled_from(TOKENS), st.integers(0, 99)), max_size=4))
        banded: Counter[int] = Counter()
        for token, where in bad:
            at = next(i for i, r in enumerate(rows) if r is mine[token])
            row, reason = draw(hostile_row(rows[at], clock, banded[token] % 2 == 0))
            banded[token] += reason == "price_band"
            # after the token's valid tick (its band's reference), anywhere later
            rows.insert(at + 1 + where % (len(rows) - at), row)
            expected[reason] += 1
        frames.append({"type": "ticks", "ts": clock, "data": rows})
        for g in draw(st.lists(GARBAGE, max_size=2)):
            frames.append(g)
            expected["malformed_frame"] += 1
    return frames, valid, expected


def encode(frame: Any) -> str | bytes:
    return frame if isinstance(frame, str | bytes) else json.dumps(frame)


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sessions())
def test_hostile_messages_never_reach_a_candle_or_the_store(tmp_path_factory: Any, s: Any) -> None:
    frames, valid, expected = s
    db = str(tmp_path_factory.mktemp("fuzz") / "f.db")
    settings = {"store.db": db, "run.feed": "ws://fuzz", "store.second_candles": "sqlite"}
    cfg = load_config(env={}, overrides=settings)
    node = MarketNode(cfg)
    feed = TickserverFeed(cfg.run.feed, node.ctx)
    feed._instruments = INSTRUMENTS
    node.ctx.feed = feed
    node.ctx.add_instruments(feed.instruments())
    node.writer.start()
    try:
        for f in frames:
            batch = feed._parse(encode(f))  # the feed → the node, as TickserverFeed.batches does
            if batch is not None:
                node.handle_batch(batch)
        node.pipeline.flush()  # confirm the open seconds too
        node._queue_rows()
    finally:
        node.writer.stop()
    assert node.writer.stats.errors == 0 and node.bus.handler_errors == 0
    got = node.rejections().get(cfg.run.feed, {})
    assert got == dict(expected)  # rejects equal what was sent, reason by reason

    con = sqlite3.connect(db)
    b = read_ticks(con)  # tick blocks (and the seed's rows), in arrival order
    ticks = list(zip(*b.data[[T_TS, T_TOKEN, T_PRICE, T_VOLUME]].tolist(), strict=True))
    candles = con.execute(
        "SELECT token, bucket, open, high, low, close, volume, ticks FROM candles "
        "WHERE timeframe = 1 ORDER BY bucket, token"
    ).fetchall()
    con.close()
    assert ticks == [(r[2], r[0], r[3], r[4]) for r in valid]  # every valid tick, nothing else
    by_second: dict[tuple[int, int], list[list[Any]]] = defaultdict(list)
    for r in valid:
        by_second[(r[0], r[2] - r[2] % NS)].append(r)
    assert len(candles) == len(by_second)
    last_volume = {t: None for t in TOKENS}
    for token, bucket, o, h, lo, c, v, n in candles:
        rs = by_second[(token, bucket)]
        prices = [r[3] for r in rs]
        assert (o, c, h, lo, n) == (prices[0], prices[-1], max(prices), min(prices), len(rs))
        before = last_volume[token]
        assert v == rs[-1][4] - (rs[0][4] - 1 if before is None else before)
        last_volume[token] = rs[-1][4]
