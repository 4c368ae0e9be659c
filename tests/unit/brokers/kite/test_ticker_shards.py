"""Kite's limits: 3,000 instruments per connection, 3 connections per API key."""

from __future__ import annotations

import pytest

from mandi.brokers.kite.ticker import KiteTicker
from mandi.core.errors import ConfigError


def test_subscriptions_are_sharded_across_connections_within_kites_limits() -> None:
    t = KiteTicker("ws://unused", "k", "t", max_connections=3, tokens_per_connection=3000)
    t.subscribe(range(1, 2501), "full")
    t.subscribe(range(2501, 7001), "quote")
    shards = [sum(1 for s in t.shard_of.values() if s == i) for i in range(3)]
    assert shards == [3000, 3000, 1000]
    assert t.health.expected == 3
    t.subscribe(range(1, 11), "ltp")  # a mode change keeps each token on its connection
    assert t.modes[5] == "ltp" and sum(1 for s in t.shard_of.values() if s == 0) == 3000
    t.unsubscribe(range(1, 1001))
    t.subscribe(range(9001, 10001), "full")  # freed room is reused
    assert len(t.shard_of) == 7000 and max(t.shard_of.values()) == 2
    with pytest.raises(ConfigError, match="3 connections of 3000 instruments"):
        t.subscribe(range(20_000, 22_001), "full")
