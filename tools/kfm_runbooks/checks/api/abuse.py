"""RBK-api-rate-limit-abuse: which clients flood the API, and are they stopped?

From the access log (client = the first X-Forwarded-For address, as the server logs it):
each client's request rate over the window against the policy (`rate_limit.per_second`
in live/config.json), its share of 429s, user agents and paths. A client far above the
policy is abusive. Containment adds it to live/state/blocklist.json (the server then
answers 403); loopback and unparseable addresses are never blocked. Verification watches
fresh traffic: an abusive client still served or rate-limited (not blocked) fails.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...target import Target
from .. import Finding, undoable
from ..live import Live
from .base import LogLine, per_second, state

RUNBOOK = "RBK-api-rate-limit-abuse"


def policy(reference: dict[str, Any]) -> tuple[float, float]:
    """(requests per second, burst) of the rate-limit policy (the server's defaults)."""
    limits = reference.get("rate_limit", {})
    limits = limits if isinstance(limits, dict) else {}
    try:
        return float(limits.get("per_second", 20)), float(limits.get("burst", 40))
    except (TypeError, ValueError):
        return 20.0, 40.0


@dataclass(frozen=True)
class ClientStats:
    client: str
    requests: int
    span_seconds: float
    statuses: dict[int, int]
    agents: tuple[str, ...]
    paths: tuple[str, ...]

    @property
    def rate(self) -> float:
        return self.requests / self.span_seconds

    @property
    def share_429(self) -> float:
        return self.statuses.get(429, 0) / self.requests if self.requests else 0.0

    @property
    def not_blocked(self) -> int:
        """Requests that still reached the service (anything but 403 from the block list)."""
        return self.requests - self.statuses.get(403, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "requests": self.requests,
            "req_per_s": round(self.rate, 1),
            "share_429": round(self.share_429, 3),
            "blocked_403": self.statuses.get(403, 0),
            "agents": list(self.agents),
            "paths": list(self.paths),
        }


def client_stats(lines: list[LogLine]) -> list[ClientStats]:
    """Per client (own probes excluded), busiest first."""
    groups: dict[str, list[LogLine]] = {}
    for line in lines:
        if not line.own:
            groups.setdefault(line.client, []).append(line)
    stats = []
    for client, hits in groups.items():
        first, last = min(h.time for h in hits), max(h.time for h in hits)
        stats.append(
            ClientStats(
                client=client,
                requests=len(hits),
                span_seconds=max(1.0, (last - first).total_seconds() + 1),
                statuses=dict(sorted(Counter(h.status for h in hits).items())),
                agents=tuple(a for a, _ in Counter(h.agent for h in hits).most_common(3)),
                paths=tuple(p for p, _ in Counter(h.route for h in hits).most_common(3)),
            )
        )
    return sorted(stats, key=lambda s: (-s.requests, s.client))


def abusive(
    stats: list[ClientStats], per_second: float, burst: float, factor: float
) -> list[ClientStats]:
    """Clients whose rate is more than `factor` times the policy (and beyond one burst)."""
    return [s for s in stats if s.requests > burst and s.rate > factor * per_second]


def blockable(client: str) -> bool:
    """A real, non-loopback, non-private-to-us address (never block ourselves)."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified)


def findings(offenders: list[ClientStats], blocked: set[str], factor: float) -> list[Finding]:
    result = []
    for client in offenders:
        agents = ", ".join(client.agents) or "-"
        paths = ", ".join(client.paths) or "-"
        if client.client in blocked:
            result.append(
                Finding(
                    "API_ABUSIVE_CLIENT_BLOCKED",
                    client.client,
                    severity="info",
                    message=f"flooded the API (agent {agents}); already on the block list",
                )
            )
            continue
        result.append(
            Finding(
                "API_ABUSIVE_CLIENT",
                client.client,
                field="/rate",
                message=(
                    f"requests more than {factor:g}x the per-client policy; "
                    f"agent {agents}; paths {paths}"
                ),
            )
        )
        if not blockable(client.client):
            result.append(
                Finding(
                    "API_ABUSE_UNBLOCKABLE",
                    client.client,
                    severity="hold",
                    message="loopback or malformed address: never blocked automatically",
                )
            )
    return result


def series(lines: list[LogLine], clients: list[str]) -> dict[str, list[tuple[datetime, int]]]:
    """Requests per second of each client over the window (zeros where it was silent)."""
    buckets = per_second(line for line in lines if not line.own)
    return {
        client: [
            (second, sum(1 for h in hits if h.client == client)) for second, hits in buckets.items()
        ]
        for client in clients
    }


# -- the block list (live/state/blocklist.json) ------------------------------------------------


def blocked(live: Live) -> tuple[set[str], list[Finding]]:
    value, problems = state(live, "blocklist.json", {"clients": []})
    clients = value.get("clients", [])
    return {str(c) for c in clients} if isinstance(clients, list) else set(), problems


def _write(live: Live, value: dict[str, Any], clients: set[str]) -> None:
    live.write_state("blocklist.json", {**value, "clients": sorted(clients)})


def block(live: Live, client: str) -> dict[str, Any]:
    """Add a client to the block list. Idempotent; refuses loopback / malformed."""
    if not blockable(client):
        raise ValueError(f"refusing to block {client!r}: loopback or not an IP address")
    value, problems = state(live, "blocklist.json", {"clients": []})
    if problems:
        raise RuntimeError(problems[0].message)
    current, _ = blocked(live)
    if client in current:
        return {"client": client, "blocked": True, "changed": False}
    _write(live, value, current | {client})
    return {"client": client, "blocked": True, "changed": True}


def unblock(live: Live, client: str) -> dict[str, Any]:
    """Undo of block. Safe to run twice."""
    value, problems = state(live, "blocklist.json", {"clients": []})
    if problems:
        raise RuntimeError(problems[0].message)
    current, _ = blocked(live)
    if client not in current:
        return {"client": client, "blocked": False, "changed": False}
    _write(live, value, current - {client})
    return {"client": client, "blocked": False, "changed": True}


@undoable("api.unblock_client")
def _undo_block(target: Target, client: str) -> dict[str, Any]:
    return unblock(Live.from_target(target), client)


# -- verification: fresh traffic ---------------------------------------------------------------


def still_abusive(
    lines: list[LogLine], seconds: float, per_second: float, factor: float
) -> list[ClientStats]:
    """Clients whose requests that were NOT blocked (403) exceed the limit in the fresh window."""
    return [
        s for s in client_stats(lines) if s.not_blocked / max(1.0, seconds) > factor * per_second
    ]
