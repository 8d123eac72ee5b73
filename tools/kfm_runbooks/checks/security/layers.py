"""Sensitive layer exposure: labels, publication, resolution and redaction against policy.

Two kinds of records are checked:

Layer records (YAML/JSON in the target's `published` and `registry` folders). Their
`sensitivity` is a KFM sensitivity label (`level` public | generalized | restricted |
quarantine, `reason`, `applied_at`); the sensitivity policy maps each level to what may
be published: `public` (may it be public at all), `max_zoom` (finest resolution),
`generalized` (must geometry be generalized, with a receipt) and `forbidden_fields`.
Codes: SEC_LAYER_LABEL_MISSING (blocking when published, HOLD before), SEC_LAYER_LABEL_INVALID,
SEC_LAYER_RESTRICTED_PUBLIC, SEC_LAYER_RESOLUTION_EXCEEDS_POLICY, SEC_LAYER_REDACTION_MISSING,
SEC_LAYER_FIELD_NOT_REDACTED; SEC_POLICY_UNDEFINED (HOLD) when the policy has no profiles.
Restricted and quarantined layers are never public, policy or not.

KFM LayerManifest candidates (`manifests`): KFM's exposure rules with KFM's codes
(PUBLIC_RIGHTS_NOT_APPROVED, PUBLIC_SENSITIVITY_NOT_APPROVED, PUBLIC_FIELD_ALLOWLIST_REQUIRED,
TRANSFORM_EVIDENCE_REQUIRED, GOVERNANCE_BOUNDARY_VIOLATION) after the manifest's JSON
Schema when the target names it (SCHEMA_INVALID per failing path; semantic rules then do
not run, as in KFM's validator). Legacy id-only manifests carry no exposure and pass.

Containment withholds a layer: its record moves out of the published / candidate folder
into the withheld folder with a note of where it came from; `restore_layer` undoes it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._fs import create_new, replace_atomic, sha256_bytes
from ..._time import now_iso
from ...target import Target
from .. import BLOCKING, HOLD, Finding, undoable
from ..common.findings import FindingsReport
from .base import inside, parse_json, parse_yaml, read_bytes, read_json, rel, walk_files

LEVELS = ("public", "generalized", "restricted", "quarantine")
NEVER_PUBLIC = frozenset({"restricted", "quarantine"})
LABEL_CODES = frozenset({"SEC_LAYER_LABEL_MISSING", "SEC_LAYER_LABEL_INVALID"})
MANIFEST_CODES = frozenset(
    {
        "SCHEMA_INVALID",
        "PUBLIC_RIGHTS_NOT_APPROVED",
        "PUBLIC_SENSITIVITY_NOT_APPROVED",
        "PUBLIC_FIELD_ALLOWLIST_REQUIRED",
        "TRANSFORM_EVIDENCE_REQUIRED",
        "GOVERNANCE_BOUNDARY_VIOLATION",
    }
)
EXPOSURE_CODES = (
    frozenset(
        {
            "SEC_LAYER_RESTRICTED_PUBLIC",
            "SEC_LAYER_RESOLUTION_EXCEEDS_POLICY",
            "SEC_LAYER_REDACTION_MISSING",
            "SEC_LAYER_FIELD_NOT_REDACTED",
        }
    )
    | MANIFEST_CODES
)
RECORD_SUFFIXES = (".yaml", ".yml", ".json")
MAX_SCHEMA_FINDINGS = 100


@dataclass(frozen=True)
class Profile:
    public: bool
    max_zoom: int | None = None
    generalized: bool = False
    forbidden_fields: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LayersConfig:
    base: Path
    policy: Path | None
    published: tuple[Path, ...]
    registry: tuple[Path, ...]
    manifests: tuple[Path, ...]
    schema: Path | None
    expected: Path | None
    withheld: Path

    @classmethod
    def from_target(cls, target: Target) -> LayersConfig:
        target.section("security_layers")
        withheld = target.resolve("security_layers", "withheld", required=False)
        return cls(
            base=target.base,
            policy=target.resolve("security_layers", "policy", required=False),
            published=tuple(target.resolve_many("security_layers", "published")),
            registry=tuple(target.resolve_many("security_layers", "registry")),
            manifests=tuple(target.resolve_many("security_layers", "manifests")),
            schema=target.resolve("security_layers", "schema", required=False),
            expected=target.resolve("security_layers", "expected", required=False),
            withheld=withheld or target.base / ".kfm-withheld" / "layers",
        )


# --- policy -----------------------------------------------------------------------------


def load_policy(config: LayersConfig) -> tuple[dict[str, Profile], list[Finding]]:
    if config.policy is None:
        return {}, [Finding("SEC_POLICY_UNDEFINED", "(target)", "/", HOLD, "no policy configured")]
    subject = rel(config.policy, config.base)
    data, code = read_bytes(config.policy)
    doc, parse_code = parse_yaml(data) if data is not None else (None, code)
    profiles = doc.get("profiles") if isinstance(doc, dict) else None
    if not isinstance(profiles, dict) or not profiles:
        status = doc.get("status") if isinstance(doc, dict) else None
        detail = f"status {status}, " if isinstance(status, str) else ""
        return {}, [
            Finding(
                "SEC_POLICY_UNDEFINED",
                subject,
                "/profiles",
                HOLD,
                f"{parse_code or detail + 'no sensitivity profiles'}: resolution and redaction "
                "limits cannot be checked",
            )
        ]
    out: dict[str, Profile] = {}
    for level, raw in profiles.items():
        if not isinstance(raw, dict):
            continue
        zoom = raw.get("max_zoom")
        fields = raw.get("forbidden_fields") or []
        out[str(level)] = Profile(
            public=raw.get("public") is True,
            max_zoom=zoom if isinstance(zoom, int) and not isinstance(zoom, bool) else None,
            generalized=raw.get("generalized") is True,
            forbidden_fields=frozenset(str(f) for f in fields if isinstance(f, str)),
        )
    return out, []


# --- layer records ----------------------------------------------------------------------


@dataclass
class LayerReport(FindingsReport):
    file: str
    layer_id: str
    kind: str  # layer | manifest
    published: bool
    audience: str
    level: str
    max_zoom: int | None = None
    allowed_zoom: int | None = None
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "layer_id": self.layer_id,
            "kind": self.kind,
            "published": self.published,
            "audience": self.audience,
            "level": self.level,
            "max_zoom": self.max_zoom,
            "outcome": self.outcome,
            "codes": self.codes,
        }


def _label_problem(label: Any) -> str | None:
    """Why a value is not a KFM sensitivity label (level, reason, applied_at), or None."""
    if not isinstance(label, dict):
        return "not an object"
    extra = sorted(set(label) - {"level", "reason", "applied_at"})
    if extra:
        return f"unexpected field {extra[0]}"
    missing = [k for k in ("level", "reason", "applied_at") if not isinstance(label.get(k), str)]
    if missing:
        return f"{missing[0]} missing"
    if label["level"] not in LEVELS:
        return f"level {label['level']!r} is not one of {', '.join(LEVELS)}"
    return None


def _read_record(path: Path) -> tuple[Any, str | None]:
    data, code = read_bytes(path)
    if data is None:
        return None, code
    return parse_json(data) if path.suffix.lower() == ".json" else parse_yaml(data)


def check_layer(
    path: Path, config: LayersConfig, profiles: dict[str, Profile], *, published: bool
) -> LayerReport:
    subject = rel(path, config.base)
    doc, code = _read_record(path)
    report = LayerReport(subject, subject, "layer", published, "?", "?")

    def add(code: str, where: str, message: str, severity: str = BLOCKING) -> None:
        report.findings.append(Finding(code, subject, where, severity, message))

    if code is not None or not isinstance(doc, dict):
        add(code or "SEC_LAYER_RECORD_INVALID", "/", "layer record unreadable", HOLD)
        return report
    if isinstance(doc.get("id"), str):
        report.layer_id = doc["id"]
    published = published or doc.get("status") == "published"
    report.published = published
    audience = doc.get("audience")
    report.audience = audience if isinstance(audience, str) else ("public" if published else "?")
    label = doc.get("sensitivity")
    if label is None:
        add(
            "SEC_LAYER_LABEL_MISSING",
            "/sensitivity",
            "published without a sensitivity label"
            if published
            else "no sensitivity label: it must not be published until labelled",
            BLOCKING if published else HOLD,
        )
        return report
    problem = _label_problem(label)
    if problem is not None:
        add("SEC_LAYER_LABEL_INVALID", "/sensitivity", f"not a sensitivity label: {problem}")
        return report
    level = label["level"]
    report.level = level
    representation = (
        doc.get("representation") if isinstance(doc.get("representation"), dict) else {}
    )
    assert isinstance(representation, dict)
    zoom = representation.get("max_zoom")
    report.max_zoom = zoom if isinstance(zoom, int) and not isinstance(zoom, bool) else None
    public = published and report.audience == "public"
    profile = profiles.get(level)
    if public and (level in NEVER_PUBLIC or (profile is not None and not profile.public)):
        add(
            "SEC_LAYER_RESTRICTED_PUBLIC",
            "/audience",
            f"{level} layer is published to the public ({label['reason']})",
        )
        return report
    if profile is None:
        if profiles:
            add("SEC_POLICY_PROFILE_MISSING", "/sensitivity/level", f"no profile for {level}", HOLD)
        return report
    report.allowed_zoom = profile.max_zoom
    if not public:
        return report
    if profile.max_zoom is not None and (
        report.max_zoom is None or report.max_zoom > profile.max_zoom
    ):
        add(
            "SEC_LAYER_RESOLUTION_EXCEEDS_POLICY",
            "/representation/max_zoom",
            f"max_zoom {report.max_zoom if report.max_zoom is not None else 'unbounded'} is finer "
            f"than the {level} limit {profile.max_zoom}",
        )
    redaction = doc.get("redaction") if isinstance(doc.get("redaction"), dict) else {}
    assert isinstance(redaction, dict)
    if profile.generalized and not (
        redaction.get("generalized") is True and isinstance(redaction.get("receipt"), str)
    ):
        add(
            "SEC_LAYER_REDACTION_MISSING",
            "/redaction",
            f"{level} layers must be generalized, with a receipt, before publication",
        )
    fields = doc.get("fields") if isinstance(doc.get("fields"), list) else []
    assert isinstance(fields, list)
    leaked = sorted(profile.forbidden_fields & {str(f) for f in fields})
    if leaked:
        add(
            "SEC_LAYER_FIELD_NOT_REDACTED",
            "/fields",
            f"field(s) {', '.join(leaked)} must be removed from {level} layers",
        )
    return report


# --- KFM LayerManifest ------------------------------------------------------------------


def _leaves(error: Any) -> list[Any]:
    """The most specific errors under a oneOf/anyOf error (or the error itself)."""
    if not error.context:
        return [error]
    out: list[Any] = []
    for child in error.context:
        out.extend(_leaves(child))
    return out


def _schema_findings(doc: Any, schema_path: Path, subject: str) -> list[Finding]:
    from ..._speedups import defer_slow_optional_imports

    defer_slow_optional_imports()
    jsonschema = importlib.import_module("jsonschema")  # lazy: only when a schema is named

    schema, code = read_json(schema_path)
    if schema is None:
        return [Finding(code or "SCHEMA_UNAVAILABLE", subject, "/", HOLD, "schema unreadable")]
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(
        validator.iter_errors(doc), key=lambda e: ("/".join(map(str, e.absolute_path)), e.validator)
    )
    out = []
    for error in errors[:MAX_SCHEMA_FINDINGS]:
        where = "/" + "/".join(str(p) for p in error.absolute_path)
        cause = max(_leaves(error), key=lambda e: (len(e.absolute_path), e.validator != "not"))
        inner = "/" + "/".join(str(p) for p in cause.absolute_path)
        message = f"{inner}: {cause.message}" if len(cause.message) < 100 else f"{inner}: invalid"
        out.append(Finding("SCHEMA_INVALID", subject, where, BLOCKING, message[:120]))
    return sorted(set(out))


def manifest_exposure(doc: dict[str, Any], subject: str) -> list[Finding]:
    """KFM's exposure and governance rules for a strict LayerManifest."""
    found: set[Finding] = set()

    def add(code: str, where: str, message: str) -> None:
        found.add(Finding(code, subject, where, BLOCKING, message))

    exposure = doc.get("exposure")
    if isinstance(exposure, dict):
        public = exposure.get("audience") == "PUBLIC"
        if public and exposure.get("rights_status") != "APPROVED":
            add(
                "PUBLIC_RIGHTS_NOT_APPROVED",
                "/exposure/rights_status",
                f"public audience with rights {exposure.get('rights_status')}",
            )
        if public and exposure.get("sensitivity_status") not in {
            "PUBLIC_SAFE",
            "TRANSFORM_REQUIRED",
        }:
            add(
                "PUBLIC_SENSITIVITY_NOT_APPROVED",
                "/exposure/sensitivity_status",
                f"public audience with sensitivity {exposure.get('sensitivity_status')}",
            )
        if public and not exposure.get("public_field_allowlist"):
            add(
                "PUBLIC_FIELD_ALLOWLIST_REQUIRED",
                "/exposure/public_field_allowlist",
                "public audience without a field allow-list",
            )
        if exposure.get("sensitivity_status") == "TRANSFORM_REQUIRED" and (
            exposure.get("generalized_geometry") is not True
            or not exposure.get("transform_receipt_refs")
        ):
            add(
                "TRANSFORM_EVIDENCE_REQUIRED",
                "/exposure",
                "transform required but no generalized geometry / transform receipt",
            )
    governance = doc.get("governance")
    if isinstance(governance, dict) and any(v is not False for v in governance.values()):
        add("GOVERNANCE_BOUNDARY_VIOLATION", "/governance", "a candidate claims an authority")
    return sorted(found)


def check_manifest(path: Path, config: LayersConfig) -> LayerReport:
    subject = rel(path, config.base)
    doc, code = read_json(path)
    report = LayerReport(subject, subject, "manifest", False, "?", "?")
    if code is not None or not isinstance(doc, dict):
        report.findings.append(
            Finding(code or "SEC_LAYER_RECORD_INVALID", subject, "/", HOLD, "manifest unreadable")
        )
        return report
    for key in ("layer_id", "id"):
        if isinstance(doc.get(key), str):
            report.layer_id = doc[key]
            break
    exposure = doc.get("exposure") if isinstance(doc.get("exposure"), dict) else {}
    assert isinstance(exposure, dict)
    report.audience = str(exposure.get("audience", "?")).lower()
    report.level = str(exposure.get("sensitivity_status", "?"))
    report.published = doc.get("lifecycle_state") == "PUBLISHED"
    representation = doc.get("representation")
    if isinstance(representation, dict) and isinstance(representation.get("max_zoom"), int):
        report.max_zoom = representation["max_zoom"]
    if config.schema is not None:
        report.findings.extend(_schema_findings(doc, config.schema, subject))
    if not report.findings and doc.get("object_type") == "LayerManifest":
        report.findings.extend(manifest_exposure(doc, subject))
    return report


# --- the scan ---------------------------------------------------------------------------


@dataclass
class LayerScan:
    reports: list[LayerReport]
    policy_findings: list[Finding]
    profiles: dict[str, Profile]

    @property
    def findings(self) -> list[Finding]:
        out = list(self.policy_findings)
        for report in self.reports:
            out.extend(report.findings)
        return out

    def with_codes(self, codes: frozenset[str]) -> list[Finding]:
        return [f for f in self.findings if f.code in codes]

    def to_withhold(self) -> list[LayerReport]:
        """Layers exposed (or published unlabelled): what containment takes down."""
        out = []
        for report in self.reports:
            blocking = {f.code for f in report.findings if f.severity == BLOCKING}
            if blocking & EXPOSURE_CODES or (report.published and blocking & LABEL_CODES):
                out.append(report)
        return out


def _records(roots: tuple[Path, ...], config: LayersConfig) -> list[Path]:
    return [
        p
        for p in walk_files(roots, config.base, skip=(config.withheld,))
        if p.suffix.lower() in RECORD_SUFFIXES  # symlinks are kept: reading refuses them (HOLD)
    ]


def _missing(config: LayersConfig) -> list[Finding]:
    """Configured records or folders that are gone (and were not withheld by containment)."""
    out = []
    for root in (*config.published, *config.registry, *config.manifests):
        subject = rel(root, config.base)
        if not inside(root, config.base):
            out.append(Finding("SEC_SCAN_PATH_ESCAPE", root.name, "/", HOLD, "outside the target"))
        elif not root.exists() and not is_withheld(config, subject):
            out.append(Finding("SEC_FILE_NOT_FOUND", subject, "/", HOLD, "configured but missing"))
    return out


def scan(config: LayersConfig) -> LayerScan:
    profiles, policy_findings = load_policy(config)
    policy_findings += _missing(config)
    reports = [
        check_layer(p, config, profiles, published=True) for p in _records(config.published, config)
    ]
    reports += [
        check_layer(p, config, profiles, published=False) for p in _records(config.registry, config)
    ]
    reports += [check_manifest(p, config) for p in _records(config.manifests, config)]
    for report in reports:
        report.findings.sort()
    return LayerScan(reports, policy_findings, profiles)


def compare_expected(scan_result: LayerScan, config: LayersConfig) -> list[dict[str, Any]]:
    """KFM's expected_findings_manifest.json against this scan, case by case.

    A case is in scope when KFM expects PASS or only codes this runbook implements;
    other cases (bounds, zoom range, spec hash, ...) belong to other checks.
    """
    if config.expected is None:
        return []
    expected, _ = read_json(config.expected)
    if not isinstance(expected, dict):
        return []
    by_name = {Path(r.file).name: r for r in scan_result.reports if r.kind == "manifest"}
    rows = []
    for group in ("valid", "invalid"):
        cases = expected.get(group)
        for name, want in sorted(cases.items() if isinstance(cases, dict) else []):
            if not isinstance(want, dict):
                continue
            codes = sorted(want.get("findings") or [])
            report = by_name.get(name)
            got = report.codes if report else []
            outcome = report.outcome if report else "MISSING"
            in_scope = want.get("outcome") == "PASS" or (
                bool(codes) and set(codes) <= MANIFEST_CODES
            )
            rows.append(
                {
                    "case": f"{group}/{name}",
                    "expected": f"{want.get('outcome')} {','.join(codes) or '-'}",
                    "got": f"{outcome} {','.join(got) or '-'}",
                    "in_scope": in_scope,
                    "match": in_scope and outcome == want.get("outcome") and got == codes,
                }
            )
    return rows


# --- containment: withhold ----------------------------------------------------------------


def _slot(config: LayersConfig, subject: str) -> Path:
    digest = hashlib.sha256(subject.encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(subject).stem)[-50:].lstrip(".") or "layer"
    return config.withheld / f"{name}.{digest}"


def is_withheld(config: LayersConfig, subject: str) -> bool:
    return (_slot(config, subject) / "record.json").is_file()


def withhold_layer(
    config: LayersConfig, subject: str, *, reason: str, incident: str
) -> dict[str, Any]:
    """Take a layer record out of its published / candidate folder. Idempotent."""
    path = config.base / subject
    if not inside(path, config.base):
        raise ValueError(f"{subject} is outside the target")
    slot = _slot(config, subject)
    if (slot / "record.json").is_file() and not path.exists():
        return {"path": subject, "withheld": True, "already": True}
    data, code = read_bytes(path)
    if data is None:
        raise ValueError(f"{subject} cannot be read ({code})")
    slot.mkdir(parents=True, exist_ok=True)
    if not (slot / "layer").exists():
        create_new(slot / "layer", data)
    record = {
        "path": subject,
        "sha256": sha256_bytes(data),
        "reason": reason,
        "incident": incident,
        "withheld_at": now_iso(),
    }
    replace_atomic(slot / "record.json", (json.dumps(record, indent=2) + "\n").encode())
    path.unlink()
    return {"path": subject, "withheld": True, "already": False}


def restore_layer(config: LayersConfig, subject: str) -> dict[str, Any]:
    """Undo `withhold_layer`: put the identical bytes back. Safe to run twice."""
    slot = _slot(config, subject)
    if not (slot / "record.json").is_file():
        return {"path": subject, "restored": False, "reason": "not withheld"}
    path = config.base / subject
    if path.exists():
        return {"path": subject, "restored": False, "reason": "a file is already there"}
    path.parent.mkdir(parents=True, exist_ok=True)
    data, code = read_bytes(slot / "layer")
    if data is None:
        raise ValueError(f"{subject}: the withheld copy cannot be read ({code})")
    create_new(path, data)
    (slot / "layer").unlink()
    (slot / "record.json").unlink()
    slot.rmdir()
    return {"path": subject, "restored": True}


@undoable("security_layers.restore_layer")
def _undo_restore_layer(target: Target, path: str) -> dict[str, Any]:
    return restore_layer(LayersConfig.from_target(target), path)
