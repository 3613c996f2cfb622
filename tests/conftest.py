"""Shared fixtures of the test suite: where the repository is, and one-call modal solves."""

from __future__ import annotations

import os

# As the CLI does (fem_eigopt/cli.py): single-threaded OpenBLAS before numpy loads; ARPACK's
# vector work is several times slower with threads on a 2-core machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pytest

import fem_eigopt as fe
from fem_eigopt.fem.assembly import build_model
from fem_eigopt.solvers.lanczos import ModalSolver

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (the CLI subprocesses run there)."""
    return REPO


def _solve(problem: fe.Problem, n_modes: int | None = None, backend: str = "auto"):
    """Build the model of ``problem`` and solve for its leading modes (solid, all scale factors 1)."""
    model = build_model(problem)
    solver = ModalSolver(n_modes or problem.analysis.n_modes, backend=backend)
    return model, solver.solve(model.stiffness(), model.mass())


@pytest.fixture(scope="session")
def solve():
    """``solve(problem, n_modes=None, backend="auto") -> (model, modes)``."""
    return _solve


def transverse_fraction(model, vectors: np.ndarray, axis: int = 1) -> np.ndarray:
    """Share of each mode's squared displacement in component ``axis`` (≈ 1 for bending in y)."""
    X = model.expand(vectors) ** 2
    return X[model.dof_component == axis].sum(axis=0) / X.sum(axis=0)


@pytest.fixture(scope="session")
def transverse():
    """``transverse(model, vectors, axis=1)``: see :func:`transverse_fraction`."""
    return transverse_fraction
