"""Sandbox part: map layer records and the sensitivity policy (target section `security_layers`).

Published layers (a public hydrology layer, a generalized archaeology layer), a restricted
layer kept unpublished in the registry, and the policy that says what each KFM
sensitivity level may expose. Seeded fault (faulty variant): the rare-species occurrence
layer (level `generalized`) was published at zoom 16 with exact locations and without
its generalization step — a redaction failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

FOLDER = "security/layers"
RUNBOOK = "RBK-security-sensitive-layer-exposure"
APPLIED = "2026-05-20T00:00:00Z"
FAULTY_LAYER = "sbx-rare-species-occurrences"

POLICY = {
    "status": "ACTIVE",
    "note": "What each KFM sensitivity level may expose (sandbox).",
    "profiles": {
        "public": {"public": True},
        "generalized": {
            "public": True,
            "max_zoom": 10,
            "generalized": True,
            "forbidden_fields": ["exact_location", "site_name", "landowner"],
        },
        "restricted": {"public": False},
        "quarantine": {"public": False},
    },
}


def _label(level: str, reason: str) -> dict[str, str]:
    return {"level": level, "reason": reason, "applied_at": APPLIED}


def _layers(clean: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    species: dict[str, Any] = {
        "id": FAULTY_LAYER,
        "title": "Rare species occurrences (generalized)",
        "audience": "public",
        "sensitivity": _label("generalized", "rare species: locations are generalized"),
        "representation": {"protocol": "PMTILES", "max_zoom": 10},
        "fields": ["taxon", "county", "observed_year"],
        "redaction": {"generalized": True, "receipt": "transform-receipt:sbx-species-gen-10km"},
    }
    if not clean:
        species["representation"]["max_zoom"] = 16
        species["fields"] = ["taxon", "exact_location", "observed_on"]
        species["redaction"] = {"generalized": False, "receipt": None}
    return {
        "published/hydrology-huc12.layer.yaml": (
            "published",
            {
                "id": "sbx-hydrology-huc12",
                "title": "HUC12 watersheds",
                "audience": "public",
                "sensitivity": _label("public", "public hydrography"),
                "representation": {"protocol": "PMTILES", "max_zoom": 14},
                "fields": ["huc12_id", "name"],
            },
        ),
        "published/archaeology-sites-generalized.layer.yaml": (
            "published",
            {
                "id": "sbx-archaeology-generalized",
                "title": "Archaeological site density (generalized)",
                "audience": "public",
                "sensitivity": _label("generalized", "site locations are culturally sensitive"),
                "representation": {"protocol": "PMTILES", "max_zoom": 9},
                "fields": ["density_class", "county"],
                "redaction": {"generalized": True, "receipt": "transform-receipt:sbx-arch-hex-5km"},
            },
        ),
        "published/rare-species-occurrences.layer.yaml": ("published", species),
        "registry/archaeology-sites-detailed.layer.yaml": (
            "registry",
            {
                "id": "sbx-archaeology-detailed",
                "title": "Archaeological sites (exact)",
                "audience": "restricted",
                "sensitivity": _label("restricted", "exact site locations"),
                "representation": {"protocol": "PMTILES", "max_zoom": 18},
                "fields": ["site_name", "exact_location", "landowner"],
            },
        ),
    }


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    base = folder / FOLDER
    policy = base / "policy" / "sensitivity" / "profiles.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(yaml.safe_dump(POLICY, sort_keys=False), encoding="utf-8")
    for name, (_kind, record) in _layers(clean).items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
    section = {
        "policy": f"{FOLDER}/policy/sensitivity/profiles.yaml",
        "published": [f"{FOLDER}/published"],
        "registry": [f"{FOLDER}/registry"],
        "withheld": f"{FOLDER}/withheld",
    }
    faults = (
        []
        if clean
        else [
            f"security: {FAULTY_LAYER} (generalized) published at zoom 16 with exact_location and "
            "no generalization (SEC_LAYER_RESOLUTION_EXCEEDS_POLICY, SEC_LAYER_REDACTION_MISSING, "
            f"SEC_LAYER_FIELD_NOT_REDACTED) — {RUNBOOK}"
        ]
    )
    return {"security_layers": section}, faults
