"""fem_eigopt: eigenfrequency design optimisation with scikit-fem.

Data flow (each stage a forward function and its transpose)::

    problem file ─► Problem ─► mesh + element + material + supports + design + objective
    x ─► design map ─► filter ─► projection ─► interpolation (E(ρ), ρ_m(ρ))
      ─► assembly: K, M on free dofs from element matrices computed once (fixed pattern)
      ─► modal solve: leading eigenpairs (shift-invert, cached factorisation, warm start)
      ─► objective / constraints g(λ, φ, ρ) ─► adjoint, element by element (no global ∂K)
      ─► chain rule back to x ─► NLopt MMA

Importing the package does no work: no mesh, no solver, no matplotlib backend.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> submodule. Loaded on first use (PEP 562), so that `import fem_eigopt` costs
# nothing and the command line can set thread counts before numpy loads.
_EXPORTS = {
    "sweep": "sweeps.runner",
    "eigenvalue_scale_gradients": "sensitivity.eigenvalues",
    "eigenvector_adjoint": "sensitivity.eigenvectors",
    "scale_factor_gradient": "sensitivity.eigenvectors",
    "ModalAmplitude": "responses.eigenvector",
    "QuadraticForm": "responses.eigenvector",
    "ModalAssurance": "responses.eigenvector",
    "LinearShapeMap": "design.shape",
    "BoundaryMotionMap": "design.shape",
    "BoundaryVelocity": "design.shape",
    "extend_boundary_motion": "design.shape",
    "check_mesh_coordinates": "design.shape",
    "eigenvector_coordinate_gradient": "sensitivity.shape",
    "plate_with_hole": "problem.mesh",
    "ProfileShapeMap": "design.shape",
    "ShapeMap": "design.shape",
    "check_coordinates": "fem.geometry",
    "eigenvalue_coordinate_gradients": "sensitivity.shape",
    "eigenvalue_parameter_gradients": "sensitivity.shape",
    "model_at_coordinates": "fem.geometry",
    "optimize": "optimize.run",
    "resume": "optimize.run",
    "RunResult": "optimize.run",
    "DesignEvaluator": "optimize.evaluator",
    "taylor_test": "sensitivity.gradcheck",
    "check_evaluator": "sensitivity.gradcheck",
    "Analysis": "problem.definition",
    "BetaContinuation": "design.projection",
    "DensityChain": "design.density",
    "DensityDesign": "problem.definition",
    "DensityFilter": "design.filters",
    "DesignMap": "design.density",
    "EigenvectorObjective": "responses.eigenvector",
    "Evaluation": "optimize.driver",
    "FrequencyBound": "responses.eigenvalue",
    "HeavisideProjection": "design.projection",
    "HelmholtzFilter": "design.filters",
    "InputError": "errors",
    "KeepOutBand": "responses.eigenvalue",
    "LinearMass": "design.interpolation",
    "Material": "problem.definition",
    "MaxEigenvalue": "responses.eigenvalue",
    "MaxGap": "responses.eigenvalue",
    "MaxMinEigenvalues": "responses.eigenvalue",
    "MinVolume": "responses.volume",
    "ModalResult": "optimize.modal_analysis",
    "ModalSolver": "solvers.lanczos",
    "ModeAmplitudeAt": "responses.eigenvector",
    "Model": "fem.assembly",
    "Modes": "solvers.modes",
    "OptimizeResult": "optimize.driver",
    "OptimizerSettings": "optimize.driver",
    "PassiveRegions": "design.density",
    "PointMass": "problem.definition",
    "PolynomialMass": "design.interpolation",
    "Problem": "problem.definition",
    "RAMP": "design.interpolation",
    "Record": "optimize.driver",
    "SIMP": "design.interpolation",
    "Support": "problem.definition",
    "TargetFrequencies": "responses.eigenvalue",
    "TrackedMode": "responses.base",
    "TwoRangeMass": "design.interpolation",
    "UserResponse": "responses.user",
    "VolumeConstraint": "responses.volume",
    "at_point": "problem.definition",
    "box": "problem.mesh",
    "build_model": "fem.assembly",
    "element_matrices": "fem.assembly",
    "find_clusters": "solvers.modes",
    "from_file": "problem.mesh",
    "load_problem": "problem.loading",
    "mapped": "problem.mesh",
    "minimize": "optimize.driver",
    "modal_analysis": "optimize.modal_analysis",
    "rectangle": "problem.mesh",
    "ShapeDesign": "problem.definition",
    "ShapeEvaluator": "optimize.shape_evaluator",
    "make_evaluator": "optimize.shape_evaluator",
    "refined_analysis": "optimize.shape_evaluator",
    "shape_summary": "optimize.shape_evaluator",
    "TuningCents": "responses.tuning",
    "KeepAwayCents": "responses.tuning",
    "parse_ratios": "responses.tuning",
    "VolumeLimit": "responses.volume",
    "ProfileThickness": "responses.geometry",
    "rigid_body_count": "responses.base",
    "void_fraction": "responses.base",
    "element_volumes_at": "fem.geometry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'fem_eigopt' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
