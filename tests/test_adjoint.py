"""Element-by-element sensitivities (fem_eigopt.sensitivity.eigenvalues) against finite differences.

Every derivative is checked with a Taylor remainder test (fitted rate 2 ± 0.2) and a central
difference (1e-6 relative), on 2D (quad1, quad2) and 3D (hex1, hex2) cantilevers, with random
densities x in [0.2, 1], s_K = SIMP(3)(x), s_M = x, the gradients chained to x by the
interpolation derivatives. The eigenpairs are recomputed by a fresh ModalSolver (tol = 0) at every
perturbed design.
"""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse._base as sp_base

import fem_eigopt as fe
from fem_eigopt.responses.eigenvector import ModalAmplitude, ModalAssurance, QuadraticForm, mass_weighted_mac
import fem_eigopt.sensitivity.eigenvalues as eigenvalue_sensitivities
from fem_eigopt.sensitivity.eigenvalues import cluster_directional_derivatives, cluster_generalized_gradients, cluster_increment_matrix, cluster_scale_matrices, cluster_sum_gradient, eigenvalue_scale_gradients, element_energies, element_quadratic_forms
from fem_eigopt.sensitivity.eigenvectors import eigenvector_adjoint, scale_factor_gradient
from fem_eigopt.fem.assembly import build_model
from fem_eigopt.sensitivity.gradcheck import central_difference, taylor_test
from fem_eigopt.solvers.lanczos import ModalSolver

REPO = Path(__file__).resolve().parents[1]
N_MODES = 4
STIFF = fe.SIMP(3.0)
MASS = fe.LinearMass()


def _problem_2d(element: str, nx: int, ny: int) -> fe.Problem:
    # a clamped plate strip with a tip mass (the point masses must not enter any derivative)
    return fe.Problem(
        mesh=fe.rectangle(4.0, 1.0, nx, ny), element=element,
        material=fe.Material(E=1e7, nu=0.3, density=1.0, model="plane_stress"),
        supports=(fe.Support("left"),), point_masses=(fe.PointMass(0.2, at=(4.0, 1.0)),),
        analysis=fe.Analysis(n_modes=N_MODES),
    )


def _problem_3d(element: str, nx: int, ny: int, nz: int) -> fe.Problem:
    # rectangular (not square) section: all leading eigenvalues simple
    return fe.Problem(
        mesh=fe.box(1.0, 0.3, 0.15, nx, ny, nz), element=element,
        material=fe.Material(E=210e9, nu=0.3, density=7850.0, model="solid"),
        supports=(fe.Support("left"),), analysis=fe.Analysis(n_modes=N_MODES),
    )


PROBLEMS = {
    "quad1": lambda: _problem_2d("quad1", 12, 3),
    "quad2": lambda: _problem_2d("quad2", 6, 2),
    "hex1": lambda: _problem_3d("hex1", 6, 2, 2),
    "hex2": lambda: _problem_3d("hex2", 3, 1, 1),
}


class Case:
    """A model, a random design and cached modal solves at perturbed designs."""

    def __init__(self, problem: fe.Problem, seed: int = 0, n_modes: int = N_MODES) -> None:
        self.model = build_model(problem)
        self.rng = np.random.default_rng(seed)
        self.x = self.rng.uniform(0.2, 1.0, self.model.n_elements)
        self.n_modes = n_modes
        self._cache: dict[bytes, tuple] = {}

    def solve(self, x: np.ndarray):
        """(K, M, modes, solver) at densities x; a fresh solver every time (no warm start)."""
        key = x.tobytes()
        if key not in self._cache:
            K = self.model.stiffness(STIFF(x)[0])
            M = self.model.mass(MASS(x)[0])
            solver = ModalSolver(self.n_modes, tol=0.0)
            self._cache[key] = (K, M, solver.solve(K, M), solver)
        return self._cache[key]

    def chain(self, gK: np.ndarray, gM: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        """Scale-factor gradient(s) → density gradient(s) (element-wise interpolations)."""
        x = self.x if x is None else x
        dK, dM = STIFF(x)[1], MASS(x)[1]
        if gK.ndim == 2:
            return gK * dK[:, None] + gM * dM[:, None]
        return gK * dK + gM * dM

    def direction(self) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, self.model.n_elements)


@pytest.fixture(scope="module", params=list(PROBLEMS))
def case(request) -> Case:
    return Case(PROBLEMS[request.param]())


def _check_gradient(f, grad, x, d, h_cd=1e-4, cd_tol=1e-6, h0=2.5e-3):
    """Taylor rate 2 ± 0.2 and central difference within cd_tol relative; returns both numbers.

    The central difference is Richardson-extrapolated from steps h and 2h, (4 D(h) − D(2h)) / 3,
    which removes the O(h²) truncation: at h = 1e-4 what is left is the eigen solver's round-off
    (about 1e-8 relative here), whereas plain D(h) can be 1e-6 off by truncation alone.
    """
    res = taylor_test(f, grad, x, d, h0=h0, n_steps=5, factor=0.5)
    assert res.passed(2.0, 0.2), (res.rate, res.remainders)
    cd = (4.0 * central_difference(f, x, d, h=h_cd) - central_difference(f, x, d, h=2.0 * h_cd)) / 3.0
    slope = float(grad @ d)
    assert abs(cd - slope) <= cd_tol * abs(slope), (cd, slope, cd / slope - 1)
    return res.rate, cd / slope - 1


# ---------------------------------------------------------------------------------------------
# the contraction itself
# ---------------------------------------------------------------------------------------------

def test_element_quadratic_forms_against_explicit_products():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((7, 5, 5))
    U, V = rng.standard_normal((7, 5, 3)), rng.standard_normal((7, 5, 3))
    expected = np.array([[U[e, :, k] @ A[e] @ V[e, :, k] for k in range(3)] for e in range(7)])
    np.testing.assert_allclose(element_quadratic_forms(A, U, V), expected, rtol=1e-13, atol=1e-13)
    expected_sym = np.array([U[e, :, 1] @ A[e] @ U[e, :, 1] for e in range(7)])
    single = element_quadratic_forms(A, U[:, :, 1])  # one vector per element: V = U, shape (7,)
    assert single.shape == (7,)
    np.testing.assert_allclose(single, expected_sym, rtol=1e-13)
    with pytest.raises(ValueError):
        element_quadratic_forms(A, U[:, :4])


def _energy_model(mesh_kind: str, nx: int, ny: int):
    """A quad4 model on a regular mesh ("congruent": one broadcast K0, M0) or a distorted one
    (element matrices of their own)."""
    problem = _problem_2d("quad1", nx, ny)
    if mesh_kind == "distorted":
        mesh = problem.mesh
        p = mesh.p.copy()
        p[1] += 0.05 * np.sin(3.0 * p[0]) * p[1]
        problem = fe.Problem(mesh=type(mesh)(p, mesh.t), element="quad1", material=problem.material,
                             supports=(fe.Support(lambda x: x[0] < 1e-9),), analysis=problem.analysis)
    model = build_model(problem)
    return model


@pytest.mark.parametrize("mesh_kind", ["congruent", "distorted"])
def test_element_energies_match_element_quadratic_forms(mesh_kind):
    # the congruent path (one GEMM with the broadcast K0, M0) and the general one (element matrices
    # of a distorted mesh) give the batched contraction's numbers, free-length and full vectors
    model = _energy_model(mesh_kind, 8, 3)
    from fem_eigopt.fem.assembly import is_broadcast

    assert is_broadcast(model.Ke) == (mesh_kind == "congruent")
    V = np.random.default_rng(2).standard_normal((model.n_free, 3))
    eK, eM = element_energies(model, V)
    phi = model.element_values(V)
    np.testing.assert_allclose(eK, element_quadratic_forms(model.Ke, phi), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(eM, element_quadratic_forms(model.Me, phi), rtol=1e-12, atol=1e-20)
    eK1, eM1 = element_energies(model, model.expand(V[:, 1]))
    assert eK1.shape == (model.n_elements,)
    np.testing.assert_allclose(eK1, eK[:, 1], rtol=1e-13)
    np.testing.assert_allclose(eM1, eM[:, 1], rtol=1e-13)


@pytest.mark.parametrize("mesh_kind", ["congruent", "distorted"])
def test_element_energies_in_blocks_match_one_block(mesh_kind, monkeypatch):
    # Blocks of elements keep the work arrays in cache; every element's numbers must come out as
    # with all elements at once. Distorted meshes: one small product per element either way, so
    # bit for bit. Congruent meshes: one GEMM per block, whose rounding may depend on its number
    # of rows (OpenBLAS's small-matrix kernels on AVX-512 CPUs: ~1e-16 relative), so to rounding,
    # and bit for bit from one call to the next. Uneven blocks; free-length and full vectors; 1
    # and 3 vectors.
    model = _energy_model(mesh_kind, 23, 7)
    V = np.random.default_rng(5).standard_normal((model.n_free, 3))
    for vectors in (V, V[:, 1], model.expand(V[:, 2])):
        monkeypatch.setattr(eigenvalue_sensitivities, "ENERGY_BLOCK_ENTRIES", 10**9)
        whole = element_energies(model, vectors)
        monkeypatch.setattr(eigenvalue_sensitivities, "ENERGY_BLOCK_ENTRIES", 8 * 37)  # blocks of 37 elements, the last shorter
        blocked = element_energies(model, vectors)
        again = element_energies(model, vectors)
        monkeypatch.undo()
        for a, b, c in zip(whole, blocked, again):
            assert a.shape == b.shape
            assert np.array_equal(b, c)
            if mesh_kind == "distorted":
                assert np.array_equal(a, b)
            else:
                np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-14 * np.abs(a).max())


@pytest.mark.parametrize("mesh_kind", ["congruent", "distorted"])
def test_cluster_increment_matrix_is_the_projected_assembled_increment(mesh_kind):
    # Φᵀ(ΔK − λ̄ΔM)Φ element by element against ΔK, ΔM assembled on the pattern (the way the
    # evaluator aligned clusters before) and against Σ_e of cluster_scale_matrices' GK, GM
    model = _energy_model(mesh_kind, 12, 5)
    rng = np.random.default_rng(11)
    Phi = rng.standard_normal((model.n_free, 3))
    dsK, dsM = rng.uniform(-1.0, 1.0, model.n_elements), rng.uniform(-1.0, 1.0, model.n_elements)
    lam = 2.5e3
    F = cluster_increment_matrix(model, Phi, dsK, dsM, lam)
    dM = model.mass(dsM) - model.mass(np.zeros(model.n_elements))  # without the point masses
    assembled = Phi.T @ ((model.stiffness(dsK) - lam * dM) @ Phi)
    assert F.shape == (3, 3) and np.array_equal(F, F.T)
    scale = np.abs(Phi.T @ (model.stiffness() @ Phi)).max()
    np.testing.assert_allclose(F, assembled, rtol=0, atol=1e-12 * scale)
    modes = fe.Modes(np.ones(3), Phi, clusters=[(0, 1, 2)], shift=0.0)
    GK, GM = cluster_scale_matrices(model, modes, [0, 1, 2])
    np.testing.assert_allclose(F, np.einsum("e,esk->sk", dsK, GK) - lam * np.einsum("e,esk->sk", dsM, GM),
                               rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(cluster_increment_matrix(model, model.expand(Phi), dsK, dsM, lam), F,
                               rtol=0, atol=1e-13 * scale)  # full-length vectors


# ---------------------------------------------------------------------------------------------
# simple eigenvalues
# ---------------------------------------------------------------------------------------------

def test_eigenvalue_gradients_taylor_and_central_difference(case: Case):
    K, M, modes, _ = case.solve(case.x)
    assert modes.clusters == []
    dK, dM = eigenvalue_scale_gradients(case.model, modes)
    G = case.chain(dK, dM)
    assert G.shape == (case.model.n_elements, N_MODES)
    d = case.direction()
    for i in range(N_MODES):
        _check_gradient(lambda x: case.solve(x)[2].eigenvalues[i], G[:, i], case.x, d)
    # the sum over elements of s_K·dλ/ds_K + s_M·dλ/ds_M is zero (λ is homogeneous of degree 0 in
    # a common scaling of K and M): an exact identity, independent of finite differences
    sK, sM = STIFF(case.x)[0], MASS(case.x)[0]
    np.testing.assert_allclose(sK @ dK, modes.eigenvalues, rtol=1e-9)
    np.testing.assert_allclose(sM @ dM, -modes.eigenvalues + _point_mass_part(case, modes), rtol=1e-9)


def _point_mass_part(case: Case, modes) -> np.ndarray:
    """λ_i φ_iᵀ M_point φ_i: the share of the mass term carried by the (constant) point masses."""
    pm = case.model.point_mass[case.model.free_dofs]
    return modes.eigenvalues * np.einsum("ik,i,ik->k", modes.vectors, pm, modes.vectors)


def test_eigenvalue_gradient_subset_and_cluster_warning(case: Case, caplog):
    _, _, modes, _ = case.solve(case.x)
    dK, dM = eigenvalue_scale_gradients(case.model, modes)
    dK2, dM2 = eigenvalue_scale_gradients(case.model, modes, indices=[2, 0])
    np.testing.assert_allclose(dK2, dK[:, [2, 0]], rtol=1e-12)
    np.testing.assert_allclose(dM2, dM[:, [2, 0]], rtol=1e-12)
    with pytest.raises(fe.InputError, match="mode indices"):
        eigenvalue_scale_gradients(case.model, modes, indices=[N_MODES])
    fake = fe.Modes(modes.eigenvalues, modes.vectors, clusters=[(0, 1)], shift=modes.shift)
    with caplog.at_level(logging.WARNING, logger="fem_eigopt.sensitivity.eigenvalues"):
        eigenvalue_scale_gradients(case.model, fake, indices=[1])
    assert any("cluster (0, 1)" in r.message for r in caplog.records)


# ---------------------------------------------------------------------------------------------
# repeated eigenvalues: a cantilever of square cross-section
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["hex1", "hex2"])
def square(request) -> Case:
    nx, n = (8, 2) if request.param == "hex1" else (4, 2)
    problem = fe.load_problem(REPO / "problems" / "cantilever3d.py",
                              {"nx": nx, "ny": n, "nz": n, "element": request.param})
    c = Case(problem, seed=3, n_modes=6)
    # symmetric random design: averaged over the 8 symmetries of the square cross-section (the
    # dihedral group D4 acting on (y, z)), whose 2-D representation keeps the bending pair double
    centres = c.model.basis.mesh.p[:, c.model.basis.mesh.t].mean(axis=1)
    width = c.model.basis.mesh.p[1].max()
    lookup = {tuple(k): e for e, k in enumerate(np.round(centres.T, 9))}
    perms = []
    for swap in (False, True):
        for flip_y in (False, True):
            for flip_z in (False, True):
                y, z = centres[1], centres[2]
                y, z = (z, y) if swap else (y, z)
                y = width - y if flip_y else y
                z = width - z if flip_z else z
                image = np.round(np.stack([centres[0], y, z], axis=1), 9)
                perms.append(np.array([lookup[tuple(p)] for p in image]))  # set-up only
    c.symmetrize = lambda v: np.mean([v[p] for p in perms], axis=0)
    c.x = c.symmetrize(c.x)
    return c


def _one_sided(f, h):
    """Second-order one-sided derivative (−3f(0) + 4f(h) − f(2h)) / 2h; f maps t -> array."""
    return (-3.0 * f(0.0) + 4.0 * f(h) - f(2.0 * h)) / (2.0 * h)


def test_cluster_directional_derivatives_square_cantilever(square: Case):
    c = square
    K, M, modes, _ = c.solve(c.x)
    assert (0, 1) in modes.clusters
    lam = modes.eigenvalues
    assert abs(lam[1] - lam[0]) <= 1e-9 * lam[0]
    cluster = (0, 1)
    GK, GM = cluster_scale_matrices(c.model, modes, cluster)
    assert GK.shape == (c.model.n_elements, 2, 2)
    np.testing.assert_allclose(GK, np.swapaxes(GK, 1, 2), rtol=0, atol=1e-12 * np.abs(GK).max())
    lam_bar = lam[:2].mean()
    sK_d, sM_d = STIFF(c.x)[1], MASS(c.x)[1]
    worst = 0.0
    for _ in range(5):
        d = c.direction()  # not symmetric: the cluster splits
        mu = cluster_directional_derivatives(GK, GM, lam_bar, sK_d * d, sM_d * d)
        fd = _one_sided(lambda t: c.solve(c.x + t * d)[2].eigenvalues[:2], 1e-4)
        err = np.max(np.abs(fd - mu)) / np.max(np.abs(mu))
        worst = max(worst, err)
        assert err <= 1e-5, (fd, mu, err)
        assert mu[1] - mu[0] > 1e-3 * np.max(np.abs(mu))  # a real split, not a trivial case
        # the generalised gradients f_sk (chained to x) contract with d to the same matrix
        f = cluster_generalized_gradients(GK, GM, lam_bar, sK_d, sM_d)
        np.testing.assert_allclose(np.linalg.eigvalsh(f @ d), mu, rtol=1e-12, atol=1e-12 * np.abs(mu).max())
    # the scale-factor form: [∂/∂s_K | ∂/∂s_M] columns
    fs = cluster_generalized_gradients(GK, GM, lam_bar)
    assert fs.shape == (2, 2, 2 * c.model.n_elements)


def test_cluster_sum_gradient_square_cantilever(square: Case):
    c = square
    _, _, modes, _ = c.solve(c.x)
    gK, gM = cluster_sum_gradient(c.model, modes, (0, 1))
    g = c.chain(gK, gM)
    d = c.direction()
    _check_gradient(lambda x: c.solve(x)[2].eigenvalues[:2].sum(), g, c.x, d)
    gKm, gMm = cluster_sum_gradient(c.model, modes, (0, 1), mean=True)
    np.testing.assert_allclose(gKm, gK / 2, rtol=1e-14)
    # along a symmetric direction the cluster stays double and moves as a whole by half the sum
    ds = c.symmetrize(d)
    mu = cluster_directional_derivatives(*cluster_scale_matrices(c.model, modes, (0, 1)),
                                             modes.eigenvalues[:2].mean(), STIFF(c.x)[1] * ds, MASS(c.x)[1] * ds)
    np.testing.assert_allclose(mu, [g @ ds / 2] * 2, rtol=1e-8)


# ---------------------------------------------------------------------------------------------
# eigenvector functionals
# ---------------------------------------------------------------------------------------------

MODE = 1


def _functionals(case: Case, target_modes):
    """amplitude, quadratic form and fixed-weight MAC of mode MODE."""
    model = case.model
    tip = np.flatnonzero(np.isclose(model.basis.doflocs[0], model.basis.doflocs[0].max()))
    tip = tip[model.free_index[tip] >= 0][:3]
    amplitude = ModalAmplitude.at_global_dofs(model, tip, weights=[1.0, 2.0, 0.5][: tip.size])
    rng = np.random.default_rng(7)
    L = sp.random(5, model.n_free, density=0.2, random_state=rng, format="csr")
    quadratic = QuadraticForm(L)
    mac = ModalAssurance(target_modes.vectors[:, MODE], model.mass())  # W = M0, solid mass
    return {"amplitude": amplitude, "quadratic": quadratic, "mac": mac}


@pytest.fixture(scope="module")
def functionals(case: Case):
    solid = ModalSolver(N_MODES, tol=0.0).solve(case.model.stiffness(), case.model.mass())
    return _functionals(case, solid)


@pytest.mark.parametrize("name", ["amplitude", "quadratic", "mac"])
def test_eigenvector_functional_gradients(case: Case, functionals, name):
    g_fun = functionals[name]
    K, M, modes, solver = case.solve(case.x)
    value, dg = g_fun(modes.vectors[:, MODE])
    gd = case.chain(*eigenvector_adjoint(case.model, K, M, modes, MODE, dg, solver="direct"))
    gi = case.chain(*eigenvector_adjoint(case.model, K, M, modes, MODE, dg, solver="minres",
                                             factorization=solver.factorization, tol=1e-13))
    assert np.linalg.norm(gi - gd) <= 1e-8 * np.linalg.norm(gd), np.linalg.norm(gi - gd) / np.linalg.norm(gd)
    d = case.direction()
    _check_gradient(lambda x: g_fun(case.solve(x)[2].vectors[:, MODE])[0], gd, case.x, d)


def test_functional_gradients_against_dphi_finite_differences(case: Case, functionals):
    # ∂g/∂φ of the example functionals themselves, by central differences in φ-space
    _, _, modes, _ = case.solve(case.x)
    phi = modes.vectors[:, MODE]
    v = case.rng.standard_normal(phi.size)
    for g_fun in functionals.values():
        _, dg = g_fun(phi)
        cd = central_difference(lambda p: g_fun(p)[0], phi, v, h=1e-6 / np.linalg.norm(v))
        assert abs(cd - dg @ v) <= 1e-6 * abs(dg @ v)


def test_mass_weighted_mac_total_gradient(case: Case):
    model = case.model
    target = ModalSolver(N_MODES, tol=0.0).solve(model.stiffness(), model.mass()).vectors[:, MODE]
    K, M, modes, solver = case.solve(case.x)
    value, dg, explicit = mass_weighted_mac(model, M, modes.vectors[:, MODE], target)
    gK, gM = eigenvector_adjoint(model, K, M, modes, MODE, dg, solver="minres",
                                     factorization=solver.factorization, tol=1e-13)
    g = case.chain(gK, gM + explicit)

    def f(x):
        _, Mx, m, _ = case.solve(x)
        return mass_weighted_mac(model, Mx, m.vectors[:, MODE], target)[0]

    assert 0.0 < value <= 1.0
    _check_gradient(f, g, case.x, case.direction())


def test_scale_factor_gradient_combines_eigenvalue_and_eigenvector_parts(case: Case, functionals):
    # g = Σ w_i λ_i + amplitude(φ_1) + MAC(φ_2 ...) with weights of mixed signs
    K, M, modes, solver = case.solve(case.x)
    w = np.array([1.0, -0.3, 0.2, 0.0])[:N_MODES] / modes.eigenvalues[0]
    amp, mac = functionals["amplitude"], ModalAssurance(modes.vectors[:, 2], case.model.mass())
    scale = 1.0 / amp(modes.vectors[:, MODE])[0]

    def g_of(m):
        return float(w @ m.eigenvalues + scale * amp(m.vectors[:, MODE])[0] + mac(m.vectors[:, 2])[0])

    dg_dphi = np.zeros_like(modes.vectors)
    dg_dphi[:, MODE] = scale * amp(modes.vectors[:, MODE])[1]
    dg_dphi[:, 2] = mac(modes.vectors[:, 2])[1]
    gK, gM = scale_factor_gradient(case.model, K, M, modes, w, dg_dphi)
    gK2, gM2 = scale_factor_gradient(case.model, K, M, modes, w, dg_dphi, solver="minres",
                                         factorization=solver.factorization, tol=1e-13)
    g, g2 = case.chain(gK, gM), case.chain(gK2, gM2)
    assert np.linalg.norm(g - g2) <= 1e-8 * np.linalg.norm(g)
    _check_gradient(lambda x: g_of(case.solve(x)[2]), g, case.x, case.direction())
    # without dg_dphi it is exactly the eigenvalue part
    gK0, gM0 = scale_factor_gradient(case.model, K, M, modes, w)
    dK, dM = eigenvalue_scale_gradients(case.model, modes)
    np.testing.assert_allclose(gK0, dK @ w, rtol=1e-12, atol=1e-12 * np.abs(gK0).max())
    np.testing.assert_allclose(gM0, dM @ w, rtol=1e-12, atol=1e-12 * np.abs(gM0).max())


def test_eigenvector_adjoint_input_errors(case: Case):
    K, M, modes, _ = case.solve(case.x)
    dg = np.ones(case.model.n_free)
    with pytest.raises(fe.InputError, match="adjoint solver = 'cg'"):
        eigenvector_adjoint(case.model, K, M, modes, 0, dg, solver="cg")
    with pytest.raises(fe.InputError, match="dg_dphi has shape"):
        eigenvector_adjoint(case.model, K, M, modes, 0, dg[:-1])
    clustered = fe.Modes(modes.eigenvalues, modes.vectors, clusters=[(1, 2)], shift=modes.shift)
    with pytest.raises(fe.InputError, match="simple eigenvalue"):
        eigenvector_adjoint(case.model, K, M, clustered, 2, dg)
    with pytest.raises(fe.InputError, match="dg_dlam has shape"):
        scale_factor_gradient(case.model, K, M, modes, np.ones(N_MODES + 1))
    fixed = case.model.fixed_dofs[:1]
    with pytest.raises(fe.InputError, match="fixed by supports"):
        ModalAmplitude.at_global_dofs(case.model, fixed)


# ---------------------------------------------------------------------------------------------
# no global matrix per parameter
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def medium():
    """A 2D quad2 model where a dense n_dof × n_dof matrix would be ~350 MB, its Ke ~2 MB."""
    c = Case(_problem_2d("quad2", 40, 20), seed=5, n_modes=6)
    return c


def _count_sparse_constructions(monkeypatch) -> list[int]:
    counter = [0]
    original = sp_base._spbase.__init__

    def counting(self, *args, **kwargs):
        counter[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sp_base._spbase, "__init__", counting)
    return counter


def test_sensitivities_build_no_global_matrix_per_parameter(medium: Case, monkeypatch):
    model = medium.model
    K, M, modes, solver = medium.solve(medium.x)
    n_elem, n_edof = model.Ke.shape[:2]
    k = modes.eigenvalues.size
    assert model.n_dofs**2 * 8 > 100 * n_elem * n_edof**2 * 8
    dg = ModalAmplitude(np.array([model.n_free - 1]))(modes.vectors[:, 0])[1]
    calls = {
        "eigenvalues": lambda: eigenvalue_scale_gradients(model, modes),
        "cluster": lambda: cluster_scale_matrices(model, modes, (0, 1)),
        "combined": lambda: scale_factor_gradient(model, K, M, modes, np.ones(k)),
        "eigenvector minres": lambda: eigenvector_adjoint(model, K, M, modes, 0, dg, solver="minres",
                                                              factorization=solver.factorization),
        "eigenvector direct": lambda: eigenvector_adjoint(model, K, M, modes, 0, dg, solver="direct"),
    }
    counter = _count_sparse_constructions(monkeypatch)
    sp.csr_matrix((3, 3))
    assert counter[0] == 1  # the counter sees sparse constructions
    # bounds: one element-matrix array (n_elem·n_edof²·8 bytes) for the contractions, k of them
    # for an eigenvector adjoint (it holds a few sparse-matrix data arrays and n_free × k blocks);
    # a dense n_dof × n_dof matrix would be over 100 times larger
    for name, call in calls.items():
        bound = n_elem * n_edof**2 * 8 * (k if name.startswith("eigenvector") else 1)
        counter[0] = 0
        tracemalloc.start()
        call()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < bound, (name, peak, bound)
        # a per-element global ∂K would construct ≥ n_elem sparse matrices
        assert counter[0] <= 10, (name, counter[0])
