"""RBK-api-5xx-spike: how many requests fail, where, since when, and which rollout did it.

Evidence comes from three places: fresh probes of every public endpoint (the runbook's own
requests, paced under the rate limit and rotated so a periodic failure cannot hide behind
one endpoint), the access log (all traffic, bucketed per second for the error rate over
time) and the server's Prometheus counters (/metrics). The suspect is a feature flag
switched on that the reference (live/config.json) has off: a rollout. Containment switches
it back through the admin flags API; the undo switches it on again.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...target import Target
from .. import Finding, undoable
from ..live import Live
from .base import LogLine, Pacer, Probe, agent, per_second, probe, state

RUNBOOK = "RBK-api-5xx-spike"
METRIC_RE = re.compile(r'^kfm_http_requests_total\{path="([^"]*)",status="(\d{3})"\} (\d+)$')


def endpoints(reference: dict[str, Any]) -> list[str]:
    """The public read endpoints to probe, from the reference (no restricted layer)."""
    paths = ["/api/v1/catalog/items", "/api/v1/layers"]
    layers = [
        layer
        for layer in reference.get("layers", [])
        if isinstance(layer, dict) and layer.get("sensitivity") == "public"
    ]
    ids = [str(layer.get("id")) for layer in layers if _safe_id(layer.get("id"))]
    if ids:
        paths += [f"/api/v1/layers/{ids[0]}", f"/api/v1/layers/{ids[0]}/tiles/0/0/0"]
    paths += [
        f"/api/v1/layers/{layer['id']}/times"
        for layer in layers
        if layer.get("time") and _safe_id(layer.get("id"))
    ]
    paths += [
        f"/api/v1/stories/{story['id']}"
        for story in reference.get("stories", [])
        if isinstance(story, dict) and _safe_id(story.get("id"))
    ]
    return [*paths, "/api/v1/search"]


def _safe_id(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[a-z0-9-]{1,64}", value) is not None


def probe_endpoints(
    live: Live, paths: list[str], *, rounds: int, interval: float, user_agent: str
) -> list[Probe]:
    """`rounds` round-robin passes over `paths`, paced at `interval` seconds (under the
    per-client rate limit, so no probe is answered 429). Round-robin over a number of
    endpoints that shares no factor with a periodic failure lets it hit every endpoint."""
    pacer = Pacer(interval)
    results = []
    for _ in range(max(1, rounds)):
        for path in paths:
            pacer.wait()
            results.append(probe(live, path, role="public", user_agent=user_agent))
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


def api_lines(lines: list[LogLine]) -> list[LogLine]:
    return [line for line in lines if line.route.startswith("/api/")]


def log_findings(lines: list[LogLine]) -> list[Finding]:
    """Every /api route that served a 5xx in the log window (all clients)."""
    routes = sorted({line.route for line in api_lines(lines) if line.status >= 500})
    return [
        Finding("API_LOG_5XX", route, message="served 5xx in the access-log window")
        for route in routes
    ]


def error_series(lines: list[LogLine]) -> list[tuple[datetime, int, int]]:
    """(second, /api requests, of them 5xx) for every second of the window with traffic."""
    return [
        (second, len(group), sum(1 for line in group if line.status >= 500))
        for second, group in per_second(api_lines(lines)).items()
    ]


def onset(lines: list[LogLine], threshold: float) -> datetime | None:
    """The first second whose 5xx share crossed the threshold (since when)."""
    for second, total, errors in error_series(lines):
        if total and errors / total > threshold:
            return second
    return None


def log_table(lines: list[LogLine]) -> list[dict[str, Any]]:
    rows = []
    routes = sorted({line.route for line in api_lines(lines)})
    for route in routes:
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


# -- /metrics -------------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[tuple[str, int], int]:
    """kfm_http_requests_total{path,status} counters; other lines are ignored."""
    counters: dict[tuple[str, int], int] = {}
    for line in text.splitlines():
        match = METRIC_RE.match(line.strip())
        if match:
            counters[(match.group(1), int(match.group(2)))] = int(match.group(3))
    return counters


def metric_findings(counters: dict[tuple[str, int], int]) -> list[Finding]:
    paths = sorted({path for (path, status), n in counters.items() if status >= 500 and n})
    return [
        Finding(
            "API_METRICS_5XX",
            path,
            severity="info",
            message="the server's own counters show 5xx since it started",
        )
        for path in paths
    ]


def metric_totals(counters: dict[tuple[str, int], int]) -> dict[str, int]:
    total = Counter[str]()
    for (path, status), n in counters.items():
        if path.startswith("/api/"):
            total["requests"] += n
            total["5xx"] += n if status >= 500 else 0
    return {"requests": total["requests"], "5xx": total["5xx"]}


# -- feature flags ----------------------------------------------------------------------------


def current_flags(live: Live) -> tuple[dict[str, Any], list[Finding]]:
    return state(live, "flags.json", {})


def rollouts(current: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """Flags on now that the reference has off: features rolled out since the reference."""
    intended = reference.get("flags", {})
    if not isinstance(intended, dict):
        return []
    return sorted(
        name
        for name, value in current.items()
        if value is True and intended.get(name) is False and _safe_flag(name)
    )


def _safe_flag(name: str) -> bool:
    return re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name) is not None


def flag_findings(current: dict[str, Any], reference: dict[str, Any]) -> list[Finding]:
    findings = [
        Finding(
            "API_FLAG_ROLLOUT",
            name,
            field="/flags",
            message="feature flag is on; the reference has it off (suspect rollout)",
        )
        for name in rollouts(current, reference)
    ]
    intended = reference.get("flags", {}) if isinstance(reference.get("flags"), dict) else {}
    for name in sorted(set(current) & set(intended)):
        if current[name] != intended[name] and name not in rollouts(current, reference):
            findings.append(
                Finding(
                    "API_FLAG_DRIFT",
                    name,
                    field="/flags",
                    severity="info",
                    message="differs from the reference but is not a rollout: out of scope here",
                )
            )
    return findings


def set_flag(live: Live, flag: str, value: bool, user_agent: str) -> dict[str, Any]:
    """Switch one flag through the admin flags API (admin role). Idempotent."""
    if not _safe_flag(flag):
        raise ValueError(f"{flag!r} is not a flag name")
    before, _ = current_flags(live)
    answer = probe(
        live,
        "/admin/flags",
        method="POST",
        role="admin",
        body={flag: value},
        user_agent=user_agent,
    )
    if answer.status != 200:
        raise RuntimeError(f"POST /admin/flags answered {answer.status or answer.error}")
    after = answer.json() or {}
    return {"flag": flag, "previous": before.get(flag), "value": after.get(flag)}


@undoable("api.set_flag")
def _undo_set_flag(target: Target, flag: str, value: bool) -> dict[str, Any]:
    return set_flag(Live.from_target(target), flag, value, agent("kfm-runbook rollback"))
