"""The one eigen-solver interface (fem_eigopt.solvers.base) and its callers."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import fem_eigopt as fe
from fem_eigopt.fem.assembly import build_model
from fem_eigopt.linalg.factorization import Factorization, make_factorization
from fem_eigopt.problem.loading import load_problem
from fem_eigopt.solvers.base import WORK_COUNTS, EigenSolver
from fem_eigopt.solvers.lanczos import LanczosSolver, ModalSolver
from fem_eigopt.solvers.subspace import SubspaceModalSolver

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fem_eigopt"


def _solvers(model):
    solvers = [LanczosSolver(3), SubspaceModalSolver(3)]
    try:
        from fem_eigopt.solvers.amg import AMGModalSolver
    except ImportError:  # pragma: no cover - pyamg is optional
        return solvers
    return solvers + [AMGModalSolver(3, model=model)]


@pytest.fixture(scope="module")
def model():
    return build_model(load_problem(REPO / "problems" / "cantilever3d.py", {"nx": "6", "ny": "2", "nz": "2"}))


def test_every_solver_implements_the_interface(model):
    assert ModalSolver is LanczosSolver and fe.ModalSolver is LanczosSolver
    K, M = model.stiffness(np.ones(model.n_elements)), model.mass(np.ones(model.n_elements))
    reference = None
    for solver in _solvers(model):
        assert isinstance(solver, EigenSolver), type(solver).__name__
        solver.design_change, solver.mode_weights = None, None  # set by the evaluator: always accepted
        modes = solver.solve(K, M)
        reference = modes.eigenvalues if reference is None else reference
        np.testing.assert_allclose(modes.eigenvalues, reference, rtol=1e-8)
        assert solver.n_solves == 1 and solver.last_tol >= solver.tol >= 0.0
        assert isinstance(solver.backend, str) and isinstance(solver.last_timings, dict)
        counts = solver.work_counts()
        assert set(WORK_COUNTS) <= set(counts) and counts["solves"] == 1
        assert solver.factorization is not None
        solver.reset()
        solver.release()
        assert solver.solve(K, M).eigenvalues == pytest.approx(reference, rel=1e-8)


def test_work_counts_are_the_counted_lobpcg_work(model):
    solver = SubspaceModalSolver(3, factorization_worth=2.0)
    for scale in (1.0, 0.98, 0.97):
        x = np.full(model.n_elements, scale)
        solver.solve(model.stiffness(x**3), model.mass(x))
    counts = solver.work_counts()
    assert counts["iterations"] == solver.n_lobpcg_iterations == solver.counts.iterations > 0
    assert counts["preconditioner_columns"] == solver.n_preconditioner_columns > counts["iterations"]
    assert counts["factorizations"] == solver.n_factorizations and counts["solves"] == 3


def test_factorisations_say_whether_they_tune_block_solves():
    base = Factorization()
    base.tune_block_solves()  # nothing to tune: no error, no attribute probing needed
    superlu = make_factorization("superlu")
    superlu.tune_block_solves()
    assert not hasattr(superlu, "multi_rhs")


# --------------------------------------------------------------------------------------------- #
# no caller probes a solver for optional members


#: names of objects that are solvers or factorisations
SOLVER_NAMES = {"solver", "factorization"}
#: files outside this change that still probe (their owners are changing them); listed by path
#: relative to the package so that the rule holds everywhere else
PENDING: set[str] = set()


def _probed_name(node: ast.expr) -> str | None:
    """The name of the object a ``hasattr``/``getattr`` call probes, when it is a name or an
    attribute (``solver``, ``self.solver``, ``evaluator.solver``, ``self.factorization``)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _solver_probes(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("hasattr", "getattr") and node.args):
            name = _probed_name(node.args[0])
            if name is not None and name.lower() in SOLVER_NAMES | {f"_{n}" for n in SOLVER_NAMES}:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_code_probes_a_solver_with_hasattr_or_getattr():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() not in PENDING:
            offenders += _solver_probes(path)
    assert not offenders, "read the EigenSolver interface's members directly:\n" + "\n".join(offenders)


def test_the_probe_finder_finds_probes(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def f(self, solver, factorization):\n"
                      "    a = hasattr(self.solver, 'x')\n"
                      "    b = getattr(solver, 'y', 0)\n"
                      "    c = hasattr(factorization, 'multi_rhs')\n"
                      "    d = getattr(self.model, 'z', 0)\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path
    try:
        assert len(_solver_probes(source)) == 3
    finally:
        PACKAGE = saved
