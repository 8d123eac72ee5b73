"""Shared, read-only helpers of the pipelines checks: strict JSON, canonical hashes,
contained paths, JSON Schema errors, KFM expected-error matchers, UTC instants.

Imported inside the kernel: standard library, PyYAML and (lazily, only when a schema is
configured) jsonschema. Every reader returns a finding code instead of raising, so hostile
input (malformed JSON, paths escaping their folder, symlinks) becomes a finding.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..._fs import replace_atomic
from ...errors import TargetError
from ...target import Target
from .. import BLOCKING, Finding
from ..common import json as strict_json
from ..common.files import FileProblem, read_bounded
from ..common.findings import FindingsReport
from ..common.json import pointer
from ..common.paths import rel as rel  # re-exported for pipelines_*

MAX_JSON_BYTES = 2 * 1024 * 1024
SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")
# Codes a strict read can produce (the file itself is unusable: outcome ERROR).
READ_CODES = frozenset(
    {
        "INPUT_NOT_FILE",
        "INPUT_SYMLINK_DENIED",
        "INPUT_TOO_LARGE",
        "INPUT_READ_ERROR",
        "JSON_INVALID",
        "JSON_NOT_UTF8",
        "JSON_DUPLICATE_KEY",
        "JSON_NONFINITE_NUMBER",
        "ROOT_NOT_OBJECT",
    }
)


# --- strict JSON -----------------------------------------------------------------------


def parse_json(data: bytes) -> tuple[Any, str | None]:
    """Strict parse of bytes: (value, None) or (None, code)."""
    value, kind = strict_json.parse(data)
    if kind is None:
        return value, None
    return None, "JSON_INVALID" if kind == "TOO_DEEP" else f"JSON_{kind}"


_READ_PROBLEM_CODES = {
    FileProblem.MISSING: "INPUT_NOT_FILE",
    FileProblem.LINK: "INPUT_SYMLINK_DENIED",
    FileProblem.NOT_REGULAR: "INPUT_NOT_FILE",
    FileProblem.TOO_LARGE: "INPUT_TOO_LARGE",
    FileProblem.UNREADABLE: "INPUT_READ_ERROR",
}


def read_json(
    path: Path, max_bytes: int = MAX_JSON_BYTES
) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON object from a regular file (no symlinks, bounded size), or a read code."""
    data, problem = read_bounded(path, max_bytes)
    if data is None:
        return None, _READ_PROBLEM_CODES[problem or FileProblem.UNREADABLE]
    value, code = parse_json(data)
    if code is not None:
        return None, code
    if not isinstance(value, dict):
        return None, "ROOT_NOT_OBJECT"
    return value, None


def write_json(path: Path, value: Any) -> None:
    """Atomically replace a small state file (sorted keys: deterministic bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


# --- hashes ----------------------------------------------------------------------------


# --- paths -----------------------------------------------------------------------------


def repo_path(raw: Any) -> PurePosixPath | None:
    """A canonical repository-relative path (no /, \\, `.` or `..` parts), else None."""
    if not isinstance(raw, str) or not raw or raw.startswith("/") or "\\" in raw or "\x00" in raw:
        return None
    path = PurePosixPath(raw)
    if str(path) != raw or any(part in {".", ".."} for part in path.parts):
        return None
    return path


def contained(root: Path, raw: Any) -> tuple[Path | None, str | None]:
    """Resolve a relative path inside `root` without following symlinks.

    The decision is made on the text first (PATH_ESCAPE), then each component inside
    the root is checked for symlinks (SYMLINK_DENIED) before anything is opened.
    """
    relative = repo_path(raw)
    if relative is None:
        return None, "PATH_ESCAPE"
    current = root
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            return None, "SYMLINK_DENIED"
    return current, None


def json_files(entries: Iterable[Path]) -> list[Path]:
    """Every *.json file named, or found (sorted, not recursive) in a named folder.

    In folders, hidden files and KFM fixture manifests (`expected_*.json`, which state the
    expected verdicts rather than being inputs) are skipped.
    """
    found: set[Path] = set()
    for entry in entries:
        if entry.is_dir():
            found.update(
                p for p in entry.glob("*.json") if not p.name.startswith((".", "expected_"))
            )
        else:
            found.add(entry)
    return sorted(found)


# --- JSON Schema -----------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class SchemaError:
    """One JSON Schema violation: where (JSON pointer), which keyword, jsonschema's text."""

    pointer: str
    keyword: str
    message: str


class SchemaValidator:
    """A Draft 2020-12 validator with format checks, loaded once from a schema file."""

    def __init__(self, path: Path) -> None:
        from ..._speedups import defer_slow_optional_imports

        # jsonschema would import rfc3987_syntax (1.2 s, "iri" formats only): skip it.
        defer_slow_optional_imports()
        jsonschema = importlib.import_module("jsonschema")
        schema, code = read_json(path, max_bytes=4 * MAX_JSON_BYTES)
        if schema is None:
            raise TargetError(f"schema {path} is unusable ({code}): fix the target's schema path")
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise TargetError(f"schema {path} is not a valid JSON Schema: {exc.message}") from exc
        self.path = path
        self._validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.FormatChecker()
        )

    def errors(self, value: Any, limit: int = 100) -> list[SchemaError]:
        found = []
        for error in self._validator.iter_errors(value):
            found.append(
                SchemaError(pointer(error.absolute_path), str(error.validator), error.message)
            )
            if len(found) >= limit:
                break
        return sorted(found)


def optional_validator(target: Target, section: str, key: str) -> SchemaValidator | None:
    path = target.resolve(section, key, required=False)
    return SchemaValidator(path) if path is not None else None


# --- time ------------------------------------------------------------------------------

_DURATION_RE = re.compile(
    r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?"
)


def parse_instant(value: Any) -> dt.datetime | None:
    """A timezone-aware UTC instant from ISO 8601 text, else None (never raises)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(dt.UTC)


def parse_duration(value: Any) -> dt.timedelta | None:
    """ISO 8601 durations of days/hours/minutes/seconds (`PT1H`, `P1D`), else None."""
    if not isinstance(value, str):
        return None
    match = _DURATION_RE.fullmatch(value)
    if not match or value in ("P", "PT") or value.endswith("T"):
        return None
    parts = {key: int(number) for key, number in match.groupdict(default="0").items()}
    delta = dt.timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    return delta if delta > dt.timedelta(0) else None


def as_of(target: Target, section: str) -> dt.datetime:
    """The evaluation instant: the section's `as_of` (fixed, for fixtures), else now."""
    raw = target.section(section).get("as_of")
    if raw is None:
        return dt.datetime.now(dt.UTC)
    moment = parse_instant(raw)
    if moment is None:
        raise TargetError(f"target {target.path}: '{section}.as_of' must be UTC ISO 8601 text")
    return moment


def hours(delta: dt.timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


# --- per-file reports ------------------------------------------------------------------


@dataclass
class FileReport(FindingsReport):
    """One input file's verdict (KFM outcome) and findings."""

    file: str
    findings: list[Finding] = field(default_factory=list)
    error_codes: frozenset[str] = READ_CODES
    details: dict[str, Any] = field(default_factory=dict)

    def verdict_error_codes(self) -> frozenset[str]:
        return self.error_codes

    def add(self, code: str, where: str = "/", message: str = "", severity: str = BLOCKING) -> None:
        self.findings.append(Finding(code, self.file, where, severity, message))

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "outcome": self.outcome, "codes": self.codes, **self.details}
