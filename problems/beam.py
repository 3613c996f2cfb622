"""Du & Olhoff (2007) beam: maximise the fundamental eigenfrequency of a plane-stress beam.

N. Du, N. Olhoff, "Topological design of freely vibrating continuum structures for maximum values of
simple and multiple eigenfrequencies and frequency gaps", Struct. Multidisc. Optim. 34:91–110 (2007).

Domain 8 × 1 (consistent units), unit thickness, plane stress, E0 = 1e7, ν = 0.3, ρ0 = 1.
Design: element densities in [1e-3, 1], uniform start 0.5, SIMP E = x³ E0, two-range mass law
(ρ = x ρ0 above x = 0.1, ∝ x⁶ below), volume fraction ≤ 0.5, objective max ω1 by the bound
formulation over the first ``n_bound`` modes (the optimum is bimodal).

supports:
    two letters, the left and the right end: ``C`` the end edge clamped, ``S`` the end
    cross-section pinned at its mid-height node (u_x = u_y = 0 there; with an odd ``ny`` and
    linear elements the two nodes nearest to mid-height), ``F`` free. ``SS`` and ``CC`` are
    Du & Olhoff's cases; ``CS``, ``CF`` (a cantilever) and the others run through the same
    defaults. ``FF`` has rigid-body modes and is refused.

Published: initial ω1 = 68.7 rad/s (SS), 146.1 rad/s (CC); optima ω1 = 174.7 (SS) and
456.4 rad/s (CC), both double eigenvalues (Du & Olhoff 2007, Fig. 3). The paper states neither
the mesh nor a filter: 160 × 20 quads and the library's defaults (density filter of 1.5
elements, our MMA carried through the β continuation of the Heaviside projection) are our
choice; docs/du-olhoff.md has the results under several linear-algebra code paths.

erosion:
    Δ of the robust formulation (``fe.DensityDesign.erosion``): the design eroded to threshold
    0.5 + Δ must reach the same bound. Without it the optimum keeps members thinner than an
    element at the projection threshold, grey (intermediate densities a real beam cannot have);
    with Δ = 0.1 every member is solid through its core and the design black and white, at a
    few per cent of ω1 and two eigen solves per evaluation. ``erosion=0`` switches it off.

Parameters: ``beta = 0`` switches the projection off (and with it the erosion); ``method`` = "bound" (default), "ks",
"pnorm" (aggregates of the first ``n_bound`` eigenvalues) or "simple" (max λ1 alone, for comparison).
"""

import fem_eigopt as fe

END_CONDITIONS = "CSF"


def _end_support(condition: str, x: float, height: float, ny: int, element: str) -> fe.Support:
    """The support of one end: clamped edge (C) or pin at mid-height (S)."""
    if condition == "C":
        return fe.Support("left" if x == 0.0 else "right")
    # Pin the node at mid-height: a vertex with an even ny, the edge's middle node of a quadratic
    # element with an odd one. Linear elements and an odd ny have no node there: the two nodes
    # nearest to it are pinned instead (a pin of one element's height).
    h = height / ny
    node_at_mid_height = ny % 2 == 0 or not element.endswith("1")
    tol = 0.25 * h if node_at_mid_height else 0.5 * h * (1 + 1e-9)
    return fe.Support(fe.at_point((x, height / 2), tol))


def _planes(symmetry: str, ends: str, length: float, height: float) -> tuple:
    """Mirror planes of the design: ``x`` (mid-span; only for equal end conditions), ``y`` (mid-height)."""
    if any(c not in "xy" for c in symmetry):
        raise fe.InputError(f"symmetry = {symmetry!r}; allowed: 'xy', 'x', 'y' or '' (none)")
    planes = []
    if "x" in symmetry and ends[0] == ends[1]:
        planes.append(("x", length / 2))
    if "y" in symmetry:
        planes.append(("y", height / 2))
    return tuple(planes)


def problem(nx: int = 160, ny: int = 20, supports: str = "SS", element: str = "quad1",
            volfrac: float = 0.5, n_modes: int = 6, n_bound: int = 2, filter_radius: float | None = None,
            method: str = "bound", max_eval: int = 600, beta: float = 1.0, beta_max: float = 16.0,
            symmetry: str = "xy", erosion: float = 0.1):
    ends = supports.upper() if isinstance(supports, str) else ""
    if len(ends) != 2 or any(c not in END_CONDITIONS for c in ends) or ends == "FF":
        raise fe.InputError(f"supports = {supports!r}; allowed: two of C (clamped), S (pinned), F (free) "
                            "for the left and right ends, e.g. 'SS', 'CC', 'CS', 'CF' (not 'FF')")
    length, height = 8.0, 1.0
    fixed = tuple(_end_support(c, x, height, ny, element) for c, x in zip(ends, (0.0, length)) if c != "F")
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
                                beta_max=beta_max, symmetry=_planes(symmetry, ends, length, height),
                                erosion=erosion if beta > 0 else 0.0),
        objective=objective,
        # The lower volume bound only blocks the spurious all-void optimum of the two-range mass
        # law (see fe.VolumeConstraint); it is inactive at the optima.
        constraints=[fe.VolumeConstraint(volfrac, min_fraction=0.999 * volfrac)],
        optimizer=fe.OptimizerSettings(max_eval=max_eval),
        description=f"Du & Olhoff (2007) beam, {ends}",
    )
