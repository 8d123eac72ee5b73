"""RBK-api-5xx-spike: how many requests fail, where, since when, and which rollout did it.

Evidence comes from three places, all named by the target: fresh probes of the API's
public GET endpoints (`api.endpoints`; without them, the GET routes real clients used in
the access-log window), the access log (`api.access_log`: all traffic, bucketed per second
for the error rate over time) and any Prometheus request counter the target maps
(`api.metrics`). The suspect is a feature flag on that the intended flags (`api.flags`, a
mapping or a KFM policy file) have off: a rollout. The running flags are read from the
admin flags endpoint (`admin.flags_url`) or the admin command (`get_flags`); containment
switches a rollout off through `svc.admin("set_flags", ...)`, or hands it to a human
when the target names no admin interface.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...errors import TargetError
from ...target import Target
from .. import Finding, undoable
from ..common.service import Service
from .access_log import LogLine, per_second
from .base import Pacer, Probe, agent, probe

RUNBOOK = "RBK-api-5xx-spike"
MAX_LOG_ENDPOINTS = 10  # routes taken from the access log when the target lists none
_FLAG = re.compile(r"[a-z][a-z0-9_]{0,63}")


def endpoints(svc: Service, lines: list[LogLine]) -> tuple[list[str], str]:
    """(paths to probe, where they come from): `api.endpoints`, else the GET paths real
    clients were answered (2xx or 5xx) in the log window, most used first."""
    named = svc.section("api").get("endpoints")
    if isinstance(named, list) and named:
        paths = [p for p in named if isinstance(p, str) and p.startswith("/")]
        return list(dict.fromkeys(paths)), "api.endpoints"
    used = Counter(
        line.path
        for line in lines
        if not line.own
        and line.method == "GET"
        and (200 <= line.status < 300 or line.status >= 500)
        and line.path.startswith("/")
    )
    paths = [path for path, _ in used.most_common(MAX_LOG_ENDPOINTS)]
    return sorted(paths), "access log" if paths else "none"


def probe_endpoints(
    svc: Service,
    paths: list[str],
    *,
    rounds: int,
    interval: float,
    user_agent: str,
    role: str | None,
) -> list[Probe]:
    """`rounds` round-robin passes over `paths`, paced at `interval` seconds (under the
    per-client rate limit, so no probe is answered 429). Round-robin over a number of
    endpoints that shares no factor with a periodic failure lets it hit every endpoint."""
    pacer = Pacer(interval)
    results = []
    for _ in range(max(1, rounds)):
        for path in paths:
            pacer.wait()
            results.append(probe(svc, path, role=role, user_agent=user_agent))
    return results


@dataclass(frozen=True)
class EndpointStats:
    path: str
    requests: int
    errors: int  # 5xx
    unreachable: int

    @property
    def rate(self) -> float:
        reached = self.requests - self.unreachable
        return self.errors / reached if reached else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.path,
            "requests": self.requests,
            "5xx": self.errors,
            "unreachable": self.unreachable,
            "error_rate": round(self.rate, 3),
        }


def by_endpoint(probes: list[Probe]) -> list[EndpointStats]:
    paths = sorted({p.path for p in probes})
    return [
        EndpointStats(
            path,
            sum(1 for p in probes if p.path == path),
            sum(1 for p in probes if p.path == path and p.server_error),
            sum(1 for p in probes if p.path == path and not p.reached),
        )
        for path in paths
    ]


def error_rate(probes: list[Probe]) -> float:
    reached = [p for p in probes if p.reached]
    return sum(p.server_error for p in reached) / len(reached) if reached else 0.0


def probe_findings(probes: list[Probe], threshold: float) -> list[Finding]:
    """Deterministic facts: the spike (threshold crossed) and every endpoint that failed."""
    findings = []
    if any(p.reached for p in probes) and error_rate(probes) > threshold:
        findings.append(
            Finding(
                "API_5XX_SPIKE",
                "api",
                message=f"fresh probes fail with 5xx above the {threshold:.0%} threshold",
            )
        )
    for stats in by_endpoint(probes):
        if stats.errors:
            findings.append(
                Finding(
                    "API_ENDPOINT_5XX",
                    stats.path,
                    message="answered a fresh probe with a server error (5xx)",
                )
            )
    return findings


# -- access log ---------------------------------------------------------------------------


def log_findings(lines: list[LogLine]) -> list[Finding]:
    """Every route that served a 5xx in the log window (to anyone: the server's answers)."""
    routes = sorted({line.route for line in lines if line.status >= 500})
    return [
        Finding("API_LOG_5XX", route, message="served 5xx in the access-log window")
        for route in routes
    ]


def error_series(lines: list[LogLine]) -> list[tuple[datetime, int, int]]:
    """(second, requests, of them 5xx) for every second of the window with traffic."""
    return [
        (second, len(group), sum(1 for line in group if line.status >= 500))
        for second, group in per_second(lines).items()
    ]


def log_error_rate(lines: list[LogLine]) -> float:
    return sum(1 for line in lines if line.status >= 500) / len(lines) if lines else 0.0


def onset(lines: list[LogLine], threshold: float) -> datetime | None:
    """The first second whose 5xx share crossed the threshold (since when)."""
    for second, total, errors in error_series(lines):
        if total and errors / total > threshold:
            return second
    return None


def log_table(lines: list[LogLine]) -> list[dict[str, Any]]:
    rows = []
    for route in sorted({line.route for line in lines}):
        hits = [line for line in lines if line.route == route]
        errors = [line for line in hits if line.status >= 500]
        rows.append(
            {
                "route": route,
                "requests": len(hits),
                "5xx": len(errors),
                "first_5xx": errors[0].time.isoformat() if errors else None,
                "last_5xx": errors[-1].time.isoformat() if errors else None,
                "clients": len({line.client for line in errors}),
            }
        )
    return rows


# -- feature flags ------------------------------------------------------------------------------


def intended_flags(value: Any) -> dict[str, bool]:
    """The boolean flags of the reference (`api.flags`; a `flags:` key inside a policy
    file is accepted too)."""
    if isinstance(value, dict) and isinstance(value.get("flags"), dict):
        value = value["flags"]
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, bool) and _FLAG.fullmatch(str(k))}


def current_flags(svc: Service, user_agent: str) -> tuple[dict[str, Any] | None, str]:
    """(the running flags, where they were read) — from GET admin.flags_url (admin role),
    else the admin command's `get_flags`; (None, why) when neither can tell."""
    section = svc.section("admin")
    if section.get("flags_url"):
        answer = probe(
            svc, str(section["flags_url"]), role=str(section.get("role", "admin")),
            user_agent=user_agent,
        )  # fmt: skip
        value = answer.json() if answer.status == 200 else None
        if isinstance(value, dict):
            return value, "admin.flags_url"
        return None, f"admin.flags_url answered {answer.status or answer.error}"
    if section.get("command"):
        try:
            return svc.admin("get_flags", {}), "admin.command get_flags"
        except TargetError as exc:
            return None, str(exc).splitlines()[0][:160]
    return None, "the target names no admin interface (admin.flags_url / admin.command)"


def rollouts(current: dict[str, Any], intended: dict[str, bool]) -> list[str]:
    """Flags on now that the reference has off: features rolled out since the reference."""
    return sorted(
        name
        for name, value in current.items()
        if value is True and intended.get(name) is False and _FLAG.fullmatch(name)
    )


def flag_findings(current: dict[str, Any], intended: dict[str, bool]) -> list[Finding]:
    suspects = rollouts(current, intended)
    findings = [
        Finding(
            "API_FLAG_ROLLOUT",
            name,
            field="/flags",
            message="feature flag is on; the intended flags have it off (suspect rollout)",
        )
        for name in suspects
    ]
    for name in sorted(set(current) & set(intended)):
        if current[name] != intended[name] and name not in suspects:
            findings.append(
                Finding(
                    "API_FLAG_DRIFT",
                    name,
                    field="/flags",
                    severity="info",
                    message="differs from the intended flags but is not a rollout: out of scope",
                )
            )
    return findings


def set_flag(svc: Service, flag: str, value: bool, user_agent: str) -> dict[str, Any]:
    """Switch one flag through the target's admin interface. Idempotent."""
    if not _FLAG.fullmatch(flag):
        raise ValueError(f"{flag!r} is not a flag name")
    before, _ = current_flags(svc, user_agent)
    after = svc.admin("set_flags", {flag: value})
    return {
        "flag": flag,
        "previous": (before or {}).get(flag),
        "value": after.get(flag, value) if isinstance(after, dict) else value,
    }


def manual_instruction(flag: str) -> str:
    return (
        f"switch the feature flag {flag!r} off where the API's flags are managed (its admin "
        "console, config repository or deploy), then re-run this runbook to verify"
    )


@undoable("api.set_flag")
def _undo_set_flag(target: Target, flag: str, value: bool) -> dict[str, Any]:
    return set_flag(Service.from_target(target), flag, value, agent("kfm-runbook rollback"))
