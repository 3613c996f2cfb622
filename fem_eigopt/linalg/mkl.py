"""The ctypes binding of MKL's PARDISO, sparse BLAS and GEMM (from the ``mkl_rt`` library that the
``pypardiso`` wheel installs).
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import sys

logger = logging.getLogger(__name__)

_mkl_pardiso_function = None


def load_function(name: str):
    """A function of MKL's ``mkl_rt`` (loaded as for PARDISO) taking and returning an int.

    Parameters
    ----------
    name : str
        The exported symbol, e.g. ``"MKL_Set_Num_Threads_Local"``.

    Returns
    -------
    ctypes function
        With ``argtypes = [c_int]`` and ``restype = c_int``.
    """
    load_pardiso()
    fn = getattr(_mkl_library, name)
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_mkl_library = None


def load_pardiso():
    """The ``pardiso`` symbol of MKL's ``mkl_rt``, the library the pypardiso wheel depends on.

    Looked up in the environment's ``lib`` folder first: importing pypardiso (the fallback) globs
    the whole environment for it, a walk over every installed file that each process would pay
    at start-up.
    """
    global _mkl_pardiso_function
    if _mkl_pardiso_function is None:
        global _mkl_library
        lib = None
        for folder in dict.fromkeys((sys.prefix, sys.base_prefix)):
            for path in sorted(glob.glob(os.path.join(folder, "lib", "libmkl_rt.so*")), reverse=True):
                try:
                    lib = ctypes.CDLL(path)
                    break
                except OSError:
                    continue
            if lib is not None:
                break
        if lib is None:
            import pypardiso

            lib = pypardiso.PyPardisoSolver().libmkl
        _mkl_library = lib
        fn = lib.pardiso
        fn.restype = None
        _mkl_pardiso_function = fn
    return _mkl_pardiso_function


class MatrixDescriptor(ctypes.Structure):
    """MKL's ``struct matrix_descr`` (passed by value)."""

    _fields_ = [("type", ctypes.c_int), ("mode", ctypes.c_int), ("diag", ctypes.c_int)]


_mkl = None  # MKL's sparse BLAS (False: unavailable)


def sparse_blas():
    """MKL's inspector–executor sparse BLAS from the ``mkl_rt`` the PARDISO backend loads, or None."""
    global _mkl
    if _mkl is None:
        try:
            load_pardiso()
            lib = _mkl_library
            vp, ci = ctypes.c_void_p, ctypes.c_int
            lib.mkl_sparse_d_create_csr.argtypes = [ctypes.POINTER(vp), ci, ci, ci, vp, vp, vp, vp]
            lib.mkl_sparse_d_create_csr.restype = ci
            lib.mkl_sparse_d_mm.argtypes = [ci, ctypes.c_double, vp, MatrixDescriptor, ci, vp, ci, ci, ctypes.c_double, vp, ci]
            lib.mkl_sparse_d_mm.restype = ci
            lib.mkl_sparse_destroy.argtypes = [vp]
            lib.mkl_sparse_destroy.restype = ci
            _mkl = lib
        except Exception as exc:  # no MKL on this platform: SciPy's products
            logger.debug("MKL sparse BLAS unavailable (%s): SciPy sparse products", exc)
            _mkl = False
    return _mkl or None


_mkl_blas = None  # (cblas_dgemm, MKL_Set_Num_Threads_Local) from mkl_rt (False: unavailable)


def dgemm():
    """MKL's ``cblas_dgemm`` and its local thread setter from the ``mkl_rt`` PARDISO loads, or None."""
    global _mkl_blas
    if _mkl_blas is None:
        try:
            load_pardiso()
            fn = _mkl_library.cblas_dgemm
            ci, cd, vp = ctypes.c_int, ctypes.c_double, ctypes.c_void_p
            fn.argtypes = [ci, ci, ci, ci, ci, ci, cd, vp, ci, vp, ci, cd, vp, ci]
            fn.restype = None
            _mkl_blas = (fn, load_function("MKL_Set_Num_Threads_Local"))
        except Exception as exc:  # no MKL here: NumPy's products
            logger.debug("MKL dgemm unavailable (%s): NumPy products", exc)
            _mkl_blas = False
    return _mkl_blas or None
