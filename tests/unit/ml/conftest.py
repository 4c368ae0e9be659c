"""A tiny saved model in a temporary registry directory (see tests/ml_kit.py)."""

from __future__ import annotations

import pytest

from ml_kit import make_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("models") / "tiny")
