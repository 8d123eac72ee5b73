"""The incident record (`00_meta/incident.yaml`) as a validated model.

The JSON Schema in `schemas/incident.schema.json` is generated from this model
(`kfm-runbook schema --write`) and a test fails when the two drift apart.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)

from . import paths
from ._time import iso
from .errors import WorkspaceError

SEVERITIES = ("Sev0", "Sev1", "Sev2", "Sev3")
STATUSES = ("Investigating", "Identified", "Mitigating", "Monitoring", "Resolved")
ROLES = ("IC", "Ops", "Scribe", "Comms", "SME")
SCHEMA_PATH = paths.schema("incident.schema.json")

UtcTimestamp = Annotated[
    AwareDatetime,
    PlainSerializer(iso, return_type=str, when_used="json"),
    Field(description="UTC ISO 8601 timestamp, e.g. 2026-11-27T08:25:35.000Z"),
]
Severity = Literal["Sev0", "Sev1", "Sev2", "Sev3"]
Status = Literal["Investigating", "Identified", "Mitigating", "Monitoring", "Resolved"]
OneLine = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Roles(_Strict):
    """Who wears which hat (seed: IC, Operations Lead, Scribe, Comms, SME)."""

    IC: OneLine | None = None
    Ops: OneLine | None = None
    Scribe: OneLine | None = None
    Comms: OneLine | None = None
    SME: OneLine | None = None


class Timestamps(_Strict):
    """Milestones of the incident, all UTC."""

    declared: UtcTimestamp
    detected: UtcTimestamp | None = None
    identified: UtcTimestamp | None = None
    mitigated: UtcTimestamp | None = None
    monitoring: UtcTimestamp | None = None
    resolved: UtcTimestamp | None = None

    @field_validator("*")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else value.astimezone(dt.UTC)


class Incident(_Strict):
    """One incident, as stored in 00_meta/incident.yaml."""

    schema_version: Literal[1] = 1
    id: Annotated[str, Field(pattern=r"^INC-\d{8}-\d{3}$")]
    title: OneLine
    severity: Severity
    status: Status = "Investigating"
    roles: Roles = Roles()
    timestamps: Timestamps
    summary: str = ""
    impact: str = Field(default="", description="who / what is affected (comms: Impact)")
    hypothesis: str = Field(default="", description="current hypothesis (comms), keep short")
    root_cause: str = Field(default="", description="recorded root cause (resolve gate)")

    def to_yaml(self) -> str:
        return yaml.safe_dump(
            self.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100
        )


def load(path: Path) -> Incident:
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise WorkspaceError(f"{path} is missing: not an incident workspace") from exc
    except yaml.YAMLError as exc:
        raise WorkspaceError(f"{path} is not valid YAML ({exc}): fix or restore it") from exc
    try:
        return Incident.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise WorkspaceError(
            f"{path}: {where}: {first['msg']} (schema: {SCHEMA_PATH.name}); fix the file"
        ) from exc


def json_schema() -> str:
    schema = Incident.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://kfm.example/schemas/kfm-runbooks/incident.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
