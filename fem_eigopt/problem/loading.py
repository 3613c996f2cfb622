"""Problem files: import one, check ``--set`` overrides against its factory, build the Problem.

A ``--set KEY=VALUE`` string is parsed to the type of the parameter: its annotation
(``nx: int``, ``filter_radius: float | None``, ``kind: Literal["a", "b"]``) where it has one, else
the type of its default. :func:`parameter_specs` describes the parameters for ``info``: default,
type and, for string parameters, the allowed values the factory documents or checks.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import math
import re
import sys
import textwrap
import types
import typing
from dataclasses import dataclass, replace
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


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter of a problem file's factory, as ``info`` shows it.

    Attributes
    ----------
    name : str
    default : Any
        ``inspect.Parameter.empty`` when the parameter has none (it must then be set).
    type : str
        ``"int"``, ``"float or None"``, … from the annotation, else from the default.
    allowed : tuple of str
        For string parameters: the values the factory accepts, from a ``Literal`` annotation, a
        membership test (``if kind not in ("a", "b")``) in the factory or in a class/function it
        passes the value to, a comparison (``kind == "a"``) or the docstring
        (``kind`` = "a", "b" …); empty when unknown.
    """

    name: str
    default: Any
    type: str
    allowed: tuple[str, ...] = ()


def problem_description(path: str | Path) -> str:
    """The module docstring of a problem file ("" when it has none)."""
    module, _ = _import_problem_module(Path(path))
    return inspect.getdoc(module) or ""


def parameter_specs(path: str | Path) -> list[ParameterSpec]:
    """Every user-settable parameter of a problem file: default, type and allowed values.

    Parameters
    ----------
    path : str or Path
        The problem file.

    Returns
    -------
    list of ParameterSpec
        In the order of the factory's signature.

    Raises
    ------
    InputError
        The file is missing, not Python, fails to import or defines no ``problem``.
    """
    module, factory = _import_problem_module(Path(path))
    hints = _type_hints(factory)
    specs = []
    for name, p in _factory_parameters(factory).items():
        annotation = hints.get(name, p.annotation)
        default = p.default
        allowed: tuple[str, ...] = ()
        literal = _literal_values(annotation)
        if literal:
            allowed = tuple(str(v) for v in literal)
        elif isinstance(default, str) or _accepts(annotation, str):
            allowed = _string_values(module, factory, name, default)
        specs.append(ParameterSpec(name=name, default=default, type=_type_text(annotation, default),
                                   allowed=allowed))
    return specs


def _factory_parameters(factory) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _type_hints(factory) -> dict[str, Any]:
    try:
        return typing.get_type_hints(factory)
    except Exception:  # unresolvable string annotations: fall back to the defaults' types
        return {}


def _union_args(annotation: Any) -> tuple[Any, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


def _literal_values(annotation: Any) -> tuple[Any, ...]:
    values: list[Any] = []
    for a in _union_args(annotation):
        if typing.get_origin(a) is typing.Literal:
            values.extend(typing.get_args(a))
    return tuple(values)


def _accepts(annotation: Any, kind: type) -> bool:
    return any(a is kind for a in _union_args(annotation))


def _type_text(annotation: Any, default: Any) -> str:
    if annotation is inspect.Parameter.empty or isinstance(annotation, str):
        if default is inspect.Parameter.empty or default is None:
            return "any Python literal"
        return type(default).__name__
    names = []
    for a in _union_args(annotation):
        if a is type(None):
            names.append("None")
        elif typing.get_origin(a) is typing.Literal:
            names.append("str")
        else:
            names.append(getattr(a, "__name__", str(a)))
    return " or ".join(dict.fromkeys(names))


def _string_values(module, factory, name: str, default: Any) -> tuple[str, ...]:
    """Values of the string parameter ``name`` that the factory checks, passes on or documents."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(factory)))
    except (OSError, TypeError, SyntaxError):
        return ()
    complete: list[str] = []  # from membership tests: the whole set
    seen: list[str] = []  # from comparisons and documentation: some of them
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and _names(node.left, name):
            for op, right in zip(node.ops, node.comparators):
                values = _constant_strings(right, module)
                if isinstance(op, (ast.In, ast.NotIn)) and values:
                    complete.extend(values)
                elif isinstance(op, (ast.Eq, ast.NotEq)) and values:
                    seen.extend(values)
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg and isinstance(kw.value, ast.Name) and kw.value.id == name:
                    seen.extend(_callee_values(module, node.func, kw.arg))
    if complete:
        return tuple(dict.fromkeys(complete))
    doc = " ".join([inspect.getdoc(module) or "", inspect.getdoc(factory) or ""])
    for match in re.finditer(rf"``{re.escape(name)}``\s*(?:=|:|is|one of)\s*(.*?)(?:\.\s|\.$|;|$)", doc, re.DOTALL):
        seen.extend(re.findall(r'"([^"\s]+)"', match.group(1)))
    if not seen:
        return ()
    if isinstance(default, str):
        seen.insert(0, default)
    return tuple(dict.fromkeys(seen))


def _names(node: ast.AST, name: str) -> bool:
    return (isinstance(node, ast.Name) and node.id == name) or (
        isinstance(node, ast.Attribute) and node.attr == name)


def _constant_strings(node: ast.AST, module) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            return [e.value for e in node.elts]
    if isinstance(node, ast.Name) and module is not None:
        value = getattr(module, node.id, None)
        if isinstance(value, (tuple, list, set, frozenset, dict)) and all(isinstance(v, str) for v in value):
            return list(value)
    return []


def _callee_values(module, func: ast.AST, keyword: str) -> list[str]:
    """Values a callable checks for its argument ``keyword`` (one level deep)."""
    if keyword == "element":
        from fem_eigopt.problem.definition import _ELEMENTS

        return list(_ELEMENTS)
    parts = []
    while isinstance(func, ast.Attribute):
        parts.insert(0, func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return []
    obj = getattr(module, func.id, None)
    for part in parts:
        obj = getattr(obj, part, None)
    if obj is None:
        return []
    try:
        target = inspect.getmodule(obj)
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError):
        return []
    values: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and _names(node.left, keyword):
            for op, right in zip(node.ops, node.comparators):
                if isinstance(op, (ast.In, ast.NotIn)):
                    values.extend(_constant_strings(right, target))
    return values


def _parse_annotated(text: str, annotation: Any, default: Any, where: str) -> Any:
    """Parse ``text`` to the type ``annotation`` names (e.g. ``float | None``); see :func:`_parse_value`.

    Returns ``NotImplemented`` when the annotation is not one of the simple types handled here.
    """
    if isinstance(text, str) is False:
        return text
    args = _union_args(annotation)
    literal = _literal_values(annotation)
    if literal:
        for value in literal:
            if str(value) == text:
                return value
        raise InputError(f"{where} = {text!r}: allowed: {', '.join(repr(v) for v in literal)}")
    simple = [a for a in args if a in (bool, int, float, str, type(None))]
    if not simple or len(simple) != len(args):
        return NotImplemented
    if type(None) in simple and text.lower() in ("none", "null"):
        return None
    for kind in (bool, int, float):
        if kind in simple:
            try:
                return _parse_value(text, kind(0), where)
            except InputError:
                if kind is bool and (int in simple or float in simple):
                    continue
                if kind is int and float in simple:
                    continue
                if str in simple:
                    break
                allowed = " or ".join(_type_text(a, None) if a is not type(None) else "None" for a in args)
                raise InputError(f"{where} = {text!r}: allowed: {allowed}"
                                 + ("" if default is inspect.Parameter.empty else f" (default {default!r})")) from None
    if str in simple:
        return text
    raise InputError(f"{where} = {text!r}: allowed: None")


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
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
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
            f"{where} = {text!r}: expected {_kind_text(default)} like the default {default!r}"
        ) from None


def _kind_text(default: Any) -> str:
    return "a finite float" if isinstance(default, float) else type(default).__name__


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
    params = _factory_parameters(factory)
    hints = _type_hints(factory)
    kwargs: dict[str, Any] = {}
    for key, text in (overrides or {}).items():
        if key not in params:
            raise InputError(
                f"{path}: unknown parameter {key!r}; accepted: {', '.join(params) or '(none)'}"
            )
        default = params[key].default
        where = f"{path}: {key}"
        value = NotImplemented
        annotation = hints.get(key, params[key].annotation)
        if annotation is not inspect.Parameter.empty and not isinstance(annotation, str):
            value = _parse_annotated(text, annotation, default, where)
        if value is NotImplemented:
            value = _parse_value(text, None if default is inspect.Parameter.empty else default, where)
        kwargs[key] = value
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in kwargs]
    if missing:
        raise InputError(f"{path}: parameter {missing[0]!r} has no default; allowed: set it with "
                         f"--set {missing[0]}=VALUE")
    call = f"problem({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    try:
        problem = factory(**kwargs)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    except MemoryError as exc:
        raise InputError(f"{path}: {call} ran out of memory; allowed: a smaller model") from exc
    except Exception as exc:
        raise InputError(f"{path}: {call} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(problem, Problem):
        raise InputError(f"{path}: problem() returned {type(problem).__name__}; allowed: fem_eigopt.Problem")
    _check_size(problem, f"{path}: {call}")
    values = {name: p.default for name, p in params.items()}
    values.update(kwargs)
    return replace(problem, source=str(path), name=problem.name or path.stem, parameters=values)


def _check_size(problem: Problem, where: str) -> None:
    """Refuse, before assembly, a problem whose model would not fit in the available memory."""
    from fem_eigopt.problem.mesh import check_model_size

    element = problem.element
    n_scalar = getattr(element, "doflocs", None)
    if n_scalar is None:
        return
    dim = problem.mesh.dim()
    check_model_size(int(problem.mesh.t.shape[1]), len(n_scalar) * dim, where)
