"""The density design chain: filters, projection, passive regions, composed chain, volume fraction.

Every linear stage passes a dot-product (transpose) test, every non-linear one a Taylor test and
central differences; the filters are checked against what they are meant to compute.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse as sp
import skfem
from scipy.spatial import cKDTree

from fem_eigopt.design.density import DensityChain, DesignMap, PassiveRegions
from fem_eigopt.design.filters import (
    DensityFilter,
    HelmholtzFilter,
    element_centroids,
    element_volumes,
)
from fem_eigopt.design.projection import BetaContinuation, HeavisideProjection
from fem_eigopt.errors import InputError
from fem_eigopt.problem.mesh import box, rectangle
from fem_eigopt.sensitivity.gradcheck import central_difference, taylor_test

RNG_SEED = 20240611


def unstructured_triangles(seed: int = 1) -> skfem.Mesh:
    """A refined triangle mesh of the unit square with randomly moved interior vertices."""
    mesh = skfem.MeshTri.init_symmetric().refined(4)
    rng = np.random.default_rng(seed)
    p = mesh.p.copy()
    interior = np.setdiff1d(np.arange(mesh.nvertices), mesh.boundary_nodes())
    h = 1.0 / 32  # distance between a square's corner and its centre vertex: h √2
    p[:, interior] += rng.uniform(-0.2 * h, 0.2 * h, size=(2, interior.size))
    return skfem.MeshTri(p, mesh.t)


MESHES = {
    "quad": lambda: rectangle(2.0, 1.0, 24, 12),
    "tri": lambda: rectangle(2.0, 1.0, 12, 6, kind="tri"),
    "unstructured-tri": unstructured_triangles,
    "hex": lambda: box(1.0, 1.0, 1.0, 5, 4, 3),
    "tet": lambda: box(1.0, 1.0, 1.0, 3, 3, 3, kind="tet"),
}
FILTERS = {
    "density": lambda m, r: DensityFilter(m, r),
    "density-unweighted": lambda m, r: DensityFilter(m, r, volume_weighted=False),
    "helmholtz": lambda m, r: HelmholtzFilter(m, r),
    "helmholtz-superlu": lambda m, r: HelmholtzFilter(m, r, backend="superlu"),
}


def relative_gap(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b))


# ----------------------------------------------------------------------------------------------- #
# filters


@pytest.mark.parametrize("mesh_name", MESHES)
@pytest.mark.parametrize("filter_name", FILTERS)
def test_filter_transpose_and_uniform_field(mesh_name, filter_name):
    mesh = MESHES[mesh_name]()
    F = FILTERS[filter_name](mesh, 0.3)
    n = mesh.nelements
    rng = np.random.default_rng(RNG_SEED)
    x, y = rng.random(n), rng.standard_normal(n)
    # dot-product test <F x, y> = <x, Fᵀ y>
    assert relative_gap(F.forward(x) @ y, x @ F.vjp(x, y)) < 1e-12
    assert np.allclose(F.jvp(x, y), F.forward(y), rtol=0, atol=1e-14)
    # a uniform field stays uniform, and the filter really averages (non-trivial on random input)
    assert np.max(np.abs(F.forward(np.full(n, 0.37)) - 0.37)) < 1e-13
    assert np.std(F.forward(x)) < 0.9 * np.std(x)


@pytest.mark.parametrize("mesh_name", MESHES)
def test_density_filter_vjp_is_bitwise_the_transpose_product(mesh_name):
    # vjp keeps H̃ᵀ as its own CSR matrix: the same sums in the same order as matrix.T @ dy
    # (rounding-sensitive optimisation paths must not see a change)
    mesh = MESHES[mesh_name]()
    F = DensityFilter(mesh, 0.3)
    dy = np.random.default_rng(4).standard_normal(mesh.nelements)
    assert np.array_equal(F.vjp(None, dy), F.matrix.T @ dy)
    assert np.array_equal(F.vjp(None, 2.0 * dy), F.matrix.T @ (2.0 * dy))  # the kept transpose


@pytest.mark.parametrize("mesh_name", MESHES)
def test_density_filter_matrix_is_normalised_hat(mesh_name):
    mesh = MESHES[mesh_name]()
    r = 0.3
    F = DensityFilter(mesh, r)
    H = F.matrix
    assert sp.isspmatrix_csr(H) and H.shape == (mesh.nelements,) * 2
    assert np.max(np.abs(np.asarray(H.sum(axis=1)).ravel() - 1.0)) < 1e-14
    assert H.min() >= 0.0
    # one row by brute force: w_ij v_j / Σ w_ij v_j with w = max(0, r - |c_i - c_j|)
    c, v = element_centroids(mesh), element_volumes(mesh)
    i = mesh.nelements // 2
    w = np.maximum(0.0, r - np.linalg.norm(c - c[:, [i]], axis=0)) * v
    assert np.max(np.abs(H[[i]].toarray().ravel() - w / w.sum())) < 1e-15


def test_element_volumes_sum_to_domain_measure():
    assert abs(element_volumes(unstructured_triangles()).sum() - 1.0) < 1e-13
    assert abs(element_volumes(box(1.0, 2.0, 3.0, 3, 2, 4, kind="tet")).sum() - 6.0) < 1e-12
    assert abs(element_volumes(rectangle(2.0, 1.0, 7, 3)).sum() - 2.0) < 1e-13


def _continuum_hat_filter(points: np.ndarray, f, r: float, n_quad: int = 200) -> np.ndarray:
    """∫ w(|c-y|) f(y) dy / ∫ w(|c-y|) dy over the unit square, by a fine midpoint rule."""
    g = (np.arange(n_quad) + 0.5) / n_quad
    q = np.array(np.meshgrid(g, g)).reshape(2, -1)
    D = cKDTree(points.T).sparse_distance_matrix(cKDTree(q.T), r, output_type="coo_matrix")
    W = sp.csr_matrix((r - D.data, (D.row, D.col)), shape=D.shape)
    return (W @ f(q)) / np.asarray(W.sum(axis=1)).ravel()


def test_volume_weighting_is_mesh_consistent_on_a_graded_mesh():
    # Fine cells near x = 0, coarse near x = 1: without volume weights the filter over-weights the
    # fine side; with them it approximates the continuum hat convolution.
    mesh = skfem.MeshQuad.init_tensor(np.linspace(0.0, 1.0, 41) ** 2, np.linspace(0.0, 1.0, 21))
    r = 0.15
    c = element_centroids(mesh)
    f = lambda p: np.sin(3.0 * p[0])  # noqa: E731
    reference = _continuum_hat_filter(c, f, r)
    err_weighted = np.max(np.abs(DensityFilter(mesh, r).forward(f(c)) - reference))
    err_plain = np.max(np.abs(DensityFilter(mesh, r, volume_weighted=False).forward(f(c)) - reference))
    assert err_weighted < 5e-3        # observed 2.6e-3
    assert err_plain > 10 * err_weighted  # observed 7.4e-2


def test_unstructured_mesh_filter_matches_continuum():
    mesh = unstructured_triangles()
    r = 0.2
    c = element_centroids(mesh)
    f = lambda p: np.cos(2.0 * p[0]) * p[1] ** 2  # noqa: E731
    reference = _continuum_hat_filter(c, f, r)
    assert np.max(np.abs(DensityFilter(mesh, r).forward(f(c)) - reference)) < 5e-3


def test_small_radius_gives_identity(caplog):
    mesh = rectangle(1.0, 1.0, 10, 10)
    x = np.random.default_rng(0).random(mesh.nelements)
    with caplog.at_level(logging.WARNING, logger="fem_eigopt.design.filters"):
        F = DensityFilter(mesh, 0.05)  # element size 0.1
    assert F.is_identity and np.array_equal(F.forward(x), x)
    assert "identity" in caplog.text
    for F0 in (DensityFilter(mesh, 0.0), HelmholtzFilter(mesh, 0.0)):
        assert F0.is_identity
        assert np.array_equal(F0.forward(x), x) and np.array_equal(F0.vjp(x, x), x)
    assert not DensityFilter(mesh, 0.11).is_identity


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "wide"])
def test_bad_radius_raises(bad):
    mesh = rectangle(1.0, 1.0, 4, 4)
    with pytest.raises(InputError, match="radius"):
        DensityFilter(mesh, bad)
    with pytest.raises(InputError, match="radius"):
        HelmholtzFilter(mesh, bad)


def test_wrong_input_shape_raises():
    F = DensityFilter(rectangle(1.0, 1.0, 4, 4), 0.3)
    with pytest.raises(InputError, match=r"allowed: \(16,\)"):
        F.forward(np.ones(15))


def _rms_width(mesh, F, centre):
    """Root-mean-square distance of the response to one solid element from that element."""
    c, v = element_centroids(mesh), element_volumes(mesh)
    j = int(np.argmin(np.sum((c - np.asarray(centre)[:, None]) ** 2, axis=0)))
    e = np.zeros(mesh.nelements)
    e[j] = 1.0
    y = F.forward(e)
    d2 = np.sum((c - c[:, [j]]) ** 2, axis=0)
    return np.sqrt(np.sum(y * v * d2) / np.sum(y * v))


def test_helmholtz_radius_matches_density_filter_radius():
    # Second moments in 2D: hat (cone) kernel 0.3 r², Helmholtz kernel 4 r_H² = r²/3 with
    # r_H = r/(2√3) (Lazarov & Sigmund 2011): RMS widths 0.548 r and 0.577 r.
    mesh = rectangle(1.0, 1.0, 61, 61)
    for r in (0.1, 0.15):
        w_density = _rms_width(mesh, DensityFilter(mesh, r), (0.5, 0.5)) / r
        w_helmholtz = _rms_width(mesh, HelmholtzFilter(mesh, r), (0.5, 0.5)) / r
        assert abs(w_density - np.sqrt(0.3)) < 0.02      # observed 0.546, 0.547
        assert abs(w_helmholtz - np.sqrt(1 / 3)) < 0.02  # observed 0.585, 0.581
        assert 1.0 < w_helmholtz / w_density < 1.12


def test_helmholtz_small_radius_approaches_identity():
    f = lambda p: np.sin(np.pi * p[0]) * np.cos(2.0 * p[1]) + p[0] ** 2  # noqa: E731
    errors = {}
    for n in (20, 40):
        mesh = rectangle(1.0, 1.0, n, n)
        x = f(element_centroids(mesh))
        errors[n] = [np.max(np.abs(HelmholtzFilter(mesh, r).forward(x) - x))
                     for r in (0.2, 0.1, 0.05, 0.01, 1e-4)]
    for n, e in errors.items():
        assert all(a > b for a, b in zip(e, e[1:]))  # smaller radius, closer to x
        assert e[-1] < 0.5 / n                          # what is left is the P0→P1→P0 round trip
    # and that remainder vanishes with the mesh (max norm, set by the boundary layer: rate 1)
    assert 1.8 < errors[20][-1] / errors[40][-1] < 2.2


def test_helmholtz_factorisation_is_done_once():
    F = HelmholtzFilter(rectangle(1.0, 1.0, 8, 8), 0.2, backend="superlu")
    x = np.linspace(0, 1, 64)
    for _ in range(3):
        F.vjp(x, F.forward(x))
    assert F._solver.n_numeric == 1


# ----------------------------------------------------------------------------------------------- #
# projection and continuation


@pytest.mark.parametrize("beta, eta", [(1.0, 0.5), (8.0, 0.5), (16.0, 0.3), (4.0, 0.0), (4.0, 1.0)])
def test_projection_derivative(beta, eta):
    P = HeavisideProjection(beta, eta)
    rng = np.random.default_rng(RNG_SEED)
    x = rng.uniform(0.0, 1.0, 200)
    # maps 0 -> 0 and 1 -> 1, monotone
    assert abs(P.forward(np.array([0.0]))[0]) < 1e-15 and abs(P.forward(np.array([1.0]))[0] - 1) < 1e-15
    assert np.all(P.derivative(x) > 0)
    # element-wise central differences
    h = 1e-6
    fd = (P.forward(x + h) - P.forward(x - h)) / (2 * h)
    # (absolute floor: far from η the slope is ~1e-9 and fd carries round-off eps |x̄| / h ~ 2e-10)
    assert np.all(np.abs(fd - P.derivative(x)) < 1e-6 * np.abs(P.derivative(x)) + 1e-9)
    # Taylor test of J(x) = Σ a_i x̄_i with gradient vjp(x, a)
    a = rng.standard_normal(200)
    d = rng.standard_normal(200)
    result = taylor_test(lambda y: a @ P.forward(y), P.vjp(x, a), x, d, h0=0.02 / beta)
    assert result.passed(2.0, 0.2), result.rates


def test_projection_identity_and_threshold():
    x = np.linspace(0.0, 1.0, 11)
    for P in (HeavisideProjection(0.0), HeavisideProjection(None)):
        assert P.is_identity and np.array_equal(P.forward(x), x)
        assert np.array_equal(P.vjp(x, x), x)
    P = HeavisideProjection(64.0, 0.4)
    y = P.forward(np.array([0.3, 0.4, 0.5]))
    assert y[0] < 1e-2 and y[2] > 1 - 1e-2
    # x̄(η) = tanh(βη) / (tanh(βη) + tanh(β(1-η)))
    assert abs(y[1] - np.tanh(64 * 0.4) / (np.tanh(64 * 0.4) + np.tanh(64 * 0.6))) < 1e-15


@pytest.mark.parametrize("kwargs", [dict(beta=-1.0), dict(beta=float("nan")), dict(beta=2.0, eta=1.5)])
def test_projection_bad_parameters(kwargs):
    with pytest.raises(InputError):
        HeavisideProjection(**kwargs)


def test_continuation_every():
    schedule = BetaContinuation(beta0=1.0, factor=2.0, beta_max=8.0, every=3)
    betas, changes = [], []
    for _ in range(12):
        changes.append(schedule.step(change=1.0))
        betas.append(schedule.beta)
    assert betas == [1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8, 8]
    assert [i + 1 for i, c in enumerate(changes) if c] == [3, 6, 9]
    assert schedule.finished
    schedule.reset()
    assert schedule.beta == 1.0 and schedule.iterations_at_level == 0


def test_continuation_clips_at_beta_max_and_tolerance_trigger():
    schedule = BetaContinuation(beta0=1.0, factor=3.0, beta_max=10.0, every=1)
    assert [(schedule.step(), schedule.beta) for _ in range(4)] == [
        (True, 3.0), (True, 9.0), (True, 10.0), (False, 10.0)]
    schedule = BetaContinuation(beta0=2.0, factor=2.0, beta_max=64.0, every=None, tolerance=1e-2, min_every=2)
    changes = [0.5, 5e-3, 0.3, 0.2, 1e-3, 5e-3, 1e-3]
    betas = []
    for dz in changes:
        schedule.step(dz)
        betas.append(schedule.beta)
    # small change at level iteration 1 is ignored (min_every=2), triggers at level iteration 2
    assert betas == [2.0, 4.0, 4.0, 4.0, 8.0, 8.0, 16.0]


@pytest.mark.parametrize("kwargs", [dict(beta0=0.0), dict(factor=1.0), dict(beta0=4.0, beta_max=2.0),
                                    dict(every=0), dict(every=None, tolerance=None), dict(tolerance=-1.0)])
def test_continuation_bad_parameters(kwargs):
    with pytest.raises(InputError):
        BetaContinuation(**kwargs)


# ----------------------------------------------------------------------------------------------- #
# passive regions and the composed chain


def _passive_map(mesh, x_min=1e-3):
    # a solid pad on the left edge and a void hole in the middle (centroid predicates)
    return DesignMap(
        mesh,
        solid=lambda c: c[0] < 0.2,
        void=[lambda c: (c[0] - 1.0) ** 2 + (c[1] - 0.5) ** 2 < 0.2**2],
        x_min=x_min,
    )


def test_design_map_forward_transpose_and_reapply():
    mesh = rectangle(2.0, 1.0, 20, 10)
    dm = _passive_map(mesh)
    assert PassiveRegions is DesignMap
    assert dm.solid.sum() == 20 and dm.void.sum() == 12 and dm.n_active == 200 - 32
    rng = np.random.default_rng(RNG_SEED)
    z = rng.random(dm.n_active)
    x = dm.forward(z)
    assert np.all(x[dm.solid] == 1.0) and np.all(x[dm.void] == 1e-3) and np.array_equal(x[dm.active], z)
    # dot-product test of the linear part P (forward is P z + x_p)
    y = rng.standard_normal(mesh.nelements)
    Pz = dm.forward(z) - dm.forward(np.zeros(dm.n_active))
    assert np.array_equal(Pz, dm.jvp(z, z))
    assert relative_gap(Pz @ y, z @ dm.vjp(z, y)) < 1e-12
    # reapply restores passive values; its transpose zeroes passive cotangents
    x_blur = DensityFilter(mesh, 0.3).forward(x)
    assert np.any(x_blur[dm.solid] < 1.0)
    x_fixed = dm.reapply(x_blur)
    assert np.all(x_fixed[dm.solid] == 1.0) and np.all(x_fixed[dm.void] == 1e-3)
    assert np.array_equal(x_fixed[dm.active], x_blur[dm.active])
    g = dm.reapply_vjp(y)
    assert np.all(g[~dm.active] == 0.0) and np.array_equal(g[dm.active], y[dm.active])
    assert relative_gap(dm.reapply_vjp(x) @ y, x @ dm.reapply_vjp(y)) < 1e-12


def test_design_map_bad_regions():
    mesh = rectangle(1.0, 1.0, 4, 4)
    with pytest.raises(InputError, match="both solid and void"):
        DesignMap(mesh, solid=lambda c: c[0] < 0.5, void=lambda c: c[1] < 0.5)
    with pytest.raises(InputError, match="bool mask"):
        DesignMap(mesh, solid=lambda c: c[0])
    with pytest.raises(InputError, match="every element"):
        DesignMap(mesh, solid=lambda c: c[0] < 2.0)
    with pytest.raises(InputError, match="x_min"):
        DesignMap(mesh, x_min=1.0)
    with pytest.raises(InputError, match=r"allowed: \(16,\)"):
        DesignMap(mesh).forward(np.ones(15))


def _chains(mesh):
    dm = _passive_map(mesh)
    yield "density+proj", DensityChain.build(mesh, dm, DensityFilter(mesh, 0.25), HeavisideProjection(6.0, 0.45), 1e-3)
    yield "helmholtz+proj", DensityChain.build(mesh, dm, HelmholtzFilter(mesh, 0.25), HeavisideProjection(3.0))
    yield "density only", DensityChain.build(mesh, dm, DensityFilter(mesh, 0.25))
    yield "passive only", DensityChain(dm)


@pytest.mark.parametrize("which", range(4))
def test_chain_linearisation_and_gradient(which):
    mesh = rectangle(2.0, 1.0, 20, 10)
    name, chain = list(_chains(mesh))[which]
    rng = np.random.default_rng(RNG_SEED + which)
    z = rng.uniform(0.05, 0.95, chain.n_active)
    dz, y = rng.standard_normal(chain.n_active), rng.standard_normal(mesh.nelements)
    rho, pullback = chain(z)
    assert np.all(rho[chain.design_map.solid] == 1.0) and np.all(rho[chain.design_map.void] == 1e-3)
    assert np.all((rho >= chain.floor) & (rho <= 1.0))
    # dot-product test of the linearisation: <J dz, y> = <dz, Jᵀ y>
    assert relative_gap(chain.jvp(z, dz) @ y, dz @ pullback(y)) < 1e-12
    assert np.array_equal(pullback(y), chain.vjp(z, y))
    # a non-linear function of the densities: J(ρ̄) = Σ a_e ρ̄_e², ∂J/∂ρ̄ = 2 a ρ̄
    a = rng.random(mesh.nelements)
    J = lambda zz: a @ chain.forward(zz) ** 2  # noqa: E731
    grad = pullback(2.0 * a * rho)
    fd = central_difference(J, z, dz, h=1e-6)
    assert relative_gap(fd, grad @ dz) < 1e-6, name
    if name != "passive only":  # (linear in z there: the Taylor remainder is round-off)
        result = taylor_test(J, grad, z, dz, h0=1e-2)
        assert result.passed(2.0, 0.2), (name, result.rates)


def test_chain_with_beta_shares_filter():
    mesh = rectangle(2.0, 1.0, 10, 5)
    chain = DensityChain.build(mesh, DesignMap(mesh), DensityFilter(mesh, 0.3), HeavisideProjection(1.0, 0.4))
    sharper = chain.with_beta(8.0)
    assert sharper.filter is chain.filter and sharper.projection == HeavisideProjection(8.0, 0.4)
    z = np.linspace(0.2, 0.8, 50)
    # a sharper projection pushes densities away from the threshold
    assert np.mean(np.abs(sharper.forward(z) - 0.5)) > np.mean(np.abs(chain.forward(z) - 0.5))


def test_volume_fraction_and_gradient():
    # graded mesh: the fraction must weigh by element volume, not count elements
    mesh = skfem.MeshQuad.init_tensor(np.linspace(0.0, 1.0, 11) ** 2, np.linspace(0.0, 1.0, 6))
    dm = DesignMap(mesh, solid=lambda c: c[0] > 0.81)  # the last column of cells: x in [0.81, 1]
    z = np.full(dm.n_active, 0.4)
    rho = DensityChain.build(mesh, dm).forward(z)
    value, grad = DensityChain.build(mesh, dm).volume_fraction(rho)
    assert abs(value - (0.4 * 0.81 + 1.0 * 0.19)) < 1e-14  # a count-based mean would give 0.46
    assert abs(rho.mean() - 0.46) < 1e-14
    v = element_volumes(mesh)
    assert np.max(np.abs(grad - v / v.sum())) < 1e-16
    assert abs(DensityChain(dm).volume_fraction(rho)[0] - rho.mean()) < 1e-15  # no volumes: plain mean
    # the gradient pulled back to z against central differences and a Taylor test (rate: V is
    # linear in z here, so test the non-linear chain with projection instead)
    proj_chain = DensityChain.build(mesh, dm, DensityFilter(mesh, 0.2), HeavisideProjection(4.0))
    rng = np.random.default_rng(RNG_SEED)
    z = rng.uniform(0.1, 0.9, dm.n_active)
    d = rng.standard_normal(dm.n_active)
    V = lambda zz: proj_chain.volume_fraction(proj_chain.forward(zz))[0]  # noqa: E731
    rho, pullback = proj_chain(z)
    g = pullback(proj_chain.volume_fraction(rho)[1])
    assert relative_gap(central_difference(V, z, d, h=1e-6), g @ d) < 1e-6
    assert taylor_test(V, g, z, d, h0=1e-2).passed(2.0, 0.2)


def test_chain_bad_input():
    mesh = rectangle(1.0, 1.0, 4, 4)
    with pytest.raises(InputError, match="floor"):
        DensityChain(DesignMap(mesh), floor=1.0)
    with pytest.raises(InputError, match="filter has"):
        DensityChain(DesignMap(mesh), DensityFilter(rectangle(1.0, 1.0, 5, 5), 0.3))
