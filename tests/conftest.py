"""Shared fixtures: paths to test data and a temporary database."""

from __future__ import annotations

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
