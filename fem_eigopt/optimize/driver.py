"""Optimiser driver (NLopt or our MMA): minimise f(x) s.t. g(x) ≤ 0 and bounds, one evaluation per point.

This module knows nothing about finite elements. The caller supplies one function
``evaluate(x) -> Evaluation`` that computes the objective, the constraint vector and both
gradients at once; :func:`minimize` hands them to NLopt's MMA (Svanberg 1987) or CCSAQ (the
conservative convex separable approximations of Svanberg 2002), or to our own classic MMA
(``algorithm="MMA"``, :mod:`fem_eigopt.optimize.mma`), and adds what a design optimisation needs around
them:

* **one evaluation per point** — NLopt asks for the objective and the (vector) constraint
  separately at the same x; the evaluation is cached on ``x.tobytes()`` and serves both;
* **a history** of every evaluation (f, max g, g, ‖Δx‖∞, time, the evaluation's ``info``) and the
  **best point** seen (lowest f among feasible points, else the least infeasible one);
* **continuation stages** — the caller's ``callback`` may ask for a ``"restart"`` when it has
  changed the problem (e.g. the projection sharpness β). NLopt's CCSA cannot continue on a
  changed function (its inner iterations compare the new values with approximations built on
  the old ones), so a new NLopt *run* starts from the best point with fresh asymptotes, its
  first steps capped by ``restart_step``. Our MMA simply carries on from its last iterate with
  its asymptotes and move limit: one evaluation per iteration, no jump after the change (see
  "Why continuation without restarts" below). Either way the best point is reset: points of
  different stages solve different problems;
* **graceful stops** — Ctrl-C (KeyboardInterrupt) and SIGTERM end the run with status
  ``"INTERRUPTED"`` and the best design so far; ``should_stop(history)`` lets the caller stop;
  the design change ‖Δx‖∞ staying below ``stagnation_tol`` for ``stagnation_evals``
  consecutive evaluations stops with ``"STAGNATION"``;
* **checkpoints** — ``checkpoint(state)`` receives a :class:`DriverState` at every point where
  the run could be continued (after each evaluation whose callbacks asked for nothing), and
  ``minimize(..., resume=state)`` continues from one; see "Resuming" below.

Resuming
--------
Our MMA (``algorithm="MMA"``) resumes exactly: a :class:`DriverState` holds the history, the
best points, the run and stagnation counters, the current iterate with its evaluation and the
MMA object's state (asymptotes, previous iterates, iteration count, the last multipliers), so a
resumed run makes the same steps as an uninterrupted one, provided ``evaluate`` itself is
restored (the caller's business: :mod:`fem_eigopt.optimize.run` does it). The state is taken
between two MMA iterations, and between two runs (after a requested restart, before the new
run's first evaluation); an evaluation in progress when a run stops is lost and done again.
NLopt keeps its state (asymptotes, σ, the conservativity ρ, its inner iterations) inside its C
code, out of reach: a resumed NLopt run is a new NLopt run (``run`` index + 1) from the best
point of the interrupted run, with fresh asymptotes and its first steps capped by
``restart_step`` as after a requested restart; the evaluation count and the history continue,
the best point is kept, but its path differs from an uninterrupted run's. Only from a state
between two runs does NLopt resume exactly (the next run starts as it would have).

Why our own MMA next to NLopt's
-------------------------------
NLopt's ``LD_MMA`` is the globally convergent CCSA form (Svanberg 2002): an outer iteration whose
approximation was not conservative at the new point is repeated with a more conservative one
("inner iterations"), each costing an evaluation — a finite-element eigen solve here. On large
topology problems that is well above one evaluation per outer iteration, where the classic MMA
(Svanberg's 2007 ``mmasub`` with a move limit, as pyMOTO uses it) needs exactly one; NLopt with
``inner_maxeval=1`` has no move limit to keep such steps safe and oscillates.
``algorithm="MMA"`` is therefore Svanberg's classic MMA written here: one evaluation per
iteration, a move limit of ``move_limit``·range per iteration, artificial variables so that
infeasible starts work, and the same stops, restarts, history and best point as the NLopt runs.

Step-size control
-----------------
NLopt's MMA/CCSA has no move limit. Its subproblem clips each step to ``0.9 σ_j`` where σ (the
asymptote distance) starts at ``set_initial_step`` (default ``(ub − lb)/2``) and afterwards grows
by 1.2 or shrinks by 0.7 per outer iteration between 0.01 and 10 times ``ub − lb``
(nlopt ``src/algs/mma/mma.c``). A hard move limit for NLopt would need runs with clipped bounds,
each restarting NLopt with fresh σ and a fresh conservativity ρ; that was tried and measured
worse than plain NLopt MMA on the analytic test problems and on the Du & Olhoff beams (see
``docs/design.md``), so ``move_limit`` is refused for NLopt's algorithms. It is our MMA's move
limit, a fraction of each variable's range: ``x_j`` moves by at most
``move_limit·(upper_j − lower_j)`` per iteration; unset, :data:`MMA_MOVE_DEFAULT`, the one value
of those tried that reached the optima of all four analytic test problems of
``tests/test_optimizer.py``. Larger moves (pyMOTO uses 0.1) trade robustness for early speed:
on the 40-segment Svanberg cantilever a step of 0.1·range takes the thin tip segments onto the
1/x³ wall that the nearly linear approximation does not see.

Why continuation without restarts
---------------------------------
A restart after a β change starts MMA afresh from the best point: its first steps may move every
density by the full move limit on asymptotes that know nothing of the design's history. On the
Du & Olhoff beams each restart threw ω1 back by 20–35 % and the run spent its next 50–100
evaluations recovering, along a path that rounding decides; carrying MMA on through the change
(and keeping the bound variable's step small, see ``move_limits``) climbs steadily and reaches
the same optimum under every linear-algebra code path measured (``docs/du-olhoff.md``).

``restart_step`` caps the first steps of the NLopt runs that follow a requested restart (the initial
asymptote distance σ for NLopt, the same for our MMA): a fresh MMA run first moves every variable
by up to 0.9 σ, and after a β change a jump of half the density range can throw a converged
design away.

References
----------
K. Svanberg, "The method of moving asymptotes — a new method for structural optimization",
Int. J. Numer. Meth. Engng 24 (1987) 359–373.
K. Svanberg, "A class of globally convergent optimization methods based on conservative convex
separable approximations", SIAM J. Optim. 12 (2002) 555–573.
K. Svanberg, "MMA and GCMMA – two methods for nonlinear optimization", KTH Stockholm (2007).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, Optional, Sequence, Union

import numpy as np

from fem_eigopt.errors import InputError

__all__ = [
    "DriverState",
    "Evaluation",
    "OptimizerSettings",
    "OptimizeResult",
    "Record",
    "minimize",
]

logger = logging.getLogger(__name__)

ALGORITHMS = ("LD_MMA", "LD_CCSAQ", "MMA")

#: move limit of our own MMA when ``move_limit`` is None (a fraction of each variable's range;
#: see "Step-size control" in the module docstring)
MMA_MOVE_DEFAULT = 0.05

#: NLopt's ``dual_ftol_rel`` (the relative tolerance of the dual subproblem its MMA/CCSA solves at
#: every outer iteration) unless ``nlopt_params`` sets it: NLopt's own 1e-14 up to
#: ``_DUAL_FTOL_SIZE`` variables, where a looser dual keeps NLopt from meeting a tight ``xtol_rel``;
#: 1e-8 above, where the tight dual would cost far more than the finite-element evaluations and
#: reach the same design
_DUAL_FTOL_REL = (1e-14, 1e-8)
_DUAL_FTOL_SIZE = 1000

#: NLopt result codes by value (the names nlopt uses for its constants)
_NLOPT_CODES = {
    1: "SUCCESS",
    2: "STOPVAL_REACHED",
    3: "FTOL_REACHED",
    4: "XTOL_REACHED",
    5: "MAXEVAL_REACHED",
    6: "MAXTIME_REACHED",
    -1: "FAILURE",
    -2: "INVALID_ARGS",
    -3: "OUT_OF_MEMORY",
    -4: "ROUNDOFF_LIMITED",
    -5: "FORCED_STOP",
}
_CONVERGED = ("SUCCESS", "STOPVAL_REACHED", "FTOL_REACHED", "XTOL_REACHED", "STAGNATION")

#: what ``callback`` / ``should_stop`` may return
_REQUESTS = (None, False, True, "stop", "restart")


@dataclass(frozen=True)
class Evaluation:
    """Everything one call of ``evaluate(x)`` computes.

    Parameters
    ----------
    f : float
        Objective value.
    grad : ndarray (n,)
        Gradient of the objective.
    g : ndarray (m,)
        Constraint values; feasible means ``g <= 0``.
    jac : ndarray (m, n)
        Constraint Jacobian, ``jac[i, j] = ∂g_i/∂x_j``.
    info : dict
        Anything the caller wants kept in the history (frequencies, β, timings …).
    """

    f: float
    grad: np.ndarray
    g: np.ndarray = field(default_factory=lambda: np.zeros(0))
    jac: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """One evaluation in the history.

    Attributes
    ----------
    eval : int
        1-based evaluation number (continuous across restarts).
    run : int
        0-based index of the run the evaluation belongs to (a requested restart starts a new run).
    f : float
        Objective.
    max_g : float
        Largest constraint value (``-inf`` without constraints).
    g : ndarray (m,)
        Constraint values.
    change : float
        ‖x − x_prev‖∞ to the previous evaluation (``nan`` for the first one).
    step : float
        ‖x − c‖∞ to the start point c of the current run.
    time : float
        Seconds since :func:`minimize` started.
    info : dict
        The evaluation's ``info``.
    """

    eval: int
    run: int
    f: float
    max_g: float
    g: np.ndarray
    change: float
    step: float
    time: float
    info: dict


@dataclass(frozen=True)
class OptimizerSettings:
    """Settings of :func:`minimize`; validated on construction.

    The defaults are those of a topology optimisation run (what :func:`fem_eigopt.optimize.run.optimize`
    uses for a problem without settings, and what the shipped problem files use): no ``xtol``/``ftol``
    stop — a relative design change means little for densities near their lower bound, and a
    convergence stop inside a β continuation would end the run before β reaches its maximum —
    but a stop once the design no longer moves (‖Δx‖∞ < 1e-6 for 5 evaluations).

    Parameters
    ----------
    algorithm : {None, "MMA", "LD_MMA", "LD_CCSAQ"}
        ``None`` (default): ``"MMA"`` for :func:`minimize` and density designs; ``"LD_MMA"`` for
        shape designs (:func:`fem_eigopt.optimize.run.optimize` decides), whose few parameters
        make NLopt's inner iterations cheap and whose tunings within a cent rely on its globally
        convergent form. ``"MMA"``: our own classic MMA (:mod:`fem_eigopt.optimize.mma`, Svanberg 2007),
        one evaluation per iteration, with a move limit, carried on through continuation stages;
        or NLopt's MMA (Svanberg 1987, in its globally convergent CCSA form of Svanberg 2002) or
        CCSA with quadratic approximations. The default is the path that reached the Du & Olhoff
        optima under every linear-algebra code path measured and the fastest per iteration
        (``docs/du-olhoff.md``, ``docs/performance.md``).
    max_eval : int
        Maximum number of evaluations over all runs.
    xtol_rel : float
        Stop on the relative design change between outer iterations (``"XTOL_REACHED"``): NLopt's
        per-variable criterion, or for ``"MMA"`` ‖Δx‖∞ ≤ xtol_rel·‖x‖∞ between consecutive
        iterates; 0 disables.
    ftol_rel : float
        Stop on the relative objective change (for ``"MMA"``: |Δf| ≤ ftol_rel·|f| between
        consecutive iterates, ``"FTOL_REACHED"``); 0 disables.
    constraint_tol : float
        A point is feasible when ``max(g) <= constraint_tol`` (also NLopt's constraint tolerance).
    move_limit : float or None
        ``"MMA"`` only: the move limit of every iteration as a fraction of each variable's range
        (``x_j`` moves by at most ``move_limit·(upper_j − lower_j)``), 0 < move_limit ≤ 1;
        ``None``: :data:`MMA_MOVE_DEFAULT` = 0.05. NLopt's algorithms have no move limit and
        refuse it (see the module docstring).
    restart_step : float or None
        Initial step of the runs that start after a restart the caller asked for (the β
        continuation of a projection filter): NLopt's ``set_initial_step``, the initial asymptote
        distance σ that caps the first steps at 0.9 σ; for ``"MMA"`` the asymptote distance of the
        run's first two iterations, the same cap. Absolute, like NLopt's. A fresh run otherwise
        moves every variable by up to 0.45 of its range, which after a β change can throw a
        converged design away. ``None``: half the range (NLopt's default).
    stagnation_tol : float
        Stop with ``"STAGNATION"`` when ‖Δx‖∞ < this for ``stagnation_evals`` consecutive
        evaluations; 0 disables.
    stagnation_evals : int
        See ``stagnation_tol``.
    nlopt_params : dict
        NLopt algorithm parameters (``opt.set_param(name, value)``), e.g. ``{"inner_maxeval": 1}``,
        ``{"dual_ftol_rel": 1e-10}`` (default: 1e-14 up to 1000 variables, 1e-8 above) or
        ``{"verbosity": 1}`` (NLopt's C code then prints its iterations to stdout). Refused with
        ``algorithm="MMA"``.
    """

    algorithm: Optional[str] = None
    max_eval: int = 300
    xtol_rel: float = 0.0
    ftol_rel: float = 0.0
    constraint_tol: float = 1e-8
    move_limit: Optional[float] = None
    restart_step: Optional[float] = None
    stagnation_tol: float = 1e-6
    stagnation_evals: int = 5
    nlopt_params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.algorithm is not None and self.algorithm not in ALGORITHMS:
            raise InputError(f"algorithm = {self.algorithm!r}; allowed: None, {', '.join(ALGORITHMS)}")
        _check_int("max_eval", self.max_eval, 1)
        _check_int("stagnation_evals", self.stagnation_evals, 1)
        for name in ("xtol_rel", "ftol_rel", "constraint_tol", "stagnation_tol"):
            _check_float(name, getattr(self, name), allow_zero=True)
        if self.restart_step is not None:
            _check_float("restart_step", self.restart_step, allow_zero=False)
        if self.move_limit is not None:
            if self.algorithm not in (None, "MMA"):
                raise InputError(
                    f"move_limit = {self.move_limit!r} with algorithm = {self.algorithm!r}; allowed: None "
                    "(NLopt's MMA/CCSA have no move limit; move_limit is the step limit of algorithm = 'MMA', "
                    "a fraction of each variable's range)")
            ok = (isinstance(self.move_limit, (int, float, np.floating)) and not isinstance(self.move_limit, bool)
                  and 0 < self.move_limit <= 1)
            if not ok:
                raise InputError(f"move_limit = {self.move_limit!r}; allowed: None or a fraction of each "
                                 "variable's range, 0 < move_limit <= 1")
        if not isinstance(self.nlopt_params, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                for k, v in self.nlopt_params.items()):
            raise InputError(f"nlopt_params = {self.nlopt_params!r}; allowed: a dict of name -> number")
        if self.nlopt_params and self.algorithm in (None, "MMA"):
            raise InputError(f"nlopt_params = {self.nlopt_params!r} with algorithm = {self.algorithm!r}; allowed: {{}} "
                             "(NLopt parameters apply to 'LD_MMA' and 'LD_CCSAQ' only)")


@dataclass
class OptimizeResult:
    """Outcome of :func:`minimize`, in the style of ``scipy.optimize.OptimizeResult``.

    Attributes
    ----------
    x : ndarray (n,)
        Final point: the best point of the last run (equal to ``best_x`` unless the last run
        followed a requested restart and never improved on its centre).
    fun : float
        Objective at ``x``.
    constraints : ndarray (m,)
        Constraint values at ``x``.
    success : bool
        Whether a convergence criterion stopped the run (NLopt's SUCCESS, FTOL_REACHED,
        XTOL_REACHED, STOPVAL_REACHED, or our STAGNATION) and ``best_x`` is feasible.
    status : str
        NLopt's result name (``"MAXEVAL_REACHED"``, ``"XTOL_REACHED"``, ``"FTOL_REACHED"``,
        ``"ROUNDOFF_LIMITED"`` …), ``"FORCED_STOP"`` when ``should_stop``/``callback`` asked,
        ``"INTERRUPTED"`` on Ctrl-C/SIGTERM, ``"STAGNATION"`` on the ‖Δx‖∞ criterion.
    message : str
        One sentence saying why it stopped.
    nit : int
        NLopt: the number of evaluations (NLopt does not expose MMA's outer iterations).
        ``"MMA"``: the number of MMA iterations (over all runs) whose new point was evaluated.
    nfev : int
        Number of evaluations (calls of ``evaluate``).
    nrun : int
        Number of runs (1 + requested restarts).
    history : list of Record
        One record per evaluation.
    best_x, best_fun, best_constraints : ndarray, float, ndarray
        Best point since the last requested restart: lowest f among feasible points, or the
        least infeasible point if none is feasible.
    best_feasible : bool
        Whether ``best_x`` is feasible.
    interrupted_by : str or None
        ``"SIGINT"`` (Ctrl-C, KeyboardInterrupt) or ``"SIGTERM"`` when ``status`` is
        ``"INTERRUPTED"``, else None (the command line exits with 130 or 143 accordingly).
    """

    x: np.ndarray
    fun: float
    constraints: np.ndarray
    success: bool
    status: str
    message: str
    nit: int
    nfev: int
    nrun: int
    history: list
    best_x: np.ndarray
    best_fun: float
    best_constraints: np.ndarray
    best_feasible: bool
    interrupted_by: Optional[str] = None


@dataclass
class DriverState:
    """Where a :func:`minimize` run is, between two iterations: enough to continue it.

    Passed to ``minimize``'s ``checkpoint`` hook and accepted back as ``resume`` (pickled in run
    directories by :mod:`fem_eigopt.optimize.run`). The hook may keep the object: it shares the
    driver's history list (append-only) and copies of everything the driver changes in place.

    Attributes
    ----------
    algorithm : str
        ``OptimizerSettings.algorithm`` of the run (a resume must use the same).
    n, m : int
        Number of variables and constraints.
    history : list of Record
        The evaluations so far (the first ``n_history`` entries of the list count).
    n_history : int
        Evaluations done.
    best, run_best : (x, Evaluation) or None
        Best point since the last requested restart, and of the current run.
    centre : ndarray (n,) or None
        Start point of the current run.
    prev_x : ndarray (n,) or None
        The last evaluated point (the next record's ``change`` is measured from it).
    small_steps, run_index, nit : int
        Consecutive evaluations with ‖Δx‖∞ < ``stagnation_tol``; 0-based run index; MMA
        iterations evaluated.
    after_request : bool
        A requested restart happened (later runs start with ``restart_step``).
    elapsed : float
        Seconds since the run started (the history's ``time`` continues from it).
    cache : dict
        Our MMA: the evaluations kept for reuse (the current point and the run's best).
    mma : dict or None
        Our MMA: :meth:`fem_eigopt.optimize.mma.MMA.state` plus the current iterate ``x``, its
        evaluation ``ev`` and ``repeats`` (returns to evaluated points in a row; ``x`` and ``ev``
        None between two continuation stages, whose first point is evaluated next); None for NLopt.
    between_runs : bool
        The state is taken after a requested restart, before run ``run_index`` evaluated its
        start point ``centre`` (a resume starts that run, for NLopt too).
    reset_best : bool
        The next evaluation replaces ``best`` (set by a requested restart).
    """

    algorithm: str
    n: int
    m: int
    history: list
    n_history: int
    best: Optional[tuple] = None
    run_best: Optional[tuple] = None
    centre: Optional[np.ndarray] = None
    prev_x: Optional[np.ndarray] = None
    small_steps: int = 0
    run_index: int = 0
    nit: int = 0
    after_request: bool = False
    elapsed: float = 0.0
    cache: dict = field(default_factory=dict)
    mma: Optional[dict] = None
    between_runs: bool = False
    reset_best: bool = False

    def __getstate__(self) -> dict:
        """Pickle only the evaluations done when the state was taken (the list may have grown)."""
        out = dict(self.__dict__)
        out["history"] = list(self.history[: self.n_history])
        return out


Evaluate = Callable[[np.ndarray], Evaluation]
Request = Union[None, bool, Literal["stop", "restart"]]


def minimize(
    evaluate: Evaluate,
    x0: Sequence[float],
    lower: Union[float, Sequence[float]],
    upper: Union[float, Sequence[float]],
    settings: Optional[OptimizerSettings] = None,
    n_constraints: int = 0,
    callback: Optional[Callable[[Record], Request]] = None,
    should_stop: Optional[Callable[[list], Request]] = None,
    on_restart: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    initial_steps: Optional[Callable[[np.ndarray, Optional[float]], Optional[np.ndarray]]] = None,
    checkpoint: Optional[Callable[[DriverState], None]] = None,
    resume: Optional[DriverState] = None,
    move_limits: Optional[Callable[[float], np.ndarray]] = None,
) -> OptimizeResult:
    """Minimise f(x) subject to g(x) ≤ 0 and ``lower ≤ x ≤ upper`` with NLopt MMA/CCSAQ or our MMA.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(x) -> Evaluation`` with f, ∇f, g (``n_constraints``,) and its Jacobian. It is
        called once per distinct point (cached on the bytes of x).
    x0 : array_like (n,)
        Starting point, within the bounds.
    lower, upper : float or array_like (n,)
        Bounds (finite or infinite, ``lower <= upper``; finite for ``algorithm="MMA"``, whose
        asymptotes and move limit are fractions of the range).
    settings : OptimizerSettings, optional
        Defaults to ``OptimizerSettings()``.
    n_constraints : int
        Length m of g.
    callback : callable, optional
        ``callback(record)`` after each evaluation; may return ``"restart"`` (start a new run,
        with fresh asymptotes, from the best point, e.g. at a β change — the cache and the best
        point are reset since the problem changed), ``"stop"`` or ``True`` (stop with
        ``"FORCED_STOP"``), or ``None``/``False``.
    should_stop : callable, optional
        ``should_stop(history)`` after each evaluation; same return values as ``callback``.
    on_restart : callable, optional
        ``on_restart(x) -> x`` maps the best point to the start of the run that follows a requested
        restart (e.g. resets bound variables that the changed problem made infeasible).
    initial_steps : callable, optional
        ``initial_steps(x0, step) -> ndarray (n,) or None``: NLopt's initial step per variable
        for a run starting at ``x0``, given the scalar ``step`` the settings choose for it
        (``restart_step`` after a requested restart, else None: NLopt's default). For
        ``"MMA"`` the same array is the initial asymptote distance of the run's first two
        iterations (their steps are at most 0.9 of it, and at most the move limit). Lets
        auxiliary variables (the bound variable of a bound formulation, range [0, 50]) start with
        a step relative to their value rather than half their range.
    checkpoint : callable, optional
        ``checkpoint(state)`` with a :class:`DriverState` at every point the run can be continued
        from: for ``"MMA"`` between two iterations, for NLopt after each evaluation whose
        ``callback`` and ``should_stop`` asked for nothing, and between two runs. The caller
        decides what to keep or write (see the module docstring, "Resuming").
    resume : DriverState, optional
        Continue the run of this state (``x0`` is then only checked, not used): our MMA exactly
        where it was, NLopt with a new run from the state's best point.
    move_limits : callable, optional
        ``move_limits(move) -> ndarray (n,)``: for ``"MMA"``, each variable's move limit as a
        fraction of its range, given the settings' scalar ``move_limit``; None: ``move_limit``
        for all. Lets a bound variable of range [0, 50] move by a step relative to its value.

    Returns
    -------
    OptimizeResult

    Raises
    ------
    InputError
        Bad bounds, starting point, settings or evaluation shapes.
    Exception
        Any exception raised by ``evaluate``, ``callback`` or ``should_stop`` other than
        KeyboardInterrupt is re-raised after the signal handler is restored (the callback has
        seen every evaluation, so a caller that checkpoints there loses nothing).
    """
    settings = OptimizerSettings() if settings is None else settings
    if not isinstance(settings, OptimizerSettings):
        raise InputError(f"settings = {type(settings).__name__}; allowed: OptimizerSettings")
    if settings.algorithm is None:
        settings = replace(settings, algorithm="MMA")
    if settings.algorithm == "MMA":
        nlopt = None
    else:
        import nlopt  # deferred: importing the package must stay cheap
    x0 = np.array(x0, dtype=float).ravel()
    n = x0.size
    lower = _bounds("lower", lower, n)
    upper = _bounds("upper", upper, n)
    _check_int("n_constraints", n_constraints, 0)
    if n == 0:
        raise InputError("x0 has 0 entries; allowed: at least 1")
    if np.any(lower > upper):
        j = int(np.argmax(lower > upper))
        raise InputError(f"lower[{j}] = {lower[j]} > upper[{j}] = {upper[j]}; allowed: lower <= upper")
    if not np.all(np.isfinite(x0)) or np.any(x0 < lower) or np.any(x0 > upper):
        j = int(np.argmax(~np.isfinite(x0) | (x0 < lower) | (x0 > upper)))
        raise InputError(f"x0[{j}] = {x0[j]}; allowed: finite, within [{lower[j]}, {upper[j]}]")
    if settings.algorithm == "MMA":
        for name, bound in (("lower", lower), ("upper", upper)):
            if not np.all(np.isfinite(bound)):
                j = int(np.argmax(~np.isfinite(bound)))
                raise InputError(f"{name}[{j}] = {bound[j]}; allowed: a finite bound with algorithm = 'MMA'")

    if resume is not None and not isinstance(resume, DriverState):
        raise InputError(f"resume = {type(resume).__name__}; allowed: None or a DriverState")
    driver = _Driver(evaluate, n, n_constraints, settings, callback, should_stop)
    driver.on_restart = on_restart
    driver.initial_steps = initial_steps
    driver.checkpoint = checkpoint
    driver.move_limits = move_limits
    previous_handler = _install_sigterm()
    try:
        driver.run(nlopt, x0, lower, upper, resume)
    finally:
        _restore_sigterm(previous_handler)
    if driver.error is not None:
        raise driver.error
    return driver.result()


# ----------------------------------------------------------------------------------------------
# the driver


class _Terminated(KeyboardInterrupt):
    """Raised by our SIGTERM handler so that SIGTERM stops a run exactly like Ctrl-C.

    Any KeyboardInterrupt whose ``signal_name`` attribute is ``"SIGTERM"`` (e.g. the command
    line's own handler, active outside :func:`minimize`) counts as SIGTERM too.
    """

    signal_name = "SIGTERM"


class _Stop(Exception):
    """Why the current NLopt run is being ended from inside a callback."""

    def __init__(self, reason: str, message: str, signal_name: Optional[str] = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.signal_name = signal_name


#: how a run ended: None when ``_Driver.stop`` says why; else (status, message, the run's last
#: point or None)
_Outcome = Optional[tuple[str, str, Optional[np.ndarray]]]


class _Driver:
    """State of one :func:`minimize` call: cache, history, best point, runs."""

    def __init__(self, evaluate, n, m, settings, callback, should_stop) -> None:
        self.evaluate = evaluate
        self.n, self.m = n, m
        self.s = settings
        self.callback, self.should_stop = callback, should_stop
        self.on_restart: Optional[Callable[[np.ndarray], np.ndarray]] = None
        self.repeats = 0  # consecutive objective calls at already evaluated points
        self.initial_steps: Optional[Callable[[np.ndarray, Optional[float]], Optional[np.ndarray]]] = None
        self.cache: dict[bytes, tuple[np.ndarray, Evaluation]] = {}
        self.history: list[Record] = []
        self.t0 = time.perf_counter()
        self.prev_x: Optional[np.ndarray] = None
        self.small_steps = 0
        self.best: Optional[tuple[np.ndarray, Evaluation]] = None  # since last requested restart
        self.reset_best = False  # set by a requested restart: the next evaluation starts afresh
        self.after_request = False  # a requested restart happened: later runs use restart_step
        self.run_best: Optional[tuple[np.ndarray, Evaluation]] = None
        self.run_index = 0
        self.centre: Optional[np.ndarray] = None
        self.stop: Optional[_Stop] = None  # set when a callback ends the run
        self.error: Optional[BaseException] = None
        self.status = "FAILURE"
        self.message = ""
        self.final: Optional[tuple[np.ndarray, Evaluation]] = None
        self.nit = 0  # MMA iterations (our MMA only)
        self.checkpoint: Optional[Callable[[DriverState], None]] = None
        self.move_limits: Optional[Callable[[float], np.ndarray]] = None
        self.mma = None  # our MMA, kept across continuation stages

    # -- evaluation, cached -------------------------------------------------------------------

    def get(self, x: np.ndarray) -> Evaluation:
        """The evaluation at x, computed once; ends the run (``_Stop``) when asked to."""
        key = x.tobytes()
        hit = self.cache.get(key)
        if hit is not None:
            self._track_run_best(hit[0], hit[1])
            return hit[1]
        x = x.copy()
        ev = self._checked(self.evaluate(x))
        self.cache[key] = (x, ev)
        self._record(x, ev)
        return ev

    def _checked(self, ev: Evaluation) -> Evaluation:
        if not isinstance(ev, Evaluation):
            raise InputError(f"evaluate(x) returned {type(ev).__name__}; allowed: Evaluation")
        grad = np.asarray(ev.grad, dtype=float).reshape(-1)
        g = np.asarray(ev.g, dtype=float).reshape(-1)
        jac = np.asarray(ev.jac, dtype=float)
        if grad.size != self.n:
            raise InputError(f"evaluate(x).grad has {grad.size} entries; allowed: {self.n}")
        if g.size != self.m:
            raise InputError(f"evaluate(x).g has {g.size} entries; allowed: n_constraints = {self.m}")
        if jac.size != self.m * self.n:
            raise InputError(f"evaluate(x).jac has shape {jac.shape}; allowed: ({self.m}, {self.n})")
        return Evaluation(float(ev.f), grad, g, jac.reshape(self.m, self.n), dict(ev.info))

    def _record(self, x: np.ndarray, ev: Evaluation) -> None:
        s = self.s
        max_g = float(ev.g.max()) if self.m else -math.inf
        change = math.nan if self.prev_x is None else float(np.max(np.abs(x - self.prev_x)))
        step = float(np.max(np.abs(x - self.centre))) if self.centre is not None else 0.0
        self.prev_x = x
        rec = Record(
            eval=len(self.history) + 1, run=self.run_index, f=ev.f, max_g=max_g, g=ev.g.copy(),
            change=change, step=step, time=time.perf_counter() - self.t0, info=ev.info,
        )
        self.history.append(rec)
        self._track_run_best(x, ev)
        if self.reset_best or self.best is None or _better(ev, self.best[1], s.constraint_tol):
            self.best = (x, ev)
            self.reset_best = False
        logger.debug(
            "eval %4d  run %2d  f = %.8g  max g = %.3e  |dx| = %.3e",
            rec.eval, rec.run, rec.f, rec.max_g, change,
        )

        # stopping criteria of our own, checked after the point is safely in the history
        self.small_steps = self.small_steps + 1 if change < s.stagnation_tol else 0
        if len(self.history) >= s.max_eval:
            raise _Stop("MAXEVAL_REACHED", f"reached max_eval = {s.max_eval} evaluations")
        if s.stagnation_tol > 0 and self.small_steps >= s.stagnation_evals:
            raise _Stop(
                "STAGNATION",
                f"|dx|_inf < stagnation_tol = {s.stagnation_tol:g} for {s.stagnation_evals} "
                "consecutive evaluations",
            )
        for name, hook, arg in (("callback", self.callback, rec), ("should_stop", self.should_stop, self.history)):
            if hook is None:
                continue
            answer = hook(arg)
            if answer not in _REQUESTS:
                raise InputError(f"{name} returned {answer!r}; allowed: None, False, True, 'stop', 'restart'")
            if answer == "restart":
                raise _Stop("RESTART", f"{name} asked for a restart")
            if answer is True or answer == "stop":
                raise _Stop("FORCED_STOP", f"{name} asked to stop")
        if self.s.algorithm != "MMA":  # our MMA's states are taken between its iterations
            self._emit()

    def _track_run_best(self, x: np.ndarray, ev: Evaluation) -> None:
        if self.run_best is None or _better(ev, self.run_best[1], self.s.constraint_tol):
            self.run_best = (x, ev)

    # -- NLopt callbacks ----------------------------------------------------------------------

    #: NLopt asking this many times in a row for points it already has ends the run: NLopt's own
    #: ``maxeval`` is unlimited and our counter only sees new points, so such a cycle (seen from
    #: infeasible starts with badly scaled objectives) would never end.
    MAX_REPEATS = 200

    def objective(self, x: np.ndarray, grad: np.ndarray) -> float:
        if x.tobytes() in self.cache:
            self.repeats += 1
            if self.repeats > self.MAX_REPEATS and self.stop is None:
                import nlopt

                self.stop = _Stop("STAGNATION", f"NLopt asked {self.repeats} times in a row for points already "
                                                "evaluated (no progress)")
                raise nlopt.ForcedStop(self.stop.message)
        else:
            self.repeats = 0
        ev = self._guarded(x)
        if grad.size:
            grad[:] = ev.grad
        return ev.f

    def constraints(self, result: np.ndarray, x: np.ndarray, grad: np.ndarray) -> None:
        ev = self._guarded(x)
        result[:] = ev.g
        if grad.size:
            grad[:, :] = ev.jac

    def _guarded(self, x: np.ndarray) -> Evaluation:
        # NLopt turns any exception in a callback into a forced stop and re-raises it from
        # optimize(); we keep the exception ourselves so that neither a KeyboardInterrupt nor the
        # reason for a deliberate stop depends on how the SWIG wrapper converts it.
        import nlopt

        ev = self._attempt(x)
        if ev is None:
            raise nlopt.ForcedStop(self.stop.message)
        return ev

    def _attempt(self, x: np.ndarray) -> Optional[Evaluation]:
        """``get(x)``, or None with ``self.stop`` (and ``self.error``) set when the run must end."""
        try:
            return self.get(x)
        except _Stop as stop:
            self.stop = stop
        except KeyboardInterrupt as exc:
            self.stop = _interrupted(exc)
        except BaseException as exc:  # noqa: BLE001 - re-raised by minimize after cleanup
            self.error = exc
            self.stop = _Stop("ERROR", f"{type(exc).__name__}: {exc}")
        return None

    # -- runs -----------------------------------------------------------------------------------

    def run(self, nlopt, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray,
            resume: Optional[DriverState] = None) -> None:
        """Run the optimiser, one run per requested restart.

        Shared by NLopt and our MMA: a run (:meth:`_nlopt_run`, :meth:`_mma_run`) starts from
        ``centre`` and ends either with ``self.stop`` set (a callback's request, an interrupt, the
        evaluation budget, stagnation or an error) or by returning its status, which finishes.
        With ``resume`` the first run continues the state's (see :meth:`_restore`).
        """
        centre, carry = x0, None
        if resume is not None:
            centre, carry = self._restore(resume)
        resumed = resume is not None  # the first run keeps the state's best point of its run
        try:
            while True:
                self.centre = centre
                if not resumed:
                    self.run_best = None
                resumed = False
                if self.s.algorithm == "MMA":
                    outcome = self._mma_run(centre, lower, upper, carry)
                else:
                    outcome = self._nlopt_run(nlopt, centre, lower, upper)
                carry = None

                if self.stop is not None:
                    reason = self.stop.reason
                    if reason == "RESTART" and self.mma is not None:
                        centre = self._next_stage()
                        self.centre = centre
                        self._emit(between_runs=True)
                        continue
                    if reason == "RESTART":
                        centre = self._restart_point()
                        if self.on_restart is not None:
                            centre = np.clip(np.asarray(self.on_restart(centre.copy()), dtype=float), lower, upper)
                        logger.info("restart %d from the best point of run %d", self.run_index + 1, self.run_index)
                        self.cache.clear()  # the problem may have changed (e.g. β)
                        self.reset_best = True
                        self.prev_x = None
                        self.small_steps = 0
                        self.run_index += 1
                        self.after_request = True
                        self.centre = centre
                        self._emit(between_runs=True)
                        continue
                    self._finish("ERROR" if reason == "ERROR" else reason, self.stop.message)
                    return

                status, message, x_end = outcome
                self._finish(status, message, x_end)
                return
        except KeyboardInterrupt as exc:  # between runs, or in MMA's own code
            self.stop = _interrupted(exc)
            self._finish("INTERRUPTED", self.stop.message)

    def _next_stage(self) -> np.ndarray:
        """Our MMA after a requested restart: the next stage starts at the last iterate, with the
        asymptotes and iterates kept; only the best point and the cache (the problem changed)
        start afresh."""
        logger.debug("continuation stage %d from evaluation %d on", self.run_index + 2, len(self.history) + 1)
        self.cache.clear()
        self.reset_best = True
        self.run_index += 1
        return self.prev_x.copy()

    def _nlopt_run(self, nlopt, centre: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> _Outcome:
        """One NLopt run from ``centre``."""
        opt = self._make_opt(nlopt, lower, upper, centre)
        self.stop = None
        x_nlopt, status = None, None
        try:
            x_nlopt = opt.optimize(centre.copy())
            status = _NLOPT_CODES.get(opt.last_optimize_result(), "FAILURE")
        except KeyboardInterrupt as exc:  # arrived while NLopt's own code was running
            self.stop = _interrupted(exc)
        except nlopt.ForcedStop:
            if self.stop is None:  # not ours: should not happen, but say so
                self.stop = _Stop("FORCED_STOP", "NLopt reported a forced stop")
        except Exception:  # NLopt failures (RoundoffLimited, RuntimeError …)
            if self.stop is None:
                status = _NLOPT_CODES.get(opt.last_optimize_result(), "FAILURE")
                x_nlopt = None
        if self.stop is not None:
            return None
        return status, _nlopt_message(status), x_nlopt

    def _mma_run(self, centre: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                 carry: Optional[dict] = None) -> _Outcome:
        """One run of our MMA (:class:`fem_eigopt.optimize.mma.MMA`) from ``centre``, fresh asymptotes
        (or, with ``carry``, a :attr:`DriverState.mma`, continued where it was). After a requested
        restart the driver's MMA carries on from ``centre`` (see :meth:`_next_stage`).

        One evaluation per iteration, through the cached :meth:`get`. Ends with ``self.stop``
        set, with a convergence status (XTOL_REACHED, FTOL_REACHED, STAGNATION), or FAILURE on a
        non-finite evaluation.
        """
        self.stop = None
        if carry is not None:
            self.mma = self._new_mma(centre, lower, upper)
            self.mma.set_state(carry)
            if carry.get("ev") is not None:
                return self._mma_iterate(self.mma, carry["x"], carry["ev"], int(carry["repeats"]))
        elif self.mma is None:
            self.mma = self._new_mma(centre, lower, upper)
        # a new run, or a new continuation stage of the same MMA: evaluate its first point
        x = centre.copy()
        ev = self._attempt(x)
        if ev is None:
            return None
        return self._mma_iterate(self.mma, x, ev, 0)

    def _new_mma(self, centre: np.ndarray, lower: np.ndarray, upper: np.ndarray):
        """A fresh :class:`~fem_eigopt.optimize.mma.MMA` for a run from ``centre``."""
        from fem_eigopt.optimize.mma import MMA

        steps = self._run_steps(centre)
        if steps is not None:
            steps = np.broadcast_to(np.asarray(steps, dtype=float), (self.n,))
            if not np.all(np.isfinite(steps) & (steps > 0)):
                j = int(np.argmax(~(np.isfinite(steps) & (steps > 0))))
                raise InputError(f"initial step [{j}] = {steps[j]}; allowed: a finite number > 0")
        move = MMA_MOVE_DEFAULT if self.s.move_limit is None else self.s.move_limit
        moves = move if self.move_limits is None else np.asarray(self.move_limits(move), dtype=float)
        return MMA(self.n, self.m, lower, upper, move=moves, initial_asymptote=steps)

    def _mma_iterate(self, mma, x: np.ndarray, ev: Evaluation, repeats: int) -> _Outcome:
        """The iterations of :meth:`_mma_run` from the iterate ``x`` with its evaluation ``ev``;
        the state between two iterations goes to the ``checkpoint`` hook."""
        s = self.s
        while True:
            self._emit(mma, x, ev, repeats)
            if not (math.isfinite(ev.f) and np.all(np.isfinite(ev.grad)) and np.all(np.isfinite(ev.g))
                    and np.all(np.isfinite(ev.jac))):
                return "FAILURE", "evaluate(x) returned a non-finite value or gradient", x
            x_new = mma.step(x, ev.f, ev.grad, ev.g, ev.jac)
            dx = float(np.max(np.abs(x_new - x)))
            if dx == 0.0:
                return "STAGNATION", "MMA's step is zero: the design is a fixed point of the update", x
            repeats = repeats + 1 if x_new.tobytes() in self.cache else 0
            if repeats > self.MAX_REPEATS:
                return "STAGNATION", f"MMA returned {repeats} times in a row to points already evaluated", x
            ev_new = self._attempt(x_new)
            if x_new.tobytes() in self.cache:  # evaluated (also when a callback then ended the run)
                self.nit += 1
            if ev_new is None:
                return None
            f_old = ev.f
            x, ev = x_new, ev_new
            self._prune_cache(x)
            if s.xtol_rel > 0 and dx <= s.xtol_rel * float(np.max(np.abs(x))):
                return "XTOL_REACHED", _nlopt_message("XTOL_REACHED"), x
            if s.ftol_rel > 0 and abs(ev.f - f_old) <= s.ftol_rel * abs(ev.f):
                return "FTOL_REACHED", _nlopt_message("FTOL_REACHED"), x

    # -- checkpoints -----------------------------------------------------------------------------

    def _emit(self, mma=None, x: Optional[np.ndarray] = None, ev: Optional[Evaluation] = None,
              repeats: int = 0, between_runs: bool = False) -> None:
        """Hand the current :class:`DriverState` to the ``checkpoint`` hook (if any): within a run
        of our MMA (``mma`` with its iterate ``x``, ``ev``), after an NLopt evaluation, or between
        two runs."""
        if self.checkpoint is None:
            return
        carry = None
        if mma is not None:
            carry = dict(mma.state(), x=x.copy(), ev=ev, repeats=int(repeats))
        elif between_runs and self.mma is not None:  # a new stage of our MMA: its state goes on
            carry = dict(self.mma.state(), x=None, ev=None, repeats=0)
        self.checkpoint(DriverState(
            algorithm=self.s.algorithm, n=self.n, m=self.m, history=self.history, n_history=len(self.history),
            best=self.best, run_best=self.run_best, centre=None if self.centre is None else self.centre.copy(),
            prev_x=self.prev_x, small_steps=self.small_steps, run_index=self.run_index, nit=self.nit,
            after_request=self.after_request, elapsed=time.perf_counter() - self.t0,
            cache=dict(self.cache) if mma is not None else {}, mma=carry, between_runs=between_runs,
            reset_best=self.reset_best))

    def _restore(self, state: DriverState) -> tuple[np.ndarray, Optional[dict]]:
        """Take over ``state``; return the first run's centre and, for our MMA, its carried state.

        A state between two runs starts the next run. Otherwise our MMA continues its run where
        it was, and NLopt starts a new run (``run_index`` + 1) from the best point of the state's
        run, its first steps capped by ``restart_step``; the best points, counters and history
        are kept.

        Raises
        ------
        InputError
            The state belongs to another algorithm or problem size.
        """
        if (state.algorithm, state.n, state.m) != (self.s.algorithm, self.n, self.m):
            raise InputError(f"resume state of algorithm {state.algorithm!r}, n = {state.n}, m = {state.m}; "
                             f"allowed: this run's algorithm {self.s.algorithm!r}, n = {self.n}, m = {self.m}")
        self.history = list(state.history[: state.n_history])
        self.best, self.run_best = state.best, state.run_best
        self.centre, self.prev_x = state.centre, state.prev_x
        self.small_steps, self.run_index, self.nit = state.small_steps, state.run_index, state.nit
        self.after_request = state.after_request
        self.t0 = time.perf_counter() - state.elapsed
        self.reset_best = state.reset_best
        if state.between_runs:
            self.run_best = None
            return state.centre.copy(), state.mma  # our MMA's state carries into the new stage
        if self.s.algorithm == "MMA" and state.mma is not None:
            self.cache = dict(state.cache)
            return state.centre, state.mma
        if self.centre is None and self.run_best is None:
            raise InputError("resume state has no point to continue from; allowed: a state taken after an evaluation")
        centre = self._restart_point()
        self.run_index += 1
        self.after_request = True
        logger.info("resumed: NLopt run %d from the best point of run %d (NLopt's own state is not kept)",
                    self.run_index, self.run_index - 1)
        return centre.copy(), None

    def _prune_cache(self, x: np.ndarray) -> None:
        """Keep only the current point and the run's best (MMA never asks for older points; with
        10⁵–10⁶ variables each cached evaluation holds (m + 2) n numbers)."""
        keep = [x] + ([self.run_best[0]] if self.run_best is not None else [])
        kept = {}
        for p in keep:
            hit = self.cache.get(p.tobytes())
            if hit is not None:
                kept[p.tobytes()] = hit
        self.cache = kept

    def _run_steps(self, centre: np.ndarray) -> Optional[np.ndarray]:
        """Initial steps of a run from ``centre``: ``restart_step`` after a requested restart (else
        None, the algorithm's default), or what the caller's hook makes of it."""
        step = self.s.restart_step if self.after_request else None
        steps = None if step is None else np.full(self.n, step)
        if self.initial_steps is not None:
            custom = self.initial_steps(centre, step)
            if custom is not None:
                steps = np.asarray(custom, dtype=float)
        return steps

    def _make_opt(self, nlopt, lo: np.ndarray, hi: np.ndarray, centre: np.ndarray):
        s = self.s
        opt = nlopt.opt(getattr(nlopt, s.algorithm), self.n)
        opt.set_lower_bounds(lo)
        opt.set_upper_bounds(hi)
        opt.set_min_objective(self.objective)
        if self.m:
            opt.add_inequality_mconstraint(self.constraints, np.full(self.m, s.constraint_tol))
        opt.set_xtol_rel(s.xtol_rel)
        opt.set_ftol_rel(s.ftol_rel)
        steps = self._run_steps(centre)
        if steps is not None:
            # σ is also capped by the bounds, see mma.c
            opt.set_initial_step(steps)
        opt.set_param("dual_ftol_rel", _DUAL_FTOL_REL[0] if self.n <= _DUAL_FTOL_SIZE else _DUAL_FTOL_REL[1])
        for name, value in s.nlopt_params.items():
            opt.set_param(name, float(value))
        # NLopt counts cached points too; our own counter enforces max_eval
        opt.set_maxeval(0)
        return opt

    def _restart_point(self) -> np.ndarray:
        if self.run_best is not None:
            return self.run_best[0]
        return self.centre

    def _finish(self, status: str, message: str, x_nlopt: Optional[np.ndarray] = None) -> None:
        self.status, self.message = status, message
        final = self.run_best
        if x_nlopt is not None and x_nlopt.tobytes() in self.cache:
            final = self.cache[x_nlopt.tobytes()]
        self.final = final
        log = logger.warning if status in ("INTERRUPTED", "ERROR") else logger.info
        log("optimizer stopped after %d evaluations: %s (%s)", len(self.history), status, message)

    def result(self) -> OptimizeResult:
        if self.best is None or self.final is None:
            raise RuntimeError(f"optimizer stopped before the first evaluation: {self.message}")
        bx, bev = self.best
        fx, fev = self.final
        feasible = self.m == 0 or _merit(bev)[1] <= self.s.constraint_tol
        return OptimizeResult(
            x=fx.copy(), fun=fev.f, constraints=fev.g.copy(),
            success=self.status in _CONVERGED and feasible,
            status=self.status, message=self.message,
            nit=self.nit if self.s.algorithm == "MMA" else len(self.history), nfev=len(self.history),
            nrun=self.run_index + 1,
            history=self.history,
            best_x=bx.copy(), best_fun=bev.f, best_constraints=bev.g.copy(), best_feasible=feasible,
            interrupted_by=(self.stop.signal_name if self.status == "INTERRUPTED" and self.stop is not None
                            else None),
        )


# ----------------------------------------------------------------------------------------------
# helpers


def _merit(ev: Evaluation) -> tuple[float, float]:
    """(f, max g) by which points are compared: the evaluation's ``info["merit"]`` when it gives
    one (e.g. a bound formulation's objective with the bound variable at its best feasible value,
    so that a point is not judged by an auxiliary variable that lags behind the eigenvalues), else
    its own f and max g."""
    merit = ev.info.get("merit")
    if merit is not None:
        return float(merit[0]), float(merit[1])
    return ev.f, float(ev.g.max()) if ev.g.size else -math.inf


def _better(a: Evaluation, b: Evaluation, tol: float) -> bool:
    """Whether a beats b by :func:`_merit`: feasible before infeasible, then lower f; among
    infeasible, lower max g."""
    f_a, g_a = _merit(a)
    f_b, g_b = _merit(b)
    feasible_a, feasible_b = g_a <= tol, g_b <= tol
    if feasible_a != feasible_b:
        return feasible_a
    if feasible_a:
        return f_a < f_b
    return g_a < g_b or (g_a == g_b and f_a < f_b)


def _interrupted(exc: KeyboardInterrupt) -> _Stop:
    terminated = isinstance(exc, _Terminated) or getattr(exc, "signal_name", None) == "SIGTERM"
    what = "SIGTERM" if terminated else "KeyboardInterrupt (Ctrl-C)"
    return _Stop("INTERRUPTED", f"interrupted by {what}; returning the best design so far",
                 signal_name="SIGTERM" if terminated else "SIGINT")


def _nlopt_message(status: str) -> str:
    return {
        "SUCCESS": "NLopt reports success",
        "STOPVAL_REACHED": "NLopt reached the objective stop value",
        "FTOL_REACHED": "relative objective change below ftol_rel",
        "XTOL_REACHED": "design change below xtol_rel",
        "MAXEVAL_REACHED": "NLopt reached its evaluation limit",
        "ROUNDOFF_LIMITED": "NLopt stopped: round-off limited progress",
        "FAILURE": "NLopt failed",
    }.get(status, f"NLopt returned {status}")


def _on_sigterm(signum, frame) -> None:
    raise _Terminated()


def _install_sigterm():
    """Install the SIGTERM handler (main thread only); returns what to restore, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return (signal.signal(signal.SIGTERM, _on_sigterm),)


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous[0] if previous[0] is not None else signal.SIG_DFL)


def _check_int(name: str, value: Any, lo: int, hi: Optional[int] = None) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= lo
    ok = ok and (hi is None or value <= hi)
    if not ok:
        allowed = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        raise InputError(f"{name} = {value!r}; allowed: {allowed}")


def _check_float(name: str, value: Any, allow_zero: bool) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise InputError(f"{name} = {value!r}; allowed: a finite number {'>= 0' if allow_zero else '> 0'}")


def _bounds(name: str, value: Any, n: int) -> np.ndarray:
    arr = np.array(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    arr = arr.ravel()
    if arr.size != n or np.any(np.isnan(arr)):
        raise InputError(f"{name} has {arr.size} entries (or NaN); allowed: a number or {n} numbers")
    return arr
