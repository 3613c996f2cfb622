"""Modal analysis of a problem's initial design or of given densities (the ``modal`` command).

The design analysed is the one the optimiser evaluates first: for a problem with a
:class:`~fem_eigopt.problem.definition.DensityDesign` and an objective, a
:class:`~fem_eigopt.optimize.evaluator.DesignEvaluator` prepares the start (passive regions,
filter, projection, the shift that keeps a projected start inside its volume limits) and its
first analysis gives the physical densities; without a design the structure is solid. Given
physical densities (a finished run's ``design.npz``) are analysed as they are, through the
design's stiffness and mass laws: with another element or solver than the run's, a check of the
optimised design under another discretisation (docs/du-olhoff.md, "Bilinear elements").
:func:`write_modes` writes what the ``modal --out DIR`` command leaves behind.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fem_eigopt.fem.assembly import Model, build_model
from fem_eigopt.problem.definition import Problem, ShapeDesign
from fem_eigopt.solvers.auto import make_modal_solver
from fem_eigopt.solvers.lanczos import ModalSolver
from fem_eigopt.solvers.modes import Modes

logger = logging.getLogger(__name__)

__all__ = ["ModalResult", "modal_analysis", "initial_scale_factors", "write_modes"]


@dataclass
class ModalResult:
    """A model and its modes (see :class:`~fem_eigopt.solvers.modes.Modes`).

    Attributes
    ----------
    model : Model
    modes : Modes
    solver : EigenSolver
        ModalSolver, or AMGModalSolver for a 3D model too big to factorise.
    densities : ndarray (n_elem,) or None
        Physical densities of the design analysed (None: solid, no design).
    design : str
        ``"first evaluation"`` (the optimiser's first design), ``"initial densities"`` (a
        density design without objective: its raw initial densities), ``"given densities"``
        or ``"solid"``.
    """

    model: Model
    modes: Modes
    solver: object
    densities: np.ndarray | None = None
    design: str = "solid"


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
                   model: Model | None = None, densities: np.ndarray | None = None) -> ModalResult:
    """Leading eigenpairs of ``problem`` at its initial design or at given densities.

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
    densities : ndarray (n_elem,), optional
        Physical densities in [0, 1] to analyse instead of the initial design (a
        :class:`DensityDesign` problem only): no filter or projection is applied, the design's
        stiffness and mass laws are.

    Returns
    -------
    ModalResult
        The model, the solver, the modes and the densities analysed.

    Raises
    ------
    InputError
        ``densities`` for a problem without a density design, of the wrong length or outside
        [0, 1]; ``n_modes`` not below the number of free dofs.

    Notes
    -----
    With a density design and an objective the densities are those of the optimiser's first
    evaluation (:meth:`DesignEvaluator.start` and its :attr:`~DesignEvaluator.last_analysis`), so
    the numbers match what ``run`` reports for evaluation 1; the eigenpairs are then solved again
    with the reference solver above, for ``n_modes`` modes at full accuracy.
    """
    from fem_eigopt.problem.definition import DensityDesign

    a = problem.analysis
    n_modes = a.n_modes if n_modes is None else n_modes
    model = build_model(problem) if model is None else model
    if n_modes >= model.n_free:
        from fem_eigopt.errors import fail

        raise fail(problem.label, f"n_modes = {n_modes}; allowed: fewer than the {model.n_free} free dofs")
    design = "solid"
    if densities is not None:
        densities = _given_densities(problem, model, densities)
        stiff, mass = problem.design.stiffness(densities)[0], problem.design.mass(densities)[0]
        design = "given densities"
    elif isinstance(problem.design, DensityDesign) and problem.objective is not None:
        from fem_eigopt.optimize.evaluator import DesignEvaluator

        evaluator = DesignEvaluator(problem, model=model, backend=backend)
        evaluator.start()
        first = evaluator.last_analysis
        stiff, mass, densities = first["s_K"], first["s_M"], first["rho"]
        design = "first evaluation"
        evaluator.solver.release()
    elif isinstance(problem.design, ShapeDesign):  # the starting shape, solid everywhere
        from fem_eigopt.fem.geometry import model_at_coordinates

        model = model_at_coordinates(model, problem.design.shape_map.coordinates(problem.design.initial_parameters()))
        stiff = mass = np.ones(model.n_elements)
        design = "initial shape"
    else:
        stiff, mass = initial_scale_factors(problem, model)
        densities = None
        if problem.design is not None:
            densities = problem.design.initial_densities(model.n_elements)
            design = "initial densities"
    if a.eigensolver in ("auto", "amg"):
        # shift-invert Lanczos, the reference, unless the model is too big to factorise (3D;
        # see make_modal_solver) or AMG is asked for
        solver = make_modal_solver(n_modes, a, backend=backend, model=model, repeated=False)
    else:
        solver = ModalSolver(n_modes, shift=a.shift, backend=backend or a.backend, cluster_tol=a.cluster_tol)
    modes = solver.solve(model.stiffness(stiff), model.mass(mass))
    return ModalResult(model=model, modes=modes, solver=solver, densities=densities, design=design)


def _given_densities(problem: Problem, model: Model, densities: np.ndarray) -> np.ndarray:
    """``densities`` checked against the problem's density design and mesh, shape (n_elem,)."""
    from fem_eigopt.errors import fail
    from fem_eigopt.problem.definition import DensityDesign

    if not isinstance(problem.design, DensityDesign):
        raise fail(problem.label, "given densities need a density design; allowed: a problem with "
                   "fem_eigopt.DensityDesign(...)")
    d = np.asarray(densities, dtype=float)
    if d.shape != (model.n_elements,):
        raise fail(problem.label, f"{d.size} given densities; allowed: one per element of the mesh "
                   f"({model.n_elements}): the run's problem with its mesh parameters")
    if not (np.all(np.isfinite(d)) and d.min() >= 0.0 and d.max() <= 1.0):
        raise fail(problem.label, f"given densities in [{d.min():g}, {d.max():g}]; allowed: [0, 1]")
    return d


def write_modes(result: ModalResult, out_dir: str | Path, name: str = "modal", n_pictures: int = 6) -> list[Path]:
    """Write the modes of ``result`` to ``out_dir``: ``modes.vtu``, ``modes.json``, PNG pictures.

    Parameters
    ----------
    result : ModalResult
    out_dir : str or Path
        Created if missing.
    name : str
        Problem name for the picture titles.
    n_pictures : int
        Pictures of the first ``n_pictures`` mode shapes (``mode_<i>.png``, the design drawn
        deformed by the mode scaled to 10 % of the model's size; f in Hz and ω in rad/s in the
        title) next to ``design.png``.

    Returns
    -------
    list of Path
        The files written (each atomically).

    Raises
    ------
    OSError
        ``out_dir`` cannot be created or written.
    """
    from fem_eigopt.io.paraview import save_vtu
    from fem_eigopt.io.pictures import save_design_png
    from fem_eigopt.io.rundir import current_umask, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, modes = result.model, result.modes
    mesh = model.basis.mesh
    densities = np.ones(model.n_elements) if result.densities is None else result.densities
    written = [write_json(out / "modes.json", {
        "problem": name, "design": result.design, "eigenvalues": modes.eigenvalues,
        "omega": modes.omega, "frequencies_hz": modes.frequencies_hz,
        "clusters": [list(c) for c in modes.clusters], "n_elements": model.n_elements,
        "n_free_dofs": model.n_free, "backend": result.solver.backend,
        "solver": type(result.solver).__name__,
    })]
    vtu = save_vtu(out / "modes.vtu", model, densities, modes, n_modes=modes.eigenvalues.size)
    os.chmod(vtu, 0o666 & ~current_umask())  # mkstemp made it 0600
    written.append(vtu)
    written.append(save_design_png(mesh, densities, out / "design.png",
                                   title=f"{name}: design analysed ({result.design})"))
    size = float(np.max(np.ptp(mesh.p, axis=1)))
    for i in range(min(n_pictures, modes.eigenvalues.size)):
        u = model.nodal_displacements(modes.vectors[:, i])  # (n_vertices, dim)
        peak = float(np.max(np.abs(u))) or 1.0
        moved = type(mesh)(mesh.p + (0.1 * size / peak) * u.T, mesh.t)
        written.append(save_design_png(
            moved, densities, out / f"mode_{i + 1}.png",
            title=f"{name}: mode {i + 1}, f = {modes.frequencies_hz[i]:.4g} Hz, ω = {modes.omega[i]:.4g} rad/s"))
    return written
