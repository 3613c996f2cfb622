"""Marimba bar tuning: undercut a free–free wooden bar until its first three vertical bending
partials sit at 1 : 4 : 10 (xylophone: ``ratios="1:3:6"``) above a target fundamental.

Model: 2D plane stress side view (x along the length, y through the thickness, the bar's width as
the plane-stress thickness), free–free (no supports: the three rigid-body modes are skipped),
isotropic linear elastic wood with the modulus along the grain. Design: the underside profile
h(x) of the bar (the top stays flat), a clamped cubic B-spline symmetric about mid-span with
``n_controls`` independent coefficients between ``min_thickness`` and ``thickness`` (no material
added). The B-spline lies between its coefficients (convex-hull property), so these bounds keep
h(x) ≥ ``min_thickness`` > 0 everywhere and every element valid during the whole run.

Objective: the tuning errors c_j = 1200 log2(f_j / f*_j) (cents) of the three vertical bending
partials, min max |c_j| by the bound formulation (:class:`fem_eigopt.TuningCents`); the partials
are the first elastic modes with mostly vertical motion at the start and are followed by MAC.

Defaults: the A3 bar of a marimba (f1 = 220 Hz, equal temperament with A4 = 440 Hz), 450 mm × 60
mm × 22 mm, of Honduras rosewood (Dalbergia stevensonii), the traditional marimba wood: air-dry
density 930–1090 kg/m³ (USDA Forest Products Laboratory, *Wood Technical Fact Sheet: Dalbergia
stevensonii*; Chudnoff, *Tropical Timbers of the World*, 1984) — 1050 kg/m³ here; Young's modulus
along the grain E = 20 GPa, a representative value for dense rosewoods (an assumption: the fact
sheet gives no mechanical data, and a real bar's E should be measured from its uniform-bar
frequency). Wood is orthotropic (its shear modulus along the grain is ~E/15, not E/2.6 as for
the isotropic ν = 0.3 used here), so the shear correction of the upper partials is smaller here
than in a real bar; the tuning method is the same. A uniform bar has partials 1 : 2.76 : 5.40
(Euler–Bernoulli); the undercut lowers the fundamental most (it bends most at mid-span) and
brings the ratios to 1 : 4 : 10 — the standard marimba tuning (Bork, "Practical tuning of
xylophone bars and resonators", Applied Acoustics 46, 1995, 103–127).

Start: a rough parabolic undercut (``initial_depth`` · thickness deep, ``initial_width`` · length
wide) fitted by the B-spline; from the uniform bar MMA was seen to stall in local optima with
narrow notches. ``fixed_ends`` coefficients at each end stay at the full thickness. The default
length is chosen so that 1:4:10 on A3 needs a moderate undercut (for a given profile shape f1 ∝
thickness / length²).

Mesh: ``nx × ny`` quadratic quadrilaterals (``quad2``: no shear locking in bending). The element
edges are straight, so the curved undercut is followed by chords; the along-the-length resolution
matters most. The run re-analyses the tuned bar on a mesh twice as fine
(:func:`fem_eigopt.refined_analysis`): with the defaults the partials move by −2.0, −2.4,
+0.1 cents (1:4:10) and −1.0, −1.3, −1.7 cents (1:3:6), inside the ±5 cents asked for.
"""

from __future__ import annotations

import numpy as np

import fem_eigopt as fe


def problem(length: float = 0.42, thickness: float = 0.022, width: float = 0.06, E: float = 20e9,
            nu: float = 0.3, density: float = 1050.0, f1: float = 220.0, ratios: str = "1:4:10",
            n_controls: int = 6, fixed_ends: int = 2, min_thickness: float = 0.004, initial_depth: float = 0.6, initial_width: float = 0.5, nx: int = 60, ny: int = 4,
            element: str = "quad2", max_eval: int = 200, method: str = "bound"):
    if not (0 < min_thickness < thickness):
        raise fe.InputError(f"min_thickness = {min_thickness!r}; allowed: 0 < min_thickness < thickness = {thickness}")
    if not (isinstance(n_controls, int) and n_controls >= 3):
        raise fe.InputError(f"n_controls = {n_controls!r}; allowed: an integer >= 3")
    if not (isinstance(fixed_ends, int) and fixed_ends >= 0):
        raise fe.InputError(f"fixed_ends = {fixed_ends!r}; allowed: an integer >= 0")
    r = fe.parse_ratios(ratios)
    if r.size != 3:
        raise fe.InputError(f"ratios = {ratios!r}; allowed: three partial ratios such as '1:4:10' or '1:3:6'")
    mesh = fe.rectangle(length, thickness, nx, ny)
    # symmetric clamped cubic B-spline: 2 n_controls − 1 coefficients, 2 n_controls − 3 breakpoints
    n_coef = 2 * (n_controls + fixed_ends) - 1
    breakpoints = np.linspace(0.0, length, n_coef - 2)
    shape_map = fe.ProfileShapeMap(mesh, breakpoints, kind="bspline", fixed="top", symmetric=True,
                                   fixed_ends=fixed_ends)
    # start from a rough parabolic undercut, initial_depth·thickness deep at mid-span and
    # initial_width·length wide
    def arch(x: np.ndarray) -> np.ndarray:
        u = (x - 0.5 * length) / (0.5 * initial_width * length)
        return thickness * (1.0 - initial_depth * np.clip(1.0 - u**2, 0.0, None))

    initial = np.clip(shape_map.fit_parameters(arch), min_thickness, thickness)
    targets = tuple(float(f1 * ri) for ri in r)
    return fe.Problem(
        mesh=mesh,
        element=element,
        material=fe.Material(E=E, nu=nu, density=density, model="plane_stress", thickness=width),
        supports=(),  # free–free
        analysis=fe.Analysis(n_modes=10),
        design=fe.ShapeDesign(shape_map, initial=initial, lower=min_thickness, upper=thickness,
                              names=[f"h{j + 1}" for j in range(shape_map.n_params)]),
        objective=fe.TuningCents(targets_hz=targets, rigid_body_modes=3, direction=1, method=method),
        optimizer=fe.OptimizerSettings(max_eval=max_eval, xtol_rel=0.0, ftol_rel=0.0,
                                       # design variables scaled to [0, 1]: stop when they move < 1e-6
                                       stagnation_tol=1e-6, stagnation_evals=5),
        description=f"marimba bar {length * 1e3:.0f} × {width * 1e3:.0f} × {thickness * 1e3:.0f} mm tuned to "
                    f"{ratios} on f1 = {f1:g} Hz",
    )
