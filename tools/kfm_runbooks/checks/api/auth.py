"""RBK-api-auth-regression: does the running API still enforce the roles policy?

Every layer is requested with every role's token and with none, and each answer is
compared with the policy in live/config.json (`roles.<role>.layers` lists the sensitivity
classes a role may read; no token reads public layers only). A restricted layer answered
200 to a role the policy denies is a leak; a layer denied to a role the policy allows is
an over-block. The access log shows whether real clients already read restricted layers
without the role. Containment re-enables role enforcement in live/state/authz.json.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...target import Target
from .. import Finding, undoable
from ..live import Live
from .base import LogLine, Pacer, probe, state

RUNBOOK = "RBK-api-auth-regression"
ANONYMOUS = "anonymous"
_LAYER_ROUTE = re.compile(r"/api/v1/layers/([a-z0-9-]+)(?:/.*)?")


def roles(reference: dict[str, Any]) -> list[str]:
    """anonymous first, then every role that has a token, sorted."""
    tokens = reference.get("tokens", {})
    named = sorted({str(r) for r in tokens.values()}) if isinstance(tokens, dict) else []
    return [ANONYMOUS, *named]


def allowed(reference: dict[str, Any], role: str, sensitivity: str) -> bool:
    """What the policy says: public layers for everyone, others by the role's list."""
    if sensitivity == "public":
        return True
    if role == ANONYMOUS:
        return False
    policy = reference.get("roles", {})
    entry = policy.get(role, {}) if isinstance(policy, dict) else {}
    layers = entry.get("layers", []) if isinstance(entry, dict) else []
    return isinstance(layers, list) and sensitivity in layers


def layers(reference: dict[str, Any], served: dict[str, Any]) -> dict[str, str]:
    """layer id -> sensitivity the policy applies (the reference's, else the registry's)."""
    found: dict[str, str] = {}
    for source in (served.get("layers", []), reference.get("layers", [])):
        for layer in source if isinstance(source, list) else []:
            if isinstance(layer, dict) and re.fullmatch(r"[a-z0-9-]{1,64}", str(layer.get("id"))):
                found[str(layer["id"])] = str(layer.get("sensitivity", "restricted"))
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class Cell:
    layer: str
    sensitivity: str
    role: str
    status: int | None
    expected: bool  # the policy allows it

    @property
    def outcome(self) -> str:
        if self.status is None:
            return "unreachable"
        if self.status == 200:
            return "read"
        if self.status in (401, 403):
            return "denied"
        if self.status == 404:
            return "absent"
        return "error"

    @property
    def leak(self) -> bool:
        return self.outcome == "read" and not self.expected

    @property
    def overblock(self) -> bool:
        return self.outcome == "denied" and self.expected

    def as_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "sensitivity": self.sensitivity,
            "role": self.role,
            "status": self.status,
            "policy": "allow" if self.expected else "deny",
            "outcome": self.outcome,
        }


def probe_matrix(
    live: Live,
    reference: dict[str, Any],
    served: dict[str, Any],
    *,
    interval: float,
    user_agent: str,
) -> list[Cell]:
    pacer = Pacer(interval)
    cells = []
    for layer, sensitivity in layers(reference, served).items():
        for role in roles(reference):
            pacer.wait()
            answer = probe(
                live,
                f"/api/v1/layers/{layer}",
                role=None if role == ANONYMOUS else role,
                user_agent=user_agent,
            )
            cells.append(
                Cell(layer, sensitivity, role, answer.status, allowed(reference, role, sensitivity))
            )
    return cells


def listing(
    live: Live, reference: dict[str, Any], *, interval: float, user_agent: str
) -> dict[str, list[str] | None]:
    """role -> layer ids /api/v1/layers lists for it (None: no usable answer)."""
    pacer = Pacer(interval)
    listed: dict[str, list[str] | None] = {}
    for role in roles(reference):
        pacer.wait()
        answer = probe(
            live, "/api/v1/layers", role=None if role == ANONYMOUS else role, user_agent=user_agent
        )
        body = answer.json() if answer.status == 200 else None
        items = body.get("layers") if isinstance(body, dict) else None
        listed[role] = (
            sorted(str(i.get("id")) for i in items if isinstance(i, dict))
            if isinstance(items, list)
            else None
        )
    return listed


def matrix_findings(cells: list[Cell]) -> list[Finding]:
    findings = []
    for cell in cells:
        if cell.leak:
            findings.append(
                Finding(
                    "API_AUTHZ_LEAK",
                    cell.layer,
                    field=f"/roles/{cell.role}",
                    message=(
                        f"{cell.sensitivity} layer readable by {cell.role}; the policy denies it"
                    ),
                )
            )
        elif cell.overblock:
            findings.append(
                Finding(
                    "API_AUTHZ_OVERBLOCK",
                    cell.layer,
                    field=f"/roles/{cell.role}",
                    message=f"{cell.sensitivity} layer denied to {cell.role}; the policy allows it",
                )
            )
        elif cell.outcome in ("error", "unreachable"):
            findings.append(
                Finding(
                    "API_AUTHZ_UNVERIFIED",
                    cell.layer,
                    field=f"/roles/{cell.role}",
                    severity="hold",
                    message=f"no usable answer ({cell.status or 'unreachable'}): cannot judge",
                )
            )
    return findings


def listing_findings(
    listed: dict[str, list[str] | None], reference: dict[str, Any], served: dict[str, Any]
) -> list[Finding]:
    sensitivity = layers(reference, served)
    findings = []
    for role, ids in listed.items():
        for layer in ids or []:
            level = sensitivity.get(layer, "restricted")
            if not allowed(reference, role, level):
                findings.append(
                    Finding(
                        "API_AUTHZ_LISTING_LEAK",
                        layer,
                        field=f"/roles/{role}",
                        message=f"{level} layer listed to {role} by /api/v1/layers",
                    )
                )
    return findings


# -- the access log: did real clients already read restricted layers? ---------------------


def log_reads(
    lines: list[LogLine], reference: dict[str, Any], served: dict[str, Any]
) -> dict[tuple[str, str], list[LogLine]]:
    """(layer, role) -> 200 answers on a layer the logged role may not read (own probes
    excluded). The log's user field is the role the server resolved, or '-' (no token)."""
    sensitivity = layers(reference, served)
    found: dict[tuple[str, str], list[LogLine]] = {}
    for line in lines:
        match = _LAYER_ROUTE.fullmatch(line.route)
        if line.own or line.status != 200 or not match:
            continue
        layer = match.group(1)
        role = ANONYMOUS if line.user == "-" else line.user
        if layer in sensitivity and not allowed(reference, role, sensitivity[layer]):
            found.setdefault((layer, role), []).append(line)
    return dict(sorted(found.items()))


def log_findings(reads: dict[tuple[str, str], list[LogLine]]) -> list[Finding]:
    return [
        Finding(
            "API_AUTHZ_LOG_LEAK",
            layer,
            field=f"/roles/{role}",
            message="the access log shows this layer served (200) to a role the policy denies",
        )
        for layer, role in reads
    ]


def log_table(reads: dict[tuple[str, str], list[LogLine]]) -> list[dict[str, Any]]:
    def stamp(value: datetime) -> str:
        return value.isoformat()

    return [
        {
            "layer": layer,
            "role": role,
            "reads": len(hits),
            "clients": sorted({h.client for h in hits}),
            "first": stamp(hits[0].time),
            "last": stamp(hits[-1].time),
        }
        for (layer, role), hits in reads.items()
    ]


# -- role enforcement (live/state/authz.json) -----------------------------------------------


def enforcement(live: Live) -> tuple[bool, list[Finding]]:
    """Whether the running API enforces roles (the server's default is True)."""
    authz, problems = state(live, "authz.json", {"enforce_roles": True})
    return authz.get("enforce_roles", True) is not False, problems


def enforcement_findings(enforced: bool) -> list[Finding]:
    if enforced:
        return []
    return [
        Finding(
            "API_AUTHZ_ENFORCEMENT_OFF",
            "authz.json",
            field="/enforce_roles",
            message="role enforcement is switched off in the running system's state",
        )
    ]


def set_enforcement(live: Live, enforce: bool) -> dict[str, Any]:
    """Write enforce_roles into live/state/authz.json, keeping its other keys. Idempotent."""
    authz, problems = state(live, "authz.json", {"enforce_roles": True})
    if problems:
        raise RuntimeError(problems[0].message)
    previous = authz.get("enforce_roles", True) is not False
    if previous != enforce or "enforce_roles" not in authz:
        live.write_state("authz.json", {**authz, "enforce_roles": enforce})
    return {"enforce_roles": enforce, "previous": previous, "changed": previous != enforce}


@undoable("api.set_role_enforcement")
def _undo_enforcement(target: Target, enforce: bool) -> dict[str, Any]:
    return set_enforcement(Live.from_target(target), enforce)
