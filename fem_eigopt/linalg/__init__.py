"""Sparse and dense linear algebra under the solvers and sensitivities.

In: sparse symmetric matrices and blocks of vectors. Out: factorisations behind one interface
(``Factorization``: PARDISO, SuperLU, CHOLMOD, chosen by name), products and kernels.

Modules: ``factorization`` (the backends and ``make_factorization``), ``kernels`` (GEMM and sparse
products, buffers, Ritz pairs, thread limits), ``mkl`` (the binding to MKL's ``mkl_rt``).
"""
