"""The discretised structure: element matrices computed once, re-assembly by scaling.

:func:`build_model` turns a :class:`~fem_eigopt.problem.Problem` into a :class:`Model`:

1. scikit-fem evaluates the solid element stiffness and mass matrices once
   (``form.elemental(basis).tolocal()``, shaped (n_elem, n_edof, n_edof));
2. the supports select the fixed dofs, which are eliminated (never penalised: penalty rows put
   spurious eigenpairs into a generalised problem);
3. the CSR pattern of the free-dof matrices is computed once, together with two sparse "assembly
   operators" ``A_K``, ``A_M`` of shape (nnz, n_elem) holding the element-matrix entries at their
   CSR positions, so that for any element scale factors ``s`` (shape (n_elem,))::

       K.data = A_K @ s_K,     M.data = A_M @ s_M + m_point

   one sparse mat-vec per matrix, no Python loop over elements and no form evaluation per design
   (top88's "sparse(iK, jK, sK)" with the index work hoisted out of the loop).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import skfem
from skfem.helpers import ddot, dot, sym_grad, trace

from .errors import fail
from .problem import Problem

logger = logging.getLogger(__name__)

__all__ = ["Model", "build_model", "element_matrices", "quadrature_order"]


def quadrature_order(element: skfem.Element) -> int:
    """Polynomial degree integrated exactly: full Gauss integration of the mass matrix.

    Quadrilaterals and hexahedra of per-direction degree p get Gauss rules with p + 1 points per
    direction (degree 2p: 2×2 for Q1, 3×3 for Q2 and the serendipity S2), simplices degree 2p.
    scikit-fem's default (twice the element's total degree) integrates the same matrices on affine
    elements with far more points: 4×4×4 instead of 2×2×2 for Hex1, 7×7×7 instead of 3×3×3 for
    Hex2, which made building a Hex2 model take seconds on tiny meshes.
    """
    dim = element.refdom.dim()
    tensor = element.refdom.__name__ in ("RefQuad", "RefHex")
    p = int(np.ceil(element.maxdeg / dim)) if tensor else element.maxdeg
    return 2 * p


def element_matrices(basis: skfem.Basis, lam: float, mu: float, density: float, thickness: float = 1.0):
    """Element stiffness and mass matrices of a linear elastic solid, computed by scikit-fem.

    Returns
    -------
    Ke, Me : ndarray, shape (n_elem, n_edof, n_edof)
        Local dof order is scikit-fem's (``basis.element_dofs[:, e]``); the displacement component
        of local dof ``i`` is ``i % dim``.
    """

    @skfem.BilinearForm
    def stiffness(u, v, w):
        eps_u, eps_v = sym_grad(u), sym_grad(v)
        return thickness * (2.0 * mu * ddot(eps_u, eps_v) + lam * trace(eps_u) * trace(eps_v))

    @skfem.BilinearForm
    def mass(u, v, w):
        return thickness * density * dot(u, v)

    Ke = np.ascontiguousarray(stiffness.elemental(basis).tolocal())
    Me = np.ascontiguousarray(mass.elemental(basis).tolocal())
    return Ke, Me


@dataclass
class Model:
    """A problem discretised: basis, element matrices, dof sets and the fixed-pattern assembler.

    Attributes
    ----------
    problem : Problem
    basis : skfem.Basis
        Vector basis of the displacement.
    Ke, Me : ndarray (n_elem, n_edof, n_edof)
        Solid (unit scale) element stiffness and mass matrices.
    element_dofs : ndarray (n_elem, n_edof)
        Global dof numbers of each element's local dofs.
    dof_component : ndarray (n_dofs,)
        Displacement component (0, 1, 2) of every global dof.
    free_dofs, fixed_dofs : ndarray of int
    free_index : ndarray (n_dofs,)
        Position of each global dof among the free dofs, -1 for fixed dofs.
    point_mass : ndarray (n_dofs,)
        Non-structural lumped mass on the diagonal of M (kg).
    indptr, indices : ndarray of int32
        The fixed CSR pattern of K and M on the free dofs (shared by every matrix produced).
    assemble_K, assemble_M : csr_matrix (nnz, n_elem)
        ``K.data = assemble_K @ s_K``: element-matrix entries at their CSR positions.
    point_mass_data : ndarray (nnz,)
        The point masses at the diagonal positions of the pattern.
    entry_source : ndarray (nnz_A,)
        ``assemble_K.data = Ke.ravel()[entry_source]`` (refill after element matrices change).
    """

    problem: Problem
    basis: skfem.Basis
    Ke: np.ndarray
    Me: np.ndarray
    element_dofs: np.ndarray
    dof_component: np.ndarray
    free_dofs: np.ndarray
    fixed_dofs: np.ndarray
    free_index: np.ndarray
    point_mass: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    assemble_K: sp.csr_matrix
    assemble_M: sp.csr_matrix
    point_mass_data: np.ndarray
    entry_source: np.ndarray

    @property
    def n_elements(self) -> int:
        return self.Ke.shape[0]

    @property
    def n_dofs(self) -> int:
        return self.dof_component.shape[0]

    @property
    def n_free(self) -> int:
        return self.free_dofs.shape[0]

    @property
    def nnz(self) -> int:
        return self.indices.shape[0]

    @property
    def dim(self) -> int:
        return self.basis.mesh.dim()

    def _csr(self, data: np.ndarray) -> sp.csr_matrix:
        # The index arrays are shared by every matrix the model produces: factorisations compare
        # them by identity to know that the symbolic analysis can be reused.
        A = sp.csr_matrix((self.n_free, self.n_free))
        A.indptr, A.indices, A.data = self.indptr, self.indices, data
        A.has_sorted_indices = True
        return A

    def stiffness(self, scale: np.ndarray | None = None) -> sp.csr_matrix:
        """K on the free dofs for element stiffness factors ``scale`` (n_elem,), default 1."""
        s = np.ones(self.n_elements) if scale is None else np.asarray(scale, dtype=float)
        return self._csr(self.assemble_K @ s)

    def mass(self, scale: np.ndarray | None = None) -> sp.csr_matrix:
        """M on the free dofs (element mass factors ``scale`` plus the point masses)."""
        s = np.ones(self.n_elements) if scale is None else np.asarray(scale, dtype=float)
        return self._csr(self.assemble_M @ s + self.point_mass_data)

    def with_element_matrices(self, Ke: np.ndarray, Me: np.ndarray, basis: skfem.Basis | None = None) -> "Model":
        """A model with new element matrices (e.g. after node coordinates moved) on the same pattern.

        No sorting or pattern work: the assembly operators are refilled through ``entry_source``.
        """
        if Ke.shape != self.Ke.shape or Me.shape != self.Me.shape:
            raise ValueError(f"element matrices of shape {Ke.shape}, {Me.shape}; expected {self.Ke.shape}")
        A_K = self.assemble_K.copy()
        A_K.data = Ke.ravel()[self.entry_source]
        A_M = self.assemble_M.copy()
        A_M.data = Me.ravel()[self.entry_source]
        return replace(self, Ke=Ke, Me=Me, assemble_K=A_K, assemble_M=A_M, basis=basis or self.basis)

    def expand(self, u_free: np.ndarray) -> np.ndarray:
        """Full-length vector(s) from free-dof vector(s), zeros at fixed dofs.

        ``u_free`` of shape (n_free,) or (n_free, k) → (n_dofs,) or (n_dofs, k).
        """
        u_free = np.asarray(u_free)
        out = np.zeros((self.n_dofs,) + u_free.shape[1:], dtype=u_free.dtype)
        out[self.free_dofs] = u_free
        return out

    def element_values(self, u: np.ndarray) -> np.ndarray:
        """Gather element vectors: ``u`` (n_dofs,) or (n_free,) → (n_elem, n_edof)."""
        u = np.asarray(u)
        if u.shape[0] == self.n_free and self.n_free != self.n_dofs:
            u = self.expand(u)
        return u[self.element_dofs]

    def nodal_displacements(self, u: np.ndarray) -> np.ndarray:
        """Displacement at the mesh vertices, shape (n_vertices, dim), from a full or free vector."""
        u = np.asarray(u)
        if u.shape[0] == self.n_free and self.n_free != self.n_dofs:
            u = self.expand(u)
        return u[self.basis.nodal_dofs].T


def _select_dofs(problem: Problem, basis: skfem.Basis, dof_component: np.ndarray) -> np.ndarray:
    """Global dof numbers fixed by the supports; a support that selects nothing is an error."""
    fixed = []
    doflocs = basis.doflocs
    for i, support in enumerate(problem.supports):
        if isinstance(support.where, str):
            candidates = basis.get_dofs(problem.mesh.boundaries[support.where]).all()
        else:
            try:
                mask = np.asarray(support.where(doflocs), dtype=bool)
            except Exception as exc:
                raise fail(problem.label, f"supports[{i}] predicate failed on coordinates of shape "
                           f"{doflocs.shape}: {type(exc).__name__}: {exc}") from exc
            if mask.shape != (doflocs.shape[1],):
                raise fail(problem.label, f"supports[{i}] predicate returned shape {mask.shape}; "
                           f"allowed: ({doflocs.shape[1]},) booleans")
            candidates = np.flatnonzero(mask)
        if support.components is not None:
            candidates = candidates[np.isin(dof_component[candidates], support.components)]
        if candidates.size == 0:
            raise fail(problem.label, f"supports[{i}] ({support.describe()}) selects no degree of freedom")
        fixed.append(candidates)
    return np.unique(np.concatenate(fixed)) if fixed else np.zeros(0, dtype=np.int64)


def _point_mass_vector(problem: Problem, basis: skfem.Basis) -> np.ndarray:
    """Lumped non-structural masses on the translational dofs of mesh vertices, shape (n_dofs,)."""
    out = np.zeros(basis.N)
    p = problem.mesh.p
    nodal = basis.nodal_dofs  # (dim, n_vertices)
    for i, pm in enumerate(problem.point_masses):
        dist = np.linalg.norm(p - np.asarray(pm.at, dtype=float)[:, None], axis=0)
        if pm.radius > 0:
            nodes = np.flatnonzero(dist <= pm.radius * (1 + 1e-9))  # round-off must not break symmetry
            if nodes.size == 0:
                raise fail(problem.label, f"point_masses[{i}] at {pm.at} with radius {pm.radius} covers no vertex")
        else:
            nodes = np.array([int(np.argmin(dist))])
        np.add.at(out, nodal[:, nodes].ravel(), pm.mass / nodes.size)
    return out


def build_model(problem: Problem) -> Model:
    """Discretise ``problem``: element matrices once, fixed dofs, CSR pattern and assembly operators.

    Cost: one scikit-fem form evaluation for K and one for M, plus one sort of the
    n_elem · n_edof² element-entry keys. Nothing here runs per design.
    """
    mesh = problem.mesh
    dim = mesh.dim()
    basis = skfem.Basis(mesh, skfem.ElementVector(problem.element, dim), intorder=quadrature_order(problem.element))
    lam, mu = problem.material.lame()
    thickness = problem.material.thickness if dim == 2 else 1.0
    Ke, Me = element_matrices(basis, lam, mu, problem.material.density, thickness)

    element_dofs = np.ascontiguousarray(basis.element_dofs.T)  # (n_elem, n_edof)
    n_elem, n_edof = element_dofs.shape
    dof_component = np.empty(basis.N, dtype=np.int64)
    dof_component[element_dofs] = np.arange(n_edof) % dim

    fixed = _select_dofs(problem, basis, dof_component)
    free_mask = np.ones(basis.N, dtype=bool)
    free_mask[fixed] = False
    free = np.flatnonzero(free_mask)
    n_free = free.size
    # The number of modes is checked by the modal analysis, which may override
    # problem.analysis.n_modes (``--modes``); checking it here rejected valid requests.
    if n_free == 0:
        raise fail(problem.label, "the supports fix every degree of freedom; nothing is left to vibrate")
    free_index = np.full(basis.N, -1, dtype=np.int64)
    free_index[free] = np.arange(n_free)

    # Element entry (e, a, b) goes to CSR position of (free_index[dof_a], free_index[dof_b]).
    fe = free_index[element_dofs]  # (n_elem, n_edof)
    rows = np.broadcast_to(fe[:, :, None], (n_elem, n_edof, n_edof)).ravel()
    cols = np.broadcast_to(fe[:, None, :], (n_elem, n_edof, n_edof)).ravel()
    keep = (rows >= 0) & (cols >= 0)
    elem = np.broadcast_to(np.arange(n_elem)[:, None, None], (n_elem, n_edof, n_edof)).ravel()[keep]
    key = rows[keep] * n_free + cols[keep]
    unique_keys, position = np.unique(key, return_inverse=True)  # sorted by row, then column: CSR order
    indices = (unique_keys % n_free).astype(np.int32)
    indptr = np.concatenate(([0], np.cumsum(np.bincount(unique_keys // n_free, minlength=n_free)))).astype(np.int32)
    nnz = unique_keys.size
    # Build the operator once with entry numbers as values to learn where each element entry lands
    # (exact in float64 up to 2**53 entries), so new element matrices refill it without a sort.
    kept_entries = np.flatnonzero(keep)
    numbering = sp.csr_matrix((np.arange(kept_entries.size, dtype=float), (position, elem)), shape=(nnz, n_elem))
    entry_source = kept_entries[numbering.data.astype(np.int64)]
    assemble_K = sp.csr_matrix((Ke.ravel()[entry_source], numbering.indices, numbering.indptr), shape=(nnz, n_elem))
    assemble_M = sp.csr_matrix((Me.ravel()[entry_source], numbering.indices, numbering.indptr), shape=(nnz, n_elem))

    point_mass = _point_mass_vector(problem, basis)
    diag_pos = np.empty(n_free, dtype=np.int64)
    rows_of_entries = np.repeat(np.arange(n_free), np.diff(indptr))
    on_diag = np.flatnonzero(rows_of_entries == indices)
    diag_pos[rows_of_entries[on_diag]] = on_diag
    point_mass_data = np.zeros(nnz)
    point_mass_data[diag_pos] = point_mass[free]

    logger.debug("model: %d elements, %d dofs (%d free), nnz %d", n_elem, basis.N, n_free, nnz)
    return Model(
        problem=problem, basis=basis, Ke=Ke, Me=Me, element_dofs=element_dofs,
        dof_component=dof_component, free_dofs=free, fixed_dofs=fixed, free_index=free_index,
        point_mass=point_mass, indptr=indptr, indices=indices,
        assemble_K=assemble_K, assemble_M=assemble_M, point_mass_data=point_mass_data,
        entry_source=entry_source,
    )
