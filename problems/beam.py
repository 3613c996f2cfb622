"""Du & Olhoff (2007) beam: maximise the fundamental eigenfrequency of a plane-stress beam.

N. Du, N. Olhoff, "Topological design of freely vibrating continuum structures for maximum values of
simple and multiple eigenfrequencies and frequency gaps", Struct. Multidisc. Optim. 34:91–110 (2007).

Domain 8 × 1 (consistent units), unit thickness, plane stress, E0 = 1e7, ν = 0.3, ρ0 = 1.
Initial design: uniform density 0.5, SIMP E = x³ E0, mass ρ = x ρ0 (two-range law below x = 0.1).

supports:
    "SS": both end cross-sections pinned at their mid-height node (u_x = u_y = 0 there);
    "CC": both end edges fully clamped.

Published initial fundamental frequencies: ω1 = 68.7 rad/s (SS), 146.1 rad/s (CC).
"""

import fem_eigopt as fe


def problem(nx: int = 160, ny: int = 20, supports: str = "SS", element: str = "quad1",
            volfrac: float = 0.5, n_modes: int = 6):
    if supports not in ("SS", "CC"):
        raise fe.InputError(f"supports = {supports!r}; allowed: 'SS', 'CC'")
    if ny % 2:
        raise fe.InputError(f"ny = {ny}; allowed: an even number (the SS supports sit at mid-height nodes)")
    length, height = 8.0, 1.0
    if supports == "SS":
        fixed = (fe.Support(fe.at_point((0.0, height / 2))), fe.Support(fe.at_point((length, height / 2))))
    else:
        fixed = (fe.Support("left"), fe.Support("right"))
    return fe.Problem(
        mesh=fe.rectangle(length, height, nx, ny),
        element=element,
        material=fe.Material(E=1e7, nu=0.3, density=1.0, model="plane_stress", thickness=1.0),
        supports=fixed,
        analysis=fe.Analysis(n_modes=n_modes),
        design=fe.DensityDesign(initial=volfrac, x_min=1e-3, stiffness=fe.SIMP(3.0), mass=fe.TwoRangeMass(0.1)),
        description=f"Du & Olhoff (2007) beam, {supports}",
    )
