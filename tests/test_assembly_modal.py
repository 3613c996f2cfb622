"""The assembler (element matrices once, scaled re-assembly) and the modal solver."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import skfem
from skfem.helpers import ddot, dot, sym_grad, trace

import fem_eigopt as fe
from fem_eigopt.fem.assembly import build_model
from fem_eigopt.linalg.factorization import available_backends, make_factorization
from fem_eigopt.linalg.kernels import dense_matmul, reusable, sparse_matmul
from fem_eigopt.solvers.lanczos import ModalSolver
from fem_eigopt.solvers.modes import shifted_matrix

STEEL_2D = fe.Material(E=210e9, nu=0.3, density=7850.0, model="plane_stress", thickness=0.01)
STEEL_3D = fe.Material(E=210e9, nu=0.3, density=7850.0, model="solid")


def small_cantilever(element: str = "quad2", nx: int = 8, ny: int = 2, **kw) -> fe.Problem:
    kind = "tri" if element.startswith("tri") else "quad"
    return fe.Problem(mesh=fe.rectangle(1.0, 0.25, nx, ny, kind=kind), element=element, material=STEEL_2D,
                      supports=(fe.Support("left"),), analysis=fe.Analysis(n_modes=6), **kw)


def small_problem(element: str) -> fe.Problem:
    """A small clamped model of each element family (2D plane stress or 3D solid)."""
    if element in ("quad1", "quad2", "tri1", "tri2"):
        return small_cantilever(element, nx=6, ny=3)
    kind = "hex" if element.startswith("hex") else "tet"
    return fe.Problem(mesh=fe.box(1.0, 0.5, 0.5, 3, 2, 2, kind=kind), element=element, material=STEEL_3D,
                      supports=(fe.Support("left"),), analysis=fe.Analysis(n_modes=6))


@pytest.mark.parametrize("element", ["quad1", "quad2", "tri2", "hex1", "tet2"])
def test_scaled_assembly_equals_skfem(element):
    """K(s), M(s) from the fixed-pattern assembler equal scikit-fem's assembly of the same forms with
    an element-wise coefficient, restricted to the free dofs (1e-13 relative, Frobenius)."""
    problem = small_problem(element)
    model = build_model(problem)
    rng = np.random.default_rng(1)
    s_k, s_m = rng.uniform(0.1, 2.0, model.n_elements), rng.uniform(0.1, 2.0, model.n_elements)
    lam, mu = problem.material.lame()
    t = problem.material.thickness if model.dim == 2 else 1.0
    rho = problem.material.density

    @skfem.BilinearForm
    def stiffness(u, v, w):
        eu, ev = sym_grad(u), sym_grad(v)
        return w.s * t * (2.0 * mu * ddot(eu, ev) + lam * trace(eu) * trace(ev))

    @skfem.BilinearForm
    def mass(u, v, w):
        return w.s * t * rho * dot(u, v)

    basis = model.basis
    n_qp = basis.X.shape[1]
    free = model.free_dofs
    K_ref = stiffness.assemble(basis, s=np.repeat(s_k[:, None], n_qp, axis=1))[free][:, free]
    M_ref = mass.assemble(basis, s=np.repeat(s_m[:, None], n_qp, axis=1))[free][:, free]
    for ours, ref in ((model.stiffness(s_k), K_ref), (model.mass(s_m), M_ref)):
        diff = sla.norm((ours - ref).toarray()) / sla.norm(ref.toarray())
        assert diff < 1e-13
        assert ours.nnz == model.nnz  # the fixed pattern


@pytest.mark.parametrize("element", ["quad1", "quad2", "tri1", "hex1"])
def test_matrix_properties(element):
    """K, M symmetric; M positive definite (dense Cholesky); K positive semi-definite when free."""
    problem = small_problem(element)
    free = problem.with_changes(supports=())
    for p in (problem, free):
        model = build_model(p)
        K, M = model.stiffness().toarray(), model.mass().toarray()
        assert np.abs(K - K.T).max() <= 1e-14 * np.abs(K).max()
        assert np.abs(M - M.T).max() <= 1e-14 * np.abs(M).max()
        sla.cholesky(M)  # raises LinAlgError unless positive definite
        eig_k = sla.eigvalsh(K)
        assert eig_k.min() >= -1e-12 * eig_k.max()
        n_zero = np.sum(eig_k < 1e-10 * eig_k.max())
        # a clamped body has no zero-energy mode; a free one exactly its rigid modes
        assert n_zero == (0 if p.supports else (3 if model.dim == 2 else 6))


def test_sparse_solve_equals_dense():
    model = build_model(small_cantilever("quad2"))
    K, M = model.stiffness(), model.mass()
    solver = ModalSolver(6)
    modes = solver.solve(K, M)
    dense = sla.eigh(K.toarray(), M.toarray(), eigvals_only=True)[:6]
    np.testing.assert_allclose(modes.eigenvalues, dense, rtol=1e-10)
    X, lam = modes.vectors, modes.eigenvalues
    residual = np.linalg.norm(K @ X - (M @ X) * lam, axis=0) / np.linalg.norm(K @ X, axis=0)
    assert residual.max() < 1e-8
    np.testing.assert_allclose(np.einsum("ij,ij->j", X, M @ X), 1.0, atol=1e-12)
    # M-orthogonal
    G = X.T @ (M @ X)
    assert np.abs(G - np.eye(6)).max() < 1e-10
    # sign convention: the largest-magnitude entry of each mode is positive (ties of equal
    # magnitude, common in symmetric structures, go to the first such entry)
    first_max = np.argmax(np.abs(X) >= (1 - 1e-6) * np.abs(X).max(axis=0), axis=0)
    assert np.all(X[first_max, np.arange(6)] > 0)
    assert np.all(X.max(axis=0) >= (1 - 1e-6) * np.abs(X).max(axis=0))
    # repeatable: a second solver on the same matrices gives bitwise the same result
    again = ModalSolver(6).solve(K, M)
    assert np.array_equal(again.eigenvalues, modes.eigenvalues)
    assert np.array_equal(again.vectors, modes.vectors)


@pytest.mark.parametrize("backend", available_backends())
def test_backends_agree(backend):
    assert "superlu" in available_backends()  # the fallback is always there
    model = build_model(small_cantilever("quad2", nx=16, ny=4))
    K, M = model.stiffness(), model.mass()
    reference = ModalSolver(6, backend="superlu").solve(K, M)
    modes = ModalSolver(6, backend=backend).solve(K, M)
    np.testing.assert_allclose(modes.eigenvalues, reference.eigenvalues, rtol=1e-10)
    # same mode shapes (simple modes, sign fixed by the convention)
    np.testing.assert_allclose(modes.vectors, reference.vectors, atol=1e-7 * np.abs(reference.vectors).max())


def test_factorizations_solve_both_definiteness_modes():
    """Each backend solves K - σM x = b for σ < 0 (positive definite) and, where supported,
    σ between eigenvalues (indefinite)."""
    model = build_model(small_cantilever("quad1", nx=10, ny=2))
    K, M = model.stiffness(), model.mass()
    lam = sla.eigh(K.toarray(), M.toarray(), eigvals_only=True)
    b = np.linspace(1.0, 2.0, K.shape[0])
    for backend in available_backends():
        for sigma, pd in ((-1e-3 * lam[0], True), (0.5 * (lam[0] + lam[1]), False)):
            if backend == "cholmod" and not pd:
                continue  # Cholesky only
            A = shifted_matrix(K, M, sigma)
            f = make_factorization(backend)
            f.factor(A, positive_definite=pd)
            x = f.solve(b)
            assert np.linalg.norm(A @ x - b) / np.linalg.norm(b) < 1e-8, (backend, sigma)


def test_sparse_matmul_is_scipys_product_to_rounding():
    """The MKL block product replaces SciPy's in the eigen solvers: for blocks of 1 to 9 columns,
    C- or F-ordered or a column slice of a wider array, and written into a caller's slice, every
    entry within 2 ulp of |K|·|X| of SciPy's (an earlier MKL summed each row like SciPy, bit for
    bit; MKL 2025.3 and 2026.2 differ in about half the entries by one ulp)."""
    model = build_model(small_problem("hex1"))
    K = model.stiffness()
    rng = np.random.default_rng(3)
    eps = np.finfo(float).eps
    for k in (1, 2, 5, 9):
        X = rng.standard_normal((K.shape[0], k))
        wide = rng.standard_normal((K.shape[0], k + 4))
        wide[:, 2:2 + k] = X
        scale = abs(K) @ np.abs(X)
        for block in (X, np.asfortranarray(X), wide[:, 2:2 + k]):
            assert np.all(np.abs(sparse_matmul(K, block) - K @ block) <= 2 * eps * scale)
        out = np.full((K.shape[0], k + 3), 7.0)
        returned = sparse_matmul(K, X, out=out[:, 1:1 + k])
        assert np.shares_memory(returned, out)
        assert np.all(np.abs(out[:, 1:1 + k] - K @ X) <= 2 * eps * scale)
        assert np.all(out[:, 0] == 7.0) and np.all(out[:, 1 + k:] == 7.0)  # nothing beside the slice
    v = rng.standard_normal(K.shape[0])
    assert np.array_equal(sparse_matmul(K, v), K @ v)  # single vectors: SciPy's product
    dense = K.toarray()
    assert np.array_equal(sparse_matmul(dense, X), dense @ X)


def test_products_into_kept_buffers_are_scipys_numbers():
    """shifted_matrix(out=) gives SciPy's numbers bit for bit in the caller's array; reusable keeps
    a matching buffer and replaces a mismatched one."""
    model = build_model(small_problem("hex1"))
    K, M = model.stiffness(), model.mass()
    buffer = reusable(None, K.data.shape)
    assert reusable(buffer, K.data.shape) is buffer
    assert reusable(buffer, (K.data.size + 1,)) is not buffer
    assert reusable(buffer, K.data.shape, np.float32).dtype == np.float32
    A = shifted_matrix(K, M, 123.0, out=buffer)
    assert A.data is buffer and A.indptr is K.indptr
    assert np.array_equal(A.data, shifted_matrix(K, M, 123.0).data)
    assert np.array_equal(A.data, K.data - 123.0 * M.data)  # the expression it replaces


@pytest.mark.skipif("pardiso" not in available_backends(), reason="MKL PARDISO not installed")
@pytest.mark.parametrize("precision", ["double", "single"])
def test_pardiso_block_solves_by_columns_and_tuned(precision):
    """multi_rhs: "columns" (one PARDISO call per column) and "auto" (timed, then the faster way
    per number of columns) solve blocks like "block" to rounding; "auto" times each way
    TUNING_SAMPLES times per k, alternating, then keeps to the faster; a new pattern restarts it."""
    model = build_model(small_cantilever("quad1", nx=10, ny=2))
    K, M = model.stiffness(), model.mass()
    A = shifted_matrix(K, M, -1.0)
    B = np.random.default_rng(5).standard_normal((K.shape[0], 3))
    # forward error of a backward-stable solve: condition number × unit roundoff (Higham 2002,
    # §7.1); κ ≈ 1e4 here, so ~1e-3 in single precision (8.7e-5 measured on an AMD EPYC, 1e-5 on
    # Intel machines) and ~2e-12 in double
    kappa = np.linalg.cond(A.toarray())
    tol = kappa * np.finfo(np.float32 if precision == "single" else np.float64).eps
    reference = np.linalg.solve(A.toarray(), B)
    results = {}
    for mode in ("block", "columns", "auto"):
        f = make_factorization("pardiso", precision=precision, multi_rhs=mode)
        f.factor(A)
        results[mode] = [f.solve(B) for _ in range(2 * f.TUNING_SAMPLES + 2)]
        for x in results[mode]:
            assert x.dtype == np.float64 and x.shape == B.shape
            assert np.linalg.norm(x - reference) / np.linalg.norm(reference) < tol
        if mode == "auto":
            block_times, column_times = f._rhs_timings[3]
            # then no more timing: after TUNING_SAMPLES each, or one each if one way clearly won
            ratio = max(min(block_times) / min(column_times), min(column_times) / min(block_times))
            assert abs(len(block_times) - len(column_times)) <= 1  # alternating
            assert min(len(block_times), len(column_times)) == f.TUNING_SAMPLES or ratio >= f.CLEAR_WIN
            f.solve(B[:, :2])
            assert set(f._rhs_timings) == {3, 2}
            f.factor(A)  # same pattern: timings kept
            assert set(f._rhs_timings) == {3, 2}
            f.factor(shifted_matrix(K, M, -1.0)[:-1, :-1])  # a new pattern: tuned afresh
            assert f._rhs_timings == {}
    # one call per column is exactly PARDISO's single-column answer
    single = make_factorization("pardiso", precision=precision)
    single.factor(A)
    assert np.array_equal(results["columns"][0], np.column_stack([single.solve(B[:, j]) for j in range(3)]))
    # solve_into: the same numbers written into column slices of wider arrays (the LOBPCG layout),
    # from a strided right-hand side, for every way of solving; nothing else is touched
    wide_B = np.zeros((K.shape[0], 7))
    wide_B[:, 2:5] = B
    for mode in ("block", "columns", "auto"):
        f = make_factorization("pardiso", precision=precision, multi_rhs=mode)
        f.factor(A)
        for _ in range(2 * f.TUNING_SAMPLES + 1):
            out = np.full((K.shape[0], 9), 7.0)
            assert f.solve_into(wide_B[:, 2:5], out[:, 4:7]) is not None
            assert np.array_equal(out[:, 4:7], results[mode][0] if mode != "auto" else results["block"][0]) or \
                np.array_equal(out[:, 4:7], results["columns"][0])
            assert np.all(out[:, :4] == 7.0) and np.all(out[:, 7:] == 7.0)
        out1 = np.empty(K.shape[0])
        f.solve_into(B[:, 1], out1)
        assert np.array_equal(out1, single.solve(B[:, 1]))
        # dots: b_jᵀ x_j from PARDISO's own buffers (the float32-rounded b in single precision)
        dots, one = np.empty(3), np.empty(1)
        f.solve_into(wide_B[:, 2:5], out[:, 4:7], dots=dots)
        np.testing.assert_allclose(dots, np.einsum("ij,ij->j", B, out[:, 4:7]), rtol=1e-6 if precision == "single" else 1e-13)
        f.solve_into(B[:, 1], out1, dots=one)
        assert one[0] == pytest.approx(B[:, 1] @ out1, rel=1e-6 if precision == "single" else 1e-13)
    # the base class (SuperLU): the same contract
    lu = make_factorization("superlu")
    lu.factor(A)
    out, dots = np.full((K.shape[0], 9), 7.0), np.empty(3)
    lu.solve_into(wide_B[:, 2:5], out[:, 4:7], dots=dots)
    np.testing.assert_allclose(out[:, 4:7], reference, rtol=1e-10)
    np.testing.assert_allclose(dots, np.einsum("ij,ij->j", B, reference), rtol=1e-10)
    assert np.all(out[:, :4] == 7.0) and np.all(out[:, 7:] == 7.0)
    with pytest.raises(fe.InputError, match="multi_rhs 'rows'"):
        make_factorization("pardiso", multi_rhs="rows")


@pytest.mark.skipif("pardiso" not in available_backends(), reason="MKL PARDISO not installed")
def test_pardiso_memory_estimate_keeps_its_analysis():
    """memory_estimate: PARDISO's analysis only (no numeric factorisation), bytes at least those
    of the factors' non-zeros in double precision; a factor() of the same pattern reuses it."""
    from fem_eigopt.linalg.factorization import PardisoFactorization, available_memory

    model = build_model(small_cantilever("quad1", nx=10, ny=2))
    A = shifted_matrix(model.stiffness(), model.mass(), -1.0)
    f = PardisoFactorization()
    needed = f.memory_estimate(A)
    assert f.n_symbolic == 1 and f.n_numeric == 0
    assert needed >= 8 * f.work_estimate()[1]  # at least the factors' non-zeros as doubles
    f.factor(A)
    assert f.n_symbolic == 1 and f.n_numeric == 1
    B = np.random.default_rng(2).standard_normal(A.shape[0])
    np.testing.assert_allclose(A @ f.solve(B), B, rtol=1e-10, atol=1e-10 * np.abs(B).max())
    memory = available_memory()
    assert memory is None or memory > 0


def test_dense_matmul_into_column_slices():
    """dense_matmul (MKL's dgemm where MKL is loaded) reads and writes column slices of wider
    C-ordered arrays in place and agrees with NumPy to rounding, plain and with Aᵀ; wrong shapes
    are refused."""
    rng = np.random.default_rng(8)
    wide = rng.standard_normal((500, 18))
    other = rng.standard_normal((500, 18))
    S, T = wide[:, 4:13], other[:, 2:8]  # (500, 9) and (500, 6) slices
    C = rng.standard_normal((9, 6))
    out = np.full((500, 20), 3.0)
    returned = dense_matmul(S, C, out=out[:, 5:11])
    assert np.shares_memory(returned, out)
    np.testing.assert_allclose(out[:, 5:11], S @ C, rtol=0, atol=1e-13)
    assert np.all(out[:, :5] == 3.0) and np.all(out[:, 11:] == 3.0)
    np.testing.assert_allclose(dense_matmul(S, T, transpose_a=True), S.T @ T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dense_matmul(np.asfortranarray(S), C), S @ C, rtol=0, atol=1e-13)  # NumPy path
    np.testing.assert_allclose(dense_matmul(S, C[::-1][::-1].T.T), S @ C, rtol=0, atol=1e-13)
    # accumulate: out + S C (BLAS β = 1), in place into a slice and on the NumPy path
    before = out[:, 5:11].copy()
    dense_matmul(S, C, out=out[:, 5:11], accumulate=True)
    np.testing.assert_allclose(out[:, 5:11], before + S @ C, rtol=0, atol=1e-12)
    F = np.asfortranarray(before)
    dense_matmul(np.asfortranarray(S), C, out=F, accumulate=True)
    np.testing.assert_allclose(F, before + S @ C, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="accumulate needs out"):
        dense_matmul(S, C, accumulate=True)
    with pytest.raises(ValueError, match="do not match"):
        dense_matmul(S, C.T)
    with pytest.raises(ValueError, match="out has shape"):
        dense_matmul(S, C, out=np.empty((500, 5)))


@pytest.mark.skipif("pardiso" not in available_backends(), reason="MKL PARDISO not installed")
def test_single_precision_pardiso_is_a_float32_factorisation():
    """precision="single": factors in float32 (a preconditioner) — residual near float32's
    rounding on a well-conditioned matrix, far from double's, answers returned in float64, and
    the symbolic analysis kept across values; release() forgets the pattern."""
    model = build_model(small_cantilever("quad1", nx=10, ny=2))
    K, M = model.stiffness(), model.mass()
    lam1 = ModalSolver(1).solve(K, M).eigenvalues[0]
    A = shifted_matrix(K, M, -lam1)  # K + λ1 M: condition number ~1e5 (SIMP-free)
    b = np.linspace(1.0, 2.0, K.shape[0])
    single, double = make_factorization("pardiso", precision="single"), make_factorization("pardiso")
    assert (single.precision, double.precision) == ("single", "double")
    errors = []
    for f in (single, double):
        f.factor(A)
        x = f.solve(b)
        assert x.dtype == np.float64
        errors.append(np.linalg.norm(A @ x - b) / np.linalg.norm(b))
    assert 1e-9 < errors[0] < 1e-3 and errors[1] < 1e-12, errors
    # a refactorisation refills the kept value arrays in place and solves the new matrix
    A2 = shifted_matrix(K, M, -2 * lam1)
    for f, tol in ((single, 1e-3), (double, 1e-12)):
        values = f._a
        f.factor(A2)
        assert f._a is values
        assert np.linalg.norm(A2 @ f.solve(b) - b) / np.linalg.norm(b) < tol
        assert not np.allclose(f.solve(b), np.linalg.solve(A.toarray(), b), rtol=1e-2)  # not A's answer
    assert (single.n_symbolic, single.n_numeric) == (1, 2)
    single.release()
    single.factor(A)
    assert single.n_symbolic == 2
    with pytest.raises(fe.InputError, match="single-precision factorisation needs the pardiso backend"):
        make_factorization("superlu", precision="single")
    with pytest.raises(fe.InputError, match="precision 'half'"):
        make_factorization("pardiso", precision="half")


@pytest.mark.skipif("pardiso" not in available_backends(), reason="MKL PARDISO not installed")
def test_pardiso_reuses_symbolic_analysis():
    model = build_model(small_cantilever("quad1", nx=20, ny=4))
    solver = ModalSolver(4, backend="pardiso")
    rng = np.random.default_rng(7)
    results = []
    for _ in range(3):
        s = rng.uniform(0.2, 1.0, model.n_elements)
        modes = solver.solve(model.stiffness(s**3), model.mass(s))
        results.append(modes.eigenvalues)
        dense = sla.eigh(model.stiffness(s**3).toarray(), model.mass(s).toarray(), eigvals_only=True)[:4]
        np.testing.assert_allclose(modes.eigenvalues, dense, rtol=1e-10)
    assert solver.factorization.n_symbolic == 1
    assert solver.factorization.n_numeric == 3
    assert not np.allclose(results[0], results[1])  # the designs did change the answer


def test_warm_start_gives_same_answer():
    model = build_model(small_cantilever("quad2", nx=16, ny=4))
    solver = ModalSolver(6)
    first = solver.solve(model.stiffness(), model.mass())
    s = np.full(model.n_elements, 0.9)
    cold = ModalSolver(6).solve(model.stiffness(s), model.mass())
    warm = solver.solve(model.stiffness(s), model.mass(), warm_start=first.vectors)
    np.testing.assert_allclose(warm.eigenvalues, cold.eigenvalues, rtol=1e-10)
    # uniform stiffness scale 0.9: every eigenvalue scales by exactly 0.9
    np.testing.assert_allclose(warm.eigenvalues, 0.9 * first.eigenvalues, rtol=1e-10)
    np.testing.assert_allclose(warm.vectors, cold.vectors, atol=1e-7 * np.abs(cold.vectors).max())


def test_clusters_on_square_cantilever(repo):
    """The square cross-section of problems/cantilever3d.py gives double bending modes."""
    problem = fe.load_problem(repo / "problems" / "cantilever3d.py", {"nx": 10, "ny": 2, "nz": 2})
    result = fe.modal_analysis(problem, n_modes=6)
    lam = result.modes.eigenvalues
    # modes 1-2 bend in y and z, 3 twists, 4-5 are the second bending pair (observed λ ratios)
    assert (0, 1) in result.modes.clusters
    assert (3, 4) in result.modes.clusters
    assert lam[1] / lam[0] - 1 < 1e-6
    assert lam[2] / lam[1] > 1.5


def test_modal_analysis_without_factorisation_when_asked_or_too_big(repo, monkeypatch):
    """modal_analysis: shift-invert Lanczos by default; the AMG solver (no factorisation) with
    eigensolver="amg", or with "auto" when the factors would not fit (make_modal_solver's memory
    check, here with the available memory set to 1 kB) — the same eigenvalues to 1e-8."""
    pytest.importorskip("pyamg")
    import fem_eigopt.linalg.factorization as linalg
    import fem_eigopt.solvers.auto as modal

    problem = fe.load_problem(repo / "problems" / "cantilever3d.py", {"nx": 10, "ny": 2, "nz": 2})
    reference = fe.modal_analysis(problem, n_modes=4)
    assert type(reference.solver) is fe.ModalSolver
    amg = fe.modal_analysis(problem.with_changes(analysis=fe.Analysis(eigensolver="amg")), n_modes=4)
    assert amg.solver.backend == "amg"
    np.testing.assert_allclose(amg.modes.eigenvalues, reference.modes.eigenvalues, rtol=1e-8)
    if "pardiso" in available_backends():
        monkeypatch.setattr(modal, "FACTOR_MEMORY_CHECK_DOFS_3D", 0)
        monkeypatch.setattr(linalg, "available_memory", lambda: 1024.0)
        auto = fe.modal_analysis(problem, n_modes=4)
        assert auto.solver.backend == "amg"
        np.testing.assert_allclose(auto.modes.eigenvalues, reference.modes.eigenvalues, rtol=1e-8)


def test_point_mass_total_mass_and_effect(repo):
    """1ᵀM_x1 (x-component dofs, fixed ones included) = structure mass + point mass; the tip mass
    lowers the bending frequencies and leaves the torsion mode alone (it sits on the axis, where
    torsion does not move: that eigenvalue agrees to rounding, so no strict inequality there)."""
    path = repo / "problems" / "cantilever3d.py"
    with_mass = fe.load_problem(path, {"nx": 10, "ny": 2, "nz": 2, "tip_mass": 5.0})
    without = fe.load_problem(path, {"nx": 10, "ny": 2, "nz": 2, "tip_mass": 0.0})
    structure = 1.0 * 0.2 * 0.2 * 7850.0  # 314 kg: the box volume × ρ (problem docstring)
    for problem, expected in ((with_mass, structure + 5.0), (without, structure)):
        model = build_model(problem.with_changes(supports=()))  # every dof free: the whole M
        M = model.mass()
        ones_x = (model.dof_component[model.free_dofs] == 0).astype(float)
        assert ones_x @ (M @ ones_x) == pytest.approx(expected, rel=1e-12)
        assert model.point_mass.sum() == pytest.approx(3 * (expected - structure), rel=1e-12)
    lam_with = fe.modal_analysis(with_mass, n_modes=4).modes.eigenvalues
    lam_without = fe.modal_analysis(without, n_modes=4).modes.eigenvalues
    bending, torsion = [0, 1, 3], 2  # λ ≈ 1.1e5 (a double pair), 2.3e6 (torsion), 3.3e6 without the mass
    assert np.all(lam_with[bending] < 0.9 * lam_without[bending])
    assert lam_with[torsion] == pytest.approx(lam_without[torsion], rel=1e-10)


def test_supports_fix_the_right_dofs():
    mesh = fe.rectangle(2.0, 1.0, 4, 2)
    material = fe.Material(E=1.0, nu=0.3, density=1.0)

    def fixed(*supports, element="quad2"):
        model = build_model(fe.Problem(mesh=mesh, element=element, material=material, supports=supports))
        x = model.basis.doflocs[:, model.fixed_dofs]
        return model, x, model.dof_component[model.fixed_dofs]

    # named boundary, all components: both components of every dof location on x = 0
    # (quad2: 3 vertices + 2 edge midpoints on the left edge)
    model, x, comp = fixed(fe.Support("left"))
    assert np.all(x[0] == 0.0) and len(comp) == 10 and np.sum(comp == 0) == 5
    assert model.n_free == model.n_dofs - 10
    # named boundary, u_y only
    _, x, comp = fixed(fe.Support("bottom", components=(1,)))
    assert np.all(x[1] == 0.0) and np.all(comp == 1) and len(comp) == 9  # 5 vertices + 4 midpoints
    # predicate, u_x only, on the vertical line x = 1 (interior nodes too)
    _, x, comp = fixed(fe.Support(lambda p: np.isclose(p[0], 1.0), components=(0,)))
    assert np.all(x[0] == 1.0) and np.all(comp == 0) and len(comp) == 5
    # a single point, both components
    _, x, comp = fixed(fe.Support(fe.at_point((2.0, 0.5))))
    np.testing.assert_array_equal(x, [[2.0, 2.0], [0.5, 0.5]])
    assert sorted(comp) == [0, 1]
    # overlapping supports are merged, not double-counted
    _, _, comp = fixed(fe.Support("left"), fe.Support("left", components=(0,)))
    assert len(comp) == 10
    # a support that selects nothing is an error naming it
    with pytest.raises(fe.InputError, match=r"supports\[0\].*selects no degree of freedom"):
        fixed(fe.Support(lambda p: p[0] < -1.0))
