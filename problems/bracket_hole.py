"""Sensor arm with a cable hole: shape its outline and place its hole for the highest first
eigenfrequency at the same mass.

What: an aluminium arm (a cantilever plate, bolted along its left edge) carries a sensor (a point
mass at the middle of its free end) and has a hole for the sensor's cable. Its outline (the upper
and lower edges, kept symmetric about the mid-line; the bolted root keeps its height) and the
hole (position along the arm, radius, elongation) are free; the arm may not get heavier.
Maximise the first natural frequency f1 (Hz), the in-plane bending mode of the arm.

Why: raising f1 at equal mass keeps the arm's resonance away from the excitation of the machine
it sits on without adding weight. Where the material goes matters: in the first mode the bending
moment is largest at the clamp and vanishes at the tip, while the inertia loading the arm is
largest at the tip. Material near the clamp and far from the mid-line stiffens most; material
near the tip only adds inertia. The optimum is a tapered arm (each edge up to 4.2 mm further
out around a third of the length, 9 mm in at the free end, where e3 sits on its bound) with the
hole moved 15 mm towards the tip and enlarged by 3 mm in radius (both on their bounds) and
stretched along the arm (c2 = 1.4 mm): f1 rises by 14.3 % (780 → 892 Hz with the defaults), the
same to 1e-4 on meshes with ``n_side`` = 4, 8 and 12; a re-analysis on a mesh twice as fine
(part of every run) moves the final f1 by 0.1 %.

Physics: 2D plane stress, linear elastic, consistent mass; the point mass at the vertex nearest
(length, height/2); all displacement components fixed on the left edge. Mesh:
:func:`fem_eigopt.plate_with_hole` (an O-grid of quadrilaterals around the hole in a square block
of side ``height``, rectangular blocks beside it; ``kind="tri"`` splits them into triangles),
quadratic elements by default.

Design (:class:`fem_eigopt.BoundaryMotionMap`, six parameters in metres, X(p) linear in p):

* ``e1``, ``e2``, ``e3``: the edge offset h(x) = Σ_k e_k B_k,3(x / length) with the cubic
  Bernstein polynomials B_k,3 (B_0 left out, so h(0) = 0 at the root); each edge moves by h(x)
  outwards, and the free end (``right``) stretches with it. Bernstein polynomials are
  non-negative and sum to one, so |h(x)| ≤ max_k |e_k| everywhere;
* ``dx``: moves the hole along the arm; ``dr``: changes its radius; ``c2``: adds c2 cos 2θ to its
  radius at the angle θ around the original centre (c2 > 0 stretches it along the arm).

Only symmetric motions: the structure and its first mode are symmetric about the mid-line. The
interior vertices follow the elastic mesh-motion extension, computed once. The bounds (edges
±``outline`` · height/2, ``dx`` ±``dxr`` · radius, ``dr`` ±``drr`` · radius, ``c2`` ±0.2 radius)
keep every element valid over the whole box of parameters: at all 64 corners and 500 random
points the smallest det J ratio is 0.18 (quad) and 0.26 (tri) (``tests/test_shape_general.py``
checks this), so the optimiser never meets an inverted mesh.

Constraint: mass at most that of the starting design (one material: ``fe.VolumeLimit(max_ratio=1)``).

Parameters for ``--set``: ``length``, ``height``, ``thickness`` (m), ``radius`` (m, the starting
hole at mid-length), ``tip_mass`` (kg), ``E`` (Pa), ``nu``, ``density`` (kg/m³), ``outline``,
``dxr``, ``drr`` (bounds, see above; larger values may invert elements and end the run with an
error naming the parameters), ``n_side`` (cells across the arm) and ``n_radial`` (cells between
the hole and its square block), ``kind`` (``quad``/``tri``), ``element`` (``quad2``, ``quad1``,
``tri2``, ``tri1``), ``extension`` (``elastic``/``laplace``), ``max_eval``.
"""

from __future__ import annotations

from math import comb

import numpy as np

import fem_eigopt as fe


def outline_motions(length: float, height: float, degree: int = 3) -> list:
    """Boundary velocities of the edge offsets e_1..e_degree (m of edge motion per m of e_k)."""
    mid = 0.5 * height

    def motion(k: int) -> fe.BoundaryVelocity:
        def velocity(x: np.ndarray) -> np.ndarray:
            t = x[0] / length
            bernstein = comb(degree, k) * t**k * (1.0 - t) ** (degree - k)
            # upper edge up, lower edge down, the free end stretched linearly in between
            return np.vstack([np.zeros(x.shape[1]), bernstein * (x[1] - mid) / mid])
        return fe.BoundaryVelocity(("top", "bottom", "right"), velocity=velocity, name=f"e{k}")

    return [motion(k) for k in range(1, degree + 1)]


def hole_motions(center: np.ndarray) -> list:
    """Boundary velocities of the hole: translation ``dx``, radius ``dr``, elongation ``c2``."""
    def radial(x: np.ndarray) -> np.ndarray:
        d = x - center[:, None]
        return d / np.linalg.norm(d, axis=0)

    def elongation(x: np.ndarray) -> np.ndarray:
        return np.cos(2.0 * np.arctan2(x[1] - center[1], x[0] - center[0])) * radial(x)

    return [fe.BoundaryVelocity("hole", velocity=(1.0, 0.0), name="dx"),
            fe.BoundaryVelocity("hole", velocity=radial, name="dr"),
            fe.BoundaryVelocity("hole", velocity=elongation, name="c2")]


def problem(length: float = 0.2, height: float = 0.06, thickness: float = 0.005, radius: float = 0.01,
            tip_mass: float = 0.05, E: float = 70e9, nu: float = 0.33, density: float = 2700.0,
            outline: float = 0.3, dxr: float = 1.5, drr: float = 0.3, n_side: int = 8, n_radial: int = 4,
            kind: str = "quad", element: str = "quad2", extension: str = "elastic", max_eval: int = 80):
    for name, value, top in (("outline", outline, 1.0), ("dxr", dxr, None), ("drr", drr, 1.0)):
        if not (value > 0 and (top is None or value < top)):
            raise fe.InputError(f"{name} = {value!r}; allowed: > 0" + (f" and < {top}" if top else ""))
    mesh = fe.plate_with_hole(length, height, radius, n_side=n_side, n_radial=n_radial, kind=kind)
    center = np.array([0.5 * length, 0.5 * height])
    shape_map = fe.BoundaryMotionMap(mesh, outline_motions(length, height) + hole_motions(center),
                                     extension=extension)
    half = 0.5 * height
    bound = np.array([outline * half] * 3 + [dxr * radius, drr * radius, 0.2 * radius])
    return fe.Problem(
        mesh=mesh,
        element=element,
        material=fe.Material(E=E, nu=nu, density=density, model="plane_stress", thickness=thickness),
        supports=[fe.Support("left")],
        point_masses=[fe.PointMass(tip_mass, at=(length, half))],
        analysis=fe.Analysis(n_modes=4),
        design=fe.ShapeDesign(shape_map, lower=-bound, upper=bound),
        objective=fe.MaxEigenvalue(mode=1, quantity="frequency"),
        constraints=[fe.VolumeLimit(max_ratio=1.0)],
        optimizer=fe.OptimizerSettings(max_eval=max_eval, xtol_rel=0.0, ftol_rel=0.0,
                                       # design variables scaled to [0, 1]: stop when they move < 1e-6
                                       stagnation_tol=1e-6, stagnation_evals=5),
        description=f"sensor arm {length * 1e3:.0f} × {height * 1e3:.0f} × {thickness * 1e3:.0f} mm with a "
                    f"{2e3 * radius:.0f} mm cable hole: max f1 at fixed mass by its outline and hole",
    )
