"""``mandi chain import`` / ``mandi chain show`` on real NSE files."""

import json
import sqlite3
import subprocess
import sys


def mandi(*args):
    return subprocess.run(
        [sys.executable, "-m", "mandi", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
    )


def test_import_and_show_the_v3_nifty_chain(tmp_path, data_dir):
    db = str(tmp_path / "c.db")
    f = data_dir / "option_chain" / "nse_oc_v3_NIFTY_2026-07-10_1530_exp2026-07-14.json"
    p = mandi("chain", "import", str(f), "--db", db)
    assert p.returncode == 0, p.stderr
    checks = json.loads(
        (data_dir / "option_chain" / "option_chain_derived_checks.json").read_text()
    )["nse_v3_NIFTY_2026-07-10"]
    assert f"PCR(OI) {checks['computed_pcr_oi']:.4f}" in p.stdout
    assert f"max pain {checks['computed_max_pain_strike']}" in p.stdout
    con = sqlite3.connect(db)
    (n,) = con.execute("SELECT count(*) FROM option_chain_snapshots").fetchone()
    assert n == 198
    ce_oi = con.execute(
        "SELECT sum(oi) / 65 FROM option_chain_snapshots WHERE option_type='CE'"
    ).fetchone()[0]
    assert ce_oi == checks["published_sum_CE_OI_contracts"]  # stored in shares, lot 65
    p = mandi("chain", "show", "NIFTY", "--db", db, "--strikes", "3")
    assert p.returncode == 0, p.stderr
    assert "24200 ◆" in p.stdout and "PCR  OI 1.2726" in p.stdout


def test_show_without_data_and_a_broken_file_fail_clearly(tmp_path):
    db = str(tmp_path / "empty.db")
    p = mandi("chain", "show", "NIFTY", "--db", db)
    assert p.returncode == 2 and "no stored chain for NIFTY" in p.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"records": {"timestamp": "x"')
    p = mandi("chain", "import", str(bad), "--db", db)
    assert p.returncode == 2 and "bad.json" in p.stderr
