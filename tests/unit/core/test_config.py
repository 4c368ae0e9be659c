import pytest

from mandi.config import load_config
from mandi.core.errors import ConfigError


def test_defaults_file_env_and_overrides(tmp_path):
    f = tmp_path / "mandi.toml"
    f.write_text('[run]\nspeed = 5\nport = 9000\n[store]\ndb = "x.db"\n')
    cfg = load_config(str(f), env={"MANDI_RUN__PORT": "9100"}, overrides={"store.db": "y.db"})
    assert cfg.run.speed == 5 and cfg.run.port == 9100 and cfg.store.db == "y.db"
    assert cfg.pipeline.timeframes == (60, 120, 180, 300)


@pytest.mark.parametrize(
    ("env", "key", "value"),
    [
        ({"MANDI_RUN__SPEED": "fast"}, "run.speed", "fast"),
        ({"MANDI_RUN__SPEED": "-2"}, "run.speed", "-2"),
        ({"MANDI_RUN__MODE": "yolo"}, "run.mode", "yolo"),
        ({"MANDI_RUN__BOGUS": "1"}, "run.bogus", "1"),
        ({"MANDI_PIPELINE__TIMEFRAMES": "[60, 0]"}, "pipeline.timeframes[1]", "0"),
        ({"MANDI_SIM__DATE": "2026-13-01"}, "sim.date", "2026-13-01"),
    ],
)
def test_bad_values_name_the_key_and_the_value(env, key, value):
    with pytest.raises(ConfigError) as e:
        load_config(env=env)
    assert e.value.key == key
    assert value in str(e.value)


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\n")
    with pytest.raises(ConfigError, match="TOML"):
        load_config(str(bad))


# --- the hardening issue (#13): settings that used to be accepted silently -----------------------


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"MANDI_STORE__DB": ""}, "store.db"),  # was: a temporary database, exit 0
        ({"MANDI_STORE__DB": "   "}, "store.db"),
        ({"MANDI_SERVICES__STATE_DIR": ""}, "services.state_dir"),
    ],
)
def test_an_empty_path_is_an_error(env, key):
    with pytest.raises(ConfigError) as e:
        load_config(env=env)
    assert e.value.key == key and "must name" in str(e.value)
    with pytest.raises(ConfigError):
        load_config(overrides={key: ""})  # the same from a flag (--db "")


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("risk.max_daily_loss_inr", "inf"),  # was: a long traceback at start-up
        ("risk.capital_inr", "1e30"),
        ("risk.capital_inr", "nan"),
        ("risk.max_order_value_inr", "-inf"),
        ("trading.charges.per_order_inr", "inf"),
        ("backtest.cash_inr", "1e13"),
        ("backtest.commission_inr", "inf"),
    ],
)
def test_non_finite_or_absurd_money_names_the_key(key, raw):
    with pytest.raises(ConfigError) as e:
        load_config(env={"MANDI_" + key.upper().replace(".", "__"): raw})
    assert e.value.key == key
    assert len(str(e.value).splitlines()) == 1
    cfg = load_config(env={"MANDI_" + key.upper().replace(".", "__"): "1e12"})  # the ceiling
    assert cfg is not None


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("MANDI_RUN_SPEED", "MANDI_RUN__SPEED"),  # one underscore: was ignored without a word
        ("MANDI_STORE_DB", "MANDI_STORE__DB"),
        ("MANDI_TRADING_STRIKES__MIN_OI", "MANDI_TRADING__STRIKES__MIN_OI"),
        ("MANDI_CLICKHOUSE_PASSWROD", "MANDI_CLICKHOUSE_PASSWORD"),
        ("MANDI_SPEED", None),
    ],
)
def test_a_mandi_variable_that_names_no_setting_is_an_error(name, hint):
    with pytest.raises(ConfigError) as e:
        load_config(env={name: "s3cret"})
    text = str(e.value)
    assert len(text.splitlines()) == 1 and "s3cret" not in text  # may be a misspelt secret
    if hint is not None:
        assert e.value.key == name and f"did you mean {hint}?" in text


def test_an_unknown_key_of_a_section_names_the_closest_key():
    with pytest.raises(ConfigError) as e:
        load_config(env={"MANDI_RISK__MAX_DAILY_LOS_INR": "5"})
    assert e.value.key == "risk.max_daily_los_inr"
    assert "unknown key (did you mean risk.max_daily_loss_inr?)" in str(e.value)


def test_variables_mandi_reads_that_are_not_settings_are_fine():
    env = {
        "MANDI_REDIS_URL": "redis://127.0.0.1:1/0",
        "MANDI_CLICKHOUSE_PASSWORD": "x",
        "MANDI_GATEWAY_COMMAND_TIMEOUT_S": "3",
        "MANDI_BENCH_QUICK": "1",
        "MANDIR": "not ours",
    }
    assert load_config(env=env).store.db == "mandi.db"


def test_every_setting_has_an_environment_variable():
    from mandi.config import env_name, setting_keys

    keys = setting_keys()
    assert {"run.speed", "ticks.max_ahead_ms", "trading.strikes.min_oi"} <= set(keys)
    cfg = load_config(env={env_name("ticks.price_band_pct"): "12.5"})
    assert cfg.ticks.price_band_pct == 12.5 and cfg.ticks.band_bp == 1250


def test_a_wildcard_cors_origin_is_refused_at_load_naming_the_key():
    from mandi.core.errors import ConfigError

    for origins in (["*"], ["https://ok.example", "https://*.example"]):
        with pytest.raises(ConfigError) as e:
            load_config(env={}, overrides={"web.cors_origins": origins})
        assert e.value.key == "web.cors_origins" and "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(env={"MANDI_WEB__CORS_ORIGINS": '["*"]'})
    assert e.value.key == "web.cors_origins"
    ok = load_config(env={}, overrides={"web.cors_origins": ["https://ok.example"]})
    assert ok.web.cors_origins == ("https://ok.example",)


def test_log_lines_stay_one_line_whatever_the_message_carries(capsys):
    import logging

    from mandi.logs import printable, setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO")
        logging.getLogger("mandi.test").warning(
            "halted: %s", "ops\n12:00:00 INFO mandi: FORGED\r\x1b[2J\u2028end"
        )
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FORGED" in err and "\x1b" not in err
    assert printable("a\tb\nc") == "a\\tb\\nc" and printable("plain ₹") == "plain ₹"


def test_mandi_order_refuses_a_limit_that_is_not_whole_positive_paise(tmp_path):
    from typer.testing import CliRunner

    from mandi.cli import app

    for limit in ("0.001", "0", "-5", "100.005"):
        r = CliRunner().invoke(
            app, ["order", "buy", "NIFTY2641424200CE", "--qty", "65", "--limit", limit, "--db",
                  str(tmp_path / "m.db")],
        )  # fmt: skip
        assert r.exit_code != 0 and "--limit" in r.output, (limit, r.output)
        assert "no running mandi node" not in r.output  # refused before anything else
