"""Shape sensitivities: element matrices at moved vertices, coordinate and parameter gradients.

Every derivative is checked by a Taylor remainder test (fitted rate 2 ± 0.2) and by central
differences (1e-6 relative); the functions differentiated are evaluated through scikit-fem's element
matrices on the moved mesh, independently of the analytic derivative in fem_eigopt.fem.geometry.
"""

from __future__ import annotations

import functools
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from fem_eigopt import (
    Analysis,
    InputError,
    Material,
    PointMass,
    Problem,
    Support,
    build_model,
)
from fem_eigopt.problem.mesh import box, mapped, rectangle
from fem_eigopt.design.shape import LinearShapeMap, ProfileShapeMap
from fem_eigopt.fem.geometry import (
    check_coordinates,
    coordinate_gradient,
    element_forms,
    model_at_coordinates,
)
from fem_eigopt.sensitivity.gradcheck import central_difference, taylor_test
from fem_eigopt.sensitivity.shape import (
    eigenvalue_coordinate_gradients,
    eigenvalue_parameter_gradients,
)
from fem_eigopt.solvers.lanczos import ModalSolver

N_MODES = 4
# name -> (mesh factory, element, typical element size)
CASES = {
    "quad1": (lambda: rectangle(1.0, 0.2, 8, 2), "quad1", 0.1),
    "quad2": (lambda: rectangle(1.0, 0.2, 5, 2), "quad2", 0.1),
    "tri2": (lambda: rectangle(1.0, 0.2, 5, 2, kind="tri"), "tri2", 0.1),
    "hex1": (lambda: box(1.0, 0.25, 0.2, 4, 1, 1), "hex1", 0.2),
    "hex2": (lambda: box(1.0, 0.25, 0.2, 3, 1, 1), "hex2", 0.2),
    "tet2": (lambda: box(1.0, 0.25, 0.2, 2, 1, 1, kind="tet"), "tet2", 0.2),
}
NAMES = list(CASES)
# hex2: scikit-fem integrates ElementHex2 with 343 points by default, so each moved model costs ~0.5 s
SLOW = {"hex2"}


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


@functools.lru_cache(maxsize=None)
def _model(name: str):
    """Cantilever (named boundary ``left`` clamped) with a tip point mass; solid material."""
    make_mesh, element, _ = CASES[name]
    mesh = make_mesh()
    dim = mesh.dim()
    material = Material(E=1.0, nu=0.3, density=1.0, model="plane_stress" if dim == 2 else "solid",
                        thickness=0.5 if dim == 2 else 1.0)
    tip = (1.0, 0.2) if dim == 2 else (1.0, 0.25, 0.2)
    problem = Problem(mesh, element, material, supports=(Support("left"),),
                      point_masses=(PointMass(0.01, tip),), analysis=Analysis(n_modes=N_MODES))
    return build_model(problem)


def _start(name: str) -> np.ndarray:
    """A distorted (non-affine) but valid geometry: every vertex moved by up to 4 % of h."""
    model = _model(name)
    h = CASES[name][2]
    rng = np.random.default_rng(sum(map(ord, name)))
    return model.basis.mesh.p + 0.04 * h * rng.uniform(-1, 1, model.basis.mesh.p.shape)


def _direction(name: str, seed: int = 1) -> np.ndarray:
    """Random vertex perturbation (interior and boundary vertices), max 3 % of h."""
    X = _model(name).basis.mesh.p
    d = np.random.default_rng(seed).standard_normal(X.shape)
    return 0.03 * CASES[name][2] * d / np.abs(d).max()


def _scales(name: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    n = _model(name).n_elements
    return rng.uniform(0.5, 1.5, n), rng.uniform(0.5, 1.5, n)


def _eigen(model, s_K=None, s_M=None):
    return ModalSolver(N_MODES).solve(model.stiffness(s_K), model.mass(s_M))


class _Eigenvalues:
    """λ(X) with a cache, so Taylor tests of all modes share the eigen solves."""

    def __init__(self, model, s_K=None, s_M=None, coordinates=lambda x: x):
        self.model, self.s_K, self.s_M, self.coordinates = model, s_K, s_M, coordinates
        self.cache: dict[bytes, np.ndarray] = {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        key = np.asarray(x, dtype=float).tobytes()
        if key not in self.cache:
            moved = model_at_coordinates(self.model, self.coordinates(x))
            self.cache[key] = _eigen(moved, self.s_K, self.s_M).eigenvalues
        return self.cache[key]

    def mode(self, i: int):
        return lambda x: self(x)[i]


def _assert_gradient(f, gradient, x, direction, h_cd):
    """Taylor rate 2 ± 0.2 and central difference to 1e-6 relative along ``direction``."""
    result = taylor_test(f, gradient, x, direction, h0=1.0, n_steps=5, factor=0.5)
    assert abs(result.rate - 2.0) <= 0.2, (result.rate, result.remainders)
    cd = central_difference(f, x, direction, h=h_cd)
    assert cd == pytest.approx(result.directional_derivative, rel=1e-6)


def _assert_simple(eigenvalues: np.ndarray) -> None:
    gaps = np.diff(eigenvalues) / eigenvalues[1:]
    assert np.all(gaps > 0.03), eigenvalues  # simple, and well separated for the step sizes used


# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _params(NAMES))
def test_element_matrices_at_moved_coordinates_match_scikit_fem(name):
    model = _model(name)
    X = _start(name)
    moved = model_at_coordinates(model, X)
    # independent reference: the whole model rebuilt by build_model on the moved mesh
    rebuilt = build_model(model.problem.with_changes(mesh=mapped(model.problem.mesh, lambda p: X)))
    for ours, theirs in ((moved.Ke, rebuilt.Ke), (moved.Me, rebuilt.Me)):
        assert np.abs(ours - theirs).max() <= 1e-13 * np.abs(theirs).max()
    np.testing.assert_array_equal(moved.fixed_dofs, rebuilt.fixed_dofs)
    K, K_ref = moved.stiffness(), rebuilt.stiffness()
    assert np.abs(K.data - K_ref.data).max() <= 1e-13 * np.abs(K_ref.data).max()
    M, M_ref = moved.mass(), rebuilt.mass()
    assert np.abs(M.data - M_ref.data).max() <= 1e-13 * np.abs(M_ref.data).max()
    assert np.array_equal(moved.problem.mesh.p, X) and moved.basis.mesh is moved.problem.mesh

    # the module's own geometry path (the one that is differentiated) gives the same forms
    rng = np.random.default_rng(3)
    U = rng.standard_normal(model.element_dofs.shape + (2,))
    V = rng.standard_normal(U.shape)
    uKv, uMv = element_forms(model, U, V, X)
    ref_K = np.einsum("eak,eab,ebk->ek", U, rebuilt.Ke, V)
    ref_M = np.einsum("eak,eab,ebk->ek", U, rebuilt.Me, V)
    assert np.abs(uKv - ref_K).max() <= 1e-13 * np.abs(ref_K).max()
    assert np.abs(uMv - ref_M).max() <= 1e-13 * np.abs(ref_M).max()


@pytest.mark.parametrize("name", _params(NAMES))
def test_coordinate_gradient_of_element_forms(name):
    """General U ≠ V, weights and random element scale factors."""
    model = _model(name)
    X0 = _start(name)
    rng = np.random.default_rng(11)
    U = rng.standard_normal(model.element_dofs.shape + (3,))
    V = rng.standard_normal(U.shape)
    wK, wM = rng.standard_normal(3), rng.standard_normal(3)
    s_K, s_M = _scales(name)

    def f(X):
        moved = model_at_coordinates(model, X)
        return (np.einsum("e,eak,eab,ebk,k->", s_K, U, moved.Ke, V, wK)
                + np.einsum("e,eak,eab,ebk,k->", s_M, U, moved.Me, V, wM))

    g = coordinate_gradient(model, U, V, wK, wM, s_K, s_M, X=X0)
    assert g.shape == X0.shape
    _assert_gradient(f, g, X0, _direction(name), h_cd=1e-3)


@pytest.mark.parametrize("name", _params(NAMES))
def test_eigenvalue_coordinate_gradients(name):
    model = _model(name)
    X0 = _start(name)
    s_K, s_M = _scales(name)
    lam = _Eigenvalues(model, s_K, s_M)
    moved = model_at_coordinates(model, X0)
    modes = _eigen(moved, s_K, s_M)
    _assert_simple(modes.eigenvalues)
    G = eigenvalue_coordinate_gradients(moved, modes, s_K, s_M)
    assert G.shape == (N_MODES,) + X0.shape
    # the gradient only needs the coordinates, not the moved model
    np.testing.assert_allclose(eigenvalue_coordinate_gradients(model, modes, s_K, s_M, X=X0), G,
                               rtol=0, atol=1e-14 * np.abs(G).max())
    d = _direction(name)
    for i in range(N_MODES):
        _assert_gradient(lam.mode(i), G[i], X0, d, h_cd=1e-3)


def _linear_map(name: str) -> LinearShapeMap:
    """Two smooth velocity fields: a transverse bulge and a stretch-shear, ~3 % of h per unit p."""
    X = _model(name).basis.mesh.p
    h = CASES[name][2]
    V = np.zeros((2,) + X.shape)
    V[0, 1] = 0.03 * h * np.sin(np.pi * X[0]) * (1 + X[1])
    V[1, 0] = 0.03 * h * X[0] * X[1] / 0.2
    V[1, -1] = 0.03 * h * np.cos(2 * X[0])
    return LinearShapeMap(X, V)


@pytest.mark.parametrize("name", _params(NAMES))
def test_eigenvalue_parameter_gradients_linear_map(name):
    model = _model(name)
    shape_map = _linear_map(name)
    p0 = np.array([0.4, -0.3])
    lam = _Eigenvalues(model, coordinates=shape_map.coordinates)
    modes = _eigen(model_at_coordinates(model, shape_map.coordinates(p0)))
    _assert_simple(modes.eigenvalues)
    G = eigenvalue_parameter_gradients(model, shape_map, p0, modes)
    assert G.shape == (N_MODES, 2)
    dp = np.array([0.8, 0.6])
    for i in range(N_MODES):
        # step between round-off (λ_1 changes by only ~1e-3 relative per unit p) and truncation
        _assert_gradient(lam.mode(i), G[i], p0, dp, h_cd=3e-3)


@pytest.mark.parametrize("name, kind", [("quad1", "linear"), ("quad2", "cubic"), ("tri2", "cubic"),
                                        ("hex1", "linear"), pytest.param("hex2", "cubic", marks=pytest.mark.slow), ("tet2", "linear")])
def test_eigenvalue_parameter_gradients_profile_map(name, kind):
    model = _model(name)
    shape_map = ProfileShapeMap(model.basis.mesh, np.linspace(0.0, 1.0, 4), kind=kind)
    rng = np.random.default_rng(5)
    p0 = shape_map.reference_parameters() * rng.uniform(0.85, 1.15, 4)
    s_K, s_M = _scales(name)
    lam = _Eigenvalues(model, s_K, s_M, coordinates=shape_map.coordinates)
    modes = _eigen(model_at_coordinates(model, shape_map.coordinates(p0)), s_K, s_M)
    _assert_simple(modes.eigenvalues)
    G = eigenvalue_parameter_gradients(model, shape_map, p0, modes, s_K, s_M)
    assert G.shape == (N_MODES, 4)
    dp = 0.03 * shape_map.height * rng.uniform(-1, 1, 4)
    for i in range(N_MODES):
        _assert_gradient(lam.mode(i), G[i], p0, dp, h_cd=1e-3)


@pytest.mark.parametrize("kind, fixed", [("linear", "bottom"), ("cubic", "top")])
def test_profile_map_geometry_and_exact_vjp(kind, fixed):
    mesh = rectangle(1.0, 0.2, 10, 3)
    shape_map = ProfileShapeMap(mesh, [0.0, 0.3, 0.7, 1.0], kind=kind, fixed=fixed)
    # p = H0 reproduces the reference mesh (both interpolants reproduce constants)
    np.testing.assert_allclose(shape_map.coordinates(shape_map.reference_parameters()), mesh.p,
                               rtol=0, atol=1e-15)
    p = np.array([0.2, 0.15, 0.25, 0.1])
    X = shape_map.coordinates(p)
    np.testing.assert_array_equal(X[0], mesh.p[0])
    # the moving side follows h(x); the fixed side stays
    moving = np.isclose(mesh.p[1], 0.2 if fixed == "bottom" else 0.0)
    staying = ~np.isclose(mesh.p[1], 0.2 if fixed == "bottom" else 0.0) & np.isclose(mesh.p[1], 0.0 if fixed == "bottom" else 0.2)
    side = 1.0 if fixed == "bottom" else -1.0
    y_fixed = 0.0 if fixed == "bottom" else 0.2
    np.testing.assert_allclose(X[1, moving], y_fixed + side * shape_map.profile(p, mesh.p[0, moving]),
                               rtol=0, atol=1e-15)
    np.testing.assert_allclose(X[1, staying], y_fixed, rtol=0, atol=1e-15)
    assert shape_map.profile(p, np.array([0.3]))[0] == pytest.approx(0.15, abs=1e-15)
    # linear in p: jvp equals the difference quotient, vjp is its exact transpose
    rng = np.random.default_rng(2)
    dp, dX = rng.standard_normal(4), rng.standard_normal(X.shape)
    np.testing.assert_allclose(shape_map.jvp(p, dp), shape_map.coordinates(p + dp) - X, rtol=0, atol=1e-14)
    assert np.vdot(shape_map.vjp(p, dX), dp) == pytest.approx(np.vdot(dX, shape_map.jvp(p, dp)), rel=1e-13)
    batched = shape_map.vjp(p, np.stack([dX, 2 * dX]))
    np.testing.assert_allclose(batched[1], 2 * shape_map.vjp(p, dX), rtol=1e-14)


def test_linear_map_vjp_is_transpose():
    shape_map = _linear_map("hex1")
    rng = np.random.default_rng(4)
    p, dp = rng.standard_normal(2), rng.standard_normal(2)
    dX = rng.standard_normal(shape_map.X0.shape)
    np.testing.assert_allclose(shape_map.coordinates(p + dp) - shape_map.coordinates(p), shape_map.jvp(p, dp),
                               rtol=0, atol=1e-15)
    assert np.vdot(shape_map.vjp(p, dX), dp) == pytest.approx(np.vdot(dX, shape_map.jvp(p, dp)), rel=1e-13)


_SPARSE_CONSTRUCTORS = (
    "csr_matrix", "csc_matrix", "coo_matrix", "lil_matrix", "dok_matrix", "bsr_matrix", "dia_matrix",
    "csr_array", "csc_array", "coo_array", "lil_array", "dok_array", "bsr_array", "dia_array",
    "diags", "kron", "bmat", "block_diag", "hstack", "vstack",
)


def _peak_memory(model, monkeypatch) -> int:
    """Peak traced memory (bytes) of the eigenvalue and form coordinate gradients of ``model``,
    computed with every scipy.sparse constructor disabled."""
    modes = _eigen(model)
    U = model.element_values(modes.vectors)
    eigenvalue_coordinate_gradients(model, modes)  # warm-up: reference tables, einsum paths

    def forbidden(*args, **kwargs):
        raise AssertionError("a sparse matrix was constructed during a shape-gradient call")

    with monkeypatch.context() as patch:
        for name in _SPARSE_CONSTRUCTORS:
            if hasattr(sp, name):
                patch.setattr(sp, name, forbidden)
        tracemalloc.start()
        try:
            G = eigenvalue_coordinate_gradients(model, modes)
            g = coordinate_gradient(model, U, U, np.ones(N_MODES), -modes.eigenvalues)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    np.testing.assert_allclose(g, G.sum(axis=0), rtol=0, atol=1e-12 * np.abs(G).max())
    return peak


def test_shape_gradient_forms_no_global_matrix(monkeypatch):
    """No sparse matrix is built, and memory grows like n_elem · n_qp · dim², not like n_dof²."""
    small, large = (build_model(_model("quad2").problem.with_changes(mesh=rectangle(1.0, 0.2, nx, 4)))
                    for nx in (10, 40))
    peak_small, peak_large = _peak_memory(small, monkeypatch), _peak_memory(large, monkeypatch)
    n_qp, dim = small.basis.quadrature[1].size, 2
    per_element = n_qp * dim * dim * 8  # bytes of one (dim, dim) float per quadrature point
    growth = (peak_large - peak_small) / ((large.n_elements - small.n_elements) * per_element)
    assert growth < 30, (peak_small, peak_large, growth)  # a few element-level arrays, no more
    assert peak_large < 0.1 * 8 * large.n_dofs ** 2  # far from one dense n_dof × n_dof matrix
    # the check itself bites: a sparse constructor inside the call would have raised
    with monkeypatch.context() as patch:
        patch.setattr(sp, "csr_matrix", lambda *a, **k: (_ for _ in ()).throw(AssertionError("bites")))
        with pytest.raises(AssertionError, match="bites"):
            small.stiffness()


def test_check_coordinates():
    model = _model("quad1")
    X = model.basis.mesh.p
    assert check_coordinates(model, X) == pytest.approx(1.0, rel=1e-12)
    assert 0 < check_coordinates(model, _start("quad1")) < 1
    # push an interior vertex across its neighbour: the elements around it invert
    interior = np.flatnonzero((X[0] > 0.01) & (X[0] < 0.99) & (X[1] > 0.01) & (X[1] < 0.19))[0]
    bad = X.copy()
    bad[0, interior] += 0.25
    with pytest.raises(InputError, match=r"X invert or degenerate \d element"):
        check_coordinates(model, bad)
    # through a profile map: a negative thickness names the parameter values
    shape_map = ProfileShapeMap(model.basis.mesh, [0.0, 0.5, 1.0], kind="linear")
    p = np.array([0.2, -0.05, 0.2])
    with pytest.raises(InputError, match=r"shape parameters p = \[0\.2, -0\.05, 0\.2\]"):
        check_coordinates(model, shape_map.coordinates(p), params=p)
    assert check_coordinates(model, shape_map.coordinates(np.array([0.2, 0.1, 0.2])), params=p) > 0


def test_bad_input_raises_input_error():
    model = _model("quad1")
    with pytest.raises(InputError, match=r"X has shape \(3, "):
        model_at_coordinates(model, np.zeros((3, model.basis.mesh.p.shape[1])))
    with pytest.raises(InputError, match="x_controls"):
        ProfileShapeMap(model.basis.mesh, [0.0, 0.5])  # cubic needs 3, and does not cover the bar
    with pytest.raises(InputError, match="profile kind"):
        ProfileShapeMap(model.basis.mesh, [0.0, 1.0], kind="quadratic")
    with pytest.raises(InputError, match="shape parameters p"):
        _linear_map("quad1").coordinates(np.zeros(3))
    with pytest.raises(InputError, match="s_K has shape"):
        coordinate_gradient(model, np.zeros(model.element_dofs.shape), np.zeros(model.element_dofs.shape),
                            [1.0], [1.0], s_K=np.ones(3))
