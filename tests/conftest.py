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
    old = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))
    yield
    if old is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = old
