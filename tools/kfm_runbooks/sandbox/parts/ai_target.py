"""Sandbox part: the sandbox's Focus Mode described by a target's `focus` section.

The sandbox is one Focus Mode system among others: its target names the same keys a
production target does (README, "Pointing runbooks at production" -> "### ai"). This part
writes the reference files the ai runbooks judge against — the evaluation set, the
citation policy and the gate policy under focus/ — from the sandbox's intended
configuration, and returns the `focus` section. URLs use the sandbox API's placeholder host
(rendered with the real port at `sandbox up`, services/target_render.py); the admin
interface is the target's `admin` section (`admin.flags_url` for the flags, the sandbox's
admin command for the ops of services/admin_ai.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..services.target_render import API_HOST
from .live import config

EVAL_SET = "focus/eval-set.yaml"
CITATION_POLICY = "focus/citation-policy.yaml"
GATE_POLICY = "focus/gate-policy.yaml"
ABSTAIN = "No KFM dataset matches this question."


def references() -> dict[str, dict[str, Any]]:
    """The three reference files' contents, from the sandbox's intended configuration."""
    focus = config()["focus"]
    flags = config()["flags"]
    return {
        EVAL_SET: {
            "min_accuracy": focus["min_eval_accuracy"],
            "questions": [
                {
                    "id": f"eval-{n}",
                    "question": item["question"],
                    "expected_citations": [item["expected_citation"]],
                }
                for n, item in enumerate(focus["evaluation"], 1)
            ],
        },
        CITATION_POLICY: {
            "citations_required": flags["citations_required"],
            "abstentions": [ABSTAIN],
        },
        GATE_POLICY: {
            "enforced": flags["input_gate_enforced"],
            "blocked_patterns": list(focus["input_gate"]["blocked_patterns"]),
        },
    }


def section() -> dict[str, Any]:
    return {
        "url": f"{API_HOST}/api/v1/focus",
        "health_url": f"{API_HOST}/health",
        "health_check": "retrieval",
        "catalog_url": f"{API_HOST}/api/v1/catalog/items",
        "catalog_role": "public",
        "eval_set": EVAL_SET,
        "citation_policy": CITATION_POLICY,
        "gate_policy": GATE_POLICY,
        "decision_log": {"path": "live/logs/focus.jsonl", "format": "jsonl"},
        "flags": {
            "enabled": "focus_enabled",
            "citations_required": "citations_required",
            "withhold_uncited": "block_uncited_answers",
            "input_gate": "input_gate_enforced",
        },
        "rebuild_op": "focus_rebuild_index",
    }


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    for name, value in references().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(value, sort_keys=False))
    return {"focus": section()}, []
