"""mandi.stores.clickhouse against real ClickHouse: chdb in-process (no mocks).

chdb holds one data directory per process, so every test closes what it opens; ``mandi run``
writes through chdb in a subprocess, read here after it exits.
"""

import datetime as dt
import logging
import os
import sqlite3
import subprocess
import sys
import time

import pytest

pytest.importorskip("chdb")

from mandi.config import load_config
from mandi.core.errors import ConfigError, StoreError
from mandi.model.market import Candle, ChainRow, ChainSnapshot, OptionQuote
from mandi.services.clickhouse import open_clickhouse_sink
from mandi.stores.chains import snapshot_rows
from mandi.stores.clickhouse import (
    SETTING,
    TABLES,
    ClickHouseStore,
    ClickHouseWriter,
    parse_url,
)
from mandi.stores.sqlite import candle_row, load_candles
from mandi.stores.ticks import read_ticks

#: the seed's ``ticks`` columns, as ClickHouse stores them
SEED_TICK_COLUMNS = ("ts_event", "token", "price", "volume", "oi", "bid", "ask")

ARGS = ["--date", "2026-04-13", "--seed", "11", "--status-interval", "1", "--no-dashboard"]
T0 = 1_776_051_900 * 10**9  # 2026-04-13 09:15 IST
MIN = 60 * 10**9


def mandi(*args, env=None, timeout=240):
    return subprocess.run(
        [sys.executable, "-m", "mandi", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def store(tmp_path):
    s = ClickHouseStore.open(f"chdb://{tmp_path}/ch")
    yield s
    s.close()


def candles(n=5, tf=60, tokens=(256265, 260105), volume=1000):
    return [
        Candle(tok, "NSE", tf, T0 + i * tf * 10**9, 100_00, 101_00, 99_00, 100_50, volume + i, 0, 7)
        for i in range(n)
        for tok in tokens
    ]


def test_schema_has_the_seed_tables_with_replacing_engines(store):
    engines = dict(
        store.rows(f"SELECT name, engine FROM system.tables WHERE database = '{store.database}'")
    )
    for name in ("market_data", "historical_data", "options_data", "trading_signals", "positions"):
        assert engines[name] == "ReplacingMergeTree", name
    assert engines["performance_metrics"] == "MergeTree"
    assert set(engines) == set(TABLES)
    ((key,),) = store.rows(
        "SELECT sorting_key FROM system.tables WHERE database = 'mandi' AND name = 'market_data'"
    )
    assert key == "timeframe, token, bucket"
    store.create_schema()  # idempotent


def test_candles_round_trip_in_bucket_token_order(store):
    cs = candles()
    assert store.insert_candles(reversed(cs)) == len(cs)
    assert store.load_candles(60) == sorted(cs, key=lambda c: (c.bucket, c.token))
    assert store.load_candles(60, tokens=[260105]) == [c for c in cs if c.token == 260105]
    assert store.load_candles(60, T0 + MIN, T0 + 3 * MIN) == [
        c for c in cs if T0 + MIN <= c.bucket < T0 + 3 * MIN
    ]
    assert store.load_candles(120) == []
    with pytest.raises(StoreError):
        store.load_candles(60, table="ticks")


def test_replayed_and_restarted_writes_never_duplicate_a_candle(tmp_path):
    url = f"chdb://{tmp_path}/ch"
    cs = candles()
    w = ClickHouseWriter(url, flush_interval=0.05).start()
    w.put("market_data", [candle_row(c) for c in cs])
    w.put("market_data", [candle_row(c) for c in cs[:4]])  # a replay within the run
    assert w.wait_idle(30)
    w.stop()
    assert w.stats.rows["market_data"] == len(cs) + 4 and w.stats.errors == 0
    # a restart: a new writer re-sends, one candle corrected (the latest write wins)
    fixed = Candle(*candle_row(cs[0])[:8], 999_999, 0, 7)
    w2 = ClickHouseWriter(url, flush_interval=0.05).start()
    w2.put("market_data", [candle_row(fixed), *map(candle_row, cs[1:])])
    w2.stop()
    s = ClickHouseStore.open(url)
    try:
        got = s.load_candles(60)
        assert len(got) == len(cs)
        assert got == sorted([fixed, *cs[1:]], key=lambda c: (c.bucket, c.token))
        st = s.stats()["tables"]["market_data"]
        # each insert is collapsed as it is written (optimize_on_insert); the two inserts' parts
        # still hold both copies until a merge
        assert st["rows"] == len(cs) and st["stored_rows"] == 2 * len(cs)
        s.optimize("market_data")  # merged on disk: the duplicates are gone for good
        assert s.stats()["tables"]["market_data"]["stored_rows"] == len(cs)
        assert s.load_candles(60) == got
    finally:
        s.close()


def test_option_chain_snapshots_dedupe_by_strike_and_side(store):
    q = OptionQuote(ltp=120_00, oi=5_000, token=1, symbol="NIFTY26APR24200CE", iv=0.14)
    snap = ChainSnapshot(
        "NIFTY",
        "NFO",
        dt.date(2026, 4, 28),
        T0,
        24_201_15,
        (ChainRow(24_200_00, q, OptionQuote(ltp=95_00, token=2)), ChainRow(24_300_00, q, None)),
        lot_size=75,
        source="sim",
    )
    rows = snapshot_rows(snap, None, T0)
    store.insert_rows("options_data", rows)
    store.insert_rows("options_data", rows)
    got = store.rows(
        "SELECT strike, option_type, moneyness, iv, pct_change_3m FROM mandi.options_data FINAL "
        "ORDER BY strike, option_type"
    )
    assert got == [
        (24_200_00, "CE", "ITM", 0.14, None),
        (24_200_00, "PE", "OTM", None, None),
        (24_300_00, "CE", "OTM", 0.14, None),
    ]


def test_cleanup_deletes_only_rows_older_than_the_cutoff(store):
    old = [Candle(1, "NSE", 60, T0 - 40 * 86_400 * 10**9, 1, 1, 1, 1)]
    new = candles(2)
    store.insert_candles(old + new)
    store.insert_rows(
        "ticks", [(T0 - 40 * 86_400 * 10**9, 1, 5, 0, 0, 0, 0), (T0, 1, 5, 0, 0, 0, 0)]
    )
    deleted = store.cleanup(30, now_ns=T0 + MIN)
    assert deleted["market_data"] == 1 and deleted["ticks"] == 1 and deleted["options_data"] == 0
    assert store.load_candles(60) == sorted(new, key=lambda c: (c.bucket, c.token))
    st = store.stats()["tables"]
    assert st["ticks"] == {"rows": 1, "stored_rows": 1, "first_ns": T0, "last_ns": T0}
    assert store.cleanup(30, now_ns=T0 + MIN)["market_data"] == 0
    with pytest.raises(StoreError):
        store.cleanup(-1)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("ftp://host/x", "scheme must be"),
        ("chdb://", "needs a directory"),
        ("http://bob:hunter2@/mandi", "no host"),
        ("http://bob:hunter2@localhost:8123/ma-ndi", "not a plain identifier"),
        ("http://localhost:notaport/", "not a URL"),
    ],
)
def test_a_bad_url_is_a_config_error_naming_the_setting(url, reason):
    with pytest.raises(ConfigError) as e:
        parse_url(url)
    assert e.value.key == SETTING == "store.clickhouse_url"
    assert reason in str(e.value) and "hunter2" not in str(e.value)
    cfg = load_config(env={}, overrides={"store.clickhouse_url": url})
    with pytest.raises(ConfigError, match=r"store\.clickhouse_url"):
        open_clickhouse_sink(cfg)


def test_urls_parse_to_targets_and_stay_secret():
    t = parse_url("https://ann:p%40ss@ch.example:9440/md", env={})
    assert (t.kind, t.host, t.port, t.secure, t.username, t.password, t.database) == (
        "http",
        "ch.example",
        9440,
        True,
        "ann",
        "p@ss",
        "md",
    )
    assert "p@ss" not in t.safe() and "p@ss" not in repr(t)
    t = parse_url("http://10.0.0.5", env={"MANDI_CLICKHOUSE_PASSWORD": "s3"})
    assert (t.port, t.database, t.password) == (8123, "mandi", "s3")
    t = parse_url("chdb:///var/lib/mandi-ch?database=md")
    assert (t.kind, t.path, t.database) == ("chdb", "/var/lib/mandi-ch", "md")
    assert open_clickhouse_sink(load_config(env={})) is None  # empty = off


def test_an_unreachable_server_is_counted_and_logged_without_the_password(caplog):
    pytest.importorskip("clickhouse_connect")
    w = ClickHouseWriter("http://bob:hunter2@127.0.0.1:9/mandi", flush_interval=0.01)
    w.stop_retry_s = 0.5
    with caplog.at_level(logging.ERROR, logger="mandi.stores.clickhouse"):
        w.start()
        assert w.put("market_data", [candle_row(c) for c in candles(2)])
        w.stop(timeout=30)
    assert w.stats.errors >= 1 and not w.stats.connected
    assert w.stats.given_up["market_data"] == 4 and w.pending_rows == 0
    assert w.not_stored() == 4 and w.stats.failing
    assert "127.0.0.1:9" in caplog.text and "hunter2" not in caplog.text
    assert "bob:***@" in caplog.text


def test_rows_clickhouse_cannot_hold_are_handed_back_and_the_rest_inserted(tmp_path):
    url = f"chdb://{tmp_path}/ch"
    cs = candles()
    rows = [candle_row(c) for c in cs]
    bad = (*rows[0][:4], 2**64, *rows[0][5:])  # an open price beyond Int64
    rejected = []
    w = ClickHouseWriter(url, flush_interval=0.05, on_reject=rejected.extend).start()
    w.put("market_data", [*rows[:3], bad, *rows[3:]])
    assert w.wait_idle(30)
    w.stop()
    assert [(r.target, r.row) for r in rejected] == [("market_data", bad)]
    assert "cannot hold" in rejected[0].reason
    assert w.stats.quarantined["market_data"] == 1 and w.stats.rows["market_data"] == len(rows)
    assert w.not_stored() == 0 and w.stats.failures == 0
    s = ClickHouseStore.open(url)
    try:
        assert s.load_candles(60) == sorted(cs, key=lambda c: (c.bucket, c.token))
    finally:
        s.close()


def test_the_writer_drops_and_counts_beyond_max_pending_rows(tmp_path):
    w = ClickHouseWriter(f"chdb://{tmp_path}/ch", max_pending_rows=3)  # not started: no drain
    assert w.put("market_data", [candle_row(c) for c in candles(1)])
    assert not w.put("market_data", [candle_row(c) for c in candles(1)])
    assert w.stats.dropped["market_data"] == 2 and w.pending_rows == 2
    with pytest.raises(StoreError):
        w.put("nope", [(1,)])


def test_mandi_run_stores_the_same_candles_in_clickhouse_as_in_sqlite(tmp_path):
    db, ch = str(tmp_path / "run.db"), f"chdb://{tmp_path}/ch"
    env = {
        "MANDI_STORE__CLICKHOUSE_URL": ch,
        "MANDI_STORE__CLICKHOUSE_TICKS": "true",
        "MANDI_INDICATORS__SPECS": '["SMA_2", "EMA_2"]',  # values from the second minute on
        "MANDI_STORE__SECOND_CANDLES": "sqlite",  # 1 s candles compared too (memory by default)
        # the history backfill writes earlier sessions to SQLite only (ClickHouse gets the feed's)
        "MANDI_HISTORY__SESSIONS": "0",
    }
    p = mandi("run", "--db", db, "--speed", "inf", "--until", "09:18", *ARGS, env=env)
    assert p.returncode == 0, p.stderr
    assert "ClickHouse (chdb://" in p.stderr and "0 errors" in p.stderr

    def compare(written_after_ns):
        con = sqlite3.connect(db)
        s = ClickHouseStore.open(ch)
        try:
            tfs = [tf for (tf,) in con.execute("SELECT DISTINCT timeframe FROM candles")]
            assert 1 in tfs and 60 in tfs
            n = 0
            for tf in tfs:
                want = load_candles(con, tf)
                assert s.load_candles(tf) == want, tf
                n += len(want)
            st = s.stats()["tables"]
            assert st["market_data"]["rows"] == n > 10_000
            assert st["market_data"]["stored_rows"] >= n
            # every row read back is the latest write: after a replay, the replay's (whether or
            # not ClickHouse has merged the older parts away yet; merges run when they like)
            (oldest,) = s.rows("SELECT min(version) FROM mandi.market_data FINAL")[0]
            assert oldest >= written_after_ns
            values = con.execute(
                "SELECT token, exchange, timeframe, bucket, name, value FROM indicator_values "
                "ORDER BY bucket, token, name"
            ).fetchall()
            got = [
                (v.token, v.exchange, v.timeframe, v.bucket, v.name, v.value)
                for tf in sorted({r[2] for r in values})
                for v in s.load_indicator_values(tf)
            ]
            assert values and sorted(got) == sorted(values)
            b = read_ticks(con)  # tick blocks (and the seed's rows)
            ticks = set(zip(*(getattr(b, f).tolist() for f in SEED_TICK_COLUMNS), strict=True))
            ch_ticks = s.rows(
                "SELECT ts_event, token, price, volume, oi, bid, ask FROM mandi.ticks FINAL"
            )
            assert len(ticks) > 10_000 and set(ch_ticks) == ticks and len(ch_ticks) == len(ticks)
        finally:
            s.close()
            con.close()

    compare(written_after_ns=0)
    # the whole day replayed from its start into the same stores: nothing shows twice
    env["MANDI_RUN__RESUME"] = "false"
    replay_started = time.time_ns()
    p = mandi("run", "--db", db, "--speed", "inf", "--until", "09:18", *ARGS, env=env)
    assert p.returncode == 0, p.stderr
    compare(written_after_ns=replay_started)


def test_mandi_run_with_a_bad_clickhouse_url_stops_with_one_line(tmp_path):
    env = {"MANDI_STORE__CLICKHOUSE_URL": "http://bob:hunter2@:8123/x"}
    p = mandi("run", "--db", str(tmp_path / "x.db"), "--until", "09:16", *ARGS, env=env)
    assert p.returncode == 2
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("mandi: config store.clickhouse_url = ") and "no host" in last
    assert "hunter2" not in p.stderr


def test_the_core_imports_and_runs_without_the_clickhouse_drivers(tmp_path):
    code = (
        "import sys; sys.modules['chdb'] = sys.modules['clickhouse_connect'] = None\n"
        "import mandi.services.node, mandi.services.clickhouse as c\n"
        "from mandi.config import load_config\n"
        "assert c.open_clickhouse_sink(load_config(env={})) is None\n"
        "try:\n"
        "    c.open_clickhouse_sink(load_config(env={}, overrides={'store.clickhouse_url': "
        f"'chdb://{tmp_path}/x'}}))\n"
        "except Exception as e:\n"
        "    print(e)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "store.clickhouse_url" in p.stdout and "pip install 'mandi[clickhouse]'" in p.stdout
