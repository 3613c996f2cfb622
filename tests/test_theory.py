"""Verification against theory: Euler–Bernoulli beams, convergence rates, rigid-body modes.

References
----------
- Euler–Bernoulli frequencies ω_n = (β_n L)² √(EI / (ρ A L⁴)) and the roots β_n L:
  R. D. Blevins, *Formulas for Natural Frequency and Mode Shape* (1979), Table 8-1.
- Cantilever with a tip mass, frequency equation
  1 + cos β cosh β + r β (cos β sinh β − sin β cosh β) = 0, r = m_tip / (ρ A L):
  P. A. A. Laura, J. L. Pombo, E. A. Susemihl, J. Sound Vib. 37 (1974) 161–168.
- Conforming finite elements with consistent mass converge from above, λ_h − λ = O(h^{2p}) for
  smooth eigenfunctions and degree p: G. Strang, G. Fix, *An Analysis of the Finite Element
  Method* (1973), ch. 6.
- Elastic waves in a box whose faces slide (normal displacement 0, no tangential traction):
  u_i ∝ sin(k_i x_i) Π_{j≠i} cos(k_j x_j), k = (iπ/a, jπ/b, lπ/c); one dilatational mode
  λ = (λ_L + 2μ)|k|²/ρ and (number of non-zero k components − 1) shear modes λ = μ|k|²/ρ
  (the separable solution of Navier's equations, e.g. K. F. Graff, *Wave Motion in Elastic
  Solids* (1975), §5.1).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
from scipy.optimize import brentq

import fem_eigopt as fe
from fem_eigopt.fem.assembly import build_model

# Blevins (1979), Table 8-1
BETA_L = {
    "cantilever": (1.87510407, 4.69409113, 7.85475744),
    "clamped-clamped": (4.73004074, 7.85320462, 10.99560784),
    "free-free": (4.73004074, 7.85320462, 10.99560784),
}

E, RHO, LENGTH = 1.0, 1.0, 1.0


def euler_bernoulli(beta_l, h: float, t: float = 1.0) -> np.ndarray:
    """ω_n = (β_n L)² √(EI/(ρ A L⁴)), I = t h³/12, A = t h."""
    inertia, area = t * h**3 / 12.0, t * h
    return np.asarray(beta_l) ** 2 * np.sqrt(E * inertia / (RHO * area * LENGTH**4))


def beam_problem(case: str, h: float, nx: int, ny: int, element: str = "quad2", n_modes: int = 8,
                 point_masses=()) -> fe.Problem:
    # ν = 0: Euler–Bernoulli uses E alone. With ν ≠ 0 a fully clamped 2D edge also stops the
    # lateral (Poisson) contraction there, which stiffens the root by O(ν²) and is not in the beam
    # theory; plane stress with ν = 0 removes that effect and nothing else.
    supports = {
        "cantilever": (fe.Support("left"),),
        "clamped-clamped": (fe.Support("left"), fe.Support("right")),
        "free-free": (),
    }[case]
    return fe.Problem(
        mesh=fe.rectangle(LENGTH, h, nx, ny),
        element=element,
        material=fe.Material(E=E, nu=0.0, density=RHO, model="plane_stress", thickness=1.0),
        supports=supports,
        point_masses=point_masses,
        analysis=fe.Analysis(n_modes=n_modes),
    )


def bending_omegas(model, modes, transverse, n: int = 3) -> np.ndarray:
    """The first ``n`` bending ω: skip rigid modes (λ ≈ 0), keep transverse-dominant shapes."""
    lam = modes.eigenvalues
    elastic = lam > 1e-6 * lam.max()
    bending = transverse(model, modes.vectors, axis=1) > 0.5
    omegas = np.sqrt(lam[elastic & bending])
    assert omegas.size >= n, f"only {omegas.size} bending modes among {lam}"
    return omegas[:n]


# L/h = 100 (h = 0.01): the Timoshenko (shear + rotary inertia) correction of the third mode is
# ≈ 0.1 %, so the 0.5 % tolerance measures the FE model, not the beam theory. 100 × 2 quadratic
# quads: 2000 dofs. Observed relative errors (%): cantilever −0.006, −0.044, −0.106;
# clamped-clamped −0.052, −0.123, −0.218; free-free −0.032, −0.089, −0.172.
@pytest.mark.parametrize("case", ["cantilever", "clamped-clamped", "free-free"])
def test_euler_bernoulli_beam(case, solve, transverse):
    h = 0.01
    model, modes = solve(beam_problem(case, h, nx=100, ny=2))
    omega = bending_omegas(model, modes, transverse)
    reference = euler_bernoulli(BETA_L[case], h)
    np.testing.assert_allclose(omega, reference, rtol=5e-3)
    if case == "free-free":
        # exactly three rigid-body modes, all far below the first bending mode
        assert np.sum(np.abs(modes.eigenvalues) < 1e-6 * modes.eigenvalues[3]) == 3


def test_cantilever_tip_mass(solve, transverse):
    """A tip mass equal to the beam mass: β₁L = 1.2479 (Laura et al. 1974), within 0.5 %."""
    h = 0.01
    ratio = 1.0
    beam_mass = RHO * h * LENGTH  # thickness 1
    tip = fe.PointMass(ratio * beam_mass, at=(LENGTH, h / 2))  # the mid-height vertex of the end

    def equation(b):
        return 1 + np.cos(b) * np.cosh(b) + ratio * b * (np.cos(b) * np.sinh(b) - np.sin(b) * np.cosh(b))

    beta1 = brentq(equation, 0.5, 1.8)
    assert beta1 == pytest.approx(1.2479, abs=1e-4)  # the published root for r = 1
    model, modes = solve(beam_problem("cantilever", h, nx=100, ny=2, n_modes=4, point_masses=(tip,)))
    omega1 = bending_omegas(model, modes, transverse, n=1)[0]
    assert omega1 == pytest.approx(euler_bernoulli([beta1], h)[0], rel=5e-3)
    # and the mass lowers ω₁ well below the bare cantilever's (factor (1.2479/1.8751)² = 0.443)
    assert omega1 / euler_bernoulli([BETA_L["cantilever"][0]], h)[0] == pytest.approx(0.443, abs=0.005)


# --------------------------------------------------------------------------------------------
# convergence rates


def _free_rectangle(element: str, kind: str, n: int, n_modes: int = 6) -> np.ndarray:
    """Eigenvalues of a free 1 × 0.5 plate (ν = 0.3) on a 2n × n mesh.

    A free rectangle has no stress singularity (traction-free right-angle corners are regular), so
    the eigenfunctions are smooth and the a-priori rate O(h^{2p}) applies; a thick domain makes the
    FE error, not a beam-theory error, the thing measured.
    """
    problem = fe.Problem(
        mesh=fe.rectangle(1.0, 0.5, 2 * n, n, kind=kind),
        element=element,
        material=fe.Material(E=1.0, nu=0.3, density=1.0),
        analysis=fe.Analysis(n_modes=n_modes),
    )
    model = build_model(problem)
    return fe.ModalSolver(n_modes).solve(model.stiffness(), model.mass()).eigenvalues


@pytest.fixture(scope="module")
def plate_reference() -> np.ndarray:
    """λ₄…λ₆ of the free plate: quad2 at n = 32 (16 770 dofs) Richardson-extrapolated with n = 16
    (rate 4); the extrapolation moves them by ≤ 4e-7 relative, 10× below the smallest error fitted."""
    fine, coarse = _free_rectangle("quad2", "quad", 32)[3:], _free_rectangle("quad2", "quad", 16)[3:]
    return fine + (fine - coarse) / 15.0


# Observed slopes (modes 4, 5, 6): quad1 1.98 1.99 1.98; quad2 3.91 3.99 3.95;
# tri1 1.98 1.91 1.94; tri2 3.77 3.91 3.81.
@pytest.mark.parametrize(
    "element, kind, ns, rate",
    [
        ("quad1", "quad", (4, 8, 16), 2.0),
        ("quad2", "quad", (4, 8, 16), 4.0),
        ("tri1", "tri", (8, 16, 32), 2.0),
        ("tri2", "tri", (4, 8, 16), 4.0),
    ],
)
def test_convergence_rate_2d(element, kind, ns, rate, plate_reference):
    lam = np.array([_free_rectangle(element, kind, n)[3:] for n in ns])  # skip 3 rigid modes
    err = (lam - plate_reference) / plate_reference
    assert np.all(err > 0), f"not approached from above: {err}"
    h = 1.0 / np.asarray(ns)
    for j in range(err.shape[1]):
        slope = np.polyfit(np.log(h), np.log(err[:, j]), 1)[0]
        assert slope == pytest.approx(rate, abs=0.3), f"mode {j + 4}: slope {slope:.3f}"
    # errors fall monotonically with h
    assert np.all(np.diff(err, axis=0) < 0)


def _sliding_box_exact(a, b, c, lam_l, mu, rho, count):
    """The lowest ``count`` exact eigenvalues of the sliding-face box (see module docstring)."""
    values = []
    for i in range(5):
        for j in range(5):
            for k in range(5):
                nonzero = (i > 0) + (j > 0) + (k > 0)
                if nonzero == 0:
                    continue
                k2 = (i * np.pi / a) ** 2 + (j * np.pi / b) ** 2 + (k * np.pi / c) ** 2
                values += [(lam_l + 2 * mu) * k2 / rho] + [mu * k2 / rho] * (nonzero - 1)
    return np.sort(values)[:count]


# Observed (hex1, n = 2, 4, 8): errors of λ₁ 0.0524, 0.0129, 0.00322; slopes 2.01, 2.08, 2.08.
# tet1 (6 tetrahedra per cell): slopes 1.99, 2.02, 2.04.
@pytest.mark.parametrize("element, kind", [("hex1", "hex"), ("tet1", "tet")])
def test_convergence_rate_3d_sliding_box(element, kind):
    """3D against an exact solution; the supports fix one component per face pair (a predicate
    with ``components``), which also checks component-wise supports."""
    a, b, c = 2.0, 1.0, 1.0
    material = fe.Material(E=1.0, nu=0.3, density=1.0, model="solid")

    def faces(axis, length):
        return fe.Support(lambda x: np.isclose(x[axis], 0.0) | np.isclose(x[axis], length), components=(axis,))

    exact = _sliding_box_exact(a, b, c, *material.lame(), 1.0, 3)
    # λ₁: the 1D dilatational wave (π/a, 0, 0); λ₂ = λ₃: shear (π/a, π/b, 0) and (π/a, 0, π/c)
    np.testing.assert_allclose(exact, [3.32150148, 4.74500212, 4.74500212], rtol=1e-8)
    ns = (2, 4, 8)
    errs = []
    for n in ns:
        problem = fe.Problem(
            mesh=fe.box(a, b, c, 2 * n, n, n, kind=kind), element=element, material=material,
            supports=(faces(0, a), faces(1, b), faces(2, c)), analysis=fe.Analysis(n_modes=3),
        )
        model = build_model(problem)
        lam = fe.ModalSolver(4).solve(model.stiffness(), model.mass()).eigenvalues[:3]
        errs.append((lam - exact) / exact)
    errs = np.array(errs)
    assert np.all(errs > 0)
    h = 1.0 / np.asarray(ns)
    for j in range(3):
        slope = np.polyfit(np.log(h), np.log(errs[:, j]), 1)[0]
        assert slope == pytest.approx(2.0, abs=0.3), f"mode {j + 1}: slope {slope:.3f}"
    assert errs[-1, 0] < 4e-3  # observed 3.2e-3 (hex1), 3.2e-3 (tet1)


# --------------------------------------------------------------------------------------------
# rigid-body modes of a free body


@pytest.mark.parametrize(
    "mesh, element, model_name, n_rigid",
    [
        (fe.rectangle(2.0, 1.0, 6, 3), "quad2", "plane_stress", 3),
        (fe.rectangle(2.0, 1.0, 6, 3, kind="tri"), "tri1", "plane_strain", 3),
        (fe.box(2.0, 1.0, 1.0, 4, 2, 2), "hex1", "solid", 6),
        (fe.box(1.0, 1.0, 1.0, 2, 2, 2, kind="tet"), "tet2", "solid", 6),
    ],
)
def test_free_body_rigid_modes(mesh, element, model_name, n_rigid, solve):
    problem = fe.Problem(mesh=mesh, element=element,
                         material=fe.Material(E=210e9, nu=0.3, density=7850.0, model=model_name),
                         analysis=fe.Analysis(n_modes=n_rigid + 3))
    model, modes = solve(problem)
    lam = modes.eigenvalues
    lam_next = lam[n_rigid]
    assert np.sum(np.abs(lam) < 1e-6 * lam_next) == n_rigid
    # the elastic eigenvalues agree with a dense solve of the same model
    dense = sla.eigh(model.stiffness().toarray(), model.mass().toarray(), eigvals_only=True)
    np.testing.assert_allclose(lam[n_rigid:], dense[n_rigid:n_rigid + 3], rtol=1e-10)
    # the rigid modes are reported as one cluster
    assert tuple(range(n_rigid)) in modes.clusters
