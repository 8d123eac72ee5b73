"""STAC / DCAT / PROV validation of catalog records: which records fail, and why.

Target section (paths relative to the target file)::

    catalog_validation:
      base: catalog_records/validation          # nothing outside it is read
      records: [catalog_records/validation/published]   # files or folders (*.json)
      quarantine: catalog_records/validation/quarantine
      schemas:
        kfm_stac_profile: schemas/kfm-profile-v1.schema.json
        catalog_trust_extension: schemas/catalog_trust_extension.schema.json
      expectations: [fixture_manifest.json]     # optional: KFM fixture manifests to replay

Every record is classified (KFM STAC profile item, KFM catalog trust extension, STAC
Item / Collection / Catalog, DCAT, PROV-JSON, PROV-O) and validated by its own rules;
string values that say "placeholder" are findings everywhere (RECORD_PLACEHOLDER_VALUE:
illustrative stubs are not records). A record of no known kind is HOLD: it cannot be
validated. Outcomes: ERROR (unreadable) > FAIL > HOLD > PASS.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ...errors import TargetError
from ...target import Target
from ...vocab import Verdict
from .. import BLOCKING, HOLD, Finding
from ..common.findings import FindingsReport
from .json_docs import READ_ERROR_CODES, inside, json_files, placeholders, read_object, rel
from .prov import (
    dcat_findings,
    is_dcat,
    is_prov_json,
    is_prov_o,
    prov_json_findings,
    prov_o_findings,
)
from .stac import (
    KFM_PROFILE_URI,
    kfm_profile_findings,
    stac_core_findings,
    trust_extension_findings,
)
from .withdraw import Holding

SECTION = "catalog_validation"
ERROR_CODES = READ_ERROR_CODES | {"HASHING_UNAVAILABLE"}
SCHEMA_KEYS = ("kfm_stac_profile", "catalog_trust_extension")
KINDS = (
    "kfm-stac-item",
    "kfm-trust-extension",
    "stac-item",
    "stac-collection",
    "stac-catalog",
    "dcat",
    "prov-json",
    "prov-o",
    "unknown",
    "unreadable",
)


@dataclass(frozen=True)
class ValidationConfig:
    base: Path
    records: tuple[Path, ...]
    quarantine: Path
    schemas: dict[str, Path | None]
    expectations: tuple[Path, ...]

    @classmethod
    def from_target(cls, target: Target) -> ValidationConfig:
        section = target.section(SECTION)
        records = tuple(target.resolve_many(SECTION, "records"))
        if not records:
            raise TargetError(f"target {target.path}: '{SECTION}.records' lists nothing")
        raw = section.get("schemas") or {}
        if not isinstance(raw, dict):
            raise TargetError(f"target {target.path}: '{SECTION}.schemas' must be a mapping")
        schemas = {
            key: (target.base / raw[key]).resolve() if isinstance(raw.get(key), str) else None
            for key in SCHEMA_KEYS
        }
        holding = Holding.from_section(target, SECTION, "quarantine")
        return cls(
            base=holding.base,
            records=records,
            quarantine=holding.folder,
            schemas=schemas,
            expectations=tuple(target.resolve_many(SECTION, "expectations")),
        )

    @property
    def holding(self) -> Holding:
        return Holding(self.base, self.quarantine)


@dataclass
class RecordReport(FindingsReport):
    ERROR_CODES: ClassVar[frozenset[str]] = ERROR_CODES
    file: str
    kind: str
    record_id: str | None
    findings: list[Finding] = field(default_factory=list)
    expected: dict[str, Any] | None = None

    @property
    def reproduced(self) -> bool | None:
        """Does the record reach the verdict its fixture manifest states? (None: none stated)"""
        if self.expected is None:
            return None
        if self.outcome != self.expected["outcome"] or self.codes != self.expected["codes"]:
            return False
        fields = self.expected.get("fields")
        actual = sorted({(f.code, f.field) for f in self.findings})
        return fields is None or actual == sorted(tuple(pair) for pair in fields)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "kind": self.kind,
            "id": self.record_id,
            "outcome": self.outcome,
            "codes": self.codes,
            "expected": self.expected,
            "reproduced": self.reproduced,
        }


@dataclass
class ValidationScan:
    reports: list[RecordReport]
    findings: list[Finding]  # about the configuration itself (manifests, escaping paths)
    skipped: list[dict[str, str]] = field(default_factory=list)  # files not judged, why

    @property
    def record_findings(self) -> list[Finding]:
        return [f for r in self.reports for f in r.findings]

    def failing(self) -> list[RecordReport]:
        return [r for r in self.reports if r.outcome in (Verdict.FAIL, Verdict.ERROR)]

    def held(self) -> list[RecordReport]:
        return [r for r in self.reports if r.outcome == Verdict.HOLD]

    def by_kind(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for report in self.reports:
            out.setdefault(report.kind, Counter())[report.outcome] += 1
        return dict(sorted(out.items(), key=lambda kv: KINDS.index(kv[0])))

    def expectations(self) -> list[RecordReport]:
        return [r for r in self.reports if r.expected is not None]


def classify(record: dict[str, Any]) -> str:
    kind = record.get("type")
    extensions = record.get("stac_extensions")
    if record.get("object_type") == "CatalogTrustExtension":
        return "kfm-trust-extension"
    if kind == "Feature" and isinstance(extensions, list) and KFM_PROFILE_URI in extensions:
        return "kfm-stac-item"
    if "stac_version" in record and kind in ("Feature", "Collection", "Catalog"):
        return {"Feature": "stac-item", "Collection": "stac-collection"}.get(kind, "stac-catalog")
    if is_dcat(record):
        return "dcat"
    if is_prov_json(record):
        return "prov-json"
    if is_prov_o(record):
        return "prov-o"
    return "unknown"


def record_id(record: dict[str, Any]) -> str | None:
    for key in ("id", "extension_id", "@id", "bundle_id"):
        if isinstance(record.get(key), str):
            return str(record[key])
    return None


def validate_record(
    record: dict[str, Any], subject: str, schemas: dict[str, Path | None]
) -> tuple[str, list[Finding]]:
    """(kind, findings) for one parsed record."""
    kind = classify(record)
    if kind == "kfm-stac-item":
        found = kfm_profile_findings(record, subject, schemas.get("kfm_stac_profile"))
    elif kind == "kfm-trust-extension":
        found = trust_extension_findings(record, subject, schemas.get("catalog_trust_extension"))
    elif kind.startswith("stac-"):
        found = stac_core_findings(record, subject)
    elif kind == "dcat":
        found = dcat_findings(record, subject)
    elif kind == "prov-json":
        found = prov_json_findings(record, subject)
    elif kind == "prov-o":
        found = prov_o_findings(record, subject)
    else:
        found = [
            Finding(
                "RECORD_TYPE_UNKNOWN",
                subject,
                "/",
                HOLD,
                "not a STAC, DCAT or PROV record: it cannot be validated",
            )
        ]
    stubs = placeholders(record)
    if stubs:
        shown = ", ".join(stubs[:3]) + (", …" if len(stubs) > 3 else "")
        found.append(
            Finding(
                "RECORD_PLACEHOLDER_VALUE",
                subject,
                stubs[0],
                BLOCKING,
                f"{len(stubs)} placeholder value(s): {shown}",
            )
        )
    return kind, sorted(set(found))


def validate_file(path: Path, config: ValidationConfig) -> RecordReport:
    subject = rel(path, config.base)
    record, code = read_object(path)
    if record is None:
        assert code is not None
        return RecordReport(subject, "unreadable", None, [Finding(code, subject)])
    kind, found = validate_record(record, subject, config.schemas)
    return RecordReport(subject, kind, record_id(record), found)


# --- KFM fixture manifests ------------------------------------------------------------


def load_expectations(manifest: Path) -> tuple[dict[Path, dict[str, Any]], list[Finding]]:
    """Expected verdicts from a KFM fixture manifest (STAC profile or trust extension)."""
    doc, code = read_object(manifest)
    name = manifest.name
    if doc is None:
        return {}, [Finding("EXPECTATION_MANIFEST_INVALID", name, "/", HOLD, str(code))]
    out: dict[Path, dict[str, Any]] = {}
    try:
        if isinstance(doc.get("cases"), list):  # {"cases": [{path, expected_outcome, ...}]}
            for case in doc["cases"]:
                pairs = [(f["code"], f["field"]) for f in case["expected_findings"]]
                out[manifest.parent / str(case["path"])] = {
                    "outcome": str(case["expected_outcome"]),
                    "codes": sorted({c for c, _ in pairs}),
                    "fields": sorted(pairs),
                }
        else:  # {"valid": {file: {outcome, findings}}, "invalid": {...}}
            for group in ("valid", "invalid"):
                for file, expected in sorted(doc[group].items()):
                    out[manifest.parent / group / str(file)] = {
                        "outcome": str(expected["outcome"]),
                        "codes": sorted(set(expected["findings"])),
                    }
    except (KeyError, TypeError, AttributeError) as exc:
        message = f"unexpected manifest shape ({type(exc).__name__})"
        return {}, [Finding("EXPECTATION_MANIFEST_INVALID", name, "/", HOLD, message)]
    return out, []


def scan(config: ValidationConfig) -> ValidationScan:
    """Validate every record the target names (read-only)."""
    findings: list[Finding] = []
    expected: dict[Path, dict[str, Any]] = {}
    for manifest in config.expectations:
        loaded, problems = load_expectations(manifest)
        expected.update({path.resolve(): value for path, value in loaded.items()})
        findings += problems
    entries = []
    for entry in config.records:
        if inside(entry, config.base):
            entries.append(entry)
        else:
            findings.append(
                Finding("PATH_ESCAPE", entry.name, "/", BLOCKING, "outside the target's base")
            )
    skipped: list[dict[str, str]] = []
    files = json_files(entries, config.base, [config.quarantine], skipped)
    reports = [validate_file(path, config) for path in files]
    for path, report in zip(files, reports, strict=True):
        report.expected = expected.pop(path.resolve(), None)
    for path in sorted(expected):  # a manifest names a record that is not there
        subject = rel(path, config.base)
        findings.append(
            Finding("EXPECTED_RECORD_MISSING", subject, "/", BLOCKING, "named by a manifest")
        )
    return ValidationScan(reports, sorted(findings), skipped)


def summary(scan_result: ValidationScan) -> dict[str, Any]:
    """JSON-ready evidence of a scan."""
    return {
        "records": [r.as_dict() for r in scan_result.reports],
        "findings": [f.as_dict() for f in scan_result.record_findings + scan_result.findings],
        "by_kind": {k: dict(v) for k, v in scan_result.by_kind().items()},
    }


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
