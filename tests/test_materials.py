"""Material interpolations: derivatives against central differences, continuity, bad parameters."""

from __future__ import annotations

import numpy as np
import pytest

from fem_eigopt.design.interpolation import (
    RAMP,
    SIMP,
    LinearMass,
    PolynomialMass,
    TwoRangeMass,
)
from fem_eigopt.errors import InputError

RNG_SEED = 7


def sample_points(n: int = 400) -> np.ndarray:
    """Random densities in [1e-3, 1]: half uniform, half log-uniform (to probe small x)."""
    rng = np.random.default_rng(RNG_SEED)
    return np.concatenate([rng.uniform(1e-3, 1.0, n // 2), 10.0 ** rng.uniform(-3.0, 0.0, n // 2)])


def central_slope(f, x: np.ndarray, rel_step: float = 1e-5) -> np.ndarray:
    """Element-wise central difference with a step relative to x (truncation ~1e-10, round-off ~1e-11)."""
    h = rel_step * x
    return (f(x + h)[0] - f(x - h)[0]) / (2.0 * h)


def away_from(x: np.ndarray, threshold: float, rel_step: float = 1e-5) -> np.ndarray:
    """Drop points whose difference stencil would straddle the threshold (the kink)."""
    return x[np.abs(x - threshold) > 3.0 * rel_step * x]


INTERPOLATIONS = {
    **{f"SIMP(p={p}, e_min={e})": SIMP(p, e) for p in (1.0, 2.0, 3.0, 4.5) for e in (0.0, 1e-9, 1e-3)},
    **{f"RAMP(q={q})": RAMP(q) for q in (0.0, 2.0, 8.0)},
    "LinearMass": LinearMass(),
    "TwoRangeMass": TwoRangeMass(),
    "TwoRangeMass(0.3)": TwoRangeMass(0.3),
    "PolynomialMass(x^6)": PolynomialMass(((6, 1e5),)),
    "PolynomialMass(x^6, x^7)": PolynomialMass(((6, 6e5), (7, -5e6))),
}


@pytest.mark.parametrize("name", INTERPOLATIONS)
def test_derivative_matches_central_differences(name):
    f = INTERPOLATIONS[name]
    x = sample_points()
    threshold = getattr(f, "threshold", None)
    if threshold is not None:
        x = away_from(x, threshold)
    value, slope = f(x)
    assert value.shape == slope.shape == x.shape
    fd = central_slope(f, x)
    # relative 1e-7, plus the round-off bound of the difference quotient, ~eps |f| / h: it matters
    # only where f is nearly flat on a floor (SIMP with e_min near x = 1e-3: f' ~ 1e-9, f ~ 1e-3)
    roundoff = 4.0 * np.finfo(float).eps * np.abs(value) / (1e-5 * x)
    assert np.all(np.abs(fd - slope) <= 1e-7 * np.abs(slope) + roundoff), np.max(np.abs(fd - slope) / np.abs(slope))


def test_known_values():
    x = np.array([0.0, 0.25, 0.5, 1.0])
    assert np.allclose(SIMP(3.0)(x)[0], x**3, rtol=0, atol=1e-16)
    assert np.allclose(SIMP(3.0, 1e-3)(x)[0], 1e-3 + (1 - 1e-3) * x**3, rtol=0, atol=1e-16)
    assert np.allclose(RAMP(8.0)(x)[0], x / (1 + 8 * (1 - x)), rtol=0, atol=1e-16)
    for f in INTERPOLATIONS.values():  # every law is 1 at full density (relative to E0, ρ0)
        assert abs(f(np.array([1.0]))[0][0] - 1.0) < 1e-15
    # Du & Olhoff (2007): below the threshold the mass falls as x^6
    assert abs(TwoRangeMass()(np.array([0.05]))[0][0] - 0.05**6 / 0.1**5) < 1e-18


def _limits(f, t):
    """Value and slope of ``f`` at the threshold from below (at t) and above (the next float)."""
    below, above = np.array([t]), np.array([np.nextafter(t, 1.0)])
    (v_lo, s_lo), (v_hi, s_hi) = f(below), f(above)
    return v_lo[0], v_hi[0], s_lo[0], s_hi[0]


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.77])
def test_two_range_mass_is_continuous_with_a_kink(threshold):
    v_lo, v_hi, s_lo, s_hi = _limits(TwoRangeMass(threshold), threshold)
    assert abs(v_lo - v_hi) < 1e-12
    assert abs(s_lo - 6.0) < 1e-12 and s_hi == 1.0  # the slope jumps 6 -> 1 (Du & Olhoff 2007)


def test_polynomial_mass_continuity_at_threshold():
    v_lo, v_hi, s_lo, s_hi = _limits(PolynomialMass(((6, 1e5),)), 0.1)
    assert abs(v_lo - v_hi) < 1e-12
    assert abs(s_lo - 6.0) < 1e-12  # c0 x^6 matches the value only
    v_lo, v_hi, s_lo, s_hi = _limits(PolynomialMass(((6, 6e5), (7, -5e6))), 0.1)
    assert abs(v_lo - v_hi) < 1e-12
    assert abs(s_lo - s_hi) < 1e-12  # 36 - 35 = 1: value and slope continuous
    # the low branch is not negative anywhere in [0, threshold] (it is a mass)
    x = np.linspace(0.0, 0.1, 1001)
    assert np.min(PolynomialMass(((6, 6e5), (7, -5e6)))(x)[0]) >= 0.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: SIMP(penalty=0.5),
        lambda: SIMP(penalty=float("nan")),
        lambda: SIMP(e_min=-1e-3),
        lambda: SIMP(e_min=1.0),
        lambda: RAMP(q=-1.0),
        lambda: RAMP(q=float("nan")),
        lambda: TwoRangeMass(threshold=0.0),
        lambda: TwoRangeMass(threshold=1.0),
        lambda: TwoRangeMass(threshold=-0.2),
    ],
)
def test_invalid_parameters_raise(make):
    with pytest.raises(InputError, match="allowed"):
        make()


@pytest.mark.parametrize("kwargs", [dict(threshold=0.0), dict(threshold=1.5), dict(coefficients=())])
def test_polynomial_mass_invalid_parameters_raise(kwargs):
    with pytest.raises(InputError):
        PolynomialMass(**kwargs)
