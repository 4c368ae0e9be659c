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
