"""Lightest bracket whose fundamental frequency stays above a target (minimum mass, f1 ≥ f*).

A 2D steel bracket plate, 0.20 × 0.10 m, 5 mm thick (plane stress; E = 210 GPa, ν = 0.3,
ρ = 7850 kg/m³), clamped along its left edge (bolted to a wall), carrying a 0.5 kg instrument
lumped at the middle of its right edge. Minimise the volume of material such that the first
frequency stays at or above ``f_min_hz`` — the "bracket above 200 Hz" requirement — and (a
second constraint) the second frequency stays above ``1.5 f_min_hz`` so the design does not
trade its fundamental for a low second mode.

Units: SI (m, Pa, kg, Hz). The solid plate has f1 ≈ 1.00 kHz (1000.5 Hz) with the instrument at
the default mesh, so the default target 200 Hz leaves room to remove material.
"""

import numpy as np

import fem_eigopt as fe


def problem(nx: int = 80, ny: int = 40, f_min_hz: float = 200.0, instrument_kg: float = 0.5,
            initial: float = 1.0, max_eval: int = 200):
    length, height, thickness = 0.20, 0.10, 0.005
    return fe.Problem(
        mesh=fe.rectangle(length, height, nx, ny),
        element="quad1",
        material=fe.Material(E=210e9, nu=0.3, density=7850.0, model="plane_stress", thickness=thickness),
        supports=(fe.Support("left"),),
        point_masses=(fe.PointMass(instrument_kg, at=(length, height / 2), radius=0.006),),
        analysis=fe.Analysis(n_modes=4),
        design=fe.DensityDesign(initial=initial, x_min=1e-3, stiffness=fe.SIMP(3.0), mass=fe.TwoRangeMass(0.1),
                                # keep the material under the instrument: it must be mounted on something
                                passive_solid=lambda c: (c[0] > length - 0.01) & (np.abs(c[1] - height / 2) < 0.01)),
        objective=fe.MinVolume(),
        constraints=[fe.FrequencyBound(mode=1, lower_hz=f_min_hz), fe.FrequencyBound(mode=2, lower_hz=1.5 * f_min_hz)],
        optimizer=fe.OptimizerSettings(max_eval=max_eval),
        description=f"minimum-mass bracket with f1 >= {f_min_hz} Hz",
    )
