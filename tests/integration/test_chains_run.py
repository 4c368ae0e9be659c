"""Option chains in ``mandi run``: persisted every 30 s with the seed's columns, warm on restart."""

import itertools
import sqlite3
import subprocess
import sys

ARGS = ["--date", "2026-04-13", "--seed", "3", "--status-interval", "0", "--speed", "inf"]


def test_chains_are_persisted_and_reloaded(tmp_path):
    db = str(tmp_path / "c.db")
    p = subprocess.run(
        [sys.executable, "-m", "mandi", "run", "--db", db, "--until", "09:19", *ARGS],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr
    con = sqlite3.connect(db)
    times = [
        r[0]
        for r in con.execute("SELECT DISTINCT timestamp FROM option_chain_snapshots ORDER BY 1")
    ]
    # 09:15:30 … 09:18:30, every 30 s: a chain stamped S holds the ticks before S (none at 09:15)
    assert len(times) == 7
    assert {b - a for a, b in itertools.pairwise(times)} == {30 * 10**9}
    n, with_pct = con.execute(
        "SELECT count(*), count(pct_change_3m) FROM option_chain_snapshots "
        "WHERE underlying='NIFTY' AND timestamp=?",
        (times[-1],),
    ).fetchone()
    assert n > 60 and with_pct > 60  # 3-minute OI windows filled after 3.5 minutes
    assert {r[0] for r in con.execute("SELECT moneyness FROM option_chain_snapshots")} == {
        "ITM",
        "ATM",
        "OTM",
    }
    assert {r[0] for r in con.execute("SELECT exchange FROM exchange_metadata")} == {"NSE", "BSE"}
    con.close()
    p = subprocess.run(
        [sys.executable, "-m", "mandi", "run", "--db", db, "--until", "09:20", *ARGS],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr
    assert "chains warm: 70 stored snapshots" in p.stderr  # 7 times × 10 chains
