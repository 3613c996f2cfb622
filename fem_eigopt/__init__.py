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

from .analysis import ModalResult, modal_analysis
from .assembly import Model, build_model, element_matrices
from .errors import InputError
from .materials import RAMP, SIMP, LinearMass, PolynomialMass, TwoRangeMass
from .mesh import box, from_file, mapped, rectangle
from .modal import ModalSolver, Modes, find_clusters
from .objectives import (
    EigenvectorObjective,
    FrequencyBound,
    KeepOutBand,
    MaxEigenvalue,
    MaxGap,
    MaxMinEigenvalues,
    MinVolume,
    ModeAmplitudeAt,
    TargetFrequencies,
    TrackedMode,
    UserResponse,
    VolumeConstraint,
)
from .filters import (
    BetaContinuation,
    DensityChain,
    DensityFilter,
    DesignMap,
    HeavisideProjection,
    HelmholtzFilter,
    PassiveRegions,
)
from .optimizer import Evaluation, OptimizeResult, OptimizerSettings, Record, minimize
from .problem import (
    Analysis,
    DensityDesign,
    Material,
    PointMass,
    Problem,
    Support,
    at_point,
    load_problem,
)

__version__ = "0.1.0"

__all__ = [
    "EigenvectorObjective", "FrequencyBound", "KeepOutBand", "MaxEigenvalue", "MaxGap", "MaxMinEigenvalues",
    "MinVolume", "ModeAmplitudeAt", "OptimizerSettings", "BetaContinuation", "DensityChain", "DensityFilter", "DesignMap",
    "HeavisideProjection", "HelmholtzFilter", "PassiveRegions", "Evaluation", "OptimizeResult", "Record",
    "minimize", "TargetFrequencies", "TrackedMode", "UserResponse", "VolumeConstraint",
    "Analysis", "DensityDesign", "InputError", "LinearMass", "Material", "ModalResult", "ModalSolver",
    "Model", "Modes", "PointMass", "PolynomialMass", "Problem", "RAMP", "SIMP", "Support", "TwoRangeMass",
    "at_point", "box", "build_model", "element_matrices", "find_clusters", "from_file", "load_problem",
    "mapped", "modal_analysis", "rectangle",
]
