"""Parameters for a run: typed, validated against the runbook, merged in one place.

Precedence (lowest to highest): the runbook's defaults < `-f params.yaml` < `-p name=value`.
`incident_id`, `workspace`, `target` and `apply` are reserved: they come from --incident,
the workspace, --target and --apply, never from -p/-f.

Values must be JSON types (str, int, float, bool, None, list, dict). A `-p` value for a
parameter whose default is a string stays a string, byte for byte (`00123` is not 123);
for other parameters it is parsed as JSON. Everything is checked before a kernel starts.
"""

from __future__ import annotations

import json
import keyword
import math
from pathlib import Path
from typing import Any

import yaml

from .errors import ParameterError
from .runbook import REQUIRED_PARAMETERS, Parameter

_JSON_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


def _json_value(name: str, value: Any, where: str) -> Any:
    """Reject anything that is not plain JSON data (dates, sets, bytes, NaN, ...)."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParameterError(f"{where}: {name} is {value}, which JSON cannot carry")
        return value
    if isinstance(value, list):
        return [_json_value(name, item, where) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ParameterError(f"{where}: {name} has non-string keys; use a JSON object")
        return {key: _json_value(name, item, where) for key, item in value.items()}
    raise ParameterError(
        f"{where}: {name} is a {type(value).__name__} ({value!r}), not a JSON value; "
        "quote it to pass a string"
    )


def _check_type(param: Parameter, value: Any, where: str) -> Any:
    expected = _JSON_TYPES.get(param.type_name)
    if expected is None or value is None:
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if not ok:
        hint = " (quote it to keep it a string)" if expected is str else ""
        raise ParameterError(
            f"{where}: {param.name} must be {param.type_name} like its default "
            f"{param.default}, got {type(value).__name__} {value!r}{hint}"
        )
    return value


def _check_name(name: str, declared: dict[str, Parameter], where: str) -> Parameter:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ParameterError(f"{where}: {name!r} is not a valid parameter name")
    if name in REQUIRED_PARAMETERS:
        flag = {
            "incident_id": "--incident",
            "workspace": "--incident",
            "target": "--target",
            "apply": "--apply",
        }[name]
        raise ParameterError(f"{where}: {name} is set by {flag}, not as a parameter")
    if name not in declared:
        known = ", ".join(n for n in declared if n not in REQUIRED_PARAMETERS) or "none"
        raise ParameterError(f"{where}: unknown parameter {name!r}; this runbook accepts: {known}")
    return declared[name]


def parse_cli(pairs: list[str], declared: dict[str, Parameter]) -> dict[str, Any]:
    """`-p name=value` pairs, typed by the declared default's type."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        where = f"-p {name}"
        if not sep:
            raise ParameterError(f"-p {pair!r}: expected name=value")
        param = _check_name(name.strip(), declared, where)
        if param.type_name == "str":
            values[param.name] = text
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ParameterError(
                f"{where}: {text!r} is not a JSON value (the default is {param.default}); "
                "write strings as JSON, e.g. -p name='\"text\"'"
            ) from exc
        values[param.name] = _check_type(param, _json_value(name, value, where), where)
    return values


def load_file(path: Path, declared: dict[str, Parameter]) -> dict[str, Any]:
    """A YAML (or JSON) mapping of parameters."""
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ParameterError(f"parameters file {path} not found") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise ParameterError(f"parameters file {path} is not valid YAML: {first}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ParameterError(f"parameters file {path} must be a mapping of name: value")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if not isinstance(name, str):
            raise ParameterError(f"{where}: parameter names must be strings, got {name!r}")
        param = _check_name(name, declared, where)
        values[name] = _check_type(param, _json_value(name, value, where), where)
    return values


def build(
    declared: dict[str, Parameter],
    *,
    cli: list[str] | None = None,
    file: Path | None = None,
    injected: dict[str, Any],
) -> dict[str, Any]:
    """The full parameter set for papermill: file < cli, then the injected four."""
    merged: dict[str, Any] = {}
    if file is not None:
        merged.update(load_file(file, declared))
    merged.update(parse_cli(cli or [], declared))
    merged.update(injected)
    return merged
