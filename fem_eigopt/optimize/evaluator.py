"""One evaluation of a design, in data-flow order, cached on the design vector.

::

    x = [z, b]  (density design variables z, bound variables b of the bound formulation)
      z ─► design map ─► filter ─► projection ─► ρ̄                       (filters.DensityChain)
      ρ̄ ─► s_K = E(ρ̄)/E0, s_M = ρ(ρ̄)/ρ0                                   (materials)
      s  ─► K, M on the free dofs (fixed pattern)                           (assembly.Model)
      K, M ─► λ, φ (shift-invert, factorisation and pattern reused, warm start)   (modal)
      λ, φ, ρ̄, b ─► objective and constraints with their partials          (objectives)
      partials ─► ∂/∂s_K, ∂/∂s_M element by element: φ_eᵀK_eφ_e, −λφ_eᵀM_eφ_e
                  (+ eigenvector adjoint solves for ∂g/∂φ ≠ 0)              (adjoint)
      ─► chain rule back through interpolation, projection, filter, design map

With ``DensityDesign.erosion`` the eroded realisation (:class:`ErodedRealisation`) repeats the
steps for the design projected at η + Δ and appends its constraint rows to this evaluation's.
The steps from the modes on (responses, Jacobian, the evaluation and its cache) are
:class:`~fem_eigopt.optimize.evaluation.EvaluatorBase`'s, shared with the shape evaluator.

One call computes the objective, every constraint and all their gradients; NLopt then asks for
the objective and the constraints separately at the same point, and the optimiser wrapper serves
both from one evaluation.

Repeated eigenvalues. Inside a cluster of (nearly) equal eigenvalues the eigenvectors are any
M-orthonormal basis of the cluster's eigenspace, and the individual eigenvalues are only
directionally differentiable: along a design change d their derivatives are the eigenvalues of the
m × m matrix F(d) = Φ_cᵀ (ΔK(d) − λ̄ ΔM(d)) Φ_c (Seyranian, Lund & Olhoff 1994). Before the
responses see the modes, each cluster's basis is rotated to the eigenvectors of F(d) for the most
recent design change d, so that the per-mode gradients φ_jᵀ(∂K − λ∂M)φ_j of the cluster members
are the generalised gradients of Du & Olhoff (2007) that reproduce the exact one-sided directional
derivatives along d, ordered like the eigenvalues. Functions symmetric in a cluster (sums, the
bound constraints taken together) get their exact gradients either way.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np

from fem_eigopt.design.density import DensityChain, DesignMap
from fem_eigopt.design.filters import DensityFilter, HelmholtzFilter, element_volumes
from fem_eigopt.design.projection import HeavisideProjection
from fem_eigopt.errors import fail
from fem_eigopt.fem.assembly import Model, build_model
from fem_eigopt.optimize.driver import Evaluation
from fem_eigopt.optimize.evaluation import EvaluatorBase
from fem_eigopt.problem.definition import DensityDesign, Problem
from fem_eigopt.responses.base import ModalState, Partials, Response
from fem_eigopt.responses.volume import VolumeConstraint, VolumeLimit
from fem_eigopt.sensitivity.eigenvalues import (
    cluster_increment_matrix,
    element_energies,
)
from fem_eigopt.sensitivity.eigenvectors import eigenvector_adjoint
from fem_eigopt.solvers.modes import Modes

logger = logging.getLogger(__name__)

__all__ = ["DesignEvaluator", "ErodedRealisation", "Evaluation", "mean_element_size"]


def mean_element_size(mesh) -> float:
    """Mean element size h = mean(volume_e)^(1/dim) (m)."""
    return float(np.mean(element_volumes(mesh)) ** (1.0 / mesh.dim()))


def mode_weights(d_eigenvalues: np.ndarray, eigenvalues: np.ndarray, partials: list[Partials]) -> np.ndarray:
    """How much each mode's sensitivities weigh in the responses' gradients, in [0, 1].

    For every partial r, w_ir = |∂f_r/∂λ_i| |λ_i| divided by its largest over i (the share of
    mode i's term in the relative gradient of f_r, since |∇λ_i| scales with λ_i); the weight of
    mode i is its largest share over the partials, 1 for modes whose eigenvectors a response
    uses (their adjoint needs them accurately). The subspace solver converges lightly weighted
    modes less tightly (:meth:`~fem_eigopt.solvers.subspace.SubspaceModalSolver._accurate_tolerances`).

    Parameters
    ----------
    d_eigenvalues : ndarray (n_modes, n_partials)
        ∂f_r/∂λ_i.
    eigenvalues : ndarray (n_modes,)
    partials : list of Partials
    """
    terms = np.abs(d_eigenvalues) * np.abs(eigenvalues)[:, None]
    peak = terms.max(axis=0, initial=0.0)
    shares = np.divide(terms, peak, out=np.zeros_like(terms), where=peak > 0)
    weights = shares.max(axis=1, initial=0.0)
    for p in partials:
        if p.d_vectors is not None:
            used = np.flatnonzero(np.any(p.d_vectors != 0, axis=0))
            weights[used[used < weights.size]] = 1.0
    return weights


class DesignEvaluator(EvaluatorBase):
    """Evaluate objective, constraints and gradients of a density design.

    Parameters
    ----------
    problem : Problem
        Must have a :class:`~fem_eigopt.problem.definition.DensityDesign` and an objective.
    model : Model, optional
        Built from ``problem`` if not given.
    backend : str, optional
        Factorisation backend (default: the problem's analysis setting).

    Attributes
    ----------
    n_design : int
        Number of density variables z.
    n_bounds : int
        Number of bound variables b appended to z.
    constraint_names : list of str
    inexact_gradients : bool
        False (default): every evaluation's gradients are as accurate as the eigen solver's
        ``tol`` makes them (gradient checks, outputs). True (set by
        :func:`fem_eigopt.optimize.run.optimize` for the optimiser's steps): an iterative eigen solver
        is told how far the design moved since the last evaluation, and converges only as far as
        a step of that size needs (:class:`~fem_eigopt.solvers.subspace.SubspaceModalSolver`,
        ``tol_per_change``).
    """

    def __init__(self, problem: Problem, model: Model | None = None, backend: str | None = None,
                 *, robust: bool = True) -> None:
        design = problem.design
        if not isinstance(design, DensityDesign):
            raise fail(problem.label, "design is not set; allowed: fem_eigopt.DensityDesign(...) to optimise densities")
        if problem.objective is None:
            raise fail(problem.label, "objective is not set; allowed: e.g. fem_eigopt.MaxMinEigenvalues(n=2)")
        self.problem = problem
        self.model = build_model(problem) if model is None else model
        self.design = design
        mesh = problem.mesh
        self._set_responses(problem)

        self.filter_radius = design.filter_radius or 1.5 * mean_element_size(mesh)
        self.beta = float(design.projection_beta)
        self.chain = self._density_chain()

        self._set_modal_solver(problem, backend)
        self.n_design = self.chain.n_active
        self._cache_key: bytes | None = None
        self._cache: Evaluation | None = None
        self._solve_key: bytes | None = None
        self._solved: dict[str, Any] | None = None
        self._previous_rho: np.ndarray | None = None
        self.constraint_names: list[str] = []
        self.n_evaluations = 0
        self._prepared = False
        self.adjoint_solver = "minres"
        self.inexact_gradients = False
        # The robust formulation's eroded realisation (DensityDesign.erosion): its constraint rows
        # follow this evaluator's in every evaluation.
        self.eroded: ErodedRealisation | None = (
            ErodedRealisation(self, backend) if robust and design.erosion > 0 else None)

    # ------------------------------------------------------------------ set-up
    def _density_chain(self) -> DensityChain:
        """Design map, filter and projection of the design at β = :attr:`beta`."""
        design, mesh = self.design, self.problem.mesh
        design_map = DesignMap(mesh, design.passive_solid, design.passive_void, design.x_min,
                               symmetry=tuple(design.symmetry))
        if design.filter == "density":
            filt = DensityFilter(mesh, self.filter_radius)
        elif design.filter == "helmholtz":
            filt = HelmholtzFilter(mesh, self.filter_radius)
        else:
            filt = None
        projection = HeavisideProjection(self.beta, design.projection_eta) if self.beta > 0 else None
        # With projection, x_min is mapped to ~0: keep physical densities above x_min.
        return DensityChain.build(mesh, design_map, filt, projection,
                                  floor=design.x_min if projection is not None else 0.0)

    def initial_design(self) -> np.ndarray:
        """Starting density variables z0, shape (n_design,)."""
        return self.chain.design_map.initial(self.design.initial)

    def start(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prepare the responses at the starting design; return (x0, lower, upper) for the optimiser."""
        # Start feasible: with projection the floor x_min lifts a uniform start slightly above
        # the volume limit, and NLopt's MMA behaves badly from infeasible starts.
        z0 = self._within_volume(self.initial_design())
        solved = self.analyse(z0)
        state = solved["state"]
        b0 = []
        lower_b, upper_b = [], []
        for r in [self.objective] + self.constraints:
            b0.extend(np.atleast_1d(r.prepare(state)).tolist())
            for lo, hi in r.bound_limits():
                lower_b.append(lo)
                upper_b.append(hi)
        self._prepared = True
        if self.eroded is not None:
            self.eroded.adopt(self.objective, self.constraints, self._bound_slices)
        x0 = np.concatenate([z0, np.asarray(b0, dtype=float)])
        lower = np.concatenate([np.full(self.n_design, self.design.x_min), lower_b])
        upper = np.concatenate([np.ones(self.n_design), upper_b])
        return x0, lower, upper

    def restart_point(self, x: np.ndarray) -> np.ndarray:
        """``x`` with its bound variables reset just inside their constraints at the current β.

        After a β change the old bound variables may violate the bound constraints (the
        eigenvalues moved) and the projected volume may exceed its limit; NLopt's MMA restarted
        from such an infeasible point was seen to shed material to regain feasibility and run to
        the spurious void design (and, below a volume floor, add material until the design was
        solid). So the densities are first shifted uniformly back inside the volume limits (when a
        :class:`VolumeConstraint` is violated; bisection on the shift, filter and projection
        only), then the bound variables are reset.
        """
        x = np.array(x, dtype=float)
        x[: self.n_design] = self._within_volume(x[: self.n_design])
        state = self.analyse(x[: self.n_design])["state"]
        b = x[self.n_design:]  # a view: the bound variables are reset in place
        for ri, r in enumerate([self.objective] + self.constraints):
            sl = self._bound_slices[ri]
            if sl.stop > sl.start:
                b[sl] = r.restart_bounds(state, b[sl])
        if self.eroded is not None:
            self.eroded.tighten_bounds(x)
        return x

    def _within_volume(self, z: np.ndarray) -> np.ndarray:
        """``z + δ`` (clipped to the bounds) with the smallest |δ| that meets every volume limit."""
        vols = [r for r in self.constraints if isinstance(r, VolumeConstraint)]
        if not vols:
            return z
        upper = min(r.max_fraction for r in vols) * (1.0 - 1e-6)
        floors = [r.min_fraction for r in vols if r.min_fraction is not None]
        lower = max(floors) * (1.0 + 1e-6) if floors else -np.inf

        def volume(shift: float) -> float:
            rho = self.chain.forward(np.clip(z + shift, self.design.x_min, 1.0))
            return self.chain.volume_fraction(rho)[0]

        v0 = volume(0.0)
        if lower <= v0 <= upper:
            return z
        # volume grows with the shift: bisect for the violated limit, keeping the side that meets it
        if v0 > upper:
            ok, bad, meets = -1.0, 0.0, (lambda v: v <= upper)
        else:
            ok, bad, meets = 1.0, 0.0, (lambda v: v >= lower)
        for _ in range(50):
            mid = 0.5 * (ok + bad)
            if meets(volume(mid)):
                ok = mid
            else:
                bad = mid
        return np.clip(z + ok, self.design.x_min, 1.0)

    def initial_steps(self, x: np.ndarray, density_step: float | None) -> np.ndarray:
        """NLopt initial steps for a run starting at ``x``, shape (n_design + n_bounds,).

        Densities: ``density_step`` (None: NLopt's default, half the range). Bound variables: 5 %
        of their value (at least 0.01): their range [0, 50] would otherwise give them a first move
        of up to 22 — a restart after a β change was seen to throw the bound variable to 0 and
        lose the design.
        """
        steps = np.empty(x.size)
        steps[: self.n_design] = 0.5 * (1.0 - self.design.x_min) if density_step is None else density_step
        steps[self.n_design:] = np.maximum(0.05 * np.abs(x[self.n_design:]), 0.01)
        return steps

    def move_limits(self, move: float) -> np.ndarray:
        """Our MMA's move limit per variable (fractions of the ranges), shape (n_design + n_bounds,).

        Densities: ``move``. Bound variables (λ/λ_ref, range [0, 50]): ``move`` in their own
        units, i.e. ``move/50`` of the range. With ``move`` of the range a bound variable could
        jump by 2.5 λ_ref per iteration, far past the eigenvalues it bounds; on the Du & Olhoff
        beams that overshoot made MMA's artificial variables take over and the design collapse
        (docs/du-olhoff.md).
        """
        limits = np.full(self.n_design + self.n_bounds, float(move))
        if self.n_bounds:
            ranges = np.array([hi - lo for r in [self.objective] + self.constraints for lo, hi in r.bound_limits()])
            limits[self.n_design:] = np.minimum(1.0, move / ranges)
        return limits

    def set_beta(self, beta: float) -> None:
        """Change the projection sharpness β (continuation); clears the cache."""
        self.beta = float(beta)
        self.chain = self.chain.with_beta(beta)
        self.clear_cache()
        if self.eroded is not None:
            self.eroded.set_beta(beta)

    def clear_cache(self) -> None:
        """Forget the cached evaluation and modal solve: the next call solves afresh (e.g. to get
        the full accuracy for a design first evaluated with ``inexact_gradients``)."""
        self._cache_key = None
        self._solve_key = None
        if self.eroded is not None:
            self.eroded.clear_cache()

    # ------------------------------------------------------------------ forward
    @property
    def last_analysis(self) -> dict[str, Any] | None:
        """The last :meth:`analyse` result (read-only; None before the first)."""
        return self._solved

    def analyse(self, z: np.ndarray) -> dict[str, Any]:
        """Forward analysis of the density variables ``z`` (n_design,), cached on ``z`` and β.

        Parameters
        ----------
        z : ndarray (n_design,)
            Density design variables.

        Returns
        -------
        dict
            ``z``, ``rho`` (n_elem,) physical densities and ``pull`` (their chain rule back to z),
            ``s_K``, ``ds_K``, ``s_M``, ``ds_M`` (n_elem,) element scale factors and their
            derivatives, ``K``, ``M`` (n_free, n_free) matrices, ``modes`` (Modes),
            ``vectors`` (n_free, n_modes) with every cluster rotated for the latest design change,
            ``state`` (ModalState for the responses) and ``timings`` (seconds per stage).
        """
        key = np.ascontiguousarray(z).tobytes() + np.float64(self.beta).tobytes()
        if key == self._solve_key and self._solved is not None:
            return self._solved
        t = {}
        t0 = time.perf_counter()
        rho, pull = self.chain(z)
        s_K, ds_K = self.design.stiffness(rho)
        s_M, ds_M = self.design.mass(rho)
        t["filter"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        K = self.model.stiffness(s_K)
        M = self.model.mass(s_M)
        t["assembly"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        self.solver.design_change = self._design_change(rho) if self.inexact_gradients else None
        # No Lanczos warm start: ARPACK started in the span of the previous modes meets an
        # invariant subspace after k steps and restarts, which measured slower than the fixed
        # start vector; a fixed start also makes every evaluation depend on x alone.
        modes = self.solver.solve(K, M)
        t["modal"] = time.perf_counter() - t2
        t.update({f"modal_{k}": v for k, v in self.solver.last_timings.items()})
        vectors = self._align_clusters(modes, rho, ds_K, ds_M)
        state = ModalState(
            eigenvalues=modes.eigenvalues, vectors=vectors, densities=rho,
            element_volumes=self.chain.volumes, clusters=modes.clusters, mass_matrix=M, model=self.model,
            iteration=self.n_evaluations,
        )
        self._solved = dict(z=z.copy(), rho=rho, pull=pull, s_K=s_K, ds_K=ds_K, s_M=s_M, ds_M=ds_M, K=K, M=M,
                            modes=modes, vectors=vectors, state=state, timings=t)
        self._solve_key = key
        return self._solved

    def _design_change(self, rho: np.ndarray) -> float | None:
        """RMS change of the physical densities ``rho`` (n_elem,) since the last evaluated design
        (None before the first), the step size the eigen solver's accuracy may follow."""
        if self._previous_rho is None or self._previous_rho.shape != rho.shape:
            return None
        d = rho - self._previous_rho
        return float(np.sqrt(np.dot(d, d) / max(d.size, 1)))

    def _align_clusters(self, modes: Modes, rho: np.ndarray, ds_K: np.ndarray, ds_M: np.ndarray) -> np.ndarray:
        """Rotate each cluster's eigenvectors to diagonalise F(d) for the latest design change d."""
        vectors = modes.vectors
        if not modes.clusters or self._previous_rho is None:
            return vectors
        d_rho = rho - self._previous_rho
        if not np.any(d_rho):
            return vectors
        vectors = vectors.copy()
        dK, dM = ds_K * d_rho, ds_M * d_rho  # increments of the element scale factors
        for cluster in modes.clusters:
            idx = list(cluster)
            lam_bar = float(np.mean(modes.eigenvalues[idx]))
            Phi = vectors[:, idx]
            # Φᵀ(ΔK − λ̄ΔM)Φ element by element: no ΔK assembled on the pattern (docs/performance.md)
            F = cluster_increment_matrix(self.model, Phi, dK, dM, lam_bar)
            _, Q = np.linalg.eigh(0.5 * (F + F.T))
            vectors[:, idx] = Phi @ Q
        return vectors

    # ------------------------------------------------------------------ evaluation
    # __call__: EvaluatorBase's; the density-specific steps:

    def _design_info(self, solved: dict[str, Any]) -> dict[str, Any]:
        vf, _ = self.chain.volume_fraction(solved["rho"])
        return {"volume_fraction": vf}

    def _appended_rows(self, x: np.ndarray, info: dict[str, Any]) -> Evaluation | None:
        """The eroded realisation's rows (robust formulation), its ω and time in ``info``."""
        eroded = self._eroded_rows(x)
        if eroded is not None:
            self.constraint_names += [f"eroded_{name}" for name in self.eroded.constraint_names]
            info["eroded_omega"] = eroded.info["omega"]
            info["timings"]["eroded"] = eroded.info["timings"]["evaluation"]
        return eroded

    def _evaluated(self, solved: dict[str, Any]) -> None:
        self._previous_rho = solved["rho"].copy()  # the design change that aligns the next clusters

    def _eroded_rows(self, x: np.ndarray) -> Evaluation | None:
        """The eroded realisation's evaluation at ``x`` (None without erosion); its ``g`` and
        ``jac`` are the rows this evaluation appends to its constraints."""
        if self.eroded is None:
            return None
        self.eroded.inexact_gradients = self.inexact_gradients
        self.eroded.adjoint_solver = self.adjoint_solver
        return self.eroded(x)

    def _gradients(self, solved: dict[str, Any], partials: list[Partials]) -> np.ndarray:
        """d(value)/dz for every partial, shape (n_partials, n_design)."""
        model = self.model
        modes: Modes = solved["modes"]
        vectors = solved["vectors"]
        n_elem = model.n_elements
        R = len(partials)
        D_lam = np.zeros((modes.eigenvalues.size, R))
        for r, p in enumerate(partials):
            if p.d_eigenvalues is not None:
                D_lam[:, r] = p.d_eigenvalues
        # for the next design's per-mode tolerances (solvers without them ignore the weights)
        self.solver.mode_weights = mode_weights(D_lam, modes.eigenvalues, partials)
        g_sK = np.zeros((n_elem, R))
        g_sM = np.zeros((n_elem, R))
        used = np.flatnonzero(np.any(D_lam != 0, axis=1))
        if used.size:
            # dλ_i/ds_K,e = φ_eᵀ K_e φ_e, dλ_i/ds_M,e = −λ_i φ_eᵀ M_e φ_e, all used modes at once
            dK, dM = element_energies(model, vectors[:, used])
            dM *= -modes.eigenvalues[used]
            g_sK += dK @ D_lam[used]
            g_sM += dM @ D_lam[used]
        for r, p in enumerate(partials):
            if p.d_vectors is None:
                continue
            for i in np.flatnonzero(np.any(p.d_vectors != 0, axis=0)):
                # MINRES on the deflated system, preconditioned by the modal solve's factorisation
                # of K − σM: no new factorisation per design (see adjoint.eigenvector_adjoint).
                gK, gM = eigenvector_adjoint(model, solved["K"], solved["M"], modes, int(i), p.d_vectors[:, i],
                                             solver=self.adjoint_solver, factorization=self.solver.factorization)
                g_sK[:, r] += gK
                g_sM[:, r] += gM
        d_rho = solved["ds_K"][:, None] * g_sK + solved["ds_M"][:, None] * g_sM
        for r, p in enumerate(partials):
            if p.d_densities is not None:
                d_rho[:, r] += p.d_densities
        pull = solved["pull"]
        return np.stack([pull(d_rho[:, r]) for r in range(R)]) if R else np.zeros((0, self.n_design))


MATERIAL_RESPONSES = (VolumeConstraint, VolumeLimit)


class ErodedRealisation(DesignEvaluator):
    """The eroded design of the robust formulation (Wang, Lazarov & Sigmund 2011).

    The same design variables, filter and β as its parent, projected at the threshold
    η + Δ (``DensityDesign.erosion``): every member is thinner by about Δ's share of the filter
    radius on each side. It evaluates copies of the parent's prepared responses (the same scaling
    λ_ref and the same bound variables at the same places of x) except the volume constraints,
    which measure the material of the design itself. Its own eigen solver keeps its own warm
    start. The parent appends this realisation's constraint rows (the bound constraints
    b − λ_j(eroded)/λ_ref ≤ 0 of a bound objective, and every eigenvalue constraint) to its own,
    so MMA maximises the smaller of the two designs' bounds: a member that only the design
    itself has carries no weight, and the optimum keeps members solid through their core.

    Parameters
    ----------
    parent : DesignEvaluator
        The evaluator of the design itself (η).
    backend : str or None
        Linear-solver backend, as the parent's.
    """

    def __init__(self, parent: DesignEvaluator, backend: str | None = None) -> None:
        self._parent = parent
        super().__init__(parent.problem, parent.model, backend, robust=False)
        design = parent.design
        kept = [r for r in parent.constraints if not isinstance(r, MATERIAL_RESPONSES)]
        if parent.objective.n_bounds == 0 and not kept:
            raise fail(parent.problem.label, f"design.erosion = {design.erosion!r} with objective "
                       f"{type(parent.objective).__name__} and no eigenvalue constraint; allowed: erosion "
                       "with a bound objective (MaxMinEigenvalues(method='bound'), MaxGap) or with constraints "
                       "besides the volume (the eroded design has to meet something)")

    def _density_chain(self) -> DensityChain:
        """The parent's design map and filter (not built again), projected at η + Δ."""
        design = self.design
        return replace(self._parent.chain, projection=HeavisideProjection(
            self.beta, design.projection_eta + design.erosion))

    def adopt(self, objective: Response, constraints: list[Response], bound_slices: list[slice]) -> None:
        """Take copies of the parent's prepared ``objective`` and ``constraints`` (without the
        volume constraints), keeping each one's bound variables where the parent has them."""
        keep = [0] + [i + 1 for i, r in enumerate(constraints) if not isinstance(r, MATERIAL_RESPONSES)]
        responses = [objective, *constraints]
        self.objective = copy.deepcopy(objective)
        self.constraints = [copy.deepcopy(responses[i]) for i in keep[1:]]
        self._bound_slices = [bound_slices[i] for i in keep]
        self.n_bounds = sum(r.n_bounds for r in responses)
        self._prepared = True

    def tighten_bounds(self, x: np.ndarray) -> None:
        """Move the bound variables of ``x = [z, b]`` (in place) inside the eroded design's
        constraints too, after the parent reset them for its own (:meth:`restart_point`).

        Each response's restart value for the eroded design is taken where it is the tighter
        one: the smaller for a bound variable its constraints keep below eigenvalues (b − λ ≤ 0,
        ∂g/∂b > 0), the larger for one they keep above (λ − b ≤ 0), judged by the signs of
        ∂g/∂b in the response's own constraint rows.
        """
        state = self.analyse(x[: self.n_design])["state"]
        b = x[self.n_design:]
        for ri, r in enumerate([self.objective] + self.constraints):
            sl = self._bound_slices[ri]
            if sl.stop == sl.start:
                continue
            candidate = np.asarray(r.restart_bounds(state, b[sl].copy()), dtype=float)
            rows = r.evaluate(state, candidate)[1 if ri == 0 else 0:]
            for k in range(candidate.size):
                sign = sum(np.sign(p.d_bounds.get(k, 0.0)) for p in rows)
                if sign > 0:
                    b[sl.start + k] = min(b[sl.start + k], candidate[k])
                elif sign < 0:
                    b[sl.start + k] = max(b[sl.start + k], candidate[k])

    def start(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - guarded
        raise RuntimeError("an eroded realisation is started by its parent (DesignEvaluator.start)")
