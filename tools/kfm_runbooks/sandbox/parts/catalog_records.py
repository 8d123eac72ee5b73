"""Sandbox part: catalog records for the STAC/DCAT/PROV, license/label and provenance
runbooks, under `catalog_records/` (three areas, one per runbook, so that containment in
one never changes what another inspects).

Seeded faults (faulty variant):
- validation: a KFM-profile STAC item claims PROOF_BOUND without a proof reference
  (TRUST_CLASS_DEPENDENCY_MISMATCH); a PROV-JSON run record derives its output from an
  entity it never declares (PROV_REF_UNDECLARED)
- labels: a published STAC item has neither license nor sensitivity label (LICENSE_MISSING,
  SENSITIVITY_LABEL_MISSING); a DCAT distribution's label lacks reason and applied_at
  (SENSITIVITY_LABEL_INVALID)
- provenance: a collection names no provenance at all (MYSTERY_DATASET); another names a
  run receipt that does not exist (PROVENANCE_REF_UNRESOLVED)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...checks.common.jcs import spec_hash
from ._catalog_schemas import SCHEMAS

ROOT = "catalog_records"
STAMP = "2026-06-01T00:00:00Z"
LATER = "2026-06-01T00:05:00Z"
BBOX = [-98.5, 37.5, -97.5, 38.5]
POINT = {"type": "Point", "coordinates": [-98.0, 38.0]}
PROFILE = "kfm://profile/stac/kfm-profile-v1"
AUTHORITY = {
    "source_authority": False,
    "evidence_authority": False,
    "policy_authority": False,
    "review_authority": False,
    "release_authority": False,
    "publication_authority": False,
}
PROOF_FAULT = "kfm-sbx-streams-proof"
PROV_FAULT = "kfm-sbx-streams-run.prov.json"
UNLABELED = "kfm-sbx-wells-2026"
BAD_LABEL = "kfm-sbx-landcover-distribution"
MYSTERY = "kfm-sbx-soils-2026"
DANGLING = "kfm-sbx-wells-2026"


def _write(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _label(level: str, reason: str) -> dict[str, str]:
    return {"level": level, "reason": reason, "applied_at": STAMP}


# --- validation area ------------------------------------------------------------------


def _kfm_item(item_id: str, trust: str, *, proof: bool) -> dict[str, Any]:
    receipt = f"kfm://receipt/run/{item_id}"
    proof_ref = f"kfm://proof/{item_id}" if proof else None
    links = [
        {
            "href": f"kfm://catalog/stac/item/{item_id}",
            "rel": "self",
            "type": "application/geo+json",
        },
        {"href": receipt, "rel": "kfm:receipt", "type": "application/json"},
    ]
    if proof_ref:
        links.append({"href": proof_ref, "rel": "kfm:proof", "type": "application/json"})
    item: dict[str, Any] = {
        "assets": {},
        "bbox": BBOX,
        "geometry": POINT,
        "id": item_id,
        "links": links,
        "properties": {
            "datetime": STAMP,
            "kfm:authority": dict(AUTHORITY),
            "kfm:catalog_state": "CATALOGED" if trust == "PROOF_BOUND" else "CANDIDATE",
            "kfm:profile_version": "1.0.0-draft.1",
            "kfm:proof_ref": proof_ref,
            "kfm:publication_state": "NOT_PUBLISHED",
            "kfm:reason_codes": ["SANDBOX_SYNTHETIC"],
            "kfm:release_ref": None,
            "kfm:release_state": "NOT_RELEASED",
            "kfm:run_receipt_ref": receipt,
            "kfm:source_role": "synthetic",
            "kfm:trust_class": trust,
        },
        "stac_extensions": [PROFILE],
        "stac_version": "1.0.0",
        "type": "Feature",
    }
    item["properties"]["kfm:spec_hash"] = spec_hash(item)
    return item


def _trust_extension() -> dict[str, Any]:
    payload: dict[str, Any] = {
        "object_type": "CatalogTrustExtension",
        "schema_version": "1.0.0",
        "extension_id": "catalog-trust-extension:sandbox:streams-receipt",
        "host_profile": "STAC_ITEM",
        "host_record_ref": "kfm://catalog/stac/item/kfm-sbx-streams-receipt",
        "namespace": "kfm",
        "hash_profile": "RFC8785-JCS",
        "kfm:run_receipt_ref": "kfm://receipt/run/kfm-sbx-streams-receipt",
        "kfm:proof_ref": None,
        "kfm:trust_class": "receipt",
        "kfm:source_role": "synthetic",
        "governance": {
            "catalog_authorized": False,
            "promotion_authorized": False,
            "release_authorized": False,
            "publication_authorized": False,
            "public_use_allowed": False,
        },
    }
    return {**payload, "spec_hash": spec_hash(payload)}


def _stac_item(item_id: str, collection: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": collection,
        "geometry": POINT,
        "bbox": BBOX,
        "properties": {"datetime": STAMP, **extra.pop("properties", {})},
        "links": [{"rel": "collection", "href": f"../collections/{collection}.json"}],
        "assets": {
            "data": {
                "href": f"https://data.kfm.example/sandbox/{item_id}.parquet",
                "type": "application/vnd.apache.parquet",
                "roles": ["data"],
            }
        },
        **extra,
    }


def _collection(collection_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection_id,
        "description": f"Sandbox collection {collection_id}",
        "license": "CC-BY-4.0",
        "extent": {"spatial": {"bbox": [BBOX]}, "temporal": {"interval": [[STAMP, None]]}},
        "links": [],
        **extra,
    }


def _dcat(dist_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "kfm": "https://kfm.example/ns#",
        },
        "@id": f"https://data.kfm.example/sandbox/{dist_id}",
        "@type": "dcat:Distribution",
        "dct:title": f"Sandbox distribution {dist_id}",
        "dcat:downloadURL": f"https://data.kfm.example/sandbox/{dist_id}.parquet",
        "dcat:mediaType": "application/vnd.apache.parquet",
        **extra,
    }


def _prov_doc(
    output: str, source: str, run: str, *, used_from: str | None = None
) -> dict[str, Any]:
    """PROV-JSON: run `run` used `source` and generated `output`, derived from `source`.

    `used_from` makes the derivation point at another entity (which is not declared)."""
    out, src, act = f"kfm:{output}", f"kfm:source/{source}", f"kfm:run/{run}"
    agent = "kfm:agent/sandbox-pipeline"
    return {
        "prefix": {"kfm": "https://kfm.example/ns#"},
        "entity": {out: {"prov:label": output}, src: {"prov:label": f"{source} (sandbox)"}},
        "activity": {act: {"prov:startTime": STAMP, "prov:endTime": LATER}},
        "agent": {agent: {"prov:type": "prov:SoftwareAgent"}},
        "wasGeneratedBy": {"_:g1": {"prov:entity": out, "prov:activity": act}},
        "used": {"_:u1": {"prov:activity": act, "prov:entity": src}},
        "wasDerivedFrom": {
            "_:d1": {
                "prov:generatedEntity": out,
                "prov:usedEntity": f"kfm:source/{used_from}" if used_from else src,
            }
        },
        "wasAssociatedWith": {"_:a1": {"prov:activity": act, "prov:agent": agent}},
    }


def _validation(base: Path, clean: bool) -> None:
    published = base / "published"
    _write(
        published / "items/kfm-sbx-streams-receipt.json",
        _kfm_item("kfm-sbx-streams-receipt", "RECEIPT_BOUND", proof=False),
    )
    _write(
        published / f"items/{PROOF_FAULT}.json", _kfm_item(PROOF_FAULT, "PROOF_BOUND", proof=clean)
    )
    _write(
        published / "items/kfm-sbx-gauges-2026.json",
        _stac_item("kfm-sbx-gauges-2026", "kfm-sbx-hydrology"),
    )
    _write(published / "collections/kfm-sbx-hydrology.json", _collection("kfm-sbx-hydrology"))
    _write(published / "trust/kfm-sbx-streams-trust.json", _trust_extension())
    _write(
        published / "dcat/kfm-sbx-streams-distribution.json",
        _dcat("kfm-sbx-streams-distribution", **{"dct:license": "CC-BY-4.0"}),
    )
    prov = _prov_doc(
        "kfm-sbx-streams-receipt",
        "usgs-nwis-streams",
        "streams-2026-06-01",
        used_from=None if clean else "usgs-nwis-gauges",
    )
    _write(published / f"prov/{PROV_FAULT}", prov)


# --- labels area ----------------------------------------------------------------------

POLICY = """\
# Sandbox sensitivity policy profile: which labels may be published.
status: ACTIVE
levels:
  public: {publish: true}
  generalized: {publish: true}
  restricted: {publish: false}
  quarantine: {publish: false}
"""


def _labels(base: Path, clean: bool) -> None:
    published = base / "published"
    label = "kfm:sensitivity_label"
    _write(
        published / "collections/kfm-sbx-landcover.json",
        _collection("kfm-sbx-landcover", **{label: _label("public", "open land-cover data")}),
    )
    _write(
        published / "items/kfm-sbx-landcover-2026.json",
        _stac_item(
            "kfm-sbx-landcover-2026",
            "kfm-sbx-landcover",
            properties={"license": "CC-BY-4.0", label: _label("public", "open land-cover data")},
        ),
    )
    wells: dict[str, Any] = {}
    if clean:
        wells = {
            "properties": {
                "license": "CC-BY-4.0",
                label: _label("generalized", "well locations generalized to 1 km"),
            }
        }
    # its collection (kfm-sbx-wells) is not published: no licence to inherit (STAC keeps
    # licences on the collection, so an item linked to a licensed one would inherit it)
    _write(published / f"items/{UNLABELED}.json", _stac_item(UNLABELED, "kfm-sbx-wells", **wells))
    dist_label: dict[str, Any] = _label("public", "open land-cover data")
    if not clean:
        dist_label = {"level": "public"}
    _write(
        published / f"dcat/{BAD_LABEL}.json",
        _dcat(BAD_LABEL, **{"dct:license": "CC-BY-4.0", label: dist_label}),
    )
    (base / "policy").mkdir(parents=True, exist_ok=True)
    (base / "policy/profiles.yaml").write_text(POLICY, encoding="utf-8")


# --- provenance area ------------------------------------------------------------------


def _chain(base: Path, name: str) -> dict[str, str]:
    source = f"src:sandbox/{name}"
    descriptor = f"source-descriptor:{source}:1.0.0"
    bundle_id, run_id = f"evidence-bundle:sbx:{name}", f"run-receipt:sbx:{name}"
    _write(
        base / f"evidence/sources/{name}.source.json",
        {"source_id": source, "descriptor_version": "1.0.0", "title": f"Sandbox source {name}"},
    )
    _write(
        base / f"evidence/bundles/{name}.bundle.json",
        {
            "bundle_id": bundle_id,
            "source_records": [descriptor],
            "evidence_refs": [],
            "rights": {"license": "CC-BY-4.0"},
            "sensitivity": _label("public", "sandbox"),
        },
    )
    _write(
        base / f"evidence/runs/{name}.run.json",
        {
            "run_id": run_id,
            "stage": "sandbox_ingest",
            "inputs": [descriptor],
            "outputs": [bundle_id],
            "source_descriptor_refs": [descriptor],
            "outcome": "SUCCESS",
        },
    )
    return {"evidence_bundle_ref": bundle_id, "run_receipt_ref": run_id}


def _provenance(base: Path, clean: bool) -> None:
    catalog = base / "catalog"
    hydro = _chain(base, "hydrology-2026")
    _write(
        catalog / "kfm-sbx-hydrology-2026.json",
        _collection("kfm-sbx-hydrology-2026", **{"kfm:provenance": hydro}),
    )
    soils = _chain(base, "soils-2026")
    _write(
        catalog / f"{MYSTERY}.json",
        _collection(MYSTERY, **({"kfm:provenance": soils} if clean else {})),
    )
    wells = _chain(base, "wells-2026")
    if not clean:
        (base / "evidence/runs/wells-2026.run.json").unlink()
    _write(catalog / f"{DANGLING}.json", _collection(DANGLING, **{"kfm:provenance": wells}))
    prov = _prov_doc("kfm-sbx-landcover-2026", "landsat-c2", "landcover-2026-06-01")
    _write(base / "evidence/prov/landcover-2026.prov.json", prov)
    _write(
        catalog / "kfm-sbx-landcover-2026.json",
        _collection(
            "kfm-sbx-landcover-2026",
            **{"kfm:provenance": {"prov_ref": "../evidence/prov/landcover-2026.prov.json"}},
        ),
    )


# --- the part -------------------------------------------------------------------------


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    base = folder / ROOT
    for name, schema in sorted(SCHEMAS.items()):
        _write(base / "schemas" / name, schema)
    _validation(base / "validation", clean)
    _labels(base / "labels", clean)
    _provenance(base / "provenance", clean)
    sections: dict[str, Any] = {
        "catalog_validation": {
            "base": f"{ROOT}/validation",
            "records": [f"{ROOT}/validation/published"],
            "quarantine": f"{ROOT}/validation/quarantine",
            "schemas": {
                "kfm_stac_profile": f"{ROOT}/schemas/kfm-profile-v1.schema.json",
                "catalog_trust_extension": f"{ROOT}/schemas/catalog_trust_extension.schema.json",
            },
        },
        "catalog_labels": {
            "base": f"{ROOT}/labels",
            "records": [f"{ROOT}/labels/published"],
            "schema": f"{ROOT}/schemas/sensitivity_label.schema.json",
            "policy": f"{ROOT}/labels/policy/profiles.yaml",
            "withheld": f"{ROOT}/labels/withheld",
        },
        "catalog_provenance": {
            "base": f"{ROOT}/provenance",
            "entries": [f"{ROOT}/provenance/catalog"],
            "evidence": [f"{ROOT}/provenance/evidence"],
            "quarantine": f"{ROOT}/provenance/quarantine",
        },
    }
    if clean:
        return sections, []
    return sections, [
        f"{ROOT}: STAC item {PROOF_FAULT} is PROOF_BOUND without a proof reference "
        "(TRUST_CLASS_DEPENDENCY_MISMATCH) — RBK-catalog-stac-validation",
        f"{ROOT}: PROV record {PROV_FAULT} derives from an undeclared entity "
        "(PROV_REF_UNDECLARED) — RBK-catalog-stac-validation",
        f"{ROOT}: STAC item {UNLABELED} has no license and no sensitivity label "
        "(LICENSE_MISSING, SENSITIVITY_LABEL_MISSING) — RBK-catalog-license-sensitivity",
        f"{ROOT}: DCAT distribution {BAD_LABEL} has an incomplete sensitivity label "
        "(SENSITIVITY_LABEL_INVALID) — RBK-catalog-license-sensitivity",
        f"{ROOT}: collection {MYSTERY} names no provenance (MYSTERY_DATASET) "
        "— RBK-catalog-mystery-dataset",
        f"{ROOT}: collection {DANGLING} cites a run receipt that does not exist "
        "(PROVENANCE_REF_UNRESOLVED) — RBK-catalog-mystery-dataset",
    ]
