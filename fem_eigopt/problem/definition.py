"""Problem description and problem-file loading.

A problem file is an importable Python module with one factory::

    def problem(nx=160, ny=20, supports="SS") -> fem_eigopt.Problem

whose keyword arguments are the parameters a user may override (``--set key=value`` on the command
line, or a sweep grid). Nothing runs at import. :func:`load_problem` imports the file, checks the
overrides against the factory's signature, parses each value to the type of its default, calls the
factory and validates the result once; every error names the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import skfem

from fem_eigopt.design.interpolation import SIMP, Interpolation, LinearMass
from fem_eigopt.errors import InputError, fail

#: predicate on coordinates: ``x`` of shape (dim, n) -> boolean mask of shape (n,)
Predicate = Callable[[np.ndarray], np.ndarray]


def _is_number(value: Any) -> bool:
    """A finite real number (not a bool)."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and bool(np.isfinite(value)))


@dataclass(frozen=True)
class Material:
    """Linear isotropic elastic material.

    Parameters
    ----------
    E : float
        Young's modulus of the solid (Pa, or any consistent unit).
    nu : float
        Poisson's ratio, -1 < ν < 0.5.
    density : float
        Mass density of the solid (kg/m³, consistent with E).
    model : {"plane_stress", "plane_strain", "solid"}
        2D models need a 2D mesh, ``"solid"`` a 3D one.
    thickness : float
        Out-of-plane thickness for 2D models (m); multiplies both K and M.
    """

    E: float
    nu: float
    density: float
    model: str = "plane_stress"
    thickness: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.E) and self.E > 0):
            raise InputError(f"material.E = {self.E!r}; allowed: a finite number > 0")
        if not (-1.0 < self.nu < 0.5):
            raise InputError(f"material.nu = {self.nu!r}; allowed: -1 < nu < 0.5")
        if not (np.isfinite(self.density) and self.density > 0):
            raise InputError(f"material.density = {self.density!r}; allowed: a finite number > 0")
        if self.model not in ("plane_stress", "plane_strain", "solid"):
            raise InputError(
                f"material.model = {self.model!r}; allowed: 'plane_stress', 'plane_strain', 'solid'"
            )
        if not (np.isfinite(self.thickness) and self.thickness > 0):
            raise InputError(f"material.thickness = {self.thickness!r}; allowed: a finite number > 0")

    def lame(self) -> tuple[float, float]:
        """Lamé parameters (λ, μ) of the model; plane stress uses λ* = 2λμ/(λ + 2μ)."""
        lam = self.E * self.nu / ((1 + self.nu) * (1 - 2 * self.nu))
        mu = self.E / (2 * (1 + self.nu))
        if self.model == "plane_stress":
            lam = 2 * lam * mu / (lam + 2 * mu)
        return lam, mu


@dataclass(frozen=True)
class Support:
    """Fixed (zero) displacement components.

    Parameters
    ----------
    where : str or callable
        A named boundary of the mesh (``"left"``, a Gmsh physical group, …) or a predicate on
        coordinates ``x`` of shape (dim, n) returning a boolean mask (n,). The predicate is applied
        to the location of every degree of freedom (vertices, and edge/face/interior nodes of
        quadratic elements), so ``lambda x: np.isclose(x[0], 0)`` fixes a whole edge and
        :func:`at_point` a single node.
    components : tuple of int or None
        Displacement components to fix, 0-based (0 = x, 1 = y, 2 = z); ``None`` fixes all.
    """

    where: Union[str, Predicate]
    components: tuple[int, ...] | None = None

    def describe(self) -> str:
        where = self.where if isinstance(self.where, str) else getattr(self.where, "__name__", "predicate")
        comps = "all components" if self.components is None else f"components {tuple(self.components)}"
        return f"{where!r}, {comps}"


def at_point(point: Sequence[float], tol: float = 1e-9) -> Predicate:
    """Predicate selecting the locations within ``tol`` of ``point`` (a single node)."""
    p = np.asarray(point, dtype=float)

    def near(x: np.ndarray) -> np.ndarray:
        return np.linalg.norm(x - p[: x.shape[0], None], axis=0) <= tol

    near.__name__ = f"point{tuple(float(v) for v in p)}"
    return near


@dataclass(frozen=True)
class PointMass:
    """A non-structural mass, lumped on the translational dofs of nearby mesh vertices.

    Parameters
    ----------
    mass : float
        Total mass (kg). For 2D models it is the mass per the given thickness, i.e. it is added as
        is, not multiplied by the thickness.
    at : sequence of float
        Location (m). With ``radius == 0`` the whole mass goes to the nearest vertex.
    radius : float
        With ``radius > 0`` the mass is shared equally by all vertices within that distance.
    """

    mass: float
    at: tuple[float, ...]
    radius: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.mass) and self.mass > 0):
            raise InputError(f"point mass = {self.mass!r}; allowed: a finite number > 0")
        if not self.radius >= 0:
            raise InputError(f"point mass radius = {self.radius!r}; allowed: >= 0")


EIGENSOLVERS = ("auto", "arpack", "subspace", "amg")


@dataclass(frozen=True)
class Analysis:
    """Settings of the modal analysis.

    Parameters
    ----------
    n_modes : int
        Number of leading eigenpairs to compute.
    shift : "auto" or float
        Spectral shift σ of the shift-invert Lanczos solve. ``"auto"`` uses a small negative shift
        (σ = -1e-8 · mean(diag K)/mean(diag M)) so that K - σM is positive definite even for a free
        structure and rigid-body modes (λ ≈ 0) come out with the rest. A user number σ finds the
        modes closest to σ.
    cluster_tol : float
        Relative tolerance under which neighbouring eigenvalues count as one (repeated) cluster.
    backend : str
        Factorisation backend: ``"auto"``, ``"pardiso"``, ``"superlu"``, ``"cholmod"``.
    eigensolver : str
        ``"arpack"``: shift-invert Lanczos with a fresh factorisation per design (the reference);
        ``"subspace"``: block solver warm-started from the previous modes and preconditioned by a
        factorisation kept from an earlier design (refreshed when convergence slows);
        ``"amg"``: LOBPCG with an algebraic-multigrid preconditioner, no factorisation (large 3D);
        ``"auto"``: ``"subspace"`` when optimising a 3D model or a 2D one with at least 10 000
        free dofs, else ``"arpack"`` (the faster of the two there; docs/performance.md);
        ``"amg"`` for a 3D model of 100 000 free dofs or more whose factorisation would need more
        than half the available memory (PARDISO's estimate).
    eigen_tol : float or None
        Convergence tolerance of the eigen solver. ``"subspace"``, ``"amg"``: the relative
        residual of every differentiated eigenpair in the energy norm, about the relative error of
        its eigenvector and hence of its sensitivities. ``"arpack"``: ARPACK's ``tol``, the relative
        residual of the shift-inverted problem (eigenvector error about tol·λ/gap). Eigenvalues,
        Rayleigh quotients of the vectors, are then accurate to about ``eigen_tol²``. ``None``: the
        solver's default (ARPACK: machine precision; subspace: 1e-6; amg: 1e-8). A looser ARPACK
        tolerance saves solves and leaves the eigenvalues unchanged to rounding, since they are
        accurate to about its square.
    eigen_tol_per_change : float
        ``"subspace"`` during an optimisation: the differentiated modes converge to
        ``min(max(eigen_tol, eigen_tol_per_change · Δ), 1e-4)`` where Δ is the RMS change of the
        physical densities since the last evaluated design — gradients as accurate as a step of
        that size needs, full accuracy again as the design settles (see
        :class:`~fem_eigopt.solvers.subspace.SubspaceModalSolver`, ``tol_per_change``; fewer
        preconditioner solves). ``"amg"``: its tolerance is loosened by the same factor, at
        most 100 (:class:`~fem_eigopt.solvers.amg.AMGModalSolver`). Gradient checks and outputs always
        get ``eigen_tol``. 0: always ``eigen_tol`` (runs are then also less sensitive to threaded
        PARDISO's last bits).
    preconditioner_precision : str
        Precision of the factorisation that preconditions the ``"subspace"`` solver: ``"double"``,
        ``"single"`` (PARDISO only: half the memory traffic, faster factorisations and solves,
        the same converged modes, since the preconditioner's error only costs iterations — see
        :class:`~fem_eigopt.solvers.subspace.SubspaceModalSolver`) or ``"auto"``: single when PARDISO is
        the backend (faster MMA iterations in 2D and 3D with the same objectives; see
        docs/performance.md), else double. Other eigen solvers need exact solves or no factorisation; ``"single"`` is
        refused for them.
    """

    n_modes: int = 6
    shift: Union[str, float] = "auto"
    cluster_tol: float = 1e-6
    backend: str = "auto"
    eigensolver: str = "auto"
    eigen_tol: Optional[float] = None
    eigen_tol_per_change: float = 1e-2
    preconditioner_precision: str = "auto"

    def __post_init__(self) -> None:
        if self.eigen_tol is not None and not (isinstance(self.eigen_tol, (int, float))
                                               and 0 < self.eigen_tol < 1):
            raise InputError(f"analysis.eigen_tol = {self.eigen_tol!r}; allowed: None or 0 < tol < 1")
        if not (isinstance(self.eigen_tol_per_change, (int, float)) and 0 <= self.eigen_tol_per_change < 1e3):
            raise InputError(f"analysis.eigen_tol_per_change = {self.eigen_tol_per_change!r}; "
                             "allowed: a number >= 0 (0: always eigen_tol)")
        if not (isinstance(self.n_modes, (int, np.integer)) and self.n_modes >= 1):
            raise InputError(f"analysis.n_modes = {self.n_modes!r}; allowed: an integer >= 1")
        if not (self.shift == "auto" or isinstance(self.shift, (int, float)) and np.isfinite(self.shift)):
            raise InputError(f"analysis.shift = {self.shift!r}; allowed: 'auto' or a finite number")
        if not (0 <= self.cluster_tol < 1):
            raise InputError(f"analysis.cluster_tol = {self.cluster_tol!r}; allowed: 0 <= tol < 1")
        if self.eigensolver not in EIGENSOLVERS:
            raise InputError(f"analysis.eigensolver = {self.eigensolver!r}; allowed: "
                             + ", ".join(repr(e) for e in EIGENSOLVERS))
        if self.preconditioner_precision not in ("auto", "double", "single"):
            raise InputError(f"analysis.preconditioner_precision = {self.preconditioner_precision!r}; "
                             "allowed: 'auto', 'double', 'single'")
        if self.preconditioner_precision == "single" and self.eigensolver in ("arpack", "amg"):
            raise InputError(f"analysis.preconditioner_precision = 'single' with eigensolver = "
                             f"{self.eigensolver!r}; allowed: with eigensolver 'subspace' or 'auto' only "
                             "(the others need exact solves or no factorisation)")


@dataclass(frozen=True)
class DensityDesign:
    """Element densities as design variables (topology optimisation).

    Parameters
    ----------
    initial : float or array (n_elem,)
        Starting density.
    x_min : float
        Lower bound of the densities (upper bound is 1).
    stiffness : Interpolation
        E(x)/E0, e.g. :class:`~fem_eigopt.design.interpolation.SIMP`.
    mass : Interpolation
        ρ(x)/ρ0, e.g. :class:`~fem_eigopt.design.interpolation.LinearMass` or ``TwoRangeMass``.
    filter : {"density", "helmholtz", "none"}
        Density filter (Bruns & Tortorelli 2001) or PDE filter (Lazarov & Sigmund 2011).
    filter_radius : float or None
        Filter radius in length units; ``None`` = 1.5 × the mean element size.
    projection_beta : float
        Initial β of the Heaviside projection (Wang, Lazarov & Sigmund 2011); 0 = no projection.
    projection_eta : float
        Threshold η of the projection, 0 < η < 1 (0.5: the projection keeps the volume of a
        uniform design; other values erode or dilate, as in robust formulations).
    beta_max, beta_factor, beta_every : float, float, int
        β continuation: β ← β · factor every ``beta_every`` evaluations up to ``beta_max``; our
        MMA carries on through each change, NLopt restarts (``OptimizerSettings.restart_step``
        caps its first steps). ``beta_max <= projection_beta`` (the default 0) keeps β fixed.
        The default 100 evaluations per level is what the Du & Olhoff beams measured best with
        (docs/du-olhoff.md).
    erosion : float
        Δ > 0 turns on the robust formulation of Wang, Lazarov & Sigmund (2011) with an eroded
        realisation: the design projected at threshold η + Δ must meet the eigenvalue bounds and
        constraints too (the volume is measured on the design itself, η). A member thinner than
        what survives erosion is worthless to the eroded design, so the optimum keeps members
        that are solid through their core: a minimum member size (it grows with Δ and the
        filter radius) and crisp designs with hardly any grey elements. Each evaluation solves
        the eigenproblem twice. Needs projection (``projection_beta > 0``) and an objective in
        bound form (``MaxMinEigenvalues(method="bound")``, ``MaxGap``) or a volume objective;
        0 < Δ < min(η, 1 − η). docs/du-olhoff.md measures what it costs the beams.
    passive_solid, passive_void : predicate or None
        Elements whose centroid satisfies the predicate (x of shape (dim, n_elem) → bool) are fixed
        at 1 (solid: a mounting point) or x_min (void: a hole or a cable route) and are not
        design variables.
    symmetry : sequence of (axis, coordinate)
        Mirror planes the design keeps, e.g. ``(("x", 4.0), ("y", 0.5))``: mirror-image elements
        share one design variable, so a symmetric problem gets a symmetric design on every
        machine (rounding cannot break the symmetry) with half or a quarter of the variables.
        The mesh and the passive regions must be symmetric about the planes.
    """

    initial: Any = 0.5
    x_min: float = 1e-3
    stiffness: Interpolation = field(default_factory=SIMP)
    mass: Interpolation = field(default_factory=LinearMass)
    filter: str = "density"
    filter_radius: float | None = None
    projection_beta: float = 0.0
    projection_eta: float = 0.5
    beta_max: float = 0.0
    beta_factor: float = 2.0
    beta_every: int = 100
    erosion: float = 0.0
    passive_solid: Any = None
    passive_void: Any = None
    symmetry: Sequence[tuple[str, float]] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.symmetry, (tuple, list)) and all(
                isinstance(p, (tuple, list)) and len(p) == 2 and p[0] in ("x", "y", "z") and _is_number(p[1])
                for p in self.symmetry)):
            raise InputError(f"design.symmetry = {self.symmetry!r}; allowed: a sequence of (axis, coordinate) "
                             "pairs, axis 'x', 'y' or 'z', e.g. (('x', 4.0),)")
        if self.filter not in ("density", "helmholtz", "none"):
            raise InputError(f"design.filter = {self.filter!r}; allowed: 'density', 'helmholtz', 'none'")
        if self.filter_radius is not None and not (_is_number(self.filter_radius) and self.filter_radius > 0):
            raise InputError(f"design.filter_radius = {self.filter_radius!r}; allowed: a length > 0 or None")
        for name in ("projection_beta", "beta_max"):
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0):
                raise InputError(f"design.{name} = {value!r}; allowed: a finite number >= 0 (0: no projection)")
        if not (_is_number(self.projection_eta) and 0 < self.projection_eta < 1):
            raise InputError(f"design.projection_eta = {self.projection_eta!r}; allowed: 0 < eta < 1")
        if not (_is_number(self.erosion) and 0 <= self.erosion < min(self.projection_eta, 1 - self.projection_eta)):
            raise InputError(f"design.erosion = {self.erosion!r}; allowed: 0 (off) or a number with "
                             f"0 < erosion < min(eta, 1 - eta) = {min(self.projection_eta, 1 - self.projection_eta):g}")
        if self.erosion > 0 and not self.projection_beta > 0:
            raise InputError(f"design.erosion = {self.erosion!r} with projection_beta = {self.projection_beta!r}; "
                             "allowed: erosion with projection_beta > 0 (erosion shifts the projection threshold)")
        if not (_is_number(self.beta_factor) and self.beta_factor > 1):
            raise InputError(f"design.beta_factor = {self.beta_factor!r}; allowed: a finite number > 1")
        if not (isinstance(self.beta_every, (int, np.integer)) and not isinstance(self.beta_every, bool)
                and self.beta_every >= 1):
            raise InputError(f"design.beta_every = {self.beta_every!r}; allowed: an integer >= 1 (evaluations)")
        if not (_is_number(self.x_min) and 0.0 <= self.x_min < 1.0):
            raise InputError(f"design.x_min = {self.x_min!r}; allowed: 0 <= x_min < 1")
        init = np.asarray(self.initial, dtype=float)
        if np.any(init < self.x_min) or np.any(init > 1.0) or not np.all(np.isfinite(init)):
            bad = init if init.ndim == 0 else init[(init < self.x_min) | (init > 1.0) | ~np.isfinite(init)][0]
            raise InputError(f"design.initial = {float(bad)!r}; allowed: numbers in [x_min, 1] = [{self.x_min}, 1]")

    def initial_densities(self, n_elem: int) -> np.ndarray:
        """The starting densities as an array of shape (n_elem,)."""
        init = np.asarray(self.initial, dtype=float)
        if init.ndim == 0:
            return np.full(n_elem, float(init))
        if init.shape != (n_elem,):
            raise InputError(f"design.initial has shape {init.shape}; allowed: a number or shape ({n_elem},)")
        return init.copy()


@dataclass(frozen=True)
class ShapeDesign:
    """Shape parameters p as design variables: vertex coordinates X(p) through a shape map.

    The mesh's topology, dofs and supports stay; the vertices move to ``shape_map.coordinates(p)``
    and the element matrices are recomputed there (:func:`~fem_eigopt.fem.geometry.model_at_coordinates`).
    Eigenvalue gradients are exact shape derivatives (:mod:`fem_eigopt.sensitivity.shape`).

    Parameters
    ----------
    shape_map : ShapeMap
        p (n_params,) → X (dim, n_vertices) built on the problem's mesh:
        :class:`~fem_eigopt.design.shape.BoundaryMotionMap` (any mesh: boundary velocities
        extended into the mesh), :class:`~fem_eigopt.design.shape.ProfileShapeMap` (the thickness
        profile of a bar) or :class:`~fem_eigopt.design.shape.LinearShapeMap`.
    initial : float or array (n_params,), optional
        Starting parameters; None: the map's ``reference_parameters()`` (the unmoved mesh) when it
        has them, else zeros.
    lower, upper : float or array (n_params,)
        Bounds of the parameters (units of p, e.g. m of thickness). Choose them so that the mesh
        stays valid over the whole box: for a profile map with ``kind="linear"`` or ``"bspline"``
        any ``lower > 0`` does (see :class:`~fem_eigopt.design.shape.ProfileShapeMap`); for a
        boundary-motion map check the corners and random points of the box with its ``quality``.
        A design that still inverts an element is refused with an
        :class:`~fem_eigopt.errors.InputError` naming the parameter values.
    names : sequence of str, optional
        Names of the parameters (history, messages); default the map's own ``names`` (e.g. those
        of the :class:`~fem_eigopt.design.shape.BoundaryVelocity` motions of a
        :class:`~fem_eigopt.design.shape.BoundaryMotionMap`), else ``p1, p2, …``.

    Notes
    -----
    Responses that have no meaning for a shape design are refused when the
    :class:`Problem` is built (:meth:`check_responses`): ``MinVolume`` and ``VolumeConstraint``
    (a volume *fraction of the design domain*, which is 1 whatever the shape; use
    ``VolumeLimit``), and ``ProfileThickness`` with a map that has no thickness profile.
    """

    shape_map: Any
    initial: Any = None
    lower: Any = -np.inf
    upper: Any = np.inf
    names: Sequence[str] | None = None

    def __post_init__(self) -> None:
        from fem_eigopt.design.shape import ShapeMap

        if not isinstance(self.shape_map, ShapeMap):
            raise InputError(f"design.shape_map is {self.shape_map!r}; allowed: a fem_eigopt ShapeMap "
                             "(e.g. ProfileShapeMap)")
        n = self.shape_map.n_params
        init, lo, hi = self.initial_parameters(), self.bounds()[0], self.bounds()[1]
        if np.any(lo > hi):
            raise InputError(f"design bounds lower = {lo.tolist()} > upper = {hi.tolist()}; allowed: lower <= upper")
        if np.any(init < lo) or np.any(init > hi):
            raise InputError(f"design.initial = {init.tolist()}; allowed: within the bounds "
                             f"[{lo.tolist()}, {hi.tolist()}]")
        if self.names is not None and len(self.names) != n:
            raise InputError(f"design.names has {len(self.names)} entries; allowed: {n}, one per parameter")

    @property
    def n_params(self) -> int:
        """Number of shape parameters."""
        return int(self.shape_map.n_params)

    def _vector(self, value: Any, what: str) -> np.ndarray:
        n = self.n_params
        v = np.asarray(value, dtype=float)
        if v.ndim == 0:
            v = np.full(n, float(v))
        if v.shape != (n,) or np.any(np.isnan(v)):
            raise InputError(f"design.{what} = {value!r}; allowed: a number or {n} numbers")
        return v

    def initial_parameters(self) -> np.ndarray:
        """Starting parameters p0, shape (n_params,)."""
        if self.initial is None:
            ref = getattr(self.shape_map, "reference_parameters", None)
            init = ref() if callable(ref) else np.zeros(self.n_params)
        else:
            init = self.initial
        init = self._vector(init, "initial")
        if not np.all(np.isfinite(init)):
            raise InputError(f"design.initial = {init.tolist()}; allowed: finite numbers")
        return init

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) bounds of the parameters, each shape (n_params,)."""
        return self._vector(self.lower, "lower"), self._vector(self.upper, "upper")

    def parameter_names(self) -> list[str]:
        """Names of the parameters: ``names``, else the map's ``names``, else ``p1, p2, …``."""
        if self.names is not None:
            return list(self.names)
        own = getattr(self.shape_map, "names", None)
        if own is not None and len(own) == self.n_params:
            return list(own)
        return [f"p{j + 1}" for j in range(self.n_params)]

    def check_responses(self, responses: Sequence[Any]) -> None:
        """Refuse responses that have no meaning for a shape design (one line each).

        Parameters
        ----------
        responses : sequence
            The objective and the constraints (None entries are skipped).

        Raises
        ------
        InputError
            For the first response that a shape design cannot evaluate: the reason and what to use.
        """
        for i, response in enumerate(responses):
            if response is None:
                continue
            where = "objective" if i == 0 else f"constraints[{i - 1}]"
            qualified = f"{type(response).__module__}.{type(response).__qualname__}"
            reason = _NOT_FOR_SHAPES.get(qualified)
            if reason is None and qualified == _PROFILE_THICKNESS and not hasattr(self.shape_map, "profile_jacobian"):
                reason = (f"needs a thickness profile, and {type(self.shape_map).__name__} has none; allowed: a "
                          "ProfileShapeMap, or bounds on the parameters")
            if reason is not None:
                raise InputError(f"{where} {type(response).__name__} with a ShapeDesign: {reason}")


# responses by qualified name (the problem room does not import the responses room) that a shape
# design refuses, and why
_NOT_FOR_SHAPES = {
    f"fem_eigopt.responses.volume.{name}": "it is a volume fraction of the design domain, 1 for every shape; "
    "allowed: fem_eigopt.VolumeLimit(max_ratio=..., min_ratio=...) (volume, or mass, relative to the start)"
    for name in ("MinVolume", "VolumeConstraint")
}
_PROFILE_THICKNESS = "fem_eigopt.responses.geometry.ProfileThickness"


_ELEMENTS = {
    "tri1": skfem.ElementTriP1,
    "tri2": skfem.ElementTriP2,
    "quad1": skfem.ElementQuad1,
    "quad2": skfem.ElementQuad2,
    "tet1": skfem.ElementTetP1,
    "tet2": skfem.ElementTetP2,
    "hex1": skfem.ElementHex1,
    "hex2": skfem.ElementHex2,
    "hexs2": skfem.ElementHexS2,
}


def element_by_name(name: str) -> skfem.Element:
    """A scalar scikit-fem element from a short name (``"quad1"``, ``"hex2"``, …)."""
    try:
        return _ELEMENTS[name.lower()]()
    except KeyError:
        raise InputError(f"element = {name!r}; allowed: {', '.join(_ELEMENTS)}") from None


@dataclass(frozen=True)
class Problem:
    """Everything fem_eigopt needs to analyse (and later optimise) one structure.

    Parameters
    ----------
    mesh : skfem.Mesh
        The mesh (any scikit-fem mesh; see :mod:`fem_eigopt.problem.mesh` for builders and file import).
    element : skfem.Element or str
        Scalar element for each displacement component (``skfem.ElementQuad2()`` or ``"quad2"``).
    material : Material
    supports : sequence of Support
    point_masses : sequence of PointMass
    analysis : Analysis
    design : DensityDesign, ShapeDesign or None
        Without a design the structure is analysed as solid (all scale factors 1); a
        :class:`ShapeDesign` is analysed at its initial parameters by the shape evaluator.
    objective, constraints, optimizer
        Optimisation settings (see :mod:`fem_eigopt.optimize.run`); unused by the modal analysis.
    name : str
        Short name used for result folders; the loader sets it from the file name if empty.
    description : str
    source : str
        Where the problem came from (file path); prefixes every error message.
    """

    mesh: skfem.Mesh
    element: Any
    material: Material
    supports: tuple[Support, ...] = ()
    point_masses: tuple[PointMass, ...] = ()
    analysis: Analysis = field(default_factory=Analysis)
    design: DensityDesign | ShapeDesign | None = None
    objective: Any = None
    constraints: tuple = ()
    optimizer: Any = None
    name: str = ""
    description: str = ""
    source: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self.source
        if not isinstance(self.mesh, skfem.Mesh):
            raise fail(where, f"mesh is {type(self.mesh).__name__}; allowed: a scikit-fem Mesh")
        element = self.element
        if isinstance(element, str):
            element = element_by_name(element)
            object.__setattr__(self, "element", element)
        if not isinstance(element, skfem.Element):
            raise fail(where, f"element is {element!r}; allowed: a scikit-fem element or one of {', '.join(_ELEMENTS)}")
        if type(element.refdom) is not type(self.mesh.elem.refdom):
            raise fail(
                where, f"element {type(element).__name__} does not fit a {type(self.mesh).__name__} "
                f"(reference domain {element.refdom.__name__} vs {self.mesh.elem.refdom.__name__})"
            )
        dim = self.mesh.dim()
        if dim == 3 and self.material.model != "solid":
            raise fail(where, f"material.model = {self.material.model!r} on a 3D mesh; allowed: 'solid'")
        if dim == 2 and self.material.model == "solid":
            raise fail(where, "material.model = 'solid' on a 2D mesh; allowed: 'plane_stress', 'plane_strain'")
        object.__setattr__(self, "supports", tuple(self.supports))
        object.__setattr__(self, "point_masses", tuple(self.point_masses))
        object.__setattr__(self, "constraints", tuple(self.constraints))
        for i, s in enumerate(self.supports):
            if not isinstance(s, Support):
                raise fail(where, f"supports[{i}] is {s!r}; allowed: a fem_eigopt.Support")
            if isinstance(s.where, str) and (self.mesh.boundaries is None or s.where not in self.mesh.boundaries):
                names = sorted(self.mesh.boundaries or {})
                raise fail(
                    where, f"supports[{i}] names boundary {s.where!r}; allowed: {', '.join(names) or 'none (the mesh has no named boundaries)'}"
                )
            if s.components is not None and not all(0 <= c < dim for c in s.components):
                raise fail(where, f"supports[{i}].components = {s.components!r}; allowed: 0..{dim - 1}")
        for i, pm in enumerate(self.point_masses):
            if len(pm.at) != dim:
                raise fail(where, f"point_masses[{i}].at = {pm.at!r}; allowed: {dim} coordinates")
        if isinstance(self.design, ShapeDesign):
            from fem_eigopt.design.shape import check_mesh_coordinates

            try:
                self.design.check_responses((self.objective,) + self.constraints)
            except InputError as exc:
                raise fail(where, str(exc)) from None
            p0 = self.design.initial_parameters()
            try:
                X0 = self.design.shape_map.coordinates(p0)
                check_mesh_coordinates(self.mesh, X0, params=p0)
            except InputError as exc:
                named = ", ".join(f"{n}={v:.6g}" for n, v in zip(self.design.parameter_names(), p0))
                raise fail(where, f"design.initial: {exc} [{named}]") from None

    @property
    def label(self) -> str:
        """The prefix of error messages about this problem (its file)."""
        return self.source or self.name or "problem"

    def with_changes(self, **changes: Any) -> "Problem":
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)
