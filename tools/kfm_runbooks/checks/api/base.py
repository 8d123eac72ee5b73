"""Shared pieces of the api runbooks: self-identifying probes, the access log, references.

Everything comes from the target through `Service` (README, "Pointing runbooks at
production" → api): the API's URL and roles, its access log (`api.access_log`), and the
references a runbook judges against (`api.flags`, `api.access_matrix`, `api.rate_limit`),
each given inline or as a path to a JSON/YAML file (KFM's own policy files). A reference
the target does not name is a HOLD finding naming the key: never a guess, never a PASS.

Every request a runbook sends carries the User-Agent `kfm-runbook/1.0 (<runbook id>)`, so
the access log tells its probes apart from users' traffic. Light imports only (the kernel).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ...errors import TargetError
from .. import Finding
from ..common import json as strict_json
from ..common.files import FileProblemError, read_regular
from ..common.service import Service
from .access_log import AGENT_PREFIX, FORMATS, AccessLog

MAX_REFERENCE_BYTES = 4 << 20  # a policy file the target names: refused unread beyond
ANONYMOUS = "anonymous"


def agent(runbook_id: str) -> str:
    """The User-Agent of a runbook's own probes."""
    return f"{AGENT_PREFIX}1.0 ({runbook_id})"


@dataclass(frozen=True)
class Probe:
    """One request a runbook made: status None means the API could not be reached."""

    path: str
    role: str | None
    status: int | None
    seconds: float
    error: str = ""
    body: bytes = b""

    @property
    def reached(self) -> bool:
        return self.status is not None

    @property
    def server_error(self) -> bool:
        return self.status is not None and self.status >= 500

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


def probe(
    svc: Service,
    path: str,
    *,
    user_agent: str,
    role: str | None = None,
    method: str = "GET",
    body: Any = None,
    timeout: float = 15,
) -> Probe:
    """One request through the target's API; unreachable (or undescribed) is a result."""
    try:
        response = svc.request(
            path,
            method=method,
            role=None if role == ANONYMOUS else role,
            body=body,
            headers={"User-Agent": user_agent},
            timeout=timeout,
        )
    except TargetError as exc:  # no api.url, a token not set, a host not allowed
        return Probe(path, role, None, 0.0, str(exc).splitlines()[0][:200])
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Probe(path, role, None, 0.0, type(exc).__name__)
    return Probe(path, role, response.status, response.seconds, body=response.body)


def health_path(svc: Service) -> str:
    value = svc.section("api").get("health_path", "/health")
    return str(value) if isinstance(value, str) and value.startswith("/") else "/health"


def probe_role(svc: Service) -> str | None:
    """The role ordinary probes use: `public` when the target names it, else none."""
    return "public" if "public" in svc.roles() else None


class Pacer:
    """Keeps a runbook's own probes under the API's per-client rate limit."""

    def __init__(self, interval: float) -> None:
        self.interval = max(0.0, interval)
        self._last: float | None = None

    def wait(self) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            time.sleep(self.interval - (now - self._last))
        self._last = time.monotonic()


def reachability(probes: Iterable[Probe]) -> list[Finding]:
    """API_UNREACHABLE (hold) when any probe could not reach the API."""
    failed = sorted({p.error or "no answer" for p in probes if not p.reached})
    if not failed:
        return []
    return [
        Finding(
            "API_UNREACHABLE",
            "api",
            severity="hold",
            message=f"the API did not answer ({'; '.join(failed)}): nothing can be verified",
        )
    ]


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# -- the access log the target names ------------------------------------------------------


def access_log(svc: Service, severity: str = "hold") -> tuple[AccessLog | None, list[Finding]]:
    """`api.access_log: {path, format}`; absent or unusable is a finding (`severity`)."""
    entry = svc.section("api").get("access_log")
    if entry is None:
        return None, [
            Finding(
                "API_ACCESS_LOG_MISSING",
                "api.access_log",
                severity=severity,
                message="the target names no access log (api.access_log: {path, format})",
            )
        ]
    form = entry.get("format", "combined") if isinstance(entry, dict) else None
    where = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(where, str) or not where or form not in FORMATS:
        return None, [
            Finding(
                "API_ACCESS_LOG_INVALID",
                "api.access_log",
                severity=severity,
                message="needs {path: <file>, format: combined | json}",
            )
        ]
    log = AccessLog(_located(svc, where), str(form))
    if not log.readable():
        return log, [
            Finding(
                "API_ACCESS_LOG_UNREADABLE",
                "api.access_log",
                severity=severity,
                message=(
                    f"{log.path.name} is missing or not a regular file: the traffic cannot "
                    "be judged"
                ),
            )
        ]
    return log, []


# -- references: what the system is meant to do -------------------------------------------


def reference(
    svc: Service, key: str, purpose: str, severity: str = "hold"
) -> tuple[Any, list[Finding]]:
    """`api.<key>`: inline (a mapping) or a path to a JSON / YAML file, resolved against
    the target's folder. Absent: (None, [API_REFERENCE_MISSING]) naming the key."""
    value = svc.section("api").get(key)
    subject = f"api.{key}"
    if value is None:
        return None, [
            Finding(
                "API_REFERENCE_MISSING",
                subject,
                severity=severity,
                message=f"the target names no {purpose} (api.{key}): nothing to judge against",
            )
        ]
    if isinstance(value, dict):
        return value, []
    if not isinstance(value, str) or not value:
        return None, [_unreadable(subject, "must be a mapping or a path to a JSON/YAML file")]
    path = _located(svc, value)
    try:
        data = read_regular(path, MAX_REFERENCE_BYTES)
    except (FileProblemError, OSError) as exc:
        return None, [_unreadable(subject, f"{path.name} cannot be read ({type(exc).__name__})")]
    if path.suffix == ".json":
        loaded, problem = strict_json.parse(data)
    else:
        try:
            loaded, problem = yaml.safe_load(data.decode("utf-8")), None
        except (UnicodeDecodeError, yaml.YAMLError):
            loaded, problem = None, "INVALID"
    if problem:
        return None, [_unreadable(subject, f"{path.name} is not valid JSON/YAML ({problem})")]
    if not isinstance(loaded, dict):
        return None, [_unreadable(subject, f"{path.name} does not hold a mapping")]
    return loaded, []


def _located(svc: Service, value: str) -> Path:
    """A path of the target, made absolute without following links (a link is refused
    when the file is opened, never read through)."""
    return Path(os.path.abspath(svc.target.base / Path(value).expanduser()))  # noqa: PTH100 - resolve() would follow a link


def _unreadable(subject: str, why: str) -> Finding:
    return Finding("API_REFERENCE_UNREADABLE", subject, severity="hold", message=why)


def admin_interface(svc: Service, op: str) -> str | None:
    """Which interface `svc.admin(op, ...)` would use: 'flags_url', 'command' or None
    (then the step is a manual action for a human)."""
    section = svc.section("admin")
    if op == "set_flags" and section.get("flags_url"):
        return "flags_url"
    return "command" if section.get("command") else None
