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
