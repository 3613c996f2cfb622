"""The density design chain: design vector → passive regions → filter → projection → densities.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import skfem

from fem_eigopt.design.filters import (
    LinearStage,
    Predicate,
    _as_vector,
    _check_mesh,
    element_centroids,
    element_volumes,
)
from fem_eigopt.design.projection import HeavisideProjection
from fem_eigopt.errors import InputError

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- #
# passive regions


def _mask(predicate: Predicate | Sequence[Predicate] | np.ndarray | None, centroids: np.ndarray,
          name: str) -> np.ndarray:
    """Evaluate one predicate, a list of them (union) or take a given bool mask."""
    n = centroids.shape[1]
    if predicate is None:
        return np.zeros(n, dtype=bool)
    if isinstance(predicate, np.ndarray):
        preds: list = [predicate]
    elif callable(predicate):
        preds = [predicate]
    else:
        preds = list(predicate)
    mask = np.zeros(n, dtype=bool)
    for p in preds:
        m = np.asarray(p if isinstance(p, np.ndarray) else p(centroids))
        if m.shape != (n,) or m.dtype != bool:
            raise InputError(
                f"passive region {name!r} gave an array of shape {m.shape} and dtype {m.dtype}; "
                f"allowed: a bool mask of shape ({n},) from centroids of shape {centroids.shape}"
            )
        mask |= m
    return mask


class DesignMap:
    """Active design variables → element densities, with passive solid and void elements.

    ``forward(z) = P z + x_p``: the injection ``P`` puts the active variables ``z`` (n_active,) at
    their elements and ``x_p`` holds 1 on passive-solid and ``x_min`` on passive-void elements.
    The transpose ``vjp(z, dx) = Pᵀ dx = dx[active]`` drops (zeroes) the passive entries.

    Where passive values are applied in the chain, and why
    ------------------------------------------------------
    1. *Before the filter* (:meth:`forward`): so the neighbours of a passive solid see solid
       material, and the filter blends the design smoothly into it rather than into a hole.
    2. *After the filter and projection* (:meth:`reapply` / :meth:`reapply_vjp`): a filter
       averages every element with its neighbours, so without this a passive-solid element next
       to void would come out grey (and lose stiffness), and the projection maps ``x_min`` to
       about 0, not ``x_min``. The projection is element-wise, so reapplying once after the last
       stage is enough; the transpose of that step zeroes the cotangent of passive elements (they
       do not depend on the design).

    Parameters
    ----------
    mesh : skfem.Mesh
    solid, void : callable, list of callables, bool array or None
        Predicates on element centroids (``c`` of shape (dim, n_elem) → bool mask (n_elem,));
        a list is a union. An element selected by both is an error.
    x_min : float
        Density of passive-void elements (the design's lower bound, e.g. 1e-3).
    symmetry : sequence of (axis, coordinate)
        Mirror planes of the design, e.g. ``[("x", 4.0), ("y", 0.5)]``: elements that are mirror
        images of each other (through any combination of the planes) share one design variable,
        so the design is symmetric whatever the rounding. The mesh and the passive regions must
        be symmetric too.

    Attributes
    ----------
    active, solid, void : ndarray of bool, shape (n_elem,)
    active_index : ndarray of int, shape (n_active_elements,)
        The active elements.
    n_active : int
        Number of design variables (active elements, or their mirror orbits).
    """

    def __init__(self, mesh: skfem.Mesh, solid: Predicate | Sequence[Predicate] | np.ndarray | None = None,
                 void: Predicate | Sequence[Predicate] | np.ndarray | None = None, x_min: float = 1e-3,
                 symmetry: Sequence[tuple[str, float]] = ()) -> None:
        mesh = _check_mesh(mesh, "DesignMap")
        if not 0.0 <= x_min < 1.0:
            raise InputError(f"design x_min = {x_min!r}; allowed: 0 <= x_min < 1")
        centroids = element_centroids(mesh)
        self.n_elem = mesh.nelements
        self.x_min = float(x_min)
        self.solid = _mask(solid, centroids, "solid")
        self.void = _mask(void, centroids, "void")
        both = np.flatnonzero(self.solid & self.void)
        if both.size:
            raise InputError(
                f"passive regions: {both.size} elements (first: {both[0]}) are both solid and void; "
                "allowed: disjoint regions"
            )
        self.active = ~(self.solid | self.void)
        self.active_index = np.flatnonzero(self.active)
        if self.active_index.size == 0:
            raise InputError("passive regions cover every element; allowed: at least one active element")
        # design variable of each active element; None: one variable per element (no symmetry)
        self.orbit = mirror_orbits(centroids, self.active, symmetry) if symmetry else None
        self.n_active = self.active_index.size if self.orbit is None else int(self.orbit.max()) + 1
        self._passive_values = np.where(self.solid, 1.0, self.x_min)[~self.active]
        logger.debug("DesignMap: %d active, %d solid, %d void elements",
                     self.n_active, self.solid.sum(), self.void.sum())

    def forward(self, z: np.ndarray) -> np.ndarray:
        """Element densities (n_elem,) from the active design variables ``z`` (n_active,)."""
        z = _as_vector(z, self.n_active, "design vector")
        x = np.empty(self.n_elem)
        x[self.active] = z if self.orbit is None else z[self.orbit]
        x[~self.active] = self._passive_values
        return x

    def jvp(self, z: np.ndarray | None, dz: np.ndarray) -> np.ndarray:
        """``P dz``: ``dz`` (n_active,) at the active elements, 0 at passive ones, shape (n_elem,)."""
        dx = np.zeros(self.n_elem)
        dz = _as_vector(dz, self.n_active, "design direction")
        dx[self.active_index] = dz if self.orbit is None else dz[self.orbit]
        return dx

    def vjp(self, z: np.ndarray | None, dx: np.ndarray) -> np.ndarray:
        """``Pᵀ dx``: the active entries of ``dx`` (n_elem,), shape (n_active,)."""
        active = _as_vector(dx, self.n_elem, "element cotangent")[self.active_index]
        if self.orbit is None:
            return active
        return np.bincount(self.orbit, weights=active, minlength=self.n_active)

    def reapply(self, x: np.ndarray) -> np.ndarray:
        """A copy of ``x`` (n_elem,) with the passive values written back (after filter/projection)."""
        x = np.array(_as_vector(x, self.n_elem, "element densities"))
        x[~self.active] = self._passive_values
        return x

    def reapply_vjp(self, dx: np.ndarray) -> np.ndarray:
        """Transpose of :meth:`reapply`'s linear part: ``dx`` with passive entries set to 0."""
        dx = np.array(_as_vector(dx, self.n_elem, "element cotangent"))
        dx[~self.active] = 0.0
        return dx

    def initial(self, value: float | np.ndarray) -> np.ndarray:
        """The active part of a starting density (a number or an (n_elem,) array), shape (n_active,)."""
        v = np.asarray(value, dtype=float)
        if v.ndim == 0:
            return np.full(self.n_active, float(v))
        active = _as_vector(v, self.n_elem, "initial")[self.active]
        if self.orbit is None:
            return active
        # the mean over each mirror orbit: a symmetric start stays as it is
        return np.bincount(self.orbit, weights=active) / np.bincount(self.orbit)


def solid_pieces(mesh: skfem.Mesh, densities: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, int]:
    """The connected pieces of the solid part of a density design.

    Elements with ρ̄ > ``threshold`` are solid; two solid elements belong to one piece when they
    share a vertex. On a structured mesh a diagonal member one element thick is a staircase of
    elements that touch at their corners, and the finite-element model ties them there: joining
    through facets only would cut every such member (a Du & Olhoff CC design fell into 14 pieces).

    Parameters
    ----------
    mesh : skfem.Mesh
    densities : ndarray (n_elem,)
        Physical densities ρ̄.
    threshold : float
        Solid above this density.

    Returns
    -------
    labels : ndarray (n_elem,) of int
        The piece of each solid element (0 … n − 1), −1 for the others.
    n : int
        Number of pieces.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    solid = np.asarray(densities, dtype=float) > threshold
    t = np.asarray(mesh.t)[:, solid]
    n_elem, n_vertices = solid.size, mesh.p.shape[1]
    elements = np.broadcast_to(np.flatnonzero(solid), t.shape)
    # elements and vertices as one graph: a solid element is joined to its vertices
    graph = sp.coo_matrix((np.ones(t.size), (elements.ravel(), n_elem + t.ravel())),
                          shape=(n_elem + n_vertices,) * 2)
    _, labels = connected_components(graph, directed=False)
    labels = np.where(solid, labels[:n_elem], -1)
    _, compact = np.unique(labels[solid], return_inverse=True)
    labels[solid] = compact
    return labels, int(compact.max() + 1) if compact.size else 0


def mirror_orbits(centroids: np.ndarray, active: np.ndarray, planes: Sequence[tuple[str, float]]) -> np.ndarray:
    """Design-variable index of each active element when mirror images share one variable.

    Parameters
    ----------
    centroids : ndarray (dim, n_elem)
        Element centroids.
    active : ndarray of bool (n_elem,)
        Active (design) elements.
    planes : sequence of (axis, coordinate)
        Mirror planes, axis ``"x"``, ``"y"`` or ``"z"`` and the plane's coordinate.

    Returns
    -------
    ndarray of int (n_active_elements,)
        Orbit number, 0 … n_orbits − 1, of each active element (in element order).

    Raises
    ------
    InputError
        An element has no mirror image in the mesh, or its image is passive while it is active.
    """
    from scipy.spatial import cKDTree

    dim, n_elem = centroids.shape
    extent = np.ptp(centroids, axis=1).max()
    tol = 1e-6 * max(extent, 1e-300)
    tree = cKDTree(centroids.T)
    parent = np.arange(n_elem)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for axis_name, at in planes:
        axis = "xyz".index(axis_name) if axis_name in ("x", "y", "z") else -1
        if not 0 <= axis < dim or not np.isfinite(at):
            raise InputError(f"design symmetry plane ({axis_name!r}, {at!r}); allowed: ('x'|'y'"
                             f"{'|' + repr('z') if dim == 3 else ''}, a finite coordinate)")
        image = centroids.copy()
        image[axis] = 2.0 * at - centroids[axis]
        distance, partner = tree.query(image.T)
        bad = np.flatnonzero((distance > tol) | (active != active[partner]))
        if bad.size:
            e = int(bad[0])
            raise InputError(f"design symmetry {axis_name} = {at}: element {e} at {centroids[:, e].round(6).tolist()} "
                             "has no active mirror image; allowed: a mesh and passive regions symmetric about the plane")
        for e, f in zip(range(n_elem), partner):
            a, b = root(e), root(int(f))
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = np.array([root(e) for e in np.flatnonzero(active)])
    _, orbit = np.unique(roots, return_inverse=True)
    return orbit


#: Alias: the design map is where passive regions live.
PassiveRegions = DesignMap


# --------------------------------------------------------------------------------------------- #
# the composed chain


@dataclass(frozen=True, eq=False)
class DensityChain:
    """Design vector → physical densities: design map, filter, projection, floor, passive values.

    ::

        x  = design_map.forward(z)                     (n_elem,)  passive values in
        x̃  = filter.forward(x)                         (n_elem,)  identity if filter is None
        x̄  = projection.forward(x̃)                     (n_elem,)  identity if β = 0 / None
        ρ̄  = reapply(floor + (1 − floor) x̄)            (n_elem,)  passive values exact again

    The optional ``floor`` keeps projected densities above the design's lower bound: the
    projection sends ``x_min`` to about 0, which with SIMP ``e_min = 0`` leaves elements with no
    stiffness. Use ``floor = x_min`` then (or a SIMP ``e_min > 0`` and ``floor = 0``).

    Parameters
    ----------
    design_map : DesignMap
    filter : DensityFilter, HelmholtzFilter or None
    projection : HeavisideProjection or None
    floor : float
        Lower bound of the physical density after projection, in [0, 1).
    volumes : ndarray (n_elem,), optional
        Element volumes for :meth:`volume_fraction`; :meth:`build` fills them from the mesh.
    """

    design_map: DesignMap
    filter: LinearStage | None = None
    projection: HeavisideProjection | None = None
    floor: float = 0.0
    volumes: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor < 1.0:
            raise InputError(f"density floor = {self.floor!r}; allowed: 0 <= floor < 1")
        if self.filter is not None and self.filter.n_elem != self.design_map.n_elem:
            raise InputError(f"filter has {self.filter.n_elem} elements; allowed: the design map's "
                             f"{self.design_map.n_elem}")
        if self.volumes is not None:
            v = np.asarray(self.volumes, dtype=float)
            if v.shape != (self.design_map.n_elem,) or not np.all(v > 0):
                raise InputError(f"volumes have shape {v.shape}; allowed: ({self.design_map.n_elem},), all > 0")

    @classmethod
    def build(cls, mesh: skfem.Mesh, design_map: DesignMap, filter: LinearStage | None = None,
              projection: HeavisideProjection | None = None, floor: float = 0.0) -> "DensityChain":
        """A chain on ``mesh`` with the element volumes (for the volume fraction) computed once."""
        return cls(design_map, filter, projection, floor, element_volumes(mesh))

    def with_beta(self, beta: float) -> "DensityChain":
        """The same chain with projection sharpness β (filters and volumes are shared, not rebuilt)."""
        eta = 0.5 if self.projection is None else self.projection.eta
        return replace(self, projection=HeavisideProjection(beta, eta))

    @property
    def n_active(self) -> int:
        """Number of design variables."""
        return self.design_map.n_active

    def __call__(self, z: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Physical densities ρ̄ (n_elem,) and the pull-back ``vjp(dρ̄) -> dz`` (n_active,) at ``z``."""
        x = self.design_map.forward(z)
        x_f = x if self.filter is None else self.filter.forward(x)
        x_p = x_f if self.projection is None else self.projection.forward(x_f)
        rho = self.design_map.reapply(self.floor + (1.0 - self.floor) * x_p)

        def vjp(drho: np.ndarray) -> np.ndarray:
            g = (1.0 - self.floor) * self.design_map.reapply_vjp(drho)
            if self.projection is not None:
                g = self.projection.vjp(x_f, g)
            if self.filter is not None:
                g = self.filter.vjp(x, g)
            return self.design_map.vjp(z, g)

        return rho, vjp

    def forward(self, z: np.ndarray) -> np.ndarray:
        """Physical densities ρ̄, shape (n_elem,), from design variables ``z`` (n_active,)."""
        return self(z)[0]

    def jvp(self, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        """Directional derivative ``(∂ρ̄/∂z) dz``, shape (n_elem,) (for checks; the optimiser needs vjp)."""
        x = self.design_map.forward(z)
        d = self.design_map.jvp(z, dz)
        x_f = x if self.filter is None else self.filter.forward(x)
        if self.filter is not None:
            d = self.filter.jvp(x, d)
        if self.projection is not None:
            d = self.projection.jvp(x_f, d)
        return self.design_map.reapply_vjp((1.0 - self.floor) * d)  # passive entries: 0

    def vjp(self, z: np.ndarray, drho: np.ndarray) -> np.ndarray:
        """Gradient with respect to ``z`` (n_active,) of a function whose ρ̄-gradient is ``drho``."""
        return self(z)[1](drho)

    def volume_fraction(self, rho: np.ndarray) -> tuple[float, np.ndarray]:
        """Element-volume weighted mean density and its gradient with respect to ρ̄.

        ``V(ρ̄) = Σ_e v_e ρ̄_e / Σ_e v_e`` over all elements (passive ones included, so a passive
        solid counts as material), with ``∂V/∂ρ̄_e = v_e / Σ v``. Without ``volumes`` (chain not
        made by :meth:`build`) all elements weigh the same. Pull the gradient back to ``z`` with
        :meth:`vjp`.

        Returns
        -------
        value : float
            Dimensionless, in [0, 1] for densities in [0, 1].
        gradient : ndarray, shape (n_elem,)
        """
        rho = _as_vector(rho, self.design_map.n_elem, "densities")
        v = np.ones_like(rho) if self.volumes is None else np.asarray(self.volumes, dtype=float)
        weights = v / v.sum()
        return float(weights @ rho), weights
