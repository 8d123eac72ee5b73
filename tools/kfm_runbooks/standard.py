"""The runbook standard as data: front matter model, sections, tags.

The seed (KFM incident runbooks README) requires 13 sections in order, a naming
convention `RBK-<domain>-<slug>`, deterministic and idempotent steps, explicit
verification and "where each command runs". This module holds those facts; `lint.py`
checks notebooks against them. `schemas/runbook.schema.json` is generated from
`RunbookMeta` (`kfm-runbook schema --write`).
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import paths
from .ids import DOMAINS
from .kernel import KERNEL_NAME
from .runbook import METADATA_KEY

__all__ = ["KERNEL_NAME", "METADATA_KEY", "PHASES", "SECTIONS", "RunbookMeta"]
SCHEMA_PATH = paths.schema("runbook.schema.json")

SECTIONS = (
    "Summary",
    "Signals / Detection",
    "Impact / Blast Radius",
    "Immediate Safety Checks",
    "Triage Checklist",
    "Containment Steps",
    "Recovery Steps",
    "Verification Steps",
    "Rollback Plan",
    "Evidence Capture",
    "Comms Template",
    "Postmortem Trigger",
    "Hardening Tasks",
)
# Every code cell but the parameters cell carries exactly one phase tag.
PHASES = (
    "setup",
    "safety",
    "triage",
    "containment",
    "recovery",
    "verification",
    "rollback",
    "evidence",
)
CHANGES_TARGET = "changes-target"  # the cell can change the target: it must use run.action
# A recovery step whose change to files under git becomes a reviewed commit on a branch
# (run.pr_action, prfirst.py), never an edit of the checkout. Containment stays direct.
PR_FIRST = "pr-first"
PR_FIRST_PHASES = ("recovery",)
CHANGING_PHASES = ("containment", "recovery", "rollback")
# Tags other tools understand, allowed beside ours.
FOREIGN_TAGS = (
    "parameters",
    "injected-parameters",
    "nbval-ignore-output",
    "nbval-skip",
    "raises-exception",
    "skip-execution",
    "remove-input",
    "remove-output",
    "hide-input",
)

RunbookId = Annotated[str, Field(pattern=r"^RBK-[a-z]+-[a-z0-9]+(-[a-z0-9]+)*$")]
OneLine = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Slug = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=60)]


class RunbookMeta(BaseModel):
    """Front matter of a runbook, stored in notebook metadata under `kfm_runbook`."""

    model_config = ConfigDict(extra="forbid")

    id: RunbookId = Field(description="RBK-<domain>-<slug>, equal to the file name")
    title: OneLine
    domain: Literal[DOMAINS] = Field(  # type: ignore[valid-type]
        description="the folder the runbook lives in"
    )
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")] = Field(
        description="semver; bump it with every behaviour change"
    )
    status: Literal["draft", "active", "deprecated"]
    owners: list[OneLine] = Field(min_length=1)
    classification: Literal["public", "internal", "restricted", "confidential"]
    tags: list[Slug] = Field(default_factory=list)
    signals: list[OneLine] = Field(
        min_length=1, description="alerts, symptoms or finding codes that lead here"
    )
    severity_hint: Literal["Sev0", "Sev1", "Sev2", "Sev3"]
    related: list[RunbookId] = Field(default_factory=list)
    targets: list[
        Literal["files", "http", "postgres", "graph", "logs", "process", "browser", "git", "tls"]
    ] = Field(min_length=1, description="what kinds of system the runbook talks to")
    runs_in: list[Literal["local", "ci", "container", "prod"]] = Field(
        min_length=1, description="where its commands run (seed: say where each command runs)"
    )


def json_schema() -> str:
    schema = RunbookMeta.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://kfm.example/schemas/kfm-runbooks/runbook.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
