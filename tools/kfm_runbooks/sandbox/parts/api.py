"""Sandbox part: what the api runbooks expect of the live side (section `api`).

The live services themselves come from sandbox/live.py and `kfm-runbook sandbox up`; their
faults (`5xx-burst`, `slow-query`, `auth-regression`, `abusive-client`) are switched on at
run time, so nothing is seeded here. This section states what a healthy deployment has
that the running system cannot tell by itself once it is broken: the indexes the
application's queries rely on (a dropped index leaves no trace in the catalog).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXPECTED_INDEXES = [
    {"name": "observations_geom_idx", "table": "observations", "column": "geom", "method": "gist"},
    {"name": "counties_geom_idx", "table": "counties", "column": "geom", "method": "gist"},
]


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    return {"api": {"expected_indexes": EXPECTED_INDEXES}}, []
