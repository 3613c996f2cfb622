"""A 3D cantilevered box with a non-structural tip mass: maximise its fundamental frequency.

A 1.0 × 0.2 × 0.2 m steel box (E = 210 GPa, ν = 0.3, ρ = 7850 kg/m³) clamped on its x = 0 face,
with a 5 kg lumped mass spread over the vertices within 5 cm of the centre of the free end. The
square cross-section makes the bending modes in y and z a double eigenvalue, which the bound
formulation over the first two modes keeps together. Design: densities in [1e-3, 1], start 0.3,
SIMP p = 3, two-range mass law, volume fraction ≤ 0.3, density filter of 1.5 elements.

Also the 3D model of the tests and benchmarks (``modal`` command at the initial design).
"""

import fem_eigopt as fe


def problem(nx: int = 20, ny: int = 4, nz: int = 4, element: str = "hex1", tip_mass: float = 5.0,
            volfrac: float = 0.3, n_modes: int = 6, n_bound: int = 2, max_eval: int = 150):
    length, width, height = 1.0, 0.2, 0.2
    point_masses = ()
    if tip_mass > 0:
        point_masses = (fe.PointMass(tip_mass, at=(length, width / 2, height / 2), radius=0.05),)
    return fe.Problem(
        mesh=fe.box(length, width, height, nx, ny, nz),
        element=element,
        material=fe.Material(E=210e9, nu=0.3, density=7850.0, model="solid"),
        supports=(fe.Support("left"),),
        point_masses=point_masses,
        analysis=fe.Analysis(n_modes=n_modes),
        design=fe.DensityDesign(initial=volfrac, x_min=1e-3, stiffness=fe.SIMP(3.0), mass=fe.TwoRangeMass(0.1)),
        objective=fe.MaxMinEigenvalues(n=n_bound),
        constraints=[fe.VolumeConstraint(volfrac)],
        optimizer=fe.OptimizerSettings(max_eval=max_eval),
        description="3D cantilevered box with a tip mass, max ω1 (double by symmetry)",
    )
