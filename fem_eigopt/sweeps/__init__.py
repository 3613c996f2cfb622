"""Parameter sweeps: a grid or a sample of problem parameters, each case a normal optimisation run.

In: a problem file and a grid, zip or sample of its parameters. Out: one run directory per
case, a sweep directory with the table, plots and a contact sheet.

The flow::

    problem file + grid/zip/sample/set (flags, a TOML sweep file, or sweep(...) arguments)
      ─► spec.py:    SweepSpec, checked and typed against the factory's signature ─► [Case]
      ─► engines.py: process pool (one spawn process per lane) or Dask cluster
           └► worker.py: run_case(task): load_problem(path, overrides) ─► optimize(problem,
              out_dir=<sweep>/runs) ─► a normal run directory; record = status, message,
              summary.json, design picture, log (never raises; a dead worker fails its case)
      ─► runner.py:  <out>/<problem>/sweep-<stamp>-<hash>/ with sweep.json (spec + cases),
              cases/<id>.json|png|log as each case ends, sweep.log, progress on stderr,
              Ctrl-C ─► SweepResult(interrupted=True), resume runs only the missing cases
      ─► study.py:   summary.csv (one row per case), plot_<key>.png, designs.png (contact sheet)
      ─► sweep(...) returns the table: a pandas DataFrame, or a list of dicts without pandas

Entry points: :func:`sweep` (Python), ``python -m fem_eigopt sweep ...`` (:mod:`.command`).
Importing this package does no work; dask, pandas, rich and matplotlib load when used.

The package module itself is callable (``fem_eigopt.sweeps(...)`` is :func:`sweep`): the
subpackage and the flat API's function share the name ``fem_eigopt.sweeps``, and whichever of the
two the attribute holds, calling it runs a sweep.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["sweep", "run_sweep", "SweepResult", "SweepSpec", "Case", "build_spec", "load_sweep_file",
           "expand_cases", "draw_sample"]

_EXPORTS = {
    "sweep": "runner",
    "run_sweep": "runner",
    "SweepResult": "runner",
    "SweepSpec": "spec",
    "Case": "spec",
    "build_spec": "spec",
    "load_sweep_file": "spec",
    "expand_cases": "spec",
    "draw_sample": "spec",
}


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


