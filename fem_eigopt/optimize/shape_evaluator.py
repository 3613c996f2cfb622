"""One evaluation of a shape design, in data-flow order, cached on the design vector.

::

    x = [z, b]  (scaled shape parameters z, bound variables b of the bound formulation)
      z ─► p = lower + (upper − lower) z  (z in [0, 1] for finite bounds, as densities)
      p ─► shape map ─► vertex coordinates X(p)                          (design.shape)
      X ─► validity check: every det J keeps its sign, else InputError   (fem.geometry)
      X ─► element matrices at X, assembly on the fixed pattern          (fem.geometry)
      K, M ─► λ, φ (the problem's eigen solver)                          (solvers)
      λ, φ, element volumes v(X), p, b ─► objective and constraints      (responses)
      partials ─► dλ_i/dX = φ_iᵀ(∂K/∂X − λ_i ∂M/∂X)φ_i element by element,
                  eigenvector functionals g(φ_i) by one adjoint solve each:
                  dg/dX = −yᵀ(∂K/∂X − λ_i ∂M/∂X)φ_i − ½ (φ_iᵀ∂g/∂φ_i) φ_iᵀ(∂M/∂X)φ_i,
                  dv_e/dX analytically                                    (sensitivity.shape)
      ─► (dX/dp)ᵀ: the shape map's vjp, + explicit ∂/∂p, × (upper − lower)   (design.shape)

The optimiser sees the parameters scaled to [0, 1] by their bounds (a parameter with an infinite
bound is used as is): MMA's asymptotes and initial steps, and the gradient check's step ``h0``,
are fractions of the variables' ranges, as for densities.

The same :class:`~fem_eigopt.responses.base.Response` objects as for density designs work here:
they see a :class:`~fem_eigopt.responses.base.ModalState` whose densities are ones and whose
element volumes are those of the moved mesh, so ``Σ v_e ρ_e`` is the structure's volume at X(p);
volume responses that report ``d_element_volumes`` (:class:`~fem_eigopt.responses.volume.VolumeLimit`)
get their exact shape gradient. Responses of the eigenvectors (``d_vectors``: an
:class:`~fem_eigopt.responses.eigenvector.EigenvectorObjective`, a
:class:`~fem_eigopt.responses.user.UserResponse` with eigenvector partials) get the adjoint of
:func:`~fem_eigopt.sensitivity.shape.eigenvector_coordinate_gradient`. Partials with respect to the
densities (``d_densities``) are dropped: the densities of a shape design are constant ones.
Responses without meaning for a shape design (volume fractions of the design domain) are
refused when the :class:`~fem_eigopt.problem.definition.Problem` is built
(:meth:`~fem_eigopt.problem.definition.ShapeDesign.check_responses`).

The public interface is the one of :class:`~fem_eigopt.optimize.evaluator.DesignEvaluator`
(``__call__(x) -> Evaluation``, ``start``, ``analyse``, ``last_analysis``, ``n_design``, ``solver``
…), so the driver and the gradient check take either; :func:`make_evaluator` picks by the design.
Both are :class:`~fem_eigopt.optimize.evaluation.EvaluatorBase`: the steps after the analysis
(responses, Jacobian, the evaluation and its cache) are one piece of code.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np

from fem_eigopt.errors import InputError, fail
from fem_eigopt.fem.assembly import Model, build_model
from fem_eigopt.fem.geometry import (
    check_coordinates,
    coordinate_gradient,
    element_volumes_at,
    model_at_coordinates,
    volume_coordinate_gradient,
)
from fem_eigopt.optimize.driver import Evaluation
from fem_eigopt.optimize.evaluation import REPORTED, EvaluatorBase
from fem_eigopt.problem.definition import Problem, ShapeDesign
from fem_eigopt.responses.base import ModalState, Partials
from fem_eigopt.sensitivity.shape import eigenvector_coordinate_gradient
from fem_eigopt.solvers.modes import Modes

logger = logging.getLogger(__name__)

__all__ = ["ShapeEvaluator", "make_evaluator", "mode_displacements", "refined_analysis", "shape_summary"]



def make_evaluator(problem: Problem, model: Model | None = None, backend: str | None = None):
    """The evaluator for the problem's design: :class:`ShapeEvaluator` for a
    :class:`~fem_eigopt.problem.definition.ShapeDesign`, else
    :class:`~fem_eigopt.optimize.evaluator.DesignEvaluator` (unchanged).

    Parameters
    ----------
    problem : Problem
    model : Model, optional
        Built from ``problem`` if not given.
    backend : str, optional
        Factorisation backend.
    """
    if isinstance(problem.design, ShapeDesign):
        return ShapeEvaluator(problem, model=model, backend=backend)
    from fem_eigopt.optimize.evaluator import DesignEvaluator

    return DesignEvaluator(problem, model=model, backend=backend)


class ShapeEvaluator(EvaluatorBase):
    """Evaluate objective, constraints and gradients of a shape design.

    Parameters
    ----------
    problem : Problem
        With a :class:`~fem_eigopt.problem.definition.ShapeDesign` and an objective; the mesh is the
        reference mesh of the shape map.
    model : Model, optional
        The reference model, built from ``problem`` if not given.
    backend : str, optional
        Factorisation backend (default: the problem's analysis setting).

    Attributes
    ----------
    n_design : int
        Number of shape parameters p (design variables z = (p − offset) / scale).
    offset, scale : ndarray (n_design,)
        p = offset + scale · z: the lower bound and the range for finite bounds, else 0 and 1.
    n_bounds : int
        Number of bound variables b appended to p.
    n_modes : int
        Eigenpairs computed per design.
    reference_volume : float
        Volume of the starting design (m³); ``info["volume_fraction"]`` is V(p) / this.
    beta, filter_radius : float
        0 (no projection, no filter); kept for the run's progress lines.
    """

    def __init__(self, problem: Problem, model: Model | None = None, backend: str | None = None) -> None:
        design = problem.design
        if not isinstance(design, ShapeDesign):
            raise fail(problem.label, "design is not a ShapeDesign; allowed: fem_eigopt.ShapeDesign(...) "
                       "for shape optimisation")
        if problem.objective is None:
            raise fail(problem.label, "objective is not set; allowed: e.g. fem_eigopt.TuningCents(...)")
        self.problem = problem
        self.design = design
        self.shape_map = design.shape_map
        self.model = build_model(problem) if model is None else model
        if self.shape_map.coordinates(design.initial_parameters()).shape != self.model.basis.mesh.p.shape:
            raise fail(problem.label, "design.shape_map gives coordinates of shape "
                       f"{self.shape_map.coordinates(design.initial_parameters()).shape}; allowed: the mesh's "
                       f"{self.model.basis.mesh.p.shape} (build the map on the problem's mesh)")
        self._set_responses(problem)
        self._set_modal_solver(problem, backend)
        self.n_design = self.design.n_params
        self.lower_p, self.upper_p = design.bounds()
        finite = np.isfinite(self.lower_p) & np.isfinite(self.upper_p) & (self.upper_p > self.lower_p)
        self.offset = np.where(finite, self.lower_p, 0.0)
        self.scale = np.where(finite, self.upper_p - self.lower_p, 1.0)
        self.beta = 0.0
        self.filter_radius = 0.0
        self.reference_volume = float(element_volumes_at(self.model, self.shape_map.coordinates(
            design.initial_parameters())).sum())
        self._cache_key: bytes | None = None
        self._cache: Evaluation | None = None
        self._solve_key: bytes | None = None
        self._solved: dict[str, Any] | None = None
        self.constraint_names: list[str] = []
        self.n_evaluations = 0
        self._prepared = False
        self.inexact_gradients = False  # no effect: every solve is to the solver's tolerance
        #: eigenvector adjoint solver (fem_eigopt.sensitivity.eigenvectors.adjoint_vector): "direct"
        #: (Nelson's reduction, one factorisation per mode, exact to rounding) or "minres" (reuses
        #: the modal solver's factorisation, but takes the components along the other computed modes
        #: as exact: with the subspace solver, whose undifferentiated modes converge loosely, a 3D
        #: test's amplitude gradient was off by 8e-6 relative and a MAC gradient by 1e-4, against
        #: 1e-8 with "direct"; see docs/guide/designs.md)
        self.adjoint_solver = "direct"

    # ------------------------------------------------------------------ set-up
    def parameters(self, z: np.ndarray) -> np.ndarray:
        """Shape parameters p = offset + scale · z (units of p), shape (n_design,)."""
        return self.offset + self.scale * np.asarray(z, dtype=float)

    def design_variables(self, p: np.ndarray) -> np.ndarray:
        """Design variables z = (p − offset) / scale of parameters p, shape (n_design,)."""
        return (np.asarray(p, dtype=float) - self.offset) / self.scale

    def initial_design(self) -> np.ndarray:
        """Starting design variables z0 (scaled parameters), shape (n_design,)."""
        return self.design_variables(self.design.initial_parameters())

    def perturbed_start(self, x0: np.ndarray, seed: int = 0, amplitude: float = 0.05) -> np.ndarray:
        """``x0`` with its design variables moved randomly by up to ``amplitude`` (a fraction of
        their range), kept 2·amplitude inside finite bounds: a generic point for a gradient check."""
        rng = np.random.default_rng(seed)
        x = np.array(x0, dtype=float)
        z = x[: self.n_design] + rng.uniform(-amplitude, amplitude, self.n_design)
        lo, hi = self.design_variables(self.lower_p), self.design_variables(self.upper_p)
        x[: self.n_design] = np.clip(z, lo + 2 * amplitude, hi - 2 * amplitude)
        return x

    def start(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prepare the responses at the starting design; return (x0, lower, upper) for the optimiser."""
        p0 = self.initial_design()
        state = self.analyse(p0)["state"]
        b0, lower_b, upper_b = [], [], []
        for r in [self.objective] + self.constraints:
            b0.extend(np.atleast_1d(r.prepare(state)).tolist())
            for lo, hi in r.bound_limits():
                lower_b.append(lo)
                upper_b.append(hi)
        self._prepared = True
        x0 = np.concatenate([p0, np.asarray(b0, dtype=float)])
        lower = np.concatenate([self.design_variables(self.lower_p), lower_b])
        upper = np.concatenate([self.design_variables(self.upper_p), upper_b])
        return x0, lower, upper

    def restart_point(self, x: np.ndarray) -> np.ndarray:
        """``x`` with its bound variables reset just inside their constraints."""
        x = np.array(x, dtype=float)
        state = self.analyse(x[: self.n_design])["state"]
        b = x[self.n_design:]
        for ri, r in enumerate([self.objective] + self.constraints):
            sl = self._bound_slices[ri]
            if sl.stop > sl.start:
                b[sl] = r.restart_bounds(state, b[sl])
        return x

    def initial_steps(self, x: np.ndarray, step: float | None) -> np.ndarray:
        """NLopt initial steps, shape (n_design + n_bounds,).

        Design variables: ``step`` (a fraction of their range) if given, else a quarter (10 % of
        |z| where a bound is infinite). Bound variables: 5 % of their value (at least 0.01).
        """
        steps = np.empty(x.size)
        frac = 0.25 if step is None else float(step)
        finite = np.isfinite(self.lower_p) & np.isfinite(self.upper_p)
        steps[: self.n_design] = np.where(finite, frac, np.maximum(0.1 * np.abs(x[: self.n_design]), 1e-12))
        steps[self.n_design:] = np.maximum(0.05 * np.abs(x[self.n_design:]), 0.01)
        return steps

    def set_beta(self, beta: float) -> None:
        """No projection in a shape design: accepted for interface compatibility, ignored."""

    def clear_cache(self) -> None:
        """Forget the cached evaluation and modal solve."""
        self._cache_key = None
        self._solve_key = None

    # ------------------------------------------------------------------ forward
    @property
    def last_analysis(self) -> dict[str, Any] | None:
        """The last :meth:`analyse` result (None before the first)."""
        return self._solved

    def coordinates(self, p: np.ndarray) -> np.ndarray:
        """Vertex coordinates X(p) (dim, n_vertices), checked for inverted elements.

        Raises
        ------
        InputError
            Some element is inverted or degenerate at X(p); the message names the problem and the
            parameter values (with their names).
        """
        p = np.asarray(p, dtype=float)
        X = self.shape_map.coordinates(p)
        try:
            check_coordinates(self.model, X, params=p)
        except InputError as exc:
            named = ", ".join(f"{n}={v:.6g}" for n, v in zip(self.design.parameter_names(), p))
            raise fail(self.problem.label, f"{exc} [{named}]") from None
        return X

    def analyse(self, z: np.ndarray) -> dict[str, Any]:
        """Forward analysis at design variables ``z`` (n_design,), cached on ``z``.

        Returns
        -------
        dict
            ``z`` (n_design,) the design variables, ``p`` the parameters, ``X`` (dim, n_vertices) the coordinates,
            ``mesh`` and ``model`` at X, ``rho`` (n_elem,) ones, ``element_volumes`` (n_elem,) m³,
            ``volume`` (m³), ``K``, ``M`` (n_free, n_free), ``modes`` (Modes), ``vectors``
            (n_free, n_modes), ``state`` (ModalState) and ``timings`` (seconds per stage).

        Raises
        ------
        InputError
            X(p) inverts an element (see :meth:`coordinates`).
        """
        z = np.array(z, dtype=float)
        key = z.tobytes()
        if key == self._solve_key and self._solved is not None:
            return self._solved
        p = self.parameters(z)
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        X = self.coordinates(p)
        model = model_at_coordinates(self.model, X)
        K, M = model.stiffness(), model.mass()
        volumes = element_volumes_at(self.model, X)
        t["assembly"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        modes = self.solver.solve(K, M)
        t["modal"] = time.perf_counter() - t1
        t.update({f"modal_{k}": v for k, v in self.solver.last_timings.items()})
        rho = np.ones(model.n_elements)
        state = ModalState(eigenvalues=modes.eigenvalues, vectors=modes.vectors, densities=rho,
                           element_volumes=volumes, clusters=modes.clusters, mass_matrix=M, model=model,
                           iteration=self.n_evaluations, parameters=p.copy(), shape_map=self.shape_map)
        self._solved = dict(z=z.copy(), p=p.copy(), X=X, mesh=model.basis.mesh, model=model, rho=rho,
                            element_volumes=volumes, volume=float(volumes.sum()), K=K, M=M, modes=modes,
                            vectors=modes.vectors, state=state, timings=t)
        self._solve_key = key
        return self._solved

    # ------------------------------------------------------------------ evaluation
    # __call__: EvaluatorBase's; the shape-specific steps:

    def _design_info(self, solved: dict[str, Any]) -> dict[str, Any]:
        return {"volume_fraction": solved["volume"] / self.reference_volume, "volume": solved["volume"],
                "parameters": solved["p"].copy()}

    def _gradients(self, solved: dict[str, Any], partials: list[Partials]) -> np.ndarray:
        """d(value)/dz for every partial, shape (n_partials, n_design)."""
        model: Model = solved["model"]
        modes: Modes = solved["modes"]
        p = solved["p"]
        R = len(partials)
        k = modes.eigenvalues.size
        X = solved["X"]
        dX = np.zeros((R,) + X.shape)
        D_lam = np.zeros((k, R))
        W_vol = np.zeros((model.n_elements, R))
        direct = np.zeros((R, self.n_design))
        for r, part in enumerate(partials):
            if part.d_eigenvalues is not None:
                D_lam[:, r] = part.d_eigenvalues
            if part.d_vectors is not None:
                dX[r] += self._eigenvector_terms(solved, part)
            if part.d_element_volumes is not None:
                W_vol[:, r] = part.d_element_volumes
            if part.d_parameters is not None:
                direct[r] = part.d_parameters
        used = np.flatnonzero(np.any(D_lam != 0, axis=1))
        in_cluster = [i for i in used if any(i in c for c in modes.clusters)]
        if in_cluster:
            logger.warning("shape gradients of repeated eigenvalues (modes %s) are not meaningful",
                           [i + 1 for i in in_cluster])
        for i in used:
            # dλ_i/dX = φ_iᵀ(∂K/∂X − λ_i ∂M/∂X)φ_i (Fox & Kapoor 1968), element by element
            phi_e = model.element_values(modes.vectors[:, i:i + 1])
            G = coordinate_gradient(model, phi_e, phi_e, wK=[1.0], wM=[-modes.eigenvalues[i]])
            dX += D_lam[i][:, None, None] * G[None]
        for r in np.flatnonzero(np.any(W_vol != 0, axis=0)):
            dX[r] += volume_coordinate_gradient(model, W_vol[:, r])
        return (self.shape_map.vjp(p, dX) + direct) * self.scale

    def _eigenvector_terms(self, solved: dict[str, Any], part: Partials) -> np.ndarray:
        """Σ_i d/dX of the eigenvector partials of one response, one adjoint solve per mode i, (dim, n_vertices)."""
        modes: Modes = solved["modes"]
        D = np.asarray(part.d_vectors, dtype=float)
        if D.shape != modes.vectors.shape:
            raise InputError(f"{self.problem.label}: response {part.name!r} has d_vectors of shape {D.shape}; "
                             f"allowed: {modes.vectors.shape} (n_free, n_modes)")
        out = np.zeros_like(solved["X"])
        for i in np.flatnonzero(np.any(D != 0, axis=0)):
            out += eigenvector_coordinate_gradient(
                solved["model"], solved["K"], solved["M"], modes, int(i), D[:, i], solver=self.adjoint_solver,
                factorization=self.solver.factorization)
        return out


# ----------------------------------------------------------------------------------------------
# re-analysis on a finer mesh


def _quadratic_element(mesh) -> str:
    import skfem

    for cls, name in ((skfem.MeshQuad1, "quad2"), (skfem.MeshTri1, "tri2"), (skfem.MeshHex1, "hex2"),
                      (skfem.MeshTet1, "tet2")):
        if type(mesh) is cls:
            return name
    raise InputError(f"mesh {type(mesh).__name__}; allowed for refined re-analysis: quad, tri, hex, tet meshes")


def refined_analysis(problem: Problem, parameters: np.ndarray, refine: int = 1,
                     element: str | None = None) -> dict[str, Any]:
    """Analyse the design ``parameters`` again on a finer mesh with quadratic elements.

    The reference mesh is refined ``refine`` times (each time every element is split in 2 along
    each axis: a mesh twice as fine for ``refine=1``) and the shape map rebuilt on it
    (``shape_map.on_mesh``: the same parametrisation, so the boundary follows the same smooth
    profile h(x) at the new vertices). The objective and constraints are deep copies of the
    problem's, prepared afresh at this design (mode identification by their own rule, e.g. the
    first vertical bending modes for :class:`~fem_eigopt.responses.tuning.TuningCents`).

    Parameters
    ----------
    problem : Problem
        The problem with its :class:`~fem_eigopt.problem.definition.ShapeDesign` (coarse mesh).
    parameters : ndarray (n_params,)
        The design to check (e.g. the tuned one).
    refine : int
        Number of uniform refinements (1: element size halved).
    element : str, optional
        Element name; default the quadratic element of the mesh type (``quad2``, ``tri2``,
        ``hex2``, ``tet2``).

    Returns
    -------
    dict
        ``frequencies_hz`` (list, all computed modes), ``objective`` (value), ``constraints``
        (list), ``n_elements``, ``n_free_dofs``, ``element``, plus whatever the responses report
        (``tuning_cents``, ``tuning_frequencies_hz``, …).

    Raises
    ------
    InputError
        The design has no ``on_mesh`` shape map, or the parameters invert an element.
    """
    design = problem.design
    if not isinstance(design, ShapeDesign):
        raise fail(problem.label, "refined_analysis needs a ShapeDesign")
    if not hasattr(design.shape_map, "on_mesh"):
        raise fail(problem.label, f"shape map {type(design.shape_map).__name__} cannot be rebuilt on a finer mesh "
                   "(no on_mesh method)")
    if not (isinstance(refine, int) and refine >= 1):
        raise InputError(f"refine = {refine!r}; allowed: an integer >= 1")
    p = np.asarray(parameters, dtype=float)
    mesh = problem.mesh.refined(refine)
    if problem.mesh.boundaries:
        # scikit-fem drops named boundaries on refinement; the structured meshes' default names
        # (left, right, bottom, top, …) are rebuilt, other names make the Problem refuse to build
        mesh = mesh.with_defaults()
    element = element or _quadratic_element(problem.mesh)
    fine_map = design.shape_map.on_mesh(mesh)
    fine = problem.with_changes(
        mesh=mesh, element=element,
        design=ShapeDesign(fine_map, initial=p, lower=np.minimum(design.bounds()[0], p),
                           upper=np.maximum(design.bounds()[1], p), names=design.names),
        objective=copy.deepcopy(problem.objective), constraints=copy.deepcopy(tuple(problem.constraints)),
    )
    evaluator = ShapeEvaluator(fine)
    x0, _, _ = evaluator.start()
    ev = evaluator(x0)
    out = {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in ev.info.items()
           if k in REPORTED and k != "tracked_modes"}
    out.update({
        "frequencies_hz": ev.info["frequencies_hz"].tolist(),
        "objective": float(ev.f),
        "constraints": ev.g.tolist(),
        "n_elements": int(evaluator.model.n_elements),
        "n_free_dofs": int(evaluator.model.n_free),
        "element": element,
        "refine": refine,
    })
    logger.info("refined re-analysis (%d elements, %s, %d free dofs): %s", out["n_elements"], element,
                out["n_free_dofs"], {k: out[k] for k in ("tuning_cents",) if k in out})
    return out


# ----------------------------------------------------------------------------------------------
# what a run reports for a shape design


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def shape_summary(evaluator: ShapeEvaluator, final: Evaluation, initial: Evaluation | None = None,
                  refine: int | None = 1) -> dict[str, Any]:
    """The entries a run adds to ``summary.json`` for a shape design.

    Parameters
    ----------
    evaluator : ShapeEvaluator
    final : Evaluation
        The evaluation of the final (best) design.
    initial : Evaluation, optional
        The evaluation of the starting design (for ``parameters_initial``, ``volume_initial_m3``).
    refine : int or None
        Also re-analyse the final design on a mesh refined this many times with quadratic
        elements (:func:`refined_analysis`); None: skip.

    Returns
    -------
    dict
        ``design`` ("shape"), ``parameter_names``, ``parameters_final`` (and ``_initial``),
        ``volume_m3``, ``volume_ratio`` (to the starting design), every report of the responses
        (``tuning_cents``, ``tuning_frequencies_hz``, ``tuning_targets_hz``, ``tuning_modes``,
        ``keep_away_cents``, ``keep_away_mode``) and ``refined`` (the
        refined re-analysis: its ``tuning_cents``, ``frequencies_hz``, ``n_elements``, …, or
        ``{"error": message}`` when it could not be done).
    """
    info = final.info
    out: dict[str, Any] = {
        "design": "shape",
        "parameter_names": evaluator.design.parameter_names(),
        "parameters_final": _jsonable(info["parameters"]),
        "volume_m3": float(info["volume"]),
        "volume_ratio": float(info["volume_fraction"]),
    }
    if initial is not None:
        out["parameters_initial"] = _jsonable(initial.info["parameters"])
        out["volume_initial_m3"] = float(initial.info["volume"])
    for k in REPORTED:
        if k in info and k != "tracked_modes":  # per evaluation: the history's business
            out[k] = _jsonable(info[k])
    if refine:
        try:
            out["refined"] = refined_analysis(evaluator.problem, info["parameters"], refine=refine)
        except InputError as exc:
            logger.warning("refined re-analysis not done: %s", exc)
            out["refined"] = {"error": str(exc)}
    return out


def mode_displacements(evaluator: ShapeEvaluator, solved: dict[str, Any],
                       modes: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vertex displacements of chosen modes of an analysed shape design (for pictures).

    Parameters
    ----------
    evaluator : ShapeEvaluator
    solved : dict
        An :meth:`ShapeEvaluator.analyse` result (e.g. ``evaluator.last_analysis``).
    modes : list of int, optional
        1-based mode numbers; default the tuned partials when the objective reported them
        (``state.info["tuning_modes"]``), else the first elastic modes after the rigid-body ones.

    Returns
    -------
    eigenvalues : ndarray (k,)
        (rad/s)².
    displacements : ndarray (k, n_vertices, dim)
        M-normalised mode shapes at the vertices of the moved mesh.
    """
    from fem_eigopt.responses.base import rigid_body_count

    state: ModalState = solved["state"]
    if modes is None:
        modes = state.info.get("tuning_modes")
    if modes is None:
        n_rigid = rigid_body_count(state.eigenvalues)
        modes = list(range(n_rigid + 1, min(n_rigid + 4, state.eigenvalues.size) + 1))
    idx = [int(m) - 1 for m in modes]
    model: Model = solved["model"]
    disp = np.stack([model.nodal_displacements(state.vectors[:, i]) for i in idx])
    return state.eigenvalues[idx].copy(), disp
