"""What each target section's keys are, and where a KFM checkout keeps them.

`KEYS` names every path-valued key a runbook reads, with the kind of path it must be:

    file   an existing regular file        dir    an existing folder
    path   an existing file or folder      paths  one or a list of existing files / folders
    write  a write area (quarantine, withheld folders): need not exist yet, must never lie
           inside an incident workspace; defaults to .kfm-runbooks/<section>/<key> beside
           the data when the target names none
    state  a state file a runbook writes (holds, blocklist, control): like `write`, but
           no default (absent means the feature is not configured)

`load_target` checks every key a target states against this table, so a typo is bad input
(exit 2 naming the key) before a kernel starts, never a verdict about the data. Keys that
name the state a runbook judges (a backup's LATEST pointer, a served certificate) are not
listed: their absence is a finding, not a description error.

`KFM_LAYOUT` is KFM's own repository layout (the paths of its catalog, fixtures, schemas,
policies and registries, as in Kansas-Frontier-Matrix): with a top-level `repo:` each
section defaults to it, so a KFM checkout is described by one line. Defaults that do not
exist in the checkout are left out (nothing in scope, never PASS).

Imported inside the kernel: standard library only.
"""

from __future__ import annotations

from typing import Any

FILE, DIR, PATH, PATHS, WRITE, STATE = "file", "dir", "path", "paths", "write", "state"

# section -> dotted key -> kind
KEYS: dict[str, dict[str, str]] = {
    "catalog": {
        "root": FILE,
        "items": PATHS,
        "asset_root": DIR,
        "data_root": DIR,
        "quarantine": WRITE,
    },
    "catalog_validation": {
        "base": DIR,
        "records": PATHS,
        "expectations": PATHS,
        "schemas.kfm_stac_profile": FILE,
        "schemas.catalog_trust_extension": FILE,
        "quarantine": WRITE,
    },
    "catalog_labels": {
        "base": DIR,
        "records": PATHS,
        "labels": PATHS,
        "schema": FILE,
        "policy": FILE,
        "withheld": WRITE,
    },
    "catalog_provenance": {
        "base": DIR,
        "entries": PATHS,
        "evidence": PATHS,
        "layout.catalog": DIR,
        "layout.proofs": DIR,
        "trust_spine.flow": FILE,
        "trust_spine.cases": FILE,
        "trust_spine.root": DIR,
        "quarantine": WRITE,
    },
    "graph": {
        "schema": FILE,
        "source_catalog": FILE,
        "compatibility_matrix": FILE,
        "closure_cases": FILE,
        "closure_schema": FILE,
    },
    "pipelines_determinism": {
        "repo_root": DIR,
        "receipts": PATHS,
        "runs": PATHS,
        "receipt_schema": FILE,
        "prior_snapshot": FILE,
        "current_snapshots": PATHS,
        "holds": STATE,
    },
    "pipelines_releases": {"root": DIR, "plans": PATHS, "plan_schema": FILE},
    "pipelines_sync": {"receipts": PATHS, "schema": FILE, "control": STATE},
    "pipelines_watchers": {
        "repo_root": DIR,
        "registries": PATHS,
        "registry_schema": FILE,
        "gate_packets": PATHS,
        "state": STATE,
    },
    "security_access": {"logs": PATHS, "policy": FILE, "blocklist": STATE},
    "security_layers": {
        "policy": FILE,
        "published": PATHS,
        "registry": PATHS,
        "manifests": PATHS,
        "schema": FILE,
        "expected": FILE,
        "withheld": WRITE,
    },
    "security_secrets": {"base": DIR, "paths": PATHS, "quarantine": WRITE, "rotation": STATE},
    "security_environment": {
        "site_packages": DIR,
        "lock": FILE,
        "wheelhouse": DIR,
        "untrusted_flag": STATE,
        "backup": WRITE,
    },
    "ai_citations": {"reports": PATHS, "schema": FILE, "panels": PATHS},
    "ai_query_safety": {"snapshots": PATHS},
    "focus": {"eval_set": FILE, "citation_policy": FILE, "gate_policy": FILE},
    "ui_registry": {
        "view_registry_cases": FILE,
        "view_registry_schema": FILE,
        "manifests": PATHS,
        "manifest_schema": FILE,
        "manifest_expected": FILE,
        "admission_cases": FILE,
    },
    # the ui runbooks' reference: KFM's layer registry, story definitions, citable documents
    "ui": {"layer_registry": FILE, "stories": FILE, "citations": FILE},
}

# Where a write area goes when the target names none: beside the data, never inside it.
WRITE_AREAS = ".kfm-runbooks"

_CONTRACTS = "fixtures/contracts/v1"
_SCHEMAS = "schemas/contracts/v1"

# KFM's layout: section -> key -> default (paths relative to the checkout).
KFM_LAYOUT: dict[str, dict[str, Any]] = {
    "catalog": {
        "items": [
            "fixtures/data/catalog_health/valid",
            "fixtures/data/catalog_health/invalid",
            "fixtures/data/catalog_health/hold",
        ],
        "asset_root": "fixtures/data/catalog_health",
    },
    "catalog_validation": {
        "base": ".",
        "records": [
            f"{_CONTRACTS}/stac/kfm-profile-v1/valid",
            f"{_CONTRACTS}/stac/kfm-profile-v1/invalid",
            "fixtures/data/catalog_trust_extension/valid",
            "fixtures/data/catalog_trust_extension/invalid",
            "docs/sources/catalog/_examples",
        ],
        "schemas": {
            "kfm_stac_profile": f"{_SCHEMAS}/stac/kfm-profile-v1.schema.json",
            "catalog_trust_extension": f"{_SCHEMAS}/data/catalog_trust_extension.schema.json",
        },
        "expectations": [
            f"{_CONTRACTS}/stac/kfm-profile-v1/fixture_manifest.json",
            "fixtures/data/catalog_trust_extension/expected_findings_manifest.json",
        ],
    },
    "catalog_labels": {
        "base": ".",
        "records": ["docs/sources/catalog/_examples"],
        "labels": [
            f"{_CONTRACTS}/policy/sensitivity_label/valid",
            f"{_CONTRACTS}/policy/sensitivity_label/invalid",
        ],
        "schema": f"{_SCHEMAS}/policy/sensitivity_label.schema.json",
        "policy": "policy/sensitivity/profiles.yaml",
    },
    "catalog_provenance": {
        "base": ".",
        "entries": ["data/catalog"],
        "evidence": ["data/proofs", "data/registry/sources"],
        "layout": {"catalog": "data/catalog/domain", "proofs": "data/proofs"},
        "trust_spine": {
            "flow": f"{_CONTRACTS}/governance/trust_spine_fixture_slice/flow.json",
            "cases": f"{_CONTRACTS}/governance/trust_spine_fixture_slice/cases.json",
            "root": ".",
            "allowed_writers": [
                "tools/validators/governance/validate_trust_spine_fixture_slice.py"
            ],
        },
    },
    "graph": {
        "compatibility_matrix": "control_plane/graph_runtime_compatibility_matrix.json",
        "closure_cases": f"{_CONTRACTS}/data/stac_link_closure_assessment/cases.json",
        "closure_schema": f"{_SCHEMAS}/data/stac_link_closure_assessment.schema.json",
    },
    "pipelines_determinism": {
        "repo_root": ".",
        "receipts": [
            "data/receipts/generated",
            "fixtures/generated_receipt/valid",
            "fixtures/generated_receipt/invalid",
        ],
        "receipt_schema": f"{_SCHEMAS}/receipts/generated_receipt.schema.json",
        "prior_snapshot": "tests/ingest/aqs_watch/fixtures/prior.json",
        "current_snapshots": [
            "tests/ingest/aqs_watch/fixtures/current_unchanged.json",
            "tests/ingest/aqs_watch/fixtures/current_location_shift.json",
            "tests/ingest/aqs_watch/fixtures/current_metadata_correction.json",
            "tests/ingest/aqs_watch/fixtures/current_method_change.json",
        ],
        "retrieval_fields": ["captured_at", "source_revision"],
    },
    "pipelines_releases": {
        "plans": [
            f"{_CONTRACTS}/source/source_ingestion_plan/valid",
            f"{_CONTRACTS}/source/source_ingestion_plan/invalid",
        ],
        "plan_schema": f"{_SCHEMAS}/source/source_ingestion_plan.schema.json",
    },
    "pipelines_sync": {
        "receipts": [
            f"{_CONTRACTS}/runtime/run_receipt/valid",
            f"{_CONTRACTS}/runtime/run_receipt/invalid",
        ],
        "schema": f"{_SCHEMAS}/runtime/run_receipt.schema.json",
    },
    "pipelines_watchers": {
        "repo_root": ".",
        "registries": [
            "control_plane/watcher_registry.json",
            f"{_CONTRACTS}/source/watcher_registry/valid",
            f"{_CONTRACTS}/source/watcher_registry/invalid",
            f"{_CONTRACTS}/source/watcher_registry/semantic_invalid",
        ],
        "registry_schema": f"{_SCHEMAS}/source/watcher_registry.schema.json",
        "gate_packets": [
            f"{_CONTRACTS}/watchers/watcher_gate_packet/valid",
            f"{_CONTRACTS}/watchers/watcher_gate_packet/invalid",
        ],
    },
    "security_layers": {
        "policy": "policy/sensitivity/profiles.yaml",
        "published": ["data/published/layers"],
        "registry": ["data/registry/layers"],
        "manifests": ["fixtures/data/layer_manifest/valid", "fixtures/data/layer_manifest/invalid"],
        "schema": f"{_SCHEMAS}/data/layer_manifest.schema.json",
        "expected": "fixtures/data/layer_manifest/expected_findings_manifest.json",
    },
    "security_secrets": {"paths": ["fixtures", "data", "configs", "control_plane"]},
    "ai_citations": {
        "reports": [f"{_CONTRACTS}/evidence/citation_validation_report/cases.json"],
        "schema": f"{_SCHEMAS}/evidence/citation_validation_report.schema.json",
        "panels": ["fixtures/ui/provenance_citations_projection"],
    },
    "ai_query_safety": {
        "snapshots": [f"{_CONTRACTS}/source/occurrence_retrieval_snapshot/query_safety"]
    },
    "ui_registry": {
        "view_registry_cases": "fixtures/ui/view_registry_profile/cases.json",
        "view_registry_schema": f"{_SCHEMAS}/ui/view_registry_profile.schema.json",
        "manifests": ["fixtures/data/layer_manifest/valid", "fixtures/data/layer_manifest/invalid"],
        "manifest_schema": f"{_SCHEMAS}/data/layer_manifest.schema.json",
        "manifest_expected": "fixtures/data/layer_manifest/expected_findings_manifest.json",
        "admission_cases": "fixtures/runtime/layer_manifest_admission/cases.json",
    },
}


def get(section: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key (`schemas.kfm_stac_profile`), or None."""
    value: Any = section
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def put(section: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = section
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def delete(section: dict[str, Any], dotted: str) -> None:
    parts = dotted.split(".")
    node: Any = section
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(parts[-1], None)
