"""KFM's citation contracts, checked offline: validation reports and provenance panels.

Two KFM contracts say what "citations required" means for an answer:

- `CitationValidationReport` (schemas/contracts/v1/evidence/citation_validation_report
  .schema.json): per claim, each citation's declared upstream states (citation, locator,
  freshness, evidence ref, bundle, rights, sensitivity, policy, review, release) and the
  outcome they imply — PASS, ABSTAIN, DENY or ERROR with KFM's reason codes. A report is
  valid only if its shape matches the schema and every derived value (per-citation
  outcome and reasons, remediation, bindings, summary, `spec_hash`, `report_id`) is what
  the declared states imply; the first broken rule is reported with KFM's finding code
  (`CITATION_REPORT_*`) and JSON pointer, and the report is then DENY.
- The Explorer's provenance-citations panel projection
  (`kfm.explorer.provenance-citations.public-safe.v1`): an ANSWER must carry at least one
  well-formed citation and its provenance refs; a non-answer (ABSTAIN / DENY / ERROR) must
  carry none. Anything else is `MALFORMED_PROVENANCE_CITATIONS_PROJECTION`.

Fixture manifests (`{"base": ..., "cases": [...]}`) are expanded case by case: the
operations are applied to the base, derived fields are recomputed unless the case says
`recompute_derived: false`, then `spec_hash` / `report_id` are computed (or overridden).
Hashes are sha256 over RFC 8785 canonical JSON (for the integers, strings, booleans and
nulls these documents hold: sorted keys, no whitespace, UTF-8).
"""

from __future__ import annotations

import copy
import json
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...target import Target
from .. import BLOCKING, HOLD, INFO, Finding
from ..common.files import FileProblem, read_bounded
from ..common.jcs import CanonicalizationError, spec_hash
from ..common.json import parent_of, pointer
from ..common.paths import inside

REPORT_PREFIX = "kfm:citation-validation-report:"
OUTCOME_RANK = {"PASS": 0, "ABSTAIN": 1, "DENY": 2, "ERROR": 3}
READY = "CITATION_READY_FOR_DECLARED_SCOPE"
PUBLIC_SURFACES = frozenset(
    {
        "AI_ANSWER_CANDIDATE",
        "EXPORT_CANDIDATE",
        "FOCUS_CANDIDATE",
        "GOVERNED_API_CANDIDATE",
        "MAP_CANDIDATE",
    }
)
MAX_BYTES = 4 << 20


def identity(report: dict[str, Any]) -> tuple[str, str]:
    """(spec_hash, report_id) a report must carry: over everything but those two."""
    digest = spec_hash({k: v for k, v in report.items() if k not in ("report_id", "spec_hash")})
    return digest, REPORT_PREFIX + digest.removeprefix("sha256:")[:24]


# -- deriving a citation's outcome from its declared states ---------------------------------

# (field, declared value) -> (outcome, reason). Evaluated for every citation.
_STATE_RULES: dict[tuple[str, str], tuple[str, str]] = {
    ("citation_state", "ERROR"): ("ERROR", "CITATION_STATE_ERROR"),
    ("citation_state", "MISSING"): ("ABSTAIN", "CITATION_MISSING"),
    ("citation_state", "MALFORMED"): ("ABSTAIN", "CITATION_MALFORMED"),
    ("citation_state", "OUT_OF_SCOPE"): ("ABSTAIN", "CITATION_OUT_OF_SCOPE"),
    ("citation_state", "RIGHTS_BLOCKED"): ("DENY", "CITATION_RIGHTS_BLOCKED"),
    ("citation_state", "SENSITIVITY_BLOCKED"): ("DENY", "CITATION_SENSITIVITY_BLOCKED"),
    ("evidence_ref", "ERROR"): ("ERROR", "CITATION_EVIDENCE_REF_ERROR"),
    ("evidence_ref", "DENIED"): ("DENY", "CITATION_EVIDENCE_REF_DENIED"),
    ("evidence_bundle", "ERROR"): ("ERROR", "CITATION_BUNDLE_ERROR"),
    ("evidence_bundle", "DENIED"): ("DENY", "CITATION_BUNDLE_DENIED"),
    ("rights_state", "DENIED"): ("DENY", "CITATION_RIGHTS_DENIED"),
    ("rights_state", "UNKNOWN"): ("ABSTAIN", "CITATION_RIGHTS_UNKNOWN"),
    ("sensitivity_state", "DENIED"): ("DENY", "CITATION_SENSITIVITY_DENIED"),
    ("sensitivity_state", "UNKNOWN"): ("ABSTAIN", "CITATION_SENSITIVITY_UNKNOWN"),
    ("policy_state", "ERROR"): ("ERROR", "CITATION_POLICY_ERROR"),
    ("policy_state", "DENY"): ("DENY", "CITATION_POLICY_DENIED"),
    ("policy_state", "RESTRICT"): ("ABSTAIN", "CITATION_POLICY_NOT_READY"),
    ("release_state", "WITHDRAWN"): ("DENY", "CITATION_RELEASE_WITHDRAWN"),
}
# For a citation declared USABLE: a binding that is not there yet means "abstain".
_USABLE_RULES: dict[tuple[str, str], tuple[str, str]] = {
    ("locator", "NONE"): ("ABSTAIN", "CITATION_LOCATOR_MISSING"),
    ("evidence_ref", "UNRESOLVED"): ("ABSTAIN", "CITATION_EVIDENCE_REF_UNRESOLVED"),
    ("evidence_ref", "NOT_APPLICABLE"): ("ABSTAIN", "CITATION_EVIDENCE_REF_UNRESOLVED"),
    ("evidence_bundle", "INCOMPLETE"): ("ABSTAIN", "CITATION_BUNDLE_INCOMPLETE"),
    ("evidence_bundle", "NOT_APPLICABLE"): ("ABSTAIN", "CITATION_BUNDLE_INCOMPLETE"),
}


def _declared(citation: dict[str, Any], name: str) -> str:
    value = citation.get(name)
    if isinstance(value, dict):  # locator.kind, evidence_ref.state, evidence_bundle.state
        value = value.get("kind", value.get("state"))
    return str(value)


def derive_citation(citation: dict[str, Any], subject: dict[str, Any]) -> tuple[str, list[str]]:
    """The outcome and sorted reason codes a citation's declared states imply."""
    raised: set[tuple[str, str]] = set()
    for (name, value), result in _STATE_RULES.items():
        if _declared(citation, name) == value:
            raised.add(result)
    if citation.get("citation_state") == "USABLE":
        for (name, value), result in _USABLE_RULES.items():
            if _declared(citation, name) == value:
                raised.add(result)
    if citation.get("source_role") not in subject.get("allowed_source_roles", []):
        raised.add(("ABSTAIN", "CITATION_SOURCE_ROLE_NOT_ALLOWED"))
    if subject.get("requires_current_support"):
        freshness = citation.get("freshness_state")
        if freshness == "STALE":
            raised.add(("ABSTAIN", "CITATION_STALE"))
        elif freshness in ("UNKNOWN", "NOT_APPLICABLE"):
            raised.add(("ABSTAIN", "CITATION_TIME_UNKNOWN"))
    if subject.get("surface") in PUBLIC_SURFACES:
        # a public surface needs the claim released, reviewed and allowed by policy
        if citation.get("sensitivity_state") == "RESTRICTED":
            raised.add(("DENY", "CITATION_SENSITIVITY_RESTRICTED_PUBLIC"))
        if citation.get("policy_state") not in ("ALLOW", "DENY", "ERROR"):
            raised.add(("ABSTAIN", "CITATION_POLICY_NOT_READY"))
        if citation.get("review_state") != "APPROVED":
            raised.add(("ABSTAIN", "CITATION_REVIEW_NOT_READY"))
        if citation.get("release_state") not in ("RELEASED", "WITHDRAWN"):
            raised.add(("ABSTAIN", "CITATION_RELEASE_NOT_READY"))
    if not raised:
        return "PASS", [READY]
    worst = max((outcome for outcome, _ in raised), key=OUTCOME_RANK.__getitem__)
    return worst, sorted({reason for _, reason in raised})


def derive_summary(citations: list[dict[str, Any]]) -> dict[str, Any]:
    outcomes = [str(c.get("declared_outcome")) for c in citations]
    worst = max(outcomes, key=lambda o: OUTCOME_RANK.get(o, 0), default="PASS")
    return {
        "outcome": worst,
        "blocking": worst != "PASS",
        "citation_count": len(citations),
        "pass_count": outcomes.count("PASS"),
        "abstain_count": outcomes.count("ABSTAIN"),
        "deny_count": outcomes.count("DENY"),
        "error_count": outcomes.count("ERROR"),
        "reason_codes": sorted({r for c in citations for r in c.get("reason_codes", [])}),
        "remediation_refs": sorted(
            {c["remediation_ref"] for c in citations if c.get("remediation_ref") is not None}
        ),
    }


# -- validating one report -------------------------------------------------------------------


@dataclass(frozen=True)
class ReportVerdict:
    """KFM's validator result: DENY with one finding, or the report's own outcome."""

    subject: str
    status: str
    report_outcome: str | None
    finding: tuple[str, str] | None = None  # (code, JSON pointer)
    reasons: tuple[str, ...] = ()
    expected: dict[str, Any] = field(default_factory=dict)

    @property
    def findings(self) -> list[dict[str, str]]:
        return [] if self.finding is None else [{"code": self.finding[0], "path": self.finding[1]}]

    @property
    def matches_expected(self) -> bool | None:
        """For fixture cases that state their expected verdict (None otherwise)."""
        if not self.expected:
            return None
        return (
            self.status == self.expected.get("expected_status")
            and self.report_outcome == self.expected.get("expected_report_outcome")
            and self.findings == self.expected.get("expected_findings")
        )

    def as_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "report": self.subject,
            "status": self.status,
            "report_outcome": self.report_outcome,
            "findings": [f"{f['code']} {f['path']}" for f in self.findings],
            "reasons": list(self.reasons),
        }
        if self.expected:
            row["expected_status"] = self.expected.get("expected_status")
            row["matches_kfm"] = self.matches_expected
        return row


def _schema_finding(report: Any, schema: dict[str, Any]) -> tuple[str, str] | None:
    import jsonschema  # type: ignore[import-untyped]

    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(
        validator.iter_errors(report),
        key=lambda e: (pointer(e.absolute_path) if e.absolute_path else "/", str(e.validator)),
    )
    if not errors:
        return None
    first = errors[0]
    return "CITATION_REPORT_SCHEMA_INVALID", (
        pointer(first.absolute_path) if first.absolute_path else "/"
    )


def _semantic_finding(report: dict[str, Any]) -> tuple[str, str] | None:
    roles = report["subject"]["allowed_source_roles"]
    if roles != sorted(roles):
        return "CITATION_REPORT_SOURCE_ROLES_NOT_CANONICAL", "/subject/allowed_source_roles"
    citations = report["citations"]
    ids = [c["citation_id"] for c in citations]
    if len(set(ids)) != len(ids):
        return "CITATION_REPORT_CITATION_ID_DUPLICATE", "/citations"
    if ids != sorted(ids):
        return "CITATION_REPORT_CITATIONS_NOT_CANONICAL", "/citations"
    for index, citation in enumerate(citations):
        here = f"/citations/{index}"
        outcome, reasons = derive_citation(citation, report["subject"])
        if citation["declared_outcome"] != outcome:
            return "CITATION_REPORT_CITATION_OUTCOME_MISMATCH", f"{here}/declared_outcome"
        if citation["reason_codes"] != reasons:
            return "CITATION_REPORT_CITATION_REASONS_MISMATCH", f"{here}/reason_codes"
        remediation = citation["remediation_ref"]
        if outcome == "PASS" and remediation is not None:
            return "CITATION_REPORT_PASS_HAS_REMEDIATION", f"{here}/remediation_ref"
        if outcome != "PASS" and remediation is None:
            return "CITATION_REPORT_BLOCKING_REMEDIATION_MISSING", f"{here}/remediation_ref"
        for binding in ("evidence_ref", "evidence_bundle"):
            state, ref = citation[binding]["state"], citation[binding]["ref"]
            if state in ("RESOLVED", "CLOSED") and ref is None:
                return "CITATION_REPORT_RESOLVED_BINDING_REF_MISSING", f"{here}/{binding}/ref"
            if state == "NOT_APPLICABLE" and ref is not None:
                return "CITATION_REPORT_NOT_APPLICABLE_REF_PRESENT", f"{here}/{binding}/ref"
    if report["summary"] != derive_summary(citations):
        return "CITATION_REPORT_SUMMARY_MISMATCH", "/summary"
    try:
        digest, report_id = identity(report)
    except CanonicalizationError:
        return "CITATION_REPORT_CANONICALIZATION_ERROR", "/"
    if report["spec_hash"] != digest:
        return "CITATION_REPORT_SPEC_HASH_MISMATCH", "/spec_hash"
    if report["report_id"] != report_id:
        return "CITATION_REPORT_ID_MISMATCH", "/report_id"
    return None


def validate_report(
    report: Any, schema: dict[str, Any], subject: str, expected: dict[str, Any] | None = None
) -> ReportVerdict:
    """Validate one report: schema first, then the derived values; first failure wins."""
    expected = expected or {}
    if not isinstance(report, dict):
        return ReportVerdict(subject, "ERROR", None, ("CITATION_REPORT_ROOT_NOT_OBJECT", "/"))
    finding = _schema_finding(report, schema) or _semantic_finding(report)
    if finding is not None:
        return ReportVerdict(subject, "DENY", None, finding, expected=expected)
    summary = report["summary"]
    return ReportVerdict(
        subject,
        summary["outcome"],
        summary["outcome"],
        reasons=tuple(r for r in summary["reason_codes"] if r != READY),
        expected=expected,
    )


# -- fixture manifests -----------------------------------------------------------------------


def _operate(document: dict[str, Any], operation: dict[str, Any]) -> None:
    node, slot = parent_of(document, str(operation["path"]))
    kind = operation.get("op")
    if kind == "set":
        node[slot] = copy.deepcopy(operation["value"])
    elif kind == "delete":
        del node[slot]
    elif kind == "swap":
        container = node[slot]
        first, second = operation["indexes"]
        container[first], container[second] = container[second], container[first]
    else:
        raise ValueError(f"unknown fixture operation {kind!r}")


def materialize(base: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """The report a fixture case describes (base + operations, derived values, identity)."""
    document = copy.deepcopy(base)
    for operation in case.get("operations", []):
        _operate(document, operation)
    if case.get("recompute_derived", True):
        for citation in document["citations"]:
            outcome, reasons = derive_citation(citation, document["subject"])
            citation["declared_outcome"], citation["reason_codes"] = outcome, reasons
        document["summary"] = derive_summary(document["citations"])
    digest, report_id = identity(document)
    document["spec_hash"] = case.get("spec_hash_override", digest)
    document["report_id"] = case.get("report_id_override", report_id)
    return document


def _load_json(path: Path) -> tuple[Any, str | None]:
    """(value, None) or (None, finding code) — never raises on hostile input."""
    data, problem = read_bounded(path, MAX_BYTES)
    if data is None:
        return None, {
            FileProblem.LINK: "CITATION_REPORT_INPUT_SYMLINK_DENIED",
            FileProblem.TOO_LARGE: "CITATION_REPORT_INPUT_TOO_LARGE",
            FileProblem.UNREADABLE: "CITATION_REPORT_JSON_INVALID",
        }.get(problem or FileProblem.UNREADABLE, "CITATION_REPORT_INPUT_NOT_FILE")
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_unique), None
    except _DuplicateKey:
        return None, "CITATION_REPORT_JSON_DUPLICATE_KEY"
    except (OSError, UnicodeError, ValueError, RecursionError):
        return None, "CITATION_REPORT_JSON_INVALID"


class _DuplicateKey(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for key, item in pairs:
        if key in value:
            raise _DuplicateKey(key)
        value[key] = item
    return value


def validate_file(path: Path, schema: dict[str, Any], name: str) -> list[ReportVerdict]:
    """A report file, or a fixture manifest expanded case by case."""
    value, problem = _load_json(path)
    if problem is not None:
        return [ReportVerdict(name, "ERROR", None, (problem, "/"))]
    if isinstance(value, dict) and isinstance(value.get("cases"), list) and "base" in value:
        verdicts = []
        for case in value["cases"]:
            case_id = str(case.get("case_id", "?")) if isinstance(case, dict) else "?"
            try:
                report = materialize(value["base"], case)
            except (KeyError, IndexError, TypeError, ValueError, CanonicalizationError):
                verdicts.append(
                    ReportVerdict(
                        f"{name}#{case_id}", "ERROR", None, ("CITATION_FIXTURE_CASE_INVALID", "/")
                    )
                )
                continue
            verdicts.append(validate_report(report, schema, f"{name}#{case_id}", case))
        return verdicts
    return [validate_report(value, schema, name)]


# -- the Explorer's provenance-citations panel -----------------------------------------------

PROJECTION_PROFILE = "kfm.explorer.provenance-citations.public-safe.v1"
MALFORMED = "MALFORMED_PROVENANCE_CITATIONS_PROJECTION"
_PANEL_FIELDS = frozenset(
    {
        "profile",
        "panel_id",
        "outcome",
        "reason_code",
        "title",
        "activity_ref",
        "citations",
        "republication_note_code",
        "release_manifest_ref",
    }
)
_CITATION_FIELDS = frozenset({"citation_id", "label", "href", "doi", "evidence_ref"})
_REASON_FOR = {
    "ANSWER": "CITATIONS_AVAILABLE",
    "ABSTAIN": "CITATIONS_MISSING",
    "DENY": "POLICY_DENIED",
    "ERROR": "UPSTREAM_ERROR",
}
_REPUBLICATION = frozenset({"KFM_DERIVED_REPUBLICATION", "SOURCE_PRESERVED"})
_PANEL_ID = re.compile(r"kfm:provenance-citations:[A-Za-z0-9][A-Za-z0-9:._~+/-]{2,270}")
_CITATION_ID = re.compile(r"kfm:citation:[A-Za-z0-9][A-Za-z0-9:._~+/-]{2,280}")
_KFM_REF = re.compile(r"kfm:(?://)?[A-Za-z0-9][A-Za-z0-9._~:/+-]{2,315}")
_DOI = re.compile(r"10\.\d{4,9}/[a-z0-9][a-z0-9._;()/:+-]{1,220}", re.IGNORECASE)
_HOST = re.compile(
    r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.IGNORECASE
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class PanelVerdict:
    file: str
    ok: bool
    outcome: str | None
    reason_code: str | None
    citations: int
    problem: str = ""  # where it broke (a JSON pointer and why), when not ok

    def as_row(self) -> dict[str, Any]:
        return {
            "panel": self.file,
            "accepted": self.ok,
            "outcome": self.outcome,
            "reason_code": self.reason_code,
            "citations": self.citations,
            "problem": self.problem,
        }


def _ref(value: Any, pattern: re.Pattern[str]) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= 320
        and pattern.fullmatch(value) is not None
        and not _CONTROL.search(value)
    )


def _label(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 160
        and value == value.strip()
        and not _CONTROL.search(value)
    )


def _public_https(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 500:
        return False
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError:
        return False
    host = parts.hostname or ""
    return (
        parts.scheme == "https"
        and parts.username is None
        and parts.password is None
        and port is None
        and not parts.fragment
        and host != "localhost"
        and not re.fullmatch(r"\d{1,3}(?:\.\d{1,3}){3}", host)
        and _HOST.fullmatch(host) is not None
        and urllib.parse.urlunsplit(parts) == value
        and (parts.path or "/") == parts.path
    )


def _citation_problem(index: int, citation: Any) -> str:
    here = f"/citations/{index}"
    if not isinstance(citation, dict) or set(citation) != _CITATION_FIELDS:
        return f"{here}: fields must be exactly {sorted(_CITATION_FIELDS)}"
    if not _ref(citation["citation_id"], _CITATION_ID):
        return f"{here}/citation_id: not a kfm:citation: id"
    if not _label(citation["label"]):
        return f"{here}/label: empty, untrimmed or too long"
    if not _public_https(citation["href"]):
        return f"{here}/href: not a public https URL"
    evidence = citation["evidence_ref"]
    if not _ref(evidence, _KFM_REF) or not str(evidence).startswith("kfm://evidence/"):
        return f"{here}/evidence_ref: not a kfm://evidence/ ref"
    doi = citation["doi"]
    if doi is not None:
        if not isinstance(doi, str) or doi != doi.strip() or not _DOI.fullmatch(doi):
            return f"{here}/doi: not a DOI"
        if citation["href"] != f"https://doi.org/{doi}":
            return f"{here}/href: does not resolve the citation's DOI"
    return ""


def _panel_problem(panel: Any) -> str:
    if not isinstance(panel, dict):
        return "/: not an object"
    extra, missing = set(panel) - _PANEL_FIELDS, _PANEL_FIELDS - set(panel)
    if extra or missing:
        where = sorted(extra)[0] if extra else sorted(missing)[0]
        return f"/{where}: {'unexpected' if extra else 'missing'} field"
    if panel["profile"] != PROJECTION_PROFILE:
        return "/profile: unknown profile"
    if not _ref(panel["panel_id"], _PANEL_ID):
        return "/panel_id: not a kfm:provenance-citations: id"
    outcome, reason = panel["outcome"], panel["reason_code"]
    if outcome not in _REASON_FOR or _REASON_FOR[outcome] != reason:
        return "/reason_code: does not match the outcome"
    if panel["title"] is not None and not _label(panel["title"]):
        return "/title: not a label"
    for name in ("activity_ref", "release_manifest_ref"):
        if panel[name] is not None and not _ref(panel[name], _KFM_REF):
            return f"/{name}: not a kfm ref"
    note = panel["republication_note_code"]
    if note is not None and note not in _REPUBLICATION:
        return "/republication_note_code: unknown code"
    citations = panel["citations"]
    if not isinstance(citations, list) or len(citations) > 12:
        return "/citations: not a list of at most 12"
    seen: set[str] = set()
    for index, citation in enumerate(citations):
        problem = _citation_problem(index, citation)
        if problem:
            return problem
        if citation["citation_id"] in seen:
            return f"/citations/{index}/citation_id: duplicate"
        seen.add(citation["citation_id"])
    if outcome == "ANSWER":
        if not citations:
            return "/citations: an ANSWER without citations"
        if (
            panel["title"] is None
            or not str(panel["activity_ref"] or "").startswith("kfm://prov/activity/")
            or note is None
            or not str(panel["release_manifest_ref"] or "").startswith("kfm://release/")
        ):
            return "/: an ANSWER must carry its title, activity, release and republication note"
    elif citations or any(
        panel[name] is not None
        for name in ("title", "activity_ref", "republication_note_code", "release_manifest_ref")
    ):
        return f"/: a {outcome} panel must not carry citations or provenance"
    return ""


def check_panel(value: Any, name: str) -> PanelVerdict:
    problem = _panel_problem(value)
    panel = value if isinstance(value, dict) else {}
    citations = panel.get("citations")
    return PanelVerdict(
        name,
        not problem,
        panel.get("outcome") if isinstance(panel.get("outcome"), str) else None,
        panel.get("reason_code") if isinstance(panel.get("reason_code"), str) else None,
        len(citations) if isinstance(citations, list) else 0,
        problem,
    )


def panel_files(folders: list[Path]) -> Iterator[tuple[Path, str]]:
    """Every *.json under the given folders (or the files), sorted; named from the folder."""
    for folder in folders:
        if not folder.is_dir():
            yield folder, folder.name
            continue
        for path in sorted(folder.rglob("*.json")):
            yield path, f"{folder.name}/{path.relative_to(folder).as_posix()}"


def check_panel_file(path: Path, name: str, root: Path) -> PanelVerdict:
    """One panel file; paths resolving outside `root` are refused, never opened."""
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except OSError:
        inside = False
    if not inside or path.is_symlink():
        return PanelVerdict(name, False, None, None, 0, "/: path escapes the target folder")
    value, problem = _load_json(path)
    if problem is not None:
        return PanelVerdict(name, False, None, None, 0, f"/: {problem}")
    return check_panel(value, name)


# -- a target's citation contracts ---------------------------------------------------------


@dataclass(frozen=True)
class ContractScan:
    reports: list[ReportVerdict]
    panels: list[PanelVerdict]

    def findings(self) -> list[Finding]:
        """KFM's own codes: the validator's finding, or the report's blocking reasons."""
        found: list[Finding] = []
        for verdict in self.reports:
            if verdict.finding is not None:
                code, pointer = verdict.finding
                severity = HOLD if verdict.status == "ERROR" else BLOCKING
                found.append(
                    Finding(code, verdict.subject, pointer, severity, "report invalid: DENY")
                )
            elif verdict.status != "PASS":
                severity = HOLD if verdict.status == "ERROR" else BLOCKING
                for reason in verdict.reasons:
                    found.append(
                        Finding(
                            reason,
                            verdict.subject,
                            "/summary/reason_codes",
                            severity,
                            f"claim must not be published: {verdict.status}",
                        )
                    )
        for panel in self.panels:
            if not panel.ok:
                pointer, _, why = panel.problem.partition(": ")
                found.append(Finding(MALFORMED, panel.file, pointer or "/", BLOCKING, why))
            elif panel.outcome != "ANSWER":
                found.append(
                    Finding(
                        str(panel.reason_code),
                        panel.file,
                        "/outcome",
                        INFO,
                        f"the panel shows {panel.outcome} without citations (allowed)",
                    )
                )
        return found

    @property
    def report_status(self) -> str:
        """PASS / FAIL (a report is DENY or ABSTAIN) / HOLD (only ERRORs) for the check."""
        statuses = {v.status for v in self.reports}
        if statuses & {"DENY", "ABSTAIN"}:
            return "FAIL"
        if "ERROR" in statuses:
            return "HOLD"
        return "PASS"


def scan_contracts(target: Target) -> ContractScan:
    """Every report file and panel the target's `ai_citations` section names."""
    root = target.base
    schema_path = target.resolve("ai_citations", "schema", required=False)
    schema: dict[str, Any] | None = None
    if schema_path is not None:
        value, problem = _load_json(schema_path)
        schema = value if problem is None and isinstance(value, dict) else None
    reports: list[ReportVerdict] = []
    for path in target.resolve_many("ai_citations", "reports"):
        name = f"{path.parent.name}/{path.name}"
        if not _contained(path, root):
            reports.append(
                ReportVerdict(name, "ERROR", None, ("CITATION_REPORT_INPUT_PATH_DENIED", "/"))
            )
        elif schema is None:
            reports.append(
                ReportVerdict(name, "ERROR", None, ("CITATION_REPORT_SCHEMA_UNAVAILABLE", "/"))
            )
        else:
            reports.extend(validate_file(path, schema, name))
    panels = [
        check_panel_file(path, name, root)
        for path, name in panel_files(target.resolve_many("ai_citations", "panels"))
    ]
    return ContractScan(reports, panels)


def _contained(path: Path, root: Path) -> bool:
    return not path.is_symlink() and inside(path, root)
