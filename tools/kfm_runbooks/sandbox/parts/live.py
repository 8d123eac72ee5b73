"""Sandbox part: the live side (served by `kfm-runbook sandbox up`).

Two kinds of files under live/:
- live/config.json — the sandbox's own intended state: API tokens and roles (fake,
  deterministic, not secret-shaped), rate limits, the layer registry, stories, the Focus
  Mode corpus and evaluation set. `sandbox fault --off` restores from it, and the domain
  parts derive the reference files the target names from it (policy/, focus/,
  live/reference/). Runbooks never read it: they judge through the target.
- live/state/ — the running system's own state, which the API server reads on every
  request, which faults break and runbooks repair through the sandbox's admin command:
  flags.json (feature flags, policy switches), authz.json, blocklist.json, layers.json
  (the published registry), tiles/<layer>/ (tile sources), times/<layer>.json, stories.json,
  ui.json (the deployed UI release), focus_index.json (the retrieval index).
Faults are switched on at run time (`kfm-runbook sandbox fault NAME --on`, live/faults.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TOKENS = {"tok-public-0001": "public", "tok-analyst-0002": "analyst", "tok-admin-0003": "admin"}
TIMES = [f"2026-0{m}-01T00:00:00Z" for m in range(1, 7)]
GOOD_FLAGS = {
    "new_serializer": False,
    "input_gate_enforced": True,
    "citations_required": True,
    "block_uncited_answers": False,
    "focus_enabled": True,
}


def config() -> dict[str, Any]:
    return {
        "tokens": TOKENS,
        "roles": {
            "public": {"layers": ["public"]},
            "analyst": {"layers": ["public", "restricted"]},
            "admin": {"layers": ["public", "restricted"], "admin": True},
        },
        "rate_limit": {"per_second": 20, "burst": 40},
        "flags": GOOD_FLAGS,
        "ui": {"release": "v2", "previous": "v1"},
        "layers": [
            {
                "id": "landcover-2021",
                "title": "Land cover 2021",
                "sensitivity": "public",
                "time": None,
            },
            {"id": "streams", "title": "Streams", "sensitivity": "public", "time": None},
            {
                "id": "drought-monitor",
                "title": "Drought monitor (monthly)",
                "sensitivity": "public",
                "time": {"start": TIMES[0], "end": TIMES[-1], "step": "P1M", "values": TIMES},
            },
            {
                "id": "wells-precise",
                "title": "Well locations (precise)",
                "sensitivity": "restricted",
                "time": None,
            },
        ],
        "stories": [
            {
                "id": "drought-2026",
                "title": "Drought across the plains, 2026",
                "nodes": [
                    {
                        "id": "intro",
                        "layer": "drought-monitor",
                        "time": TIMES[0],
                        "text": "January: conditions are normal.",
                        "citations": ["kfm-sbx-landcover-2021"],
                    },
                    {
                        "id": "spring",
                        "layer": "drought-monitor",
                        "time": TIMES[3],
                        "text": "April: moderate drought in the west.",
                        "citations": ["kfm-sbx-drought-monitor"],
                    },
                    {
                        "id": "summer",
                        "layer": "streams",
                        "time": None,
                        "text": "Streams at record lows.",
                        "citations": ["kfm-sbx-hydro-streams"],
                    },
                ],
            },
        ],
        "focus": {
            "corpus": [
                {
                    "id": "kfm-sbx-landcover-2021",
                    "title": "Land cover 2021",
                    "text": "land cover classes for 2021 cropland grassland urban water",
                },
                {
                    "id": "kfm-sbx-hydro-streams",
                    "title": "Streams",
                    "text": "stream network flow lines rivers creeks hydrology",
                },
                {
                    "id": "kfm-sbx-hydro-wells",
                    "title": "Wells",
                    "text": "groundwater wells water levels aquifer depth",
                },
                {
                    "id": "kfm-sbx-drought-monitor",
                    "title": "Drought monitor",
                    "text": "drought severity monthly conditions precipitation deficit",
                },
            ],
            "input_gate": {
                "blocked_patterns": [
                    "ignore (all )?(previous|prior) instructions",
                    "system prompt",
                    "reveal (your|the) (prompt|instructions)",
                    "disregard the rules",
                ]
            },
            "evaluation": [
                {
                    "question": "Which dataset describes groundwater levels?",
                    "expected_citation": "kfm-sbx-hydro-wells",
                },
                {
                    "question": "Where can I see monthly drought conditions?",
                    "expected_citation": "kfm-sbx-drought-monitor",
                },
                {
                    "question": "What shows cropland and grassland in 2021?",
                    "expected_citation": "kfm-sbx-landcover-2021",
                },
                {
                    "question": "Which layer has rivers and creeks?",
                    "expected_citation": "kfm-sbx-hydro-streams",
                },
            ],
            "min_eval_accuracy": 1.0,
        },
    }


def _dump(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_state(live: Path, reference: dict[str, Any]) -> None:
    """The running system's state as intended (faults later break parts of it)."""
    from ..services.focus import build_index

    state = live / "state"
    _dump(state / "flags.json", reference["flags"])
    _dump(state / "authz.json", {"enforce_roles": True})
    _dump(state / "blocklist.json", {"clients": []})
    _dump(state / "layers.json", {"layers": reference["layers"]})
    for layer in reference["layers"]:
        _dump(
            state / "tiles" / layer["id"] / "source.json",
            {"layer": layer["id"], "format": "mvt", "zooms": [0, 14]},
        )
        if layer["time"]:
            _dump(state / "times" / f"{layer['id']}.json", {"values": layer["time"]["values"]})
    _dump(state / "stories.json", {"stories": reference["stories"]})
    _dump(state / "ui.json", reference["ui"])
    _dump(state / "focus_index.json", build_index(reference["focus"]["corpus"]))


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    live = folder / "live"
    reference = config()
    _dump(live / "config.json", reference)
    write_state(live, reference)
    # live/ is the running sandbox's own business (its server reads it, `sandbox fault`
    # breaks it): the target describes the services with production's keys instead
    # (parts/services.py and the domain parts), and names no file of live/state.
    return {}, []
