"""KFM's LayerManifest validation: is a layer's manifest valid and its representation renderable?

The manifest's JSON Schema (legacy id-only profile, or the closed fixture profile) first —
SCHEMA_INVALID per failing path, and then no semantic rule runs, as in KFM's validator; then
KFM's semantic rules: spec_hash / id identity, canonical reference arrays, floating `latest`
references, reference role collapse, source layer vs protocol, zoom range, bounds, temporal
window, public exposure and governance. Outcomes PASS | FAIL | ERROR; KFM's expected
findings (expected_findings_manifest.json) are matched by group/file name.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from ...vocab import Verdict
from .. import HOLD, Finding
from ..catalog.json_docs import inside
from ..common.jcs import CanonicalizationError, spec_hash
from .contract_base import CaseVerdict, ContractsConfig, display_name, read_json, schema_errors

READ_ERRORS = frozenset(
    {
        "FILE_NOT_FOUND",
        "FILE_READ_ERROR",
        "FILE_TOO_LARGE",
        "INPUT_SYMLINK_DENIED",
        "JSON_INVALID",
        "JSON_DUPLICATE_KEY",
        "JSON_NONFINITE_NUMBER",
        "JSON_NOT_UTF8",
        "JSON_COMPLEXITY_LIMIT",
        "ROOT_NOT_OBJECT",
        "PATH_ESCAPE",
        "SCHEMA_UNAVAILABLE",
        "HASHING_UNAVAILABLE",
    }
)

FLOATING_LATEST = re.compile(r"(^|[:/@._-])latest($|[:/@._-])", re.IGNORECASE)
REF_ARRAYS = (
    "source_descriptor_refs",
    "evidence_bundle_refs",
    "policy_decision_refs",
    "review_record_refs",
)


def _canonical_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(v, str) for v in value)
        and value == sorted(set(value))
    )


# --- LayerManifest -------------------------------------------------------------------------


def manifest_identity(manifest: dict[str, Any]) -> tuple[str, str]:
    digest = spec_hash({k: v for k, v in manifest.items() if k not in ("id", "spec_hash")})
    return digest, "layer-manifest:" + digest.removeprefix("sha256:")[:24]


def _manifest_refs(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    refs: list[tuple[str, Any]] = [
        (f"/{name}", doc.get(name))
        for name in (
            "catalog_ref",
            "release_manifest_ref",
            "promotion_decision_ref",
            "style_manifest_ref",
        )
    ]
    for name in REF_ARRAYS:
        values = doc.get(name)
        refs += [
            (f"/{name}/{i}", v) for i, v in enumerate(values if isinstance(values, list) else [])
        ]
    representation = doc.get("representation") or {}
    refs.append(("/representation/artifact_ref", representation.get("artifact_ref")))
    exposure = doc.get("exposure") or {}
    receipts = exposure.get("transform_receipt_refs")
    refs += [
        (f"/exposure/transform_receipt_refs/{i}", v)
        for i, v in enumerate(receipts if isinstance(receipts, list) else [])
    ]
    lineage = doc.get("lineage") or {}
    refs.append(("/lineage/previous_manifest_ref", lineage.get("previous_manifest_ref")))
    refs.append(("/lineage/rollback_ref", lineage.get("rollback_ref")))
    corrections = lineage.get("correction_refs")
    refs += [
        (f"/lineage/correction_refs/{i}", v)
        for i, v in enumerate(corrections if isinstance(corrections, list) else [])
    ]
    refs.append(
        ("/provenance/run_receipt_ref", (doc.get("provenance") or {}).get("run_receipt_ref"))
    )
    return refs


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _representation_rules(rep: dict[str, Any]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    protocol, source_layer = rep.get("protocol"), rep.get("source_layer")
    if protocol in ("PMTILES", "XYZ") and not isinstance(source_layer, str):
        out.add(("SOURCE_LAYER_REQUIRED", "/representation/source_layer"))
    if protocol in ("COG", "GEOJSON_FIXTURE") and source_layer is not None:
        out.add(("SOURCE_LAYER_FORBIDDEN", "/representation/source_layer"))
    low, high = rep.get("min_zoom"), rep.get("max_zoom")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        out.add(("ZOOM_RANGE_INCOHERENT", "/representation"))
    bounds = rep.get("bounds")
    if (
        isinstance(bounds, list)
        and len(bounds) == 4
        and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
    ):
        west, south, east, north = bounds
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            out.add(("BOUNDS_INCOHERENT", "/representation/bounds"))
    return out


def _exposure_rules(exposure: dict[str, Any]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    public = exposure.get("audience") == "PUBLIC"
    if public and exposure.get("rights_status") != "APPROVED":
        out.add(("PUBLIC_RIGHTS_NOT_APPROVED", "/exposure/rights_status"))
    if public and exposure.get("sensitivity_status") not in ("PUBLIC_SAFE", "TRANSFORM_REQUIRED"):
        out.add(("PUBLIC_SENSITIVITY_NOT_APPROVED", "/exposure/sensitivity_status"))
    if public and not exposure.get("public_field_allowlist"):
        out.add(("PUBLIC_FIELD_ALLOWLIST_REQUIRED", "/exposure/public_field_allowlist"))
    if exposure.get("sensitivity_status") == "TRANSFORM_REQUIRED" and (
        exposure.get("generalized_geometry") is not True
        or not exposure.get("transform_receipt_refs")
    ):
        out.add(("TRANSFORM_EVIDENCE_REQUIRED", "/exposure"))
    return out


def manifest_semantics(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """KFM's semantic rules for a strict LayerManifest (legacy manifests have none)."""
    if doc.get("object_type") != "LayerManifest":
        return []
    out: set[tuple[str, str]] = set()
    try:
        digest, manifest_id = manifest_identity(doc)
    except CanonicalizationError:
        out.add(("HASHING_UNAVAILABLE", "/spec_hash"))
    else:
        if doc.get("spec_hash") != digest:
            out.add(("SPEC_HASH_MISMATCH", "/spec_hash"))
        if doc.get("id") != manifest_id:
            out.add(("MANIFEST_ID_MISMATCH", "/id"))
    for name in REF_ARRAYS:
        if not _canonical_list(doc.get(name)):
            out.add(("REFERENCE_ARRAY_NOT_CANONICAL", f"/{name}"))
    exposure = doc.get("exposure") if isinstance(doc.get("exposure"), dict) else {}
    for name in ("public_field_allowlist", "transform_receipt_refs"):
        if exposure and not _canonical_list(exposure.get(name)):
            out.add(("REFERENCE_ARRAY_NOT_CANONICAL", f"/exposure/{name}"))
    lineage = doc.get("lineage")
    if isinstance(lineage, dict) and not _canonical_list(lineage.get("correction_refs")):
        out.add(("REFERENCE_ARRAY_NOT_CANONICAL", "/lineage/correction_refs"))
    values = []
    for path, value in _manifest_refs(doc):
        if isinstance(value, str):
            values.append(value)
            if FLOATING_LATEST.search(value):
                out.add(("FLOATING_REFERENCE_DENIED", path))
    if len(values) != len(set(values)):
        out.add(("REFERENCE_ROLE_COLLAPSE", "/"))
    if isinstance(doc.get("representation"), dict):
        out |= _representation_rules(doc["representation"])
    temporal = doc.get("temporal")
    if isinstance(temporal, dict):
        start, end = _when(temporal.get("valid_from")), _when(temporal.get("valid_to"))
        if start is not None and end is not None and start > end:
            out.add(("TEMPORAL_WINDOW_INCOHERENT", "/temporal"))
    if exposure:
        out |= _exposure_rules(exposure)
    governance = doc.get("governance")
    if isinstance(governance, dict) and any(v is not False for v in governance.values()):
        out.add(("GOVERNANCE_BOUNDARY_VIOLATION", "/governance"))
    return sorted(out)


def validate_manifest(path: Path, config: ContractsConfig) -> tuple[str, list[tuple[str, str]]]:
    doc, code = read_json(path, config.base)
    if doc is None:
        return Verdict.ERROR, [(str(code), "/")]
    schema, code = read_json(config.manifest_schema, config.base)
    if schema is None:
        return Verdict.ERROR, [("SCHEMA_UNAVAILABLE", "/")]
    errors = schema_errors(doc, schema)
    if errors is None:
        return Verdict.ERROR, [("SCHEMA_UNAVAILABLE", "/")]
    found = [("SCHEMA_INVALID", p) for p in errors] or manifest_semantics(doc)
    if any(c in READ_ERRORS for c, _ in found):
        return Verdict.ERROR, found
    return (Verdict.FAIL if found else Verdict.PASS), found


def _manifest_files(config: ContractsConfig) -> list[Path]:
    files: list[Path] = []
    for root in config.manifests:
        if root.is_dir() and not root.is_symlink():
            files += sorted(p for p in root.glob("*.json") if p != config.manifest_expected)
        elif root.suffix == ".json":
            files.append(root)
    return files


def manifest_cases(config: ContractsConfig) -> tuple[list[CaseVerdict], list[Finding]]:
    expected_doc, _ = read_json(config.manifest_expected, config.base)
    expected: dict[str, dict[str, Any]] = {}
    for group in ("valid", "invalid"):
        cases = (expected_doc or {}).get(group)
        for name, want in cases.items() if isinstance(cases, dict) else []:
            if isinstance(want, dict):
                expected[f"{group}/{name}"] = want
    verdicts, problems = [], []
    for root in config.manifests:
        if not inside(root, config.base) or not root.exists():
            problems.append(
                Finding(
                    "UI_CONTRACT_INPUT_INVALID",
                    display_name(root, config.base),
                    "/",
                    HOLD,
                    "configured but missing or outside the target",
                )
            )
    for path in _manifest_files(config):
        key = f"{path.parent.name}/{path.name}"
        outcome, found = validate_manifest(path, config)
        want = expected.get(key)
        codes = want.get("findings") if want else None
        verdicts.append(
            CaseVerdict(
                "layer-manifest",
                key,
                outcome,
                found,
                str(want.get("outcome")) if want else None,
                [(str(c), "") for c in codes] if isinstance(codes, list) else None,
            )
        )
    return verdicts, problems
