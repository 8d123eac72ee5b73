"""A request counter from any Prometheus endpoint the target maps (`api.metrics`).

    api:
      metrics: {url: http://127.0.0.1:8080/metrics, requests_metric: http_requests_total,
                status_label: status, route_label: path}

Only the named counter is read (its `_total` suffix may be given or not); the status label
may hold a code (`500`) or a class (`5xx`). Counters run since the server started: the
runbooks compare two scrapes for what happened in between. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import TargetError
from .. import Finding
from ..common.service import Service

_SAMPLE = re.compile(
    r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\d+)?$"
)
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')

Counters = dict[tuple[str, str], float]  # (route, status) -> requests


@dataclass(frozen=True)
class MetricsMap:
    url: str
    metric: str
    status_label: str = "status"
    route_label: str = "path"

    @classmethod
    def from_service(cls, svc: Service) -> MetricsMap | None:
        entry = svc.section("api").get("metrics")
        if not isinstance(entry, dict):
            return None
        url, metric = entry.get("url"), entry.get("requests_metric")
        if not isinstance(url, str) or not url or not isinstance(metric, str) or not metric:
            return None
        return cls(
            url,
            metric,
            str(entry.get("status_label", "status")),
            str(entry.get("route_label", "path")),
        )


def parse(text: str, mapping: MetricsMap) -> Counters:
    """The mapped counter's samples, summed per (route, status); other lines ignored."""
    names = {mapping.metric, mapping.metric.removesuffix("_total") + "_total"}
    counters: dict[tuple[str, str], float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match or match.group("name") not in names:
            continue
        labels = dict(_LABEL.findall(match.group("labels") or ""))
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        status = labels.get(mapping.status_label, "")
        key = (labels.get(mapping.route_label, ""), status)
        counters[key] = counters.get(key, 0.0) + value
    return counters


def is_5xx(status: str) -> bool:
    return status[:1] == "5" and (status[1:].isdigit() or status[1:].lower() == "xx")


def scrape(svc: Service, mapping: MetricsMap, user_agent: str) -> Counters | None:
    """One scrape; None when the endpoint cannot be read."""
    try:
        answer = svc.request(mapping.url, headers={"User-Agent": user_agent}, timeout=15)
    except (OSError, ValueError, TargetError):  # unreachable, not allowed: unreadable
        return None
    if answer.status != 200:
        return None
    return parse(answer.body.decode("utf-8", errors="replace"), mapping)


def totals(counters: Counters) -> dict[str, float]:
    return {
        "requests": sum(counters.values()),
        "5xx": sum(n for (_, status), n in counters.items() if is_5xx(status)),
    }


def delta(before: Counters, after: Counters) -> Counters:
    """What happened between two scrapes (a counter reset counts from zero)."""
    out: Counters = {}
    for key, value in after.items():
        previous = before.get(key, 0.0)
        out[key] = value - previous if value >= previous else value
    return out


def findings(counters: Counters) -> list[Finding]:
    routes = sorted({route for (route, status), n in counters.items() if is_5xx(status) and n})
    return [
        Finding(
            "API_METRICS_5XX",
            route or "(no route label)",
            severity="info",
            message="the server's own counters show 5xx since it started",
        )
        for route in routes
    ]
