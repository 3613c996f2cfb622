"""build_model at scale: congruent-element fast path, chunked general path, node-level pattern.

Every number here is compared with a reference computed the slow, obvious way: scikit-fem's
element matrices of every element (``build_model(fast=False)`` / ``element_matrices`` on a full
basis) and the dof-level ``np.unique`` pattern the assembler used before (re-implemented below).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import skfem

import fem_eigopt as fe
from fem_eigopt.fem.assembly import (
    LazyCellBasis,
    assembly_pattern,
    build_model,
    element_classes,
    element_matrices,
    is_broadcast,
    quadrature_order,
    solid_element_matrices,
)

STEEL_2D = fe.Material(E=210e9, nu=0.3, density=7850.0, model="plane_stress", thickness=0.01)
STEEL_3D = fe.Material(E=210e9, nu=0.3, density=7850.0, model="solid")


def _problem(mesh, element, supports=(fe.Support("left"),), point_masses=()):
    material = STEEL_3D if mesh.dim() == 3 else STEEL_2D
    return fe.Problem(mesh=mesh, element=element, material=material, supports=supports, point_masses=point_masses)


def _perturbed(mesh, amount=0.1, seed=3):
    """The same topology with every interior vertex moved by up to ``amount`` of a cell."""
    rng = np.random.default_rng(seed)
    p = mesh.p.copy()
    h = np.array([np.diff(np.unique(x)).min() for x in p])[:, None]
    interior = np.all((p > p.min(axis=1, keepdims=True)) & (p < p.max(axis=1, keepdims=True)), axis=0)
    p[:, interior] += amount * h * rng.uniform(-1, 1, (p.shape[0], interior.sum()))
    return type(mesh)(p, mesh.t, _boundaries=mesh.boundaries)


def _reference_pattern(element_dofs, n_dofs, free_index):
    """The dof-level pattern by one np.unique over all n_elem·n_edof² entry keys (the old way)."""
    n_elem, n_edof = element_dofs.shape
    n_free = int(free_index.max()) + 1
    fe_ = free_index[element_dofs]
    rows = np.broadcast_to(fe_[:, :, None], (n_elem, n_edof, n_edof)).ravel()
    cols = np.broadcast_to(fe_[:, None, :], (n_elem, n_edof, n_edof)).ravel()
    keep = (rows >= 0) & (cols >= 0)
    elem = np.broadcast_to(np.arange(n_elem)[:, None, None], (n_elem, n_edof, n_edof)).ravel()[keep]
    unique_keys, position = np.unique(rows[keep] * n_free + cols[keep], return_inverse=True)
    indices = unique_keys % n_free
    indptr = np.concatenate(([0], np.cumsum(np.bincount(unique_keys // n_free, minlength=n_free))))
    kept = np.flatnonzero(keep)
    numbering = sp.csr_matrix((np.arange(kept.size, dtype=float), (position, elem)), shape=(unique_keys.size, n_elem))
    return indptr, indices, numbering.indptr, numbering.indices, kept[numbering.data.astype(np.int64)]


CASES = {
    "box-hex1": lambda: _problem(fe.box(1.0, 0.5, 0.4, 4, 3, 2), "hex1",
                                 point_masses=(fe.PointMass(2.0, at=(1.0, 0.25, 0.2), radius=0.2),)),
    "box-hex2": lambda: _problem(fe.box(1.0, 0.5, 0.4, 3, 2, 2), "hex2"),
    "rect-quad1": lambda: _problem(fe.rectangle(1.0, 0.25, 7, 3), "quad1",
                                   supports=(fe.Support("left"), fe.Support(fe.at_point((1.0, 0.0)), components=(1,)))),
    "rect-quad2": lambda: _problem(fe.rectangle(1.0, 0.25, 5, 2), "quad2",
                                   point_masses=(fe.PointMass(0.5, at=(1.0, 0.125)),)),
    "rect-tri2": lambda: _problem(fe.rectangle(1.0, 0.25, 6, 3, kind="tri"), "tri2",
                                  supports=(fe.Support("left", components=(0,)), fe.Support("bottom", components=(1,)))),
    "box-tet1": lambda: _problem(fe.box(1.0, 0.5, 0.5, 3, 2, 2, kind="tet"), "tet1", supports=()),
    "mapped-quad1": lambda: _problem(fe.mapped(fe.rectangle(1.0, 0.25, 8, 3),
                                               lambda p: np.array([p[0], p[1] * (1 + 0.5 * p[0])])), "quad1"),
    "perturbed-hex1": lambda: _problem(_perturbed(fe.box(1.0, 0.5, 0.5, 3, 3, 3)), "hex1"),
}
EXPECTED_PATH = {"box-hex1": "congruent", "box-hex2": "congruent", "rect-quad1": "congruent",
                 "rect-quad2": "congruent", "rect-tri2": "classes", "box-tet1": "classes",
                 "mapped-quad1": "general", "perturbed-hex1": "general"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_element_matrices_equal_per_element_evaluation(case):
    """The fast paths equal scikit-fem's matrices of every element (≤ 1e-12 · max|Ke|); structured
    quads and hexes are one broadcast element, triangles/tetrahedra a few classes, a mapped or
    perturbed mesh takes the general path (and is then exactly the full-basis evaluation)."""
    problem = CASES[case]()
    model = build_model(problem)
    reference = build_model(problem, fast=False)
    full = skfem.Basis(problem.mesh, model.basis.elem, intorder=quadrature_order(problem.element))
    lam, mu = problem.material.lame()
    t = problem.material.thickness if model.dim == 2 else 1.0
    Ke_full, Me_full = element_matrices(full, lam, mu, problem.material.density, t)
    _, _, path = solid_element_matrices(model.basis, lam, mu, problem.material.density, t)
    assert path == EXPECTED_PATH[case]
    assert is_broadcast(model.Ke) == (path == "congruent") and is_broadcast(model.Me) == (path == "congruent")
    assert model.Ke.shape == Ke_full.shape == reference.Ke.shape
    for ours, ref in ((model.Ke, Ke_full), (model.Me, Me_full), (reference.Ke, Ke_full), (reference.Me, Me_full)):
        assert np.abs(ours - ref).max() <= 1e-12 * np.abs(ref).max()
    if path == "general":
        assert np.array_equal(model.Ke, Ke_full) and np.array_equal(model.Me, Me_full)
    # the assembled matrices agree too
    rng = np.random.default_rng(0)
    s = rng.uniform(0.1, 1.0, model.n_elements)
    for a, b in ((model.stiffness(s), reference.stiffness(s)), (model.mass(s), reference.mass(s))):
        assert np.abs(a.data - b.data).max() <= 1e-12 * np.abs(b.data).max()


@pytest.mark.parametrize("case", sorted(CASES))
def test_pattern_identical_to_dof_level_unique(case):
    """Node-level pattern + block expansion + chunked positions = the dof-level np.unique pattern,
    array for array (CSR of K, the operator's index arrays, entry_source, point-mass positions)."""
    problem = CASES[case]()
    model = build_model(problem)
    indptr, indices, op_indptr, op_indices, source = _reference_pattern(model.element_dofs, model.n_dofs,
                                                                         model.free_index)
    assert np.array_equal(model.indptr, indptr) and np.array_equal(model.indices, indices)
    assert np.array_equal(model.assemble_K.indptr, op_indptr) and np.array_equal(model.assemble_K.indices, op_indices)
    assert np.array_equal(model.entry_source, source)
    assert model.indptr.dtype == model.indices.dtype == np.int32
    assert model.assemble_K.indices is model.assemble_M.indices  # one copy of the operator's indices
    diag = np.flatnonzero(np.repeat(np.arange(model.n_free), np.diff(indptr)) == indices)
    expected = np.zeros(model.nnz)
    expected[diag] = model.point_mass[model.free_dofs]
    assert np.array_equal(model.point_mass_data, expected)


def test_pattern_falls_back_to_dof_slots():
    """Dof numbers that are not blocks of ``dim`` (a permuted numbering) use one slot per dof and
    still give the reference pattern."""
    model = build_model(CASES["rect-quad1"]())
    perm = np.random.default_rng(1).permutation(model.n_dofs)
    element_dofs = perm[model.element_dofs]
    free = np.sort(perm[model.free_dofs])
    free_index = np.full(model.n_dofs, -1)
    free_index[free] = np.arange(free.size)
    got = assembly_pattern(element_dofs, model.n_dofs, free_index, model.dim)
    for a, b in zip(got, _reference_pattern(element_dofs, model.n_dofs, free_index)):
        assert np.array_equal(a, b)


def test_element_classes():
    """One class for structured quads/hexes, 2 for structured triangles, 6 for tetrahedra, none for
    a perturbed mesh."""
    assert element_classes(fe.box(1.0, 1.0, 1.0, 3, 2, 2))[1].size == 1
    assert element_classes(fe.rectangle(2.0, 1.0, 5, 4, kind="tri"))[1].size == 2
    assert element_classes(fe.box(1.0, 1.0, 1.0, 3, 2, 2, kind="tet"))[1].size == 6
    assert element_classes(_perturbed(fe.box(1.0, 1.0, 1.0, 3, 3, 3))) is None


def test_broadcast_matrices_and_lazy_basis():
    """Broadcast Ke is read-only with stride 0; with_element_matrices refills the operators from it
    or from dense copies alike; the lazy basis builds scikit-fem's tables on demand, identical to a
    full basis."""
    problem = CASES["box-hex1"]()
    model = build_model(problem)
    assert model.Ke.strides[0] == 0 and not model.Ke.flags.writeable
    dense = model.with_element_matrices(2.0 * np.array(model.Ke), np.array(model.Me))
    bcast = model.with_element_matrices(np.broadcast_to(2.0 * model.Ke[0], model.Ke.shape), model.Me)
    assert np.array_equal(dense.assemble_K.data, bcast.assemble_K.data)
    assert np.array_equal(dense.assemble_K.data, 2.0 * model.assemble_K.data)
    assert np.array_equal(dense.assemble_M.data, model.assemble_M.data)
    assert isinstance(model.basis, LazyCellBasis) and isinstance(model.basis, skfem.CellBasis)
    assert "basis" not in vars(model.basis)  # not built by build_model
    full = skfem.Basis(problem.mesh, model.basis.elem, intorder=quadrature_order(problem.element))
    assert np.array_equal(model.basis.doflocs, full.doflocs) and np.array_equal(model.basis.element_dofs, full.element_dofs)
    assert np.array_equal(model.basis.dx, full.dx)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[0].grad, b[0].grad)
               for a, b in zip(model.basis.basis, full.basis))


def test_build_memory_per_operator_entry():
    """Peak traced memory of build_model per assembly-operator entry (n_elem·n_edof² when all dofs
    are free): the dof-level np.unique build measured 152 B, this one 41 B (hex1 24×12×12)."""
    problem = _problem(fe.box(2.0, 1.0, 1.0, 12, 6, 6), "hex1")
    tracemalloc.start()
    try:
        model = build_model(problem)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_entry = peak / model.entry_source.size
    assert per_entry < 60, per_entry
