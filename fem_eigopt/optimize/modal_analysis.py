"""Modal analysis of a problem's initial design (the ``modal`` command and the library entry)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fem_eigopt.fem.assembly import Model, build_model
from fem_eigopt.problem.definition import Problem
from fem_eigopt.solvers.auto import make_modal_solver
from fem_eigopt.solvers.lanczos import ModalSolver
from fem_eigopt.solvers.modes import Modes

logger = logging.getLogger(__name__)

__all__ = ["ModalResult", "modal_analysis", "initial_scale_factors"]


@dataclass
class ModalResult:
    """A model and its modes (see :class:`~fem_eigopt.solvers.modes.Modes`)."""

    model: Model
    modes: Modes
    solver: object  # ModalSolver, or AMGModalSolver for a 3D model too big to factorise


def initial_scale_factors(problem: Problem, model: Model) -> tuple[np.ndarray, np.ndarray]:
    """Element stiffness and mass scale factors of the starting design, each shape (n_elem,).

    Without a design the structure is solid (all ones); with a :class:`DensityDesign` they are
    its interpolations evaluated at the initial densities.
    """
    n = model.n_elements
    if problem.design is None:
        return np.ones(n), np.ones(n)
    x = problem.design.initial_densities(n)
    return problem.design.stiffness(x)[0], problem.design.mass(x)[0]


def modal_analysis(problem: Problem, n_modes: int | None = None, backend: str | None = None,
                   model: Model | None = None) -> ModalResult:
    """Leading eigenpairs of ``problem`` at its initial design.

    The solver is shift-invert Lanczos (:class:`~fem_eigopt.solvers.lanczos.LanczosSolver`), or the
    AMG solver (:class:`~fem_eigopt.solvers.amg.AMGModalSolver`, no factorisation) when the analysis
    asks for ``eigensolver="amg"`` or, with ``"auto"``, for a 3D model whose factorisation would
    need more than half the available memory (:func:`~fem_eigopt.solvers.auto.make_modal_solver`).

    Parameters
    ----------
    problem : Problem
    n_modes : int, optional
        Overrides ``problem.analysis.n_modes``.
    backend : str, optional
        Overrides ``problem.analysis.backend``.
    model : Model, optional
        A model already built from ``problem``.

    Returns
    -------
    ModalResult
        The model, the solver and the modes.
    """
    a = problem.analysis
    n_modes = a.n_modes if n_modes is None else n_modes
    model = build_model(problem) if model is None else model
    if n_modes >= model.n_free:
        from fem_eigopt.errors import fail

        raise fail(problem.label, f"n_modes = {n_modes}; allowed: fewer than the {model.n_free} free dofs")
    stiff, mass = initial_scale_factors(problem, model)
    if a.eigensolver in ("auto", "amg"):
        # shift-invert Lanczos, the reference, unless the model is too big to factorise (3D;
        # see make_modal_solver) or AMG is asked for
        solver = make_modal_solver(n_modes, a, backend=backend, model=model, repeated=False)
    else:
        solver = ModalSolver(n_modes, shift=a.shift, backend=backend or a.backend, cluster_tol=a.cluster_tol)
    modes = solver.solve(model.stiffness(stiff), model.mass(mass))
    return ModalResult(model=model, modes=modes, solver=solver)
