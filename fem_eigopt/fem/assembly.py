"""The discretised structure: element matrices computed once, re-assembly by scaling.

:func:`build_model` turns a :class:`~fem_eigopt.problem.definition.Problem` into a :class:`Model`:

1. scikit-fem evaluates the solid element stiffness and mass matrices once, shaped
   (n_elem, n_edof, n_edof). On structured meshes (``fe.box``, ``fe.rectangle``) every element is a
   translate of the first: its matrices are computed for ONE element and broadcast
   (``np.broadcast_to``: read-only, no memory); meshes made of a few congruent shapes (triangles and
   tetrahedra of structured boxes) get one evaluation per shape; any other mesh is evaluated in
   chunks of elements, so the basis tables never exceed a fixed memory budget;
2. the supports select the fixed dofs, which are eliminated (never penalised: penalty rows put
   spurious eigenpairs into a generalised problem);
3. the CSR pattern of the free-dof matrices is computed once, together with two sparse "assembly
   operators" ``A_K``, ``A_M`` of shape (nnz, n_elem) holding the element-matrix entries at their
   CSR positions, so that for any element scale factors ``s`` (shape (n_elem,))::

       K.data = A_K @ s_K,     M.data = A_M @ s_M + m_point

   one sparse mat-vec per matrix, no Python loop over elements and no form evaluation per design
   (top88's "sparse(iK, jK, sK)" with the index work hoisted out of the loop).

The pattern is built at node level (one sort of n_elem · n_node² keys, n_node = n_edof / dim, 9×
fewer than the dof-level keys in 3D) and expanded by dim × dim blocks; the element-entry positions
are then computed in chunks of elements and the operator is formed by one counting-sort transpose,
so no array of n_elem · n_edof² int64 keys is ever sorted. Sorting and holding those keys is what
dominated the time and the peak memory of a dof-level build; the node-level build cuts both
several-fold, which is what makes million-dof hex1 models practical (``benchmarks/bench_scale.py``
measures time and peak memory; see docs/performance.md).

``Model.basis`` is a :class:`LazyCellBasis`: the dof numbering, dof locations, mesh, element and
quadrature at once, the per-element basis tables (18 kB per hex1 element, 6 GB at a million dofs)
only if someone asks for them.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import skfem
from skfem.assembly.basis.abstract_basis import AbstractBasis
from skfem.helpers import ddot, dot, sym_grad, trace

from fem_eigopt.errors import fail
from fem_eigopt.problem.definition import Problem

logger = logging.getLogger(__name__)

__all__ = ["LazyCellBasis", "Model", "build_model", "element_classes", "element_matrices", "is_broadcast",
           "quadrature_order", "solid_element_matrices"]


def quadrature_order(element: skfem.Element) -> int:
    """Polynomial degree integrated exactly: full Gauss integration of the mass matrix.

    Quadrilaterals and hexahedra of per-direction degree p get Gauss rules with p + 1 points per
    direction (degree 2p: 2×2 for Q1, 3×3 for Q2 and the serendipity S2), simplices degree 2p.
    scikit-fem's default (twice the element's total degree) integrates the same matrices on affine
    elements with far more points: 4×4×4 instead of 2×2×2 for Hex1, 7×7×7 instead of 3×3×3 for
    Hex2 (8 and about 13 times as many), and the cost of the element matrices grows with them.

    Parameters
    ----------
    element : skfem.Element

    Returns
    -------
    int
        The degree to pass as ``intorder`` to scikit-fem's basis.
    """
    dim = element.refdom.dim()
    tensor = element.refdom.__name__ in ("RefQuad", "RefHex")
    p = int(np.ceil(element.maxdeg / dim)) if tensor else element.maxdeg
    return 2 * p


def _solid_forms(lam: float, mu: float, density: float, thickness: float):
    """The bilinear forms of the solid: linear elastic stiffness and consistent mass."""

    @skfem.BilinearForm
    def stiffness(u, v, w):
        eps_u, eps_v = sym_grad(u), sym_grad(v)
        return thickness * (2.0 * mu * ddot(eps_u, eps_v) + lam * trace(eps_u) * trace(eps_v))

    @skfem.BilinearForm
    def mass(u, v, w):
        return thickness * density * dot(u, v)

    return stiffness, mass


def element_matrices(basis: skfem.Basis, lam: float, mu: float, density: float, thickness: float = 1.0):
    """Element stiffness and mass matrices of a linear elastic solid, computed by scikit-fem.

    Parameters
    ----------
    basis : skfem.Basis
        Vector basis (``ElementVector``) on the mesh, one quadrature for all elements.
    lam, mu : float
        Lamé parameters (Pa, or the unit of Young's modulus).
    density : float
        Mass density (kg/m³, consistent with the moduli).
    thickness : float, default 1.0
        Out-of-plane thickness for 2D models (m); multiplies both matrices.

    Returns
    -------
    Ke, Me : ndarray, shape (n_elem, n_edof, n_edof)
        Units: N/m (stiffness) and kg (mass) in SI.
        Local dof order is scikit-fem's (``basis.element_dofs[:, e]``); the displacement component
        of local dof ``i`` is ``i % dim``.
    """
    stiffness, mass = _solid_forms(lam, mu, density, thickness)
    Ke = np.ascontiguousarray(stiffness.elemental(basis).tolocal())
    Me = np.ascontiguousarray(mass.elemental(basis).tolocal())
    return Ke, Me


class LazyCellBasis(skfem.CellBasis):
    """A scikit-fem ``CellBasis`` whose per-element tables are computed on first use.

    The dof numbering (``dofs``, ``element_dofs``, ``nodal_dofs``, ``N``, ``get_dofs``), the dof
    locations, ``mesh``, ``elem``, ``mapping`` and ``quadrature`` are there at once; ``basis``
    (values and gradients of every basis function at every quadrature point of every element) and
    ``dx`` are computed by scikit-fem when first read — then it is an ordinary full basis (the
    fixed-pattern assembler never reads them; a hex1 vector basis holds 18 kB per element).
    """

    def __init__(self, mesh: skfem.Mesh, elem: skfem.Element, intorder: int | None = None,
                 quadrature=None, dofs=None) -> None:
        AbstractBasis.__init__(self, mesh, elem, None, intorder, quadrature, mesh.refdom, dofs, False)
        self.tind = None
        self.nelems = mesh.nelements

    def __getattr__(self, name: str):
        # Only called for attributes not set yet: the per-element tables.
        if name in ("basis", "dx"):
            full = skfem.CellBasis(self.mesh, self.elem, mapping=self.mapping, quadrature=(self.X, self.W),
                                   dofs=self.dofs, disable_doflocs=True)
            self.basis, self.dx = full.basis, full.dx
            return getattr(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


#: Meshes whose geometry is given by their vertices alone (the congruence test compares vertices).
_LINEAR_GEOMETRY = (skfem.MeshLine1, skfem.MeshTri1, skfem.MeshQuad1, skfem.MeshTet1, skfem.MeshHex1,
                    skfem.MeshWedge1)


def element_classes(mesh: skfem.Mesh, rtol: float = 1e-12) -> tuple[np.ndarray, np.ndarray] | None:
    """Group the elements into classes of translates (same vertex offsets from their first vertex).

    Returns ``(class_of_element, representative)`` — ``representative[c]`` is an element of class
    ``c`` — when every element's offsets ``p[:, t[:, e]] - p[:, t[0, e]]`` equal its class
    representative's to ``rtol`` times the largest offset; ``None`` for meshes with curved
    (higher-order) geometry or without such classes. Structured rectangles and boxes of quads and
    hexes have one class, their triangles 2 and tetrahedra 6.
    """
    if type(mesh) not in _LINEAR_GEOMETRY:
        return None
    n_elem = mesh.t.shape[1]
    P = mesh.p[:, mesh.t]  # (dim, n_vertices_e, n_elem)
    D = (P - P[:, :1, :]).reshape(-1, n_elem).T  # (n_elem, dim * n_vertices_e) offsets
    scale = float(np.abs(D).max()) if D.size else 0.0
    if scale == 0.0:
        return None
    tol = rtol * scale
    if np.abs(D - D[:1]).max() <= tol:
        return np.zeros(n_elem, dtype=np.int64), np.zeros(1, dtype=np.int64)
    # Group on a grid 1000× coarser than the tolerance (neighbours across a grid line only make an
    # extra class), then check every element against its representative at the tolerance.
    keys = np.round(D / (1e3 * tol))
    _, representative, cls = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    cls = cls.reshape(-1)
    if representative.size * 2 > n_elem or np.abs(D - D[representative[cls]]).max() > tol:
        return None
    return cls.astype(np.int64), representative.astype(np.int64)


def _elementwise_matrices(basis: skfem.CellBasis, lam: float, mu: float, density: float, thickness: float,
                          elements: np.ndarray, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ke, Me of ``elements`` evaluated by scikit-fem in chunks (bounded basis-table memory)."""
    elements = np.asarray(elements, dtype=np.int64)
    n_edof = basis.Nbfun
    if chunk is None:
        dim = basis.mesh.dim()
        bytes_per_element = n_edof * basis.X.shape[1] * (dim + dim * dim) * 8 * 3  # tables + temporaries
        chunk = max(1, _CHUNK_BYTES // bytes_per_element)
    Ke = np.empty((elements.size, n_edof, n_edof))
    Me = np.empty((elements.size, n_edof, n_edof))
    for start in range(0, elements.size, chunk):
        part = elements[start:start + chunk]
        sub = skfem.CellBasis(basis.mesh, basis.elem, mapping=basis.mapping, quadrature=basis.quadrature,
                              elements=part, dofs=basis.dofs, disable_doflocs=True)
        Ke[start:start + part.size], Me[start:start + part.size] = element_matrices(sub, lam, mu, density,
                                                                                    thickness)
    return Ke, Me


#: Memory budget of one chunk of scikit-fem basis tables / element-entry index work (bytes).
_CHUNK_BYTES = 256 * 2**20


def solid_element_matrices(basis: skfem.CellBasis, lam: float, mu: float, density: float,
                           thickness: float = 1.0, fast: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """Element matrices of every element, the cheap way the mesh allows.

    Returns ``(Ke, Me, path)``: ``path == "congruent"`` — all elements translates of the first, one
    element evaluated and broadcast (read-only views of shape (n_elem, n_edof, n_edof) with stride 0
    along the elements); ``"classes"`` — one evaluation per class of translates
    (:func:`element_classes`), gathered; ``"general"`` — every element evaluated, in chunks. The
    fast paths are checked against per-element evaluation on a few sample elements (relative
    1e-12) and fall back to the general path if they disagree.
    """
    n_elem = basis.mesh.t.shape[1]
    classes = element_classes(basis.mesh) if fast else None
    if classes is not None:
        cls, rep = classes
        # the representatives and a few sample elements in one scikit-fem call (its cost per call
        # is mostly per local-dof pair, whatever the number of elements)
        sample = np.linspace(0, n_elem - 1, min(n_elem, 8)).astype(np.int64)
        which, inverse = np.unique(np.concatenate([rep, sample]), return_inverse=True)
        Kw, Mw = _elementwise_matrices(basis, lam, mu, density, thickness, which)
        Kc, Mc = Kw[inverse[:rep.size]], Mw[inverse[:rep.size]]
        Ks, Ms = Kw[inverse[rep.size:]], Mw[inverse[rep.size:]]
        if (np.abs(Ks - Kc[cls[sample]]).max() <= 1e-12 * np.abs(Kc).max()
                and np.abs(Ms - Mc[cls[sample]]).max() <= 1e-12 * np.abs(Mc).max()):
            if rep.size == 1:
                shape = (n_elem,) + Kc.shape[1:]
                return np.broadcast_to(Kc[0], shape), np.broadcast_to(Mc[0], shape), "congruent"
            return Kc[cls], Mc[cls], "classes"
        logger.warning("element matrices of translated elements differ; evaluating every element")
    Ke, Me = _elementwise_matrices(basis, lam, mu, density, thickness, np.arange(n_elem))
    return Ke, Me, "general"


def is_broadcast(A: np.ndarray) -> bool:
    """True for element matrices stored once and broadcast over the elements (stride 0).

    Parameters
    ----------
    A : ndarray (n_elem, n_edof, n_edof)

    Returns
    -------
    bool
        Whether every element shares ``A[0]`` (``np.broadcast_to``, read-only, no memory).
    """
    return A.ndim == 3 and A.shape[0] > 1 and A.strides[0] == 0


def _entries(A: np.ndarray, entry_source: np.ndarray) -> np.ndarray:
    """``A.ravel()[entry_source]`` without materialising a broadcast ``A``."""
    if is_broadcast(A):
        n2 = A.shape[1] * A.shape[2]
        return np.ascontiguousarray(A[0]).ravel()[entry_source % n2]
    return np.ascontiguousarray(A).reshape(-1)[entry_source]


@dataclass
class Model:
    """A problem discretised: basis, element matrices, dof sets and the fixed-pattern assembler.

    Attributes
    ----------
    problem : Problem
    basis : skfem.Basis
        Vector basis of the displacement.
    Ke, Me : ndarray (n_elem, n_edof, n_edof)
        Solid (unit scale) element stiffness and mass matrices; on structured meshes a read-only
        broadcast of one element's matrices (stride 0 along the elements, see :func:`is_broadcast`).
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
        ``assemble_K.data = Ke.ravel()[entry_source]`` (refill after element matrices change): the
        flat element-entry number ``e·n_edof² + a·n_edof + b`` of each operator entry (int32 when
        it fits).
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

    @functools.cached_property
    def element_free_dofs(self) -> np.ndarray:
        """(n_elem, n_edof) free-dof index of every element dof, ``n_free`` at fixed dofs.

        Gathers element vectors straight from free-dof vectors with one zero appended (no
        full-length copy per call), as :func:`fem_eigopt.sensitivity.eigenvalues.element_energies` does.
        """
        idx = self.free_index[self.element_dofs]
        return np.where(idx < 0, self.n_free, idx).astype(np.intp)

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
        data = self.assemble_M @ s
        # in place, the same numbers as `data + point_mass_data` without another nnz-long array
        # (a fresh large temporary is a new mapping whose first touch costs page faults; see
        # fem_eigopt.linalg.kernels.reusable)
        data += self.point_mass_data
        return self._csr(data)

    def with_element_matrices(self, Ke: np.ndarray, Me: np.ndarray, basis: skfem.Basis | None = None) -> "Model":
        """A model with new element matrices (e.g. after node coordinates moved) on the same pattern.

        No sorting or pattern work: the assembly operators are refilled through ``entry_source``.
        """
        if Ke.shape != self.Ke.shape or Me.shape != self.Me.shape:
            raise ValueError(f"element matrices of shape {Ke.shape}, {Me.shape}; expected {self.Ke.shape}")
        A_K = self.assemble_K.copy()
        A_K.data = _entries(Ke, self.entry_source)
        A_M = self.assemble_M.copy()
        A_M.data = _entries(Me, self.entry_source)
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
    fixed = support_dofs(problem, basis, dof_component)
    return np.unique(np.concatenate(fixed)) if fixed else np.zeros(0, dtype=np.int64)


def support_dofs(problem: Problem, basis: skfem.Basis, dof_component: np.ndarray) -> list[np.ndarray]:
    """The global dof numbers each of ``problem.supports`` fixes, one array per support.

    Raises
    ------
    InputError
        A support's predicate fails, returns the wrong shape, or selects no dof.
    """
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
    return fixed


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


def _index_dtype(n: int):
    return np.int32 if n < 2**31 - 1 else np.int64


def _slot_structure(element_dofs: np.ndarray, n_dofs: int, dim: int) -> int:
    """``dim`` when dofs come in blocks of ``dim`` consecutive numbers, one per scalar dof ("slot"),
    with local dof ``a`` = component ``a % dim`` of slot ``a // dim`` (scikit-fem's
    ``ElementVector``); else 1 (every dof its own slot)."""
    n_edof = element_dofs.shape[1]
    if dim == 1 or n_edof % dim or n_dofs % dim:
        return 1
    blocks = element_dofs.reshape(element_dofs.shape[0], n_edof // dim, dim)
    first = blocks[:, :, :1]
    return dim if np.array_equal(blocks, first + np.arange(dim)) and not np.any(first % dim) else 1


def assembly_pattern(element_dofs: np.ndarray, n_dofs: int, free_index: np.ndarray, dim: int):
    """CSR pattern of the free-dof matrices and the element-entry → CSR-position operator.

    Parameters
    ----------
    element_dofs : ndarray (n_elem, n_edof)
    n_dofs : int
    free_index : ndarray (n_dofs,)
        Position among the free dofs, -1 for fixed dofs; increasing with the dof number (the free
        dofs keep their order).
    dim : int
        Displacement components per node (the block size tried for the node-level pattern).

    Returns
    -------
    indptr, indices : ndarray of int32
        The free-dof pattern, rows sorted, columns sorted within rows.
    op_indptr, op_indices, entry_source : ndarray
        CSR arrays of the (nnz, n_elem) assembly operator, elements ascending within each row, and
        the flat element-entry number (``e·n_edof² + a·n_edof + b``) of every operator entry.

    Notes
    -----
    1. Node ("slot") pattern: one ``np.unique`` of the n_elem·n_slot² slot-pair keys (n_slot =
       n_edof / dim).
    2. Full dof pattern by blocks: in row (I, ci) the columns are (J_k, cj), k-major, so entry
       (I, ci; J_k, cj) sits at ``dim²·ptr[I] + ci·dim·m_I + dim·k + cj`` (m_I the slot row length);
       removing fixed rows and columns is a cumulative sum over a mask.
    3. Element entries (e, a, b) are located by the same formula in chunks of elements; the
       operator (nnz × n_elem) is the transpose of the (n_elem × nnz) one they give directly (one
       counting sort, ``tocsr``), which puts the elements in ascending order within rows.
    """
    element_dofs = np.asarray(element_dofs)
    n_elem, n_edof = element_dofs.shape
    d = _slot_structure(element_dofs, n_dofs, dim)
    n_slot_e = n_edof // d
    n_slots = n_dofs // d
    slots = element_dofs[:, ::d] // d if d > 1 else element_dofs
    slots = slots.astype(np.int64)

    # 1. slot pattern
    keys = (slots[:, :, None] * n_slots + slots[:, None, :]).reshape(-1)
    ukeys, slot_pos = np.unique(keys, return_inverse=True)
    del keys
    slot_pos = slot_pos.reshape(n_elem, n_slot_e, n_slot_e).astype(_index_dtype(ukeys.size))
    nnz_slot = ukeys.size
    srow = ukeys // n_slots
    scol = ukeys - srow * n_slots
    del ukeys
    sptr = np.zeros(n_slots + 1, dtype=np.int64)
    np.cumsum(np.bincount(srow, minlength=n_slots), out=sptr[1:])
    m = np.diff(sptr)
    base = d * d * sptr[srow] + d * (np.arange(nnz_slot) - sptr[srow])  # full position of (ci, cj) = (0, 0)
    stride = d * m[srow]  # + ci·stride + cj

    # 2. full dof pattern, then the free rows and columns
    nnz_full = d * d * nnz_slot
    fdt = _index_dtype(nnz_full + 1)
    keep_full = np.zeros(nnz_full, dtype=bool)
    col_full = np.empty(nnz_full, dtype=np.int32)
    for ci in range(d):
        r_free = free_index[d * srow + ci] >= 0
        for cj in range(d):
            pos = base + ci * stride + cj
            c_index = free_index[d * scol + cj]
            keep_full[pos] = r_free & (c_index >= 0)
            col_full[pos] = c_index
    del srow, scol
    before = np.zeros(nnz_full + 1, dtype=fdt)  # kept entries before each full position
    np.cumsum(keep_full, out=before[1:])
    indices = col_full[keep_full]
    del col_full
    nnz = indices.size
    free = np.flatnonzero(free_index >= 0)
    row_start = d * d * sptr[free // d] + (free % d) * d * m[free // d]
    indptr = np.append(before[row_start], nnz).astype(np.int32)

    # 3. element entries in chunks of elements
    n_free_e = (free_index[element_dofs] >= 0).sum(axis=1).astype(np.int64)
    e_ptr = np.zeros(n_elem + 1, dtype=np.int64)
    np.cumsum(n_free_e**2, out=e_ptr[1:])
    nnz_op = int(e_ptr[-1])
    positions = np.empty(nnz_op, dtype=_index_dtype(nnz))
    entry_dtype = _index_dtype(n_elem * n_edof * n_edof)
    entries = np.empty(nnz_op, dtype=entry_dtype)
    ci = np.arange(d)[None, None, :, None, None]
    cj = np.arange(d)[None, None, None, None, :]
    chunk = max(1, _CHUNK_BYTES // (n_edof * n_edof * 8 * 6))
    for e0 in range(0, n_elem, chunk):
        e1 = min(n_elem, e0 + chunk)
        q = slot_pos[e0:e1][:, :, None, :, None]  # (c, i, 1, j, 1)
        full = (base[q] + ci * stride[q] + cj).reshape(e1 - e0, n_edof * n_edof)
        kept = keep_full[full]
        positions[e_ptr[e0]:e_ptr[e1]] = before[full[kept]]
        entries[e_ptr[e0]:e_ptr[e1]] = (np.flatnonzero(kept) + e0 * n_edof * n_edof).astype(entry_dtype)
    del slot_pos, keep_full, before
    by_element = sp.csr_matrix((entries, positions, e_ptr), shape=(n_elem, nnz))
    del entries, positions
    operator = by_element.T.tocsr()  # counting sort: rows = CSR positions, elements ascending
    del by_element
    return indptr, indices, operator.indptr, operator.indices, operator.data


def _diagonal_positions(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Position of the diagonal entry of every row of a CSR pattern with sorted columns."""
    n = indptr.size - 1
    pos = np.empty(n, dtype=np.int64)
    chunk = 1 << 20
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        rows = np.repeat(np.arange(r0, r1, dtype=np.int32), np.diff(indptr[r0:r1 + 1]))
        on_diag = np.flatnonzero(rows == indices[indptr[r0]:indptr[r1]])
        pos[rows[on_diag]] = on_diag + indptr[r0]
    return pos


def build_model(problem: Problem, fast: bool = True) -> Model:
    """Discretise ``problem``: element matrices once, fixed dofs, CSR pattern and assembly operators.

    Cost: scikit-fem's form evaluation for one element (structured meshes, see
    :func:`solid_element_matrices`) or for every element in chunks, one sort of the
    n_elem · n_node² node-pair keys and a few passes over the n_elem · n_edof² element entries
    (:func:`assembly_pattern`). Nothing here runs per design.

    Parameters
    ----------
    problem : Problem
        Mesh, element, material, supports and point masses.
    fast : bool, default True
        ``False`` evaluates every element (the reference the tests compare the congruent path
        with).

    Returns
    -------
    Model
        K and M on the free dofs for any element scale factors (n_elem,).
    """
    mesh = problem.mesh
    dim = mesh.dim()
    basis = LazyCellBasis(mesh, skfem.ElementVector(problem.element, dim), intorder=quadrature_order(problem.element))
    lam, mu = problem.material.lame()
    thickness = problem.material.thickness if dim == 2 else 1.0
    Ke, Me, path = solid_element_matrices(basis, lam, mu, problem.material.density, thickness, fast=fast)

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

    indptr, indices, op_indptr, op_indices, entry_source = assembly_pattern(element_dofs, basis.N, free_index, dim)
    nnz = indices.size
    shape = (nnz, n_elem)
    assemble_K = sp.csr_matrix((_entries(Ke, entry_source), op_indices, op_indptr), shape=shape, copy=False)
    assemble_M = sp.csr_matrix((_entries(Me, entry_source), op_indices, op_indptr), shape=shape, copy=False)
    for A in (assemble_K, assemble_M):
        A.indptr, A.indices = op_indptr, op_indices  # one copy of the index arrays for both
        A.has_sorted_indices = True

    point_mass = _point_mass_vector(problem, basis)
    point_mass_data = np.zeros(nnz)
    if np.any(point_mass[free]):
        point_mass_data[_diagonal_positions(indptr, indices)] = point_mass[free]

    logger.debug("model: %d elements (%s element matrices), %d dofs (%d free), nnz %d, operator nnz %d",
                 n_elem, path, basis.N, n_free, nnz, entry_source.size)
    return Model(
        problem=problem, basis=basis, Ke=Ke, Me=Me, element_dofs=element_dofs,
        dof_component=dof_component, free_dofs=free, fixed_dofs=fixed, free_index=free_index,
        point_mass=point_mass, indptr=indptr, indices=indices,
        assemble_K=assemble_K, assemble_M=assemble_M, point_mass_data=point_mass_data,
        entry_source=entry_source,
    )
