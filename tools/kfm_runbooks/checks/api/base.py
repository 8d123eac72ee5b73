"""Shared pieces of the api runbooks: self-identifying probes, the access log, percentiles.

Every request a runbook sends carries the User-Agent `kfm-runbook/1.0 (<runbook id>)`, so
the access log tells its probes apart from users' traffic. The access log is read
incrementally (byte offsets, whole lines only) and parsed with the live client's Combined
Log Format pattern; lines that do not parse are counted, never fatal. Standard library
only: imported inside the kernel.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..._fs import open_regular
from ...errors import TargetError
from .. import Finding
from ..common import json as strict_json
from ..live import ACCESS_RE, MAX_STATE_BYTES, Live

AGENT_PREFIX = "kfm-runbook/"
MAX_LOG_READ_BYTES = 256 << 20  # one read of the access log; the rest waits for the next
TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"


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
    live: Live,
    path: str,
    *,
    user_agent: str,
    role: str | None = None,
    method: str = "GET",
    body: Any = None,
    timeout: float = 15,
) -> Probe:
    """One request through the loopback-only client; unreachable is a result, not a crash."""
    try:
        response = live.request(
            path,
            method=method,
            role=role,
            body=body,
            headers={"User-Agent": user_agent},
            timeout=timeout,
        )
    except (OSError, TargetError, http.client.HTTPException, ValueError) as exc:
        return Probe(path, role, None, 0.0, type(exc).__name__)
    return Probe(path, role, response.status, response.seconds, body=response.body)


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
            message=f"the API did not answer ({', '.join(failed)}): nothing can be verified",
        )
    ]


# -- the access log ---------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    client: str
    user: str
    time: datetime
    method: str
    path: str
    status: int
    agent: str
    micros: int | None

    @property
    def route(self) -> str:
        """The path without its query string."""
        return self.path.split("?", 1)[0]

    @property
    def own(self) -> bool:
        """Sent by a runbook (its probes identify themselves)."""
        return self.agent.startswith(AGENT_PREFIX)


@dataclass(frozen=True)
class LogRead:
    lines: list[LogLine]
    bad: int  # lines that did not parse
    end: int  # byte offset after the last whole line read


def log_path(live: Live) -> Path:
    return live.logs_dir / "access.log"


def log_size(live: Live) -> int:
    try:
        return log_path(live).stat().st_size
    except OSError:
        return 0


def parse_line(text: str) -> LogLine | None:
    match = ACCESS_RE.match(text)
    if not match:
        return None
    row = match.groupdict()
    try:
        stamp = datetime.strptime(row["time"], TIME_FORMAT)
    except ValueError:
        return None
    return LogLine(
        client=row["client"],
        user=row["user"],
        time=stamp,
        method=row["method"],
        path=row["path"],
        status=int(row["status"]),
        agent=row["agent"],
        micros=int(row["micros"]) if row["micros"] else None,
    )


def read_log(live: Live, start: int = 0) -> LogRead:
    """Whole lines of access.log from byte offset `start` (a torn last line waits)."""
    path = log_path(live)
    try:  # a link is refused, never followed (O_NOFOLLOW); a FIFO never blocks
        with os.fdopen(open_regular(path), "rb") as handle:
            handle.seek(start)
            data = handle.read(MAX_LOG_READ_BYTES)
    except OSError:
        return LogRead([], 0, start)
    cut = data.rfind(b"\n") + 1
    lines: list[LogLine] = []
    bad = 0
    for raw in data[:cut].decode("utf-8", errors="replace").splitlines():
        parsed = parse_line(raw)
        if parsed is None:
            bad += 1
        else:
            lines.append(parsed)
    return LogRead(lines, bad, start + cut)


def window(lines: list[LogLine], seconds: float) -> list[LogLine]:
    """The lines of the last `seconds` before the newest line."""
    if not lines:
        return []
    newest = max(line.time for line in lines)
    since = newest - timedelta(seconds=seconds)
    return [line for line in lines if line.time > since]


def per_second(lines: Iterable[LogLine]) -> dict[datetime, list[LogLine]]:
    buckets: dict[datetime, list[LogLine]] = {}
    for line in lines:
        buckets.setdefault(line.time, []).append(line)
    return dict(sorted(buckets.items()))


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def reference(live: Live) -> tuple[dict[str, Any], list[Finding]]:
    """live/config.json, the intended reference; unreadable means HOLD, not a crash."""
    try:
        value = strict_json.load_file(live.config_path, MAX_STATE_BYTES)
    except (OSError, ValueError) as exc:
        return {}, [
            Finding(
                "API_REFERENCE_UNREADABLE",
                live.config_path.name,
                severity="hold",
                message=f"the reference config cannot be read ({type(exc).__name__})",
            )
        ]
    if not isinstance(value, dict):
        return {}, [
            Finding(
                "API_REFERENCE_UNREADABLE",
                live.config_path.name,
                severity="hold",
                message="the reference config is not a JSON object",
            )
        ]
    return value, []


def state(live: Live, name: str, default: dict[str, Any]) -> tuple[dict[str, Any], list[Finding]]:
    """One live/state file as a dict; missing or malformed is a finding."""
    try:
        value = live.read_state(name)
    except FileNotFoundError:
        return dict(default), []
    except (OSError, ValueError) as exc:
        return dict(default), [
            Finding(
                "API_STATE_UNREADABLE",
                name,
                severity="hold",
                message=f"state file cannot be read ({type(exc).__name__})",
            )
        ]
    if not isinstance(value, dict):
        return dict(default), [
            Finding("API_STATE_UNREADABLE", name, severity="hold", message="not a JSON object")
        ]
    return value, []
