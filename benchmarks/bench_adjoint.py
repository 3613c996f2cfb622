"""Cost of the element-by-element sensitivity stage relative to the modal solve.

For each model (2D quad1 200×100 and 400×200, a 3D hex1 box with more than 50k dofs; ``--quick``
for small sizes) and a random design x in [0.2, 1] (s_K = x³, s_M = x), the table lists

- ``modal``: one modal solve of k = 6 modes on an already analysed pattern (numeric factorisation
  of K − σM + shift-invert Lanczos), the reference time;
- ``eig grad``: all 6 eigenvalue gradients (:func:`fem_eigopt.sensitivity.eigenvalues.eigenvalue_scale_gradients`);
- ``vec direct`` / ``vec minres``: one eigenvector functional (squared tip amplitude of mode 2)
  with each adjoint solver (the direct one reusing its factorisation object, as an optimisation
  loop would; MINRES with the modal solver's cached factorisation);

each as seconds and as a fraction of ``modal``. Then, on a small mesh only, the vectorised
eigenvalue gradients against a naive implementation that forms ∂K/∂s_e and ∂M/∂s_e as global
sparse matrices for every element, and the batched-matmul contraction against a single
three-operand einsum. Timings are the best of ``--repeat`` runs. No assertions: this prints.

    python benchmarks/bench_adjoint.py [--quick] [--repeat 3] [--backend auto]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import fem_eigopt as fe  # noqa: E402
from fem_eigopt.responses.eigenvector import ModalAmplitude
from fem_eigopt.sensitivity.eigenvalues import eigenvalue_scale_gradients, element_quadratic_forms
from fem_eigopt.sensitivity.eigenvectors import eigenvector_adjoint
from fem_eigopt.fem.assembly import build_model  # noqa: E402
from fem_eigopt.linalg.factorization import make_factorization  # noqa: E402
from fem_eigopt.solvers.lanczos import ModalSolver  # noqa: E402

N_MODES = 6


def problem_2d(nx: int, ny: int) -> fe.Problem:
    return fe.Problem(
        mesh=fe.rectangle(2.0, 1.0, nx, ny), element="quad1",
        material=fe.Material(E=1e7, nu=0.3, density=1.0, model="plane_stress"),
        supports=(fe.Support("left"),), analysis=fe.Analysis(n_modes=N_MODES),
    )


def problem_3d(nx: int, ny: int, nz: int) -> fe.Problem:
    # rectangular section: simple leading eigenvalues
    return fe.Problem(
        mesh=fe.box(1.0, 0.3, 0.2, nx, ny, nz), element="hex1",
        material=fe.Material(E=210e9, nu=0.3, density=7850.0, model="solid"),
        supports=(fe.Support("left"),), analysis=fe.Analysis(n_modes=N_MODES),
    )


def best_time(fn, repeat: int):
    """Best wall time of ``repeat`` calls and the last result."""
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def naive_eigenvalue_gradients(model, modes):
    """dλ_i/ds_K,e and dλ_i/ds_M,e through one global sparse ∂K/∂s_e, ∂M/∂s_e per element (slow on purpose)."""
    n = model.n_free
    fe_dofs = model.free_index[model.element_dofs]
    phi, lam = modes.vectors, modes.eigenvalues
    dK = np.empty((model.n_elements, lam.size))
    dM = np.empty_like(dK)
    for e in range(model.n_elements):  # the per-element loop the library avoids
        keep = fe_dofs[e] >= 0
        idx = fe_dofs[e][keep]
        rows, cols = np.meshgrid(idx, idx, indexing="ij")
        dKe = sp.csr_matrix((model.Ke[e][np.ix_(keep, keep)].ravel(), (rows.ravel(), cols.ravel())), shape=(n, n))
        dMe = sp.csr_matrix((model.Me[e][np.ix_(keep, keep)].ravel(), (rows.ravel(), cols.ravel())), shape=(n, n))
        dK[e] = np.einsum("ik,ik->k", phi, dKe @ phi)
        dM[e] = -lam * np.einsum("ik,ik->k", phi, dMe @ phi)
    return dK, dM


def run_model(name: str, problem: fe.Problem, repeat: int, backend: str) -> dict:
    model = build_model(problem)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 1.0, model.n_elements)
    K, M = model.stiffness(x**3), model.mass(x)
    solver = ModalSolver(N_MODES, backend=backend)
    modes = solver.solve(K, M)  # first solve: symbolic analysis (not timed)
    t_modal, modes = best_time(lambda: solver.solve(K, M), repeat)
    t_eig, _ = best_time(lambda: eigenvalue_scale_gradients(model, modes), repeat)
    tip = np.flatnonzero(np.isclose(model.basis.doflocs[0], model.basis.doflocs[0].max()))
    tip = tip[model.free_index[tip] >= 0]
    functional = ModalAmplitude.at_global_dofs(model, tip[-1:])
    _, dg = functional(modes.vectors[:, 1])
    direct_fact = make_factorization(backend)
    eigenvector_adjoint(model, K, M, modes, 1, dg, direct_factorization=direct_fact)  # symbolic once
    t_direct, g_direct = best_time(lambda: eigenvector_adjoint(
        model, K, M, modes, 1, dg, solver="direct", direct_factorization=direct_fact), repeat)
    t_minres, g_minres = best_time(lambda: eigenvector_adjoint(
        model, K, M, modes, 1, dg, solver="minres", factorization=solver.factorization), repeat)
    agree = np.linalg.norm(g_direct[0] - g_minres[0]) / np.linalg.norm(g_direct[0])
    return dict(name=name, n_dof=model.n_free, n_elem=model.n_elements, modal=t_modal, eig=t_eig,
                direct=t_direct, minres=t_minres, agree=agree, backend=solver.backend)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small meshes (seconds)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args(argv)
    if args.quick:
        cases = [("2D quad1 40x20", problem_2d(40, 20)), ("2D quad1 80x40", problem_2d(80, 40)),
                 ("3D hex1 12x4x3", problem_3d(12, 4, 3))]
    else:
        cases = [("2D quad1 200x100", problem_2d(200, 100)), ("2D quad1 400x200", problem_2d(400, 200)),
                 ("3D hex1 64x20x14", problem_3d(64, 20, 14))]

    print(f"Sensitivity stage vs modal solve (k = {N_MODES}, best of {args.repeat})")
    head = (f"{'model':<18} {'dofs':>8} {'modal s':>8} {'eig grad s':>10} {'/modal':>7} "
            f"{'vec direct s':>12} {'/modal':>7} {'vec minres s':>12} {'/modal':>7} {'direct~minres':>13}")
    print(head)
    print("-" * len(head))
    for name, problem in cases:
        r = run_model(name, problem, args.repeat, args.backend)
        print(f"{r['name']:<18} {r['n_dof']:>8d} {r['modal']:>8.3f} {r['eig']:>10.4f} {r['eig'] / r['modal']:>7.3f} "
              f"{r['direct']:>12.3f} {r['direct'] / r['modal']:>7.3f} {r['minres']:>12.3f} "
              f"{r['minres'] / r['modal']:>7.3f} {r['agree']:>13.1e}")
    print(f"(factorisation backend: {r['backend']})")

    # naive per-element global matrices, small mesh only
    model = build_model(problem_2d(40, 20))
    x = np.random.default_rng(1).uniform(0.2, 1.0, model.n_elements)
    modes = ModalSolver(N_MODES, backend=args.backend).solve(model.stiffness(x**3), model.mass(x))
    t_fast, (dK, dM) = best_time(lambda: eigenvalue_scale_gradients(model, modes), args.repeat)
    t_naive, (nK, nM) = best_time(lambda: naive_eigenvalue_gradients(model, modes), 1)
    diff = max(np.abs(dK - nK).max() / np.abs(dK).max(), np.abs(dM - nM).max() / np.abs(dM).max())
    print()
    print("Eigenvalue gradients (k = 6), 2D quad1 40x20, vectorised vs a global sparse ∂K/∂s_e per element")
    print(f"  vectorised {t_fast * 1e3:9.2f} ms   naive {t_naive * 1e3:9.1f} ms   ratio {t_naive / t_fast:8.0f}x"
          f"   max rel. difference {diff:.1e}")

    # the contraction: batched matmul + einsum vs a single three-operand einsum
    phi = model.element_values(modes.vectors)
    t_mm, a = best_time(lambda: element_quadratic_forms(model.Ke, phi), 5)
    t_es, b = best_time(lambda: np.einsum("eak,eab,ebk->ek", phi, model.Ke, phi), 5)
    t_eo, _ = best_time(lambda: np.einsum("eak,eab,ebk->ek", phi, model.Ke, phi, optimize=True), 5)
    print("Element contraction u_eᵀ K_e v_e, k = 6, 800 elements")
    print(f"  matmul+einsum {t_mm * 1e3:7.3f} ms   einsum {t_es * 1e3:7.3f} ms ({t_es / t_mm:.1f}x)   "
          f"einsum optimize {t_eo * 1e3:7.3f} ms ({t_eo / t_mm:.1f}x)   max rel. diff "
          f"{np.abs(a - b).max() / np.abs(a).max():.1e}")


if __name__ == "__main__":
    main()
