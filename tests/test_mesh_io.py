"""Mesh import (meshio: Gmsh 2.2 and VTU) and mapped geometry."""

from __future__ import annotations

import meshio
import numpy as np
import pytest

import fem_eigopt as fe

PLATE = fe.Material(E=70e9, nu=0.33, density=2700.0, model="plane_stress", thickness=0.002)
SOLID = fe.Material(E=70e9, nu=0.33, density=2700.0, model="solid")


def eigenvalues(mesh, element, material, supports=(fe.Support("left"),), n_modes=5, solve=None):
    problem = fe.Problem(mesh=mesh, element=element, material=material, supports=supports,
                         analysis=fe.Analysis(n_modes=n_modes))
    return solve(problem)[1].eigenvalues


@pytest.mark.parametrize(
    "mesh, element, material",
    [
        (fe.rectangle(0.3, 0.1, 12, 4), "quad1", PLATE),
        (fe.rectangle(0.3, 0.1, 6, 2), "quad2", PLATE),
        (fe.rectangle(0.3, 0.1, 6, 2, kind="tri"), "tri2", PLATE),
        (fe.box(0.3, 0.1, 0.1, 6, 2, 2), "hex1", SOLID),
    ],
)
@pytest.mark.parametrize("suffix, options", [(".msh", {"file_format": "gmsh22"}), (".vtu", {})])
def test_file_round_trip_same_frequencies(mesh, element, material, suffix, options, tmp_path, solve):
    path = tmp_path / f"mesh{suffix}"
    mesh.save(str(path), **options)
    loaded = fe.from_file(path)
    assert type(loaded) is type(mesh)
    assert loaded.p.shape == mesh.p.shape  # 2D stays 2D (VTU stores 3D points)
    # the default boundaries are there again and select the same facets
    for name in ("left", "right"):
        np.testing.assert_array_equal(np.sort(loaded.boundaries[name]), np.sort(mesh.boundaries[name]))
    expected = eigenvalues(mesh, element, material, solve=solve)
    np.testing.assert_allclose(eigenvalues(loaded, element, material, solve=solve), expected, rtol=1e-10)


def test_vtu_with_3d_points_of_a_2d_mesh(tmp_path, solve):
    """A VTU written by another tool (3D points, z = 0, quad cells) loads as a 2D mesh."""
    mesh = fe.rectangle(0.3, 0.1, 12, 4)
    points = np.column_stack([mesh.p.T, np.zeros(mesh.p.shape[1])])
    meshio.Mesh(points, [meshio.CellBlock("quad", mesh.t.T)]).write(tmp_path / "plate.vtu")
    loaded = fe.from_file(tmp_path / "plate.vtu")
    assert loaded.dim() == 2 and loaded.p.shape == (2, mesh.p.shape[1])
    np.testing.assert_allclose(eigenvalues(loaded, "quad1", PLATE, solve=solve),
                               eigenvalues(mesh, "quad1", PLATE, solve=solve), rtol=1e-10)


def test_gmsh_physical_groups_become_named_boundaries(tmp_path, solve):
    """Line cells tagged with a physical group are a named boundary usable in a Support."""
    mesh = fe.rectangle(0.3, 0.1, 12, 4)
    points = np.column_stack([mesh.p.T, np.zeros(mesh.p.shape[1])])
    left = mesh.facets[:, mesh.boundaries["left"]].T
    n_quad, n_line = mesh.t.shape[1], left.shape[0]
    tags = [np.full(n_quad, 1), np.full(n_line, 7)]
    meshio.Mesh(
        points, [meshio.CellBlock("quad", mesh.t.T), meshio.CellBlock("line", left)],
        cell_data={"gmsh:physical": tags, "gmsh:geometrical": tags},
        field_data={"body": np.array([1, 2]), "clamp": np.array([7, 1])},
    ).write(tmp_path / "plate.msh", file_format="gmsh22", binary=False)
    loaded = fe.from_file(tmp_path / "plate.msh")
    assert len(loaded.boundaries["clamp"]) == 4  # the 4 facets on x = 0
    np.testing.assert_allclose(
        eigenvalues(loaded, "quad1", PLATE, supports=(fe.Support("clamp"),), solve=solve),
        eigenvalues(mesh, "quad1", PLATE, supports=(fe.Support("left"),), solve=solve), rtol=1e-10)


def test_missing_or_bad_mesh_file(tmp_path):
    with pytest.raises(fe.InputError, match="no such mesh file"):
        fe.from_file(tmp_path / "nothing.msh")
    bad = tmp_path / "bad.vtu"
    bad.write_text("not a mesh")
    with pytest.raises(fe.InputError, match="could not read the mesh"):
        fe.from_file(bad)


def test_mapped_uniform_scaling(solve):
    """Scaling every coordinate by c: plane-stress K is unchanged and M grows by c², so each
    λ = ω² falls by exactly c² (dimensional analysis of the weak form)."""
    mesh = fe.rectangle(0.3, 0.1, 12, 4)
    c = 2.5
    scaled = fe.mapped(mesh, lambda p: c * p)
    assert scaled.p.max() == pytest.approx(0.75)
    np.testing.assert_allclose(eigenvalues(scaled, "quad2", PLATE, solve=solve),
                               eigenvalues(mesh, "quad2", PLATE, solve=solve) / c**2, rtol=1e-10)
    assert mesh.p.max() == pytest.approx(0.3)  # input left alone


def hermite_beam_omegas(length, height_at, n_elem=200, E=1.0, rho=1.0, t=1.0, n=3):
    """First ``n`` ω of a clamped-free Euler–Bernoulli beam with variable depth, from cubic Hermite
    beam elements (J. S. Przemieniecki, *Theory of Matrix Structural Analysis* (1968), §11: the
    consistent stiffness and mass matrices), section properties at each element's midpoint."""
    from scipy.linalg import eigh

    n_dof = 2 * (n_elem + 1)
    K, M = np.zeros((n_dof, n_dof)), np.zeros((n_dof, n_dof))
    le = length / n_elem
    for e in range(n_elem):
        h = height_at((e + 0.5) * le)
        ei, ra = E * t * h**3 / 12.0, rho * t * h
        k = ei / le**3 * np.array([[12, 6 * le, -12, 6 * le], [6 * le, 4 * le**2, -6 * le, 2 * le**2],
                                   [-12, -6 * le, 12, -6 * le], [6 * le, 2 * le**2, -6 * le, 4 * le**2]])
        m = ra * le / 420.0 * np.array([[156, 22 * le, 54, -13 * le], [22 * le, 4 * le**2, 13 * le, -3 * le**2],
                                        [54, 13 * le, 156, -22 * le], [-13 * le, -3 * le**2, -22 * le, 4 * le**2]])
        idx = slice(2 * e, 2 * e + 4)
        K[idx, idx] += k
        M[idx, idx] += m
    lam = eigh(K[2:, 2:], M[2:, 2:], eigvals_only=True)  # clamped at x = 0: w = w' = 0
    return np.sqrt(lam[:n])


def test_mapped_trapezoid_tapered_cantilever(solve, transverse):
    """A cantilever whose depth tapers linearly from h0 at the root to h0/2 at the tip (a
    symmetric trapezoid made with fe.mapped) against Euler–Bernoulli with variable depth."""
    length, h0, taper = 1.0, 0.02, 0.5
    beam = fe.rectangle(length, h0, 50, 2)
    trapezoid = fe.mapped(beam, lambda p: np.array([p[0], h0 / 2 + (p[1] - h0 / 2) * (1 - taper * p[0] / length)]))
    material = fe.Material(E=1.0, nu=0.0, density=1.0)  # ν = 0: see test_theory.beam_problem

    def bending(mesh):
        problem = fe.Problem(mesh=mesh, element="quad2", material=material, supports=(fe.Support("left"),),
                             analysis=fe.Analysis(n_modes=4))
        model, modes = solve(problem)
        keep = transverse(model, modes.vectors) > 0.5
        return np.sqrt(modes.eigenvalues[keep][:3])

    omega_taper, omega_uniform = bending(trapezoid), bending(beam)
    reference = hermite_beam_omegas(length, lambda x: h0 * (1 - taper * x / length))
    # observed: −0.017 %, −0.097 %, −0.227 % (the 2D model includes shear, the beam theory not)
    np.testing.assert_allclose(omega_taper, reference, rtol=5e-3)
    # tapering removes mass where it matters most, near the tip: ω1 rises although the beam is
    # less stiff (Hermite ratio 1.0875 for h_tip/h0 = ½; ω2, ω3 fall: 0.831, 0.766)
    ratio = omega_taper[0] / omega_uniform[0]
    reference_uniform = hermite_beam_omegas(length, lambda x: h0, n=1)[0]
    assert ratio == pytest.approx(reference[0] / reference_uniform, rel=2e-3)
    assert ratio > 1.08
    assert np.all(omega_taper[1:] < omega_uniform[1:])
    # the mapped mesh kept its named boundaries (the support above used "left")
    assert set(trapezoid.boundaries) == set(beam.boundaries)


def test_mapped_rejects_wrong_shape():
    mesh = fe.rectangle(1.0, 1.0, 2, 2)
    with pytest.raises(fe.InputError, match="mapping returned shape"):
        fe.mapped(mesh, lambda p: p[:1])
