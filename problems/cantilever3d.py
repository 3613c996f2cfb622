"""A 3D cantilevered box with a non-structural tip mass (steel, SI units).

A 1.0 × 0.2 × 0.2 m box clamped on its x = 0 face, with a 5 kg lumped mass spread over the
vertices within 5 cm of the centre of the free end. Steel: E = 210 GPa, ν = 0.3, ρ = 7850 kg/m³.
The square cross-section gives pairs of equal bending frequencies (bending in y and in z).
Used by the tests and benchmarks as the 3D model; the design starts from uniform density 0.5.
"""

import fem_eigopt as fe


def problem(nx: int = 20, ny: int = 4, nz: int = 4, element: str = "hex1", tip_mass: float = 5.0,
            volfrac: float = 0.5, n_modes: int = 6):
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
        description="3D cantilevered box with a tip mass",
    )
