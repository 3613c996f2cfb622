"""The warm-started LOBPCG eigensolver (fem_eigopt.solvers.subspace) against shift-invert Lanczos."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import fem_eigopt as fe
from fem_eigopt.fem.assembly import build_model
from fem_eigopt.linalg.factorization import available_backends
from fem_eigopt.optimize.evaluator import DesignEvaluator
from fem_eigopt.problem.loading import load_problem
from fem_eigopt.sensitivity.gradcheck import check_evaluator
from fem_eigopt.solvers.auto import SUBSPACE_MIN_DOFS_2D, make_modal_solver
from fem_eigopt.solvers.lanczos import ModalSolver
from fem_eigopt.solvers.modes import Modes
from fem_eigopt.solvers.subspace import SubspaceModalSolver

REPO = Path(__file__).resolve().parents[1]


def design_sequence(model, steps: int, size: float, seed: int = 1):
    """Smoothly changing SIMP designs: the situation the solver is made for."""
    rng = np.random.default_rng(seed)
    centroids = model.basis.mesh.p[:, model.basis.mesh.t].mean(axis=1)
    x = np.full(model.n_elements, 0.5)
    for _ in range(steps):
        k = rng.uniform(1, 4, centroids.shape[0])
        phase = rng.uniform(0, 2 * np.pi)
        x = np.clip(x + size * np.sin(k @ centroids + phase), 1e-3, 1.0)
        yield x


@pytest.mark.parametrize("name, over", [("beam.py", {"nx": "40", "ny": "8", "supports": "CC"}),
                                        ("cantilever3d.py", {"nx": "10", "ny": "3", "nz": "3"})])
def test_agrees_with_lanczos_along_a_design_sequence(name, over):
    model = build_model(load_problem(REPO / "problems" / name, over))
    reference = ModalSolver(6)
    # refresh rule pinned: counted work below must not depend on the machine's timings
    solver = SubspaceModalSolver(6, tol=1e-8, factorization_worth=2.0)
    for x in design_sequence(model, 8, 0.01):
        K, M = model.stiffness(x**3), model.mass(x)
        a, b = reference.solve(K, M), solver.solve(K, M)
        np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-10)
        assert b.next_eigenvalue == pytest.approx(a.next_eigenvalue, rel=1e-8)
        mac = np.abs(np.einsum("ij,ij->j", a.vectors, M @ b.vectors))
        np.testing.assert_allclose(mac, 1.0, atol=1e-8)
        np.testing.assert_allclose(np.einsum("ij,ij->j", b.vectors, M @ b.vectors), 1.0, rtol=1e-12)
    # The point of the solver: factorisations are kept across designs.
    assert solver.n_solves == 8
    assert solver.n_factorizations < solver.n_solves
    assert 0 < solver.last_iterations <= solver.max_iterations
    # counted work: one Rayleigh-Ritz step to start each warm solve and one per LOBPCG iteration;
    # every iteration solves at least one column, none more than the block
    warm = solver.n_solves - solver.n_cold_starts
    assert solver.n_rayleigh_ritz == warm + solver.n_lobpcg_iterations
    block = solver.n_modes + 1 + solver.guard
    assert solver.n_lobpcg_iterations + warm <= solver.n_preconditioner_columns
    assert solver.n_preconditioner_columns <= block * (solver.n_lobpcg_iterations + warm) + block * solver.n_factorizations


PARDISO = pytest.mark.skipif("pardiso" not in available_backends(), reason="MKL PARDISO not installed")


@PARDISO
@pytest.mark.parametrize("name, over", [("beam.py", {"nx": "40", "ny": "8", "supports": "CC"}),
                                        ("cantilever3d.py", {"nx": "10", "ny": "3", "nz": "3"})])
def test_single_precision_preconditioner_gives_the_same_modes(name, over):
    """Single-precision factors only precondition: the converged modes are those of Lanczos to the
    same tolerance as with double factors (iteration counts are not compared: the refresh policy
    decides on measured times)."""
    model = build_model(load_problem(REPO / "problems" / name, over))
    reference = ModalSolver(6)
    single = SubspaceModalSolver(6, tol=1e-8, precision="single")
    assert single.factorization.precision == "single" and single.factorization is not single._cold.factorization
    for x in design_sequence(model, 8, 0.01):
        K, M = model.stiffness(x**3), model.mass(x)
        a, b = reference.solve(K, M), single.solve(K, M)
        np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-10)
        mac = np.abs(np.einsum("ij,ij->j", a.vectors, M @ b.vectors))
        np.testing.assert_allclose(mac, 1.0, atol=1e-8)
    assert single.precision == "single" and single.n_cold_starts == 1


@PARDISO
def test_single_precision_failure_falls_back_to_double(monkeypatch):
    """Should PARDISO refuse the single-precision factors, the solver switches to double for good
    and still returns the right modes."""
    model = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "40", "ny": "8"}))
    solver = SubspaceModalSolver(4, precision="single")

    def refuse(A, positive_definite=True):
        raise np.linalg.LinAlgError("PARDISO phase 22 failed with error -4")

    monkeypatch.setattr(solver.factorization, "factor", refuse)
    designs = list(design_sequence(model, 3, 0.01))
    for x in designs:
        K, M = model.stiffness(x**3), model.mass(x)
        modes = solver.solve(K, M)
        np.testing.assert_allclose(modes.eigenvalues, ModalSolver(4).solve(K, M).eigenvalues, rtol=1e-10)
    assert solver.precision == "double" and solver.factorization is solver._cold.factorization
    assert solver.n_cold_starts == 1


def test_a_failing_stale_probe_is_cut_short():
    """Stale factors far from the design: the residual's rate of decrease predicts convergence
    beyond the limit after two iterations, and the factors are refreshed there (not at the limit)."""
    model = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "40", "ny": "8"}))
    solver = SubspaceModalSolver(4)
    x = np.full(model.n_elements, 0.5)
    solver.solve(model.stiffness(x**3), model.mass(x))
    y = np.clip(np.random.default_rng(0).uniform(0.05, 1.0, x.size), 1e-3, 1.0)
    K, M = model.stiffness(y**3), model.mass(y)
    modes = solver.solve(K, M)
    assert solver.last_refresh_at is not None and solver.last_refresh_at <= 3 < solver.max_iterations
    np.testing.assert_allclose(modes.eigenvalues, ModalSolver(4).solve(K, M).eigenvalues, rtol=1e-9)


def test_refreshes_a_stale_factorisation():
    """A large jump in the design makes the kept factors a poor preconditioner: the solver must
    refactorise (and still agree with Lanczos)."""
    model = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "40", "ny": "8"}))
    solver = SubspaceModalSolver(4, max_iterations=3)
    solver.refresh_after = 2
    x = np.full(model.n_elements, 0.5)
    solver.solve(model.stiffness(x**3), model.mass(x))
    assert solver.n_factorizations == 1
    rng = np.random.default_rng(0)
    y = np.clip(rng.uniform(0.05, 1.0, x.size), 1e-3, 1.0)
    K, M = model.stiffness(y**3), model.mass(y)
    modes = solver.solve(K, M)
    assert solver.n_factorizations >= 2
    np.testing.assert_allclose(modes.eigenvalues, ModalSolver(4).solve(K, M).eigenvalues, rtol=1e-9)


def test_rough_guard_vectors_save_solves_not_accuracy():
    """Guard vectors refined only to guard_tol (1e-1) instead of loose_tol: fewer preconditioner
    columns along a design sequence, the same eigenpairs (all wanted ones to tol).

    The refresh rule is pinned (``factorization_worth``): with measured timings it decides when
    to refactorise, and on a loaded machine the two solvers refactorise at different designs
    (CI once counted 275 rough against 254 refined columns; pinned: 190 against 218 at worth 1,
    238 against 274 at worth 5)."""
    model = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "40", "ny": "8"}))
    rough = SubspaceModalSolver(4, guard=2, factorization_worth=2.0)
    refined = SubspaceModalSolver(4, guard=2, guard_tol=1e-3, factorization_worth=2.0)
    reference = ModalSolver(4)
    for x in design_sequence(model, 6, 0.05, seed=7):
        K, M = model.stiffness(x**3), model.mass(x)
        a, b, ref = rough.solve(K, M), refined.solve(K, M), reference.solve(K, M)
        np.testing.assert_allclose(a.eigenvalues, ref.eigenvalues, rtol=1e-10)
        np.testing.assert_allclose(b.eigenvalues, ref.eigenvalues, rtol=1e-10)
        assert a.next_eigenvalue == pytest.approx(ref.next_eigenvalue, rel=1e-5)
    assert rough.n_preconditioner_columns < refined.n_preconditioner_columns


@pytest.mark.parametrize("worth", [1.5, None])
def test_refresh_rule_makes_counted_work_reproducible(worth):
    # pinned, or estimated from the factorisation's counts (the default): no timings decide
    if worth is None and "pardiso" not in available_backends():
        pytest.skip("the estimate needs PARDISO's counts (other backends fall back to timings)")
    model = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "40", "ny": "8"}))
    counts = []
    for _ in range(2):
        solver = SubspaceModalSolver(4, factorization_worth=worth)
        for x in design_sequence(model, 5, 0.05, seed=3):
            solver.solve(model.stiffness(x**3), model.mass(x))
        counts.append((solver.n_factorizations, solver.n_lobpcg_iterations, solver.n_preconditioner_columns))
    assert counts[0] == counts[1]
    for bad in (0.5, "timed"):
        with pytest.raises(ValueError, match=f"factorization_worth={bad!r}"):
            SubspaceModalSolver(4, factorization_worth=bad)


@pytest.mark.skipif("pardiso" not in available_backends(), reason="PARDISO reports the counts")
def test_estimated_factorization_worth_follows_the_operation_counts():
    # worth = F / (κ L c): F flops and L factor non-zeros from PARDISO's analysis, c preconditioner
    # columns per LOBPCG iteration of the last solve; a 3D model's factorisation is worth several
    # iterations, and "measured" times the machine instead
    model = build_model(load_problem(REPO / "problems" / "cantilever3d.py", {"nx": "16", "ny": "6", "nz": "6"}))
    solver = SubspaceModalSolver(4)
    for x in design_sequence(model, 3, 0.02, seed=5):
        solver.solve(model.stiffness(x**3), model.mass(x))
    flops, entries = solver.factorization.work_estimate()
    assert flops > 10 * entries > 0
    c = solver._columns_per_iteration
    assert 1.0 <= c <= solver.n_modes + 1 + solver.guard + 1
    expected = flops / (SubspaceModalSolver.FLOPS_PER_SOLVED_ENTRY * entries * c)
    assert expected > 1.0
    assert solver._allowance() == pytest.approx(expected, rel=1e-12)
    solver.factorization_worth = "measured"
    assert solver._allowance() == pytest.approx(max(solver._t_factor / solver._t_iteration, 1.0), rel=1e-12)
    solver.factorization_worth = 3.0
    assert solver._allowance() == 3.0


def test_accurate_modes_only_tightens_the_leading_ones():
    model = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "40", "ny": "8"}))
    designs = list(design_sequence(model, 4, 0.05, seed=4))
    strict = SubspaceModalSolver(6, factorization_worth=2.0)
    loose = SubspaceModalSolver(6, accurate_modes=2, factorization_worth=2.0)
    for x in designs:
        K, M = model.stiffness(x**3), model.mass(x)
        a, b = strict.solve(K, M), loose.solve(K, M)
    ref = ModalSolver(6).solve(K, M)
    np.testing.assert_allclose(a.eigenvalues, ref.eigenvalues, rtol=1e-10)
    np.testing.assert_allclose(b.eigenvalues[:2], ref.eigenvalues[:2], rtol=1e-10)
    np.testing.assert_allclose(b.eigenvalues, ref.eigenvalues, rtol=1e-5)
    # mode 6 is not accurate, so the vector beyond it is refined only like a guard: its Ritz value
    # bounds λ7 from above, roughly
    assert a.next_eigenvalue == pytest.approx(ref.next_eigenvalue, rel=1e-10)
    assert ref.next_eigenvalue * (1 - 1e-12) <= b.next_eigenvalue <= ref.next_eigenvalue * 1.02
    assert loose.n_preconditioner_columns < strict.n_preconditioner_columns


def test_partner_of_the_last_accurate_mode_is_converged_as_tightly():
    """The square cantilever's modes 4 and 5 are a bending pair (split by ~1e-3 on the perturbed
    designs); with 4 accurate modes the 5th, their partner, must be as accurate (a loosely
    converged partner pollutes the 4th through the Rayleigh-Ritz steps)."""
    model = build_model(load_problem(REPO / "problems" / "cantilever3d.py", {"nx": "10", "ny": "3", "nz": "3"}))
    solver = SubspaceModalSolver(4, accurate_modes=4)
    reference = ModalSolver(6)
    for x in design_sequence(model, 4, 0.01, seed=2):
        K, M = model.stiffness(x**3), model.mass(x)
        got, ref = solver.solve(K, M), reference.solve(K, M)
        assert ref.eigenvalues[4] - ref.eigenvalues[3] < 1e-2 * ref.eigenvalues[3]  # partners
        np.testing.assert_allclose(got.eigenvalues, ref.eigenvalues[:4], rtol=1e-10)
        assert got.next_eigenvalue == pytest.approx(ref.eigenvalues[4], rel=1e-10)


def test_incomplete_cluster_warning_only_for_modes_someone_asked_for(caplog):
    """The square cantilever's 4th and 5th modes are a pair: a solver returning 4 modes warns that
    the last one's cluster continues (unless told not to); the evaluator tells it not to when it
    added that mode itself (to judge the cluster of the last mode a response uses)."""
    model = build_model(load_problem(REPO / "problems" / "cantilever3d.py", {"nx": "10", "ny": "3", "nz": "3"}))
    K, M = model.stiffness(), model.mass()
    once = SubspaceModalSolver(4)
    with caplog.at_level("WARNING", logger="fem_eigopt.solvers.modes"):
        once.solve(K, M)
        once.solve(K, M)  # every design of a run would say the same: one warning per solver
    assert caplog.text.count("part of a cluster that continues beyond it") == 1
    assert once.warn_incomplete_cluster is False
    caplog.clear()
    quiet = SubspaceModalSolver(4)
    quiet.warn_incomplete_cluster = False
    with caplog.at_level("WARNING", logger="fem_eigopt.solvers.modes"):
        quiet.solve(K, M)
    assert caplog.text == ""
    base = load_problem(REPO / "problems" / "cantilever3d.py", {"nx": "10", "ny": "3", "nz": "3", "n_bound": "3"})
    for n_modes in (3, 6):  # the bound formulation uses modes 1-3
        problem = dataclasses.replace(base, analysis=dataclasses.replace(base.analysis, n_modes=n_modes))
        evaluator = DesignEvaluator(problem)
        assert evaluator.n_modes == max(n_modes, 4) and evaluator.max_mode == 3
        assert evaluator.solver.warn_incomplete_cluster is False  # the evaluator judges instead


@pytest.mark.parametrize("cluster, warns", [((4, 5), False), ((2, 3, 4, 5), True), ((3, 4, 5), False)],
                         ids=["unused-modes-5-6", "used-mode-3", "from-mode-4"])
def test_evaluator_warns_only_when_a_used_mode_s_cluster_is_cut(cluster, warns, caplog):
    """Six modes computed, the responses use modes 1-3: a cluster cut at the sixth mode matters
    only when it holds one of them (indices are 0-based)."""
    problem = load_problem(REPO / "problems" / "cantilever3d.py", {"nx": "4", "ny": "2", "nz": "2", "n_bound": "3"})
    evaluator = DesignEvaluator(problem)
    modes = Modes(eigenvalues=np.arange(1.0, 7.0), vectors=np.zeros((2, 6)), clusters=[cluster], cut_cluster=True)
    with caplog.at_level("WARNING", logger="fem_eigopt.optimize"):
        evaluator._check_used_cluster(modes)
        evaluator._check_used_cluster(modes)  # once per run
    assert caplog.text.count("the cluster is cut") == (1 if warns else 0)
    if warns:
        assert "modes 3 to 6 and the next one are a cluster" in caplog.text and "use mode 3" in caplog.text


def test_factory_choices():
    model = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "16", "ny": "4"}))
    model3 = build_model(load_problem(REPO / "problems" / "cantilever3d.py", {"nx": "4", "ny": "2", "nz": "2"}))
    auto = fe.Analysis()
    assert isinstance(make_modal_solver(4, auto, model=model, repeated=True), ModalSolver)
    assert isinstance(make_modal_solver(4, auto, model=model3, repeated=True), SubspaceModalSolver)
    assert isinstance(make_modal_solver(4, auto, model=model3, repeated=False), ModalSolver)
    # 2D: the warm-started solver from SUBSPACE_MIN_DOFS_2D free dofs on (the beams stay on ARPACK)
    big = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "200", "ny": "25"}))
    assert model.n_free < SUBSPACE_MIN_DOFS_2D <= big.n_free
    assert isinstance(make_modal_solver(4, auto, model=big, repeated=True), SubspaceModalSolver)
    assert isinstance(make_modal_solver(4, auto, model=big, repeated=False), ModalSolver)
    default_beam = build_model(load_problem(REPO / "problems" / "beam.py"))
    assert isinstance(make_modal_solver(4, auto, model=default_beam, repeated=True), ModalSolver)
    assert isinstance(make_modal_solver(4, fe.Analysis(eigensolver="subspace"), model=model), SubspaceModalSolver)
    with pytest.raises(fe.InputError, match="eigensolver"):
        fe.Analysis(eigensolver="lanczos")
    loose = make_modal_solver(4, fe.Analysis(eigensolver="subspace", eigen_tol=1e-5), model=model)
    assert loose.tol == 1e-5 and SubspaceModalSolver(4).tol == 1e-6 and SubspaceModalSolver(4).guard_tol == 0.1
    assert make_modal_solver(4, fe.Analysis(eigensolver="arpack", eigen_tol=1e-8), model=model).tol == 1e-8
    # the differentiated modes: the subspace solver adds their last cluster's partners itself
    # (window), the AMG solver converges one more mode tightly
    assert make_modal_solver(4, fe.Analysis(eigensolver="subspace"), model=model, accurate_modes=3).accurate_modes == 3
    assert make_modal_solver(4, fe.Analysis(eigensolver="amg"), model=model3, accurate_modes=3).accurate_modes == 4
    assert ModalSolver(4).tol == 0.0
    with pytest.raises(fe.InputError, match="eigen_tol"):
        fe.Analysis(eigen_tol=2.0)
    # the tolerance that follows the optimiser's step: on by default, 0 switches it off
    assert make_modal_solver(4, auto, model=model3, repeated=True).tol_per_change == 1e-2
    assert make_modal_solver(4, fe.Analysis(eigen_tol_per_change=0.0), model=model3, repeated=True).tol_per_change == 0.0
    with pytest.raises(fe.InputError, match="eigen_tol_per_change = -1"):
        fe.Analysis(eigen_tol_per_change=-1)
    # single-precision preconditioning: by default when PARDISO is there
    default = "single" if "pardiso" in available_backends() else "double"
    assert make_modal_solver(4, auto, model=model3, repeated=True).precision == default
    assert make_modal_solver(4, fe.Analysis(eigensolver="subspace"), model=model).precision == default
    assert make_modal_solver(4, fe.Analysis(eigensolver="subspace", backend="superlu"), model=model).precision == "double"
    assert make_modal_solver(4, fe.Analysis(eigensolver="subspace", preconditioner_precision="double"),
                             model=model3).precision == "double"
    with pytest.raises(fe.InputError, match="preconditioner_precision = 'half'"):
        fe.Analysis(preconditioner_precision="half")
    with pytest.raises(fe.InputError, match="with eigensolver 'subspace' or 'auto' only"):
        fe.Analysis(eigensolver="arpack", preconditioner_precision="single")


@pytest.mark.skipif("pardiso" not in available_backends(), reason="MKL PARDISO not installed")
def test_auto_takes_amg_when_the_factors_would_not_fit(monkeypatch):
    """eigensolver="auto" on a 3D model: the subspace solver while PARDISO's estimate of the
    factorisation's memory is within FACTOR_MEMORY_SHARE of the available memory, the AMG solver
    (no factorisation) beyond; unknown memory keeps the subspace solver. 2D models and 3D models
    below FACTOR_MEMORY_CHECK_DOFS_3D are not checked."""
    import fem_eigopt.linalg.factorization as linalg
    import fem_eigopt.solvers.auto as modal
    from fem_eigopt.solvers.amg import AMGModalSolver

    model3 = build_model(load_problem(REPO / "problems" / "cantilever3d.py", {"nx": "4", "ny": "2", "nz": "2"}))
    model2 = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "200", "ny": "25"}))
    needed = linalg.PardisoFactorization().memory_estimate(model3.stiffness())
    assert 1e5 < needed < 1e8  # bytes: a few MB for this small model
    auto = fe.Analysis()
    assert isinstance(make_modal_solver(4, auto, model=model3, repeated=True), SubspaceModalSolver)  # not checked
    monkeypatch.setattr(modal, "FACTOR_MEMORY_CHECK_DOFS_3D", 0)
    for available, expected in ((1e12, SubspaceModalSolver), (1.5 * needed, AMGModalSolver), (None, SubspaceModalSolver)):
        monkeypatch.setattr(linalg, "available_memory", lambda available=available: available)
        assert type(make_modal_solver(4, auto, model=model3, repeated=True)) is expected, available
    monkeypatch.setattr(linalg, "available_memory", lambda: 1.5 * needed)
    assert isinstance(make_modal_solver(4, auto, model=model3, repeated=False), AMGModalSolver)  # modal runs too
    assert isinstance(make_modal_solver(4, auto, model=model2, repeated=True), SubspaceModalSolver)  # 2D
    assert isinstance(make_modal_solver(4, fe.Analysis(eigensolver="subspace"), model=model3), SubspaceModalSolver)
    monkeypatch.setattr(linalg, "available_memory", lambda: 1e12)
    assert isinstance(make_modal_solver(4, auto, model=model3, repeated=False), ModalSolver)

    def analysis_fails(self, A, positive_definite=True):
        raise np.linalg.LinAlgError("PARDISO phase 11 failed with error -2")

    monkeypatch.setattr(linalg.PardisoFactorization, "memory_estimate", analysis_fails)
    assert isinstance(make_modal_solver(4, auto, model=model3, repeated=True), AMGModalSolver)


def test_eigen_tol_bounds_the_eigenvalue_error():
    # eigenvalues are Rayleigh quotients: error about tol² relative; a loose tol needs fewer iterations
    model = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "40", "ny": "8", "supports": "CC"}))
    reference = ModalSolver(4)
    iterations = {}
    for tol in (1e-8, 1e-4):
        solver = SubspaceModalSolver(4, tol=tol, factorization_worth=2.0)
        its = 0
        for x in design_sequence(model, 6, 0.05):
            K, M = model.stiffness(x**3), model.mass(x)
            got, ref = solver.solve(K, M), reference.solve(K, M)
            its += solver.last_iterations
            err = np.max(np.abs(got.eigenvalues - ref.eigenvalues) / ref.eigenvalues)
            assert err < 10 * tol**2 + 1e-12, (tol, err)
        iterations[tol] = its
    assert iterations[1e-4] < iterations[1e-8], iterations


def test_tolerance_follows_the_design_change():
    """tol_per_change: the accurate modes converge to min(max(tol, η Δ), max_tol) when the design
    moved by Δ (RMS), to tol when Δ is unknown; eigenvalues stay within ~tol² of Lanczos', and a
    design sequence with large steps needs fewer iterations than at tol."""
    model = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "40", "ny": "8", "supports": "CC"}))
    solver = SubspaceModalSolver(4, factorization_worth=2.0)
    assert (solver.tol, solver.tol_per_change, solver.max_tol) == (1e-6, 1e-2, 1e-4)
    for change, expected in ((None, 1e-6), (0.0, 1e-6), (5e-5, 1e-6), (3e-3, 3e-5), (0.05, 1e-4), (2.0, 1e-4)):
        solver.design_change = change
        assert solver._step_tolerance() == pytest.approx(expected, rel=1e-12)
    assert SubspaceModalSolver(4, tol=1e-3)._step_tolerance() == 1e-3  # never tighter than tol
    solver.tol_per_change = 0.0
    assert solver._step_tolerance() == 1e-6
    with pytest.raises(ValueError, match="tol_per_change=-1"):
        SubspaceModalSolver(4, tol_per_change=-1)

    reference = ModalSolver(4)
    exact, adaptive = SubspaceModalSolver(4, factorization_worth=2.0), SubspaceModalSolver(4, factorization_worth=2.0)
    previous = None
    for x in design_sequence(model, 6, 0.05):
        rho = x
        adaptive.design_change = None if previous is None else float(np.sqrt(np.mean((rho - previous) ** 2)))
        previous = rho
        K, M = model.stiffness(x**3), model.mass(x)
        a, b, ref = exact.solve(K, M), adaptive.solve(K, M), reference.solve(K, M)
        np.testing.assert_allclose(a.eigenvalues, ref.eigenvalues, rtol=1e-11)
        assert adaptive.last_tol == adaptive._step_tolerance()
        err = np.max(np.abs(b.eigenvalues - ref.eigenvalues) / ref.eigenvalues)
        assert err < 10 * adaptive.last_tol**2 + 1e-12, (adaptive.last_tol, err)
    assert adaptive.last_tol > 10 * adaptive.tol  # steps of 0.05: loose
    assert adaptive.n_preconditioner_columns < exact.n_preconditioner_columns


def test_modes_from_carried_products_match_recomputed_ones():
    # an inexact solve hands LOBPCG's carried K X, M X to modes_from_vectors instead of two sparse
    # products: with exact products the modes agree to rounding (carried ones differ by ~2e-12)
    from fem_eigopt.solvers.modes import modes_from_vectors

    model = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "40", "ny": "8"}))
    K, M = model.stiffness(), model.mass()
    ref = ModalSolver(5).solve(K, M)
    rng = np.random.default_rng(8)
    X = ref.vectors * rng.uniform(0.5, 2.0, 5) * np.array([1, -1, 1, -1, 1])  # unnormalised, signs flipped
    X += 1e-6 * np.abs(X).max() * rng.standard_normal(X.shape)  # not exact eigenvectors
    a = modes_from_vectors(X, K, M, 4, 0.0, 1e-6, 1.0)
    b = modes_from_vectors(X, K, M, 4, 0.0, 1e-6, 1.0, products=(K @ X, M @ X))
    # to rounding: the two ways sum K X, M X in different orders (4e-13 on an AMD EPYC with
    # AVX-512, 1e-13 on Intel machines); the carried-products error this guards against is ~1e-6
    np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-11)
    np.testing.assert_allclose(b.vectors, a.vectors, rtol=1e-12, atol=1e-14 * np.abs(a.vectors).max())
    np.testing.assert_allclose(b.eigenvalues, ref.eigenvalues[:4], rtol=1e-6)  # Rayleigh quotients: ~error²
    assert b.next_eigenvalue == pytest.approx(a.next_eigenvalue, rel=1e-13)


def test_only_the_optimisers_steps_get_inexact_gradients(tmp_path, monkeypatch):
    """The evaluator tells the solver the design change only with ``inexact_gradients`` (which
    optimize() sets for the run and clears afterwards): gradient checks and outputs get tol."""
    # one realisation (no erosion): the spy below follows one solver's design changes
    problem = load_problem(REPO / "problems" / "beam.py", {"nx": "32", "ny": "4", "erosion": "0"})
    problem = dataclasses.replace(problem, analysis=dataclasses.replace(problem.analysis, eigensolver="subspace"))
    evaluator = DesignEvaluator(problem)
    x0, lower, upper = evaluator.start()
    n = evaluator.n_design
    x1 = x0.copy()
    x1[:n] = np.clip(x0[:n] + 0.1, lower[:n], upper[:n])
    evaluator(x0)
    evaluator(x1)
    assert evaluator.solver.design_change is None and evaluator.solver.last_tol == 1e-6
    evaluator.inexact_gradients = True
    evaluator(x0)
    rho0, rho1 = evaluator.chain.forward(x0[:n]), evaluator.chain.forward(x1[:n])
    change = float(np.sqrt(np.mean((rho1 - rho0) ** 2)))
    assert evaluator.solver.design_change == pytest.approx(change, rel=1e-12)
    assert evaluator.solver.last_tol == pytest.approx(min(max(1e-6, 1e-2 * change), 1e-4), rel=1e-12)
    assert evaluator.solver.last_tol > 1e-6

    seen = []
    original = SubspaceModalSolver.solve

    def spy(self, K, M):
        seen.append(self.design_change)
        return original(self, K, M)

    from fem_eigopt.optimize.run import optimize

    monkeypatch.setattr(SubspaceModalSolver, "solve", spy)
    run = optimize(problem, out_dir=tmp_path, max_eval=4, progress=False)
    assert seen[0] is None  # the start: no previous design
    assert all(c is not None and c > 0 for c in seen[1:-1])  # the optimiser's steps
    assert run.evaluator.inexact_gradients is False
    # the results written after the run come from a solve at full accuracy
    assert seen[-1] is None and run.evaluator.solver.last_tol == 1e-6


def test_gradients_through_the_subspace_solver_pass_the_taylor_test():
    problem = load_problem(REPO / "problems" / "beam.py", {"nx": "32", "ny": "4"})
    problem = dataclasses.replace(problem, analysis=dataclasses.replace(problem.analysis, eigensolver="subspace"))
    evaluator = DesignEvaluator(problem)
    assert isinstance(evaluator.solver, SubspaceModalSolver)
    x0, lower, upper = evaluator.start()
    rng = np.random.default_rng(3)
    x = x0.copy()
    n = evaluator.n_design
    x[:n] = np.clip(x0[:n] + rng.uniform(-0.1, 0.1, n), 0.2, 0.95)
    evaluator(x)
    names = [evaluator.objective.name] + evaluator.constraint_names
    # Central differences with a 1e-4 step: LOBPCG's eigenvalues are accurate to ~tol² = 1e-12
    # (relative), which a 1e-6 step turns into differences off by up to ~1e-5 (measured 4e-6 and
    # 7e-6 on runs that refactorised at other designs; a full-suite run once broke a 1e-5 bound). With 1e-4:
    # 0.8-1.4e-7 at eigen tolerances 1e-6 to 1e-8 with PARDISO's fresh single-precision factors;
    # with SciPy's SuperLU (no PARDISO: ARM machines) one factorisation serves all designs and the
    # modes stop at the same preconditioned residual with errors of up to 2.2e-6. The solver's
    # contract is eigenvectors to ~tol, so the bound is 10·tol (a wrong gradient is off by ≫ 1e-3).
    bound = 10 * evaluator.solver.tol
    for c in check_evaluator(evaluator, x, lower, upper, names, n_directions=1, seed=5, cd_step=1e-4):
        assert c.passed, (c.name, c.result.rate)
        if not c.linear:
            assert abs(c.result.rate - 2.0) <= 0.2
        assert c.relative_error < bound, (c.name, c.relative_error)


def test_mode_weights_measure_each_modes_share_of_the_gradients():
    """w_i = |∂f/∂λ_i| λ_i over its largest, the largest share over the partials; modes whose
    eigenvectors a response uses weigh 1."""
    from fem_eigopt.optimize.evaluator import mode_weights
    from fem_eigopt.responses.base import Partials

    lam = np.array([10.0, 70.0, 100.0, 400.0])
    harmonic = Partials(0.0, d_eigenvalues=-1.0 / lam**2 * np.array([1, 1, 1, 0]))  # Σ 1/λ_i, i = 1..3
    np.testing.assert_allclose(mode_weights(harmonic.d_eigenvalues[:, None], lam, [harmonic]),
                               [1.0, 1 / 7, 1 / 10, 0.0], rtol=1e-14)
    bound = Partials(0.0, d_eigenvalues=np.array([0.0, 0.0, -1.0, 0.0]))  # a constraint on mode 3 alone
    volume = Partials(0.0, d_densities=np.ones(5))
    D = np.column_stack([harmonic.d_eigenvalues, bound.d_eigenvalues, np.zeros(4)])
    np.testing.assert_allclose(mode_weights(D, lam, [harmonic, bound, volume]), [1.0, 1 / 7, 1.0, 0.0], rtol=1e-14)
    vector = Partials(0.0, d_vectors=np.column_stack([np.zeros(6), np.zeros(6), np.zeros(6), np.ones(6)]))
    np.testing.assert_allclose(mode_weights(np.column_stack([harmonic.d_eigenvalues, np.zeros(4)]), lam,
                                            [harmonic, vector]), [1.0, 1 / 7, 1 / 10, 1.0], rtol=1e-14)


def test_lightly_weighted_modes_converge_to_a_looser_tolerance():
    """Modes with weight w < 1/n (n weighted modes) stop at tol / (n w), up to loose_tol; the others,
    and any mode within the cluster window of a neighbour, at tol. Eigenvalues follow (~tol²)."""
    model = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "40", "ny": "8"}))
    solver = SubspaceModalSolver(4, accurate_modes=3)
    lam = np.array([1.0, 5.0, 10.0, 10.05, 30.0])
    solver.mode_weights = np.array([1.0, 0.02, 0.5, 0.0])
    window = solver.CLUSTER_WINDOW
    np.testing.assert_allclose(solver._accurate_tolerances(lam, 3, window), [1e-6, 1e-6 / 0.06, 1e-6])
    solver.mode_weights = np.array([1.0, 1e-4, 0.0, 0.0])  # capped at loose_tol; mode 3 (partner of 4): tight
    np.testing.assert_allclose(solver._accurate_tolerances(lam, 3, window), [1e-6, 1e-3, 1e-6])
    solver.mode_weights = None
    np.testing.assert_allclose(solver._accurate_tolerances(lam, 3, window), [1e-6] * 3)
    # along a design sequence: the lightly weighted second mode is less accurate, within its bound
    reference = ModalSolver(4)
    plain, weighted = SubspaceModalSolver(4, accurate_modes=3), SubspaceModalSolver(4, accurate_modes=3)
    for x in design_sequence(model, 5, 0.05, seed=6):
        K, M = model.stiffness(x**3), model.mass(x)
        weighted.mode_weights = np.array([1.0, 0.01, 1.0, 0.0])
        a, b, ref = plain.solve(K, M), weighted.solve(K, M), reference.solve(K, M)
        np.testing.assert_allclose(a.eigenvalues[:3], ref.eigenvalues[:3], rtol=1e-11)
        np.testing.assert_allclose(b.eigenvalues[[0, 2]], ref.eigenvalues[[0, 2]], rtol=1e-11)
        assert abs(b.eigenvalues[1] / ref.eigenvalues[1] - 1) < 10 * (1e-6 / 0.03) ** 2


@pytest.mark.parametrize("backend", available_backends())
def test_every_factorisation_backend_preconditions_the_solver(backend):
    """The preconditioner writes straight into the search space (Factorization.solve_into: PARDISO's
    own, the base class's for the others); the same eigenpairs with every backend."""
    model = build_model(load_problem(REPO / "problems" / "beam.py", {"nx": "40", "ny": "8"}))
    solver, reference = SubspaceModalSolver(4, backend=backend, factorization_worth=2.0), ModalSolver(4)
    for x in design_sequence(model, 4, 0.05, seed=2):
        K, M = model.stiffness(x**3), model.mass(x)
        got, ref = solver.solve(K, M), reference.solve(K, M)
        np.testing.assert_allclose(got.eigenvalues, ref.eigenvalues, rtol=1e-10)
    assert solver.backend == backend and solver.n_cold_starts == 1
