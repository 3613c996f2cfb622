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
    "eigenvalue_scale_gradients": "adjoint",
    "eigenvector_adjoint": "adjoint",
    "scale_factor_gradient": "adjoint",
    "ModalAmplitude": "adjoint",
    "QuadraticForm": "adjoint",
    "ModalAssurance": "adjoint",
    "LinearShapeMap": "shape",
    "ProfileShapeMap": "shape",
    "ShapeMap": "shape",
    "check_coordinates": "shape",
    "eigenvalue_coordinate_gradients": "shape",
    "eigenvalue_parameter_gradients": "shape",
    "model_at_coordinates": "shape",
    "optimize": "optimize",
    "RunResult": "optimize",
    "DesignEvaluator": "evaluate",
    "taylor_test": "gradcheck",
    "check_evaluator": "gradcheck",
    "Analysis": "problem",
    "BetaContinuation": "filters",
    "DensityChain": "filters",
    "DensityDesign": "problem",
    "DensityFilter": "filters",
    "DesignMap": "filters",
    "EigenvectorObjective": "objectives",
    "Evaluation": "optimizer",
    "FrequencyBound": "objectives",
    "HeavisideProjection": "filters",
    "HelmholtzFilter": "filters",
    "InputError": "errors",
    "KeepOutBand": "objectives",
    "LinearMass": "materials",
    "Material": "problem",
    "MaxEigenvalue": "objectives",
    "MaxGap": "objectives",
    "MaxMinEigenvalues": "objectives",
    "MinVolume": "objectives",
    "ModalResult": "analysis",
    "ModalSolver": "modal",
    "ModeAmplitudeAt": "objectives",
    "Model": "assembly",
    "Modes": "modal",
    "OptimizeResult": "optimizer",
    "OptimizerSettings": "optimizer",
    "PassiveRegions": "filters",
    "PointMass": "problem",
    "PolynomialMass": "materials",
    "Problem": "problem",
    "RAMP": "materials",
    "Record": "optimizer",
    "SIMP": "materials",
    "Support": "problem",
    "TargetFrequencies": "objectives",
    "TrackedMode": "objectives",
    "TwoRangeMass": "materials",
    "UserResponse": "objectives",
    "VolumeConstraint": "objectives",
    "at_point": "problem",
    "box": "mesh",
    "build_model": "assembly",
    "element_matrices": "assembly",
    "find_clusters": "modal",
    "from_file": "mesh",
    "load_problem": "problem",
    "mapped": "mesh",
    "minimize": "optimizer",
    "modal_analysis": "analysis",
    "rectangle": "mesh",
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
