"""``--feed replay:PATH`` on a tick CSV: its batches, and a clear error for bad input."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from mandi.core.errors import ConfigError
from mandi.feeds.replay import STEP_NS, ReplayFeed, read_tick_csv, replay_path

T0 = 1_776_051_900_000_000_000  # 2026-04-13 09:15 IST


def write(tmp_path, text: str):
    p = tmp_path / "ticks.csv"
    p.write_text(text)
    return p


def test_a_tick_csv_is_one_batch_with_defaults(tmp_path):
    p = write(tmp_path, f"token,ts_event,price,volume\n7,{T0},1000,5\n8,{T0 + 1},2005,\n")
    b = read_tick_csv(p)
    assert b.token.tolist() == [7, 8]
    assert b.price.tolist() == [1000, 2005]
    assert b.volume.tolist() == [5, 0]  # an empty cell is 0
    assert b.ts_init.tolist() == [T0, T0 + 1]  # no ts_init: the event time
    assert b.tick(0).exchange == "NSE"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("token,price\n1,2\n", "lacks ['ts_event']"),
        (f"token,ts_event,price\n1,{T0},abc\n", "line 2: price = 'abc'"),
    ],
)
def test_a_bad_csv_names_what_is_wrong(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        read_tick_csv(write(tmp_path, text))


def test_a_replay_feed_name_must_be_a_file(tmp_path):
    with pytest.raises(ConfigError, match="is not a file"):
        replay_path(f"replay:{tmp_path / 'missing.db'}")
    with pytest.raises(ConfigError, match="holds no ticks"):
        ReplayFeed(write(tmp_path, "token,ts_event,price\n"), math.inf)


def test_paced_batches_are_quarter_seconds_of_exchange_time_in_order(tmp_path):
    times = [T0 + k * 100_000_000 for k in range(12)]  # 1.2 s of ticks, 100 ms apart
    rows = "".join(f"{k % 3 + 1},{t},{1000 + k}\n" for k, t in enumerate(times))
    feed = ReplayFeed(write(tmp_path, "token,ts_event,price\n" + rows), 1e6)
    assert sorted(i.token for i in feed.instruments()) == [1, 2, 3]

    async def collect():
        return [b async for b in feed.batches()]

    batches = asyncio.run(collect())
    assert np.concatenate([b.ts_event for b in batches]).tolist() == times
    for b in batches:
        assert len(set((b.ts_event // STEP_NS).tolist())) == 1  # one step each
    assert [len(b) for b in batches] == [3, 2, 3, 2, 2]
