"""Svanberg's method of moving asymptotes (MMA), classic form: one evaluation per iteration.

Solves

    minimise f₀(x)  subject to  f_i(x) ≤ 0 (i = 1…m),  x_min ≤ x ≤ x_max

by a sequence of convex separable subproblems, as described in K. Svanberg, "MMA and GCMMA – two
methods for nonlinear optimization" (KTH, 2007), the routines ``mmasub`` and ``subsolv`` of that
note, written here from its formulas:

* **approximation** at the iterate x⁽ᵏ⁾ with asymptotes l < x⁽ᵏ⁾ < u:
  ``f̃_i(x) = r_i + Σ_j p_ij/(u_j − x_j) + q_ij/(x_j − l_j)``, where
  ``p_ij = (u_j − x_j)² (1.001 (∂f_i/∂x_j)⁺ + 0.001 (∂f_i/∂x_j)⁻ + raa0/(x_max,j − x_min,j))``,
  ``q_ij = (x_j − l_j)² (0.001 (∂f_i/∂x_j)⁺ + 1.001 (∂f_i/∂x_j)⁻ + raa0/(x_max,j − x_min,j))``
  and r_i such that f̃_i(x⁽ᵏ⁾) = f_i(x⁽ᵏ⁾) (the terms with 0.001 and raa0 = 1e-5 make every f̃_i
  strictly convex);
* **asymptotes**: in the first two iterations ``l = x − s₀``, ``u = x + s₀`` with
  ``s₀ = asyinit·(x_max − x_min)`` (asyinit 0.5); afterwards ``l = x − γ (x⁽ᵏ⁻¹⁾ − l⁽ᵏ⁻¹⁾)``,
  ``u = x + γ (u⁽ᵏ⁻¹⁾ − x⁽ᵏ⁻¹⁾)`` per variable with γ = 1.2 (asyincr) where the last two steps
  had the same sign, 0.7 (asydecr) where they oscillated, 1 otherwise — also where either step
  was shorter than :data:`STILL` times the variable's range — and the distances ``x − l``,
  ``u − x`` kept within ``[0.01, 10]·(x_max − x_min)``;
* **step bounds** ``α = max(x_min, l + albefa (x − l), x − move (x_max − x_min))`` and
  ``β = min(x_max, u − albefa (u − x), x + move (x_max − x_min))`` (albefa 0.1): the move limit is a
  fraction of each variable's range;
* **artificial variables** y ∈ ℝᵐ, z ∈ ℝ: the subproblem minimises
  ``f̃₀(x) + a₀ z + Σ_i (c_i y_i + ½ d_i y_i²)`` subject to ``f̃_i(x) − a_i z − y_i ≤ 0``, with
  a₀ = 1, a_i = 0, c_i = 1000, d_i = 1, so that it is feasible even when the current design is
  not (y > 0 relaxes a constraint at the price c_i y_i: c must be large compared with the
  objective's scale for the constraints to win);
* **subproblem solver**: by default through the subproblem's **dual** (:func:`dual_subsolve`;
  Svanberg 1987, section 4): for a = 0 the Lagrangian's minimiser x(λ) is in closed form, and the
  concave dual is maximised over λ ≥ 0 — a safeguarded Newton root for one constraint, projected
  Newton for several, started from the previous iteration's multipliers; exact to rounding and,
  with its m unknowns instead of the interior point's Newton systems at every ε level, an order
  of magnitude faster on topology problems (docs/performance.md). The fallback, and the solver
  for a ≠ 0 (``subsolv``): a primal–dual interior-point method on the perturbed KKT
  conditions, ε = 1, 0.1, …, 1e-7, Newton steps with the step length kept inside the positive
  orthant and halved until the residual norm decreases. The Newton system is reduced to
  (m + 1) × (m + 1) unknowns (dλ, dz) when n > m, else to (n + 1) × (n + 1) unknowns (dx, dz):
  everything over the n variables is a vectorised numpy expression, no Python loop over n.
  The residual tolerance is absolute (as in ``subsolv``); on badly scaled subproblems
  (coefficients of 1e14 next to the asymptote after a step onto a 1/x³ wall) it lies below the
  rounding floor, so an ε level also ends when its last 10 Newton steps reduced the residual by
  less than 10 % in total, instead of spending its 200 steps.

Steps shorter than :data:`STILL` of the range (our addition to Svanberg's rule). The sign of a
step of rounding size is the machine's rounding, not a trend; under the plain rule it grows
(×1.2) or shrinks (×0.7) the variable's asymptotes at random, and every later step of that
variable inherits the difference. The Du & Olhoff CC beam takes 916 such steps in 33 of its 593
iterations, and a start perturbed by 1e-12 ended anywhere between 94.3 % and 98.8 % of the
published optimum (six seeds); with such steps counted as none, within 95.6–95.8 %
(docs/du-olhoff.md).

Unlike NLopt's ``LD_MMA`` (the globally convergent CCSA variant of Svanberg 2002, which repeats
an iteration with a more conservative approximation until it is conservative, so that an
iteration can cost several evaluations) every iteration here costs exactly one evaluation; a
move limit takes the place of the conservativity check.

Known property: the approximation's curvature is proportional to |∂f_i/∂x_j|, so the step of a
variable does not shrink with its gradient, only with its asymptote distance (×0.7 per
oscillation, floor 0.01·range). A variable at an interior optimum where all its gradients vanish
(an unconstrained bowl) ends oscillating across the optimum by about 0.9·0.01·range; with an
active constraint the multiplier keeps the Lagrangian's curvature and MMA converges.

Initial step (``initial_asymptote``): a per-variable distance s₀ replacing ``asyinit·(x_max −
x_min)`` in the first two iterations after construction or :meth:`MMA.reset`. With albefa 0.1 the
first two steps then move every variable by at most ``0.9 s₀`` (and by at most the move limit),
which is the meaning NLopt gives the σ of its ``set_initial_step``; from the third iteration on the
asymptotes adapt (by at most ×1.2 per iteration) and are clamped to ``[0.01, 10]·(x_max − x_min)``.

References
----------
K. Svanberg, "The method of moving asymptotes — a new method for structural optimization",
Int. J. Numer. Meth. Engng 24 (1987) 359–373.
K. Svanberg, "MMA and GCMMA – two methods for nonlinear optimization", KTH Stockholm (2007).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal, Optional, Union

import numpy as np

__all__ = ["MMA", "STILL", "Subproblem", "SubproblemSolution", "dual_subsolve", "subsolve"]

logger = logging.getLogger(__name__)

ArrayLike = Union[float, np.ndarray]

#: steps shorter than this fraction of a variable's range count as none in the asymptote update:
#: far above rounding (1e-16), far below a step that moves a design (1e-4 and more)
STILL = 1e-9


@dataclass(frozen=True)
class Subproblem:
    """The convex separable MMA subproblem.

    minimise ``Σ_j p0_j/(u_j − x_j) + q0_j/(x_j − l_j) + a0 z + Σ_i (c_i y_i + ½ d_i y_i²)``
    subject to ``Σ_j P_ij/(u_j − x_j) + Q_ij/(x_j − l_j) − a_i z − y_i ≤ b_i``,
    ``α ≤ x ≤ β``, ``y ≥ 0``, ``z ≥ 0``.

    Attributes
    ----------
    low, upp, alpha, beta, p0, q0 : ndarray (n,)
        Asymptotes l, u, step bounds α, β (``l < α < β < u``) and the objective's coefficients.
    P, Q : ndarray (m, n)
        The constraints' coefficients.
    a0 : float
        Coefficient of z in the objective.
    a, b, c, d : ndarray (m,)
        Coefficients of z in the constraints, right-hand sides, linear and quadratic costs of y.
    """

    low: np.ndarray
    upp: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    p0: np.ndarray
    q0: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    a0: float
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray


@dataclass(frozen=True)
class SubproblemSolution:
    """Solution of :class:`Subproblem` by :func:`subsolve`.

    Attributes
    ----------
    x : ndarray (n,)
        Design.
    y : ndarray (m,)
        Artificial variables; y_i > 0 means constraint i could not be met within the step bounds.
    z : float
        Artificial variable z.
    lam : ndarray (m,)
        Lagrange multipliers of the constraints.
    newton_steps : int
        Newton iterations over all ε levels.
    residual : float
        Largest absolute residual of the perturbed KKT conditions at the last ε.
    """

    x: np.ndarray
    y: np.ndarray
    z: float
    lam: np.ndarray
    newton_steps: int
    residual: float


# ----------------------------------------------------------------------------------------------
# the subproblem solver


@dataclass
class _PD:
    """Primal–dual point: x (n), y (m), z, λ (m), ξ (n, for x ≥ α), η (n, for x ≤ β), μ (m, y ≥ 0),
    ζ (z ≥ 0), s (m, slacks of the constraints)."""

    x: np.ndarray
    y: np.ndarray
    z: float
    lam: np.ndarray
    xsi: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    zet: float
    s: np.ndarray

    def moved(self, d: "_PD", t: float) -> "_PD":
        return _PD(
            self.x + t * d.x, self.y + t * d.y, self.z + t * d.z, self.lam + t * d.lam,
            self.xsi + t * d.xsi, self.eta + t * d.eta, self.mu + t * d.mu, self.zet + t * d.zet,
            self.s + t * d.s,
        )


def _residual(sp: Subproblem, v: _PD, eps: float) -> tuple[float, float]:
    """2-norm and ∞-norm of the perturbed KKT residual at v."""
    ux = sp.upp - v.x
    xl = v.x - sp.low
    plam = sp.p0 + sp.P.T @ v.lam
    qlam = sp.q0 + sp.Q.T @ v.lam
    # stationarity in x, y, z; primal feasibility; complementarity (ε-perturbed)
    parts_n = (
        plam / ux**2 - qlam / xl**2 - v.xsi + v.eta,
        v.xsi * (v.x - sp.alpha) - eps,
        v.eta * (sp.beta - v.x) - eps,
    )
    g = sp.P @ (1.0 / ux) + sp.Q @ (1.0 / xl)
    parts_m = (
        sp.c + sp.d * v.y - v.mu - v.lam,
        g - sp.a * v.z - v.y + v.s - sp.b,
        v.mu * v.y - eps,
        v.lam * v.s - eps,
        np.array([sp.a0 - v.zet - sp.a @ v.lam, v.zet * v.z - eps]),
    )
    # einsum, not r @ r: a threaded BLAS ddot on these short vectors is slow on a busy machine
    sq = sum(float(np.einsum("i,i->", r, r)) for r in parts_n + parts_m)
    mx = max(float(np.max(np.abs(r), initial=0.0)) for r in parts_n + parts_m)
    return math.sqrt(sq), mx


def _newton_direction(sp: Subproblem, v: _PD, eps: float, system: str) -> _PD:
    """Newton direction for the perturbed KKT conditions, the slack-type variables eliminated.

    With G = ∂f̃/∂x (m × n) and the diagonal D_x = ∂²ψ/∂x² + ξ/(x − α) + η/(β − x),
    D_y = d + μ/y, D_λ = s/λ + 1/D_y, the system in (dλ, dz) is

        [D_λ + G D_x⁻¹ Gᵀ   a    ] [dλ]   [δ_λ + δ_y/D_y − G D_x⁻¹ δ_x]
        [aᵀ                −ζ/z  ] [dz] = [δ_z                          ]

    and dx = −D_x⁻¹ (δ_x + Gᵀ dλ) (``system="m"``); or, eliminating dλ instead, an
    (n + 1) × (n + 1) system in (dx, dz) (``system="n"``, for n ≤ m).
    """
    ux = sp.upp - v.x
    xl = v.x - sp.low
    ux2, xl2 = ux**2, xl**2
    xa = v.x - sp.alpha
    bx = sp.beta - v.x
    plam = sp.p0 + sp.P.T @ v.lam
    qlam = sp.q0 + sp.Q.T @ v.lam
    G = sp.P / ux2 - sp.Q / xl2  # (m, n)
    g = sp.P @ (1.0 / ux) + sp.Q @ (1.0 / xl)

    del_x = plam / ux2 - qlam / xl2 - eps / xa + eps / bx
    del_y = sp.c + sp.d * v.y - v.lam - eps / v.y
    del_z = sp.a0 - sp.a @ v.lam - eps / v.z
    del_lam = g - sp.a * v.z - v.y - sp.b + eps / v.lam

    diag_x = 2.0 * (plam / (ux2 * ux) + qlam / (xl2 * xl)) + v.xsi / xa + v.eta / bx
    diag_y = sp.d + v.mu / v.y
    diag_lamy = v.s / v.lam + 1.0 / diag_y
    rhs_lam = del_lam + del_y / diag_y
    m = sp.a.size

    if system == "m":
        Gd = G / diag_x  # G D_x⁻¹
        A = np.empty((m + 1, m + 1))
        A[:m, :m] = Gd @ G.T
        A[np.arange(m), np.arange(m)] += diag_lamy
        A[:m, m] = sp.a
        A[m, :m] = sp.a
        A[m, m] = -v.zet / v.z
        rhs = np.concatenate([rhs_lam - Gd @ del_x, [del_z]])
        sol = np.linalg.solve(A, rhs)
        dlam, dz = sol[:m], float(sol[m])
        dx = -(del_x + G.T @ dlam) / diag_x
    else:
        n = v.x.size
        w = 1.0 / diag_lamy
        A = np.empty((n + 1, n + 1))
        A[:n, :n] = (G.T * w) @ G
        A[np.arange(n), np.arange(n)] += diag_x
        axz = -G.T @ (sp.a * w)
        A[:n, n] = axz
        A[n, :n] = axz
        A[n, n] = v.zet / v.z + sp.a @ (sp.a * w)
        rhs = np.concatenate([-del_x - G.T @ (rhs_lam * w), [-del_z + sp.a @ (rhs_lam * w)]])
        sol = np.linalg.solve(A, rhs)
        dx, dz = sol[:n], float(sol[n])
        dlam = (G @ dx - sp.a * dz + rhs_lam) * w

    dy = (dlam - del_y) / diag_y
    return _PD(
        x=dx, y=dy, z=dz, lam=dlam,
        xsi=-v.xsi + (eps - v.xsi * dx) / xa,
        eta=-v.eta + (eps + v.eta * dx) / bx,
        mu=-v.mu + (eps - v.mu * dy) / v.y,
        zet=-v.zet + (eps - v.zet * dz) / v.z,
        s=-v.s + (eps - v.s * dlam) / v.lam,
    )


def _max_step(sp: Subproblem, v: _PD, d: _PD) -> float:
    """Largest step ≤ 1 that keeps every positive variable and x − α, β − x positive
    (1/1.01 of the distance to the boundary)."""
    worst = 1.0
    for val, dv in ((v.y, d.y), (v.lam, d.lam), (v.xsi, d.xsi), (v.eta, d.eta), (v.mu, d.mu), (v.s, d.s)):
        worst = max(worst, float(np.max(-1.01 * dv / val, initial=0.0)))
    worst = max(worst, -1.01 * d.z / v.z, -1.01 * d.zet / v.zet)
    worst = max(worst, float(np.max(-1.01 * d.x / (v.x - sp.alpha), initial=0.0)))
    worst = max(worst, float(np.max(1.01 * d.x / (sp.beta - v.x), initial=0.0)))
    return 1.0 / worst


# ----------------------------------------------------------------------------------------------
# the dual subproblem solver (a = 0, d > 0: the plain nonlinear-programming form)


@dataclass
class _DualPoint:
    """The minimiser (x, y) of the Lagrangian at multipliers λ, with what the dual iteration
    reuses: W(λ), ∇W, p̃ = p0 + Pᵀλ, q̃ = q0 + Qᵀλ, 1/(u − x), 1/(x − l)."""

    lam: np.ndarray
    x: np.ndarray
    y: np.ndarray
    W: float
    grad: np.ndarray
    pl: np.ndarray
    ql: np.ndarray
    inv_ux: np.ndarray
    inv_xl: np.ndarray


def _dual_point(sp: Subproblem, lam: np.ndarray) -> _DualPoint:
    """The minimiser (x, y) of the Lagrangian at multipliers λ ≥ 0, the dual function W(λ) and
    its gradient ∇W = g̃(x) − y − b.

    For fixed λ the Lagrangian separates: each x_j minimises ``p̃_j/(u_j − x) + q̃_j/(x − l_j)``
    (p̃ = p0 + Pᵀλ, q̃ = q0 + Qᵀλ), whose stationary point is the closed form
    ``x = (√p̃ l + √q̃ u)/(√p̃ + √q̃)`` (Svanberg 1987, eq. 24), clipped to [α, β] (the function
    is convex); each ``y_i = max(0, (λ_i − c_i)/d_i)``; z = 0 since a = 0.
    """
    pl = sp.p0 + lam @ sp.P
    ql = sp.q0 + lam @ sp.Q
    # in place where it is free: every temporary over n is a fresh allocation
    rp, rq = np.sqrt(pl), np.sqrt(ql)
    x = rp * sp.low
    x += rq * sp.upp
    rp += rq
    x /= rp
    np.maximum(x, sp.alpha, out=x)
    np.minimum(x, sp.beta, out=x)
    inv_ux = np.subtract(sp.upp, x, out=rp)
    np.reciprocal(inv_ux, out=inv_ux)
    inv_xl = np.subtract(x, sp.low, out=rq)
    np.reciprocal(inv_xl, out=inv_xl)
    y = np.maximum(lam - sp.c, 0.0) / sp.d
    grad = sp.P @ inv_ux + sp.Q @ inv_xl - y - sp.b
    W = float(pl @ inv_ux + ql @ inv_xl) + float(sp.c @ y + 0.5 * (sp.d * y) @ y - lam @ y - lam @ sp.b)
    return _DualPoint(lam, x, y, W, grad, pl, ql, inv_ux, inv_xl)


def _dual_hessian(sp: Subproblem, pt: _DualPoint) -> np.ndarray:
    """−∇²W (m × m, positive semi-definite) at λ: ``Σ_j G_j G_jᵀ / L''_j`` over the x_j strictly
    inside [α, β] (the others do not move with λ), plus 1/d_i where y_i > 0.

    G = ∂g̃/∂x (m × n) and L''_j = ∂²L/∂x_j² = 2 p̃_j/(u − x)³ + 2 q̃_j/(x − l)³, from
    dx/dλ = −G / L'' (implicit differentiation of the stationarity condition).
    """
    a2, b2 = pt.inv_ux * pt.inv_ux, pt.inv_xl * pt.inv_xl
    G = sp.P * a2 - sp.Q * b2
    curvature = 2.0 * (pt.pl * a2 * pt.inv_ux + pt.ql * b2 * pt.inv_xl)
    weight = np.where((pt.x > sp.alpha) & (pt.x < sp.beta), 1.0 / curvature, 0.0)
    H = (G * weight) @ G.T
    H[np.diag_indices_from(H)] += np.where(pt.lam > sp.c, 1.0 / sp.d, 0.0)
    return H


def dual_subsolve(sp: Subproblem, rtol: float = 1e-12, max_iterations: int = 200,
                  lam0: np.ndarray | None = None) -> SubproblemSolution | None:
    """Solve the MMA subproblem through its dual (Svanberg 1987, section 4), for a = 0 and d > 0.

    The dual function W(λ) = min_{x, y} L(x, y, λ) is concave and continuously differentiable on
    λ ≥ 0 with ∇W = g̃(x(λ)) − y(λ) − b (:func:`_dual_point`, x(λ) in closed form), so the
    subproblem reduces to an m-dimensional bound-constrained maximisation: a few passes over the
    n variables per step instead of the interior point's Newton systems over all its n-vectors.

    * m = 1: ∇W is continuous and non-increasing in λ; its root in λ ≥ 0 (or λ = 0 when
      ∇W(0) ≤ 0) is found by Newton's method safeguarded by bisection in a bracket.
    * m > 1: projected Newton (Bertsekas 1982) on the free multipliers with an Armijo search
      along the projection arc.

    The solution meets the subproblem's KKT conditions to rounding: x minimises the Lagrangian
    exactly, and ``|∇W_i| ≤ rtol·scale_i`` for λ_i > 0 (``∇W_i ≤`` that for λ_i = 0), scale_i the
    sum of the magnitudes of the terms of constraint i.

    Parameters
    ----------
    sp : Subproblem
    rtol : float
        Relative tolerance on ∇W (above).
    max_iterations : int
        Newton steps at most.
    lam0 : ndarray (m,), optional
        Starting multipliers (the previous MMA iteration's: they change little from one
        subproblem to the next, which saves most of the steps); default 0.

    Returns
    -------
    SubproblemSolution or None
        None when the iteration did not converge (the caller falls back to the interior point).
    """
    # A line-search trial far out along a Newton direction can overflow in the closed-form x(λ) and
    # W(λ); its non-finite W fails the Armijo test and the step is halved, so the overflow is an
    # expected intermediate, not an error, and must not reach the user's terminal as a warning.
    with np.errstate(over="ignore", invalid="ignore"):
        return _dual_subsolve(sp, rtol, max_iterations, lam0)


def _dual_subsolve(sp: Subproblem, rtol: float, max_iterations: int,
                   lam0: np.ndarray | None) -> SubproblemSolution | None:
    """The body of :func:`dual_subsolve` (under its floating-point error state)."""
    m = sp.a.size
    abs_P, abs_Q = np.abs(sp.P), np.abs(sp.Q)

    def tolerance(pt: _DualPoint) -> np.ndarray:
        return rtol * (abs_P @ pt.inv_ux + abs_Q @ pt.inv_xl + np.abs(sp.b) + pt.y) + 1e-300

    def solution(pt: _DualPoint, steps: int) -> SubproblemSolution:
        projected = np.where(pt.lam > 0.0, pt.grad, np.maximum(pt.grad, 0.0))
        return SubproblemSolution(x=pt.x, y=pt.y, z=0.0, lam=pt.lam, newton_steps=steps,
                                  residual=float(np.max(np.abs(projected), initial=0.0)))

    if m == 0:
        return solution(_dual_point(sp, np.zeros(0)), 0)
    if m == 1:
        return _dual_root(sp, tolerance, solution, max_iterations,
                          0.0 if lam0 is None else float(np.asarray(lam0).reshape(1)[0]))
    start = np.zeros(m) if lam0 is None else np.maximum(np.asarray(lam0, dtype=float).reshape(m), 0.0)
    pt = _dual_point(sp, start)
    for steps in range(max_iterations):
        projected = np.where(pt.lam > 0.0, pt.grad, np.maximum(pt.grad, 0.0))
        if np.all(np.abs(projected) <= tolerance(pt)):
            return solution(pt, steps)
        # multipliers at their bound whose gradient pushes outwards stay there for this step
        free = ~((pt.lam <= 0.0) & (pt.grad <= 0.0))
        H = _dual_hessian(sp, pt)
        direction = np.zeros(m)
        Hf = H[np.ix_(free, free)]
        Hf[np.diag_indices_from(Hf)] += 1e-14 * max(float(np.trace(Hf)), 1e-300)
        try:
            direction[free] = np.linalg.solve(Hf, pt.grad[free])
        except np.linalg.LinAlgError:
            direction[free] = 0.0
        if not np.all(np.isfinite(direction)) or direction @ pt.grad <= 0.0:
            # no usable curvature (every x at a step bound and y = 0): gradient ascent, scaled
            # by the largest curvature (the line search takes it from there)
            direction = np.where(free, pt.grad, 0.0) / max(float(np.max(np.diag(H))), 1e-300)
        t = 1.0
        size = np.linalg.norm(projected)
        for _ in range(60):
            trial = _dual_point(sp, np.maximum(pt.lam + t * direction, 0.0))
            # Armijo on W; near the solution W is flat to rounding (|ΔW| ~ 1e-16 |W| while ∇W is
            # still above the tolerance), so a step that shrinks the projected gradient counts too
            if trial.W >= pt.W + 1e-4 * float(pt.grad @ (trial.lam - pt.lam)) or (
                    np.linalg.norm(np.where(trial.lam > 0.0, trial.grad, np.maximum(trial.grad, 0.0))) < 0.5 * size):
                break
            t *= 0.5
        else:
            return None
        if np.array_equal(trial.lam, pt.lam):
            return None
        pt = trial
    return None


def _dual_root(sp: Subproblem, tolerance, solution, max_iterations: int, lam0: float) -> SubproblemSolution | None:
    """m = 1: the root of the non-increasing ∇W(λ) on λ ≥ 0 by Newton's method kept inside a
    bracket [lo, hi] with ∇W(lo) > 0 > ∇W(hi) (bisection where Newton would leave it), the
    bracket grown from ``lam0`` by factors of 4."""
    pt = _dual_point(sp, np.zeros(1))
    if pt.grad[0] <= tolerance(pt)[0]:
        return solution(pt, 0)  # the constraint is inactive
    lo, hi = 0.0, math.inf
    guess = lam0 if lam0 > 0.0 and math.isfinite(lam0) else 1.0
    steps = 1
    while steps < 200:  # ∇W(λ) → −∞ as λ grows (through y), so a bracket exists
        steps += 1
        pt = _dual_point(sp, np.array([guess]))
        if pt.grad[0] < 0.0:
            hi = guess
        else:
            lo = guess
        if math.isfinite(hi):
            break
        guess *= 4.0
    else:
        return None
    for steps in range(steps, steps + max_iterations):
        value = float(pt.lam[0])
        if abs(pt.grad[0]) <= tolerance(pt)[0] or hi - lo <= 4e-16 * hi:
            return solution(pt, steps)
        slope = -_dual_hessian(sp, pt)[0, 0]  # d∇W/dλ ≤ 0
        newton = value - pt.grad[0] / slope if slope < 0.0 else math.nan
        value = newton if lo < newton < hi else 0.5 * (lo + hi)
        pt = _dual_point(sp, np.array([value]))
        if pt.grad[0] > 0.0:
            lo = value
        else:
            hi = value
    return None


#: a level of the interior-point method ends early when its last _STALL_STEPS Newton steps
#: decreased the residual norm by less than _STALL_DECREASE (relative, in total)
_STALL_STEPS = 10
_STALL_DECREASE = 0.1


def subsolve(sp: Subproblem, epsimin: float = 1e-7, system: Literal["auto", "m", "n"] = "auto",
             max_newton: int = 200, max_halvings: int = 50,
             method: Literal["auto", "dual", "interior"] = "auto",
             lam0: np.ndarray | None = None) -> SubproblemSolution:
    """Solve the MMA subproblem: through its dual, or by the primal–dual interior-point method
    (Svanberg 2007, ``subsolv``).

    Parameters
    ----------
    sp : Subproblem
        The subproblem, n variables and m constraints.
    method : {"auto", "dual", "interior"}
        ``"dual"``: :func:`dual_subsolve` (needs a = 0 and d > 0, the form :class:`MMA` builds by
        default; exact to rounding and much faster on large problems); ``"interior"``: the
        interior-point method below; ``"auto"``: the dual where it applies and converges, else
        the interior point.
    lam0 : ndarray (m,), optional
        Starting multipliers for the dual solver (the interior point starts from its own point).
    epsimin : float
        Last value of the perturbation ε (the sequence is 1, 0.1, …, down to ``epsimin``).
    system : {"auto", "m", "n"}
        Which Newton system to solve: the (m + 1)-square one in (dλ, dz), the (n + 1)-square
        one in (dx, dz), or ``"auto"``: the smaller (m + 1 when n > m).
    max_newton : int
        Newton iterations per ε level at most.
    max_halvings : int
        Step halvings per Newton iteration at most.

    Returns
    -------
    SubproblemSolution
    """
    n, m = sp.p0.size, sp.a.size
    if method not in ("auto", "dual", "interior"):
        raise ValueError(f"method = {method!r}; allowed: 'auto', 'dual', 'interior'")
    dual_applies = bool(np.all(sp.a == 0.0) and np.all(sp.d > 0.0))
    if method == "dual" and not dual_applies:
        raise ValueError("the dual subproblem solver needs a = 0 and d > 0")
    if method != "interior" and dual_applies:
        sol = dual_subsolve(sp, lam0=lam0)
        if sol is not None:
            return sol
        if method == "dual":
            raise RuntimeError("the dual MMA subproblem solver did not converge")
        logger.debug("MMA subproblem: the dual iteration did not converge; interior point instead")
    if system == "auto":
        system = "m" if n > m else "n"
    x = 0.5 * (sp.alpha + sp.beta)
    v = _PD(
        x=x, y=np.ones(m), z=1.0, lam=np.ones(m),
        xsi=np.maximum(1.0 / (x - sp.alpha), 1.0), eta=np.maximum(1.0 / (sp.beta - x), 1.0),
        mu=np.maximum(1.0, 0.5 * sp.c), zet=1.0, s=np.ones(m),
    )
    levels = max(0, int(math.ceil(-math.log10(epsimin) - 1e-9)))
    steps = stalled = 0
    res_max = math.inf
    for k in range(levels + 1):
        eps = 10.0 ** (-k)
        res_norm, res_max = _residual(sp, v, eps)
        it = 0
        recent = [res_norm]
        while res_max > 0.9 * eps and it < max_newton:
            if len(recent) > _STALL_STEPS and recent[-1] > (1.0 - _STALL_DECREASE) * recent[-1 - _STALL_STEPS]:
                # crawling: on badly scaled subproblems (coefficients of 1e14 next to the
                # objective's 1) the absolute tolerance is below the rounding floor and the
                # iteration would spend max_newton steps on every ε level
                stalled += 1
                break
            it += 1
            d = _newton_direction(sp, v, eps, system)
            t = _max_step(sp, v, d)
            for _ in range(max_halvings):
                trial = v.moved(d, t)
                new_norm, new_max = _residual(sp, trial, eps)
                if new_norm < res_norm:
                    break
                t *= 0.5
            else:
                # no decrease even for tiny steps: the residual is at its rounding floor (the
                # tolerance is absolute, and badly scaled subproblems, with coefficients of 1e16
                # next to the asymptote, cannot meet it); more Newton steps cannot help
                stalled += 1
                break
            v, res_norm, res_max = trial, new_norm, new_max
            recent.append(res_norm)
        steps += it
    if stalled:
        logger.debug("MMA subproblem: the residual stalled at %.3g on %d of %d ε levels", res_max, stalled, levels + 1)
    return SubproblemSolution(x=v.x, y=v.y, z=float(v.z), lam=v.lam, newton_steps=steps, residual=res_max)


# ----------------------------------------------------------------------------------------------
# the outer method


def _copy(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """A float copy of ``a`` (None stays None)."""
    return None if a is None else np.array(a, dtype=float)


class MMA:
    """Svanberg's MMA (1987; the 2007 ``mmasub``) with a move limit: one evaluation per iteration.

    Parameters
    ----------
    n, m : int
        Number of variables and of constraints ``f_i(x) ≤ 0`` (m may be 0).
    lower, upper : float or ndarray (n,)
        Finite bounds x_min ≤ x_max. Variables with x_min = x_max stay fixed.
    move : float or ndarray (n,)
        Move limit: no variable moves by more than ``move·(x_max − x_min)`` per iteration
        (Svanberg's note uses 0.5; top-opt codes commonly 0.1–0.2); an array gives each variable
        its own fraction (e.g. an auxiliary bound variable whose range is much wider than its
        sensible step).
    c : float or ndarray (m,)
        Cost c_i of the artificial variables y_i (1000): large enough that y = 0 at the solution
        of feasible problems; raise it when the objective is large (say f₀ ≫ 100) or the
        constraints are badly scaled.
    d : float or ndarray (m,)
        Quadratic cost d_i of y_i (1).
    a0 : float
        Cost of z (1).
    a : float or ndarray (m,)
        Coefficients a_i of z in the constraints (0: plain nonlinear programming).
    asyinit, asyincr, asydecr : float
        Initial asymptote distance as a fraction of the range; growth and shrink factors.
    asymin, asymax : float
        Bounds of the asymptote distances as fractions of the range (0.01, 10).
    albefa : float
        Step bounds α, β lie this fraction of the way from x towards the asymptotes (0.1).
    raa0 : float
        Regularisation of p and q (1e-5), divided by the range.
    epsimin : float
        Final ε of the interior-point subproblem solver (1e-7).
    initial_asymptote : float or ndarray (n,), optional
        Initial asymptote distance s₀ (absolute) of the first two iterations; None:
        ``asyinit·(x_max − x_min)``. The first steps are then at most ``0.9·s₀``.
    subproblem_solver : {"auto", "dual", "interior"}
        How each subproblem is solved (:func:`subsolve`): ``"auto"`` (default) through its dual
        when a = 0 (the dual is exact to rounding and much faster on large problems; it
        starts from the previous iteration's multipliers), else by the interior-point method.

    Attributes
    ----------
    iteration : int
        Iterations since construction or the last :meth:`reset`.
    low, upp : ndarray (n,)
        Asymptotes of the last iteration.
    xold1, xold2 : ndarray (n,) or None
        The previous two iterates.
    last : SubproblemSolution or None
        The last subproblem's solution (y > 0: a constraint was relaxed).
    """

    def __init__(self, n: int, m: int, lower: ArrayLike, upper: ArrayLike, *, move: float = 0.5,
                 c: ArrayLike = 1000.0, d: ArrayLike = 1.0, a0: float = 1.0, a: ArrayLike = 0.0,
                 asyinit: float = 0.5, asyincr: float = 1.2, asydecr: float = 0.7,
                 asymin: float = 0.01, asymax: float = 10.0, albefa: float = 0.1, raa0: float = 1e-5,
                 epsimin: float = 1e-7, initial_asymptote: Optional[ArrayLike] = None,
                 subproblem_solver: Literal["auto", "dual", "interior"] = "auto") -> None:
        if n < 1 or m < 0:
            raise ValueError(f"MMA needs n >= 1 and m >= 0, got n = {n}, m = {m}")
        self.n, self.m = int(n), int(m)
        self.lower = np.broadcast_to(np.asarray(lower, dtype=float), (n,)).copy()
        self.upper = np.broadcast_to(np.asarray(upper, dtype=float), (n,)).copy()
        if not (np.all(np.isfinite(self.lower)) and np.all(np.isfinite(self.upper))):
            raise ValueError("MMA needs finite bounds")
        if np.any(self.lower > self.upper):
            raise ValueError("MMA needs lower <= upper")
        move_array = np.broadcast_to(np.asarray(move, dtype=float), (n,))
        if not np.all((move_array > 0) & np.isfinite(move_array)):
            raise ValueError(f"move = {move!r}; allowed: finite numbers > 0")
        self.move = move_array.copy()
        self.c = np.broadcast_to(np.asarray(c, dtype=float), (m,)).copy()
        self.d = np.broadcast_to(np.asarray(d, dtype=float), (m,)).copy()
        self.a = np.broadcast_to(np.asarray(a, dtype=float), (m,)).copy()
        self.a0 = float(a0)
        self.asyinit, self.asyincr, self.asydecr = float(asyinit), float(asyincr), float(asydecr)
        self.asymin, self.asymax = float(asymin), float(asymax)
        self.albefa, self.raa0, self.epsimin = float(albefa), float(raa0), float(epsimin)
        if subproblem_solver not in ("auto", "dual", "interior"):
            raise ValueError(f"subproblem_solver = {subproblem_solver!r}; allowed: 'auto', 'dual', 'interior'")
        self.subproblem_solver = subproblem_solver
        self.range = self.upper - self.lower
        free = self.range > 0
        # variables with x_min = x_max are left out of the subproblem (zero asymptote distance)
        self._free: Union[slice, np.ndarray] = slice(None) if bool(np.all(free)) else free
        self.low = self.lower - self.asyinit * self.range
        self.upp = self.upper + self.asyinit * self.range
        self.iteration = 0
        self.xold1: Optional[np.ndarray] = None
        self.xold2: Optional[np.ndarray] = None
        self.last: Optional[SubproblemSolution] = None
        self._initial = self._initial_distance(initial_asymptote)

    def _initial_distance(self, initial_asymptote: Optional[ArrayLike]) -> np.ndarray:
        if initial_asymptote is None:
            return self.asyinit * self.range
        s0 = np.broadcast_to(np.asarray(initial_asymptote, dtype=float), (self.n,)).copy()
        if not np.all(np.isfinite(s0[self._free]) & (s0[self._free] > 0)):
            raise ValueError("initial_asymptote must be finite and > 0")
        return s0

    def reset(self, initial_asymptote: Optional[ArrayLike] = None) -> None:
        """Forget the iterates: the next two iterations use fresh asymptotes.

        Parameters
        ----------
        initial_asymptote : float or ndarray (n,), optional
            Initial asymptote distance s₀ (see the class docstring); None: ``asyinit·range``.
        """
        self.iteration = 0
        self.xold1 = self.xold2 = None
        self.last = None
        self._initial = self._initial_distance(initial_asymptote)

    def state(self) -> dict:
        """Everything the next :meth:`step` depends on besides its arguments (arrays copied).

        With :meth:`set_state` on an MMA built with the same arguments, the iterations continue
        bitwise as if never interrupted (checkpoints of :func:`fem_eigopt.optimize.driver.minimize`).

        Returns
        -------
        dict
            ``n``, ``m``, ``iteration``, the asymptotes ``low``, ``upp`` (n,), the previous
            iterates ``xold1``, ``xold2`` (n,) or None, ``initial`` (n,) the initial asymptote
            distance of the first two iterations, and ``last``, the last subproblem's
            :class:`SubproblemSolution` or None (its multipliers start the next dual solve).
        """
        return {"n": self.n, "m": self.m, "iteration": int(self.iteration), "low": _copy(self.low),
                "upp": _copy(self.upp), "xold1": _copy(self.xold1), "xold2": _copy(self.xold2),
                "initial": _copy(self._initial), "last": self.last}

    def set_state(self, state: dict) -> None:
        """Continue from a :meth:`state` (of an MMA with the same n, m, bounds and settings).

        Raises
        ------
        ValueError
            The state belongs to another problem size.
        """
        if int(state["n"]) != self.n or int(state["m"]) != self.m:
            raise ValueError(f"MMA state of n = {state['n']}, m = {state['m']}; this MMA has n = {self.n}, m = {self.m}")

        self.iteration = int(state["iteration"])
        self.low, self.upp = _copy(state["low"]), _copy(state["upp"])
        self.xold1, self.xold2 = _copy(state["xold1"]), _copy(state["xold2"])
        self._initial = _copy(state["initial"])
        self.last = state["last"]

    def step(self, x: np.ndarray, f: float, df: np.ndarray, g: np.ndarray, dg: np.ndarray) -> np.ndarray:
        """One MMA iteration: the next iterate from the values and gradients at x.

        Parameters
        ----------
        x : ndarray (n,)
            Current iterate, within the bounds.
        f : float
            Objective f₀(x).
        df : ndarray (n,)
            Its gradient.
        g : ndarray (m,)
            Constraint values f_i(x) (feasible: ≤ 0).
        dg : ndarray (m, n)
            Constraint Jacobian ∂f_i/∂x_j.

        Returns
        -------
        ndarray (n,)
            The next iterate (the solution of the subproblem), within the bounds and the move
            limit.
        """
        n, m = self.n, self.m
        x = np.asarray(x, dtype=float).reshape(n)
        df = np.asarray(df, dtype=float).reshape(n)
        g = np.asarray(g, dtype=float).reshape(m)
        dg = np.asarray(dg, dtype=float).reshape(m, n)
        self.iteration += 1
        k = self.iteration
        j = self._free
        xf = x[j]
        rng = self.range[j]
        if k <= 2:
            dist = self._initial[j]
            low, upp = xf - dist, xf + dist
        else:
            old1, old2 = self.xold1[j], self.xold2[j]
            # a step of rounding size is no trend (see "Steps shorter than STILL" above)
            still = STILL * rng
            step1, step2 = xf - old1, old1 - old2
            trend = np.where((np.abs(step1) <= still) | (np.abs(step2) <= still), 0.0, step1 * step2)
            gamma = np.where(trend > 0, self.asyincr, np.where(trend < 0, self.asydecr, 1.0))
            low = np.clip(xf - gamma * (old1 - self.low[j]), xf - self.asymax * rng, xf - self.asymin * rng)
            upp = np.clip(xf + gamma * (self.upp[j] - old1), xf + self.asymin * rng, xf + self.asymax * rng)
        alpha = np.maximum.reduce([self.lower[j], low + self.albefa * (xf - low), xf - self.move[j] * rng])
        beta = np.minimum.reduce([self.upper[j], upp - self.albefa * (upp - xf), xf + self.move[j] * rng])

        ux, xl = upp - xf, xf - low
        ux2, xl2 = ux**2, xl**2
        reg = self.raa0 / np.maximum(rng, 1e-5)

        def coefficients(grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            pos = np.maximum(grad, 0.0)
            neg = np.maximum(-grad, 0.0)
            small = 0.001 * (pos + neg) + reg
            return (pos + small) * ux2, (neg + small) * xl2

        p0, q0 = coefficients(df[j])
        P, Q = coefficients(dg[:, j])
        b = P @ (1.0 / ux) + Q @ (1.0 / xl) - g
        sp = Subproblem(low=low, upp=upp, alpha=alpha, beta=beta, p0=p0, q0=q0, P=P, Q=Q,
                        a0=self.a0, a=self.a, b=b, c=self.c, d=self.d)
        sol = subsolve(sp, self.epsimin, method=self.subproblem_solver,
                       lam0=None if self.last is None else self.last.lam)
        self.last = sol

        x_new = x.copy()
        x_new[j] = np.clip(sol.x, alpha, beta)
        self.low[j], self.upp[j] = low, upp
        self.xold2 = self.xold1
        self.xold1 = x.copy()
        logger.debug("MMA iteration %d: %d Newton steps, residual %.2e, max y %.3g, z %.3g, |dx| %.3e",
                     k, sol.newton_steps, sol.residual, float(np.max(sol.y, initial=0.0)), sol.z,
                     float(np.max(np.abs(x_new - x))))
        return x_new
