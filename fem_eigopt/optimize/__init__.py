"""Optimisation: one evaluation in data-flow order, the optimiser driving it, the run around it.

In: a Problem. Out: the optimised design, its history and a run directory.

Modules: ``evaluator`` (densities → model → modes → responses → adjoint → gradients, cached on x),
``shape_evaluator`` (the same for shape parameters), ``evaluation`` (their shared steps from the
modes on), ``driver`` (NLopt's MMA or our own, continuation stages, best design, stop handling), ``mma``
(Svanberg's MMA, our implementation), ``run`` (the whole run with its outputs), ``modal_analysis``
(the modes of one design).
"""
