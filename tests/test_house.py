"""The house rules of the package, checked on its source.

* No import cycles: no module imports another that imports it back, directly or through others
  (function-level imports included: a deferred import is still a dependency).
* Rooms in data-flow order: a lower room never imports a higher one (``ROOMS``).
* Docstrings and comments explain; they do not log measurements: no dates, CPU models, MKL
  versions or millisecond timings in the package or the problem files (those live in docs/).
* The documentation builds with ``mkdocs build --strict`` (when the docs extra is installed).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fem_eigopt"

#: the package's rooms from the bottom up; a module may import its own room and the ones below
ROOMS = ["errors", "linalg", "design", "problem", "fem", "solvers", "sensitivity", "responses", "io", "optimize",
         "sweeps", "plot", "cli", "__main__"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports (``from pkg import submodule`` resolved)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: relative import; the package uses absolute imports")
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan 1972)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _room(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package itself: its lazy table names every room
    return ROOMS.index(parts[1])


def test_cycle_finder_finds_a_cycle():
    """The checker itself: a planted two-module and three-module cycle are reported."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert _cycles(graph) == [["a", "b"], ["c", "d", "e"]]


def test_no_module_imports_another_that_imports_it_back():
    graph = _graph()
    assert len(graph) > 30  # the walk saw the package
    assert _cycles(graph) == []


def test_every_module_lives_in_a_room_and_lower_rooms_never_import_higher_ones():
    graph = _graph()
    violations = []
    for module, imported in graph.items():
        room = _room(module)
        if room is None:
            continue
        for other in imported:
            other_room = _room(other)
            if other_room is not None and other_room > room:
                violations.append(f"{module} ({ROOMS[room]}) imports {other} ({ROOMS[other_room]})")
    assert violations == []


def test_every_subpackage_says_what_flows_in_and_out():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "In:" in doc and "Out:" in doc, init


MEASUREMENT = re.compile(r"20[0-9]{2}-[0-9]{2}-[0-9]{2}|EPYC|Xeon|MKL 20[0-9]{2}|[0-9] ?ms\b")


def test_measurement_pattern_matches_what_it_must():
    for text in ("on 2026-12-01", "an AMD EPYC", "Intel Xeon", "MKL 2026.2", "3.5 ms", "12ms"):
        assert MEASUREMENT.search(text), text
    assert not MEASUREMENT.search("Du & Olhoff (2007), 456.4 rad/s, items")


def test_no_measurements_logged_in_code_or_problem_files():
    hits = []
    for folder in (PACKAGE, REPO / "problems"):
        for path in sorted(folder.rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if MEASUREMENT.search(line):
                    hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert hits == [], "\n".join(hits)


def test_readme_is_for_users():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200
    assert "docs/performance.md" in "\n".join(lines) and "docs/verification.md" in "\n".join(lines)


def test_documentation_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    mkdocs = shutil.which("mkdocs")
    command = [mkdocs] if mkdocs else [sys.executable, "-m", "mkdocs"]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(command + ["build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").stat().st_size > 0
