"""JSON Schema (draft 2020-12) validation of catalog records, with stable findings.

jsonschema is imported lazily, and with kfm-runbooks' import skip for the optional
`rfc3987_syntax` (a 1.2 s Lark grammar compile at import, used only for "iri" formats,
which no KFM schema here uses): runbooks that validate records stay about as fast as the
others. "date-time" and the other formats KFM's schemas use are still checked.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common import json as strict_json
from ..common.json import pointer

MAX_SCHEMA_BYTES = 4 << 20

MAX_SCHEMA_ERRORS = 100


@dataclass(frozen=True, order=True)
class SchemaError:
    """One schema violation: where (JSON pointer), which keyword, the validator's message."""

    field: str
    keyword: str
    message: str


class SchemaUnavailable(Exception):
    """The schema file is missing, unreadable or not a valid 2020-12 schema."""


def _jsonschema() -> Any:
    from ..._speedups import defer_slow_optional_imports

    defer_slow_optional_imports()
    import jsonschema  # type: ignore[import-untyped]

    return jsonschema


@functools.lru_cache(maxsize=32)
def _validator(path: str, mtime_ns: int, size: int) -> Any:
    jsonschema = _jsonschema()
    try:
        schema = strict_json.load_file(Path(path), MAX_SCHEMA_BYTES)
        jsonschema.Draft202012Validator.check_schema(schema)
    except (OSError, UnicodeError, ValueError, jsonschema.SchemaError) as exc:
        raise SchemaUnavailable(f"{Path(path).name}: {type(exc).__name__}") from exc
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def validator_for(path: Path | None) -> Any:
    """A (cached) validator for the schema file; raises SchemaUnavailable."""
    if path is None:
        raise SchemaUnavailable("no schema configured")
    try:
        stat = path.stat()
    except OSError as exc:
        raise SchemaUnavailable(f"{path.name}: not found") from exc
    return _validator(str(path), stat.st_mtime_ns, stat.st_size)


def schema_errors(path: Path | None, instance: Any) -> list[SchemaError]:
    """Every violation of the schema (sorted by field, keyword; at most 100)."""
    validator = validator_for(path)
    errors = []
    try:
        for count, error in enumerate(validator.iter_errors(instance)):
            if count >= MAX_SCHEMA_ERRORS:
                break
            errors.append(
                SchemaError(pointer(error.absolute_path), str(error.validator), error.message)
            )
    except RecursionError as exc:
        raise SchemaUnavailable("instance too deeply nested to validate") from exc
    except Exception as exc:  # e.g. an unresolvable remote $ref: never fetched
        raise SchemaUnavailable(f"schema cannot be evaluated: {type(exc).__name__}") from exc
    return sorted(set(errors))
