"""Real NIFTY 50 and India VIX 3-minute bars (tests/data, see PROVENANCE.md)."""

from __future__ import annotations

import pytest

from mandi.services.backtest.data import load_csv

NIFTY = "NIFTY50_3min_2025-07-23_to_2026-08-04.csv"
VIX = "INDIAVIX_3min_2025-07-30_to_2026-08-04.csv"


@pytest.fixture(scope="session")
def nifty_real(data_dir):
    return load_csv(data_dir / NIFTY)


@pytest.fixture(scope="session")
def vix_real(data_dir):
    return load_csv(data_dir / VIX, symbol="INDIA VIX", token=2)
