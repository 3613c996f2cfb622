"""Mirror-symmetric density designs: mirror images share one variable (DesignMap symmetry)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skfem

import fem_eigopt as fe
from fem_eigopt.design.density import DesignMap
from fem_eigopt.design.filters import element_centroids
from fem_eigopt.optimize.evaluator import DesignEvaluator
from fem_eigopt.problem.loading import load_problem
from fem_eigopt.sensitivity.gradcheck import check_evaluator

REPO = Path(__file__).resolve().parents[1]


def _beam_map(planes, nx=16, ny=4):
    mesh = skfem.MeshQuad.init_tensor(np.linspace(0, 8, nx + 1), np.linspace(0, 1, ny + 1))
    return mesh, DesignMap(mesh, x_min=1e-3, symmetry=planes)


@pytest.mark.parametrize("planes, n_vars", [((("x", 4.0),), 32), ((("y", 0.5),), 32),
                                            ((("x", 4.0), ("y", 0.5)), 16)])
def test_orbits_halve_or_quarter_the_variables_and_forward_is_symmetric(planes, n_vars):
    mesh, dmap = _beam_map(planes)
    assert dmap.n_active == n_vars
    x = dmap.forward(np.random.default_rng(0).random(n_vars))
    c = element_centroids(mesh)
    for axis, at in planes:
        k = "xy".index(axis)
        image = c.copy()
        image[k] = 2 * at - c[k]
        partner = [int(np.argmin(np.linalg.norm(c.T - p, axis=1))) for p in image.T]
        np.testing.assert_array_equal(x, x[partner])


def test_vjp_is_the_transpose_of_jvp():
    _, dmap = _beam_map((("x", 4.0), ("y", 0.5)))
    rng = np.random.default_rng(1)
    dz, dx = rng.standard_normal(dmap.n_active), rng.standard_normal(dmap.n_elem)
    assert dmap.jvp(None, dz) @ dx == pytest.approx(dz @ dmap.vjp(None, dx), rel=1e-13)
    # a symmetric start is kept: the mean over each orbit
    np.testing.assert_allclose(dmap.initial(dmap.forward(np.linspace(0.1, 0.9, dmap.n_active))),
                               np.linspace(0.1, 0.9, dmap.n_active), rtol=1e-15)


def test_asymmetric_mesh_or_bad_plane_is_refused():
    mesh = skfem.MeshQuad.init_tensor(np.array([0.0, 1.0, 3.0]), np.array([0.0, 1.0]))
    with pytest.raises(fe.InputError, match=r"design symmetry x = 1.5: element 0 .* no active mirror image"):
        DesignMap(mesh, symmetry=(("x", 1.5),))
    with pytest.raises(fe.InputError, match="design.symmetry"):
        fe.DensityDesign(symmetry=(("w", 1.0),))


def test_symmetric_beam_gradients_pass_taylor_and_central_differences():
    """The chain rule through the shared variables: every response of a symmetric coarse beam
    (the bound constraints on λ1, λ2 and the volume limits), Taylor rate 2 ± 0.2 and central
    differences, along two random directions."""
    problem = load_problem(REPO / "problems" / "beam.py", {"nx": "16", "ny": "4", "supports": "CC"})
    ev = DesignEvaluator(problem)
    x0, lower, upper = ev.start()
    assert ev.n_design == 16 * 4 // 4
    x = x0.copy()
    x[: ev.n_design] = np.clip(x0[: ev.n_design] + 0.2 * np.random.default_rng(2).standard_normal(ev.n_design),
                               0.05, 0.95)
    ev(x)  # names the constraints
    checks = check_evaluator(ev, x, lower, upper, ["objective"] + ev.constraint_names, n_directions=2, h0=1e-2)
    assert len(checks) == 2 * (1 + len(ev.constraint_names))
    for c in checks:
        assert c.passed, (c.name, c.result)
        assert c.relative_error < 1e-5 or c.linear, (c.name, c.relative_error)
