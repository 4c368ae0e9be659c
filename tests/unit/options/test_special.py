"""The numerical building blocks: erfcx table, normal CDF, small-t series coefficients."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from mandi.options import _black
from mandi.options._special import erfcx, erfcx_fast, norm_cdf, norm_cdf_given_pdf, norm_pdf

mp = pytest.importorskip("mpmath")

HERE = Path(__file__).parent
TABLE = HERE.parents[2] / "src" / "mandi" / "options" / "_erfcx_table.py"


def _erfcx_exact(y: float):  # type: ignore[no-untyped-def]
    y = mp.mpf(y)
    return mp.exp(y * y) * mp.erfc(y)


def test_erfcx_within_a_few_ulp() -> None:
    mp.mp.dps = 40
    rng = np.random.default_rng(4)
    ys = np.concatenate(
        [rng.uniform(0, 60, 1500), 10 ** rng.uniform(-12, 4, 800), -rng.uniform(0, 5, 400)]
    )
    worst = max(float(abs(erfcx(y) - _erfcx_exact(y)) / _erfcx_exact(y)) for y in ys)
    # exp(y²) for negative y costs ~2y²ε from rounding y²; elsewhere a few ulp
    assert worst < 8e-15
    positive = [y for y in ys if y >= 0]
    worst_fast = max(
        float(abs(erfcx_fast(y) - _erfcx_exact(y)) / _erfcx_exact(y)) for y in positive
    )
    assert worst_fast < 2e-15
    assert math.isnan(erfcx(math.nan)) and erfcx(math.inf) == 0.0


def test_normal_cdf_relative_accuracy_in_the_tail() -> None:
    mp.mp.dps = 40
    for z in np.linspace(-37.0, 8.0, 900):
        exact = mp.ncdf(z)
        assert abs(norm_cdf(z) - exact) <= 4e-15 * exact + 1e-17, z
        assert abs(norm_cdf_given_pdf(z, norm_pdf(z)) - exact) <= 4e-15 * exact + 1e-17, z


def test_erfcx_table_is_reproducible() -> None:
    """The shipped table is exactly what the generator script produces."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("erfcx_table_gen", HERE / "erfcx_table_gen.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.source() == TABLE.read_text()


def test_small_t_series_coefficients_derived_from_psi_prime() -> None:
    """Ψ = Φ/φ satisfies Ψ' = 1 + hΨ; the odd derivatives Ψ^(2k+1)/(2k+1)! written as
    A_k(h²) + B_k(h²)·a with a = 1 + hΨ are the constants in _black."""
    p, q = [Fraction(0)], [Fraction(1)]  # Ψ^(n) = P_n(h) + Q_n(h)·Ψ

    def add(u: list[Fraction], v: list[Fraction]) -> list[Fraction]:
        n = max(len(u), len(v))
        return [(u[i] if i < len(u) else 0) + (v[i] if i < len(v) else 0) for i in range(n)]

    def deriv(u: list[Fraction]) -> list[Fraction]:
        return [i * u[i] for i in range(1, len(u))] or [Fraction(0)]

    for n in range(1, 2 * len(_black._SERIES_A_NUM)):
        p, q = add(deriv(p), q), add(deriv(q), [Fraction(0), *q])
        if n % 2 == 0:
            continue
        b = [q[j] for j in range(1, len(q), 2)]  # h^j·Ψ = h^(j−1)·(a − 1)
        a = add([p[j] for j in range(0, len(p), 2)], [-c for c in b])
        k = n // 2
        assert [int(c) for c in a] == list(_black._SERIES_A_NUM[k]) + [0] * (
            len(a) - len(_black._SERIES_A_NUM[k])
        )
        assert [int(c) for c in b] == list(_black._SERIES_B_NUM[k])
