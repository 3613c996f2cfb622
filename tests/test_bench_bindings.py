"""benchmarks/bench_bindings.py --quick runs and its libraries agree: pydiso's PARDISO solves and
sparse-dot-mkl's products against ours and SciPy's. Residuals only — timings are never checked."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("pydiso")
pytest.importorskip("sparse_dot_mkl")

from fem_eigopt.linalg.factorization import available_backends

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif("pardiso" not in available_backends(), reason="MKL PARDISO not available")


@pytest.fixture(scope="module")
def output():
    """The printed tables of one ``--quick`` run (and its return code)."""
    spec = importlib.util.spec_from_file_location("bench_bindings", REPO / "benchmarks" / "bench_bindings.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_bindings"] = module
    had_foundation = "bench_foundation" in sys.modules  # bench_bindings loads it for its models
    try:
        spec.loader.exec_module(module)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = module.main(["--quick"])
        yield code, buffer.getvalue()
    finally:
        sys.modules.pop("bench_bindings", None)
        if not had_foundation:
            sys.modules.pop("bench_foundation", None)


def numbers(text: str, label: str) -> list[list[float]]:
    """The numbers after ``label`` on every line that starts with it (one list per model)."""
    rows = []
    for line in text.splitlines():
        if line.strip().startswith(label):
            rest = line.strip()[len(label):]
            rows.append([float(x) for x in re.findall(r"[-+]?\d+\.\d+(?:e[-+]\d+)?", rest)])
    return rows


def test_runs_and_prints_every_row(output):
    code, text = output
    assert code == 0
    for label in ("symbolic analysis (phase 11)", "numeric refactorisation (22)", "solve, 1 rhs (33)",
                  "solve, 6 rhs (33)", "K @ X, 6 columns", "K @ X, 16 columns", "residual |Ax-b|/|b|, 1 rhs",
                  "residual |Ax-b|/|b|, 6 rhs", "|Y-Y_scipy|/|Y_scipy|, 16 cols"):
        assert len(numbers(text, label)) == 3, label  # bench_foundation's three quick models
    header = next(line for line in text.splitlines() if "PARDISO [ms]" in line)
    for column in ("ours f64", "pydiso f64", "ours f32", "pydiso f32"):
        assert column in header
    assert "sparse-dot-mkl" in next(line for line in text.splitlines() if "K @ X [ms]" in line)


def test_solutions_agree(output):
    """Columns ours f64, pydiso f64, ours f32, pydiso f32: double-precision solves are exact to
    rounding, single-precision ones (a preconditioner's) to float32 rounding amplified by the
    condition; pydiso's solutions equal ours in both precisions (the same MKL PARDISO, the same
    ordering)."""
    _, text = output
    for k in (1, 6):
        for row in numbers(text, f"residual |Ax-b|/|b|, {k} rhs"):
            ours64, pyd64, ours32, pyd32 = row
            assert ours64 < 1e-10 and pyd64 < 1e-10
            assert ours32 < 1e-2 and pyd32 < 1e-2
    for row in numbers(text, "pydiso f64 vs ours f64: |dx|/|x|"):
        assert max(row) < 1e-10
    for row in numbers(text, "pydiso f32 vs ours f32: |dx|/|x|"):
        assert max(row) < 1e-3


def test_products_agree(output):
    """BlockOperator, sparse_matmul, sparse-dot-mkl against SciPy's K @ X (the last column, 0)."""
    _, text = output
    for k in (6, 16):
        rows = numbers(text, f"|Y-Y_scipy|/|Y_scipy|, {k} cols")
        assert rows
        for row in rows:
            assert len(row) == 4 and max(row) < 1e-13
