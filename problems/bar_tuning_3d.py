"""Marimba bar tuning in 3D: the undercut of ``bar_tuning.py`` on a solid hexahedral model, with the
first torsional mode kept away from the tuned partials.

Model: the bar as a 3D solid (x along the length, y through the thickness, z across the width),
free–free (six rigid-body modes skipped), quadratic hexahedra (``hex2``), the same isotropic wood
and the same design as ``bar_tuning.py`` (symmetric clamped cubic B-spline underside profile,
constant across the width, bounds ``[min_thickness, thickness]`` that keep every element valid).

Mode identity: the tuned partials are the first elastic modes moving mostly vertically (y) and
symmetric about the bar's mid-plane z = width/2 (vertical bending); the first torsional mode is the
first one moving mostly vertically but antisymmetric about that plane (torsion twists the section,
so its vertical motion changes sign across the width) — what a 2D side view cannot see. Both are
followed by MAC. Objective: min max |cents| of the three bending partials
(:class:`fem_eigopt.TuningCents`); constraint: the torsional mode at least ``torsion_cents`` from
each of them (:class:`fem_eigopt.KeepAwayCents`; it keeps the side of each partial it starts on).

Mesh: ``nx × ny × nz`` hex2 elements. The resolution along the length matters most (chords of
the curved undercut): analysing one tuned design on 40 → 80 elements along the length moved the
partials by −4.4, −5.5, −0.1 cents, on 3 → 6 through the thickness by < 0.1 cents, on 2 → 4
across the width by about −1 to −1.5 cents. With the defaults (60 × 2 × 2) the tuned bar
re-analysed on the refined mesh (120 × 4 × 4) is within −3.0, −4.2, −1.3 cents and the torsional
mode 123 cents below the second partial.
"""

from __future__ import annotations

import numpy as np

import fem_eigopt as fe


def problem(length: float = 0.42, thickness: float = 0.022, width: float = 0.06, E: float = 20e9,
            nu: float = 0.3, density: float = 1050.0, f1: float = 220.0, ratios: str = "1:4:10",
            n_controls: int = 6, fixed_ends: int = 2, min_thickness: float = 0.004, initial_depth: float = 0.6,
            initial_width: float = 0.5, torsion_cents: float = 100.0, nx: int = 60, ny: int = 2, nz: int = 2,
            element: str = "hex2", n_modes: int = 16, max_eval: int = 150):
    if not (0 < min_thickness < thickness):
        raise fe.InputError(f"min_thickness = {min_thickness!r}; allowed: 0 < min_thickness < thickness = {thickness}")
    if not (isinstance(n_controls, int) and n_controls >= 3):
        raise fe.InputError(f"n_controls = {n_controls!r}; allowed: an integer >= 3")
    if not (isinstance(fixed_ends, int) and fixed_ends >= 0):
        raise fe.InputError(f"fixed_ends = {fixed_ends!r}; allowed: an integer >= 0")
    r = fe.parse_ratios(ratios)
    if r.size != 3:
        raise fe.InputError(f"ratios = {ratios!r}; allowed: three partial ratios such as '1:4:10' or '1:3:6'")
    mesh = fe.box(length, thickness, width, nx, ny, nz)
    n_coef = 2 * (n_controls + fixed_ends) - 1
    shape_map = fe.ProfileShapeMap(mesh, np.linspace(0.0, length, n_coef - 2), kind="bspline", along=0, across=1,
                                   fixed="top", symmetric=True, fixed_ends=fixed_ends)

    def arch(x: np.ndarray) -> np.ndarray:
        u = (x - 0.5 * length) / (0.5 * initial_width * length)
        return thickness * (1.0 - initial_depth * np.clip(1.0 - u**2, 0.0, None))

    initial = np.clip(shape_map.fit_parameters(arch), min_thickness, thickness)
    mirror = (2, 0.5 * width)
    return fe.Problem(
        mesh=mesh,
        element=element,
        material=fe.Material(E=E, nu=nu, density=density, model="solid"),
        supports=(),
        analysis=fe.Analysis(n_modes=n_modes),
        design=fe.ShapeDesign(shape_map, initial=initial, lower=min_thickness, upper=thickness,
                              names=[f"h{j + 1}" for j in range(shape_map.n_params)]),
        objective=fe.TuningCents(targets_hz=tuple(float(f1 * ri) for ri in r), rigid_body_modes=6, direction=1,
                                 mirror=mirror),
        constraints=[fe.KeepAwayCents(min_cents=torsion_cents, direction=1, mirror=mirror, parity=-1,
                                      rigid_body_modes=6)],
        optimizer=fe.OptimizerSettings(max_eval=max_eval, xtol_rel=0.0, ftol_rel=0.0,
                                       # design variables scaled to [0, 1]: stop when they move < 1e-6
                                       stagnation_tol=1e-6, stagnation_evals=5),
        description=f"3D marimba bar {length * 1e3:.0f} × {width * 1e3:.0f} × {thickness * 1e3:.0f} mm tuned to "
                    f"{ratios} on f1 = {f1:g} Hz, torsion ≥ {torsion_cents:g} cents from every partial",
    )
