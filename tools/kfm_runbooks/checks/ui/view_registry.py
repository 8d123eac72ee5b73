"""KFM's view registry profile (VIEW_REGISTRY_PROFILE_V1): is a registry of map views coherent?

Closed JSON Schema (contracts/v1/ui/view_registry_profile) first; then identity (RFC 8785
spec_hash and the `kfm:view-registry:` id derived from it), entry and layer order, duplicate
views and routes, release/catalog role collapse, direct-store and embedded-query references;
then catalog closure (any DENY -> DENY, any HOLD -> ABSTAIN). Outcomes PASS | ABSTAIN |
DENY | ERROR with KFM's codes. Cases are built like KFM's harness: base + mutations, with
the generated identity unless the case overrides it.
"""

from __future__ import annotations

import copy
from typing import Any

from ...vocab import Verdict
from .. import HOLD, Finding
from ..common.jcs import CanonicalizationError, spec_hash
from ..common.json import pointer, set_at
from .contract_base import (
    CaseVerdict,
    ContractsConfig,
    case_name,
    display_name,
    read_json,
    schema_errors,
)

VIEW_ID_PREFIX = "kfm:view-registry:"
DIRECT_STORE = (
    "postgres://",
    "neo4j://",
    "s3://",
    "file://",
    "data/raw",
    "data/work",
    "data/quarantine",
    "raw/",
    "work/",
    "quarantine/",
)
EMBEDDED_QUERY = ("match (", "select *", "sparql ", "graph_query", "cypher:")


def _walk_strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path or "/", value)]
    out: list[tuple[str, str]] = []
    if isinstance(value, list):
        for index, item in enumerate(value):
            out += _walk_strings(item, f"{path}/{index}")
    elif isinstance(value, dict):
        for key in sorted(value):
            out += _walk_strings(value[key], f"{path}/{pointer([key])[1:]}")
    return out


# --- view registry profile ---------------------------------------------------------------


def view_identity(registry: dict[str, Any]) -> tuple[str, str]:
    digest = spec_hash({k: v for k, v in registry.items() if k not in ("registry_id", "spec_hash")})
    return digest, VIEW_ID_PREFIX + digest.removeprefix("sha256:")[:24]


def _view_semantics(registry: dict[str, Any]) -> list[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    try:
        digest, registry_id = view_identity(registry)
    except CanonicalizationError:
        out.add(("VIEW_REGISTRY_CANONICALIZATION_ERROR", "/"))
    else:
        if registry.get("spec_hash") != digest:
            out.add(("VIEW_REGISTRY_SPEC_HASH_MISMATCH", "/spec_hash"))
        if registry.get("registry_id") != registry_id:
            out.add(("VIEW_REGISTRY_ID_MISMATCH", "/registry_id"))
    entries = registry["entries"]
    views = [entry["view_id"] for entry in entries]
    routes = [entry["route_path"] for entry in entries]
    if views != sorted(views):
        out.add(("VIEW_REGISTRY_ENTRY_ORDER_INVALID", "/entries"))
    if len(set(views)) != len(views):
        out.add(("VIEW_REGISTRY_VIEW_ID_DUPLICATE", "/entries"))
    if len(set(routes)) != len(routes):
        out.add(("VIEW_REGISTRY_ROUTE_DUPLICATE", "/entries"))
    for index, entry in enumerate(entries):
        if entry["layer_manifest_refs"] != sorted(entry["layer_manifest_refs"]):
            out.add(("VIEW_REGISTRY_LAYER_ORDER_INVALID", f"/entries/{index}/layer_manifest_refs"))
        catalog_refs = {v for k, v in entry["catalog"].items() if k != "closure_state"}
        if entry["release_manifest_ref"] in catalog_refs:
            out.add(
                (
                    "VIEW_REGISTRY_RELEASE_CATALOG_ROLE_COLLAPSE",
                    f"/entries/{index}/release_manifest_ref",
                )
            )
    for path, text in _walk_strings(registry):
        lowered = text.casefold()
        if any(marker in lowered for marker in DIRECT_STORE):
            out.add(("VIEW_REGISTRY_DIRECT_STORE_REFERENCE_DENIED", path))
        if any(marker in lowered for marker in EMBEDDED_QUERY):
            out.add(("VIEW_REGISTRY_EMBEDDED_QUERY_DENIED", path))
    return sorted(out)


def validate_view_registry(
    registry: dict[str, Any], schema: dict[str, Any]
) -> tuple[str, list[tuple[str, str]]]:
    errors = schema_errors(registry, schema)
    if errors is None:
        return Verdict.ERROR, [("VIEW_REGISTRY_SCHEMA_UNAVAILABLE", "/")]
    if errors:
        return "DENY", [("VIEW_REGISTRY_SCHEMA_INVALID", path) for path in errors]
    semantic = _view_semantics(registry)
    if semantic:
        return "DENY", semantic
    closure = {entry["catalog"]["closure_state"] for entry in registry["entries"]}
    if "DENY" in closure:
        return "DENY", [("VIEW_REGISTRY_CATALOG_CLOSURE_DENIED", "/entries")]
    if Verdict.HOLD in closure:
        return "ABSTAIN", [("VIEW_REGISTRY_CATALOG_CLOSURE_HELD", "/entries")]
    return Verdict.PASS, []


def materialize_view_registry(bases: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """A case's registry as KFM's harness builds it: base + mutations, generated identity."""
    registry: dict[str, Any] = copy.deepcopy(bases[case["base"]])
    for mutation in case.get("mutations", []):
        set_at(registry, mutation["path"], mutation["value"])
    digest, registry_id = view_identity(registry)
    registry["spec_hash"] = case.get("spec_hash_override", digest)
    registry["registry_id"] = case.get("registry_id_override", registry_id)
    return registry


def view_registry_cases(config: ContractsConfig) -> tuple[list[CaseVerdict], list[Finding]]:
    cases_doc, code = read_json(config.view_registry_cases, config.base)
    subject = display_name(config.view_registry_cases, config.base)
    if cases_doc is None:
        return [], [Finding("UI_CONTRACT_INPUT_INVALID", subject, "/", HOLD, str(code))]
    schema, code = read_json(config.view_registry_schema, config.base)
    if schema is None:
        return [], [Finding("VIEW_REGISTRY_SCHEMA_UNAVAILABLE", subject, "/", HOLD, str(code))]
    bases, cases = cases_doc.get("bases"), cases_doc.get("cases")
    if not isinstance(bases, dict) or not isinstance(cases, list):
        return [], [Finding("UI_CONTRACT_INPUT_INVALID", subject, "/", HOLD, "no bases / cases")]
    verdicts, problems = [], []
    for index, case in enumerate(cases):
        name = case_name(case, index)
        try:
            outcome, found = validate_view_registry(materialize_view_registry(bases, case), schema)
            expected = case.get("expected_findings")
            verdicts.append(
                CaseVerdict(
                    "view-registry",
                    name,
                    outcome,
                    found,
                    case.get("expected_outcome"),
                    [(f["code"], f["path"]) for f in expected]
                    if isinstance(expected, list)
                    else None,
                )
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            problems.append(
                Finding(
                    "UI_CONTRACT_CASE_INVALID", f"{subject}#{name}", "/", HOLD, type(exc).__name__
                )
            )
    return verdicts, problems
