"""pyMOTO and fem_eigopt side by side on pyMOTO's eigenfrequency example.

What is compared
----------------
pyMOTO 2.0.1's ``examples/topology_optimization/ex_eigenfrequency.py`` (after Du & Olhoff 2007),
set up identically in both tools:

* domain: ``nx × ny`` (2D, plane strain, thickness 1) or ``nx × ny × nz`` (3D) unit-size
  bilinear / trilinear elements (2 × 2 (× 2) Gauss points, consistent mass matrix);
* support: every node on the x = 0 face clamped in all directions;
* non-design mass: the elements with ``ix >= 3 nx/4`` and ``ny/4 <= iy < 3 ny/4`` (and likewise
  in z) are solid (density 1) — a block of structural material the design has to carry;
* material: E = 68.9 GPa, ν = 0.3, ρ = 2700 kg/m³;
* design: element densities in [0, 1], start 0.5; density filter of radius 2 (element sizes;
  hat weights ``max(0, r − distance)``); modified SIMP ``E(x) = E (1e-9 + (1 − 1e-9) x³)``;
  Du & Olhoff's two-range mass law ``ρ(x) = ρ x`` for x ≥ 0.1, ``ρ x⁶ / 0.1⁵`` below;
* objective: minimise ``100 h / h0`` with ``h = 1/λ1 + 1/λ2 + 1/λ3`` (the example's "harmonic
  mean" of the three lowest eigenvalues) and ``h0`` its value at the first evaluation (pyMOTO's
  ``Scaling(scaling=100)``), written for fem_eigopt as a ``fe.UserResponse`` that takes its
  reference at its first call, the starting design. With fem_eigopt's own MMA the objective is
  the example's ``100 h / h0`` too (the same subproblems as pyMOTO's MMA: with scale 1 and the
  artificial-variable cost c = 1000 the volume constraint weighs relatively more, and 30
  iterations ended at 12.815 / 9.738 at 200×100 / 40×20×20 against 12.662 / 9.588 with 100);
  with NLopt's ``LD_MMA`` it is ``h / h0`` (scale 1, fem_eigopt's convention for its built-in
  objectives; with 100 NLopt's MMA — whose conservativity ρ starts at 1 in objective units — took
  steps into disconnected designs on this problem). ``--fe-scale`` overrides both. Objectives are
  printed on the example's scale for all rows;
* constraint: volume fraction ≤ 0.5 (``fe.VolumeConstraint(0.5)`` in fem_eigopt:
  ``vf/0.5 − 1 ≤ 0``; the example's ``10 (vf − 0.5) ≤ 0`` in pyMOTO: same feasible set,
  a different scale);
* optimiser: each tool's MMA — pyMOTO's ``pym.MMA`` (Svanberg's MMA 2007 version, move limit 0.1,
  one evaluation per iteration) against fem_eigopt's ``OptimizerSettings(algorithm="MMA",
  move_limit=0.1)`` (its own implementation of the same method, :mod:`fem_eigopt.optimize.mma`) and/or
  NLopt's ``LD_MMA`` (CCSA form: an outer iteration may re-evaluate with a more conservative
  approximation — "inner iterations" — no move limit), all from the same starting design
  (``--fe-algorithm``).

Two deliberate departures from the example, so that the two models are the same:
the non-design elements are set to 1 *before* the density filter as well as after it (as
fem_eigopt's ``passive_solid`` does; the example sets them only after filtering, so the filter
there blends the design with the non-design elements' unused design variables, 0.5 at the
start — ``--example-passive`` runs pyMOTO that way, and the initial eigenvalues then differ);
and the example's plotting / VTI / CSV output modules are left out. pyMOTO keeps one design
variable per element (the non-design ones get zero sensitivities, as in the example); fem_eigopt
has none for passive elements.

How it runs
-----------
Every run is its own subprocess (a fresh interpreter, ``OPENBLAS_NUM_THREADS=1`` unless set),
and runs alternate — pyMOTO, fem_eigopt, pyMOTO, fem_eigopt, … (``--repeats``) — so that noise
from other load on the machine falls on both. Each run does ``--iterations N`` optimiser
iterations:

* pyMOTO: N calls of ``MMA.step`` (each: one response and sensitivity evaluation and one MMA
  subproblem), with ``calculate_g`` / ``calculate_dg`` timed; the design after the N-th update is
  evaluated once more, untimed, for the final objective.
* fem_eigopt: a :class:`fem_eigopt.DesignEvaluator` driven by :func:`fem_eigopt.minimize` with
  the settings :func:`fem_eigopt.optimize.run.optimize` would pass (here: no ``xtol``/``ftol``/
  stagnation stop), stopped after N completed iterations: with ``MMA`` every evaluation after
  the start is one iteration; with NLopt's ``LD_MMA`` an iteration is an *outer* iteration, and
  as NLopt does not tell Python where they end, the run sets NLopt's ``verbosity`` and reads the
  "MMA outer iteration" lines NLopt prints to the (captured) standard output. ``optimize``
  itself is not used because it can stop only after a number of evaluations. As in
  ``optimize``, the evaluator's ``inexact_gradients`` is on during the loop (the eigen solvers'
  tolerance follows the design change, ``fe.Analysis(eigen_tol_per_change=...)``).
  After the run, one numeric factorisation of K at the final design is timed in the same process
  (median of 5, the symbolic analysis excluded): the floor an iteration is compared with.

Both tools factorise with MKL PARDISO (pyMOTO through ``pypardiso`` with MKL's default thread
count, fem_eigopt through its own PARDISO binding, MKL's default thread count). pyMOTO
solves for the modes by shift-invert Lanczos (ARPACK, σ = 0, 3 modes, SciPy's default Lanczos
basis of 2k + 1 = 7 vectors). fem_eigopt uses the eigen solver ``--eigensolver`` names; its
``"auto"`` chooses by problem size (the note under each table names the solver used); its ARPACK
solver computes one mode beyond the highest the responses use (to see whether the last cluster is
complete) plus one more, 5 in all, with a basis of 20 vectors.

Usage::

    python benchmarks/bench_pymoto.py [--sizes 200x100,400x200,40x20x20] [--iterations 30]
        [--repeats 1] [--eigensolver auto[,arpack,subspace,amg]] [--fe-algorithm MMA[,LD_MMA]]
        [--fe-move 0.1] [--eigen-tol TOL] [--precision auto|double|single] [--start example|feasible] [--quick]

``--quick`` runs tiny sizes for a few iterations (a smoke test, well under a minute).
``--eigensolver`` goes to ``fe.Analysis(eigensolver=...)``; a comma-separated list runs each in
turn; a value that fails is reported in its row and the benchmark goes on. ``--fe-algorithm``
likewise (every eigen solver with every algorithm); ``--eigen-tol`` sets
``fe.Analysis(eigen_tol=...)`` (default: each solver's own; ARPACK's is machine precision, as
pyMOTO's ``eigsh``) and ``--precision`` ``fe.Analysis(preconditioner_precision=...)`` (default
``auto``: single-precision factors for the subspace solver with PARDISO).

Reading the output
------------------
Per size, first the initial eigenvalues λ1..λ3 of both tools and their largest relative
difference (the discretisations are the same, so it should be ~1e-10; more means the models
differ), then one row per tool:

``s/it``       median wall seconds per optimiser iteration over all iterations of all repeats
               (per-iteration times are measured for both tools); ``mean`` the mean;
``eval s/it``  of which evaluating the design (FE analysis, responses, sensitivities);
``opt s/it``   of which the optimiser (MMA subproblem / NLopt dual and driver);
``evals/it``   evaluations per iteration (1 for pyMOTO; ≥ 1 for NLopt's MMA);
``pyMOTO/x``   pyMOTO's median s/it divided by this row's (> 1: this row is faster);
``objective``  100 h / h0 after N iterations (lower is better; 100 at the start); ``ω1`` √λ1
               in rad/s;
``volume``     volume fraction (≤ 0.5 is feasible); ``best`` marks the lowest feasible objective;
``factor s``   one numeric factorisation of K at the final design (fem_eigopt rows, same process);
``it/factor``  ``s/it`` ÷ ``factor s``: the iteration against the floor of a direct-solver iteration;
``sens+filt``  sensitivities (element-by-element adjoint, chain rule) plus the density filter and
               material interpolations, as a share of all iteration time.

Below the table: the solver each row used (for the subspace solver also its counted work per
design: preconditioner columns, LOBPCG iterations, Rayleigh–Ritz steps, factorisations — numbers
a noisy machine does not change) and notes (runs that stopped early and why), with
``--repeats`` ≥ 2 the ratio per repeat (each tool's median s/it of its k-th run; the k-th runs
ran one after the other, so their spread shows what the machine's state does to the ratio), then
the objective along each tool's last run ("k:value" every N/10 iterations) — a value of order 1e5 or
more means the design lost its connection to the non-design block (ω1 near 0).

``--start feasible`` starts both tools from the uniform value that meets the volume limit
(computed once with fem_eigopt's density chain) instead of the example's 0.5: NLopt's MMA has no
move limit, and from the infeasible start its first steps can remove most of the material.

No timing is asserted; this prints.
"""

from __future__ import annotations

import os

# Before numpy loads OpenBLAS, in the parent and in every worker (fem_eigopt's command line does
# the same): OpenBLAS threads slow the Lanczos vector work on a small machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

# The example's constants (pyMOTO 2.0.1, examples/topology_optimization/ex_eigenfrequency.py)
E_MODULUS = 68.9e9
DENSITY = 2700.0
POISSON = 0.3  # pyMOTO's AssembleStiffness default
E_MIN = 1e-9  # SIMP floor ("xmin" in the example)
PENALTY = 3.0
FILTER_RADIUS = 2.0  # in element sizes = length units (unit elements)
VOLFRAC = 0.5
N_MODES = 3
MASS_THRESHOLD, MASS_P0, MASS_P1 = 0.1, 6.0, 1.0
OBJECTIVE_SCALE = 100.0
VOLUME_TOL = 1e-3  # a final volume fraction up to VOLFRAC (1 + this) counts as feasible

DEFAULT_SIZES = "200x100,400x200,40x20x20"
QUICK_SIZES = "40x20,8x4x4"


def parse_size(text: str) -> tuple[int, int, int]:
    """``"200x100"`` -> (200, 100, 0) (2D); ``"40x20x20"`` -> (40, 20, 20) (3D)."""
    parts = [int(p) for p in text.lower().split("x")]
    if len(parts) == 2:
        parts.append(0)
    if len(parts) != 3 or min(parts[:2]) < 4 or (parts[2] != 0 and parts[2] < 4):
        raise argparse.ArgumentTypeError(f"size {text!r}; allowed: NXxNY or NXxNYxNZ, each >= 4")
    return parts[0], parts[1], parts[2]


def parse_nlopt(text: str) -> dict:
    """``"a=1,b=2e-6"`` -> ``{"a": 1.0, "b": 2e-06}`` (NLopt algorithm parameters)."""
    params = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            params[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise SystemExit(f"bench_pymoto: --fe-nlopt item {item!r}; allowed: NAME=NUMBER")
    return params


def passive_index_ranges(nx: int, ny: int, nz: int) -> list[tuple[int, int]]:
    """Element index ranges [lo, hi) of the non-design block per axis, as in the example."""
    ranges = [(3 * nx // 4, nx), (ny // 4, ny * 3 // 4)]
    if nz:
        ranges.append((nz // 4, nz * 3 // 4))
    return ranges


# ---------------------------------------------------------------------------------------------
# pyMOTO worker


def _pymoto_mass_module(pym: Any) -> type:
    """The example's two-range mass interpolation as a pyMOTO module (its API: subclass Module)."""

    class TwoRangeMass(pym.Module):
        """ρ(x) = ρ0 x^p1 for x >= t, ρ0 x^p0 / t^(p0 − p1) below (Du & Olhoff 2007)."""

        def __init__(self, rhoval: float = 1.0, threshold: float = 0.1, p0: float = 6.0, p1: float = 1.0):
            self.rhoval, self.threshold, self.p0, self.p1 = rhoval, threshold, p0, p1

        def __call__(self, x: np.ndarray) -> np.ndarray:
            low = x < self.threshold
            y = x**self.p1
            y[low] = x[low] ** self.p0 / self.threshold ** (self.p0 - self.p1)
            return self.rhoval * y

        def _sensitivity(self, dy: np.ndarray) -> np.ndarray:
            x = self.sig_in[0].state
            low = x < self.threshold
            dx = self.p1 * x ** (self.p1 - 1)
            dx[low] = self.p0 * x[low] ** (self.p0 - 1) / self.threshold ** (self.p0 - self.p1)
            return self.rhoval * dx * dy

    return TwoRangeMass


def run_pymoto(nx: int, ny: int, nz: int, iterations: int, example_passive: bool = False,
               start: float = VOLFRAC) -> dict:
    """Set up the example in pyMOTO and run ``iterations`` MMA steps; timings and results as a dict.

    ``start`` is the uniform starting value of the design variables (the example's: 0.5).
    """
    warnings.filterwarnings("ignore")  # pypardiso's dtype-conversion warnings on every solve
    t_setup = time.perf_counter()
    import pymoto as pym

    domain = pym.VoxelDomain(nx, ny, nz) if nz else pym.VoxelDomain(nx, ny)
    (x0, x1), (y0, y1), *z = passive_index_ranges(nx, ny, nz)
    if nz:
        nondesign = domain.elements[x0:x1, y0:y1, z[0][0]:z[0][1]].flatten()
    else:
        nondesign = domain.elements[x0:x1, y0:y1].flatten()
    boundary_dofs = domain.get_dofnumber(domain.nodes[0, ...], ndof=domain.dim)
    sx = pym.Signal("x", state=np.full(domain.nel, start))
    with pym.Network() as fn:
        s_in = sx if example_passive else pym.SetValue(indices=nondesign, value=1.0)(sx)
        s_filt = pym.DensityFilter(domain, radius=FILTER_RADIUS)(s_in)
        s_x = pym.SetValue(indices=nondesign, value=1.0)(s_filt)
        s_simp = pym.MathExpression(f"{E_MODULUS}*({E_MIN} + {1.0 - E_MIN}*inp0^{PENALTY})")(s_x)
        s_dens = _pymoto_mass_module(pym)(rhoval=DENSITY, threshold=MASS_THRESHOLD, p0=MASS_P0, p1=MASS_P1)(s_x)
        s_K = pym.AssembleStiffness(domain, bc=boundary_dofs, poisson_ratio=POISSON)(s_simp)
        s_M = pym.AssembleMass(domain, bc=boundary_dofs, ndof=domain.dim)(s_dens)
        eigensolve = pym.EigenSolve(hermitian=True, nmodes=N_MODES)
        s_lam, _ = eigensolve(s_K, s_M)
        s_harm = pym.MathExpression("1/inp0 + 1/inp1 + 1/inp2")(s_lam[0], s_lam[1], s_lam[2])
        s_obj = pym.Scaling(scaling=OBJECTIVE_SCALE)(s_harm)
        s_vol = pym.EinSum("i->")(s_x)
        s_con = pym.MathExpression(f"10*(inp0/{domain.nel} - {VOLFRAC})")(s_vol)
    mma = pym.MMA(sx, [s_obj, s_con], function=fn, verbosity=0)

    timers = {"g": 0.0, "dg": 0.0}

    def timed(name: str, fun: Callable[[], Any]) -> Callable[[], Any]:
        def wrapper() -> Any:
            t0 = time.perf_counter()
            try:
                return fun()
            finally:
                timers[name] += time.perf_counter() - t0
        return wrapper

    mma.calculate_g = timed("g", mma.calculate_g)  # MMA.step calls self.calculate_g / _dg
    mma.calculate_dg = timed("dg", mma.calculate_dg)
    setup = time.perf_counter() - t_setup

    rows = []
    initial = None
    x = mma.x
    # pyMOTO evaluated the network while it was built; evaluate x0 again inside the first step so
    # that every timed iteration holds one full evaluation, as fem_eigopt's do
    mma.response_is_uptodate = False
    t_loop = time.perf_counter()
    for it in range(iterations):
        timers["g"] = timers["dg"] = 0.0
        t0 = time.perf_counter()
        x_new, g, _ = mma.step(x=x)
        wall = time.perf_counter() - t0
        lam = np.array(s_lam.state, dtype=float)
        if initial is None:
            initial = lam.tolist()
        rows.append(dict(wall=wall, eval=timers["g"] + timers["dg"], evals=1, f=float(g[0]),
                         omega1=float(np.sqrt(lam[0])), volume=float(s_vol.state) / domain.nel))
        x = x_new
    loop = time.perf_counter() - t_loop
    mma.x = x  # the design after the last update, evaluated once more (untimed)
    g = mma.calculate_g()
    lam = np.array(s_lam.state, dtype=float)
    return dict(
        tool="pyMOTO", label="pyMOTO", n_elements=int(domain.nel), n_design=int(domain.nel),
        n_dofs=int(domain.nnodes * domain.dim - np.size(boundary_dofs)), setup_s=setup, loop_s=loop,
        initial_eigenvalues=initial, iterations=rows, completed=len(rows),
        final=dict(f=float(g[0]), eigenvalues=lam.tolist(), omega1=float(np.sqrt(lam[0])),
                   volume=float(s_vol.state) / domain.nel),
        info=f"pymoto {pym.__version__}, pym.MMA ({mma.mmaversion}, move {mma.move}), eigsh {N_MODES} modes, "
             f"factorisation {type(eigensolve.Ainv).__name__}",
    )


# ---------------------------------------------------------------------------------------------
# fem_eigopt worker


def build_fem_problem(nx: int, ny: int, nz: int, eigensolver: str, backend: str = "auto",
                      objective_scale: float = 1.0, eigen_tol: float | None = None, precision: str = "auto"):
    """The same problem as an ``fem_eigopt.Problem`` (see the module docstring).

    The objective is ``objective_scale · h / h0``; 1 is fem_eigopt's convention (its objectives
    are divided by a reference at the starting design so that MMA sees numbers of order one),
    the example's 100 is a tuning of pyMOTO's MMA.
    """
    import fem_eigopt as fe

    ranges = passive_index_ranges(nx, ny, nz)

    def nondesign(c: np.ndarray) -> np.ndarray:
        # element (i, j, k) of a unit grid has its centroid at (i + ½, j + ½, k + ½)
        mask = np.ones(c.shape[1], dtype=bool)
        for axis, (lo, hi) in enumerate(ranges):
            idx = np.floor(c[axis]).astype(int)
            mask &= (idx >= lo) & (idx < hi)
        return mask

    reference: list[float] = []  # h at the first call (the starting design), as pyMOTO's Scaling

    def harmonic(eigenvalues: np.ndarray, vectors: np.ndarray, densities: np.ndarray):
        lam = eigenvalues[:N_MODES]
        h = float(np.sum(1.0 / lam))
        if not reference:
            reference.append(h)
        scale = objective_scale / reference[0]
        d = np.zeros_like(eigenvalues)
        d[:N_MODES] = -scale / lam**2
        return scale * h, d, None, None

    harmonic.reference = reference  # run_fem clears it before evaluating the starting design

    if nz:
        mesh, element = fe.box(float(nx), float(ny), float(nz), nx, ny, nz), "hex1"
        material = fe.Material(E=E_MODULUS, nu=POISSON, density=DENSITY, model="solid")
    else:
        mesh, element = fe.rectangle(float(nx), float(ny), nx, ny), "quad1"
        material = fe.Material(E=E_MODULUS, nu=POISSON, density=DENSITY, model="plane_strain", thickness=1.0)
    return fe.Problem(
        mesh=mesh, element=element, material=material,
        supports=[fe.Support("left")],
        analysis=fe.Analysis(n_modes=N_MODES, backend=backend, eigensolver=eigensolver, eigen_tol=eigen_tol,
                             preconditioner_precision=precision),
        design=fe.DensityDesign(initial=VOLFRAC, x_min=0.0, stiffness=fe.SIMP(PENALTY, e_min=E_MIN),
                                mass=fe.TwoRangeMass(MASS_THRESHOLD), filter="density",
                                filter_radius=FILTER_RADIUS, passive_solid=nondesign),
        objective=fe.UserResponse(harmonic, name="harmonic", needs_modes=N_MODES),
        constraints=[fe.VolumeConstraint(VOLFRAC)],
        name="pymoto_eigenfrequency",
    )


def feasible_start(nx: int, ny: int, nz: int) -> float:
    """The uniform design value whose volume fraction (non-design block included) is the limit.

    Bisection with fem_eigopt's density chain (design map with the non-design block, the density
    filter, the non-design block again), which is pyMOTO's network up to the interpolations.
    """
    from fem_eigopt.design.density import DensityChain, DesignMap
    from fem_eigopt.design.filters import DensityFilter

    problem = build_fem_problem(nx, ny, nz, "auto")
    mesh, design = problem.mesh, problem.design
    chain = DensityChain.build(mesh, DesignMap(mesh, design.passive_solid, None, design.x_min),
                               DensityFilter(mesh, FILTER_RADIUS))
    target = VOLFRAC * (1.0 - 1e-6)

    def volume(c: float) -> float:
        return chain.volume_fraction(chain.forward(np.full(chain.n_active, c)))[0]

    lo, hi = 0.0, VOLFRAC
    if volume(hi) <= target:
        return hi
    for _ in range(50):  # the volume grows with c
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if volume(mid) <= target else (lo, mid)
    return lo


def numeric_factorization_seconds(evaluator, backend: str = "auto", repeats: int = 5) -> float | None:
    """Median seconds of one numeric factorisation of K at the evaluator's last design.

    The floor the issue measures an iteration against: ``K`` as assembled for the last design
    (free dofs), factorised with a fresh :func:`fem_eigopt.linalg.factorization.make_factorization` (the first
    call, with the symbolic analysis, is not counted), MKL's default threads as in the run.
    """
    from fem_eigopt.linalg.factorization import make_factorization

    solved = getattr(evaluator, "_solved", None)
    if not solved:
        return None
    K = solved["K"]
    factorization = make_factorization(backend)
    factorization.factor(K)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        factorization.factor(K)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


class _StopAfterIterations(Exception):
    """Raised from the evaluation callback once the requested outer iterations are complete."""


class _NloptLines:
    """Standard output (fd 1) captured to a file; counts NLopt's MMA outer/inner-iteration lines."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None)
        sys.stdout.flush()
        self.libc.fflush(None)
        self.file = tempfile.TemporaryFile()
        self.saved = os.dup(1)
        os.dup2(self.file.fileno(), 1)
        self.text = b""

    def counts(self) -> tuple[int, int]:
        self.libc.fflush(None)
        self.text += os.pread(self.file.fileno(), 1 << 20, len(self.text))
        return self.text.count(b"MMA outer iteration"), self.text.count(b"MMA inner iteration")

    def nlopt_calls(self) -> int:
        """NLopt's objective calls after the first (one "dual converged" line each), read afresh."""
        self.libc.fflush(None)
        return os.pread(self.file.fileno(), 1 << 26, 0).count(b"MMA dual converged")

    def close(self) -> None:
        self.counts()
        os.dup2(self.saved, 1)
        os.close(self.saved)
        self.file.close()


class _NloptCycling(Exception):
    """NLopt keeps asking for points the optimiser driver already has (it evaluates none)."""


#: NLopt calls without a new evaluation after which a run counts as cycling
CYCLE_LIMIT = 200


def run_fem(nx: int, ny: int, nz: int, iterations: int, eigensolver: str, backend: str = "auto",
            objective_scale: float = 1.0, start: float = VOLFRAC, nlopt_params: dict | None = None,
            algorithm: str = "LD_MMA", move: float = 0.1, eigen_tol: float | None = None,
            precision: str = "auto") -> dict:
    """Set up the problem in fem_eigopt and run ``iterations`` NLopt MMA outer iterations.

    ``start`` is the uniform starting value of the design variables (the example's: 0.5).
    Objective values in the result are on the example's scale, 100 h / h0.
    """
    t_setup = time.perf_counter()
    import fem_eigopt as fe
    from fem_eigopt.optimize.run import default_settings

    problem = build_fem_problem(nx, ny, nz, eigensolver, backend, objective_scale, eigen_tol, precision)
    to_100 = OBJECTIVE_SCALE / objective_scale
    evaluator = fe.DesignEvaluator(problem)
    x0, lower, upper = evaluator.start()
    # Both tools start from the same uniform design (by default the example's 0.5, infeasible:
    # the non-design block adds volume). Should DesignEvaluator.start() move the start (e.g. inside
    # the volume limit), put it back.
    start_note = ""
    nd = evaluator.n_design
    z_start = np.full(nd, start)
    if not np.array_equal(x0[:nd], z_start):
        if start == VOLFRAC:
            start_note = (f"DesignEvaluator.start() moved the starting densities (mean {x0[:nd].mean():.4f}); "
                          "reset to the common uniform start")
        x0 = np.concatenate([z_start, x0[nd:]])
    problem.objective.function.reference.clear()
    initial = evaluator(x0)
    setup = time.perf_counter() - t_setup
    settings = default_settings(problem)
    from dataclasses import replace

    # optimize()'s defaults without its own stopping rules (the iteration count stops the run),
    # NLopt verbose so that its outer iterations can be counted
    own = algorithm == "MMA"
    settings = replace(settings, max_eval=50 * iterations + 10, xtol_rel=0.0, ftol_rel=0.0,
                       stagnation_tol=0.0)
    if own:  # our MMA: one evaluation per iteration, a move limit like pyMOTO's (no NLopt parameters)
        settings = replace(settings, algorithm="MMA", move_limit=move, nlopt_params={})
    else:
        settings = replace(settings, algorithm=algorithm,
                           nlopt_params={**settings.nlopt_params, **(nlopt_params or {}), "verbosity": 1})
    lines = _NloptLines()
    calls: list[dict] = []

    def evaluate(x: np.ndarray):
        # NLopt's lines about every evaluation before this one; for our MMA every evaluation
        # after the start closes an iteration
        outer, inner = (max(len(calls) - 1, 0), 0) if own else lines.counts()
        if calls:
            calls[-1]["closes"] = outer > calls[-1]["outer_before"]
        if outer >= iterations:
            raise _StopAfterIterations()
        t0 = time.perf_counter()
        ev = evaluator(x)
        t1 = time.perf_counter()
        tm = ev.info.get("timings", {})
        calls.append(dict(start=t0, end=t1, outer_before=outer, closes=False, f=to_100 * ev.f,
                          sens_filter=float(tm.get("sensitivities", 0.0) + tm.get("filter", 0.0)),
                          eigenvalues=np.asarray(ev.info["eigenvalues"][:N_MODES], dtype=float),
                          volume=float(ev.info["volume_fraction"])))
        return ev

    cycling: list[str] = []

    def watchdog(signum: int, frame: Any) -> None:
        # The driver answers points it has seen from its cache without counting them against
        # max_eval, so NLopt asking for the same point forever would never end the run.
        if not cycling and lines.nlopt_calls() - (len(calls) - 1) > CYCLE_LIMIT:
            cycling.append(f"NLopt asked for more than {CYCLE_LIMIT} already evaluated points in a row "
                           "(no new evaluation; the fem_eigopt driver would loop forever)")
            raise _NloptCycling(cycling[0])

    evaluator.inexact_gradients = True  # as fem_eigopt.optimize.run() runs the optimiser's steps
    t_loop = time.perf_counter()
    status = "stopped after the requested iterations"
    previous = signal.signal(signal.SIGALRM, watchdog)
    signal.setitimer(signal.ITIMER_REAL, 2.0, 2.0)
    try:
        result = fe.minimize(evaluate, x0, lower, upper, settings, n_constraints=initial.g.size)
        status = f"NLopt stopped by itself: {result.status} ({result.message})"
        outer = len(calls) - 1 if own else lines.counts()[0]
        if calls:
            calls[-1]["closes"] = outer > calls[-1]["outer_before"]
    except _StopAfterIterations:
        pass
    except _NloptCycling:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0, 0.0)
        signal.signal(signal.SIGALRM, previous)
        lines.close()
    loop = time.perf_counter() - t_loop
    if cycling:  # NLopt may have turned the exception into its own FORCED_STOP
        status = f"stopped: {cycling[0]}"
    # calls[0] is the driver's evaluation of x0 (cached in the evaluator); iteration k spans the
    # calls after the one that closed iteration k − 1, up to the one that closed iteration k.
    rows = []
    prev_end = calls[0]["end"] if calls else t_loop
    group: list[dict] = []
    for c in calls[1:]:
        group.append(c)
        if c["closes"]:
            rows.append(dict(wall=c["end"] - prev_end, eval=float(sum(g["end"] - g["start"] for g in group)),
                             sens_filter=float(sum(g["sens_filter"] for g in group)),
                             evals=len(group), f=float(c["f"]), omega1=float(np.sqrt(c["eigenvalues"][0])),
                             volume=c["volume"]))
            prev_end = c["end"]
            group = []
    last = next((c for c in reversed(calls) if c["closes"]), calls[0] if calls else None)
    lam0 = np.asarray(initial.info["eigenvalues"][:N_MODES], dtype=float)
    final = None
    if last is not None:
        lam = last["eigenvalues"]
        final = dict(f=float(last["f"]), eigenvalues=lam.tolist(), omega1=float(np.sqrt(lam[0])),
                     volume=last["volume"])
    solver = evaluator.solver
    factor_s = numeric_factorization_seconds(evaluator, backend)
    return dict(
        factor_s=factor_s,
        tool="fem_eigopt", label=fem_label(eigensolver, algorithm), n_elements=int(evaluator.model.n_elements),
        n_design=int(evaluator.n_design), n_dofs=int(evaluator.model.n_free), setup_s=setup, loop_s=loop,
        initial_eigenvalues=lam0.tolist(), iterations=rows, completed=len(rows), final=final,
        extra_evaluations=len(group), status=status, start_note=start_note,
        info=f"eigen solver {type(solver).__name__} ({evaluator.n_modes} modes"
             + (f", {solver.precision}-precision preconditioner" if hasattr(solver, "precision") else "") + "), "
             f"factorisation {getattr(solver, 'backend', '?')}, {settings.algorithm}"
             + (f" (move limit {move:g})" if own else "")
             + (f", eigen_tol {eigen_tol:g}" if eigen_tol is not None else "")
             + _counted_work(solver),
    )


def _counted_work(solver) -> str:
    """The subspace solver's work per design solved (machine-independent, unlike seconds), or ''."""
    solves = getattr(solver, "n_solves", 0)
    if not hasattr(solver, "n_preconditioner_columns") or solves == 0:
        return ""
    return (f"; per design {solver.n_preconditioner_columns / solves:.1f} preconditioner columns, "
            f"{solver.n_lobpcg_iterations / solves:.1f} LOBPCG iterations, "
            f"{solver.n_rayleigh_ritz / solves:.1f} Rayleigh-Ritz steps, "
            f"{solver.n_factorizations / solves:.2f} factorisations ({solves} designs)")


# ---------------------------------------------------------------------------------------------
# parent: alternate subprocesses, print tables


def fem_label(eigensolver: str, algorithm: str) -> str:
    return f"fem_eigopt[{eigensolver},{algorithm}]"


@dataclass
class Job:
    tool: str  # "pymoto" or "fem"
    eigensolver: str = ""
    algorithm: str = "LD_MMA"

    @property
    def label(self) -> str:
        return "pyMOTO" if self.tool == "pymoto" else fem_label(self.eigensolver, self.algorithm)


def run_job(job: Job, size: str, iterations: int, args: argparse.Namespace, start: float) -> dict:
    """Run one worker subprocess; its result dict, or one with ``error`` set."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", job.tool, "--size", size,
               "--iterations", str(iterations), "--result", str(out), "--backend", args.backend,
               "--start-value", repr(start)]
        if job.tool == "fem":
            cmd += ["--eigensolver", job.eigensolver, "--fe-algorithm", job.algorithm, "--fe-move", repr(args.fe_move)]
            if args.eigen_tol is not None:
                cmd += ["--eigen-tol", repr(args.eigen_tol)]
            cmd += ["--precision", args.precision]
        if args.example_passive:
            cmd.append("--example-passive")
        if job.tool == "fem":
            scale = args.fe_scale if args.fe_scale is not None else (OBJECTIVE_SCALE if job.algorithm == "MMA" else 1.0)
            cmd += ["--fe-scale", repr(scale), "--fe-nlopt", args.fe_nlopt]
        env = dict(os.environ)
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return dict(label=job.label, error=f"no result within --timeout {args.timeout} s",
                        process_s=time.perf_counter() - t0)
        wall = time.perf_counter() - t0
        if out.exists():
            res = json.loads(out.read_text())
        else:
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            res = dict(label=job.label, error=f"worker exited {proc.returncode}: {' | '.join(tail)}")
        res["process_s"] = wall
        return res


def _median_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or not np.isfinite(v) else format(v, spec)


def print_size(size: str, results: list[dict], iterations: int) -> None:
    """The table of one size (see "Reading the output" in the module docstring)."""
    nx, ny, nz = parse_size(size)
    ok = [r for r in results if not r.get("error")]
    first = ok[0] if ok else {}
    print(f"\n== {'3D' if nz else '2D'} {size}: {first.get('n_elements', '?')} elements, "
          f"{first.get('n_dofs', '?')} free dofs, {iterations} iterations per run ==")
    # initial eigenvalues
    labels = list(dict.fromkeys(r["label"] for r in results))
    initial = {}
    for r in ok:
        initial.setdefault(r["label"], r.get("initial_eigenvalues"))
    ref = initial.get("pyMOTO")
    for label in labels:
        lam = initial.get(label)
        if lam is None:
            continue
        line = f"initial λ1..λ3 {label:>22}: " + "  ".join(f"{v:.10g}" for v in lam)
        if ref is not None and label != "pyMOTO":
            rel = float(np.max(np.abs(np.asarray(lam) - ref) / np.abs(ref)))
            line += f"   max rel. difference to pyMOTO {rel:.1e} ({'agree' if rel < 1e-6 else 'DIFFER'})"
        print(line)
    # per tool
    stats = []
    for label in labels:
        runs = [r for r in results if r["label"] == label]
        good = [r for r in runs if not r.get("error")]
        errors = [r["error"] for r in runs if r.get("error")]
        its = [it for r in good for it in r["iterations"]]
        if not its:
            stats.append(dict(label=label, error="; ".join(errors) or "no completed iteration"))
            continue
        wall = np.array([it["wall"] for it in its])
        ev = np.array([it["eval"] for it in its])
        n_ev = np.array([it["evals"] for it in its])
        last = good[-1]
        finals = {json.dumps(np.round(r["final"]["f"], 10).tolist()) for r in good if r.get("final")}
        stats.append(dict(
            label=label, median=float(np.median(wall)), mean=float(wall.mean()), eval=float(np.median(ev)),
            opt=float(np.median(wall - ev)), evals=float(n_ev.mean()), final=last.get("final"),
            completed=[r["completed"] for r in good], setup=float(np.median([r["setup_s"] for r in good])),
            runs=len(good), errors=errors, consistent=len(finals) <= 1, status=last.get("status", ""),
            info=last.get("info", ""), start_note=last.get("start_note", ""),
            trace=[it["f"] for it in last["iterations"]],
            run_medians=[float(np.median([it["wall"] for it in r["iterations"]])) for r in good if r["iterations"]],
            extra=[r.get("extra_evaluations", 0) for r in good],
            factor=_median_or_none([r.get("factor_s") for r in good]),
            sens_share=(float(np.sum([it["sens_filter"] for it in its]) / wall.sum())
                        if all("sens_filter" in it for it in its) else None)))
    pym = next((s for s in stats if s["label"] == "pyMOTO" and "median" in s), None)
    feasible = [s for s in stats if s.get("final") and s["final"]["volume"] <= VOLFRAC * (1 + VOLUME_TOL)]
    best = min(feasible, key=lambda s: s["final"]["f"])["label"] if feasible else None
    width = max(22, max(len(s["label"]) for s in stats))
    print(f"\n{'tool':>{width}} {'s/it':>8} {'mean':>8} {'eval s/it':>9} {'opt s/it':>8} {'evals/it':>8} "
          f"{'pyMOTO/x':>8} {'objective':>11} {'ω1 rad/s':>10} {'volume':>7} {'setup s':>7} "
          f"{'factor s':>8} {'it/factor':>9} {'sens+filt':>9}  best")
    for s in stats:
        if "median" not in s:
            print(f"{s['label']:>{width}}  FAILED: {s['error']}")
            continue
        ratio = pym["median"] / s["median"] if pym else None
        fin = s["final"] or {}
        per_factor = s["median"] / s["factor"] if s.get("factor") else None
        share = f"{100 * s['sens_share']:.1f} %" if s.get("sens_share") is not None else "-"
        print(f"{s['label']:>{width}} {s['median']:8.3f} {s['mean']:8.3f} {s['eval']:9.3f} {s['opt']:8.3f} "
              f"{s['evals']:8.2f} {_fmt(ratio, '8.2f'):>8} {_fmt(fin.get('f'), '11.6g'):>11} "
              f"{_fmt(fin.get('omega1'), '10.5g'):>10} {_fmt(fin.get('volume'), '7.4f'):>7} {s['setup']:7.1f} "
              f"{_fmt(s.get('factor'), '8.3f'):>8} {_fmt(per_factor, '9.2f'):>9} {share:>9}  "
              f"{'<- best' if s['label'] == best else ''}")
    print("s/it, eval s/it, opt s/it: medians over the iterations of all runs (measured per iteration for both "
          "tools); objective, ω1, volume after the last iteration; factor s: one numeric factorisation of K at "
          "the final design (median of 5, same process); it/factor = s/it ÷ factor s; sens+filt: sensitivities "
          "and density filter/interpolations as a share of all iteration time")
    for s in stats:
        if "median" not in s:
            continue
        notes = []
        if any(c < iterations for c in s["completed"]):
            notes.append(f"completed iterations per run {s['completed']} ({s['status']})")
        if not s["consistent"]:
            notes.append("final objective differs between repeats (last run shown)")
        if s["start_note"]:
            notes.append(s["start_note"])
        if s["errors"]:
            notes.append(f"{len(s['errors'])} failed run(s): {s['errors'][0]}")
        print(f"  {s['label']}: {s['info']}; {s['runs']} run(s)" + ("; " + "; ".join(notes) if notes else ""))
    # Ratio per repeat (run k of each tool ran next to each other): how much of the table's ratio
    # is the machine's state (a shared host: load moves pyMOTO's and our times differently)
    if pym and len(pym["run_medians"]) > 1:
        for s in stats:
            if "median" in s and s is not pym and len(s["run_medians"]) == len(pym["run_medians"]):
                pairs = ", ".join(f"{p:.3f}/{f:.3f} = {p / f:.2f}x" for p, f in zip(pym["run_medians"], s["run_medians"]))
                print(f"  per repeat, pyMOTO/{s['label']} (median s/it of each run): {pairs}")
    # the objective along the last run of each tool: pyMOTO's value is evaluated at the start of
    # iteration k (design after k − 1 updates), fem_eigopt's at the end of iteration k
    every = max(1, iterations // 10)
    for s in stats:
        if "median" in s:
            marks = [f"{k + 1}:{v:.4g}" for k, v in enumerate(s["trace"]) if k % every == 0 or k == len(s["trace"]) - 1]
            print(f"  objective trace {s['label']}: " + " ".join(marks))


def worker_main(args: argparse.Namespace) -> int:
    nx, ny, nz = parse_size(args.size)
    try:
        if args.worker == "pymoto":
            res = run_pymoto(nx, ny, nz, args.iterations, args.example_passive, args.start_value)
        else:
            res = run_fem(nx, ny, nz, args.iterations, args.eigensolver, args.backend, args.fe_scale if args.fe_scale is not None else 1.0,
                          args.start_value, parse_nlopt(args.fe_nlopt), args.fe_algorithm, args.fe_move,
                          args.eigen_tol, args.precision)
    except Exception as exc:  # noqa: BLE001 - reported by the parent in the tool's row
        label = "pyMOTO" if args.worker == "pymoto" else fem_label(args.eigensolver, args.fe_algorithm)
        res = dict(label=label, error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    Path(args.result).write_text(json.dumps(res))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=None, help=f"comma-separated NXxNY[xNZ] (default {DEFAULT_SIZES})")
    parser.add_argument("--iterations", type=int, default=None, help="optimiser iterations per run (default 30)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per tool, alternating (default 1)")
    parser.add_argument("--eigensolver", default="auto",
                        help="fem_eigopt eigen solver(s), comma-separated: auto, arpack, subspace, amg")
    parser.add_argument("--backend", default="auto", help="fem_eigopt factorisation backend (default auto)")
    parser.add_argument("--example-passive", action="store_true",
                        help="pyMOTO: non-design elements set after the filter only, as in the example")
    parser.add_argument("--fe-scale", type=float, default=None,
                        help="fem_eigopt objective = SCALE · h/h0 (default: the example's 100 with fem_eigopt's "
                             "MMA, 1 — fem_eigopt's convention — with NLopt's LD_MMA)")
    parser.add_argument("--fe-algorithm", default="MMA,LD_MMA",
                        help="fem_eigopt optimiser(s), comma-separated: MMA (fem_eigopt's own, one evaluation "
                             "per iteration, move limit --fe-move) and/or LD_MMA (NLopt's CCSA form)")
    parser.add_argument("--fe-move", type=float, default=0.1,
                        help="move limit of fem_eigopt's MMA (default 0.1, pyMOTO's in the example)")
    parser.add_argument("--precision", choices=("auto", "double", "single"), default="auto",
                        help="fem_eigopt Analysis.preconditioner_precision (the subspace solver's factorisation; "
                             "default auto)")
    parser.add_argument("--eigen-tol", type=float, default=None,
                        help="fem_eigopt Analysis.eigen_tol (iterative eigen solvers; default: the solver's)")
    parser.add_argument("--fe-nlopt", default="",
                        help="extra NLopt parameters for fem_eigopt, NAME=VALUE,... (e.g. inner_maxeval=1)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run before it is abandoned")
    parser.add_argument("--start", choices=("example", "feasible"), default="example",
                        help="uniform start of both tools: the example's 0.5 (default; volume above the "
                             "limit because of the non-design block) or the value meeting the volume limit")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: sizes {QUICK_SIZES}, 5 iterations")
    parser.add_argument("--worker", choices=("pymoto", "fem"), help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--start-value", type=float, default=VOLFRAC, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.iterations = args.iterations or 30
        return worker_main(args)

    sizes = (args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)).split(",")
    for s in sizes:
        parse_size(s)
    iterations = args.iterations or (5 if args.quick else 30)
    solvers = [e.strip() for e in args.eigensolver.split(",") if e.strip()]
    algorithms = [a.strip() for a in args.fe_algorithm.split(",") if a.strip()]
    jobs = [Job("pymoto")] + [Job("fem", e, a) for a in algorithms for e in solvers]
    try:
        import pymoto
        pym_version = pymoto.__version__
    except ImportError:
        pym_version = "not installed (pip install pymoto==2.0.1, the 'bench' extra)"
    print(f"bench_pymoto: sizes {','.join(sizes)}; {iterations} iterations; {args.repeats} repeat(s); "
          f"pyMOTO {pym_version}; fem_eigopt eigen solver(s) {','.join(solvers)}, optimiser(s) {','.join(algorithms)} "
          f"(MMA move limit {args.fe_move:g}), eigen_tol {args.eigen_tol if args.eigen_tol is not None else 'default'}, "
          f"backend {args.backend}, "
          f"objective scale {'100 (MMA) / 1 (LD_MMA)' if args.fe_scale is None else format(args.fe_scale, 'g')}; "
          f"{platform.machine()}, {os.cpu_count()} cpus, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"MKL_NUM_THREADS={os.environ.get('MKL_NUM_THREADS', 'unset')}")
    if args.example_passive:
        print("pyMOTO: non-design elements set after the filter only (the example's set-up; fem_eigopt cannot do this)")
    for size in sizes:
        results = []
        start = VOLFRAC
        if args.start == "feasible":
            start = feasible_start(*parse_size(size))
            print(f"  {size}: uniform start {start:.6f} (volume fraction {VOLFRAC} with the non-design block)")
        for rep in range(args.repeats):
            for job in jobs:
                res = run_job(job, size, iterations, args, start)
                state = res.get("error") or f"{res.get('completed')} iterations, loop {res.get('loop_s', 0):.1f} s"
                print(f"  {size} run {rep + 1}/{args.repeats} {job.label}: {state} "
                      f"(process {res['process_s']:.1f} s)", flush=True)
                results.append(res)
        print_size(size, results, iterations)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
