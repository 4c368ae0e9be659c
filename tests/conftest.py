"""Shared fixtures: paths to test data and a temporary database."""

from __future__ import annotations

import os
import pathlib

import pytest

DATA = pathlib.Path(__file__).parent / "data"


def pytest_configure(config: pytest.Config) -> None:
    # the shell's start-up step, before any kernel code runs (see mandi.services.jitcache)
    from mandi.services.jitcache import prepare_numba_cache

    prepare_numba_cache()


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    return DATA


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "mandi.db")


@pytest.fixture(scope="session", autouse=True)
def _private_config_home(tmp_path_factory):
    """Commands the tests run (``mandi run`` creates the owner's token on its first start) write
    their per-user files under a temporary XDG_CONFIG_HOME, never the real ~/.config."""
    # ... and a `mandi run` without --port listens on a free port, never on 8080, which another
    # program of the machine may hold
    new = {
        "XDG_CONFIG_HOME": str(tmp_path_factory.mktemp("xdg-config")),
        "MANDI_RUN__PORT": os.environ.get("MANDI_RUN__PORT", "0"),
    }
    old = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
