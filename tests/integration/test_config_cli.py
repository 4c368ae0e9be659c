"""Settings that used to be accepted silently or crash start-up (#13): ``mandi run`` stops with
exit code 2 and one line naming the key, before it opens anything. (The real command, run
in-process by typer's runner: a subprocess per case would only add interpreter start-ups.)"""

import os

import pytest
from typer.testing import CliRunner

from mandi.cli import app

ARGS = ["--date", "2026-04-13", "--speed", "inf", "--until", "09:15:02", "--no-dashboard"]


@pytest.mark.parametrize(
    ("env", "line"),
    [
        # was: a temporary database, everything lost at exit, exit code 0
        ({"MANDI_STORE__DB": ""}, "mandi: config store.db = '': must name the database file"),
        # was: a long traceback
        (
            {"MANDI_RISK__MAX_DAILY_LOSS_INR": "inf"},
            "mandi: config risk.max_daily_loss_inr = inf: Expected `float` <= 1000000000000.0",
        ),
        (
            {"MANDI_RISK__CAPITAL_INR": "1e30"},
            "mandi: config risk.capital_inr = 1e+30: Expected `float` <= 1000000000000.0",
        ),
        # was: ignored without a word
        (
            {"MANDI_RUN_SPEED": "10"},
            "mandi: config MANDI_RUN_SPEED: names no setting; did you mean MANDI_RUN__SPEED?",
        ),
    ],
)
def test_mandi_run_refuses_the_setting_with_one_line(tmp_path, monkeypatch, env, line):
    for name in list(os.environ):
        if name.startswith("MANDI_"):
            monkeypatch.delenv(name)
    db = tmp_path / "m.db"
    result = CliRunner().invoke(app, ["run", *ARGS], env={"MANDI_STORE__DB": str(db), **env})
    assert result.exit_code == 2, result.output[-2000:]
    (got,) = result.stderr.strip().splitlines()
    assert got.startswith(line)
    assert not db.exists()  # nothing was opened
