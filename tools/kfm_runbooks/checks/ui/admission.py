"""KFM's runtime admission of a LayerManifest: may a loader register this layer now?

`kfm.layer-manifest-admission-fixture.v1`: a closed projection of a manifest, its release
binding, the runtime request and the authority claimed. The first failing gate decides:
authority overclaim (DENY), source class (DENY), legacy / inactive profile (HOLD), withdrawn
(DENY) / superseded (HOLD) release, not published (HOLD), stale (HOLD), binding mismatch
(DENY), policy (DENY), evidence (HOLD), approvals (HOLD); else PASS
(LAYER_MANIFEST_REGISTER_ELIGIBLE). KFM's admission cases name mutations its test harness
(apps/explorer-web, layer_manifest_admission tests) defines; ADMISSION_MUTATIONS restates it.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ...vocab import Verdict
from .. import HOLD, Finding
from ..common.json import set_at
from .contract_base import CaseVerdict, ContractsConfig, case_name, display_name, read_json

ADMISSION_PROFILE = "kfm.layer-manifest-admission-fixture.v1"
ADMISSION_MUTATIONS: dict[str, list[tuple[str, Any]]] = {
    "NONE": [],
    "LEGACY": [("/manifest_profile", "LEGACY")],
    "INACTIVE": [("/profile_status", "PROPOSED_INACTIVE")],
    "CANDIDATE": [("/lifecycle_state", "CANDIDATE")],
    "STALE": [("/trust_state", "STALE")],
    "WITHDRAWN": [("/release_binding/release_state", "WITHDRAWN")],
    "SUPERSEDED": [("/release_binding/correction_state", "SUPERSEDED")],
    "EVIDENCE_UNRESOLVED": [("/release_binding/evidence_resolved", False)],
    "POLICY_DENIED": [("/release_binding/policy_allowed", False)],
    "SUBJECT_MISMATCH": [("/release_binding/subject_spec_hash", "sha256:" + "2b" * 32)],
    "DIRECT_INTERNAL_SOURCE": [("/runtime_request/source_url_class", "CANONICAL_INTERNAL")],
    "AUTHORITY_OVERCLAIM": [("/authority/public_use_authorized", True)],
    "INVALID_SHAPE": [("/unexpected", True)],
}
RELEASE_FIELDS = frozenset(
    {
        "release_manifest_ref",
        "release_state",
        "subject_manifest_id",
        "subject_spec_hash",
        "evidence_resolved",
        "policy_allowed",
        "review_approved",
        "promotion_approved",
        "artifact_verified",
        "signature_verified",
        "rollback_ready",
        "correction_state",
    }
)
REQUEST_FIELDS = frozenset({"registry_id", "layer_id", "source_url_class", "requested"})
AUTHORITY_FIELDS = frozenset(
    {"registry_mutated", "release_authorized", "publication_authorized", "public_use_authorized"}
)
ADMISSION_ROOT = frozenset(
    {
        "profile",
        "layer_id",
        "manifest_id",
        "manifest_spec_hash",
        "manifest_profile",
        "profile_status",
        "execution_mode",
        "lifecycle_state",
        "trust_state",
        "release_binding",
        "runtime_request",
        "authority",
    }
)


# --- runtime admission ---------------------------------------------------------------------


def admit(candidate: Any) -> tuple[str, str]:
    """KFM's runtime admission of a layer manifest projection: (outcome, code)."""
    if not _admission_shape(candidate):
        return Verdict.ERROR, "LAYER_MANIFEST_ADMISSION_INPUT_INVALID"
    release, request = candidate["release_binding"], candidate["runtime_request"]
    if any(v is not False for v in candidate["authority"].values()):
        return "DENY", "LAYER_MANIFEST_AUTHORITY_OVERCLAIM"
    if request["source_url_class"] != "GOVERNED_API":
        return "DENY", "LAYER_MANIFEST_SOURCE_CLASS_DENIED"
    if candidate["manifest_profile"] == "LEGACY":
        return Verdict.HOLD, "LAYER_MANIFEST_LEGACY_PROFILE_HELD"
    if candidate["profile_status"] != "ACTIVE" or candidate["execution_mode"] != "RELEASED_RUNTIME":
        return Verdict.HOLD, "LAYER_MANIFEST_INACTIVE_PROFILE_HELD"
    states = (release["release_state"], release["correction_state"])
    if "WITHDRAWN" in states:
        return "DENY", "LAYER_MANIFEST_RELEASE_WITHDRAWN"
    if "SUPERSEDED" in states:
        return Verdict.HOLD, "LAYER_MANIFEST_SUPERSEDED"
    if candidate["lifecycle_state"] != "PUBLISHED" or release["release_state"] != "PUBLISHED":
        return Verdict.HOLD, "LAYER_MANIFEST_NOT_PUBLISHED"
    if candidate["trust_state"] == "STALE":
        return Verdict.HOLD, "LAYER_MANIFEST_STALE"
    if (
        release["subject_manifest_id"] != candidate["manifest_id"]
        or release["subject_spec_hash"] != candidate["manifest_spec_hash"]
        or request["layer_id"] != candidate["layer_id"]
    ):
        return "DENY", "LAYER_MANIFEST_RELEASE_BINDING_MISMATCH"
    if release["policy_allowed"] is not True:
        return "DENY", "LAYER_MANIFEST_POLICY_DENIED"
    if release["evidence_resolved"] is not True:
        return Verdict.HOLD, "LAYER_MANIFEST_EVIDENCE_UNRESOLVED"
    gates = (
        "review_approved",
        "promotion_approved",
        "artifact_verified",
        "signature_verified",
        "rollback_ready",
    )
    if not all(release[g] is True for g in gates) or request["requested"] is not True:
        return Verdict.HOLD, "LAYER_MANIFEST_NOT_PUBLISHED"
    return Verdict.PASS, "LAYER_MANIFEST_REGISTER_ELIGIBLE"


def _admission_shape(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) != ADMISSION_ROOT:
        return False
    parts = {
        "release_binding": RELEASE_FIELDS,
        "runtime_request": REQUEST_FIELDS,
        "authority": AUTHORITY_FIELDS,
    }
    return (
        value["profile"] == ADMISSION_PROFILE
        and isinstance(value["layer_id"], str)
        and re.fullmatch(r"layer-manifest:[0-9a-f]{24}", str(value["manifest_id"])) is not None
        and re.fullmatch(r"sha256:[0-9a-f]{64}", str(value["manifest_spec_hash"])) is not None
        and all(isinstance(value[k], dict) and set(value[k]) == v for k, v in parts.items())
    )


def admission_cases(config: ContractsConfig) -> tuple[list[CaseVerdict], list[Finding]]:
    doc, code = read_json(config.admission_cases, config.base)
    subject = display_name(config.admission_cases, config.base)
    if doc is None:
        return [], [Finding("UI_CONTRACT_INPUT_INVALID", subject, "/", HOLD, str(code))]
    base, cases = doc.get("base"), doc.get("cases")
    if not isinstance(base, dict) or not isinstance(cases, list):
        return [], [Finding("UI_CONTRACT_INPUT_INVALID", subject, "/", HOLD, "no base / cases")]
    verdicts, problems = [], []
    for index, case in enumerate(cases):
        name = case_name(case, index)
        mutation = case.get("mutation") if isinstance(case, dict) else None
        if mutation not in ADMISSION_MUTATIONS:
            problems.append(
                Finding(
                    "UI_CONTRACT_CASE_INVALID",
                    f"{subject}#{name}",
                    "/mutation",
                    HOLD,
                    f"unknown mutation {str(mutation)[:40]!r}",
                )
            )
            continue
        candidate = copy.deepcopy(base)
        try:
            for pointer, value in ADMISSION_MUTATIONS[str(mutation)]:
                set_at(candidate, pointer, value)
        except (KeyError, IndexError, TypeError, ValueError):
            problems.append(
                Finding(
                    "UI_CONTRACT_CASE_INVALID",
                    f"{subject}#{name}",
                    "/",
                    HOLD,
                    "mutation does not apply to the base",
                )
            )
            continue
        outcome, found = admit(candidate)
        want = case.get("expected_code")
        verdicts.append(
            CaseVerdict(
                "admission",
                name,
                outcome,
                [(found, "/")],
                case.get("expected_outcome"),
                [(str(want), "")] if want is not None else None,
            )
        )
    return verdicts, problems
