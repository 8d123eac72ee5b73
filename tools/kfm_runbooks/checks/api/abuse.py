"""RBK-api-rate-limit-abuse: which clients flood the API, and are they stopped?

From the access log the target names (`api.access_log`; the client is the address the
server logged): each client's request rate over the window against the per-client policy
(`api.rate_limit: {per_second, burst}`, inline or a policy file — without it nothing is
judged), its share of 429s, user agents and paths. A client far above the policy is
abusive. Containment blocks it through the target's admin command (`block_client`), or
records the exact block for a human (firewall / WAF / gateway) when the target names no
admin command; loopback and unparseable addresses are never blocked. Verification watches
fresh traffic: an abusive client still served or rate-limited (not blocked) fails.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...errors import TargetError
from ...target import Target
from .. import Finding, undoable
from ..common.service import Service
from .access_log import LogLine, per_second

RUNBOOK = "RBK-api-rate-limit-abuse"


def policy(value: Any) -> tuple[float, float] | None:
    """(requests per second, burst) of `api.rate_limit` (a `rate_limit:` key inside a
    policy file is accepted too); None when it names no usable positive rate."""
    if isinstance(value, dict) and isinstance(value.get("rate_limit"), dict):
        value = value["rate_limit"]
    if not isinstance(value, dict):
        return None
    try:
        rate = float(value["per_second"])
        burst = float(value.get("burst", rate))
    except (KeyError, TypeError, ValueError):
        return None
    return (rate, burst) if rate > 0 and burst >= 0 else None


def policy_problems(value: Any, limits: tuple[float, float] | None) -> list[Finding]:
    if value is None or limits is not None:
        return []
    return [
        Finding(
            "API_REFERENCE_UNREADABLE",
            "api.rate_limit",
            severity="hold",
            message="needs per_second (> 0) and burst (requests per client)",
        )
    ]


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


# -- blocking, through the target's admin command ------------------------------------------


def blocked(svc: Service) -> tuple[set[str], str]:
    """(clients the admin command reports blocked, how it was known); an empty set when
    the target names no admin command (nothing is assumed blocked)."""
    if not svc.section("admin").get("command"):
        return set(), "no admin command: unknown"
    try:
        answer = svc.admin("blocked_clients", {})
    except TargetError as exc:
        return set(), str(exc).splitlines()[0][:160]
    clients = answer.get("clients", [])
    return ({str(c) for c in clients} if isinstance(clients, list) else set()), "admin command"


def block(svc: Service, client: str) -> dict[str, Any]:
    """Block a client through the admin command. Refuses loopback / malformed."""
    if not blockable(client):
        raise ValueError(f"refusing to block {client!r}: loopback or not an IP address")
    return svc.admin("block_client", {"client": client})


def unblock(svc: Service, client: str) -> dict[str, Any]:
    """Undo of block. Safe to run twice."""
    return svc.admin("unblock_client", {"client": client})


def manual_instruction(client: str, agents: tuple[str, ...]) -> str:
    return (
        f"block {client} at the edge (firewall, WAF or API gateway deny rule; e.g. "
        f"`nft add rule inet filter input ip saddr {client} drop`), user agent "
        f"{', '.join(agents) or '-'}; then re-run this runbook to verify"
    )


@undoable("api.unblock_client")
def _undo_block(target: Target, client: str) -> dict[str, Any]:
    return unblock(Service.from_target(target), client)


# -- verification: fresh traffic ---------------------------------------------------------------


def still_abusive(
    lines: list[LogLine], seconds: float, per_second: float, factor: float
) -> list[ClientStats]:
    """Clients whose requests that were NOT blocked (403) exceed the limit in the fresh window."""
    return [
        s for s in client_stats(lines) if s.not_blocked / max(1.0, seconds) > factor * per_second
    ]
