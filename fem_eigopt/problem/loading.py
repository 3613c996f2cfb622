"""Problem files: import one, check ``--set`` overrides against its factory, build the Problem.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from fem_eigopt.errors import InputError
from fem_eigopt.problem.definition import Problem

# ----------------------------------------------------------------------------------------------
# loading problem files


def parse_overrides(items: Sequence[str], option: str = "--set") -> dict[str, str]:
    """Split ``["key=value", ...]`` into a dict; a malformed item is an :class:`InputError`."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{option} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _import_problem_module(path: Path):
    if not path.exists():
        raise InputError(f"{path}: no such problem file")
    if path.is_dir() or path.suffix != ".py":
        raise InputError(f"{path}: not a Python problem file; allowed: a .py file defining problem(**params)")
    module_name = f"fem_eigopt_problem_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling (process pools) need it there
    try:
        spec.loader.exec_module(module)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    except Exception as exc:
        raise InputError(f"{path}: importing the problem file failed: {type(exc).__name__}: {exc}") from exc
    factory = getattr(module, "problem", None)
    if not callable(factory):
        raise InputError(f"{path}: defines no function problem(**params) -> fem_eigopt.Problem")
    return module, factory


def problem_parameters(path: str | Path) -> dict[str, Any]:
    """The user-settable parameters of a problem file and their defaults."""
    _, factory = _import_problem_module(Path(path))
    return {
        name: p.default
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _parse_value(text: str, default: Any, where: str) -> Any:
    """Parse ``text`` to the type of ``default`` (bool, int, float, str; others via literal_eval)."""
    if isinstance(text, str) is False:
        return text  # already a Python value (sweeps pass values, not strings)
    try:
        if isinstance(default, bool):
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, str):
            return text
        if default is None:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return text
        value = ast.literal_eval(text)
        if isinstance(default, (tuple, list)) and not isinstance(value, (tuple, list)):
            raise ValueError
        return type(default)(value) if isinstance(default, (tuple, list)) else value
    except (ValueError, SyntaxError, TypeError):
        raise InputError(
            f"{where} = {text!r}: expected {type(default).__name__} like the default {default!r}"
        ) from None


def load_problem(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Problem:
    """Import a problem file and build its :class:`Problem`.

    Parameters
    ----------
    path : str or Path
        The problem file (``problems/beam.py``).
    overrides : mapping, optional
        Parameter values by name; strings are parsed to the type of the parameter's default.

    Raises
    ------
    InputError
        Missing file, no ``problem`` factory, an unknown or ill-typed parameter, or an invalid
        problem; the message names the file and the field.
    """
    path = Path(path)
    _, factory = _import_problem_module(path)
    params = {
        name: p
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    kwargs: dict[str, Any] = {}
    for key, text in (overrides or {}).items():
        if key not in params:
            raise InputError(
                f"{path}: unknown parameter {key!r}; accepted: {', '.join(params) or '(none)'}"
            )
        default = params[key].default
        kwargs[key] = _parse_value(text, None if default is inspect.Parameter.empty else default, f"{path}: {key}")
    try:
        problem = factory(**kwargs)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    except Exception as exc:
        raise InputError(f"{path}: problem({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(problem, Problem):
        raise InputError(f"{path}: problem() returned {type(problem).__name__}; allowed: fem_eigopt.Problem")
    values = {name: p.default for name, p in params.items()}
    values.update(kwargs)
    return replace(problem, source=str(path), name=problem.name or path.stem, parameters=values)
