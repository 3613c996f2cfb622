"""``eigensolver="auto"``: which eigen solver a model and a run get.
"""

from __future__ import annotations

import logging

import numpy as np

from fem_eigopt.solvers.base import EigenSolver
from fem_eigopt.solvers.lanczos import LanczosSolver

logger = logging.getLogger(__name__)

#: free dofs from which ``eigensolver="auto"`` optimises 2D models with the warm-started subspace
#: solver (below: ARPACK with a fresh factorisation per design; see :func:`make_modal_solver`)
SUBSPACE_MIN_DOFS_2D = 10_000
#: free dofs of a 3D model from which ``eigensolver="auto"`` asks PARDISO's analysis how much
#: memory the factorisation needs (below: under 1 GB — 0.6 GB at 89 000 hex8 dofs — so not asked)
FACTOR_MEMORY_CHECK_DOFS_3D = 100_000
#: share of the available memory beyond which ``"auto"`` takes the AMG solver, which needs no
#: factorisation, instead of the subspace solver (the rest is for the model, the eigen solver's
#: blocks and the sensitivities)
FACTOR_MEMORY_SHARE = 0.5


def _factors_too_big(model, backend: str) -> bool:
    """Whether factorising ``model``'s K (double precision, the subspace solver's cold start)
    would take more than FACTOR_MEMORY_SHARE of the available memory (PARDISO's own estimate from
    its analysis; False when PARDISO or the available memory is unknown)."""
    from fem_eigopt.linalg.factorization import (
        PardisoFactorization,
        available_memory,
        default_backend,
    )

    available = available_memory()
    if available is None or (backend if backend != "auto" else default_backend()) != "pardiso":
        return False
    factorization = PardisoFactorization()
    try:
        needed = factorization.memory_estimate(model.stiffness())
    except (np.linalg.LinAlgError, MemoryError) as exc:  # PARDISO cannot even analyse it
        logger.info("eigensolver auto: PARDISO's analysis of K (%d dofs) failed (%s): "
                    "AMG-preconditioned LOBPCG (no factorisation)", model.n_free, exc)
        return True
    finally:
        factorization.release()
    too_big = needed > FACTOR_MEMORY_SHARE * available
    logger.info("eigensolver auto: factorising K (%d dofs) needs ~%.1f GB of %.1f GB available: %s",
                model.n_free, needed / 1e9, available / 1e9,
                "AMG-preconditioned LOBPCG (no factorisation)" if too_big else "warm-started subspace solver")
    return too_big


def make_modal_solver(n_modes: int, analysis, backend: str | None = None, model=None,
                      repeated: bool = False, accurate_modes: int | None = None) -> EigenSolver:
    """The eigen solver an :class:`~fem_eigopt.problem.definition.Analysis` asks for.

    Parameters
    ----------
    n_modes : int
        Eigenpairs returned.
    analysis : Analysis
        Its ``eigensolver``, ``shift``, ``backend``, ``cluster_tol`` and ``eigen_tol`` are used.
    backend : str, optional
        Overrides ``analysis.backend``.
    model : Model, optional
        The discretisation (the AMG solver builds its near-null space, the rigid-body modes, from it).
    repeated : bool
        True when the solver will see a sequence of slowly changing designs (an optimisation):
        ``"auto"`` then picks the warm-started solver for 3D models and for 2D models with at
        least ``SUBSPACE_MIN_DOFS_2D`` (10 000) free dofs. Whether repeated or not, ``"auto"``
        picks the AMG solver for a 3D model of at least ``FACTOR_MEMORY_CHECK_DOFS_3D`` free dofs
        whose factorisation would need more than ``FACTOR_MEMORY_SHARE`` of the available memory
        (PARDISO's estimate from its analysis of K).
    accurate_modes : int, optional
        Leading eigenpairs that must be accurate to the solver's full tolerance because they are
        differentiated (iterative solvers may stop the others earlier). Whether the last of them
        is part of a cluster must be decided on accurate eigenvalues too: the subspace solver
        converges its cluster partners (Ritz values within 1 %) tightly, the AMG solver the next
        mode whatever its distance.
    """
    kind = analysis.eigensolver
    if kind == "auto":
        # The warm-started solver is faster per design in 3D and, from SUBSPACE_MIN_DOFS_2D on,
        # in 2D; on small 2D beams (continuation restarts, a double eigenvalue) shift-invert
        # Lanczos with a fresh factorisation per design is faster, and the beams'
        # published-optimum results were validated with it (benchmarks/bench_topology.py,
        # bench_pymoto.py; measurements in docs/performance.md).
        dim = model.dim if model is not None else 2
        n_free = model.n_free if model is not None else 0
        kind = "subspace" if repeated and (dim == 3 or n_free >= SUBSPACE_MIN_DOFS_2D) else "arpack"
        # Where a factorisation fits it is faster (benchmarks/bench_scale.py); where it does
        # not, the AMG solver needs none.
        if dim == 3 and n_free >= FACTOR_MEMORY_CHECK_DOFS_3D and _factors_too_big(
                model, backend or analysis.backend):
            kind = "amg"
    common = dict(cluster_tol=analysis.cluster_tol)
    tol_per_change = analysis.eigen_tol_per_change  # the iterative solvers only
    if analysis.eigen_tol is not None:
        common["tol"] = float(analysis.eigen_tol)
    if kind == "amg":
        from fem_eigopt.solvers.amg import (
            AMGModalSolver,  # imported on demand: pyamg is only needed here
        )

        return AMGModalSolver(n_modes, model=model, **common,
                              accurate_modes=None if accurate_modes is None else accurate_modes + 1,
                              tol_per_change=tol_per_change)
    if kind == "subspace":
        from fem_eigopt.linalg.factorization import default_backend
        from fem_eigopt.solvers.subspace import SubspaceModalSolver

        backend = backend or analysis.backend
        precision = analysis.preconditioner_precision
        if precision == "auto":
            # Single-precision factors: half the memory traffic of factorisations and solves, and
            # the same LOBPCG iteration counts (pyMOTO comparison problems: objectives equal to
            # 1e-9; speed-ups in docs/performance.md).
            resolved = default_backend() if backend == "auto" else backend
            precision = "single" if resolved == "pardiso" else "double"
        return SubspaceModalSolver(n_modes, shift=analysis.shift, backend=backend,
                                   accurate_modes=accurate_modes, precision=precision,
                                   tol_per_change=tol_per_change, **common)
    return LanczosSolver(n_modes, shift=analysis.shift, backend=backend or analysis.backend, **common)
