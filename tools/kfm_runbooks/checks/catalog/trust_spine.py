"""KFM's trust spine: the pinned provenance chain behind a released catalog entry.

A trust-spine flow (`flow.json`, KFM schema kfm.trust-spine-fixture-slice.v1) pins, by
sha256, every artifact that links a dataset to its source and its run: source descriptor
-> activation decision -> run receipt -> validation report -> evidence bundle (and the
evidence ref into it) -> policy decision -> promotion receipt -> proof pack -> release
manifest -> rollback card. This module

1. loads the flow: every artifact path must be a safe repository path, its bytes must
   hash to the pin, its declared identity must match; the governing refs and dry-run refs
   are re-hashed; registry identity statuses are compared with KFM's object-family
   register. A pinned file that is not available is HOLD (unverifiable), never PASS.
2. walks the chain in KFM's order, link by link. The first broken link decides (FAIL, or
   DENY for a governance refusal) and later links are not evaluated; a link that cannot
   be verified here (a schema or validator that is not available) is HOLD and the walk
   goes on.
3. replays KFM's negative cases (`cases.json`): each case is one mutation of the flow's
   objects; the chain must reach the case's expected outcome and code. The mutations
   are not in cases.json: they are defined by KFM's validator
   (tools/validators/governance/validate_trust_spine_fixture_slice.py, `_mutate`) and
   restated in MUTATIONS below.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import TargetError
from ...target import Target
from .. import BLOCKING, HOLD, Finding
from ..common.files import sha256_tagged
from .json_docs import read_object
from .schema import SchemaUnavailable, schema_errors

DENY_CODES = frozenset(
    {
        "DIRECT_PUBLIC_PATH_ATTEMPT",
        "POLICY_DENIED",
        "RIGHTS_OR_SENSITIVITY_UNKNOWN",
        "UNAUTHORIZED_PARALLEL_WRITER",
    }
)
GATES = list("ABCDEFG")
CONTROL_EXPECTATIONS = {
    "fixture_only": True,
    "network_used": False,
    "source_activated": False,
    "lifecycle_write": False,
    "release_authorized": False,
    "promotion_authorized": False,
}
REGISTER_NAME = "object_family_register.yaml"


@dataclass(frozen=True)
class SpineConfig:
    flow: Path
    cases: Path | None
    root: Path
    allowed_writers: tuple[str, ...]

    @classmethod
    def from_section(cls, target: Target, section: str) -> SpineConfig | None:
        raw = target.section(section).get("trust_spine")
        if raw is None:
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("flow"), str):
            raise TargetError(f"target {target.path}: '{section}.trust_spine.flow' is required")
        writers = raw.get("allowed_writers") or []
        if not isinstance(writers, list) or not all(isinstance(w, str) for w in writers):
            raise TargetError(f"target {target.path}: trust_spine.allowed_writers: list of paths")
        return cls(
            flow=(target.base / raw["flow"]).resolve(),
            cases=(target.base / raw["cases"]).resolve()
            if isinstance(raw.get("cases"), str)
            else None,
            root=(target.base / str(raw.get("root", "."))).resolve(),
            allowed_writers=tuple(writers),
        )


def repo_file(root: Path, value: Any) -> tuple[Path | None, str | None]:
    """A pinned repository path: (file, None), (None, 'unsafe') or (None, 'missing')."""
    if not isinstance(value, str) or not value or "\\" in value or value.startswith("/"):
        return None, "unsafe"
    pure = PurePosixPath(value)
    if str(pure) != value or any(part in ("", ".", "..") for part in pure.parts):
        return None, "unsafe"
    current = root
    for part in pure.parts:
        current = current / part
        if current.is_symlink():
            return None, "unsafe"
    if not current.is_file():
        return None, "missing"
    return current, None


def derived_id(entry: dict[str, Any], value: dict[str, Any]) -> str | None:
    """The identity an artifact declares for itself, per the flow's identity_field."""
    field_name = str(entry.get("identity_field", ""))
    if field_name == "source_id+descriptor_version":
        source, version = value.get("source_id"), value.get("descriptor_version")
        if isinstance(source, str) and isinstance(version, str):
            return f"source-descriptor:{source}:{version}"
        return None
    raw = value.get(field_name)
    return raw if isinstance(raw, str) else None


@dataclass
class Spine:
    """A loaded flow: its entries and objects by family, and what loading established."""

    flow: dict[str, Any]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    schemas: dict[str, Path | None] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return any(f.severity == BLOCKING for f in self.findings)

    @property
    def controls(self) -> dict[str, Any]:
        value = self.flow.get("controls")
        return value if isinstance(value, dict) else {}


def load(config: SpineConfig) -> Spine:
    """Read the flow and verify every pin (read-only)."""
    subject = config.flow.name
    flow, code = read_object(config.flow)
    if flow is None:
        return Spine({}, findings=[Finding(code or "FLOW_UNREADABLE", subject)])
    spine = Spine(flow)

    def add(code: str, where: str, message: str, severity: str = BLOCKING) -> None:
        spine.findings.append(Finding(code, subject, where, severity, message))

    artifacts = flow.get("artifacts")
    if not isinstance(artifacts, list) or not artifacts:
        add("ARTIFACT_SET_INVALID", "/artifacts", "no artifacts")
        return spine
    if flow.get("artifact_count") != len(artifacts):
        add("ARTIFACT_SET_INVALID", "/artifact_count", "artifact_count disagrees with artifacts")
    for entry in artifacts:
        if not isinstance(entry, dict) or not isinstance(entry.get("family_id"), str):
            add("ARTIFACT_SET_INVALID", "/artifacts", "artifact entry without family_id")
            continue
        family = entry["family_id"]
        where = f"/artifacts/{family}"
        path, problem = repo_file(config.root, entry.get("path"))
        if path is None:
            if problem == "unsafe":
                add("ARTIFACT_PATH_INVALID", where, f"unsafe path {entry.get('path')!r}")
            else:
                add("ARTIFACT_UNAVAILABLE", where, f"{entry.get('path')} is not here", HOLD)
            continue
        if sha256_tagged(path) != entry.get("sha256"):
            add("ARTIFACT_DIGEST_MISMATCH", where, f"{path.name} does not hash to its pin")
            continue
        value, read_code = read_object(path)
        if value is None:
            add(read_code or "JSON_INVALID", where, f"{path.name} unreadable")
            continue
        if derived_id(entry, value) != entry.get("object_id"):
            add("OBJECT_ID_MISMATCH", where, f"{path.name} declares another identity")
        spine.entries[family] = entry
        spine.objects[family] = value
        schema, _ = repo_file(config.root, entry.get("schema_path"))
        spine.schemas[family] = schema
    _check_pins(config, spine, add)
    _check_register(config, spine, add)
    return spine


def _check_pins(config: SpineConfig, spine: Spine, add: Callable[..., None]) -> None:
    pins: list[tuple[str, Any]] = []
    refs = spine.flow.get("governing_refs")
    for index, item in enumerate(refs if isinstance(refs, list) else []):
        pins.append((f"/governing_refs/{index}", item))
    dry_run = spine.flow.get("dry_run")
    for name in ("promotion_verification_plan", "publication_deny_tool"):
        if isinstance(dry_run, dict) and name in dry_run:
            pins.append((f"/dry_run/{name}", dry_run[name]))
    for where, item in pins:
        if not isinstance(item, dict):
            continue
        path, problem = repo_file(config.root, item.get("path"))
        if path is None:
            if problem == "unsafe":
                add("PINNED_REF_INVALID", where, f"unsafe path {item.get('path')!r}")
            else:
                add("PINNED_REF_UNAVAILABLE", where, f"{item.get('path')} is not here", HOLD)
        elif sha256_tagged(path) != item.get("sha256"):
            add("PINNED_REF_DIGEST_MISMATCH", where, f"{path.name} does not hash to its pin")


def _check_register(config: SpineConfig, spine: Spine, add: Callable[..., None]) -> None:
    refs = spine.flow.get("governing_refs")
    paths = [
        item.get("path")
        for item in (refs if isinstance(refs, list) else [])
        if isinstance(item, dict) and str(item.get("path", "")).endswith(REGISTER_NAME)
    ]
    register_path = repo_file(config.root, paths[0])[0] if paths else None
    register = read_object(register_path)[0] if register_path else None
    if register is None:
        add("REGISTRY_UNAVAILABLE", "/governing_refs", "object-family register not readable", HOLD)
        return
    known = {
        e.get("family_id"): e
        for e in register.get("entries", [])
        if isinstance(e, dict) and isinstance(e.get("family_id"), str)
    }
    for family, entry in spine.entries.items():
        identity = (known.get(family) or {}).get("identity")
        status = identity.get("status") if isinstance(identity, dict) else None
        if entry.get("registry_identity_status") != status:
            add(
                "REGISTRY_IDENTITY_STATUS_MISMATCH",
                f"/artifacts/{family}",
                f"register says {status}",
            )
        binding = (
            "CONFLICTED_CANDIDATE_PIN" if status == "CONFLICTED" else "SINGLE_SURFACE_FIXTURE_PIN"
        )
        if entry.get("candidate_binding") != binding:
            add("CANDIDATE_BINDING_MISMATCH", f"/artifacts/{family}", f"expected {binding}")


# --- the chain ------------------------------------------------------------------------


@dataclass
class Link:
    name: str
    status: str  # PASS | FAIL | DENY | HOLD | NOT_EVALUATED
    code: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"link": self.name, "status": self.status, "code": self.code, "detail": self.detail}


@dataclass
class ChainResult:
    outcome: str  # PASS | FAIL | DENY | HOLD
    links: list[Link]

    @property
    def codes(self) -> list[str]:
        return [link.code for link in self.links if link.status in ("FAIL", "DENY")]

    @property
    def holds(self) -> list[Link]:
        return [link for link in self.links if link.status == "HOLD"]


Verdict = tuple[str, str, str] | None  # (status, code, detail) or None when the link holds
Context = dict[str, Any]


def _ids(ctx: Context) -> list[str]:
    out = []
    for family, value in ctx["objects"].items():
        entry = ctx["entries"].get(family, {})
        identity = derived_id(entry, value)
        if identity is not None:
            out.append(identity)
    return out


def _get(ctx: Context, family: str) -> dict[str, Any]:
    value = ctx["objects"].get(family)
    return value if isinstance(value, dict) else {}


def _descriptor_ref(ctx: Context) -> str | None:
    return derived_id(ctx["entries"].get("source_descriptor", {}), _get(ctx, "source_descriptor"))


def _link_source(ctx: Context) -> Verdict:
    if "source_descriptor" not in ctx["objects"] or _descriptor_ref(ctx) is None:
        return "FAIL", "SOURCE_IDENTITY_MISSING", "the source descriptor has no identity"
    return None


def _link_receipts(ctx: Context) -> Verdict:
    missing = [f for f in ("run_receipt", "promotion_receipt") if f not in ctx["objects"]]
    return ("FAIL", "MISSING_RECEIPT", f"missing: {', '.join(missing)}") if missing else None


def _link_release(ctx: Context) -> Verdict:
    if "release_manifest" not in ctx["objects"]:
        return "FAIL", "MISSING_RELEASE_MANIFEST", "no release manifest"
    return None


def _link_rollback(ctx: Context) -> Verdict:
    target = _get(ctx, "rollback_card").get("target")
    if not isinstance(target, dict) or not isinstance(target.get("release_ref"), str):
        return "FAIL", "ROLLBACK_TARGET_MISSING", "the rollback card names no release to restore"
    return None


def _link_gates(ctx: Context) -> Verdict:
    gates = _get(ctx, "promotion_receipt").get("gates")
    gates = [g for g in gates if isinstance(g, dict)] if isinstance(gates, list) else []
    if [g.get("gate") for g in gates] != GATES or any(g.get("status") != "PASS" for g in gates):
        return "FAIL", "PROMOTION_GATES_INCOMPLETE", "promotion gates A-G not all PASS"
    return None


def _link_lifecycle(ctx: Context) -> Verdict:
    release = _get(ctx, "release_manifest")
    placed = (
        release.get("execution_mode") == "FIXTURE_ONLY"
        and release.get("lifecycle_state") == "CANDIDATE"
        and release.get("release_state") == "CANDIDATE"
    )
    if not placed:
        return "FAIL", "LIFECYCLE_PLACEMENT_INVALID", "release is not a fixture-only candidate"
    return None


def _link_public_path(ctx: Context) -> Verdict:
    controls = ctx["controls"]
    transition = _get(ctx, "promotion_receipt").get("transition")
    governance = _get(ctx, "release_manifest").get("governance")
    attempted = (
        controls.get("publication_attempted") is not False
        or controls.get("publication_created") is not False
        or controls.get("public_route") is not None
        or (transition.get("applied") if isinstance(transition, dict) else None) is not False
        or (isinstance(governance, dict) and any(v is not False for v in governance.values()))
    )
    if attempted:
        return "DENY", "DIRECT_PUBLIC_PATH_ATTEMPT", "a publication path bypasses release"
    return None


def _link_writer(ctx: Context) -> Verdict:
    allowed = ctx["allowed_writers"]
    writer = ctx["controls"].get("writer_path")
    if not allowed:
        return "HOLD", "WRITER_UNVERIFIED", "no allowed writer configured for this flow"
    if writer not in allowed:
        return "DENY", "UNAUTHORIZED_PARALLEL_WRITER", f"writer {writer} is not allowed"
    return None


def _link_rights(ctx: Context) -> Verdict:
    descriptor = _get(ctx, "source_descriptor")
    rights = descriptor.get("rights")
    sensitivity = _get(ctx, "evidence_bundle").get("sensitivity")
    known = (
        isinstance(rights, dict)
        and rights.get("rights_status") == "verified_open"
        and descriptor.get("sensitivity_default") == "public"
        and isinstance(sensitivity, dict)
        and sensitivity.get("level") == "public"
    )
    if not known:
        return "DENY", "RIGHTS_OR_SENSITIVITY_UNKNOWN", "rights or sensitivity not verified public"
    return None


def _link_policy_deny(ctx: Context) -> Verdict:
    if _get(ctx, "policy_decision").get("outcome") == "DENY":
        return "DENY", "POLICY_DENIED", "the policy decision denies"
    return None


def _link_unique(ctx: Context) -> Verdict:
    ids = _ids(ctx)
    if len(ids) != len(set(ids)):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        return "FAIL", "DUPLICATE_OBJECT_ID", f"identity used twice: {', '.join(dupes)}"
    return None


def _link_evidence_ref(ctx: Context) -> Verdict:
    ref, bundle = _get(ctx, "evidence_ref"), _get(ctx, "evidence_bundle")
    refs = bundle.get("evidence_refs")
    if (
        not ref
        or ref.get("bundle_ref") != bundle.get("bundle_id")
        or not (isinstance(refs, list) and ref in refs)
    ):
        return (
            "FAIL",
            "EVIDENCE_REF_UNRESOLVED",
            "the evidence ref does not resolve into the bundle",
        )
    return None


def _link_schemas(ctx: Context) -> Verdict:
    unavailable = []
    for family, value in sorted(ctx["objects"].items()):
        try:
            errors = schema_errors(ctx["schemas"].get(family), value)
        except SchemaUnavailable:
            unavailable.append(family)
            continue
        if errors:
            return "FAIL", "SCHEMA_MISMATCH", f"{family}: {errors[0].field} {errors[0].keyword}"
    if unavailable:
        return (
            "HOLD",
            "SCHEMA_UNAVAILABLE",
            f"{len(unavailable)} of {len(ctx['objects'])} schemas not available: "
            + ", ".join(unavailable),
        )
    return None


def _link_policy_allow(ctx: Context) -> Verdict:
    if _get(ctx, "policy_decision").get("outcome") != "ANSWER":
        return "FAIL", "POLICY_ALLOW_MISSING", "no allowing policy decision"
    return (
        "HOLD",
        "POLICY_SEMANTICS_UNVERIFIED",
        "KFM's policy-decision semantics validator is not available",
    )


def _bindings(ctx: Context) -> Verdict:
    descriptor, activation = _get(ctx, "source_descriptor"), _get(ctx, "source_activation_decision")
    policy, bundle = _get(ctx, "policy_decision"), _get(ctx, "evidence_bundle")
    run, validation = _get(ctx, "run_receipt"), _get(ctx, "validation_report")
    promotion, release = _get(ctx, "promotion_receipt"), _get(ctx, "release_manifest")
    proof, rollback = _get(ctx, "proof_pack"), _get(ctx, "rollback_card")
    descriptor_ref = _descriptor_ref(ctx)
    pin = ctx["entries"].get("source_descriptor", {}).get("sha256")
    decision = activation.get("decision") if isinstance(activation.get("decision"), dict) else {}
    assert isinstance(decision, dict)
    lineage = release.get("lineage") if isinstance(release.get("lineage"), dict) else {}
    assert isinstance(lineage, dict)
    target = rollback.get("target") if isinstance(rollback.get("target"), dict) else {}
    assert isinstance(target, dict)

    def has(container: dict[str, Any], key: str, value: Any) -> bool:
        items = container.get(key)
        return isinstance(items, list) and value in items

    checks: list[tuple[bool, str, str]] = [
        (
            activation.get("source_id") == descriptor.get("source_id")
            and activation.get("descriptor_version") == descriptor.get("descriptor_version")
            and activation.get("source_descriptor_ref") == descriptor_ref
            and activation.get("source_descriptor_digest") == pin,
            "ACTIVATION_DESCRIPTOR_BINDING_INVALID",
            "activation does not bind the pinned source descriptor",
        ),
        (
            has(decision, "policy_decision_refs", policy.get("decision_id")),
            "ACTIVATION_POLICY_BINDING_INVALID",
            "activation does not cite the policy decision",
        ),
        (
            has(bundle, "source_records", descriptor_ref),
            "BUNDLE_SOURCE_BINDING_INVALID",
            "the evidence bundle does not name the source",
        ),
        (
            has(run, "source_descriptor_refs", descriptor_ref),
            "RUN_SOURCE_BINDING_INVALID",
            "the run receipt does not name the source",
        ),
        (
            has(run, "validation_refs", validation.get("id")),
            "RUN_VALIDATION_BINDING_INVALID",
            "the run receipt does not cite the validation report",
        ),
        (
            has(promotion, "evidence_refs", bundle.get("bundle_id")),
            "PROMOTION_EVIDENCE_BINDING_INVALID",
            "the promotion receipt does not cite the evidence bundle",
        ),
        (
            has(promotion, "policy_refs", policy.get("decision_id")),
            "PROMOTION_POLICY_BINDING_INVALID",
            "the promotion receipt does not cite the policy decision",
        ),
        (
            has(release, "source_descriptor_refs", descriptor_ref)
            and has(release, "evidence_bundle_refs", bundle.get("bundle_id"))
            and has(release, "policy_decision_refs", policy.get("decision_id"))
            and has(release, "receipt_refs", run.get("run_id"))
            and has(release, "receipt_refs", promotion.get("promotion_id"))
            and has(release, "proof_refs", proof.get("proof_pack_id"))
            and lineage.get("rollback_ref") == rollback.get("id"),
            "RELEASE_REFERENCE_CLOSURE_INVALID",
            "the release manifest does not close over the chain",
        ),
        (
            proof.get("release_id") == release.get("release_id"),
            "PROOF_RELEASE_BINDING_INVALID",
            "the proof pack is for another release",
        ),
        (
            rollback.get("affected_release_ref") == release.get("release_id")
            and target.get("release_ref") != release.get("release_id"),
            "ROLLBACK_RELEASE_BINDING_INVALID",
            "the rollback card does not roll this release back to another",
        ),
        (
            all(ctx["controls"].get(k) is v for k, v in CONTROL_EXPECTATIONS.items()),
            "CONTROL_BOUNDARY_VIOLATION",
            "flow controls exceed the fixture boundary",
        ),
    ]
    for ok, code, detail in checks:
        if not ok:
            return "FAIL", code, detail
    return None


CHAIN: tuple[tuple[str, Callable[[Context], Verdict]], ...] = (
    ("source-identity", _link_source),
    ("receipts", _link_receipts),
    ("release-manifest", _link_release),
    ("rollback-target", _link_rollback),
    ("promotion-gates", _link_gates),
    ("lifecycle-placement", _link_lifecycle),
    ("no-direct-public-path", _link_public_path),
    ("single-writer", _link_writer),
    ("rights-and-sensitivity", _link_rights),
    ("policy-not-denied", _link_policy_deny),
    ("unique-identities", _link_unique),
    ("evidence-ref", _link_evidence_ref),
    ("schemas", _link_schemas),
    ("policy-allows", _link_policy_allow),
    ("reference-bindings", _bindings),
)


def evaluate(
    spine: Spine,
    objects: dict[str, dict[str, Any]] | None = None,
    controls: dict[str, Any] | None = None,
    allowed_writers: tuple[str, ...] = (),
) -> ChainResult:
    """Walk the chain; the first FAIL/DENY decides, HOLD links are noted and passed."""
    links = [Link("pins", "HOLD", f.code, f.message) for f in spine.findings if f.severity == HOLD]
    blocking = [f for f in spine.findings if f.severity == BLOCKING]
    if blocking:
        links += [Link("pins", "FAIL", f.code, f.message) for f in blocking]
        return ChainResult("FAIL", links)
    ctx: Context = {
        "objects": spine.objects if objects is None else objects,
        "controls": spine.controls if controls is None else controls,
        "entries": spine.entries,
        "schemas": spine.schemas,
        "allowed_writers": allowed_writers,
    }
    decided: str | None = None
    for name, check in CHAIN:
        if decided:
            links.append(Link(name, "NOT_EVALUATED"))
            continue
        result = check(ctx)
        if result is None:
            links.append(Link(name, "PASS"))
            continue
        status, code, detail = result
        links.append(Link(name, status, code, detail))
        if status in ("FAIL", "DENY"):
            decided = status
    if decided:
        return ChainResult(decided, links)
    return ChainResult("HOLD" if any(x.status == "HOLD" for x in links) else "PASS", links)


# --- KFM's negative cases --------------------------------------------------------------


def _set(family: str, key: str, value: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def mutate(objects: dict[str, Any], controls: dict[str, Any]) -> None:
        objects[family][key] = value

    return mutate


def _drop(family: str) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def mutate(objects: dict[str, Any], controls: dict[str, Any]) -> None:
        del objects[family]

    return mutate


def _control(key: str, value: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def mutate(objects: dict[str, Any], controls: dict[str, Any]) -> None:
        controls[key] = value

    return mutate


def _duplicate_id(objects: dict[str, Any], controls: dict[str, Any]) -> None:
    objects["validation_report"]["id"] = objects["run_receipt"]["run_id"]


def _drop_last_gate(objects: dict[str, Any], controls: dict[str, Any]) -> None:
    objects["promotion_receipt"]["gates"] = objects["promotion_receipt"]["gates"][:-1]


def _released(objects: dict[str, Any], controls: dict[str, Any]) -> None:
    objects["release_manifest"]["lifecycle_state"] = "RELEASED"
    objects["release_manifest"]["release_state"] = "RELEASED"


def _no_source_id(objects: dict[str, Any], controls: dict[str, Any]) -> None:
    del objects["source_descriptor"]["source_id"]


def _policy_deny(objects: dict[str, Any], controls: dict[str, Any]) -> None:
    objects["policy_decision"].update(outcome="DENY", reasons=["RIGHTS_UNKNOWN"], obligations=[])


def _rights_unknown(objects: dict[str, Any], controls: dict[str, Any]) -> None:
    objects["source_descriptor"]["rights"]["rights_status"] = "unknown"


MUTATIONS: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {
    "direct_public_path_attempt": _control("publication_attempted", True),
    "duplicate_id": _duplicate_id,
    "incomplete_promotion_gates": _drop_last_gate,
    "invalid_lifecycle_placement": _released,
    "missing_receipt": _drop("run_receipt"),
    "missing_release_manifest": _drop("release_manifest"),
    "missing_rollback_target": _set("rollback_card", "target", {}),
    "missing_source_identity": _no_source_id,
    "policy_deny": _policy_deny,
    "schema_mismatch": _set("validation_report", "version", 7),
    "unauthorized_parallel_writer": _control(
        "writer_path", "runtime/publication/parallel_writer.py"
    ),
    "unknown_rights_or_sensitivity": _rights_unknown,
    "unresolved_evidence_ref": _set(
        "evidence_ref", "bundle_ref", "evidence-bundle:fixture:missing"
    ),
}


@dataclass
class CaseResult:
    case_id: str
    expected_outcome: str
    expected_codes: list[str]
    outcome: str
    codes: list[str]
    detail: str

    @property
    def status(self) -> str:
        """reproduced | unverifiable (the chain could only HOLD) | MISMATCH."""
        if self.outcome == self.expected_outcome and self.codes == self.expected_codes:
            return "reproduced"
        return "unverifiable" if self.outcome == "HOLD" else "MISMATCH"

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case_id,
            "expected": f"{self.expected_outcome} {' '.join(self.expected_codes)}".strip(),
            "reached": f"{self.outcome} {' '.join(self.codes)}".strip(),
            "status": self.status,
            "detail": self.detail,
        }


def replay_cases(spine: Spine, config: SpineConfig) -> tuple[list[CaseResult], list[Finding]]:
    """Apply each of KFM's negative cases to a copy of the flow and walk the chain."""
    if config.cases is None:
        return [], []
    doc, code = read_object(config.cases)
    subject = config.cases.name
    if doc is None or not isinstance(doc.get("cases"), list):
        return [], [Finding("CASE_MANIFEST_INVALID", subject, "/", HOLD, str(code or "no cases"))]
    findings: list[Finding] = []
    results = []
    for case in doc["cases"]:
        if not isinstance(case, dict) or not isinstance(case.get("case_id"), str):
            findings.append(Finding("CASE_MANIFEST_INVALID", subject, "/cases", HOLD, "bad entry"))
            continue
        case_id = case["case_id"]
        expected_codes = [c for c in case.get("expected_codes", []) if isinstance(c, str)]
        expected = str(case.get("expected_outcome"))
        mutate = MUTATIONS.get(case_id)
        if mutate is None:
            results.append(
                CaseResult(case_id, expected, expected_codes, "HOLD", [], "mutation unknown here")
            )
            continue
        objects, controls = copy.deepcopy(spine.objects), copy.deepcopy(spine.controls)
        try:
            mutate(objects, controls)
        except (KeyError, TypeError, AttributeError):
            results.append(
                CaseResult(case_id, expected, expected_codes, "HOLD", [], "object to mutate absent")
            )
            continue
        chain = evaluate(spine, objects, controls, config.allowed_writers)
        holds = ", ".join(dict.fromkeys(f"{link.name} ({link.code})" for link in chain.holds))
        detail = "" if chain.outcome != "HOLD" else f"no link failed; not verifiable here: {holds}"
        results.append(
            CaseResult(case_id, expected, expected_codes, chain.outcome, chain.codes, detail)
        )
    required = spine.flow.get("required_negative_cases")
    listed = {r.case_id for r in results}
    for case_id in required if isinstance(required, list) else []:
        if case_id not in listed:
            findings.append(
                Finding("CASE_MISSING", subject, "/cases", HOLD, f"{case_id} not listed")
            )
    return results, findings
