"""Sweep specifications: grids, zipped lists, quasi-random samples, sweep files, the case list.

A :class:`SweepSpec` says which problem file to run and how its parameters vary:

* ``grid`` — ``{key: [values]}``, the Cartesian product of all grid axes;
* ``zip`` — ``{key: [values]}`` of equal lengths, varied together as one more axis;
* ``sample`` — ``n`` points of a Latin hypercube (``"lhs"``) or a scrambled Sobol' sequence
  (``"sobol"``) in ``ranges`` ``{key: (low, high)}`` (``scipy.stats.qmc``, reproducible with
  ``seed``), one more axis;
* ``fixed`` — ``{key: value}`` for every case (the ``--set`` of a single run).

Every key is checked against the signature of the problem file's ``problem(**params)`` factory and
every value is typed by the parameter's default before anything runs; a bad key or value is an
:class:`~fem_eigopt.errors.InputError` of one line naming the option, the value and what is allowed.
:func:`expand_cases` turns a spec into the list of :class:`Case` (one optimisation each).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from fem_eigopt.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["SweepSpec", "SampleSpec", "Case", "ENGINES", "METHODS", "parse_assignment", "parse_values",
           "parse_range", "coerce", "build_spec", "load_sweep_file", "expand_cases", "draw_sample",
           "case_hash"]

#: the engines a sweep runs on
ENGINES = ("process", "dask")
#: the sampling methods of ``--method``
METHODS = ("lhs", "sobol")
#: keys of a sweep file (TOML)
FILE_KEYS = ("problem", "grid", "zip", "sample", "set", "engine", "workers", "scheduler", "out", "retries")
SAMPLE_KEYS = ("n", "method", "seed", "range")


@dataclass
class SampleSpec:
    """A quasi-random sample of numeric parameters.

    Attributes
    ----------
    n : int
        Number of points (>= 1).
    method : str
        ``"lhs"`` (Latin hypercube) or ``"sobol"`` (scrambled Sobol').
    ranges : dict of str to (float, float)
        ``{key: (low, high)}``; integer parameters are rounded to the nearest integer.
    seed : int
        Seed of the generator (drawn and recorded when not given, so a sweep can be repeated).
    """

    n: int
    method: str = "lhs"
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    seed: int | None = None


@dataclass
class SweepSpec:
    """What a sweep runs (see the module docstring); built by :func:`build_spec`.

    Attributes
    ----------
    problem : Path
        The problem file (``.py`` with a ``problem(**params)`` factory).
    grid : dict of str to list
        Typed values per grid key (Cartesian product).
    zip : dict of str to list
        Typed values varied together (equal lengths).
    sample : SampleSpec or None
    fixed : dict of str to Any
        Typed values for every case.
    defaults : dict of str to Any
        The factory's parameters and their defaults.
    engine, workers, scheduler, out, retries
        How to run (see :func:`fem_eigopt.sweeps.runner.run_sweep`).
    """

    problem: Path
    grid: dict[str, list] = field(default_factory=dict)
    zip: dict[str, list] = field(default_factory=dict)
    sample: SampleSpec | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    engine: str = "process"
    workers: int | None = None
    scheduler: str | None = None
    out: Path = Path("results")
    retries: int = 0

    @property
    def varying(self) -> list[str]:
        """The keys that vary between cases, in axis order (grid, zip, sample)."""
        keys = list(self.grid) + list(self.zip)
        if self.sample is not None:
            keys += list(self.sample.ranges)
        return keys

    def to_json(self) -> dict:
        """A JSON-able description (the ``spec`` entry of ``sweep.json``)."""
        return {
            "problem": str(self.problem),
            "grid": self.grid,
            "zip": self.zip,
            "sample": None if self.sample is None else {
                "n": self.sample.n, "method": self.sample.method, "seed": self.sample.seed,
                "range": {k: list(v) for k, v in self.sample.ranges.items()}},
            "set": self.fixed,
            "engine": self.engine,
            "workers": self.workers,
            "scheduler": self.scheduler,
            "out": str(self.out),
            "retries": self.retries,
        }


@dataclass(frozen=True)
class Case:
    """One optimisation of a sweep.

    Attributes
    ----------
    index : int
        Position in the sweep (rows of ``summary.csv`` follow it).
    id : str
        ``"<index>-<hash>"``: names the case's record files under ``cases/``.
    parameters : dict
        The varying parameters of this case.
    overrides : dict
        All parameters passed to the factory (fixed and varying).
    """

    index: int
    id: str
    parameters: dict
    overrides: dict


# ----------------------------------------------------------------------------------------------
# values


def _type_name(default: Any) -> str:
    return "any value" if default is None else type(default).__name__


def coerce(value: Any, default: Any, where: str) -> Any:
    """Type ``value`` like the factory default ``default``.

    Parameters
    ----------
    value : Any
        A string (from the command line) or a Python/TOML value.
    default : Any
        The parameter's default (``None``: strings are read as Python literals, else kept).
    where : str
        Names the option and key in the error message (``"--grid volfrac"``).

    Returns
    -------
    Any
        The typed value.

    Raises
    ------
    InputError
        The value does not fit the default's type.
    """
    from fem_eigopt.problem.loading import _parse_value

    if isinstance(value, str):
        if isinstance(default, (bool, int, float, str)) or default is None:
            try:
                return _parse_value(value.strip() if not isinstance(default, str) else value, default, where)
            except InputError:
                pass
        else:
            return _parse_value(value, default, where)
    else:
        if default is None:
            return value
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
        elif isinstance(default, int):
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
        elif isinstance(default, float):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif isinstance(default, str):
            if isinstance(value, str):
                return value
        elif isinstance(default, (tuple, list)):
            if isinstance(value, (tuple, list)):
                return type(default)(value)
        else:
            return value
    raise InputError(f"{where} = {value!r}: allowed: {_type_name(default)} like the default {default!r}")


def _clean_float(v: float) -> float:
    """``0.30000000000000004`` → ``0.3`` (12 significant digits), so names and tables stay tidy."""
    return float(f"{v:.12g}")


def parse_values(text: Any, default: Any, where: str) -> list:
    """The values of a ``--grid``/``--zip`` item: a list, ``"a,b,c"`` or ``"start:stop:count"``.

    Parameters
    ----------
    text : str or list
        ``"0.3,0.4"``, ``"0.3:0.6:7"`` (``count`` points from ``start`` to ``stop`` inclusive,
        numeric parameters only) or a list of values (sweep files).
    default : Any
        The factory default that types the values.
    where : str
        ``"--grid volfrac"``: names the option in error messages.

    Returns
    -------
    list
        Typed values, at least one, no duplicates.

    Raises
    ------
    InputError
        Empty list, duplicates, a malformed range or a value of the wrong type.
    """
    if isinstance(text, (list, tuple)):
        values = [coerce(v, default, where) for v in text]
    elif isinstance(text, str) and text.count(":") == 2 and not isinstance(default, str):
        values = _parse_linspace(text, default, where)
    elif isinstance(text, str):
        items = [t.strip() for t in text.split(",")] if not isinstance(default, (list, tuple)) else [text]
        if any(t == "" for t in items):
            raise InputError(f"{where} = {text!r}: an empty value; allowed: a,b,c or start:stop:count")
        values = [coerce(t, default, where) for t in items]
    else:
        values = [coerce(text, default, where)]
    if not values:
        raise InputError(f"{where}: no values; allowed: at least one value")
    seen: list = []
    for v in values:
        if v in seen:
            raise InputError(f"{where} = {text!r}: the value {v!r} appears twice; allowed: distinct values")
        seen.append(v)
    return values


def _parse_linspace(text: str, default: Any, where: str) -> list:
    parts = text.split(":")
    allowed = "start:stop:count with numbers start, stop and an integer count >= 1"
    if isinstance(default, bool) or not (default is None or isinstance(default, (int, float))):
        raise InputError(f"{where} = {text!r}: a range needs a numeric parameter (default {default!r}); "
                         f"allowed: a list a,b,c")
    try:
        start, stop = float(parts[0]), float(parts[1])
        count = int(parts[2])
    except ValueError:
        raise InputError(f"{where} = {text!r}: allowed: {allowed}") from None
    if count < 1 or not (math.isfinite(start) and math.isfinite(stop)):
        raise InputError(f"{where} = {text!r}: allowed: {allowed}")
    raw = [start] if count == 1 else [start + (stop - start) * i / (count - 1) for i in range(count)]
    if isinstance(default, int):
        if any(abs(v - round(v)) > 1e-9 * max(1.0, abs(v)) for v in raw):
            raise InputError(f"{where} = {text!r}: gives non-integer values for an int parameter; allowed: a "
                             f"range landing on integers, or a list")
        return [int(round(v)) for v in raw]
    return [_clean_float(v) for v in raw]


def parse_range(text: Any, default: Any, where: str) -> tuple[float, float]:
    """A ``--range`` value ``"low:high"`` (or a two-item list) of a numeric parameter.

    Raises
    ------
    InputError
        Not two numbers with ``low < high``, or a non-numeric parameter.
    """
    if isinstance(default, bool) or not (default is None or isinstance(default, (int, float))):
        raise InputError(f"{where}: sampling needs a numeric parameter (default {default!r}); allowed: a parameter "
                         f"with an int or float default")
    try:
        if isinstance(text, str):
            lo_s, sep, hi_s = text.partition(":")
            if not sep:
                raise ValueError
            lo, hi = float(lo_s), float(hi_s)
        else:
            lo, hi = (float(v) for v in text)
    except (TypeError, ValueError):
        raise InputError(f"{where} = {text!r}: allowed: low:high with two numbers") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InputError(f"{where} = {text!r}: allowed: finite low < high")
    return lo, hi


def parse_assignment(item: str, option: str) -> tuple[str, str]:
    """Split ``"key=value"`` (of ``option``); a missing ``=`` is an :class:`InputError`."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise InputError(f"{option} {item!r}: expected KEY=VALUES")
    return key.strip(), value.strip()


# ----------------------------------------------------------------------------------------------
# building a spec


def _check_key(key: str, defaults: Mapping[str, Any], option: str, problem: Path) -> None:
    if key not in defaults:
        raise InputError(f"{option} {key}: {problem.name} has no parameter {key!r}; accepted: "
                         f"{', '.join(defaults) or '(none)'}")


def _positive_int(value: Any, option: str, lo: int = 1) -> int:
    if isinstance(value, bool):
        raise InputError(f"{option} {value!r}: allowed: an integer >= {lo}")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{option} {value!r}: allowed: an integer >= {lo}") from None
    if n != value and not (isinstance(value, str) and str(n) == value.strip()):
        raise InputError(f"{option} {value!r}: allowed: an integer >= {lo}")
    if n < lo:
        raise InputError(f"{option} {value!r}: allowed: an integer >= {lo}")
    return n


def build_spec(problem: str | Path, grid: Mapping[str, Any] | None = None, zip: Mapping[str, Any] | None = None,
               sample: int | None = None, method: str = "lhs", ranges: Mapping[str, Any] | None = None,
               seed: int | None = None, fixed: Mapping[str, Any] | None = None, engine: str = "process",
               workers: int | None = None, scheduler: str | None = None, out: str | Path = "results",
               retries: int = 0) -> SweepSpec:
    """Check and type a sweep against the problem file's factory.

    Parameters
    ----------
    problem : str or Path
        The problem file.
    grid : mapping, optional
        ``{key: values}`` with values a list, ``"a,b"`` or ``"start:stop:count"``.
    zip : mapping, optional
        ``{key: values}`` varied together; all of the same length.
    sample : int, optional
        Number of quasi-random points in ``ranges``.
    method : {"lhs", "sobol"}
    ranges : mapping, optional
        ``{key: "low:high"}`` or ``{key: (low, high)}``; needs ``sample``.
    seed : int, optional
        Seed of the sample (drawn and recorded when None).
    fixed : mapping, optional
        ``{key: value}`` for all cases (strings typed by the defaults).
    engine : {"process", "dask"}
    workers : int, optional
        Parallel cases (default: the cores, at most the number of cases).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); implies ``engine="dask"``.
    out : str or Path
        Root of the sweep directory (``out/<problem>/sweep-<stamp>-<hash>/``).
    retries : int
        Re-runs of a failed case (default 0).

    Returns
    -------
    SweepSpec

    Raises
    ------
    InputError
        Missing problem file, unknown key (the message lists the accepted ones), a key given
        twice, bad values, a malformed sample or bad engine settings.
    """
    from fem_eigopt.problem.loading import problem_parameters

    path = Path(problem)
    if path.suffix == ".toml":
        raise InputError(f"{path}: a sweep file; allowed here: a .py problem file (use load_sweep_file)")
    defaults = problem_parameters(path)
    seen: dict[str, str] = {}

    def claim(key: str, option: str) -> None:
        _check_key(key, defaults, option, path)
        if key in seen:
            raise InputError(f"{option} {key}: {key!r} is already given by {seen[key]}; allowed: each parameter "
                             f"in one of --grid, --zip, --range, --set")
        seen[key] = option

    typed_grid: dict[str, list] = {}
    for key, values in (grid or {}).items():
        claim(key, "--grid")
        typed_grid[key] = parse_values(values, defaults[key], f"--grid {key}")
    typed_zip: dict[str, list] = {}
    for key, values in (zip or {}).items():
        claim(key, "--zip")
        typed_zip[key] = parse_values(values, defaults[key], f"--zip {key}")
    lengths = {k: len(v) for k, v in typed_zip.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f"--zip: lists of different lengths ({', '.join(f'{k}: {n}' for k, n in lengths.items())}); "
                         f"allowed: equal lengths")
    sample_spec = None
    if ranges and sample is None:
        raise InputError(f"--range {', '.join(ranges)}: given without --sample N; allowed: --range with --sample")
    if sample is not None:
        n = _positive_int(sample, "--sample")
        if method not in METHODS:
            raise InputError(f"--method {method!r}: allowed: {', '.join(METHODS)}")
        if not ranges:
            raise InputError(f"--sample {n}: no --range KEY=LOW:HIGH given; allowed: at least one range")
        typed_ranges: dict[str, tuple[float, float]] = {}
        for key, text in ranges.items():
            claim(key, "--range")
            typed_ranges[key] = parse_range(text, defaults[key], f"--range {key}")
        if seed is None:
            seed = secrets.randbits(32)
        sample_spec = SampleSpec(n=n, method=method, ranges=typed_ranges,
                                 seed=_positive_int(seed, "--seed", lo=0))
    typed_fixed: dict[str, Any] = {}
    for key, value in (fixed or {}).items():
        claim(key, "--set")
        typed_fixed[key] = coerce(value, defaults[key], f"--set {key}")
    if scheduler is not None:
        engine = "dask"  # a scheduler address is a Dask cluster
    if engine not in ENGINES:
        raise InputError(f"--engine {engine!r}: allowed: {', '.join(ENGINES)}")
    if workers is not None:
        workers = _positive_int(workers, "--workers")
    retries = _positive_int(retries, "--retries", lo=0)
    spec = SweepSpec(problem=path, grid=typed_grid, zip=typed_zip, sample=sample_spec, fixed=typed_fixed,
                     defaults=defaults, engine=engine, workers=workers, scheduler=scheduler, out=Path(out),
                     retries=retries)
    if not spec.varying:
        raise InputError("sweep: nothing varies; allowed: at least one --grid, --zip or --sample with --range")
    return spec


def load_sweep_file(path: str | Path, **overrides: Any) -> SweepSpec:
    """Read a sweep file (TOML) and build its :class:`SweepSpec`.

    The file holds the same as the command line::

        problem = "beam.py"          # relative to the sweep file
        engine = "process"           # optional: workers, scheduler, out, retries
        [set]
        nx = 64
        [grid]
        volfrac = "0.3:0.6:7"        # or a list [0.3, 0.45, 0.6]
        supports = ["SS", "CC"]
        [zip]                        # optional, equal lengths
        [sample]                     # optional
        n = 8
        method = "lhs"
        seed = 1
        range = { E = [1e9, 2e9] }

    Parameters
    ----------
    path : str or Path
        The ``.toml`` file.
    **overrides
        Keyword arguments of :func:`build_spec` that replace or extend the file's entries (``grid``,
        ``zip`` and ``fixed`` are merged key by key; None values are ignored).

    Raises
    ------
    InputError
        Unreadable TOML, an unknown key (the message lists the accepted ones), or anything
        :func:`build_spec` rejects.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such sweep file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    for key in data:
        if key not in FILE_KEYS:
            raise InputError(f"{path}: unknown key {key!r}; accepted: {', '.join(FILE_KEYS)}")
    for key in ("grid", "zip", "set", "sample"):
        if key in data and not isinstance(data[key], dict):
            raise InputError(f"{path}: {key} = {data[key]!r}; allowed: a table [{key}]")
    if "problem" not in data and overrides.get("problem") is None:
        raise InputError(f"{path}: no problem = \"FILE.py\" given; allowed: a path relative to the sweep file")
    problem = overrides.pop("problem", None) or (path.parent / str(data["problem"]))
    sample = dict(data.get("sample", {}))
    for key in sample:
        if key not in SAMPLE_KEYS:
            raise InputError(f"{path}: unknown key sample.{key}; accepted: {', '.join(SAMPLE_KEYS)}")
    if "range" in sample and not isinstance(sample["range"], dict):
        raise InputError(f"{path}: sample.range = {sample['range']!r}; allowed: a table {{KEY = [low, high]}}")
    kwargs: dict[str, Any] = {
        "grid": dict(data.get("grid", {})), "zip": dict(data.get("zip", {})), "fixed": dict(data.get("set", {})),
        "sample": sample.get("n"), "method": sample.get("method", "lhs"), "seed": sample.get("seed"),
        "ranges": dict(sample.get("range", {})),
        "engine": data.get("engine", "process"), "workers": data.get("workers"),
        "scheduler": data.get("scheduler"), "retries": data.get("retries", 0),
        "out": data.get("out", "results"),
    }
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("grid", "zip", "fixed", "ranges"):
            kwargs[key].update(value)
        else:
            kwargs[key] = value
    return build_spec(problem, **kwargs)


# ----------------------------------------------------------------------------------------------
# cases


def draw_sample(sample: SampleSpec, defaults: Mapping[str, Any]) -> list[dict]:
    """The points of a :class:`SampleSpec` (``scipy.stats.qmc``), typed by the defaults.

    Returns
    -------
    list of dict
        ``sample.n`` dicts ``{key: value}``; the same for the same seed.
    """
    import inspect
    import warnings

    from scipy.stats import qmc

    keys = list(sample.ranges)
    cls = qmc.LatinHypercube if sample.method == "lhs" else qmc.Sobol
    seed_arg = "rng" if "rng" in inspect.signature(cls).parameters else "seed"
    engine = cls(d=len(keys), **{seed_arg: sample.seed})
    with warnings.catch_warnings():
        # Sobol' balance properties need a power of 2; other counts are still a valid sample
        warnings.simplefilter("ignore", UserWarning)
        unit = engine.random(sample.n)
    lows = [sample.ranges[k][0] for k in keys]
    highs = [sample.ranges[k][1] for k in keys]
    points = qmc.scale(unit, lows, highs)
    out = []
    for row in points:
        point = {}
        for key, v in zip(keys, row):
            default = defaults.get(key)
            point[key] = int(round(float(v))) if isinstance(default, int) and not isinstance(default, bool) \
                else _clean_float(float(v))
        out.append(point)
    return out


def case_hash(parameters: Mapping[str, Any]) -> str:
    """8 hex digits of SHA-1 of the parameters (as sorted JSON)."""
    from fem_eigopt.io.rundir import to_jsonable

    text = json.dumps(to_jsonable(dict(parameters)), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def expand_cases(spec: SweepSpec) -> list[Case]:
    """All cases of a spec: grid × zip × sample, in that order (the last axis varies fastest).

    Raises
    ------
    InputError
        Two cases with the same parameters (a sample of integer parameters that collided).
    """
    axes: list[list[dict]] = [[{key: v} for v in values] for key, values in spec.grid.items()]
    if spec.zip:
        n = len(next(iter(spec.zip.values())))
        axes.append([{key: values[i] for key, values in spec.zip.items()} for i in range(n)])
    if spec.sample is not None:
        axes.append(draw_sample(spec.sample, spec.defaults))
    cases = []
    seen: dict[str, int] = {}
    for index, combo in enumerate(itertools.product(*axes)):
        params: dict[str, Any] = {}
        for part in combo:
            params.update(part)
        overrides = {**spec.fixed, **params}
        digest = case_hash(overrides)
        if digest in seen:
            logger.warning("case %d repeats case %d (%s); it is run once", index, seen[digest], params)
            continue
        seen[digest] = index
        cases.append(Case(index=len(cases), id=f"{len(cases):04d}-{digest}", parameters=params, overrides=overrides))
    return cases


def cases_from_json(items: Sequence[Mapping[str, Any]]) -> list[Case]:
    """Cases as stored in ``sweep.json`` (see :func:`case_to_json`)."""
    return [Case(index=int(c["index"]), id=str(c["id"]), parameters=dict(c["parameters"]),
                 overrides=dict(c["overrides"])) for c in items]


def case_to_json(case: Case) -> dict:
    """The ``sweep.json`` entry of a case."""
    return {"index": case.index, "id": case.id, "parameters": case.parameters, "overrides": case.overrides}
