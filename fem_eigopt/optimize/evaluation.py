"""What every evaluation does once its design is analysed, for density and shape designs alike.

::

    x = [z, b] ─► analyse(z): the design's forward analysis (the subclass's)
      λ, φ, b ─► objective and constraints with their partials          (responses)
      partials ─► d/dz (the subclass's chain rule) and d/db ─► one Jacobian
      ─► Evaluation(f, ∇f, g, ∂g/∂x, info), cached on x and β

:class:`EvaluatorBase` holds these steps; :class:`~fem_eigopt.optimize.evaluator.DesignEvaluator`
(densities) and :class:`~fem_eigopt.optimize.shape_evaluator.ShapeEvaluator` (shape parameters)
add the analysis, the gradients back to their variables, what they report beyond the modes and,
for the robust formulation, the constraint rows of the eroded design. :func:`bound_merit` judges
the points of a bound formulation by their design rather than by the lagging bound variable.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from fem_eigopt.errors import fail
from fem_eigopt.optimize.driver import Evaluation
from fem_eigopt.problem.definition import Problem
from fem_eigopt.responses.base import ModalState, Partials, Response, evaluate_responses, full_jacobian
from fem_eigopt.solvers.auto import make_modal_solver
from fem_eigopt.solvers.base import EigenSolver
from fem_eigopt.solvers.modes import Modes

logger = logging.getLogger(__name__)

__all__ = ["EvaluatorBase", "Evaluation", "bound_merit", "REPORTED"]

#: keys a response may put into ``ModalState.info`` that are copied into the evaluation's info
REPORTED = ("tracked_modes", "tuning_cents", "tuning_frequencies_hz", "tuning_targets_hz", "tuning_modes",
            "keep_away_cents", "keep_away_mode")

#: analysis stages whose time an evaluation counts when its analysis was done before the call
_ANALYSIS_STAGES = ("filter", "assembly", "modal")


class EvaluatorBase:
    """Objective, constraints and gradients from a design's modes; the subclass analyses.

    A subclass calls :meth:`_set_responses` (``objective``, ``constraints``, ``_bound_slices``)
    and :meth:`_set_modal_solver` (``solver``, ``n_modes``, ``max_mode``), and sets, before the
    first call: ``n_design``, ``beta``, ``n_evaluations = 0``, ``constraint_names = []``,
    ``_prepared``, ``_cache_key = _cache = None``; it implements ``start()``,
    ``analyse(z) -> dict`` (with ``modes``, ``state`` and ``timings`` among its entries) and
    ``_gradients(solved, partials)``, shape (n_partials, n_design). It may override
    :meth:`_design_info`, :meth:`_appended_rows` and :meth:`_evaluated`.
    """

    _warned_cut_cluster = False  # the warning of _check_used_cluster is given once per evaluator

    def _set_responses(self, problem: Problem) -> None:
        """``objective`` and ``constraints`` from ``problem`` (anything but a response is refused),
        each response's slice of the bound variables and their number ``n_bounds``."""
        self.objective: Response = problem.objective
        self.constraints: list[Response] = list(problem.constraints)
        for i, r in enumerate([self.objective] + self.constraints):
            if not isinstance(r, Response):
                where = "objective" if i == 0 else f"constraints[{i - 1}]"
                raise fail(problem.label, f"{where} is {r!r}; allowed: a fem_eigopt objective/constraint object")
        self._bound_slices: list[slice] = []
        start = 0
        for r in [self.objective] + self.constraints:
            self._bound_slices.append(slice(start, start + r.n_bounds))
            start += r.n_bounds
        self.n_bounds = start

    def _set_modal_solver(self, problem: Problem, backend: str | None) -> None:
        """``n_modes``, ``max_mode`` and the eigen ``solver`` for the responses (after :meth:`_set_responses`).

        One mode beyond the highest a response uses is computed, so that a cluster it belongs
        to is seen complete. Modes up to ``max_mode`` are differentiated and must be accurate
        (iterative solvers add what they need to see whether the last one's cluster is
        complete); the others are only reported. Whether the last mode's cluster continues
        beyond it matters only when that cluster holds a used mode: :meth:`_check_used_cluster`
        warns then, not the solver at every cut cluster (the symmetric beam's unused modes 3-6
        are one cluster with mode 7).
        """
        analysis = problem.analysis
        self.max_mode = max(r.max_mode for r in [self.objective] + self.constraints)
        self.n_modes = max(analysis.n_modes, self.max_mode + 1)
        if self.n_modes >= self.model.n_free:
            raise fail(problem.label, f"the responses need {self.n_modes} modes; allowed: fewer than the "
                       f"{self.model.n_free} free dofs")
        self.solver: EigenSolver = make_modal_solver(self.n_modes, analysis, backend=backend, model=self.model,
                                                     repeated=True, accurate_modes=self.max_mode)
        self.solver.warn_incomplete_cluster = False

    def __call__(self, x: np.ndarray) -> Evaluation:
        """Objective, constraints and gradients at ``x = [z, b]`` (cached on the bytes of x and β)."""
        x = np.asarray(x, dtype=float)
        key = x.tobytes() + np.float64(self.beta).tobytes()
        if key == self._cache_key and self._cache is not None:
            return self._cache
        if not self._prepared:
            self.start()
        t_start = time.perf_counter()
        z, b = x[: self.n_design], x[self.n_design:]
        solves_before = self.solver.n_solves
        solved = self.analyse(z)
        fresh_solve = self.solver.n_solves != solves_before
        self._check_used_cluster(solved["modes"])
        state: ModalState = solved["state"]
        state.iteration = self.n_evaluations
        state.info.clear()  # what the responses report is of this evaluation only
        partials = evaluate_responses([self.objective] + self.constraints, self._bound_slices, state, b)
        t_sens = time.perf_counter()
        grads = self._gradients(solved, partials)
        t_sens = time.perf_counter() - t_sens
        full = full_jacobian(grads, partials, x.size)
        # The objective's first item is the objective; its other items (bound formulation) are
        # constraints that belong to it.
        f = float(partials[0].value)
        g = np.array([part.value for part in partials[1:]], dtype=float)
        self.constraint_names = [part.name for part in partials[1:]]
        timings = dict(solved["timings"])
        timings["sensitivities"] = t_sens
        info = self._modal_info(solved["modes"])
        info.update(self._design_info(solved))
        info.update({k: state.info[k] for k in REPORTED if k in state.info})
        info["timings"] = timings
        appended = self._appended_rows(x, info)
        if appended is not None:
            g = np.concatenate([g, appended.g])
            full = np.vstack([full, appended.jac])
        # The forward solve may have run before this call (start() or a cached design); count it once.
        timings["evaluation"] = time.perf_counter() - t_start + (0.0 if fresh_solve else sum(
            v for k, v in solved["timings"].items() if k in _ANALYSIS_STAGES))
        merit = bound_merit(f, full[0, self.n_design:], g, full[1:, self.n_design:])
        if merit is not None:
            info["merit"] = merit
        ev = Evaluation(f=f, grad=full[0], g=g, jac=full[1:], info=info)
        self._cache_key, self._cache = key, ev
        self._evaluated(solved)
        self.n_evaluations += 1
        return ev

    def _check_used_cluster(self, modes: Modes) -> None:
        """Warn, once, when a cluster of equal eigenvalues holds a mode the responses use and goes
        on beyond the modes computed: its basis, and with it the generalised gradients, are then
        incomplete. A cut cluster of modes no response uses is only reported modes."""
        if not modes.cut_cluster or self._warned_cut_cluster:
            return
        last = modes.eigenvalues.size - 1
        lowest = min((min(c) for c in modes.clusters if last in c), default=last)
        if lowest < self.max_mode:
            logger.warning("modes %d to %d and the next one are a cluster (λ ≈ %.6g) and the responses use mode %d: "
                           "the cluster is cut, its gradients incomplete; allowed: more modes, "
                           "Analysis(n_modes=...) above the cluster", lowest + 1, last + 1,
                           float(modes.eigenvalues[last]), self.max_mode)
            self._warned_cut_cluster = True

    def _modal_info(self, modes: Modes) -> dict[str, Any]:
        return {"eigenvalues": modes.eigenvalues.copy(), "omega": modes.omega.copy(),
                "frequencies_hz": modes.frequencies_hz.copy(), "clusters": [list(c) for c in modes.clusters],
                "beta": self.beta}

    def _design_info(self, solved: dict[str, Any]) -> dict[str, Any]:
        """What the evaluation reports of the design beyond its modes (at least ``volume_fraction``)."""
        raise NotImplementedError

    def _appended_rows(self, x: np.ndarray, info: dict[str, Any]) -> Evaluation | None:
        """Constraint rows appended to this evaluation's (their ``g``, ``jac``), their names added to
        ``constraint_names``, their report to ``info``; None (the default): none."""
        return None

    def _evaluated(self, solved: dict[str, Any]) -> None:
        """After an evaluation (the default: nothing)."""

    def _gradients(self, solved: dict[str, Any], partials: list[Partials]) -> np.ndarray:
        raise NotImplementedError


def bound_merit(f: float, df_db: np.ndarray, g: np.ndarray, dg_db: np.ndarray) -> tuple[float, float] | None:
    """Objective and largest constraint with each bound variable moved to its best feasible value.

    In a bound formulation (max b s.t. b ≤ λ_j/λ_ref, Du & Olhoff 2007) the bound variable b lags
    behind the eigenvalues during a run: a point with a good design but b slightly too high is
    infeasible by the letter, and f = −b says more about b's history than about the design. The
    responses are linear in b, so moving b_k to the value that makes its tightest constraint
    active gives the design's own objective exactly: δ_k = −max_r g_r/c_rk over the rows r with
    c_rk = ∂g_r/∂b_k > 0, f ← f + (∂f/∂b_k) δ_k, g_r ← g_r + c_rk δ_k.

    Parameters
    ----------
    f : float
        Objective.
    df_db : ndarray (n_bounds,)
        ∂f/∂b.
    g : ndarray (m,)
        Constraints.
    dg_db : ndarray (m, n_bounds)
        ∂g/∂b.

    Returns
    -------
    (float, float) or None
        The objective and max constraint at the moved bounds; None without bound variables, or
        when a bound variable is not of the "b below its constraints, objective decreasing in b"
        kind (or shares a row with another), which this rule does not cover.
    """
    if df_db.size == 0:
        return None
    g = g.astype(float).copy()
    shared = np.count_nonzero(dg_db, axis=1) > 1
    for k in range(df_db.size):
        rows = np.flatnonzero(dg_db[:, k])
        c = dg_db[rows, k]
        if rows.size == 0 or np.any(c <= 0) or np.any(shared[rows]) or not df_db[k] < 0:
            return None
        delta = -float(np.max(g[rows] / c))
        f += float(df_db[k]) * delta
        g[rows] += c * delta
    return float(f), float(g.max()) if g.size else -np.inf
