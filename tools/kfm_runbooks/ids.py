"""Identifiers that reach the filesystem, validated before they touch a path.

Incident ids (INC-YYYYMMDD-###), runbook ids (RBK-<domain>-<slug>) and run ids are
matched against strict patterns, so no command-line value can name `..`, a slash or any
character that would let it escape its folder.
"""

from __future__ import annotations

import re
import secrets

from ._time import utc_now
from .errors import InvalidIdError

INCIDENT_ID_RE = re.compile(r"INC-(\d{8})-(\d{3})")
RUNBOOK_ID_RE = re.compile(r"RBK-([a-z]+)-([a-z0-9]+(?:-[a-z0-9]+)*)")
RUN_ID_RE = re.compile(r"RUN-\d{8}T\d{6}Z-[0-9a-f]{6}")
DOMAINS = ("catalog", "graph", "api", "ui", "pipelines", "security", "ai", "infra")


def check_incident_id(value: str) -> str:
    if not isinstance(value, str) or not INCIDENT_ID_RE.fullmatch(value):
        raise InvalidIdError(
            f"invalid incident id {value!r}: expected INC-YYYYMMDD-### "
            "(e.g. INC-20261127-001); see `kfm-runbook incident list`"
        )
    return value


def check_runbook_id(value: str) -> str:
    if not isinstance(value, str) or not RUNBOOK_ID_RE.fullmatch(value):
        raise InvalidIdError(
            f"invalid runbook id {value!r}: expected RBK-<domain>-<slug> in lower case "
            "(e.g. RBK-catalog-checksum-mismatch); see `kfm-runbook list`"
        )
    return value


def new_run_id() -> str:
    return f"RUN-{utc_now():%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
