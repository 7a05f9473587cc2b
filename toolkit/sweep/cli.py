"""Config files and command-line overrides, with one clear error for each mistake.

``--config path/to/file.py[:variant]`` loads ``get_config(variant)`` and ``sweep`` from the
file; ``--config.seeds=5`` or ``--config.evals.shifts.severities=(1,3,5)`` override fields
(the syntax of ml_collections' ``config_flags``). Values are Python literals; a string that
is not one stays a string, and ``a,b,c`` for a tuple field gives a tuple of strings.
Overrides keep each field's type (ConfigDict type safety); unknown fields name the closest.
A field set in the file that nothing reads is refused the same way (:func:`sweep_specs`),
and an error of any type raised by the file is one line naming the file and the line.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from toolkit.sweep.config import SweepConfigError
from toolkit.sweep.defaults import runner_fields

__all__ = [
    "apply_overrides",
    "config_file_of",
    "load_config",
    "load_module",
    "parse_overrides",
    "sweep_specs",
]


def _module(path: Path):
    if not path.is_file():
        raise SweepConfigError(f"config file {str(path)!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"{CONFIG_MODULE_PREFIX}{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise SweepConfigError(
            f"config file {str(path)!r} has a syntax error at line {error.lineno}: {error.msg}"
        ) from None
    except Exception as error:
        message = failure(f"importing config file {str(path)!r}", error, str(path))
        raise SweepConfigError(message) from None
    for name in ("get_config", "sweep"):
        if not callable(getattr(module, name, None)):
            raise SweepConfigError(
                f"config file {str(path)!r} must define get_config(variant='') and "
                f"sweep(config); {name} is missing"
            )
    return module


CONFIG_MODULE_PREFIX = "sweep_config_"


def load_module(path: str | Path):
    """Executes a config file as a fresh module (its top-level registrations included)."""
    return _module(Path(path))


def config_file_of(sweep_fn: Callable) -> str | None:
    """The config file ``sweep_fn`` was loaded from by :func:`load_config`, else None
    (a ``sweep`` defined in a notebook or an importable module)."""
    if not getattr(sweep_fn, "__module__", "").startswith(CONFIG_MODULE_PREFIX):
        return None
    path = getattr(sweep_fn, "__globals__", {}).get("__file__")
    return str(Path(path).resolve()) if path else None


def load_config(spec: str, overrides: Sequence[str] | dict[str, Any] = ()) -> tuple[Any, Callable]:
    """``(config, sweep_fn)`` from ``"file.py[:variant]"`` with ``overrides`` applied.

    ``overrides`` are ``"--config.a.b=value"`` strings or a ``{"a.b": value}`` dict.
    """
    path, _, variant = str(spec).partition(":")
    module = _module(Path(path))
    try:
        config = module.get_config(variant)
    except Exception as error:
        message = failure(f"{path}: get_config({variant!r})", error, module.__file__)
        raise SweepConfigError(message) from None
    values = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    apply_overrides(config, values)
    return config, module.sweep


def parse_overrides(argv: Sequence[str]) -> dict[str, str]:
    """``["--config.a=1", "--config.b", "2"]`` -> ``{"a": "1", "b": "2"}`` (raw strings)."""
    values, args = {}, list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--config."):
            raise SweepConfigError(
                f"unexpected argument {arg!r}; overrides look like --config.seeds=5"
            )
        name, eq, value = arg[len("--config.") :].partition("=")
        if not eq:
            if not args:
                raise SweepConfigError(f"override {arg!r} has no value")
            value = args.pop(0)
        values[name] = value
    return values


def _convert(raw: Any, current: Any) -> Any:
    """A command-line string (or a Python value) as the type of the field it replaces."""
    if isinstance(raw, str):
        if isinstance(current, str):
            return raw
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
    else:
        value = raw
    if isinstance(current, tuple | list):
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        elif not isinstance(value, tuple | list):
            value = (value,)
        return type(current)(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def apply_overrides(config: Any, values: dict[str, Any]) -> None:
    """Sets dotted fields of a ConfigDict in place, keeping each field's type."""
    for dotted, raw in values.items():
        node, parts = config, dotted.split(".")
        for depth, part in enumerate(parts):
            keys = list(node.keys()) if hasattr(node, "keys") else []
            if part not in keys:
                prefix = ".".join(parts[:depth])
                match = difflib.get_close_matches(part, [str(k) for k in keys], n=1, cutoff=0.5)
                hint = f" Did you mean {match[0]!r}?" if match else ""
                raise SweepConfigError(
                    f"config has no field {dotted!r}.{hint} Fields of config"
                    f"{'.' + prefix if prefix else ''}: {', '.join(map(str, keys)) or 'none'}"
                )
            if depth < len(parts) - 1:
                node = node[part]
        value = _convert(raw, node[parts[-1]])
        try:
            node[parts[-1]] = value
        except TypeError as error:
            raise SweepConfigError(f"--config.{dotted}={raw!r}: {error}") from None


def failure(call: str, error: BaseException, filename: str | None) -> str:
    """``"sweep(config) failed: RuntimeError at /path/config.py line 12: ..."``: one line
    naming the call, the error and the line of ``filename`` (the config file) it came from,
    for errors of any type raised by a config file's code."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == filename]
    where = f" at {filename} line {frames[-1].lineno}" if frames else ""
    return f"{call} failed: {type(error).__name__}{where}: {error}"


def sweep_specs(config: Any, sweep_fn: Any) -> list[Mapping[str, Any]]:
    """``sweep_fn(config)`` as a list, with the config's fields checked.

    A top-level field that neither the runner reads
    (:func:`~toolkit.sweep.defaults.runner_fields`) nor ``sweep_fn`` reads would be ignored.
    When its name is close to one of those (``config.exector``, ``config.evalz``) it is a
    misspelling, refused naming the closest; any other is warned about (a config file may
    hold fields that only some of its sweeps read). An unknown field of ``config.tune``
    is refused. The reads are seen by giving a ConfigDict ``config``, while ``sweep_fn``
    runs, a subclass whose lookups are noted (the object itself: what ``sweep_fn`` sets
    stays set).
    """
    fields, read = runner_fields(), set()
    original = type(config)
    noted = hasattr(config, "_fields") and hasattr(config, "keys")  # a ConfigDict
    if noted:

        class Noted(original):
            __slots__ = ()  # the same layout, so the instance can take this class

            def __getitem__(self, key):
                read.add(str(key).split(".")[0])
                return super().__getitem__(key)

        object.__setattr__(config, "__class__", Noted)
    try:
        specs = list(sweep_fn(config))
    except Exception as error:
        code = getattr(sweep_fn, "__code__", None)
        filename = getattr(code, "co_filename", None)
        raise SweepConfigError(failure("sweep(config)", error, filename)) from None
    finally:
        if noted:
            object.__setattr__(config, "__class__", original)
    if noted:
        valid = [*fields[""], *sorted(read)]
        for key in config.keys():
            if key not in valid:
                _unread(f"config.{key}", valid, ", and sweep(config) does not read it", 0.75)
    tune = config.get("tune")
    for key in tune.keys() if hasattr(tune, "keys") else ():
        if key not in fields["tune"]:
            _unread(f"config.tune.{key}", fields["tune"], "", 0.0)
    return specs


def _unread(field: str, valid: Sequence[str], read_by: str, cutoff: float) -> None:
    """Refuses ``field`` if its name is within ``cutoff`` of a ``valid`` one, else warns."""
    name = field.rpartition(".")[2]
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=max(cutoff, 0.5))
    hint = f"; did you mean {match[0]!r}?" if match else "."
    message = f"{field} is set but nothing reads it (not a field of the runner{read_by})"
    if match or not cutoff:
        raise SweepConfigError(f"{message}{hint} Valid: {', '.join(valid)}")
    warnings.warn(f"{message}; it is ignored", stacklevel=3)
