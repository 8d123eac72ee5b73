"""RBK-api-auth-regression: does the running API still enforce its access policy?

The policy is the target's access matrix (`api.access_matrix`, inline or a KFM policy
file), never the system's own state:

    roles:                        # role -> sensitivity classes it may read
      anonymous: [public]         # (anonymous: requests without a token)
      public: [public]
      analyst: [public, restricted]
    resources:                    # path -> class; each is requested with every role
      /api/v1/layers/wells-precise: restricted
      /api/v1/layers/streams: public
    listing:                      # optional: a listing endpoint, judged per role
      path: /api/v1/layers
      items: layers               # the list's key in the JSON answer
      resource: /api/v1/layers/{id}

Every resource is requested with every role the target names a token for (`api.roles`)
and with none; each answer is compared with the matrix. A resource answered 200 to a role
the matrix denies is a leak; a resource denied to a role it allows is an over-block. The
access log shows whether real clients already read resources their role may not (the
log's user field names the role, `-` is anonymous). Containment asks the target's admin
command to restore enforcement (`enforce_roles`), or records the exact restriction for a
human when the target names no admin interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...target import Target
from .. import Finding, undoable
from ..common.service import Service
from .access_log import LogLine
from .base import ANONYMOUS, Pacer, probe

RUNBOOK = "RBK-api-auth-regression"


@dataclass(frozen=True)
class Matrix:
    """The access policy: which classes each role may read, and the resources' classes."""

    roles: dict[str, frozenset[str]]
    resources: dict[str, str]
    listing: dict[str, str]

    @classmethod
    def parse(cls, value: Any) -> tuple[Matrix | None, list[Finding]]:
        if not isinstance(value, dict):
            return None, []
        roles_raw, resources_raw = value.get("roles"), value.get("resources")
        problems = []
        roles: dict[str, frozenset[str]] = {}
        if isinstance(roles_raw, dict):
            for role, classes in roles_raw.items():
                if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
                    roles[str(role)] = frozenset(classes)
        resources = {
            str(path): str(kind)
            for path, kind in (resources_raw.items() if isinstance(resources_raw, dict) else [])
            if isinstance(path, str) and path.startswith("/") and isinstance(kind, str)
        }
        if not roles or not resources:
            problems.append(
                Finding(
                    "API_REFERENCE_UNREADABLE",
                    "api.access_matrix",
                    severity="hold",
                    message="needs roles: {role: [classes]} and resources: {path: class}",
                )
            )
            return None, problems
        listing_raw = value.get("listing")
        listing: dict[str, str] = {}
        if isinstance(listing_raw, dict) and all(
            isinstance(listing_raw.get(k), str) for k in ("path", "items", "resource")
        ):
            listing = {k: str(listing_raw[k]) for k in ("path", "items", "resource")}
        return cls(roles, dict(sorted(resources.items())), listing), problems

    def allowed(self, role: str, kind: str) -> bool | None:
        """What the matrix says; None when it does not name the role."""
        classes = self.roles.get(role)
        return None if classes is None else kind in classes

    def resource_of(self, route: str) -> str | None:
        """The resource a request path reads (itself or a sub-path of it, e.g. its tiles)."""
        for path in sorted(self.resources, key=len, reverse=True):
            if route == path or route.startswith(path.rstrip("/") + "/"):
                return path
        return None


def roles(svc: Service) -> list[str]:
    """anonymous first, then every role the target names, sorted."""
    return [ANONYMOUS, *sorted(r for r in svc.roles() if r != ANONYMOUS)]


def role_findings(svc: Service, matrix: Matrix) -> list[Finding]:
    return [
        Finding(
            "API_AUTHZ_ROLE_UNKNOWN",
            role,
            field="/roles",
            severity="hold",
            message="the target names this role but the access matrix does not: not judged",
        )
        for role in roles(svc)
        if role not in matrix.roles
    ]


@dataclass(frozen=True)
class Cell:
    resource: str
    sensitivity: str
    role: str
    status: int | None
    expected: bool  # the matrix allows it

    @property
    def outcome(self) -> str:
        if self.status is None:
            return "unreachable"
        if 200 <= self.status < 300:
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
            "resource": self.resource,
            "sensitivity": self.sensitivity,
            "role": self.role,
            "status": self.status,
            "policy": "allow" if self.expected else "deny",
            "outcome": self.outcome,
        }


def probe_matrix(svc: Service, matrix: Matrix, *, interval: float, user_agent: str) -> list[Cell]:
    pacer = Pacer(interval)
    cells = []
    for resource, kind in matrix.resources.items():
        for role in roles(svc):
            expected = matrix.allowed(role, kind)
            if expected is None:
                continue
            pacer.wait()
            answer = probe(svc, resource, role=role, user_agent=user_agent)
            cells.append(Cell(resource, kind, role, answer.status, expected))
    return cells


def listing(
    svc: Service, matrix: Matrix, *, interval: float, user_agent: str
) -> dict[str, list[str] | None]:
    """role -> resource paths the listing endpoint shows it (None: no usable answer)."""
    if not matrix.listing:
        return {}
    pacer = Pacer(interval)
    listed: dict[str, list[str] | None] = {}
    for role in roles(svc):
        if role not in matrix.roles:
            continue
        pacer.wait()
        answer = probe(svc, matrix.listing["path"], role=role, user_agent=user_agent)
        body = answer.json() if answer.status == 200 else None
        items = body.get(matrix.listing["items"]) if isinstance(body, dict) else None
        listed[role] = (
            sorted(
                matrix.listing["resource"].replace("{id}", str(i.get("id")))
                for i in items
                if isinstance(i, dict) and i.get("id") is not None
            )
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
                    cell.resource,
                    field=f"/roles/{cell.role}",
                    message=(
                        f"{cell.sensitivity} resource readable by {cell.role}; the policy denies it"
                    ),
                )
            )
        elif cell.overblock:
            findings.append(
                Finding(
                    "API_AUTHZ_OVERBLOCK",
                    cell.resource,
                    field=f"/roles/{cell.role}",
                    message=(
                        f"{cell.sensitivity} resource denied to {cell.role}; the policy allows it"
                    ),
                )
            )
        elif cell.outcome in ("error", "unreachable", "absent"):
            findings.append(
                Finding(
                    "API_AUTHZ_UNVERIFIED",
                    cell.resource,
                    field=f"/roles/{cell.role}",
                    severity="hold",
                    message=f"no usable answer ({cell.status or 'unreachable'}): cannot judge",
                )
            )
    return findings


def listing_findings(listed: dict[str, list[str] | None], matrix: Matrix) -> list[Finding]:
    findings = []
    for role, paths in listed.items():
        for path in paths or []:
            kind = matrix.resources.get(path)
            if kind is None:
                findings.append(
                    Finding(
                        "API_AUTHZ_UNCLASSIFIED",
                        path,
                        field=f"/roles/{role}",
                        severity="hold",
                        message="listed by the API but not classified in the access matrix",
                    )
                )
            elif not matrix.allowed(role, kind):
                findings.append(
                    Finding(
                        "API_AUTHZ_LISTING_LEAK",
                        path,
                        field=f"/roles/{role}",
                        message=f"{kind} resource listed to {role} by {matrix.listing['path']}",
                    )
                )
    return findings


# -- the access log: did real clients already read what their role may not? ---------------


def log_role(line: LogLine, matrix: Matrix) -> str | None:
    if line.user == "-":
        return ANONYMOUS
    return line.user if line.user in matrix.roles else None


def log_reads(lines: list[LogLine], matrix: Matrix) -> dict[tuple[str, str], list[LogLine]]:
    """(resource, role) -> 2xx answers to a role the matrix denies (own probes excluded)."""
    found: dict[tuple[str, str], list[LogLine]] = {}
    for line in lines:
        if line.own or not 200 <= line.status < 300:
            continue
        resource, role = matrix.resource_of(line.route), log_role(line, matrix)
        if resource is None or role is None:
            continue
        if matrix.allowed(role, matrix.resources[resource]) is False:
            found.setdefault((resource, role), []).append(line)
    return dict(sorted(found.items()))


def log_findings(reads: dict[tuple[str, str], list[LogLine]]) -> list[Finding]:
    return [
        Finding(
            "API_AUTHZ_LOG_LEAK",
            resource,
            field=f"/roles/{role}",
            message="the access log shows this resource served to a role the policy denies",
        )
        for resource, role in reads
    ]


def log_table(reads: dict[tuple[str, str], list[LogLine]]) -> list[dict[str, Any]]:
    def stamp(value: datetime) -> str:
        return value.isoformat()

    return [
        {
            "resource": resource,
            "role": role,
            "reads": len(hits),
            "clients": sorted({h.client for h in hits}),
            "first": stamp(hits[0].time),
            "last": stamp(hits[-1].time),
        }
        for (resource, role), hits in reads.items()
    ]


# -- containment ----------------------------------------------------------------------------


def restriction(cells: list[Cell], listing_leaks: list[Finding]) -> str:
    """The exact restriction a human must restore, from what leaked."""
    denied = sorted({f"{c.role} → 403 on {c.resource}" for c in cells if c.leak})
    hidden = sorted(
        {f"{f.field.rsplit('/', 1)[-1]} must not be listed {f.subject}" for f in listing_leaks}
    )
    return (
        "restore the API's authorization (its auth middleware / gateway policy / deploy "
        f"config) so that: {'; '.join(denied + hidden) or 'the access matrix holds'}; "
        "then re-run this runbook to verify"
    )


def set_enforcement(svc: Service, enforce: bool) -> dict[str, Any]:
    """Ask the target's admin command to switch role enforcement (op `enforce_roles`)."""
    return svc.admin("enforce_roles", {"enforce": enforce})


@undoable("api.set_role_enforcement")
def _undo_enforcement(target: Target, enforce: bool) -> dict[str, Any]:
    return set_enforcement(Service.from_target(target), enforce)
