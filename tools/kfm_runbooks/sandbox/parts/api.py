"""Sandbox part: what the api runbooks judge the sandbox against (inner keys of `api`).

The live services come from `kfm-runbook sandbox up` and their URL, roles, access log and
metrics from parts/services.py; their faults (`5xx-burst`, `slow-query`, `auth-regression`,
`abusive-client`) are switched on at run time, so nothing is seeded here. This part states
what a healthy deployment is *meant* to be, with the keys a production target uses
(README, "Pointing runbooks at production" → api): the public endpoints to probe, the
intended feature flags, the access matrix (a policy file, policy/api-access.yaml), the
per-client rate limit, the indexes the application's queries rely on (a dropped index
leaves no trace in the catalog) and representative parameters for its bbox search.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .live import GOOD_FLAGS, config

EXPECTED_INDEXES = [
    {"name": "observations_geom_idx", "table": "observations", "column": "geom", "method": "gist"},
    {"name": "counties_geom_idx", "table": "counties", "column": "geom", "method": "gist"},
]
ACCESS_MATRIX = Path("policy") / "api-access.yaml"


def endpoints(reference: dict[str, Any]) -> list[str]:
    """The public read endpoints a 5xx probe covers (no restricted layer)."""
    public = [layer for layer in reference["layers"] if layer["sensitivity"] == "public"]
    paths = ["/api/v1/catalog/items", "/api/v1/layers"]
    paths += [f"/api/v1/layers/{public[0]['id']}", f"/api/v1/layers/{public[0]['id']}/tiles/0/0/0"]
    paths += [f"/api/v1/layers/{layer['id']}/times" for layer in public if layer["time"]]
    paths += [f"/api/v1/stories/{story['id']}" for story in reference["stories"]]
    return [*paths, "/api/v1/search"]


def access_matrix(reference: dict[str, Any]) -> dict[str, Any]:
    roles = {"anonymous": ["public"]}
    roles.update({name: list(entry["layers"]) for name, entry in reference["roles"].items()})
    return {
        "roles": roles,
        "resources": {
            f"/api/v1/layers/{layer['id']}": layer["sensitivity"] for layer in reference["layers"]
        },
        "listing": {
            "path": "/api/v1/layers",
            "items": "layers",
            "resource": "/api/v1/layers/{id}",
        },
    }


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    reference = config()
    policy = folder / ACCESS_MATRIX
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(yaml.safe_dump(access_matrix(reference), sort_keys=False))
    return {
        "api": {
            "endpoints": endpoints(reference),
            "flags": dict(GOOD_FLAGS),
            "access_matrix": ACCESS_MATRIX.as_posix(),
            "rate_limit": dict(reference["rate_limit"]),
            "expected_indexes": EXPECTED_INDEXES,
            "statement_params": [
                # $1..$4 the bbox; $5, $6 the constants pg_stat_statements normalized (0, SRID)
                {"match": "ST_MakeEnvelope", "params": [-101.0, 38.0, -100.5, 38.5, 0, 4326]},
            ],
        }
    }, []
