"""Quiet mounting point: minimise the fundamental mode's amplitude where a machine is mounted.

The Du & Olhoff (2007) clamped–clamped beam (8 × 1, plane stress, E0 = 1e7, ν = 0.3, ρ0 = 1,
volume fraction 0.5, SIMP p = 3, two-range mass law) carries a sensitive instrument at
``mount = (2.0, 0.5)`` (a quarter of the span, mid-height). The objective is the squared vertical
amplitude of the M-normalised fundamental mode at that point — an eigenvector functional, whose
gradient needs an adjoint solve — subject to the volume fraction and to the fundamental frequency
not dropping below ``keep_f1`` times its initial value (a stiffness requirement). The mode is
followed by **MAC tracking** (the mode that looks like the initial fundamental mode), not by its
number, so a mode switch cannot silently change what is being minimised; the MAC of the tracked
mode is in the history of every evaluation.
"""

import numpy as np

import fem_eigopt as fe


def problem(nx: int = 96, ny: int = 12, volfrac: float = 0.5, mount_x: float = 2.0, keep_f1: float = 1.0,
            max_eval: int = 150):
    length, height = 8.0, 1.0
    if not 0 < mount_x < length:
        raise fe.InputError(f"mount_x = {mount_x!r}; allowed: 0 < mount_x < {length}")
    tracked = fe.TrackedMode(start_mode=1)
    f1_initial = 145.57 / (2 * np.pi)  # ω1 of the uniform start, 160 × 20 (see problems/beam.py)
    return fe.Problem(
        mesh=fe.rectangle(length, height, nx, ny),
        element="quad1",
        material=fe.Material(E=1e7, nu=0.3, density=1.0, model="plane_stress"),
        supports=(fe.Support("left"), fe.Support("right")),
        analysis=fe.Analysis(n_modes=6),
        design=fe.DensityDesign(initial=volfrac, x_min=1e-3, stiffness=fe.SIMP(3.0), mass=fe.TwoRangeMass(0.1)),
        objective=fe.EigenvectorObjective(fe.ModeAmplitudeAt((mount_x, height / 2), component=1), mode=tracked,
                                          name="mount_amplitude"),
        constraints=[fe.VolumeConstraint(volfrac), fe.FrequencyBound(mode=tracked, lower_hz=keep_f1 * f1_initial)],
        optimizer=fe.OptimizerSettings(max_eval=max_eval),
        description="minimum modal amplitude at a mounting point, MAC-tracked fundamental mode",
    )
