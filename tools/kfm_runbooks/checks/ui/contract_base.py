"""Shared pieces of the UI registry contract checks: target config, verdicts, safe reads.

`ContractsConfig` reads the target's `ui_registry` section (KFM case files, schemas,
LayerManifest folders); `CaseVerdict` is one case's verdict next to the one KFM states.
Files are read strictly (catalog_json.read_object: size-bounded, no symlinks, duplicate keys
and non-finite numbers refused) and only inside the target's folder.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...target import Target
from ..catalog.json_docs import inside, read_object
from ..common.json import pointer

MAX_SCHEMA_FINDINGS = 50

HELD = frozenset({"HOLD", "ABSTAIN"})


@dataclass(frozen=True)
class ContractsConfig:
    base: Path
    view_registry_cases: Path | None
    view_registry_schema: Path | None
    admission_cases: Path | None
    manifests: tuple[Path, ...]
    manifest_schema: Path | None
    manifest_expected: Path | None

    @classmethod
    def from_target(cls, target: Target) -> ContractsConfig:
        target.section("ui_registry")

        def one(key: str) -> Path | None:
            return target.resolve("ui_registry", key, required=False)

        return cls(
            base=target.base,
            view_registry_cases=one("view_registry_cases"),
            view_registry_schema=one("view_registry_schema"),
            admission_cases=one("admission_cases"),
            manifests=tuple(target.resolve_many("ui_registry", "manifests")),
            manifest_schema=one("manifest_schema"),
            manifest_expected=one("manifest_expected"),
        )


@dataclass
class CaseVerdict:
    suite: str  # view-registry | layer-manifest | admission
    case: str
    outcome: str
    findings: list[tuple[str, str]]  # (code, JSON pointer)
    expected_outcome: str | None = None
    expected: list[tuple[str, str]] | None = None  # path "" when KFM states codes only

    @property
    def codes(self) -> list[str]:
        return sorted({code for code, _ in self.findings})

    @property
    def matches(self) -> bool | None:
        if self.expected_outcome is None or self.expected is None:
            return None
        if self.outcome != self.expected_outcome:
            return False
        if all(path == "" for _, path in self.expected):
            return self.codes == sorted({code for code, _ in self.expected})
        return sorted(set(self.findings)) == sorted(set(self.expected))

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "case": self.case,
            "outcome": self.outcome,
            "codes": [f"{code} {path}" for code, path in self.findings],
            "expected": None
            if self.expected_outcome is None
            else (
                f"{self.expected_outcome} "
                + (", ".join(f"{c} {p}".strip() for c, p in self.expected or []) or "-")
            ),
            "matches_expected": self.matches,
        }


# --- helpers ---------------------------------------------------------------------------


def read_json(path: Path | None, base: Path) -> tuple[dict[str, Any] | None, str | None]:
    if path is None:
        return None, "FILE_NOT_FOUND"
    if not inside(path, base):
        return None, "PATH_ESCAPE"
    return read_object(path)


def schema_errors(doc: Any, schema: dict[str, Any]) -> list[str] | None:
    """JSON pointers of schema violations (sorted, de-duplicated); None: schema unusable."""
    from ..._speedups import defer_slow_optional_imports

    defer_slow_optional_imports()
    jsonschema = importlib.import_module("jsonschema")  # lazy: ~1 s, only when asked
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        errors = []
        for error in validator.iter_errors(doc):
            errors.append(pointer(error.absolute_path))
            if len(errors) >= MAX_SCHEMA_FINDINGS:
                break
    except (jsonschema.SchemaError, RecursionError, ValueError):
        return None
    return sorted(set(errors))


def case_name(case: Any, index: int) -> str:
    name = case.get("case_id") if isinstance(case, dict) else None
    return name if isinstance(name, str) and name else f"cases[{index}]"


def display_name(path: Path | None, base: Path) -> str:
    if path is None:
        return "(not configured)"
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name
