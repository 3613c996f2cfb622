"""Du & Olhoff (2007) beam: maximise the fundamental eigenfrequency of a plane-stress beam.

N. Du, N. Olhoff, "Topological design of freely vibrating continuum structures for maximum values of
simple and multiple eigenfrequencies and frequency gaps", Struct. Multidisc. Optim. 34:91–110 (2007).

Domain 8 × 1 (consistent units), unit thickness, plane stress, E0 = 1e7, ν = 0.3, ρ0 = 1.
Design: element densities in [1e-3, 1], uniform start 0.5, SIMP E = x³ E0, two-range mass law
(ρ = x ρ0 above x = 0.1, ∝ x⁶ below), volume fraction ≤ 0.5, objective max ω1 by the bound
formulation over the first ``n_bound`` modes (the optimum is bimodal).

supports:
    "SS": both end cross-sections pinned at their mid-height node (u_x = u_y = 0 there; with an
          odd ``ny`` the two nodes nearest to mid-height);
    "CC": both end edges fully clamped.

Published: initial ω1 = 68.7 rad/s (SS), 146.1 rad/s (CC); optima ω1 = 174.7 (SS) and
456.4 rad/s (CC), both double eigenvalues (Du & Olhoff 2007, Fig. 3). The paper states neither
the mesh nor a filter: the defaults here are our choice (see docs/du-olhoff.md): 160 × 20 quads,
density filter of radius 1.5 elements, Heaviside projection (η = 0.5; Wang, Lazarov & Sigmund
2011) with β = 1 doubled every 100 evaluations up to 16, each β change restarting MMA with
density steps ≤ 0.1, volume kept in [0.999, 1] × volfrac (a floor against the spurious void
optimum of the two-range mass law), 1600 evaluations. The bound formulation is the default
because the optimum is bimodal: maximising λ1 alone stalls where λ1 and λ2 meet, and without
the projection the designs stay grey. The runs are sensitive to rounding (the optimum is a
double eigenvalue reached through a chaotic MMA path), so the last digits of a result depend on
the machine and the linear-algebra libraries.

Parameters: ``beta = 0`` switches the projection off; ``method`` = "bound" (default), "ks",
"pnorm" (aggregates of the first ``n_bound`` eigenvalues) or "simple" (max λ1 alone, for comparison).
"""

import fem_eigopt as fe


def problem(nx: int = 160, ny: int = 20, supports: str = "SS", element: str = "quad1",
            volfrac: float = 0.5, n_modes: int = 6, n_bound: int = 2, filter_radius: float | None = None,
            method: str = "bound", max_eval: int = 1600, beta: float = 1.0, beta_max: float = 16.0,
            beta_every: int = 100, restart_step: float | None = 0.1, min_volfrac: float | None = None):
    if supports not in ("SS", "CC"):
        raise fe.InputError(f"supports = {supports!r}; allowed: 'SS', 'CC'")
    length, height = 8.0, 1.0
    if supports == "SS":
        # Pin the node at mid-height (even ny); with odd ny no node is there and the two nodes
        # nearest to it are pinned instead (a pin of one element's height).
        tol = 0.5 * height / ny * (1 + 1e-9)
        fixed = (fe.Support(fe.at_point((0.0, height / 2), tol)), fe.Support(fe.at_point((length, height / 2), tol)))
    else:
        fixed = (fe.Support("left"), fe.Support("right"))
    if method == "simple":
        objective = fe.MaxEigenvalue(mode=1)
    else:
        objective = fe.MaxMinEigenvalues(n=n_bound, method=method)
    return fe.Problem(
        mesh=fe.rectangle(length, height, nx, ny),
        element=element,
        material=fe.Material(E=1e7, nu=0.3, density=1.0, model="plane_stress", thickness=1.0),
        supports=fixed,
        analysis=fe.Analysis(n_modes=n_modes),
        design=fe.DensityDesign(initial=volfrac, x_min=1e-3, stiffness=fe.SIMP(3.0), mass=fe.TwoRangeMass(0.1),
                                filter="density", filter_radius=filter_radius, projection_beta=beta,
                                beta_max=beta_max, beta_every=beta_every),
        objective=objective,
        # The lower volume bound only blocks the spurious all-void optimum of the two-range mass
        # law (see fe.VolumeConstraint); it is inactive at the optima.
        constraints=[fe.VolumeConstraint(volfrac, min_fraction=min_volfrac or 0.999 * volfrac)],
        optimizer=fe.OptimizerSettings(max_eval=max_eval, xtol_rel=0.0, ftol_rel=0.0, restart_step=restart_step,
                                       stagnation_tol=1e-6, stagnation_evals=5),
        description=f"Du & Olhoff (2007) beam, {supports}",
    )
