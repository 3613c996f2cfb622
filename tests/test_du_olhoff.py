"""The Du & Olhoff (2007) beams at the defaults of problems/beam.py reach the published optima (slow).

Published optima (Du & Olhoff 2007, Fig. 3): SS ω1 = 174.7 rad/s, CC ω1 = 456.4 rad/s, both
double eigenvalues at 50 % volume. The targets (issue #21): ω1 ≥ 95 % of the published value,
volume 0.50 ± 0.005, within 600 evaluations, under each linear-algebra code path CI has (the
default factorisation and SciPy's SuperLU, whose rounding differs); CC bimodal (ω2/ω1 − 1 < 2 %).
The designs are black and white: at most 2 % of the volume in elements between 0.1 and 0.9
(the beam's erosion, the robust formulation, keeps every member solid through its core), and
their ω1 holds when the same densities are analysed with quadratic elements (>= 95 %). One
target is not reached and is marked as an expected failure (strict: the test fails once it is
reached, so that the mark goes): the SS design is a simple-eigenvalue optimum at 98.6–98.8 % of
the published ω1 with ω2 20–29 % higher (docs/du-olhoff.md). The designs are mirror-symmetric
by construction; the test checks that too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fem_eigopt.linalg.factorization import available_backends
from fem_eigopt.optimize.modal_analysis import modal_analysis
from fem_eigopt.optimize.run import optimize
from fem_eigopt.problem.loading import load_problem

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = {"SS": 174.7, "CC": 456.4}
BACKENDS = [None] + (["superlu"] if "superlu" in available_backends() else [])

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=[(s, b) for s in ("SS", "CC") for b in BACKENDS],
                ids=lambda p: f"{p[0]}-{p[1] or 'default'}")
def run(request):
    supports, backend = request.param
    problem = load_problem(REPO / "problems" / "beam.py", {"supports": supports})
    result = optimize(problem, out_dir=None, progress=False, backend=backend)
    return supports, result.summary, result.densities


def test_reaches_95_percent_of_the_published_optimum_at_half_volume(run):
    supports, s, _ = run
    assert s["omega_final"][0] >= 0.95 * PUBLISHED[supports], s["omega_final"][:3]
    assert s["volume_fraction"] == pytest.approx(0.5, abs=0.005)
    assert s["evaluations"] <= 600
    assert s["evaluations_to_95"] <= s["evaluations"]


def test_optimum_is_bimodal(run, request):
    supports, s, _ = run
    if supports == "SS":
        request.applymarker(pytest.mark.xfail(strict=True, reason="the SS run ends at a simple-eigenvalue "
                                              "optimum (docs/du-olhoff.md, bilinear elements and thin members)"))
    omega = s["omega_final"]
    assert omega[1] / omega[0] - 1 < 0.02, omega[:3]


def test_design_is_mirror_symmetric(run):
    _, s, rho = run
    field = rho.reshape(160, 20)  # elements x-major on fe.rectangle
    np.testing.assert_allclose(field, field[::-1], atol=1e-12)
    np.testing.assert_allclose(field, field[:, ::-1], atol=1e-12)


def test_design_is_black_and_white(run):
    _, s, _ = run
    assert s["grey_fraction"] <= 0.02


def test_frequency_holds_with_quadratic_elements(run):
    """The final design analysed again with quadratic elements on the same mesh: bilinear
    elements are too stiff in bending, and a design of members one or two elements thick owes
    them 6-12 % of its ω1 (docs/du-olhoff.md). The default design keeps >= 95 %. The quadratic
    displacements contain the bilinear ones, so no eigenvalue may rise (Rayleigh-Ritz)."""
    supports, s, rho = run
    problem = load_problem(REPO / "problems" / "beam.py", {"supports": supports, "element": "quad2"})
    quadratic = modal_analysis(problem, n_modes=4, densities=rho).modes.eigenvalues
    bilinear = np.asarray(s["eigenvalues_final"][:4])
    assert np.all(quadratic <= bilinear * (1 + 1e-9)), (quadratic, bilinear)
    assert np.sqrt(quadratic[0] / bilinear[0]) >= 0.95, np.sqrt(quadratic / bilinear)
