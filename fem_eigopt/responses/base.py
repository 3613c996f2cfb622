"""Objectives and constraints as functions of eigenvalues, eigenvectors and densities.

Every response is an object with

* ``n_bounds``: how many auxiliary *bound variables* it adds to the design vector (the bound
  formulation of Bendsøe, Olhoff & Taylor 1983 / Du & Olhoff 2007: maximise β subject to
  β − λ_j ≤ 0 stays differentiable when eigenvalues coalesce, where max min λ_j does not);
* ``prepare(state)``: called once at the starting design to fix reference values (scaling) and
  references for mode tracking; returns the starting values of its bound variables;
* ``evaluate(state, bounds) -> list[Partials]``: values and partial derivatives with respect to
  eigenvalues, eigenvectors, physical densities and bound variables. An objective returns one
  item; a constraint returns one item per scalar constraint ``g ≤ 0``.

The evaluator (:mod:`fem_eigopt.optimize.evaluator`) turns the partials into design gradients with the
element-by-element adjoint and the chain rule through the interpolation, projection, filter and
design map. Everything is *minimised*; "maximise" objectives negate. Values are scaled by a
reference computed at the starting design (e.g. λ1 of the initial design) so that MMA sees
numbers of order one.

Units: eigenvalues λ in (rad/s)², frequencies in Hz where a field says ``_hz``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fem_eigopt.errors import InputError

logger = logging.getLogger(__name__)

TWO_PI = 2.0 * np.pi


@dataclass
class ModalState:
    """What a response may look at, for one design.

    Attributes
    ----------
    eigenvalues : ndarray (k,)
        λ (rad/s)², ascending.
    vectors : ndarray (n_free, k)
        M-normalised mode shapes on the free dofs.
    densities : ndarray (n_elem,)
        Physical (filtered, projected) densities; ones for a structure without density design.
    element_volumes : ndarray (n_elem,)
        Element volumes (areas × thickness in 2D) in m³.
    clusters : list of tuple
        Repeated-eigenvalue clusters (indices).
    mass_matrix : sparse (n_free, n_free)
        M of this design (for MAC and eigenvector functionals).
    model : Model
        The discretised structure (dof maps).
    iteration : int
        Evaluation counter.
    info : dict
        Results a response reports for the history (e.g. ``tracked_modes``, ``tuning_cents``);
        the evaluator copies them into the evaluation's ``info``.
    parameters : ndarray (n_params,) or None
        Shape parameters p of a shape design (None for density designs).
    shape_map : ShapeMap or None
        The shape design's map p → X (None for density designs).

    Notes
    -----
    For a shape design the densities are ones and ``element_volumes`` are those of the moved mesh
    X(p), so ``element_volumes @ densities`` is the structure's volume at this design.
    """

    eigenvalues: np.ndarray
    vectors: np.ndarray
    densities: np.ndarray
    element_volumes: np.ndarray
    clusters: list
    mass_matrix: Any
    model: Any
    iteration: int = 0
    info: dict = field(default_factory=dict)
    parameters: np.ndarray | None = None
    shape_map: Any = None


@dataclass
class Partials:
    """Value and partial derivatives of one scalar response.

    Attributes
    ----------
    value : float
    d_eigenvalues : ndarray (k,) or None
        ∂g/∂λ_i.
    d_vectors : ndarray (n_free, k) or None
        ∂g/∂φ_i (needs an eigenvector adjoint solve per non-zero column).
    d_densities : ndarray (n_elem,) or None
        Explicit ∂g/∂ρ̄_e (volume, or a user function of the densities).
    d_bounds : ndarray (n_bounds_total,) or None
        ∂g/∂b for the auxiliary bound variables (filled by the evaluator's offsets).
    name : str
        For history and messages.
    d_element_volumes : ndarray (n_elem,) or None
        Explicit ∂g/∂v_e (per m³) with respect to the element volumes. They depend on the design
        only for shape designs (the shape evaluator chains them through dv_e/dX and dX/dp); for
        density designs the element volumes are constant and this term is zero.
    d_parameters : ndarray (n_params,) or None
        Explicit ∂g/∂p with respect to the shape parameters (geometric constraints of a shape
        design); only shape designs have parameters.
    """

    value: float
    d_eigenvalues: np.ndarray | None = None
    d_vectors: np.ndarray | None = None
    d_densities: np.ndarray | None = None
    d_bounds: dict[int, float] = field(default_factory=dict)
    name: str = ""
    d_element_volumes: np.ndarray | None = None
    d_parameters: np.ndarray | None = None


def _unit(k: int, i: int, scale: float = 1.0) -> np.ndarray:
    out = np.zeros(k)
    out[i] = scale
    return out


def mac_matrix(A: np.ndarray, B: np.ndarray, W=None) -> np.ndarray:
    """Modal assurance criterion between the columns of A (n, p) and B (n, q), shape (p, q).

    MAC_ij = (a_iᵀ W b_j)² / ((a_iᵀ W a_i)(b_jᵀ W b_j)) with W the identity or a weighting matrix
    (e.g. the mass matrix; Allemang & Brown 1982).

    Parameters
    ----------
    A : ndarray (n, p)
    B : ndarray (n, q)
    W : ndarray or sparse matrix (n, n), optional
        Weighting matrix; the identity when omitted.

    Returns
    -------
    ndarray (p, q)
        Dimensionless, in [0, 1]; 1 for parallel vectors, 0 for W-orthogonal ones.
    """
    WA = A if W is None else W @ A
    WB = B if W is None else W @ B
    num = (WA.T @ B) ** 2
    den = np.outer(np.einsum("ij,ij->j", A, WA), np.einsum("ij,ij->j", B, WB))
    return num / den


class TrackedMode:
    """Follow "the mode that looks like this one" instead of a fixed mode number.

    At the starting design the reference shape is mode ``start_mode`` (1-based); at every later
    design the tracked mode is the one with the largest MAC against the reference. With
    ``update=True`` the reference becomes the matched mode at each evaluation (tracking through
    gradual shape changes); with ``False`` it stays the initial shape. The MAC matrix between the
    previous and current modes is stored in ``last_mac`` for the history.
    """

    def __init__(self, start_mode: int = 1, update: bool = True) -> None:
        if start_mode < 1:
            raise InputError(f"TrackedMode start_mode = {start_mode!r}; allowed: an integer >= 1")
        self.start_mode = int(start_mode)
        self.update = update
        self.reference: np.ndarray | None = None
        self.previous: np.ndarray | None = None
        self.last_index = self.start_mode - 1
        self.last_mac: np.ndarray | None = None

    def prepare(self, state: ModalState) -> None:
        self.reference = state.vectors[:, self.start_mode - 1].copy()
        self.previous = state.vectors.copy()
        self.last_index = self.start_mode - 1

    def index(self, state: ModalState) -> int:
        """0-based index of the tracked mode in ``state``."""
        if self.reference is None:
            self.prepare(state)
        mac = mac_matrix(self.reference[:, None], state.vectors, state.mass_matrix)[0]
        i = int(np.argmax(mac))
        if self.previous is not None and self.previous.shape == state.vectors.shape:
            self.last_mac = mac_matrix(self.previous, state.vectors, state.mass_matrix)
            logger.debug("MAC(previous modes, current modes):\n%s", np.array2string(self.last_mac, precision=3))
        state.info.setdefault("tracked_modes", []).append(
            {"mode": i + 1, "mac": float(mac[i]),
             "mac_matrix": None if self.last_mac is None else self.last_mac.round(4).tolist()})
        if i != self.last_index:
            logger.info("mode tracking: the tracked mode moved from %d to %d (MAC %.3f)",
                        self.last_index + 1, i + 1, mac[i])
        self.last_index = i
        if self.update:
            self.reference = state.vectors[:, i].copy()
        self.previous = state.vectors.copy()
        return i


def rigid_body_count(eigenvalues: np.ndarray, rtol: float = 1e-6) -> int:
    """Number of leading (near-)zero eigenvalues: the rigid-body modes of an unsupported structure.

    Parameters
    ----------
    eigenvalues : ndarray (k,)
        Ascending eigenvalues λ ((rad/s)²).
    rtol : float
        λ_i counts as zero when |λ_i| ≤ rtol · max|λ| of the computed ones (a free–free 2D body
        has 3, a 3D one 6; with the auto shift their computed λ are ~1e-10 of the elastic ones).

    Returns
    -------
    int
    """
    lam = np.asarray(eigenvalues, dtype=float)
    if lam.size == 0:
        return 0
    scale = np.max(np.abs(lam)) or 1.0
    n = 0
    while n < lam.size and abs(lam[n]) <= rtol * scale:
        n += 1
    return n


def direction_fraction(model: Any, vectors: np.ndarray, mass_matrix: Any, component: int) -> np.ndarray:
    """Share of each mode's kinetic energy (φᵀMφ) carried by one displacement component.

    Parameters
    ----------
    model : Model
        Supplies ``free_dofs`` and ``dof_component`` (component of each dof).
    vectors : ndarray (n_free, k)
    mass_matrix : sparse (n_free, n_free)
    component : int
        0 = x, 1 = y, 2 = z.

    Returns
    -------
    ndarray (k,)
        In [0, 1] (exactly so for a lumped mass matrix; the consistent mass's coupling of
        components is zero for the isoparametric elements used here, which share one scalar basis).
        A vertical bending mode of a bar (y across) has a y-share near 1.
    """
    on = (np.asarray(model.dof_component)[np.asarray(model.free_dofs)] == component).astype(float)
    MV = mass_matrix @ vectors
    total = np.einsum("ij,ij->j", vectors, MV)
    part = np.einsum("ij,ij->j", vectors * on[:, None], MV)
    return part / np.where(total == 0, 1.0, total)


def evaluate_responses(responses: list[Response], bound_slices: list[slice], state: ModalState,
                       bounds: np.ndarray) -> list[Partials]:
    """The partials of every response at ``state``, in order (the objective first).

    Each response sees its own slice of the bound variables ``bounds`` (n_bounds_total,); the
    partials' ``d_bounds`` are moved from the response's slice to their places in ``bounds``.

    Raises
    ------
    InputError
        The objective (``responses[0]``) returned no value.
    """
    partials: list[Partials] = []
    for ri, r in enumerate(responses):
        items = r.evaluate(state, bounds[bound_slices[ri]])
        if ri == 0 and len(items) < 1:
            raise InputError(f"objective {r.name} returned no value")
        for it in items:
            it.d_bounds = {bound_slices[ri].start + k: v for k, v in it.d_bounds.items()}
        partials.extend(items)
    return partials


def full_jacobian(design_gradients: np.ndarray, partials: list[Partials], n: int) -> np.ndarray:
    """Gradients over x = [z, b]: ``design_gradients`` (n_partials, n_design) for z, then each
    partial's ``d_bounds`` for the bound variables b; shape (n_partials, n)."""
    n_design = design_gradients.shape[1]
    full = np.zeros((len(partials), n))
    full[:, :n_design] = design_gradients
    for row, part in enumerate(partials):
        for k, v in part.d_bounds.items():
            full[row, n_design + k] += v
    return full


#: Physical density below which an element counts as void: the grey fraction's lower limit
VOID_DENSITY = 0.1


def void_fraction(model: Any, vectors: np.ndarray, densities: np.ndarray, mass_scale: np.ndarray,
                  threshold: float = VOID_DENSITY) -> np.ndarray:
    """Share of each mode's kinetic energy (φᵀMφ) in the void elements (ρ̄ < ``threshold``).

    A mode with most of its energy there is a local mode of the void, not of the structure: the
    mass interpolation lets weak, light elements vibrate on their own (with SIMP and a linear
    mass the lowest such modes are the spurious ones of Pedersen 2000; a two-range mass law
    moves them up to where E(ρ̄)/ρ(ρ̄) is smallest, just below its switch density). Such a mode
    moves no structural material and should not be read as one of the structure's modes.

    Parameters
    ----------
    model : Model
    vectors : ndarray (n_free, k)
        Mode shapes on the free dofs.
    densities : ndarray (n_elem,)
        Physical densities ρ̄.
    mass_scale : ndarray (n_elem,)
        The element mass scale factors ρ(ρ̄)/ρ0 the modes were computed with.
    threshold : float
        Void below this density.

    Returns
    -------
    ndarray (k,)
        In [0, 1].
    """
    scale = np.asarray(mass_scale, dtype=float)
    M = model.mass(scale)
    M_void = model.mass(scale * (np.asarray(densities) < threshold))
    total = np.einsum("ij,ij->j", vectors, M @ vectors)
    void = np.einsum("ij,ij->j", vectors, M_void @ vectors)
    return void / np.where(total == 0, 1.0, total)


def mirror_parity(model: Any, vectors: np.ndarray, mass_matrix: Any, axis: int, center: float) -> np.ndarray:
    """Parity of each mode under the mirror x_axis → 2·center − x_axis: +1 symmetric, −1 antisymmetric.

    The mirror maps the displacement at a dof location to the mirrored location, flipping the
    component along ``axis``; the parity is ``φᵀ M (Pφ) / φᵀ M φ``. For a bar of width along z
    mirrored about its mid-plane, vertical bending modes have parity +1, torsional and lateral
    bending modes −1 (a mesh symmetric about the plane is assumed; dofs without a mirror partner
    contribute zero).

    Parameters
    ----------
    model : Model
        ``basis.doflocs`` (dim, n_dofs) and ``dof_component`` give each dof's location and component.
    vectors : ndarray (n_free, k)
    mass_matrix : sparse (n_free, n_free)
    axis : int
        Normal of the mirror plane (0 = x, 1 = y, 2 = z).
    center : float
        Position of the plane on that axis (m).

    Returns
    -------
    ndarray (k,)
        In [−1, 1].
    """
    from scipy.spatial import cKDTree

    locs = np.asarray(model.basis.doflocs, dtype=float)
    comp = np.asarray(model.dof_component)
    mirrored = locs.copy()
    mirrored[axis] = 2.0 * center - mirrored[axis]
    scale = float(np.ptp(locs, axis=1).max()) or 1.0
    # tell the components apart by an offset far larger than the mesh
    tree = cKDTree((locs + 10.0 * scale * comp[None, :]).T)
    dist, partner = tree.query((mirrored + 10.0 * scale * comp[None, :]).T)
    ok = dist <= 1e-6 * scale
    sign = np.where(comp == axis, -1.0, 1.0)
    full = model.expand(vectors)
    Pfull = np.zeros_like(full)
    Pfull[ok] = sign[ok, None] * full[partner[ok]]
    P = Pfull[np.asarray(model.free_dofs)]
    MV = mass_matrix @ vectors
    num = np.einsum("ij,ij->j", P, MV)
    den = np.einsum("ij,ij->j", vectors, MV)
    return num / np.where(den == 0, 1.0, den)


def _mode_index(mode, state: ModalState) -> int:
    if isinstance(mode, TrackedMode):
        return mode.index(state)
    return int(mode) - 1


def _prepare_mode(mode, state: ModalState) -> None:
    if isinstance(mode, TrackedMode):
        mode.prepare(state)


def _check_mode(mode, what: str) -> None:
    if isinstance(mode, TrackedMode):
        return
    if not (isinstance(mode, (int, np.integer)) and mode >= 1):
        raise InputError(f"{what} = {mode!r}; allowed: a mode number >= 1 (1 = fundamental) or TrackedMode")


class Response:
    """Base class of objectives and constraints (see the module docstring)."""

    n_bounds = 0
    #: highest mode number (1-based) the response needs; the modal solve must compute more
    max_mode = 1
    name = "response"

    def prepare(self, state: ModalState) -> np.ndarray:
        return np.zeros(self.n_bounds)

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:  # pragma: no cover
        raise NotImplementedError

    def bound_limits(self) -> list[tuple[float, float]]:
        return [(0.0, np.inf)] * self.n_bounds

    def restart_bounds(self, state: ModalState, bounds: np.ndarray) -> np.ndarray:
        """Bound variables for a restart at ``state`` (the problem changed, e.g. the projection β):
        by default unchanged. Bound formulations return values just inside their constraints."""
        return bounds

    def describe(self, value: float) -> str:
        return f"{self.name}={value:.6g}"
