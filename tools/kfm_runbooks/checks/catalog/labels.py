"""Missing license / missing sensitivity label: fail closed, withhold what is not cleared.

Target section (paths relative to the target file)::

    catalog_labels:
      base: catalog_records/labels
      records: [catalog_records/labels/published]     # published catalog records
      labels: [...]                                  # optional: standalone label documents
      schema: schemas/sensitivity_label.schema.json  # KFM's sensitivity_label contract
      policy: policy/sensitivity/profiles.yaml       # level -> publish / withhold
      withheld: catalog_records/labels/withheld

A catalog record (STAC Item / Collection, DCAT Dataset / Distribution / Catalog) needs a
license (STAC `license`, DCAT `dct:license`; "proprietary" / "other" / "various" also a
`license` link) and a KFM sensitivity label under `kfm:sensitivity_label` (a STAC Item's
properties, or the record's top level) that validates against KFM's sensitivity_label
schema. **Fail closed:** a record without a valid license or label is treated as
`restricted`; a record whose effective level the policy does not clear for publication
must not be in the published catalog (containment withholds it, reversibly).

The policy profile maps each level to publish / withhold. If it is missing, a
placeholder, or unreadable, the built-in fail-closed defaults apply (public, generalized:
publish; restricted, quarantine: withhold) and the policy check is HOLD: the treatment
could not be verified against the governing policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from ...errors import TargetError
from ...target import Target
from ...vocab import Verdict
from .. import BLOCKING, HOLD, INFO, Finding
from ..common import matchers as expected_error
from ..common.files import read_bounded
from ..common.findings import FindingsReport
from ..common.matchers import ExpectedError
from .json_docs import (
    READ_ERROR_CODES,
    collection_license,
    inside,
    json_files,
    placeholders,
    read_object,
    rel,
)
from .schema import SchemaUnavailable, schema_errors
from .validation import classify
from .withdraw import Holding

SECTION = "catalog_labels"
LABEL_KEY = "kfm:sensitivity_label"
LEVELS = ("public", "generalized", "restricted", "quarantine")
DEFAULT_PUBLISH = {"public": True, "generalized": True, "restricted": False, "quarantine": False}
FAIL_CLOSED_LEVEL = "restricted"
LABELLED_KINDS = frozenset({"stac-item", "kfm-stac-item", "stac-collection", "dcat"})
OPEN_ENDED_LICENSES = frozenset({"proprietary", "other", "various"})
MAX_POLICY_BYTES = 262_144


@dataclass(frozen=True)
class LabelsConfig:
    base: Path
    records: tuple[Path, ...]
    labels: tuple[Path, ...]
    withheld: Path
    schema: Path | None
    policy: Path | None

    @classmethod
    def from_target(cls, target: Target) -> LabelsConfig:
        target.section(SECTION)
        records = tuple(target.resolve_many(SECTION, "records"))
        labels = tuple(target.resolve_many(SECTION, "labels"))
        if not records and not labels:
            raise TargetError(f"target {target.path}: '{SECTION}' needs records or labels")
        holding = Holding.from_section(target, SECTION, "withheld")
        return cls(
            base=holding.base,
            records=records,
            labels=labels,
            withheld=holding.folder,
            schema=target.resolve(SECTION, "schema", required=False),
            policy=target.resolve(SECTION, "policy", required=False),
        )

    @property
    def holding(self) -> Holding:
        return Holding(self.base, self.withheld)


# --- policy ---------------------------------------------------------------------------


@dataclass
class Policy:
    """Which sensitivity levels may be published; `verified` is False on fallback."""

    publish: dict[str, bool]
    verified: bool
    findings: list[Finding] = field(default_factory=list)

    def publishable(self, level: str) -> bool:
        return self.publish.get(level, False)


def load_policy(path: Path | None, base: Path) -> Policy:
    def fallback(code: str, message: str) -> Policy:
        subject = rel(path, base) if path else "(policy)"
        return Policy(dict(DEFAULT_PUBLISH), False, [Finding(code, subject, "/", HOLD, message)])

    if path is None:
        return fallback("POLICY_PROFILE_MISSING", "no policy profile configured: defaults apply")
    data, _ = read_bounded(path, MAX_POLICY_BYTES)
    if data is None:
        return fallback("POLICY_PROFILE_MISSING", "policy profile not readable: defaults apply")
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        return fallback(
            "POLICY_PROFILE_INVALID", "policy profile is not valid YAML: defaults apply"
        )
    if not isinstance(doc, dict):
        return fallback("POLICY_PROFILE_INVALID", "policy profile is not a mapping: defaults apply")
    levels = doc.get("levels")
    if not isinstance(levels, dict):
        status = str(doc.get("status", "")).upper()
        stub = bool(placeholders(doc)) or status in ("PROPOSED", "DRAFT")
        code = "POLICY_PROFILE_PLACEHOLDER" if stub else "POLICY_PROFILE_INVALID"
        return fallback(
            code, f"policy profile ({status or 'no status'}) defines no levels: defaults apply"
        )
    publish: dict[str, bool] = {}
    for level in LEVELS:
        entry = levels.get(level)
        value = entry.get("publish") if isinstance(entry, dict) else None
        if not isinstance(value, bool):
            return fallback("POLICY_PROFILE_INVALID", f"level {level}: publish must be true/false")
        publish[level] = value
    if publish[FAIL_CLOSED_LEVEL] or publish["quarantine"]:
        return fallback(
            "POLICY_PROFILE_INVALID",
            "restricted / quarantine must never be publishable: defaults apply",
        )
    return Policy(publish, True)


# --- records --------------------------------------------------------------------------


def _license(record: dict[str, Any], kind: str) -> tuple[str, Any]:
    if kind == "dcat":
        value = record.get("dct:license")
        if isinstance(value, dict):
            value = value.get("@id")
        return "/dct:license", value
    if kind in ("stac-item", "kfm-stac-item") and "license" not in record:
        props = record.get("properties")
        return "/properties/license", props.get("license") if isinstance(props, dict) else None
    return "/license", record.get("license")


def _label(record: dict[str, Any], kind: str) -> tuple[str, Any]:
    """Where the label is (or should be): a STAC Item's properties, else the top level."""
    if kind in ("stac-item", "kfm-stac-item") and LABEL_KEY not in record:
        props = record.get("properties")
        value = props.get(LABEL_KEY) if isinstance(props, dict) else None
        return f"/properties/{LABEL_KEY}", value
    return f"/{LABEL_KEY}", record.get(LABEL_KEY)


def license_findings(record: dict[str, Any], kind: str, subject: str) -> list[Finding]:
    where, value = _license(record, kind)
    if not isinstance(value, str) or not value.strip():
        return [Finding("LICENSE_MISSING", subject, where, BLOCKING, "no license")]
    if placeholders(value):
        return [
            Finding(
                "LICENSE_PLACEHOLDER",
                subject,
                where,
                BLOCKING,
                f"license is a placeholder: {value[:60]}",
            )
        ]
    if kind != "dcat" and value.strip().lower() in OPEN_ENDED_LICENSES:
        links = record.get("links") if isinstance(record.get("links"), list) else []
        assert isinstance(links, list)
        if not any(isinstance(link, dict) and link.get("rel") == "license" for link in links):
            return [
                Finding(
                    "LICENSE_LINK_MISSING",
                    subject,
                    "/links",
                    BLOCKING,
                    f"license {value!r} needs a link with rel=license to its terms",
                )
            ]
    return []


def label_findings(
    label: Any, subject: str, where: str, schema: Path | None
) -> tuple[list[Finding], list[Any]]:
    """(findings, schema errors) for one sensitivity label value."""
    if label is None:
        return [
            Finding("SENSITIVITY_LABEL_MISSING", subject, where, BLOCKING, "no sensitivity label")
        ], []
    try:
        errors = schema_errors(schema, label)
    except SchemaUnavailable as exc:
        return [
            Finding("SCHEMA_UNAVAILABLE", subject, where, HOLD, f"cannot validate label: {exc}")
        ], []
    lines = [f"{e.keyword}: {e.message}" for e in errors]
    found = [
        Finding(
            "SENSITIVITY_LABEL_INVALID",
            subject,
            where if e.field == "/" else where.rstrip("/") + e.field,
            BLOCKING,
            line if len(line) <= 160 else line[:157] + "...",
        )
        for e, line in zip(errors, lines, strict=True)
    ]
    return found, list(errors)


@dataclass
class LabelReport(FindingsReport):
    """One catalog record's license / label status and what publication it may have."""

    ERROR_CODES: ClassVar[frozenset[str]] = READ_ERROR_CODES

    file: str
    kind: str
    level: str | None  # the label's level when the label is valid
    effective: str  # fail closed: restricted unless license and label are valid
    publishable: bool
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "kind": self.kind,
            "level": self.level,
            "effective_level": self.effective,
            "publishable": self.publishable,
            "outcome": self.outcome,
            "codes": self.codes,
        }


def check_record(path: Path, config: LabelsConfig, policy: Policy) -> LabelReport:
    subject = rel(path, config.base)
    record, code = read_object(path)
    if record is None:
        assert code is not None
        found = [Finding(code, subject, "/", BLOCKING, "unreadable: treated as restricted")]
        return LabelReport(subject, "unreadable", None, FAIL_CLOSED_LEVEL, False, found)
    kind = classify(record)
    if kind not in LABELLED_KINDS:
        note = Finding("LABEL_NOT_APPLICABLE", subject, "/", INFO, f"{kind} record: not a dataset")
        return LabelReport(subject, kind, None, "n/a", True, [note])
    found = license_findings(record, kind, subject)
    if found and found[0].code == "LICENSE_MISSING" and kind in ("stac-item", "kfm-stac-item"):
        inherited = collection_license(path, record, config.base)
        if inherited is not None:  # STAC: the collection's licence covers its items
            found = license_findings({**record, "license": inherited}, kind, subject)
    where, label = _label(record, kind)
    label_found, _ = label_findings(label, subject, where, config.schema)
    found += label_found
    level = label["level"] if not label_found and isinstance(label, dict) else None
    cleared = not any(f.severity == BLOCKING for f in found) and not label_found
    effective = str(level) if cleared and level else FAIL_CLOSED_LEVEL
    publishable = policy.publishable(effective)
    if cleared and not publishable:
        found.append(
            Finding(
                "RESTRICTED_RECORD_PUBLISHED",
                subject,
                where,
                BLOCKING,
                f"labelled {effective}: the policy withholds it from publication",
            )
        )
    return LabelReport(subject, kind, level, effective, publishable, sorted(found))


# --- standalone label documents (KFM's sensitivity_label fixtures) -------------------


@dataclass
class LabelDocReport(FindingsReport):
    ERROR_CODES: ClassVar[frozenset[str]] = READ_ERROR_CODES
    file: str
    findings: list[Finding]
    errors: list[Any]  # schema errors (keyword, message, field)
    expected_outcome: str | None
    matcher: ExpectedError | None
    matcher_problem: str | None = None

    @property
    def expected_error(self) -> str | None:
        return self.matcher.text if self.matcher is not None else None

    @property
    def matched(self) -> bool | None:
        """Does the failure match the fixture's one-line expected_error matcher?"""
        if self.matcher is None:
            return None
        return self.matcher.matched_by(self.errors)

    @property
    def reproduced(self) -> bool | None:
        if self.expected_outcome is None or self.matcher_problem is not None:
            return None  # no stated verdict, or one that cannot be read: not verifiable
        return self.outcome == self.expected_outcome and self.matched is not False

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "outcome": self.outcome,
            "codes": sorted({f.code for f in self.findings}),
            "errors": [f"{e.keyword}: {e.message}" for e in self.errors],
            "expected_outcome": self.expected_outcome,
            "expected_error": self.expected_error,
            "matched": self.matched,
            "reproduced": self.reproduced,
        }


def check_label_doc(path: Path, config: LabelsConfig) -> LabelDocReport:
    subject = rel(path, config.base)
    matcher, problem = expected_error.beside(path)
    if matcher is not None or problem is not None:
        expected: str | None = Verdict.FAIL
    else:
        expected = Verdict.PASS if path.parent.name == "valid" else None
    value, code = read_object(path)
    if value is None:
        assert code is not None
        return LabelDocReport(subject, [Finding(code, subject)], [], expected, matcher, problem)
    found, errors = label_findings(value, subject, "/", config.schema)
    if problem is not None:
        found.append(Finding(problem, subject, "/", HOLD, "expected-error file unusable"))
    return LabelDocReport(subject, found, errors, expected, matcher, problem)


# --- scan -----------------------------------------------------------------------------


@dataclass
class LabelsScan:
    policy: Policy
    records: list[LabelReport]
    label_docs: list[LabelDocReport]
    findings: list[Finding]  # configuration problems (escaping paths)

    def to_withhold(self) -> list[LabelReport]:
        return [r for r in self.records if not r.publishable]

    def with_codes(self, *prefixes: str) -> list[Finding]:
        return [
            f
            for r in self.records
            for f in r.findings
            if f.code.startswith(prefixes) and f.severity != INFO
        ]

    def level_counts(self) -> dict[str, int]:
        counts = {level: 0 for level in (*LEVELS, "unlabeled / unlicensed")}
        for report in self.records:
            if report.kind in LABELLED_KINDS or report.kind == "unreadable":
                key = report.effective if report.level else "unlabeled / unlicensed"
                counts[key] += 1
        return counts


def _entries(paths: tuple[Path, ...], base: Path, findings: list[Finding]) -> list[Path]:
    kept = []
    for entry in paths:
        if inside(entry, base):
            kept.append(entry)
        else:
            findings.append(Finding("PATH_ESCAPE", entry.name, "/", BLOCKING, "outside the base"))
    return kept


def scan(config: LabelsConfig) -> LabelsScan:
    findings: list[Finding] = []
    policy = load_policy(config.policy, config.base)
    records = json_files(
        _entries(config.records, config.base, findings), config.base, [config.withheld]
    )
    docs = json_files(
        _entries(config.labels, config.base, findings), config.base, [config.withheld]
    )
    return LabelsScan(
        policy,
        [check_record(p, config, policy) for p in records],
        [check_label_doc(p, config) for p in docs],
        sorted(findings),
    )
